//! HDHomeRun device ids: 8 hex digits whose last digit is a check digit (libhdhomerun's
//! `hdhomerun_discover_validate_device_id`); Plex ignores a tuner whose id fails the check.

use std::fmt;
use std::str::FromStr;

/// libhdhomerun's nibble permutation for the check digit.
const LOOKUP: [u32; 16] = [
    0xA, 0x5, 0xF, 0x6, 0x7, 0xC, 0x1, 0xB, 0x9, 0x2, 0x8, 0xD, 0x4, 0x3, 0xE, 0x0,
];

/// Why a configured device id is not a valid HDHomeRun id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceIdError {
    #[error("must be 8 hexadecimal digits, e.g. \"10439EFD\"")]
    Shape,
    #[error("fails the HDHomeRun check digit (Plex ignores such a tuner); {suggestion} would pass")]
    CheckDigit { suggestion: DeviceId },
}

/// A device id that passes the HDHomeRun check. Displays as 8 upper-case hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeviceId(u32);

impl DeviceId {
    /// The id, if `raw` passes the check.
    pub fn new(raw: u32) -> Option<Self> {
        (checksum(raw) == 0).then_some(Self(raw))
    }

    /// `raw` with its last digit replaced by the check digit, so that it passes.
    pub fn fix_up(raw: u32) -> Self {
        let without = raw & !0xF;
        Self(without | checksum(without))
    }

    /// A stable id from any bytes (a machine id, a host name): FNV-1a, a leading `1` like real
    /// devices, then the check digit.
    pub fn derive(seed: &[u8]) -> Self {
        Self::fix_up(0x1000_0000 | (fnv1a32(seed) & 0x0FFF_FFF0))
    }

    pub fn value(self) -> u32 {
        self.0
    }

    /// A UPnP UDN (`uuid:…`) that belongs to this id and no other.
    pub fn udn(self) -> String {
        let tail = fnv1a64(format!("xg2g-hdhr-{self}").as_bytes());
        format!(
            "uuid:{:08x}-{:04x}-5{:03x}-8{:03x}-{:012x}",
            self.0,
            (tail >> 48) & 0xFFFF,
            (tail >> 36) & 0xFFF,
            (tail >> 24) & 0xFFF,
            tail & 0xFFFF_FFFF_FFFF,
        )
    }

    /// The `DeviceAuth` token of `discover.json`: opaque to clients, stable per id.
    pub fn auth(self) -> String {
        format!("xg2g{:016x}", fnv1a64(format!("xg2g-auth-{self}").as_bytes()))
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08X}", self.0)
    }
}

impl FromStr for DeviceId {
    type Err = DeviceIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.len() != 8 || !s.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(DeviceIdError::Shape);
        }
        let raw = u32::from_str_radix(s, 16).map_err(|_| DeviceIdError::Shape)?;
        Self::new(raw).ok_or(DeviceIdError::CheckDigit {
            suggestion: Self::fix_up(raw),
        })
    }
}

/// libhdhomerun's checksum: 0 for a valid id.
fn checksum(id: u32) -> u32 {
    let nibble = |shift: u32| (id >> shift) & 0xF;
    LOOKUP[nibble(28) as usize]
        ^ nibble(24)
        ^ LOOKUP[nibble(20) as usize]
        ^ nibble(16)
        ^ LOOKUP[nibble(12) as usize]
        ^ nibble(8)
        ^ LOOKUP[nibble(4) as usize]
        ^ nibble(0)
}

fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes
        .iter()
        .fold(0x811C_9DC5, |h: u32, b| (h ^ u32::from(*b)).wrapping_mul(0x0100_0193))
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xCBF2_9CE4_8422_2325, |h: u64, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ids of real devices from public sources: Silicondust's HTTP API guide (an HDHR4-2US),
    /// `hdhomerun_config` examples, and an HDHomeRun EXTEND's discover.json.
    const REAL_IDS: [&str; 3] = ["10439EFD", "1013FADA", "105404BE"];

    #[test]
    fn real_device_ids_pass() {
        for id in REAL_IDS {
            let parsed: DeviceId = id.parse().unwrap_or_else(|e| panic!("{id}: {e}"));
            assert_eq!(parsed.to_string(), id);
        }
        assert_eq!("10439efd".parse::<DeviceId>().unwrap().to_string(), "10439EFD");
    }

    #[test]
    fn every_changed_check_digit_fails() {
        for id in REAL_IDS {
            let raw = u32::from_str_radix(id, 16).unwrap();
            for digit in 0..16 {
                let changed = (raw & !0xF) | digit;
                assert_eq!(DeviceId::new(changed).is_some(), changed == raw, "{changed:08X}");
            }
        }
    }

    #[test]
    fn a_single_wrong_digit_or_a_swap_fails() {
        let raw = 0x10439EFD_u32;
        for shift in (0..32).step_by(4) {
            for delta in 1..16 {
                let changed = raw ^ (delta << shift);
                assert!(DeviceId::new(changed).is_none(), "{changed:08X}");
            }
        }
        // Every swap of two different neighbouring digits, as libhdhomerun promises.
        for id in REAL_IDS {
            for i in 0..7 {
                let mut digits: Vec<char> = id.chars().collect();
                if digits[i] == digits[i + 1] {
                    continue;
                }
                digits.swap(i, i + 1);
                let swapped: String = digits.into_iter().collect();
                assert!(swapped.parse::<DeviceId>().is_err(), "{id} → {swapped}");
            }
        }
    }

    #[test]
    fn fix_up_replaces_only_the_check_digit() {
        assert_eq!(DeviceId::fix_up(0x10439EF0).to_string(), "10439EFD");
        assert_eq!(DeviceId::fix_up(0x12345678).value() & !0xF, 0x12345670);
        for raw in [0, 0xFFFF_FFFF, 0x1234_5678, 0xDEAD_BEEF, 0x0000_0001] {
            let fixed = DeviceId::fix_up(raw);
            assert!(DeviceId::new(fixed.value()).is_some(), "{fixed}");
            assert_eq!(fixed.value() >> 4, raw >> 4);
        }
    }

    #[test]
    fn derived_ids_are_stable_valid_and_differ_by_seed() {
        let a = DeviceId::derive(b"4c4c4544-0042-3510-8052-b4c04f384d32");
        assert_eq!(a, DeviceId::derive(b"4c4c4544-0042-3510-8052-b4c04f384d32"));
        assert!(DeviceId::new(a.value()).is_some());
        assert_eq!(a.value() >> 28, 1);
        let ids: std::collections::HashSet<_> = (0..200)
            .map(|i| DeviceId::derive(format!("host-{i}").as_bytes()))
            .collect();
        assert!(ids.iter().all(|id| DeviceId::new(id.value()).is_some()));
        assert!(ids.len() > 190, "{} distinct of 200", ids.len());
    }

    #[test]
    fn bad_text_is_explained() {
        assert_eq!("1043".parse::<DeviceId>(), Err(DeviceIdError::Shape));
        assert_eq!("1043ZEFD".parse::<DeviceId>(), Err(DeviceIdError::Shape));
        assert_eq!("+0439EFD".parse::<DeviceId>(), Err(DeviceIdError::Shape));
        let err = "10439EFE".parse::<DeviceId>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "fails the HDHomeRun check digit (Plex ignores such a tuner); 10439EFD would pass"
        );
    }

    #[test]
    fn udn_and_auth_are_stable_and_well_formed() {
        let id: DeviceId = "10439EFD".parse().unwrap();
        let udn = id.udn();
        assert_eq!(udn, id.udn());
        let uuid = udn.strip_prefix("uuid:").unwrap();
        let groups: Vec<&str> = uuid.split('-').collect();
        assert_eq!(groups.iter().map(|g| g.len()).collect::<Vec<_>>(), [8, 4, 4, 4, 12]);
        assert!(uuid.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
        assert_eq!(groups[0], "10439efd");
        assert_ne!(udn, "1013FADA".parse::<DeviceId>().unwrap().udn());
        assert_eq!(id.auth().len(), 20);
    }
}
