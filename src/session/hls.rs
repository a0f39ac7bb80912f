//! HLS state of a session: the segment store and the playlists xg2g writes itself, following
//! the Apple rules (REFERENCE.md §2): float EXTINF, program-date-time, independent segments, a
//! window of at least six segments, a target duration never below the longest segment, and a
//! master playlist with CODECS, BANDWIDTH, AVERAGE-BANDWIDTH, RESOLUTION and FRAME-RATE.
//! Live playlists announce blocking reloads (`_HLS_msn`), and end with `EXT-X-ENDLIST` once
//! the receiver is gone for good. Pure: no GStreamer, no IO.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

/// Segments kept after they leave the playlist, for clients that fetched an older playlist
/// (with half-second segments, six seconds more).
const SPARE: usize = 12;

/// The lengths of a session's first [`PLAYABLE_SEGMENTS`] segments: short, so that a first
/// playlist waits little for them (with the default 1 s target, later segments are as short;
/// with a longer target they are not). Cuts fall on key frames: where xg2g encodes, it makes
/// them here; copied video is cut at the source's first key frame past each length.
pub(crate) const FAST_START: [Duration; PLAYABLE_SEGMENTS] = [Duration::from_millis(500); PLAYABLE_SEGMENTS];

/// Segments a first playlist waits for before it is answered. Three is what Chromium's own
/// player needs to start at all (with two: `DEMUXER_ERROR_COULD_NOT_PARSE`); the fourth is the
/// buffer that keeps it from rebuffering, as it reloads the playlist only once a target duration
/// and so must hold a reload interval and a segment (measured without program date times:
/// with three 0.5 s segments the radio channel waited 1.1 s once in 16 cold starts; README "HLS").
pub const PLAYABLE_SEGMENTS: usize = 4;

/// How long a first playlist that waited for [`PLAYABLE_SEGMENTS`] is held after they exist:
/// half a fast-start segment. Chromium's own player reloads its playlist once a target duration,
/// counted from its first load, and starts at the oldest listed segment, so the moment of that
/// first answer sets both how far behind the live end it plays and when it looks for new
/// segments. Answered the instant the fourth segment appears, each reload races the
/// publication of a later one (segments come every 0.5 s, the reload every 1 s): a segment a
/// few milliseconds late waits a whole reload, and the player was left with 0.05 s of media
/// ahead in every cold start measured, and rebuffered on the radio channel in CI. Held half a
/// segment, reloads fall between publications and the player starts that much further back:
/// its least media ahead measured 0.24–0.53 s (README "HLS").
pub const FIRST_ANSWER_HOLD: Duration = Duration::from_millis(250);

/// One media segment, in memory.
#[derive(Debug, Clone)]
pub struct Segment {
    pub sequence: u64,
    /// Seconds.
    pub duration: f64,
    pub bytes: Bytes,
    /// Wall-clock time of the segment's first frame.
    pub started_at: SystemTime,
    /// The first segment after an upstream reconnect.
    pub discontinuity: bool,
}

/// What the master playlist declares about the video.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoInfo {
    /// RFC 6381 codec string, e.g. `avc1.64001f`.
    pub codec: String,
    pub width: u32,
    pub height: u32,
    pub frame_rate: f64,
}

/// One variant's segments (a ladder has one track per rung, every other session one).
#[derive(Debug, Clone, Default)]
struct Track {
    segments: VecDeque<Arc<Segment>>,
    /// Discontinuities that have left the store.
    evicted_discontinuities: u64,
    video: Option<VideoInfo>,
    /// RFC 6381 codec string of the audio, e.g. `mp4a.40.2`.
    audio: Option<String>,
    /// The media sequence number of the next segment.
    next: u64,
    /// The next segment follows an upstream reconnect.
    discontinuity_next: bool,
}

/// The published HLS state; each change publishes a new snapshot.
#[derive(Debug, Clone, Default)]
pub struct HlsState {
    tracks: Vec<Track>,
    window: usize,
    /// `EXT-X-TARGETDURATION`: the configured target, raised (never lowered) by a longer
    /// segment (copied video whose source has longer GOPs); one for every track.
    target: u64,
    /// The session is over: the playlist ends.
    ended: bool,
    /// Which tracks carry media, once the graph has said (a ladder's variants the picture
    /// made); until then, every track with segments counts.
    in_use: Option<Vec<bool>>,
}

