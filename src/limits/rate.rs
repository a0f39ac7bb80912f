//! Rate limits on new sessions: token buckets (the `leaky-bucket` crate) for all clients
//! together, per mode (`standard`, `audio_proxy`, `gpu`) and per client address.
//!
//! [`Admission`] holds every bucket and decides one request at a time through `&mut self`; it
//! has no lock of its own. One task owns it ([`AdmissionHandle::spawn`]) and answers over a
//! channel, as the session registry does: the per-address map therefore has exactly one owner,
//! "check every bucket, then take from each" is atomic without a lock, and no lock is ever held
//! across an `.await`. The hop costs microseconds, against the pipeline start a new session is.
//!
//! **Check all, then take.** A request is admitted only if every applicable bucket has a token;
//! a bucket that refuses leaves the others untouched. `leaky-bucket` refills lazily and has no
//! "peek" or "give back", so `Bucket::check` brings a bucket's balance up to date with
//! `try_acquire(max + 1)`, which can never succeed but applies the pending refills (tested
//! below), and only then reads the balance; the tokens are taken once every bucket said yes.
//!
//! **Refill grid.** A rate of `r` per second refills `r / gcd(r, 1000)` tokens every
//! `1000 / gcd(r, 1000)` ms: the exact rate on a whole-millisecond grid (the crate counts in
//! milliseconds), as smooth as that allows (10/s: one token per 100 ms; 3/s: three per second).
//! The crate does not expose when its next refill is due, so [`Bucket`] mirrors its deadline
//! arithmetic to compute `retry_after`: exact on tokio's clock (paused in tests), within
//! microseconds otherwise — far below the whole seconds `Retry-After` carries.
//!
//! **Per-address state is bounded.** At most `max_tracked_ips` addresses have a bucket. An
//! address not seen for as long as its bucket takes to fill up is dropped (a full bucket is the
//! same as a new one); when the map is full, the least recently seen address is dropped. A flood
//! of distinct addresses thus costs at most `max_tracked_ips` buckets; the price is that such a
//! flood can reset a quiet address's bucket early, which the global bucket still bounds.
//! An IPv6 client is tracked by its /64 ([`bucket_key`]): one host holds a whole /64 and can
//! rotate through it, so a per-address bucket would be no limit at all (the devices of one
//! household share a /64, and so share a bucket, as they share an IPv4 address behind NAT).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use leaky_bucket::RateLimiter;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::RateLimitConfig;
use crate::metrics::Metrics;

/// Mode buckets hold this many seconds of their rate (REFERENCE.md gives burst = 2 × rate for
/// the global and per-address limits; the mode limits follow the same rule).
const MODE_BURST_SECONDS: u32 = 2;

/// The session modes with a bucket of their own: `pipeline::Mode::as_str()` names.
const MODES: [&str; 3] = ["standard", "audio_proxy", "gpu"];

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Global,
    Ip,
    Mode,
}

impl Scope {
    /// The `scope` label of `xg2g_rate_limit_exceeded_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Global => "global",
            Scope::Ip => "ip",
            Scope::Mode => "mode",
        }
    }
}

/// A new session was refused: too many started recently.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("too many new sessions (the {} limit for {mode} sessions); try again in {} s", scope.as_str(), self.retry_after_secs())]
pub struct RateLimited {
    pub scope: Scope,
    /// The mode of the session that was asked for.
    pub mode: &'static str,
    /// Time until the refusing bucket has a token again.
    pub retry_after: Duration,
}

impl RateLimited {
    /// `retry_after` in whole seconds for `Retry-After`: rounded up, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        let wait = self.retry_after;
        (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
    }
}

/// One token bucket: a `leaky-bucket` limiter plus a mirror of its refill deadline.
#[derive(Debug)]
struct Bucket {
    limiter: RateLimiter,
    interval: Duration,
    /// When the limiter adds its next tokens (mirrors the crate's private deadline).
    next_refill: Instant,
}

