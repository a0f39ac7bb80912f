//! Per-device tokens: long-lived credentials for media servers and players whose URL must last
//! (Plex, Jellyfin, Threadfin, a VLC playlist). A token is `xg2g_dev_` and 32 random bytes in
//! base64url; it is shown once, when it is made, and kept only as its SHA-256 hash with a name,
//! when it was made and when it was last used. Pure: random bytes and the time come in as
//! arguments; the file is read and written by [`super::store`].
//!
//! The state file is JSON: `{"version": 1, "tokens": [{"id", "name", "sha256", "created",
//! "last_used"}]}`, times in Unix seconds.

use std::collections::HashMap;
use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

/// What every device token starts with, so that users and secret scanners recognise one.
pub const PREFIX: &str = "xg2g_dev_";
/// Longest device name, in characters.
const MAX_NAME: usize = 64;
const FILE_VERSION: u32 = 1;

/// Why a token cannot be made, or a state file not read. Never holds a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the device name must be 1-{MAX_NAME} characters without control characters")]
    BadName,
    #[error("not a token file: {0}")]
    Corrupt(String),
    #[error("token file version {0} is not supported (this xg2g reads version {FILE_VERSION})")]
    Version(u32),
}

/// One device's token, as stored: never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRecord {
    /// Public, for listing and revoking: 16 hex digits.
    pub id: String,
    pub name: String,
    /// SHA-256 of the whole token, hex.
    pub sha256: String,
    pub created: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used: Option<u64>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: u32,
    tokens: Vec<TokenRecord>,
}

/// Every device token this server accepts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenSet {
    records: Vec<TokenRecord>,
}

impl TokenSet {
    /// Reads a state file's text.
    ///
    /// # Errors
    ///
    /// Not JSON of the expected shape, another version, or two tokens with one id or hash.
    pub fn parse(text: &str) -> Result<Self, TokenError> {
        let file: File = serde_json::from_str(text).map_err(|e| TokenError::Corrupt(e.to_string()))?;
        if file.version != FILE_VERSION {
            return Err(TokenError::Version(file.version));
        }
        let mut ids = std::collections::HashSet::new();
        let mut hashes = std::collections::HashSet::new();
        for record in &file.tokens {
            if !ids.insert(&record.id) || !hashes.insert(&record.sha256) {
                return Err(TokenError::Corrupt(format!("token {} is listed twice", record.id)));
            }
            if record.sha256.len() != 64 || !record.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(TokenError::Corrupt(format!(
                    "token {}: sha256 is not 64 hex digits",
                    record.id
                )));
            }
        }
        Ok(Self { records: file.tokens })
    }

    /// The state file's text.
    pub fn to_json(&self) -> String {
        let file = File {
            version: FILE_VERSION,
            tokens: self.records.clone(),
        };
        serde_json::to_string_pretty(&file).expect("token records serialise") + "\n"
    }

    pub fn records(&self) -> &[TokenRecord] {
        &self.records
    }

    /// Makes a token for `name` from 32 random bytes and an 8-byte random id, adds its record,
    /// and returns the token: the only time it exists outside the device that gets it.
    ///
    /// # Errors
    ///
    /// [`TokenError::BadName`].
    pub fn mint(
        &mut self,
        name: &str,
        random: [u8; 32],
        id: [u8; 8],
        now: u64,
    ) -> Result<(String, TokenRecord), TokenError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
            return Err(TokenError::BadName);
        }
        let token = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(random));
        let record = TokenRecord {
            id: hex(&id),
            name: name.to_owned(),
            sha256: hash(&token),
            created: now,
            last_used: None,
        };
        self.records.push(record.clone());
        Ok((token, record))
    }

    /// Removes the token with `id`; its record, or `None` when there is none.
    pub fn revoke(&mut self, id: &str) -> Option<TokenRecord> {
        let position = self.records.iter().position(|r| r.id == id)?;
        Some(self.records.remove(position))
    }

    /// Notes a use of `id` at `now`; whether the record changed. Uses within a minute of the
    /// last noted one are not noted, so that a player fetching segments does not rewrite it.
    pub fn touch(&mut self, id: &str, now: u64) -> bool {
        let Some(record) = self.records.iter_mut().find(|r| r.id == id) else {
            return false;
        };
        if record.last_used.is_some_and(|at| now < at + 60) {
            return false;
        }
        record.last_used = Some(now);
        true
    }

    /// What the gate needs: which hash belongs to which id.
    pub fn index(&self) -> TokenIndex {
        TokenIndex {
            by_hash: self.records.iter().map(|r| (r.sha256.clone(), r.id.clone())).collect(),
        }
    }
}

/// The accepted tokens' hashes, for checking a request's token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenIndex {
    by_hash: HashMap<String, String>,
}

