//! Smart stream ports against the demo receiver: the whitelist, probes, the cache, overrides and
//! the per-port circuit breakers, through `GET /api/v1/channels/{ref}/source` and the resolver.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;
use xg2g::demo::{DemoOptions, DemoReceiver, Port, PortFault};
use xg2g::metrics::Metrics;
use xg2g::model::ServiceRef;
use xg2g::upstream::{ConnectFailure, OpenWebIf, StreamResolver};

use crate::common::{client, config_for, demo, demo_with, get_text, ready, start_app};

const HD: &str = "1:0:19:283D:3FB:1:C00000:0:0:0:";
const SD: &str = "1:0:1:6F0B:44D:1:C00000:0:0:0:";
const ENCRYPTED: &str = "1:0:19:132F:3EF:1:C00000:0:0:0:";

/// Starts xg2g against `demo` with `extra` config and waits for the channel list.
async fn app(demo: &DemoReceiver, extra: &[(&str, &str)]) -> (xg2g::app::Running, String) {
    let (running, base) = start_app(&config_for(demo, extra)).await;
    ready(&running).await;
    (running, base)
}

/// `GET /api/v1/channels/{ref}/source`: status, `Retry-After` and the JSON body.
async fn source(base: &str, service_ref: &str) -> (u16, Option<u64>, Value) {
    let response = client()
        .get(format!("{base}/api/v1/channels/{service_ref}/source"))
        .send()
        .await
        .expect("source request");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    (status, retry_after, response.json().await.expect("JSON body"))
}

fn probes(demo: &DemoReceiver, service_ref: &str) -> (u64, u64) {
    (
        demo.requests(Port::Stream, service_ref),
        demo.requests(Port::Relay, service_ref),
    )
}

async fn metrics_text(base: &str) -> String {
    get_text(format!("{base}/metrics")).await
}

