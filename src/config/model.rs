//! The validated configuration types the rest of xg2g reads, built from layered values.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use url::Url;

use super::value::Values;

/// The validated configuration. [`Config::default`] is the code defaults from the spec table.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub listen: SocketAddr,
    pub shutdown_timeout: Duration,
    /// Bearer token the API requires; `None` = open.
    pub api_token: Option<Secret>,
    /// Base URL for links in playlists; `None` = derive from the request's Host.
    pub public_url: Option<Url>,
    pub log: LogConfig,
    pub receiver: ReceiverConfig,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// A tracing `EnvFilter` directive.
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

impl LogFormat {
    pub(crate) const ALL: [Self; 2] = [Self::Json, Self::Pretty];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Pretty => "pretty",
        }
    }
}

/// The Enigma2 receiver and how to talk to its OpenWebIF.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceiverConfig {
    /// OpenWebIF base URL, without credentials; `None` = no receiver configured.
    pub base_url: Option<Url>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// Bouquet names to publish; empty = every TV bouquet.
    pub bouquets: Vec<String>,
    pub stream_port: u16,
    pub relay_port: u16,
    /// Per-request timeout; never zero.
    pub timeout: Duration,
    pub retries: u32,
    /// First retry delay; doubles per retry, with jitter.
    pub retry_backoff: Duration,
}

/// A value that must not be printed: `Debug` and `Display` show `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Config {
    /// Builds the typed configuration; every key in `values` already holds its kind's variant.
    pub(crate) fn from_values(v: &Values) -> Self {
        Self {
            listen: v.addr("listen"),
            shutdown_timeout: v.duration("shutdown_timeout"),
            api_token: v.secret("api_token"),
            public_url: v.url("public_url"),
            log: LogConfig {
                level: v.text("log.level"),
                format: v.format("log.format"),
            },
            receiver: ReceiverConfig {
                base_url: v.url("receiver.base_url"),
                username: v.optional_text("receiver.username"),
                password: v.secret("receiver.password"),
                bouquets: v.list("receiver.bouquets"),
                stream_port: v.port("receiver.stream_port"),
                relay_port: v.port("receiver.relay_port"),
                timeout: v.duration("receiver.timeout"),
                retries: v.count("receiver.retries"),
                retry_backoff: v.duration("receiver.retry_backoff"),
            },
        }
    }
}

impl Default for Config {
    /// The code defaults: what [`super::load()`] gives with no file, environment or flags.
    fn default() -> Self {
        super::load::resolve(None, &super::no_env, &[], super::Requirements::None)
            .expect("the spec table's defaults are valid (tested)")
            .config
    }
}
