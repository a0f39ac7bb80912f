//! Converts one raw value, a TOML value or a string from the environment or a flag, to its
//! key's type; error texts name what was expected and what was given.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use url::Url;

use super::model::{LogFormat, Secret};
use super::spec::Kind;

/// A converted value. Deliberately not `Debug`: a `Text` may hold a secret.
#[derive(Clone, PartialEq)]
pub(crate) enum Value {
    Addr(SocketAddr),
    Duration(Duration),
    Text(String),
    Url(Option<Url>),
    Format(LogFormat),
    List(Vec<String>),
    Port(u16),
    Count(u32),
    Bool(bool),
    Ratio(f64),
}

impl Value {
    /// Whether the value means "not configured" (empty text, no URL, empty list).
    pub(crate) fn is_unset(&self) -> bool {
        match self {
            Self::Text(s) => s.is_empty(),
            Self::Url(url) => url.is_none(),
            Self::List(items) => items.is_empty(),
            _ => false,
        }
    }

    /// The value in canonical TOML form; it parses back to the same value.
    pub(crate) fn to_toml(&self) -> toml::Value {
        match self {
            Self::Addr(addr) => toml::Value::String(addr.to_string()),
            Self::Duration(d) => toml::Value::String(humantime::format_duration(*d).to_string()),
            Self::Text(s) => toml::Value::String(s.clone()),
            Self::Url(url) => toml::Value::String(url.as_ref().map_or("", Url::as_str).to_owned()),
            Self::Format(format) => toml::Value::String(format.as_str().to_owned()),
            Self::List(items) => toml::Value::Array(items.iter().cloned().map(toml::Value::String).collect()),
            Self::Port(port) => toml::Value::Integer(i64::from(*port)),
            Self::Count(n) => toml::Value::Integer(i64::from(*n)),
            Self::Bool(b) => toml::Value::Boolean(*b),
            Self::Ratio(r) => toml::Value::Float(*r),
        }
    }
}

/// Converts a value from the TOML file (or a typed default).
pub(crate) fn from_toml(kind: Kind, value: &toml::Value) -> Result<Value, String> {
    match (kind, value) {
        (Kind::Port, toml::Value::Integer(n)) => u16::try_from(*n)
            .ok()
            .filter(|port| *port != 0)
            .map(Value::Port)
            .ok_or_else(|| format!("{PORT_EXPECTED}, got {n}")),
        (Kind::Count, toml::Value::Integer(n)) => u32::try_from(*n)
            .map(Value::Count)
            .map_err(|_| format!("{COUNT_EXPECTED}, got {n}")),
        (Kind::Bool, toml::Value::Boolean(b)) => Ok(Value::Bool(*b)),
        (Kind::Ratio, toml::Value::Float(f)) => ratio(*f).ok_or_else(|| format!("{RATIO_EXPECTED}, got {f}")),
        (Kind::Ratio, toml::Value::Integer(n)) => ratio(*n as f64).ok_or_else(|| format!("{RATIO_EXPECTED}, got {n}")),
        (Kind::List | Kind::SecretList, toml::Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                toml::Value::String(s) => Ok(s.trim().to_owned()),
                other => Err(format!(
                    "expected a list of strings, got a list holding {}",
                    article(other.type_str())
                )),
            })
            .filter(|item| !matches!(item, Ok(s) if s.is_empty()))
            .collect::<Result<_, _>>()
            .map(Value::List),
        (_, toml::Value::String(s)) if toml_type(kind) == "string" => from_str(kind, s),
        (_, other) => Err(format!(
            "expected {}, got {}",
            article(toml_type(kind)),
            other.type_str()
        )),
    }
}

/// Converts a string from the environment or a command-line flag.
pub(crate) fn from_str(kind: Kind, raw: &str) -> Result<Value, String> {
    let trimmed = raw.trim();
    match kind {
        Kind::Listen => parse_listen(trimmed)
            .map(Value::Addr)
            .ok_or_else(|| format!("expected a listen address like \":8080\" or \"127.0.0.1:8080\", got {raw:?}")),
        Kind::Duration => humantime::parse_duration(trimmed)
            .map(Value::Duration)
            .map_err(|_| format!("expected a duration like \"5s\" or \"500ms\", got {raw:?}")),
        Kind::Text | Kind::Secret => Ok(Value::Text(raw.to_owned())),
        Kind::HttpUrl if trimmed.is_empty() => Ok(Value::Url(None)),
        Kind::HttpUrl => parse_http_url(trimmed)
            .map(|url| Value::Url(Some(url)))
            .ok_or_else(|| format!("expected an http:// or https:// URL, got {:?}", redact_userinfo(raw))),
        Kind::LogFormat => LogFormat::ALL
            .into_iter()
            .find(|format| format.as_str().eq_ignore_ascii_case(trimmed))
            .map(Value::Format)
            .ok_or_else(|| format!("expected one of json, pretty, got {raw:?}")),
        Kind::List | Kind::SecretList => Ok(Value::List(
            raw.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(str::to_owned)
                .collect(),
        )),
        Kind::Port => trimmed
            .parse::<u16>()
            .ok()
            .filter(|port| *port != 0)
            .map(Value::Port)
            .ok_or_else(|| format!("{PORT_EXPECTED}, got {raw:?}")),
        Kind::Count => trimmed
            .parse::<u32>()
            .map(Value::Count)
            .map_err(|_| format!("{COUNT_EXPECTED}, got {raw:?}")),
        Kind::Bool => match trimmed.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(Value::Bool(true)),
            "false" | "0" | "no" => Ok(Value::Bool(false)),
            _ => Err(format!("expected true or false, got {raw:?}")),
        },
        Kind::Ratio => trimmed
            .parse::<f64>()
            .ok()
            .and_then(ratio)
            .ok_or_else(|| format!("{RATIO_EXPECTED}, got {raw:?}")),
    }
}

