//! Picons: fetched from the demo receiver (or a configured base), cached, 404 as JSON when
//! missing or not a listed channel, 400 for a malformed reference; the PNG checked by ffprobe.

use std::sync::atomic::Ordering;

use serde_json::Value;
use xg2g::demo::{DemoOptions, DemoReceiver};

use crate::common::{client, config_for, demo, demo_with, ffprobe, ready, start_app};

const ERSTE: &str = "1:0:19:283D:3FB:1:C00000:0:0:0:";
const ORF1: &str = "1:0:19:132F:3EF:1:C00000:0:0:0:";
const BR_SUED: &str = "1:0:1:6F0B:44D:1:C00000:0:0:0:";

fn picon_requests(demo: &DemoReceiver) -> u64 {
    demo.stats().picon_requests.load(Ordering::SeqCst)
}

async fn get(url: &str) -> reqwest::Response {
    client().get(url).send().await.unwrap()
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Width and height of a PNG as ffprobe reads them.
fn probe_png(bytes: &[u8]) -> (String, u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("picon.png");
    std::fs::write(&path, bytes).unwrap();
    let (json, log) = ffprobe(&path, &["-show_streams"], "error");
    let stream = &json["streams"][0];
    assert!(log.trim().is_empty(), "ffprobe complains: {log}");
    (
        stream["codec_name"].as_str().unwrap_or_default().to_owned(),
        stream["width"].as_u64().unwrap_or_default(),
        stream["height"].as_u64().unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_picon_is_served_as_png_and_cached() {
    let demo = demo().await;
    let (running, base) = start_app(&config_for(&demo, &[("picons.cache_ttl", "1h")])).await;
    ready(&running).await;
    assert_eq!(picon_requests(&demo), 0);

    let first = get(&format!("{base}/picon/{ERSTE}.png")).await;
    assert_eq!(first.status(), 200);
    assert_eq!(header(&first, "content-type"), "image/png");
    assert_eq!(header(&first, "cache-control"), "public, max-age=3600");
    let png = first.bytes().await.unwrap();
    assert_eq!(probe_png(&png), ("png".to_owned(), 32, 32));
    assert_eq!(picon_requests(&demo), 1, "one request reached the receiver");

    // Again, and in the picon file spelling: both from the cache.
    let again = get(&format!("{base}/picon/{ERSTE}.png")).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.bytes().await.unwrap(), png);
    let underscored = get(&format!("{base}/picon/1_0_19_283D_3FB_1_C00000_0_0_0.png")).await;
    assert_eq!(underscored.status(), 200);
    assert_eq!(underscored.bytes().await.unwrap(), png);
    assert_eq!(picon_requests(&demo), 1, "the cache answered");

    // Another channel has its own picon.
    let orf = get(&format!("{base}/picon/{ORF1}.png")).await;
    assert_eq!(orf.status(), 200);
    assert_ne!(orf.bytes().await.unwrap(), png);
    assert_eq!(picon_requests(&demo), 2);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_picon_is_a_json_404_and_the_miss_is_cached() {
    let demo = demo().await;
    let (running, base) = start_app(&config_for(&demo, &[])).await;
    ready(&running).await;
    let missing = get(&format!("{base}/picon/{BR_SUED}.png")).await;
    assert_eq!(missing.status(), 404);
    assert!(header(&missing, "content-type").starts_with("application/json"));
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "picon-not-found");
    // An SD channel: service type 1 already, so one file name was tried.
    assert_eq!(picon_requests(&demo), 1);

    let again = get(&format!("{base}/picon/{BR_SUED}.png")).await;
    assert_eq!(again.status(), 404);
    assert_eq!(picon_requests(&demo), 1, "the miss was cached");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_references_are_400() {
    let demo = demo().await;
    let (running, base) = start_app(&config_for(&demo, &[])).await;
    ready(&running).await;
    for file in [
        "1:0:19:283D:3FB.png",
        "1:0:19:ZZZZ:3FB:1:C00000:0:0:0:.png",
        "1:7:1:0:0:0:0:0:0:0:.png",
        "1:0:19:283D:3FB:1:C00000:0:0:0:.jpg",
        "logo.png",
    ] {
        let response = get(&format!("{base}/picon/{file}")).await;
        assert_eq!(response.status(), 400, "{file}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid-service-ref", "{file}");
    }
    assert_eq!(picon_requests(&demo), 0, "nothing malformed reached the receiver");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_listed_channels_have_picons() {
    let demo = demo().await;
    let (running, base) = start_app(&config_for(&demo, &[])).await;
    ready(&running).await;
    // Well formed, but no channel of the list: the receiver is never asked.
    let unlisted = get(&format!("{base}/picon/1:0:19:1:1:1:C00000:0:0:0:.png")).await;
    assert_eq!(unlisted.status(), 404);
    let body: Value = unlisted.json().await.unwrap();
    assert_eq!(body["error"]["code"], "channel-not-found");
    assert_eq!(picon_requests(&demo), 0, "nothing unlisted reached the receiver");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_share_one_fetch() {
    let demo = demo().await;
    let (running, base) = start_app(&config_for(&demo, &[])).await;
    ready(&running).await;
    let url = format!("{base}/picon/{ORF1}.png");
    let answers = futures_util::future::join_all((0..8).map(|_| get(&url))).await;
    for answer in answers {
        assert_eq!(answer.status(), 200);
    }
    assert_eq!(picon_requests(&demo), 1);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_m3u_logo_links_work_with_receiver_credentials() {
    let demo = demo_with(DemoOptions {
        credentials: Some(("root".to_owned(), "dreambox".to_owned())),
        ..DemoOptions::default()
    })
    .await;
    let config = config_for(
        &demo,
        &[("receiver.username", "root"), ("receiver.password", "dreambox")],
    );
    let (running, base) = start_app(&config).await;
    ready(&running).await;
    let m3u = get(&format!("{base}/playlist.m3u")).await.text().await.unwrap();
    let logo = m3u
        .lines()
        .find(|l| l.contains(&format!("tvg-logo=\"{base}/picon/{ERSTE}.png\"")))
        .and_then(|l| l.split("tvg-logo=\"").nth(1))
        .and_then(|rest| rest.split('"').next())
        .expect("Das Erste's tvg-logo")
        .to_owned();
    let response = get(&logo).await;
    assert_eq!(response.status(), 200, "{logo}");
    assert_eq!(header(&response, "content-type"), "image/png");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_base_is_used() {
    let demo = demo().await;
    let picon_base = format!("{}/picon/", demo.api_url());
    let (running, base) = start_app(&config_for(&demo, &[("picons.base_url", &picon_base)])).await;
    ready(&running).await;
    let ok = get(&format!("{base}/picon/{ERSTE}.png")).await;
    assert_eq!(ok.status(), 200);
    assert_eq!(header(&ok, "content-type"), "image/png");
    let missing = get(&format!("{base}/picon/{BR_SUED}.png")).await;
    assert_eq!(missing.status(), 404);
    assert_eq!(picon_requests(&demo), 2);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_base_gives_502_and_is_asked_again() {
    let demo = demo().await;
    // A picon server that accepts and hangs up at once, counting connections.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let picon_base = format!("http://{}/logos", listener.local_addr().unwrap());
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = std::sync::Arc::clone(&connections);
    let server = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    let (running, base) = start_app(&config_for(&demo, &[("picons.base_url", &picon_base)])).await;
    ready(&running).await;
    let url = format!("{base}/picon/{ERSTE}.png");

    let failed = get(&url).await;
    assert_eq!(failed.status(), 502);
    assert!(header(&failed, "content-type").starts_with("application/json"));
    let body: Value = failed.json().await.unwrap();
    assert_eq!(body["error"]["code"], "picon-unavailable");
    let after_first = connections.load(Ordering::SeqCst);
    assert!(after_first >= 1, "the base was asked");

    let again = get(&url).await;
    assert_eq!(again.status(), 502);
    assert!(
        connections.load(Ordering::SeqCst) > after_first,
        "a failure is not cached"
    );
    assert_eq!(picon_requests(&demo), 0, "the receiver is not asked when a base is set");
    running.stop().await;
    server.abort();
}
