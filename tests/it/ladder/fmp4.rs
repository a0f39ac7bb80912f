//! The `abr-fmp4` profile's ladder (CMAF segments) against the demo receiver: the master's
//! variants and audio renditions as m3u8-rs reads them, and, for segments at the session's start
//! and once it runs steadily, every rendition's init segment and segment probed together with
//! ffprobe: a key frame first, the master's sizes and codecs, every track starting at the same
//! moment (within a frame of its own), each segment's EXTINF true to where the next starts, and
//! no gap between a track's segments.
//!
//! EXTINF is alike across tracks within one frame of each, not to the millisecond: the audio is
//! cut at the frame boundary nearest the video's cut, so an AAC segment of a 0.480 s cut lasts
//! 22 or 23 frames (0.469 or 0.491 s), and its EXTINF says so.
//!
//! Tracks are found by their playlists in the master (`EXT-X-STREAM-INF` and `EXT-X-MEDIA`
//! URIs), never by number.

use std::path::{Path, PathBuf};

use super::playlists::{common_segments, get};
use super::{HD, ONE_LADDER, SD, SHARED_WITHIN, STEADY};
use crate::common::{client, config_for, demo, ffprobe, first_video_frame, start_ready};
use m3u8_rs::{AlternativeMediaType, MasterPlaylist, MediaPlaylist, Playlist};

const PROFILE: &str = "abr-fmp4";
/// The demo's channel whose only sound is E-AC-3 (`MediaKind::HdEac3`).
const EAC3: &str = "1:0:19:132F:3EF:1:C00000:0:0:0:";
const RADIO: &str = "1:0:2:2F1C:441:1:C00000:0:0:0:";
/// One frame of the 25 frames-a-second rungs, and how far the copied top may start from the
/// encoded rungs (copied H.264 with B-frames starts at its composition offset).
const VIDEO_FRAME_MS: f64 = 40.0;
/// One AAC frame at 48 kHz (1024 samples).
const AAC_FRAME_MS: f64 = 1024.0 / 48.0;
/// One AC-3 or E-AC-3 frame at 48 kHz (1536 samples).
const AC3_FRAME_MS: f64 = 1536.0 / 48.0;
/// How long a new session's first master may take: its first segments, with room to spare.
const MASTER_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);
/// EXTINF is written in milliseconds; the same segment may differ by one between tracks.
const EXTINF_SLACK: f64 = 0.0011;

/// A probed timestamp: `ticks` of a `1/den` second time base.
#[derive(Debug, Clone, Copy)]
struct Time {
    ticks: i128,
    den: i128,
}

impl Time {
    fn same(self, other: Time) -> bool {
        self.ticks * other.den == other.ticks * self.den
    }

    fn ms(self) -> f64 {
        self.ticks as f64 * 1000.0 / self.den as f64
    }
}

/// An audio rendition of the master (`EXT-X-MEDIA`).
#[derive(Debug, Clone)]
struct Rendition {
    uri: String,
    name: String,
    channels: Option<u64>,
}

/// What the master of a ladder with video says, its tracks found by their playlists.
#[derive(Debug, Clone)]
struct Ladder {
    /// The video variants' playlists and sizes, top first.
    video: Vec<(String, (u64, u64))>,
    aac: Rendition,
    ac3: Rendition,
    audio_only: String,
}

/// GETs a session's master playlist (the first request starts the session) and parses it.
async fn master(folder: &str) -> MasterPlaylist {
    let (status, text) = get(&format!("{folder}index.m3u8")).await;
    assert_eq!(status, 200, "{text}");
    eprintln!("fmp4 master {folder}:\n{text}");
    match m3u8_rs::parse_playlist_res(text.as_bytes()) {
        Ok(Playlist::MasterPlaylist(master)) => master,
        other => panic!("a master playlist: {other:?}\n{text}"),
    }
}

