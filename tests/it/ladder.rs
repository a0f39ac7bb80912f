//! The `abr` profile's HLS ladder against the demo receiver: the master playlist's variants, the
//! video variants cut at the same PTS with an IDR (every segment probed with ffprobe), their
//! windows numbered alike, the audio-only rung, and a reload that refuses a bad ladder.
//!
//! One ladder test runs at a time ([`ONE_LADDER`]): a ladder encodes two or three rungs in
//! software here, and several at once on two cores fall behind real time.

mod fmp4;
mod playlists;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use xg2g::app::ReloadError;

use crate::common::{client, config_for, demo, ffprobe, first_video_frame, start_ready};
use playlists::{Variant, Window, common_segments, get, parse_master, segment_name};

const HD: &str = "1:0:19:283D:3FB:1:C00000:0:0:0:";
const SD: &str = "1:0:1:6F0B:44D:1:C00000:0:0:0:";
const TOKEN: &str = "l4dder-t0ken";
/// One AAC frame at 48 kHz (1024 samples, 21.33 ms) in 90 kHz ticks, rounded up: 21.4 ms.
const AAC_FRAME_TICKS: i64 = 1926;
/// How long the variants may take to share three segment numbers.
const SHARED_WITHIN: Duration = Duration::from_secs(60);
/// A segment number past the session's fast start (`FAST_START`: four short segments first).
const STEADY: u64 = 8;

/// Held by each ladder test while it runs.
static ONE_LADDER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// GETs a ladder's master playlist (the first request starts the session) and parses it.
async fn master(folder: &str) -> Vec<Variant> {
    let (status, text) = get(&format!("{folder}index.m3u8")).await;
    assert_eq!(status, 200, "{text}");
    eprintln!("ladder master {folder}:\n{text}");
    parse_master(&text)
}

/// Frames a second of the shipped ladder's video variants, top first: the top keeps the
/// picture's 50 (deinterlaced or copied), the lower rungs say `frame_rate = 25`.
const RATES: [f64; 3] = [50.0, 25.0, 25.0];

/// The master lists the video variants at `sizes`, top first, and then the audio-only one.
fn check_master(variants: &[Variant], sizes: &[(u32, u32)], source_height: u32) {
    assert_eq!(
        variants.len(),
        sizes.len() + 1,
        "{} video variants and audio only: {variants:#?}",
        sizes.len()
    );
    let (video, audio) = variants.split_at(sizes.len());
    for ((variant, size), want) in video.iter().zip(sizes).zip(RATES) {
        let codecs: Vec<&str> = variant.codecs.split(',').collect();
        assert!(
            codecs.len() == 2 && codecs[0].starts_with("avc1.") && codecs[1] == "mp4a.40.2",
            "{variant:?}"
        );
        assert_eq!(variant.resolution, Some(*size), "{variant:?}");
        assert!(size.1 <= source_height, "no rung above the source: {variant:?}");
        let rate = variant.frame_rate.unwrap_or_else(|| panic!("FRAME-RATE: {variant:?}"));
        assert!((rate - want).abs() < 0.01, "{want} frames a second: {variant:?}");
        // A measured rate: 1 is what the master says before any segment.
        assert!(
            variant.average > 1000 && variant.bandwidth >= variant.average,
            "{variant:?}"
        );
    }
    let audio = &audio[0];
    assert_eq!(audio.codecs, "mp4a.40.2", "{audio:?}");
    assert_eq!((audio.resolution, audio.frame_rate), (None, None), "{audio:?}");
    assert!(audio.average > 1000 && audio.bandwidth >= audio.average, "{audio:?}");
    let lowest = video.iter().map(|v| v.average).min().unwrap();
    assert!(
        audio.average < lowest,
        "audio only is the smallest variant: {variants:#?}"
    );
}

/// Fetches segment `n` of the variant at `playlist` (its name as `window` lists it) into `dir`.
async fn fetch_segment(folder: &str, playlist: &str, window: &Window, n: u64, dir: &Path) -> PathBuf {
    let uri = &window.segment(n).uri;
    assert_eq!(*uri, segment_name(playlist, n), "{playlist} names segment {n}");
    let response = client().get(format!("{folder}{uri}")).send().await.unwrap();
    assert_eq!(response.status(), 200, "{uri}");
    assert_eq!(response.headers()["content-type"], "video/mp2t");
    let path = dir.join(uri);
    std::fs::write(&path, response.bytes().await.unwrap()).unwrap();
    path
}

/// What ffprobe says of a video segment.
#[derive(Debug, PartialEq)]
struct VideoProbe {
    /// The first video packet's: PTS (90 kHz) and whether it is flagged key (`K`).
    first_pts: i64,
    first_key: bool,
    packets: usize,
    /// PTS of every video packet flagged key.
    keys: Vec<i64>,
    /// The first decoded frame's `key_frame` and `pict_type`.
    first_frame: (i64, String),
    size: (u64, u64),
    codecs: Vec<String>,
    field_order: String,
}

