//! Configuration: defaults, TOML file, `XG2G_*` environment, flags; validated into [`Config`].
//!
//! The layering is fixed: code defaults < TOML file < environment variables < overrides
//! (command-line flags). Every key is one row of the spec table ([`keys`]); the loader, the
//! shipped `config.example.toml` ([`render_example`]) and `xg2g check-config`
//! ([`Loaded::render_effective`]) are all driven by it, so they cannot disagree.
//!
//! Loading converts each layer's value for each key on its own and reports every problem from
//! every layer at once, each naming the key and where the value came from.

mod checks;
mod error;
mod load;
mod model;
mod render;
mod spec;
mod value;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::Path;

pub use error::{ConfigError, Problem, ProblemKind, Source};
pub(crate) use load::resolve;
pub use model::{
    AuthConfig, BreakerConfig, CatalogConfig, Config, EpgConfig, HdhrConfig, HlsConfig, LogConfig, LogFormat,
    PiconConfig, PortOverride, RateLimitConfig, ReceiverConfig, Secret, StreamAuth, StreamingConfig, TelemetryConfig,
};
pub use spec::{DefaultValue, KeySpec, Kind};

/// Where to load from. Environment lookups go through `env` so tests need no real environment;
/// production passes [`process_env`].
pub struct Sources<'a> {
    pub file: Option<&'a Path>,
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// Applied last, in order; a later override of the same key wins.
    pub overrides: Vec<Override>,
}

/// One value from the command line (or another in-process source), parsed like an
/// environment value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    /// Dotted key from the spec table, e.g. `listen` or `receiver.base_url`.
    pub key: String,
    pub value: String,
    /// Where it came from, as errors and `check-config` show it: `flag --listen`.
    pub origin: String,
}

impl Override {
    pub fn new(key: impl Into<String>, value: impl Into<String>, origin: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            value: value.into(),
            origin: origin.into(),
        }
    }

    /// An override from a command-line flag; `flag` is written as typed, e.g. `--listen`.
    pub fn flag(key: impl Into<String>, value: impl Into<String>, flag: &str) -> Self {
        Self::new(key, value, format!("flag {flag}"))
    }
}

/// Keys the caller cannot run without.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Requirements {
    #[default]
    None,
    /// `receiver.base_url` must be set.
    Receiver,
}

impl Requirements {
    fn keys(self) -> &'static [&'static str] {
        match self {
            Self::None => &[],
            Self::Receiver => &["receiver.base_url"],
        }
    }
}

/// A loaded configuration and where each key's value came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// Key → `default`, the file path, `environment variable XG2G_…`, or an override's origin.
    pub origins: BTreeMap<String, String>,
    /// Each key's value as TOML text, secrets already masked, in spec order.
    effective: Vec<(&'static KeySpec, String)>,
}

impl Loaded {
    /// The configuration as TOML, each key with a `# from <origin>` comment; secrets that are
    /// set show as `"***"`. For `xg2g check-config`.
    pub fn render_effective(&self) -> String {
        render::effective(&self.effective, &self.origins)
    }
}

/// Loads and validates the configuration.
///
/// # Errors
///
/// [`ConfigError::Read`] when the file cannot be read; otherwise [`ConfigError::Invalid`] with
/// every problem from every layer and check together.
pub fn load(sources: &Sources<'_>, req: Requirements) -> Result<Loaded, ConfigError> {
    let text = match sources.file {
        Some(path) => Some(std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?),
        None => None,
    };
    let file = sources.file.zip(text.as_deref());
    load::resolve(file, sources.env, &sources.overrides, req)
}

/// Every key, in the order the example file lists them.
pub fn keys() -> impl Iterator<Item = &'static KeySpec> {
    spec::SPEC.iter()
}

/// The documented example file: every key at its default, with its doc, variable and default.
/// `config.example.toml` is this text (a test keeps it so).
pub fn render_example() -> String {
    render::example()
}

/// Reads the process environment; the `env` to pass in [`Sources`] outside tests.
pub fn process_env(var: &str) -> Option<String> {
    std::env::var(var).ok()
}

/// An empty environment.
pub(crate) fn no_env(_: &str) -> Option<String> {
    None
}
