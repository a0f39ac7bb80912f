//! Traces: a small OTLP/HTTP collector on loopback receives what xg2g exports for a TS and an
//! HLS session start, decoded with the OpenTelemetry protobuf types, and the span names, the
//! trace ids from the requests' `traceparent` and the parent links are checked; requests that
//! start nothing (HEAD, media playlist refreshes) leave no trace.
//!
//! The tracing subscriber is process-wide; this is the one test that installs it, through
//! `xg2g::telemetry::init`, as the binary does. It samples roots at ratio 0, so spans of other
//! tests running in this process are dropped and only the trace this test continues (sampled by
//! its `traceparent`) is exported.

use std::collections::HashMap;
use std::time::Duration;

use actix_web::{HttpResponse, web};
use futures_util::StreamExt;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message as _;
use tokio::sync::mpsc;
use xg2g::config::{LogConfig, LogFormat};

use crate::common::{client, config_for, demo, ready, start_app};

const HD: &str = "1:0:19:283D:3FB:1:C00000:0:0:0:";
/// (trace id, parent span id) of the traced clients: a TS client and an HLS player.
const TS_TRACE: (&str, &str) = ("5e2c8f4a9b1d47e0a3c6b8d2f1e09a7c", "b7ad6b7169203331");
const HLS_TRACE: (&str, &str) = ("9c41e2d07a6b4f3e8d5c2b1a0f9e8d7c", "53995c3f42cd8ad8");
/// Sampled traces of requests that are no session start: they must never show up.
const HEAD_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const MEDIA_TRACE: &str = "1bf7651916cd43dd8448eb211c80319d";
const CHILDREN: [&str; 5] = [
    "channel.lookup",
    "port.detect",
    "admission",
    "pipeline.build",
    "first_byte",
];

/// A span as received, with the resource's service name.
struct Received {
    service: String,
    span: Span,
}

/// Accepts `POST /v1/traces` (OTLP/HTTP, protobuf) and forwards every decoded request.
async fn collector() -> (
    String,
    mpsc::UnboundedReceiver<ExportTraceServiceRequest>,
    actix_web::dev::ServerHandle,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let server = actix_web::HttpServer::new(move || {
        let tx = tx.clone();
        actix_web::App::new()
            .app_data(web::PayloadConfig::new(16 * 1024 * 1024))
            .route(
                "/v1/traces",
                web::post().to(move |req: actix_web::HttpRequest, body: web::Bytes| {
                    let tx = tx.clone();
                    async move {
                        let content_type = req.headers().get("content-type").and_then(|v| v.to_str().ok());
                        if content_type != Some("application/x-protobuf") {
                            return HttpResponse::UnsupportedMediaType().finish();
                        }
                        match ExportTraceServiceRequest::decode(body) {
                            Ok(request) => {
                                let _ = tx.send(request);
                                // An empty ExportTraceServiceResponse: full success.
                                HttpResponse::Ok().content_type("application/x-protobuf").finish()
                            }
                            Err(_) => HttpResponse::BadRequest().finish(),
                        }
                    }
                }),
            )
    })
    .workers(1)
    .disable_signals()
    .bind(("127.0.0.1", 0))
    .expect("collector binds");
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    (format!("http://{addr}"), rx, handle)
}

fn spans(request: ExportTraceServiceRequest) -> Vec<Received> {
    let mut out = Vec::new();
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| string(kv.value.as_ref()))
            .unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                out.push(Received {
                    service: service.clone(),
                    span,
                });
            }
        }
    }
    out
}

fn string(value: Option<&AnyValue>) -> Option<String> {
    match value?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        any_value::Value::BoolValue(b) => Some(b.to_string()),
        any_value::Value::DoubleValue(d) => Some(d.to_string()),
        _ => None,
    }
}

