//! MPEG transport stream packets and the little of PSI and PES that xg2g reads or rewrites:
//! PIDs, continuity counters, random-access flags, PAT/PMT sections and PES timestamps
//! (ISO/IEC 13818-1). Pure: bytes in, values out.

/// Bytes in a transport stream packet.
pub const PACKET: usize = 188;
/// The sync byte every packet starts with.
pub const SYNC: u8 = 0x47;
/// PTS and DTS are 33-bit counters of a 90 kHz clock.
pub const PTS_MASK: u64 = (1 << 33) - 1;

/// Whole packets from a byte stream whose buffers may cut packets in two (appsink buffers,
/// HTTP chunks). Copies nothing but the few bytes of a cut packet.
#[derive(Debug, Default)]
pub struct Packetizer {
    partial: Vec<u8>,
}

impl Packetizer {
    /// The packet completed by the start of `data` (when the previous call left a cut one), and
    /// the whole packets of `data` after it; a new cut tail is kept for the next call.
    pub fn split<'a>(&mut self, data: &'a [u8]) -> (Option<[u8; PACKET]>, &'a [u8]) {
        let mut data = data;
        let mut head = None;
        if !self.partial.is_empty() {
            let need = PACKET - self.partial.len();
            if data.len() < need {
                self.partial.extend_from_slice(data);
                return (None, &[]);
            }
            self.partial.extend_from_slice(&data[..need]);
            head = <[u8; PACKET]>::try_from(&self.partial[..]).ok();
            self.partial.clear();
            data = &data[need..];
        }
        let whole = data.len() / PACKET * PACKET;
        self.partial.extend_from_slice(&data[whole..]);
        (head, &data[..whole])
    }
}

/// The packet's PID.
pub fn pid(packet: &[u8]) -> u16 {
    (u16::from(packet[1] & 0x1F) << 8) | u16::from(packet[2])
}

/// Whether a PES packet or a PSI section starts in this packet.
pub fn unit_start(packet: &[u8]) -> bool {
    packet[1] & 0x40 != 0
}

/// The continuity counter (4 bits).
pub fn continuity(packet: &[u8]) -> u8 {
    packet[3] & 0x0F
}

/// Rewrites the continuity counter.
pub fn set_continuity(packet: &mut [u8], counter: u8) {
    packet[3] = (packet[3] & 0xF0) | (counter & 0x0F);
}

/// Whether the adaptation field marks a random-access point (a key frame starts here).
pub fn random_access(packet: &[u8]) -> bool {
    packet[3] & 0x20 != 0 && packet[4] > 0 && packet[5] & 0x40 != 0
}

/// The payload after the header and any adaptation field.
pub fn payload(packet: &[u8]) -> Option<&[u8]> {
    if packet[3] & 0x10 == 0 {
        return None;
    }
    let at = if packet[3] & 0x20 != 0 {
        5 + usize::from(packet[4])
    } else {
        4
    };
    packet.get(at..).filter(|p| !p.is_empty())
}

/// The section a PSI packet starts (after the pointer field).
pub fn section(packet: &[u8]) -> Option<&[u8]> {
    if !unit_start(packet) {
        return None;
    }
    let payload = payload(packet)?;
    payload.get(1 + usize::from(*payload.first()?)..)
}

/// The PMT PID a PAT packet names (its first program).
pub fn pat_pmt_pid(packet: &[u8]) -> Option<u16> {
    let section = section(packet)?;
    if section.first() != Some(&0x00) || section.len() < 12 {
        return None;
    }
    Some((u16::from(section[10] & 0x1F) << 8) | u16::from(section[11]))
}

/// One elementary stream as the PMT lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PmtStream {
    pub pid: u16,
    pub stream_type: u8,
    /// ISO 639 code, lower case.
    pub language: Option<String>,
    /// The tags of its ES descriptors, in order (what a private stream, type 0x06, carries is
    /// only told by them).
    pub descriptor_tags: Vec<u8>,
}

/// DVB descriptors (EN 300 468) that make a private PES stream (type 0x06) audio: AC-3, E-AC-3,
/// DTS, AAC.
const DVB_AUDIO_DESCRIPTORS: [u8; 4] = [0x6A, 0x7A, 0x7B, 0x7C];

impl PmtStream {
    /// MPEG-1/2 video, H.264, H.265 (ISO 13818-1 table 2-34).
    pub fn is_video(&self) -> bool {
        matches!(self.stream_type, 0x01 | 0x02 | 0x10 | 0x1B | 0x24)
    }

