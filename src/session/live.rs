//! One session's task: builds its pipeline, fans the muxer's output out to clients, reconnects
//! on upstream stalls, and ends a grace period after its last client.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::ts_cache::TsCache;
use super::{Chunk, ClientGuard, SessionClock, SessionError, SessionKey, Settings, StartSpec, Subscription};
use crate::metrics::Metrics;
use crate::pipeline::{self, BuildSpec};

/// How often pending output is flushed to clients, and liveness is checked.
const TICK: Duration = Duration::from_millis(40);
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
}

/// Why one connection to the receiver ended.
enum Outcome {
    Shutdown,
    Idle,
    /// The receiver refused the stream (404, 401): retrying will not help.
    Refused(String),
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
    /// Buffers received from the receiver over the session's life.
    received: u64,
}

impl Session {
    pub(crate) fn new(key: SessionKey, start: StartSpec, settings: Settings, metrics: Arc<Metrics>) -> Self {
        let mode = start.template.mode.as_str();
        Self {
            key,
            start,
            settings,
            metrics,
            mode,
        }
    }

    pub(crate) async fn run(self, mut joins: mpsc::Receiver<Join>, shutdown: CancellationToken) {
        let requested = Instant::now();
        let span = tracing::info_span!("session", channel = %self.key.service_ref, profile = %self.key.profile, output = self.key.output.as_str());
        let _entered = span.enter();
        // Lag is bounded in chunks; chunks are flushed every TICK at least.
        let capacity = (self.settings.max_client_lag.as_millis() / TICK.as_millis()).clamp(8, 4096) as usize;
        let (tx, _) = broadcast::channel(capacity);
        let mut fan = Fanout {
            tx,
            clock: Arc::new(SessionClock::new()),
            cache: TsCache::default(),
            waiting: Vec::new(),
            delivered: false,
            received: 0,
        };
        self.metrics.session.session_active(self.mode, 1);
        let mut failures = 0u32;
        loop {
            let before = fan.received;
            let outcome = self.connect(&mut fan, &mut joins, &shutdown, requested).await;
            let delivered = fan.received > before;
            if delivered {
                // This connection worked for a while: a later loss starts counting afresh.
                failures = 0;
            }
            if !matches!(outcome, Outcome::Shutdown | Outcome::Idle) || delivered {
                self.start.locator.connected(delivered);
            }
            match outcome {
                Outcome::Shutdown | Outcome::Idle => break,
                Outcome::Refused(reason) => {
                    tracing::warn!(reason = %reason, "Receiver refused the stream.");
                    self.fail_waiting(&mut fan, SessionError::Upstream(reason));
                    break;
                }
                Outcome::Failed(_) | Outcome::Stalled | Outcome::Ended => {
                    let reason = match &outcome {
                        Outcome::Failed(r) => r.clone(),
                        Outcome::Stalled => format!("no data for {:?}", self.settings.stall_timeout),
                        _ => "the receiver ended the stream".to_owned(),
                    };
                    failures += 1;
                    if failures > self.settings.reconnect_attempts {
                        tracing::warn!(reason = %reason, attempts = failures, "Giving up on the receiver; ending clients.");
                        self.fail_waiting(&mut fan, SessionError::Upstream(reason));
                        break;
                    }
                    let delay = (BACKOFF_FIRST * 2u32.saturating_pow(failures - 1)).min(BACKOFF_MAX);
                    tracing::warn!(reason = %reason, attempt = failures, delay_ms = delay.as_millis() as u64, "Upstream lost; reconnecting.");
                    self.metrics.session.reconnect();
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
        if !fan.delivered {
            self.metrics.session.session_started(self.mode, "error");
        }
        self.metrics.session.session_active(self.mode, -1);
        tracing::info!(lived_s = requested.elapsed().as_secs(), "Session ended.");
        // Dropping `fan.tx` ends every client's stream cleanly.
    }

    fn fail_waiting(&self, fan: &mut Fanout, error: SessionError) {
        for join in fan.waiting.drain(..) {
            let _ = join.reply.send(Err(error.clone()));
        }
    }

    fn subscribe(&self, fan: &Fanout) -> Subscription {
        self.metrics.session.client(self.mode, 1);
        Subscription {
            preamble: fan.cache.preamble(),
            live: fan.tx.subscribe(),
            clock: Arc::clone(&fan.clock),
            guard: ClientGuard {
                metrics: Arc::clone(&self.metrics),
                mode: self.mode,
            },
        }
    }

    fn broadcast(&self, fan: &mut Fanout, chunk: Bytes, requested: Instant) {
        let _ = fan.tx.send(Chunk {
            at_ms: fan.clock.stamp(),
            bytes: chunk,
        });
        if !fan.delivered {
            fan.delivered = true;
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

    /// Runs one connection to the receiver until it ends, fails, stalls or nobody watches.
    async fn connect(
        &self,
        fan: &mut Fanout,
        joins: &mut mpsc::Receiver<Join>,
        shutdown: &CancellationToken,
        requested: Instant,
    ) -> Outcome {
        let source_url = match self.start.locator.locate().await {
            Ok(url) => url,
            Err(reason) => return Outcome::Failed(reason),
        };
        let spec = BuildSpec {
            template: &self.start.template,
            source_url: &source_url,
            authorization: self.start.authorization.as_deref(),
            encoder: self.start.encoder.as_ref(),
            audio_languages: &self.settings.audio_languages,
            keyint: 50,
            stall_timeout_s: self.settings.stall_timeout.as_secs().clamp(1, 3600) as u32,
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
        let (data_tx, mut data_rx) = mpsc::channel::<Bytes>(512);
        graph.sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let buffer = sample.buffer().ok_or(gst::FlowError::Error)?;
                    let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
                    // The session task only copies and forwards; this waits only if it is gone.
                    data_tx
                        .blocking_send(Bytes::copy_from_slice(map.as_slice()))
                        .map_err(|_| gst::FlowError::Flushing)?;
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        let Some(bus) = graph.guard.pipeline().bus() else {
            return Outcome::Failed("pipeline without bus".into());
        };
        let mut messages = bus.stream();
        if let Err(error) = graph.guard.pipeline().set_state(gst::State::Playing) {
            return Outcome::Failed(format!("cannot start the pipeline: {error}"));
        }
        let connected = Instant::now();
        let mut last_data = Instant::now();
        let mut idle_since: Option<Instant> = None;
        let mut ticker = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Outcome::Shutdown,
                join = joins.recv() => match join {
                    Some(join) if fan.delivered => { let _ = join.reply.send(Ok(self.subscribe(fan))); }
                    Some(join) => fan.waiting.push(join),
                    None => return Outcome::Shutdown,
                },
                data = data_rx.recv() => match data {
                    Some(buffer) => {
                        last_data = Instant::now();
                        fan.received += 1;
                        for chunk in fan.cache.push(&buffer) {
                            self.broadcast(fan, chunk, requested);
                        }
                    }
                    None => return Outcome::Ended,
                },
                message = messages.next() => {
                    let Some(message) = message else { return Outcome::Ended };
                    match message.view() {
                        gst::MessageView::Error(e) => {
                            let element = message.src().map(|s| s.path_string().to_string()).unwrap_or_default();
                            let text = format!("{element}: {}", e.error());
                            let refused = e.error().matches(gst::ResourceError::NotFound)
                                || e.error().matches(gst::ResourceError::NotAuthorized);
                            return if refused && !fan.delivered { Outcome::Refused(text) } else { Outcome::Failed(text) };
                        }
                        gst::MessageView::Eos(_) => return Outcome::Ended,
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
                    if !fan.delivered && connected.elapsed() > self.settings.start_timeout {
                        self.fail_waiting(fan, SessionError::StartTimeout(self.settings.start_timeout));
                        return Outcome::Refused("no first bytes in time".into());
                    }
                    if last_data.elapsed() > self.settings.stall_timeout {
                        return Outcome::Stalled;
                    }
                    if fan.tx.receiver_count() == 0 && fan.waiting.is_empty() {
                        let since = *idle_since.get_or_insert_with(Instant::now);
                        if since.elapsed() >= self.settings.idle_grace {
                            tracing::debug!("Last client left; closing.");
                            return Outcome::Idle;
                        }
                    } else {
                        idle_since = None;
                    }
                }
            }
        }
    }
}
