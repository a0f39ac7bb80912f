//! SiliconDust's HDHomeRun packets (libhdhomerun `hdhomerun_pkt.c`): a big-endian type and
//! payload length, TLV fields with a variable-length length, and a little-endian Ethernet CRC32
//! over everything before it. Pure: bytes in, typed requests out, and replies back to bytes.

pub(crate) const TYPE_DISCOVER_REQ: u16 = 0x0002;
pub(crate) const TYPE_DISCOVER_RPY: u16 = 0x0003;
pub(crate) const TYPE_GETSET_REQ: u16 = 0x0004;
pub(crate) const TYPE_GETSET_RPY: u16 = 0x0005;

const TAG_DEVICE_TYPE: u8 = 0x01;
const TAG_DEVICE_ID: u8 = 0x02;
const TAG_GETSET_NAME: u8 = 0x03;
const TAG_GETSET_VALUE: u8 = 0x04;
const TAG_ERROR_MESSAGE: u8 = 0x05;
const TAG_TUNER_COUNT: u8 = 0x10;
const TAG_LINEUP_URL: u8 = 0x27;
const TAG_BASE_URL: u8 = 0x2A;
const TAG_DEVICE_AUTH_STR: u8 = 0x2B;
/// Newer libhdhomerun asks for several device types at once in one field.
const TAG_MULTI_TYPE: u8 = 0x2D;

pub(crate) const DEVICE_TYPE_TUNER: u32 = 0x0000_0001;
const WILDCARD: u32 = 0xFFFF_FFFF;

/// Header (type, length) plus CRC.
const OVERHEAD: usize = 4 + 4;
/// The largest frame libhdhomerun sends or accepts (`HDHOMERUN_MAX_PACKET_SIZE`).
pub(crate) const MAX_FRAME: usize = 1460;

/// Why bytes are not a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PacketError {
    #[error("{0} bytes is too short for a frame")]
    Short(usize),
    #[error("the header says {declared} payload bytes, {present} are there")]
    Length { declared: usize, present: usize },
    #[error("CRC {found:08x} where {expected:08x} was due")]
    Crc { expected: u32, found: u32 },
    #[error("a field runs past the end of the payload")]
    Field,
}

/// One checked frame: its type and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame<'a> {
    pub kind: u16,
    pub payload: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Reads one frame from the start of `bytes`; returns it and the bytes it took.
    pub(crate) fn parse(bytes: &'a [u8]) -> Result<(Self, usize), PacketError> {
        if bytes.len() < OVERHEAD {
            return Err(PacketError::Short(bytes.len()));
        }
        let kind = u16::from_be_bytes([bytes[0], bytes[1]]);
        let declared = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
        let total = 4 + declared + 4;
        if bytes.len() < total {
            return Err(PacketError::Length {
                declared,
                present: bytes.len() - OVERHEAD,
            });
        }
        let expected = crc32(&bytes[..4 + declared]);
        let found = u32::from_le_bytes(bytes[4 + declared..total].try_into().expect("4 bytes"));
        if expected != found {
            return Err(PacketError::Crc { expected, found });
        }
        let payload = &bytes[4..4 + declared];
        Ok((Self { kind, payload }, total))
    }

    /// The payload's fields in order.
    fn fields(&self) -> Result<Vec<(u8, &'a [u8])>, PacketError> {
        let mut out = Vec::new();
        let mut rest = self.payload;
        while let Some((&tag, after)) = rest.split_first() {
            let (len, after) = read_var_length(after)?;
            if after.len() < len {
                return Err(PacketError::Field);
            }
            out.push((tag, &after[..len]));
            rest = &after[len..];
        }
        Ok(out)
    }
}

/// What a discover request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DiscoverRequest {
    /// Device types asked for; empty = any.
    pub device_types: Vec<u32>,
    /// `None` = any device.
    pub device_id: Option<u32>,
}

