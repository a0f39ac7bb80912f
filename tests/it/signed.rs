//! `auth.streams = "signed"` end to end: every stream route refuses unsigned requests, wrong
//! signatures get their documented codes and are throttled, playlists list links signed for
//! their own expiry, and two signed HLS clients of one channel still share one session.

use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use xg2g::auth::{KeySet, Scope, sign};

use crate::common::{
    client, config_for, demo, error_code, get_json, get_text, lineup_urls, send_json, send_text, start_ready,
};

pub(crate) const HD: &str = "1:0:19:283D:3FB:1:C00000:0:0:0:";
pub(crate) const CURRENT: &str = "k2:0123456789abcdef0123456789abcdef";
const OLD: &str = "k1:fedcba9876543210fedcba9876543210";
pub(crate) const ADMIN: &str = "admin-t0ken";
/// Links name this host, whatever `Host` a request sends.
pub(crate) const PUBLIC_HOST: &str = "tv.test:8080";

pub(crate) fn signed_config(demo: &xg2g::demo::DemoReceiver) -> xg2g::config::Config {
    let keys = format!("{CURRENT},{OLD}");
    config_for(
        demo,
        &[
            ("auth.streams", "signed"),
            ("auth.keys", &keys),
            ("auth.allowed_hosts", PUBLIC_HOST),
            ("api_token", ADMIN),
        ],
    )
}

pub(crate) fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// `path?query` signed with the key `entry` until `expires`, made the way the server makes it.
pub(crate) fn signed_with(entry: &str, path: &str, expires: u64) -> String {
    let keys = KeySet::parse([entry]).unwrap();
    format!("{path}?{}", sign(keys.current(), &Scope::of_path(path), expires))
}

/// Status and the JSON error code (or `""`) of a GET.
pub(crate) async fn status(base: &str, path_and_query: &str) -> (u16, String) {
    let response = client().get(format!("{base}{path_and_query}")).send().await.unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, body["error"]["code"].as_str().unwrap_or("").to_owned())
}