fn attributes(attributes: &[KeyValue]) -> HashMap<&str, String> {
    attributes
        .iter()
        .filter_map(|kv| Some((kv.key.as_str(), string(kv.value.as_ref())?)))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn traceparent((trace, parent): (&str, &str)) -> String {
    format!("00-{trace}-{parent}-01")
}

/// The spans of one trace: exactly one `session.start`, continued from the client's span, with
/// exactly one of each child under it, each within its time.
fn check_session_start(received: &[Received], (trace, parent): (&str, &str), output: &str, channel: u32) {
    let named = |name: &str| -> Vec<&Span> {
        received
            .iter()
            .map(|r| &r.span)
            .filter(|s| s.name == name && hex(&s.trace_id) == trace)
            .collect()
    };
    let roots = named("session.start");
    assert_eq!(roots.len(), 1, "{output}: one session start");
    let root = roots[0];
    assert_eq!(hex(&root.parent_span_id), parent, "{output}: continues the traceparent");
    assert_eq!(root.kind, SpanKind::Server as i32);
    let attrs = attributes(&root.attributes);
    assert_eq!(attrs.get("channel.number"), Some(&channel.to_string()), "{attrs:?}");
    assert_eq!(attrs.get("profile").map(String::as_str), Some("aac"), "{attrs:?}");
    assert_eq!(attrs.get("output").map(String::as_str), Some(output), "{attrs:?}");
    assert_eq!(attrs.get("mode").map(String::as_str), Some("audio_proxy"), "{attrs:?}");
    assert!(!attrs.contains_key("error.code"), "{attrs:?}");
    for name in CHILDREN {
        let spans = named(name);
        assert_eq!(spans.len(), 1, "{output}: one {name} span");
        let span = spans[0];
        assert_eq!(
            hex(&span.parent_span_id),
            hex(&root.span_id),
            "{output}: {name}'s parent"
        );
        assert!(
            span.start_time_unix_nano >= root.start_time_unix_nano
                && span.end_time_unix_nano <= root.end_time_unix_nano,
            "{output}: {name} lies within session.start"
        );
    }
    // The encoder slot wait is part of admission (no wait here: `aac` encodes no video).
    let admission = named("admission")[0];
    let queue = named("encoder.queue");
    assert_eq!(queue.len(), 1, "{output}: one encoder.queue span");
    assert_eq!(
        hex(&queue[0].parent_span_id),
        hex(&admission.span_id),
        "{output}: encoder.queue's parent"
    );
    assert!(queue[0].end_time_unix_nano <= admission.end_time_unix_nano);
    let build = named("pipeline.build")[0];
    let first_byte = named("first_byte")[0];
    assert!(
        build.end_time_unix_nano <= first_byte.end_time_unix_nano,
        "{output}: built before the first byte"
    );
    assert!(
        named("port.detect")[0].end_time_unix_nano <= build.start_time_unix_nano,
        "{output}: detected before building"
    );
}

/// Every span name of a session start in `trace`, received yet?
fn complete(received: &[Received], trace: &str) -> bool {
    ["session.start"].iter().chain(&CHILDREN).all(|name| {
        received
            .iter()
            .any(|r| r.span.name == *name && hex(&r.span.trace_id) == trace)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_start_is_one_trace_continued_from_traceparent() {
    let (endpoint, mut exports, collector_handle) = collector().await;
    let demo = demo().await;
    let config = config_for(
        &demo,
        &[
            ("telemetry.otlp_endpoint", endpoint.as_str()),
            ("telemetry.service_name", "xg2g-traces-test"),
            ("telemetry.sampling_ratio", "0"),
        ],
    );
    // `XG2G_TEST_LOG=xg2g=debug` shows the app's logs here too.
    let log = LogConfig {
        level: std::env::var("XG2G_TEST_LOG").unwrap_or_else(|_| "off".to_owned()),
        format: LogFormat::Pretty,
    };
    let telemetry = xg2g::telemetry::init(&log, &config.telemetry)
        .expect("the only test that installs the global subscriber (is XG2G_TEST_LOG set for another test?)");
    assert!(telemetry.traces_enabled());
    let (running, base) = start_app(&config).await;
    ready(&running).await;
    let number = running
        .catalog()
        .snapshot()
        .catalog
        .expect("catalog loaded")
        .channel(&HD.parse().unwrap())
        .expect("the HD channel is listed")
        .number;

    // A probe (HEAD) never tunes, so it is no session start.
    let head = client()
        .head(format!("{base}/stream/{HD}?profile=aac"))
        .header("traceparent", traceparent((HEAD_TRACE, "00f067aa0ba902b7")))
        .send()
        .await
        .expect("HEAD request");
    assert!(head.status().is_success(), "{}", head.status());

    // A client that is itself traced starts a TS session and reads its first bytes.
    let response = client()
        .get(format!("{base}/stream/{HD}?profile=aac"))
        .header("traceparent", traceparent(TS_TRACE))
        .send()
        .await
        .expect("stream request");
    assert!(response.status().is_success(), "{}", response.status());
    let mut body = response.bytes_stream();
    let mut read = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while read < 188 * 100 {
        match tokio::time::timeout_at(deadline, body.next()).await {
            Ok(Some(Ok(chunk))) => read += chunk.len(),
            other => panic!("stream ended after {read} bytes: {other:?}"),
        }
    }
    drop(body);

    // An HLS player: the master playlist starts the session (and waits for its first segment);
    // the media playlist that follows is a refresh, not a start.
    let hls = format!("{base}/hls/{HD}/aac");
    let master = client()
        .get(format!("{hls}/index.m3u8"))
        .header("traceparent", traceparent(HLS_TRACE))
        .send()
        .await
        .expect("master playlist");
    assert!(master.status().is_success(), "{}", master.status());
    let media = client()
        .get(format!("{hls}/media.m3u8"))
        .header("traceparent", traceparent((MEDIA_TRACE, "00f067aa0ba902b7")))
        .send()
        .await
        .expect("media playlist");
    assert!(media.status().is_success(), "{}", media.status());

    // Flush waits for the collector's answer; everything exported so far has arrived then.
    telemetry.flush().await.expect("spans exported");
    let mut received = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        while let Ok(request) = exports.try_recv() {
            received.extend(spans(request));
        }
        if complete(&received, TS_TRACE.0) && complete(&received, HLS_TRACE.0) {
            break;
        }
        match tokio::time::timeout_at(deadline, exports.recv()).await {
            Ok(Some(request)) => received.extend(spans(request)),
            _ => {
                let got: Vec<_> = received.iter().map(|r| (hex(&r.span.trace_id), &r.span.name)).collect();
                panic!("not every span arrived within 10 s; got {got:?}");
            }
        }
    }

    // Only the continued traces: roots of other traces are sampled out at ratio 0, and the
    // sampled traces of the HEAD and the media playlist never started.
    for r in &received {
        let trace = hex(&r.span.trace_id);
        assert!(
            trace == TS_TRACE.0 || trace == HLS_TRACE.0,
            "span {} is in another trace: {trace}",
            r.span.name
        );
        assert_eq!(r.service, "xg2g-traces-test", "span {}", r.span.name);
    }
    check_session_start(&received, TS_TRACE, "ts", number);
    check_session_start(&received, HLS_TRACE, "hls", number);

    // Cardinality and privacy: no service reference and no URL in any attribute.
    for r in &received {
        for (key, value) in attributes(&r.span.attributes) {
            assert!(
                !value.contains(HD) && !value.contains("://"),
                "{}: {key} = {value}",
                r.span.name
            );
        }
    }

    running.stop().await;
    telemetry.shutdown().await.expect("exporter shuts down");
    collector_handle.stop(true).await;
}