impl DiscoverRequest {
    pub(crate) fn parse(frame: &Frame<'_>) -> Result<Self, PacketError> {
        let mut request = Self {
            device_types: Vec::new(),
            device_id: None,
        };
        for (tag, value) in frame.fields()? {
            match (tag, value.len()) {
                (TAG_DEVICE_TYPE, 4) => request.device_types.push(be_u32(value)),
                (TAG_MULTI_TYPE, n) if n % 4 == 0 => request.device_types.extend(value.chunks(4).map(be_u32)),
                (TAG_DEVICE_ID, 4) => request.device_id = Some(be_u32(value)).filter(|&id| id != WILDCARD),
                _ => {}
            }
        }
        Ok(request)
    }

    /// Whether a tuner with `device_id` should answer.
    pub(crate) fn wants(&self, device_id: u32) -> bool {
        let type_matches = self.device_types.is_empty()
            || self
                .device_types
                .iter()
                .any(|&t| t == DEVICE_TYPE_TUNER || t == WILDCARD);
        type_matches && self.device_id.is_none_or(|id| id == device_id)
    }
}

/// A tuner's answer to a discover request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DiscoverReply {
    pub device_id: u32,
    pub tuner_count: u8,
    pub device_auth: String,
    /// This server's URL without a trailing slash.
    pub base_url: String,
}

impl DiscoverReply {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut payload = Vec::new();
        put_field(&mut payload, TAG_DEVICE_TYPE, &DEVICE_TYPE_TUNER.to_be_bytes());
        put_field(&mut payload, TAG_DEVICE_ID, &self.device_id.to_be_bytes());
        put_field(&mut payload, TAG_TUNER_COUNT, &[self.tuner_count]);
        put_field(&mut payload, TAG_DEVICE_AUTH_STR, self.device_auth.as_bytes());
        put_field(&mut payload, TAG_BASE_URL, self.base_url.as_bytes());
        put_field(
            &mut payload,
            TAG_LINEUP_URL,
            format!("{}/lineup.json", self.base_url).as_bytes(),
        );
        seal(TYPE_DISCOVER_RPY, &payload)
    }
}

/// A control-channel request: read a variable, or (with a value) set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GetSetRequest {
    pub name: String,
    pub value: Option<String>,
}

impl GetSetRequest {
    pub(crate) fn parse(frame: &Frame<'_>) -> Result<Self, PacketError> {
        let mut name = None;
        let mut value = None;
        for (tag, bytes) in frame.fields()? {
            match tag {
                TAG_GETSET_NAME => name = Some(c_string(bytes)),
                TAG_GETSET_VALUE => value = Some(c_string(bytes)),
                _ => {}
            }
        }
        Ok(Self {
            name: name.ok_or(PacketError::Field)?,
            value,
        })
    }
}

/// The answer to a get or set: the name with its value, or an error message.
pub(crate) fn getset_reply(name: &str, answer: Result<&str, &str>) -> Vec<u8> {
    let mut payload = Vec::new();
    put_field(&mut payload, TAG_GETSET_NAME, &nul_terminated(name));
    match answer {
        Ok(value) => put_field(&mut payload, TAG_GETSET_VALUE, &nul_terminated(value)),
        Err(message) => put_field(&mut payload, TAG_ERROR_MESSAGE, &nul_terminated(message)),
    }
    seal(TYPE_GETSET_RPY, &payload)
}

/// Header, payload and CRC. Payloads here are far below the 16-bit length limit.
pub(crate) fn seal(kind: u16, payload: &[u8]) -> Vec<u8> {
    let length = u16::try_from(payload.len()).expect("payload fits a frame");
    let mut out = Vec::with_capacity(payload.len() + OVERHEAD);
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(payload);
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// A field whose value is at most 32767 bytes (two length bytes).
fn put_field(out: &mut Vec<u8>, tag: u8, value: &[u8]) {
    out.push(tag);
    let len = value.len();
    if len <= 127 {
        out.push(len as u8);
    } else {
        out.push((len as u8 & 0x7F) | 0x80);
        out.push((len >> 7) as u8);
    }
    out.extend_from_slice(value);
}

fn read_var_length(bytes: &[u8]) -> Result<(usize, &[u8]), PacketError> {
    let (&first, rest) = bytes.split_first().ok_or(PacketError::Field)?;
    if first & 0x80 == 0 {
        return Ok((usize::from(first), rest));
    }
    let (&second, rest) = rest.split_first().ok_or(PacketError::Field)?;
    Ok((usize::from(first & 0x7F) | (usize::from(second) << 7), rest))
}

fn be_u32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes(bytes.try_into().expect("4 bytes"))
}

