//! Config errors: each [`Problem`] names the key and where its value came from.

use std::fmt;
use std::path::PathBuf;

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The code default in the spec table.
    Default,
    /// The TOML file, by the path it was given as.
    File(PathBuf),
    /// An environment variable, by name.
    Env(&'static str),
    /// An override such as `flag --listen` or `demo receiver`.
    Override(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("default"),
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Env(var) => write!(f, "environment variable {var}"),
            Self::Override(origin) => f.write_str(origin),
        }
    }
}

/// What went wrong; decides how a [`Problem`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// The file is not valid TOML.
    Syntax,
    /// A key that is not in the spec table.
    UnknownKey,
    /// A value of the wrong type or out of range, or one that fails a check.
    Invalid,
    /// A key the caller requires is unset.
    Missing,
}

/// One problem with one key (or with the file as a whole). Never holds a secret value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub kind: ProblemKind,
    pub key: Option<String>,
    pub source: Source,
    pub message: String,
}

impl Problem {
    pub(crate) fn syntax(source: Source, message: String) -> Self {
        Self {
            kind: ProblemKind::Syntax,
            key: None,
            source,
            message,
        }
    }

    pub(crate) fn unknown_key(key: String, source: Source) -> Self {
        Self {
            kind: ProblemKind::UnknownKey,
            key: Some(key),
            source,
            message: "unknown key".to_owned(),
        }
    }

    pub(crate) fn invalid(key: &str, source: Source, message: String) -> Self {
        Self {
            kind: ProblemKind::Invalid,
            key: Some(key.to_owned()),
            source,
            message,
        }
    }

    pub(crate) fn missing(key: &str, source: Source, env: Option<&str>) -> Self {
        let message = match env {
            Some(var) => format!("required: set it in the config file or {var}"),
            None => "required: set it in the config file".to_owned(),
        };
        Self {
            kind: ProblemKind::Missing,
            key: Some(key.to_owned()),
            source,
            message,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(key) = &self.key else {
            return write!(f, "{}: {}", self.source, self.message);
        };
        match self.kind {
            ProblemKind::UnknownKey => write!(f, "{}: unknown key `{key}`", self.source),
            ProblemKind::Missing => write!(f, "{key}: {}", self.message),
            ProblemKind::Syntax | ProblemKind::Invalid => {
                write!(f, "{}: key `{key}`: {}", self.source, self.message)
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read config file: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    /// Every problem from every layer and check, in order: file, environment, overrides,
    /// requirements, checks.
    #[error("{}", lines(problems))]
    Invalid { problems: Vec<Problem> },
}

fn lines(problems: &[Problem]) -> String {
    problems.iter().map(Problem::to_string).collect::<Vec<_>>().join("\n")
}
