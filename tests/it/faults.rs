//! The fault matrix (issue 15): every fault the demo receiver injects, against a client playing
//! the faulted channel, a client starting one, and a second channel that must play on. Each row
//! runs on its own receiver and server, all rows at once; the test prints the measured table
//! (README "Fault matrix") and then checks every row's expectations.
//!
//! Times are measured on events: the fault switched on, xg2g's reconnect (its metric), the
//! receiver back, the client's first bytes after the gap. No sleep orders anything here; waits
//! poll what a client or the receiver can observe, each with a deadline.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::Instant;
use xg2g::demo::{Faults, PortFault, StreamFault};

use crate::common::{client, config_for, demo, ready, start_app};

/// The faulted channel: H.264, so that ffmpeg's decode errors after a splice mean something.
const HD: &str = "1:0:19:283D:3FB:1:C00000:0:0:0:";
/// The other channel, on the same stream port, playing throughout.
const SD: &str = "1:0:1:6F0B:44D:1:C00000:0:0:0:";
/// The channel a new client asks for while the fault holds.
const LOCAL: &str = "1:0:1:2EE3:441:1:C00000:0:0:0:";
const HD_VIDEO_PID: u16 = 0x65;
const TOKEN: &str = "fault-matrix-token";
/// The server's stall timeout is the default, 2 s: a stall is noticed within it and a tick.
const STALL_NOTICE: Duration = Duration::from_millis(2_500);
/// A receiver that closes, resets or refuses is noticed at once (before the reconnect's backoff).
const FAILURE_NOTICE: Duration = Duration::from_secs(1);
/// Short, so that a tuner-busy start is answered quickly; every other start is far below it.
const START_TIMEOUT: &str = "4s";
/// A gap longer than this in the other channel's stream counts as harm.
const OTHER_MAX_GAP: Duration = Duration::from_secs(1);
const POLL: Duration = Duration::from_millis(20);

/// What one client's response delivered, and when.
#[derive(Default)]
struct Tape {
    status: Option<u16>,
    arrivals: Vec<(Instant, usize)>,
    bytes: Vec<u8>,
    /// When and how the response ended, if it did.
    end: Option<(Instant, String)>,
}

/// A client reading a live stream in the background into a [`Tape`].
struct Viewer {
    tape: Arc<Mutex<Tape>>,
    task: tokio::task::JoinHandle<()>,
}

impl Viewer {
    fn start(url: String, keep_bytes: bool) -> Self {
        let tape = Arc::new(Mutex::new(Tape::default()));
        let writer = Arc::clone(&tape);
        let task = tokio::spawn(async move {
            let response = match client().get(&url).send().await {
                Ok(response) => response,
                Err(e) => {
                    writer.lock().unwrap().end = Some((Instant::now(), format!("request failed: {e}")));
                    return;
                }
            };
            writer.lock().unwrap().status = Some(response.status().as_u16());
            let mut body = response.bytes_stream();
            loop {
                let next = body.next().await;
                let mut tape = writer.lock().unwrap();
                match next {
                    Some(Ok(chunk)) => {
                        tape.arrivals.push((Instant::now(), chunk.len()));
                        if keep_bytes {
                            tape.bytes.extend_from_slice(&chunk);
                        }
                    }
                    Some(Err(e)) => {
                        tape.end = Some((Instant::now(), format!("ended with an error: {e}")));
                        return;
                    }
                    None => {
                        tape.end = Some((Instant::now(), "ended".to_owned()));
                        return;
                    }
                }
            }
        });
        Self { tape, task }
    }

    fn read<T>(&self, f: impl FnOnce(&Tape) -> T) -> T {
        f(&self.tape.lock().unwrap())
    }

    /// Stops reading and hands back the tape.
    fn stop(self) -> Tape {
        self.task.abort();
        std::mem::take(&mut *self.tape.lock().unwrap())
    }
}

