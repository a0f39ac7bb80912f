//! The session core without GStreamer: sessions whose graphs are scripted by the test, on
//! tokio's paused clock (a `sleep` there advances virtual time once every task is idle, so the
//! timings below are exact, not raced). Each test fails when the behaviour it names is removed.

use std::sync::Mutex;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::time::{Instant, sleep, timeout};

use super::graph::{Connector, Graph};
use super::*;
use crate::mpegts::tests::{pat, pes, pmt};
use crate::pipeline::{FailureKind, GraphEvent, GraphFailure, MuxedMedia, StartError};

const PMT_PID: u16 = 0x100;
const AUDIO_PID: u16 = 0x101;

/// A radio-like transport stream: tables and one audio PES (nothing to wait for at the start).
fn media() -> GraphEvent {
    let mut bytes = Vec::new();
    bytes.extend(pat(PMT_PID, 0));
    bytes.extend(pmt(PMT_PID, &[(0x03, AUDIO_PID)], 0));
    bytes.extend(pes(AUDIO_PID, false, 0, 0));
    GraphEvent::Chunk {
        output: 0,
        bytes: Bytes::from(bytes),
    }
}

/// Sends media to a graph every `every` until the graph is gone.
fn feed(connection: &Connection, every: Duration) {
    let events = connection.events.clone();
    tokio::spawn(async move {
        while events.send(media()).is_ok() {
            sleep(every).await;
        }
    });
}

/// The test's end of one started graph.
struct Connection {
    events: UnboundedSender<GraphEvent>,
    stopped: UnboundedReceiver<()>,
    at: Instant,
}

struct ScriptedGraph {
    events: UnboundedReceiver<GraphEvent>,
    last_chunk: Option<Instant>,
    stopped: UnboundedSender<()>,
}

impl Graph for ScriptedGraph {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<GraphEvent> {
        match self.events.poll_recv(cx) {
            Poll::Ready(Some(event)) => {
                if matches!(event, GraphEvent::Chunk { .. }) {
                    self.last_chunk = Some(Instant::now());
                }
                Poll::Ready(event)
            }
            // The test let go of this graph: it stays silent.
            Poll::Ready(None) | Poll::Pending => Poll::Pending,
        }
    }

    fn outputs(&self) -> usize {
        1
    }

    fn source_silence(&self) -> Option<Duration> {
        self.last_chunk.map(|at| at.elapsed())
    }

    fn outputs_in_use(&self) -> Vec<bool> {
        vec![true]
    }

    fn muxed_media(&self, _output: usize) -> MuxedMedia {
        MuxedMedia::default()
    }

    fn stop(self: Box<Self>) -> BoxFuture<'static, ()> {
        let _ = self.stopped.send(());
        Box::pin(async {})
    }
}

/// Starts scripted graphs and hands each to the test; start failures queued first are
/// returned instead, one a start.
struct Scripted {
    started: UnboundedSender<Connection>,
    refusals: Mutex<Vec<GraphFailure>>,
}

impl Connector for Scripted {
    fn start<'a>(
        &'a self,
        _spec: &'a crate::pipeline::BuildSpec<'a>,
    ) -> BoxFuture<'a, Result<Box<dyn Graph>, StartError>> {
        Box::pin(async move {
            if let Some(failure) = self.refusals.lock().unwrap().pop() {
                // Recorded like a start, with ends that lead nowhere.
                let _ = self.started.send(Connection {
                    events: unbounded_channel().0,
                    stopped: unbounded_channel().1,
                    at: Instant::now(),
                });
                return Err(StartError::Start(failure));
            }
            let (events_tx, events) = unbounded_channel();
            let (stopped, stopped_rx) = unbounded_channel();
            let _ = self.started.send(Connection {
                events: events_tx,
                stopped: stopped_rx,
                at: Instant::now(),
            });
            Ok(Box::new(ScriptedGraph {
                events,
                last_chunk: None,
                stopped,
            }) as Box<dyn Graph>)
        })
    }
}

/// A receiver that is always found, and what sessions told it about their connects.
struct Found {
    outcomes: Mutex<Vec<SourceOutcome>>,
}

