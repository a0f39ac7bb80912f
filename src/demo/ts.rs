//! A small MPEG-TS multiplexer for the demo receiver: PAT, PMT, PES with PTS/DTS, PCR.
//!
//! It muxes one loop of elementary-stream frames into 188-byte packets, each with the time it is
//! due on the wire. The loop is muxed once; [`crate::demo::feed`] replays it forever, patching
//! continuity counters, PCR, PTS and DTS so that the output is one continuous broadcast.

use crate::mpegts::{PACKET, PTS_MASK, encode_timestamp};

/// The 33-bit PTS/DTS/PCR-base clock wraps here.
pub(crate) const TS_WRAP: u64 = PTS_MASK + 1;
const PAT_PID: u16 = 0x0000;
const PSI_INTERVAL: i64 = 9_000; // 100 ms
const MUX_DELAY: i64 = 45_000; // 500 ms between a frame's arrival and its decode time

/// Codec of an elementary stream, with its DVB signalling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EsKind {
    H264,
    Mpeg2Video,
    Mp2,
    Ac3,
    Eac3,
}

impl EsKind {
    fn stream_type(self) -> u8 {
        match self {
            EsKind::H264 => 0x1B,
            EsKind::Mpeg2Video => 0x02,
            EsKind::Mp2 => 0x03,
            // DVB carries AC-3 and E-AC-3 as private PES data, announced by a descriptor.
            EsKind::Ac3 | EsKind::Eac3 => 0x06,
        }
    }

    fn stream_id(self) -> u8 {
        match self {
            EsKind::H264 | EsKind::Mpeg2Video => 0xE0,
            EsKind::Mp2 => 0xC0,
            EsKind::Ac3 | EsKind::Eac3 => 0xBD,
        }
    }

    fn is_video(self) -> bool {
        matches!(self, EsKind::H264 | EsKind::Mpeg2Video)
    }
}

/// One access unit, timestamps in 90 kHz relative to the loop start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame {
    pub data: Vec<u8>,
    pub pts: i64,
    pub dts: i64,
    pub key: bool,
}

/// An elementary stream of one loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EsStream {
    pub kind: EsKind,
    pub frame_duration: i64,
    pub frames: Vec<Frame>,
}

/// A stream placed in a program.
pub(crate) struct Track<'a> {
    pub pid: u16,
    pub language: Option<&'a str>,
    pub stream: &'a EsStream,
}

pub(crate) struct Program<'a> {
    pub transport_stream_id: u16,
    pub program_number: u16,
    pub pmt_pid: u16,
    pub pcr_pid: u16,
    pub tracks: Vec<Track<'a>>,
}

/// Where the replayer must patch a packet.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PacketInfo {
    /// Due time within the loop, 90 kHz.
    pub at: u64,
    pub pid: u16,
    pub pcr: bool,
    /// Offset of the PES PTS field, 0 when none.
    pub pts_at: u8,
    /// Offset of the PES DTS field, 0 when none.
    pub dts_at: u8,
}

/// One muxed loop: packets in wire order and where to patch them.
pub(crate) struct TsLoop {
    pub bytes: Vec<u8>,
    pub packets: Vec<PacketInfo>,
    pub duration: u64,
}

impl TsLoop {
    pub(crate) fn packet(&self, i: usize) -> &[u8] {
        &self.bytes[i * PACKET..(i + 1) * PACKET]
    }

    /// The same loop as a receiver sends it without a descrambler: elementary-stream packets
    /// marked scrambled and their payload replaced by noise; tables and PCR stay clear.
    pub(crate) fn scrambled(&self, seed: u64) -> TsLoop {
        let mut bytes = self.bytes.clone();
        let mut rng = seed | 1;
        let mut packets = self.packets.clone();
        for (i, info) in packets.iter_mut().enumerate() {
            let p = &mut bytes[i * PACKET..(i + 1) * PACKET];
            if is_psi(p) {
                continue;
            }
            let start = payload_start(p);
            p[3] = (p[3] & 0x3F) | 0x80;
            for b in &mut p[start..] {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                *b = rng as u8;
            }
            info.pts_at = 0;
            info.dts_at = 0;
        }
        TsLoop {
            bytes,
            packets,
            duration: self.duration,
        }
    }
}

