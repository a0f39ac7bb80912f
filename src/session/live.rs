//! One session's task: builds its pipeline, fans the muxer's output out to clients, reconnects
//! on upstream stalls, and ends a grace period after its last client.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use std::time::SystemTime;

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::batch::Batcher;
use super::hls::{HlsState, Segment, VideoInfo, avc1_codec};
use super::segmenter::{Piece, Segmenter, media_end};
use super::ts_cache::TsCache;
use super::{
    Chunk, ClientGuard, HlsView, SessionClock, SessionError, SessionKey, Settings, SourceOutcome, StartSpec,
    Subscription,
};
use crate::metrics::Metrics;
use crate::pipeline::{self, BuildSpec};

/// How often pending output is flushed to clients, and liveness is checked.
/// Pending TS output is flushed to clients at least this often. Each flush is a wake-up and a
/// write per client: at 40 ms, 100 clients on one channel cost 1.52× the CPU of one; at 100 ms
/// 1.30× (`xg2g bench --scenario aac-one,aac-shared`), for 60 ms more latency on a live stream.
const TICK: Duration = Duration::from_millis(100);
const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

pub(crate) struct Join {
    pub reply: oneshot::Sender<Result<Subscription, SessionError>>,
}

pub(crate) struct Session {
    key: SessionKey,
    start: StartSpec,
    settings: Settings,
    metrics: Arc<Metrics>,
    mode: &'static str,
    /// Publishes the HLS state (HLS sessions only), and the view handed to clients.
    hls: Option<(watch::Sender<Arc<HlsState>>, HlsView)>,
    /// The span of the request that started the session (its `session.start`).
    trace: tracing::Span,
}

/// Why one connection to the receiver ended.
enum Outcome {
    Shutdown,
    Idle,
    /// The receiver refused the stream (404, 401): retrying will not help.
    Refused(String),
    /// The source could not read from the receiver's port (no connection, a reset, an HTTP
    /// error other than a refusal): the port is failing.
    SourceFailed(String),
    /// The channel's video cannot go out in this profile and output (MPEG-2 copied into HLS).
    Unplayable,
    Failed(String),
    Stalled,
    Ended,
}

/// State that outlives reconnects.
struct Fanout {
    tx: broadcast::Sender<Chunk>,
    clock: Arc<SessionClock>,
    cache: TsCache,
    waiting: Vec<Join>,
    delivered: bool,
    /// Why the session failed its clients, once it has.
    failure: Option<SessionError>,
    /// Buffers (TS) or segments (HLS) received over the session's life.
    received: u64,
    hls_state: HlsState,
    next_sequence: u64,
    /// The next segment follows an upstream reconnect.
    discontinuity: bool,
    /// Whether the join channel is still open (closed once the session starts ending).
    accepting: bool,
    /// The starting request's span until the first media: connects before then build under it.
    start_trace: Option<tracing::Span>,
}

impl Session {
    pub(crate) fn new(
        key: SessionKey,
        start: StartSpec,
        settings: Settings,
        metrics: Arc<Metrics>,
        hls: Option<(watch::Sender<Arc<HlsState>>, HlsView)>,
        trace: tracing::Span,
    ) -> Self {
        let mode = start.template.mode.as_str();
        Self {
            key,
            start,
            settings,
            metrics,
            mode,
            hls,
            trace,
        }
    }

    pub(crate) async fn run(mut self, joins: mpsc::Receiver<Join>, shutdown: CancellationToken) {
        let start_trace = std::mem::replace(&mut self.trace, tracing::Span::none());
        // The session outlives the request that started it: its own trace, linked to that one.
        let span = tracing::info_span!(parent: None, "session", channel = %self.key.service_ref, profile = %self.key.profile, output = self.key.output.as_str());
        span.follows_from(&start_trace);
        self.serve(joins, shutdown, start_trace).instrument(span).await;
    }

