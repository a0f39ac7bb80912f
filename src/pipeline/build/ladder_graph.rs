//! A ladder session's graph: one source and demuxer; the video parsed once into a tee, decoded
//! and deinterlaced once into a second tee that feeds one encoder per rung; the copied top rung
//! straight from the first tee; one muxer and appsink per variant. The rungs are linked when
//! the parser announces the picture ([`Ladder::plan`]), the shared AAC joins each video muxer
//! then, and the audio-only rung has its own muxer.
//!
//! Key frames line up across rungs: with a copied top rung every encoder is asked for a key
//! frame at each of the source's key frames; without one, the decoded picture is cut by the
//! segment plan once, before the tee, so every encoder gets the same requests.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::super::fragments::{CutClock, Follow, follow, lead_on_video};
use super::super::guard::PipelineGuard;
use super::super::keyframes::{DROP_BUFFER, KeyFrameTimes, force_key_units_paced, key_frames_on_request, running_time};
use super::super::ladder::{Ladder, RungSource, SourcePicture};
use super::super::template::SegmentFormat;
use super::{
    AudioChoice, BuildError, BuildSpec, MuxOutput, SessionGraph, TS_CHUNK_CAPS, branch_bin, discard, launch,
    normalise_language, post_error, route_demuxer, set_up_source, watch_activity, watch_pmt_languages,
};

/// A queue that holds up to 3 s, as the templates' own.
const QUEUE: &str = "queue max-size-buffers=0 max-size-bytes=0 max-size-time=3000000000";

/// Builds the ladder graph: `outputs` are the video variants (at most the copy and every rung)
/// then the audio-only rung, last.
pub(super) fn build(
    spec: &BuildSpec<'_>,
    ladder: &Ladder,
    values: &BTreeMap<&str, String>,
) -> Result<SessionGraph, BuildError> {
    let t = spec.template;
    // Template validation makes a ladder's graph demuxed; this is the shared AAC.
    let super::Graph::Demuxed { audio, .. } = &t.graph else {
        return Err(BuildError::Template {
            template: t.name.clone(),
            message: "a ladder needs an [audio] section".into(),
        });
    };
    let video_outputs = ladder.rungs.len() + usize::from(ladder.copy_h264);
    let plan = spec
        .segment_plan
        .cloned()
        .unwrap_or_else(|| super::SegmentPlan::new(Vec::new(), Duration::from_secs(1)));
    // fMP4: every rendition has its own muxer (the video rungs carry no sound): the shared AAC,
    // the AC-3 passed through, then the audio-only rung.
    let fmp4 = (t.segment_format == SegmentFormat::Fmp4).then(|| CutClock::new(plan.clone()));
    let outputs_count = video_outputs + if fmp4.is_some() { 3 } else { 1 };
    let mut description = "souphttpsrc name=src ! tsdemux name=demux".to_owned();
    // A variant the picture does not make never gets data: its sink must not hold the
    // pipeline's change to Playing back (`async=false`), nor may a rung that starts late.
    for i in 0..outputs_count {
        if fmp4.is_some() {
            // Fragments are cut where the clock says (`manual-split`); the duration is only the
            // latency the muxer reports. cmafmux takes no AC-3.
            let mux = if i == video_outputs + 1 {
                "isofmp4mux"
            } else {
                "cmafmux"
            };
            let duration = plan.duration_of(u64::MAX).as_nanos();
            let offset = spec.continue_at.as_nanos();
            description.push_str(&format!(
                " {mux} name=mux{i} manual-split=true fragment-duration={duration} decode-time-offset={offset} \
                 ! appsink name=sink{i} sync=false async=false buffer-list=true"
            ));
        } else {
            description.push_str(&format!(
                " mpegtsmux name=mux{i} alignment=7 ! appsink name=sink{i} sync=false async=false caps={TS_CHUNK_CAPS}"
            ));
        }
    }
    let pipeline = launch(t, &description)?;
    let guard = PipelineGuard::new(pipeline.clone());
    let src = set_up_source(&pipeline, spec)?;
    let mut outputs = Vec::new();
    let mut muxers = Vec::new();
    for i in 0..outputs_count {
        let mux = pipeline
            .by_name(&format!("mux{i}"))
            .ok_or(BuildError::MissingElement("mux"))?;
        let sink = pipeline
            .by_name(&format!("sink{i}"))
            .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
            .ok_or(BuildError::MissingElement("sink"))?;
        muxers.push(mux.clone());
        outputs.push(MuxOutput {
            sink,
            mux: Some(mux),
            fragmented: fmp4.is_some(),
        });
    }
    let encoder = spec.encoder;
    let rungs = ladder
        .rungs
        .iter()
        .map(|rung| {
            let mut rung_values = values.clone();
            rung_values.extend(Ladder::rung_values(rung));
            if let Some(encoder) = encoder {
                rung_values.insert("encoder", Ladder::encoder_fragment(encoder, rung, spec.keyint));
            }
            t.render(&ladder.rung, &rung_values)
        })
        .collect();
    tracing::debug!(?rungs, "Ladder rung graphs.");
    let languages = Arc::new(Mutex::new(HashMap::new()));
    watch_pmt_languages(&src, Arc::clone(&languages));
    let wiring = Arc::new(Wiring {
        ladder: ladder.clone(),
        decode: t.render(&ladder.decode, values),
        rungs,
        audio: t.render(audio, values),
        audio_only: t.render(&ladder.audio_only, values),
        muxers,
        preferences: spec.audio_languages.iter().map(|l| normalise_language(l)).collect(),
        languages,
        plan: spec.segment_plan.cloned(),
        video_outputs,
        clock: fmp4,
        state: Mutex::new(State::default()),
    });
    connect(&pipeline, wiring)?;
    let source_activity = watch_activity(&src);
    Ok(SessionGraph {
        guard,
        outputs,
        source_activity,
    })
}