fn is_psi(p: &[u8]) -> bool {
    // A table starts in a packet with the unit-start flag and no adaptation field; a PES
    // packet starts with 00 00 01 instead of a pointer field.
    let start = payload_start(p);
    p[1] & 0x40 != 0 && start == 4 && !(p[4] == 0 && p[5] == 0 && p[6] == 1)
}

fn payload_start(p: &[u8]) -> usize {
    match (p[3] >> 4) & 0x3 {
        0b11 => 5 + p[4] as usize,
        0b10 => PACKET,
        _ => 4,
    }
}

/// Muxes `loop_duration` (90 kHz) of the program's streams into one replayable loop.
pub(crate) fn mux_loop(program: &Program<'_>, loop_duration: i64) -> TsLoop {
    let mut scheduled: Vec<(i64, usize, [u8; PACKET], PacketInfo)> = Vec::new();
    let mut seq = 0usize;
    let mut push = |at: i64, packet: [u8; PACKET], mut info: PacketInfo, timestamps: &[(usize, i64)]| {
        let k = at.div_euclid(loop_duration);
        let mut packet = packet;
        let at_mod = at.rem_euclid(loop_duration);
        // Timestamps move into the loop iteration in which the packet is sent.
        for &(offset, ts) in timestamps {
            let prefix = packet[offset] >> 4;
            let shifted = (ts - k * loop_duration).rem_euclid(TS_WRAP as i64) as u64;
            packet[offset..offset + 5].copy_from_slice(&encode_timestamp(prefix, shifted));
        }
        if info.pcr {
            packet[6..12].copy_from_slice(&encode_pcr(at_mod as u64));
        }
        info.at = at_mod as u64;
        scheduled.push((at_mod, seq, packet, info));
        seq += 1;
    };

    let mut t = 0;
    while t < loop_duration {
        push(
            t,
            psi_packet(PAT_PID, &pat_section(program)),
            PacketInfo {
                pid: PAT_PID,
                ..Default::default()
            },
            &[],
        );
        push(
            t,
            psi_packet(program.pmt_pid, &pmt_section(program)),
            PacketInfo {
                pid: program.pmt_pid,
                ..Default::default()
            },
            &[],
        );
        t += PSI_INTERVAL;
    }

    for track in &program.tracks {
        let stream = track.stream;
        let carries_pcr = track.pid == program.pcr_pid;
        for frame in &stream.frames {
            let pes = pes_packet(stream.kind, frame);
            let estimate = pes.bytes.len().div_ceil(PACKET - 12).max(1);
            // PCR at least every 20 ms: the frame start, and mid-frame for slow frame rates.
            let mut pcr_at = vec![];
            if carries_pcr {
                pcr_at.push(0);
                if stream.frame_duration > 2_700 && estimate > 1 {
                    pcr_at.push(estimate / 2);
                }
            }
            let packets = packetize(track.pid, &pes, &pcr_at, frame.key && stream.kind.is_video());
            let end = frame.dts - MUX_DELAY;
            let start = end - stream.frame_duration;
            let n = packets.len() as i64;
            for (i, (packet, info)) in packets.into_iter().enumerate() {
                let at = start + (i as i64) * stream.frame_duration / n;
                let mut stamps = vec![];
                if info.pts_at != 0 {
                    stamps.push((info.pts_at as usize, frame.pts));
                }
                if info.dts_at != 0 {
                    stamps.push((info.dts_at as usize, frame.dts));
                }
                push(at, packet, info, &stamps);
            }
        }
    }

    scheduled.sort_by_key(|(at, seq, _, _)| (*at, *seq));
    let mut bytes = Vec::with_capacity(scheduled.len() * PACKET);
    let mut packets = Vec::with_capacity(scheduled.len());
    for (_, _, packet, info) in scheduled {
        bytes.extend_from_slice(&packet);
        packets.push(info);
    }
    TsLoop {
        bytes,
        packets,
        duration: loop_duration as u64,
    }
}

struct Pes {
    bytes: Vec<u8>,
    pts_at: usize,
    dts_at: Option<usize>,
}

