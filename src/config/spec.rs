//! The key table's types (every configuration key with its environment variable, default, type
//! and doc) and lookups; the table itself, which is data, is `spec/table.rs`.

mod table;

use std::fmt;

use super::value::Value;
pub(crate) use table::SPEC;

/// The type of a key's value; it decides how TOML values and strings are parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A listen address: `":8080"` (all IPv4 interfaces), `"127.0.0.1:8080"` or `"[::1]:8080"`.
    /// IP addresses only, no host names.
    Listen,
    /// A duration in humantime form: `"10s"`, `"500ms"`, `"1m 30s"`.
    Duration,
    /// Free text; where the key is optional, empty means unset.
    Text,
    /// Text that is never printed: rendered and debug-printed as `***`. Empty means unset.
    Secret,
    /// An `http://` or `https://` URL; empty means unset.
    HttpUrl,
    /// The log output format: `json` or `pretty`.
    LogFormat,
    /// A list of strings; from the environment or a flag, comma-separated.
    List,
    /// A list of strings that is never printed (signing keys): rendered as `***` when set.
    SecretList,
    /// A TCP port, 1-65535.
    Port,
    /// A whole number (0 to 2^32-1).
    Count,
    /// `true` or `false`; from the environment or a flag also `1`/`0`/`yes`/`no`.
    Bool,
    /// A fraction from 0.0 to 1.0: a TOML float (or the integers 0 and 1); from the environment
    /// or a flag a decimal like `0.25`.
    Ratio,
}

/// A key's code default, typed; [`fmt::Display`] writes it as a TOML literal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DefaultValue {
    Str(&'static str),
    Int(i64),
    Bool(bool),
    List(&'static [&'static str]),
    Float(f64),
}

impl DefaultValue {
    pub(crate) fn to_toml(self) -> toml::Value {
        match self {
            Self::Str(s) => toml::Value::String(s.to_owned()),
            Self::Int(i) => toml::Value::Integer(i),
            Self::Bool(b) => toml::Value::Boolean(b),
            Self::Float(f) => toml::Value::Float(f),
            Self::List(items) => {
                toml::Value::Array(items.iter().map(|s| toml::Value::String((*s).to_owned())).collect())
            }
        }
    }
}

impl fmt::Display for DefaultValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_toml().fmt(f)
    }
}

/// A check on a key's final value; `Err` holds the problem, e.g. `must be greater than zero`.
pub(crate) type Check = fn(&Value) -> Result<(), String>;

/// One configuration key. The spec table ([`super::keys`]) is the single list of keys: the
/// loader, the example file and `check-config` are all driven by it.
#[derive(Debug, Clone, Copy)]
pub struct KeySpec {
    /// Dotted key: `receiver.base_url` is `base_url` in the file's `[receiver]` table.
    pub key: &'static str,
    /// The environment variable that sets this key, if any.
    pub env: Option<&'static str>,
    pub default: DefaultValue,
    pub kind: Kind,
    /// One line for the example file and `--help`.
    pub doc: &'static str,
    /// A check on the final (layered) value; the error text names the problem.
    pub(crate) check: Option<Check>,
}

impl KeySpec {
    /// Whether the value must never be printed.
    pub fn is_secret(&self) -> bool {
        matches!(self.kind, Kind::Secret | Kind::SecretList)
    }

    /// The table the key lives in (`receiver` for `receiver.base_url`), or `None` at top level.
    pub(crate) fn table(&self) -> Option<&'static str> {
        self.key.rsplit_once('.').map(|(table, _)| table)
    }

    /// The key's name inside its table (`base_url` for `receiver.base_url`).
    pub(crate) fn name(&self) -> &'static str {
        self.key.rsplit_once('.').map_or(self.key, |(_, name)| name)
    }
}

/// The spec of `key`, if it is a key.
pub(crate) fn find(key: &str) -> Option<&'static KeySpec> {
    SPEC.iter().find(|spec| spec.key == key)
}

/// Whether `key` names a table that holds keys (`receiver`).
pub(crate) fn is_table(key: &str) -> bool {
    SPEC.iter().any(|spec| spec.table() == Some(key))
}
