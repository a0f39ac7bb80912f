//! Channel logos (picons): fetched from the receiver or a configured base, kept in memory by
//! one owning task.
//!
//! Handlers ask through a [`PiconHandle`]; the task answers from its cache (`cache`, pure), or
//! fetches (`fetch`) at most [`MAX_FETCHES`] at a time, one fetch per channel however many ask.
//! Found picons are kept for `picons.cache_ttl`, misses for at most [`MISS_TTL`].

mod cache;
mod fetch;

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::config::PiconConfig;
use crate::model::ServiceRef;
use crate::upstream::OpenWebIf;
use cache::{Cached, PiconCache};
use fetch::{Fetched, Source};

/// Misses are remembered this long at most, so a picon added on the box shows up soon.
pub(crate) const MISS_TTL: Duration = Duration::from_secs(10 * 60);
/// Fetches in flight at once (the receiver client bounds its own requests as well).
pub(crate) const MAX_FETCHES: usize = 4;
const MAX_ENTRIES: usize = 2048;
const MAX_BYTES: usize = 32 << 20;
/// Requests queued for the task before callers wait.
const QUEUE: usize = 256;

/// Why no picon could be served. Codes are mapped to HTTP once, in `http::error`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PiconError {
    #[error("no picon for {service_ref}")]
    NotFound { service_ref: ServiceRef },
    #[error("picon for {service_ref} unavailable: {detail}")]
    Unavailable { service_ref: ServiceRef, detail: String },
}

impl PiconError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound { .. } => "picon-not-found",
            Self::Unavailable { .. } => "picon-unavailable",
        }
    }
}

type Reply = oneshot::Sender<Result<Bytes, PiconError>>;

struct Request {
    service_ref: ServiceRef,
    reply: Reply,
}

/// Read side of the picon cache; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct PiconHandle {
    tx: mpsc::Sender<Request>,
    ttl: Duration,
}

impl PiconHandle {
    /// The PNG for `service_ref`, from the cache or the source.
    pub(crate) async fn get(&self, service_ref: ServiceRef) -> Result<Bytes, PiconError> {
        let stopped = PiconError::Unavailable {
            service_ref: service_ref.clone(),
            detail: "the picon cache has stopped".to_owned(),
        };
        let (reply, answer) = oneshot::channel();
        if self.tx.send(Request { service_ref, reply }).await.is_err() {
            return Err(stopped);
        }
        answer.await.unwrap_or(Err(stopped))
    }

    /// How long clients may keep a picon.
    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }
}

/// Starts the task that owns the cache; it stops with `shutdown`.
pub(crate) fn spawn(config: &PiconConfig, receiver: OpenWebIf, shutdown: CancellationToken) -> PiconHandle {
    let (tx, rx) = mpsc::channel(QUEUE);
    let owner = Owner {
        source: Source::new(config.base_url.as_ref(), receiver),
        cache: PiconCache::new(MAX_ENTRIES, MAX_BYTES),
        ttl: config.cache_ttl,
        miss_ttl: config.cache_ttl.min(MISS_TTL),
        waiting: HashMap::new(),
        queued: VecDeque::new(),
    };
    tokio::spawn(owner.run(rx, shutdown).instrument(tracing::info_span!("picons")));
    PiconHandle {
        tx,
        ttl: config.cache_ttl,
    }
}

/// The task's state: the cache, the callers waiting per channel, the channels waiting for a
/// fetch slot.
struct Owner {
    source: Source,
    cache: PiconCache,
    ttl: Duration,
    miss_ttl: Duration,
    waiting: HashMap<ServiceRef, Vec<Reply>>,
    queued: VecDeque<ServiceRef>,
}

impl Owner {
    async fn run(mut self, mut rx: mpsc::Receiver<Request>, shutdown: CancellationToken) {
        let mut fetches = FuturesUnordered::new();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                request = rx.recv() => {
                    let Some(Request { service_ref, reply }) = request else { break };
                    let now = tokio::time::Instant::now().into_std();
                    match self.cache.get(&service_ref, now) {
                        Some(cached) => drop(reply.send(answer(&service_ref, cached))),
                        None => {
                            let first = !self.waiting.contains_key(&service_ref);
                            self.waiting.entry(service_ref.clone()).or_default().push(reply);
                            if first {
                                self.queued.push_back(service_ref);
                            }
                        }
                    }
                }
                Some((service_ref, fetched)) = fetches.next(), if !fetches.is_empty() => {
                    self.complete(service_ref, fetched);
                }
            }
            while fetches.len() < MAX_FETCHES {
                let Some(service_ref) = self.queued.pop_front() else {
                    break;
                };
                let source = self.source.clone();
                fetches.push(async move {
                    let fetched = source.fetch(&service_ref).await;
                    (service_ref, fetched)
                });
            }
        }
        tracing::debug!(
            cached = self.cache.len(),
            bytes = self.cache.bytes(),
            "Picon cache stopped."
        );
    }

    fn complete(&mut self, service_ref: ServiceRef, fetched: Fetched) {
        let now = tokio::time::Instant::now().into_std();
        let result = match fetched {
            Fetched::Found(bytes) => {
                tracing::debug!(%service_ref, bytes = bytes.len(), "Picon fetched.");
                let cached = Cached::Found(bytes);
                self.cache
                    .insert(service_ref.clone(), cached.clone(), now + self.ttl, now);
                answer(&service_ref, cached)
            }
            Fetched::Missing => {
                tracing::debug!(%service_ref, "No picon for this channel.");
                self.cache
                    .insert(service_ref.clone(), Cached::Missing, now + self.miss_ttl, now);
                answer(&service_ref, Cached::Missing)
            }
            Fetched::Failed(detail) => {
                tracing::warn!(%service_ref, %detail, "Picon not fetched.");
                Err(PiconError::Unavailable {
                    service_ref: service_ref.clone(),
                    detail,
                })
            }
        };
        for reply in self.waiting.remove(&service_ref).unwrap_or_default() {
            drop(reply.send(result.clone()));
        }
    }
}

fn answer(service_ref: &ServiceRef, cached: Cached) -> Result<Bytes, PiconError> {
    match cached {
        Cached::Found(bytes) => Ok(bytes),
        Cached::Missing => Err(PiconError::NotFound {
            service_ref: service_ref.clone(),
        }),
    }
}
