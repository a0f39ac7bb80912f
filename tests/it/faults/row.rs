//! One row of the matrix run and measured on its own receiver and server ([`run`]), and the
//! [`Row`] it measures, with its line in the printed table.

use std::time::Duration;

use tokio::time::Instant;
use xg2g::demo::Faults;

use super::case::{Case, Outage, Target};
use super::tape::{Viewer, answer, decode_errors, longest_gap, metric, reconnects, resumed_at, span_after, until};
use super::{HD, LOCAL, OTHER_MAX_GAP, POLL, SD, START_TIMEOUT, TOKEN};
use crate::common::{config_for, demo, ready, start_app};

/// One measured row of the matrix.
#[derive(Debug, Default)]
pub(super) struct Row {
    pub(super) fault: &'static str,
    /// The playing client: survived, or how it ended.
    pub(super) playing: String,
    /// A new request while the fault holds: status and code.
    pub(super) new: String,
    /// Fault on → xg2g acts (a reconnect; for starts and the API, the answer).
    pub(super) detect: Option<Duration>,
    /// Receiver back → data flowing again (for starts and the API, a new request succeeding).
    pub(super) recover: Option<Duration>,
    pub(super) decode_errors: Option<usize>,
    pub(super) decode_log: String,
    pub(super) reconnects: u64,
    /// The other channel's longest silence during the fault, and whether its client ended.
    pub(super) other_gap: Duration,
    pub(super) other_ended: bool,
    /// The stream port's circuit breaker after the row (0 closed, 1 open, 2 half-open): every
    /// channel shares it.
    pub(super) breaker: f64,
    /// Fault on → the playing client's stream ended, if it did.
    pub(super) ended: Option<Duration>,
    /// The new request's status after the receiver is back.
    pub(super) after: u16,
    pub(super) new_status: u16,
    pub(super) playing_survived: bool,
}

impl Row {
    pub(super) fn other_ok(&self) -> bool {
        !self.other_ended && self.other_gap <= OTHER_MAX_GAP && self.breaker == 0.0
    }