/// A link as listed (`http://tv.test:8080/…`) made fetchable from the test's server.
pub(crate) fn local(base: &str, link: &str) -> String {
    let rest = link
        .strip_prefix(&format!("http://{PUBLIC_HOST}"))
        .unwrap_or_else(|| panic!("link {link} is not on the public host"));
    format!("{base}{rest}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stream_route_refuses_unsigned_requests_and_the_rest_stays_open() {
    let demo = demo().await;
    let (running, base) = start_ready(&signed_config(&demo)).await;
    for path in [
        format!("/stream/{HD}"),
        format!("/hls/{HD}/aac/index.m3u8"),
        format!("/hls/{HD}/aac/media.m3u8"),
        format!("/hls/{HD}/aac/3.ts"),
        format!("/watch/{HD}"),
        format!("/api/v1/channels/{HD}/preview.jpg"),
        "/playlist.m3u".to_owned(),
        "/xmltv.xml".to_owned(),
        "/discover.json".to_owned(),
        "/lineup.json".to_owned(),
        "/lineup_status.json".to_owned(),
        // Spelled differently, routed the same.
        format!("/%73tream/{HD}"),
        "/playlist%2Em3u".to_owned(),
    ] {
        assert_eq!(status(&base, &path).await, (401, "signature-required".into()), "{path}");
    }
    // hls.js sees the refusal only with the CORS origin on it.
    let refused = client()
        .get(format!("{base}/hls/{HD}/aac/index.m3u8"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.headers()["access-control-allow-origin"], "*");
    for path in ["/healthz", "/", "/metrics"] {
        assert_eq!(status(&base, path).await.0, 200, "{path}");
    }
    assert_eq!(demo.stats().active_streams.load(Ordering::Relaxed), 0, "nothing tuned");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_expired_and_unknown_key_urls_get_their_codes() {
    let demo = demo().await;
    let (running, base) = start_ready(&signed_config(&demo)).await;
    // The admin API mints a URL; it works as given.
    let minted = send_json(
        client()
            .post(format!("{base}/api/v1/sign"))
            .header("X-API-Token", ADMIN)
            .json(&json!({"path": "/playlist.m3u", "ttl": "10m"})),
    )
    .await;
    let path = minted["path"].as_str().unwrap().to_owned();
    let expires = minted["expires"].as_u64().unwrap();
    assert!((now() + 590..=now() + 600).contains(&expires), "{minted}");
    assert_eq!(minted["url"], format!("http://{PUBLIC_HOST}{path}"));
    assert_eq!(status(&base, &path).await.0, 200);
    // Another path with the same signature.
    let other = path.replace("/playlist.m3u", "/xmltv.xml");
    assert_eq!(status(&base, &other).await, (403, "signature-invalid".into()));
    // A later expiry.
    let later = path.replace(&format!("exp={expires}"), &format!("exp={}", expires + 3600));
    assert_eq!(status(&base, &later).await, (403, "signature-invalid".into()));
    // Expired: a correct signature whose time is up.
    let expired = signed_with(CURRENT, "/playlist.m3u", now() - 5);
    assert_eq!(status(&base, &expired).await, (403, "signature-expired".into()));
    // A key this server does not know; the old key still works.
    let stranger = signed_with("k9:0123456789abcdef0123456789abcdef", "/playlist.m3u", now() + 60);
    assert_eq!(status(&base, &stranger).await, (403, "signature-unknown-key".into()));
    let old = signed_with(OLD, "/playlist.m3u", now() + 60);
    assert_eq!(status(&base, &old).await.0, 200);
    // Minting needs the admin token.
    let refused = client()
        .post(format!("{base}/api/v1/sign"))
        .json(&json!({"path": "/playlist.m3u"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn playlists_list_links_signed_until_their_own_expiry() {
    let demo = demo().await;
    let (running, base) = start_ready(&signed_config(&demo)).await;
    let expires = now() + 300;
    let m3u_path = signed_with(CURRENT, "/playlist.m3u", expires);
    // A Host of the requester's choosing does not make it into the links.
    let m3u = send_text(client().get(format!("{base}{m3u_path}")).header("Host", "evil.example")).await;
    let streams: Vec<&str> = m3u.lines().filter(|l| l.contains("/stream/")).collect();
    assert!(!streams.is_empty(), "{m3u}");
    for link in &streams {
        assert!(link.contains(&format!("?exp={expires}&kid=k2&sig=")), "{link}");
    }
    let guide = m3u
        .split("x-tvg-url=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap();
    assert!(
        guide.starts_with(&format!("http://{PUBLIC_HOST}/xmltv.xml?exp={expires}&")),
        "{m3u}"
    );
    let xmltv = client().get(local(&base, guide)).send().await.unwrap();
    assert_eq!(xmltv.status().as_u16(), 200, "the guide link works as listed");
    // Each listed stream plays (HEAD: the signature is checked, nothing is tuned)...
    let hd = streams.iter().find(|l| l.contains(HD)).unwrap();
    let head = client().head(local(&base, hd)).send().await.unwrap();
    assert_eq!(head.status().as_u16(), 200);
    // ...and is signed for its own channel only.
    let other = hd.replace(HD, "1:0:1:6F0B:44D:1:C00000:0:0:0:");
    assert_eq!(status(&base, &local(&base, &other)[base.len()..]).await.0, 403);

    let discover = get_json(format!("{base}{}", signed_with(CURRENT, "/discover.json", expires))).await;
    let lineup_url = discover["LineupURL"].as_str().unwrap();
    assert!(
        lineup_url.starts_with(&format!("http://{PUBLIC_HOST}/lineup.json?exp={expires}&")),
        "{discover}"
    );
    for url in lineup_urls(local(&base, lineup_url)).await {
        assert!(
            url.contains(&format!("?profile=copy&exp={expires}&kid=k2&sig=")),
            "{url}"
        );
    }
    running.stop().await;
}

/// The URIs of a playlist's non-tag lines.
pub(crate) fn uris(playlist: &str) -> Vec<String> {
    playlist
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_signed_hls_clients_share_one_session() {
    let demo = demo().await;
    let (running, base) = start_ready(&signed_config(&demo)).await;
    let folder = format!("{base}/hls/{HD}/aac/");
    // Two clients, two signatures (different expiries) for the same session folder.
    let mut segments = Vec::new();
    for expires in [now() + 120, now() + 240] {
        let master_path = signed_with(CURRENT, &format!("/hls/{HD}/aac/index.m3u8"), expires);
        let query = master_path.split_once('?').unwrap().1.to_owned();
        let master = client().get(format!("{base}{master_path}")).send().await.unwrap();
        assert_eq!(master.status().as_u16(), 200);
        let master = master.text().await.unwrap();
        assert_eq!(uris(&master), [format!("media.m3u8?{query}")], "{master}");
        let media = get_text(format!("{folder}media.m3u8?{query}")).await;
        let listed = uris(&media);
        assert!(listed.len() >= xg2g::session::PLAYABLE_SEGMENTS, "{media}");
        for uri in &listed {
            assert!(uri.ends_with(&format!(".ts?{query}")), "{uri}");
        }
        segments.push(listed[0].clone());
    }
    for uri in &segments {
        let segment = client().get(format!("{folder}{uri}")).send().await.unwrap();
        assert_eq!(segment.status().as_u16(), 200, "{uri}");
        assert!(!segment.bytes().await.unwrap().is_empty());
    }
    // A segment without the signature is refused even while its session runs.
    let bare = segments[0].split_once('?').unwrap().0;
    assert_eq!(status(&folder, bare).await, (401, "signature-required".into()));
    assert_eq!(
        demo.stats().active_streams.load(Ordering::Relaxed),
        1,
        "one receiver connection for both clients"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_signatures_are_throttled_per_client_address() {
    let demo = demo().await;
    let (running, base) = start_ready(&signed_config(&demo)).await;
    let good = signed_with(CURRENT, "/playlist.m3u", now() + 60);
    let wrong = good.replace("/playlist.m3u", "/xmltv.xml");
    for attempt in 0..10 {
        assert_eq!(status(&base, &wrong).await.0, 403, "attempt {attempt}");
    }
    let throttled = client().get(format!("{base}{wrong}")).send().await.unwrap();
    assert_eq!(throttled.status().as_u16(), 429);
    let retry_after: u64 = throttled.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    assert_eq!(error_code(throttled).await, "signature-throttled");
    // While throttled, not even a good signature is checked.
    assert_eq!(status(&base, &good).await, (429, "signature-throttled".into()));
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_streams_need_no_signature_and_mint_none() {
    let demo = demo().await;
    let (running, base) = start_ready(&config_for(&demo, &[("api_token", ADMIN)])).await;
    assert_eq!(status(&base, "/playlist.m3u").await.0, 200);
    let m3u = get_text(format!("{base}/playlist.m3u")).await;
    assert!(!m3u.contains("sig="), "{m3u}");
    let refused = client()
        .post(format!("{base}/api/v1/sign"))
        .header("X-API-Token", ADMIN)
        .json(&json!({"path": "/playlist.m3u"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 409);
    assert_eq!(error_code(refused).await, "signing-off");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_admin_tokens_are_throttled_per_client_address() {
    let demo = demo().await;
    // Open streams: the admin API is guarded all the same.
    let (running, base) = start_ready(&config_for(&demo, &[("api_token", ADMIN)])).await;
    let refresh = |token: &'static str| {
        client()
            .post(format!("{base}/api/v1/refresh"))
            .header("X-API-Token", token)
            .send()
    };
    for attempt in 0..10 {
        assert_eq!(
            refresh("wrong").await.unwrap().status().as_u16(),
            403,
            "attempt {attempt}"
        );
    }
    let throttled = refresh("wrong").await.unwrap();
    assert_eq!(throttled.status().as_u16(), 429);
    let retry_after: u64 = throttled.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    assert_eq!(error_code(throttled).await, "admin-token-throttled");
    // While throttled, not even the right token is checked; a missing token costs nothing.
    assert_eq!(refresh(ADMIN).await.unwrap().status().as_u16(), 429);
    running.stop().await;
}
