//! Load clients that behave like players: a TS reader and an HLS poller, with their figures.
//!
//! [`run`] is the IO edge: one request loop per client, every await bounded by the run's end.
//! What a client measures lives in small pure types beside it, tested without a runtime:
//! [`PcrScanner`] finds the PCR in received TS without copying it, [`PcrClock`] turns PCRs into
//! media time, [`SpeedMeter`] compares media time with wall time inside the window, [`Waits`]
//! counts a TS client's stalls, [`PlayerBuffer`] an HLS player's, and [`SegmentTracker`]
//! decides which HLS segments are new.

use std::time::Duration;

use futures_util::StreamExt;
use m3u8_rs::{MediaPlaylist, Playlist};
use tokio::time::{Instant, timeout_at};
use url::Url;
use xg2g::mpegts::{self, PACKET as TS_PACKET, SYNC as TS_SYNC};

/// Errors a client keeps as text; later ones are only counted.
const MAX_ERRORS: usize = 20;
/// Segments a player fetches from a live playlist it joins: the last three, like hls.js.
const BACKLOG_SEGMENTS: usize = 3;
/// A speed over a shorter stretch of wall time is noise, not a measurement.
const MIN_SPEED_SPAN: Duration = Duration::from_secs(1);
/// How far past `end` [`run`] may go at worst (every await is bounded by `end` already).
const GRACE: Duration = Duration::from_millis(900);
/// Masters that may follow one another before the client gives up for this poll.
const MAX_MASTER_HOPS: u32 = 2;

/// Bytes of a TS packet the scanner reads: header, adaptation field length and flags, PCR.
const TS_HEADER: usize = 12;
/// The PCR counts 27 MHz ticks and wraps at 2^33 × 300.
const PCR_WRAP: u64 = (1 << 33) * 300;
/// A PCR step further ahead of the wall time than this is a discontinuity, not media.
const PCR_JUMP_SLACK: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub(crate) enum ClientKind {
    Ts,
    Hls,
}

#[derive(Debug, Clone)]
pub(crate) struct ClientSpec {
    pub kind: ClientKind,
    /// TS: the stream URL. HLS: the first playlist URL — a master playlist (its first variant
    /// is followed) or a media playlist; which one is told by its content.
    pub url: String,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub(crate) struct ClientOutcome {
    /// TS: request sent → first body byte.
    pub ttfb: Option<Duration>,
    /// HLS: first request sent → a media playlist listing ≥ 1 segment has been received.
    pub first_playlist: Option<Duration>,
    /// HLS: first request sent → the first segment is in hand (the earliest a player's first
    /// frame can be).
    pub first_segment: Option<Duration>,
    /// Bytes of media received (TS body, or HLS segment bytes).
    pub bytes: u64,
    /// HLS: segments received whole.
    pub segments: u32,
    /// TS: times, after the first media, that the client waited longer than a segment for new
    /// data. HLS: times a player's buffer ran dry ([`PlayerBuffer`]).
    pub stalls: u32,
    /// The longest wait for new data seen after the first media (a stall or not).
    pub longest_wait: Duration,
    /// When the first few stalls began, from the client's start.
    pub stalled_at: Vec<Duration>,
    /// HLS: the longest segment (EXTINF) and the slowest playlist answer seen.
    pub longest_segment: Duration,
    pub slowest_playlist: Duration,
    pub slowest_segment: Duration,
    /// Media time received per second of wall time inside [window_start, end] (≈ 1.0 when the
    /// server keeps real time); `None` if not measurable.
    pub speed: Option<f64>,
    /// Every error, short text; at most [`MAX_ERRORS`] entries.
    pub errors: Vec<String>,
    /// Errors in all, kept or not.
    pub error_count: u32,
}

impl ClientOutcome {
    fn error(&mut self, text: impl Into<String>) {
        self.error_count += 1;
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(text.into());
        }
    }
}

/// Runs one client until `end`, then returns its figures. Never panics; never runs past `end`
/// by more than a second.
pub(crate) async fn run(
    http: &reqwest::Client,
    spec: &ClientSpec,
    window_start: Instant,
    end: Instant,
    segment: Duration,
) -> ClientOutcome {
    let start = Instant::now();
    let clock = Clock {
        start,
        window_start: window_start.saturating_duration_since(start),
        end,
    };
    let mut out = ClientOutcome::default();
    let work = async {
        match spec.kind {
            ClientKind::Ts => run_ts(http, &spec.url, &clock, segment, &mut out).await,
            ClientKind::Hls => run_hls(http, &spec.url, &clock, segment, &mut out).await,
        }
    };
    // Every await inside is bounded by `end`; this only guards against a slow body read.
    let _ = timeout_at(end + GRACE, work).await;
    out
}