/// What the demuxer's callbacks share.
struct Wiring {
    ladder: Ladder,
    decode: String,
    /// Each rung's graph, rendered with its values.
    rungs: Vec<String>,
    /// The shared AAC.
    audio: String,
    audio_only: String,
    /// Video variants first, the audio-only rung last.
    muxers: Vec<gst::Element>,
    preferences: Vec<String>,
    languages: Arc<Mutex<HashMap<u16, String>>>,
    plan: Option<super::SegmentPlan>,
    /// How many video variants the ladder may have (its muxers come first).
    video_outputs: usize,
    /// fMP4: where every rendition starts its fragments.
    clock: Option<Arc<CutClock>>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    video_seen: bool,
    /// The shared AAC's tee, once the audio is linked.
    aac: Option<gst::Element>,
    /// How many video variants the picture made, once it is known.
    variants: Option<usize>,
}

fn connect(pipeline: &gst::Pipeline, wiring: Arc<Wiring>) -> Result<(), BuildError> {
    let choice = AudioChoice {
        languages: Arc::clone(&wiring.languages),
        preferences: wiring.preferences.clone(),
        surround: wiring.clock.is_some(),
    };
    let w = Arc::clone(&wiring);
    let video = move |pipeline: &gst::Pipeline, pad: &gst::Pad, media: &str| {
        let first = !std::mem::replace(
            &mut w.state.lock().unwrap_or_else(PoisonError::into_inner).video_seen,
            true,
        );
        if first {
            link_video(pipeline, pad, media, &w)
        } else {
            discard(pipeline, pad)
        }
    };
    let audio = move |pipeline: &gst::Pipeline, chosen: Option<&gst::Pad>, surround: Option<&gst::Pad>| match chosen {
        Some(pad) => link_audio(pipeline, pad, surround, &wiring),
        None => Ok(()),
    };
    route_demuxer(pipeline, choice, video, audio)
}