fn pes_packet(kind: EsKind, frame: &Frame) -> Pes {
    // Video always carries both, as broadcast encoders do; a joiner need not guess the DTS.
    let with_dts = kind.is_video();
    let header_len: usize = if with_dts { 10 } else { 5 };
    let mut b = Vec::with_capacity(frame.data.len() + 9 + header_len);
    b.extend_from_slice(&[0, 0, 1, kind.stream_id()]);
    let len = 3 + header_len + frame.data.len();
    // Video PES may be unbounded (length 0) in a transport stream; audio never is.
    let len_field = if kind.is_video() || len > 0xFFFF { 0 } else { len as u16 };
    b.extend_from_slice(&len_field.to_be_bytes());
    b.push(0x84); // '10', data_alignment_indicator
    b.push(if with_dts { 0xC0 } else { 0x80 });
    b.push(header_len as u8);
    let pts_at = b.len();
    b.extend_from_slice(&encode_timestamp(if with_dts { 0b0011 } else { 0b0010 }, 0));
    let dts_at = with_dts.then(|| {
        let at = b.len();
        b.extend_from_slice(&encode_timestamp(0b0001, 0));
        at
    });
    b.extend_from_slice(&frame.data);
    Pes {
        bytes: b,
        pts_at,
        dts_at,
    }
}

/// Splits a PES packet into TS packets; `pcr_at` lists packet indices that carry a PCR.
fn packetize(pid: u16, pes: &Pes, pcr_at: &[usize], random_access: bool) -> Vec<([u8; PACKET], PacketInfo)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < pes.bytes.len() {
        let index = out.len();
        let pcr = pcr_at.contains(&index);
        let rai = random_access && index == 0;
        let mut p = [0xFFu8; PACKET];
        p[0] = 0x47;
        p[1] = (if index == 0 { 0x40 } else { 0 }) | ((pid >> 8) as u8 & 0x1F);
        p[2] = pid as u8;
        let af_min = if pcr {
            8
        } else if rai {
            2
        } else {
            0
        };
        let remaining = pes.bytes.len() - pos;
        let take = remaining.min(PACKET - 4 - af_min);
        let af_len = PACKET - 4 - take; // bytes including the length byte
        let mut info = PacketInfo {
            pid,
            pcr,
            ..Default::default()
        };
        if af_len > 0 {
            p[3] = 0x30;
            p[4] = (af_len - 1) as u8;
            if af_len > 1 {
                p[5] = (if rai { 0x40 } else { 0 }) | (if pcr { 0x10 } else { 0 });
            }
        } else {
            p[3] = 0x10;
        }
        let start = 4 + af_len;
        p[start..].copy_from_slice(&pes.bytes[pos..pos + take]);
        if index == 0 {
            info.pts_at = (start + pes.pts_at) as u8;
            info.dts_at = pes.dts_at.map_or(0, |d| (start + d) as u8);
        }
        pos += take;
        out.push((p, info));
    }
    out
}

fn psi_packet(pid: u16, section: &[u8]) -> [u8; PACKET] {
    let mut p = [0xFFu8; PACKET];
    p[0] = 0x47;
    p[1] = 0x40 | ((pid >> 8) as u8 & 0x1F);
    p[2] = pid as u8;
    p[3] = 0x10;
    p[4] = 0; // pointer field
    p[5..5 + section.len()].copy_from_slice(section);
    p
}

fn pat_section(program: &Program<'_>) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&program.transport_stream_id.to_be_bytes());
    body.extend_from_slice(&[0xC1, 0, 0]);
    body.extend_from_slice(&program.program_number.to_be_bytes());
    body.extend_from_slice(&(0xE000 | program.pmt_pid).to_be_bytes());
    section(0x00, &body)
}

fn pmt_section(program: &Program<'_>) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&program.program_number.to_be_bytes());
    body.extend_from_slice(&[0xC1, 0, 0]);
    body.extend_from_slice(&(0xE000 | program.pcr_pid).to_be_bytes());
    body.extend_from_slice(&0xF000u16.to_be_bytes());
    for track in &program.tracks {
        let mut descriptors = Vec::new();
        match track.stream.kind {
            EsKind::Ac3 => descriptors.extend_from_slice(&[0x6A, 1, 0x00]),
            // enhanced_AC-3_descriptor (EN 300 468 annex D), no optional fields.
            EsKind::Eac3 => descriptors.extend_from_slice(&[0x7A, 1, 0x00]),
            _ => {}
        }
        if let Some(lang) = track.language {
            descriptors.extend_from_slice(&[0x0A, 4]);
            descriptors.extend_from_slice(&lang.as_bytes()[..3]);
            descriptors.push(0);
        }
        body.push(track.stream.kind.stream_type());
        body.extend_from_slice(&(0xE000 | track.pid).to_be_bytes());
        body.extend_from_slice(&(0xF000 | descriptors.len() as u16).to_be_bytes());
        body.extend_from_slice(&descriptors);
    }
    section(0x02, &body)
}

