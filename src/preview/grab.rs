//! One frame of a channel as a JPEG: `souphttpsrc ! tsdemux`, the first video stream through
//! `decodebin ! videoconvert ! deinterlace ! videoscale ! video/x-raw,width=W,pixel-aspect-ratio=1/1
//! ! jpegenc ! appsink`, other streams to `fakesink`.
//!
//! The frame is the first key frame: a probe on the video decoder's input drops everything
//! before the first buffer that is not a delta unit (the parsers inside decodebin flag them),
//! and the sink skips any picture timed before it (an open GOP's leading B-frames). A channel
//! whose program has no video answers `NoVideo` as soon as the demuxer has announced its
//! streams. The pipeline is owned by a [`PipelineGuard`] and set to Null off the async threads,
//! within a bounded time.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use tokio::sync::oneshot;

use crate::pipeline::PipelineGuard;
use crate::pipeline::build::{caps_name, discard};

/// What to grab.
pub(crate) struct GrabSpec<'a> {
    pub url: &'a str,
    /// `Authorization` header for the receiver, sent up front.
    pub authorization: Option<&'a str>,
    pub width: u32,
    /// Longest wait for the frame, from the start of the pipeline.
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum GrabError {
    #[error("the channel has no video")]
    NoVideo,
    /// The receiver refused the stream (404, 401).
    #[error("the receiver refused the stream: {0}")]
    Refused(String),
    #[error("{0}")]
    Failed(String),
}

type FrameSender = oneshot::Sender<Result<Bytes, GrabError>>;

/// What the streaming-thread callbacks share with the waiting task; no GStreamer objects.
#[derive(Default)]
struct Shared {
    frame: Mutex<Option<FrameSender>>,
    /// Presentation time of the first key frame the decoder got; `u64::MAX` until then.
    key_pts: AtomicU64,
    video: AtomicBool,
}

impl Shared {
    fn answer(&self, result: Result<Bytes, GrabError>) {
        let sender = self
            .frame
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(sender) = sender {
            let _ = sender.send(result);
        }
    }
}

/// Decodes the first key frame of the stream at `spec.url` into a JPEG `spec.width` wide.
pub(crate) async fn first_frame(spec: &GrabSpec<'_>) -> Result<Bytes, GrabError> {
    let (sender, frame) = oneshot::channel();
    let shared = Arc::new(Shared {
        frame: Mutex::new(Some(sender)),
        key_pts: AtomicU64::new(u64::MAX),
        video: AtomicBool::new(false),
    });
    let guard = build(spec, &shared).map_err(GrabError::Failed)?;
    let result = run(&guard, frame, &shared, spec.timeout).await;
    guard.stop().await;
    result
}

