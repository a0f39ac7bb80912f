//! The browser side: the vendored hls.js and the other assets, the watch pages, the index's links,
//! and (where Debian's `chromium` is installed) a headless browser playing channels end to end.

use std::io::Read as _;
use std::path::Path;
use std::time::Duration;

use url::Url;

use xg2g::demo::StreamFault;

use crate::browser::{Chromium, Report, chromium, parse_report};
use crate::common::{client, config_for, demo, ready, start_app};

const HD: &str = "1:0:19:283D:3FB:1:C00000:0:0:0:";
const SD: &str = "1:0:1:6F0B:44D:1:C00000:0:0:0:";
const RADIO: &str = "1:0:2:2F1C:441:1:C00000:0:0:0:";
/// Münchner Lokalfernsehen, made to answer 404 at the receiver in the browser test.
const UNTUNABLE: &str = "1:0:1:2EE3:441:1:C00000:0:0:0:";
const CSP: &str = "default-src 'self'; media-src 'self' blob:; worker-src 'self' blob:";

fn repo_file(path: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).expect("repository file")
}

/// The value of the first `attribute="…"` after `after` in `page`.
fn attribute<'a>(page: &'a str, after: &str, attribute: &str) -> &'a str {
    let start = page.find(after).unwrap_or_else(|| panic!("{after} in {page}"));
    let rest = &page[start..];
    let key = format!("{attribute}=\"");
    let value = &rest[rest.find(&key).unwrap_or_else(|| panic!("{attribute} in {rest}")) + key.len()..];
    &value[..value.find('"').expect("closing quote")]
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response.headers().get(name).map_or("", |v| v.to_str().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assets_are_the_vendored_files() {
    let demo = demo().await;
    let (running, base) = start_app(&config_for(&demo, &[])).await;
    ready(&running).await;
    let http = client();
    let watch_url = format!("{base}/watch/{HD}");
    let page = http.get(&watch_url).send().await.unwrap().text().await.unwrap();
    let page_url = Url::parse(&watch_url).unwrap();

    // The links the watch page carries, as a browser resolves them.
    let hls_js = page_url.join(attribute(&page, "<video", "data-hlsjs")).unwrap();
    let watch_js = page_url.join(attribute(&page, "<script", "src")).unwrap();
    let style = page_url
        .join(attribute(&page, "<link rel=\"stylesheet\"", "href"))
        .unwrap();
    for (url, path, file, content_type) in [
        (
            &hls_js,
            "/assets/hls.min.js",
            "web/vendor/hls.js/hls.min.js",
            "application/javascript",
        ),
        (&watch_js, "/assets/watch.js", "web/watch.js", "application/javascript"),
        (&style, "/assets/xg2g.css", "web/xg2g.css", "text/css; charset=utf-8"),
    ] {
        assert_eq!(url.path(), path);
        let on_disk = repo_file(file);
        let response = http.get(url.as_str()).send().await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
        assert_eq!(header(&response, "content-type"), content_type, "{url}");
        assert_eq!(
            header(&response, "cache-control"),
            "public, max-age=31536000, immutable",
            "{url}"
        );
        assert_eq!(header(&response, "x-content-type-options"), "nosniff");
        let etag = header(&response, "etag").to_owned();
        assert_eq!(
            format!("\"{}\"", url.query_pairs().find(|(k, _)| k == "v").unwrap().1),
            etag,
            "the link's version is the ETag"
        );
        let body = response.bytes().await.unwrap();
        assert_eq!(body.len(), on_disk.len(), "{url}: served length");
        assert!(body[..] == on_disk[..], "{url}: served bytes are the file's");

        // Unversioned: revalidated every time, and 304 while unchanged.
        let plain = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(header(&plain, "cache-control"), "no-cache");
        let again = http
            .get(format!("{base}{path}"))
            .header("If-None-Match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{path}");
        assert!(again.bytes().await.unwrap().is_empty());
        let other = http
            .get(format!("{base}{path}"))
            .header("If-None-Match", "\"0\"")
            .send()
            .await
            .unwrap();
        assert_eq!(other.status(), 200);
    }

    // hls.js travels gzipped to browsers that accept it, and unpacks to the vendored file.
    let raw = reqwest::Client::builder().no_gzip().build().unwrap();
    let response = raw
        .get(hls_js.as_str())
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&response, "content-encoding"), "gzip");
    let gzipped = response.bytes().await.unwrap();
    let mut unpacked = Vec::new();
    flate2::read::GzDecoder::new(&gzipped[..])
        .read_to_end(&mut unpacked)
        .unwrap();
    assert!(unpacked == repo_file("web/vendor/hls.js/hls.min.js"));
    assert!(
        gzipped.len() * 2 < unpacked.len(),
        "{} of {} bytes",
        gzipped.len(),
        unpacked.len()
    );

    let head = http.head(format!("{base}/assets/hls.min.js")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    let missing = http.get(format!("{base}/assets/hls.js")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_pages_for_tv_radio_and_errors() {
    let demo = demo().await;
    let (running, base) = start_app(&config_for(&demo, &[])).await;
    ready(&running).await;
    let http = client();

    // Lower-case hex is the same channel; the page links the canonical form.
    let response = http
        .get(format!("{base}/watch/1:0:19:283d:3fb:1:c00000:0:0:0:"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&response, "content-security-policy"), CSP);
    let page = response.text().await.unwrap();
    assert!(page.contains("<title>1 Das Erste HD · xg2g</title>"), "{page}");
    assert!(page.contains("<h1><span class=\"num\">1</span> Das Erste HD</h1>"));
    assert!(page.contains("<video id=\"player\" controls autoplay playsinline "));
    assert_eq!(
        attribute(&page, "<video", "data-hls"),
        format!("../hls/{HD}/auto/index.m3u8")
    );
    assert!(page.contains(&format!(
        "<a href=\"../stream/{HD}\" type=\"video/mp2t\">MPEG-TS stream</a>"
    )));
    assert!(!page.contains("<audio"));
    assert_eq!(
        page.matches("<script").count(),
        2,
        "the served player and guide scripts, nothing inline"
    );
    assert!(page.contains("<script src=\"../assets/guide.js?v="), "{page}");

    let radio = http.get(format!("{base}/watch/{RADIO}")).send().await.unwrap();
    assert_eq!(radio.status(), 200);
    let page = radio.text().await.unwrap();
    assert!(page.contains("<h1><span class=\"num\">5</span> Ö1</h1>"), "{page}");
    assert!(page.contains("<audio id=\"player\" controls autoplay "));
    assert_eq!(
        attribute(&page, "<audio", "data-hls"),
        format!("../hls/{RADIO}/auto/index.m3u8")
    );
    assert!(!page.contains("<video"));

    for (path, status, code) in [
        ("/watch/nonsense", 400, "invalid-service-ref"),
        ("/watch/1:7:1:0:0:0:0:0:0:0:", 400, "invalid-service-ref"),
        ("/watch/1:0:19:FFFF:3FB:1:C00000:0:0:0:", 404, "channel-not-found"),
    ] {
        let response = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(response.status(), status, "{path}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{path}");
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_links_every_channel_to_its_watch_page_and_stream() {
    let demo = demo().await;
    let (running, base) = start_app(&config_for(&demo, &[])).await;
    ready(&running).await;
    let http = client();
    let response = http.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(header(&response, "content-security-policy"), CSP);
    let page = response.text().await.unwrap();
    let index = Url::parse(&format!("{base}/")).unwrap();
    let refs = demo.channel_refs();
    assert_eq!(refs.len(), 5);
    for reference in &refs {
        let watch = format!("<a href=\"watch/{reference}\">");
        assert!(page.contains(&watch), "{watch} in {page}");
        assert!(page.contains(&format!("<a class=\"ts\" href=\"stream/{reference}\"")));
        let url = index.join(&format!("watch/{reference}")).unwrap();
        let response = http.get(url.as_str()).send().await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
    }
    assert_eq!(page.matches("<a href=\"watch/").count(), refs.len());
    let style = index
        .join(attribute(&page, "<link rel=\"stylesheet\"", "href"))
        .unwrap();
    assert_eq!(http.get(style.as_str()).send().await.unwrap().status(), 200);
    running.stop().await;
}

/// What a watch page in headless Chromium came to.
#[derive(Debug)]
pub(crate) enum Seen {
    /// Playback advanced by the media time and decoded frames asked for, from `first` to `last`.
    Played { first: Report, last: Report },
    /// The page shows an error.
    Failed(Report),
}

/// Opens the watch page in headless Chromium and follows its reports until playback has advanced
/// by `seconds` of media time and `frames` decoded video frames since it started, or the page
/// shows an error. Panics when neither happens within 90 s.
pub(crate) async fn watch_in_browser(browser: &Path, page: &str, seconds: f64, frames: u64) -> Seen {
    let profile = tempfile::tempdir().unwrap();
    let report = if page.contains('?') { "&report" } else { "?report" };
    let mut chromium_run = Chromium::start(browser, profile.path(), &format!("{page}{report}"), &[]);
    let lines = &mut chromium_run.lines;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let mut first: Option<Report> = None;
    let mut last = None;
    let outcome = loop {
        let line = match tokio::time::timeout_at(deadline, lines.next_line()).await {
            Ok(Ok(Some(line))) => line,
            Ok(_) => break Err("chromium exited"),
            Err(_) => break Err("neither playback nor an error within 90 s"),
        };
        let Some(report) = parse_report(&line) else { continue };
        if report.error.is_some() {
            break Ok(Seen::Failed(report));
        }
        match &first {
            None if report.state == "playing" => first = Some(report),
            Some(start)
                if report.time - start.time >= seconds && report.frames.saturating_sub(start.frames) >= frames =>
            {
                break Ok(Seen::Played {
                    first: first.take().expect("matched"),
                    last: report,
                });
            }
            _ => last = Some(report),
        }
    };
    chromium_run.quit().await;
    outcome.unwrap_or_else(|why| panic!("{page}: {why}; first playing report {first:?}, last {last:?}"))
}

pub(crate) fn played(seen: Seen, what: &str) -> (Report, Report) {
    match seen {
        Seen::Played { first, last } => {
            eprintln!("{what} in Chromium: {first:?} -> {last:?}");
            (first, last)
        }
        Seen::Failed(report) => panic!("{what}: the page shows an error: {report:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_plays_hd_sd_and_radio_and_shows_errors() {
    let Some(browser) = chromium() else {
        eprintln!(
            "SKIPPED chromium_plays_hd_sd_and_radio_and_shows_errors: no `chromium` on PATH \
             (apt-get install chromium)"
        );
        return;
    };
    let demo = demo().await;
    demo.set_faults(|f| {
        f.streams.insert(UNTUNABLE.into(), StreamFault::NotFound);
    });
    let (running, base) = start_app(&config_for(&demo, &[])).await;
    ready(&running).await;

    // HD: H.264 copied, AAC audio; 3 s of 50p must decode well over 100 frames.
    let (_, last) = played(
        watch_in_browser(&browser, &format!("{base}/watch/{HD}"), 3.0, 100).await,
        "HD",
    );
    assert_eq!(last.engine, "hls.js", "Chromium plays through hls.js (MSE)");
    // SD: MPEG-2, which Chromium cannot decode, arrives transcoded to H.264: frames, not only sound.
    let (_, last) = played(
        watch_in_browser(&browser, &format!("{base}/watch/{SD}"), 3.0, 50).await,
        "SD",
    );
    assert_eq!(last.engine, "hls.js");
    // Radio: audio only; time advances without any video frame.
    let (_, last) = played(
        watch_in_browser(&browser, &format!("{base}/watch/{RADIO}"), 3.0, 0).await,
        "Radio",
    );
    assert_eq!(last.frames, 0);

    // A channel the receiver cannot tune: the page says so, in the server's words.
    match watch_in_browser(&browser, &format!("{base}/watch/{UNTUNABLE}"), 3.0, 0).await {
        Seen::Failed(report) => {
            let error = report.error.unwrap_or_default();
            eprintln!("Untunable channel in Chromium: {error}");
            assert!(
                error.starts_with("The stream could not be started (") && error.ends_with(")."),
                "{error}"
            );
            assert!(
                !error.contains("HTTP 5"),
                "the server's message, not only its status: {error}"
            );
        }
        played => panic!("an untunable channel played: {played:?}"),
    }
    running.stop().await;
}
