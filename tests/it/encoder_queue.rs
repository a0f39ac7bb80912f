//! The encoder queue over HTTP against the demo receiver: with one slot a second `h264` session
//! waits for the first to end; a full queue answers 503 `encoder-queue-full` with `Retry-After`
//! at once; a waiter past `max_wait` gets 503 `encoder-queue-timeout`; a client that hangs up
//! leaves the line. Channel thumbnails: a 320-pixel JPEG (checked by ffprobe), cached, shown on
//! the page.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use xg2g::demo::{DemoReceiver, Port};

use crate::common::{client, config_for, demo, ffprobe, get_text, ready, start_app};

const HD: &str = "1:0:19:283D:3FB:1:C00000:0:0:0:";
const SD: &str = "1:0:1:6F0B:44D:1:C00000:0:0:0:";
/// The second SD channel (Münchner Lokalfernsehen).
const SD2: &str = "1:0:1:2EE3:441:1:C00000:0:0:0:";
const RADIO: &str = "1:0:2:2F1C:441:1:C00000:0:0:0:";

async fn metric(base: &str, series: &str) -> Option<f64> {
    let text = get_text(format!("{base}/metrics")).await;
    text.lines()
        .find_map(|line| line.strip_prefix(series))
        .and_then(|value| value.trim().parse().ok())
}

/// Polls `/metrics` until `series` has `value`, for at most 20 s.
async fn wait_for_metric(base: &str, series: &str, value: f64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = metric(base, series).await;
        if now == Some(value) {
            return;
        }
        assert!(Instant::now() < deadline, "{series} stayed {now:?}, expected {value}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const WAITING_NORMAL: &str = "xg2g_gpu_queue_size{priority=\"normal\"}";

fn h264(base: &str, channel: &str) -> String {
    format!("{base}/stream/{channel}?profile=h264")
}

/// An `h264` stream whose first bytes have arrived; the caller keeps it to keep the slot.
async fn start_h264(base: &str, channel: &str) -> reqwest::Response {
    let mut response = client().get(h264(base, channel)).send().await.unwrap();
    assert_eq!(response.status(), 200, "{channel}");
    assert!(response.chunk().await.unwrap().is_some_and(|c| !c.is_empty()));
    response
}

/// Reads a stream's body in the background, so that its viewer is not cut off for lagging and
/// its session (and slot) stays until the task is aborted.
fn keep_reading(response: reqwest::Response) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut body = response.bytes_stream();
        while let Some(Ok(_)) = body.next().await {}
    })
}

