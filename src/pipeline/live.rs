//! A session's running GStreamer graph behind one seam: [`LiveGraph`] starts the graph a
//! [`BuildSpec`] describes, turns the muxer's output and the bus into typed [`GraphEvent`]s, says
//! what the muxer carries, and changes state off the async workers, bounded in time. Whoever
//! drives it sees no GStreamer type.

use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt as _;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use tokio::sync::mpsc;

use super::batch::Batcher;
use super::guard::PipelineGuard;
use super::{BuildError, BuildSpec, SourceActivity, UNPLAYABLE_VIDEO, build, is_encoder_full, read_latency};

/// How long the change to Playing may take: the source connects in its own thread, so this is
/// a bound on a wedged element, not on the receiver.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Batches of muxer output waiting for the driver before the streaming thread blocks.
const QUEUED_BATCHES: usize = 64;

/// What a running graph reports, in the order it happened.
#[derive(Debug, Clone, PartialEq)]
pub enum GraphEvent {
    /// Output `output`'s muxer output (a ladder has one per variant, other graphs one): whole
    /// 188-byte packets, batched (up to 64 KiB or 20 ms).
    Chunk { output: usize, bytes: Bytes },
    /// A fragmented-MP4 output's init segment or fragment, whole (an fMP4 ladder's renditions).
    Fragment { output: usize, fragment: Fragment },
    /// Encoder latency samples, per buffer, from the latency probes.
    Latency { encoder: String, seconds: Vec<f64> },
    /// The demuxer saw a continuity-counter jump (a lost packet upstream).
    Continuity,
    /// The graph failed; it puts out nothing more.
    Failed(GraphFailure),
    /// The stream ended (end of stream, or the bus is gone).
    Ended,
}

/// What an fMP4 muxer put out, whole.
#[derive(Debug, Clone, PartialEq)]
pub enum Fragment {
    /// The init segment (`ftyp` and `moov`): first, and again when the input's caps change.
    Init(Bytes),
    /// One fragment (`styp`, `moof`, `mdat`), one HLS segment: the running time it starts at,
    /// and how long it plays.
    Media {
        bytes: Bytes,
        start: Duration,
        duration: Duration,
    },
}

/// What crosses from an appsink's streaming thread to the driver.
#[derive(Debug)]
enum Output {
    Chunk(Bytes),
    Fragment(Fragment),
}

/// What kind of failure, as far as the driver must act differently on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The receiver refused the stream (HTTP 404 or 401/403).
    Refused,
    /// Reading the receiver's port failed otherwise (no connection, a reset, a server error).
    Source,
    /// Video that no client of this output decodes (MPEG-2 into HLS without transcoding).
    Unplayable,
    /// The encoder has no free session (NVENC's cap, see [`is_encoder_full`]).
    EncoderFull,
    /// Anything else: an element failed.
    Other,
}

/// A failure of a graph: its kind, and the element's error in words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct GraphFailure {
    pub kind: FailureKind,
    pub message: String,
}

/// Why a graph did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The template does not make a graph here (a bad element, a bad property).
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The graph was built but would not play.
    #[error(transparent)]
    Start(GraphFailure),
}

/// What the muxer carries, from its input caps, for an HLS master playlist.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MuxedMedia {
    /// H.264 video, when the muxer has it.
    pub video: Option<H264Caps>,
    /// Whether AAC audio (MPEG-4) goes into the muxer.
    pub aac_audio: bool,
    /// AC-3 (`ac-3`) or E-AC-3 (`ec-3`) going into the muxer, as RFC 6381 names them.
    pub surround: Option<&'static str>,
    /// The audio's channels, when the caps say.
    pub channels: Option<u32>,
}

/// H.264 as negotiated.
#[derive(Debug, Clone, PartialEq)]
pub struct H264Caps {
    pub profile: String,
    pub level: String,
    pub width: u32,
    pub height: u32,
    /// Frames per second; `None` when the caps do not say.
    pub frame_rate: Option<f64>,
}

/// A playing graph. Dropping it sets the pipeline to Null in place; [`LiveGraph::stop`] does it
/// off the async workers.
pub struct LiveGraph {
    guard: PipelineGuard,
    /// Each output's muxer.
    muxers: Vec<Option<gst::Element>>,
    source_activity: Arc<SourceActivity>,
    /// Each output's muxed bytes or fragments; empty for a graph without an appsink.
    data: Vec<mpsc::Receiver<Output>>,
    /// The output polled first next time, so that no output starves the others.
    next: usize,
    bus: gst::bus::BusStream,
}