impl Bucket {
    /// A full bucket of `burst` tokens refilled at `rate` per second; both at least 1.
    fn new(rate: u32, burst: u32, now: Instant) -> Self {
        let (refill, interval) = refill_grid(rate.max(1));
        let burst = burst.max(1) as usize;
        let limiter = RateLimiter::builder()
            .max(burst)
            .initial(burst)
            .refill(refill)
            .interval(interval)
            // Never waited on, so fairness has nothing to order; unfair keeps the fast path.
            .fair(false)
            .build();
        Self {
            limiter,
            interval,
            next_refill: now + interval,
        }
    }

    /// `Ok` when a token is there at `now`; otherwise how long until one is. Takes nothing.
    fn check(&mut self, now: Instant) -> Result<(), Duration> {
        // Always bring the balance up to date first: `try_acquire`'s fast path takes from a
        // stale balance and adds the pending refills afterwards, which after a quiet spell
        // would let up to twice the burst through.
        self.refresh(now);
        if self.limiter.balance() > 0 {
            Ok(())
        } else {
            Err(self.next_refill.saturating_duration_since(now))
        }
    }

    /// Takes a token that [`Bucket::check`] just found.
    fn take(&mut self) {
        let taken = self.limiter.try_acquire(1);
        debug_assert!(taken, "take follows a successful check by the bucket's only owner");
    }

    /// Applies pending refills: a request for more than the bucket holds never succeeds, but
    /// `try_acquire` adds the tokens due first and keeps them.
    fn refresh(&mut self, now: Instant) {
        let _ = self.limiter.try_acquire(self.limiter.max() + 1);
        // The crate's arithmetic (`calculate_drain`): whole milliseconds since the deadline.
        if now >= self.next_refill {
            let interval_ms = self.interval.as_millis().max(1);
            let since_ms = now.duration_since(self.next_refill).as_millis();
            let rem = Duration::from_millis((since_ms % interval_ms) as u64);
            self.next_refill = now + self.interval.saturating_sub(rem);
        }
    }

    /// How long an unused bucket takes at most to fill up from empty.
    fn time_to_fill(&self) -> Duration {
        let ticks = self.limiter.max().div_ceil(self.limiter.refill().max(1));
        self.interval * u32::try_from(ticks).unwrap_or(u32::MAX)
    }
}

/// Tokens per refill and the refill interval for `rate` tokens per second: the exact rate on a
/// whole-millisecond grid, with the shortest interval that allows.
fn refill_grid(rate: u32) -> (usize, Duration) {
    let g = gcd(rate, 1000);
    ((rate / g) as usize, Duration::from_millis(u64::from(1000 / g)))
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// A tracked address: its bucket and when it was last seen.
#[derive(Debug)]
struct Tracked {
    bucket: Bucket,
    seen: Instant,
    /// Key into [`IpBuckets::order`].
    seq: u64,
}

/// The per-address bucket a client draws from: an IPv4 address (IPv4-mapped IPv6 too) as it
/// is, an IPv6 address by its /64 prefix.
pub(crate) fn bucket_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
    }
}

/// Buckets per client address, at most `max` of them, least recently seen evicted first.
#[derive(Debug)]
struct IpBuckets {
    rate: u32,
    burst: u32,
    max: usize,
    map: HashMap<IpAddr, Tracked>,
    /// Addresses by when they were last seen, oldest first.
    order: BTreeMap<u64, IpAddr>,
    next_seq: u64,
    /// An address unseen for this long has a full bucket: dropping it loses nothing.
    idle_after: Duration,
}

impl IpBuckets {
    fn new(rate: u32, burst: u32, max: u32, now: Instant) -> Self {
        Self {
            rate,
            burst,
            max: max.max(1) as usize,
            map: HashMap::new(),
            order: BTreeMap::new(),
            next_seq: 0,
            idle_after: Bucket::new(rate, burst, now).time_to_fill(),
        }
    }

    /// Drops the addresses whose buckets have filled up again since they were last seen.
    fn evict_idle(&mut self, now: Instant) {
        while let Some((&seq, &ip)) = self.order.first_key_value() {
            if now.saturating_duration_since(self.map[&ip].seen) < self.idle_after {
                break;
            }
            self.order.remove(&seq);
            self.map.remove(&ip);
        }
    }