/// Times of one client, as offsets from its start so that the pure types stay clock-free.
struct Clock {
    start: Instant,
    window_start: Duration,
    end: Instant,
}

impl Clock {
    fn now(&self) -> (Instant, Duration) {
        let now = Instant::now();
        (now, now.saturating_duration_since(self.start))
    }
}

async fn run_ts(http: &reqwest::Client, url: &str, clock: &Clock, segment: Duration, out: &mut ClientOutcome) {
    let sent = Instant::now();
    let response = match timeout_at(clock.end, http.get(url).send()).await {
        Err(_) => return out.error("no answer before the end of the run"),
        Ok(Err(e)) => return out.error(describe(&e)),
        Ok(Ok(response)) => response,
    };
    if !response.status().is_success() {
        return out.error(format!("HTTP {}", response.status().as_u16()));
    }
    let mut body = response.bytes_stream();
    let mut scanner = PcrScanner::default();
    let mut pcr_clock = PcrClock::default();
    let mut speed = SpeedMeter::new(clock.window_start);
    let mut waits = Waits::default();
    loop {
        match timeout_at(clock.end, body.next()).await {
            Ok(Some(Ok(chunk))) => {
                if chunk.is_empty() {
                    continue;
                }
                let (now, at) = clock.now();
                out.ttfb.get_or_insert(now.saturating_duration_since(sent));
                out.bytes += chunk.len() as u64;
                waits.data(at, segment);
                if let Some(pcr) = scanner.scan(&chunk) {
                    speed.sample(at, pcr_clock.sample(at, pcr));
                }
            }
            Ok(Some(Err(e))) => {
                out.error(format!("stream broke after {} bytes: {}", out.bytes, describe(&e)));
                break;
            }
            Ok(None) => {
                out.error(format!("stream ended after {} bytes", out.bytes));
                break;
            }
            Err(_) => {
                waits.finish(clock.now().1);
                break;
            }
        }
    }
    out.stalls = waits.stalls;
    out.longest_wait = waits.longest;
    out.stalled_at = waits.stalled_at;
    out.speed = speed.speed();
}