impl HlsState {
    /// `window` is clamped to at least 6 (Apple: live playlists keep at least six segments).
    pub fn new(window: usize, target: Duration) -> Self {
        Self {
            tracks: vec![Track::default()],
            window: window.max(6),
            target: target.as_secs_f64().ceil().max(1.0) as u64,
            ended: false,
            in_use: None,
        }
    }

    /// Which tracks carry media (known once the graph has linked its outputs).
    pub fn set_in_use(&mut self, in_use: Vec<bool>) {
        self.in_use = Some(in_use);
    }

    pub fn knows_in_use(&self) -> bool {
        self.in_use.is_some()
    }

    /// Whether every track in use has a segment and its codecs, so that a master playlist
    /// lists them all (a player reads the master once).
    pub fn variants_known(&self) -> bool {
        let Some(in_use) = &self.in_use else { return false };
        self.tracks
            .iter()
            .zip(in_use)
            .all(|(t, used)| !used || (!t.segments.is_empty() && (t.video.is_some() || t.audio.is_some())))
    }

    /// Makes room for `count` tracks (a ladder's variants); never fewer than one. New tracks
    /// number on with the others.
    pub fn set_tracks(&mut self, count: usize) {
        let next = self.tracks.iter().map(|t| t.next).max().unwrap_or(0);
        let discontinuity_next = self.tracks.first().is_some_and(|t| t.discontinuity_next);
        self.tracks.resize_with(count.max(1), || Track {
            next,
            discontinuity_next,
            ..Track::default()
        });
    }

    /// The upstream connection was lost: the next segment of every track is marked (once there
    /// are segments), and the tracks go on with one numbering (a ladder's rungs switch by it).
    pub fn reconnected(&mut self) {
        let marked = !self.is_empty();
        let next = self.tracks.iter().map(|t| t.next).max().unwrap_or(0);
        for track in &mut self.tracks {
            track.next = next;
            track.discontinuity_next = marked;
        }
    }

    /// The media sequence number `track`'s next segment gets.
    pub fn next_sequence(&self, track: usize) -> u64 {
        self.tracks.get(track).map_or(0, |t| t.next)
    }

    /// Adds `track`'s next segment: numbered on, marked when it follows a reconnect.
    pub fn append(&mut self, track: usize, duration: f64, bytes: Bytes, started_at: SystemTime) {
        let Some(t) = self.tracks.get_mut(track) else { return };
        let segment = Segment {
            sequence: t.next,
            duration,
            bytes,
            started_at,
            discontinuity: std::mem::take(&mut t.discontinuity_next),
        };
        self.push(track, segment);
    }

    /// How many tracks there are.
    pub fn tracks(&self) -> usize {
        self.tracks.len()
    }

    pub fn push(&mut self, track: usize, segment: Segment) {
        // Apple: EXTINF rounded to the nearest integer must not exceed the target duration.
        self.target = self.target.max(segment.duration.round() as u64).max(1);
        let window = self.window;
        let Some(track) = self.tracks.get_mut(track) else {
            return;
        };
        track.next = track.next.max(segment.sequence + 1);
        track.segments.push_back(Arc::new(segment));
        while track.segments.len() > window + SPARE {
            if let Some(old) = track.segments.pop_front()
                && old.discontinuity
            {
                track.evicted_discontinuities += 1;
            }
        }
    }

    /// Whether no track has a segment yet.
    pub fn is_empty(&self) -> bool {
        self.tracks.iter().all(|t| t.segments.is_empty())
    }

    /// Segments stored in `track` (the window and a few spare); 0 for a track that is not there.
    pub fn len(&self, track: usize) -> usize {
        self.tracks.get(track).map_or(0, |t| t.segments.len())
    }

    /// The media sequence number of `track`'s newest segment.
    pub fn last_sequence(&self, track: usize) -> Option<u64> {
        self.tracks.get(track)?.segments.back().map(|s| s.sequence)
    }

    /// The target duration, whole seconds.
    pub fn target_duration(&self) -> u64 {
        self.target
    }

    /// Ends the playlist: no segment follows.
    pub fn end(&mut self) {
        self.ended = true;
    }

    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Whether the master playlist still lacks what `track` carries.
    pub fn needs_media(&self, track: usize) -> bool {
        self.tracks
            .get(track)
            .is_some_and(|t| t.video.is_none() || t.audio.is_none())
    }

    /// What `track` carries, for the master playlist (each only while unknown).
    pub fn learn_media(&mut self, track: usize, video: Option<VideoInfo>, audio: Option<String>) {
        let Some(track) = self.tracks.get_mut(track) else {
            return;
        };
        if track.video.is_none() {
            track.video = video;
        }
        if track.audio.is_none() {
            track.audio = audio;
        }
    }

