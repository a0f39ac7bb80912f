//! TS: the packet accessors, PMT build and parse, PES timestamps, the Packetizer, the HLS
//! segmenter and the TS join cache.

use std::time::Duration;

use crate::mpegts::{self, PACKET, Packetizer};
use crate::pipeline::SegmentPlan;

use super::Input;

/// TS: packet accessors, PMT build→parse, PES PTS, the Packetizer, the HLS segmenter and the
/// TS join cache, fed with the input cut into buffers of fuzzer-chosen sizes.
pub fn ts(data: &[u8]) {
    let mut input = Input(data);
    let cuts: Vec<usize> = (0..4).map(|_| usize::from(input.u16() % 600)).collect();
    let mode = input.u8();
    let stream = input.rest();

    // Packet accessors never panic on any packet, and rewriting the counter touches nothing else.
    for chunk in stream.chunks_exact(PACKET) {
        let mut packet = [0u8; PACKET];
        packet.copy_from_slice(chunk);
        let _ = (
            mpegts::pid(&packet),
            mpegts::random_access(&packet),
            mpegts::pat_pmt_pid(&packet),
        );
        if let Some(section) = mpegts::section(&packet) {
            let _ = mpegts::pmt_streams(section);
        }
        if let Some(pts) = mpegts::pes_pts(&packet) {
            assert!(pts <= mpegts::PTS_MASK);
        }
        for stream_type in [0x02, 0x1B, 0x24, 0x0F] {
            let _ = mpegts::starts_decodable(stream_type, &packet);
        }
        let mut rewritten = packet;
        mpegts::set_continuity(&mut rewritten, mode);
        assert_eq!(mpegts::continuity(&rewritten), mode & 0x0F);
        assert_eq!(rewritten[..3], packet[..3]);
        assert_eq!(rewritten[4..], packet[4..]);
        assert_eq!(rewritten[3] & 0xF0, packet[3] & 0xF0);
    }
    pmt_round_trip(stream);
    let a = u64::from_le_bytes(stream.get(..8).and_then(|b| b.try_into().ok()).unwrap_or_default()) & mpegts::PTS_MASK;
    let d = (u64::from(mode) * 1_000_003) & mpegts::PTS_MASK;
    assert_eq!(mpegts::pts_diff((a + d) & mpegts::PTS_MASK, a), d);

    // The same stream in buffers cut anywhere gives the same whole packets.
    let buffers = cut(stream, &cuts);
    let mut packets = Packetizer::default();
    let mut joined = Vec::new();
    for buffer in &buffers {
        let (head, rest) = packets.split(buffer);
        assert_eq!(rest.len() % PACKET, 0);
        joined.extend(head.iter().flatten());
        joined.extend_from_slice(rest);
    }
    let whole = stream.len() / PACKET * PACKET;
    assert_eq!(joined, stream[..whole]);
    let synced: Vec<u8> = stream[..whole]
        .chunks_exact(PACKET)
        .filter(|p| p[0] == mpegts::SYNC)
        .flatten()
        .copied()
        .collect();

    // The join cache hands out the synced packets in order, unchanged, holding back only what
    // comes before the start (a key frame): never a table, nothing after the first packet out
    // that is not a table. Its preamble is whole packets.
    let mut cache = crate::session::TsCache::default();
    let mut out = Vec::new();
    for buffer in &buffers {
        out.extend(cache.push(buffer));
        let preamble = cache.preamble();
        assert!(preamble.iter().all(|b| b.len() % PACKET == 0));
    }
    out.extend(cache.flush());
    cache_holds_back_only_the_start(&synced, &out.concat());

    // Segments: whole packets, each starting with PAT then PMT, the tables' counters running on
    // from segment to segment; also when the clocks are moved to continue an earlier
    // connection's media (at a fuzzer-chosen time).
    let plan = SegmentPlan::new(
        vec![Duration::from_millis(500); 2],
        Duration::from_secs(1 + u64::from(mode % 4)),
    );
    let continue_at = (mode & 0x80 != 0).then_some(a);
    let mut segmenter = crate::session::Segmenter::new(plan, 0, continue_at);
    let mut pieces = Vec::new();
    for buffer in &buffers {
        pieces.extend(segmenter.push(buffer));
    }
    let mut pat_counter = None::<u8>;
    for piece in &pieces {
        assert_eq!(piece.bytes.len() % PACKET, 0);
        assert!(piece.bytes.len() >= 2 * PACKET);
        assert_eq!(mpegts::pid(&piece.bytes), 0);
        for packet in piece.bytes.chunks_exact(PACKET) {
            assert_eq!(packet[0], mpegts::SYNC);
            if mpegts::pid(packet) == 0 {
                let counter = mpegts::continuity(packet);
                if let Some(previous) = pat_counter {
                    assert_eq!(counter, (previous + 1) & 0x0F, "PAT counters run on across segments");
                }
                pat_counter = Some(counter);
            }
        }
    }
}

