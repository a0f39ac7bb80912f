//! The task that owns the catalog: it loads the channels at start (retrying with backoff until
//! the receiver answers), then reloads the channels and the guide on their own schedules and on
//! demand, one refresh at a time, and publishes every new catalog whole through a watch channel.
//!
//! Commands reach it over an mpsc channel with a oneshot reply. The schedule is pure and tested
//! without a runtime; the task only drives it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::guide::{GuideLoad, GuideWindow, load_guide};
use super::{Catalog, Snapshot};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::model::Channel;
use crate::upstream::{OpenWebIf, UpstreamError, load_channels};

/// First wait after a failed channel load; it doubles per failure up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// Wait after a guide refresh that loaded no channel's guide at all.
const GUIDE_RETRY: Duration = Duration::from_secs(300);
/// What a `Retry-After` assumes a refresh takes before one has finished.
const FIRST_ESTIMATE: Duration = Duration::from_secs(5);

/// Why an on-demand refresh did not give a new catalog. Codes are stable.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("a refresh is already running; try again in {} s", .retry_after.as_secs())]
    InProgress { retry_after: Duration },
    #[error("refresh failed, the previous catalog stays: {0}")]
    Upstream(#[source] UpstreamError),
    #[error("the catalog task has stopped")]
    Stopped,
}

impl RefreshError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::InProgress { .. } => "refresh-in-progress",
            Self::Upstream(e) => e.code(),
            Self::Stopped => "shutting-down",
        }
    }
}

/// What one on-demand refresh did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefreshSummary {
    /// Channels in the catalog now.
    pub channels: usize,
    /// Programmes in the guide now.
    pub events: usize,
    /// Whether this refresh loaded the guide (false when `epg.enabled` is off).
    pub guide: bool,
    /// Channels whose guide could not be read; they keep their previous programmes.
    pub guide_failed_channels: usize,
    /// HTTP requests sent to the receiver, retries included.
    pub receiver_requests: u64,
    pub duration_ms: u64,
}

pub(crate) type Reply = oneshot::Sender<Result<RefreshSummary, RefreshError>>;

pub(crate) enum Command {
    /// Reload channels and (when enabled) the guide now.
    Refresh(Reply),
}

/// What the task needs from the configuration.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub bouquets: Vec<String>,
    pub channels_every: Duration,
    /// `None` = the guide is off.
    pub guide: Option<GuideSettings>,
    /// Channels whose guide is fetched at once (the client bounds requests as well).
    pub concurrency: usize,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct GuideSettings {
    pub every: Duration,
    pub days: u32,
}

impl Settings {
    pub(crate) fn from_config(config: &Config) -> Self {
        Self {
            bouquets: config.receiver.bouquets.clone(),
            channels_every: config.catalog.refresh_interval,
            guide: config.epg.enabled.then_some(GuideSettings {
                every: config.epg.refresh_interval,
                days: config.epg.days,
            }),
            concurrency: config.receiver.max_concurrency.max(1) as usize,
        }
    }
}

/// What one refresh does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Plan {
    pub channels: bool,
    pub guide: bool,
}

/// When the channels and the guide are due; pure.
#[derive(Debug)]
pub(crate) struct Schedule {
    channels_every: Duration,
    guide_every: Option<Duration>,
    next_channels: Instant,
    /// `None` while the guide is off or before the first channel list.
    next_guide: Option<Instant>,
    retry: Duration,
}

impl Schedule {
    pub(crate) fn new(now: Instant, channels_every: Duration, guide_every: Option<Duration>) -> Self {
        Self {
            channels_every,
            guide_every,
            next_channels: now,
            next_guide: None,
            retry: RETRY_FIRST,
        }
    }

    /// The next refresh and when it is due. Before the first channel list only the channels are
    /// due (with the guide right after, when on); channels due with the guide go first.
    pub(crate) fn next(&self, has_catalog: bool) -> (Instant, Plan) {
        let guide_on = self.guide_every.is_some();
        if !has_catalog {
            return (
                self.next_channels,
                Plan {
                    channels: true,
                    guide: guide_on,
                },
            );
        }
        match self.next_guide {
            Some(guide) if guide < self.next_channels => (
                guide,
                Plan {
                    channels: false,
                    guide: true,
                },
            ),
            guide => (
                self.next_channels,
                Plan {
                    channels: true,
                    guide: guide.is_some_and(|g| g <= self.next_channels),
                },
            ),
        }
    }