fn ports(demo: &DemoReceiver) -> (u16, u16) {
    (demo.stream_addr().port(), demo.relay_addr().port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whitelisted_channel_uses_the_relay_without_any_probe() {
    let demo = demo().await;
    let (stream, relay) = ports(&demo);
    let (running, base) = app(&demo, &[]).await;

    let (status, _, body) = source(&base, ENCRYPTED).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, serde_json::json!({ "port": relay, "relay": true }));
    assert_eq!(
        probes(&demo, ENCRYPTED),
        (0, 0),
        "a whitelisted channel is never probed"
    );

    // A channel outside the whitelist is probed on the stream port, and only there.
    let (status, _, body) = source(&base, HD).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, serde_json::json!({ "port": stream, "relay": false }));
    assert_eq!(probes(&demo, HD), (1, 0));
    assert_eq!(probes(&demo, ENCRYPTED), (0, 0));
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detected_port_is_cached() {
    let demo = demo().await;
    let (stream, _) = ports(&demo);
    let (running, base) = app(&demo, &[]).await;
    for _ in 0..3 {
        let (status, _, body) = source(&base, SD).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["port"], stream);
    }
    assert_eq!(probes(&demo, SD), (1, 0), "one probe, then the cache");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_stream_port_falls_back_to_the_relay() {
    let demo = demo().await;
    let (stream, relay) = ports(&demo);
    let (running, base) = app(&demo, &[]).await;

    demo.set_faults(|f| f.stream_port = Some(PortFault::Refuse));
    let (status, _, body) = source(&base, HD).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, serde_json::json!({ "port": relay, "relay": true }));
    assert_eq!(probes(&demo, HD).1, 1, "probed on the relay");

    demo.set_faults(|f| f.stream_port = Some(PortFault::Status(503)));
    let (status, _, body) = source(&base, SD).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["port"], relay);
    assert_eq!(probes(&demo, SD), (1, 1));

    let text = metrics_text(&base).await;
    for error_type in ["refused", "http_status"] {
        let line = format!("xg2g_stream_detection_errors_total{{port=\"{stream}\",error_type=\"{error_type}\"}} 1");
        assert!(text.contains(&line), "{line} in\n{text}");
    }
    // Two failures are below the threshold: the stream port's breaker is still closed.
    assert!(text.contains(&format!("xg2g_circuit_breaker_state{{name=\"stream_{stream}\"}} 0")));

    // Fallback answers are not cached: with the stream port back, HD is probed there again.
    demo.set_faults(|f| f.stream_port = None);
    let (_, _, body) = source(&base, HD).await;
    assert_eq!(body, serde_json::json!({ "port": stream, "relay": false }));
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_send_credentials_up_front() {
    // The relay has no 401 challenge: without credentials in the first request it hangs up.
    let demo = demo_with(DemoOptions {
        credentials: Some(("root".to_owned(), "dreambox".to_owned())),
        ..DemoOptions::default()
    })
    .await;
    let (_, relay) = ports(&demo);
    let (running, base) = app(
        &demo,
        &[("receiver.username", "root"), ("receiver.password", "dreambox")],
    )
    .await;
    demo.set_faults(|f| f.stream_port = Some(PortFault::Refuse));
    let (status, _, body) = source(&base, HD).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, serde_json::json!({ "port": relay, "relay": true }));
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_ports_down_answer_502_at_once_with_retry_after() {
    let demo = demo().await;
    let (stream, relay) = ports(&demo);
    let probe_timeout = Duration::from_secs(1);
    let (running, base) = app(
        &demo,
        &[
            ("receiver.timeout", "1s"),
            ("circuit_breaker.threshold", "2"),
            ("circuit_breaker.timeout", "30s"),
        ],
    )
    .await;
    demo.set_faults(|f| {
        f.stream_port = Some(PortFault::Silent);
        f.relay_port = Some(PortFault::Silent);
    });
    // Two resolves, each waiting out a probe timeout on both ports, open both breakers.
    for _ in 0..2 {
        let started = Instant::now();
        let (status, retry_after, body) = source(&base, HD).await;
        assert_eq!(status, 502, "{body}");
        assert_eq!(body["error"]["code"], "upstream-unavailable");
        assert_eq!(retry_after, None, "probes failed; no breaker was open yet");
        assert!(started.elapsed() >= 2 * probe_timeout, "{:?}", started.elapsed());
    }
    assert_eq!(probes(&demo, HD), (2, 2));

    let started = Instant::now();
    let (status, retry_after, body) = source(&base, SD).await;
    let elapsed = started.elapsed();
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "upstream-unavailable");
    println!("Both breakers open: 502 in {elapsed:?} (probe timeout {probe_timeout:?}).");
    assert!(elapsed < probe_timeout / 4, "answered in {elapsed:?}");
    let retry_after = retry_after.expect("Retry-After");
    assert!((1..=30).contains(&retry_after), "Retry-After: {retry_after}");
    assert_eq!(
        probes(&demo, SD),
        (0, 0),
        "open breakers keep requests off the receiver"
    );

    let text = metrics_text(&base).await;
    for (name, port) in [(format!("stream_{stream}"), stream), (format!("relay_{relay}"), relay)] {
        for line in [
            format!("xg2g_circuit_breaker_state{{name=\"{name}\"}} 1"),
            format!("xg2g_circuit_breaker_trips_total{{name=\"{name}\"}} 1"),
            format!("xg2g_stream_detection_errors_total{{port=\"{port}\",error_type=\"timeout\"}} 2"),
            format!("xg2g_stream_detection_errors_total{{port=\"{port}\",error_type=\"circuit_open\"}} 1"),
        ] {
            assert!(text.contains(&line), "{line} in\n{text}");
        }
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_smart_detection_every_channel_uses_the_stream_port() {
    let demo = demo().await;
    let (stream, _) = ports(&demo);
    let (running, base) = app(&demo, &[("receiver.smart_stream_detection", "false")]).await;
    for service_ref in [ENCRYPTED, HD] {
        let (status, _, body) = source(&base, service_ref).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body, serde_json::json!({ "port": stream, "relay": false }));
        assert_eq!(probes(&demo, service_ref), (0, 0));
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_override_wins_over_the_whitelist_and_probing() {
    let demo = demo().await;
    let (stream, relay) = ports(&demo);
    let overrides = format!("{HD}={relay}, {ENCRYPTED}={stream}");
    let (running, base) = app(&demo, &[("receiver.port_overrides", overrides.as_str())]).await;
    let (_, _, body) = source(&base, HD).await;
    assert_eq!(body, serde_json::json!({ "port": relay, "relay": true }));
    let (_, _, body) = source(&base, ENCRYPTED).await;
    assert_eq!(body, serde_json::json!({ "port": stream, "relay": false }));
    assert_eq!(probes(&demo, HD), (0, 0));
    assert_eq!(probes(&demo, ENCRYPTED), (0, 0));
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_and_unknown_references_are_refused() {
    let demo = demo().await;
    let (running, base) = app(&demo, &[]).await;
    let (status, _, body) = source(&base, "1:0:19:283D:3FB").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid-service-ref"))
    );
    let (status, _, body) = source(&base, "1:0:19:1:1:1:C00000:0:0:0:").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("channel-not-found"))
    );
    running.stop().await;
}