/// `out` is `synced` less packets held back before the start: matched from the end (the
/// latest embedding), every packet left out is a media packet before the first media packet
/// sent. Tables are PID 0 and the PMT PID the latest PAT names, as the cache reads them.
fn cache_holds_back_only_the_start(synced: &[u8], out: &[u8]) {
    let input: Vec<&[u8]> = synced.chunks_exact(PACKET).collect();
    let output: Vec<&[u8]> = out.chunks_exact(PACKET).collect();
    assert_eq!(out.len() % PACKET, 0);
    let mut pmt_pid = None;
    let table: Vec<bool> = input
        .iter()
        .map(|p| {
            let pid = mpegts::pid(p);
            if pid == 0 && mpegts::unit_start(p) {
                pmt_pid = mpegts::pat_pmt_pid(p).or(pmt_pid);
            }
            pid == 0 || Some(pid) == pmt_pid
        })
        .collect();
    let mut sent = vec![false; input.len()];
    let mut at = input.len();
    for packet in output.iter().rev() {
        at = input[..at]
            .iter()
            .rposition(|p| p == packet)
            .unwrap_or_else(|| panic!("a packet out of the cache is one of the input's, in order"));
        sent[at] = true;
    }
    let first_media = (0..input.len()).find(|i| sent[*i] && !table[*i]).unwrap_or(input.len());
    for (i, was_sent) in sent.iter().enumerate() {
        if !was_sent {
            assert!(!table[i], "packet {i} of {}: a table is never held back", input.len());
            assert!(i < first_media, "packet {i}: nothing is held back once media flows");
        }
    }
}

/// A PMT section built from fuzzer-chosen streams parses back to them.
fn pmt_round_trip(data: &[u8]) {
    let mut input = Input(data);
    let count = usize::from(input.u8() % 12);
    let mut streams = Vec::new();
    let mut body = Vec::new();
    for _ in 0..count {
        let stream_type = input.u8();
        let pid = input.u16() & 0x1FFF;
        let language = (input.u8() & 1 == 1).then(|| {
            let code: Vec<u8> = input
                .bytes(3)
                .iter()
                .map(|b| b'a' + b % 26)
                .chain([b'x'; 3])
                .take(3)
                .collect();
            String::from_utf8(code).unwrap_or_default()
        });
        let descriptors: Vec<u8> = match &language {
            Some(code) => [&[0x0A, 4][..], code.as_bytes(), &[0]].concat(),
            None => Vec::new(),
        };
        body.extend_from_slice(&[
            stream_type,
            0xE0 | (pid >> 8) as u8,
            pid as u8,
            0xF0,
            descriptors.len() as u8,
        ]);
        body.extend_from_slice(&descriptors);
        streams.push(mpegts::PmtStream {
            pid,
            stream_type,
            descriptor_tags: if language.is_some() { vec![0x0A] } else { vec![] },
            language,
        });
    }
    let length = 9 + body.len() + 4;
    let mut section = vec![
        0x02,
        0xB0 | (length >> 8) as u8,
        length as u8,
        0,
        1,
        0xC1,
        0,
        0,
        0xE1,
        0x00,
        0xF0,
        0,
    ];
    section.extend_from_slice(&body);
    section.extend_from_slice(&[0; 4]);
    assert_eq!(mpegts::pmt_streams(&section), Some(streams));
}

/// `data` in buffers whose lengths repeat `cuts` (a zero length is skipped; all zero: one
/// buffer).
pub(super) fn cut<'a>(data: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    let lengths: Vec<usize> = cuts.iter().copied().filter(|n| *n > 0).collect();
    for length in lengths.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (head, tail) = rest.split_at((*length).min(rest.len()));
        out.push(head);
        rest = tail;
    }
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}
