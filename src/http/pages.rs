//! The browser side: the watch page `GET /watch/{ref}` (the channel's HLS in a `<video>` or, for
//! radio, an `<audio>` element: native HLS on Safari, hls.js elsewhere), the index page's
//! response, and the assets both use, embedded from `web/` at build time (hls.js comes from npm,
//! see `web/vendor/hls.js/README.md`; the pages load nothing from anywhere else).

use std::fmt::Write as _;
use std::sync::OnceLock;

use actix_web::http::header;
use actix_web::middleware::Compress;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::AppState;
use super::error::HttpError;
use crate::catalog::{Snapshot, escape_html as escape, render_index};
use crate::model::{Channel, ServiceRef};

/// The pages load scripts, styles and media from xg2g only; hls.js feeds the media element
/// through a `blob:` MediaSource URL and runs its demuxer in a `blob:` worker.
const CSP: &str = "default-src 'self'; media-src 'self' blob:; worker-src 'self' blob:";

/// A file served from memory at `/assets/{name}`.
struct Asset {
    name: &'static str,
    bytes: &'static [u8],
    content_type: &'static str,
    tag: OnceLock<String>,
}

impl Asset {
    const fn new(name: &'static str, bytes: &'static [u8], content_type: &'static str) -> Self {
        Self {
            name,
            bytes,
            content_type,
            tag: OnceLock::new(),
        }
    }

    /// A hash of the content: the ETag, and the `?v=` that makes a link cacheable for good.
    fn tag(&self) -> &str {
        self.tag.get_or_init(|| format!("{:016x}", fnv1a(self.bytes)))
    }

    /// The asset's versioned URL relative to a page at `base` (`""` for `/`, `"../"` one down).
    fn href(&self, base: &str) -> String {
        format!("{base}assets/{}?v={}", self.name, self.tag())
    }
}

static HLS_JS: Asset = Asset::new(
    "hls.min.js",
    include_bytes!("../../web/vendor/hls.js/hls.min.js"),
    "application/javascript",
);
static WATCH_JS: Asset = Asset::new(
    "watch.js",
    include_bytes!("../../web/watch.js"),
    "application/javascript",
);
/// Now and next on the index, kept current (`GET /api/v1/guide/now`).
static GUIDE_JS: Asset = Asset::new(
    "guide.js",
    include_bytes!("../../web/guide.js"),
    "application/javascript",
);
static STYLE: Asset = Asset::new(
    "xg2g.css",
    include_bytes!("../../web/xg2g.css"),
    "text/css; charset=utf-8",
);
static ASSETS: [&Asset; 4] = [&HLS_JS, &WATCH_JS, &GUIDE_JS, &STYLE];

/// 64-bit FNV-1a: stable across builds and platforms, unlike std's hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/watch/{ref}", web::get().to(watch));
    for asset in ASSETS {
        cfg.service(
            web::resource(format!("/assets/{}", asset.name))
                .wrap(Compress::default())
                .route(web::get().to(move |req: HttpRequest| async move { serve(asset, &req) }))
                .route(web::head().to(move |req: HttpRequest| async move { serve(asset, &req) })),
        );
    }
}

/// `GET /`: the channel list with what runs now, as of `now` (Unix seconds); `query` gives each
/// link's query, `top` markup under the heading.
pub(crate) fn index(snapshot: &Snapshot, now: i64, query: &dyn Fn(&str) -> String, top: &str) -> HttpResponse {
    private(page(render_index(
        snapshot,
        &STYLE.href(""),
        &GUIDE_JS.href(""),
        now,
        query,
        top,
    )))
}

/// The sign-out button of a signed-in index page.
pub(crate) const SIGN_OUT: &str =
    "<form class=\"account\" method=\"post\" action=\"logout\"><button type=\"submit\">Sign out</button></form>";

/// `GET /` while streams are signed and the browser is not signed in.
pub(crate) fn sign_in() -> HttpResponse {
    private(page(format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Sign in · xg2g</title>\
         <link rel=\"stylesheet\" href=\"{style}\"></head>\
         <body><h1>xg2g</h1>\
         <form class=\"sign-in\" method=\"post\" action=\"login\">\
         <p><label>Password or admin token <input type=\"password\" name=\"password\" \
         autocomplete=\"current-password\" required autofocus></label> \
         <button type=\"submit\">Sign in</button></p></form>\
         <p>Players and media servers need no sign-in: they use a signed URL or a device token from \
         the admin.</p></body></html>\n",
        style = escape(&STYLE.href("")),
    )))
}