    /// Whether `ip` has a token (an untracked address has a full bucket). Counts as a sighting.
    fn check(&mut self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let Some(tracked) = self.map.get_mut(&ip) else {
            return Ok(());
        };
        let result = tracked.bucket.check(now);
        self.touch(ip, now);
        result
    }

    /// Takes `ip`'s token, starting to track it (and evicting the least recently seen address
    /// when the map is full).
    fn take(&mut self, ip: IpAddr, now: Instant) {
        if !self.map.contains_key(&ip) {
            if self.map.len() >= self.max
                && let Some((_, oldest)) = self.order.pop_first()
            {
                self.map.remove(&oldest);
            }
            let seq = self.bump();
            self.order.insert(seq, ip);
            let bucket = Bucket::new(self.rate, self.burst, now);
            self.map.insert(ip, Tracked { bucket, seen: now, seq });
        }
        self.touch(ip, now);
        if let Some(tracked) = self.map.get_mut(&ip) {
            tracked.bucket.take();
        }
    }

    fn touch(&mut self, ip: IpAddr, now: Instant) {
        let seq = self.bump();
        if let Some(tracked) = self.map.get_mut(&ip) {
            self.order.remove(&tracked.seq);
            tracked.seq = seq;
            tracked.seen = now;
            self.order.insert(seq, ip);
        }
    }

    fn bump(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }
}

/// Wrong signatures per client address (`auth.streams = "signed"`): a bucket of `burst`
/// failures refilled at `rate` per second, in the same bounded per-address map as admission,
/// and keyed the same way ([`bucket_key`]: an IPv6 client by its /64).
/// Only failures take from it; an address whose bucket is empty is refused before its
/// signature is even checked, so a guesser learns nothing more until the bucket refills.
#[derive(Debug)]
pub(crate) struct FailureThrottle {
    per_ip: IpBuckets,
}

impl FailureThrottle {
    /// Needs a tokio runtime (the buckets read tokio's clock).
    pub(crate) fn new(rate: u32, burst: u32, max_tracked_ips: u32) -> Self {
        Self {
            per_ip: IpBuckets::new(rate, burst, max_tracked_ips, Instant::now()),
        }
    }

    /// `Err(retry_after)` when `ip` has spent its failures; otherwise it may try.
    pub(crate) fn check(&mut self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        self.per_ip.evict_idle(now);
        self.per_ip.check(bucket_key(ip), now)
    }

    /// Counts one wrong signature from `ip`.
    pub(crate) fn record_failure(&mut self, ip: IpAddr, now: Instant) {
        let ip = bucket_key(ip);
        if self.per_ip.check(ip, now).is_ok() {
            self.per_ip.take(ip, now);
        }
    }
}

/// Every rate limit on new sessions; see the module docs. Needs a tokio runtime (the buckets
/// read tokio's clock).
#[derive(Debug)]
pub struct Admission {
    enabled: bool,
    global: Bucket,
    modes: Vec<(&'static str, Bucket)>,
    per_ip: IpBuckets,
}

impl Admission {
    /// Full buckets from the config's rates (per second) and bursts.
    pub fn new(config: &RateLimitConfig) -> Self {
        let now = Instant::now();
        let mode_rate = |mode: &str| match mode {
            "standard" => config.mode_standard,
            "audio_proxy" => config.mode_audio_proxy,
            _ => config.mode_gpu,
        };
        Self {
            enabled: config.enabled,
            global: Bucket::new(config.global_rate, config.global_burst, now),
            modes: MODES
                .iter()
                .map(|&mode| {
                    let rate = mode_rate(mode);
                    (mode, Bucket::new(rate, rate.saturating_mul(MODE_BURST_SECONDS), now))
                })
                .collect(),
            per_ip: IpBuckets::new(config.per_ip_rate, config.per_ip_burst, config.max_tracked_ips, now),
        }
    }

