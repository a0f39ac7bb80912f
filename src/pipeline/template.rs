//! Pipeline templates: TOML files parsed, validated into [`Template`], rendered into graph text.
//!
//! A template is either a passthrough (one graph between the receiver and the output) or a
//! demuxed profile with a video branch (optional: radio and audio-only outputs drop it) and an
//! audio branch. xg2g adds the source, the demuxer, the parsers chosen by codec, the audio
//! track choice and the muxer; templates say only what happens to each elementary stream.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ladder::{self, Ladder, LadderFile, RUNG_PLACEHOLDERS};

/// What a template's HLS segments are made of: MPEG-TS (every player), or fragmented MP4
/// (CMAF: `EXT-X-MAP`, and AC-3/E-AC-3 passes through as an alternate audio rendition).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SegmentFormat {
    #[default]
    Ts,
    Fmp4,
}

/// Placeholders xg2g fills at build time; every other `{name}` must be a template parameter.
pub(crate) const RUNTIME_PLACEHOLDERS: &[&str] = &["encoder", "keyint"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateFile {
    name: String,
    description: String,
    mode: String,
    outputs: Vec<String>,
    passthrough: Option<String>,
    video: Option<BranchFile>,
    audio: Option<BranchFile>,
    ladder: Option<LadderFile>,
    segment_format: Option<String>,
    #[serde(default)]
    params: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BranchFile {
    graph: String,
}

/// What a profile costs, for limits and metrics labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Transport stream passed through.
    Standard,
    /// Video copied, audio transcoded.
    AudioProxy,
    /// Video transcoded on an encoder (GPU when present).
    Gpu,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Standard => "standard",
            Mode::AudioProxy => "audio_proxy",
            Mode::Gpu => "gpu",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Mode::Standard, Mode::AudioProxy, Mode::Gpu]
            .into_iter()
            .find(|m| m.as_str() == s)
    }
}

/// How clients receive a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Output {
    Ts,
    Hls,
}

impl Output {
    pub fn as_str(self) -> &'static str {
        match self {
            Output::Ts => "ts",
            Output::Hls => "hls",
        }
    }
}

/// The graph of a validated template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Graph {
    Passthrough(String),
    Demuxed { video: Option<String>, audio: String },
}

/// A validated template. Running sessions keep the `Arc` they started with across reloads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub name: String,
    pub description: String,
    pub mode: Mode,
    pub outputs: Vec<Output>,
    pub graph: Graph,
    /// An adaptive-bitrate ladder (HLS only): its video comes from here, not `graph`'s video.
    pub ladder: Option<Ladder>,
    /// What HLS segments are made of.
    pub segment_format: SegmentFormat,
    pub params: BTreeMap<String, String>,
    pub file: PathBuf,
}

impl Template {
    pub fn supports(&self, output: Output) -> bool {
        self.outputs.contains(&output)
    }

    /// Whether the video branch needs an encoder (`{encoder}` appears in it).
    pub fn uses_encoder(&self) -> bool {
        self.encoded_rungs() > 0
    }

    /// How many video encoders a session of this profile may run at once: one per ladder rung,
    /// one for a video branch with `{encoder}`, else none. Each takes an encoder slot.
    pub fn encoded_rungs(&self) -> usize {
        match (&self.ladder, &self.graph) {
            (Some(l), _) if l.rung.contains("{encoder}") => l.rungs.len(),
            (Some(_), _) => 0,
            (None, Graph::Demuxed { video: Some(v), .. }) => usize::from(v.contains("{encoder}")),
            _ => 0,
        }
    }

