//! Cuts the muxer's transport stream into HLS segments that strict demuxers parse: each starts
//! with PAT and PMT, then (with video) a key frame; continuity counters run on from segment to
//! segment, PSI included. Cuts fall on key frames once a segment is as long as the plan asks,
//! so the first segments of a session can be short (a fast start) and later ones full length.
//! After a reconnect, the new connection's clocks are moved onto the time line the session
//! already published, just after its last segment: players that keep one time line across an
//! `EXT-X-DISCONTINUITY` (Chromium's own HLS player) would otherwise see time run backwards.
//!
//! A ladder's variants are cut at the same moments: the first variant's segmenter leads (it
//! records where each of its segments starts, [`Cuts`]), every other one follows, cutting at
//! its first key frame (or audio frame) at each of those starts. A follower holds what it has
//! read beyond the leader until the leader gets there, so segment n of every variant covers
//! the same time and variants switch by media sequence number. Pure: fed with the muxer's
//! output, no IO.

use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::mpegts::{self, PACKET, PTS_MASK, Packetizer};
use crate::pipeline::SegmentPlan;

/// A key frame this close before the planned length still ends the segment (frame timing).
const TOLERANCE_90K: u64 = 4_500; // 50 ms
/// A stream without random-access flags is cut anyway at this many planned lengths.
const FORCED_CUT_FACTOR: u64 = 3;
/// A follower cuts at the first key frame this close before the leader's cut, or after it: half
/// an AAC frame at 48 kHz, so an audio-only variant starts on the frame nearest the cut.
const FOLLOW_TOLERANCE_90K: u64 = 960;
/// A follower holds at most this much beyond its leader; past it, it cuts on its own plan.
const MOST_HELD: usize = 16 * 1024 * PACKET;
/// Segment starts a leader remembers for its followers.
const CUTS_KEPT: usize = 64;
/// A segment's media ends this long after its latest timestamp: one frame at 25 fps, longer
/// than any audio frame, so that what follows a cut starts after everything before it.
const LAST_FRAME_90K: u64 = 3_600;

/// One finished segment.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Piece {
    pub bytes: Bytes,
    pub duration: Duration,
}

/// The segment being written.
#[derive(Debug)]
struct Open {
    bytes: BytesMut,
    /// PTS of its first key frame (or first audio frame without video), 90 kHz.
    start: u64,
}

/// Where a leading variant's segments start, for the variants that follow it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Cuts {
    /// Index of the segment whose start is `starts[0]`.
    first: u64,
    /// PTS (90 kHz) at which each segment starts, by index.
    starts: std::collections::VecDeque<u64>,
    /// The latest timestamp the leader has read on its key PID: every start up to it is known.
    reached: Option<u64>,
    /// What the leader moves this connection's clocks by, once fixed: followers move theirs by
    /// as much, so that the variants stay on one time line after a reconnect.
    offset: Option<u64>,
}

impl Cuts {
    fn start_of(&self, index: u64) -> Option<u64> {
        let at = usize::try_from(index.checked_sub(self.first)?).ok()?;
        self.starts.get(at).copied()
    }

    /// Whether the leader has read past `pts`, so that every start before it is known.
    fn covers(&self, pts: u64) -> bool {
        self.reached.is_some_and(|r| mpegts::pts_offset(pts, r) <= 0)
    }

    fn record(&mut self, index: u64, pts: u64) {
        if self.starts.is_empty() {
            self.first = index;
        }
        if index == self.first + self.starts.len() as u64 {
            self.starts.push_back(pts);
        }
        while self.starts.len() > CUTS_KEPT {
            self.starts.pop_front();
            self.first += 1;
        }
    }
}