    async fn serve(self, mut joins: mpsc::Receiver<Join>, shutdown: CancellationToken, start_trace: tracing::Span) {
        let requested = Instant::now();
        // Lag is bounded in chunks; chunks are flushed every TICK at least.
        let capacity = (self.settings.max_client_lag.as_millis() / TICK.as_millis()).clamp(8, 4096) as usize;
        let (tx, _) = broadcast::channel(capacity);
        let mut fan = Fanout {
            tx,
            clock: Arc::new(SessionClock::new()),
            cache: TsCache::default(),
            waiting: Vec::new(),
            delivered: false,
            failure: None,
            received: 0,
            hls_state: HlsState::new(self.settings.hls_window, self.settings.hls_target()),
            next_sequence: 0,
            discontinuity: false,
            accepting: true,
            start_trace: Some(start_trace),
        };
        self.metrics.session.session_active(self.mode, 1);
        let mut failures = 0u32;
        // Whether the receiver is gone for good (HLS playlists then end).
        let mut gave_up = false;
        loop {
            let before = fan.received;
            let outcome = self.connect(&mut fan, &mut joins, &shutdown, requested).await;
            let delivered = fan.received > before;
            if delivered {
                // This connection worked for a while: a later loss starts counting afresh.
                failures = 0;
            }
            // An encoder out of sessions at the first start means "full", not "broken" (NVENC's
            // cap): no retries, and the receiver is not blamed.
            let encoder_full =
                !fan.delivered && matches!(&outcome, Outcome::Failed(r) if crate::limits::queue::is_encoder_full(r));
            if (!matches!(outcome, Outcome::Shutdown | Outcome::Idle) || delivered) && !encoder_full {
                self.start.locator.connected(match &outcome {
                    _ if delivered => SourceOutcome::Delivered,
                    Outcome::SourceFailed(_) => SourceOutcome::PortFailed,
                    _ => SourceOutcome::ChannelFailed,
                });
            }
            if let (true, Outcome::Failed(reason)) = (encoder_full, &outcome) {
                tracing::warn!(reason = %reason, "The encoder has no free session; refusing as full.");
                self.metrics.queue.rejected("full");
                self.fail_waiting(&mut fan, SessionError::EncoderFull(reason.clone()));
                break;
            }
            match outcome {
                Outcome::Shutdown | Outcome::Idle => break,
                Outcome::Unplayable => {
                    tracing::warn!("The channel's video plays in no client of this profile; refusing.");
                    self.fail_waiting(
                        &mut fan,
                        SessionError::Unplayable {
                            profile: self.key.profile.clone(),
                        },
                    );
                    break;
                }
                Outcome::Refused(reason) => {
                    tracing::warn!(reason = %reason, "Receiver refused the stream.");
                    self.fail_waiting(&mut fan, SessionError::Upstream(reason));
                    gave_up = true;
                    break;
                }
                Outcome::Failed(_) | Outcome::SourceFailed(_) | Outcome::Stalled | Outcome::Ended => {
                    let reason = match &outcome {
                        Outcome::Failed(r) | Outcome::SourceFailed(r) => r.clone(),
                        Outcome::Stalled => format!("no data for {:?}", self.settings.stall_timeout),
                        _ => "the receiver ended the stream".to_owned(),
                    };
                    failures += 1;
                    if failures > self.settings.reconnect_attempts {
                        tracing::warn!(reason = %reason, attempts = failures, "Giving up on the receiver; ending clients.");
                        self.fail_waiting(&mut fan, SessionError::Upstream(reason));
                        gave_up = true;
                        break;
                    }
                    let delay = (BACKOFF_FIRST * 2u32.saturating_pow(failures - 1)).min(BACKOFF_MAX);
                    tracing::warn!(reason = %reason, attempt = failures, delay_ms = delay.as_millis() as u64, "Upstream lost; reconnecting.");
                    self.metrics.session.reconnect();
                    // HLS marks the first segment after the reconnect.
                    fan.discontinuity = !fan.hls_state.is_empty();
                    // TS clients: counters run on, the new clock is flagged, a key frame first.
                    fan.cache.splice();
                    // Clients keep joining during the pause: they get the stream as it resumes.
                    let pause = tokio::time::sleep(delay);
                    tokio::pin!(pause);
                    let stop = loop {
                        tokio::select! {
                            () = shutdown.cancelled() => break true,
                            () = &mut pause => break false,
                            join = joins.recv(), if fan.accepting => match join {
                                Some(join) if fan.delivered => { let _ = join.reply.send(Ok(self.subscribe(&fan))); }
                                Some(join) => fan.waiting.push(join),
                                None => fan.accepting = false,
                            },
                        }
                    };
                    if stop {
                        break;
                    }
                }
            }
        }
        if !fan.delivered {
            self.metrics.session.session_started(self.mode, "error");
        }
        if gave_up && fan.delivered {
            self.end_playlists(&mut fan, &mut joins, &shutdown).await;
        }
        // Joins that arrived while the session was ending get its last word (a join after the
        // close starts a new session): dropped unanswered, they would read as a shutdown.
        joins.close();
        let last = fan.failure.take().unwrap_or(SessionError::ShuttingDown);
        while let Ok(join) = joins.try_recv() {
            let _ = join.reply.send(Err(last.clone()));
        }
        self.metrics.session.session_active(self.mode, -1);
        tracing::info!(lived_s = requested.elapsed().as_secs(), "Session ended.");
        // Dropping `fan.tx` ends every client's stream cleanly.
    }

