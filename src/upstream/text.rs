//! Receiver text: bodies that may be UTF-8 or Latin-1, service names, the relay whitelist.

use std::borrow::Cow;
use std::collections::HashSet;

use crate::model::{ParseServiceRefError, ServiceRef};

/// Decodes a body: valid UTF-8 as is (without a byte-order mark), anything else as Latin-1,
/// where every byte is the code point of the same value. Some images send names in Latin-1.
pub(crate) fn decode(body: &[u8]) -> Cow<'_, str> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    match std::str::from_utf8(body) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => Cow::Owned(body.iter().map(|&b| char::from(b)).collect()),
    }
}

/// A display name without control characters (DVB names carry U+0086/U+0087 emphasis marks,
/// which OpenWebIF does not always strip) and without surrounding whitespace.
pub(crate) fn clean_name(name: &str) -> String {
    let cleaned: String = name.chars().filter(|c| !c.is_control()).collect();
    cleaned.trim().to_owned()
}

/// The OSCam stream relay whitelist: one service reference per line; `#` starts a comment; blank
/// lines and lines that are not a channel's reference are skipped (logged at debug). References
/// without the trailing colon are accepted; duplicates are dropped, first one kept.
pub(crate) fn parse_whitelist(text: &str) -> Vec<ServiceRef> {
    let mut seen = HashSet::new();
    let mut refs = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let entry = line.split('#').next().unwrap_or_default().trim();
        if entry.is_empty() {
            continue;
        }
        match parse_lenient(entry) {
            Ok(service_ref) => {
                if seen.insert(service_ref.clone()) {
                    refs.push(service_ref);
                }
            }
            Err(error) => {
                tracing::debug!(line = index + 1, entry, %error, "Skipping a whitelist line that is not a service reference.");
            }
        }
    }
    refs
}

fn parse_lenient(entry: &str) -> Result<ServiceRef, ParseServiceRefError> {
    match entry.parse() {
        Err(ParseServiceRefError::Shape) if !entry.ends_with(':') => format!("{entry}:").parse(),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_passes_through() {
        let text = "Bayerisches Fernsehen Süd";
        assert!(matches!(decode(text.as_bytes()), Cow::Borrowed(t) if t == text));
        assert_eq!(decode("\u{FEFF}{}".as_bytes()), "{}");
    }

    #[test]
    fn latin1_is_converted() {
        // "Münchner", "Ö1", "Süd" as an image sends them: one byte per character.
        let body = b"{\"servicename\": \"M\xFCnchner Lokalfernsehen\", \"n\": \"\xD61\", \"s\": \"S\xFCd\"}";
        assert_eq!(
            decode(body),
            "{\"servicename\": \"Münchner Lokalfernsehen\", \"n\": \"Ö1\", \"s\": \"Süd\"}"
        );
        // Every byte maps to the code point of the same value.
        let all: Vec<u8> = (0..=255).collect();
        let decoded: Vec<u32> = decode(&all).chars().map(u32::from).collect();
        assert_eq!(decoded, (0..=255).collect::<Vec<u32>>());
    }

    #[test]
    fn names_lose_control_characters() {
        assert_eq!(clean_name("\u{86}Das Erste\u{87} HD "), "Das Erste HD");
        assert_eq!(clean_name("ORF1\tHD"), "ORF1HD");
        assert_eq!(clean_name("Ö1"), "Ö1");
    }

    #[test]
    fn whitelist_keeps_references_only() {
        let text = "# OSCam stream relay: services descrambled on port 17999\n\
                    \n\
                    1:0:19:132F:3EF:1:C00000:0:0:0:\n\
                    1:0:19:132f:3ef:1:c00000:0:0:0:   # the same, lower case\n\
                    1:0:19:1330:3EF:1:C00000:0:0:0\r\n\
                    not a reference\n\
                    1:64:1:0:0:0:0:0:0:0:\n";
        let refs: Vec<String> = parse_whitelist(text).iter().map(ToString::to_string).collect();
        assert_eq!(
            refs,
            ["1:0:19:132F:3EF:1:C00000:0:0:0:", "1:0:19:1330:3EF:1:C00000:0:0:0:"]
        );
        assert!(parse_whitelist("").is_empty());
    }
}
