//! The HLS client: a live playlist polled like a player, its new segments fetched, and the
//! player's buffer that decides its stalls.

use std::time::Duration;

use futures_util::StreamExt;
use m3u8_rs::{MediaPlaylist, Playlist};
use tokio::time::{Instant, timeout_at};
use url::Url;

use super::figures::{SpeedMeter, Waits};
use super::{ClientOutcome, Clock, describe};

/// Segments a player fetches from a live playlist it joins: the last three, like hls.js.
const BACKLOG_SEGMENTS: usize = 3;
/// Masters that may follow one another before the client gives up for this poll.
const MAX_MASTER_HOPS: u32 = 2;

pub(super) async fn run_hls(
    http: &reqwest::Client,
    url: &str,
    variant: usize,
    clock: &Clock,
    segment: Duration,
    out: &mut ClientOutcome,
) {
    let mut playlist_url = match Url::parse(url) {
        Ok(url) => url,
        Err(e) => return out.error(format!("bad playlist URL: {e}")),
    };
    let mut poll = segment / 2;
    let mut tracker = SegmentTracker::default();
    // Waits between new segments, for the longest; stalls are the player's.
    let mut waits = Waits::default();
    let mut player = PlayerBuffer::default();
    let mut speed = SpeedMeter::new(clock.window_start);
    // Media time of the segments that appeared after the first playlist (the backlog is not).
    let mut appeared = Duration::ZERO;
    let mut master_hops = 0;
    'polls: loop {
        let polled = Instant::now();
        if polled >= clock.end {
            break;
        }
        let fetched = match timeout_at(clock.end, fetch_playlist(http, &playlist_url, variant)).await {
            Err(_) => break,
            Ok(fetched) => fetched,
        };
        out.slowest_playlist = out.slowest_playlist.max(polled.elapsed());
        match fetched {
            Err(text) => out.error(text),
            Ok(Fetched::Master(variant)) if master_hops < MAX_MASTER_HOPS => {
                master_hops += 1;
                playlist_url = variant;
                continue;
            }
            Ok(Fetched::Master(_)) => out.error("master playlists lead to one another"),
            // A ladder's master lists a rung once it has a segment: before the window, the
            // player waits for it; in the window, its absence is an error.
            Ok(Fetched::Missing(text)) => {
                if clock.now().1 >= clock.window_start {
                    out.error(text);
                }
            }
            Ok(Fetched::Media(playlist)) => {
                master_hops = 0;
                if playlist.target_duration > 0 {
                    poll = Duration::from_secs(playlist.target_duration) / 2;
                }
                let update = tracker.update(&playlist);
                if let Some(problem) = update.problem {
                    out.error(problem);
                }
                for segment in &update.segments {
                    out.longest_segment = out.longest_segment.max(segment.duration);
                }
                if let Some(last) = update.segments.last() {
                    let (now, at) = clock.now();
                    out.first_playlist
                        .get_or_insert(now.saturating_duration_since(clock.start));
                    if !update.backlog {
                        appeared += update.segments.iter().map(|s| s.duration).sum::<Duration>();
                    }
                    // A new segment is seen up to one poll late, plus the time the playlist
                    // takes to answer (allowed half a poll), so a wait may last the segment's
                    // duration and a poll and a half before it counts as a stall.
                    let slack = poll + poll / 2;
                    let first = &update.segments[0];
                    waits.data_after(at, first.duration + slack, last.duration + slack);
                    speed.sample(at, appeared);
                }
                for segment in &update.segments {
                    let before = out.segments;
                    if !fetch_segment(http, &playlist_url, segment, clock, out).await {
                        break 'polls;
                    }
                    if out.segments > before {
                        player.fetched(clock.now().1, segment.duration);
                    }
                }
                player.play(clock.now().1);
                if playlist.end_list && update.segments.is_empty() {
                    out.error(format!("playlist ended after {} bytes", out.bytes));
                    break;
                }
            }
        }
        tokio::time::sleep_until((polled + poll).min(clock.end)).await;
    }
    waits.finish(clock.now().1);
    player.finish(clock.now().1);
    out.stalls = player.stalls;
    out.longest_wait = waits.longest;
    out.stalled_at = player.stalled_at;
    out.speed = speed.speed();
}