/// Log lines of the current thread, for the breaker's story.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// One play as a stream session does it: resolve, connect (status line only), report.
async fn play(resolver: &StreamResolver, service_ref: &ServiceRef) -> (u16, Result<(), ConnectFailure>) {
    let source = resolver.resolve(service_ref).await.expect("a port");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let outcome = match http.get(source.url.clone()).send().await {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => Err(ConnectFailure::Status(response.status().as_u16())),
        Err(e) if e.is_timeout() => Err(ConnectFailure::Timeout),
        Err(e) if e.is_connect() => Err(ConnectFailure::Refused),
        Err(_) => Err(ConnectFailure::Reset),
    };
    resolver.report_connect(source.port, outcome);
    match outcome {
        Ok(()) => tracing::info!(port = source.port, relay = source.relay, "Play: connected."),
        Err(failure) => tracing::warn!(port = source.port, relay = source.relay, %failure, "Play: connect failed."),
    }
    (source.port, outcome)
}

/// The stream port dies while a channel plays: sessions reconnecting to it trip its breaker
/// after 5 failures, plays move to the relay, and once the port is back the breaker lets trial
/// connections through and closes after 3 successes.
#[tokio::test]
async fn a_port_dying_mid_play_fails_over_and_back() {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .with_env_filter("xg2g::limits=info,xg2g::upstream=debug,it=info")
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    // Callsites first hit by other tests, before this subscriber existed, cached "not
    // interested"; ask them again.
    tracing::callsite::rebuild_interest_cache();

    let demo = demo().await;
    let (stream, relay) = ports(&demo);
    let config = config_for(&demo, &[("circuit_breaker.timeout", "2s")]);
    let metrics = Arc::new(Metrics::new());
    let client = OpenWebIf::new(&config.receiver).unwrap();
    let resolver = StreamResolver::new(&config, client, Arc::clone(&metrics)).unwrap();
    let hd: ServiceRef = HD.parse().unwrap();

    // Healthy: detected once on the stream port, then reused.
    for _ in 0..3 {
        assert_eq!(play(&resolver, &hd).await, (stream, Ok(())));
    }
    // The stream port dies: five failed reconnects (the threshold) open its breaker.
    demo.set_faults(|f| f.stream_port = Some(PortFault::Refuse));
    for attempt in 1..=5 {
        let (port, outcome) = play(&resolver, &hd).await;
        assert_eq!(port, stream, "attempt {attempt}");
        assert!(outcome.is_err(), "attempt {attempt}");
    }
    assert_eq!(play(&resolver, &hd).await, (relay, Ok(())));
    let connections = || demo.stats().stream_connections.load(Ordering::Relaxed);
    let before = connections();
    assert_eq!(play(&resolver, &hd).await, (relay, Ok(())));
    assert_eq!(connections(), before, "an open breaker keeps plays off the port");

    // The port comes back; plays continue at a session's reconnect pace until the breaker's
    // timeout lets trials through, and three good trials close it.
    let open = format!("xg2g_circuit_breaker_state{{name=\"stream_{stream}\"}} 1");
    assert!(metrics.encode().contains(&open));
    demo.set_faults(|f| f.stream_port = None);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut pace = tokio::time::interval(Duration::from_millis(250));
    let mut trials = 0;
    while trials < 3 {
        assert!(Instant::now() < deadline, "no trial on the stream port within 10 s");
        pace.tick().await;
        let (port, outcome) = play(&resolver, &hd).await;
        assert_eq!(outcome, Ok(()));
        if port == stream {
            trials += 1;
            if trials == 1 {
                let state = format!("xg2g_circuit_breaker_state{{name=\"stream_{stream}\"}} 2");
                assert!(metrics.encode().contains(&state), "half-open during the trials");
            }
        } else {
            assert_eq!(trials, 0, "once closed again, the detected port is used");
        }
    }
    assert_eq!(play(&resolver, &hd).await, (stream, Ok(())));

    let text = metrics.encode();
    for line in [
        format!("xg2g_circuit_breaker_state{{name=\"stream_{stream}\"}} 0"),
        format!("xg2g_circuit_breaker_trips_total{{name=\"stream_{stream}\"}} 1"),
        format!("xg2g_circuit_breaker_state{{name=\"relay_{relay}\"}} 0"),
    ] {
        assert!(text.contains(&line), "{line} in\n{text}");
    }
    let log = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    println!("{log}");
    let order = [
        "Stream port detected.",
        "from=\"closed\" to=\"open\" failures=5",
        "from=\"open\" to=\"half-open\"",
        "from=\"half-open\" to=\"closed\"",
    ];
    let mut at = 0;
    for needle in order {
        let found = log[at..]
            .find(needle)
            .unwrap_or_else(|| panic!("{needle:?} after byte {at} in\n{log}"));
        at += found + needle.len();
    }
}

