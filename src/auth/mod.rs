//! Who may watch: signed stream URLs (what a signature covers, [`Scope`]; how it is made,
//! [`sign`], and checked, [`verify`]) and per-device tokens ([`tokens`]). Pure: keys and the
//! time come in as arguments; no HTTP types. The one piece with IO is [`store`], the task that
//! owns the device tokens and their file.
//!
//! A signed URL carries three query parameters, so that every player sends them (Safari and
//! AVPlayer send no custom headers with playlist and segment requests):
//!
//! - `exp`: when the URL stops working, in Unix seconds;
//! - `kid`: the id of the key that signed it;
//! - `sig`: HMAC-SHA256 over `xg2g-url-v1\n{scope}\n{exp}\n{kid}`, base64url without padding.
//!
//! The scope of `/hls/{ref}/{profile}/…` is the session folder `/hls/{ref}/{profile}/`, so one
//! signature covers the master playlist, the media playlist and every segment of that channel
//! and profile; any other path is its own scope. Other query parameters (`profile`,
//! `_HLS_msn`) are not signed: they choose within what the scope allows. Paths are compared
//! after percent-decoding, so `%3A` and `:` in a service reference sign the same.

pub mod keys;
pub mod store;
pub mod tokens;

pub use keys::{Key, KeyError, KeySet};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{KeyInit as _, Mac as _};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// What one signature lets its holder fetch: a path, or the folder of one HLS session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope(String);

impl Scope {
    /// The scope a request for `path` (as sent, percent-encoded or not) falls under.
    pub fn of_path(path: &str) -> Self {
        let canonical = canonical_path(path);
        let segments: Vec<&str> = canonical.split('/').collect();
        if let ["", "hls", reference, profile, _file] = segments.as_slice() {
            return Self(format!("/hls/{reference}/{profile}/"));
        }
        Self(canonical)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `path` with each segment percent-decoded, and only `%` and `/` inside a segment encoded
/// again: `%3A` and `:` read the same, but an encoded slash stays inside its segment, so no
/// spelling of a path can move it into another scope. The gate classifies routes by this form.
pub fn canonical_path(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            percent_encoding::percent_decode_str(segment)
                .decode_utf8_lossy()
                .replace('%', "%25")
                .replace('/', "%2F")
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Why a request's signature is refused. The texts never contain a signature or a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(
        "this URL needs a signature (exp, kid and sig query parameters) or a device token (token); ask the admin for one"
    )]
    Missing,
    #[error("the signature parameters are malformed: {0}")]
    Malformed(&'static str),
    #[error("the signature does not match this URL")]
    Invalid,
    #[error("the signed URL expired")]
    Expired,
    #[error("the URL is signed with a key that is not (or no longer) accepted")]
    UnknownKey,
    #[error("the device token is unknown or was revoked")]
    UnknownToken,
}

impl AuthError {
    /// Stable error codes for the HTTP edge.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing => "signature-required",
            Self::Malformed(_) | Self::Invalid => "signature-invalid",
            Self::Expired => "signature-expired",
            Self::UnknownKey => "signature-unknown-key",
            Self::UnknownToken => "token-invalid",
        }
    }

    /// Whether this is a wrong signature (throttled per client), not a missing one.
    pub fn is_wrong(&self) -> bool {
        !matches!(self, Self::Missing)
    }
}

/// A checked signature: its scope and when it ends. Links the answer carries (playlist entries)
/// are signed for the same `expires`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub scope: Scope,
    pub expires: u64,
}

/// The query (`exp=…&kid=…&sig=…`) that signs `scope` until `expires` with `key`.
pub fn sign(key: &Key, scope: &Scope, expires: u64) -> String {
    let sig = URL_SAFE_NO_PAD.encode(mac(key, scope, expires).finalize().into_bytes());
    format!("exp={expires}&kid={}&sig={sig}", key.id())
}

/// Checks the signature in `query` for a request of `path` at `now` (Unix seconds). The key
/// id is looked up first, then the MAC compared in constant time, and only then the expiry, so
/// that "expired" is said only of a URL this server did sign.
///
/// # Errors
///
/// [`AuthError::Missing`] without any signature parameter; otherwise the first thing wrong.
pub fn verify(keys: &KeySet, path: &str, query: &str, now: u64) -> Result<Grant, AuthError> {
    let (mut exp, mut kid, mut sig) = (None, None, None);
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let slot = match name.as_ref() {
            "exp" => &mut exp,
            "kid" => &mut kid,
            "sig" => &mut sig,
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return Err(AuthError::Malformed("a parameter is given twice"));
        }
    }
    if exp.is_none() && kid.is_none() && sig.is_none() {
        return Err(AuthError::Missing);
    }
    let (Some(exp), Some(kid), Some(sig)) = (exp, kid, sig) else {
        return Err(AuthError::Malformed("exp, kid and sig are needed together"));
    };
    let expires: u64 = exp
        .parse()
        .map_err(|_| AuthError::Malformed("exp is not a Unix time in seconds"))?;
    let sig = URL_SAFE_NO_PAD
        .decode(sig.as_bytes())
        .map_err(|_| AuthError::Malformed("sig is not base64url"))?;
    let key = keys.get(&kid).ok_or(AuthError::UnknownKey)?;
    let scope = Scope::of_path(path);
    mac(key, &scope, expires)
        .verify_slice(&sig)
        .map_err(|_| AuthError::Invalid)?;
    if expires <= now {
        return Err(AuthError::Expired);
    }
    Ok(Grant { scope, expires })
}