/// Splits one connection's muxer output into segments.
#[derive(Debug)]
pub(crate) struct Segmenter {
    plan: SegmentPlan,
    /// Index of the next segment to finish, over the session (so a reconnect keeps full lengths).
    index: u64,
    pat: Option<[u8; PACKET]>,
    pmt: Option<[u8; PACKET]>,
    pmt_pid: Option<u16>,
    /// The PID segments are cut on: the video, else the first audio.
    key_pid: Option<u16>,
    /// The video's stream type, when there is video.
    video_type: Option<u8>,
    /// The next continuity counter of the PAT and the PMT, as written.
    pat_counter: u8,
    pmt_counter: u8,
    open: Option<Open>,
    /// Joins packets cut across input buffers.
    packets: Packetizer,
    /// Where the session's published media ends, when an earlier connection published some.
    continue_at: Option<u64>,
    /// What this connection's clocks are moved by (33-bit), once its first segment fixed it.
    offset: Option<u64>,
    /// Where this segmenter's segments started (read by followers when it leads).
    cuts: Cuts,
    /// A follower's packets read beyond its leader, waiting for it.
    held: Vec<u8>,
}

impl Segmenter {
    /// `index` is the number of segments the session already has; `continue_at` is where the
    /// last of them ends ([`media_end`]), when there is one.
    pub(crate) fn new(plan: SegmentPlan, index: u64, continue_at: Option<u64>) -> Self {
        Self {
            plan,
            index,
            pat: None,
            pmt: None,
            pmt_pid: None,
            key_pid: None,
            video_type: None,
            pat_counter: 0,
            pmt_counter: 0,
            open: None,
            packets: Packetizer::default(),
            continue_at,
            offset: None,
            cuts: Cuts::default(),
            held: Vec::new(),
        }
    }

    /// Where this segmenter's segments started, for followers.
    pub(crate) fn cuts(&self) -> &Cuts {
        &self.cuts
    }

    /// Index of the next segment to finish.
    pub(crate) fn next_index(&self) -> u64 {
        self.index
    }

    /// At the end of a connection, a follower behind its leader ends its open segment at the
    /// leader's next cut (short of media if what came before the drop is all there is), so that
    /// every variant's numbering runs on together after the reconnect instead of leaving a gap.
    pub(crate) fn catch_up(&mut self, leader: &Cuts) -> Option<Piece> {
        if self.offset.is_none() {
            self.offset = leader.offset;
        }
        let start = self.open.as_ref()?.start;
        let end = leader.start_of(self.index + 1)?;
        self.finish(mpegts::pts_diff(end, start))
    }

    /// Adds the output of a variant that follows `leader`; returns the segments it completed.
    pub(crate) fn push_following(&mut self, data: &[u8], leader: &Cuts) -> Vec<Piece> {
        let (head, rest) = self.packets.split(data);
        for packet in head.iter().map(|p| &p[..]).chain(rest.chunks_exact(PACKET)) {
            self.held.extend_from_slice(packet);
        }
        self.resume(leader)
    }

    /// Cuts what the follower holds as far as `leader` has got.
    pub(crate) fn resume(&mut self, leader: &Cuts) -> Vec<Piece> {
        if self.offset.is_none() {
            self.offset = leader.offset;
        }
        let mut out = Vec::new();
        let mut held = std::mem::take(&mut self.held);
        let mut used = 0;
        for packet in held.chunks_exact(PACKET) {
            if packet[0] != mpegts::SYNC {
                used += PACKET;
                continue;
            }
            self.learn_psi(packet);
            if mpegts::pid(packet) == self.key_pid.unwrap_or(u16::MAX)
                && let Some(pts) = mpegts::pes_pts(packet)
            {
                let on_own = held.len() - used > MOST_HELD;
                if !leader.covers(pts) && !on_own {
                    break;
                }
                let key = self.is_key(packet);
                let at = |index| {
                    leader
                        .start_of(index)
                        .filter(|_| !on_own)
                        .map(|cut| mpegts::pts_offset(pts, cut) + FOLLOW_TOLERANCE_90K as i64 >= 0)
                };
                match &self.open {
                    None if key && at(self.index).unwrap_or(on_own) => self.start(pts),
                    None => {}
                    Some(open) => {
                        let length = mpegts::pts_diff(pts, open.start);
                        let planned = ticks(self.plan.duration_of(self.index));
                        let due = match at(self.index + 1) {
                            Some(due) => due,
                            None => on_own && length + TOLERANCE_90K >= planned,
                        };
                        if (key && due) || length >= planned * FORCED_CUT_FACTOR {
                            out.extend(self.finish(length));
                            self.start(pts);
                        }
                    }
                }
            }
            self.write(packet);
            used += PACKET;
        }
        held.drain(..used);
        self.held = held;
        out
    }

