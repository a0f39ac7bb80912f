//! The encoder slot queue: new sessions that encode video, and channel thumbnails, wait here for
//! encoder slots out of `gpu_queue.workers`, strictly by priority — Active (2) > Normal (1) >
//! Preview (0) — and first come, first served within a priority. Most requests want one slot; an
//! HLS ladder wants one per encoded rung, all at once ([`EncoderQueue::acquire_many`]).
//!
//! **Ownership.** A slot is a permit of one `tokio::sync::Semaphore` with `workers` permits; the
//! slots of one request are wrapped in one [`EncoderPermit`] that its holder owns (a session
//! keeps it for its whole life) and that returns them all when dropped. Only the queue task
//! acquires from the semaphore; it alone owns the waiting list ([`waiting`], pure) and the
//! recent-use memory ([`recent`], pure). For a waiter it takes permits one at a time and keeps
//! them in hand (*gathered*) until the head of the list has as many as it asked for, then hands
//! them over together. Callers reach it over one unbounded channel: a waiter that is dropped
//! (its client went away) or times out must tell the task from `Drop`, which cannot wait; every
//! message is a few words and each request sends a bounded number of them.
//!
//! **No overtaking.** While the head waits for its k slots, nobody behind it is served, not even
//! a request for one slot that is free now: letting small requests pass would starve a ladder,
//! which needs several slots free at the same moment. A waiter of higher priority that arrives
//! meanwhile becomes the head and takes what was gathered, as priority says it should. When the
//! head leaves (its client went away, or it timed out), the gathered permits go to the next head,
//! or back to the semaphore when nobody waits.
//!
//! **No slot is lost**: a permit exists either in the semaphore, in the task's hand (gathered,
//! or for one synchronous step), in a oneshot channel on its way to a waiter, or with its
//! holder. A waiter that vanished before its permits arrived drops its channel, and with it the
//! permits. Nothing counts slots by hand: permits are split and merged, never made up.
//!
//! **Refusals.** At most `gpu_queue.size` requests wait; one more is refused at once (`Full`)
//! with a `retry_after` that says when the oldest waiter will have left for sure (its deadline);
//! a waiter still waiting after `gpu_queue.max_wait` is refused (`Timeout`); a request for more
//! slots than `gpu_queue.workers` could never be served and is refused at once (`TooLarge`).

mod recent;
mod waiting;

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::config::Config;
use crate::metrics::Metrics;
use recent::{RecentUse, Use};
use waiting::Waiting;

/// How many (client, channel) pairs the Active memory keeps at most.
const RECENT_CAPACITY: usize = 4096;

/// Seconds a client is told to wait when the encoder itself refused a session (see
/// [`crate::pipeline::is_encoder_full`]): the hardware, not the queue, is full, so no deadline is known; this is
/// a short poll.
pub const ENCODER_FULL_RETRY: Duration = Duration::from_secs(10);

/// How urgent a waiter is. Higher goes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// Thumbnails.
    Preview = 0,
    /// A new viewer.
    Normal = 1,
    /// A client that watches the channel or did a moment ago (reconnect, profile switch).
    Active = 2,
}

impl Priority {
    /// Lowest first.
    pub const ALL: [Priority; 3] = [Priority::Preview, Priority::Normal, Priority::Active];

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Preview => "preview",
            Priority::Normal => "normal",
            Priority::Active => "active",
        }
    }

    fn lane(self) -> usize {
        self as usize
    }
}

/// Who asks for a slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// A stream session of `channel` (the canonical service reference) for `client`: Active
    /// when that client used the channel lately, Normal otherwise.
    Session { client: IpAddr, channel: String },
    /// A thumbnail.
    Preview,
}

/// Why no slot was given. Codes are mapped to HTTP once, in `http::error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("every encoder slot is busy and the queue is full; retry in {retry_after:?}")]
    Full { retry_after: Duration },
    #[error("no encoder slot became free within {waited:?}")]
    Timeout { waited: Duration },
    #[error(
        "{slots} encoder slots are needed at once but gpu_queue.workers is {workers}; \
         raise gpu_queue.workers or encode fewer rungs"
    )]
    TooLarge { slots: u32, workers: u32 },
    #[error("the encoder queue has stopped")]
    Stopped,
}

impl QueueError {
    pub fn code(&self) -> &'static str {
        match self {
            QueueError::Full { .. } => "encoder-queue-full",
            QueueError::Timeout { .. } => "encoder-queue-timeout",
            QueueError::TooLarge { .. } => "encoder-queue-too-small",
            QueueError::Stopped => "shutting-down",
        }
    }

    /// How long the client should wait before asking again, where known.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            QueueError::Full { retry_after } => Some(*retry_after),
            _ => None,
        }
    }
}