    /// MPEG audio, AAC (ADTS, LATM), and AC-3/E-AC-3 as broadcast (a private stream, 0x06, with
    /// an AC-3, E-AC-3, DTS or AAC descriptor; teletext and subtitles are 0x06 too) or ATSC
    /// types.
    pub fn is_audio(&self) -> bool {
        match self.stream_type {
            0x03 | 0x04 | 0x0F | 0x11 | 0x81 | 0x87 => true,
            0x06 => self.descriptor_tags.iter().any(|t| DVB_AUDIO_DESCRIPTORS.contains(t)),
            _ => false,
        }
    }
}

/// The streams of a PMT section (table id 2).
pub fn pmt_streams(section: &[u8]) -> Option<Vec<PmtStream>> {
    if section.first() != Some(&0x02) || section.len() < 12 {
        return None;
    }
    let length = ((usize::from(section[1] & 0x0F) << 8) | usize::from(section[2])) + 3;
    let end = length.min(section.len()).saturating_sub(4);
    let info_len = (usize::from(section[10] & 0x0F) << 8) | usize::from(section[11]);
    let mut i = 12 + info_len;
    let mut out = Vec::new();
    while i + 5 <= end {
        let stream_type = section[i];
        let pid = (u16::from(section[i + 1] & 0x1F) << 8) | u16::from(section[i + 2]);
        let es_len = (usize::from(section[i + 3] & 0x0F) << 8) | usize::from(section[i + 4]);
        let mut language = None;
        let mut descriptor_tags = Vec::new();
        let mut d = i + 5;
        while d + 2 <= (i + 5 + es_len).min(end) {
            let (tag, len) = (section[d], usize::from(section[d + 1]));
            if tag == 0x0A && len >= 3 && d + 5 <= end {
                language = Some(String::from_utf8_lossy(&section[d + 2..d + 5]).to_ascii_lowercase());
            }
            descriptor_tags.push(tag);
            d += 2 + len;
        }
        out.push(PmtStream {
            pid,
            stream_type,
            language,
            descriptor_tags,
        });
        i += 5 + es_len;
    }
    Some(out)
}

/// The PTS of the PES packet that starts in this TS packet, in 90 kHz ticks.
pub fn pes_pts(packet: &[u8]) -> Option<u64> {
    let (pts, _) = pes_timestamp_fields(packet);
    pts.map(|at| decode_timestamp(&packet[at..]))
}

/// Whether the PES that starts in this packet carries the codec's parameter sets, which a
/// decoder needs to start there: an H.264 SPS or IDR slice, an HEVC VPS/SPS or IRAP picture, an
/// MPEG-1/2 sequence header. (A broadcast I frame without them is no place to join.)
pub fn starts_decodable(stream_type: u8, packet: &[u8]) -> bool {
    let Some(pes) = payload(packet).filter(|_| unit_start(packet)) else {
        return false;
    };
    if pes.len() < 9 || pes[..3] != [0, 0, 1] {
        return false;
    }
    let Some(es) = pes.get(9 + usize::from(pes[8])..) else {
        return false;
    };
    let mut units = es.windows(4).filter(|w| w[..3] == [0, 0, 1]).map(|w| w[3]);
    match stream_type {
        0x1B => units.any(|b| matches!(b & 0x1F, 5 | 7)),
        0x24 => units.any(|b| matches!((b >> 1) & 0x3F, 16..=21 | 32 | 33)),
        0x01 | 0x02 => units.any(|b| b == 0xB3),
        _ => true,
    }
}

/// Where the PES that starts in this packet keeps its PTS and DTS: offsets into the packet,
/// `None` when it has no such field (no PES start, a stream without the optional header, a
/// header cut by the packet's end).
fn pes_timestamp_fields(packet: &[u8]) -> (Option<usize>, Option<usize>) {
    if !unit_start(packet) || packet[3] & 0x10 == 0 {
        return (None, None);
    }
    let at = if packet[3] & 0x20 != 0 {
        5 + usize::from(packet[4])
    } else {
        4
    };
    let Some(pes) = packet.get(at..) else {
        return (None, None);
    };
    // Streams without the optional PES header: program stream map, padding, private 2, ECM,
    // EMM, directory, DSM-CC, H.222.1 type E.
    if pes.len() < 9 || pes[..3] != [0, 0, 1] || matches!(pes[3], 0xBC | 0xBE | 0xBF | 0xF0 | 0xF1 | 0xF2 | 0xF8 | 0xFF)
    {
        return (None, None);
    }
    let pts = (pes[7] & 0x80 != 0 && pes.len() >= 14).then_some(at + 9);
    let dts = (pes[7] & 0xC0 == 0xC0 && pes.len() >= 19).then_some(at + 14);
    (pts, dts)
}

