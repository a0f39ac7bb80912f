//! Building a session's graph: receiver source, demuxer, the template's branches, muxer, sink.
//!
//! The audio track is chosen by codec and language once the demuxer has announced every
//! stream (never by PID order: the first audio of a German channel is usually MP2); the
//! languages come from the PMT, read by a probe on the source before the demuxer sees it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::encoders::EncoderChoice;
use super::guard::PipelineGuard;
use super::keyframes::{SegmentPlan, force_key_units};
use super::template::{Graph, Output, Template};

mod ladder_graph;

/// Caps of what the muxer hands to xg2g.
pub const TS_CHUNK_CAPS: &str = "video/mpegts,systemstream=true,packetsize=188";

/// Everything a session graph needs.
pub struct BuildSpec<'a> {
    pub template: &'a Template,
    pub source_url: &'a str,
    /// `Authorization` header value sent up front (the relay port has no 401 challenge).
    pub authorization: Option<&'a str>,
    pub encoder: Option<&'a EncoderChoice>,
    /// ISO 639-2 codes, most wanted first; `ger` and `deu` are treated alike.
    pub audio_languages: &'a [String],
    /// Frames between forced key frames of an encoder.
    pub keyint: u32,
    /// Seconds without data after which the source fails (a stalled receiver).
    pub stall_timeout_s: u32,
    pub output: Output,
    /// Where HLS segments end: video encoders make key frames at its boundaries.
    pub segment_plan: Option<&'a SegmentPlan>,
    /// Where the session's fMP4 media ends so far: a reconnect's fragments are timed on from
    /// there (the muxers' `decode-time-offset`), so that time never runs backwards for a player.
    pub continue_at: std::time::Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("template `{template}`: {message}")]
    Template { template: String, message: String },
    /// GStreamer's parser refused the graph (its error names the element).
    #[error("template `{template}`: {source}")]
    Parse {
        template: String,
        #[source]
        source: gst::glib::Error,
    },
    /// The parsed graph lacks an element xg2g names in it (`src`, `demux`): a bug, not a template.
    #[error("the graph has no element named `{0}`")]
    MissingElement(&'static str),
    #[error("the graph is not a pipeline")]
    NotAPipeline,
}

/// The message of the error a graph posts when its output would carry video no client of that
/// output decodes (MPEG-2 copied into HLS); the bus error's domain is `StreamError::WrongType`.
pub const UNPLAYABLE_VIDEO: &str = "MPEG-2 video copied into HLS plays in no HLS client";

/// One muxed output of a graph: a ladder has one per variant, every other graph one.
pub struct MuxOutput {
    pub sink: gst_app::AppSink,
    /// The muxer, whose sink pads' caps say what the HLS master playlist declares (`None` for
    /// a passthrough graph).
    pub mux: Option<gst::Element>,
    /// Whether the muxer makes fragmented MP4 (whole fragments, each a segment) rather than a
    /// transport stream.
    pub fragmented: bool,
}

/// A built, not yet started session graph.
pub struct SessionGraph {
    pub guard: PipelineGuard,
    /// The muxed outputs, in variant order.
    pub outputs: Vec<MuxOutput>,
    /// When the receiver last delivered data, for stall detection.
    pub source_activity: Arc<SourceActivity>,
}

/// Updated by a probe on the source for every buffer: one atomic store.
#[derive(Debug)]
pub struct SourceActivity {
    epoch: std::time::Instant,
    last_ms: std::sync::atomic::AtomicU64,
    any: std::sync::atomic::AtomicBool,
}