/// Encoder slots (one or more), owned together. Dropping it gives them all back.
#[derive(Debug)]
pub struct EncoderPermit {
    slots: OwnedSemaphorePermit,
    priority: Priority,
    metrics: Arc<Metrics>,
}

impl EncoderPermit {
    fn new(slots: OwnedSemaphorePermit, priority: Priority, metrics: Arc<Metrics>) -> Self {
        metrics.queue.active_workers(slots.num_permits() as i64);
        Self {
            slots,
            priority,
            metrics,
        }
    }

    /// The priority it was granted at.
    pub fn priority(&self) -> Priority {
        self.priority
    }

    /// How many encoder slots it holds.
    pub fn slots(&self) -> u32 {
        self.slots.num_permits() as u32
    }
}

impl Drop for EncoderPermit {
    fn drop(&mut self) {
        self.metrics.queue.active_workers(-(self.slots.num_permits() as i64));
    }
}

/// Why a waiter left without a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Left {
    Timeout,
    Cancelled,
}

impl Left {
    fn reason(self) -> &'static str {
        match self {
            Left::Timeout => "timeout",
            Left::Cancelled => "cancelled",
        }
    }
}

type Reply = oneshot::Sender<Result<EncoderPermit, QueueError>>;

/// What the task keeps for a waiter: how many slots it wants and where they go.
struct Wanted {
    slots: u32,
    reply: Reply,
}

enum Command {
    Acquire {
        id: u64,
        request: Request,
        slots: u32,
        reply: Reply,
    },
    Leave {
        id: u64,
        why: Left,
    },
    Seen {
        client: IpAddr,
        channel: String,
        what: Use,
    },
    Stats {
        reply: oneshot::Sender<QueueStats>,
    },
    Channels {
        client: IpAddr,
        except: String,
        reply: oneshot::Sender<usize>,
    },
}

/// What the queue holds right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStats {
    /// Waiting, by priority (index = priority value).
    pub waiting: [usize; 3],
    /// Slots not handed out (in the semaphore, or gathered for the head waiter).
    pub free: usize,
    /// Of `free`, the slots the task holds for the head waiter until it has all it asked for.
    pub gathered: usize,
}

/// A channel without an open stream counts as watched this long after its last use: HLS players
/// ask for a playlist every target duration (1 s), so a running one is always within it.
const CHANNEL_RECENT: Duration = Duration::from_secs(3);

/// Handle to the queue task. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EncoderQueue {
    tx: mpsc::UnboundedSender<Command>,
    next_id: Arc<AtomicU64>,
    max_wait: Duration,
    workers: u32,
}

impl EncoderQueue {
    /// Starts the queue task with the `gpu_queue` settings; it stops with `shutdown` (waiters
    /// then get `Stopped`).
    pub fn spawn(config: &Config, metrics: Arc<Metrics>, shutdown: CancellationToken) -> Self {
        let config = &config.gpu_queue;
        let (tx, rx) = mpsc::unbounded_channel();
        for priority in Priority::ALL {
            metrics.queue.size(priority.as_str(), 0);
        }
        let owner = Owner {
            slots: Arc::new(Semaphore::new(config.workers as usize)),
            size: config.size as usize,
            max_wait: config.max_wait,
            waiting: Waiting::default(),
            gathered: None,
            discarded: HashSet::new(),
            recent: RecentUse::new(config.active_window, RECENT_CAPACITY),
            metrics,
        };
        tokio::spawn(owner.run(rx, shutdown).instrument(tracing::info_span!("encoder_queue")));
        Self {
            tx,
            next_id: Arc::new(AtomicU64::new(1)),
            max_wait: config.max_wait,
            workers: config.workers,
        }
    }

    /// Waits for one slot; see [`EncoderQueue::acquire_many`].
    pub async fn acquire(&self, request: Request) -> Result<EncoderPermit, QueueError> {
        self.acquire_many(request, 1).await
    }

    /// Waits for `slots` slots together (an HLS ladder: one per encoded rung; 0 counts as 1): at
    /// once when that many are free and nobody waits; else in line, at most `max_wait`, and
    /// nobody behind it is served before it (see the module doc). More than
    /// `gpu_queue.workers` is refused at once. Dropping the future leaves the line at once.
    pub async fn acquire_many(&self, request: Request, slots: u32) -> Result<EncoderPermit, QueueError> {
        let slots = slots.max(1);
        if slots > self.workers {
            tracing::warn!(
                slots,
                workers = self.workers,
                "More encoder slots asked for than gpu_queue.workers; refusing."
            );
            return Err(QueueError::TooLarge {
                slots,
                workers: self.workers,
            });
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply, mut answer) = oneshot::channel();
        self.tx
            .send(Command::Acquire {
                id,
                request,
                slots,
                reply,
            })
            .map_err(|_| QueueError::Stopped)?;
        // Tells the task when this future ends without an answer (dropped or timed out).
        let mut leave = LeaveOnDrop {
            id,
            tx: &self.tx,
            why: Some(Left::Cancelled),
        };
        let result = match tokio::time::timeout(self.max_wait, &mut answer).await {
            Ok(answer) => answer.unwrap_or(Err(QueueError::Stopped)),
            // A slot handed over at the deadline is still taken.
            Err(_) => match answer.try_recv() {
                Ok(answer) => answer,
                Err(_) => {
                    leave.why = Some(Left::Timeout);
                    return Err(QueueError::Timeout { waited: self.max_wait });
                }
            },
        };
        leave.why = None;
        result
    }

