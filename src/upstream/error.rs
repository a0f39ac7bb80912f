//! The one error type of the receiver client, with a stable code per kind of failure.

/// Why a call to the receiver failed. Never carries credentials: the base URL has none (config
/// forbids them) and the `Authorization` header is not part of any error.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("no receiver is configured: set receiver.base_url (XG2G_OWI_BASE)")]
    NotConfigured,
    /// The HTTP client could not be set up (for example the TLS backend failed to load).
    #[error("cannot set up the receiver's HTTP client")]
    Client {
        #[source]
        source: reqwest::Error,
    },
    /// No answer: connect failure, timeout or a connection that broke off, after every retry.
    #[error("receiver unreachable: {endpoint} {} after {attempts} attempt(s)", network_reason(.source))]
    Unreachable {
        endpoint: &'static str,
        attempts: u32,
        #[source]
        source: reqwest::Error,
    },
    /// The receiver answered with a non-success status (after every retry, where retried).
    #[error("receiver answered {endpoint} with HTTP {status}{}", status_hint(*.status))]
    Status { endpoint: &'static str, status: u16 },
    /// The receiver answered, but not in the shape the call expects.
    #[error("receiver sent an invalid answer to {endpoint}: {detail}")]
    InvalidResponse { endpoint: &'static str, detail: String },
    /// A configured bouquet name matches none of the receiver's bouquets.
    #[error(
        "bouquet \"{name}\" not found on the receiver; available: {}",
        quoted_list(available)
    )]
    UnknownBouquet { name: String, available: Vec<String> },
}

impl UpstreamError {
    /// A stable kebab-case code for API answers and metrics; clients match this, not the text.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotConfigured => "upstream-not-configured",
            Self::Client { .. } => "internal-error",
            Self::Unreachable { .. } => "upstream-unavailable",
            Self::Status { status, .. } => match status {
                429 | 500..=599 => "upstream-unavailable",
                401 | 403 => "upstream-auth-failed",
                _ => "upstream-rejected",
            },
            Self::InvalidResponse { .. } => "upstream-invalid-response",
            Self::UnknownBouquet { .. } => "bouquet-not-found",
        }
    }
}

/// A short phrase for what went wrong on the wire; the full chain stays in `source()`.
fn network_reason(error: &reqwest::Error) -> &'static str {
    if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else if error.is_body() || error.is_decode() {
        "broke off while answering"
    } else if error.is_redirect() {
        "redirected too often"
    } else {
        "failed"
    }
}

fn status_hint(status: u16) -> &'static str {
    match status {
        401 | 403 => " (check receiver.username and receiver.password)",
        _ => "",
    }
}

fn quoted_list(names: &[String]) -> String {
    if names.is_empty() {
        return "none".to_owned();
    }
    let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    quoted.join(", ")
}

/// The error and its sources joined by `: `, for log fields.
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        next = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_well() {
        let e = UpstreamError::UnknownBouquet {
            name: "Foo".to_owned(),
            available: vec!["Favourites (TV)".to_owned(), "Regional & Radio".to_owned()],
        };
        assert_eq!(
            e.to_string(),
            "bouquet \"Foo\" not found on the receiver; available: \"Favourites (TV)\", \"Regional & Radio\""
        );
        assert_eq!(e.code(), "bouquet-not-found");

        let e = UpstreamError::InvalidResponse {
            endpoint: "/api/getservices",
            detail: "EOF while parsing a list at line 1 column 40".to_owned(),
        };
        assert_eq!(
            e.to_string(),
            "receiver sent an invalid answer to /api/getservices: EOF while parsing a list at line 1 column 40"
        );
        assert_eq!(e.code(), "upstream-invalid-response");

        let e = UpstreamError::Status {
            endpoint: "/api/bouquets",
            status: 401,
        };
        assert_eq!(
            e.to_string(),
            "receiver answered /api/bouquets with HTTP 401 (check receiver.username and receiver.password)"
        );
        assert_eq!(e.code(), "upstream-auth-failed");
    }

    #[test]
    fn codes_are_stable() {
        let status = |status| UpstreamError::Status {
            endpoint: "/api/bouquets",
            status,
        };
        assert_eq!(status(500).code(), "upstream-unavailable");
        assert_eq!(status(503).code(), "upstream-unavailable");
        assert_eq!(status(429).code(), "upstream-unavailable");
        assert_eq!(status(403).code(), "upstream-auth-failed");
        assert_eq!(status(404).code(), "upstream-rejected");
        assert_eq!(UpstreamError::NotConfigured.code(), "upstream-not-configured");
        let empty = UpstreamError::UnknownBouquet {
            name: "X".to_owned(),
            available: vec![],
        };
        assert_eq!(
            empty.to_string(),
            "bouquet \"X\" not found on the receiver; available: none"
        );
    }
}