impl SourceLocator for Found {
    fn locate(&self) -> BoxFuture<'_, Result<String, String>> {
        Box::pin(async { Ok("http://127.0.0.1:1/stream".to_owned()) })
    }

    fn connected(&self, outcome: SourceOutcome) {
        self.outcomes.lock().unwrap().push(outcome);
    }
}

struct Harness {
    registry: Registry,
    started: UnboundedReceiver<Connection>,
    locator: Arc<Found>,
    template: Arc<Template>,
    shutdown: CancellationToken,
}

fn settings() -> Settings {
    Settings {
        audio_languages: Vec::new(),
        idle_grace: Duration::from_secs(3),
        max_client_lag: Duration::from_secs(1),
        stall_timeout: Duration::from_secs(2),
        reconnect_attempts: 2,
        start_timeout: Duration::from_secs(4),
        hls_target_duration: 2,
        hls_window: 6,
        hls_idle_timeout: Duration::from_secs(30),
    }
}

fn harness(settings: Settings, refusals: Vec<GraphFailure>) -> Harness {
    let shutdown = CancellationToken::new();
    let (started_tx, started) = unbounded_channel();
    let connector = Arc::new(Scripted {
        started: started_tx,
        refusals: Mutex::new(refusals),
    });
    let registry = Registry::spawn_with(settings, Arc::new(Metrics::new()), shutdown.clone(), connector);
    let template = crate::pipeline::parse_template(
        std::path::Path::new("pipelines/copy.toml"),
        include_str!("../../pipelines/copy.toml"),
    )
    .expect("copy.toml parses");
    Harness {
        registry,
        started,
        locator: Arc::new(Found {
            outcomes: Mutex::new(Vec::new()),
        }),
        template: Arc::new(template),
        shutdown,
    }
}

impl Harness {
    fn key(&self, output: Output) -> SessionKey {
        SessionKey {
            service_ref: "1:0:19:283D:3FB:1:C00000:0:0:0:".parse().unwrap(),
            profile: "copy".into(),
            output,
        }
    }

    /// A TS join of the channel, running on its own task.
    fn join(&self) -> tokio::task::JoinHandle<Result<Subscription, SessionError>> {
        self.join_as(Output::Ts)
    }

    fn join_as(&self, output: Output) -> tokio::task::JoinHandle<Result<Subscription, SessionError>> {
        let registry = self.registry.clone();
        let key = self.key(output);
        let start = StartSpec {
            template: Arc::clone(&self.template),
            encoder: None,
            locator: Arc::clone(&self.locator) as Arc<dyn SourceLocator>,
            authorization: None,
            encoder_slot: None,
        };
        tokio::spawn(async move { registry.join(key, start).await })
    }

    async fn next_connection(&mut self) -> Connection {
        timeout(Duration::from_secs(60), self.started.recv())
            .await
            .expect("a connection within a minute")
            .expect("the connector lives")
    }

    /// A TS client on a new session whose receiver sends one chunk of media, then nothing.
    async fn watch_once(&mut self) -> (Subscription, Connection) {
        let watcher = self.join();
        let connection = self.next_connection().await;
        connection.events.send(media()).unwrap();
        (watcher.await.unwrap().expect("the stream"), connection)
    }

    fn outcomes(&self) -> Vec<SourceOutcome> {
        self.locator.outcomes.lock().unwrap().clone()
    }
}