async fn run_hls(http: &reqwest::Client, url: &str, clock: &Clock, segment: Duration, out: &mut ClientOutcome) {
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
        let fetched = match timeout_at(clock.end, fetch_playlist(http, &playlist_url)).await {
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
    /// A master playlist: the URL of its first variant.
    Master(Url),
    Media(MediaPlaylist),
}

async fn fetch_playlist(http: &reqwest::Client, url: &Url) -> Result<Fetched, String> {
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
    classify(&body, url)
}

/// Parses a playlist and tells master from media by its content.
fn classify(body: &[u8], url: &Url) -> Result<Fetched, String> {
    match m3u8_rs::parse_playlist_res(body) {
        Ok(Playlist::MasterPlaylist(master)) => {
            let variant = master
                .variants
                .iter()
                .find(|v| !v.is_i_frame && !v.uri.trim().is_empty())
                .ok_or("master playlist without a variant")?;
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

/// A short text for a request error: its kind and the innermost cause, without the URL.
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else {
        "request"
    };
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    format!("{kind}: {cause}")
}

/// Finds the PCR in a transport stream fed in arbitrary chunks, without copying them: only the
/// header of a packet cut by a chunk boundary is kept. Loses and regains sync on 0x47.
#[derive(Debug, Default)]
pub(crate) struct PcrScanner {
    /// The first bytes of a packet cut by the chunk boundary.
    head: [u8; TS_HEADER],
    /// Bytes of that packet seen so far (0: none is cut).
    have: usize,
    /// The PID whose PCR is read: the first that carried one.
    pid: Option<u16>,
    /// Bytes skipped while looking for sync.
    pub skipped: u64,
}

impl PcrScanner {
    /// Scans one chunk; returns the last PCR (27 MHz ticks) it completed, if any.
    pub(crate) fn scan(&mut self, chunk: &[u8]) -> Option<u64> {
        let mut last = None;
        self.scan_each(chunk, |pcr| last = Some(pcr));
        last
    }

    /// Scans one chunk and hands every PCR it completes to `on_pcr`, in order. A packet counts
    /// once the sync byte of the next one confirms it, so a 0x47 inside a payload is no packet.
    pub(crate) fn scan_each(&mut self, chunk: &[u8], mut on_pcr: impl FnMut(u64)) {
        let mut i = 0;
        if self.have > 0 {
            let take = (TS_PACKET - self.have).min(chunk.len());
            if self.have < TS_HEADER {
                let n = (TS_HEADER - self.have).min(take);
                self.head[self.have..self.have + n].copy_from_slice(&chunk[..n]);
            }
            self.have += take;
            i = take;
            if self.have < TS_PACKET || i == chunk.len() {
                return;
            }
            self.have = 0;
            if chunk[i] == TS_SYNC {
                let head = self.head;
                if let Some(pcr) = self.pcr(&head) {
                    on_pcr(pcr);
                }
            } else {
                self.skipped += TS_PACKET as u64;
            }
        }
        while i < chunk.len() {
            let rest = &chunk[i..];
            if rest[0] != TS_SYNC {
                let skip = rest.iter().position(|&b| b == TS_SYNC).unwrap_or(rest.len());
                self.skipped += skip as u64;
                i += skip;
            } else if rest.len() <= TS_PACKET {
                let n = rest.len().min(TS_HEADER);
                self.head[..n].copy_from_slice(&rest[..n]);
                self.have = rest.len();
                break;
            } else if rest[TS_PACKET] != TS_SYNC {
                self.skipped += 1;
                i += 1;
            } else {
                if let Some(pcr) = self.pcr(&rest[..TS_HEADER]) {
                    on_pcr(pcr);
                }
                i += TS_PACKET;
            }
        }
    }

    fn pcr(&mut self, h: &[u8]) -> Option<u64> {
        if mpegts::transport_error(h) {
            return None;
        }
        let pcr = mpegts::pcr(h)?;
        let pid = mpegts::pid(h);
        (*self.pid.get_or_insert(pid) == pid).then_some(pcr)
    }
}

/// Media time from PCR samples taken at wall offsets. A step that goes back, or runs further
/// ahead of the wall time than [`PCR_JUMP_SLACK`], is a discontinuity and adds no media time;
/// the 33-bit wrap is not one.
#[derive(Debug, Default)]
pub(crate) struct PcrClock {
    last: Option<(Duration, u64)>,
    media: Duration,
}

impl PcrClock {
    /// Takes a PCR seen at wall offset `at`; returns the media time received so far.
    pub(crate) fn sample(&mut self, at: Duration, pcr: u64) -> Duration {
        if let Some((last_at, last_pcr)) = self.last {
            let ticks = (pcr % PCR_WRAP + PCR_WRAP - last_pcr % PCR_WRAP) % PCR_WRAP;
            let step = Duration::from_nanos(ticks * 1000 / 27);
            if step <= at.saturating_sub(last_at) + PCR_JUMP_SLACK {
                self.media += step;
            }
        }
        self.last = Some((at, pcr));
        self.media
    }
}

/// Media time against wall time, from the first sample inside the window to the last.
#[derive(Debug)]
pub(crate) struct SpeedMeter {
    window_start: Duration,
    first: Option<(Duration, Duration)>,
    last: Option<(Duration, Duration)>,
}

impl SpeedMeter {
    pub(crate) fn new(window_start: Duration) -> Self {
        Self {
            window_start,
            first: None,
            last: None,
        }
    }

    /// `media`: media time received in all by wall offset `at`.
    pub(crate) fn sample(&mut self, at: Duration, media: Duration) {
        if at < self.window_start {
            return;
        }
        self.first.get_or_insert((at, media));
        self.last = Some((at, media));
    }

    pub(crate) fn speed(&self) -> Option<f64> {
        let ((first_at, first_media), (last_at, last_media)) = (self.first?, self.last?);
        let span = last_at.checked_sub(first_at)?;
        (span >= MIN_SPEED_SPAN).then(|| last_media.saturating_sub(first_media).as_secs_f64() / span.as_secs_f64())
    }
}

/// Waits between arrivals of new data, from the first on: a wait longer than what the previous
/// arrival allowed is a stall.
#[derive(Debug, Default)]
pub(crate) struct Waits {
    last: Option<(Duration, Duration)>,
    pub stalls: u32,
    pub longest: Duration,
    /// When the first few stalls began, from the client's start.
    pub stalled_at: Vec<Duration>,
}

impl Waits {
    /// New data at wall offset `at`; the wait that follows may last `allowed`.
    pub(crate) fn data(&mut self, at: Duration, allowed: Duration) {
        self.close(at);
        self.last = Some((at, allowed));
    }

    /// New data at `at` that was `took` in the making (an HLS segment: its duration plus a
    /// poll and a half). The wait it ends may last that long too: a long segment after a short
    /// one (FFmpeg cuts at the source's key frames) is no stall.
    pub(crate) fn data_after(&mut self, at: Duration, took: Duration, allowed: Duration) {
        if let Some((since, before)) = self.last {
            self.last = Some((since, before.max(took)));
        }
        self.data(at, allowed);
    }

    /// The run ended at `at`: the wait still open counts too.
    pub(crate) fn finish(&mut self, at: Duration) {
        self.close(at);
        self.last = None;
    }

    fn close(&mut self, at: Duration) {
        if let Some((since, allowed)) = self.last {
            let wait = at.saturating_sub(since);
            self.longest = self.longest.max(wait);
            if wait > allowed {
                self.stalls += 1;
                if self.stalled_at.len() < 5 {
                    self.stalled_at.push(since);
                }
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

    fn packet(pid: u16, pcr: Option<u64>) -> [u8; TS_PACKET] {
        let mut p = [0xFF; TS_PACKET];
        p[0] = TS_SYNC;
        p[1] = (pid >> 8) as u8 & 0x1F;
        p[2] = pid as u8;
        // A sync byte in the payload, to tempt a scanner that lost sync.
        p[100] = TS_SYNC;
        match pcr {
            Some(pcr) => {
                let (base, extension) = (pcr / 300, pcr % 300);
                p[3] = 0x30;
                p[4] = 7;
                p[5] = 0x10;
                p[6] = (base >> 25) as u8;
                p[7] = (base >> 17) as u8;
                p[8] = (base >> 9) as u8;
                p[9] = (base >> 1) as u8;
                p[10] = (((base & 1) << 7) as u8) | 0x7E | ((extension >> 8) as u8);
                p[11] = extension as u8;
            }
            None => p[3] = 0x10,
        }
        p
    }

    /// A stream of 40 packets: a PCR on PID 0x100 every fourth packet, other PIDs between.
    fn stream() -> (Vec<u8>, Vec<u64>) {
        let mut bytes = Vec::new();
        let mut pcrs = Vec::new();
        for i in 0..40u64 {
            if i % 4 == 0 {
                // Crosses the 33-bit base and uses the extension.
                let pcr = (1 << 33) * 300 - 5_000_000 + i * 1_000_299;
                pcrs.push(pcr % PCR_WRAP);
                bytes.extend_from_slice(&packet(0x100, Some(pcr % PCR_WRAP)));
            } else {
                bytes.extend_from_slice(&packet(0x101 + (i % 3) as u16, None));
            }
        }
        (bytes, pcrs)
    }

    fn scan_in_chunks(scanner: &mut PcrScanner, bytes: &[u8], size: usize) -> Vec<u64> {
        let mut seen = Vec::new();
        for chunk in bytes.chunks(size) {
            scanner.scan_each(chunk, |pcr| seen.push(pcr));
        }
        seen
    }

    #[test]
    fn pcr_scanner_reads_every_pcr_whatever_the_chunking() {
        let (bytes, pcrs) = stream();
        for size in [1, 2, 11, 12, 13, 187, 188, 189] {
            let mut scanner = PcrScanner::default();
            assert_eq!(scan_in_chunks(&mut scanner, &bytes, size), pcrs, "chunks of {size}");
            assert_eq!(scanner.skipped, 0, "chunks of {size}");
        }
        let mut scanner = PcrScanner::default();
        assert_eq!(
            scanner.scan(&bytes[..188 * 30]),
            Some(pcrs[7]),
            "the last PCR of the chunk"
        );
        assert_eq!(scanner.scan(&bytes[188 * 30..188 * 31]), None, "no new PCR");
    }

    #[test]
    fn pcr_scanner_regains_sync_after_garbage() {
        let (bytes, pcrs) = stream();
        let mut cut = vec![0x00, 0x47, 0x12, 0x47, 0x47];
        // Packets 0 to 8 and the start of 9, sync bytes, then packets 12 on.
        cut.extend_from_slice(&bytes[..188 * 9 + 50]);
        cut.extend_from_slice(&[0x47; 3]);
        cut.extend_from_slice(&bytes[188 * 12..]);
        for size in [1, 7, 188, 500, cut.len()] {
            let mut scanner = PcrScanner::default();
            let seen = scan_in_chunks(&mut scanner, &cut, size);
            let mut sent = pcrs.iter();
            assert!(
                seen.iter().all(|p| sent.any(|s| s == p)),
                "chunks of {size}: only PCRs that were sent, in order: {seen:?}"
            );
            // Byte by byte, a false sync may cost the packet after it (PCR 3 of packet 12).
            assert!(seen.ends_with(&pcrs[4..]), "chunks of {size}: in sync again: {seen:?}");
            assert!(scanner.skipped > 0);
        }
        let mut scanner = PcrScanner::default();
        assert_eq!(
            scan_in_chunks(&mut scanner, &cut, cut.len()),
            pcrs,
            "with the next packet to look ahead to, no PCR is lost"
        );
    }

    #[test]
    fn pcr_scanner_keeps_to_the_first_pcr_pid_and_skips_errored_packets() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&packet(0x200, Some(1_000)));
        bytes.extend_from_slice(&packet(0x300, Some(9_999_999)));
        let mut errored = packet(0x200, Some(5_555));
        errored[1] |= 0x80;
        bytes.extend_from_slice(&errored);
        bytes.extend_from_slice(&packet(0x200, Some(2_000)));
        bytes.extend_from_slice(&packet(0x300, Some(8_888_888)));
        let mut scanner = PcrScanner::default();
        assert_eq!(scan_in_chunks(&mut scanner, &bytes, 188), vec![1_000, 2_000]);
    }

    #[test]
    fn pcr_clock_crosses_the_wrap_and_ignores_jumps() {
        let s = Duration::from_secs;
        let tick = |secs: u64| secs * 27_000_000;
        let mut clock = PcrClock::default();
        assert_eq!(clock.sample(s(0), PCR_WRAP - tick(1)), Duration::ZERO);
        assert_eq!(clock.sample(s(2), tick(1)), s(2), "the wrap is continuous");
        assert_eq!(clock.sample(s(3), tick(500)), s(2), "a jump ahead adds nothing");
        assert_eq!(clock.sample(s(4), tick(501)), s(3));
        assert_eq!(clock.sample(s(5), tick(100)), s(3), "a jump back adds nothing");
        assert_eq!(clock.sample(s(6), tick(104)), s(7), "a burst within the slack counts");
    }

    #[test]
    fn speed_compares_media_and_wall_time_inside_the_window() {
        let ms = Duration::from_millis;
        let mut meter = SpeedMeter::new(ms(1000));
        meter.sample(ms(0), ms(0));
        meter.sample(ms(900), ms(5000));
        assert_eq!(meter.speed(), None, "nothing inside the window yet");
        meter.sample(ms(1000), ms(5000));
        meter.sample(ms(1500), ms(5500));
        assert_eq!(meter.speed(), None, "half a second is too short");
        meter.sample(ms(3000), ms(7000));
        assert_eq!(meter.speed(), Some(1.0));
        meter.sample(ms(5000), ms(7500));
        assert_eq!(meter.speed(), Some(0.625), "2.5 s of media in 4 s");
    }

    #[test]
    fn waits_count_stalls_after_the_first_data() {
        let ms = Duration::from_millis;
        let segment = ms(2000);
        let mut waits = Waits::default();
        for at in [5000, 5040, 7040, 7080, 9500, 9600, 12000] {
            waits.data(ms(at), segment);
        }
        assert_eq!(waits.stalls, 2, "2.42 s and 2.4 s; exactly 2 s is none");
        assert_eq!(waits.longest, ms(2420));
        waits.finish(ms(13000));
        assert_eq!(waits.stalls, 2);
        waits.data(ms(14000), segment);
        waits.finish(ms(17000));
        assert_eq!(waits.stalls, 3, "an open wait at the end counts");
        assert_eq!(waits.longest, ms(3000));

        let mut hls = Waits::default();
        hls.data(ms(0), ms(1920) + ms(1000));
        hls.data(ms(2900), ms(2600) + ms(1000));
        hls.data(ms(6500), ms(1920) + ms(1000));
        hls.finish(ms(9000));
        assert_eq!(hls.stalls, 0, "each wait within its segment's allowance");
        hls.data(ms(9000), ms(1920) + ms(1000));
        hls.data(ms(12000), ms(1920) + ms(1000));
        assert_eq!(hls.stalls, 1);
        assert_eq!(hls.longest, ms(3600));

        // A 2.56 s segment after a 1.28 s one: 3.5 s is within its own duration plus a poll.
        let mut cut_at_key_frames = Waits::default();
        let poll = ms(1000);
        cut_at_key_frames.data_after(ms(0), ms(1280) + poll, ms(1280) + poll);
        cut_at_key_frames.data_after(ms(3500), ms(2560) + poll, ms(2560) + poll);
        assert_eq!(cut_at_key_frames.stalls, 0);
        // Longer than both allowances: a stall.
        cut_at_key_frames.data_after(ms(8000), ms(1280) + poll, ms(1280) + poll);
        assert_eq!(cut_at_key_frames.stalls, 1);
    }

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
        match classify(text.as_bytes(), &Url::parse("http://127.0.0.1/a/media.m3u8").unwrap()) {
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
        match classify(master.as_bytes(), &base) {
            Ok(Fetched::Master(url)) => assert_eq!(
                url.as_str(),
                "http://127.0.0.1:8080/hls/1:0:19:283D:3FB:1:C00000:0:0:0:/aac/media.m3u8"
            ),
            other => panic!("{other:?}"),
        }
        let absolute = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nhttp://127.0.0.2/x/y.m3u8\n";
        assert!(matches!(classify(absolute.as_bytes(), &base),
            Ok(Fetched::Master(url)) if url.as_str() == "http://127.0.0.2/x/y.m3u8"));
        // FFmpeg's hls muxer.
        let ffmpeg = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:7\n\
                      #EXTINF:2.000000,\nmedia7.ts\n#EXTINF:2.000000,\nmedia8.ts\n";
        match classify(ffmpeg.as_bytes(), &base) {
            Ok(Fetched::Media(m)) => {
                assert_eq!((m.media_sequence, m.target_duration, m.segments.len()), (7, 2, 2));
            }
            other => panic!("{other:?}"),
        }
        assert!(classify(b"<html>502 Bad Gateway</html>", &base).is_err());
        let none = classify(b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n", &base);
        assert!(none.is_err(), "no variant: {none:?}");
    }

    #[test]
    fn outcome_keeps_twenty_errors_and_counts_all() {
        let mut out = ClientOutcome::default();
        for i in 0..25 {
            out.error(format!("e{i}"));
        }
        assert_eq!((out.errors.len(), out.error_count), (20, 25));
        assert_eq!(out.errors.last().map(String::as_str), Some("e19"));
    }

    // Against real servers: the demo receiver, and xg2g in front of it.

    const HD: &str = "1:0:19:283D:3FB:1:C00000:0:0:0:";

    fn http() -> reqwest::Client {
        reqwest::Client::builder().build().expect("client")
    }

    async fn demo() -> xg2g::demo::DemoReceiver {
        xg2g::demo::DemoReceiver::start(xg2g::demo::DemoOptions::default())
            .await
            .expect("demo receiver starts")
    }

    async fn xg2g(demo: &xg2g::demo::DemoReceiver) -> xg2g::app::Running {
        use xg2g::config::{Override, Requirements, Sources};
        let overrides = vec![
            Override::new("listen", "127.0.0.1:0", "test"),
            Override::new("receiver.base_url", demo.api_url(), "test"),
            Override::new("receiver.stream_port", demo.stream_addr().port().to_string(), "test"),
            Override::new("receiver.relay_port", demo.relay_addr().port().to_string(), "test"),
        ];
        let no_env = |_: &str| None;
        let sources = Sources {
            file: None,
            env: &no_env,
            overrides,
        };
        let config = xg2g::config::load(&sources, Requirements::Receiver)
            .expect("test config is valid")
            .config;
        let running = xg2g::app::start(&config).await.expect("xg2g starts");
        let mut catalog = running.catalog();
        tokio::time::timeout(Duration::from_secs(30), catalog.ready())
            .await
            .expect("catalog loads within 30 s");
        running
    }

    fn spec(kind: ClientKind, url: String) -> ClientSpec {
        ClientSpec { kind, url }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ts_client_reads_the_demo_stream_in_real_time() {
        tokio::time::timeout(Duration::from_secs(30), async {
            let demo = demo().await;
            let url = format!("http://{}/{HD}", demo.stream_addr());
            let now = Instant::now();
            let spec = spec(ClientKind::Ts, url);
            let out = run(
                &http(),
                &spec,
                now + Duration::from_secs(1),
                now + Duration::from_secs(4),
                Duration::from_secs(2),
            )
            .await;
            let took = now.elapsed();
            demo.stop().await;
            eprintln!("{out:?}");
            assert!(took < Duration::from_secs(5), "ran {took:?}");
            assert!(out.ttfb.is_some() && out.bytes > 0, "{out:?}");
            assert!(out.errors.is_empty() && out.error_count == 0, "{out:?}");
            assert_eq!(out.stalls, 0, "{out:?}");
            let speed = out.speed.expect("the demo stream carries a PCR");
            assert!((0.8..1.25).contains(&speed), "speed {speed}");
        })
        .await
        .expect("test within 30 s");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hls_client_follows_the_master_playlist_of_xg2g() {
        tokio::time::timeout(Duration::from_secs(90), async {
            let demo = demo().await;
            let running = xg2g(&demo).await;
            let url = format!("http://{}/hls/{HD}/aac/index.m3u8", running.addr());
            let now = Instant::now();
            let spec = spec(ClientKind::Hls, url);
            let out = run(
                &http(),
                &spec,
                now + Duration::from_secs(4),
                now + Duration::from_secs(10),
                Duration::from_secs(2),
            )
            .await;
            let took = now.elapsed();
            running.stop().await;
            demo.stop().await;
            eprintln!("{out:?}");
            assert!(took < Duration::from_secs(11), "ran {took:?}");
            assert!(
                out.first_playlist.is_some() && out.bytes > 0 && out.segments >= 2,
                "{out:?}"
            );
            assert!(out.errors.is_empty() && out.error_count == 0, "{out:?}");
            assert_eq!(out.stalls, 0, "{out:?}");
            assert!(out.ttfb.is_none());
        })
        .await
        .expect("test within 90 s");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ts_client_reports_a_refused_stream() {
        tokio::time::timeout(Duration::from_secs(60), async {
            let demo = demo().await;
            let running = xg2g(&demo).await;
            let now = Instant::now();
            let end = now + Duration::from_secs(3);
            let segment = Duration::from_secs(2);
            let bad_box = spec(
                ClientKind::Ts,
                format!("http://{}/1:0:1:DEAD:1:1:C00000:0:0:0:", demo.stream_addr()),
            );
            let box_out = run(&http(), &bad_box, now, end, segment).await;
            let bad_xg2g = spec(
                ClientKind::Ts,
                format!("http://{}/stream/1:0:1:DEAD:1:1:C00000:0:0:0:", running.addr()),
            );
            let xg2g_out = run(&http(), &bad_xg2g, now, end, segment).await;
            let bad_hls = spec(
                ClientKind::Hls,
                format!(
                    "http://{}/hls/1:0:1:DEAD:1:1:C00000:0:0:0:/aac/index.m3u8",
                    running.addr()
                ),
            );
            let hls_out = run(&http(), &bad_hls, now, now + Duration::from_millis(2500), segment).await;
            running.stop().await;
            demo.stop().await;
            for out in [&box_out, &xg2g_out] {
                assert_eq!(out.errors, ["HTTP 404"], "{out:?}");
                assert!(out.ttfb.is_none() && out.bytes == 0 && out.speed.is_none(), "{out:?}");
            }
            assert!(hls_out.first_playlist.is_none() && hls_out.bytes == 0, "{hls_out:?}");
            assert!(
                hls_out.errors.len() >= 2 && hls_out.errors.iter().all(|e| e == "playlist: HTTP 404"),
                "retried at each poll: {hls_out:?}"
            );
        })
        .await
        .expect("test within 60 s");
    }
}