/// Polls `ready` until it holds or `deadline` passes; returns when it held.
async fn until(deadline: Instant, mut ready: impl FnMut() -> bool) -> Option<Instant> {
    let mut tick = tokio::time::interval(POLL);
    loop {
        tick.tick().await;
        if ready() {
            return Some(Instant::now());
        }
        if Instant::now() >= deadline {
            return None;
        }
    }
}

/// Seconds of stream a tape covers from `from` on.
fn span_after(tape: &Tape, from: Instant) -> Duration {
    let mut after = tape.arrivals.iter().map(|(at, _)| *at).filter(|at| *at >= from);
    match (after.next(), tape.arrivals.last()) {
        (Some(first), Some((last, _))) => last.saturating_duration_since(first),
        _ => Duration::ZERO,
    }
}

/// The end of the longest silence after `from` (counting from `from` itself): where data flowed
/// again after the fault.
fn resumed_at(tape: &Tape, from: Instant) -> Option<Instant> {
    let mut previous = from;
    let mut best: Option<(Duration, Instant)> = None;
    for (at, _) in tape.arrivals.iter().filter(|(at, _)| *at > from) {
        let gap = at.saturating_duration_since(previous);
        if best.is_none_or(|(longest, _)| gap > longest) {
            best = Some((gap, *at));
        }
        previous = *at;
    }
    best.map(|(_, at)| at)
}

/// The longest silence in a tape between `from` and `to` (both edges count).
fn longest_gap(tape: &Tape, from: Instant, to: Instant) -> Duration {
    let mut previous = from;
    let mut longest = Duration::ZERO;
    for (at, _) in tape.arrivals.iter().filter(|(at, _)| *at > from && *at <= to) {
        longest = longest.max(at.saturating_duration_since(previous));
        previous = *at;
    }
    longest.max(to.saturating_duration_since(previous))
}

/// A metric's value from `/metrics`; `series` is its name with labels, as exported.
async fn metric(base: &str, series: &str) -> Option<f64> {
    let response = client().get(format!("{base}/metrics")).send().await.ok()?;
    let text = response.text().await.ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
}

async fn reconnects(base: &str) -> u64 {
    metric(base, "xg2g_upstream_reconnects_total")
        .await
        .map_or(0, |v| v as u64)
}

/// ffmpeg's decode errors over a capture cut before its last video PES, so that what the
/// capture window cut short is not counted.
fn decode_errors(bytes: &[u8]) -> (usize, String) {
    let whole = &bytes[..bytes.len() / 188 * 188];
    let last_start = whole
        .chunks_exact(188)
        .rposition(|p| {
            p[0] == 0x47 && p[1] & 0x40 != 0 && (u16::from(p[1] & 0x1F) << 8 | u16::from(p[2])) == HD_VIDEO_PID
        })
        .unwrap_or(whole.len() / 188);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("capture.ts");
    std::fs::write(&path, &whole[..last_start * 188]).unwrap();
    let output = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-i"])
        .arg(&path)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg runs (install ffmpeg)");
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    (log.lines().count(), log)
}

/// `{status} {code}` of an error answer, or `200` with the time to the first bytes.
async fn answer(url: &str, method: reqwest::Method) -> (u16, String, Duration) {
    let asked = Instant::now();
    let response = match client()
        .request(method, url)
        .header("x-api-token", TOKEN)
        .timeout(Duration::from_secs(40))
        .send()
        .await
    {
        Ok(response) => response,
        Err(e) => return (0, format!("no answer: {e}"), asked.elapsed()),
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(|v| format!(", Retry-After {v}"))
        .unwrap_or_default();
    if response.status().is_success() {
        let mut body = response.bytes_stream();
        let first = tokio::time::timeout(Duration::from_secs(10), body.next()).await;
        let what = match first {
            Ok(Some(Ok(_))) => "",
            _ => " without bytes",
        };
        return (status, what.to_owned(), asked.elapsed());
    }
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let code = body["error"]["code"].as_str().unwrap_or("(no JSON code)").to_owned();
    (status, format!("{code}{retry_after}"), asked.elapsed())
}

/// How long the receiver stays faulty.
#[derive(Clone, Copy)]
enum Outage {
    /// This long after the fault is switched on.
    For(Duration),
    /// Until the receiver has acted once (the open connection closed): one drop.
    Once,
    /// Until xg2g gives up and ends the playing client.
    UntilClientEnds,
}

/// Whom a row's fault hits.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    /// The channel a client plays (and the one a new client asks for).
    Playing,
    /// Only a new client's channel.
    Start,
    /// The OpenWebIF API.
    Api,
}