/// What a playlist URL held.
#[derive(Debug)]
enum Fetched {
    /// A master playlist: the URL of the variant the client plays.
    Master(Url),
    /// A master playlist without that variant (yet).
    Missing(String),
    Media(MediaPlaylist),
}

async fn fetch_playlist(http: &reqwest::Client, url: &Url, variant: usize) -> Result<Fetched, String> {
    let response = http
        .get(url.clone())
        .send()
        .await
        .map_err(|e| format!("playlist: {}", describe(&e)))?;
    if !response.status().is_success() {
        return Err(format!("playlist: HTTP {}", response.status().as_u16()));
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("playlist: {}", describe(&e)))?;
    classify(&body, url, variant)
}

/// Parses a playlist and tells master from media by its content; of a master, the URL of
/// variant `n` (in the master's order: a ladder lists its video rungs first, top first).
fn classify(body: &[u8], url: &Url, n: usize) -> Result<Fetched, String> {
    match m3u8_rs::parse_playlist_res(body) {
        Ok(Playlist::MasterPlaylist(master)) => {
            let Some(variant) = master
                .variants
                .iter()
                .filter(|v| !v.is_i_frame && !v.uri.trim().is_empty())
                .nth(n)
            else {
                return match n {
                    0 => Err("master playlist without a variant".to_owned()),
                    n => Ok(Fetched::Missing(format!("master playlist without a variant {n}"))),
                };
            };
            url.join(&variant.uri)
                .map(Fetched::Master)
                .map_err(|e| format!("bad variant URI {:?}: {e}", variant.uri))
        }
        Ok(Playlist::MediaPlaylist(media)) => Ok(Fetched::Media(media)),
        Err(_) => Err(format!("unparsable playlist ({} bytes)", body.len())),
    }
}

/// Fetches one segment and counts its bytes; `false` when the run's end came first.
async fn fetch_segment(
    http: &reqwest::Client,
    playlist: &Url,
    segment: &Segment,
    clock: &Clock,
    out: &mut ClientOutcome,
) -> bool {
    let end = clock.end;
    let n = segment.sequence;
    let asked = Instant::now();
    let url = match playlist.join(&segment.uri) {
        Ok(url) => url,
        Err(e) => {
            out.error(format!("segment {n}: bad URI {:?}: {e}", segment.uri));
            return true;
        }
    };
    let response = match timeout_at(end, http.get(url).send()).await {
        Err(_) => return false,
        Ok(Err(e)) => {
            out.error(format!("segment {n}: {}", describe(&e)));
            return true;
        }
        Ok(Ok(response)) => response,
    };
    if !response.status().is_success() {
        out.error(format!("segment {n}: HTTP {}", response.status().as_u16()));
        return true;
    }
    let mut body = response.bytes_stream();
    loop {
        match timeout_at(end, body.next()).await {
            Err(_) => return false,
            Ok(Some(Ok(chunk))) => out.bytes += chunk.len() as u64,
            Ok(Some(Err(e))) => {
                out.error(format!("segment {n}: {}", describe(&e)));
                return true;
            }
            Ok(None) => {
                out.first_segment
                    .get_or_insert(Instant::now().saturating_duration_since(clock.start));
                out.segments += 1;
                out.slowest_segment = out.slowest_segment.max(asked.elapsed());
                return true;
            }
        }
    }
}