    /// `text` with every `{name}` replaced from `values`, then the template's parameters.
    pub fn render(&self, text: &str, values: &BTreeMap<&str, String>) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find('{') {
            out.push_str(&rest[..start]);
            let after = &rest[start + 1..];
            match after.find('}') {
                Some(end) if is_ident(&after[..end]) => {
                    let name = &after[..end];
                    match values.get(name).or_else(|| self.params.get(name)) {
                        Some(v) => out.push_str(v),
                        None => out.push_str(&rest[start..start + end + 2]),
                    }
                    rest = &after[end + 1..];
                }
                _ => {
                    out.push('{');
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        // Templates break lines for reading; gst-launch syntax does not care.
        out.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

/// One problem with a template file, located as precisely as the source allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateProblem {
    pub file: String,
    pub line: Option<usize>,
    pub element: Option<String>,
    pub message: String,
}

impl fmt::Display for TemplateProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(element) = &self.element {
            write!(f, ": element `{element}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

fn is_ident(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Every `{name}` in `text`.
pub(crate) fn placeholders(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        if let Some(end) = after.find('}')
            && is_ident(&after[..end])
        {
            out.insert(after[..end].to_owned());
        }
        rest = after;
    }
    out
}

/// 1-based line of the first occurrence of `needle` in `source`, if any.
pub(crate) fn line_of(source: &str, needle: &str) -> Option<usize> {
    let at = source.find(needle)?;
    Some(source[..at].matches('\n').count() + 1)
}

/// 1-based line of the `n`th (0-based) line that starts with `header` (a TOML table header;
/// comments that mention it do not count).
fn nth_line_of(source: &str, header: &str, n: usize) -> Option<usize> {
    let (i, _) = source
        .lines()
        .enumerate()
        .filter(|(_, line)| line.trim_start().starts_with(header))
        .nth(n)?;
    Some(i + 1)
}

/// Parses one template file's text; structural problems only (no GStreamer here).
pub(crate) fn parse(file: &Path, source: &str) -> Result<Template, Vec<TemplateProblem>> {
    let name = file.display().to_string();
    let problem = |line: Option<usize>, message: String| TemplateProblem {
        file: name.clone(),
        line,
        element: None,
        message,
    };
    let raw: TemplateFile = toml::from_str(source).map_err(|e| {
        let line = e.span().map(|s| source[..s.start].matches('\n').count() + 1);
        vec![problem(line, e.message().to_owned())]
    })?;
    let mut problems = Vec::new();
    let mode = Mode::parse(&raw.mode);
    if mode.is_none() {
        problems.push(problem(
            line_of(source, "mode"),
            format!("mode {:?} is not one of standard, audio_proxy, gpu", raw.mode),
        ));
    }
    let mut outputs = Vec::new();
    for o in &raw.outputs {
        match o.as_str() {
            "ts" => outputs.push(Output::Ts),
            "hls" => outputs.push(Output::Hls),
            other => problems.push(problem(
                line_of(source, "outputs"),
                format!("output {other:?} is not one of ts, hls"),
            )),
        }
    }
    if outputs.is_empty() && problems.is_empty() {
        problems.push(problem(line_of(source, "outputs"), "lists no outputs".to_owned()));
    }
    if raw.ladder.is_some() {
        if raw.video.is_some() {
            problems.push(problem(
                line_of(source, "[video]"),
                "a ladder's video is in [ladder]: remove [video]".into(),
            ));
        }
        if outputs.iter().any(|o| *o != Output::Hls) {
            problems.push(problem(
                line_of(source, "outputs"),
                "a ladder is for HLS only: outputs = [\"hls\"]".into(),
            ));
        }
    }
    let segment_format = match raw.segment_format.as_deref() {
        None | Some("ts") => SegmentFormat::Ts,
        Some("fmp4") if raw.ladder.is_some() => SegmentFormat::Fmp4,
        Some("fmp4") => {
            problems.push(problem(
                line_of(source, "segment_format"),
                "segment_format = \"fmp4\" is made by ladder templates only: add a [ladder] or use \"ts\"".into(),
            ));
            SegmentFormat::Ts
        }
        Some(other) => {
            problems.push(problem(
                line_of(source, "segment_format"),
                format!("segment_format {other:?} is not one of ts, fmp4"),
            ));
            SegmentFormat::Ts
        }
    };
    let ladder = match raw.ladder {
        Some(file) => {
            let texts = [file.decode.clone(), file.rung.clone(), file.audio_only.clone()];
            for (i, text) in texts.iter().enumerate() {
                for ph in placeholders(text) {
                    let by_rung = i == 1 && RUNG_PLACEHOLDERS.contains(&ph.as_str());
                    if !by_rung && !raw.params.contains_key(&ph) && !RUNTIME_PLACEHOLDERS.contains(&ph.as_str()) {
                        problems.push(problem(
                            line_of(source, &format!("{{{ph}}}")),
                            format!("placeholder {{{ph}}} is not bound: add it to [params] or remove it"),
                        ));
                    }
                }
            }
            match ladder::validate(file, &raw.params) {
                Ok(l) => Some(l),
                Err(found) => {
                    for (rung, message) in found {
                        let line = match rung {
                            Some(n) => nth_line_of(source, "[[ladder.rungs]]", n),
                            None => line_of(source, "[ladder]"),
                        };
                        problems.push(problem(line, message));
                    }
                    None
                }
            }
        }
        None => None,
    };
    let graph = match (raw.passthrough, raw.video, raw.audio) {
        (Some(p), None, None) => Some(Graph::Passthrough(p)),
        (None, video, Some(audio)) => Some(Graph::Demuxed {
            video: video.map(|v| v.graph),
            audio: audio.graph,
        }),
        (Some(_), _, _) => {
            problems.push(problem(
                line_of(source, "passthrough"),
                "a passthrough template has no [video] or [audio]".into(),
            ));
            None
        }
        (None, _, None) => {
            problems.push(problem(None, "needs either `passthrough` or an [audio] section".into()));
            None
        }
    };
    if let Some(graph) = &graph {
        let texts: Vec<&str> = match graph {
            Graph::Passthrough(p) => vec![p],
            Graph::Demuxed { video, audio } => video.iter().map(String::as_str).chain([audio.as_str()]).collect(),
        };
        for text in texts {
            for ph in placeholders(text) {
                if !raw.params.contains_key(&ph) && !RUNTIME_PLACEHOLDERS.contains(&ph.as_str()) {
                    problems.push(problem(
                        line_of(source, &format!("{{{ph}}}")),
                        format!("placeholder {{{ph}}} is not bound: add it to [params] or remove it"),
                    ));
                }
            }
        }
    }
    match (problems.is_empty(), mode, graph) {
        (true, Some(mode), Some(graph)) => Ok(Template {
            name: raw.name,
            description: raw.description,
            mode,
            outputs,
            graph,
            ladder,
            segment_format,
            params: raw.params,
            file: file.to_owned(),
        }),
        _ => Err(problems),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(source: &str) -> Result<Template, Vec<TemplateProblem>> {
        parse(Path::new("pipelines/test.toml"), source)
    }

    #[test]
    fn shipped_templates_parse() {
        for (file, source) in super::super::EMBEDDED {
            if *file != "encoders.toml" {
                parse(Path::new(file), source).unwrap_or_else(|p| panic!("{file}: {p:?}"));
            }
        }
    }

    #[test]
    fn fmp4_segments_are_for_ladders_and_a_bad_format_is_named() {
        let fmp4 = parse(Path::new("abr-fmp4.toml"), super::super::EMBEDDED[5].1).unwrap();
        assert_eq!(fmp4.segment_format, SegmentFormat::Fmp4);
        let plain = "name='t'\ndescription='d'\nmode='standard'\noutputs=['hls']\n[audio]\ngraph='x'\n";
        assert_eq!(parse_str(plain).unwrap().segment_format, SegmentFormat::Ts);
        let without_ladder = parse_str(&format!("segment_format='fmp4'\n{plain}")).unwrap_err();
        assert_eq!(without_ladder[0].line, Some(1));
        assert!(
            without_ladder[0].message.contains("ladder templates only"),
            "{without_ladder:?}"
        );
        let unknown = parse_str(&format!("segment_format='mp4'\n{plain}")).unwrap_err();
        assert!(
            unknown[0].message.contains("\"mp4\" is not one of ts, fmp4"),
            "{unknown:?}"
        );
    }

    #[test]
    fn renders_placeholders_from_values_then_params() {
        let t = parse_str(
            "name='t'\ndescription='d'\nmode='gpu'\noutputs=['ts']\n[video]\ngraph='''a {encoder}\n ! b x={w}'''\n\
             [audio]\ngraph='c'\n[params]\nw='7'\n",
        )
        .unwrap();
        let Graph::Demuxed { video: Some(v), .. } = &t.graph else {
            panic!()
        };
        let values = BTreeMap::from([("encoder", "x264enc bitrate=1".to_owned())]);
        assert_eq!(t.render(v, &values), "a x264enc bitrate=1 ! b x=7");
        assert!(t.uses_encoder());
    }

    #[test]
    fn reports_every_structural_problem_with_lines() {
        let problems = parse_str(
            "name='t'\ndescription='d'\nmode='fast'\noutputs=['ts','dash']\n[audio]\ngraph='avenc_aac bitrate={rate}'\n",
        )
        .unwrap_err();
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "pipelines/test.toml:3: mode \"fast\" is not one of standard, audio_proxy, gpu",
                "pipelines/test.toml:4: output \"dash\" is not one of ts, hls",
                "pipelines/test.toml:6: placeholder {rate} is not bound: add it to [params] or remove it",
            ]
        );
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_line() {
        let problems =
            parse_str("name='t'\ndescription='d'\nmode='gpu'\noutputs=['ts']\nbogus=1\n[audio]\ngraph='x'\n")
                .unwrap_err();
        assert_eq!(problems[0].line, Some(5));
        assert!(problems[0].message.contains("unknown field `bogus`"), "{}", problems[0]);
    }
}