    /// The segment of `track` with this sequence number, while it is stored.
    pub fn segment(&self, track: usize, sequence: u64) -> Option<Arc<Segment>> {
        self.tracks
            .get(track)?
            .segments
            .iter()
            .find(|s| s.sequence == sequence)
            .cloned()
    }

    fn in_window<'a>(&self, track: &'a Track) -> std::collections::vec_deque::Iter<'a, Arc<Segment>> {
        track.segments.range(track.segments.len().saturating_sub(self.window)..)
    }

    /// The media playlist of `track`; segment URIs are `<sequence>.ts` (track 0) or
    /// `<track>-<sequence>.ts`, relative to the playlist, each followed by `?{query}` when one is
    /// given (a signature for the session's folder). With `dated`, every segment carries
    /// `#EXT-X-PROGRAM-DATE-TIME` (Apple rule 8.4); Chromium's built-in HLS player fails after
    /// its first rebuffer when it does (README "HLS").
    pub fn media_playlist(&self, track: usize, query: Option<&str>, dated: bool) -> String {
        let empty = Track::default();
        let t = self.tracks.get(track).unwrap_or(&empty);
        let suffix = query.map(|q| format!("?{q}")).unwrap_or_default();
        let prefix = segment_prefix(track);
        let skipped = t.segments.len().saturating_sub(self.window);
        let discontinuity_sequence =
            t.evicted_discontinuities + t.segments.iter().take(skipped).filter(|s| s.discontinuity).count() as u64;
        let window: Vec<&Arc<Segment>> = self.in_window(t).collect();
        let target = self.target.max(1);
        let first = window.first().map_or(0, |s| s.sequence);
        let mut out = String::new();
        let _ = write!(
            out,
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:{first}\n\
             #EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_sequence}\n#EXT-X-INDEPENDENT-SEGMENTS\n"
        );
        if !self.ended {
            // Players may ask for the next playlist with `_HLS_msn` and get it the moment the
            // segment exists, instead of polling (RFC 8216bis 6.2.5.2).
            out.push_str("#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES\n");
        }
        for s in window {
            if s.discontinuity {
                out.push_str("#EXT-X-DISCONTINUITY\n");
            }
            if dated {
                let _ = writeln!(
                    out,
                    "#EXT-X-PROGRAM-DATE-TIME:{}",
                    humantime::format_rfc3339_millis(s.started_at)
                );
            }
            let _ = write!(out, "#EXTINF:{:.3},\n{prefix}{}.ts{suffix}\n", s.duration, s.sequence);
        }
        if self.ended {
            out.push_str("#EXT-X-ENDLIST\n");
        }
        out
    }

    /// The master playlist: one variant per track that has segments and a known codec, in
    /// track order (a ladder's highest rung first, its audio-only rung last); `media_uri` gives
    /// each track's playlist URI. Rates are measured from the segments in the window.
    pub fn master_playlist(&self, media_uri: impl Fn(usize) -> String) -> String {
        let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n");
        let single = self.tracks.len() == 1;
        for (i, t) in self.tracks.iter().enumerate() {
            let known = t.video.is_some() || t.audio.is_some();
            let used = self.in_use.as_ref().is_none_or(|u| u.get(i).copied().unwrap_or(false));
            if !single && (t.segments.is_empty() || !known || !used) {
                continue;
            }
            let _ = write!(out, "#EXT-X-STREAM-INF:{}\n{}\n", self.attributes(t), media_uri(i));
        }
        out
    }

    /// `EXT-X-STREAM-INF` attributes of a track.
    fn attributes(&self, t: &Track) -> String {
        let rates: Vec<f64> = self
            .in_window(t)
            .filter(|s| s.duration > 0.0)
            .map(|s| s.bytes.len() as f64 * 8.0 / s.duration)
            .collect();
        let peak = rates.iter().copied().fold(0.0, f64::max).ceil() as u64;
        let average = if rates.is_empty() {
            0
        } else {
            (rates.iter().sum::<f64>() / rates.len() as f64).ceil() as u64
        };
        let codecs: Vec<&str> = t
            .video
            .iter()
            .map(|v| v.codec.as_str())
            .chain(t.audio.as_deref())
            .collect();
        let mut attributes = format!("BANDWIDTH={},AVERAGE-BANDWIDTH={}", peak.max(1), average.max(1));
        if !codecs.is_empty() {
            let _ = write!(attributes, ",CODECS=\"{}\"", codecs.join(","));
        }
        if let Some(v) = &t.video {
            let _ = write!(
                attributes,
                ",RESOLUTION={}x{},FRAME-RATE={:.3}",
                v.width, v.height, v.frame_rate
            );
        }
        attributes
    }
}