/// Strings travel NUL-terminated; tolerate a missing terminator.
fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

fn nul_terminated(s: &str) -> Vec<u8> {
    let mut out = s.as_bytes().to_vec();
    out.push(0);
    out
}

/// The Ethernet CRC32 (reflected polynomial 0xEDB88320, initial and final XOR all ones).
pub(crate) fn crc32(bytes: &[u8]) -> u32 {
    !bytes.iter().fold(0xFFFF_FFFF_u32, |crc, &b| {
        (0..8).fold(crc ^ u32::from(b), |c, _| {
            if c & 1 == 1 { (c >> 1) ^ 0xEDB8_8320 } else { c >> 1 }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `hdhomerun_config discover 127.0.0.1` sent, captured from Debian's hdhomerun-config
    /// 20220303: device type and device id both wildcards.
    const CONFIG_DISCOVER: [u8; 20] = [
        0x00, 0x02, 0x00, 0x0C, // discover request, 12 payload bytes
        0x01, 0x04, 0xFF, 0xFF, 0xFF, 0xFF, // device type: any
        0x02, 0x04, 0xFF, 0xFF, 0xFF, 0xFF, // device id: any
        0x73, 0xCC, 0x7D, 0x8F, // CRC32, little-endian
    ];

    #[test]
    fn crc_is_the_ethernet_crc() {
        // The standard check value of CRC-32/ISO-HDLC.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn reads_the_request_hdhomerun_config_sends() {
        let (frame, used) = Frame::parse(&CONFIG_DISCOVER).unwrap();
        assert_eq!(used, CONFIG_DISCOVER.len());
        assert_eq!(frame.kind, TYPE_DISCOVER_REQ);
        let request = DiscoverRequest::parse(&frame).unwrap();
        assert_eq!(
            request,
            DiscoverRequest {
                device_types: vec![WILDCARD],
                device_id: None
            }
        );
        assert!(request.wants(0x1043_9EFD));
        // The same frame sealed by this module's writer.
        assert_eq!(seal(TYPE_DISCOVER_REQ, &CONFIG_DISCOVER[4..16]), CONFIG_DISCOVER);
    }

    #[test]
    fn answers_only_what_was_asked() {
        let ask = |types: Vec<u32>, id: Option<u32>| DiscoverRequest {
            device_types: types,
            device_id: id,
        };
        assert!(ask(vec![], None).wants(0x1043_9EFD));
        assert!(ask(vec![WILDCARD], Some(0x1043_9EFD)).wants(0x1043_9EFD));
        assert!(ask(vec![5, 1], None).wants(0x1043_9EFD), "storage or tuner");
        assert!(!ask(vec![5], None).wants(0x1043_9EFD), "storage only");
        assert!(!ask(vec![1], Some(0x1013_FADA)).wants(0x1043_9EFD), "another device");
    }

    #[test]
    fn reads_multi_type_and_ignores_unknown_fields() {
        let payload = [0x2D, 0x08, 0, 0, 0, 5, 0, 0, 0, 1, 0x77, 0x02, 0xAB, 0xCD];
        let bytes = seal(TYPE_DISCOVER_REQ, &payload);
        let (frame, _) = Frame::parse(&bytes).unwrap();
        let request = DiscoverRequest::parse(&frame).unwrap();
        assert_eq!(request.device_types, [5, 1]);
        assert_eq!(request.device_id, None);
    }

    #[test]
    fn refuses_damaged_frames() {
        let mut bad_crc = CONFIG_DISCOVER;
        bad_crc[19] ^= 1;
        assert!(matches!(Frame::parse(&bad_crc), Err(PacketError::Crc { .. })));
        let mut bad_payload = CONFIG_DISCOVER;
        bad_payload[9] = 2;
        assert!(matches!(Frame::parse(&bad_payload), Err(PacketError::Crc { .. })));
        assert_eq!(Frame::parse(&CONFIG_DISCOVER[..7]), Err(PacketError::Short(7)));
        assert_eq!(
            Frame::parse(&CONFIG_DISCOVER[..18]),
            Err(PacketError::Length {
                declared: 12,
                present: 10
            })
        );
        // A field that claims more bytes than the payload has.
        let bytes = seal(TYPE_DISCOVER_REQ, &[0x01, 0x09, 0, 0, 0, 1]);
        let (frame, _) = Frame::parse(&bytes).unwrap();
        assert_eq!(DiscoverRequest::parse(&frame), Err(PacketError::Field));
    }

    #[test]
    fn reply_carries_every_field_libhdhomerun_reads() {
        let reply = DiscoverReply {
            device_id: 0x1043_9EFD,
            tuner_count: 4,
            device_auth: "xg2g0123456789abcdef".to_owned(),
            base_url: "http://192.168.1.5:8080".to_owned(),
        };
        let bytes = reply.encode();
        let (frame, used) = Frame::parse(&bytes).unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(frame.kind, TYPE_DISCOVER_RPY);
        let fields = frame.fields().unwrap();
        let field = |tag: u8| fields.iter().find(|(t, _)| *t == tag).map(|(_, v)| *v).unwrap();
        assert_eq!(field(TAG_DEVICE_TYPE), [0, 0, 0, 1]);
        assert_eq!(field(TAG_DEVICE_ID), [0x10, 0x43, 0x9E, 0xFD]);
        assert_eq!(field(TAG_TUNER_COUNT), [4]);
        assert_eq!(field(TAG_DEVICE_AUTH_STR), b"xg2g0123456789abcdef");
        assert_eq!(field(TAG_BASE_URL), b"http://192.168.1.5:8080");
        assert_eq!(field(TAG_LINEUP_URL), b"http://192.168.1.5:8080/lineup.json");
        // The header's length and the first bytes as libhdhomerun lays them out.
        assert_eq!(&bytes[..4], [0x00, 0x03, 0x00, (bytes.len() - 8) as u8]);
        assert_eq!(&bytes[4..10], [0x01, 0x04, 0, 0, 0, 1]);
    }

    #[test]
    fn long_values_take_two_length_bytes() {
        let long = "x".repeat(300);
        let mut out = Vec::new();
        put_field(&mut out, TAG_BASE_URL, long.as_bytes());
        // 300 = 0b10_0101100: low seven bits with the high bit set, then the rest.
        assert_eq!(&out[..3], [TAG_BASE_URL, 0x80 | 44, 2]);
        let bytes = seal(TYPE_DISCOVER_RPY, &out);
        let (frame, _) = Frame::parse(&bytes).unwrap();
        assert_eq!(frame.fields().unwrap(), [(TAG_BASE_URL, long.as_bytes())]);
    }

    #[test]
    fn getset_round_trip() {
        let request = seal(
            TYPE_GETSET_REQ,
            &[
                TAG_GETSET_NAME,
                11,
                b'/',
                b's',
                b'y',
                b's',
                b'/',
                b'm',
                b'o',
                b'd',
                b'e',
                b'l',
                0,
            ],
        );
        let (frame, _) = Frame::parse(&request).unwrap();
        assert_eq!(frame.kind, TYPE_GETSET_REQ);
        assert_eq!(
            GetSetRequest::parse(&frame).unwrap(),
            GetSetRequest {
                name: "/sys/model".to_owned(),
                value: None
            }
        );
        let reply = getset_reply("/sys/model", Ok("hdhomeruntc_atsc"));
        let (frame, _) = Frame::parse(&reply).unwrap();
        assert_eq!(frame.kind, TYPE_GETSET_RPY);
        assert_eq!(
            frame.fields().unwrap(),
            [
                (TAG_GETSET_NAME, &b"/sys/model\0"[..]),
                (TAG_GETSET_VALUE, &b"hdhomeruntc_atsc\0"[..])
            ]
        );
        let error = getset_reply("/tuner0/channel", Err("ERROR: unknown getset variable"));
        let (frame, _) = Frame::parse(&error).unwrap();
        assert_eq!(frame.fields().unwrap()[1].0, TAG_ERROR_MESSAGE);
    }
}
