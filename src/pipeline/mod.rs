//! Pipeline templates, their validation, the encoder choice, and building session graphs.
//!
//! Loading parses every template, validates it (placeholders bound, elements exist, the graph
//! parses) and reports every problem at once, naming the file, the line and the element.

mod batch;
pub(crate) mod build;
mod encoder_full;
mod encoders;
mod fragments;
mod guard;
mod keyframes;
mod ladder;
mod latency;
mod live;
mod reload;
mod template;

pub(crate) use build::configure_source;
pub use build::{BuildError, BuildSpec, TS_CHUNK_CAPS, UNPLAYABLE_VIDEO};
use build::{SourceActivity, build};
pub use encoder_full::is_encoder_full;
pub use encoders::{EncoderChoice, Skipped};
pub use guard::PipelineGuard;
pub(crate) use keyframes::DROP_BUFFER;
pub use keyframes::SegmentPlan;
pub use ladder::{Ladder, Rung};
pub(crate) use latency::read_latency;
pub use live::{FailureKind, Fragment, GraphEvent, GraphFailure, H264Caps, LiveGraph, MuxedMedia, StartError};
pub use reload::{ReloadError, Reloaded};
pub(crate) use reload::{Reloader, Trigger, reload_templates};
pub(crate) use template::parse as parse_template;
pub use template::{Graph, Mode, Output, SegmentFormat, Template, TemplateProblem};

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use gstreamer as gst;

use template::line_of;

/// The templates shipped in `pipelines/`, built in so that a binary without the folder works.
pub(crate) const EMBEDDED: &[(&str, &str)] = &[
    ("copy.toml", include_str!("../../pipelines/copy.toml")),
    ("aac.toml", include_str!("../../pipelines/aac.toml")),
    ("h264.toml", include_str!("../../pipelines/h264.toml")),
    ("encoders.toml", include_str!("../../pipelines/encoders.toml")),
    ("abr.toml", include_str!("../../pipelines/abr.toml")),
    ("abr-fmp4.toml", include_str!("../../pipelines/abr-fmp4.toml")),
];

/// Key frames per second of output used when validating `{keyint}`.
const VALIDATION_KEYINT: u32 = 50;

/// Every problem found while loading, one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct TemplateErrors(pub Vec<TemplateProblem>);

impl fmt::Display for TemplateErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// A validated set of profiles and the encoder they use.
#[derive(Debug)]
pub struct Profiles {
    templates: BTreeMap<String, Arc<Template>>,
    pub encoder: Option<EncoderChoice>,
    /// Where the templates came from, for logs.
    pub origin: String,
}

impl Profiles {
    pub fn get(&self, name: &str) -> Option<Arc<Template>> {
        self.templates.get(name).cloned()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.templates.keys().map(String::as_str)
    }
}

/// Initialises GStreamer and registers the plugins xg2g links in (gst-plugins-rs's `fmp4`:
/// `cmafmux` and `isofmp4mux`, which GStreamer 1.22 from Debian does not ship). Idempotent.
pub fn init() -> Result<(), gst::glib::Error> {
    static REGISTERED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    gst::init()?;
    // Registering before `gst::init` fails (the plugin system is not up yet), and twice warns.
    REGISTERED
        .get_or_init(|| gstfmp4::plugin_register_static().map_err(|e| e.to_string()))
        .clone()
        .map_err(|e| gst::glib::Error::new(gst::CoreError::Failed, &format!("registering the fmp4 plugin: {e}")))
}

/// Loads `dir` when given and present, else the built-in templates.
pub fn load(dir: Option<&Path>) -> Result<Profiles, TemplateErrors> {
    let (files, origin) = match dir.filter(|d| d.is_dir()) {
        Some(dir) => (read_dir(dir)?, dir.display().to_string()),
        None => (
            EMBEDDED
                .iter()
                .map(|(n, s)| (PathBuf::from(format!("pipelines/{n} (built in)")), (*s).to_owned()))
                .collect(),
            "built-in templates".to_owned(),
        ),
    };
    init().map_err(|e| TemplateErrors(vec![problem(&origin, None, None, format!("GStreamer: {e}"))]))?;

    let mut problems = Vec::new();
    let mut encoder = None;
    if let Some((path, source)) = files.iter().find(|(p, _)| is_encoders(p)) {
        match toml::from_str::<encoders::EncodersFile>(source) {
            Ok(file) => {
                let (choice, skipped) = encoders::choose(&file.h264);
                for s in &skipped {
                    tracing::info!(factory = %s.factory, reason = %s.reason, "H.264 encoder candidate skipped.");
                }
                match &choice {
                    Some(c) => tracing::info!(factory = %c.factory, "Chose the H.264 encoder."),
                    None => tracing::warn!("No H.264 encoder works here; profiles that encode video are unavailable."),
                }
                encoder = choice;
            }
            Err(e) => {
                let line = e.span().map(|s| source[..s.start].matches('\n').count() + 1);
                problems.push(problem(&path.display().to_string(), line, None, e.message().to_owned()));
            }
        }
    }

    let mut templates = BTreeMap::new();
    for (path, source) in files.iter().filter(|(p, _)| !is_encoders(p)) {
        match template::parse(path, source) {
            Ok(t) => {
                let found = validate_graph(&t, source, encoder.as_ref());
                if !found.is_empty() {
                    problems.extend(found);
                } else if let Some(previous) = templates.insert(t.name.clone(), Arc::new(t)) {
                    problems.push(problem(
                        &path.display().to_string(),
                        line_of(source, "name"),
                        None,
                        format!(
                            "profile name {:?} is also used by {}",
                            previous.name,
                            previous.file.display()
                        ),
                    ));
                }
            }
            Err(found) => problems.extend(found),
        }
    }
    if problems.is_empty() {
        Ok(Profiles {
            templates,
            encoder,
            origin,
        })
    } else {
        Err(TemplateErrors(problems))
    }
}

