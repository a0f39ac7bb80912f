//! HLS state of a session: the segment store and the playlists xg2g writes itself, following
//! the Apple rules (REFERENCE.md §2): float EXTINF, program-date-time, independent segments, a
//! window of at least six segments, a target duration never below the longest segment, and a
//! master playlist with CODECS, BANDWIDTH, AVERAGE-BANDWIDTH, RESOLUTION and FRAME-RATE.
//! Live playlists announce blocking reloads (`_HLS_msn`), and end with `EXT-X-ENDLIST` once
//! the receiver is gone for good. Segments are MPEG-TS, or fMP4 (CMAF) with an init segment per
//! track (`EXT-X-MAP`) and, for a ladder, audio renditions in groups (`EXT-X-MEDIA`). Pure: no
//! GStreamer, no IO.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

/// What a session's segments are, in every track: the template's choice (`.ts`, or `.m4s` each
/// after its track's init segment, `init-N.mp4`).
pub use crate::pipeline::SegmentFormat;

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
    /// The version of its track's init segment it follows (fMP4); 0 for MPEG-TS.
    pub init: u32,
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
    /// Init segments (fMP4) by version, oldest first: the current one (last) and those that
    /// stored segments still follow.
    inits: Vec<(u32, Bytes)>,
    /// Audio channels, for a rendition's `CHANNELS`.
    channels: Option<u32>,
}

impl Track {
    /// The version of the current init segment; 0 before there is one.
    fn init_version(&self) -> u32 {
        self.inits.last().map_or(0, |(version, _)| *version)
    }