/// A channel whose stream is broken (the port answers, with garbage) fails its own sessions and
/// nobody else's: its failures do not count against the port every channel shares.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_broken_channel_leaves_its_port_to_the_others() {
    let demo = demo().await;
    let (stream, _) = ports(&demo);
    let (running, base) = app(
        &demo,
        &[
            ("circuit_breaker.threshold", "2"),
            ("circuit_breaker.timeout", "30s"),
            ("streaming.start_timeout", "1s"),
            ("streaming.reconnect_attempts", "1"),
        ],
    )
    .await;
    demo.set_faults(|f| {
        f.streams.insert(SD.into(), xg2g::demo::StreamFault::Garbage);
    });
    let http = client();
    for attempt in 1..=3 {
        let response = http
            .get(format!("{base}/stream/{SD}?profile=aac"))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body = response.text().await.unwrap();
        assert_eq!(status, 502, "attempt {attempt}: {body}");
    }
    let text = metrics_text(&base).await;
    let closed = format!("xg2g_circuit_breaker_state{{name=\"stream_{stream}\"}} 0");
    assert!(text.contains(&closed), "{closed} in\n{text}");
    // Every other channel still plays from the stream port.
    let (status, _, body) = source(&base, HD).await;
    assert_eq!(
        (status, body["port"].as_u64()),
        (200, Some(u64::from(stream))),
        "{body}"
    );
    let playing = http
        .get(format!("{base}/stream/{HD}?profile=copy"))
        .send()
        .await
        .unwrap();
    assert_eq!(playing.status(), 200);
    drop(playing);
    running.stop().await;
}

/// A receiver that accepts and never answers (every tuner busy, a hung box) gets an HLS `auto`
/// request a 502 once the codec probe gives up, not a request held for minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_receiver_ends_the_auto_probe_in_seconds() {
    let demo = demo().await;
    let (running, base) = app(&demo, &[("receiver.smart_stream_detection", "false")]).await;
    demo.set_faults(|f| f.stream_port = Some(PortFault::Silent));
    let asked = Instant::now();
    let response = client()
        .get(format!("{base}/hls/{HD}/auto/index.m3u8"))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("an answer within 30 s");
    let took = asked.elapsed();
    assert_eq!(response.status(), 502);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream-unavailable");
    println!("silent receiver: 502 after {took:?}");
    running.stop().await;
}