struct Case {
    fault: &'static str,
    target: Target,
    outage: Outage,
    /// Whether a new client asks for a faulted channel while the fault holds.
    new_client: bool,
    on: Switch,
    expect: Expect,
}

/// What a row must show.
#[derive(Clone, Copy)]
enum Expect {
    /// The playing client stays connected; xg2g notices within `notice` of the fault and data
    /// flows within `resume` of the receiver's return; a new client meanwhile gets `new`.
    Survives {
        notice: Duration,
        resume: Duration,
        new: Option<&'static str>,
    },
    /// The receiver stays away: once the reconnects are spent (within `within` of the fault)
    /// the playing client's stream ends cleanly, a new client gets `new`, and a new request
    /// plays within `resume` of the receiver's return.
    Ends {
        within: Duration,
        new: &'static str,
        resume: Duration,
    },
    /// A new client gets `answer` (status, code, …) within `within`, and plays within `resume`
    /// of the receiver's return.
    Refused {
        answer: &'static str,
        within: Duration,
        resume: Duration,
    },
    /// A catalog refresh fails cleanly, a new stream plays all the same, and a refresh works
    /// once the API is back.
    ApiDown,
}

/// What a row switches on at the receiver.
#[derive(Clone, Copy)]
enum Switch {
    /// This fault on the faulted channels' streams.
    Stream(StreamFault),
    /// The stream server crashed: the faulted channels' connections reset, and the port hangs
    /// up on every new connection.
    Restart,
    /// Every API answer this late.
    ApiDelay(Duration),
    /// Every API answer 500.
    ApiFail,
}

impl Switch {
    fn apply(self, f: &mut Faults, channels: &[&str]) {
        match self {
            Switch::Stream(fault) => {
                for channel in channels {
                    f.streams.insert((*channel).to_owned(), fault);
                }
            }
            Switch::Restart => {
                Switch::Stream(StreamFault::Reset).apply(f, channels);
                f.stream_port = Some(PortFault::Refuse);
            }
            Switch::ApiDelay(delay) => f.api_delay = delay,
            Switch::ApiFail => f.api_fail_next = u32::MAX,
        }
    }
}

/// One measured row of the matrix.
#[derive(Debug, Default)]
struct Row {
    fault: &'static str,
    /// The playing client: survived, or how it ended.
    playing: String,
    /// A new request while the fault holds: status and code.
    new: String,
    /// Fault on → xg2g acts (a reconnect; for starts and the API, the answer).
    detect: Option<Duration>,
    /// Receiver back → data flowing again (for starts and the API, a new request succeeding).
    recover: Option<Duration>,
    decode_errors: Option<usize>,
    decode_log: String,
    reconnects: u64,
    /// The other channel's longest silence during the fault, and whether its client ended.
    other_gap: Duration,
    other_ended: bool,
    /// The stream port's circuit breaker after the row (0 closed, 1 open, 2 half-open): every
    /// channel shares it.
    breaker: f64,
    /// Fault on → the playing client's stream ended, if it did.
    ended: Option<Duration>,
    /// The new request's status after the receiver is back.
    after: u16,
    new_status: u16,
    playing_survived: bool,
}

impl Row {
    fn other_ok(&self) -> bool {
        !self.other_ended && self.other_gap <= OTHER_MAX_GAP && self.breaker == 0.0
    }