    /// Forgets init segments that neither are current nor have a stored segment.
    fn prune_inits(&mut self) {
        let current = self.init_version();
        let segments = &self.segments;
        self.inits
            .retain(|(version, _)| *version == current || segments.iter().any(|s| s.init == *version));
    }
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
    format: SegmentFormat,
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
            format: SegmentFormat::Ts,
        }
    }

    /// What the segments are (one format for every track).
    pub fn set_format(&mut self, format: SegmentFormat) {
        self.format = format;
    }

    pub fn format(&self) -> SegmentFormat {
        self.format
    }

    /// `track`'s init segment (fMP4: `ftyp` and `moov`). Bytes other than the current ones
    /// make a new version (the first is 0), which the segments appended from now on follow.
    pub fn set_init(&mut self, track: usize, bytes: Bytes) {
        let Some(t) = self.tracks.get_mut(track) else { return };
        if t.inits.last().is_some_and(|(_, current)| *current == bytes) {
            return;
        }
        let version = t.inits.last().map_or(0, |(version, _)| version + 1);
        t.inits.push((version, bytes));
        t.prune_inits();
    }

    /// `track`'s init segment of this version, while it is current or a stored segment follows it.
    pub fn init_segment(&self, track: usize, version: u32) -> Option<Bytes> {
        self.tracks
            .get(track)?
            .inits
            .iter()
            .find(|(v, _)| *v == version)
            .map(|(_, bytes)| bytes.clone())
    }

    /// How many audio channels `track` carries, for the master playlist (only while unknown).
    pub fn learn_channels(&mut self, track: usize, channels: u32) {
        if let Some(t) = self.tracks.get_mut(track) {
            t.channels.get_or_insert(channels);
        }
    }

    /// Which tracks carry media (known once the graph has linked its outputs).
    pub fn set_in_use(&mut self, in_use: Vec<bool>) {
        self.in_use = Some(in_use);
    }

    /// The first track that carries media (0 until the graph has said): the one a master
    /// playlist waits for. An fMP4 ladder on a radio channel has no video, so no track 0.
    pub fn first_in_use(&self) -> usize {
        self.in_use
            .as_ref()
            .and_then(|u| u.iter().position(|&used| used))
            .unwrap_or(0)
    }

    /// Which tracks carry media; empty until the graph has said.
    pub fn in_use(&self) -> &[bool] {
        self.in_use.as_deref().unwrap_or_default()
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
            init: t.init_version(),
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
        track.prune_inits();
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
    /// `<track>-<sequence>.ts` (fMP4: `.m4s`, each run of segments after its init segment's
    /// `EXT-X-MAP`, `init-<version>.mp4` or `<track>-init-<version>.mp4`), relative to the
    /// playlist, each followed by `?{query}` when one is given (a signature for the session's
    /// folder). With `dated`, every segment carries
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
        let fmp4 = self.format == SegmentFormat::Fmp4;
        // fMP4 needs version 6 (EXT-X-MAP without I-frames only) or 7; MPEG-TS keeps 3.
        let (version, extension) = if fmp4 { (7, "m4s") } else { (3, "ts") };
        let mut out = String::new();
        let _ = write!(
            out,
            "#EXTM3U\n#EXT-X-VERSION:{version}\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:{first}\n\
             #EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_sequence}\n#EXT-X-INDEPENDENT-SEGMENTS\n"
        );
        if !self.ended {
            // Players may ask for the next playlist with `_HLS_msn` and get it the moment the
            // segment exists, instead of polling (RFC 8216bis 6.2.5.2).
            out.push_str("#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES\n");
        }
        let mut mapped = None;
        for s in window {
            if s.discontinuity {
                out.push_str("#EXT-X-DISCONTINUITY\n");
            }
            // EXT-X-MAP applies to every segment after it, until the next (RFC 8216 4.3.2.5).
            if fmp4 && mapped != Some(s.init) {
                let _ = writeln!(out, "#EXT-X-MAP:URI=\"{prefix}init-{}.mp4{suffix}\"", s.init);
                mapped = Some(s.init);
            }
            if dated {
                let _ = writeln!(
                    out,
                    "#EXT-X-PROGRAM-DATE-TIME:{}",
                    humantime::format_rfc3339_millis(s.started_at)
                );
            }
            let _ = write!(
                out,
                "#EXTINF:{:.3},\n{prefix}{}.{extension}{suffix}\n",
                s.duration, s.sequence
            );
        }
        if self.ended {
            out.push_str("#EXT-X-ENDLIST\n");
        }
        out
    }

    /// The master playlist: one variant per track that has segments and a known codec, in
    /// track order (a ladder's highest rung first, its audio-only rung last); `media_uri` gives
    /// each track's playlist URI. Rates are measured from the segments in the window. An fMP4
    /// session with video lists its other audio tracks as renditions instead: each video
    /// variant once with the AAC group and once more with the AC-3 group (after, so that a
    /// player that cannot decode AC-3 drops those by their CODECS), then the audio-only rung.
    pub fn master_playlist(&self, media_uri: impl Fn(usize) -> String) -> String {
        let single = self.tracks.len() == 1;
        let listed: Vec<usize> = (0..self.tracks.len())
            .filter(|&i| {
                let t = &self.tracks[i];
                let known = t.video.is_some() || t.audio.is_some();
                let used = self.in_use.as_ref().is_none_or(|u| u.get(i).copied().unwrap_or(false));
                single || (!t.segments.is_empty() && known && used)
            })
            .collect();
        if self.format == SegmentFormat::Fmp4 {
            return self.fmp4_master(&listed, media_uri);
        }
        let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n");
        for i in listed {
            let attributes = self.attributes(&self.tracks[i], None);
            let _ = write!(out, "#EXT-X-STREAM-INF:{attributes}\n{}\n", media_uri(i));
        }
        out
    }

    fn fmp4_master(&self, listed: &[usize], media_uri: impl Fn(usize) -> String) -> String {
        let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n");
        let (videos, audio): (Vec<usize>, Vec<usize>) = listed.iter().partition(|&&i| self.tracks[i].video.is_some());
        let mut groups = [AudioGroup::new("aac"), AudioGroup::new("ac3")];
        // Radio, the audio-only rung and audio of no known group: variants of their own.
        let mut alone = Vec::new();
        for i in audio {
            let t = &self.tracks[i];
            let codec = t.audio.as_deref().unwrap_or_default();
            let kind = match codec {
                c if c.starts_with("mp4a") => Some((0, "Stereo")),
                "ac-3" => Some((1, "Dolby Digital")),
                "ec-3" => Some((1, "Dolby Digital Plus")),
                _ => None,
            };
            let Some((group, name)) = kind.filter(|_| !videos.is_empty() && i + 1 != self.tracks.len()) else {
                alone.push(i);
                continue;
            };
            let group = &mut groups[group];
            // One rendition of a group is its default.
            let default = if group.codecs.is_empty() { "YES" } else { "NO" };
            let channels = t.channels.map(|c| format!(",CHANNELS=\"{c}\"")).unwrap_or_default();
            let _ = writeln!(
                out,
                "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"{}\",NAME=\"{name}\",DEFAULT={default},AUTOSELECT=YES\
                 {channels},URI=\"{}\"",
                group.id,
                media_uri(i)
            );
            // A variant's BANDWIDTH covers the largest rendition of its group.
            let (peak, average) = self.rates(t);
            group.peak = group.peak.max(peak);
            group.average = group.average.max(average);
            if !group.codecs.contains(&codec) {
                group.codecs.push(codec);
            }
        }
        let mut grouped: Vec<Option<&AudioGroup>> = groups.iter().filter(|g| !g.codecs.is_empty()).map(Some).collect();
        if grouped.is_empty() {
            // No renditions (yet): the video variants as they are.
            grouped.push(None);
        }
        for group in grouped {
            for &i in &videos {
                let attributes = self.attributes(&self.tracks[i], group);
                let _ = write!(out, "#EXT-X-STREAM-INF:{attributes}\n{}\n", media_uri(i));
            }
        }
        for i in alone {
            let attributes = self.attributes(&self.tracks[i], None);
            let _ = write!(out, "#EXT-X-STREAM-INF:{attributes}\n{}\n", media_uri(i));
        }
        out
    }

    /// Peak and average bits per second of `t`'s segments in the window.
    fn rates(&self, t: &Track) -> (u64, u64) {
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
        (peak, average)
    }

    /// `EXT-X-STREAM-INF` attributes of a track, played with `audio`'s renditions if given.
    fn attributes(&self, t: &Track, audio: Option<&AudioGroup>) -> String {
        let (mut peak, mut average) = self.rates(t);
        if let Some(group) = audio {
            peak += group.peak;
            average += group.average;
        }
        let codecs: Vec<&str> = t
            .video
            .iter()
            .map(|v| v.codec.as_str())
            .chain(t.audio.as_deref())
            .chain(audio.into_iter().flat_map(|g| g.codecs.iter().copied()))
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
        if let Some(group) = audio {
            let _ = write!(attributes, ",AUDIO=\"{}\"", group.id);
        }
        attributes
    }
}

/// A group of audio renditions in an fMP4 master playlist: `aac` or `ac3`.
struct AudioGroup<'a> {
    id: &'static str,
    codecs: Vec<&'a str>,
    /// The largest rendition's rates.
    peak: u64,
    average: u64,
}

impl AudioGroup<'_> {
    fn new(id: &'static str) -> Self {
        Self {
            id,
            codecs: Vec::new(),
            peak: 0,
            average: 0,
        }
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
mod tests;