/// The one audio rendition of `group`.
fn rendition(master: &MasterPlaylist, group: &str) -> Rendition {
    let found: Vec<_> = master.alternatives.iter().filter(|a| a.group_id == group).collect();
    assert_eq!(found.len(), 1, "one rendition in group {group}: {master:#?}");
    let media = found[0];
    assert_eq!(media.media_type, AlternativeMediaType::Audio, "{media:?}");
    assert!(media.default && media.autoselect, "{media:?}");
    Rendition {
        uri: media.uri.clone().unwrap_or_else(|| panic!("a URI: {media:?}")),
        name: media.name.clone(),
        channels: media
            .channels
            .as_ref()
            .map(|c| c.parse().expect("CHANNELS is a number")),
    }
}

/// Checks an fMP4 ladder's master: version 7, the `aac` and `ac3` groups, the video variants at
/// `sizes` with the AAC group, then the same with the AC-3 group (CODECS naming `ac3_codec`),
/// then the audio-only variant.
fn check_master(master: &MasterPlaylist, sizes: &[(u64, u64)], ac3_codec: &str, ac3_name: &str) -> Ladder {
    assert_eq!(master.version, Some(7), "{master:#?}");
    assert!(master.independent_segments, "{master:#?}");
    assert_eq!(
        master.alternatives.len(),
        2,
        "an AAC and an AC-3 rendition: {master:#?}"
    );
    let aac = rendition(master, "aac");
    let ac3 = rendition(master, "ac3");
    assert_eq!(aac.name, "Stereo", "{master:#?}");
    assert_eq!(aac.channels, Some(2), "{master:#?}");
    assert_eq!(ac3.name, ac3_name, "{master:#?}");
    assert!(master.variants.iter().all(|v| !v.is_i_frame), "{master:#?}");

    let groups: Vec<Option<&str>> = master.variants.iter().map(|v| v.audio.as_deref()).collect();
    let mut want = vec![Some("aac"); sizes.len()];
    want.extend(vec![Some("ac3"); sizes.len()]);
    want.push(None);
    assert_eq!(
        groups, want,
        "the video variants with AAC, then with AC-3, then audio only: {master:#?}"
    );
    let (with_aac, rest) = master.variants.split_at(sizes.len());
    let (with_ac3, audio_only) = rest.split_at(sizes.len());
    let mut video = Vec::new();
    for ((aac_variant, ac3_variant), size) in with_aac.iter().zip(with_ac3).zip(sizes) {
        let resolution = aac_variant.resolution.map(|r| (r.width, r.height));
        assert_eq!(resolution, Some(*size), "{aac_variant:?}");
        let codecs = aac_variant.codecs.as_deref().unwrap_or_default();
        let (video_codec, audio_codec) = codecs.split_once(',').unwrap_or((codecs, ""));
        assert!(
            video_codec.starts_with("avc1.") && audio_codec == "mp4a.40.2",
            "{aac_variant:?}"
        );
        // The same picture, heard through the other group.
        assert_eq!(
            (&ac3_variant.uri, ac3_variant.resolution),
            (&aac_variant.uri, aac_variant.resolution),
            "{master:#?}"
        );
        assert_eq!(
            ac3_variant.codecs.as_deref(),
            Some(format!("{video_codec},{ac3_codec}").as_str()),
            "{ac3_variant:?}"
        );
        assert!(ac3_variant.bandwidth > 1000, "a measured rate: {ac3_variant:?}");
        video.push((aac_variant.uri.clone(), *size));
    }
    let audio_only = &audio_only[0];
    assert_eq!(audio_only.codecs.as_deref(), Some("mp4a.40.2"), "{audio_only:?}");
    assert_eq!(audio_only.resolution, None, "{audio_only:?}");
    assert!(audio_only.bandwidth > 1000, "a measured rate: {audio_only:?}");
    Ladder {
        video,
        aac,
        ac3,
        audio_only: audio_only.uri.clone(),
    }
}

/// Parses an fMP4 media playlist: version 7, `.m4s` segments, the first one mapped.
fn parse_media(uri: &str, text: &str) -> MediaPlaylist {
    let media = match m3u8_rs::parse_playlist_res(text.as_bytes()) {
        Ok(Playlist::MediaPlaylist(media)) => media,
        other => panic!("{uri}: a media playlist: {other:?}\n{text}"),
    };
    assert_eq!(media.version, Some(7), "{uri}:\n{text}");
    assert!(
        media.segments.first().is_some_and(|s| s.map.is_some()),
        "{uri}: EXT-X-MAP before the first segment:\n{text}"
    );
    assert!(media.segments.iter().all(|s| s.uri.ends_with(".m4s")), "{uri}:\n{text}");
    media
}

