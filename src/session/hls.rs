//! HLS state of a session: the segment store and the playlists xg2g writes itself, following
//! the Apple rules (REFERENCE.md §2): float EXTINF, program-date-time, independent segments, a
//! window of at least six segments, a target duration never below the longest segment, and a
//! master playlist with CODECS, BANDWIDTH, AVERAGE-BANDWIDTH, RESOLUTION and FRAME-RATE.
//! Pure: no GStreamer, no IO.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

/// Segments kept after they leave the playlist, for clients that fetched an older playlist.
const SPARE: usize = 3;

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

/// The published HLS state; each change publishes a new snapshot.
#[derive(Debug, Clone, Default)]
pub struct HlsState {
    segments: VecDeque<Arc<Segment>>,
    window: usize,
    /// Discontinuities that have left the store.
    evicted_discontinuities: u64,
    pub video: Option<VideoInfo>,
    /// RFC 6381 codec string of the audio, e.g. `mp4a.40.2`.
    pub audio: Option<String>,
}

impl HlsState {
    /// `window` is clamped to at least 6 (Apple: live playlists keep at least six segments).
    pub fn new(window: usize) -> Self {
        Self {
            window: window.max(6),
            ..Default::default()
        }
    }

    pub fn push(&mut self, segment: Segment) {
        self.segments.push_back(Arc::new(segment));
        while self.segments.len() > self.window + SPARE {
            if let Some(old) = self.segments.pop_front()
                && old.discontinuity
            {
                self.evicted_discontinuities += 1;
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// The segment with this sequence number, while it is stored.
    pub fn segment(&self, sequence: u64) -> Option<Arc<Segment>> {
        self.segments.iter().find(|s| s.sequence == sequence).cloned()
    }

    fn in_window(&self) -> impl Iterator<Item = &Arc<Segment>> {
        self.segments
            .iter()
            .skip(self.segments.len().saturating_sub(self.window))
    }

    /// The media playlist; segment URIs are `<sequence>.ts`, relative to the playlist.
    pub fn media_playlist(&self) -> String {
        let skipped = self.segments.len().saturating_sub(self.window);
        let discontinuity_sequence = self.evicted_discontinuities
            + self.segments.iter().take(skipped).filter(|s| s.discontinuity).count() as u64;
        let window: Vec<&Arc<Segment>> = self.in_window().collect();
        // Apple: EXTINF rounded to the nearest integer must not exceed the target duration.
        let target = window
            .iter()
            .map(|s| s.duration.round() as u64)
            .max()
            .unwrap_or(1)
            .max(1);
        let first = window.first().map_or(0, |s| s.sequence);
        let mut out = String::new();
        let _ = write!(
            out,
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:{first}\n\
             #EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_sequence}\n#EXT-X-INDEPENDENT-SEGMENTS\n"
        );
        for s in window {
            if s.discontinuity {
                out.push_str("#EXT-X-DISCONTINUITY\n");
            }
            let _ = write!(
                out,
                "#EXT-X-PROGRAM-DATE-TIME:{}\n#EXTINF:{:.3},\n{}.ts\n",
                humantime::format_rfc3339_millis(s.started_at),
                s.duration,
                s.sequence
            );
        }
        out
    }

    /// The master playlist with one variant pointing at `media_uri`.
    pub fn master_playlist(&self, media_uri: &str) -> String {
        let window: Vec<&Arc<Segment>> = self.in_window().collect();
        let rates: Vec<f64> = window
            .iter()
            .filter(|s| s.duration > 0.0)
            .map(|s| s.bytes.len() as f64 * 8.0 / s.duration)
            .collect();
        let peak = rates.iter().copied().fold(0.0, f64::max).ceil() as u64;
        let average = if rates.is_empty() {
            0
        } else {
            (rates.iter().sum::<f64>() / rates.len() as f64).ceil() as u64
        };
        let codecs: Vec<&str> = self
            .video
            .iter()
            .map(|v| v.codec.as_str())
            .chain(self.audio.as_deref())
            .collect();
        let mut attributes = format!("BANDWIDTH={},AVERAGE-BANDWIDTH={}", peak.max(1), average.max(1));
        if !codecs.is_empty() {
            let _ = write!(attributes, ",CODECS=\"{}\"", codecs.join(","));
        }
        if let Some(v) = &self.video {
            let _ = write!(
                attributes,
                ",RESOLUTION={}x{},FRAME-RATE={:.3}",
                v.width, v.height, v.frame_rate
            );
        }
        format!("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-STREAM-INF:{attributes}\n{media_uri}\n")
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
    use std::time::{Duration, UNIX_EPOCH};

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
        let mut hls = HlsState::new(3);
        for i in 0..12 {
            hls.push(seg(i, if i == 8 { 2.6 } else { 1.92 }, i == 4 || i == 10));
        }
        let text = hls.media_playlist();
        assert_eq!(
            text,
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:3\n#EXT-X-MEDIA-SEQUENCE:6\n\
             #EXT-X-DISCONTINUITY-SEQUENCE:1\n#EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:32.000Z\n#EXTINF:1.920,\n6.ts\n\
             #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:34.000Z\n#EXTINF:1.920,\n7.ts\n\
             #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:36.000Z\n#EXTINF:2.600,\n8.ts\n\
             #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:38.000Z\n#EXTINF:1.920,\n9.ts\n\
             #EXT-X-DISCONTINUITY\n\
             #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:40.000Z\n#EXTINF:1.920,\n10.ts\n\
             #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:42.000Z\n#EXTINF:1.920,\n11.ts\n",
            "window of six (the minimum), one discontinuity already left it"
        );
        assert!(hls.segment(3).is_some(), "spare segments stay fetchable");
        assert!(hls.segment(2).is_none(), "older ones are gone");
    }

    #[test]
    fn master_playlist_declares_codecs_and_rates() {
        let mut hls = HlsState::new(6);
        hls.push(seg(0, 2.0, false));
        hls.push(seg(1, 1.0, false));
        hls.video = Some(VideoInfo {
            codec: avc1_codec("high", "3.2"),
            width: 1280,
            height: 720,
            frame_rate: 50.0,
        });
        hls.audio = Some("mp4a.40.2".into());
        assert_eq!(
            hls.master_playlist("media.m3u8"),
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
}