/// Parser and tee now; the rungs when the parser's caps say what the picture is.
fn link_video(pipeline: &gst::Pipeline, pad: &gst::Pad, media: &str, w: &Arc<Wiring>) -> Result<(), String> {
    let h264 = media == "video/x-h264";
    // The tee has no branch yet when the parser negotiates: its output format is fixed here,
    // as the muxer of the copied rung takes it.
    let (parser, caps) = if h264 {
        (
            gst::ElementFactory::make("h264parse").property("config-interval", -1i32),
            // An MP4 muxer takes H.264 with its parameter sets out of band.
            if w.clock.is_some() {
                "video/x-h264,stream-format=avc,alignment=au"
            } else {
                "video/x-h264,stream-format=byte-stream,alignment=au"
            },
        )
    } else {
        (gst::ElementFactory::make("mpegvideoparse"), "video/mpeg")
    };
    let parser = parser.build().map_err(|e| e.to_string())?;
    let filter = gst::ElementFactory::make("capsfilter")
        .property("caps", gst::Caps::from_str(caps).map_err(|e| e.to_string())?)
        .build()
        .map_err(|e| e.to_string())?;
    let tee = make_tee()?;
    pipeline.add_many([&parser, &filter, &tee]).map_err(|e| e.to_string())?;
    gst::Element::link_many([&parser, &filter, &tee]).map_err(|e| e.to_string())?;
    let parsed = filter.static_pad("src").ok_or("capsfilter without src pad")?;
    // Frames before the first key frame decode to nothing useful; the copied rung could not
    // start with them. Dropped, every rung starts at the same key frame.
    parsed.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        let delta = info
            .buffer()
            .is_some_and(|b| b.flags().contains(gst::BufferFlags::DELTA_UNIT));
        if delta {
            DROP_BUFFER
        } else {
            gst::PadProbeReturn::Remove
        }
    });
    let weak = pipeline.downgrade();
    let wiring = Arc::clone(w);
    let tee_for_probe = tee.clone();
    parsed.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
        let Some(gst::EventView::Caps(caps)) = info.event().map(|e| e.view()) else {
            return gst::PadProbeReturn::Ok;
        };
        let Some(s) = caps.caps().structure(0) else {
            return gst::PadProbeReturn::Ok;
        };
        let Ok(height) = s.get::<i32>("height") else {
            return gst::PadProbeReturn::Ok;
        };
        let Some(pipeline) = weak.upgrade() else {
            return gst::PadProbeReturn::Remove;
        };
        let picture = SourcePicture {
            height: u32::try_from(height).unwrap_or(0),
            h264,
            interlaced: s.get::<&str>("interlace-mode").is_ok_and(|m| m != "progressive"),
        };
        if let Err(error) = link_rungs(&pipeline, &tee_for_probe, picture, &wiring) {
            post_error(&pipeline, &error);
        }
        gst::PadProbeReturn::Remove
    });
    let sink = parser.static_pad("sink").ok_or("parser without sink pad")?;
    pad.link(&sink).map_err(|e| format!("demuxer to parser: {e:?}"))?;
    parser.sync_state_with_parent().map_err(|e| e.to_string())?;
    filter.sync_state_with_parent().map_err(|e| e.to_string())?;
    tee.sync_state_with_parent().map_err(|e| e.to_string())?;
    Ok(())
}

fn make_tee() -> Result<gst::Element, String> {
    gst::ElementFactory::make("tee")
        .property("allow-not-linked", true)
        .build()
        .map_err(|e| e.to_string())
}