impl TokenIndex {
    /// The id of the device `token` belongs to, if it is (still) accepted. The lookup is by
    /// hash, so how long it takes says nothing about any stored token.
    pub fn lookup(&self, token: &str) -> Option<&str> {
        if !token.starts_with(PREFIX) {
            return None;
        }
        self.by_hash.get(&hash(token)).map(String::as_str)
    }

    /// Whether the device `id` still has its token.
    pub fn has_id(&self, id: &str) -> bool {
        self.by_hash.values().any(|v| v == id)
    }
}

/// The `token` query parameter of `query`, if any.
pub fn from_query(query: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "token")
        .map(|(_, value)| value.into_owned())
}

/// SHA-256 of `token`, hex.
pub fn hash(token: &str) -> String {
    hex(&sha2::Sha256::digest(token.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn a_minted_token_is_shown_once_and_stored_as_its_hash() {
        let mut set = TokenSet::default();
        let (token, record) = set.mint("  Plex  ", [7; 32], [0xab; 8], NOW).unwrap();
        assert!(token.starts_with("xg2g_dev_"), "{token}");
        assert_eq!(token.len(), PREFIX.len() + 43);
        assert_eq!(record.id, "abababababababab");
        assert_eq!(record.name, "Plex");
        assert_eq!(record.sha256, hash(&token));
        let json = set.to_json();
        assert!(!json.contains(&token[PREFIX.len()..]), "{json}");
        assert_eq!(TokenSet::parse(&json).unwrap(), set, "the file reads back");

        let index = set.index();
        assert_eq!(index.lookup(&token), Some("abababababababab"));
        assert!(index.has_id("abababababababab"));
        assert_eq!(index.lookup(&token.replace("xg2g_dev_", "xg2g_dev_A")), None);
        assert_eq!(index.lookup(&token[PREFIX.len()..]), None, "the prefix belongs to it");
    }

    #[test]
    fn revoked_tokens_leave_the_index() {
        let mut set = TokenSet::default();
        let (plex, plex_record) = set.mint("Plex", [1; 32], [1; 8], NOW).unwrap();
        let (vlc, _) = set.mint("VLC", [2; 32], [2; 8], NOW).unwrap();
        assert_eq!(set.revoke(&plex_record.id), Some(plex_record.clone()));
        assert_eq!(set.revoke(&plex_record.id), None);
        let index = set.index();
        assert_eq!(index.lookup(&plex), None);
        assert!(!index.has_id(&plex_record.id));
        assert!(index.lookup(&vlc).is_some());
    }

    #[test]
    fn uses_are_noted_at_most_once_a_minute() {
        let mut set = TokenSet::default();
        let (_, record) = set.mint("Kodi", [3; 32], [3; 8], NOW).unwrap();
        assert!(set.touch(&record.id, NOW + 5));
        assert!(!set.touch(&record.id, NOW + 30));
        assert!(set.touch(&record.id, NOW + 65));
        assert_eq!(set.records()[0].last_used, Some(NOW + 65));
        assert!(!set.touch("unknown", NOW));
    }

    #[test]
    fn bad_names_and_bad_files_are_refused() {
        let mut set = TokenSet::default();
        for name in ["", "   ", "a\nb", &"x".repeat(65)] {
            assert_eq!(
                set.mint(name, [0; 32], [0; 8], NOW),
                Err(TokenError::BadName),
                "{name:?}"
            );
        }
        assert!(set.records().is_empty());
        assert!(matches!(TokenSet::parse("{"), Err(TokenError::Corrupt(_))));
        assert!(matches!(
            TokenSet::parse(r#"{"version":1,"tokens":[],"extra":1}"#),
            Err(TokenError::Corrupt(_))
        ));
        assert_eq!(
            TokenSet::parse(r#"{"version":2,"tokens":[]}"#),
            Err(TokenError::Version(2))
        );
        let record = format!(r#"{{"id":"a","name":"n","sha256":"{}","created":1}}"#, "0".repeat(64));
        let twice = format!(r#"{{"version":1,"tokens":[{record},{record}]}}"#);
        assert!(matches!(TokenSet::parse(&twice), Err(TokenError::Corrupt(m)) if m.contains("twice")));
        let short = r#"{"version":1,"tokens":[{"id":"a","name":"n","sha256":"abc","created":1}]}"#;
        assert!(matches!(TokenSet::parse(short), Err(TokenError::Corrupt(_))));
        assert_eq!(
            TokenSet::parse(r#"{"version":1,"tokens":[]}"#).unwrap(),
            TokenSet::default()
        );
    }

    #[test]
    fn the_token_comes_from_the_query() {
        assert_eq!(
            from_query("profile=copy&token=xg2g_dev_abc").as_deref(),
            Some("xg2g_dev_abc")
        );
        assert_eq!(from_query("profile=copy"), None);
    }
}