    /// Whether a packet of the key PID starts a segment: a random-access point that carries the
    /// parameter sets (an IDR with its SPS), not any I frame the parser flags; any audio frame.
    fn is_key(&self, packet: &[u8]) -> bool {
        self.video_type
            .is_none_or(|video| mpegts::random_access(packet) && mpegts::starts_decodable(video, packet))
    }

    /// Adds muxer output; returns the segments it completed.
    pub(crate) fn push(&mut self, data: &[u8]) -> Vec<Piece> {
        let mut out = Vec::new();
        let (head, rest) = self.packets.split(data);
        for packet in head.iter().map(|p| &p[..]).chain(rest.chunks_exact(PACKET)) {
            if packet[0] != mpegts::SYNC {
                continue;
            }
            self.learn_psi(packet);
            let pid = mpegts::pid(packet);
            if Some(pid) == self.key_pid
                && let Some(pts) = mpegts::pes_pts(packet)
            {
                self.cuts.reached = Some(pts);
                let key = self.is_key(packet);
                match &self.open {
                    None if key => self.start(pts),
                    None => {}
                    Some(open) => {
                        let length = mpegts::pts_diff(pts, open.start);
                        let planned = ticks(self.plan.duration_of(self.index));
                        if (key && length + TOLERANCE_90K >= planned) || length >= planned * FORCED_CUT_FACTOR {
                            out.extend(self.finish(length));
                            self.start(pts);
                        }
                    }
                }
            }
            self.write(packet);
        }
        out
    }

    /// Adds a packet to the open segment, if one is open. The tables' counters are xg2g's own
    /// (it adds a PAT and PMT to every segment); every other packet goes in as the muxer wrote it.
    fn write(&mut self, packet: &[u8]) {
        let pid = mpegts::pid(packet);
        let counter = if pid == 0 {
            Some(&mut self.pat_counter)
        } else if Some(pid) == self.pmt_pid {
            Some(&mut self.pmt_counter)
        } else {
            None
        };
        let Some(open) = &mut self.open else { return };
        match counter {
            Some(counter) => {
                let at = open.bytes.len();
                open.bytes.extend_from_slice(packet);
                mpegts::set_continuity(&mut open.bytes[at..], next(counter));
            }
            None => open.bytes.extend_from_slice(packet),
        }
    }

    fn learn_psi(&mut self, packet: &[u8]) {
        let pid = mpegts::pid(packet);
        if pid == 0 && mpegts::unit_start(packet) {
            if let Some(pmt_pid) = mpegts::pat_pmt_pid(packet) {
                self.pmt_pid = Some(pmt_pid);
                self.pat = packet.try_into().ok();
            }
        } else if Some(pid) == self.pmt_pid
            && let Some(streams) = mpegts::section(packet).and_then(mpegts::pmt_streams)
        {
            self.pmt = packet.try_into().ok();
            let video = streams.iter().find(|s| s.is_video());
            self.video_type = video.map(|s| s.stream_type);
            self.key_pid = video.or_else(|| streams.iter().find(|s| s.is_audio())).map(|s| s.pid);
        }
    }