/// Links the rungs the picture makes, each to its own muxer, and asks for aligned key frames.
fn link_rungs(
    pipeline: &gst::Pipeline,
    parsed: &gst::Element,
    picture: SourcePicture,
    w: &Wiring,
) -> Result<(), String> {
    let plan = w.ladder.plan(picture);
    tracing::debug!(?picture, ?plan, "Ladder rungs chosen.");
    let copies = plan.contains(&RungSource::Copy);
    let mut decoded: Option<gst::Element> = None;
    let mut wanted: Vec<KeyFrameTimes> = Vec::new();
    for (variant, rung) in plan.iter().enumerate() {
        let mux = &w.muxers[variant];
        match rung {
            RungSource::Copy => {
                let bin = link_through(pipeline, parsed, QUEUE, mux, "video")?;
                if let Some(clock) = &w.clock {
                    follow(
                        &bin.static_pad("src").ok_or("branch has no output")?,
                        clock,
                        Follow::Video,
                    );
                }
            }
            RungSource::Encoded(i) => {
                let tee = match &decoded {
                    Some(tee) => tee.clone(),
                    None => {
                        let tee = make_tee()?;
                        pipeline.add(&tee).map_err(|e| e.to_string())?;
                        let bin = branch_bin(&w.decode).map_err(|e| format!("{}: {e}", w.decode))?;
                        pipeline.add(&bin).map_err(|e| e.to_string())?;
                        link_pads(
                            &request(parsed)?,
                            &bin.static_pad("sink").ok_or("decode without input")?,
                        )?;
                        bin.static_pad("src")
                            .ok_or("decode without output")?
                            .link(&tee.static_pad("sink").ok_or("tee without sink")?)
                            .map_err(|e| format!("decode to tee: {e:?}"))?;
                        bin.sync_state_with_parent().map_err(|e| e.to_string())?;
                        tee.sync_state_with_parent().map_err(|e| e.to_string())?;
                        decoded = Some(tee.clone());
                        tee
                    }
                };
                let bin = link_through(pipeline, &tee, &w.rungs[*i], mux, "video")?;
                // Every encoder sees the same decoded frames: with the same requests they make
                // key frames at the same moments. A rung with a lower frame rate drops frames
                // in front of its encoder, never one a key frame is due on.
                let pace = w.ladder.rungs[*i]
                    .frame_rate
                    .map(|rate| Duration::from_secs(1) / rate.max(1));
                if let Some(clock) = &w.clock {
                    // fMP4: key frames where the clock cuts, and nowhere else.
                    wanted.extend(key_frames_on_request(&bin, pace));
                    follow(
                        &bin.static_pad("src").ok_or("branch has no output")?,
                        clock,
                        Follow::Video,
                    );
                } else if copies {
                    wanted.extend(key_frames_on_request(&bin, pace));
                } else if let Some(plan) = &w.plan {
                    force_key_units_paced(&bin, plan, pace);
                }
            }
        }
    }
    if let Some(clock) = &w.clock {
        // The clock cuts at the source's key frames when the top rung is copied, at any frame
        // when every rung is encoded; the encoders make their key frames there.
        let pad = parsed.static_pad("sink").ok_or("tee without sink")?;
        lead_on_video(&pad, clock, !copies, wanted);
    } else if !wanted.is_empty() {
        // Every source key frame is a key frame of every encoded rung (each encoder makes it at
        // the decoded frame of that moment): the copied rung can only be cut there.
        if let Some(pad) = parsed.static_pad("sink") {
            pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
                let Some(buffer) = info.buffer() else {
                    return gst::PadProbeReturn::Ok;
                };
                if !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT)
                    && let Some(running) = running_time(pad, buffer)
                {
                    for times in &wanted {
                        times.lock().unwrap_or_else(PoisonError::into_inner).push_back(running);
                    }
                }
                gst::PadProbeReturn::Ok
            });
        }
    }
    let mut state = w.state.lock().unwrap_or_else(PoisonError::into_inner);
    state.variants = Some(plan.len());
    if let Some(aac) = state.aac.clone()
        && w.clock.is_none()
    {
        drop(state);
        feed_aac(pipeline, &aac, plan.len(), w)?;
    }
    Ok(())
}

/// The chosen audio track: the shared AAC goes to a tee (and to each video muxer once the rungs
/// are known), the audio-only rung to the last muxer. Without video the shared AAC is the first
/// variant. fMP4 gives the shared AAC and the AC-3 passed through (`surround`) muxers of their
/// own instead.
fn link_audio(pipeline: &gst::Pipeline, pad: &gst::Pad, surround: Option<&gst::Pad>, w: &Wiring) -> Result<(), String> {
    let video_seen = w.state.lock().unwrap_or_else(PoisonError::into_inner).video_seen;
    if let Some(clock) = &w.clock {
        return link_renditions(pipeline, pad, surround, clock, video_seen, w);
    }
    let raw = make_tee()?;
    let aac = make_tee()?;
    pipeline.add_many([&raw, &aac]).map_err(|e| e.to_string())?;
    raw.sync_state_with_parent().map_err(|e| e.to_string())?;
    aac.sync_state_with_parent().map_err(|e| e.to_string())?;
    let audio_only = w.muxers.last().ok_or("no muxer")?;
    link_through(pipeline, &raw, &w.audio_only, audio_only, "audio")?;
    let shared = branch_bin(&w.audio).map_err(|e| format!("{}: {e}", w.audio))?;
    super::super::latency::instrument(&shared, "audio");
    pipeline.add(&shared).map_err(|e| e.to_string())?;
    link_pads(
        &request(&raw)?,
        &shared.static_pad("sink").ok_or("audio without input")?,
    )?;
    shared
        .static_pad("src")
        .ok_or("audio without output")?
        .link(&aac.static_pad("sink").ok_or("tee without sink")?)
        .map_err(|e| format!("audio to tee: {e:?}"))?;
    shared.sync_state_with_parent().map_err(|e| e.to_string())?;
    pad.link(&raw.static_pad("sink").ok_or("tee without sink")?)
        .map_err(|e| format!("demuxer to audio: {e:?}"))?;
    let variants = {
        let mut state = w.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.aac = Some(aac.clone());
        match state.variants {
            Some(n) => Some(n),
            // Radio: no picture is coming; the shared AAC is the first variant.
            None if !video_seen => {
                state.variants = Some(1);
                Some(1)
            }
            None => None,
        }
    };
    if let Some(n) = variants {
        feed_aac(pipeline, &aac, n, w)?;
    }
    Ok(())
}