    /// Admits a new session of `mode` for `ip` and takes one token from the global, the mode's
    /// and the address's bucket; or refuses and takes none. A mode without a bucket of its own
    /// is limited by the global and per-address buckets only. Disabled: always admits.
    pub fn admit(&mut self, ip: IpAddr, mode: &'static str) -> Result<(), RateLimited> {
        if !self.enabled {
            return Ok(());
        }
        let now = Instant::now();
        self.per_ip.evict_idle(now);
        let mode_bucket = self.modes.iter().position(|(name, _)| *name == mode);
        // Every bucket is checked (which also brings each up to date); the request passes once
        // all have a token, so the longest wait is the one to report.
        let mut refused: Option<(Scope, Duration)> = None;
        let mut note = |scope: Scope, result: Result<(), Duration>| {
            if let Err(wait) = result
                && refused.is_none_or(|(_, longest)| wait > longest)
            {
                refused = Some((scope, wait));
            }
        };
        note(Scope::Global, self.global.check(now));
        if let Some(i) = mode_bucket {
            note(Scope::Mode, self.modes[i].1.check(now));
        }
        let ip = bucket_key(ip);
        note(Scope::Ip, self.per_ip.check(ip, now));
        if let Some((scope, retry_after)) = refused {
            return Err(RateLimited {
                scope,
                mode,
                retry_after,
            });
        }
        self.global.take();
        if let Some(i) = mode_bucket {
            self.modes[i].1.take();
        }
        self.per_ip.take(ip, now);
        Ok(())
    }

    /// Addresses with a bucket now.
    pub fn tracked_ips(&self) -> usize {
        self.per_ip.map.len()
    }
}

/// One question to the admission task.
struct Ask {
    ip: IpAddr,
    mode: &'static str,
    reply: oneshot::Sender<Result<(), RateLimited>>,
}

/// Handle to the task that owns the [`Admission`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AdmissionHandle {
    /// `None` when rate limits are off: nothing to ask.
    tx: Option<mpsc::Sender<Ask>>,
    /// Channels one client may have tuned at once (0: no cap; also none when limits are off).
    max_channels: u32,
}

impl AdmissionHandle {
    /// Starts the admission task (none when limits are off); it stops with `shutdown`.
    pub fn spawn(config: &RateLimitConfig, metrics: Arc<Metrics>, shutdown: CancellationToken) -> Self {
        if !config.enabled {
            return Self {
                tx: None,
                max_channels: 0,
            };
        }
        let (tx, rx) = mpsc::channel(256);
        let admission = Admission::new(config);
        tokio::spawn(run(admission, rx, metrics, shutdown));
        Self {
            tx: Some(tx),
            max_channels: config.max_channels_per_client,
        }
    }

    /// Channels one client may have tuned at once; `None`: no cap.
    pub fn max_channels(&self) -> Option<u32> {
        (self.max_channels > 0).then_some(self.max_channels)
    }

    /// Whether any limit applies (a disabled handle admits everything without asking).
    pub fn is_enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Asks to start a new session of `mode` for `ip`. Admits when the task is gone: that is
    /// shutdown, and the registry refuses new sessions then anyway.
    pub async fn admit(&self, ip: IpAddr, mode: &'static str) -> Result<(), RateLimited> {
        let Some(tx) = &self.tx else { return Ok(()) };
        let (reply, rx) = oneshot::channel();
        if tx.send(Ask { ip, mode, reply }).await.is_err() {
            return Ok(());
        }
        rx.await.unwrap_or(Ok(()))
    }
}

/// The admission task: answers one question at a time; each refusal is logged and counted.
async fn run(
    mut admission: Admission,
    mut rx: mpsc::Receiver<Ask>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    loop {
        let ask = tokio::select! {
            () = shutdown.cancelled() => break,
            ask = rx.recv() => match ask { Some(ask) => ask, None => break },
        };
        let result = admission.admit(ask.ip, ask.mode);
        if let Err(refused) = &result {
            metrics.rate_limit_exceeded(refused.scope.as_str(), refused.mode);
            tracing::debug!(
                scope = refused.scope.as_str(),
                mode = refused.mode,
                retry_after_ms = refused.retry_after.as_millis() as u64,
                "Refused a new session: over the rate limit."
            );
        }
        let _ = ask.reply.send(result);
    }
}

#[cfg(test)]
mod tests;
