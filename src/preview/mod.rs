//! Channel thumbnails: one decoded frame of a channel as a 320-pixel-wide JPEG, made through a
//! Preview-priority encoder slot and kept for `preview.cache_ttl`.
//!
//! One task owns the cache (`cache`, pure) and the fetches in flight: however many clients ask
//! for a channel at once, one fetch runs, and all of them get its answer. When every client
//! waiting for a fetch has gone, the fetch is aborted (checked every [`SWEEP`]), which also takes
//! it out of the encoder queue. Only pictures are kept; a failure is tried afresh next time.

mod cache;
mod grab;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::config::Config;
use crate::limits::queue::{EncoderQueue, QueueError, Request};
use crate::model::ServiceRef;
use crate::upstream::{SourceLocator, SourceOutcome};
use cache::PreviewCache;
use grab::{GrabError, GrabSpec};

/// Thumbnail width in pixels; the height follows the picture's aspect ratio.
pub const WIDTH: u32 = 320;
const MAX_ENTRIES: usize = 512;
const MAX_BYTES: usize = 16 << 20;
/// How often fetches are checked for clients that all went away.
const SWEEP: Duration = Duration::from_secs(1);
/// Requests queued for the task before callers wait.
const QUEUE: usize = 256;

/// Why no thumbnail could be served. Codes are mapped to HTTP once, in `http::error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PreviewError {
    #[error("the channel has no video (a radio channel)")]
    NoVideo,
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("the receiver did not deliver the stream: {0}")]
    Upstream(String),
    #[error("no thumbnail: {0}")]
    Failed(String),
    #[error("xg2g is shutting down")]
    Stopped,
}

impl PreviewError {
    pub fn code(&self) -> &'static str {
        match self {
            PreviewError::NoVideo => "no-video",
            PreviewError::Queue(e) => e.code(),
            PreviewError::Upstream(_) => "upstream-unavailable",
            PreviewError::Failed(_) => "preview-failed",
            PreviewError::Stopped => "shutting-down",
        }
    }
}

/// A thumbnail and how long clients may keep it.
#[derive(Debug, Clone)]
pub struct Preview {
    pub jpeg: Bytes,
    pub max_age: Duration,
}

/// Makes one thumbnail: the real one waits for a slot and decodes; tests fake it.
pub(crate) trait Fetch: Send + Sync + 'static {
    fn fetch(&self, locator: Arc<dyn SourceLocator>) -> BoxFuture<'static, Result<Bytes, PreviewError>>;
}

/// The real fetch: a Preview slot from the encoder queue, then one frame from the receiver.
#[derive(Clone)]
struct Grabber {
    queue: EncoderQueue,
    authorization: Option<String>,
    timeout: Duration,
}

impl Fetch for Grabber {
    fn fetch(&self, locator: Arc<dyn SourceLocator>) -> BoxFuture<'static, Result<Bytes, PreviewError>> {
        let this = self.clone();
        Box::pin(async move {
            // Held until the pipeline has stopped.
            let _slot = this.queue.acquire(Request::Preview).await?;
            let url = locator.locate().await.map_err(PreviewError::Upstream)?;
            let spec = GrabSpec {
                url: &url,
                authorization: this.authorization.as_deref(),
                width: WIDTH,
                timeout: this.timeout,
            };
            let grabbed = grab::first_frame(&spec).await;
            locator.connected(match &grabbed {
                Ok(_) | Err(GrabError::NoVideo) => SourceOutcome::Delivered,
                Err(GrabError::Refused(_) | GrabError::Failed(_)) => SourceOutcome::ChannelFailed,
            });
            grabbed.map_err(|e| match e {
                GrabError::NoVideo => PreviewError::NoVideo,
                GrabError::Refused(text) => PreviewError::Upstream(text),
                GrabError::Failed(text) => PreviewError::Failed(text),
            })
        })
    }
}

/// A thumbnail, or `None`: it would take a new fetch, and the request offered no locator.
type Reply = oneshot::Sender<Result<Option<Preview>, PreviewError>>;

struct Get {
    service_ref: ServiceRef,
    /// Where to fetch from; `None` takes only what costs no receiver connection.
    locator: Option<Arc<dyn SourceLocator>>,
    reply: Reply,
}

/// Asks the thumbnail task; cheap to clone.
#[derive(Clone)]
pub(crate) struct PreviewHandle {
    tx: mpsc::Sender<Get>,
}

impl PreviewHandle {
    /// The thumbnail of `service_ref` (a TV channel), cached or made now from `locator`'s URL.
    pub(crate) async fn get(
        &self,
        service_ref: ServiceRef,
        locator: Arc<dyn SourceLocator>,
    ) -> Result<Preview, PreviewError> {
        // A request with a locator always gets a picture or an error.
        self.ask(service_ref, Some(locator)).await?.ok_or(PreviewError::Stopped)
    }

    /// The thumbnail of `service_ref` if it costs no receiver connection: cached, or from a
    /// fetch already in flight (waited for). `None` when a new fetch would have to start: that
    /// is the one a client is charged for ([`crate::limits::admit`]).
    pub(crate) async fn free(&self, service_ref: ServiceRef) -> Result<Option<Preview>, PreviewError> {
        self.ask(service_ref, None).await
    }