fn is_encoders(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("encoders.toml"))
}

fn read_dir(dir: &Path) -> Result<Vec<(PathBuf, String)>, TemplateErrors> {
    let fail = |e: std::io::Error| TemplateErrors(vec![problem(&dir.display().to_string(), None, None, e.to_string())]);
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(fail)? {
        let path = entry.map_err(fail)?.path();
        if path.extension().is_some_and(|e| e == "toml") {
            let source = std::fs::read_to_string(&path)
                .map_err(|e| TemplateErrors(vec![problem(&path.display().to_string(), None, None, e.to_string())]))?;
            files.push((path, source));
        }
    }
    files.sort();
    Ok(files)
}

fn problem(file: &str, line: Option<usize>, element: Option<String>, message: String) -> TemplateProblem {
    TemplateProblem {
        file: file.to_owned(),
        line,
        element,
        message,
    }
}

/// Parses each branch with GStreamer, as a session would build it.
fn validate_graph(t: &Template, source: &str, encoder: Option<&EncoderChoice>) -> Vec<TemplateProblem> {
    let file = t.file.display().to_string();
    let mut problems = Vec::new();
    let mut values = BTreeMap::new();
    values.insert("keyint", VALIDATION_KEYINT.to_string());
    if t.uses_encoder() {
        match encoder {
            Some(e) => {
                let bitrate = t.params.get("video_bitrate").cloned().unwrap_or_else(|| "3000".into());
                values.insert("encoder", e.fragment(&bitrate, VALIDATION_KEYINT));
            }
            None => {
                problems.push(problem(
                    &file,
                    line_of(source, "{encoder}"),
                    None,
                    "uses {encoder}, but no H.264 encoder from encoders.toml works on this machine".into(),
                ));
                return problems;
            }
        }
    }
    let mut branches: Vec<(String, String)> = match &t.graph {
        Graph::Passthrough(p) => vec![(String::new(), p.clone())],
        Graph::Demuxed { video, audio } => video
            .iter()
            .chain([audio])
            .map(|b| (String::new(), b.clone()))
            .collect(),
    };
    if let Some(ladder) = &t.ladder {
        branches.push(("ladder decode: ".into(), ladder.decode.clone()));
        branches.push(("ladder audio_only: ".into(), ladder.audio_only.clone()));
        for (i, rung) in ladder.rungs.iter().enumerate() {
            let mut rung_values = values.clone();
            rung_values.extend(Ladder::rung_values(rung));
            if let Some(e) = encoder {
                rung_values.insert("encoder", Ladder::encoder_fragment(e, rung, VALIDATION_KEYINT));
            }
            let text = t.render(&ladder.rung, &rung_values);
            if let Err(error) = build::branch_bin(&text) {
                let message = error.message().to_owned();
                let element = quoted(&message);
                let line = element.as_deref().and_then(|e| line_of(source, e));
                let name = format!("ladder rung {} (height {}): {message}", i + 1, rung.height);
                problems.push(problem(&file, line, element, name));
            }
        }
    }
    for (what, branch) in branches {
        let text = t.render(&branch, &values);
        let parsed = match &t.graph {
            Graph::Passthrough(_) => gst::parse::bin_from_description(&text, true).map(|_| ()),
            Graph::Demuxed { .. } => build::branch_bin(&text).map(|_| ()),
        };
        if let Err(error) = parsed {
            let message = error.message().to_owned();
            let element = quoted(&message);
            let line = element.as_deref().and_then(|e| line_of(source, e));
            problems.push(problem(&file, line, element, format!("{what}{message}")));
        }
    }
    problems
}

/// The first double-quoted word of a GStreamer parse error: the element it is about.
fn quoted(message: &str) -> Option<String> {
    let start = message.find('"')? + 1;
    let end = start + message[start..].find('"')?;
    Some(message[start..end].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn built_in_templates_load_with_a_software_encoder() {
        let profiles = load(None).expect("shipped templates are valid");
        assert_eq!(
            profiles.names().collect::<Vec<_>>(),
            ["aac", "abr", "abr-fmp4", "copy", "h264"]
        );
        // No GPU here: the software encoder is the fallback.
        let encoder = profiles.encoder.as_ref().expect("an encoder");
        assert!(
            ["nvh264enc", "vah264enc", "vaapih264enc", "qsvh264enc", "x264enc"].contains(&encoder.factory.as_str())
        );
        assert_eq!(profiles.get("aac").unwrap().mode, Mode::AudioProxy);
    }

    #[test]
    fn a_missing_element_is_named_with_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "encoders.toml", EMBEDDED[3].1);
        write(
            dir.path(),
            "bad.toml",
            "name = \"bad\"\ndescription = \"d\"\nmode = \"audio_proxy\"\noutputs = [\"ts\"]\n\n[audio]\n\
             graph = \"\"\"\nqueue\n ! avenc_aacx bitrate=1\n\"\"\"\n",
        );
        write(
            dir.path(),
            "worse.toml",
            "name = \"worse\"\ndescription = \"d\"\nmode = \"gpu\"\noutputs = [\"hls\"]\n[audio]\ngraph = \"queue x={nope}\"\n",
        );
        let errors = load(Some(dir.path())).unwrap_err();
        let text = errors.to_string();
        let bad = format!(
            "{}:9: element `avenc_aacx`: no element \"avenc_aacx\"",
            dir.path().join("bad.toml").display()
        );
        let worse = format!(
            "{}:6: placeholder {{nope}} is not bound: add it to [params] or remove it",
            dir.path().join("worse.toml").display()
        );
        assert_eq!(text, format!("{bad}\n{worse}"));
    }
}
