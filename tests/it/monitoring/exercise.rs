//! What the tests run against xg2g: their config, and the exercise of every feature whose
//! metrics the rules and dashboards read, with the requests it makes.

use std::time::Duration;

use xg2g::demo::{DemoReceiver, PortFault};

use super::{HD, MUNICH, ORF1, RADIO, SD, TOKEN, UNKNOWN};
use crate::common::{client, config_for};

pub(super) async fn metrics_text(base: &str) -> String {
    let response = client().get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

async fn expect_status(request: reqwest::RequestBuilder, want: u16) {
    let response = request.send().await.unwrap();
    let url = response.url().clone();
    assert_eq!(response.status().as_u16(), want, "{url}");
    let _ = response.bytes().await;
}

/// Reads a live stream until `bytes` have come (bounded), then keeps the response open.
pub(super) async fn first_bytes(url: &str, bytes: usize) -> reqwest::Response {
    let mut response = client().get(url).send().await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    let mut got = 0;
    tokio::time::timeout(Duration::from_secs(30), async {
        while got < bytes {
            match response.chunk().await {
                Ok(Some(chunk)) => got += chunk.len(),
                other => panic!("{url}: the stream ended after {got} bytes: {other:?}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{url}: {got} of {bytes} bytes in 30 s"));
    response
}

/// The config of both tests: a token for the refresh API, a breaker that opens on the first
/// failure, ports probed at every start, and a limit of one new copy-profile session a second
/// (the exercise trips the breaker and the limit).
pub(super) fn config(demo: &DemoReceiver) -> xg2g::config::Config {
    config_for(
        demo,
        &[
            ("api_token", TOKEN),
            ("circuit_breaker.threshold", "1"),
            // Every stream start probes again, so the last step can make a probe fail.
            ("receiver.detection_ttl", "1ms"),
            // Host statistics within the exercise's first second, not after the default 5 s.
            ("gpu.stats_interval", "250ms"),
            ("rate_limit.mode_standard", "1"),
        ],
    )
}

/// Runs each feature whose metrics the rules and dashboards read: pages, playlist, guide,
/// tuner, picon, port detection, a refresh, a 404, an HLS session, a video transcode (profile
/// `h264`, the mode the GPU panels show), a failed probe that opens the stream port's breaker,
/// rate-limited session starts, and an audio-proxy TS session that is returned still open (one
/// session, one client).
pub(super) async fn exercise(base: &str, demo: &DemoReceiver) -> reqwest::Response {
    let http = client();
    for path in [
        "/",
        "/playlist.m3u",
        "/xmltv.xml",
        "/readyz",
        "/discover.json",
        "/lineup.json",
    ] {
        expect_status(http.get(format!("{base}{path}")), 200).await;
    }
    expect_status(http.get(format!("{base}/picon/{HD}.png")), 200).await;
    expect_status(http.get(format!("{base}/api/v1/channels/{HD}/source")), 200).await;
    expect_status(http.get(format!("{base}/stream/{UNKNOWN}")), 404).await;
    expect_status(http.post(format!("{base}/api/v1/refresh")).bearer_auth(TOKEN), 200).await;
    expect_status(http.get(format!("{base}/hls/{HD}/aac/index.m3u8")), 200).await;
    // A video transcode: delivered bytes mean the encoder ran and its latency was sampled.
    drop(first_bytes(&format!("{base}/stream/{SD}?profile=h264"), 256 * 1024).await);
    let open = first_bytes(&format!("{base}/stream/{HD}?profile=aac"), 64 * 1024).await;

    // Five new copy-profile sessions at once against a limit of one a second with a burst of
    // two: some are answered 429. (Joining a running session is free: five different channels.)
    let starts =
        [HD, SD, MUNICH, RADIO, ORF1].map(|channel| http.get(format!("{base}/stream/{channel}?profile=copy")).send());
    let statuses: Vec<u16> = futures_util::future::join_all(starts)
        .await
        .into_iter()
        .map(|response| response.unwrap().status().as_u16())
        .collect();
    assert!(statuses.contains(&429), "five copy starts at once: {statuses:?}");

    // The stream port refuses one probe: a detection error, the breaker opens (threshold 1) and
    // the relay answers instead.
    demo.set_faults(|f| f.stream_port = Some(PortFault::Refuse));
    expect_status(http.get(format!("{base}/api/v1/channels/{RADIO}/source")), 200).await;
    demo.set_faults(|f| f.stream_port = None);
    open
}