    /// Opens a segment: PAT and PMT first, with counters that continue the previous segment's.
    fn start(&mut self, pts: u64) {
        let (Some(mut pat), Some(mut pmt)) = (self.pat, self.pmt) else {
            return;
        };
        let mut bytes = BytesMut::with_capacity(256 * 1024);
        mpegts::set_continuity(&mut pat, next(&mut self.pat_counter));
        mpegts::set_continuity(&mut pmt, next(&mut self.pmt_counter));
        bytes.extend_from_slice(&pat);
        bytes.extend_from_slice(&pmt);
        self.open = Some(Open { bytes, start: pts });
        self.cuts.record(self.index, pts);
    }

    fn finish(&mut self, length: u64) -> Option<Piece> {
        let mut open = self.open.take()?;
        self.index += 1;
        // The first segment of a connection fixes how far its clocks move: its earliest
        // decoding time lands where the published media ends.
        let offset = *self.offset.get_or_insert_with(|| match self.continue_at {
            Some(end) => {
                let earliest = media(&open.bytes)
                    .filter_map(mpegts::pes_dts)
                    .map(|t| mpegts::pts_offset(t, open.start))
                    .min();
                mpegts::pts_diff(end, open.start.wrapping_add_signed(earliest.unwrap_or(0)) & PTS_MASK)
            }
            None => 0,
        });
        self.cuts.offset = Some(offset);
        if offset != 0 {
            for packet in open.bytes.chunks_exact_mut(PACKET).skip(2) {
                mpegts::shift_clocks(packet, offset);
            }
        }
        Some(Piece {
            bytes: open.bytes.freeze(),
            duration: Duration::from_micros(length * 100 / 9),
        })
    }
}

/// Where a published segment's media ends on the session's time line (90 kHz): its latest
/// timestamp and a frame. A reconnect's clocks continue from the last segment's end.
pub(crate) fn media_end(segment: &[u8]) -> Option<u64> {
    let start = media(segment).find_map(mpegts::pes_pts)?;
    let latest = media(segment)
        .filter_map(mpegts::pes_pts)
        .map(|t| mpegts::pts_offset(t, start))
        .max()?;
    Some((start.wrapping_add_signed(latest) + LAST_FRAME_90K) & PTS_MASK)
}

/// A segment's packets after the PAT and PMT it starts with.
fn media(segment: &[u8]) -> impl Iterator<Item = &[u8]> {
    segment.chunks_exact(PACKET).skip(2)
}

fn ticks(duration: Duration) -> u64 {
    (duration.as_micros() * 9 / 100) as u64
}

