//! Packet builders for the tests here and elsewhere (PAT, PMT, PES, H.264 access units), and
//! the parsers' unit tests.

use super::*;

/// A packet with the given header bits, its payload filled with `fill`.
pub(crate) fn packet(pid: u16, unit_start: bool, random_access: bool, counter: u8) -> [u8; PACKET] {
    let mut p = [0xFF; PACKET];
    p[0] = SYNC;
    p[1] = (if unit_start { 0x40 } else { 0 }) | (pid >> 8) as u8;
    p[2] = pid as u8;
    if random_access {
        p[3] = 0x30 | counter;
        p[4] = 1;
        p[5] = 0x40;
    } else {
        p[3] = 0x10 | counter;
    }
    p
}

/// A PES start with a PTS, in a packet.
pub(crate) fn pes(pid: u16, random_access: bool, pts: u64, counter: u8) -> [u8; PACKET] {
    let mut p = packet(pid, true, random_access, counter);
    let at = if random_access { 6 } else { 4 };
    let header = [
        0,
        0,
        1,
        0xE0,
        0,
        0,
        0x80,
        0x80,
        5,
        0x21 | ((pts >> 29) & 0x0E) as u8,
        (pts >> 22) as u8,
        0x01 | ((pts >> 14) & 0xFE) as u8,
        (pts >> 7) as u8,
        0x01 | ((pts << 1) & 0xFE) as u8,
    ];
    p[at..at + header.len()].copy_from_slice(&header);
    p
}

/// A video PES start whose elementary stream begins with these H.264 NAL unit types.
pub(crate) fn h264_pes(pid: u16, random_access: bool, pts: u64, counter: u8, nal_types: &[u8]) -> [u8; PACKET] {
    let mut p = pes(pid, random_access, pts, counter);
    let mut at = if random_access { 6 } else { 4 } + 14;
    for nal in nal_types {
        p[at..at + 5].copy_from_slice(&[0, 0, 0, 1, 0x60 | nal]);
        at += 5 + 3;
    }
    p
}

pub(crate) fn pat(pmt_pid: u16, counter: u8) -> [u8; PACKET] {
    let mut p = packet(0, true, false, counter);
    let section = [
        0x00,
        0x00,
        0xB0,
        0x0D,
        0,
        1,
        0xC1,
        0,
        0,
        0,
        1,
        0xE0 | (pmt_pid >> 8) as u8,
        pmt_pid as u8,
        0,
        0,
        0,
        0,
    ];
    p[4..4 + section.len()].copy_from_slice(&section);
    p
}