    /// The plan of a refresh asked for now.
    pub(crate) fn full(&self) -> Plan {
        Plan {
            channels: true,
            guide: self.guide_every.is_some(),
        }
    }

    /// A channel load ended: next one after the interval, or sooner with backoff after a failure.
    pub(crate) fn channels_done(&mut self, now: Instant, ok: bool) {
        if ok {
            self.retry = RETRY_FIRST;
            self.next_channels = now + self.channels_every;
        } else {
            self.next_channels = now + self.retry.min(self.channels_every);
            self.retry = (self.retry * 2).min(RETRY_MAX);
        }
    }

    /// A guide load ended; `loaded` is false when no channel's guide could be read.
    pub(crate) fn guide_done(&mut self, now: Instant, loaded: bool) {
        if let Some(every) = self.guide_every {
            let wait = if loaded { every } else { GUIDE_RETRY.min(every) };
            self.next_guide = Some(now + wait);
        }
    }
}

type Job = Pin<Box<dyn Future<Output = Outcome> + Send>>;

enum Outcome {
    Channels(Result<Vec<Channel>, UpstreamError>),
    Guide(GuideLoad),
}

/// The refresh in progress.
struct Run {
    job: Job,
    /// Load the guide once the channels are in.
    then_guide: bool,
    /// Counts this refresh's requests; shares the pool and the in-flight bound.
    client: OpenWebIf,
    started: Instant,
    reply: Option<Reply>,
    guide_loaded: bool,
    guide_failed: usize,
}

pub(crate) struct Task {
    client: OpenWebIf,
    settings: Settings,
    metrics: Arc<Metrics>,
    tx: watch::Sender<Snapshot>,
    schedule: Schedule,
    catalog: Option<Arc<Catalog>>,
    channels_error: Option<String>,
    guide_error: Option<String>,
    /// How long the last complete refresh took, for `Retry-After`.
    last_duration: Option<Duration>,
}

impl Task {
    pub(crate) fn new(
        client: OpenWebIf,
        settings: Settings,
        metrics: Arc<Metrics>,
        tx: watch::Sender<Snapshot>,
    ) -> Self {
        let schedule = Schedule::new(Instant::now(), settings.channels_every, settings.guide.map(|g| g.every));
        Self {
            client,
            settings,
            metrics,
            tx,
            schedule,
            catalog: None,
            channels_error: None,
            guide_error: None,
            last_duration: None,
        }
    }

    /// Runs until `shutdown`; a refresh in progress is dropped then, and its caller told.
    pub(crate) async fn run(mut self, mut commands: mpsc::Receiver<Command>, shutdown: CancellationToken) {
        let mut running: Option<Run> = None;
        loop {
            let (due, plan) = self.schedule.next(self.catalog.is_some());
            tokio::select! {
                () = shutdown.cancelled() => return,
                Some(command) = commands.recv() => match command {
                    Command::Refresh(reply) => {
                        if let Some(run) = running.as_ref() {
                            let retry_after = self.retry_after(run);
                            let _ = reply.send(Err(RefreshError::InProgress { retry_after }));
                        } else {
                            running = Some(self.start(self.schedule.full(), Some(reply)));
                        }
                    }
                },
                () = tokio::time::sleep_until(due), if running.is_none() => {
                    running = Some(self.start(plan, None));
                }
                outcome = async { running.as_mut().expect("checked by the precondition").job.as_mut().await },
                    if running.is_some() =>
                {
                    let run = running.take().expect("checked by the precondition");
                    running = self.finish(run, outcome);
                }
            }
        }
    }

    fn start(&self, plan: Plan, reply: Option<Reply>) -> Run {
        let client = self.client.counted();
        let job = if plan.channels {
            self.channels_job(&client)
        } else {
            self.guide_job(&client)
        };
        Run {
            job,
            then_guide: plan.channels && plan.guide,
            client,
            started: Instant::now(),
            reply,
            guide_loaded: false,
            guide_failed: 0,
        }
    }

    fn channels_job(&self, client: &OpenWebIf) -> Job {
        let client = client.clone();
        let bouquets = self.settings.bouquets.clone();
        Box::pin(async move { Outcome::Channels(load_channels(&client, &bouquets).await) })
    }