fn section(table_id: u8, body: &[u8]) -> Vec<u8> {
    let length = body.len() + 4;
    let mut s = vec![table_id, 0xB0 | ((length >> 8) as u8 & 0x0F), length as u8];
    s.extend_from_slice(body);
    let crc = crc32_mpeg2(&s);
    s.extend_from_slice(&crc.to_be_bytes());
    s
}

fn crc32_mpeg2(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc ^= (byte as u32) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04C1_1DB7
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// A PCR with the given 90 kHz base and no 27 MHz extension.
pub(crate) fn encode_pcr(base: u64) -> [u8; 6] {
    let base = base % TS_WRAP;
    [
        (base >> 25) as u8,
        (base >> 17) as u8,
        (base >> 9) as u8,
        (base >> 1) as u8,
        (((base & 1) as u8) << 7) | 0x7E,
        0,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpegts::decode_timestamp;

    fn audio(frames: usize, duration: i64) -> EsStream {
        EsStream {
            kind: EsKind::Mp2,
            frame_duration: duration,
            frames: (0..frames)
                .map(|i| Frame {
                    data: vec![0xAB; 576],
                    pts: i as i64 * duration,
                    dts: i as i64 * duration,
                    key: true,
                })
                .collect(),
        }
    }

    #[test]
    fn timestamps_round_trip() {
        for ts in [0, 1, 90_000, TS_WRAP - 1, 0x1_2345_6789] {
            let ts = ts % TS_WRAP;
            assert_eq!(decode_timestamp(&encode_timestamp(0b0010, ts)), ts);
        }
    }

    #[test]
    fn crc_matches_a_known_pat() {
        // CRC-32/MPEG-2 of "123456789" is 0x0376E6E7.
        assert_eq!(crc32_mpeg2(b"123456789"), 0x0376_E6E7);
    }

    #[test]
    fn loop_packets_are_ordered_and_within_the_loop() {
        let stream = audio(200, 2_160);
        let program = Program {
            transport_stream_id: 1,
            program_number: 0x283D,
            pmt_pid: 0x64,
            pcr_pid: 0x66,
            tracks: vec![Track {
                pid: 0x66,
                language: Some("deu"),
                stream: &stream,
            }],
        };
        let ts = mux_loop(&program, 432_000);
        assert_eq!(ts.bytes.len(), ts.packets.len() * PACKET);
        assert!(ts.packets.windows(2).all(|w| w[0].at <= w[1].at));
        assert!(ts.packets.iter().all(|p| p.at < 432_000));
        assert!(ts.bytes.chunks(PACKET).all(|p| p[0] == 0x47));
        // Every frame has its PES start and PCR; PAT and PMT every 100 ms.
        assert_eq!(ts.packets.iter().filter(|p| p.pts_at != 0).count(), 200);
        assert_eq!(ts.packets.iter().filter(|p| p.pcr).count(), 200);
        assert_eq!(ts.packets.iter().filter(|p| p.pid == 0).count(), 48);
        // Each PES header's PTS leads its send time by the mux delay.
        for (i, info) in ts.packets.iter().enumerate() {
            if info.pts_at != 0 {
                let pts = decode_timestamp(&ts.packet(i)[info.pts_at as usize..]) as i64;
                let lead = (pts - info.at as i64).rem_euclid(TS_WRAP as i64);
                assert!((MUX_DELAY..=MUX_DELAY + 2_160).contains(&lead), "lead {lead}");
            }
        }
    }

    #[test]
    fn scrambled_loop_keeps_tables_clear() {
        let stream = audio(200, 2_160);
        let program = Program {
            transport_stream_id: 1,
            program_number: 1,
            pmt_pid: 0x64,
            pcr_pid: 0x66,
            tracks: vec![Track {
                pid: 0x66,
                language: None,
                stream: &stream,
            }],
        };
        let clear = mux_loop(&program, 432_000);
        let scrambled = clear.scrambled(7);
        for (i, info) in scrambled.packets.iter().enumerate() {
            let p = scrambled.packet(i);
            if info.pid == 0x66 {
                assert_eq!(p[3] & 0xC0, 0x80, "ES packets are marked scrambled");
            } else {
                assert_eq!(p, clear.packet(i), "tables stay clear");
            }
        }
    }
}