/// A PMT listing (stream type, PID) pairs, the first with a German language descriptor.
pub(crate) fn pmt(pmt_pid: u16, streams: &[(u8, u16)], counter: u8) -> [u8; PACKET] {
    let mut body = Vec::new();
    for (i, (stream_type, pid)) in streams.iter().enumerate() {
        let descriptors: &[u8] = if i == 0 { &[0x0A, 4, b'd', b'e', b'u', 0] } else { &[] };
        body.extend_from_slice(&[
            *stream_type,
            0xE0 | (pid >> 8) as u8,
            *pid as u8,
            0xF0,
            descriptors.len() as u8,
        ]);
        body.extend_from_slice(descriptors);
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
    section.extend_from_slice(&[0, 0, 0, 0]);
    let mut p = packet(pmt_pid, true, false, counter);
    p[4] = 0;
    p[5..5 + section.len()].copy_from_slice(&section);
    p
}

/// A video PES start with a PTS and a DTS, in a packet whose adaptation field carries a PCR
/// (base and extension).
pub(crate) fn pcr_pes(pid: u16, pcr: u64, pcr_ext: u16, pts: u64, dts: u64) -> [u8; PACKET] {
    let mut p = packet(pid, true, false, 0);
    p[3] = 0x30;
    p[4] = 7;
    p[5] = 0x50;
    p[6] = (pcr >> 25) as u8;
    p[7] = (pcr >> 17) as u8;
    p[8] = (pcr >> 9) as u8;
    p[9] = (pcr >> 1) as u8;
    p[10] = ((pcr & 1) as u8) << 7 | 0x7E | (pcr_ext >> 8) as u8;
    p[11] = pcr_ext as u8;
    let mut header = vec![0, 0, 1, 0xE0, 0, 0, 0x80, 0xC0, 10];
    header.extend(encode_timestamp(3, pts));
    header.extend(encode_timestamp(1, dts));
    p[12..12 + header.len()].copy_from_slice(&header);
    p
}

#[test]
fn the_full_pcr_is_base_times_300_plus_the_extension() {
    let p = pcr_pes(0x100, PTS_MASK, 299, 0, 0);
    assert_eq!(pcr(&p), Some(PTS_MASK * 300 + 299));
    assert!(!transport_error(&p));
    let mut errored = p;
    errored[1] |= 0x80;
    assert!(transport_error(&errored));
    assert_eq!(pcr(&packet(0x100, true, false, 0)), None, "no adaptation field, no PCR");
}

#[test]
fn clocks_shift_together_across_the_wrap() {
    let pts = PTS_MASK - 1_000;
    let p = pcr_pes(0x100, pts - 9_000, 299, pts, pts - 3_600);
    assert_eq!(pes_pts(&p), Some(pts));
    assert_eq!(pes_dts(&p), Some(pts - 3_600));
    assert_eq!(pcr_base(&p), Some(pts - 9_000));
    let mut q = p;
    shift_clocks(&mut q, 5_000);
    assert_eq!(pes_pts(&q), Some(3_999), "past the 33-bit wrap");
    assert_eq!(pes_dts(&q), Some((pts - 3_600 + 5_000) & PTS_MASK));
    assert_eq!(pcr_base(&q), Some(pts - 9_000 + 5_000));
    assert_eq!(q[11], 299u16 as u8, "the PCR extension is kept");
    assert_eq!(
        q[10] & 0x7F,
        p[10] & 0x7F,
        "reserved bits and the extension's high bit too"
    );
    assert_eq!(q[12 + 9] >> 4, 3, "the PTS field keeps its prefix");
    assert_eq!(q[12 + 14] >> 4, 1, "the DTS field keeps its prefix");
    // Moving back by the same amount restores every byte, markers included.
    shift_clocks(&mut q, (1 << 33) - 5_000);
    assert_eq!(q, p);
    // A PES with a PTS only has it as its decoding time; a packet without a PES start has none.
    let plain = pes(0x101, false, 42, 0);
    assert_eq!(pes_dts(&plain), Some(42));
    let mut rest = packet(0x101, false, false, 1);
    let before = rest;
    shift_clocks(&mut rest, 1_000);
    assert_eq!(rest, before, "nothing to move in a continuation packet");
    assert_eq!(pes_dts(&rest), None);
}

#[test]
fn header_fields() {
    let mut p = packet(0x1FF, true, true, 7);
    assert_eq!(pid(&p), 0x1FF);
    assert!(unit_start(&p) && random_access(&p));
    assert_eq!(continuity(&p), 7);
    set_continuity(&mut p, 0x1A);
    assert_eq!(continuity(&p), 0x0A, "four bits only");
    assert_eq!(pid(&p), 0x1FF, "the rest of the header is kept");
    assert!(random_access(&p));
    let plain = packet(0x44, false, false, 0);
    assert!(!unit_start(&plain) && !random_access(&plain));
    assert_eq!(payload(&plain).map(<[u8]>::len), Some(184));
}

#[test]
fn psi_tables() {
    assert_eq!(pat_pmt_pid(&pat(0x1000, 0)), Some(0x1000));
    assert_eq!(pat_pmt_pid(&packet(0, true, false, 0)), None, "not a PAT section");
    let p = pmt(0x1000, &[(0x1B, 0x100), (0x0F, 0x101)], 0);
    let streams = pmt_streams(section(&p).unwrap()).unwrap();
    assert_eq!(
        streams,
        vec![
            PmtStream {
                pid: 0x100,
                stream_type: 0x1B,
                language: Some("deu".into()),
                descriptor_tags: vec![0x0A],
            },
            PmtStream {
                pid: 0x101,
                stream_type: 0x0F,
                language: None,
                descriptor_tags: vec![],
            },
        ]
    );
    assert!(streams[0].is_video() && !streams[0].is_audio());
    assert!(streams[1].is_audio() && !streams[1].is_video());
    // A private stream is audio by its DVB descriptor: AC-3 is, teletext (0x56) is not.
    let private = |descriptor_tags: Vec<u8>| PmtStream {
        pid: 0x102,
        stream_type: 0x06,
        language: None,
        descriptor_tags,
    };
    assert!(private(vec![0x0A, 0x6A]).is_audio());
    assert!(private(vec![0x7A]).is_audio());
    assert!(!private(vec![0x56]).is_audio() && !private(vec![]).is_audio());
    assert_eq!(pmt_streams(section(&pat(0x1000, 0)).unwrap()), None);
}

#[test]
fn packets_cut_across_buffers_are_joined() {
    let stream: Vec<u8> = (0..4u8)
        .flat_map(|n| packet(0x100 + u16::from(n), false, false, n))
        .collect();
    for cut in [1, 100, 187, 188, 189, 400, 751] {
        let mut packetizer = Packetizer::default();
        let mut seen = Vec::new();
        for piece in [&stream[..cut], &stream[cut..]] {
            let (head, rest) = packetizer.split(piece);
            seen.extend(head.iter().map(|p| pid(p)));
            seen.extend(rest.chunks_exact(PACKET).map(pid));
        }
        assert_eq!(seen, [0x100, 0x101, 0x102, 0x103], "cut at {cut}");
    }
    let mut packetizer = Packetizer::default();
    assert_eq!(packetizer.split(&stream[..50]), (None, &[][..]));
    assert_eq!(
        packetizer.split(&stream[50..100]),
        (None, &[][..]),
        "still not a whole packet"
    );
    assert_eq!(packetizer.split(&stream[100..188]).0.map(|p| pid(&p)), Some(0x100));
}

#[test]
fn decodable_starts() {
    // Access unit delimiter, SPS, PPS, IDR: a place to start; AUD and an I slice alone: not.
    assert!(starts_decodable(0x1B, &h264_pes(0x100, true, 0, 0, &[9, 7, 8, 5])));
    assert!(!starts_decodable(0x1B, &h264_pes(0x100, true, 0, 0, &[9, 1])));
    assert!(
        !starts_decodable(0x1B, &packet(0x100, false, true, 0)),
        "no PES starts here"
    );
    let mut mpeg2 = pes(0x100, true, 0, 0);
    mpeg2[20..24].copy_from_slice(&[0, 0, 1, 0xB3]);
    assert!(starts_decodable(0x02, &mpeg2));
    assert!(!starts_decodable(0x02, &pes(0x100, true, 0, 0)));
    assert!(
        starts_decodable(0x0F, &pes(0x101, false, 0, 0)),
        "audio starts anywhere"
    );
}

#[test]
fn pes_timestamps_and_wrap() {
    for pts in [0, 1, 90_000, 0x1_2345_6789 & PTS_MASK, PTS_MASK] {
        assert_eq!(pes_pts(&pes(0x100, true, pts, 0)), Some(pts), "{pts}");
        assert_eq!(
            pes_pts(&pes(0x100, false, pts, 0)),
            Some(pts),
            "{pts} without adaptation"
        );
    }
    assert_eq!(pes_pts(&packet(0x100, false, false, 0)), None, "no PES starts here");
    assert_eq!(pts_diff(10, PTS_MASK - 9), 20, "across the wrap");
    assert_eq!(pts_offset(10, PTS_MASK - 9), 20, "ahead, across the wrap");
    assert_eq!(pts_offset(PTS_MASK - 9, 10), -20, "behind, across the wrap");
    assert_eq!(pts_offset(1_000, 4_600), -3_600, "audio before its key frame");
    assert_eq!(pts_diff(90_000, 0), 90_000);
}
