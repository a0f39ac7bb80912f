//! What a TS client needs first, and a stream that stays whole across reconnects. Pure: fed
//! with the muxer's (or the receiver's) output, no IO.
//!
//! - A joining client gets the PAT and PMT, then the stream from the latest random-access point
//!   (key frame).
//! - The session's first clients, too, start at a key frame: until the first one on the video
//!   PID, only tables go out (a receiver's stream starts mid-GOP; a decoder fed from there logs
//!   errors until the next key frame). Radio starts at once; a stream in which no key frame can
//!   be found starts anyway after [`START_LIMIT`] bytes.
//! - After a reconnect ([`TsCache::splice`]) every PID's continuity counter runs on from where
//!   the old connection left it, and the first PCR of the new one carries the
//!   `discontinuity_indicator`: players re-base their clock there instead of reporting lost
//!   packets and a clock jumping back.

use bytes::{Bytes, BytesMut};

use crate::mpegts::{self, PACKET, Packetizer};

/// Splits the muxer's output into chunks that start at key frames and remembers the GOP.
#[derive(Debug, Default)]
pub(crate) struct TsCache {
    pat: Option<Bytes>,
    pmt: Option<Bytes>,
    /// The PAT and PMT as they stood when the cached GOP began: a joiner gets these, so that
    /// the tables' continuity counters run on into the GOP's own and the live stream's.
    gop_pat: Option<Bytes>,
    gop_pmt: Option<Bytes>,
    pmt_pid: Option<u16>,
    /// Chunks since the latest random-access point, the first starting with it.
    gop: Vec<Bytes>,
    gop_bytes: usize,
    seen_random_access: bool,
    pending: BytesMut,
    /// Joins packets cut across input buffers.
    packets: Packetizer,
    /// The video stream (PID, stream type) the PMT lists, if any.
    video: Option<(u16, u8)>,
    /// Whether output flows: a key frame was found (or there is no video, or the limit hit).
    started: bool,
    /// Bytes held back before the start.
    held: usize,
    /// Per PID: the counter of the last packet sent, and what to add to the incoming counters
    /// (non-zero after a splice).
    counters: Counters,
    /// Set by a splice until the next PCR has carried the discontinuity indicator.
    mark_pcr: bool,
}

/// One [`Counter`] per PID (8192).
struct Counters(Vec<Counter>);

impl Default for Counters {
    fn default() -> Self {
        Self(vec![Counter::default(); 8192])
    }
}

impl std::fmt::Debug for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let used = self.0.iter().filter(|c| c.last.is_some()).count();
        write!(f, "Counters({used} PIDs)")
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Counter {
    last: Option<u8>,
    offset: u8,
    /// Whether this PID's offset is still to be set (the first packet after a splice).
    rebase: bool,
}

/// Beyond this a GOP is not cached further (a source without key-frame flags).
const GOP_LIMIT: usize = 8 * 1024 * 1024;
/// A stream whose first key frame is not found within this many bytes starts without one
/// (about 3 s of a 10 Mb/s channel).
pub(crate) const START_LIMIT: usize = 4 * 1024 * 1024;
/// Pending output is flushed at this size even without a key frame: large enough that a
/// 10 Mb/s channel is flushed by the session's timer, not by size (fewer writes per client).
pub(crate) const FLUSH_BYTES: usize = 128 * 1024;

