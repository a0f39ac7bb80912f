//! Live stream sessions: one pipeline per (channel, profile, output), shared by every client.
//!
//! The registry task owns the map of sessions; each session task owns its pipeline, its
//! key-frame cache and the broadcast its clients read. Clients join through the registry and
//! leave by dropping their subscription; a session ends a grace period after its last client.

mod graph;
mod hls;
mod live;
mod lockstep;
mod segmenter;
mod ts_cache;

pub use hls::{
    FIRST_ANSWER_HOLD, HlsState, PLAYABLE_SEGMENTS, Segment, SegmentFormat, VideoInfo, avc1_codec, media_playlist_name,
    segment_prefix,
};
pub(crate) use segmenter::Segmenter;
pub(crate) use ts_cache::TsCache;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::model::ServiceRef;
pub use crate::model::VideoCodec;
use crate::pipeline::{EncoderChoice, Output, SegmentPlan, Template};
use crate::upstream::{SourceLocator, SourceOutcome};

/// Identity of a session: every client with the same key shares it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionKey {
    pub service_ref: ServiceRef,
    pub profile: String,
    pub output: Output,
}

/// How to start a session when none runs for a key.
pub struct StartSpec {
    pub template: Arc<Template>,
    pub encoder: Option<EncoderChoice>,
    /// Where the stream comes from; asked again before every reconnect.
    pub locator: Arc<dyn SourceLocator>,
    /// `Authorization` header for the receiver, sent up front.
    pub authorization: Option<String>,
    /// The encoder slot of a session that encodes video: the session task owns it for its
    /// whole life, and the slot returns when the session ends. A join of a running session
    /// drops it at once.
    pub encoder_slot: Option<crate::limits::queue::EncoderPermit>,
}

/// Why a channel's video codec could not be learned.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LearnError {
    #[error(transparent)]
    Detect(#[from] crate::upstream::DetectError),
    /// The receiver did not deliver a PMT: the words are for the log, not for clients.
    #[error("probing the channel: {0}")]
    Upstream(String),
    #[error("xg2g is shutting down")]
    ShuttingDown,
}

/// Session behaviour from the config.
#[derive(Debug, Clone)]
pub struct Settings {
    pub audio_languages: Vec<String>,
    pub idle_grace: Duration,
    pub max_client_lag: Duration,
    pub stall_timeout: Duration,
    pub reconnect_attempts: u32,
    pub start_timeout: Duration,
    /// `EXT-X-TARGETDURATION`, whole seconds.
    pub hls_target_duration: u32,
    pub hls_window: usize,
    /// An HLS session without playlist or segment requests for this long ends.
    pub hls_idle_timeout: Duration,
}

impl Settings {
    pub(crate) fn hls_target(&self) -> Duration {
        Duration::from_secs(u64::from(self.hls_target_duration.max(1)))
    }

    /// Where HLS segments end: the short first ones of [`hls::FAST_START`], then every half
    /// target duration, so that a player that reloads its playlist once a target duration
    /// (Chromium's own player, Safari) finds about two new segments each time and never drains
    /// the small buffer a fast start gives it.
    pub(crate) fn hls_plan(&self) -> SegmentPlan {
        SegmentPlan::new(hls::FAST_START.to_vec(), self.hls_target() / 2)
    }
}

/// Why a client could not join.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SessionError {
    #[error("the receiver did not deliver the stream: {0}")]
    Upstream(String),
    #[error("the pipeline for profile `{profile}` failed: {message}")]
    Pipeline { profile: String, message: String },
    #[error("no first bytes within {0:?}")]
    StartTimeout(Duration),
    /// The receiver accepted the stream and sent nothing: its tuners are all in use.
    #[error("the receiver sent nothing within {0:?}: its tuners are probably all in use")]
    NoTuner(Duration),
    #[error("xg2g is shutting down")]
    ShuttingDown,
    /// The encoder refused to open one more session (NVENC's per-system cap): full, not broken.
    #[error("the encoder has no free session: {0}")]
    EncoderFull(String),
    /// The channel's video cannot go out in this profile: no client of the output decodes it.
    #[error(
        "profile `{profile}` would send this channel's MPEG-2 video, which no HLS player decodes: \
         use profile `h264` (or `auto`, which picks it)"
    )]
    Unplayable { profile: String },
}

