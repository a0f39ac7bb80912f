//! One connection of a session to the receiver: locate the port, build the GStreamer graph, play
//! it, and turn its output and bus messages into segments, chunks and outcomes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Fanout, Join, Outcome, Session, TICK};
use crate::pipeline::{self, BuildSpec};
use crate::session::SessionError;
use crate::pipeline::batch::Batcher;
use crate::session::hls::{VideoInfo, avc1_codec};
use crate::session::segmenter::{Segmenter, media_end};

impl Session {
    /// Runs one connection to the receiver until it ends, fails, stalls or nobody watches.
    pub(super) async fn connect(
        &self,
        fan: &mut Fanout,
        joins: &mut mpsc::Receiver<Join>,
        shutdown: &CancellationToken,
        requested: Instant,
    ) -> Outcome {
        // Until the first media, connects belong to the session start; later ones to the session.
        // Never entered, so it ends when dropped, after the pipeline is set to Playing.
        let build = match fan.start_trace.as_ref().filter(|s| !s.is_none()) {
            Some(start) => tracing::info_span!(parent: start, "pipeline.build"),
            None => tracing::info_span!("pipeline.build"),
        };
        let source_url = match self.start.locator.locate().await {
            Ok(url) => url,
            Err(reason) => return Outcome::Failed(reason),
        };
        let plan = self.settings.hls_plan();
        let spec = BuildSpec {
            template: &self.start.template,
            source_url: &source_url,
            authorization: self.start.authorization.as_deref(),
            encoder: self.start.encoder.as_ref(),
            audio_languages: &self.settings.audio_languages,
            keyint: 50,
            // souphttpsrc's own read timeout is a backstop, beyond the session's own checks
            // (a stall after `stall_timeout`, a start after `start_timeout`), which come first:
            // a receiver still tuning must not be cut off by the source.
            stall_timeout_s: (self.settings.stall_timeout.max(self.settings.start_timeout) + Duration::from_secs(1))
                .as_secs()
                .clamp(1, 3600) as u32,
            output: self.key.output,
            segment_plan: self.hls.is_some().then_some(&plan),
        };
        let graph = match pipeline::build(&spec) {
            Ok(graph) => graph,
            Err(error) => {
                let message = error.to_string();
                self.fail_waiting(
                    fan,
                    SessionError::Pipeline {
                        profile: self.key.profile.clone(),
                        message: message.clone(),
                    },
                );
                return Outcome::Refused(message);
            }
        };
        let outcome = self
            .run_graph(fan, joins, shutdown, requested, &graph, build, &plan)
            .await;
        // Set to Null on a blocking thread, bounded: a source stuck in a read must not hold a
        // runtime worker, nor this session's next connect.
        graph.guard.stop().await;
        outcome
    }