    /// Records a sign of use: `client` fetched a playlist or joined a session of `channel`.
    pub fn touch(&self, client: IpAddr, channel: &str) {
        self.seen(client, channel, Use::Touch);
    }

    /// Records an open stream of `channel` for `client`, until the returned guard drops.
    pub fn watching(&self, client: IpAddr, channel: &str) -> Watching {
        self.seen(client, channel, Use::Open);
        Watching {
            queue: self.clone(),
            client,
            channel: channel.to_owned(),
        }
    }

    /// How many channels other than `except` `client` watches now (open streams, and HLS
    /// playlists asked for within the last few seconds).
    pub async fn channels_of(&self, client: IpAddr, except: &str) -> usize {
        let (reply, answer) = oneshot::channel();
        let command = Command::Channels {
            client,
            except: except.to_owned(),
            reply,
        };
        if self.tx.send(command).is_err() {
            return 0;
        }
        answer.await.unwrap_or(0)
    }

    /// Waiters and free slots (tests, diagnostics).
    pub async fn stats(&self) -> QueueStats {
        let (reply, answer) = oneshot::channel();
        if self.tx.send(Command::Stats { reply }).is_err() {
            return QueueStats::default();
        }
        answer.await.unwrap_or_default()
    }

    fn seen(&self, client: IpAddr, channel: &str, what: Use) {
        let _ = self.tx.send(Command::Seen {
            client,
            channel: channel.to_owned(),
            what,
        });
    }
}

/// An open stream, for Active priority: its drop starts the active window.
#[derive(Debug)]
pub struct Watching {
    queue: EncoderQueue,
    client: IpAddr,
    channel: String,
}

impl Drop for Watching {
    fn drop(&mut self) {
        self.queue.seen(self.client, &self.channel, Use::Close);
    }
}

struct LeaveOnDrop<'a> {
    id: u64,
    tx: &'a mpsc::UnboundedSender<Command>,
    why: Option<Left>,
}

impl Drop for LeaveOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(why) = self.why {
            let _ = self.tx.send(Command::Leave { id: self.id, why });
        }
    }
}

/// The queue task's state.
struct Owner {
    slots: Arc<Semaphore>,
    size: usize,
    max_wait: Duration,
    waiting: Waiting<Wanted>,
    /// Permits taken for the head waiter, short of what it asked for; only while somebody waits.
    gathered: Option<OwnedSemaphorePermit>,
    /// Waiters skipped at a grant because they had gone; their `Leave` is still on its way and
    /// is counted when it comes.
    discarded: HashSet<u64>,
    recent: RecentUse,
    metrics: Arc<Metrics>,
}