/// fMP4's audio renditions, each to its own muxer and split where the clock cuts: the shared AAC
/// (leading without video), the AC-3 as it comes, the audio-only rung.
fn link_renditions(
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    surround: Option<&gst::Pad>,
    clock: &Arc<CutClock>,
    video_seen: bool,
    w: &Wiring,
) -> Result<(), String> {
    let raw = make_tee()?;
    pipeline.add(&raw).map_err(|e| e.to_string())?;
    raw.sync_state_with_parent().map_err(|e| e.to_string())?;
    let mux = |i: usize| w.muxers.get(w.video_outputs + i).ok_or("no muxer");
    let how = if video_seen { Follow::Audio } else { Follow::LeadAudio };
    let aac = link_through(pipeline, &raw, &w.audio, mux(0)?, "audio")?;
    follow(&aac.static_pad("src").ok_or("branch has no output")?, clock, how);
    if let Some(surround) = surround {
        let graph = format!("{QUEUE} ! ac3parse");
        let bin = if surround == pad {
            link_through(pipeline, &raw, &graph, mux(1)?, "audio")?
        } else {
            link_pad_through(pipeline, surround, &graph, mux(1)?, "audio")?
        };
        follow(
            &bin.static_pad("src").ok_or("branch has no output")?,
            clock,
            Follow::Audio,
        );
    }
    let audio_only = link_through(pipeline, &raw, &w.audio_only, mux(2)?, "audio")?;
    follow(
        &audio_only.static_pad("src").ok_or("branch has no output")?,
        clock,
        Follow::Audio,
    );
    pad.link(&raw.static_pad("sink").ok_or("tee without sink")?)
        .map_err(|e| format!("demuxer to audio: {e:?}"))?;
    Ok(())
}

/// The shared AAC into the first `variants` muxers.
fn feed_aac(pipeline: &gst::Pipeline, aac: &gst::Element, variants: usize, w: &Wiring) -> Result<(), String> {
    for mux in w.muxers.iter().take(variants) {
        link_through(pipeline, aac, QUEUE, mux, "audio")?;
    }
    Ok(())
}

/// A tee's new src pad.
fn request(tee: &gst::Element) -> Result<gst::Pad, String> {
    tee.request_pad_simple("src_%u")
        .ok_or_else(|| "the tee refused a pad".to_owned())
}

fn link_pads(src: &gst::Pad, sink: &gst::Pad) -> Result<(), String> {
    src.link(sink)
        .map(|_| ())
        .map_err(|e| format!("linking {} to {}: {e:?}", src.path_string(), sink.path_string()))
}

/// `tee` → a branch made from `graph` → a new pad of `mux`. Encoders in the branch report
/// their latency.
fn link_through(
    pipeline: &gst::Pipeline,
    tee: &gst::Element,
    graph: &str,
    mux: &gst::Element,
    kind: &str,
) -> Result<gst::Bin, String> {
    link_pad_through(pipeline, &request(tee)?, graph, mux, kind)
}

/// `src` → a branch made from `graph` → a pad of `mux`: its one input (`cmafmux`) or a new
/// one.
fn link_pad_through(
    pipeline: &gst::Pipeline,
    src: &gst::Pad,
    graph: &str,
    mux: &gst::Element,
    kind: &str,
) -> Result<gst::Bin, String> {
    let bin = branch_bin(graph).map_err(|e| format!("{graph}: {e}"))?;
    super::super::latency::instrument(&bin, kind);
    pipeline.add(&bin).map_err(|e| e.to_string())?;
    let mux_sink = match mux.static_pad("sink") {
        Some(pad) => pad,
        None => {
            let template = mux
                .pad_template(kind)
                .or_else(|| {
                    mux.pad_template_list()
                        .into_iter()
                        .find(|t| t.direction() == gst::PadDirection::Sink && t.presence() == gst::PadPresence::Request)
                })
                .ok_or("muxer without inputs")?;
            mux.request_pad(&template, None, None).ok_or("muxer refused a pad")?
        }
    };
    link_pads(&bin.static_pad("src").ok_or("branch has no output")?, &mux_sink)?;
    link_pads(src, &bin.static_pad("sink").ok_or("branch has no input")?)?;
    bin.sync_state_with_parent().map_err(|e| e.to_string())?;
    Ok(bin)
}