/// Joins before the first bytes wait for them, all on one connection; the session stays while
/// a client watches, and closes `idle_grace` after the last one left.
#[tokio::test(start_paused = true)]
async fn joins_during_the_start_share_it_and_the_session_closes_after_the_idle_grace() {
    let mut h = harness(settings(), Vec::new());
    let first = h.join();
    let mut connection = h.next_connection().await;
    let second = h.join();
    // Both joins wait: nothing was delivered yet.
    sleep(Duration::from_millis(500)).await;
    assert!(!first.is_finished() && !second.is_finished());
    // The receiver sends on, every 0.5 s, while the graph lives.
    feed(&connection, Duration::from_millis(500));
    let first = first.await.unwrap().expect("the first join gets the stream");
    let second = second.await.unwrap().expect("the second join gets the stream");
    assert!(h.started.try_recv().is_err(), "one connection for both joins");

    // A client watching keeps it open well past the grace.
    drop(first);
    sleep(Duration::from_secs(10)).await;
    assert!(connection.stopped.try_recv().is_err(), "a watched session stays");
    assert_eq!(h.registry.count().await, 1);

    let left = Instant::now();
    drop(second);
    timeout(Duration::from_secs(60), connection.stopped.recv())
        .await
        .expect("an unwatched session closes");
    let waited = left.elapsed();
    assert!(
        waited >= Duration::from_secs(3) && waited <= Duration::from_millis(3200),
        "closed {waited:?} after the last client left; the grace is 3 s"
    );
    while h.registry.count().await != 0 {
        tokio::task::yield_now().await;
    }
    h.shutdown.cancel();
}