impl TsCache {
    /// Adds muxer output; returns the chunks ready to broadcast.
    pub(crate) fn push(&mut self, data: &[u8]) -> Vec<Bytes> {
        let mut out = Vec::new();
        // The muxer aligns its output to packets; a cut packet is joined anyway.
        let (head, rest) = self.packets.split(data);
        for input in head.iter().map(|p| &p[..]).chain(rest.chunks_exact(PACKET)) {
            if input[0] != mpegts::SYNC {
                continue;
            }
            let mut owned = [0u8; PACKET];
            owned.copy_from_slice(input);
            let packet = &mut owned[..];
            let pid = mpegts::pid(packet);
            let unit_start = mpegts::unit_start(packet);
            if pid == 0 && unit_start {
                self.pmt_pid = mpegts::pat_pmt_pid(packet).or(self.pmt_pid);
            }
            let table = pid == 0 || Some(pid) == self.pmt_pid;
            if table
                && pid != 0
                && unit_start
                && let Some(streams) = mpegts::section(packet).and_then(mpegts::pmt_streams)
            {
                self.video = streams.iter().find(|s| s.is_video()).map(|s| (s.pid, s.stream_type));
            }
            if !self.started && !table {
                if self.pmt.is_none() {
                    continue;
                }
                let key_frame = match self.video {
                    None => true,
                    Some((video, stream_type)) => {
                        pid == video
                            && unit_start
                            && (mpegts::random_access(packet) || mpegts::starts_decodable(stream_type, packet))
                    }
                };
                self.held += PACKET;
                if !key_frame && self.held < START_LIMIT {
                    continue;
                }
                self.started = true;
            }
            // Only what is sent is renumbered: counters run on across what was held back.
            self.renumber(pid, packet);
            if pid == 0 && unit_start {
                self.pat = Some(Bytes::copy_from_slice(packet));
            } else if table && unit_start {
                self.pmt = Some(Bytes::copy_from_slice(packet));
            }
            if mpegts::random_access(packet) {
                if let Some(chunk) = self.flush() {
                    out.push(chunk);
                }
                self.gop.clear();
                self.gop_bytes = 0;
                self.seen_random_access = true;
                self.gop_pat.clone_from(&self.pat);
                self.gop_pmt.clone_from(&self.pmt);
            }
            self.pending.extend_from_slice(packet);
            if self.pending.len() >= FLUSH_BYTES
                && let Some(chunk) = self.flush()
            {
                out.push(chunk);
            }
        }
        out
    }

    /// A new connection to the receiver follows: its counters are made to run on from this
    /// one's, and its first PCR marks the discontinuity.
    pub(crate) fn splice(&mut self) {
        for counter in self.counters.0.iter_mut().filter(|c| c.last.is_some()) {
            counter.rebase = true;
        }
        self.mark_pcr = true;
        // The new connection starts mid-GOP too: clients get its tables, then its first key
        // frame, rather than pictures a decoder cannot build.
        self.started = false;
        self.held = 0;
    }

    /// Applies the splice's counter offset and marks the first PCR after it.
    fn renumber(&mut self, pid: u16, packet: &mut [u8]) {
        let has_payload = packet[3] & 0x10 != 0;
        let counter = &mut self.counters.0[usize::from(pid)];
        if counter.rebase && has_payload {
            // The first packet after the splice continues from the last one sent.
            let last = counter.last.unwrap_or(0);
            counter.offset = last.wrapping_add(1).wrapping_sub(mpegts::continuity(packet)) & 0x0F;
            counter.rebase = false;
        }
        if counter.offset != 0 {
            let renumbered = mpegts::continuity(packet).wrapping_add(counter.offset);
            mpegts::set_continuity(packet, renumbered);
        }
        if has_payload {
            counter.last = Some(mpegts::continuity(packet));
        }
        // An adaptation field with a PCR: flag the time base's discontinuity there.
        if self.mark_pcr && mpegts::pcr_base(packet).is_some() {
            packet[5] |= 0x80;
            self.mark_pcr = false;
        }
    }

    /// Hands out what is pending (called on a timer as well, so chunks stay small in time).
    pub(crate) fn flush(&mut self) -> Option<Bytes> {
        if self.pending.is_empty() {
            return None;
        }
        let chunk = self.pending.split().freeze();
        if self.gop_bytes + chunk.len() <= GOP_LIMIT {
            self.gop_bytes += chunk.len();
            self.gop.push(chunk.clone());
        }
        Some(chunk)
    }