/// What names `track`'s segments: nothing for the first (as every single-variant session),
/// `<track>-` for the others.
pub fn segment_prefix(track: usize) -> String {
    if track == 0 { String::new() } else { format!("{track}-") }
}

/// The media playlist name of `track`: `media.m3u8`, then `media-1.m3u8`, …
pub fn media_playlist_name(track: usize) -> String {
    if track == 0 {
        "media.m3u8".to_owned()
    } else {
        format!("media-{track}.m3u8")
    }
}

/// RFC 6381 string of H.264 from caps fields: `profile` (GStreamer names) and `level` ("3.1").
pub fn avc1_codec(profile: &str, level: &str) -> String {
    let (profile_idc, constraints) = match profile {
        "constrained-baseline" => (0x42, 0xE0),
        "baseline" => (0x42, 0x00),
        "main" => (0x4D, 0x00),
        "high" => (0x64, 0x00),
        "high-10" => (0x6E, 0x00),
        "high-4:2:2" => (0x7A, 0x00),
        "high-4:4:4" => (0xF4, 0x00),
        _ => (0x64, 0x00),
    };
    let level_idc = match level {
        "1b" => 9,
        other => {
            let mut parts = other.splitn(2, '.');
            let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(4);
            let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
            major * 10 + minor
        }
    };
    format!("avc1.{profile_idc:02x}{constraints:02x}{level_idc:02x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn seg(sequence: u64, duration: f64, discontinuity: bool) -> Segment {
        Segment {
            sequence,
            duration,
            bytes: Bytes::from(vec![0u8; 250_000]),
            started_at: UNIX_EPOCH + Duration::from_secs(1_700_000_000 + sequence * 2),
            discontinuity,
        }
    }

    #[test]
    fn media_playlist_follows_the_apple_rules() {
        let mut hls = HlsState::new(3, Duration::from_secs(2));
        for i in 0..12 {
            hls.push(0, seg(i, if i == 8 { 2.6 } else { 1.92 }, i == 4 || i == 10));
        }
        let text = hls.media_playlist(0, None, true);
        assert_eq!(
            text,
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:3\n#EXT-X-MEDIA-SEQUENCE:6\n\
             #EXT-X-DISCONTINUITY-SEQUENCE:1\n#EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES\n\
             #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:32.000Z\n#EXTINF:1.920,\n6.ts\n\
             #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:34.000Z\n#EXTINF:1.920,\n7.ts\n\
             #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:36.000Z\n#EXTINF:2.600,\n8.ts\n\
             #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:38.000Z\n#EXTINF:1.920,\n9.ts\n\
             #EXT-X-DISCONTINUITY\n\
             #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:40.000Z\n#EXTINF:1.920,\n10.ts\n\
             #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:42.000Z\n#EXTINF:1.920,\n11.ts\n",
            "window of six (the minimum), one discontinuity already left it"
        );
        assert_eq!(hls.last_sequence(0), Some(11));
        let undated = hls.media_playlist(0, None, false);
        assert!(!undated.contains("PROGRAM-DATE-TIME"), "{undated}");
        assert_eq!(
            undated.lines().filter(|l| l.starts_with("#EXTINF:")).count(),
            6,
            "{undated}"
        );
        let signed = hls.media_playlist(0, Some("exp=9&kid=k&sig=S"), true);
        assert_eq!(signed.matches(".ts?exp=9&kid=k&sig=S\n").count(), 6, "{signed}");
        for i in 12..19 {
            hls.push(0, seg(i, 1.92, false));
        }
        assert!(hls.segment(0, 1).is_some(), "spare segments stay fetchable");
        assert!(hls.segment(0, 0).is_none(), "older ones are gone");
    }

    #[test]
    fn the_target_duration_never_changes_down_and_an_ended_playlist_says_so() {
        let mut hls = HlsState::new(6, Duration::from_secs(2));
        hls.push(0, seg(0, 0.3, false));
        assert!(
            hls.media_playlist(0, None, true).contains("#EXT-X-TARGETDURATION:2\n"),
            "short first segments keep it"
        );
        hls.push(0, seg(1, 3.4, false));
        assert_eq!(hls.target_duration(), 3, "a longer segment raises it");
        hls.push(0, seg(2, 1.0, false));
        for _ in 0..10 {
            let next = hls.last_sequence(0).unwrap() + 1;
            hls.push(0, seg(next, 1.0, false));
        }
        let text = hls.media_playlist(0, None, true);
        assert!(text.contains("#EXT-X-TARGETDURATION:3\n"), "and it stays: {text}");
        assert!(!text.contains("#EXT-X-ENDLIST"));
        hls.end();
        let text = hls.media_playlist(0, None, true);
        assert!(text.ends_with("#EXT-X-ENDLIST\n"), "{text}");
        assert!(!text.contains("CAN-BLOCK-RELOAD"), "nothing to wait for");
        assert!(hls.is_ended());
    }

    #[test]
    fn master_playlist_declares_codecs_and_rates() {
        let mut hls = HlsState::new(6, Duration::from_secs(2));
        hls.push(0, seg(0, 2.0, false));
        hls.push(0, seg(1, 1.0, false));
        hls.learn_media(
            0,
            Some(VideoInfo {
                codec: avc1_codec("high", "3.2"),
                width: 1280,
                height: 720,
                frame_rate: 50.0,
            }),
            Some("mp4a.40.2".into()),
        );
        assert_eq!(
            hls.master_playlist(media_playlist_name),
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-STREAM-INF:BANDWIDTH=2000000,\
             AVERAGE-BANDWIDTH=1500000,CODECS=\"avc1.640020,mp4a.40.2\",RESOLUTION=1280x720,FRAME-RATE=50.000\n\
             media.m3u8\n"
        );
    }

    #[test]
    fn avc1_strings() {
        assert_eq!(avc1_codec("constrained-baseline", "3"), "avc1.42e01e");
        assert_eq!(avc1_codec("main", "4.1"), "avc1.4d0029");
        assert_eq!(avc1_codec("high", "4"), "avc1.640028");
    }

    #[test]
    fn a_ladder_master_lists_the_variants_in_use_once_each_is_known() {
        let mut hls = HlsState::new(6, Duration::from_secs(1));
        hls.set_tracks(3);
        assert!(
            !hls.variants_known(),
            "nothing known before the graph says what is in use"
        );
        hls.set_in_use(vec![true, false, true]);
        hls.push(0, seg(0, 0.5, false));
        hls.learn_media(0, None, Some("mp4a.40.2".into()));
        assert!(!hls.variants_known(), "track 2 has no segment yet");
        let master = hls.master_playlist(media_playlist_name);
        assert!(
            master.contains("media.m3u8") && !master.contains("media-2.m3u8"),
            "{master}"
        );
        hls.push(2, seg(0, 0.5, false));
        hls.learn_media(2, None, Some("mp4a.40.2".into()));
        assert!(hls.variants_known());
        let master = hls.master_playlist(media_playlist_name);
        assert_eq!(master.matches("#EXT-X-STREAM-INF:").count(), 2, "{master}");
        assert!(
            master.contains("\nmedia-2.m3u8\n") && !master.contains("media-1.m3u8"),
            "{master}"
        );
        let media = hls.media_playlist(2, None, false);
        assert!(media.contains("\n2-0.ts\n"), "{media}");
    }

    #[test]
    fn tracks_number_on_together_across_a_reconnect() {
        let mut hls = HlsState::new(6, Duration::from_secs(1));
        let at = UNIX_EPOCH;
        hls.reconnected();
        hls.append(0, 0.5, Bytes::new(), at);
        assert!(!hls.segment(0, 0).unwrap().discontinuity, "nothing before it: no mark");
        hls.set_tracks(2);
        assert_eq!(hls.next_sequence(1), 1, "a new track numbers on with the others");
        hls.append(0, 0.5, Bytes::new(), at);
        // The drop left track 1 behind: after the reconnect both go on from the highest.
        hls.reconnected();
        assert_eq!((hls.next_sequence(0), hls.next_sequence(1)), (2, 2));
        hls.append(1, 0.5, Bytes::new(), at);
        hls.append(1, 0.5, Bytes::new(), at);
        assert!(hls.segment(1, 2).unwrap().discontinuity, "the first after it is marked");
        assert!(!hls.segment(1, 3).unwrap().discontinuity, "once");
        hls.append(0, 0.5, Bytes::new(), at);
        assert!(hls.segment(0, 2).unwrap().discontinuity, "in every track");
    }
}
