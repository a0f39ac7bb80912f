//! What a joining TS client needs first: the latest PAT and PMT, then the stream from the latest
//! random-access point (key frame). Pure: fed with the muxer's output, no IO.

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
}

/// Beyond this a GOP is not cached further (a source without key-frame flags).
const GOP_LIMIT: usize = 8 * 1024 * 1024;
/// Pending output is flushed at this size even without a key frame: large enough that a
/// 10 Mb/s channel is flushed by the session's timer, not by size (fewer writes per client).
pub(crate) const FLUSH_BYTES: usize = 128 * 1024;

impl TsCache {
    /// Adds muxer output; returns the chunks ready to broadcast.
    pub(crate) fn push(&mut self, data: &[u8]) -> Vec<Bytes> {
        let mut out = Vec::new();
        // The muxer aligns its output to packets; a cut packet is joined anyway.
        let (head, rest) = self.packets.split(data);
        for packet in head.iter().map(|p| &p[..]).chain(rest.chunks_exact(PACKET)) {
            if packet[0] != mpegts::SYNC {
                continue;
            }
            let pid = mpegts::pid(packet);
            let unit_start = mpegts::unit_start(packet);
            if pid == 0 && unit_start {
                self.pmt_pid = mpegts::pat_pmt_pid(packet).or(self.pmt_pid);
                self.pat = Some(Bytes::copy_from_slice(packet));
            } else if Some(pid) == self.pmt_pid && unit_start {
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