impl SessionError {
    pub fn code(&self) -> &'static str {
        match self {
            SessionError::Upstream(_) | SessionError::StartTimeout(_) => "upstream-unavailable",
            SessionError::NoTuner(_) => "no-tuner",
            SessionError::Pipeline { .. } => "pipeline-failed",
            SessionError::ShuttingDown => "shutting-down",
            SessionError::EncoderFull(_) => "encoder-queue-full",
            SessionError::Unplayable { .. } => "profile-unplayable",
        }
    }
}

/// A piece of the live stream, stamped with when the session sent it.
#[derive(Debug, Clone)]
pub struct Chunk {
    /// Milliseconds since the session's clock started (see [`Subscription::clock`]).
    pub at_ms: u64,
    pub bytes: Bytes,
}

/// A client's view of a session: what to send first, then the live chunks.
pub struct Subscription {
    pub preamble: Vec<Bytes>,
    pub live: broadcast::Receiver<Chunk>,
    /// When the session sent its newest chunk, in the same milliseconds as [`Chunk::at_ms`].
    pub clock: Arc<SessionClock>,
    /// Counts the client while it lives (TS clients only).
    pub guard: Option<ClientGuard>,
    /// Segments and playlists, for HLS sessions.
    pub hls: Option<HlsView>,
}

/// Read access to an HLS session: its published state, and the lease that keeps it alive.
#[derive(Clone)]
pub struct HlsView {
    pub state: watch::Receiver<Arc<HlsState>>,
    pub lease: Arc<Lease>,
}

/// Proof of life from HLS clients: every playlist or segment request touches it.
#[derive(Debug)]
pub struct Lease {
    epoch: tokio::time::Instant,
    last_ms: std::sync::atomic::AtomicU64,
    /// Requests waiting on the session right now (a first playlist, a blocking reload).
    waiting: std::sync::atomic::AtomicUsize,
}

/// A request that waits on the session keeps it alive until it is answered.
pub struct LeaseHold(Arc<Lease>);