/// Segment `n` of `media`: its URI, its init segment's URI (the last `EXT-X-MAP` before it) and
/// its EXTINF.
fn segment(media: &MediaPlaylist, n: u64) -> (String, String, f64) {
    let index = n
        .checked_sub(media.media_sequence)
        .map(|i| i as usize)
        .filter(|&i| i < media.segments.len())
        .unwrap_or_else(|| panic!("segment {n} not in {media:#?}"));
    let init = media.segments[..=index]
        .iter()
        .rev()
        .find_map(|s| s.map.as_ref())
        .expect("checked: the first segment is mapped");
    let s = &media.segments[index];
    (s.uri.clone(), init.uri.clone(), f64::from(s.duration))
}

/// GETs an fMP4 file of the session folder.
async fn fetch(folder: &str, uri: &str) -> Vec<u8> {
    let response = client().get(format!("{folder}{uri}")).send().await.unwrap();
    assert_eq!(response.status(), 200, "{uri}");
    assert_eq!(response.headers()["content-type"], "video/mp4", "{uri}");
    response.bytes().await.unwrap().to_vec()
}

/// Writes init segment and segment `n` of `media` into `dir` as one playable file.
async fn playable(folder: &str, media: &MediaPlaylist, n: u64, dir: &Path) -> PathBuf {
    let (segment_uri, init_uri, _) = segment(media, n);
    let mut bytes = fetch(folder, &init_uri).await;
    bytes.extend(fetch(folder, &segment_uri).await);
    let path = dir.join(format!("{segment_uri}.mp4"));
    std::fs::write(&path, bytes).unwrap();
    path
}

/// What ffprobe says of a one-track file.
#[derive(Debug)]
struct Probe {
    codec: String,
    profile: String,
    channels: Option<u64>,
    size: Option<(u64, u64)>,
    /// The first packet's PTS and whether it is flagged key (`K`).
    first: Time,
    /// Where the last packet presented ends: the largest PTS plus duration.
    end: Time,
    /// One tick of the track's time base.
    tick: Time,
    first_key: bool,
    packets: usize,
    /// The first decoded frame's `key_frame` and `pict_type` (video).
    first_frame: Option<(i64, String)>,
}

/// Probes a playable file; panics unless ffprobe reads it without an error and finds one track
/// with packets.
fn probe(path: &Path) -> Probe {
    let (json, log) = ffprobe(
        path,
        &[
            "-show_entries",
            "stream=codec_type,codec_name,profile,channels,width,height,time_base:packet=pts,duration,flags",
        ],
        "error",
    );
    let name = path.file_name().unwrap().to_string_lossy();
    assert!(log.trim().is_empty(), "{name}: ffprobe: {log}");
    let streams = json["streams"].as_array().unwrap_or_else(|| panic!("{name}: {json}"));
    assert_eq!(streams.len(), 1, "{name}: one track: {json}");
    let stream = &streams[0];
    let packets = json["packets"].as_array().unwrap_or_else(|| panic!("{name}: {json}"));
    let first = packets.first().unwrap_or_else(|| panic!("{name}: no packets"));
    let base = stream["time_base"].as_str().expect("a time base");
    let (num, den) = base.split_once('/').expect("n/d");
    let (num, den): (i128, i128) = (num.parse().unwrap(), den.parse().unwrap());
    let pts = first["pts"]
        .as_i64()
        .unwrap_or_else(|| panic!("{name}: a PTS: {first}"));
    // The packet presented last, and how long it lasts (ffprobe gives no duration for the first
    // sample of a fragment, which is never the last presented of several).
    let last = packets
        .iter()
        .max_by_key(|p| p["pts"].as_i64().unwrap_or_else(|| panic!("{name}: a PTS: {p}")))
        .expect("packets");
    let end = last["pts"].as_i64().unwrap()
        + last["duration"]
            .as_i64()
            .unwrap_or_else(|| panic!("{name}: the last packet's duration: {last}"));
    let video = stream["codec_type"] == "video";
    Probe {
        codec: stream["codec_name"].as_str().unwrap_or("?").to_owned(),
        profile: stream["profile"].as_str().unwrap_or("?").to_owned(),
        channels: stream["channels"].as_u64(),
        size: stream["width"].as_u64().zip(stream["height"].as_u64()),
        first: Time {
            ticks: i128::from(pts) * num,
            den,
        },
        end: Time {
            ticks: i128::from(end) * num,
            den,
        },
        tick: Time { ticks: num, den },
        first_key: first["flags"].as_str().is_some_and(|f| f.contains('K')),
        packets: packets.len(),
        first_frame: video.then(|| {
            let frame = first_video_frame(path);
            (
                frame["key_frame"].as_i64().unwrap_or(-1),
                frame["pict_type"].as_str().unwrap_or("?").to_owned(),
            )
        }),
    }
}

