//! HLS against the demo receiver: playlists checked against the Apple rules of REFERENCE.md §2
//! by a test-side checker, every segment probed with ffprobe (codecs, IDR first).

mod channel;
mod ladder_reconnect;
mod playlist;

use std::sync::atomic::Ordering;
use std::time::Duration;

use xg2g::demo::StreamFault;

use crate::common::{client, config_for, demo, ffprobe, ready, start_app};
use channel::check_channel;
use playlist::{check_media, text};

const HD: &str = "1:0:19:283D:3FB:1:C00000:0:0:0:";
const SD: &str = "1:0:1:6F0B:44D:1:C00000:0:0:0:";
const RADIO: &str = "1:0:2:2F1C:441:1:C00000:0:0:0:";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hls_follows_the_apple_rules_on_hd_sd_and_radio() {
    let demo = demo().await;
    let (running, base) = start_app(&config_for(&demo, &[])).await;
    ready(&running).await;
    tokio::join!(
        // HD H.264: video copied, audio to AAC.
        check_channel(base.clone(), HD, &["h264", "aac"]),
        // SD MPEG-2 576i: `auto` transcodes to H.264 576p50.
        check_channel(base.clone(), SD, &["h264", "aac"]),
        check_channel(base.clone(), RADIO, &["aac"]),
    );
    let missing = client()
        .get(format!("{base}/hls/{HD}/auto/99999.ts"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404, "a segment outside the window");
    let body: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "segment-not-found");
    let none = client().get(format!("{base}/hls/{HD}/h264/3.ts")).send().await.unwrap();
    // `auto` on the HD channel runs the `aac` session; nothing runs `h264` for it.
    assert_eq!(
        none.status(),
        404,
        "no session runs for this profile: segments never start one"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_marks_a_discontinuity_and_idle_sessions_end() {
    let demo = demo().await;
    let (running, base) = start_app(&config_for(
        &demo,
        &[
            ("streaming.stall_timeout", "1s"),
            ("streaming.reconnect_attempts", "10"),
            ("hls.idle_timeout", "2s"),
        ],
    ))
    .await;
    ready(&running).await;
    // The receiver stalls after ~5 s of this channel; xg2g reconnects and HLS marks it.
    demo.set_faults(|f| {
        f.streams.insert(HD.into(), StreamFault::StallAfter(700_000));
    });
    let url = format!("{base}/hls/{HD}/aac/media.m3u8");
    let mut marked = false;
    for _ in 0..60 {
        let (status, body) = text(&url).await;
        assert_eq!(status, 200, "{body}");
        let media = check_media(&body);
        if media.segments.iter().any(|s| s.2) {
            marked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(marked, "a discontinuity follows the reconnect");
    assert!(demo.stats().stream_connections.load(Ordering::Relaxed) >= 2);
    // Nobody fetches any more: the session ends after the idle timeout and lets go of the receiver.
    let gone = tokio::time::timeout(Duration::from_secs(2 + 1 + 1), async {
        while demo.stats().active_streams.load(Ordering::Relaxed) > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        gone.is_ok(),
        "the receiver connection closed after the HLS idle timeout"
    );
    running.stop().await;
}

/// Every HLS profile on every kind of channel: the first segment's codecs (the full Apple check
/// runs above for `auto`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hls_profile_on_hd_sd_and_radio() {
    let demo = demo().await;
    let (running, base) = start_app(&config_for(&demo, &[("hls.idle_timeout", "1s")])).await;
    ready(&running).await;
    let dir = tempfile::tempdir().unwrap();
    // Video copied: MPEG-2 would stay MPEG-2, which no HLS player decodes: refused, naming
    // the profile that plays (`auto` picks it).
    let (status, body) = text(&format!("{base}/hls/{SD}/aac/media.m3u8")).await;
    assert_eq!(status, 422, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"]["code"], "profile-unplayable");
    assert!(body["error"]["message"].as_str().unwrap().contains("`h264`"), "{body}");
    let cases: [(&str, &str, &[&str]); 5] = [
        ("aac", HD, &["h264", "aac"]),
        ("aac", RADIO, &["aac"]),
        ("h264", HD, &["h264", "aac"]),
        ("h264", SD, &["h264", "aac"]),
        ("h264", RADIO, &["aac"]),
    ];
    for (profile, channel, want) in cases {
        let (status, media) = text(&format!("{base}/hls/{channel}/{profile}/media.m3u8")).await;
        assert_eq!(status, 200, "{profile} on {channel}: {media}");
        let media = check_media(&media);
        let (_, uri, _) = media.segments.first().expect("a first segment");
        let response = client()
            .get(format!("{base}/hls/{channel}/{profile}/{uri}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{profile} on {channel}: {uri}");
        let path = dir.path().join(format!("{profile}-{}.ts", channel.replace(':', "_")));
        std::fs::write(&path, response.bytes().await.unwrap()).unwrap();
        let (json, _) = ffprobe(&path, &["-show_streams"], "error");
        let codecs: Vec<&str> = json["streams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["codec_name"].as_str().unwrap())
            .collect();
        assert_eq!(codecs, want, "{profile} on {channel}");
    }
    let copy = client()
        .get(format!("{base}/hls/{HD}/copy/index.m3u8"))
        .send()
        .await
        .unwrap();
    assert_eq!(copy.status(), 404, "copy has no HLS output");
    running.stop().await;
}

/// Players on other sites: the configured origin on playlists, segments and errors, and
/// preflights answered without starting anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_on_playlists_segments_and_preflights() {
    let demo = demo().await;
    let (running, base) = start_app(&config_for(&demo, &[])).await;
    ready(&running).await;
    let http = client();
    let origin = |r: &reqwest::Response| {
        r.headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let preflight = http
        .request(reqwest::Method::OPTIONS, format!("{base}/hls/{HD}/aac/index.m3u8"))
        .header("Origin", "https://player.example")
        .header("Access-Control-Request-Method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    assert_eq!(origin(&preflight).as_deref(), Some("*"));
    assert!(
        preflight.headers()["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("GET")
    );
    assert_eq!(
        demo.stats().stream_connections.load(Ordering::Relaxed),
        0,
        "a preflight starts no session"
    );
    let master = http
        .get(format!("{base}/hls/{HD}/aac/index.m3u8"))
        .send()
        .await
        .unwrap();
    assert_eq!(master.status(), 200);
    assert_eq!(origin(&master).as_deref(), Some("*"));
    let media = http
        .get(format!("{base}/hls/{HD}/aac/media.m3u8"))
        .send()
        .await
        .unwrap();
    assert_eq!(origin(&media).as_deref(), Some("*"));
    let body = media.text().await.unwrap();
    let first = check_media(&body).segments[0].1.clone();
    let segment = http.get(format!("{base}/hls/{HD}/aac/{first}")).send().await.unwrap();
    assert_eq!(segment.status(), 200);
    assert_eq!(origin(&segment).as_deref(), Some("*"));
    let missing = http.get(format!("{base}/hls/{HD}/aac/99999.ts")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        origin(&missing).as_deref(),
        Some("*"),
        "errors too, so players can read them"
    );
    running.stop().await;

    // One configured origin; empty sends none.
    let (running, base) = start_app(&config_for(&demo, &[("hls.cors_origin", "https://tv.example.org")])).await;
    ready(&running).await;
    let one = http.get(format!("{base}/hls/{HD}/aac/99999.ts")).send().await.unwrap();
    assert_eq!(origin(&one).as_deref(), Some("https://tv.example.org"));
    assert_eq!(one.headers()["vary"], "Origin");
    running.stop().await;
    let (running, base) = start_app(&config_for(&demo, &[("hls.cors_origin", "")])).await;
    ready(&running).await;
    let none = http.get(format!("{base}/hls/{HD}/aac/99999.ts")).send().await.unwrap();
    assert_eq!(origin(&none), None);
    running.stop().await;
}

/// `_HLS_msn`: a playlist request for the next segment is answered once it exists; one too far
/// ahead is a client error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_playlist_reload() {
    let demo = demo().await;
    let (running, base) = start_app(&config_for(&demo, &[])).await;
    ready(&running).await;
    let url = format!("{base}/hls/{HD}/aac/media.m3u8");
    let (status, body) = text(&url).await;
    assert_eq!(status, 200);
    assert!(body.contains("#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES"), "{body}");
    let media = check_media(&body);
    let next = media.sequence + media.segments.len() as u64;
    let (status, body) = text(&format!("{url}?_HLS_msn={next}")).await;
    assert_eq!(status, 200);
    let after = check_media(&body);
    assert!(
        after.segments.iter().any(|(_, uri, _)| *uri == format!("{next}.ts")),
        "the answer holds segment {next}: {body}"
    );
    let (status, body) = text(&format!("{url}?_HLS_msn={}", next + 10)).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = text(&format!("{url}?_HLS_msn=soon")).await;
    assert_eq!(status, 400);
    running.stop().await;
}

/// `#EXT-X-PROGRAM-DATE-TIME` is opt-in: Chromium's built-in HLS player fails with `Parsed
/// buffers not in DTS sequence` after its first rebuffer when live segments are dated (measured
/// against the same segments served undated, which play on; README "HLS"). With
/// `hls.program_date_time` every segment is dated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn program_date_time_is_opt_in() {
    let demo = demo().await;
    for (dated, overrides) in [(false, &[][..]), (true, &[("hls.program_date_time", "true")][..])] {
        let (running, base) = start_app(&config_for(&demo, overrides)).await;
        ready(&running).await;
        let (status, body) = text(&format!("{base}/hls/{RADIO}/aac/media.m3u8")).await;
        assert_eq!(status, 200, "{body}");
        let media = check_media(&body);
        assert!(!media.segments.is_empty(), "{body}");
        assert_eq!(media.dated, dated, "hls.program_date_time = {dated}: {body}");
        running.stop().await;
    }
}

/// A receiver that refuses the channel for good after it played: the playlist ends, so players
/// stop instead of polling forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_ends_ends_its_playlist() {
    let demo = demo().await;
    let (running, base) = start_app(&config_for(
        &demo,
        &[("streaming.stall_timeout", "1s"), ("streaming.reconnect_attempts", "1")],
    ))
    .await;
    ready(&running).await;
    // The receiver drops the stream after ~4 s, and then refuses the channel.
    demo.set_faults(|f| {
        f.streams.insert(HD.into(), StreamFault::DropAfter(2_000_000));
    });
    let url = format!("{base}/hls/{HD}/aac/media.m3u8");
    let (status, body) = text(&url).await;
    assert_eq!(status, 200);
    assert!(!body.contains("#EXT-X-ENDLIST"));
    demo.set_faults(|f| {
        f.streams.insert(HD.into(), StreamFault::NotFound);
    });
    let mut ended = None;
    for _ in 0..60 {
        let (status, body) = text(&url).await;
        assert_eq!(status, 200, "{body}");
        if body.contains("#EXT-X-ENDLIST") {
            ended = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let body = ended.expect("the playlist ends after the receiver refuses the channel");
    assert!(body.trim_end().ends_with("#EXT-X-ENDLIST"), "{body}");
    assert!(!body.contains("CAN-BLOCK-RELOAD"));
    running.stop().await;
}

/// Segments arrive steadily: asked for with `_HLS_msn`, each next segment comes within three
/// target durations, on the transcoded MPEG-2 channel and the copied H.264 one at once (with
/// hlssink2, `auto` on the MPEG-2 channel sometimes published in bursts every 5 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_arrive_steadily() {
    let demo = demo().await;
    let (running, base) = start_app(&config_for(&demo, &[])).await;
    ready(&running).await;
    let follow = |channel: &'static str| {
        let url = format!("{base}/hls/{channel}/auto/media.m3u8");
        async move {
            let (status, body) = text(&url).await;
            assert_eq!(status, 200, "{body}");
            let media = check_media(&body);
            let first = media.sequence + media.segments.len() as u64;
            let mut longest = Duration::ZERO;
            for next in first..first + 20 {
                let asked = std::time::Instant::now();
                let (status, body) = text(&format!("{url}?_HLS_msn={next}")).await;
                assert_eq!(status, 200, "{body}");
                let waited = asked.elapsed();
                longest = longest.max(waited);
                let media = check_media(&body);
                assert!(
                    media.segments.iter().any(|(_, uri, _)| *uri == format!("{next}.ts")),
                    "{channel}: segment {next} did not come within three target durations \
                     ({waited:?}): {body}"
                );
            }
            eprintln!("{channel}: the longest wait for a next segment was {longest:?}");
        }
    };
    tokio::join!(follow(SD), follow(HD));
    running.stop().await;
}

/// A receiver that drops the connection mid-stream (mid-PES, mid-packet) cuts HLS between
/// whole frames: the segment open at the drop is never published, so every segment in the
/// window, the last one before the cut included, decodes without an error, the first one after
/// it is marked `EXT-X-DISCONTINUITY`, its clocks continue the time line instead of restarting,
/// and ffmpeg plays the window across the cut cleanly. (Publishing the open segment at the cut,
/// as hlssink2 did, leaves a truncated frame at its end.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_drop_cuts_hls_between_whole_frames() {
    let demo = demo().await;
    let (running, base) = start_app(&config_for(
        &demo,
        &[
            ("streaming.stall_timeout", "1s"),
            ("streaming.reconnect_attempts", "20"),
        ],
    ))
    .await;
    ready(&running).await;
    // Each connection ends after ~5 s, in the middle of whatever it was sending.
    demo.set_faults(|f| {
        f.streams.insert(HD.into(), StreamFault::DropAfter(700_001));
    });
    let url = format!("{base}/hls/{HD}/aac/media.m3u8");
    let mut window = None;
    for _ in 0..120 {
        let (status, body) = text(&url).await;
        assert_eq!(status, 200, "{body}");
        let media = check_media(&body);
        // A cut with at least two whole segments before it and one after it.
        if let Some(cut) = media.segments.iter().skip(2).position(|s| s.2) {
            window = Some((body, media, cut + 2));
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (body, media, cut) = window.expect("a cut within 60 s");
    assert!(demo.stats().stream_connections.load(Ordering::Relaxed) >= 2);
    let dir = tempfile::tempdir().unwrap();
    let mut local = String::new();
    for line in body.lines() {
        if line.starts_with("#EXT-X-PART") || line.starts_with("#EXT-X-PRELOAD") || line.starts_with("#EXT-X-SERVER") {
            continue;
        }
        local.push_str(line);
        local.push('\n');
    }
    local.push_str("#EXT-X-ENDLIST\n");
    std::fs::write(dir.path().join("media.m3u8"), &local).unwrap();
    // Per stream, the decoding times of each segment, as ffprobe reads them.
    let mut previous: Option<std::collections::HashMap<u64, (i64, i64)>> = None;
    for (i, (_, uri, _)) in media.segments.iter().enumerate() {
        let response = client().get(format!("{base}/hls/{HD}/aac/{uri}")).send().await.unwrap();
        assert_eq!(response.status(), 200, "{uri}");
        let path = dir.path().join(uri);
        std::fs::write(&path, response.bytes().await.unwrap()).unwrap();
        let (all, _) = ffprobe(&path, &["-show_entries", "packet=stream_index,dts"], "error");
        let mut times: std::collections::HashMap<u64, (i64, i64)> = std::collections::HashMap::new();
        for packet in all["packets"].as_array().expect("packets") {
            let (stream, dts) = (
                packet["stream_index"].as_u64().unwrap(),
                packet["dts"].as_i64().unwrap(),
            );
            let span = times.entry(stream).or_insert((dts, dts));
            span.1 = span.1.max(dts);
        }
        // The time line runs on across the cut: a new connection's clocks restart wherever the
        // receiver's happen to be, and a player that keeps one time line sees time go back.
        if let Some(previous) = previous.replace(times.clone()) {
            for (stream, (first, _)) in &times {
                let last = previous.get(stream).map(|s| s.1).unwrap_or(i64::MIN);
                assert!(
                    *first > last,
                    "stream {stream} goes back in time into segment {i} ({uri}; the cut is before segment {cut}): \
                     {first} after {last}"
                );
            }
        }
        let (json, _) = ffprobe(&path, &["-show_packets", "-select_streams", "v"], "error");
        let packets = json["packets"].as_array().expect("packets");
        assert!(!packets.is_empty(), "{uri} holds video");
        let corrupt: Vec<_> = packets
            .iter()
            .filter(|p| p["flags"].as_str().is_some_and(|f| f.contains('C')))
            .collect();
        assert!(
            corrupt.is_empty(),
            "segment {i} ({uri}; the cut is before segment {cut}) holds corrupt packets: {corrupt:?}"
        );
        let decode = std::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-v", "error", "-i"])
            .arg(&path)
            .args(["-f", "null", "-"])
            .output()
            .unwrap();
        let errors = String::from_utf8_lossy(&decode.stderr).into_owned();
        assert!(
            errors.trim().is_empty(),
            "segment {i} ({uri}; the cut is before segment {cut}) decodes with errors:\n{errors}"
        );
    }
    // The whole window, across the cut, in a player nobody here wrote.
    let play = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-allowed_extensions", "ALL", "-i"])
        .arg(dir.path().join("media.m3u8"))
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    let errors = String::from_utf8_lossy(&play.stderr).into_owned();
    assert!(play.status.success(), "ffmpeg plays the window: {errors}");
    assert!(
        errors.trim().is_empty(),
        "ffmpeg plays the window across the cut without errors:\n{errors}\n{local}"
    );
    eprintln!(
        "hls drop: {} segments, cut before segment {cut}, {} receiver connections, no decode errors",
        media.segments.len(),
        demo.stats().stream_connections.load(Ordering::Relaxed)
    );
    running.stop().await;
}