impl Owner {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>, shutdown: CancellationToken) {
        loop {
            let want = self.wants_more();
            let slots = Arc::clone(&self.slots);
            tokio::select! {
                () = shutdown.cancelled() => break,
                command = rx.recv() => match command {
                    Some(command) => self.handle(command),
                    None => break,
                },
                slot = slots.acquire_owned(), if want => match slot {
                    Ok(slot) => self.gather(slot),
                    Err(_) => break,
                },
            }
            // The head may have changed, left, or got all it needs.
            self.serve();
        }
        // Waiters' channels close with the task: they answer `Stopped`.
        tracing::debug!(waiting = self.waiting.len(), "Encoder queue stopped.");
    }

    fn handle(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::Acquire {
                id,
                request,
                slots,
                reply,
            } => {
                let priority = match &request {
                    Request::Preview => Priority::Preview,
                    Request::Session { client, channel } if self.recent.is_active(*client, channel, now) => {
                        Priority::Active
                    }
                    Request::Session { .. } => Priority::Normal,
                };
                // Nobody waits, so nothing is gathered: every permit is in the semaphore or held.
                if self.waiting.is_empty()
                    && let Ok(slot) = Arc::clone(&self.slots).try_acquire_many_owned(slots)
                {
                    self.metrics.queue.waited(priority.as_str(), Duration::ZERO);
                    let _ = reply.send(Ok(EncoderPermit::new(slot, priority, Arc::clone(&self.metrics))));
                    return;
                }
                if self.waiting.len() >= self.size {
                    let retry_after = self.retry_after(now);
                    self.metrics.queue.rejected("full");
                    tracing::info!(
                        priority = priority.as_str(),
                        waiting = self.waiting.len(),
                        retry_after_s = retry_after.as_secs(),
                        "Encoder queue full; refusing."
                    );
                    let _ = reply.send(Err(QueueError::Full { retry_after }));
                    return;
                }
                self.waiting.push(priority, id, now, Wanted { slots, reply });
                self.publish_size(priority);
            }
            Command::Leave { id, why } => {
                let left = match self.waiting.remove(id) {
                    Some((priority, entry)) => {
                        self.publish_size(priority);
                        Some(now.saturating_duration_since(entry.since))
                    }
                    None => self.discarded.remove(&id).then_some(Duration::ZERO),
                };
                if let Some(waited) = left {
                    self.metrics.queue.rejected(why.reason());
                    tracing::info!(
                        reason = why.reason(),
                        waited_ms = waited.as_millis() as u64,
                        "Encoder slot waiter left the queue."
                    );
                }
            }
            Command::Seen { client, channel, what } => self.recent.record(client, &channel, what, now),
            Command::Channels { client, except, reply } => {
                let _ = reply.send(self.recent.channels_of(client, &except, CHANNEL_RECENT, now));
            }
            Command::Stats { reply } => {
                let mut waiting = [0; 3];
                for p in Priority::ALL {
                    waiting[p.lane()] = self.waiting.len_of(p);
                }
                let gathered = self.gathered.as_ref().map_or(0, OwnedSemaphorePermit::num_permits);
                let _ = reply.send(QueueStats {
                    waiting,
                    free: self.slots.available_permits() + gathered,
                    gathered,
                });
            }
        }
    }

    fn gathered(&self) -> u32 {
        self.gathered.as_ref().map_or(0, |g| g.num_permits() as u32)
    }

    /// Whether the head waiter needs more permits than the task holds for it.
    fn wants_more(&self) -> bool {
        self.waiting
            .front()
            .is_some_and(|(_, entry)| entry.item.slots > self.gathered())
    }

    /// Keeps `slot` for the head waiter, with the others gathered for it.
    fn gather(&mut self, slot: OwnedSemaphorePermit) {
        match &mut self.gathered {
            Some(gathered) => gathered.merge(slot),
            None => self.gathered = Some(slot),
        }
    }

    /// Hands the gathered permits to head waiters still there, as long as they cover the head's
    /// wish; with nobody waiting, they go back to the semaphore.
    fn serve(&mut self) {
        let now = Instant::now();
        loop {
            let Some(slots) = self.waiting.front().map(|(_, entry)| entry.item.slots) else {
                // Back to the semaphore: permits are gathered only for a waiter.
                self.gathered = None;
                return;
            };
            let Some(mut gathered) = self.gathered.take() else {
                return;
            };
            let Some(permit) = gathered.split(slots as usize) else {
                // Not enough yet: the head keeps what there is and waits for more.
                self.gathered = Some(gathered);
                return;
            };
            if gathered.num_permits() > 0 {
                self.gathered = Some(gathered);
            }
            // (`front` was there, so `pop` is; were it not, `permit` would drop: slots back.)
            let Some((priority, entry)) = self.waiting.pop() else {
                return;
            };
            self.publish_size(priority);
            if entry.item.reply.is_closed() {
                // It went away: what it would have had stays for the next head.
                self.discarded.insert(entry.id);
                self.gather(permit);
                continue;
            }
            let waited = now.saturating_duration_since(entry.since);
            self.metrics.queue.waited(priority.as_str(), waited);
            tracing::debug!(
                priority = priority.as_str(),
                slots,
                waited_ms = waited.as_millis() as u64,
                "Encoder slots granted."
            );
            // Should the waiter vanish right now, the permits drop with the channel: slots back.
            let _ = entry
                .item
                .reply
                .send(Ok(EncoderPermit::new(permit, priority, Arc::clone(&self.metrics))));
        }
    }

    /// Until the oldest waiter's deadline, when one place frees for sure; with nobody waiting
    /// (size reached at 0) the slots' holders decide, and `max_wait` is the hint.
    fn retry_after(&self, now: Instant) -> Duration {
        let wait = self.waiting.oldest().map_or(self.max_wait, |since| {
            (since + self.max_wait).saturating_duration_since(now)
        });
        // Whole seconds, rounded up, at least 1.
        Duration::from_secs((wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1))
    }

    fn publish_size(&self, priority: Priority) {
        self.metrics
            .queue
            .size(priority.as_str(), self.waiting.len_of(priority) as i64);
    }
}

#[cfg(test)]
mod tests;