/// Checks the probe of a video rung's segment: H.264 at `size`, a key frame first.
fn check_video(label: &str, probe: &Probe, size: (u64, u64)) {
    assert_eq!(probe.codec, "h264", "{label}: {probe:?}");
    assert!(probe.first_key, "{label}: the first packet is key: {probe:?}");
    assert_eq!(
        probe.first_frame,
        Some((1, "I".to_owned())),
        "{label}: an I frame decodes first: {probe:?}"
    );
    assert_eq!(probe.size, Some(size), "{label}: the master's size: {probe:?}");
}

/// Checks the probe of an AAC track's segment: stereo AAC-LC.
fn check_aac(label: &str, probe: &Probe) {
    assert_eq!(
        (probe.codec.as_str(), probe.profile.as_str(), probe.channels),
        ("aac", "LC", Some(2)),
        "{label}: {probe:?}"
    );
    assert!(probe.first_key, "{label}: {probe:?}");
}

/// A track of a ladder session, by its playlist.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// A video rung at this size, copied from the source or encoded.
    Video {
        size: (u64, u64),
        copied: bool,
    },
    Aac,
    Ac3 {
        codec: &'static str,
        channels: Option<u64>,
    },
}

/// How far a track's segment may start from the encoded video's: not at all for an encoded
/// rung, a frame for the copied top (its composition offset), an audio frame and a video frame
/// for audio (cut at the frame nearest the video's cut).
fn allowed_ms(kind: Kind) -> f64 {
    match kind {
        Kind::Video { copied: false, .. } => 0.0,
        Kind::Video { copied: true, .. } => VIDEO_FRAME_MS,
        Kind::Aac => AAC_FRAME_MS + VIDEO_FRAME_MS,
        Kind::Ac3 { .. } => AC3_FRAME_MS + VIDEO_FRAME_MS,
    }
}

/// How far a track's EXTINF may differ from the encoded video's, beyond rounding: one audio
/// frame for audio tracks, which are cut at frame boundaries.
fn frame_ms(kind: Kind) -> f64 {
    match kind {
        Kind::Video { .. } => 0.0,
        Kind::Aac => AAC_FRAME_MS,
        Kind::Ac3 { .. } => AC3_FRAME_MS,
    }
}

