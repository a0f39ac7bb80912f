//! Renders the spec table as the documented example file, and a loaded configuration as TOML
//! annotated with each value's origin.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::spec::{KeySpec, SPEC};

/// The example file: a header, then each key at its default under a comment with its doc,
/// environment variable and default, grouped into tables.
pub(crate) fn example() -> String {
    let mut out = String::from(
        "# xg2g configuration. Every key is optional; the values shown are the defaults.\n\
         # Precedence: defaults < this file < XG2G_* environment variables < command-line flags.\n",
    );
    let mut table = None;
    for spec in SPEC {
        out.push('\n');
        if spec.table() != table {
            table = spec.table();
            if let Some(name) = table {
                let _ = writeln!(out, "[{name}]");
            }
        }
        let _ = write!(out, "# {}", spec.doc);
        if let Some(var) = spec.env {
            let _ = write!(out, " Env: {var}.");
        }
        let _ = writeln!(out, " Default: {}.", spec.default);
        let _ = writeln!(out, "{} = {}", spec.name(), spec.default);
    }
    out
}

/// Each key = value, grouped by table, with a `# from <origin>` comment aligned per block.
pub(crate) fn effective(values: &[(&'static KeySpec, String)], origins: &BTreeMap<String, String>) -> String {
    let width = values
        .iter()
        .map(|(spec, text)| spec.name().len() + 3 + text.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::from("# Effective configuration; secrets that are set show as \"***\".\n\n");
    let mut table = None;
    for (spec, text) in values {
        if spec.table() != table {
            table = spec.table();
            if let Some(name) = table {
                let _ = writeln!(out, "\n[{name}]");
            }
        }
        let origin = origins.get(spec.key).map_or("default", String::as_str);
        let line = format!("{} = {text}", spec.name());
        let _ = writeln!(out, "{line:<width$}  # from {origin}");
    }
    out
}