fn probe_video(path: &Path) -> VideoProbe {
    let (packets, _) = ffprobe(
        path,
        &[
            "-select_streams",
            "v",
            "-show_packets",
            "-show_entries",
            "packet=pts,flags",
        ],
        "error",
    );
    let packets = packets["packets"].as_array().expect("packets").clone();
    let first = packets
        .first()
        .unwrap_or_else(|| panic!("{}: no video", path.display()));
    let frame = &first_video_frame(path);
    let (streams, _) = ffprobe(path, &["-show_streams"], "error");
    let streams = streams["streams"].as_array().expect("streams");
    let video = streams
        .iter()
        .find(|s| s["codec_type"] == "video")
        .expect("a video stream");
    VideoProbe {
        first_pts: first["pts"].as_i64().expect("a PTS"),
        first_key: first["flags"].as_str().is_some_and(|f| f.contains('K')),
        packets: packets.len(),
        keys: packets
            .iter()
            .filter(|p| p["flags"].as_str().is_some_and(|f| f.contains('K')))
            .filter_map(|p| p["pts"].as_i64())
            .collect(),
        first_frame: (
            frame["key_frame"].as_i64().unwrap_or(-1),
            frame["pict_type"].as_str().unwrap_or("?").to_owned(),
        ),
        size: (video["width"].as_u64().unwrap(), video["height"].as_u64().unwrap()),
        codecs: streams
            .iter()
            .map(|s| s["codec_name"].as_str().unwrap().to_owned())
            .collect(),
        field_order: video["field_order"].as_str().unwrap_or("?").to_owned(),
    }
}

/// Windows fetched together agree: a variant whose window starts later is ahead by at least as
/// many published segments, and a segment number means the same discontinuity in every variant.
fn check_sequences(uris: &[String], windows: &[Window]) {
    let (first, rest) = windows.split_first().unwrap();
    for (uri, window) in uris[1..].iter().zip(rest) {
        let ahead = window.last().unwrap() as i64 - first.last().unwrap() as i64;
        let later = window.sequence as i64 - first.sequence as i64;
        assert!(
            later == 0 || (later.signum() == ahead.signum() && later.abs() <= ahead.abs()),
            "{uri} starts {later} segments after {}, but only {ahead} were published in between:\n{}\n{}",
            uris[0],
            first.text,
            window.text
        );
        if later == 0 {
            assert_eq!(
                window.discontinuity_sequence, first.discontinuity_sequence,
                "{uri} and {}:\n{}\n{}",
                uris[0], first.text, window.text
            );
        }
        for segment in &window.segments {
            if let Some(same) = first.segments.iter().find(|s| s.n == segment.n) {
                assert_eq!(
                    segment.discontinuity, same.discontinuity,
                    "segment {} of {uri} and {}:\n{}\n{}",
                    segment.n, uris[0], first.text, window.text
                );
            }
        }
    }
}

/// Waits for three segment numbers from `from` on that every video variant holds, and checks each
/// such segment of every variant with ffprobe: the same first video PTS, flagged key, a key frame
/// decoded first, the master's size, progressive H.264 and AAC. Returns where the variants'
/// segments are cut apart (a first video PTS or a frame count that differs), with their key
/// frames: [`check_together`] fails on them.
async fn check_aligned(folder: &str, video: &[Variant], from: u64) -> Vec<String> {
    let uris: Vec<String> = video.iter().map(|v| v.uri.clone()).collect();
    let (windows, shared) = common_segments(folder, &uris, from, 3, SHARED_WITHIN).await;
    check_sequences(&uris, &windows);
    let dir = tempfile::tempdir().unwrap();
    // The newest three, the furthest from leaving the windows while they are fetched; every one
    // is checked before a difference fails the test, so that it shows them all.
    let mut apart = Vec::new();
    for &n in &shared[shared.len() - 3..] {
        let mut probes = Vec::new();
        for ((uri, window), variant) in uris.iter().zip(&windows).zip(video) {
            let path = fetch_segment(folder, uri, window, n, dir.path()).await;
            let probe = probe_video(&path);
            eprintln!("ladder {uri} segment {n}: {probe:?}");
            assert!(
                probe.first_key,
                "{uri} segment {n}: the first video packet is key: {probe:?}"
            );
            assert_eq!(probe.first_frame, (1, "I".to_owned()), "{uri} segment {n}: {probe:?}");
            let (w, h) = variant.resolution.unwrap();
            assert_eq!(probe.size, (u64::from(w), u64::from(h)), "{uri} segment {n}");
            assert_eq!(probe.codecs, ["h264", "aac"], "{uri} segment {n}");
            assert_eq!(probe.field_order, "progressive", "{uri} segment {n}");
            probes.push(probe);
        }
        for ((uri, probe), rate) in uris.iter().zip(&probes).zip(RATES).skip(1) {
            // A rung at half the frame rate holds half the frames, give or take the key frame
            // it keeps off its cadence.
            let frames = probes[0].packets as f64 * rate / RATES[0];
            if probe.first_pts != probes[0].first_pts || (probe.packets as f64 - frames).abs() > 1.0 {
                apart.push(format!(
                    "segment {n}: {uri} starts at PTS {} with {} frames (key frames at {:?}), {} at {} with {} \
                     (key frames at {:?})",
                    probe.first_pts,
                    probe.packets,
                    probe.keys,
                    uris[0],
                    probes[0].first_pts,
                    probes[0].packets,
                    probes[0].keys
                ));
            }
        }
    }
    if !apart.is_empty() {
        apart.push(windows.iter().map(|w| w.text.as_str()).collect::<Vec<_>>().join("\n"));
    }
    apart
}

