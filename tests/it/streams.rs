//! `/stream/{ref}`: every profile on the HD, SD and radio channels, checked with ffprobe and
//! ffmpeg; sharing, slow clients, lifecycle and upstream faults against the demo receiver.

use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use xg2g::demo::{DemoReceiver, StreamFault};

use crate::common::{capture, client, config_for, demo, ffprobe, ready, start_app};

const HD: &str = "1:0:19:283D:3FB:1:C00000:0:0:0:";
const SD: &str = "1:0:1:6F0B:44D:1:C00000:0:0:0:";
const RADIO: &str = "1:0:2:2F1C:441:1:C00000:0:0:0:";

/// (codec, profile, sample rate, channels, width) of each stream ffprobe finds.
type Found = Vec<(String, String, Option<u64>, Option<u64>, Option<u64>)>;

fn probe(bytes: &[u8]) -> (Found, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.ts");
    // Cut to whole packets, and drop the last second's worth that a timeout may have cut.
    std::fs::write(&path, &bytes[..bytes.len() / 188 * 188]).unwrap();
    let (json, _) = ffprobe(&path, &["-show_streams"], "error");
    let found = json["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["codec_name"].as_str().unwrap_or_default().to_owned(),
                s["profile"].as_str().unwrap_or_default().to_owned(),
                s["sample_rate"].as_str().and_then(|r| r.parse().ok()),
                s["channels"].as_u64(),
                s["width"].as_u64(),
            )
        })
        .collect();
    // Decode everything; errors other than a mid-GOP start or the cut end mean broken output.
    let decode = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&path)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    (found, String::from_utf8_lossy(&decode.stderr).into_owned())
}

/// Decoding from the first byte shows no error but the few of a capture cut by its time window
/// (a partial last frame). A stream that starts mid-GOP fails here: the decoder reports missing
/// parameter sets (`non-existing PPS`, `decode_slice_header error`, `no frame!`) until the next
/// key frame.
fn assert_decodes_cleanly(profile: &str, channel: &str, errors: &str) {
    let mid_gop = ["non-existing PPS", "decode_slice_header", "no frame!"];
    assert!(
        !errors.lines().any(|l| mid_gop.iter().any(|m| l.contains(m))),
        "{profile} on {channel} starts mid-GOP:\n{errors}"
    );
    assert!(
        errors.lines().count() <= 3,
        "{profile} on {channel} decodes with errors:\n{errors}"
    );
}

fn aac() -> (String, String, Option<u64>, Option<u64>, Option<u64>) {
    ("aac".into(), "LC".into(), Some(48_000), Some(2), None)
}

fn video(codec: &str, profile: &str, width: u64) -> (String, String, Option<u64>, Option<u64>, Option<u64>) {
    (codec.into(), profile.into(), None, None, Some(width))
}