/// A page that differs by who asks: no shared cache may keep it.
fn private(mut response: HttpResponse) -> HttpResponse {
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("private, no-store"),
    );
    response
}

async fn watch(
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, HttpError> {
    let service_ref: ServiceRef = path.parse()?;
    let catalog = state.catalog.snapshot().catalog.ok_or(HttpError::CatalogNotReady)?;
    let channel = catalog.channel(&service_ref).ok_or(HttpError::ChannelNotFound)?;
    // While signed, the page's links carry signatures that expire with the page's own.
    let signed = |path: &str| match super::auth::signature_for(&state, &req, path) {
        Some(query) => format!("?{query}"),
        None => String::new(),
    };
    Ok(page(render_watch(channel, &signed)))
}

fn page(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(body)
}

#[derive(Deserialize)]
struct AssetQuery {
    v: Option<String>,
}

/// An asset with its ETag. A link carrying the current `?v=` may be cached for a year (a new
/// build changes the link); any other request revalidates, and a matching `If-None-Match` gets 304.
fn serve(asset: &Asset, req: &HttpRequest) -> HttpResponse {
    let etag = format!("\"{}\"", asset.tag());
    let versioned = web::Query::<AssetQuery>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.into_inner().v)
        .is_some_and(|v| v == asset.tag());
    let cache = if versioned {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|h| etag_matches(h, &etag));
    let mut response = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, cache))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
    if fresh {
        response.finish()
    } else {
        response.content_type(asset.content_type).body(asset.bytes)
    }
}

/// `If-None-Match` uses the weak comparison: `*`, or any listed tag equal apart from `W/`.
fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    if_none_match
        .split(',')
        .map(str::trim)
        .any(|candidate| candidate == "*" || candidate.trim_start_matches("W/") == etag)
}