    /// The receiver is gone for good: HLS playlists end (`EXT-X-ENDLIST`), so that players stop
    /// instead of polling forever. The ended session stays joinable until players stop asking
    /// for it (the HLS idle timeout), then goes.
    async fn end_playlists(&self, fan: &mut Fanout, joins: &mut mpsc::Receiver<Join>, shutdown: &CancellationToken) {
        let Some((tx, view)) = &self.hls else { return };
        fan.hls_state.end();
        tx.send_replace(Arc::new(fan.hls_state.clone()));
        let mut ticker = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                join = joins.recv(), if fan.accepting => match join {
                    Some(join) => { let _ = join.reply.send(Ok(self.subscribe(fan))); }
                    None => fan.accepting = false,
                },
                _ = ticker.tick() => {
                    if view.lease.idle() >= self.settings.hls_idle_timeout && !self.take_last_joins(fan, joins) {
                        return;
                    }
                }
            }
        }
    }

    /// Closes the join channel and serves the joins still in it. Returns whether there were any
    /// (then the session lives on for them, taking no new ones).
    fn take_last_joins(&self, fan: &mut Fanout, joins: &mut mpsc::Receiver<Join>) -> bool {
        joins.close();
        fan.accepting = false;
        let mut any = false;
        while let Ok(join) = joins.try_recv() {
            any = true;
            if fan.delivered {
                let _ = join.reply.send(Ok(self.subscribe(fan)));
            } else {
                fan.waiting.push(join);
            }
        }
        any
    }

    fn fail_waiting(&self, fan: &mut Fanout, error: SessionError) {
        for join in fan.waiting.drain(..) {
            let _ = join.reply.send(Err(error.clone()));
        }
        fan.failure = Some(error);
    }

    fn subscribe(&self, fan: &Fanout) -> Subscription {
        let hls = self.hls.as_ref().map(|(_, view)| view.clone());
        let guard = hls.is_none().then(|| {
            self.metrics.session.client(self.mode, 1);
            ClientGuard {
                metrics: Arc::clone(&self.metrics),
                mode: self.mode,
            }
        });
        if let Some(view) = &hls {
            view.lease.touch();
        }
        Subscription {
            preamble: fan.cache.preamble(),
            live: fan.tx.subscribe(),
            clock: Arc::clone(&fan.clock),
            guard,
            hls,
        }
    }

    /// The first media of the session reached clients: record it and let the waiting in.
    fn first_media(&self, fan: &mut Fanout, requested: Instant) {
        if !fan.delivered {
            fan.delivered = true;
            fan.start_trace = None;
            let elapsed = requested.elapsed();
            tracing::info!(ttfb_ms = elapsed.as_millis() as u64, "First bytes.");
            self.metrics
                .session
                .first_byte(self.mode, self.key.output.as_str(), elapsed);
            self.metrics.session.session_started(self.mode, "ok");
        }
        for join in std::mem::take(&mut fan.waiting) {
            let _ = join.reply.send(Ok(self.subscribe(fan)));
        }
    }

    /// A segment cut from the muxer's output is published; the master playlist learns the
    /// codecs from the muxer's input caps.
    fn publish_segment(&self, fan: &mut Fanout, piece: Piece, mux: Option<&gst::Element>, requested: Instant) {
        let Some((tx, _)) = &self.hls else { return };
        let Piece { bytes, duration } = piece;
        if let Some(mux) = mux.filter(|_| fan.hls_state.video.is_none() || fan.hls_state.audio.is_none()) {
            for caps in mux.sink_pads().iter().filter_map(|p| p.current_caps()) {
                if fan.hls_state.video.is_none() {
                    fan.hls_state.video = video_info(&caps);
                }
                if fan.hls_state.audio.is_none()
                    && caps
                        .structure(0)
                        .is_some_and(|s| s.name() == "audio/mpeg" && s.get::<i32>("mpegversion") == Ok(4))
                {
                    fan.hls_state.audio = Some("mp4a.40.2".to_owned());
                }
            }
        }
        let segment = Segment {
            sequence: fan.next_sequence,
            duration: duration.as_secs_f64(),
            bytes,
            started_at: SystemTime::now() - duration,
            discontinuity: std::mem::take(&mut fan.discontinuity),
        };
        fan.next_sequence += 1;
        fan.received += 1;
        fan.hls_state.push(segment);
        tx.send_replace(Arc::new(fan.hls_state.clone()));
        self.first_media(fan, requested);
    }

    fn broadcast(&self, fan: &mut Fanout, chunk: Bytes, requested: Instant) {
        let _ = fan.tx.send(Chunk {
            at_ms: fan.clock.stamp(),
            bytes: chunk,
        });
        self.first_media(fan, requested);
    }

    /// Runs one connection to the receiver until it ends, fails, stalls or nobody watches.
    async fn connect(
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
/// `limits::queue::is_encoder_full`).
fn error_text(message: &gst::Message, e: &gst::message::Error) -> String {
    let element = message.src().map(|s| s.path_string().to_string()).unwrap_or_default();
    match e.debug() {
        Some(debug) => format!("{element}: {} ({debug})", e.error()),
        None => format!("{element}: {}", e.error()),
    }
}

/// What the master playlist says about H.264 video, from the negotiated caps.
fn video_info(caps: &gst::CapsRef) -> Option<VideoInfo> {
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