async fn stream(base: &str, channel: &str, profile: &str) -> Vec<u8> {
    capture(
        &format!("{base}/stream/{channel}?profile={profile}"),
        Duration::from_secs(3),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_profile_on_hd_sd_and_radio() {
    let demo = demo().await;
    let (running, base) = start_app(&config_for(&demo, &[])).await;
    ready(&running).await;
    let cases: Vec<(&str, &str, Found)> = vec![
        ("aac", HD, vec![video("h264", "High", 1280), aac()]),
        // The SD channel's AC-3 5.1 (preferred over MP2) is downmixed to stereo.
        ("aac", SD, vec![video("mpeg2video", "Main", 720), aac()]),
        ("aac", RADIO, vec![aac()]),
        // Deinterlaced by the encoder the machine has (x264 here), never upscaled: 576i 16:9
        // becomes 1024x576 with square pixels.
        ("h264", SD, vec![video("h264", "High", 1024), aac()]),
        ("h264", RADIO, vec![aac()]),
    ];
    for (profile, channel, want) in cases {
        let bytes = stream(&base, channel, profile).await;
        let (found, errors) = probe(&bytes);
        assert_eq!(found, want, "{profile} on {channel}");
        assert_decodes_cleanly(profile, channel, &errors);
    }
    for (channel, want) in [
        (HD, &["h264", "mp2", "ac3"][..]),
        (SD, &["mpeg2video", "mp2", "ac3"][..]),
        (RADIO, &["mp2"][..]),
    ] {
        let copy = stream(&base, channel, "copy").await;
        let (found, errors) = probe(&copy);
        // The receiver's stream starts mid-GOP; the session's first client starts at a key frame.
        assert_decodes_cleanly("copy", channel, &errors);
        let codecs: Vec<&str> = found.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(codecs, want, "copy keeps every stream of {channel}");
    }
    // The HD channel transcoded too: 720p50 H.264 in, H.264 at the same size out.
    let (found, _) = probe(&stream(&base, HD, "h264").await);
    assert_eq!(found, [video("h264", "High", 1280), aac()]);
    running.stop().await;
}

fn connections(demo: &DemoReceiver) -> u64 {
    demo.stats().stream_connections.load(Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_share_one_receiver_connection_and_slow_ones_are_dropped() {
    let demo = demo().await;
    let (running, base) = start_app(&config_for(
        &demo,
        &[("streaming.max_client_lag", "1s"), ("streaming.idle_grace", "1s")],
    ))
    .await;
    ready(&running).await;
    let url = format!("{base}/stream/{HD}?profile=aac");
    let before = connections(&demo);
    // The slow client: a raw socket with a small receive buffer that reads nothing.
    let http = client();
    let fast = http.get(&url).send().await.unwrap();
    assert_eq!(fast.status(), 200);
    // Port detection probed once and the session connected once; nothing more from here on.
    let after_first = connections(&demo);
    assert!(after_first - before <= 2);

    // The slow client: a raw socket with a small receive buffer that reads only the head.
    let addr = running.addr();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut slow = socket.connect(addr).await.unwrap();
    slow.write_all(format!("GET /stream/{HD}?profile=aac HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = [0u8; 12];
    slow.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    assert_eq!(connections(&demo), after_first, "two viewers, one receiver connection");

    // The fast client reads for 10 s while the slow one reads nothing.
    let mut fast_body = fast.bytes_stream();
    let mut fast_bytes = 0usize;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while let Ok(Some(chunk)) = tokio::time::timeout_at(deadline, fast_body.next()).await {
        fast_bytes += chunk.unwrap().len();
    }
    assert!(fast_bytes > 500_000, "the fast client kept playing: {fast_bytes} bytes");
    // The slow client fell more than max_client_lag behind: xg2g ended its response, so
    // draining its buffers reaches the end of the stream.
    let mut slow_bytes = 0usize;
    let mut buf = vec![0u8; 65_536];
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match slow.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => slow_bytes += n,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the slow client's stream was ended");
    assert!(
        slow_bytes < fast_bytes,
        "the slow client got less ({slow_bytes}) than the fast one ({fast_bytes})"
    );
    drop(fast_body);

    // Last client gone: session and receiver connection gone within grace + 1 s.
    let gone = tokio::time::timeout(Duration::from_millis(2_000 + 1_000), async {
        while demo.stats().active_streams.load(Ordering::Relaxed) > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(gone.is_ok(), "receiver connection closed within grace + 1 s");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_head_and_receiver_faults() {
    let demo = demo().await;
    let (running, base) = start_app(&config_for(
        &demo,
        &[
            ("streaming.stall_timeout", "1s"),
            ("streaming.reconnect_attempts", "5"),
            ("streaming.start_timeout", "2s"),
        ],
    ))
    .await;
    ready(&running).await;
    let http = client();
    let code = |body: serde_json::Value| body["error"]["code"].as_str().unwrap_or_default().to_owned();

    let bad = http
        .get(format!("{base}/stream/1:0:19:XYZ:3FB:1:C00000:0:0:0:"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(code(bad.json().await.unwrap()), "invalid-service-ref");
    let unknown = http
        .get(format!("{base}/stream/1:0:19:1:1:1:C00000:0:0:0:"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    assert_eq!(code(unknown.json().await.unwrap()), "channel-not-found");
    let profile = http
        .get(format!("{base}/stream/{HD}?profile=nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(profile.status(), 404);
    assert_eq!(code(profile.json().await.unwrap()), "profile-not-found");
    let twice = http
        .get(format!("{base}/stream/{HD}?profile=aac&profile=copy"))
        .send()
        .await
        .unwrap();
    assert_eq!(twice.status(), 400);
    let body: serde_json::Value = twice.json().await.expect("a JSON error, not plain text");
    assert_eq!(code(body.clone()), "invalid-parameter", "{body}");

    let before = connections(&demo);
    let head = http.head(format!("{base}/stream/{HD}")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-type"], "video/mp2t");
    assert_eq!(connections(&demo), before, "HEAD never touches the receiver");

    demo.set_faults(|f| {
        f.streams.insert(SD.into(), StreamFault::NotFound);
    });
    let missing = http
        .get(format!("{base}/stream/{SD}?profile=aac"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 502);
    let body: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(code(body.clone()), "upstream-unavailable");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        !message.contains(&demo.stream_addr().port().to_string()) && !message.contains("HTTP 404"),
        "the receiver's address stays in the log: {message}"
    );

    // Every tuner busy: the receiver answers 200 and sends nothing. 503 no-tuner once the start
    // timeout is up, with a Retry-After; bytes that are no stream are a 502 instead.
    demo.set_faults(|f| {
        f.streams.insert(SD.into(), StreamFault::StallAfter(0));
    });
    let busy = http
        .get(format!("{base}/stream/{SD}?profile=aac"))
        .send()
        .await
        .unwrap();
    let status = busy.status();
    let headers = busy.headers().clone();
    let body: serde_json::Value = busy.json().await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(headers["retry-after"], "30");
    assert_eq!(code(body), "no-tuner");
    demo.set_faults(|f| {
        f.streams.insert(SD.into(), StreamFault::Garbage);
    });
    let garbage = http
        .get(format!("{base}/stream/{SD}?profile=aac"))
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), 502);
    assert_eq!(code(garbage.json().await.unwrap()), "upstream-unavailable");

    // A receiver that stalls after 300 kB: xg2g reconnects and the client keeps receiving.
    demo.set_faults(|f| {
        f.streams.insert(HD.into(), StreamFault::StallAfter(300_000));
    });
    let before = connections(&demo);
    let bytes = capture(&format!("{base}/stream/{HD}?profile=copy"), Duration::from_secs(5)).await;
    assert!(
        bytes.len() > 400_000,
        "the stream continued after the stall: {} bytes",
        bytes.len()
    );
    assert!(connections(&demo) - before >= 2, "xg2g reconnected");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_every_session_and_its_pipeline_quickly() {
    let demo = demo().await;
    let (running, base) = start_app(&config_for(&demo, &[("shutdown_timeout", "20s")])).await;
    ready(&running).await;
    let http = client();
    let mut bodies = Vec::new();
    for channel in [HD, SD, RADIO] {
        let response = http
            .get(format!("{base}/stream/{channel}?profile=aac"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        bodies.push(response.bytes_stream());
    }
    assert_eq!(demo.stats().active_streams.load(Ordering::Relaxed), 3);
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(10), running.stop())
        .await
        .expect("stop does not wait out the drain timeout");
    // Clients see a clean end of their streams.
    for mut body in bodies {
        let end = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(chunk) = body.next().await {
                if chunk.is_err() {
                    break;
                }
            }
        })
        .await;
        assert!(end.is_ok(), "a client stream ended");
    }
    let gone = tokio::time::timeout(Duration::from_secs(5), async {
        while demo.stats().active_streams.load(Ordering::Relaxed) > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(gone.is_ok(), "every receiver connection closed");
    eprintln!("shutdown with three sessions took {:?}", started.elapsed());
}

/// A receiver that drops the connection every 300 kB: TS clients stay on their connection, and
/// what they receive stays one stream — no continuity break on any PID (ffprobe), the new
/// connection's first PCR flagged with the discontinuity indicator, each splice resuming at a
/// key frame (no mid-GOP decode errors). What a drop cuts short stays short: the last frame of
/// each stream before a splice is truncated (a few decode errors per splice, allowed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_are_marked_splices_for_ts_clients() {
    let demo = demo().await;
    let (running, base) = start_app(&config_for(
        &demo,
        &[
            ("streaming.stall_timeout", "1s"),
            ("streaming.reconnect_attempts", "10"),
        ],
    ))
    .await;
    ready(&running).await;
    demo.set_faults(|f| {
        f.streams.insert(HD.into(), StreamFault::DropAfter(300_000));
    });
    for profile in ["copy", "aac"] {
        let before = connections(&demo);
        let bytes = capture(&format!("{base}/stream/{HD}?profile={profile}"), Duration::from_secs(7)).await;
        let reconnects = connections(&demo) - before - 1;
        assert!(reconnects >= 1, "{profile}: the receiver dropped and xg2g reconnected");
        let whole = &bytes[..bytes.len() / 188 * 188];
        let flagged = whole
            .chunks_exact(188)
            .filter(|p| p[3] & 0x20 != 0 && p[4] > 0 && p[5] & 0x90 == 0x90)
            .count();
        assert!(
            flagged >= 1,
            "{profile}: a PCR with the discontinuity indicator after each splice"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spliced.ts");
        std::fs::write(&path, whole).unwrap();
        let (_, log) = ffprobe(
            &path,
            &["-show_packets", "-show_entries", "packet=stream_index"],
            "debug",
        );
        let breaks: Vec<&str> = log.lines().filter(|l| l.contains("Continuity check failed")).collect();
        assert!(
            breaks.is_empty(),
            "{profile}: {} reconnects, continuity breaks:\n{}",
            reconnects,
            breaks.join("\n")
        );
        let (_, errors) = probe(whole);
        let mid_gop = ["non-existing PPS", "decode_slice_header", "no frame!"];
        assert!(
            !errors.lines().any(|l| mid_gop.iter().any(|m| l.contains(m))),
            "{profile}: a splice resumed mid-GOP:\n{errors}"
        );
        let lines = errors.lines().count() as u64;
        assert!(
            lines <= 3 + 4 * reconnects,
            "{profile}: {reconnects} reconnects, errors:\n{errors}"
        );
        println!("{profile}: {reconnects} reconnects, {flagged} flagged PCRs, {lines} decode error lines");
    }
    running.stop().await;
}