    /// Plays one connection's graph until it ends, fails, stalls or the session idles.
    #[allow(clippy::too_many_arguments)]
    async fn run_graph(
        &self,
        fan: &mut Fanout,
        joins: &mut mpsc::Receiver<Join>,
        shutdown: &CancellationToken,
        requested: Instant,
        graph: &pipeline::SessionGraph,
        build: tracing::Span,
        plan: &pipeline::SegmentPlan,
    ) -> Outcome {
        // Batches (up to 64 KiB or 20 ms), not the muxer's 1316-byte buffers: each send may
        // wake the runtime. The session task only copies and forwards; a send waits only if
        // it is gone or 64 batches behind.
        let (data_tx, mut data_rx) = mpsc::channel::<Bytes>(64);
        if let Some(sink) = &graph.sink {
            let batcher = Arc::new(std::sync::Mutex::new(Batcher::default()));
            let at_eos = (Arc::clone(&batcher), data_tx.clone());
            sink.set_callbacks(
                gst_app::AppSinkCallbacks::builder()
                    .new_sample(move |sink| {
                        let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                        let buffer = sample.buffer().ok_or(gst::FlowError::Error)?;
                        let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
                        let batch = batcher
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push(map.as_slice(), Instant::now());
                        if let Some(batch) = batch {
                            data_tx.blocking_send(batch).map_err(|_| gst::FlowError::Flushing)?;
                        }
                        Ok(gst::FlowSuccess::Ok)
                    })
                    .eos(move |_| {
                        let (batcher, data_tx) = &at_eos;
                        let tail = batcher.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
                        if let Some(tail) = tail {
                            let _ = data_tx.blocking_send(tail);
                        }
                    })
                    .build(),
            );
        } else {
            drop(data_tx);
        }
        // HLS: segments are cut from the muxer's output, numbered on from the session's last.
        let mut segmenter = self.hls.is_some().then(|| {
            // A reconnect's clocks continue where the last published segment's media ends.
            let last = fan.hls_state.last_sequence().and_then(|s| fan.hls_state.segment(s));
            Segmenter::new(plan.clone(), fan.next_sequence, last.and_then(|s| media_end(&s.bytes)))
        });
        let Some(bus) = graph.guard.pipeline().bus() else {
            return Outcome::Failed("pipeline without bus".into());
        };
        let mut messages = bus.stream();
        if let Err(error) = graph.guard.pipeline().set_state(gst::State::Playing) {
            // The element that failed posted why (an encoder out of sessions, say): keep it.
            let posted = std::iter::from_fn(|| futures_util::FutureExt::now_or_never(messages.next()).flatten())
                .find_map(|m| match m.view() {
                    gst::MessageView::Error(e) => Some(error_text(&m, e)),
                    _ => None,
                });
            let detail = posted.map(|t| format!(" ({t})")).unwrap_or_default();
            return Outcome::Failed(format!("cannot start the pipeline: {error}{detail}"));
        }
        drop(build);
        let connected = Instant::now();
        // When this connection's pipeline last put out anything (read on the ticker, so the
        // per-buffer path only sets a flag), for a receiver that sends bytes which are no stream.
        let mut last_output: Option<Instant> = None;
        let mut output_since_tick = false;
        let mut idle_since: Option<Instant> = None;
        let mut ticker = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Outcome::Shutdown,
                join = joins.recv(), if fan.accepting => match join {
                    Some(join) if fan.delivered => { let _ = join.reply.send(Ok(self.subscribe(fan))); }
                    Some(join) => fan.waiting.push(join),
                    // The registry dropped this session: serve who is here, take nobody new.
                    None => fan.accepting = false,
                },
                data = data_rx.recv(), if graph.sink.is_some() => match data {
                    Some(buffer) => {
                        output_since_tick = true;
                        match &mut segmenter {
                            Some(segmenter) => {
                                for piece in segmenter.push(&buffer) {
                                    self.publish_segment(fan, piece, graph.mux.as_ref(), requested);
                                }
                            }
                            None => {
                                fan.received += 1;
                                for chunk in fan.cache.push(&buffer) {
                                    self.broadcast(fan, chunk, requested);
                                }
                            }
                        }
                    }
                    None => return Outcome::Ended,
                },
                message = messages.next() => {
                    let Some(message) = message else { return Outcome::Ended };
                    match message.view() {
                        gst::MessageView::Error(e) if e.error().matches(gst::StreamError::WrongType)
                            && e.error().message() == pipeline::UNPLAYABLE_VIDEO => return Outcome::Unplayable,
                        gst::MessageView::Error(e) => {
                            let text = error_text(&message, e);
                            let refused = e.error().matches(gst::ResourceError::NotFound)
                                || e.error().matches(gst::ResourceError::NotAuthorized);
                            // Any other resource error is the source failing to read the port.
                            let source = e.error().is::<gst::ResourceError>();
                            return match (refused, source) {
                                (true, _) if !fan.delivered => Outcome::Refused(text),
                                (false, true) => Outcome::SourceFailed(text),
                                _ => Outcome::Failed(text),
                            };
                        }
                        gst::MessageView::Eos(_) => return Outcome::Ended,
                        gst::MessageView::Element(_) => {
                            if let Some(latency) = pipeline::read_latency(&message) {
                                for seconds in latency.seconds {
                                    self.metrics.session.transcode_latency(self.mode, &latency.encoder, seconds);
                                }
                            }
                        }
                        gst::MessageView::Warning(w) => {
                            let text = w.error().to_string();
                            if text.to_ascii_lowercase().contains("continuity") {
                                self.metrics.session.continuity_error();
                            } else {
                                tracing::debug!(warning = %text, "Pipeline warning.");
                            }
                        }
                        _ => {}
                    }
                }
                _ = ticker.tick() => {
                    if let Some(chunk) = fan.cache.flush() {
                        self.broadcast(fan, chunk, requested);
                    }
                    let source = &graph.source_activity;
                    let waited = connected.elapsed() > self.settings.start_timeout;
                    if !fan.delivered && waited {
                        // Not a byte: the receiver accepted and has nothing to send, which is
                        // how an Enigma2 box answers when every tuner is busy.
                        let error = if source.any() {
                            SessionError::StartTimeout(self.settings.start_timeout)
                        } else {
                            SessionError::NoTuner(self.settings.start_timeout)
                        };
                        self.fail_waiting(fan, error);
                        return Outcome::Refused("no first bytes in time".into());
                    }
                    // A connection that has sent data stalls after `stall_timeout` of silence;
                    // one that has sent nothing yet (a reconnect) gets the start's time to tune.
                    // Bytes that make no output (garbage, not a transport stream) are silence
                    // too: counted from the last output, or from the connect before the first.
                    if std::mem::take(&mut output_since_tick) {
                        last_output = Some(Instant::now());
                    }
                    let no_output = graph.sink.is_some()
                        && last_output.map_or(waited, |at| at.elapsed() > self.settings.stall_timeout);
                    let stalled = if source.any() {
                        source.silent_for() > self.settings.stall_timeout || no_output
                    } else {
                        waited
                    };
                    if stalled {
                        return Outcome::Stalled;
                    }
                    let idle = if let Some((_, view)) = &self.hls {
                        fan.waiting.is_empty() && view.lease.idle() >= self.settings.hls_idle_timeout
                    } else if fan.tx.receiver_count() == 0 && fan.waiting.is_empty() {
                        let since = *idle_since.get_or_insert_with(Instant::now);
                        since.elapsed() >= self.settings.idle_grace
                    } else {
                        idle_since = None;
                        false
                    };
                    // Closing: refuse new joins first (the registry then starts a new session for
                    // them), then serve any that were already queued; only an empty queue ends it.
                    if idle && !self.take_last_joins(fan, joins) {
                        tracing::debug!("No clients left; closing.");
                        return Outcome::Idle;
                    }
                }
            }
        }
    }
}

/// `{element path}: {message} ({debug})`: the debug part names the failed step (see
/// `pipeline::is_encoder_full`).
fn error_text(message: &gst::Message, e: &gst::message::Error) -> String {
    let element = message.src().map(|s| s.path_string().to_string()).unwrap_or_default();
    match e.debug() {
        Some(debug) => format!("{element}: {} ({debug})", e.error()),
        None => format!("{element}: {}", e.error()),
    }
}

/// What the master playlist says about H.264 video, from the negotiated caps.
pub(super) fn video_info(caps: &gst::CapsRef) -> Option<VideoInfo> {
    let s = caps.structure(0)?;
    if s.name() != "video/x-h264" {
        return None;
    }
    let fps = s.get::<gst::Fraction>("framerate").ok().filter(|f| f.denom() > 0);
    Some(VideoInfo {
        codec: avc1_codec(
            s.get::<&str>("profile").unwrap_or("high"),
            s.get::<&str>("level").unwrap_or("4"),
        ),
        width: s.get::<i32>("width").ok()? as u32,
        height: s.get::<i32>("height").ok()? as u32,
        frame_rate: fps.map_or(25.0, |f| f.numer() as f64 / f.denom() as f64),
    })
}