    pub(super) fn table_line(&self) -> String {
        let ms = |d: Option<Duration>| d.map_or("—".to_owned(), |d| format!("{:.2} s", d.as_secs_f64()));
        let outcome = match (self.playing.is_empty(), self.new.is_empty()) {
            (false, false) => format!("playing: {}; new: {}", self.playing, self.new),
            (false, true) => format!("playing: {}", self.playing),
            _ => format!("new: {}", self.new),
        };
        format!(
            "| {} | {} | {} | {} | {} | {} |",
            self.fault,
            outcome,
            ms(self.detect),
            ms(self.recover),
            self.decode_errors.map_or("—".to_owned(), |n| n.to_string()),
            if self.other_ok() {
                format!(
                    "yes (longest gap {:.2} s, breaker closed)",
                    self.other_gap.as_secs_f64()
                )
            } else {
                format!(
                    "NO (gap {:.2} s, ended {})",
                    self.other_gap.as_secs_f64(),
                    self.other_ended
                )
            },
        )
    }
}
pub(super) async fn run(case: Case) -> Row {
    let demo = demo().await;
    let mut extra = vec![("streaming.start_timeout", START_TIMEOUT), ("api_token", TOKEN)];
    if matches!(case.target, Target::Api) {
        extra.extend([("receiver.timeout", "1s"), ("receiver.retries", "1")]);
    }
    let (running, base) = start_app(&config_for(&demo, &extra)).await;
    ready(&running).await;
    let stream = |channel: &str| format!("{base}/stream/{channel}?profile=copy");

    // Both channels play for a second before anything goes wrong.
    let playing = Viewer::start(stream(HD), true);
    let other = Viewer::start(stream(SD), false);
    let warm = Instant::now() + Duration::from_secs(15);
    let playing_since = Instant::now();
    let warmed = until(warm, || {
        span_after(&playing.tape.lock().unwrap(), playing_since) >= Duration::from_secs(1)
            && other.read(|t| !t.arrivals.is_empty())
    })
    .await;
    assert!(warmed.is_some(), "{}: both channels play before the fault", case.fault);

    let mut row = Row {
        fault: case.fault,
        ..Row::default()
    };
    let reconnects_before = reconnects(&base).await;
    let streams_before = demo.stats().active_streams.load(std::sync::atomic::Ordering::Relaxed);
    let faulted: &[&str] = match (case.target, case.new_client) {
        (Target::Playing, true) => &[HD, LOCAL],
        (Target::Playing, false) => &[HD],
        (Target::Start, _) => &[LOCAL],
        (Target::Api, _) => &[],
    };
    let fault_on = Instant::now();
    demo.set_faults(|f| case.on.apply(f, faulted));
    // xg2g noticed when its reconnect counter moves (it counts before the backoff).
    let mut noticed = tokio::spawn({
        let base = base.clone();
        async move {
            let deadline = fault_on + Duration::from_secs(20);
            let mut tick = tokio::time::interval(POLL);
            while Instant::now() < deadline {
                tick.tick().await;
                if reconnects(&base).await > reconnects_before {
                    return Some(Instant::now());
                }
            }
            None
        }
    });

    // A new client while the fault holds: a stream, or for API faults a catalog refresh (the
    // streams need no API once the catalog is loaded).
    let new_request = match (case.target, case.new_client) {
        (_, false) => tokio::spawn(async { (0, String::new(), Duration::ZERO) }),
        (Target::Api, true) => tokio::spawn({
            let url = format!("{base}/api/v1/refresh");
            async move { answer(&url, reqwest::Method::POST).await }
        }),
        (_, true) => tokio::spawn({
            let url = stream(LOCAL);
            async move { answer(&url, reqwest::Method::GET).await }
        }),
    };
    let api_stream = matches!(case.target, Target::Api).then(|| {
        tokio::spawn({
            let url = stream(LOCAL);
            async move { answer(&url, reqwest::Method::GET).await }
        })
    });

    // The fault holds for its outage and until the new request has its answer; meanwhile xg2g's
    // first reconnect is the moment it noticed.
    let deadline = fault_on + Duration::from_secs(45);
    let mut back = None;
    let mut tick = tokio::time::interval(POLL);
    while back.is_none() {
        tick.tick().await;
        let now = Instant::now();
        assert!(now < deadline, "{}: the fault never ended", case.fault);
        let acted = match case.outage {
            Outage::For(d) => now >= fault_on + d,
            Outage::Once => demo.stats().active_streams.load(std::sync::atomic::Ordering::Relaxed) < streams_before,
            Outage::UntilClientEnds => playing.read(|t| t.end.is_some()),
        };
        if acted && new_request.is_finished() {
            demo.set_faults(|f| *f = Faults::default());
            back = Some(Instant::now());
        }
    }
    let back = back.expect("set by the loop");
    let (status, what, took) = new_request.await.unwrap();
    row.new_status = status;
    if case.new_client {
        row.new = format!("{status} {what}").trim().to_owned();
    }
    if matches!(case.target, Target::Start | Target::Api) {
        row.detect = Some(took);
    }
    if let Some(api_stream) = api_stream {
        let (status, what, took) = api_stream.await.unwrap();
        row.new = format!(
            "refresh {}; stream {status}{what} in {:.2} s",
            row.new,
            took.as_secs_f64()
        );
    }

    match case.target {
        Target::Playing => {
            // Data flows again: the playing client covers 1.5 s after its longest silence.
            let until_flowing = back + Duration::from_secs(15);
            until(until_flowing, || {
                playing.read(|t| {
                    t.end.is_some()
                        || resumed_at(t, fault_on)
                            .is_some_and(|at| at > back && span_after(t, at) >= Duration::from_millis(1500))
                })
            })
            .await;
            if playing.read(|t| t.end.is_some()) {
                // The client was ended: with the receiver back, a new request plays.
                let (status, _, _) = answer(&stream(HD), reqwest::Method::GET).await;
                row.after = status;
                row.recover = Some(back.elapsed());
            }
            // Data flowing again follows a reconnect, if there was one: its poll is due.
            let seen = tokio::time::timeout(Duration::from_secs(1), &mut noticed).await;
            row.detect = match seen {
                Ok(Ok(Some(at))) => Some(at.saturating_duration_since(fault_on)),
                _ => None,
            };
            noticed.abort();
        }
        Target::Start | Target::Api => {
            // The receiver is back: a new request succeeds; the time to it is the recovery.
            let url = match case.target {
                Target::Api => format!("{base}/api/v1/refresh"),
                _ => stream(LOCAL),
            };
            let method = match case.target {
                Target::Api => reqwest::Method::POST,
                _ => reqwest::Method::GET,
            };
            let (status, _, _) = answer(&url, method).await;
            row.after = status;
            row.recover = Some(back.elapsed());
            noticed.abort();
        }
    }
    let now = Instant::now();
    row.reconnects = reconnects(&base).await - reconnects_before;
    let breaker = format!(
        "xg2g_circuit_breaker_state{{name=\"stream_{}\"}}",
        demo.stream_addr().port()
    );
    // Absent (NaN) fails the row as an open breaker would: the series must be there to show it.
    row.breaker = metric(&base, &breaker).await.unwrap_or(f64::NAN);
    let other = other.stop();
    row.other_gap = longest_gap(&other, fault_on, now);
    row.other_ended = other.end.is_some();
    let playing = playing.stop();
    if matches!(case.target, Target::Playing) {
        row.playing_survived = playing.end.is_none();
        row.ended = playing
            .end
            .as_ref()
            .map(|(at, _)| at.saturating_duration_since(fault_on));
        row.playing = match &playing.end {
            None => format!(
                "survived, {} reconnect{}",
                row.reconnects,
                if row.reconnects == 1 { "" } else { "s" }
            ),
            Some((at, how)) => format!(
                "{how} after {:.2} s",
                at.saturating_duration_since(fault_on).as_secs_f64()
            ),
        };
        if row.playing_survived {
            row.recover = resumed_at(&playing, fault_on)
                .filter(|at| *at > back)
                .map(|at| at.saturating_duration_since(back));
        }
        let (errors, log) = tokio::task::spawn_blocking(move || decode_errors(&playing.bytes))
            .await
            .unwrap();
        row.decode_errors = Some(errors);
        row.decode_log = log;
    } else {
        row.playing_survived = playing.end.is_none();
        row.other_ended |= playing.end.is_some();
        row.other_gap = row.other_gap.max(longest_gap(&playing, fault_on, now));
    }
    running.stop().await;
    drop(demo);
    row
}