    /// The guide of the current catalog's channels. Only planned once a catalog exists.
    fn guide_job(&self, client: &OpenWebIf) -> Job {
        let client = client.clone();
        let catalog = self.catalog.clone();
        let days = self.settings.guide.map_or(1, |g| g.days);
        let concurrency = self.settings.concurrency;
        Box::pin(async move {
            let window = GuideWindow::days_from_now(days);
            let (channels, previous) = match &catalog {
                Some(c) => (c.channels.as_slice(), Some(c.guide.as_ref())),
                None => (&[][..], None),
            };
            Outcome::Guide(load_guide(&client, channels, window, previous, concurrency).await)
        })
    }

    /// Applies a finished job; returns the refresh's next job, if it has one.
    fn finish(&mut self, mut run: Run, outcome: Outcome) -> Option<Run> {
        let now = Instant::now();
        let result = match outcome {
            Outcome::Channels(Ok(channels)) => {
                self.schedule.channels_done(now, true);
                self.metrics.catalog_loaded(channels.len());
                tracing::info!(channels = channels.len(), "Loaded the channel list.");
                let guide = self.catalog.as_ref().map(|c| Arc::clone(&c.guide)).unwrap_or_default();
                // New channels have no guide yet: load it now rather than at the next interval.
                let changed = self.catalog.as_ref().is_some_and(|old| {
                    old.channels.len() != channels.len()
                        || old
                            .channels
                            .iter()
                            .zip(&channels)
                            .any(|(a, b)| a.service_ref != b.service_ref)
                });
                if changed && self.settings.guide.is_some() && !run.then_guide {
                    tracing::info!("The channel line-up changed; loading the guide now.");
                    run.then_guide = true;
                }
                self.catalog = Some(Arc::new(Catalog {
                    channels,
                    loaded_at: SystemTime::now(),
                    guide,
                }));
                self.channels_error = None;
                self.publish();
                if run.then_guide {
                    run.then_guide = false;
                    run.job = self.guide_job(&run.client);
                    return Some(run);
                }
                Ok(())
            }
            Outcome::Channels(Err(error)) => {
                self.schedule.channels_done(now, false);
                self.metrics.catalog_failed();
                let keeping = if self.catalog.is_some() {
                    "keeping the previous one"
                } else {
                    "retrying"
                };
                tracing::warn!(code = error.code(), %error, retry_in_ms = (self.schedule.next_channels - now).as_millis() as u64, "Channel list not loaded; {keeping}.");
                self.channels_error = Some(error.to_string());
                self.publish();
                Err(error)
            }
            Outcome::Guide(load) => self.apply_guide(&mut run, now, load),
        };
        let elapsed = run.started.elapsed();
        let summary = result.map(|()| {
            let catalog = self.catalog.as_ref();
            RefreshSummary {
                channels: catalog.map_or(0, |c| c.channels.len()),
                events: catalog.map_or(0, |c| c.guide.len()),
                guide: run.guide_loaded,
                guide_failed_channels: run.guide_failed,
                receiver_requests: run.client.requests(),
                duration_ms: elapsed.as_millis() as u64,
            }
        });
        if let Ok(summary) = &summary {
            self.last_duration = Some(elapsed);
            tracing::info!(
                channels = summary.channels,
                events = summary.events,
                receiver_requests = summary.receiver_requests,
                duration_ms = summary.duration_ms,
                "Catalog refreshed."
            );
        }
        if let Some(reply) = run.reply.take() {
            // The caller may have gone; the catalog is published either way.
            let _ = reply.send(summary.map_err(RefreshError::Upstream));
        }
        None
    }

    fn apply_guide(&mut self, run: &mut Run, now: Instant, load: GuideLoad) -> Result<(), UpstreamError> {
        let Some(current) = self.catalog.clone() else {
            return Ok(());
        };
        let total = current.channels.len();
        let failed = load.failed.len();
        let mut failures = load.failed.into_iter();
        if total > 0 && failed == total {
            let (service, error) = failures.next().expect("failed == total > 0");
            self.schedule.guide_done(now, false);
            self.metrics.epg_failed();
            tracing::warn!(code = error.code(), %error, %service, "Guide not loaded; keeping the previous one.");
            self.guide_error = Some(format!("guide not loaded: {error}"));
            self.publish();
            return Err(error);
        }
        self.schedule.guide_done(now, true);
        let events = load.guide.len();
        self.metrics.epg_loaded(events, failed == 0);
        tracing::info!(channels = total, events, failed_channels = failed, "Loaded the guide.");
        self.guide_error = failures.next().map(|(service, error)| {
            format!("guide of {failed} of {total} channels not loaded (first: {service}: {error})")
        });
        run.guide_loaded = true;
        run.guide_failed = failed;
        self.catalog = Some(Arc::new(Catalog {
            channels: current.channels.clone(),
            loaded_at: current.loaded_at,
            guide: Arc::new(load.guide),
        }));
        self.publish();
        Ok(())
    }