impl LiveGraph {
    /// Builds the graph, wires its output and sets it to Playing (on a blocking thread, at most
    /// [`START_TIMEOUT`]).
    pub async fn start(spec: &BuildSpec<'_>) -> Result<Self, StartError> {
        let graph = build(spec)?;
        let data = graph
            .outputs
            .iter()
            .map(|o| {
                if o.fragmented {
                    wire_fragments(&o.sink)
                } else {
                    wire_output(&o.sink)
                }
            })
            .collect();
        let muxers = graph.outputs.iter().map(|o| o.mux.clone()).collect();
        let pipeline = graph.guard.pipeline().clone();
        let bus = pipeline
            .bus()
            .ok_or_else(|| StartError::Start(other("pipeline without bus".into())))?;
        let mut live = Self {
            guard: graph.guard,
            muxers,
            source_activity: graph.source_activity,
            data,
            next: 0,
            bus: bus.stream(),
        };
        let playing = tokio::task::spawn_blocking(move || pipeline.set_state(gst::State::Playing));
        let error = match tokio::time::timeout(START_TIMEOUT, playing).await {
            Ok(Ok(Ok(_))) => return Ok(live),
            Ok(Ok(Err(error))) => error.to_string(),
            Ok(Err(join)) => join.to_string(),
            Err(_) => format!("no change to Playing within {START_TIMEOUT:?}"),
        };
        // The element that failed posted why (an encoder out of sessions, say): keep it.
        let posted = std::iter::from_fn(|| futures_util::FutureExt::now_or_never(live.bus.next()).flatten()).find_map(
            |m| match m.view() {
                gst::MessageView::Error(e) => Some(error_text(&m, e)),
                _ => None,
            },
        );
        let detail = posted.map(|t| format!(" ({t})")).unwrap_or_default();
        let message = format!("cannot start the pipeline: {error}{detail}");
        let kind = if is_encoder_full(&message) {
            FailureKind::EncoderFull
        } else {
            FailureKind::Other
        };
        live.stop().await;
        Err(StartError::Start(GraphFailure { kind, message }))
    }

    /// The next event, as a poll (no future to allocate per event): bus messages first, so a
    /// failure is not queued behind output. Cancel-safe.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<GraphEvent> {
        loop {
            match self.bus.poll_next_unpin(cx) {
                Poll::Ready(None) => return Poll::Ready(GraphEvent::Ended),
                Poll::Ready(Some(message)) => {
                    if let Some(event) = event_of(&message) {
                        return Poll::Ready(event);
                    }
                }
                Poll::Pending => break,
            }
        }
        let count = self.data.len();
        for step in 0..count {
            let output = (self.next + step) % count;
            match self.data[output].poll_recv(cx) {
                Poll::Ready(Some(out)) => {
                    self.next = (output + 1) % count;
                    return Poll::Ready(match out {
                        Output::Chunk(bytes) => GraphEvent::Chunk { output, bytes },
                        Output::Fragment(fragment) => GraphEvent::Fragment { output, fragment },
                    });
                }
                Poll::Ready(None) => return Poll::Ready(GraphEvent::Ended),
                Poll::Pending => {}
            }
        }
        Poll::Pending
    }

    /// Time since the receiver last sent a byte; `None` before the first.
    pub fn source_silence(&self) -> Option<Duration> {
        self.source_activity.any().then(|| self.source_activity.silent_for())
    }

    /// How many outputs put out muxed bytes ([`GraphEvent::Chunk`]): a ladder's variants, one
    /// for other graphs, none for a graph without an appsink.
    pub fn outputs(&self) -> usize {
        self.data.len()
    }

    /// Which outputs' muxers have inputs (a ladder links a variant's once the picture is known;
    /// an output without a muxer counts as in use).
    pub fn outputs_in_use(&self) -> Vec<bool> {
        self.muxers
            .iter()
            .map(|mux| mux.as_ref().is_none_or(|m| m.sink_pads().iter().any(|p| p.is_linked())))
            .collect()
    }

    /// What output `output`'s muxer inputs have negotiated so far.
    pub fn muxed_media(&self, output: usize) -> MuxedMedia {
        let mut media = MuxedMedia::default();
        let Some(Some(mux)) = self.muxers.get(output) else {
            return media;
        };
        for caps in mux.sink_pads().iter().filter_map(|p| p.current_caps()) {
            let Some(s) = caps.structure(0) else { continue };
            if media.video.is_none() {
                media.video = h264_caps(s);
            }
            if s.name() == "audio/mpeg" && s.get::<i32>("mpegversion") == Ok(4) {
                media.aac_audio = true;
            }
            match s.name().as_str() {
                "audio/x-ac3" | "audio/ac3" => media.surround = Some("ac-3"),
                "audio/x-eac3" => media.surround = Some("ec-3"),
                _ => {}
            }
            if s.name().starts_with("audio/") {
                media.channels = s.get::<i32>("channels").ok().and_then(|c| u32::try_from(c).ok());
            }
        }
        media
    }

    /// Sets the pipeline to Null on a blocking thread, bounded ([`PipelineGuard::stop`]).
    pub async fn stop(self) {
        // The output channel goes first: a streaming thread blocked on a full channel is let
        // go, and the change to Null does not wait on it.
        drop(self.data);
        self.guard.stop().await;
    }
}