/// An HLS player's buffer, what its user feels: playback starts once the segments of the first
/// playlist are in hand (hls.js and Safari start a live stream that far behind its edge; this
/// player fetches the last three), the play head then runs in real time, and a stall is the
/// head reaching the end of the media in hand. Playback resumes when the next segment is in.
#[derive(Debug, Default)]
pub(crate) struct PlayerBuffer {
    /// Media in hand, from the first segment on.
    buffered: Duration,
    /// Once playing: a wall offset and the head's media position then.
    head: Option<(Duration, Duration)>,
    pub stalls: u32,
    /// When the first few stalls began, from the client's start.
    pub stalled_at: Vec<Duration>,
}

impl PlayerBuffer {
    /// A segment of `media` seconds was in hand at wall offset `at`.
    pub(crate) fn fetched(&mut self, at: Duration, media: Duration) {
        self.catch_up(at);
        self.buffered += media;
    }

    /// Starts playback at `at` if it has not started and there is media; later calls do nothing.
    pub(crate) fn play(&mut self, at: Duration) {
        if self.head.is_none() && self.buffered > Duration::ZERO {
            self.head = Some((at, Duration::ZERO));
        }
    }

    /// The run ended at `at`: a buffer that ran dry before counts too.
    pub(crate) fn finish(&mut self, at: Duration) {
        self.catch_up(at);
    }

    /// Counts a stall if the head ran past the media in hand before `at`, and resumes it at `at`.
    fn catch_up(&mut self, at: Duration) {
        let Some((since, from)) = self.head else { return };
        let head = from + at.saturating_sub(since);
        if head > self.buffered {
            self.stalls += 1;
            if self.stalled_at.len() < 5 {
                self.stalled_at.push(since + self.buffered.saturating_sub(from));
            }
            self.head = Some((at, self.buffered));
        }
    }
}

/// A segment to fetch.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Segment {
    pub sequence: u64,
    pub uri: String,
    pub duration: Duration,
}

/// What one media playlist brought.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Update {
    /// New segments in order, each once.
    pub segments: Vec<Segment>,
    /// They are the backlog of a playlist joined (or re-joined), not segments that just appeared.
    pub backlog: bool,
    /// Something a player would notice: segments missed, the sequence going back.
    pub problem: Option<String>,
}

/// Which segments of a live media playlist are new, by media sequence number.
#[derive(Debug, Default)]
pub(crate) struct SegmentTracker {
    /// The sequence number of the next segment to fetch; `None` before the first segment.
    next: Option<u64>,
}