    fn table_line(&self) -> String {
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

fn cases() -> Vec<Case> {
    vec![
        Case {
            fault: "stall (no data, connection open, 3 s)",
            target: Target::Playing,
            outage: Outage::For(Duration::from_secs(3)),
            new_client: false,
            on: Switch::Stream(StreamFault::Pause),
            expect: Expect::Survives {
                notice: STALL_NOTICE,
                resume: Duration::from_secs(2),
                new: None,
            },
        },
        Case {
            fault: "drop (receiver closes the connection once)",
            target: Target::Playing,
            outage: Outage::Once,
            new_client: false,
            on: Switch::Stream(StreamFault::DropAfter(0)),
            expect: Expect::Survives {
                notice: FAILURE_NOTICE,
                resume: Duration::from_secs(3),
                new: None,
            },
        },
        Case {
            fault: "reset (RST, then the port hangs up on connects, 1 s)",
            target: Target::Playing,
            outage: Outage::For(Duration::from_secs(1)),
            new_client: false,
            on: Switch::Restart,
            expect: Expect::Survives {
                notice: FAILURE_NOTICE,
                resume: Duration::from_secs(3),
                new: None,
            },
        },
        Case {
            fault: "garbage (random bytes, 3 s)",
            target: Target::Playing,
            outage: Outage::For(Duration::from_secs(3)),
            new_client: false,
            on: Switch::Stream(StreamFault::Garbage),
            expect: Expect::Survives {
                notice: STALL_NOTICE,
                resume: Duration::from_secs(2),
                new: None,
            },
        },
        Case {
            fault: "404 on the stream port (1 s)",
            target: Target::Playing,
            outage: Outage::For(Duration::from_secs(1)),
            new_client: true,
            on: Switch::Stream(StreamFault::NotFound),
            expect: Expect::Survives {
                notice: FAILURE_NOTICE,
                resume: Duration::from_secs(3),
                new: Some("502 upstream-unavailable"),
            },
        },
        Case {
            fault: "500 on the stream port (1 s)",
            target: Target::Playing,
            outage: Outage::For(Duration::from_secs(1)),
            new_client: true,
            on: Switch::Stream(StreamFault::Status(500)),
            expect: Expect::Survives {
                notice: FAILURE_NOTICE,
                resume: Duration::from_secs(3),
                new: Some("502 upstream-unavailable"),
            },
        },
        Case {
            fault: "gone (404 until the clients end)",
            target: Target::Playing,
            outage: Outage::UntilClientEnds,
            new_client: true,
            on: Switch::Stream(StreamFault::NotFound),
            // Reconnects wait 0.5 s, 1 s and 2 s: the fourth failure ends the clients.
            expect: Expect::Ends {
                within: Duration::from_secs(5),
                new: "502 upstream-unavailable",
                resume: Duration::from_secs(2),
            },
        },
        Case {
            fault: "tuner busy (200, then nothing)",
            target: Target::Start,
            outage: Outage::For(Duration::ZERO),
            new_client: true,
            on: Switch::Stream(StreamFault::StallAfter(0)),
            expect: Expect::Refused {
                answer: "503 no-tuner, Retry-After 30",
                within: Duration::from_secs(5),
                resume: Duration::from_secs(2),
            },
        },
        Case {
            fault: "slow API (3 s per answer, timeout 1 s)",
            target: Target::Api,
            outage: Outage::For(Duration::ZERO),
            new_client: true,
            on: Switch::ApiDelay(Duration::from_secs(3)),
            expect: Expect::ApiDown,
        },
        Case {
            fault: "failing API (500 to everything)",
            target: Target::Api,
            outage: Outage::For(Duration::ZERO),
            new_client: true,
            on: Switch::ApiFail,
            expect: Expect::ApiDown,
        },
    ]
}

async fn run(case: Case) -> Row {
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

/// Checks one row; returns what does not hold.
fn check(row: &Row, expect: Expect) -> Vec<String> {
    let mut wrong = Vec::new();
    let mut holds = |ok: bool, what: String| {
        if !ok {
            wrong.push(format!("{}: {what}", row.fault));
        }
    };
    holds(
        row.other_ok(),
        format!(
            "the other channel plays on (gap {:?}, ended {}) and the port's breaker stays closed ({})",
            row.other_gap, row.other_ended, row.breaker
        ),
    );
    let within = |d: Option<Duration>, limit: Duration| d.is_some_and(|d| d <= limit);
    match expect {
        Expect::Survives { notice, resume, new } => {
            holds(
                row.playing_survived,
                format!("the playing client stays: {}", row.playing),
            );
            holds(
                within(row.detect, notice),
                format!("noticed within {notice:?}: {:?}", row.detect),
            );
            holds(
                within(row.recover, resume),
                format!("resumed within {resume:?}: {:?}", row.recover),
            );
            if let Some(new) = new {
                holds(row.new == new, format!("a new client gets {new}: {}", row.new));
            }
        }
        Expect::Ends {
            within: limit,
            new,
            resume,
        } => {
            holds(
                row.playing.starts_with("ended after"),
                format!("the playing client's stream ends cleanly: {}", row.playing),
            );
            holds(
                within(row.ended, limit),
                format!("ended within {limit:?} of the fault: {:?}", row.ended),
            );
            holds(row.new == new, format!("a new client gets {new}: {}", row.new));
            holds(
                row.after == 200,
                format!("plays once the receiver is back: {}", row.after),
            );
            holds(
                within(row.recover, resume),
                format!("plays within {resume:?}: {:?}", row.recover),
            );
        }
        Expect::Refused {
            answer,
            within: limit,
            resume,
        } => {
            holds(row.new == answer, format!("a new client gets {answer}: {}", row.new));
            holds(
                within(row.detect, limit),
                format!("answered within {limit:?}: {:?}", row.detect),
            );
            holds(
                row.after == 200,
                format!("plays once the receiver is back: {}", row.after),
            );
            holds(
                within(row.recover, resume),
                format!("plays within {resume:?}: {:?}", row.recover),
            );
        }
        Expect::ApiDown => {
            holds(
                row.new.starts_with("refresh 502 upstream-unavailable; stream 200 in"),
                format!("refresh 502, a new stream plays: {}", row.new),
            );
            holds(
                row.after == 200,
                format!("a refresh works once the API is back: {}", row.after),
            );
        }
    }
    if let Some(errors) = row.decode_errors {
        // A splice resumes at a key frame; the stream cut by the fault ends in a partial frame.
        holds(
            errors as u64 <= 3 + 4 * row.reconnects,
            format!(
                "{errors} decode errors after {} reconnects:\n{}",
                row.reconnects, row.decode_log
            ),
        );
    }
    wrong
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fault_matrix() {
    let started = std::time::Instant::now();
    // One task polls every row; the servers, receivers and decodes run on the runtime's workers.
    // `XG2G_FAULT_ROWS=drop,stall` runs only the rows whose fault starts with one of these.
    let only = std::env::var("XG2G_FAULT_ROWS").unwrap_or_default();
    let picked: Vec<Case> = cases()
        .into_iter()
        .filter(|c| only.is_empty() || only.split(',').any(|p| c.fault.starts_with(p.trim())))
        .collect();
    let expects: Vec<Expect> = picked.iter().map(|c| c.expect).collect();
    let rows = futures_util::future::join_all(picked.into_iter().map(run)).await;
    let mut table = String::from(
        "| fault | client outcome | detect | recover | decode errors after splice | other channel ok |\n\
         |---|---|---|---|---|---|\n",
    );
    for row in &rows {
        table.push_str(&row.table_line());
        table.push('\n');
    }
    println!("{table}\nfault matrix: {:.1} s", started.elapsed().as_secs_f64());
    let wrong: Vec<String> = rows
        .iter()
        .zip(expects)
        .flat_map(|(row, expect)| check(row, expect))
        .collect();
    assert!(wrong.is_empty(), "{}\n\n{table}", wrong.join("\n"));
}
