//! One session's task: builds its pipeline, fans the muxer's output out to clients, reconnects
//! on upstream stalls, and ends a grace period after its last client.

mod connection;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use std::time::SystemTime;

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::graph::Connector;
use super::hls::HlsState;
use super::lockstep::Lockstep;
use super::segmenter::Piece;
use super::ts_cache::TsCache;
use super::{
    Chunk, ClientGuard, HlsView, SessionClock, SessionError, SessionKey, Settings, SourceOutcome, StartSpec,
    Subscription,
};
use crate::metrics::Metrics;
use crate::pipeline::MuxedMedia;
use connection::video_info;

/// How often pending output is flushed to clients, and liveness is checked.
/// Pending TS output is flushed to clients at least this often. Each flush is a wake-up and a
/// write per client: at 40 ms, 100 clients on one channel cost 1.52× the CPU of one; at 100 ms
/// 1.30× (`xg2g-bench --scenario aac-one,aac-shared`), for 60 ms more latency on a live stream.
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
    /// Starts each connection's graph.
    connector: Arc<dyn Connector>,
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
    /// The encoder had no free session at the start (NVENC's cap): full, not broken.
    EncoderFull(String),
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
    /// Where the fMP4 media published so far ends, on the fragments' decode time line: a
    /// reconnect's fragments go on from there.
    fmp4_end: Duration,
    /// What this connection's fragments' decode times are moved by (`fmp4_end` at its start).
    fmp4_offset: Duration,
    /// This connection's fMP4 fragments until every rendition has made them, each with the init
    /// segment that came just before it, if one did.
    lockstep: Lockstep<(Option<Bytes>, Piece)>,
    /// Per track, an init segment that came after the last fragment, for the next one.
    fmp4_init: Vec<Option<Bytes>>,
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
        connector: Arc<dyn Connector>,
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
            connector,
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
            fmp4_end: Duration::ZERO,
            fmp4_offset: Duration::ZERO,
            lockstep: Lockstep::default(),
            fmp4_init: Vec::new(),
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
            let encoder_full = matches!(&outcome, Outcome::EncoderFull(_));
            if (!matches!(outcome, Outcome::Shutdown | Outcome::Idle) || delivered) && !encoder_full {
                self.start.locator.connected(match &outcome {
                    _ if delivered => SourceOutcome::Delivered,
                    Outcome::SourceFailed(_) => SourceOutcome::PortFailed,
                    _ => SourceOutcome::ChannelFailed,
                });
            }
            match outcome {
                Outcome::Shutdown | Outcome::Idle => break,
                Outcome::EncoderFull(reason) => {
                    tracing::warn!(reason = %reason, "The encoder has no free session; refusing as full.");
                    self.metrics.queue.rejected("full");
                    self.fail_waiting(&mut fan, SessionError::EncoderFull(reason));
                    break;
                }
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
                    // HLS marks the first segment after the reconnect, in every track.
                    fan.hls_state.reconnected();
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

    /// A segment cut from output `track`'s muxer is published; the master playlist learns the
    /// codecs from `media`, what the muxer's inputs negotiated.
    fn publish_segment(
        &self,
        fan: &mut Fanout,
        track: usize,
        piece: Piece,
        media: Option<MuxedMedia>,
        requested: Instant,
    ) {
        let Some((tx, _)) = &self.hls else { return };
        let Piece { bytes, duration } = piece;
        if let Some(media) = media {
            let audio = match (media.aac_audio, media.surround) {
                (true, _) => Some("mp4a.40.2".to_owned()),
                (false, surround) => surround.map(str::to_owned),
            };
            fan.hls_state.learn_media(track, video_info(&media), audio);
            if let Some(channels) = media.channels {
                fan.hls_state.learn_channels(track, channels);
            }
        }
        fan.received += 1;
        fan.hls_state
            .append(track, duration.as_secs_f64(), bytes, SystemTime::now() - duration);
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
}