    fn publish(&self) {
        self.tx.send_replace(Snapshot {
            catalog: self.catalog.clone(),
            last_error: self.channels_error.clone(),
            guide_error: self.guide_error.clone(),
        });
    }

    /// When a refresh that is running will likely be done: the last one's duration less the time
    /// this one has run, at least a second.
    fn retry_after(&self, run: &Run) -> Duration {
        let estimate = self.last_duration.unwrap_or(FIRST_ESTIMATE);
        let left = estimate.saturating_sub(run.started.elapsed());
        Duration::from_secs(left.as_secs_f64().ceil().max(1.0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn plan(channels: bool, guide: bool) -> Plan {
        Plan { channels, guide }
    }

    #[test]
    fn first_load_retries_with_backoff_then_follows_the_interval() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, 15 * MIN, Some(60 * MIN));
        assert_eq!(s.next(false), (t0, plan(true, true)), "load at once, guide right after");
        let mut waits = Vec::new();
        let mut now = t0;
        for _ in 0..8 {
            s.channels_done(now, false);
            let (due, p) = s.next(false);
            assert_eq!(p, plan(true, true));
            waits.push((due - now).as_secs());
            now = due;
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60]);
        s.channels_done(now, true);
        s.guide_done(now, true);
        assert_eq!(s.next(true), (now + 15 * MIN, plan(true, false)));
        s.channels_done(now, false);
        assert_eq!(
            s.next(true).0,
            now + Duration::from_secs(1),
            "backoff starts again after a success"
        );
    }

    #[test]
    fn channels_and_guide_keep_their_own_intervals() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, 15 * MIN, Some(60 * MIN));
        s.channels_done(t0, true);
        s.guide_done(t0, true);
        let mut seen = Vec::new();
        for _ in 0..5 {
            let (now, p) = s.next(true);
            seen.push(((now - t0).as_secs() / 60, p));
            if p.channels {
                s.channels_done(now, true);
            }
            if p.guide {
                s.guide_done(now, true);
            }
        }
        assert_eq!(
            seen,
            [
                (15, plan(true, false)),
                (30, plan(true, false)),
                (45, plan(true, false)),
                (60, plan(true, true)),
                (75, plan(true, false)),
            ]
        );
        // A guide due before the channels goes alone.
        let mut s = Schedule::new(t0, 15 * MIN, Some(10 * MIN));
        s.channels_done(t0, true);
        s.guide_done(t0, true);
        assert_eq!(s.next(true), (t0 + 10 * MIN, plan(false, true)));
        // A guide that loaded nothing is retried sooner, never later than its interval.
        s.guide_done(t0, false);
        assert_eq!(s.next(true).0, t0 + 5 * MIN);
    }

    #[test]
    fn guide_off_means_channels_only() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, 15 * MIN, None);
        assert_eq!(s.next(false), (t0, plan(true, false)));
        assert_eq!(s.full(), plan(true, false));
        s.channels_done(t0, true);
        s.guide_done(t0, true);
        assert_eq!(s.next(true), (t0 + 15 * MIN, plan(true, false)));
        // A short channel interval caps the backoff.
        let mut s = Schedule::new(t0, Duration::from_secs(3), None);
        for _ in 0..4 {
            s.channels_done(t0, false);
        }
        assert_eq!(s.next(false).0, t0 + Duration::from_secs(3));
    }

    #[test]
    fn error_codes_are_stable() {
        let busy = RefreshError::InProgress {
            retry_after: Duration::from_secs(3),
        };
        assert_eq!(busy.code(), "refresh-in-progress");
        assert_eq!(busy.to_string(), "a refresh is already running; try again in 3 s");
        let failed = RefreshError::Upstream(UpstreamError::Status {
            endpoint: "/api/bouquets",
            status: 500,
        });
        assert_eq!(failed.code(), "upstream-unavailable");
        assert_eq!(RefreshError::Stopped.code(), "shutting-down");
    }
}