/// [`check_aligned`] at the session's start and once it runs steadily, then fails on any
/// segment cut apart.
async fn check_together(folder: &str, video: &[Variant]) {
    let mut apart = check_aligned(folder, video, 0).await;
    apart.extend(check_aligned(folder, video, STEADY).await);
    assert!(
        apart.is_empty(),
        "video variants cut apart (first video PTS and frames, by ffprobe):\n{}",
        apart.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hd_ladder_copies_the_top_and_cuts_every_variant_at_the_same_idr() {
    let _alone = ONE_LADDER.lock().await;
    let demo = demo().await;
    let (running, base) = start_ready(&config_for(&demo, &[])).await;
    let folder = format!("{base}/hls/{HD}/abr/");
    let variants = master(&folder).await;
    check_master(&variants, &[(1280, 720), (960, 540), (640, 360)], 720);
    check_together(&folder, &variants[..3]).await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sd_ladder_encodes_every_rung_and_cuts_them_at_the_same_idr() {
    let _alone = ONE_LADDER.lock().await;
    let demo = demo().await;
    let (running, base) = start_ready(&config_for(&demo, &[])).await;
    let folder = format!("{base}/hls/{SD}/abr/");
    let variants = master(&folder).await;
    // 576 lines at 16:9 with square pixels; the 720 rung is bounded by the source's 576.
    check_master(&variants, &[(1024, 576), (960, 540), (640, 360)], 576);
    // The source is MPEG-2 576i: every variant is progressive H.264, so every one was encoded.
    check_together(&folder, &variants[..3]).await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audio_only_rung_is_stereo_aac_of_at_most_64_kbit() {
    let _alone = ONE_LADDER.lock().await;
    let demo = demo().await;
    let (running, base) = start_ready(&config_for(&demo, &[])).await;
    let folder = format!("{base}/hls/{HD}/abr/");
    let variants = master(&folder).await;
    let audio = variants.last().expect("variants");
    assert_eq!(audio.codecs, "mp4a.40.2", "{variants:#?}");
    let uris = [audio.uri.clone()];
    let (windows, numbers) = common_segments(&folder, &uris, STEADY, 3, SHARED_WITHIN).await;
    let dir = tempfile::tempdir().unwrap();
    let (mut bits, mut seconds) = (0u64, 0f64);
    for &n in &numbers[numbers.len() - 3..] {
        let path = fetch_segment(&folder, &audio.uri, &windows[0], n, dir.path()).await;
        let (json, _) = ffprobe(&path, &["-show_streams"], "error");
        let streams = json["streams"].as_array().expect("streams");
        assert_eq!(streams.len(), 1, "{} segment {n}: one stream: {json}", audio.uri);
        let s = &streams[0];
        assert_eq!(
            (&s["codec_name"], &s["profile"], &s["channels"], &s["sample_rate"]),
            (
                &Value::from("aac"),
                &Value::from("LC"),
                &Value::from(2),
                &Value::from("48000")
            ),
            "{} segment {n}: {s}",
            audio.uri
        );
        if let Some(rate) = s["bit_rate"].as_str() {
            assert!(rate.parse::<u64>().unwrap() <= 64_000, "{} segment {n}: {s}", audio.uri);
        }
        let (json, _) = ffprobe(&path, &["-show_entries", "packet=size,duration_time"], "error");
        for packet in json["packets"].as_array().expect("packets") {
            bits += 8 * packet["size"].as_str().unwrap().parse::<u64>().unwrap();
            seconds += packet["duration_time"].as_str().unwrap().parse::<f64>().unwrap();
        }
    }
    let rate = bits as f64 / seconds;
    eprintln!("ladder audio only: {bits} bits of AAC in {seconds:.3} s: {rate:.0} bit/s");
    assert!(seconds > 0.4, "{seconds} s of audio in three segments");
    assert!(rate <= 64_000.0, "{rate:.0} bit/s");
    running.stop().await;
}

/// Segment n of the audio-only variant starts where segment n of the video variants does, within
/// one AAC frame, so a player that switches to it (or from it) at segment n keeps its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audio_only_rung_is_cut_where_the_video_variants_are() {
    let _alone = ONE_LADDER.lock().await;
    let demo = demo().await;
    let (running, base) = start_ready(&config_for(&demo, &[])).await;
    let folder = format!("{base}/hls/{HD}/abr/");
    let variants = master(&folder).await;
    let (top, audio) = (&variants[0], variants.last().unwrap());
    assert_eq!(audio.codecs, "mp4a.40.2", "{variants:#?}");
    let uris = [top.uri.clone(), audio.uri.clone()];
    let (windows, shared) = common_segments(&folder, &uris, STEADY, 3, SHARED_WITHIN).await;
    let dir = tempfile::tempdir().unwrap();
    let mut off = Vec::new();
    for &n in &shared[shared.len() - 3..] {
        let video = probe_video(&fetch_segment(&folder, &top.uri, &windows[0], n, dir.path()).await);
        let path = fetch_segment(&folder, &audio.uri, &windows[1], n, dir.path()).await;
        let (json, _) = ffprobe(&path, &["-show_entries", "packet=pts"], "error");
        let audio_pts = json["packets"][0]["pts"].as_i64().expect("an audio packet");
        let gap = audio_pts - video.first_pts;
        eprintln!(
            "ladder segment {n}: video starts at {}, audio only at {audio_pts} ({:+.1} ms)",
            video.first_pts,
            gap as f64 / 90.0
        );
        if gap.abs() > AAC_FRAME_TICKS {
            off.push((n, video.first_pts, audio_pts, gap as f64 / 90.0));
        }
    }
    assert!(
        off.is_empty(),
        "audio-only segments that do not start within one AAC frame of the video's \
         (n, video PTS, audio PTS, ms): {off:?}\n{}\n{}",
        windows[0].text,
        windows[1].text
    );
    running.stop().await;
}

/// A reload that would put a rung above the one before it is refused, naming the file, the rung
/// and its line; the ladder loaded before keeps serving new sessions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_with_a_bad_rung_names_it_and_keeps_the_old_ladder() {
    let _alone = ONE_LADDER.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines");
    for entry in std::fs::read_dir(shipped).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    let demo = demo().await;
    let pipelines = dir.path().display().to_string();
    let config = config_for(&demo, &[("api_token", TOKEN), ("streaming.pipelines_dir", &pipelines)]);
    let (running, base) = start_ready(&config).await;

    let abr = dir.path().join("abr.toml");
    let text = std::fs::read_to_string(&abr).unwrap();
    assert_eq!(text.matches("height = 540").count(), 1, "{text}");
    let broken = text.replace("height = 540", "height = 900");
    std::fs::write(&abr, &broken).unwrap();
    // The second `[[ladder.rungs]]`, 1-based.
    let line = broken
        .lines()
        .enumerate()
        .filter(|(_, l)| l.trim() == "[[ladder.rungs]]")
        .nth(1)
        .map(|(i, _)| i as u64 + 1)
        .unwrap();

    let response = client()
        .post(format!("{base}/api/v1/reload"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        (status, &body["error"]["code"]),
        (422, &Value::from("invalid-templates")),
        "{body}"
    );
    let problems = body["error"]["problems"].as_array().expect("problems");
    let file = abr.display().to_string();
    let named = problems
        .iter()
        .find(|p| p["file"] == file.as_str() && p["message"].as_str().is_some_and(|m| m.contains("ladder rung 2")))
        .unwrap_or_else(|| panic!("a problem in {file} naming ladder rung 2: {body:#}"));
    // The path SIGHUP takes refuses it too.
    match running.reload_templates().await {
        Err(ReloadError::Invalid(errors)) => assert!(
            errors
                .0
                .iter()
                .any(|p| p.file == file && p.message.contains("ladder rung 2")),
            "{errors:?}"
        ),
        other => panic!("expected invalid templates, got {other:?}"),
    }

    // Loaded, the broken ladder would give HD two video variants (720 copied, 360): the old one
    // gives three.
    let variants = master(&format!("{base}/hls/{HD}/abr/")).await;
    let video: Vec<_> = variants.iter().filter_map(|v| v.resolution).collect();
    assert_eq!(video, [(1280, 720), (960, 540), (640, 360)], "{variants:#?}");
    running.stop().await;
    // Last, so that a wrong line does not hide the checks above.
    assert_eq!(named["line"], line, "the line of the second [[ladder.rungs]]: {named}");
}
