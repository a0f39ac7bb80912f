//! Catalog refresh, programme guide and XMLTV against the demo receiver: golden files, XMLTV
//! validity (Debian's `tv_validate_file`), gzip, Plex's number ids, the refresh API and its
//! failures, and the bound on requests in flight at the receiver.

use std::io::Read as _;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use xg2g::app::Running;
use xg2g::catalog::{Catalog, ChannelIds, GuideWindow, load_guide, render_xmltv};
use xg2g::config::{Config, ReceiverConfig};
use xg2g::demo::{DemoOptions, DemoReceiver};
use xg2g::upstream::{OpenWebIf, load_channels};

use crate::common::{
    client, config_for, demo, demo_with, error_code, get_json, get_text, guide_loaded, send_text, start_app,
    start_ready,
};

/// The demo guide's fixed "now": 2026-01-01 18:20:00 UTC.
const ANCHOR: i64 = 1_767_291_600;
const PUBLIC_URL: &str = "http://xg2g.local:8080";
const TOKEN: &str = "t0ken-for-tests";
/// The DTD `tv_validate_file` checks against, from the same package (it would download one).
const XMLTV_DTD: &str = "/usr/share/xmltv/xmltv.dtd";

fn golden_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// Compares `actual` with `tests/golden/{name}` byte for byte. `XG2G_UPDATE_GOLDEN=1` rewrites
/// the file instead (review the diff before committing it).
fn assert_golden(name: &str, actual: &str) {
    let path = golden_path(name);
    if std::env::var_os("XG2G_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).expect("golden file written");
        return;
    }
    let expected = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if expected != actual.as_bytes() {
        let expected = String::from_utf8_lossy(&expected);
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(e, a)| e != a)
            .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
        panic!(
            "{name} differs from {} at line {}:\n  golden: {:?}\n  actual: {:?}\n(set XG2G_UPDATE_GOLDEN=1 to rewrite)",
            path.display(),
            first + 1,
            expected.lines().nth(first),
            actual.lines().nth(first)
        );
    }
}

/// Runs `tv_validate_file` (Debian package xmltv-util) on `xml`: the DTD, times, titles, channel
/// ids (`name.domain`), ids used by programmes, programmes for every channel and the encoding
/// must all pass.
fn tv_validate(xml: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("guide.xml");
    std::fs::write(&path, xml).expect("guide written");
    let output = Command::new("tv_validate_file")
        .args(["--dtd-file", XMLTV_DTD])
        .arg(&path)
        .output()
        .expect("tv_validate_file runs (install xmltv-util: scripts/deps.sh)");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && report.contains("Validated ok."),
        "tv_validate_file reports:\n{report}"
    );
}

fn receiver(demo: &DemoReceiver) -> ReceiverConfig {
    ReceiverConfig {
        base_url: Some(demo.api_url().parse().expect("demo URL")),
        retries: 0,
        ..Config::default().receiver
    }
}

/// Polls `check` until it holds, for at most 10 s.
async fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn plain_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .no_gzip()
        .build()
        .expect("client")
}

/// Parses XMLTV, which starts with a DOCTYPE.
fn parse_xml(xml: &str) -> roxmltree::Document<'_> {
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..roxmltree::ParsingOptions::default()
    };
    roxmltree::Document::parse_with_options(xml, options).expect("XMLTV parses")
}