/// Returns the counter and advances it (4 bits).
fn next(counter: &mut u8) -> u8 {
    let now = *counter;
    *counter = (now + 1) & 0x0F;
    now
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpegts::tests::{h264_pes, packet, pat, pes, pmt};

    const PMT: u16 = 0x1000;
    const VIDEO: u16 = 0x100;
    const AUDIO: u16 = 0x101;

    fn plan() -> SegmentPlan {
        SegmentPlan::new(vec![Duration::from_millis(300); 3], Duration::from_secs(1))
    }

    /// A muxed stream: PSI every 100 ms, video at 25 fps with a key frame every `gop` frames,
    /// audio PES between video frames; `frames` video frames from PTS `start`.
    fn stream(frames: u64, gop: u64, start: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let mut cc = [0u8; 3];
        let mut bump = |i: usize| {
            let c = cc[i];
            cc[i] = (c + 1) & 0x0F;
            c
        };
        // 18 audio packets before any table, as hlssink2's first segment had.
        for i in 0..18 {
            out.extend_from_slice(&pes(AUDIO, false, start + i * 100, bump(2)));
        }
        for frame in 0..frames {
            let pts = (start + frame * 3_600) & mpegts::PTS_MASK;
            if frame % 2 == 0 {
                out.extend_from_slice(&pat(PMT, 0));
                out.extend_from_slice(&pmt(PMT, &[(0x1B, VIDEO), (0x0F, AUDIO)], 0));
            }
            // Key frames carry SPS, PPS and an IDR; every third frame between them is an I frame
            // the parser also flags as random access (a scene cut): no place to cut.
            let video = match (frame % gop == 0, frame % 3 == 1) {
                (true, _) => h264_pes(VIDEO, true, pts, bump(0), &[9, 7, 8, 5]),
                (false, true) => h264_pes(VIDEO, true, pts, bump(0), &[9, 1]),
                (false, false) => h264_pes(VIDEO, false, pts, bump(0), &[9, 1]),
            };
            out.extend_from_slice(&video);
            out.extend_from_slice(&packet(VIDEO, false, false, bump(0)));
            out.extend_from_slice(&pes(AUDIO, false, pts, bump(2)));
        }
        out
    }

    fn packets(bytes: &[u8]) -> Vec<&[u8]> {
        bytes.chunks_exact(PACKET).collect()
    }

    #[test]
    fn segments_start_with_tables_then_a_key_frame() {
        let mut segmenter = Segmenter::new(plan(), 0, None);
        let pieces = segmenter.push(&stream(200, 5, 1_000));
        assert!(pieces.len() >= 8, "{} segments", pieces.len());
        for piece in &pieces {
            let p = packets(&piece.bytes);
            assert_eq!(mpegts::pid(p[0]), 0, "PAT first");
            assert_eq!(mpegts::pid(p[1]), PMT, "PMT second");
            assert_eq!(mpegts::pid(p[2]), VIDEO, "then video");
            assert!(mpegts::random_access(p[2]), "a key frame");
        }
        assert!(
            !packets(&pieces[0].bytes)
                .iter()
                .take(3)
                .any(|p| mpegts::pid(p) == AUDIO),
            "no audio ahead of the tables"
        );
    }

    #[test]
    fn short_segments_first_then_full_ones_cut_on_key_frames() {
        // Key frames every 5 frames (200 ms): three segments of 400 ms (the first key frame at
        // or past 300 ms), then 1 s ones.
        let mut segmenter = Segmenter::new(plan(), 0, None);
        let pieces = segmenter.push(&stream(200, 5, 1_000));
        let lengths: Vec<u128> = pieces.iter().map(|p| p.duration.as_millis()).collect();
        assert_eq!(&lengths[..5], &[400, 400, 400, 1000, 1000], "{lengths:?}");
        // A later connection of the same session goes on with full lengths.
        let mut later = Segmenter::new(plan(), 3, None);
        let lengths: Vec<u128> = later
            .push(&stream(60, 5, 50_000))
            .iter()
            .map(|p| p.duration.as_millis())
            .collect();
        assert_eq!(lengths, vec![1000, 1000]);
    }

    #[test]
    fn continuity_runs_on_across_segments_for_every_pid() {
        let mut segmenter = Segmenter::new(plan(), 0, None);
        // Fed in odd-sized pieces: packets cut across buffers are joined.
        let data = stream(200, 5, 1_000);
        let mut pieces = Vec::new();
        for chunk in data.chunks(1_000) {
            pieces.extend(segmenter.push(chunk));
        }
        let mut last: std::collections::HashMap<u16, u8> = std::collections::HashMap::new();
        let mut count = 0;
        for piece in &pieces {
            for p in packets(&piece.bytes) {
                let pid = mpegts::pid(p);
                if let Some(previous) = last.get(&pid) {
                    assert_eq!(mpegts::continuity(p), (previous + 1) & 0x0F, "PID {pid:#x}");
                }
                last.insert(pid, mpegts::continuity(p));
                count += 1;
            }
        }
        assert!(count > 500 && last.len() == 4, "{count} packets on {} PIDs", last.len());
    }

    #[test]
    fn timestamps_across_the_wrap() {
        let mut segmenter = Segmenter::new(plan(), 3, None);
        let start = mpegts::PTS_MASK - 90_000;
        let lengths: Vec<u128> = segmenter
            .push(&stream(100, 25, start))
            .iter()
            .map(|p| p.duration.as_millis())
            .collect();
        assert_eq!(lengths, vec![1000, 1000, 1000]);
    }

    #[test]
    fn a_reconnect_continues_the_published_time_line() {
        let stamps = |pieces: &[Piece], pid: u16| -> Vec<u64> {
            pieces
                .iter()
                .flat_map(|piece| packets(&piece.bytes).into_iter().filter(|p| mpegts::pid(p) == pid))
                .filter_map(mpegts::pes_pts)
                .collect::<Vec<_>>()
        };
        let mut first = Segmenter::new(plan(), 0, None);
        let before = first.push(&stream(100, 5, 5_000_000));
        assert_eq!(
            stamps(&before, VIDEO)[0],
            5_000_000,
            "the first connection keeps its clocks"
        );
        let end = media_end(&before.last().unwrap().bytes).unwrap();
        let latest = stamps(&before, VIDEO)
            .into_iter()
            .chain(stamps(&before, AUDIO))
            .max()
            .unwrap();
        assert_eq!(
            end,
            latest + LAST_FRAME_90K,
            "it ends a frame after its latest timestamp"
        );
        // The receiver comes back through a new muxer whose clock starts far earlier.
        let mut second = Segmenter::new(plan(), before.len() as u64, Some(end));
        let after = second.push(&stream(100, 5, 1_000));
        let (video, audio) = (stamps(&after, VIDEO), stamps(&after, AUDIO));
        assert_eq!(
            video[0], end,
            "the first key frame (with its audio) lands where the media ended"
        );
        assert!(
            audio.iter().chain(&video).all(|&t| t >= end),
            "nothing goes back in time"
        );
        assert!(video.windows(2).all(|w| w[1] - w[0] == 3_600), "frame spacing kept");
        assert_eq!(
            after.iter().map(|p| p.duration).collect::<Vec<_>>(),
            Segmenter::new(plan(), before.len() as u64, None)
                .push(&stream(100, 5, 1_000))
                .iter()
                .map(|p| p.duration)
                .collect::<Vec<_>>(),
            "segment lengths as without the move"
        );
        assert_eq!(
            media_end(&after.last().unwrap().bytes).unwrap(),
            video.iter().chain(&audio).max().unwrap() + LAST_FRAME_90K
        );
    }

    #[test]
    fn radio_is_cut_on_audio_frames() {
        let mut segmenter = Segmenter::new(plan(), 3, None);
        let mut data = Vec::new();
        for frame in 0..200u64 {
            if frame % 4 == 0 {
                data.extend_from_slice(&pat(PMT, 0));
                data.extend_from_slice(&pmt(PMT, &[(0x0F, AUDIO)], 0));
            }
            data.extend_from_slice(&pes(AUDIO, false, frame * 2_160, (frame & 0x0F) as u8));
        }
        let pieces = segmenter.push(&data);
        // 24 ms frames: the first frame within 50 ms of 1 s ends each segment.
        let lengths: Vec<u128> = pieces.iter().map(|p| p.duration.as_millis()).collect();
        assert_eq!(lengths, vec![960, 960, 960, 960], "{lengths:?}");
        assert_eq!(mpegts::pid(packets(&pieces[1].bytes)[2]), AUDIO);
    }

    #[test]
    fn nothing_before_the_tables_and_the_first_key_frame() {
        let mut segmenter = Segmenter::new(plan(), 0, None);
        let mut data = Vec::new();
        // Video without the tables: cannot start.
        data.extend_from_slice(&h264_pes(VIDEO, true, 0, 0, &[9, 7, 8, 5]));
        assert!(segmenter.push(&data).is_empty());
        assert!(segmenter.open.is_none());
    }

    /// An audio-only stream of 24 ms frames from PTS `start`.
    fn audio_only(frames: u64, start: u64) -> Vec<u8> {
        let mut data = Vec::new();
        for frame in 0..frames {
            if frame % 4 == 0 {
                data.extend_from_slice(&pat(PMT, 0));
                data.extend_from_slice(&pmt(PMT, &[(0x0F, AUDIO)], 0));
            }
            data.extend_from_slice(&pes(AUDIO, false, start + frame * 2_160, (frame & 0x0F) as u8));
        }
        data
    }

    /// The PTS a segment's media starts at: its first PES on the key PID.
    fn first_pts(piece: &Piece, pid: u16) -> u64 {
        packets(&piece.bytes)
            .into_iter()
            .filter(|p| mpegts::pid(p) == pid)
            .find_map(mpegts::pes_pts)
            .unwrap()
    }

    #[test]
    fn a_follower_cuts_where_its_leader_did_and_waits_for_it() {
        // The leader's key frames come every 7 frames (280 ms), so its cuts are off the plan's
        // own lengths; an audio-only follower on its own plan would cut elsewhere.
        let video = stream(150, 7, 1_000);
        let audio = audio_only(250, 1_000);
        let mut leader = Segmenter::new(plan(), 5, None);
        let mut follower = Segmenter::new(plan(), 5, None);
        // The follower runs ahead: all its media first, in pieces, then the leader's.
        let mut followed = Vec::new();
        for chunk in audio.chunks(1_000) {
            followed.extend(follower.push_following(chunk, leader.cuts()));
        }
        assert!(followed.is_empty(), "nothing is cut before the leader gets there");
        let mut led = Vec::new();
        for chunk in video.chunks(5_000) {
            led.extend(leader.push(chunk));
            followed.extend(follower.resume(leader.cuts()));
        }
        assert!(led.len() >= 5, "{} segments", led.len());
        // The leader's last cut is known once it has read past it: the follower has one
        // segment fewer than the leader, or as many.
        assert!(followed.len() + 1 >= led.len(), "{} vs {}", followed.len(), led.len());
        for (l, f) in led.iter().zip(&followed) {
            let (lead, follow) = (first_pts(l, VIDEO), first_pts(f, AUDIO));
            assert!(
                mpegts::pts_offset(follow, lead).unsigned_abs() <= FOLLOW_TOLERANCE_90K,
                "leader at {lead}, follower at {follow}"
            );
        }
        let own: Vec<Piece> = Segmenter::new(plan(), 5, None).push(&audio);
        assert_ne!(
            own.iter().map(|p| first_pts(p, AUDIO)).take(4).collect::<Vec<_>>(),
            followed.iter().map(|p| first_pts(p, AUDIO)).take(4).collect::<Vec<_>>(),
            "on its own the audio is cut elsewhere: the test would prove nothing"
        );
    }

    #[test]
    fn a_follower_left_behind_by_a_drop_ends_its_segment_at_the_leaders_cut() {
        let video = stream(100, 7, 1_000);
        let mut leader = Segmenter::new(plan(), 0, None);
        let led = leader.push(&video);
        // The follower's media stops 150 ms before the leader's last cut: the connection dropped.
        let last_cut = leader.cuts().start_of(leader.next_index()).unwrap();
        let frames = (last_cut - 1_000 - 13_500) / 2_160;
        let mut follower = Segmenter::new(plan(), 0, None);
        let followed = follower.push_following(&audio_only(frames, 1_000), leader.cuts());
        assert!(follower.next_index() < leader.next_index(), "behind");
        assert_eq!(followed.len() + 1, led.len(), "one segment short");
        let last = follower.catch_up(leader.cuts()).expect("the open segment ends");
        let cut = leader.cuts().start_of(follower.next_index()).unwrap();
        let start = first_pts(&last, AUDIO);
        assert!(
            mpegts::pts_offset(last.duration.as_micros() as u64 * 9 / 100 + start, cut).unsigned_abs()
                <= FOLLOW_TOLERANCE_90K,
            "it ends at the leader's cut"
        );
        assert_eq!(follower.next_index(), leader.next_index(), "numbering runs on together");
        assert!(follower.catch_up(leader.cuts()).is_none(), "nothing more to end");
    }
}