/// The value of a web sign-in cookie valid until `expires`: `v1.{exp}.{kid}.{sig}`, the MAC over
/// `xg2g-session-v1\n{exp}\n{kid}` (so no URL signature can pass for one, nor one for a URL).
/// It needs no state on the server: it is good until it expires or its key is retired.
pub fn sign_session(key: &Key, expires: u64) -> String {
    let sig = URL_SAFE_NO_PAD.encode(session_mac(key, expires).finalize().into_bytes());
    format!("v1.{expires}.{}.{sig}", key.id())
}

/// Checks a sign-in cookie's value at `now`; when it ends.
///
/// # Errors
///
/// Malformed, signed by an unknown key, altered, or expired.
pub fn verify_session(keys: &KeySet, value: &str, now: u64) -> Result<u64, AuthError> {
    let mut parts = value.split('.');
    let (Some("v1"), Some(exp), Some(kid), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed("not a sign-in cookie"));
    };
    let expires: u64 = exp.parse().map_err(|_| AuthError::Malformed("not a sign-in cookie"))?;
    let sig = URL_SAFE_NO_PAD
        .decode(sig.as_bytes())
        .map_err(|_| AuthError::Malformed("not a sign-in cookie"))?;
    let key = keys.get(kid).ok_or(AuthError::UnknownKey)?;
    session_mac(key, expires)
        .verify_slice(&sig)
        .map_err(|_| AuthError::Invalid)?;
    if expires <= now {
        return Err(AuthError::Expired);
    }
    Ok(expires)
}

fn session_mac(key: &Key, expires: u64) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key.secret()).expect("HMAC takes keys of any length");
    mac.update(format!("xg2g-session-v1\n{expires}\n{}", key.id()).as_bytes());
    mac
}

fn mac(key: &Key, scope: &Scope, expires: u64) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key.secret()).expect("HMAC takes keys of any length");
    mac.update(format!("xg2g-url-v1\n{}\n{expires}\n{}", scope.as_str(), key.id()).as_bytes());
    mac
}