/// Waits for three segment numbers from `from` on that every track's window holds, and probes
/// the newest three of every track (init segment and segment together). Panics on a track that
/// does not probe as the master says; returns where the tracks are apart: a first PTS off the
/// encoded video's, an EXTINF that differs from theirs by more than the track's frame or from
/// where its own next segment starts, or a gap or overlap between a track's segments.
async fn check_aligned(folder: &str, tracks: &[(String, Kind)], from: u64) -> Vec<String> {
    let uris: Vec<String> = tracks.iter().map(|(uri, _)| uri.clone()).collect();
    let (windows, shared) = common_segments(folder, &uris, from, 3, SHARED_WITHIN).await;
    let medias: Vec<MediaPlaylist> = windows
        .iter()
        .zip(&uris)
        .map(|(w, uri)| parse_media(uri, &w.text))
        .collect();
    let reference = tracks
        .iter()
        .position(|(_, kind)| matches!(kind, Kind::Video { copied: false, .. }))
        .expect("an encoded rung");
    let dir = tempfile::tempdir().unwrap();
    let numbers = &shared[shared.len() - 3..];
    // probes[n][track], EXTINF of segment n in each track.
    let mut probes: Vec<Vec<Probe>> = Vec::new();
    for &n in numbers {
        let mut these = Vec::new();
        for ((uri, kind), media) in tracks.iter().zip(&medias) {
            let path = playable(folder, media, n, dir.path()).await;
            let probe = probe(&path);
            let label = format!("{uri} segment {n}");
            eprintln!(
                "fmp4 {label}: starts {:.3} ms, ends {:.3} ms, EXTINF {:.3}: {probe:?}",
                probe.first.ms(),
                probe.end.ms(),
                segment(media, n).2
            );
            match *kind {
                Kind::Video { size, .. } => check_video(&label, &probe, size),
                Kind::Aac => check_aac(&label, &probe),
                Kind::Ac3 { codec, channels } => {
                    assert_eq!(probe.codec, codec, "{label}: {probe:?}");
                    assert_eq!(probe.channels, channels, "{label}: the master's CHANNELS: {probe:?}");
                    assert!(probe.first_key, "{label}: {probe:?}");
                }
            }
            these.push(probe);
        }
        probes.push(these);
    }
    let mut apart = Vec::new();
    for (&n, these) in numbers.iter().zip(&probes) {
        let video = these[reference].first;
        let extinf = segment(&medias[reference], n).2;
        for (((uri, kind), probe), media) in tracks.iter().zip(these).zip(&medias) {
            let allowed = allowed_ms(*kind);
            let gap = probe.first.ms() - video.ms();
            let exact = allowed == 0.0;
            if (exact && !probe.first.same(video)) || gap.abs() > allowed {
                apart.push(format!(
                    "segment {n}: {uri} starts at {:.3} ms, {gap:+.3} ms from {}'s {:.3} ms (allowed: {allowed:.1} ms)",
                    probe.first.ms(),
                    uris[reference],
                    video.ms()
                ));
            }
            let duration = segment(media, n).2;
            let slack = EXTINF_SLACK + frame_ms(*kind) / 1000.0;
            if (duration - extinf).abs() > slack {
                apart.push(format!(
                    "segment {n}: {uri} says EXTINF {duration:.3}, {} {extinf:.3} (allowed: ±{slack:.4} s)",
                    uris[reference]
                ));
            }
        }
    }
    // A track's segments follow on from each other, and its EXTINF says how far.
    for (pair, numbers) in probes.windows(2).zip(numbers.windows(2)) {
        let n = numbers[0];
        for ((uri, media), (this, next)) in uris.iter().zip(&medias).zip(pair[0].iter().zip(&pair[1])) {
            let extinf = segment(media, n).2 * 1000.0;
            let step = next.first.ms() - this.first.ms();
            if (step - extinf).abs() > EXTINF_SLACK * 1000.0 {
                apart.push(format!(
                    "segment {n} of {uri}: EXTINF {extinf:.1} ms, but the next starts {step:.3} ms later"
                ));
            }
            // One tick of the track's time base either way: audio timestamps in nanoseconds round
            // to the nearest sample each, not always the same way.
            if (next.first.ms() - this.end.ms()).abs() > this.tick.ms() + 1e-9 {
                apart.push(format!(
                    "segment {n} of {uri} ends at {:.3} ms, the next starts at {:.3} ms",
                    this.end.ms(),
                    next.first.ms()
                ));
            }
        }
    }
    if !apart.is_empty() {
        apart.extend(uris.iter().zip(&windows).map(|(uri, w)| format!("{uri}:\n{}", w.text)));
    }
    apart
}

/// Every track of `ladder`: the video rungs (the top `copied_top`), the AAC and AC-3
/// renditions (this codec by ffprobe's name) and the audio-only variant.
fn tracks(ladder: &Ladder, copied_top: bool, ac3_codec: &'static str) -> Vec<(String, Kind)> {
    let mut tracks: Vec<(String, Kind)> = ladder
        .video
        .iter()
        .enumerate()
        .map(|(i, (uri, size))| {
            let copied = copied_top && i == 0;
            (uri.clone(), Kind::Video { size: *size, copied })
        })
        .collect();
    tracks.push((ladder.aac.uri.clone(), Kind::Aac));
    let channels = ladder.ac3.channels;
    tracks.push((
        ladder.ac3.uri.clone(),
        Kind::Ac3 {
            codec: ac3_codec,
            channels,
        },
    ));
    tracks.push((ladder.audio_only.clone(), Kind::Aac));
    tracks
}