impl SourceActivity {
    fn new() -> Self {
        Self {
            epoch: std::time::Instant::now(),
            last_ms: std::sync::atomic::AtomicU64::new(0),
            any: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn mark(&self) {
        self.last_ms.store(
            self.epoch.elapsed().as_millis() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        self.any.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the receiver has sent any data on this connection.
    pub fn any(&self) -> bool {
        self.any.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Time since the receiver last delivered data (or since the graph was built).
    pub fn silent_for(&self) -> std::time::Duration {
        let last = self.last_ms.load(std::sync::atomic::Ordering::Relaxed);
        std::time::Duration::from_millis((self.epoch.elapsed().as_millis() as u64).saturating_sub(last))
    }
}

pub fn build(spec: &BuildSpec<'_>) -> Result<SessionGraph, BuildError> {
    let t = spec.template;
    let tmpl_err = |message: String| BuildError::Template {
        template: t.name.clone(),
        message,
    };
    let mut values = BTreeMap::new();
    values.insert("keyint", spec.keyint.to_string());
    if t.uses_encoder() {
        let encoder = spec
            .encoder
            .ok_or_else(|| tmpl_err("needs an H.264 encoder and none works here".into()))?;
        let bitrate = t.params.get("video_bitrate").cloned().unwrap_or_else(|| "3000".into());
        values.insert("encoder", encoder.fragment(&bitrate, spec.keyint));
    }
    if let Some(ladder) = &t.ladder {
        if spec.output != Output::Hls {
            return Err(tmpl_err("a ladder has only an HLS output".into()));
        }
        return ladder_graph::build(spec, ladder, &values);
    }
    let sink_caps = format!("appsink name=sink sync=false caps={TS_CHUNK_CAPS}");
    // TS and HLS sessions share one graph: HLS segments are cut from the muxer's output by the
    // session (`session::segmenter`), so that each starts with PAT, PMT and a key frame and
    // continuity runs on across segments.
    let description = match (&t.graph, spec.output) {
        (Graph::Passthrough(p), Output::Ts) => format!("souphttpsrc name=src ! {} ! {sink_caps}", t.render(p, &values)),
        (Graph::Passthrough(_), Output::Hls) => return Err(tmpl_err("a passthrough profile has no HLS output".into())),
        (Graph::Demuxed { .. }, _) => {
            format!("souphttpsrc name=src ! tsdemux name=demux mpegtsmux name=mux alignment=7 ! {sink_caps}")
        }
    };
    let pipeline = launch(t, &description)?;
    let guard = PipelineGuard::new(pipeline.clone());
    let src = set_up_source(&pipeline, spec)?;
    let outputs = pipeline
        .by_name("sink")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .map(|sink| MuxOutput {
            fragmented: false,
            sink,
            mux: pipeline.by_name("mux"),
        })
        .into_iter()
        .collect();

    if let Graph::Demuxed { video, audio } = &t.graph {
        let languages = Arc::new(Mutex::new(HashMap::new()));
        watch_pmt_languages(&src, Arc::clone(&languages));
        let branches = Branches {
            video: video.as_ref().map(|v| t.render(v, &values)),
            audio: t.render(audio, &values),
            preferences: spec.audio_languages.iter().map(|l| normalise_language(l)).collect(),
            languages,
            video_linked: Mutex::new(false),
            segment_plan: spec.segment_plan.cloned(),
            refuse_mpeg2: spec.output == Output::Hls && !t.uses_encoder(),
        };
        connect_demuxer(&pipeline, Arc::new(branches))?;
    }
    let source_activity = watch_activity(&src);
    Ok(SessionGraph {
        guard,
        outputs,
        source_activity,
    })
}

/// Parses a session graph's description into a pipeline.
pub(crate) fn launch(t: &Template, description: &str) -> Result<gst::Pipeline, BuildError> {
    gst::parse::launch(description)
        .map_err(|source| BuildError::Parse {
            template: t.name.clone(),
            source,
        })?
        .downcast::<gst::Pipeline>()
        .map_err(|_| BuildError::NotAPipeline)
}

/// Sets up the receiver source (`src`): location, headers, timeouts.
pub(crate) fn set_up_source(pipeline: &gst::Pipeline, spec: &BuildSpec<'_>) -> Result<gst::Element, BuildError> {
    let src = pipeline.by_name("src").ok_or(BuildError::MissingElement("src"))?;
    configure_source(&src, spec.source_url, spec.authorization, spec.stall_timeout_s);
    Ok(src)
}

/// Sets a `souphttpsrc` up to read the receiver: live, no retries of its own (the session
/// reconnects), xg2g's user agent, `timeout_s` to read, and the `Authorization` header sent up
/// front (the relay port sends no 401 challenge).
pub(crate) fn configure_source(src: &gst::Element, url: &str, authorization: Option<&str>, timeout_s: u32) {
    src.set_property("location", url);
    src.set_property("is-live", true);
    src.set_property("user-agent", concat!("xg2g/", env!("CARGO_PKG_VERSION")));
    src.set_property("timeout", timeout_s.max(1));
    src.set_property("retries", 0i32);
    if let Some(auth) = authorization {
        let headers = gst::Structure::builder("extra-headers")
            .field("Authorization", auth)
            .build();
        src.set_property("extra-headers", headers);
    }
}

/// Marks every buffer the source delivers, for stall detection.
pub(crate) fn watch_activity(src: &gst::Element) -> Arc<SourceActivity> {
    let source_activity = Arc::new(SourceActivity::new());
    if let Some(pad) = src.static_pad("src") {
        let activity = Arc::clone(&source_activity);
        pad.add_probe(
            gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
            move |_, _| {
                activity.mark();
                gst::PadProbeReturn::Ok
            },
        );
    }
    source_activity
}

struct Branches {
    video: Option<String>,
    audio: String,
    preferences: Vec<String>,
    languages: Arc<Mutex<HashMap<u16, String>>>,
    video_linked: Mutex<bool>,
    segment_plan: Option<SegmentPlan>,
    /// The output is HLS and the video branch copies: MPEG-2 video must not go through.
    refuse_mpeg2: bool,
}

fn connect_demuxer(pipeline: &gst::Pipeline, branches: Arc<Branches>) -> Result<(), BuildError> {
    let choice = AudioChoice {
        languages: Arc::clone(&branches.languages),
        preferences: branches.preferences.clone(),
        surround: false,
    };
    let b = Arc::clone(&branches);
    let video = move |pipeline: &gst::Pipeline, pad: &gst::Pad, media: &str| {
        let first = !std::mem::replace(
            &mut *b.video_linked.lock().unwrap_or_else(PoisonError::into_inner),
            true,
        );
        match &b.video {
            Some(_) if first && b.refuse_mpeg2 && media == "video/mpeg" => {
                let error = gst::message::Error::builder(gst::StreamError::WrongType, UNPLAYABLE_VIDEO)
                    .src(pipeline)
                    .build();
                let _ = pipeline.post_message(error);
                discard(pipeline, pad)
            }
            Some(graph) if first => {
                let parser = if media == "video/x-h264" {
                    "h264parse config-interval=-1"
                } else {
                    "mpegvideoparse"
                };
                link_branch(
                    pipeline,
                    pad,
                    &format!("{parser} ! {graph}"),
                    "video",
                    b.segment_plan.as_ref(),
                )
            }
            _ => discard(pipeline, pad),
        }
    };
    let audio = move |pipeline: &gst::Pipeline, chosen: Option<&gst::Pad>, _: Option<&gst::Pad>| match chosen {
        Some(pad) => link_branch(pipeline, pad, &branches.audio, "audio", None),
        None => Ok(()),
    };
    route_demuxer(pipeline, choice, video, audio)
}

/// How the audio track is chosen: the languages the PMT gave, and the ones wanted.
pub(crate) struct AudioChoice {
    pub languages: Arc<Mutex<HashMap<u16, String>>>,
    pub preferences: Vec<String>,
    /// Whether an AC-3/E-AC-3 track is wanted too, as it comes (an fMP4 ladder passes it
    /// through beside the stereo AAC).
    pub surround: bool,
}

/// Wires the demuxer (`demux`): each video pad goes to `video` (with its media type), every
/// audio pad waits until the demuxer has announced them all, then the chosen one goes to
/// `audio` (`None` without audio), with the AC-3/E-AC-3 track to pass through when the choice
/// asks for one (the chosen pad itself when it is AC-3), and the others to fakesinks, as does
/// every other pad. A failure is posted on the bus.
pub(crate) fn route_demuxer(
    pipeline: &gst::Pipeline,
    choice: AudioChoice,
    video: impl Fn(&gst::Pipeline, &gst::Pad, &str) -> Result<(), String> + Send + Sync + 'static,
    audio: impl Fn(&gst::Pipeline, Option<&gst::Pad>, Option<&gst::Pad>) -> Result<(), String> + Send + Sync + 'static,
) -> Result<(), BuildError> {
    let demux = pipeline.by_name("demux").ok_or(BuildError::MissingElement("demux"))?;
    let pending: Arc<Mutex<Vec<gst::Pad>>> = Arc::default();
    let weak = pipeline.downgrade();
    let audio_pads = Arc::clone(&pending);
    demux.connect_pad_added(move |_, pad| {
        let Some(pipeline) = weak.upgrade() else { return };
        let media = caps_name(pad);
        let result = if media.starts_with("video/") {
            video(&pipeline, pad, &media)
        } else if media.starts_with("audio/") {
            audio_pads
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(pad.clone());
            Ok(())
        } else {
            discard(&pipeline, pad)
        };
        if let Err(error) = result {
            post_error(&pipeline, &error);
        }
    });
    let weak = pipeline.downgrade();
    demux.connect_no_more_pads(move |_| {
        let Some(pipeline) = weak.upgrade() else { return };
        let pads = std::mem::take(&mut *pending.lock().unwrap_or_else(PoisonError::into_inner));
        let languages = choice
            .languages
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let chosen = choose_audio(&pads, &languages, &choice.preferences);
        let surround = if choice.surround {
            // The chosen track when it is AC-3, else the best-ranked AC-3 one.
            chosen.filter(|&i| is_surround(&pads[i])).or_else(|| {
                let ac3: Vec<gst::Pad> = pads.iter().filter(|p| is_surround(p)).cloned().collect();
                let best = choose_audio(&ac3, &languages, &choice.preferences)?;
                pads.iter().position(|p| *p == ac3[best])
            })
        } else {
            None
        };
        for (i, pad) in pads.iter().enumerate() {
            if Some(i) == chosen || Some(i) == surround {
                let pid = pad_pid(pad);
                tracing::debug!(pid, codec = %caps_name(pad), language = languages.get(&pid.unwrap_or(0)).map(String::as_str).unwrap_or("und"), passthrough = Some(i) == surround, "Audio track chosen.");
            } else if let Err(error) = discard(&pipeline, pad) {
                post_error(&pipeline, &error);
            }
        }
        if let Err(error) = audio(&pipeline, chosen.map(|i| &pads[i]), surround.map(|i| &pads[i])) {
            post_error(&pipeline, &error);
        }
    });
    Ok(())
}

/// Whether a demuxer pad carries AC-3 or E-AC-3.
fn is_surround(pad: &gst::Pad) -> bool {
    matches!(caps_name(pad).as_str(), "audio/x-ac3" | "audio/x-eac3" | "audio/ac3")
}

/// The media type of a pad: its negotiated caps, else what it could produce.
pub(crate) fn caps_name(pad: &gst::Pad) -> String {
    pad.current_caps()
        .or_else(|| Some(pad.query_caps(None)))
        .and_then(|c| c.structure(0).map(|s| s.name().to_string()))
        .unwrap_or_default()
}

/// tsdemux names pads `audio_<generation>_<pid in hex>`.
fn pad_pid(pad: &gst::Pad) -> Option<u16> {
    let name = pad.name();
    u16::from_str_radix(name.rsplit('_').next()?, 16).ok()
}

/// Index of the best audio pad: preferred language first, then AC-3/E-AC-3, AAC, MP2.
fn choose_audio(pads: &[gst::Pad], languages: &HashMap<u16, String>, preferences: &[String]) -> Option<usize> {
    let tracks: Vec<(Option<String>, String)> = pads
        .iter()
        .map(|p| (pad_pid(p).and_then(|pid| languages.get(&pid).cloned()), caps_name(p)))
        .collect();
    rank_audio(&tracks, preferences)
}

/// Pure ranking over (language, caps name) pairs.
pub(crate) fn rank_audio(tracks: &[(Option<String>, String)], preferences: &[String]) -> Option<usize> {
    let codec_rank = |caps: &str| match caps {
        "audio/x-ac3" | "audio/x-eac3" | "audio/ac3" => 0,
        "audio/mpeg" => 2,
        _ => 3,
    };
    tracks
        .iter()
        .enumerate()
        .min_by_key(|(i, (lang, caps))| {
            let lang_rank = lang
                .as_deref()
                .map(normalise_language)
                .and_then(|l| preferences.iter().position(|p| *p == l))
                .unwrap_or(preferences.len());
            (lang_rank, codec_rank(caps), *i)
        })
        .map(|(i, _)| i)
}

/// ISO 639-2/B and /T spell some languages differently (ger/deu, fre/fra, dut/nld).
pub(crate) fn normalise_language(code: &str) -> String {
    match code.to_ascii_lowercase().as_str() {
        "ger" => "deu".into(),
        "fre" => "fra".into(),
        "dut" => "nld".into(),
        other => other.to_owned(),
    }
}

/// A template branch as a bin with one `sink` and one `src` ghost pad. The ends are marked with
/// identity elements: ghosting "unlinked pads" would pick an element behind decodebin, whose
/// link is only made once data flows.
pub(crate) fn branch_bin(graph: &str) -> Result<gst::Bin, gst::glib::Error> {
    let bin = gst::parse::bin_from_description(
        &format!("identity name=branch_in ! {graph} ! identity name=branch_out"),
        false,
    )?;
    let ghost = |element: &str, pad: &str| -> Result<(), gst::glib::Error> {
        let target = bin.by_name(element).and_then(|e| e.static_pad(pad));
        let ghost = target
            .and_then(|t| gst::GhostPad::builder_with_target(&t).ok())
            .map(|b| b.name(pad).build())
            .ok_or_else(|| gst::glib::Error::new(gst::CoreError::Pad, "cannot expose the branch's ends"))?;
        bin.add_pad(&ghost)
            .map_err(|e| gst::glib::Error::new(gst::CoreError::Pad, &e.to_string()))
    };
    ghost("branch_in", "sink")?;
    ghost("branch_out", "src")?;
    Ok(bin)
}

/// Links a demuxer pad through a template branch to the muxer; a video encoder in the branch
/// makes key frames where the segment plan says.
fn link_branch(
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    graph: &str,
    kind: &str,
    plan: Option<&SegmentPlan>,
) -> Result<(), String> {
    let bin = branch_bin(graph).map_err(|e| format!("{graph}: {e}"))?;
    super::latency::instrument(&bin, kind);
    if let Some(plan) = plan {
        force_key_units(&bin, plan);
    }
    pipeline.add(&bin).map_err(|e| e.to_string())?;
    let mux = pipeline.by_name("mux").ok_or("no muxer")?;
    let bin_src = bin.static_pad("src").ok_or("branch has no output")?;
    let template = if mux.pad_template(kind).is_some() {
        kind
    } else {
        "sink_%d"
    };
    let mux_sink = mux.request_pad_simple(template).ok_or("muxer refused a pad")?;
    bin_src.link(&mux_sink).map_err(|e| format!("branch to muxer: {e:?}"))?;
    let bin_sink = bin.static_pad("sink").ok_or("branch has no input")?;
    pad.link(&bin_sink).map_err(|e| format!("demuxer to branch: {e:?}"))?;
    bin.sync_state_with_parent().map_err(|e| e.to_string())?;
    Ok(())
}

/// Links a pad nobody wants to a fakesink, so the demuxer never sees "not linked".
pub(crate) fn discard(pipeline: &gst::Pipeline, pad: &gst::Pad) -> Result<(), String> {
    let sink = gst::ElementFactory::make("fakesink")
        .property("sync", false)
        // A late sink must not hold the pipeline's state change (preroll) back.
        .property("async", false)
        .build()
        .map_err(|e| e.to_string())?;
    pipeline.add(&sink).map_err(|e| e.to_string())?;
    let sink_pad = sink.static_pad("sink").ok_or("fakesink without pad")?;
    pad.link(&sink_pad).map_err(|e| format!("{e:?}"))?;
    sink.sync_state_with_parent().map_err(|e| e.to_string())?;
    Ok(())
}

pub(crate) fn post_error(pipeline: &gst::Pipeline, message: &str) {
    let error = gst::message::Error::builder(gst::CoreError::Negotiation, message)
        .src(pipeline)
        .build();
    let _ = pipeline.post_message(error);
}

/// Reads the PMT's ISO 639 language descriptors from the raw stream, then removes itself.
pub(crate) fn watch_pmt_languages(src: &gst::Element, languages: Arc<Mutex<HashMap<u16, String>>>) {
    let Some(pad) = src.static_pad("src") else { return };
    // The probe runs on one streaming thread; the mutex only satisfies `Fn`.
    let pmt_pid: Mutex<Option<u16>> = Mutex::new(None);
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        let Some(buffer) = info.buffer() else {
            return gst::PadProbeReturn::Ok;
        };
        let Ok(map) = buffer.map_readable() else {
            return gst::PadProbeReturn::Ok;
        };
        let mut pmt_pid = pmt_pid.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = scan_psi(map.as_slice(), &mut pmt_pid) {
            *languages.lock().unwrap_or_else(PoisonError::into_inner) = found;
            return gst::PadProbeReturn::Remove;
        }
        gst::PadProbeReturn::Ok
    });
}

/// Scans TS packets for the PAT (to learn the PMT PID) and the PMT; returns PID → language.
pub(crate) fn scan_psi(data: &[u8], pmt_pid: &mut Option<u16>) -> Option<HashMap<u16, String>> {
    let streams = crate::mpegts::scan_pmt(data, pmt_pid)?;
    Some(streams.into_iter().filter_map(|s| Some((s.pid, s.language?))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(lang: Option<&str>, caps: &str) -> (Option<String>, String) {
        (lang.map(str::to_owned), caps.to_owned())
    }

    #[test]
    fn audio_is_chosen_by_language_then_codec_never_by_order() {
        let tracks = [
            t(Some("deu"), "audio/mpeg"),
            t(Some("eng"), "audio/mpeg"),
            t(Some("deu"), "audio/x-ac3"),
        ];
        assert_eq!(rank_audio(&tracks, &[]), Some(2), "AC-3 over MP2 without a preference");
        assert_eq!(rank_audio(&tracks, &["eng".into()]), Some(1), "language first");
        assert_eq!(rank_audio(&tracks, &["deu".into()]), Some(2), "then codec");
        let bare = [t(Some("ger"), "audio/mpeg"), t(None, "audio/x-eac3")];
        assert_eq!(rank_audio(&bare, &["deu".into()]), Some(0), "ger is deu");
        assert_eq!(rank_audio(&[], &[]), None);
    }
}