/// The watch page of one channel. Every link is relative to `/watch/`, so the page works behind
/// a path prefix; the script (`web/watch.js`) reads its URLs from the media element's data.
/// `query` gives the query (`?…`, or empty) each stream link's absolute path gets.
fn render_watch(channel: &Channel, query: &dyn Fn(&str) -> String) -> String {
    let service_ref = channel.service_ref.to_string();
    let reference = escape(&service_ref);
    let name = escape(&channel.name);
    let hls = format!(
        "../hls/{reference}/auto/index.m3u8{}",
        escape(&query(&format!("/hls/{service_ref}/auto/index.m3u8")))
    );
    let stream_query = escape(&query(&format!("/stream/{service_ref}")));
    let m3u_query = escape(&query("/playlist.m3u"));
    let media = if channel.is_radio() {
        format!(
            "<audio id=\"player\" controls autoplay data-hls=\"{hls}\" data-hlsjs=\"{hlsjs}\" \
             aria-label=\"{name}, live\"></audio>",
            hlsjs = escape(&HLS_JS.href("../"))
        )
    } else {
        format!(
            "<video id=\"player\" controls autoplay playsinline data-hls=\"{hls}\" data-hlsjs=\"{hlsjs}\" \
             aria-label=\"{name}, live\"></video>",
            hlsjs = escape(&HLS_JS.href("../"))
        )
    };
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{number} {name} · xg2g</title>\
         <link rel=\"stylesheet\" href=\"{style}\">\
         <script src=\"{script}\" defer></script>\
         <script src=\"{guide}\" defer></script></head>\
         <body><p><a href=\"../\">All channels</a></p>\
         <h1><span class=\"num\">{number}</span> {name}</h1>\
         {media}\
         <p id=\"status\" role=\"status\"></p>\
         <p id=\"error\" class=\"error\" role=\"alert\" hidden></p>\
         <noscript><p class=\"error\">Playing here needs JavaScript; the stream below plays without it.</p></noscript>\
         <p>For VLC, mpv or Kodi: <a href=\"../stream/{reference}{stream_query}\" type=\"video/mp2t\">MPEG-TS stream</a> \
         · <a href=\"../playlist.m3u{m3u_query}\">all channels as M3U</a></p>\
         </body></html>\n",
        number = channel.number,
        style = escape(&STYLE.href("../")),
        script = escape(&WATCH_JS.href("../")),
        guide = escape(&GUIDE_JS.href("../")),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(name: &str, reference: &str) -> Channel {
        Channel {
            number: 7,
            name: name.into(),
            service_ref: reference.parse().unwrap(),
            bouquet: "B".into(),
        }
    }

    fn render_watch_open(channel: &Channel) -> String {
        render_watch(channel, &|_| String::new())
    }

    #[test]
    fn signed_watch_pages_sign_each_stream_link_for_its_own_path() {
        let page = render_watch(&channel("Eins", "1:0:19:283D:3FB:1:C00000:0:0:0:"), &|path| {
            format!("?p={}&sig=S", path.len())
        });
        // /hls/{ref}/auto/index.m3u8 is 52 characters, /stream/{ref} 39, /playlist.m3u 13.
        assert!(
            page.contains("data-hls=\"../hls/1:0:19:283D:3FB:1:C00000:0:0:0:/auto/index.m3u8?p=52&amp;sig=S\""),
            "{page}"
        );
        assert!(
            page.contains("href=\"../stream/1:0:19:283D:3FB:1:C00000:0:0:0:?p=39&amp;sig=S\""),
            "{page}"
        );
        assert!(page.contains("href=\"../playlist.m3u?p=13&amp;sig=S\""), "{page}");
    }

    #[test]
    fn watch_page_plays_hls_in_a_video_element() {
        let page = render_watch_open(&channel("Das Erste HD", "1:0:19:283D:3FB:1:C00000:0:0:0:"));
        assert!(page.contains("<title>7 Das Erste HD · xg2g</title>"));
        assert!(page.contains("<h1><span class=\"num\">7</span> Das Erste HD</h1>"));
        assert!(page.contains(
            "<video id=\"player\" controls autoplay playsinline \
             data-hls=\"../hls/1:0:19:283D:3FB:1:C00000:0:0:0:/auto/index.m3u8\" \
             data-hlsjs=\"../assets/hls.min.js?v="
        ));
        assert!(page.contains("<a href=\"../stream/1:0:19:283D:3FB:1:C00000:0:0:0:\" type=\"video/mp2t\">"));
        assert!(page.contains(&format!(
            "<script src=\"../assets/watch.js?v={}\" defer></script>",
            WATCH_JS.tag()
        )));
        assert!(!page.contains("<audio"));
    }

    #[test]
    fn radio_gets_an_audio_element() {
        let page = render_watch_open(&channel("Ö1", "1:0:2:2F1C:441:1:C00000:0:0:0:"));
        assert!(page.contains(
            "<audio id=\"player\" controls autoplay data-hls=\"../hls/1:0:2:2F1C:441:1:C00000:0:0:0:/auto/index.m3u8\""
        ));
        assert!(!page.contains("<video"));
    }

    #[test]
    fn names_are_escaped_and_nothing_runs_inline() {
        let page = render_watch_open(&channel(
            "<script>alert('x')</script> & \"Co\"",
            "1:0:1:1:1:1:C00000:0:0:0:",
        ));
        assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;Co&quot;"));
        assert_eq!(
            page.matches("<script").count(),
            2,
            "only the served watch.js and guide.js: {page}"
        );
        assert!(!page.contains("<style") && !page.contains("javascript:"));
        let handler = page.split(" on").skip(1).find(|rest| {
            let attribute: String = rest.chars().take_while(char::is_ascii_alphabetic).collect();
            !attribute.is_empty() && rest[attribute.len()..].starts_with('=')
        });
        assert_eq!(handler, None, "an inline event handler: {page}");
    }

    #[test]
    fn etag_comparison_is_weak_and_takes_lists() {
        assert!(etag_matches("\"abc\"", "\"abc\""));
        assert!(etag_matches("W/\"abc\"", "\"abc\""));
        assert!(etag_matches("\"x\", \"abc\"", "\"abc\""));
        assert!(etag_matches("*", "\"abc\""));
        assert!(!etag_matches("\"abd\"", "\"abc\""));
        assert!(!etag_matches("", "\"abc\""));
    }

    #[test]
    fn tags_follow_the_content() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(HLS_JS.tag().len(), 16);
        assert_ne!(HLS_JS.tag(), WATCH_JS.tag());
    }

    /// The hls.js release vendored in `web/vendor/hls.js/`.
    const HLS_JS_VERSION: &str = "1.7.4";

    #[test]
    fn vendored_hls_js_is_the_version_its_readme_names() {
        let source = std::str::from_utf8(HLS_JS.bytes).expect("hls.min.js is text");
        assert!(
            source.contains(&format!("=\"{HLS_JS_VERSION}\"")),
            "hls.min.js is not {HLS_JS_VERSION}"
        );
        let readme = include_str!("../../web/vendor/hls.js/README.md");
        assert!(
            readme.contains(&format!("hls.js@{HLS_JS_VERSION}")),
            "README names another version"
        );
        assert!(include_str!("../../web/vendor/hls.js/LICENSE").contains("Apache License"));
    }
}