    async fn ask(
        &self,
        service_ref: ServiceRef,
        locator: Option<Arc<dyn SourceLocator>>,
    ) -> Result<Option<Preview>, PreviewError> {
        let (reply, answer) = oneshot::channel();
        let get = Get {
            service_ref,
            locator,
            reply,
        };
        self.tx.send(get).await.map_err(|_| PreviewError::Stopped)?;
        answer.await.unwrap_or(Err(PreviewError::Stopped))
    }
}

/// Starts the thumbnail task: slots from `queue`, `preview.cache_ttl`, and the session start
/// timeout as the longest wait for a frame. It stops with `shutdown`.
pub(crate) fn spawn(
    config: &Config,
    queue: EncoderQueue,
    authorization: Option<String>,
    shutdown: CancellationToken,
) -> PreviewHandle {
    let grabber = Grabber {
        queue,
        authorization,
        timeout: config.streaming.start_timeout,
    };
    spawn_with(Arc::new(grabber), config.preview.cache_ttl, shutdown)
}

fn spawn_with(fetch: Arc<dyn Fetch>, ttl: Duration, shutdown: CancellationToken) -> PreviewHandle {
    let (tx, rx) = mpsc::channel(QUEUE);
    let owner = Owner {
        fetch,
        ttl,
        cache: PreviewCache::new(MAX_ENTRIES, MAX_BYTES),
        pending: HashMap::new(),
        tasks: HashMap::new(),
    };
    tokio::spawn(owner.run(rx, shutdown).instrument(tracing::info_span!("previews")));
    PreviewHandle { tx }
}

/// A fetch in flight and who waits for it.
struct Pending {
    waiters: Vec<Reply>,
    abort: AbortHandle,
}

type Fetched = (ServiceRef, Result<Bytes, PreviewError>);

struct Owner {
    fetch: Arc<dyn Fetch>,
    ttl: Duration,
    cache: PreviewCache,
    pending: HashMap<ServiceRef, Pending>,
    /// Which channel each fetch task is for (a panicked task reports only its id).
    tasks: HashMap<tokio::task::Id, ServiceRef>,
}

impl Owner {
    async fn run(mut self, mut rx: mpsc::Receiver<Get>, shutdown: CancellationToken) {
        let mut fetches: JoinSet<Fetched> = JoinSet::new();
        let mut sweep = tokio::time::interval(SWEEP);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                get = rx.recv() => match get {
                    Some(get) => self.get(get, &mut fetches),
                    None => break,
                },
                Some(done) = fetches.join_next_with_id(), if !fetches.is_empty() => match done {
                    Ok((id, (service_ref, result))) => {
                        self.tasks.remove(&id);
                        self.complete(service_ref, result);
                    }
                    Err(error) => {
                        // Aborted (its waiters left; already removed) or panicked.
                        if let Some(service_ref) = self.tasks.remove(&error.id())
                            && error.is_panic()
                        {
                            self.complete(service_ref, Err(PreviewError::Failed("the thumbnail task failed".into())));
                        }
                    }
                },
                _ = sweep.tick(), if !self.pending.is_empty() => self.sweep(),
            }
        }
        fetches.shutdown().await;
        tracing::debug!(cached = self.cache.len(), "Thumbnail cache stopped.");
    }

    fn get(&mut self, get: Get, fetches: &mut JoinSet<Fetched>) {
        let Get {
            service_ref,
            locator,
            reply,
        } = get;
        let now = Instant::now();
        if let Some((jpeg, expires)) = self.cache.get(&service_ref, now) {
            let max_age = expires.saturating_duration_since(now);
            let _ = reply.send(Ok(Some(Preview { jpeg, max_age })));
            return;
        }
        if let Some(pending) = self.pending.get_mut(&service_ref) {
            pending.waiters.push(reply);
            return;
        }
        let Some(locator) = locator else {
            let _ = reply.send(Ok(None));
            return;
        };
        let fetch = self.fetch.fetch(locator);
        let key = service_ref.clone();
        let abort = fetches.spawn(async move { (key, fetch.await) });
        self.tasks.insert(abort.id(), service_ref.clone());
        self.pending.insert(
            service_ref,
            Pending {
                waiters: vec![reply],
                abort,
            },
        );
    }

    fn complete(&mut self, service_ref: ServiceRef, result: Result<Bytes, PreviewError>) {
        let Some(pending) = self.pending.remove(&service_ref) else {
            return;
        };
        let answer = match result {
            Ok(jpeg) => {
                let now = Instant::now();
                tracing::debug!(channel = %service_ref, bytes = jpeg.len(), "Thumbnail made.");
                self.cache.insert(service_ref, jpeg.clone(), now + self.ttl, now);
                Ok(Preview {
                    jpeg,
                    max_age: self.ttl,
                })
            }
            Err(error) => {
                tracing::info!(channel = %service_ref, code = error.code(), %error, "No thumbnail.");
                Err(error)
            }
        };
        for reply in pending.waiters {
            let _ = reply.send(answer.clone().map(Some));
        }
    }

    /// Aborts fetches nobody waits for any more.
    fn sweep(&mut self) {
        self.pending.retain(|service_ref, pending| {
            pending.waiters.retain(|reply| !reply.is_closed());
            if pending.waiters.is_empty() {
                tracing::debug!(channel = %service_ref, "Thumbnail no longer wanted; stopping its fetch.");
                pending.abort.abort();
                return false;
            }
            true
        });
    }
}

#[cfg(test)]
mod tests;
