//! Enigma2 service references: parsed against their grammar, never trusted as text.
//!
//! A channel reference is ten colon-separated hexadecimal fields and a trailing colon, for example
//! `1:0:19:283D:3FB:1:C00000:0:0:0:`. Enigma2 writes the first two fields (type and flags) in
//! decimal and the rest in hex. Field 2 holds flags (64 marker, 7 directory), field 3 the service
//! type (`1` SD TV, `19`/`1F`/`16` HD TV, `2` radio).

use std::fmt;
use std::str::FromStr;

const FIELDS: usize = 10;
const FLAG_DIRECTORY: u32 = 0x01;
const FLAG_MARKER: u32 = 0x40;

/// Why a string is not a channel's service reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseServiceRefError {
    #[error("a service reference has 10 hexadecimal fields and a trailing colon")]
    Shape,
    #[error("field {field} of a service reference must be 1 to 8 hexadecimal digits")]
    Field { field: usize },
    #[error("the reference names a marker or a bouquet, not a channel")]
    NotAChannel,
}

/// The broad kind of a service, from its service type field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceKind {
    Tv,
    HdTv,
    Radio,
    Other,
}

/// A reference as listed by `getservices`, before deciding whether it is a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRef<'a>(pub &'a str);

impl RawRef<'_> {
    /// Markers (`1:64:`) are labels between channels.
    pub fn is_marker(&self) -> bool {
        self.flags().is_some_and(|f| f & FLAG_MARKER != 0)
    }

    /// Nested bouquets (`1:7:`) are directories.
    pub fn is_directory(&self) -> bool {
        self.flags().is_some_and(|f| f & FLAG_DIRECTORY != 0)
    }

    fn flags(&self) -> Option<u32> {
        self.0.split(':').nth(1)?.parse().ok()
    }
}

/// A validated channel reference, kept in canonical form (upper-case hex, trailing colon).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceRef {
    fields: [u32; FIELDS],
}

impl ServiceRef {
    pub fn service_type(&self) -> u32 {
        self.fields[2]
    }

    /// The service id (SID), field 4; equals the MPEG-TS program number.
    pub fn service_id(&self) -> u16 {
        // Field 4 is 16 bits on every real receiver; anything wider is truncated on purpose.
        (self.fields[3] & 0xFFFF) as u16
    }

    pub fn kind(&self) -> ServiceKind {
        match self.fields[2] {
            0x01 | 0x11 => ServiceKind::Tv,
            0x16 | 0x19 | 0x1F | 0x20 => ServiceKind::HdTv,
            0x02 | 0x0A => ServiceKind::Radio,
            _ => ServiceKind::Other,
        }
    }

    /// Id used as M3U `tvg-id` and XMLTV channel id: the fields joined by dots, which is the
    /// `name.name` shape XMLTV tools (tv_validate_file) accept.
    pub fn tvg_id(&self) -> String {
        self.to_string().trim_end_matches(':').replace(':', ".")
    }

    /// The file name stem Enigma2 uses for this channel's picon: the fields joined by underscores.
    pub fn picon_name(&self) -> String {
        self.to_string().trim_end_matches(':').replace(':', "_")
    }
}

impl FromStr for ServiceRef {
    type Err = ParseServiceRefError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let body = s.strip_suffix(':').ok_or(ParseServiceRefError::Shape)?;
        let parts: Vec<&str> = body.split(':').collect();
        if parts.len() != FIELDS {
            return Err(ParseServiceRefError::Shape);
        }
        let mut fields = [0u32; FIELDS];
        for (i, part) in parts.iter().enumerate() {
            let radix = if i < 2 { 10 } else { 16 };
            let valid = (1..=8).contains(&part.len()) && part.chars().all(|c| c.is_digit(radix));
            if !valid {
                return Err(ParseServiceRefError::Field { field: i + 1 });
            }
            fields[i] = u32::from_str_radix(part, radix).map_err(|_| ParseServiceRefError::Field { field: i + 1 })?;
        }
        if fields[1] & (FLAG_MARKER | FLAG_DIRECTORY) != 0 {
            return Err(ParseServiceRefError::NotAChannel);
        }
        Ok(Self { fields })
    }
}

impl fmt::Display for ServiceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:", self.fields[0], self.fields[1])?;
        for field in &self.fields[2..] {
            write!(f, "{field:X}:")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ServiceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServiceRef({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_canonical_form() {
        let r: ServiceRef = "1:0:19:283d:3fb:1:c00000:0:0:0:".parse().unwrap();
        assert_eq!(r.to_string(), "1:0:19:283D:3FB:1:C00000:0:0:0:");
        assert_eq!(r.kind(), ServiceKind::HdTv);
        assert_eq!(r.service_id(), 0x283D);
        assert_eq!(r.tvg_id(), "1.0.19.283D.3FB.1.C00000.0.0.0");
        assert_eq!(r.picon_name(), "1_0_19_283D_3FB_1_C00000_0_0_0");
    }

    #[test]
    fn rejects_everything_outside_the_grammar() {
        let cases = [
            ("", ParseServiceRefError::Shape),
            ("1:0:19:283D:3FB:1:C00000:0:0:0", ParseServiceRefError::Shape),
            ("1:0:19:283D:3FB:1:C00000:0:0:", ParseServiceRefError::Shape),
            ("1:0:19:283D:3FB:1:C00000:0:0:0:0:", ParseServiceRefError::Shape),
            (
                "1:0:19:283D:3FB:1:C00000:0:0:0:http%3a//evil/",
                ParseServiceRefError::Shape,
            ),
            (
                "1:0:19:283D:3FB:1:C00000::0:0:",
                ParseServiceRefError::Field { field: 8 },
            ),
            (
                "1:0:19:283G:3FB:1:C00000:0:0:0:",
                ParseServiceRefError::Field { field: 4 },
            ),
            (
                "1:0:19:123456789:3FB:1:C00000:0:0:0:",
                ParseServiceRefError::Field { field: 4 },
            ),
            (
                "1:0:19:../..:3FB:1:C00000:0:0:0:",
                ParseServiceRefError::Field { field: 4 },
            ),
            ("1:64:0:0:0:0:0:0:0:0:", ParseServiceRefError::NotAChannel),
            (
                "1:A:19:283D:3FB:1:C00000:0:0:0:",
                ParseServiceRefError::Field { field: 2 },
            ),
            ("1:7:1:0:0:0:0:0:0:0:", ParseServiceRefError::NotAChannel),
        ];
        for (input, want) in cases {
            assert_eq!(input.parse::<ServiceRef>(), Err(want), "{input:?}");
        }
    }

    #[test]
    fn raw_refs_tell_markers_and_directories() {
        assert!(RawRef("1:64:1:0:0:0:0:0:0:0::Hauptsender").is_marker());
        assert!(RawRef("1:832:D:0:0:0:0:0:0:0::Numbered").is_marker());
        assert!(RawRef("1:7:1:0:0:0:0:0:0:0:FROM BOUQUET \"x.tv\" ORDER BY bouquet").is_directory());
        assert!(!RawRef("1:0:19:283D:3FB:1:C00000:0:0:0:").is_marker());
        assert!(!RawRef("1:0:19:283D:3FB:1:C00000:0:0:0:").is_directory());
    }
}