/// A PTS or DTS field: the 4-bit prefix, the 33-bit value and its marker bits.
pub fn encode_timestamp(prefix: u8, ts: u64) -> [u8; 5] {
    [
        (prefix << 4) | (((ts >> 29) as u8) & 0x0E) | 1,
        (ts >> 22) as u8,
        (((ts >> 14) as u8) & 0xFE) | 1,
        (ts >> 7) as u8,
        (((ts << 1) as u8) & 0xFE) | 1,
    ]
}

/// The 33-bit value of a PTS or DTS field.
pub fn decode_timestamp(b: &[u8]) -> u64 {
    (((b[0] as u64) >> 1) & 0x07) << 30
        | (b[1] as u64) << 22
        | ((b[2] as u64) >> 1) << 15
        | (b[3] as u64) << 7
        | (b[4] as u64) >> 1
}

/// The decoding time of the PES that starts in this packet: its DTS, else its PTS (90 kHz).
pub fn pes_dts(packet: &[u8]) -> Option<u64> {
    let (pts, dts) = pes_timestamp_fields(packet);
    dts.or(pts).map(|at| decode_timestamp(&packet[at..]))
}

/// Moves every clock in the packet by `offset` ticks of 90 kHz, on the 33-bit clock: the PTS
/// and DTS of a PES that starts here, and the base of a PCR. A stream's time line moves as a
/// whole this way (its A/V sync and its PCR lead kept), as when xg2g joins a reconnect's media
/// onto the time line of what it already published.
pub fn shift_clocks(packet: &mut [u8], offset: u64) {
    let (pts, dts) = pes_timestamp_fields(packet);
    for at in [pts, dts].into_iter().flatten() {
        let ts = (decode_timestamp(&packet[at..]) + offset) & PTS_MASK;
        let prefix = packet[at] >> 4;
        packet[at..at + 5].copy_from_slice(&encode_timestamp(prefix, ts));
    }
    if let Some(base) = pcr_base(packet) {
        // The base's 33 bits only: the reserved bits and the 27 MHz extension stay.
        let base = (base + offset) & PTS_MASK;
        let p = &mut packet[6..11];
        p[0] = (base >> 25) as u8;
        p[1] = (base >> 17) as u8;
        p[2] = (base >> 9) as u8;
        p[3] = (base >> 1) as u8;
        p[4] = (p[4] & 0x7F) | (((base & 1) as u8) << 7);
    }
}

/// The PCR base (90 kHz) of the packet's adaptation field, when it carries one.
pub fn pcr_base(packet: &[u8]) -> Option<u64> {
    if !(packet[3] & 0x20 != 0 && packet[4] >= 7 && packet[5] & 0x10 != 0) {
        return None;
    }
    let p = &packet[6..11];
    Some(
        (u64::from(p[0]) << 25)
            | (u64::from(p[1]) << 17)
            | (u64::from(p[2]) << 9)
            | (u64::from(p[3]) << 1)
            | (u64::from(p[4]) >> 7),
    )
}

/// The full program clock reference (27 MHz: base × 300 + extension) of a packet that carries
/// one; needs the first 12 bytes.
pub fn pcr(packet: &[u8]) -> Option<u64> {
    let base = pcr_base(packet)?;
    let extension = (u64::from(packet[10] & 1) << 8) | u64::from(packet[11]);
    Some(base * 300 + extension)
}

/// Whether the demodulator flagged the packet as errored (transport_error_indicator).
pub fn transport_error(packet: &[u8]) -> bool {
    packet[1] & 0x80 != 0
}

/// `later - earlier` on the 33-bit PTS clock, across its wrap.
pub fn pts_diff(later: u64, earlier: u64) -> u64 {
    later.wrapping_sub(earlier) & PTS_MASK
}

/// `ts - reference` on the 33-bit PTS clock, signed: the nearer way round the wrap.
pub fn pts_offset(ts: u64, reference: u64) -> i64 {
    let d = pts_diff(ts, reference);
    if d > PTS_MASK / 2 {
        d as i64 - (PTS_MASK as i64 + 1)
    } else {
        d as i64
    }
}

/// Scans TS packets for the PAT (to learn the PMT PID) and then the PMT's stream list.
pub fn scan_pmt(data: &[u8], pmt_pid: &mut Option<u16>) -> Option<Vec<PmtStream>> {
    let start = data.iter().position(|&b| b == SYNC)?;
    for p in data[start..].chunks_exact(PACKET) {
        if p[0] != SYNC || !unit_start(p) {
            continue;
        }
        let pid = pid(p);
        if pid == 0 {
            *pmt_pid = pat_pmt_pid(p).or(*pmt_pid);
        } else if Some(pid) == *pmt_pid
            && let Some(streams) = section(p).and_then(pmt_streams)
        {
            return Some(streams);
        }
    }
    None
}

#[cfg(test)]
pub(crate) mod tests;