/// A lost connection is retried after 0.5 s, then 1 s (doubling); clients stay on and new
/// ones join during the pause; past `reconnect_attempts` failures in a row the clients' streams
/// end and the port is told.
#[tokio::test(start_paused = true)]
async fn reconnects_back_off_then_give_up() {
    let mut h = harness(settings(), Vec::new());
    let (mut watcher, first) = h.watch_once().await;

    let failure = |kind| {
        GraphEvent::Failed(GraphFailure {
            kind,
            message: "connection reset".into(),
        })
    };
    let lost = Instant::now();
    first.events.send(failure(FailureKind::Source)).unwrap();
    // A join in the backoff pause is answered at once: the session delivered before.
    let during_pause = h.join();
    sleep(Duration::from_millis(100)).await;
    assert!(during_pause.is_finished(), "a join during the pause waits for nothing");
    assert!(during_pause.await.unwrap().is_ok());

    let second = h.next_connection().await;
    assert_eq!(second.at - lost, Duration::from_millis(500), "first retry after 0.5 s");
    let lost = Instant::now();
    second.events.send(failure(FailureKind::Other)).unwrap();
    let third = h.next_connection().await;
    assert_eq!(third.at - lost, Duration::from_secs(1), "second retry after 1 s");
    third.events.send(failure(FailureKind::Source)).unwrap();

    // Two attempts failed in a row: the session gives up and the clients' streams end.
    let ended = timeout(Duration::from_secs(60), async {
        loop {
            match watcher.live.recv().await {
                Err(broadcast::error::RecvError::Closed) => break,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the client's stream ends when the session gives up");
    assert!(h.started.try_recv().is_err(), "no third retry");
    assert_eq!(
        h.outcomes(),
        [
            SourceOutcome::Delivered,
            SourceOutcome::ChannelFailed,
            SourceOutcome::PortFailed
        ],
        "the port hears what each connection did"
    );
    h.shutdown.cancel();
}

/// A receiver that delivered and went silent: after `stall_timeout` the connection is dropped
/// and a new one made.
#[tokio::test(start_paused = true)]
async fn a_silent_receiver_is_a_stall_and_the_session_reconnects() {
    let mut h = harness(settings(), Vec::new());
    let (_watcher, mut first) = h.watch_once().await;
    let silent_from = Instant::now();
    timeout(Duration::from_secs(60), first.stopped.recv())
        .await
        .expect("a stalled connection is stopped");
    let second = h.next_connection().await;
    let stalled_after = second.at - silent_from;
    // 2 s of silence, found on the 100 ms tick, then the 0.5 s backoff.
    assert!(
        stalled_after > Duration::from_secs(2) && stalled_after <= Duration::from_millis(2700),
        "reconnected {stalled_after:?} after the receiver went silent"
    );
    h.shutdown.cancel();
}

/// An encoder with no free session at the start is "full": the join is refused with that,
/// nothing is retried, and the receiver's port is not blamed.
#[tokio::test(start_paused = true)]
async fn an_encoder_full_at_the_start_is_refused_as_full_without_retries() {
    let full = GraphFailure {
        kind: FailureKind::EncoderFull,
        message: "nvh264enc0: Failed to open encoder".into(),
    };
    let mut h = harness(settings(), vec![full]);
    let join = h.join();
    let _refused = h.next_connection().await;
    let answer = join.await.unwrap();
    assert!(
        matches!(answer, Err(SessionError::EncoderFull(_))),
        "{:?}",
        answer.err()
    );
    sleep(Duration::from_secs(30)).await;
    assert!(h.started.try_recv().is_err(), "no retry");
    assert!(h.outcomes().is_empty(), "the port is not blamed");
    h.shutdown.cancel();
}

/// A receiver that accepts and never sends (every tuner busy) fails the waiting joins after
/// `start_timeout` with `no-tuner`.
#[tokio::test(start_paused = true)]
async fn a_receiver_that_sends_nothing_is_out_of_tuners() {
    let mut h = harness(settings(), Vec::new());
    let asked = Instant::now();
    let join = h.join();
    let _silent = h.next_connection().await;
    let answer = join.await.unwrap();
    let waited = asked.elapsed();
    assert!(matches!(answer, Err(SessionError::NoTuner(_))), "{:?}", answer.err());
    assert!(
        waited > Duration::from_secs(4) && waited <= Duration::from_millis(4200),
        "refused after {waited:?}; the start timeout is 4 s"
    );
    h.shutdown.cancel();
}

/// A client that stops reading falls out of the session once it is `max_client_lag` behind
/// (its receiver reports the lag, and the HTTP body ends on it); a client that reads keeps up.
#[tokio::test(start_paused = true)]
async fn a_client_behind_by_the_lag_limit_falls_out_and_a_reader_does_not() {
    let mut h = harness(settings(), Vec::new());
    let slow = h.join();
    let connection = h.next_connection().await;
    feed(&connection, Duration::from_millis(50));
    let mut slow = slow.await.unwrap().expect("the stream");
    let mut reader = h.join().await.unwrap().expect("the stream");
    let read = tokio::spawn(async move {
        let mut chunks = 0;
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            match reader.live.recv().await {
                Ok(_) => chunks += 1,
                Err(error) => panic!("a reading client fell behind: {error:?}"),
            }
        }
        chunks
    });
    // Half the lag limit behind: still in.
    sleep(Duration::from_millis(500)).await;
    assert!(slow.live.try_recv().is_ok(), "half a second behind is within the limit");
    // Then three seconds without reading, three times the limit (1 s).
    sleep(Duration::from_secs(3)).await;
    assert!(
        matches!(slow.live.try_recv(), Err(broadcast::error::TryRecvError::Lagged(_))),
        "a client 3 s behind is cut off"
    );
    assert!(read.await.unwrap() >= 20, "the reader got a chunk every tick");
    h.shutdown.cancel();
}

/// An HLS session lives while players ask for its playlists and segments, and ends
/// `hls_idle_timeout` after the last request.
#[tokio::test(start_paused = true)]
async fn an_hls_session_lives_while_players_ask_and_ends_after_the_idle_timeout() {
    // One chunk of media is all the receiver sends: no stall within the test.
    let settings = Settings {
        stall_timeout: Duration::from_secs(600),
        ..settings()
    };
    let mut h = harness(settings, Vec::new());
    let player = h.join_as(Output::Hls);
    let mut connection = h.next_connection().await;
    connection
        .events
        .send(GraphEvent::Chunk {
            output: 0,
            bytes: Bytes::from(crate::fuzz_api::seed_stream()),
        })
        .unwrap();
    let view = player.await.unwrap().expect("segments").hls.expect("an HLS view");
    assert!(!view.state.borrow().is_empty(), "the session published segments");

    // A player asking every 5 s keeps it for a minute, twice the idle timeout.
    for _ in 0..12 {
        sleep(Duration::from_secs(5)).await;
        view.lease.touch();
    }
    assert!(connection.stopped.try_recv().is_err(), "a watched HLS session stays");
    let last_request = Instant::now();
    timeout(Duration::from_secs(120), connection.stopped.recv())
        .await
        .expect("an HLS session nobody asks for ends");
    let idle = last_request.elapsed();
    assert!(
        idle >= Duration::from_secs(30) && idle <= Duration::from_millis(30200),
        "ended {idle:?} after the last request; the HLS idle timeout is 30 s"
    );
    h.shutdown.cancel();
}