/// Batches the appsink's buffers into a channel (each send may wake the runtime, so not the
/// muxer's 1316-byte buffers); the tail goes at end of stream. A send waits only if the
/// receiver is gone or [`QUEUED_BATCHES`] behind.
fn wire_output(sink: &gst_app::AppSink) -> mpsc::Receiver<Output> {
    let (tx, rx) = mpsc::channel::<Output>(QUEUED_BATCHES);
    let batcher = Arc::new(Mutex::new(Batcher::default()));
    let at_eos = (Arc::clone(&batcher), tx.clone());
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let buffer = sample.buffer().ok_or(gst::FlowError::Error)?;
                let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
                let batch = batcher
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(map.as_slice(), Instant::now());
                if let Some(batch) = batch {
                    tx.blocking_send(Output::Chunk(batch))
                        .map_err(|_| gst::FlowError::Flushing)?;
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .eos(move |_| {
                let (batcher, tx) = &at_eos;
                let tail = batcher.lock().unwrap_or_else(PoisonError::into_inner).take();
                if let Some(tail) = tail {
                    let _ = tx.blocking_send(Output::Chunk(tail));
                }
            })
            .build(),
    );
    rx
}

/// Reads an fMP4 muxer's appsink (`buffer-list=true`: a list per fragment) into whole pieces.
/// The muxer flags them (gst-plugins-rs `fmp4mux`): the init segment is `HEADER|DISCONT`, a
/// fragment begins with a `HEADER` buffer (`styp`, `moof`, the `mdat` header) whose duration is
/// the fragment's, and its last buffer is a `MARKER`. A fragment cut short by the end of the
/// stream is dropped.
fn wire_fragments(sink: &gst_app::AppSink) -> mpsc::Receiver<Output> {
    let (tx, rx) = mpsc::channel::<Output>(QUEUED_BATCHES);
    // The fragment being gathered, its start (running time) and duration.
    let open: Mutex<Option<(bytes::BytesMut, Duration, Duration)>> = Mutex::new(None);
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let buffers: Vec<&gst::BufferRef> = match sample.buffer_list() {
                    Some(list) => list.iter().collect(),
                    None => sample.buffer().into_iter().collect(),
                };
                let segment = sample
                    .segment()
                    .and_then(|s| s.downcast_ref::<gst::format::Time>().cloned());
                let mut done = Vec::new();
                let mut open = open.lock().unwrap_or_else(PoisonError::into_inner);
                for buffer in buffers {
                    let flags = buffer.flags();
                    let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
                    if flags.contains(gst::BufferFlags::HEADER | gst::BufferFlags::DISCONT) {
                        done.push(Fragment::Init(Bytes::copy_from_slice(&map)));
                        continue;
                    }
                    if flags.contains(gst::BufferFlags::HEADER) && !flags.contains(gst::BufferFlags::DELTA_UNIT) {
                        let duration = buffer.duration().map_or(Duration::ZERO, Duration::from);
                        // The header's PTS is a position in the muxer's segment (the fragment's
                        // earliest); the `tfdt` is that running time plus `decode-time-offset`.
                        let start = segment
                            .as_ref()
                            .zip(buffer.pts())
                            .and_then(|(s, pts)| s.to_running_time(pts))
                            .map_or(Duration::ZERO, Duration::from);
                        *open = Some((bytes::BytesMut::from(&map[..]), start, duration));
                    } else if let Some((bytes, _, _)) = open.as_mut() {
                        bytes.extend_from_slice(&map);
                    }
                    if flags.contains(gst::BufferFlags::MARKER)
                        && let Some((bytes, start, duration)) = open.take()
                    {
                        done.push(Fragment::Media {
                            bytes: bytes.freeze(),
                            start,
                            duration,
                        });
                    }
                }
                drop(open);
                for fragment in done {
                    tx.blocking_send(Output::Fragment(fragment))
                        .map_err(|_| gst::FlowError::Flushing)?;
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    rx
}

/// The event a bus message means, if any.
fn event_of(message: &gst::Message) -> Option<GraphEvent> {
    match message.view() {
        gst::MessageView::Error(e) => Some(GraphEvent::Failed(classify(message, e))),
        gst::MessageView::Eos(_) => Some(GraphEvent::Ended),
        gst::MessageView::Element(_) => read_latency(message).map(|latency| GraphEvent::Latency {
            encoder: latency.encoder,
            seconds: latency.seconds,
        }),
        gst::MessageView::Warning(w) => {
            let text = w.error().to_string();
            if text.to_ascii_lowercase().contains("continuity") {
                Some(GraphEvent::Continuity)
            } else {
                tracing::debug!(warning = %text, "Pipeline warning.");
                None
            }
        }
        _ => None,
    }
}

/// An error message as a failure the driver can act on.
fn classify(message: &gst::Message, e: &gst::message::Error) -> GraphFailure {
    let text = error_text(message, e);
    let error = e.error();
    let kind = if error.matches(gst::StreamError::WrongType) && error.message() == UNPLAYABLE_VIDEO {
        FailureKind::Unplayable
    } else if error.matches(gst::ResourceError::NotFound) || error.matches(gst::ResourceError::NotAuthorized) {
        FailureKind::Refused
    } else if error.is::<gst::ResourceError>() {
        // Any other resource error is the source failing to read the port.
        FailureKind::Source
    } else if is_encoder_full(&text) {
        FailureKind::EncoderFull
    } else {
        FailureKind::Other
    };
    GraphFailure { kind, message: text }
}

fn other(message: String) -> GraphFailure {
    GraphFailure {
        kind: FailureKind::Other,
        message,
    }
}

/// `{element path}: {message} ({debug})`: the debug part names the failed step (see
/// [`is_encoder_full`]).
fn error_text(message: &gst::Message, e: &gst::message::Error) -> String {
    let element = message.src().map(|s| s.path_string().to_string()).unwrap_or_default();
    match e.debug() {
        Some(debug) => format!("{element}: {} ({debug})", e.error()),
        None => format!("{element}: {}", e.error()),
    }
}

fn h264_caps(s: &gst::StructureRef) -> Option<H264Caps> {
    if s.name() != "video/x-h264" {
        return None;
    }
    let fps = s
        .get::<gst::Fraction>("framerate")
        .ok()
        .filter(|f| f.denom() > 0 && f.numer() > 0);
    Some(H264Caps {
        profile: s.get::<&str>("profile").unwrap_or("high").to_owned(),
        level: s.get::<&str>("level").unwrap_or("4").to_owned(),
        width: u32::try_from(s.get::<i32>("width").ok()?).ok()?,
        height: u32::try_from(s.get::<i32>("height").ok()?).ok()?,
        frame_rate: fps.map(|f| f64::from(f.numer()) / f64::from(f.denom())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two H.264 rungs from one tee and an AAC rendition, each to its own `cmafmux`, cut by one
    /// clock (`super::super::fragments`), read as whole fragments: fragment n of every rendition
    /// starts at the same moment (the audio on the frame nearest it), the rungs with a key frame.
    #[test]
    fn fmp4_renditions_come_as_whole_fragments_cut_at_the_same_moments() {
        use super::super::fragments::{CutClock, Follow, follow, lead_on_video};
        use super::super::keyframes::{SegmentPlan, key_frames_on_request};
        if super::super::init().is_err() || gst::ElementFactory::find("x264enc").is_none() {
            eprintln!("SKIPPED fmp4_renditions_come_as_whole_fragments_cut_at_the_same_moments: no x264enc here");
            return;
        }
        let rung = |i: usize, width: u32| {
            format!(
                "t. ! queue ! videoscale ! video/x-raw,width={width},height={} \
                 ! x264enc speed-preset=ultrafast tune=zerolatency key-int-max=1000 bframes=0 option-string=scenecut=0 \
                 ! h264parse ! video/x-h264,stream-format=avc,alignment=au \
                 ! cmafmux name=m{i} manual-split=true ! appsink name=s{i} sync=false buffer-list=true",
                width * 9 / 16
            )
        };
        let description = format!(
            "videotestsrc num-buffers=150 ! video/x-raw,format=I420,width=320,height=180,framerate=50/1 ! tee name=t \
             {} {} audiotestsrc num-buffers=141 samplesperbuffer=1024 ! audio/x-raw,rate=48000,channels=2 \
             ! avenc_aac ! aacparse ! audio/mpeg,mpegversion=4,stream-format=raw \
             ! cmafmux name=m2 manual-split=true ! appsink name=s2 sync=false buffer-list=true",
            rung(0, 320),
            rung(1, 160)
        );
        let pipeline = gst::parse::launch(&description)
            .unwrap()
            .downcast::<gst::Pipeline>()
            .unwrap();
        let clock = CutClock::new(SegmentPlan::new(Vec::new(), Duration::from_millis(500)));
        let wanted = key_frames_on_request(pipeline.upcast_ref(), None);
        assert_eq!(wanted.len(), 2, "both encoders ask for key frames");
        let tee = pipeline.by_name("t").unwrap();
        lead_on_video(&tee.static_pad("sink").unwrap(), &clock, true, wanted);
        let mut outputs = Vec::new();
        for (i, how) in [Follow::Video, Follow::Video, Follow::Audio].into_iter().enumerate() {
            let mux = pipeline.by_name(&format!("m{i}")).unwrap();
            follow(&mux.static_pad("sink").unwrap().peer().unwrap(), &clock, how);
            let sink = pipeline
                .by_name(&format!("s{i}"))
                .unwrap()
                .downcast::<gst_app::AppSink>()
                .unwrap();
            outputs.push(wire_fragments(&sink));
        }
        let guard = PipelineGuard::new(pipeline.clone());
        guard.pipeline().set_state(gst::State::Playing).unwrap();
        let bus = pipeline.bus().unwrap();
        let end = bus
            .timed_pop_filtered(
                gst::ClockTime::from_seconds(60),
                &[gst::MessageType::Eos, gst::MessageType::Error],
            )
            .expect("the stream ends");
        assert!(matches!(end.view(), gst::MessageView::Eos(_)), "{end:?}");
        // (start, duration, first bytes) of each output's fragments, after its init segment.
        let fragments: Vec<Vec<(Duration, Duration)>> = outputs
            .iter_mut()
            .map(|rx| {
                let mut items = std::iter::from_fn(|| rx.try_recv().ok()).map(|o| match o {
                    Output::Fragment(f) => f,
                    Output::Chunk(_) => panic!("bytes from an fMP4 output"),
                });
                let Some(Fragment::Init(init)) = items.next() else {
                    panic!("the init segment first")
                };
                assert_eq!(&init[4..8], b"ftyp", "an init segment starts with ftyp");
                items
                    .map(|f| match f {
                        Fragment::Media { bytes, start, duration } => {
                            assert_eq!(&bytes[4..8], b"styp", "a fragment starts with styp");
                            (start, duration)
                        }
                        Fragment::Init(_) => panic!("one init segment"),
                    })
                    .collect()
            })
            .collect();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let starts = |i: usize| fragments[i].iter().map(|f| ms(f.0)).collect::<Vec<_>>();
        assert!(fragments[0].len() >= 5, "3 s in 0.5 s fragments: {:?}", starts(0));
        assert_eq!(starts(0), starts(1), "both rungs cut on the same frames");
        assert_eq!(
            fragments[2].len(),
            fragments[0].len(),
            "as many audio fragments: {:?}",
            starts(2)
        );
        for (n, (video, audio)) in starts(0).iter().zip(starts(2)).enumerate().skip(1) {
            assert!(
                (video - audio).abs() <= 10.7,
                "audio fragment {n} at {audio} ms starts on the frame nearest the cut at {video} ms"
            );
        }
        let full: Vec<f64> = fragments[0][..fragments[0].len() - 1].iter().map(|f| ms(f.1)).collect();
        assert!(
            full.iter().all(|d| (d - 500.0).abs() < 0.5),
            "0.5 s fragments: {full:?}"
        );
    }

    fn error(domain_error: gst::glib::Error, debug: Option<&str>) -> gst::Message {
        let mut builder = gst::message::Error::builder_from_error(domain_error);
        if let Some(debug) = debug {
            builder = builder.debug(debug);
        }
        builder.build()
    }

    #[test]
    fn errors_are_classified_for_the_driver() {
        gst::init().unwrap();
        let cases = [
            (
                gst::glib::Error::new(gst::ResourceError::NotFound, "Not Found"),
                None,
                FailureKind::Refused,
            ),
            (
                gst::glib::Error::new(gst::ResourceError::NotAuthorized, "Unauthorized"),
                None,
                FailureKind::Refused,
            ),
            (
                gst::glib::Error::new(gst::ResourceError::Read, "Could not read from resource."),
                None,
                FailureKind::Source,
            ),
            (
                gst::glib::Error::new(gst::StreamError::WrongType, UNPLAYABLE_VIDEO),
                None,
                FailureKind::Unplayable,
            ),
            (
                gst::glib::Error::new(gst::StreamError::WrongType, "some other type problem"),
                None,
                FailureKind::Other,
            ),
            (
                gst::glib::Error::new(gst::LibraryError::Init, "Could not initialize supporting library."),
                Some("Failed to open encoder"),
                FailureKind::EncoderFull,
            ),
            (
                gst::glib::Error::new(gst::StreamError::Encode, "Could not encode stream."),
                Some("Encode x264 frame failed."),
                FailureKind::Other,
            ),
        ];
        for (domain_error, debug, kind) in cases {
            let text = domain_error.to_string();
            let message = error(domain_error, debug);
            let gst::MessageView::Error(e) = message.view() else {
                unreachable!()
            };
            let failure = classify(&message, e);
            assert_eq!(failure.kind, kind, "{text}");
            assert!(failure.message.contains(&text), "{failure:?}");
            assert_eq!(event_of(&message), Some(GraphEvent::Failed(failure)));
        }
    }

    #[test]
    fn warnings_latency_and_eos_become_events() {
        gst::init().unwrap();
        let continuity = gst::message::Warning::builder(gst::StreamError::Demux, "CONTINUITY: mismatch").build();
        assert_eq!(event_of(&continuity), Some(GraphEvent::Continuity));
        let other = gst::message::Warning::builder(gst::StreamError::Demux, "something else").build();
        assert_eq!(event_of(&other), None);
        assert_eq!(event_of(&gst::message::Eos::new()), Some(GraphEvent::Ended));
        let latency = gst::Structure::builder(super::super::latency::MESSAGE)
            .field("branch", "audio")
            .field("encoder", "avenc_aac")
            .field("seconds", gst::Array::new([0.012f64]))
            .build();
        assert_eq!(
            event_of(&gst::message::Element::new(latency)),
            Some(GraphEvent::Latency {
                encoder: "avenc_aac".into(),
                seconds: vec![0.012]
            })
        );
    }

    #[test]
    fn h264_caps_are_read_and_others_ignored() {
        gst::init().unwrap();
        let caps = gst::Caps::builder("video/x-h264")
            .field("profile", "main")
            .field("level", "3.1")
            .field("width", 1024i32)
            .field("height", 576i32)
            .field("framerate", gst::Fraction::new(50, 1))
            .build();
        assert_eq!(
            h264_caps(caps.structure(0).unwrap()),
            Some(H264Caps {
                profile: "main".into(),
                level: "3.1".into(),
                width: 1024,
                height: 576,
                frame_rate: Some(50.0),
            })
        );
        let mpeg2 = gst::Caps::builder("video/mpeg").field("mpegversion", 2i32).build();
        assert_eq!(h264_caps(mpeg2.structure(0).unwrap()), None);
    }
}
