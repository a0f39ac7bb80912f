//! What a request may ask for: a loopback source, a client id, a segment name.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::error::PeerError;

/// `src` as ffmpeg gets it: an absolute http URL on loopback (127.0.0.1, ::1 or localhost).
fn loopback_source(src: &str) -> Result<String, PeerError> {
    let invalid = |detail: String| PeerError::InvalidSource { detail };
    let url = url::Url::parse(src).map_err(|e| invalid(format!("not an absolute URL: {e}")))?;
    if url.scheme() != "http" {
        return Err(invalid(format!("scheme `{}`: only http is proxied", url.scheme())));
    }
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip == Ipv4Addr::LOCALHOST,
        Some(url::Host::Ipv6(ip)) => ip == Ipv6Addr::LOCALHOST,
        Some(url::Host::Domain(name)) => name == "localhost",
        None => false,
    };
    if !loopback {
        return Err(invalid("the host must be 127.0.0.1, ::1 or localhost".to_owned()));
    }
    Ok(url.into())
}

pub(super) fn valid_client(client: &str) -> Result<&str, PeerError> {
    let ok = (1..=32).contains(&client.len())
        && client
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    ok.then_some(client).ok_or(PeerError::InvalidClient)
}

pub(super) fn valid_segment(name: &str) -> Result<&str, PeerError> {
    let stem = name.strip_suffix(".ts").ok_or(PeerError::InvalidSegment)?;
    let ok = !stem.is_empty() && stem.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    ok.then_some(name).ok_or(PeerError::InvalidSegment)
}

#[derive(serde::Deserialize)]
pub(super) struct SrcQuery {
    src: Option<String>,
}

impl SrcQuery {
    pub(super) fn source(&self) -> Result<String, PeerError> {
        let src = self.src.as_deref().ok_or_else(|| PeerError::InvalidSource {
            detail: "missing: add ?src=<percent-encoded stream URL>".to_owned(),
        })?;
        loopback_source(src)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::ResponseError;
    use actix_web::http::StatusCode;

    const SRC: &str = "http://127.0.0.1:40001/1:0:19:283D:3FB:1:C00000:0:0:0:";

    #[test]
    fn sources_must_be_loopback_http() {
        for ok in [
            SRC,
            "http://localhost:8001/1:0:1:6F0B:44D:1:C00000:0:0:0:",
            "http://[::1]:8001/x",
            "http://127.0.0.1/x",
        ] {
            assert!(loopback_source(ok).is_ok(), "{ok}");
        }
        assert_eq!(loopback_source(SRC).unwrap(), SRC);
        for bad in [
            "http://192.168.1.10:8001/x",
            "http://127.0.0.2:8001/x",
            "http://localhost.example.com/x",
            "http://0.0.0.0/x",
            "https://127.0.0.1/x",
            "file:///etc/passwd",
            "/1:0:19:283D:3FB:1:C00000:0:0:0:",
            "-i",
            "",
        ] {
            let error = loopback_source(bad).unwrap_err();
            assert_eq!(error.code(), "invalid-source", "{bad}");
            assert_eq!(error.status_code(), StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn client_ids_and_segment_names_are_checked() {
        for ok in ["c1", "A-b_9", &"x".repeat(32)] {
            assert!(valid_client(ok).is_ok(), "{ok}");
        }
        for bad in ["", &"x".repeat(33), "..", "a/b", "a.b", "c 1", "ü"] {
            assert!(valid_client(bad).is_err(), "{bad}");
        }
        for ok in ["0.ts", "12.ts", "seg_A1.ts"] {
            assert!(valid_segment(ok).is_ok(), "{ok}");
        }
        for bad in [
            ".ts",
            "0.ts.tmp",
            "media.m3u8",
            "../0.ts",
            "a-1.ts",
            "0.TS",
            "0ts",
            "a/0.ts",
            "",
        ] {
            assert!(valid_segment(bad).is_err(), "{bad}");
        }
    }
}