impl SegmentTracker {
    pub(crate) fn update(&mut self, playlist: &MediaPlaylist) -> Update {
        let count = playlist.segments.len() as u64;
        if count == 0 {
            return Update::default();
        }
        let first = playlist.media_sequence;
        let end = first + count;
        let mut update = Update::default();
        let from = match self.next {
            Some(next) if end < next => {
                update.problem = Some(format!("media sequence went back from {} to {}", next - 1, end - 1));
                None
            }
            Some(next) if first > next => {
                update.problem = Some(format!(
                    "segments {next}..={} left the playlist before they were fetched",
                    first - 1
                ));
                Some(first)
            }
            Some(next) => Some(next),
            None => None,
        };
        let from = from.unwrap_or_else(|| {
            update.backlog = true;
            end.saturating_sub(BACKLOG_SEGMENTS as u64).max(first)
        });
        update.segments = (from..end)
            .map(|sequence| {
                let s = &playlist.segments[(sequence - first) as usize];
                Segment {
                    sequence,
                    uri: s.uri.clone(),
                    // EXTINF is kept as f32: round its error away at the microsecond.
                    duration: Duration::from_micros((f64::from(s.duration) * 1e6).round() as u64),
                }
            })
            .collect();
        self.next = Some(end);
        update
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_player_stalls_when_its_buffer_runs_dry() {
        let ms = Duration::from_millis;
        let mut player = PlayerBuffer::default();
        // Nothing plays before the first playlist's segments are in hand.
        player.finish(ms(5000));
        assert_eq!(player.stalls, 0);
        // Three 0.5 s segments in hand at 2.0 s: playback starts, 1.5 s of media ahead.
        for at in [1800, 1900, 2000] {
            player.fetched(ms(at), ms(500));
        }
        player.play(ms(2000));
        // A 1.4 s gap is within the buffer; the head is then at 1.4 s of 2.0 s in hand.
        player.fetched(ms(3400), ms(500));
        player.play(ms(3400));
        assert_eq!(player.stalls, 0, "play starts once");
        // Steady segments keep the head 0.6 s behind.
        player.fetched(ms(3900), ms(500));
        player.fetched(ms(4400), ms(500));
        assert_eq!(player.stalls, 0);
        // 3.0 s in hand from 2.0 s: the head reaches it at 5.0 s; the next segment at 5.5 s.
        player.fetched(ms(5500), ms(500));
        assert_eq!(player.stalls, 1);
        assert_eq!(player.stalled_at, [ms(5000)]);
        // Playback resumed at 5.5 s with 0.5 s in hand: a segment at exactly 6.0 s is in time.
        player.fetched(ms(6000), ms(500));
        assert_eq!(player.stalls, 1, "in time to the millisecond is no stall");
        player.finish(ms(6400));
        assert_eq!(player.stalls, 1);
        player.finish(ms(7000));
        assert_eq!(player.stalls, 2, "a buffer dry at the end counts");
        assert_eq!(player.stalled_at, [ms(5000), ms(6500)]);
    }

    fn media(sequence: u64, count: u64) -> MediaPlaylist {
        let mut text =
            format!("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:{sequence}\n");
        for n in sequence..sequence + count {
            text.push_str(&format!("#EXTINF:1.920,\nseg{n}.ts\n"));
        }
        match classify(
            text.as_bytes(),
            &Url::parse("http://127.0.0.1/a/media.m3u8").unwrap(),
            0,
        ) {
            Ok(Fetched::Media(m)) => m,
            other => panic!("not a media playlist: {other:?}"),
        }
    }

    fn sequences(update: &Update) -> Vec<u64> {
        update.segments.iter().map(|s| s.sequence).collect()
    }

    #[test]
    fn tracker_joins_with_the_last_three_then_takes_each_new_segment_once() {
        let mut tracker = SegmentTracker::default();
        assert_eq!(tracker.update(&media(0, 0)), Update::default(), "empty: nothing yet");
        let join = tracker.update(&media(10, 6));
        assert_eq!(sequences(&join), [13, 14, 15]);
        assert!(join.backlog && join.problem.is_none());
        assert_eq!(join.segments[0].uri, "seg13.ts");
        assert_eq!(join.segments[0].duration, Duration::from_millis(1920));
        assert!(
            tracker.update(&media(10, 6)).segments.is_empty(),
            "same playlist: nothing new"
        );
        let next = tracker.update(&media(12, 6));
        assert_eq!(sequences(&next), [16, 17]);
        assert!(!next.backlog && next.problem.is_none());

        let mut short = SegmentTracker::default();
        assert_eq!(sequences(&short.update(&media(0, 2))), [0, 1], "fewer than three");
    }

    #[test]
    fn tracker_reports_missed_segments_and_a_sequence_going_back() {
        let mut tracker = SegmentTracker::default();
        tracker.update(&media(10, 6));
        let missed = tracker.update(&media(20, 6));
        assert_eq!(sequences(&missed), [20, 21, 22, 23, 24, 25]);
        assert_eq!(
            missed.problem.as_deref(),
            Some("segments 16..=19 left the playlist before they were fetched")
        );
        let back = tracker.update(&media(0, 4));
        assert_eq!(back.problem.as_deref(), Some("media sequence went back from 25 to 3"));
        assert!(back.backlog);
        assert_eq!(sequences(&back), [1, 2, 3]);
        assert_eq!(sequences(&tracker.update(&media(1, 4))), [4]);
    }

    #[test]
    fn classify_tells_master_from_media_and_resolves_the_variant() {
        let base = Url::parse("http://127.0.0.1:8080/hls/1:0:19:283D:3FB:1:C00000:0:0:0:/aac/index.m3u8").unwrap();
        // xg2g's master playlist.
        let master = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-STREAM-INF:BANDWIDTH=2000000,\
                      AVERAGE-BANDWIDTH=1500000,CODECS=\"avc1.640020,mp4a.40.2\",RESOLUTION=1280x720\nmedia.m3u8\n";
        match classify(master.as_bytes(), &base, 0) {
            Ok(Fetched::Master(url)) => assert_eq!(
                url.as_str(),
                "http://127.0.0.1:8080/hls/1:0:19:283D:3FB:1:C00000:0:0:0:/aac/media.m3u8"
            ),
            other => panic!("{other:?}"),
        }
        let absolute = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nhttp://127.0.0.2/x/y.m3u8\n";
        assert!(matches!(classify(absolute.as_bytes(), &base, 0),
            Ok(Fetched::Master(url)) if url.as_str() == "http://127.0.0.2/x/y.m3u8"));
        // FFmpeg's hls muxer.
        let ffmpeg = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:7\n\
                      #EXTINF:2.000000,\nmedia7.ts\n#EXTINF:2.000000,\nmedia8.ts\n";
        match classify(ffmpeg.as_bytes(), &base, 0) {
            Ok(Fetched::Media(m)) => {
                assert_eq!((m.media_sequence, m.target_duration, m.segments.len()), (7, 2, 2));
            }
            other => panic!("{other:?}"),
        }
        assert!(classify(b"<html>502 Bad Gateway</html>", &base, 0).is_err());
        let none = classify(b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n", &base, 0);
        assert!(none.is_err(), "no variant: {none:?}");
    }

    #[test]
    fn a_ladder_player_takes_the_variant_of_its_rung() {
        let base = Url::parse("http://127.0.0.1:2/hls/l1/ladder-copy/index.m3u8?src=x").unwrap();
        // The FFmpeg peer's master (ffmpeg 5.1, -var_stream_map with an audio group).
        let ffmpeg = "#EXTM3U\n#EXT-X-VERSION:6\n\
            #EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"group_aud\",NAME=\"audio_3\",DEFAULT=YES,URI=\"media_3.m3u8\"\n\
            #EXT-X-STREAM-INF:BANDWIDTH=140800,RESOLUTION=1280x720,AUDIO=\"group_aud\"\nmedia_0.m3u8\n\n\
            #EXT-X-STREAM-INF:BANDWIDTH=1460800,RESOLUTION=852x480,CODECS=\"avc1.64001f,mp4a.40.2\",AUDIO=\"group_aud\"\nmedia_1.m3u8\n\n\
            #EXT-X-STREAM-INF:BANDWIDTH=910800,RESOLUTION=640x360,CODECS=\"avc1.64001f,mp4a.40.2\",AUDIO=\"group_aud\"\nmedia_2.m3u8\n\n\
            #EXT-X-STREAM-INF:BANDWIDTH=140800,CODECS=\"mp4a.40.2\",AUDIO=\"group_aud\"\nmedia_3.m3u8\n\n\
            #EXT-X-STREAM-INF:BANDWIDTH=52800,CODECS=\"mp4a.40.2\"\nmedia_4.m3u8\n";
        for (n, name) in [(0, "media_0"), (1, "media_1"), (2, "media_2")] {
            match classify(ffmpeg.as_bytes(), &base, n) {
                Ok(Fetched::Master(url)) => {
                    assert_eq!(
                        url.as_str(),
                        format!("http://127.0.0.1:2/hls/l1/ladder-copy/{name}.m3u8")
                    );
                }
                other => panic!("{other:?}"),
            }
        }
        let one = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nmedia.m3u8\n";
        match classify(one.as_bytes(), &base, 2) {
            Ok(Fetched::Missing(text)) => assert_eq!(text, "master playlist without a variant 2"),
            other => panic!("{other:?}"),
        }
    }
}