/// [`check_aligned`] at the session's start and once it runs steadily; fails on tracks apart.
async fn check_together(folder: &str, tracks: &[(String, Kind)]) {
    let mut apart = check_aligned(folder, tracks, 0).await;
    apart.extend(check_aligned(folder, tracks, STEADY).await);
    assert!(
        apart.is_empty(),
        "tracks cut apart (first PTS by ffprobe, EXTINF):\n{}",
        apart.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hd_fmp4_ladder_copies_the_top_and_starts_every_rendition_together() {
    let _alone = ONE_LADDER.lock().await;
    let demo = demo().await;
    let (running, base) = start_ready(&config_for(&demo, &[])).await;
    let folder = format!("{base}/hls/{HD}/{PROFILE}/");
    let master = master(&folder).await;
    let ladder = check_master(&master, &[(1280, 720), (960, 540), (640, 360)], "ac-3", "Dolby Digital");
    check_together(&folder, &tracks(&ladder, true, "ac3")).await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sd_fmp4_ladder_encodes_every_rung_and_starts_every_rendition_together() {
    let _alone = ONE_LADDER.lock().await;
    let demo = demo().await;
    let (running, base) = start_ready(&config_for(&demo, &[])).await;
    let folder = format!("{base}/hls/{SD}/{PROFILE}/");
    let master = master(&folder).await;
    // 576 lines at 16:9 with square pixels; the 720 rung is bounded by the source's 576.
    let ladder = check_master(&master, &[(1024, 576), (960, 540), (640, 360)], "ac-3", "Dolby Digital");
    // MPEG-2 576i: no rung can be copied.
    check_together(&folder, &tracks(&ladder, false, "ac3")).await;
    running.stop().await;
}

/// A channel whose only sound is E-AC-3 passes it through as the `ac3` group's rendition, named
/// and labelled for what it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eac3_channel_passes_its_eac3_through_as_dolby_digital_plus() {
    let _alone = ONE_LADDER.lock().await;
    let demo = demo().await;
    let (running, base) = start_ready(&config_for(&demo, &[])).await;
    let folder = format!("{base}/hls/{EAC3}/{PROFILE}/");
    let master = master(&folder).await;
    let ladder = check_master(
        &master,
        &[(1280, 720), (960, 540), (640, 360)],
        "ec-3",
        "Dolby Digital Plus",
    );
    let uris = [ladder.ac3.uri.clone(), ladder.aac.uri.clone()];
    let (windows, shared) = common_segments(&folder, &uris, 0, 1, SHARED_WITHIN).await;
    let n = *shared.last().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ac3 = parse_media(&uris[0], &windows[0].text);
    let eac3 = probe(&playable(&folder, &ac3, n, dir.path()).await);
    eprintln!("fmp4 {} segment {n}: {eac3:?}", uris[0]);
    assert_eq!(eac3.codec, "eac3", "{eac3:?}");
    assert_eq!(eac3.channels, ladder.ac3.channels, "the master's CHANNELS: {eac3:?}");
    // Its stereo, decoded from the E-AC-3.
    let aac = parse_media(&uris[1], &windows[1].text);
    let stereo = probe(&playable(&folder, &aac, n, dir.path()).await);
    check_aac(&format!("{} segment {n}", uris[1]), &stereo);
    running.stop().await;
}

/// Radio has no picture: the master lists audio variants only, as soon as the video ladders'
/// does, and the AAC one's segments are AAC that runs on from one segment to the next as
/// EXTINF says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn radio_on_the_fmp4_ladder_is_audio_variants_of_aac() {
    let _alone = ONE_LADDER.lock().await;
    let demo = demo().await;
    let (running, base) = start_ready(&config_for(&demo, &[])).await;
    let folder = format!("{base}/hls/{RADIO}/{PROFILE}/");
    let asked = std::time::Instant::now();
    let master = master(&folder).await;
    let answered = asked.elapsed();
    assert_eq!(master.version, Some(7), "{master:#?}");
    assert!(!master.variants.is_empty(), "{master:#?}");
    for variant in &master.variants {
        let codecs = variant
            .codecs
            .as_deref()
            .unwrap_or_else(|| panic!("CODECS: {variant:?}"));
        assert!(
            variant.resolution.is_none() && !codecs.contains("avc1"),
            "audio only: {variant:?}"
        );
        if let Some(group) = &variant.audio {
            assert!(
                master.alternatives.iter().any(|a| &a.group_id == group),
                "{variant:?} names a group the master has: {master:#?}"
            );
        }
    }
    let aac = master
        .variants
        .iter()
        .find(|v| v.codecs.as_deref() == Some("mp4a.40.2"))
        .unwrap_or_else(|| panic!("an AAC variant: {master:#?}"));
    let uris = [aac.uri.clone()];
    let (windows, shared) = common_segments(&folder, &uris, STEADY, 3, SHARED_WITHIN).await;
    let media = parse_media(&aac.uri, &windows[0].text);
    let dir = tempfile::tempdir().unwrap();
    let mut starts = Vec::new();
    for &n in &shared[shared.len() - 3..] {
        let path = playable(&folder, &media, n, dir.path()).await;
        let probe = probe(&path);
        eprintln!("fmp4 radio {} segment {n}: {probe:?}", aac.uri);
        check_aac(&format!("{} segment {n}", aac.uri), &probe);
        assert!(probe.packets > 10, "{} segment {n}: {probe:?}", aac.uri);
        let extinf = segment(&media, n).2;
        starts.push((n, probe, extinf));
    }
    for pair in starts.windows(2) {
        let ((n, this, extinf), (_, next, _)) = (&pair[0], &pair[1]);
        let step = next.first.ms() - this.first.ms();
        assert!(
            (step - extinf * 1000.0).abs() <= EXTINF_SLACK * 1000.0,
            "segment {n}: EXTINF {extinf:.3} s, but the next starts {step:.3} ms later:\n{}",
            windows[0].text
        );
        // One sample either way (see `check_aligned`).
        assert!(
            (next.first.ms() - this.end.ms()).abs() <= this.tick.ms() + 1e-9,
            "segment {n} ends at {:.3} ms, the next starts at {:.3} ms",
            this.end.ms(),
            next.first.ms()
        );
    }
    running.stop().await;
    // Last, so that the checks above run either way. The video ladders and radio on `abr` answer
    // their first master in about 2.5 s (four 0.5 s segments and a hold); a master that waits
    // for a track radio never fills runs into `streaming.start_timeout` (20 s).
    assert!(
        answered < MASTER_WITHIN,
        "the first master took {answered:?}, more than {MASTER_WITHIN:?}"
    );
}

#[test]
fn a_segment_is_played_after_the_last_map_before_it() {
    let media = parse_media(
        "media-4.m3u8",
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:7\n\
         #EXT-X-MAP:URI=\"4-init-0.mp4\"\n#EXTINF:1.000,\n4-7.m4s\n#EXT-X-DISCONTINUITY\n\
         #EXT-X-MAP:URI=\"4-init-1.mp4\"\n#EXTINF:0.960,\n4-8.m4s\n#EXTINF:1.000,\n4-9.m4s\n",
    );
    assert_eq!(segment(&media, 7), ("4-7.m4s".into(), "4-init-0.mp4".into(), 1.0));
    let (uri, init, extinf) = segment(&media, 9);
    assert_eq!((uri.as_str(), init.as_str()), ("4-9.m4s", "4-init-1.mp4"));
    assert!((extinf - 1.0).abs() < 1e-6);
    assert!(
        Time {
            ticks: 9000,
            den: 90000
        }
        .same(Time { ticks: 100, den: 1000 })
    );
    assert!(
        !Time {
            ticks: 9001,
            den: 90000
        }
        .same(Time { ticks: 100, den: 1000 })
    );
}