/// The system clock in Unix seconds: what signatures, sign-ins and device tokens expire by.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;
    const HLS: &str = "/hls/1:0:19:283D:3FB:1:C00000:0:0:0:/aac/";

    fn keys() -> KeySet {
        KeySet::parse([
            "k2:0123456789abcdef0123456789abcdef",
            "k1:fedcba9876543210fedcba9876543210",
        ])
        .unwrap()
    }

    fn signed(path: &str, expires: u64) -> String {
        sign(keys().current(), &Scope::of_path(path), expires)
    }

    #[test]
    fn hls_urls_share_the_session_folder_as_scope() {
        for file in ["index.m3u8", "media.m3u8", "123.ts"] {
            assert_eq!(Scope::of_path(&format!("{HLS}{file}")).as_str(), HLS);
        }
        assert_eq!(
            Scope::of_path("/stream/1:0:1:2:3:4:5:0:0:0:").as_str(),
            "/stream/1:0:1:2:3:4:5:0:0:0:"
        );
        assert_eq!(Scope::of_path("/hls/x").as_str(), "/hls/x");
        assert_eq!(Scope::of_path("/stream/1%3A0%3A1").as_str(), "/stream/1:0:1");
        // An encoded slash stays in its segment: not the `aac` folder.
        assert_eq!(
            Scope::of_path("/hls/r/aac%2F..%2Fcopy/index.m3u8").as_str(),
            "/hls/r/aac%2F..%2Fcopy/"
        );
        assert_eq!(canonical_path("/%73tream/a%253A"), "/stream/a%253A");
    }

    #[test]
    fn a_signature_covers_its_scope_until_it_expires() {
        let query = signed(&format!("{HLS}index.m3u8"), NOW + 60);
        for file in ["index.m3u8", "media.m3u8", "7.ts"] {
            let grant = verify(&keys(), &format!("{HLS}{file}"), &query, NOW).unwrap();
            assert_eq!(grant.expires, NOW + 60);
        }
        // Other parameters may come before, between and after.
        let mixed = format!("_HLS_msn=9&{query}&profile=copy");
        assert!(verify(&keys(), &format!("{HLS}media.m3u8"), &mixed, NOW).is_ok());
        // The same URL with `%3A` for `:`.
        let encoded = "/hls/1%3A0%3A19%3A283D%3A3FB%3A1%3AC00000%3A0%3A0%3A0%3A/aac/1.ts";
        assert!(verify(&keys(), encoded, &query, NOW).is_ok());
    }

    #[test]
    fn tampering_expiry_unknown_keys_and_missing_parts_are_refused() {
        let path = "/stream/1:0:19:283D:3FB:1:C00000:0:0:0:";
        let query = signed(path, NOW + 60);
        let v = |path: &str, query: &str| verify(&keys(), path, query, NOW);
        // Another channel, another profile.
        assert_eq!(
            v("/stream/1:0:19:283D:3FB:1:C00000:0:0:1:", &query),
            Err(AuthError::Invalid)
        );
        let hls = signed(&format!("{HLS}index.m3u8"), NOW + 60);
        assert_eq!(
            v("/hls/1:0:19:283D:3FB:1:C00000:0:0:0:/copy/index.m3u8", &hls),
            Err(AuthError::Invalid)
        );
        // A later expiry.
        let later = query.replace(&format!("exp={}", NOW + 60), &format!("exp={}", NOW + 6000));
        assert_eq!(v(path, &later), Err(AuthError::Invalid));
        // Expired, and expiring right now.
        assert_eq!(v(path, &signed(path, NOW - 1)), Err(AuthError::Expired));
        assert_eq!(v(path, &signed(path, NOW)), Err(AuthError::Expired));
        // A key id this server does not know, and a known id with another key's signature.
        assert_eq!(v(path, &query.replace("kid=k2", "kid=k9")), Err(AuthError::UnknownKey));
        assert_eq!(v(path, &query.replace("kid=k2", "kid=k1")), Err(AuthError::Invalid));
        // The old key still verifies what it signed.
        let old = sign(keys().get("k1").unwrap(), &Scope::of_path(path), NOW + 5);
        assert!(v(path, &old).is_ok());
        assert_eq!(v(path, ""), Err(AuthError::Missing));
        assert_eq!(v(path, "profile=copy"), Err(AuthError::Missing));
        assert!(matches!(v(path, "exp=1&kid=k2"), Err(AuthError::Malformed(_))));
        assert!(matches!(
            v(path, &format!("{query}&sig=AAAA")),
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(
            v(path, &query.replace("exp=", "exp=x")),
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(v(path, &format!("{query}!")), Err(AuthError::Malformed(_))));
    }

    #[test]
    fn sign_in_cookies_verify_until_they_expire_and_are_no_url_signatures() {
        let cookie = sign_session(keys().current(), NOW + 60);
        assert!(cookie.starts_with("v1.1800000060.k2."), "{cookie}");
        assert_eq!(verify_session(&keys(), &cookie, NOW), Ok(NOW + 60));
        assert_eq!(verify_session(&keys(), &cookie, NOW + 60), Err(AuthError::Expired));
        let later = cookie.replace("1800000060", "1800009999");
        assert_eq!(verify_session(&keys(), &later, NOW), Err(AuthError::Invalid));
        assert_eq!(
            verify_session(&keys(), &cookie.replace(".k2.", ".k9."), NOW),
            Err(AuthError::UnknownKey)
        );
        for bad in ["", "v1", "v2.1.k2.x", &format!("{cookie}.x"), "v1.x.k2.AAAA"] {
            assert!(
                matches!(verify_session(&keys(), bad, NOW), Err(AuthError::Malformed(_))),
                "{bad}"
            );
        }
        // A URL signature's MAC for the same expiry is not a cookie's.
        let url_sig = signed("/watch/x", NOW + 60);
        let sig = url_sig.rsplit("sig=").next().unwrap();
        let forged = format!("v1.{}.k2.{sig}", NOW + 60);
        assert_eq!(verify_session(&keys(), &forged, NOW), Err(AuthError::Invalid));
    }

    #[test]
    fn codes_are_stable_and_messages_hold_no_signature() {
        assert_eq!(AuthError::Missing.code(), "signature-required");
        assert_eq!(AuthError::Invalid.code(), "signature-invalid");
        assert_eq!(AuthError::Malformed("x").code(), "signature-invalid");
        assert_eq!(AuthError::Expired.code(), "signature-expired");
        assert_eq!(AuthError::UnknownKey.code(), "signature-unknown-key");
        assert_eq!(AuthError::UnknownToken.code(), "token-invalid");
        assert!(!AuthError::Missing.is_wrong() && AuthError::Invalid.is_wrong());
    }
}
