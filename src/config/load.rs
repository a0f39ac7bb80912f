//! Layers code defaults, the TOML file, the environment and overrides, in that order, and
//! collects every problem from every layer and check before giving up.

use std::collections::BTreeMap;
use std::path::Path;

use super::error::{ConfigError, Problem, Source};
use super::model::Config;
use super::spec::{self, KeySpec, SPEC};
use super::value::{self, Value, Values};
use super::{Loaded, Override, Requirements};

/// Loads from text already read; [`super::load()`] does the reading.
pub(crate) fn resolve(
    file: Option<(&Path, &str)>,
    env: &dyn Fn(&str) -> Option<String>,
    overrides: &[Override],
    req: Requirements,
) -> Result<Loaded, ConfigError> {
    let mut layers = Layers::default();
    for spec in SPEC {
        let value = value::from_toml(spec.kind, &spec.default.to_toml());
        layers.set(spec, Source::Default, value);
    }
    if let Some((path, text)) = file {
        layers.file(path, text);
    }
    for spec in SPEC {
        if let Some(var) = spec.env
            && let Some(raw) = env(var)
        {
            layers.set(spec, Source::Env(var), value::from_str(spec.kind, &raw));
        }
    }
    for o in overrides {
        let source = Source::Override(o.origin.clone());
        match spec::find(&o.key) {
            Some(spec) => layers.set(spec, source, value::from_str(spec.kind, &o.value)),
            None => layers.problems.push(Problem::unknown_key(o.key.clone(), source)),
        }
    }
    layers.finish(req)
}

/// The latest layer's value for one key; `None` when that layer's value did not convert (the
/// problem is already recorded).
struct Slot {
    value: Option<Value>,
    source: Source,
}

#[derive(Default)]
struct Layers {
    slots: BTreeMap<&'static str, Slot>,
    problems: Vec<Problem>,
}

impl Layers {
    fn set(&mut self, spec: &'static KeySpec, source: Source, value: Result<Value, String>) {
        let value = match value {
            Ok(value) => Some(value),
            Err(message) => {
                let problem = Problem::invalid(spec.key, source.clone(), message);
                self.problems.push(problem);
                None
            }
        };
        self.slots.insert(spec.key, Slot { value, source });
    }

    fn file(&mut self, path: &Path, text: &str) {
        let source = Source::File(path.to_owned());
        let table = match text.parse::<toml::Table>() {
            Ok(table) => table,
            Err(err) => {
                let problem = Problem::syntax(source, syntax_message(text, &err));
                self.problems.push(problem);
                return;
            }
        };
        for entry in walk(&table) {
            match entry {
                Entry::Key(spec, value) => {
                    self.set(spec, source.clone(), value::from_toml(spec.kind, value));
                }
                Entry::Unknown(key) => self.problems.push(Problem::unknown_key(key, source.clone())),
                Entry::NotATable(key, found) => {
                    let message = format!("expected a table, got {found}");
                    self.problems.push(Problem::invalid(&key, source.clone(), message));
                }
            }
        }
    }

    fn finish(mut self, req: Requirements) -> Result<Loaded, ConfigError> {
        for key in req.keys() {
            let spec = spec::find(key).expect("required keys are in the spec table");
            if let Some(Slot {
                value: Some(value),
                source,
            }) = self.slots.get(key)
                && value.is_unset()
            {
                let problem = Problem::missing(key, source.clone(), spec.env);
                self.problems.push(problem);
            }
        }
        for spec in SPEC {
            if let Some(check) = spec.check
                && let Some(Slot {
                    value: Some(value),
                    source,
                }) = self.slots.get(spec.key)
                && let Err(message) = check(value)
            {
                let problem = Problem::invalid(spec.key, source.clone(), message);
                self.problems.push(problem);
            }
        }
        self.check_signed();
        if !self.problems.is_empty() {
            return Err(ConfigError::Invalid {
                problems: self.problems,
            });
        }

        let origins = self
            .slots
            .iter()
            .map(|(key, slot)| ((*key).to_owned(), slot.source.to_string()))
            .collect();
        let values = Values(
            self.slots
                .into_iter()
                .filter_map(|(key, slot)| slot.value.map(|value| (key, value)))
                .collect(),
        );
        let effective = SPEC.iter().map(|spec| (spec, effective_text(spec, &values))).collect();
        Ok(Loaded {
            config: Config::from_values(&values),
            origins,
            effective,
        })
    }
}

impl Layers {
    /// `auth.streams = "signed"` needs a key to sign with, and a trusted base for links: the
    /// `Host` header is not trusted then (anyone could make a playlist point elsewhere).
    fn check_signed(&mut self) {
        let value = |key: &str| self.slots.get(key).and_then(|slot| slot.value.as_ref());
        let Some(slot) = self.slots.get("auth.streams") else {
            return;
        };
        if !matches!(&slot.value, Some(Value::Text(mode)) if mode == "signed") {
            return;
        }
        let source = slot.source.clone();
        let unset = |key: &str| value(key).is_none_or(Value::is_unset);
        let mut problems = Vec::new();
        if unset("auth.keys") && unset("auth.keys_file") {
            problems.push(
                "\"signed\" needs a signing key: set auth.keys (XG2G_STREAM_KEYS) or auth.keys_file (XG2G_STREAM_KEYS_FILE)",
            );
        }
        if unset("public_url") && unset("auth.allowed_hosts") {
            problems.push(
                "\"signed\" does not trust the Host header for links: set public_url (XG2G_PUBLIC_URL) or auth.allowed_hosts (XG2G_ALLOWED_HOSTS)",
            );
        }
        for message in problems {
            self.problems
                .push(Problem::invalid("auth.streams", source.clone(), message.to_owned()));
        }
    }
}

/// The value as TOML text for `check-config`; a set secret shows as `"***"`.
fn effective_text(spec: &KeySpec, values: &Values) -> String {
    match values.0.get(spec.key) {
        Some(value) if spec.is_secret() && !value.is_unset() => "\"***\"".to_owned(),
        Some(value) => value.to_toml().to_string(),
        None => String::new(),
    }
}

/// One line, so that a log line or a terminal shows it whole: toml's message (never the file's
/// text, which could hold a secret) after the position.
fn syntax_message(text: &str, err: &toml::de::Error) -> String {
    let message = err
        .message()
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    let before = err.span().and_then(|span| text.get(..span.start));
    match before {
        Some(before) => {
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
            format!("invalid TOML: line {line}, column {column}: {message}")
        }
        None => format!("invalid TOML: {message}"),
    }
}

/// What the file holds at one dotted key.
pub(crate) enum Entry<'t> {
    Key(&'static KeySpec, &'t toml::Value),
    Unknown(String),
    /// A table's name (`receiver`) holding a value that is not a table, with its TOML type.
    NotATable(String, &'static str),
}

/// Flattens nested tables to dotted keys (`[receiver]` + `base_url` = `receiver.base_url`).
pub(crate) fn walk(table: &toml::Table) -> Vec<Entry<'_>> {
    let mut entries = Vec::new();
    walk_into(table, "", &mut entries);
    entries
}

fn walk_into<'t>(table: &'t toml::Table, prefix: &str, entries: &mut Vec<Entry<'t>>) {
    for (name, value) in table {
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        if let Some(spec) = spec::find(&key) {
            entries.push(Entry::Key(spec, value));
        } else if !spec::is_table(&key) {
            entries.push(Entry::Unknown(key));
        } else if let toml::Value::Table(inner) = value {
            walk_into(inner, &key, entries);
        } else {
            entries.push(Entry::NotATable(key, value.type_str()));
        }
    }
}
