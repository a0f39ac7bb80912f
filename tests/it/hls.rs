//! HLS against the demo receiver: playlists checked against the Apple rules of REFERENCE.md §2
//! by a test-side checker, every segment probed with ffprobe (codecs, IDR first).

use std::sync::atomic::Ordering;
use std::time::Duration;

use xg2g::demo::StreamFault;

use crate::common::{client, config_for, demo, ffprobe, ready, start_app};

const HD: &str = "1:0:19:283D:3FB:1:C00000:0:0:0:";
const SD: &str = "1:0:1:6F0B:44D:1:C00000:0:0:0:";
const RADIO: &str = "1:0:2:2F1C:441:1:C00000:0:0:0:";

/// A media playlist as the checker sees it.
#[derive(Debug)]
struct Media {
    target: u64,
    sequence: u64,
    segments: Vec<(f64, String, bool)>, // duration, uri, discontinuity before it
}

/// Checks the Apple rules and returns the parsed playlist; panics naming the broken rule.
fn check_media(text: &str) -> Media {
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.first(), Some(&"#EXTM3U"), "starts with #EXTM3U");
    assert!(lines.contains(&"#EXT-X-INDEPENDENT-SEGMENTS"), "independent segments");
    let tag = |name: &str| lines.iter().find_map(|l| l.strip_prefix(name)).map(str::to_owned);
    let target: u64 = tag("#EXT-X-TARGETDURATION:")
        .expect("target duration")
        .parse()
        .expect("integer target");
    let sequence: u64 = tag("#EXT-X-MEDIA-SEQUENCE:").expect("media sequence").parse().unwrap();
    let mut segments = Vec::new();
    let mut discontinuity = false;
    let mut dated = false;
    for (i, line) in lines.iter().enumerate() {
        if *line == "#EXT-X-DISCONTINUITY" {
            discontinuity = true;
        } else if let Some(date) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
            assert!(humantime::parse_rfc3339(date).is_ok(), "program date time {date}");
            dated = true;
        } else if let Some(rest) = line.strip_prefix("#EXTINF:") {
            let value = rest.trim_end_matches(',');
            assert!(value.contains('.'), "EXTINF is a float: {line}");
            let duration: f64 = value.parse().unwrap();
            assert!(
                duration.round() as u64 <= target,
                "segment of {duration} s exceeds target {target}"
            );
            assert!(dated, "every segment has a program date time");
            let uri = lines[i + 1];
            assert!(
                !uri.starts_with('#') && !uri.contains("://"),
                "relative URI follows EXTINF"
            );
            segments.push((duration, uri.to_owned(), discontinuity));
            discontinuity = false;
            dated = false;
        }
    }
    Media {
        target,
        sequence,
        segments,
    }
}

async fn text(url: &str) -> (u16, String) {
    let response = client().get(url).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// Fetches the media playlist until it holds at least six segments (the live window).
async fn full_window(url: &str) -> Media {
    let mut last_sequence = 0;
    let mut previous_first = None;
    for _ in 0..60 {
        let (status, body) = text(url).await;
        assert_eq!(status, 200, "{url}: {body}");
        let media = check_media(&body);
        if let Some(first) = previous_first {
            assert!(media.sequence >= first, "media sequence never goes back");
        }
        previous_first = Some(media.sequence);
        if media.segments.len() >= 6 {
            return media;
        }
        // Wait for the next segment: the next playlist fetch is what a player does, paced by
        // the segment duration it just read.
        last_sequence = media.sequence + media.segments.len() as u64;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("{url}: fewer than six segments after 30 s (sequence {last_sequence})");
}

async fn check_channel(base: String, channel: &'static str, want: &'static [&'static str]) {
    let master_url = format!("{base}/hls/{channel}/auto/index.m3u8");
    let (status, master) = text(&master_url).await;
    assert_eq!(
        status, 200,
        "the first playlist request waits for the first segment: {master}"
    );
    assert!(master.starts_with("#EXTM3U\n"));
    let inf = master
        .lines()
        .find(|l| l.starts_with("#EXT-X-STREAM-INF:"))
        .expect("a variant");
    for attribute in ["BANDWIDTH=", "AVERAGE-BANDWIDTH=", "CODECS="] {
        assert!(inf.contains(attribute), "master declares {attribute}: {inf}");
    }
    if want.contains(&"h264") {
        assert!(
            inf.contains("avc1.") && inf.contains("RESOLUTION=1280x720") && inf.contains("FRAME-RATE="),
            "{inf}"
        );
    }
    assert!(inf.contains("mp4a.40.2"), "{inf}");
    let media_url = format!("{base}/hls/{channel}/auto/media.m3u8");
    let media = full_window(&media_url).await;
    assert!(media.target <= 3, "2 s segments: target {}", media.target);
    let dir = tempfile::tempdir().unwrap();
    for (duration, uri, _) in &media.segments {
        let response = client()
            .get(format!("{base}/hls/{channel}/auto/{uri}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{uri}");
        assert_eq!(response.headers()["content-type"], "video/mp2t");
        let path = dir.path().join(uri);
        std::fs::write(&path, response.bytes().await.unwrap()).unwrap();
        let (json, _) = ffprobe(&path, &["-show_streams"], "error");
        let codecs: Vec<&str> = json["streams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["codec_name"].as_str().unwrap())
            .collect();
        assert_eq!(codecs, want, "{channel} {uri}");
        for s in json["streams"].as_array().unwrap() {
            if s["codec_name"] == "aac" {
                assert_eq!(s["profile"], "LC");
                assert_eq!(s["sample_rate"], "48000");
                assert_eq!(s["channels"], 2);
            }
        }
        if want.contains(&"h264") {
            // Each segment starts with an IDR: its first decoded video frame is a key frame.
            let (frames, _) = ffprobe(
                &path,
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
            let first = &frames["frames"][0];
            assert_eq!(
                first["key_frame"], 1,
                "{channel} {uri} starts with a key frame: {first}"
            );
            assert_eq!(first["pict_type"], "I");
        }
        assert!(*duration > 0.5 && *duration < 3.5, "{uri}: {duration} s");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hls_follows_the_apple_rules_on_hd_sd_and_radio() {
    let demo = demo().await;
    let (running, base) = start_app(&config_for(&demo, &[])).await;
    ready(&running).await;
    tokio::join!(
        // HD H.264: video copied, audio to AAC.
        check_channel(base.clone(), HD, &["h264", "aac"]),
        // SD MPEG-2 576i: `auto` transcodes to H.264 720p.
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
    let cases: [(&str, &str, &[&str]); 6] = [
        ("aac", HD, &["h264", "aac"]),
        // Video copied: MPEG-2 stays MPEG-2 (Safari cannot play it; `auto` picks h264 there).
        ("aac", SD, &["mpeg2video", "aac"]),
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
        assert_eq!(response.status(), 200);
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
