//! The signing keys: parsed from `KID:SECRET` entries (config `auth.keys`, or lines of
//! `auth.keys_file`), validated into a [`KeySet`] whose first key signs and whose every key
//! verifies. Secrets never appear in `Debug` output or error messages.

use std::fmt;

/// Shortest secret accepted, in bytes: the HMAC-SHA256 output size.
pub const MIN_SECRET_BYTES: usize = 32;
/// Longest key id; ids travel in every signed URL.
const MAX_KID_LEN: usize = 32;

/// What is wrong with one key entry. Holds the key id (public) or the entry's position, never
/// the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("entry {position}: expected \"KID:SECRET\" (a key id, a colon, then the secret)")]
    Shape { position: usize },
    /// The id is not shown: a mistyped entry may have a piece of its secret there.
    #[error("entry {position}: the key id must be 1-32 characters of A-Z, a-z, 0-9, '-' or '_'")]
    BadId { position: usize },
    #[error("key {kid:?}: the secret has {len} bytes, at least {MIN_SECRET_BYTES} are needed")]
    ShortSecret { kid: String, len: usize },
    #[error("key id {kid:?} is listed twice")]
    Duplicate { kid: String },
    #[error("no keys: `signed` needs at least one key in auth.keys or auth.keys_file")]
    Empty,
}

/// One key: a public id and its secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    id: String,
    secret: Vec<u8>,
}

impl Key {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub(super) fn secret(&self) -> &[u8] {
        &self.secret
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.id)
            .field("secret", &"***")
            .finish()
    }
}

/// The keys that verify signatures, at least one; the first ("current") signs new URLs. Listing
/// a new key first and keeping the old one after it rotates keys without breaking URLs already
/// handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySet {
    keys: Vec<Key>,
}

impl KeySet {
    /// Validates entries in order of preference (`auth.keys` first, then the file's lines);
    /// every problem is reported.
    ///
    /// # Errors
    ///
    /// Every [`KeyError`] found, or [`KeyError::Empty`] when there are no entries.
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Self, Vec<KeyError>> {
        let mut keys: Vec<Key> = Vec::new();
        let mut errors = Vec::new();
        for (index, entry) in entries.into_iter().enumerate() {
            match parse_entry(index + 1, entry) {
                Ok(key) if keys.iter().any(|k| k.id == key.id) => errors.push(KeyError::Duplicate { kid: key.id }),
                Ok(key) => keys.push(key),
                Err(e) => errors.push(e),
            }
        }
        if keys.is_empty() && errors.is_empty() {
            errors.push(KeyError::Empty);
        }
        if errors.is_empty() {
            Ok(Self { keys })
        } else {
            Err(errors)
        }
    }

    /// The key that signs new URLs.
    pub fn current(&self) -> &Key {
        &self.keys[0]
    }

    /// The key with this id, if it is (still) accepted.
    pub fn get(&self, kid: &str) -> Option<&Key> {
        self.keys.iter().find(|k| k.id == kid)
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(Key::id)
    }
}

/// The entries of a key file: one `KID:SECRET` per line; blank lines and `#` comments skipped.
pub fn file_entries(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

/// Whether `entry` has the `KID:SECRET` shape with a valid id and a long enough secret; for the
/// config check of `auth.keys`, which must not print the entry.
pub fn check_entry(position: usize, entry: &str) -> Result<(), KeyError> {
    parse_entry(position, entry).map(|_| ())
}

fn parse_entry(position: usize, entry: &str) -> Result<Key, KeyError> {
    let (kid, secret) = entry.trim().split_once(':').ok_or(KeyError::Shape { position })?;
    let valid_id = !kid.is_empty()
        && kid.len() <= MAX_KID_LEN
        && kid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid_id {
        return Err(KeyError::BadId { position });
    }
    if secret.len() < MIN_SECRET_BYTES {
        return Err(KeyError::ShortSecret {
            kid: kid.to_owned(),
            len: secret.len(),
        });
    }
    Ok(Key {
        id: kid.to_owned(),
        secret: secret.as_bytes().to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const S1: &str = "0123456789abcdef0123456789abcdef";
    const S2: &str = "fedcba9876543210fedcba9876543210";

    #[test]
    fn first_key_signs_and_every_key_verifies() {
        let k1 = format!("new:{S1}");
        let k2 = format!("old:{S2}");
        let set = KeySet::parse([k1.as_str(), k2.as_str()]).unwrap();
        assert_eq!(set.current().id(), "new");
        assert_eq!(set.get("old").unwrap().secret(), S2.as_bytes());
        assert!(set.get("gone").is_none());
        assert_eq!(set.ids().collect::<Vec<_>>(), ["new", "old"]);
    }

    #[test]
    fn every_bad_entry_is_reported_without_its_secret() {
        let short = "k1:tooshort-secret";
        let dup = format!("k2:{S1}");
        let entries = ["no-colon-here", short, "bad id:x", dup.as_str(), dup.as_str()];
        let errors = KeySet::parse(entries).unwrap_err();
        assert_eq!(
            errors,
            [
                KeyError::Shape { position: 1 },
                KeyError::ShortSecret {
                    kid: "k1".into(),
                    len: 15
                },
                KeyError::BadId { position: 3 },
                KeyError::Duplicate { kid: "k2".into() },
            ]
        );
        let text: String = errors.iter().map(ToString::to_string).collect();
        assert!(!text.contains("tooshort") && !text.contains(S1), "{text}");
        assert_eq!(KeySet::parse([]).unwrap_err(), [KeyError::Empty]);
    }

    #[test]
    fn debug_hides_secrets_and_files_skip_comments() {
        let entry = format!("k1:{S1}");
        let set = KeySet::parse([entry.as_str()]).unwrap();
        let debug = format!("{set:?}");
        assert!(debug.contains("k1") && !debug.contains(S1), "{debug}");
        let file = format!("# rotated 2026-12\n\nk2:{S2}\n  k1:{S1}  \n");
        assert_eq!(file_entries(&file).count(), 2);
        assert_eq!(KeySet::parse(file_entries(&file)).unwrap().current().id(), "k2");
    }
}