    /// What a new client gets before the live chunks: PAT, PMT, and the current GOP.
    pub(crate) fn preamble(&self) -> Vec<Bytes> {
        if !self.seen_random_access {
            // The latest tables; the live stream's next ones follow on.
            return self.pat.iter().chain(self.pmt.iter()).cloned().collect();
        }
        let mut out: Vec<Bytes> = self.gop_pat.iter().chain(self.gop_pmt.iter()).cloned().collect();
        out.extend(self.gop.iter().cloned());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpegts::tests as ts;

    const PMT: u16 = 0x100;
    const VIDEO: u16 = 0x101;
    const AUDIO: u16 = 0x102;

    fn bytes(chunks: &[Bytes]) -> Vec<u8> {
        chunks.iter().flat_map(|b| b.iter().copied()).collect()
    }

    fn packets(data: &[u8]) -> Vec<&[u8]> {
        data.chunks_exact(PACKET).collect()
    }

    /// A packet of `pid` whose adaptation field carries a PCR.
    fn pcr_packet(pid: u16, counter: u8) -> [u8; PACKET] {
        let mut p = ts::packet(pid, false, false, counter);
        p[3] = 0x30 | counter;
        p[4] = 7;
        p[5] = 0x10;
        p
    }

    #[test]
    fn the_first_clients_start_at_a_key_frame() {
        let mut cache = TsCache::default();
        let mut input = Vec::new();
        input.extend(ts::pat(PMT, 0));
        input.extend(ts::pmt(PMT, &[(0x1B, VIDEO), (0x03, AUDIO)], 0));
        // Mid-GOP: a slice, audio, then an IDR with its SPS (no random-access flag, as some
        // receivers send it).
        input.extend(ts::h264_pes(VIDEO, false, 0, 0, &[1]));
        input.extend(ts::pes(AUDIO, false, 0, 0));
        input.extend(ts::h264_pes(VIDEO, false, 3600, 1, &[7, 8, 5]));
        input.extend(ts::pes(AUDIO, false, 3600, 1));
        let mut out = cache.push(&input);
        out.extend(cache.flush());
        let sent = bytes(&out);
        let pids: Vec<u16> = packets(&sent).iter().map(|p| mpegts::pid(p)).collect();
        assert_eq!(pids, [0, PMT, VIDEO, AUDIO], "tables, then from the key frame on");
        assert_eq!(
            mpegts::continuity(packets(&sent)[2]),
            1,
            "the IDR, not the slice before it"
        );
    }

    #[test]
    fn radio_and_streams_without_key_frames_start_anyway() {
        let mut radio = TsCache::default();
        let mut input = Vec::new();
        input.extend(ts::pat(PMT, 0));
        input.extend(ts::pmt(PMT, &[(0x03, AUDIO)], 0));
        input.extend(ts::pes(AUDIO, false, 0, 0));
        let mut out = radio.push(&input);
        out.extend(radio.flush());
        assert_eq!(bytes(&out).len(), 3 * PACKET, "no video: nothing to wait for");

        let mut blind = TsCache::default();
        let mut input = Vec::new();
        input.extend(ts::pat(PMT, 0));
        input.extend(ts::pmt(PMT, &[(0x1B, VIDEO)], 0));
        let slices = START_LIMIT / PACKET + 10;
        for i in 0..slices {
            input.extend(ts::packet(VIDEO, false, false, (i % 16) as u8));
        }
        let mut out = blind.push(&input);
        out.extend(blind.flush());
        let sent = bytes(&out).len() / PACKET;
        assert!(
            sent > 2 && sent < slices,
            "started after the limit: {sent} of {slices} packets"
        );
    }

    #[test]
    fn a_splice_keeps_counters_running_and_flags_the_new_clock() {
        let mut cache = TsCache::default();
        let mut first = Vec::new();
        first.extend(ts::pat(PMT, 5));
        first.extend(ts::pmt(PMT, &[(0x1B, VIDEO)], 5));
        first.extend(ts::h264_pes(VIDEO, true, 0, 9, &[7, 8, 5]));
        first.extend(pcr_packet(VIDEO, 10));
        let mut out = cache.push(&first);
        cache.splice();
        // The new connection's muxer starts its counters at 0, mid-GOP.
        let mut second = Vec::new();
        second.extend(ts::pat(PMT, 0));
        second.extend(ts::pmt(PMT, &[(0x1B, VIDEO)], 0));
        second.extend(ts::h264_pes(VIDEO, false, 0, 0, &[1]));
        second.extend(ts::h264_pes(VIDEO, true, 9000, 1, &[7, 8, 5]));
        second.extend(pcr_packet(VIDEO, 2));
        out.extend(cache.push(&second));
        out.extend(cache.flush());
        let sent = bytes(&out);
        let seen: Vec<(u16, u8)> = packets(&sent)
            .iter()
            .map(|p| (mpegts::pid(p), mpegts::continuity(p)))
            .collect();
        assert_eq!(
            seen,
            [
                (0, 5),
                (PMT, 5),
                (VIDEO, 9),
                (VIDEO, 10),
                (0, 6),
                (PMT, 6),
                (VIDEO, 11),
                (VIDEO, 12)
            ],
            "every PID runs on; the slice before the new key frame is left out"
        );
        let flagged: Vec<bool> = packets(&sent)
            .iter()
            .map(|p| p[3] & 0x20 != 0 && p[5] & 0x80 != 0)
            .collect();
        assert_eq!(
            flagged,
            [false, false, false, false, false, false, false, true],
            "the first new PCR"
        );
        // A joiner after the splice gets the renumbered tables.
        let preamble = bytes(&cache.preamble());
        assert_eq!(mpegts::continuity(&preamble[..PACKET]), 6);
    }

    fn packet(pid: u16, unit_start: bool, rai: bool, fill: u8) -> Vec<u8> {
        let mut p = vec![fill; PACKET];
        p[0] = 0x47;
        p[1] = (if unit_start { 0x40 } else { 0 }) | (pid >> 8) as u8;
        p[2] = pid as u8;
        if rai {
            p[3] = 0x30;
            p[4] = 1;
            p[5] = 0x40;
        } else {
            p[3] = 0x10;
        }
        p
    }

    fn pat(pmt_pid: u16) -> Vec<u8> {
        crate::mpegts::tests::pat(pmt_pid, 0).to_vec()
    }

    #[test]
    fn joiners_get_tables_then_the_stream_from_the_latest_key_frame() {
        let mut cache = TsCache::default();
        let mut input = pat(0x100);
        input.extend(packet(0x100, true, false, 1)); // PMT
        input.extend(packet(0x101, true, true, 2)); // key frame 1
        input.extend(packet(0x101, false, false, 3));
        input.extend(packet(0x101, true, true, 4)); // key frame 2
        input.extend(packet(0x101, false, false, 5));
        // Cut mid-packet across two pushes.
        let chunks: Vec<Bytes> = [cache.push(&input[..500]), cache.push(&input[500..])].concat();
        assert_eq!(chunks.len(), 2, "a chunk ends before each key frame");
        cache.flush();
        let preamble = cache.preamble();
        let bytes: Vec<u8> = preamble.iter().flat_map(|b| b.iter().copied()).collect();
        assert_eq!(
            bytes.len(),
            4 * PACKET,
            "PAT, PMT, then key frame 2 and its continuation"
        );
        assert_eq!(&bytes[..PACKET], &pat(0x100)[..]);
        assert_eq!(bytes[PACKET + 4], 1, "PMT");
        assert_eq!(bytes[2 * PACKET + 6], 4, "starts at the latest key frame");
    }

    /// VLC logs `TS discontinuity (received 3, expected 7) for PID 0` when a joiner's tables
    /// jump: the preamble's PAT and PMT must be the ones just before the GOP, whose successors
    /// are the GOP's own tables and then the live stream's.
    #[test]
    fn a_joiner_sees_the_tables_counters_run_on() {
        use crate::mpegts::tests::{packet as ts_packet, pat, pmt};
        let mut cache = TsCache::default();
        let mut stream = Vec::new();
        let mut counter = 0u8;
        let mut tables = |stream: &mut Vec<u8>| {
            stream.extend(pat(0x100, counter));
            stream.extend(pmt(0x100, &[(0x1B, 0x101)], counter));
            counter = (counter + 1) & 0x0F;
        };
        for frame in 0..12u8 {
            tables(&mut stream);
            stream.extend(ts_packet(0x101, true, frame % 5 == 0, frame & 0x0F));
        }
        let mut live = cache.push(&stream);
        live.extend(cache.flush());
        let mut joined: Vec<u8> = cache.preamble().iter().flat_map(|b| b.iter().copied()).collect();
        // What the session sends next.
        let mut next = Vec::new();
        tables(&mut next);
        joined.extend(
            cache
                .push(&next)
                .into_iter()
                .chain(cache.flush())
                .flat_map(|b| b.to_vec()),
        );
        let mut last = std::collections::HashMap::new();
        for p in joined
            .chunks_exact(PACKET)
            .filter(|p| mpegts::pid(p) == 0 || mpegts::pid(p) == 0x100)
        {
            let pid = mpegts::pid(p);
            if let Some(previous) = last.insert(pid, mpegts::continuity(p)) {
                assert_eq!(mpegts::continuity(p), (previous + 1) & 0x0F, "PID {pid:#x}");
            }
        }
        assert_eq!(last.len(), 2, "both tables seen");
        assert!(!live.is_empty());
    }

    #[test]
    fn without_key_frames_only_tables_are_replayed() {
        let mut cache = TsCache::default();
        let mut input = pat(0x100);
        input.extend(packet(0x100, true, false, 1));
        input.extend(packet(0x102, true, false, 9));
        cache.push(&input);
        cache.flush();
        assert_eq!(cache.preamble().len(), 2);
    }
}