impl Drop for LeaseHold {
    fn drop(&mut self) {
        self.0.touch();
        self.0.waiting.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Lease {
    fn new() -> Self {
        Self {
            epoch: tokio::time::Instant::now(),
            last_ms: std::sync::atomic::AtomicU64::new(0),
            waiting: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Keeps the session alive while the returned hold lives.
    pub fn hold(self: &Arc<Self>) -> LeaseHold {
        self.waiting.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        LeaseHold(Arc::clone(self))
    }

    pub fn touch(&self) {
        self.last_ms.store(
            self.epoch.elapsed().as_millis() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Time since the last touch; zero while a request waits.
    pub fn idle(&self) -> Duration {
        if self.waiting.load(std::sync::atomic::Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        let last = self.last_ms.load(std::sync::atomic::Ordering::Relaxed);
        Duration::from_millis((self.epoch.elapsed().as_millis() as u64).saturating_sub(last))
    }
}

/// The session's send clock, read by client watchdogs to tell how far behind a client is.
#[derive(Debug)]
pub struct SessionClock {
    epoch: tokio::time::Instant,
    latest_ms: std::sync::atomic::AtomicU64,
}

impl SessionClock {
    pub(crate) fn new() -> Self {
        Self {
            epoch: tokio::time::Instant::now(),
            latest_ms: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub(crate) fn stamp(&self) -> u64 {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.latest_ms.store(now, std::sync::atomic::Ordering::Relaxed);
        now
    }

    /// Milliseconds at which the newest chunk was sent.
    pub fn latest_ms(&self) -> u64 {
        self.latest_ms.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Decrements the client gauge when the client goes.
pub struct ClientGuard {
    metrics: Arc<Metrics>,
    mode: &'static str,
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.metrics.session.client(self.mode, -1);
    }
}

enum Command {
    Join {
        key: SessionKey,
        start: StartSpec,
        reply: oneshot::Sender<Result<Subscription, SessionError>>,
        /// The joiner's span (its `session.start`): a session it starts builds under it.
        trace: tracing::Span,
    },
    Lookup {
        key: SessionKey,
        reply: oneshot::Sender<Option<HlsView>>,
    },
    Codec {
        service_ref: ServiceRef,
        reply: oneshot::Sender<Option<VideoCodec>>,
    },
    /// Learn a channel's codec with `probe`, unless it is known or a probe is in flight.
    Learn {
        service_ref: ServiceRef,
        probe: futures_util::future::BoxFuture<'static, Result<VideoCodec, LearnError>>,
        reply: oneshot::Sender<Result<VideoCodec, LearnError>>,
    },
    /// A probe of [`Command::Learn`] finished.
    Learned {
        service_ref: ServiceRef,
        result: Result<VideoCodec, LearnError>,
    },
    Ended {
        key: SessionKey,
        id: u64,
    },
    Count {
        reply: oneshot::Sender<usize>,
    },
    Exists {
        key: SessionKey,
        reply: oneshot::Sender<bool>,
    },
}

/// Handle to the registry task. Cheap to clone.
#[derive(Clone)]
pub struct Registry {
    tx: mpsc::Sender<Command>,
}

impl Registry {
    /// Starts the registry task; it stops every session when `shutdown` fires.
    pub fn spawn(settings: Settings, metrics: Arc<Metrics>, shutdown: CancellationToken) -> Self {
        Self::spawn_with(settings, metrics, shutdown, Arc::new(graph::Gstreamer))
    }

    /// [`Registry::spawn`] with sessions whose graphs `connector` starts.
    pub(crate) fn spawn_with(
        settings: Settings,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
        connector: Arc<dyn graph::Connector>,
    ) -> Self {
        let (tx, rx) = mpsc::channel(256);
        let registry = Self { tx: tx.clone() };
        tokio::spawn(run_registry(rx, tx, settings, metrics, shutdown, connector));
        registry
    }

    /// Joins the session for `key`, starting it from `start` when none runs. Waits until the
    /// session has delivered its first bytes (or failed).
    pub async fn join(&self, key: SessionKey, start: StartSpec) -> Result<Subscription, SessionError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Join {
                key,
                start,
                reply,
                trace: tracing::Span::current(),
            })
            .await
            .map_err(|_| SessionError::ShuttingDown)?;
        rx.await.map_err(|_| SessionError::ShuttingDown)?
    }

    /// The HLS view of a running session, without starting one (segment requests).
    pub async fn lookup(&self, key: SessionKey) -> Option<HlsView> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Command::Lookup { key, reply }).await.ok()?;
        rx.await.ok().flatten()
    }

    /// The video codec remembered for a channel, if one was learned.
    pub async fn codec(&self, service_ref: ServiceRef) -> Option<VideoCodec> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Command::Codec { service_ref, reply }).await.ok()?;
        rx.await.ok().flatten()
    }

    /// The channel's video codec: remembered, or learned by running `probe`. Concurrent calls
    /// for one channel share one probe (one receiver connection however many players ask);
    /// a failed probe is not remembered, so the next call tries again.
    pub async fn learn_codec(
        &self,
        service_ref: ServiceRef,
        probe: futures_util::future::BoxFuture<'static, Result<VideoCodec, LearnError>>,
    ) -> Result<VideoCodec, LearnError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Learn {
                service_ref,
                probe,
                reply,
            })
            .await
            .map_err(|_| LearnError::ShuttingDown)?;
        rx.await.map_err(|_| LearnError::ShuttingDown)?
    }

    /// Whether a session runs for `key` that a join would attach to (one that is ending does
    /// not count: a join would start a new one).
    pub async fn exists(&self, key: &SessionKey) -> bool {
        let (reply, rx) = oneshot::channel();
        let key = key.clone();
        if self.tx.send(Command::Exists { key, reply }).await.is_err() {
            return false;
        }
        rx.await.unwrap_or(false)
    }

    /// Running sessions.
    pub async fn count(&self) -> usize {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Command::Count { reply }).await.is_err() {
            return 0;
        }
        rx.await.unwrap_or(0)
    }
}

struct Entry {
    id: u64,
    tx: mpsc::Sender<live::Join>,
    hls: Option<HlsView>,
}

async fn run_registry(
    mut rx: mpsc::Receiver<Command>,
    tx: mpsc::Sender<Command>,
    settings: Settings,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    connector: Arc<dyn graph::Connector>,
) {
    let mut sessions: HashMap<SessionKey, Entry> = HashMap::new();
    // What each channel's video turned out to be at its first tune (for the `auto` profile).
    let mut codecs: HashMap<ServiceRef, VideoCodec> = HashMap::new();
    // Channels whose codec a probe is learning now, with who waits for it.
    type LearnReply = oneshot::Sender<Result<VideoCodec, LearnError>>;
    let mut learning: HashMap<ServiceRef, Vec<LearnReply>> = HashMap::new();
    let mut next_id = 0u64;
    loop {
        let command = tokio::select! {
            () = shutdown.cancelled() => break,
            command = rx.recv() => match command { Some(c) => c, None => break },
        };
        match command {
            Command::Join {
                key,
                start,
                reply,
                trace,
            } => {
                let join = live::Join { reply };
                let join = match sessions.get(&key) {
                    Some(entry) => match entry.tx.try_send(join) {
                        Ok(()) => continue,
                        // A session busy starting or reconnecting has a full queue: this join
                        // waits for room in it, off this task. Starting a second session here
                        // would run a duplicate pipeline and overwrite the entry.
                        Err(mpsc::error::TrySendError::Full(join)) => {
                            let session = entry.tx.clone();
                            let registry = tx.clone();
                            tokio::spawn(async move {
                                // Gone while this join waited: it comes back as a new join.
                                if let Err(mpsc::error::SendError(join)) = session.send(join).await {
                                    let again = Command::Join {
                                        key,
                                        start,
                                        reply: join.reply,
                                        trace,
                                    };
                                    let _ = registry.send(again).await;
                                }
                            });
                            continue;
                        }
                        // A session that is ending refuses; then a new one starts below.
                        Err(mpsc::error::TrySendError::Closed(join)) => join,
                    },
                    None => join,
                };
                next_id += 1;
                let (session_tx, session_rx) = mpsc::channel(64);
                let _ = session_tx.try_send(join);
                let ended = tx.clone();
                let ended_key = key.clone();
                let id = next_id;
                let hls = (key.output == Output::Hls).then(|| {
                    let (tx, rx) = watch::channel(Arc::new(HlsState::new(settings.hls_window, settings.hls_target())));
                    (
                        tx,
                        HlsView {
                            state: rx,
                            lease: Arc::new(Lease::new()),
                        },
                    )
                });
                let view = hls.as_ref().map(|(_, view)| view.clone());
                let session = live::Session::new(
                    key.clone(),
                    start,
                    settings.clone(),
                    Arc::clone(&metrics),
                    hls,
                    trace,
                    Arc::clone(&connector),
                );
                let token = shutdown.child_token();
                tokio::spawn(async move {
                    session.run(session_rx, token).await;
                    let _ = ended.send(Command::Ended { key: ended_key, id }).await;
                });
                sessions.insert(
                    key,
                    Entry {
                        id,
                        tx: session_tx,
                        hls: view,
                    },
                );
            }
            Command::Ended { key, id } => {
                if sessions.get(&key).is_some_and(|e| e.id == id) {
                    sessions.remove(&key);
                }
            }
            Command::Lookup { key, reply } => {
                let _ = reply.send(sessions.get(&key).and_then(|e| e.hls.clone()));
            }
            Command::Codec { service_ref, reply } => {
                let _ = reply.send(codecs.get(&service_ref).copied());
            }
            Command::Learn {
                service_ref,
                probe,
                reply,
            } => {
                if let Some(codec) = codecs.get(&service_ref) {
                    let _ = reply.send(Ok(*codec));
                    continue;
                }
                let waiting = learning.entry(service_ref.clone()).or_default();
                waiting.push(reply);
                if waiting.len() == 1 {
                    let done = tx.clone();
                    tokio::spawn(async move {
                        let result = probe.await;
                        let _ = done.send(Command::Learned { service_ref, result }).await;
                    });
                }
            }
            Command::Learned { service_ref, result } => {
                if let Ok(codec) = &result {
                    codecs.insert(service_ref.clone(), *codec);
                }
                for reply in learning.remove(&service_ref).unwrap_or_default() {
                    let _ = reply.send(result.clone());
                }
            }
            Command::Count { reply } => {
                let _ = reply.send(sessions.len());
            }
            Command::Exists { key, reply } => {
                let _ = reply.send(sessions.get(&key).is_some_and(|e| !e.tx.is_closed()));
            }
        }
    }
    // Dropping the entries closes every session's command channel; the shutdown token stops them.
}

#[cfg(test)]
mod core_tests;
#[cfg(test)]
mod tests;
