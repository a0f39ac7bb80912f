//! Shared fixtures: a demo receiver and an xg2g app started against it.
#![allow(dead_code)]

use std::process::Command;
use std::time::Duration;

use futures_util::StreamExt;
use xg2g::app::{self, Running};
use xg2g::config::{self, Config, Override, Requirements, Sources};
use xg2g::demo::{DemoOptions, DemoReceiver};

/// Starts a demo receiver on ephemeral loopback ports, with light media unless
/// `XG2G_TEST_DEMO_BITRATE=broadcast` asks for the broadcast bitrates (a run by hand).
pub async fn demo() -> DemoReceiver {
    let bitrate = match std::env::var("XG2G_TEST_DEMO_BITRATE").as_deref() {
        Ok("broadcast") => xg2g::demo::DemoBitrate::Broadcast,
        _ => xg2g::demo::DemoBitrate::Light,
    };
    demo_with(DemoOptions {
        bitrate,
        ..Default::default()
    })
    .await
}

pub async fn demo_with(options: DemoOptions) -> DemoReceiver {
    DemoReceiver::start(options).await.expect("demo receiver starts")
}

/// The config xg2g gets for a demo receiver: defaults, listen on an ephemeral port, no env.
pub fn config_for(demo: &DemoReceiver, extra: &[(&str, &str)]) -> Config {
    let mut overrides = vec![
        Override::new("listen", "127.0.0.1:0", "test"),
        Override::new("receiver.base_url", demo.api_url(), "test"),
        Override::new("receiver.stream_port", demo.stream_addr().port().to_string(), "test"),
        Override::new("receiver.relay_port", demo.relay_addr().port().to_string(), "test"),
        Override::new("receiver.retry_backoff", "10ms", "test"),
    ];
    for (k, v) in extra {
        overrides.push(Override::new(*k, *v, "test"));
    }
    let no_env = |_: &str| None;
    let sources = Sources {
        file: None,
        env: &no_env,
        overrides,
    };
    config::load(&sources, Requirements::Receiver)
        .expect("test config is valid")
        .config
}

pub async fn start_app(config: &Config) -> (Running, String) {
    // `XG2G_TEST_LOG=xg2g=debug cargo test … -- --nocapture` shows the app's logs.
    if let Ok(filter) = std::env::var("XG2G_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    }
    let running = app::start(config).await.expect("xg2g starts");
    let base = format!("http://{}", running.addr());
    (running, base)
}

/// Waits, bounded, for the channel list to load.
pub async fn ready(running: &Running) {
    let mut catalog = running.catalog();
    tokio::time::timeout(Duration::from_secs(30), catalog.ready())
        .await
        .expect("catalog loads within 30 s");
}

/// Starts xg2g on `config` and waits, bounded, for its channel list: the app and its base URL.
pub async fn start_ready(config: &Config) -> (Running, String) {
    let (running, base) = start_app(config).await;
    ready(&running).await;
    (running, base)
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// Sends `request` and returns its body as text (any status).
pub async fn send_text(request: reqwest::RequestBuilder) -> String {
    request.send().await.expect("request").text().await.expect("text body")
}

/// GET `url` and return its body as text (any status).
pub async fn get_text(url: impl reqwest::IntoUrl) -> String {
    send_text(client().get(url)).await
}

/// Sends `request` and returns its body as JSON (any status).
pub async fn send_json(request: reqwest::RequestBuilder) -> serde_json::Value {
    request.send().await.expect("request").json().await.expect("JSON body")
}

/// GET `url` and return its body as JSON (any status).
pub async fn get_json(url: impl reqwest::IntoUrl) -> serde_json::Value {
    send_json(client().get(url)).await
}

/// The stream URLs (`URL` of each entry) of the HDHomeRun lineup at `url`.
pub async fn lineup_urls(url: impl reqwest::IntoUrl) -> Vec<String> {
    let lineup = get_json(url).await;
    let entries = lineup.as_array().expect("the lineup is an array");
    entries
        .iter()
        .map(|entry| entry["URL"].as_str().expect("each entry has a URL").to_owned())
        .collect()
}

/// The `error.code` of a response's JSON error body.
pub async fn error_code(response: reqwest::Response) -> serde_json::Value {
    let body: serde_json::Value = response.json().await.expect("JSON body");
    body["error"]["code"].clone()
}

/// Reads a live stream for `duration` of wall time (a capture window, not synchronisation).
pub async fn capture(url: &str, duration: Duration) -> Vec<u8> {
    let response = client().get(url).send().await.expect("stream request");
    assert!(response.status().is_success(), "{url}: {}", response.status());
    let mut body = response.bytes_stream();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + duration;
    while let Ok(Some(chunk)) = tokio::time::timeout_at(deadline, body.next()).await {
        out.extend_from_slice(&chunk.expect("stream chunk"));
    }
    out
}

/// Runs ffprobe on a file and returns its JSON and its log at the given level.
pub fn ffprobe(path: &std::path::Path, args: &[&str], loglevel: &str) -> (serde_json::Value, String) {
    let output = Command::new("ffprobe")
        .args(["-hide_banner", "-loglevel", loglevel, "-of", "json"])
        .args(args)
        .arg(path)
        .output()
        .expect("ffprobe runs (install ffmpeg)");
    let json = serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null);
    (json, String::from_utf8_lossy(&output.stderr).into_owned())
}

/// The first decoded video frame of a file, by ffprobe: its `key_frame` and `pict_type`.
pub fn first_video_frame(path: &std::path::Path) -> serde_json::Value {
    let (frames, _) = ffprobe(
        path,
        &[
            "-select_streams",
            "v",
            "-show_frames",
            "-read_intervals",
            "%+#1",
            "-show_entries",
            "frame=key_frame,pict_type",
        ],
        "error",
    );
    frames["frames"][0].clone()
}

/// Waits (30 s at most) until the catalog has its guide, and returns it.
pub async fn guide_loaded(running: &xg2g::app::Running) -> std::sync::Arc<xg2g::catalog::Catalog> {
    let mut catalog = running.catalog();
    let snapshot = tokio::time::timeout(
        Duration::from_secs(30),
        catalog.wait_until(|s| s.catalog.as_ref().is_some_and(|c| !c.guide.is_empty())),
    )
    .await
    .expect("the guide loads within 30 s");
    snapshot.catalog.expect("checked by the predicate")
}