/// Channel ids of an XMLTV document, and every programme's channel.
fn xmltv_ids(xml: &str) -> (Vec<String>, Vec<String>) {
    let doc = parse_xml(xml);
    let attr = |tag: &str, name: &str| -> Vec<String> {
        doc.descendants()
            .filter(|n| n.has_tag_name(tag))
            .map(|n| n.attribute(name).unwrap_or_default().to_owned())
            .collect()
    };
    (attr("channel", "id"), attr("programme", "channel"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_playlist_and_guide_from_the_demo() {
    let demo = demo_with(DemoOptions {
        epg_anchor: Some(ANCHOR),
        epg_days: 2,
        ..DemoOptions::default()
    })
    .await;

    // The playlist through the HTTP route.
    let config = config_for(&demo, &[("public_url", PUBLIC_URL), ("epg.enabled", "false")]);
    let (running, base) = start_ready(&config).await;
    let m3u = get_text(format!("{base}/playlist.m3u")).await;
    running.stop().await;
    assert_golden("playlist.m3u", &m3u);

    // The guide through the same loader and renderer the route uses, on the demo's fixed clock
    // and one day of the two the demo lists.
    let client = OpenWebIf::new(&receiver(&demo)).expect("client");
    let channels = load_channels(&client, &[]).await.expect("channels load");
    let load = load_guide(&client, &channels, GuideWindow::days_from(ANCHOR, 1), None, 5).await;
    assert!(load.failed.is_empty(), "{:?}", load.failed);
    let xml = render_xmltv(&channels, &load.guide, PUBLIC_URL, ChannelIds::TvgId, ANCHOR);
    assert_golden("xmltv.xml", &xml);

    for text in [
        "Bayerisches Fernsehen Süd",
        "Münchner Lokalfernsehen",
        "Ö1",
        "Fußball-Bundesliga",
    ] {
        assert!(xml.contains(text), "guide lacks {text:?}");
    }
    assert!(m3u.contains(",Münchner Lokalfernsehen\n") && m3u.contains(",Ö1\n"));
    assert!(!xml.contains('Ã') && !m3u.contains('Ã'), "nothing is encoded twice");
    // The window: the programme running at the anchor first, nothing from the second day.
    assert!(
        xml.contains("start=\"20260101180000 +0000\""),
        "the running programme is kept"
    );
    assert!(
        !xml.contains("start=\"20260101170000 +0000\""),
        "ended programmes are gone"
    );
    assert!(
        !xml.contains("start=\"20260102183000 +0000\""),
        "one day ahead, no more"
    );

    let (ids, used) = xmltv_ids(&xml);
    let tvg_ids: Vec<String> = m3u
        .lines()
        .filter_map(|l| l.split("tvg-id=\"").nth(1)?.split('"').next().map(str::to_owned))
        .collect();
    assert_eq!(ids, tvg_ids, "XMLTV channel ids are the M3U tvg-ids");
    assert!(used.iter().all(|id| ids.contains(id)));
    // The default ids (`1.0.19.283D…`) pass the tool outright.
    tv_validate(&xml);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xmltv_route_gzips_validates_and_keys_by_number() {
    let demo = demo().await;
    // Hold the receiver back so the first request sees the app before its first load.
    demo.set_faults(|f| f.api_delay = Duration::from_millis(1_500));
    let (running, base) = start_app(&config_for(&demo, &[])).await;
    let http = plain_client();

    let early = http.get(format!("{base}/xmltv.xml")).send().await.unwrap();
    assert_eq!(early.status(), 503);
    assert_eq!(error_code(early).await, "catalog-not-ready");

    demo.set_faults(|f| f.api_delay = Duration::ZERO);
    let catalog = guide_loaded(&running).await;

    let plain = http.get(format!("{base}/xmltv.xml")).send().await.unwrap();
    assert_eq!(plain.status(), 200);
    assert_eq!(plain.headers()["content-type"], "application/xml; charset=utf-8");
    assert!(plain.headers().get("content-encoding").is_none());
    let xml = plain.text().await.unwrap();

    let gzipped = http
        .get(format!("{base}/xmltv.xml"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(gzipped.status(), 200);
    assert_eq!(gzipped.headers()["content-encoding"], "gzip");
    let compressed = gzipped.bytes().await.unwrap();
    assert!(
        compressed.len() * 4 < xml.len(),
        "{} of {} bytes",
        compressed.len(),
        xml.len()
    );
    let mut unzipped = String::new();
    flate2::read::GzDecoder::new(&compressed[..])
        .read_to_string(&mut unzipped)
        .expect("valid gzip");
    assert_eq!(unzipped, xml);

    // Streams and playlists are never compressed.
    let m3u = http
        .get(format!("{base}/playlist.m3u"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert!(m3u.headers().get("content-encoding").is_none());
    let m3u = m3u.text().await.unwrap();

    let (ids, used) = xmltv_ids(&xml);
    let tvg_ids: Vec<String> = catalog.channels.iter().map(|c| c.tvg_id()).collect();
    assert_eq!(ids, tvg_ids);
    assert!(m3u.starts_with(&format!("#EXTM3U x-tvg-url=\"{base}/xmltv.xml\"\n")));
    for id in &ids {
        assert!(m3u.contains(&format!("tvg-id=\"{id}\"")), "{id} in the playlist");
    }
    // Every programme of the guide, and placeholders for the radio channel, which has none.
    let radio = catalog.channels.iter().find(|c| c.is_radio()).expect("a radio channel");
    assert!(catalog.guide.programmes(&radio.service_ref).is_empty());
    let placeholders = used.iter().filter(|id| **id == radio.tvg_id()).count();
    assert!(placeholders >= 4, "{placeholders} placeholders, a day at least");
    assert_eq!(used.len() - placeholders, catalog.guide.len());
    assert!(xml.contains(&format!("<title>{}</title>", radio.name)));
    assert!(xml.contains(&format!(
        "<icon src=\"{base}/picon/1:0:19:283D:3FB:1:C00000:0:0:0:.png\"/>"
    )));
    // Seven days ahead by default: the demo lists more than six days of every channel.
    let doc = parse_xml(&xml);
    let starts: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("programme"))
        .map(|n| n.attribute("start").unwrap())
        .collect();
    assert!(starts.iter().all(|s| s.ends_with(" +0000") && s.len() == 20));
    assert!(catalog.guide.len() > 5 * 6 * 24, "{} programmes", catalog.guide.len());
    // The default ids (`1.0.19.283D…`) pass the tool outright.
    tv_validate(&xml);

    let by_number = send_text(http.get(format!("{base}/xmltv.xml?ids=number"))).await;
    let (numbers, used) = xmltv_ids(&by_number);
    assert_eq!(numbers, ["1.xg2g", "2.xg2g", "3.xg2g", "4.xg2g", "5.xg2g"]);
    assert!(used.iter().all(|id| numbers.contains(id)));
    let with_programmes: std::collections::BTreeSet<&String> = used.iter().collect();
    assert_eq!(
        with_programmes.len(),
        numbers.len(),
        "every channel has programmes, the radio without a guide too"
    );
    tv_validate(&by_number);

    let bad = http.get(format!("{base}/xmltv.xml?ids=name")).send().await.unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(error_code(bad).await, "invalid-parameter");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_needs_the_token() {
    let demo = demo().await;
    let (running, base) = start_app(&config_for(&demo, &[("api_token", TOKEN)])).await;
    guide_loaded(&running).await;
    let http = client();
    let url = format!("{base}/api/v1/refresh");

    let none = http.post(&url).send().await.unwrap();
    assert_eq!(none.status(), 401);
    assert!(none.headers().contains_key("www-authenticate"));
    assert_eq!(error_code(none).await, "unauthorized");

    for (name, value) in [("x-api-token", "wrong"), ("authorization", "Bearer t0ken-for-test")] {
        let wrong = http.post(&url).header(name, value).send().await.unwrap();
        assert_eq!(wrong.status(), 403, "{name}");
        assert_eq!(error_code(wrong).await, "forbidden");
    }

    let before = demo.stats().api_requests.load(Ordering::Relaxed);
    let ok = http
        .post(&url)
        .header("authorization", format!("Bearer {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let summary: serde_json::Value = ok.json().await.unwrap();
    let sent = demo.stats().api_requests.load(Ordering::Relaxed) - before;
    eprintln!("refresh summary: {summary}");
    assert_eq!(summary["channels"], 5);
    assert_eq!(summary["guide"], true);
    assert_eq!(summary["guide_failed_channels"], 0);
    // One bouquet list, the services of two bouquets and of the two nested in the first, one
    // guide per channel.
    assert_eq!(summary["receiver_requests"], 1 + 2 + 2 + 5);
    assert_eq!(
        summary["receiver_requests"], sent,
        "the summary counts what reached the box"
    );
    assert!(summary["events"].as_u64().unwrap() > 5 * 6 * 24);
    assert!(summary["duration_ms"].is_u64());

    let ok = http.post(&url).header("x-api-token", TOKEN).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    running.stop().await;

    // Without a configured token the admin API stays closed and says how to open it.
    let (running, base) = start_app(&config_for(&demo, &[])).await;
    let closed = http
        .post(format!("{base}/api/v1/refresh"))
        .header("x-api-token", TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(closed.status(), 401);
    let body: serde_json::Value = closed.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    assert!(body["error"]["message"].as_str().unwrap().contains("XG2G_API_TOKEN"));
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_refresh_while_one_runs_is_409() {
    let demo = demo().await;
    let (running, base) = start_app(&config_for(&demo, &[("api_token", TOKEN)])).await;
    guide_loaded(&running).await;
    let url = format!("{base}/api/v1/refresh");

    // Hold the receiver so the first refresh is still running when the second arrives.
    demo.set_faults(|f| f.api_delay = Duration::from_millis(1_000));
    let before = demo.stats().api_requests.load(Ordering::Relaxed);
    let first = tokio::spawn({
        let url = url.clone();
        async move { client().post(url).header("x-api-token", TOKEN).send().await.unwrap() }
    });
    eventually("the first refresh to reach the receiver", || {
        demo.stats().api_requests.load(Ordering::Relaxed) > before
    })
    .await;
    let second = client().post(&url).header("x-api-token", TOKEN).send().await.unwrap();
    assert_eq!(second.status(), 409);
    let retry_after: u64 = second.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(error_code(second).await, "refresh-in-progress");

    let first = first.await.unwrap();
    assert_eq!(first.status(), 200);
    demo.set_faults(|f| f.api_delay = Duration::ZERO);
    let again = client().post(&url).header("x-api-token", TOKEN).send().await.unwrap();
    assert_eq!(again.status(), 200, "free again once the first is done");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_refresh_keeps_the_old_catalog() {
    let demo = demo().await;
    let config = config_for(&demo, &[("api_token", TOKEN), ("receiver.retries", "0")]);
    let (running, base) = start_app(&config).await;
    let loaded = guide_loaded(&running).await;
    let http = client();
    let m3u_before = get_text(format!("{base}/playlist.m3u")).await;

    demo.set_faults(|f| f.api_fail_next = 1_000);
    let failed = http
        .post(format!("{base}/api/v1/refresh"))
        .header("x-api-token", TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 502);
    assert_eq!(error_code(failed).await, "upstream-unavailable");

    let still = running.catalog().snapshot().catalog.expect("a catalog");
    assert!(Arc::ptr_eq(&still, &loaded), "the catalog is the one from before");
    let playlist = http.get(format!("{base}/playlist.m3u")).send().await.unwrap();
    assert_eq!(playlist.status(), 200);
    assert_eq!(playlist.text().await.unwrap(), m3u_before);
    let xmltv = http.get(format!("{base}/xmltv.xml")).send().await.unwrap();
    assert_eq!(xmltv.status(), 200);
    let ready = get_json(format!("{base}/readyz")).await;
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["channels"], 5);
    let error = ready["last_refresh_error"].as_str().unwrap_or_default();
    assert!(error.contains("HTTP 500"), "readyz says why: {ready}");
    let metrics = get_text(format!("{base}/metrics")).await;
    assert!(
        metrics.contains("xg2g_catalog_loads_total{result=\"error\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("xg2g_catalog_loads_total{result=\"ok\"} 1"),
        "{metrics}"
    );

    // The receiver is back: the next refresh replaces the catalog and clears the error.
    demo.set_faults(|f| f.api_fail_next = 0);
    let ok = http
        .post(format!("{base}/api/v1/refresh"))
        .header("x-api-token", TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let now = running.catalog().snapshot().catalog.expect("a catalog");
    assert!(!Arc::ptr_eq(&now, &loaded), "a new catalog replaced the old one");
    let ready = get_json(format!("{base}/readyz")).await;
    assert!(ready.get("last_refresh_error").is_none(), "{ready}");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receiver_never_sees_more_than_max_concurrency() {
    // Each answer takes a while, so requests that are sent together overlap at the box.
    let delay = Duration::from_millis(300);
    let mut most = Vec::new();
    for limit in ["2", "5"] {
        let demo = demo().await;
        demo.set_faults(|f| f.api_delay = delay);
        let (running, _) = start_app(&config_for(&demo, &[("receiver.max_concurrency", limit)])).await;
        guide_loaded(&running).await;
        running.stop().await;
        let stats = demo.stats();
        assert!(stats.api_requests.load(Ordering::Relaxed) >= 1 + 2 + 5);
        most.push(stats.api_in_flight_max.load(Ordering::SeqCst));
    }
    eprintln!("most API requests in flight at the demo, limits 2 and 5: {most:?}");
    assert_eq!(most[0], 2, "bounded at 2, and the guide load used both");
    // The same load unbounded by a limit of 2 does overlap more: the check above can fail.
    assert!(most[1] > 2, "with a limit of 5: {}", most[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_and_guide_reload_on_their_own_schedules() {
    let demo = demo().await;
    let config = config_for(
        &demo,
        &[("catalog.refresh_interval", "300ms"), ("epg.refresh_interval", "1s")],
    );
    let (running, _) = start_app(&config).await;
    let first = guide_loaded(&running).await;

    // The channel list reloads on its own: a new catalog that keeps the guide it had.
    let reloaded = next_catalog(&running, |c| !std::ptr::eq(c, first.as_ref())).await;
    assert!(
        Arc::ptr_eq(&reloaded.guide, &first.guide),
        "a channel reload keeps the guide"
    );
    assert!(reloaded.loaded_at > first.loaded_at);
    // Later the guide reloads as well.
    let new_guide = next_catalog(&running, |c| !Arc::ptr_eq(&c.guide, &first.guide)).await;
    assert_eq!(new_guide.channels.len(), 5);
    assert!(!new_guide.guide.is_empty());
    assert!(running.catalog().snapshot().refresh_error().is_none());
    running.stop().await;
}

/// Waits, bounded, for a catalog that satisfies `predicate`.
async fn next_catalog(running: &Running, predicate: impl Fn(&Catalog) -> bool) -> Arc<Catalog> {
    let mut catalog = running.catalog();
    let snapshot = tokio::time::timeout(
        Duration::from_secs(10),
        catalog.wait_until(|s| s.catalog.as_deref().is_some_and(&predicate)),
    )
    .await
    .expect("a refresh within 10 s");
    snapshot.catalog.expect("checked by the predicate")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_xml_guide_stands_in_when_the_json_guide_is_broken() {
    let demo = demo_with(DemoOptions {
        epg_anchor: Some(ANCHOR),
        epg_days: 1,
        ..DemoOptions::default()
    })
    .await;
    let client = OpenWebIf::new(&receiver(&demo)).expect("client");
    let service = "1:0:1:2EE3:441:1:C00000:0:0:0:".parse().unwrap();
    let from_json = client.epg_service(&service).await.expect("JSON guide");
    assert!(from_json.iter().any(|e| e.title.contains("Münchner Blut")));

    // Every JSON answer is cut short now; the XML call is not.
    demo.set_faults(|f| f.api_invalid_json = true);
    let before = demo.stats().api_requests.load(Ordering::Relaxed);
    let from_xml = client.epg_service(&service).await.expect("XML guide");
    assert_eq!(
        demo.stats().api_requests.load(Ordering::Relaxed) - before,
        2,
        "JSON, then XML"
    );
    assert_eq!(from_xml, from_json, "both shapes read the same");
    assert!(from_json.len() > 20);

    // Both broken: the error names the XML call.
    demo.set_faults(|f| f.api_fail_next = 2);
    let err = client.epg_service(&service).await.unwrap_err();
    assert_eq!(err.to_string(), "receiver answered /web/epgservice with HTTP 500");
}