/// Reads the rest of a live body for `window` (a capture window) and probes the video.
async fn probe_video(response: reqwest::Response, window: Duration) -> (String, u64) {
    let mut body = response.bytes_stream();
    let mut bytes = Vec::new();
    let deadline = tokio::time::Instant::now() + window;
    while let Ok(Some(chunk)) = tokio::time::timeout_at(deadline, body.next()).await {
        bytes.extend_from_slice(&chunk.unwrap());
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.ts");
    std::fs::write(&path, &bytes[..bytes.len() / 188 * 188]).unwrap();
    let (json, _) = ffprobe(&path, &["-show_streams", "-select_streams", "v"], "error");
    let video = &json["streams"][0];
    (
        video["codec_name"].as_str().unwrap_or_default().to_owned(),
        video["width"].as_u64().unwrap_or_default(),
    )
}

async fn error_code(response: reqwest::Response) -> String {
    let body: serde_json::Value = response.json().await.unwrap();
    body["error"]["code"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_slot_a_second_h264_session_waits_for_the_first_to_end() {
    let demo = demo().await;
    let config = config_for(
        &demo,
        &[
            ("gpu_queue.workers", "1"),
            ("gpu_queue.max_wait", "60s"),
            ("streaming.idle_grace", "500ms"),
        ],
    );
    let (running, base) = start_app(&config).await;
    ready(&running).await;
    let first = start_h264(&base, SD).await;
    assert_eq!(metric(&base, "xg2g_gpu_queue_active_workers").await, Some(1.0));

    let second = tokio::spawn({
        let url = h264(&base, SD2);
        async move {
            let asked = Instant::now();
            let response = client().get(url).send().await.unwrap();
            (response, asked.elapsed())
        }
    });
    wait_for_metric(&base, WAITING_NORMAL, 1.0).await;
    assert!(!second.is_finished(), "the second session must wait for the slot");

    // The first viewer leaves: its session ends after the grace, and its slot goes on.
    let left = Instant::now();
    drop(first);
    let (response, waited) = tokio::time::timeout(Duration::from_secs(40), second)
        .await
        .expect("the second session starts once the slot is free")
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        left.elapsed() >= Duration::from_millis(500),
        "not before the first session's grace"
    );
    println!(
        "second h264 session: answered {} ms after the first viewer left, {} ms after asking",
        left.elapsed().as_millis(),
        waited.as_millis()
    );
    assert_eq!(metric(&base, WAITING_NORMAL).await, Some(0.0));
    assert_eq!(metric(&base, "xg2g_gpu_queue_active_workers").await, Some(1.0));
    assert_eq!(
        metric(&base, "xg2g_gpu_queue_wait_seconds_count{priority=\"normal\"}").await,
        Some(2.0)
    );
    let (codec, width) = probe_video(response, Duration::from_secs(3)).await;
    assert_eq!((codec.as_str(), width), ("h264", 1024), "SD 16:9 at its own height");
    for reason in ["full", "timeout", "cancelled"] {
        let series = format!("xg2g_gpu_queue_rejections_total{{reason=\"{reason}\"}}");
        assert_eq!(metric(&base, &series).await, Some(0.0), "{series}");
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_503_at_once_and_a_client_that_hangs_up_leaves_it() {
    let demo = demo().await;
    let config = config_for(
        &demo,
        &[
            ("gpu_queue.workers", "1"),
            ("gpu_queue.size", "1"),
            ("gpu_queue.max_wait", "60s"),
        ],
    );
    let (running, base) = start_app(&config).await;
    ready(&running).await;
    let first = keep_reading(start_h264(&base, SD).await);
    let waiting = tokio::spawn(client().get(h264(&base, SD2)).send());
    wait_for_metric(&base, WAITING_NORMAL, 1.0).await;

    let asked = Instant::now();
    let refused = client().get(h264(&base, HD)).send().await.unwrap();
    let took = asked.elapsed();
    assert_eq!(refused.status(), 503);
    assert!(
        took < Duration::from_secs(2),
        "refused at once, not after waiting: {took:?}"
    );
    let retry_after: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    // Until the waiter's deadline: at most max_wait, at least a second.
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(error_code(refused).await, "encoder-queue-full");
    assert_eq!(
        metric(&base, "xg2g_gpu_queue_rejections_total{reason=\"full\"}").await,
        Some(1.0)
    );

    // The waiting client hangs up: it leaves the line at once and frees its place.
    waiting.abort();
    let _ = waiting.await;
    wait_for_metric(&base, WAITING_NORMAL, 0.0).await;
    wait_for_metric(&base, "xg2g_gpu_queue_rejections_total{reason=\"cancelled\"}", 1.0).await;
    // A copy or aac session needs no slot: it starts while the slot is taken.
    let aac = client()
        .get(format!("{base}/stream/{SD2}?profile=aac"))
        .send()
        .await
        .unwrap();
    assert_eq!(aac.status(), 200);
    // Nor does joining the running h264 session.
    let joined = start_h264(&base, SD).await;
    drop(joined);
    assert_eq!(metric(&base, WAITING_NORMAL).await, Some(0.0));
    assert_eq!(metric(&base, "xg2g_gpu_queue_active_workers").await, Some(1.0));
    first.abort();
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_past_max_wait_gets_503_encoder_queue_timeout() {
    let demo = demo().await;
    let config = config_for(&demo, &[("gpu_queue.workers", "1"), ("gpu_queue.max_wait", "1s")]);
    let (running, base) = start_app(&config).await;
    ready(&running).await;
    let _first = start_h264(&base, SD).await;
    let asked = Instant::now();
    let refused = client().get(h264(&base, SD2)).send().await.unwrap();
    let waited = asked.elapsed();
    assert_eq!(refused.status(), 503);
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    assert_eq!(error_code(refused).await, "encoder-queue-timeout");
    assert_eq!(
        metric(&base, "xg2g_gpu_queue_rejections_total{reason=\"timeout\"}").await,
        Some(1.0)
    );
    assert_eq!(metric(&base, WAITING_NORMAL).await, Some(0.0));
    running.stop().await;
}

/// Requests for `channel` that reached the demo's stream ports.
fn receiver_requests(demo: &DemoReceiver, channel: &str) -> u64 {
    demo.requests(Port::Stream, channel) + demo.requests(Port::Relay, channel)
}

/// ffprobe's codec, width and height of a JPEG.
fn probe_jpeg(jpeg: &[u8]) -> (String, u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("preview.jpg");
    std::fs::write(&path, jpeg).unwrap();
    let (json, log) = ffprobe(&path, &["-show_streams"], "error");
    assert!(log.is_empty(), "ffprobe: {log}");
    let stream = &json["streams"][0];
    (
        stream["codec_name"].as_str().unwrap_or_default().to_owned(),
        stream["width"].as_u64().unwrap_or_default(),
        stream["height"].as_u64().unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thumbnails_are_320_wide_jpegs_cached_and_on_the_page() {
    let demo = demo().await;
    let (running, base) = start_app(&config_for(&demo, &[])).await;
    ready(&running).await;
    let http = client();
    let page = http.get(format!("{base}/")).send().await.unwrap().text().await.unwrap();
    let img = format!("<img class=\"thumb\" src=\"api/v1/channels/{SD}/preview.jpg\" alt=\"\"");
    assert!(page.contains(&img), "{img} in {page}");
    assert!(page.contains("loading=\"lazy\""));
    assert!(
        !page.contains(&format!("api/v1/channels/{RADIO}/")),
        "radio has no picture"
    );

    for (channel, name) in [(SD, "SD 576i"), (HD, "HD 720p")] {
        let url = format!("{base}/api/v1/channels/{channel}/preview.jpg");
        let started = Instant::now();
        let response = http.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200, "{name}");
        assert_eq!(response.headers()["content-type"], "image/jpeg");
        assert_eq!(response.headers()["cache-control"], "public, max-age=60");
        let jpeg = response.bytes().await.unwrap();
        println!(
            "{name} thumbnail: {} bytes in {} ms",
            jpeg.len(),
            started.elapsed().as_millis()
        );
        assert_eq!(&jpeg[..2], &[0xFF, 0xD8], "a JPEG starts with SOI");
        assert_eq!(probe_jpeg(&jpeg), ("mjpeg".to_owned(), 320, 180), "{name}");

        // Again: from the cache, without a request to the receiver.
        let before = receiver_requests(&demo, channel);
        let again = http.get(&url).send().await.unwrap();
        assert_eq!(again.status(), 200);
        assert_eq!(again.bytes().await.unwrap(), jpeg, "{name}: the cached picture");
        assert_eq!(
            receiver_requests(&demo, channel),
            before,
            "{name}: served from the cache"
        );
    }
    assert_eq!(
        metric(&base, "xg2g_gpu_queue_wait_seconds_count{priority=\"preview\"}").await,
        Some(2.0),
        "each thumbnail took a Preview slot once"
    );

    let radio = http
        .get(format!("{base}/api/v1/channels/{RADIO}/preview.jpg"))
        .send()
        .await
        .unwrap();
    assert_eq!(radio.status(), 404);
    assert_eq!(error_code(radio).await, "no-video");
    let unknown = http
        .get(format!("{base}/api/v1/channels/1:0:19:1:1:1:C00000:0:0:0:/preview.jpg"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    assert_eq!(error_code(unknown).await, "channel-not-found");
    running.stop().await;
}