fn build(spec: &GrabSpec<'_>, shared: &Arc<Shared>) -> Result<PipelineGuard, String> {
    let description = format!(
        "souphttpsrc name=src ! tsdemux name=demux \
         decodebin name=decode \
         videoconvert name=convert ! deinterlace ! videoscale ! \
         video/x-raw,width={},pixel-aspect-ratio=1/1 ! jpegenc quality=85 ! \
         appsink name=sink sync=false max-buffers=1",
        spec.width.max(16)
    );
    let pipeline = gst::parse::launch(&description)
        .map_err(|e| e.to_string())?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline".to_owned())?;
    let guard = PipelineGuard::new(pipeline.clone());
    let element = |name: &str| pipeline.by_name(name).ok_or_else(|| format!("no element {name}"));
    let src = element("src")?;
    crate::pipeline::configure_source(
        &src,
        spec.url,
        spec.authorization,
        spec.timeout.as_secs().clamp(1, 3600) as u32,
    );

    // The demuxer's first video stream goes to the decoder; everything else is thrown away.
    let demux = element("demux")?;
    let weak = pipeline.downgrade();
    let state = Arc::clone(shared);
    demux.connect_pad_added(move |_, pad| {
        let Some(pipeline) = weak.upgrade() else { return };
        let is_video = caps_name(pad).starts_with("video/");
        let result = if is_video && !state.video.swap(true, Ordering::SeqCst) {
            pipeline
                .by_name("decode")
                .and_then(|d| d.static_pad("sink"))
                .ok_or_else(|| "no decoder".to_owned())
                .and_then(|sink| pad.link(&sink).map(|_| ()).map_err(|e| format!("{e:?}")))
        } else {
            discard(&pipeline, pad)
        };
        if let Err(error) = result {
            state.answer(Err(GrabError::Failed(format!("linking {}: {error}", pad.name()))));
        }
    });
    let state = Arc::clone(shared);
    demux.connect_no_more_pads(move |_| {
        if !state.video.load(Ordering::SeqCst) {
            state.answer(Err(GrabError::NoVideo));
        }
    });

    // Decoded video goes on to the scaler and encoder.
    let decode = element("decode")?;
    let weak = pipeline.downgrade();
    decode.connect_pad_added(move |_, pad| {
        let Some(pipeline) = weak.upgrade() else { return };
        if !caps_name(pad).starts_with("video/") {
            return;
        }
        if let Some(sink) = pipeline.by_name("convert").and_then(|c| c.static_pad("sink"))
            && !sink.is_linked()
        {
            let _ = pad.link(&sink);
        }
    });

    // Whatever decoder decodebin picks starts at a key frame.
    let state = Arc::clone(shared);
    pipeline.connect_deep_element_added(move |_, _, element| {
        let is_video_decoder = element.factory().is_some_and(|f| {
            let klass = f.metadata(gst::ELEMENT_METADATA_KLASS).unwrap_or_default();
            klass.contains("Decoder") && klass.contains("Video")
        });
        if !is_video_decoder {
            return;
        }
        let Some(pad) = element.static_pad("sink") else { return };
        let state = Arc::clone(&state);
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let Some(buffer) = info.buffer() else {
                return gst::PadProbeReturn::Ok;
            };
            if buffer.flags().contains(gst::BufferFlags::DELTA_UNIT) {
                return crate::pipeline::DROP_BUFFER;
            }
            let pts = buffer.pts().map_or(0, |t| t.nseconds());
            state.key_pts.store(pts, Ordering::SeqCst);
            gst::PadProbeReturn::Remove
        });
    });

    let sink = element("sink")?
        .downcast::<gst_app::AppSink>()
        .map_err(|_| "sink is not an appsink".to_owned())?;
    let state = Arc::clone(shared);
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let buffer = sample.buffer().ok_or(gst::FlowError::Error)?;
                let key = state.key_pts.load(Ordering::SeqCst);
                if key != u64::MAX && buffer.pts().is_some_and(|pts| pts.nseconds() < key) {
                    // Decoded before the key frame's time: a leading picture of an open GOP.
                    return Ok(gst::FlowSuccess::Ok);
                }
                let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
                state.answer(Ok(Bytes::copy_from_slice(map.as_slice())));
                // One frame is all: upstream stops here.
                Err(gst::FlowError::Eos)
            })
            .build(),
    );
    Ok(guard)
}

/// Plays the pipeline until the frame arrives, the stream fails, or `timeout` passes.
async fn run(
    guard: &PipelineGuard,
    mut frame: oneshot::Receiver<Result<Bytes, GrabError>>,
    shared: &Shared,
    timeout: Duration,
) -> Result<Bytes, GrabError> {
    let pipeline = guard.pipeline();
    let bus = pipeline
        .bus()
        .ok_or_else(|| GrabError::Failed("pipeline without bus".into()))?;
    let mut messages = bus.stream();
    let started = pipeline.set_state(gst::State::Playing);
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            answer = &mut frame => {
                return answer.unwrap_or_else(|_| Err(GrabError::Failed("the pipeline went away".into())));
            }
            message = messages.next() => {
                let Some(message) = message else {
                    return Err(GrabError::Failed("the pipeline's bus closed".into()));
                };
                match message.view() {
                    gst::MessageView::Error(e) => {
                        // A frame that made it before the error still counts.
                        if let Ok(Ok(jpeg)) = frame.try_recv() {
                            return Ok(jpeg);
                        }
                        let source = message.src().map(|s| s.name().to_string()).unwrap_or_default();
                        let text = match e.debug() {
                            Some(debug) => format!("{source}: {} ({debug})", e.error()),
                            None => format!("{source}: {}", e.error()),
                        };
                        if e.error().matches(gst::ResourceError::NotFound)
                            || e.error().matches(gst::ResourceError::NotAuthorized)
                        {
                            return Err(GrabError::Refused(text));
                        }
                        if !shared.video.load(Ordering::SeqCst) && text.contains("not-linked") {
                            return Err(GrabError::NoVideo);
                        }
                        return Err(GrabError::Failed(text));
                    }
                    gst::MessageView::Eos(_) => {
                        return frame
                            .try_recv()
                            .unwrap_or_else(|_| Err(GrabError::Failed("the stream ended before a picture".into())));
                    }
                    _ => {}
                }
            }
            () = &mut deadline => {
                return Err(match started {
                    Err(error) => GrabError::Failed(format!("cannot start the pipeline: {error}")),
                    Ok(_) => GrabError::Failed(format!("no picture within {timeout:?}")),
                });
            }
        }
    }
}