/// A fraction in 0.0..=1.0 (NaN is not one).
fn ratio(value: f64) -> Option<Value> {
    (0.0..=1.0).contains(&value).then_some(Value::Ratio(value))
}

const PORT_EXPECTED: &str = "expected a port number 1-65535";
const COUNT_EXPECTED: &str = "expected a whole number";
const RATIO_EXPECTED: &str = "expected a ratio from 0.0 to 1.0";

/// The TOML type a key of `kind` takes in the file.
fn toml_type(kind: Kind) -> &'static str {
    match kind {
        Kind::Port | Kind::Count => "integer",
        Kind::Bool => "boolean",
        Kind::Ratio => "float",
        Kind::List | Kind::SecretList => "array",
        Kind::Listen | Kind::Duration | Kind::Text | Kind::Secret | Kind::HttpUrl | Kind::LogFormat => "string",
    }
}

fn article(type_name: &str) -> String {
    match type_name {
        "integer" | "array" => format!("an {type_name}"),
        _ => format!("a {type_name}"),
    }
}

/// `":8080"` (every IPv4 interface), `"127.0.0.1:8080"` or `"[::1]:8080"`; no host names, so
/// the address never depends on name resolution.
pub(crate) fn parse_listen(text: &str) -> Option<SocketAddr> {
    match text.strip_prefix(':') {
        Some(port) if port.bytes().all(|b| b.is_ascii_digit()) => port
            .parse::<u16>()
            .ok()
            .map(|port| SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))),
        Some(_) => None,
        None => text.parse().ok(),
    }
}

/// An http(s) URL with a host.
fn parse_http_url(text: &str) -> Option<Url> {
    let url = Url::parse(text).ok()?;
    let http = matches!(url.scheme(), "http" | "https") && url.host().is_some();
    http.then_some(url)
}

/// Hides a URL's user info (`http://user:pass@host` → `http://***@host`) before the text goes
/// into an error message.
fn redact_userinfo(raw: &str) -> String {
    let Some(start) = raw.find("://").map(|i| i + 3) else {
        return raw.to_owned();
    };
    let rest = &raw[start..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    match authority.rfind('@') {
        Some(at) => format!("{}***{}", &raw[..start], &rest[at..]),
        None => raw.to_owned(),
    }
}

/// The final value of every key, after layering and checks. Built only when every key
/// converted, so each accessor finds its key holding the variant its [`Kind`] gives.
pub(crate) struct Values(pub(crate) BTreeMap<&'static str, Value>);

impl Values {
    fn get(&self, key: &str) -> &Value {
        self.0
            .get(key)
            .unwrap_or_else(|| panic!("config key `{key}` missing from the spec table"))
    }

    fn wrong_kind(key: &str, wanted: &str) -> ! {
        panic!("config key `{key}` does not hold {wanted}; its spec kind disagrees with Config")
    }

    pub(crate) fn addr(&self, key: &str) -> SocketAddr {
        match self.get(key) {
            Value::Addr(addr) => *addr,
            _ => Self::wrong_kind(key, "an address"),
        }
    }

    pub(crate) fn duration(&self, key: &str) -> Duration {
        match self.get(key) {
            Value::Duration(d) => *d,
            _ => Self::wrong_kind(key, "a duration"),
        }
    }

    pub(crate) fn text(&self, key: &str) -> String {
        match self.get(key) {
            Value::Text(s) => s.clone(),
            _ => Self::wrong_kind(key, "text"),
        }
    }

    /// Text where empty means unset.
    pub(crate) fn optional_text(&self, key: &str) -> Option<String> {
        Some(self.text(key)).filter(|s| !s.is_empty())
    }

    pub(crate) fn secret(&self, key: &str) -> Option<Secret> {
        self.optional_text(key).map(Secret::new)
    }

    pub(crate) fn url(&self, key: &str) -> Option<Url> {
        match self.get(key) {
            Value::Url(url) => url.clone(),
            _ => Self::wrong_kind(key, "a URL"),
        }
    }

    pub(crate) fn format(&self, key: &str) -> LogFormat {
        match self.get(key) {
            Value::Format(format) => *format,
            _ => Self::wrong_kind(key, "a log format"),
        }
    }

    pub(crate) fn list(&self, key: &str) -> Vec<String> {
        match self.get(key) {
            Value::List(items) => items.clone(),
            _ => Self::wrong_kind(key, "a list"),
        }
    }

    pub(crate) fn port(&self, key: &str) -> u16 {
        match self.get(key) {
            Value::Port(port) => *port,
            _ => Self::wrong_kind(key, "a port"),
        }
    }

    pub(crate) fn boolean(&self, key: &str) -> bool {
        match self.get(key) {
            Value::Bool(b) => *b,
            _ => Self::wrong_kind(key, "a boolean"),
        }
    }

    pub(crate) fn ratio(&self, key: &str) -> f64 {
        match self.get(key) {
            Value::Ratio(r) => *r,
            _ => Self::wrong_kind(key, "a ratio"),
        }
    }

    pub(crate) fn count(&self, key: &str) -> u32 {
        match self.get(key) {
            Value::Count(n) => *n,
            _ => Self::wrong_kind(key, "a whole number"),
        }
    }
}
