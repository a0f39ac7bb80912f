//! OpenTelemetry traces: the OTLP/HTTP exporter and its sampler, W3C trace-context extraction,
//! and the root span of a session start.
//!
//! A session start is one trace: `session.start` (continued from the request's `traceparent`
//! when there is one) with the children `channel.lookup`, `port.detect`, `admission` (rate
//! limits, with `encoder.queue` under it), `pipeline.build` (in the session task) and
//! `first_byte`. Span attributes keep cardinality low: the channel number, never its service
//! reference or a URL.

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use url::Url;

use super::TelemetryError;
use crate::config::TelemetryConfig;

/// Where spans are posted: `<endpoint>/v1/traces`, keeping a path the endpoint has.
pub(super) fn traces_url(endpoint: &Url) -> String {
    format!("{}/v1/traces", endpoint.as_str().trim_end_matches('/'))
}

/// Root spans are kept at `ratio`; a span whose parent (local or from `traceparent`) was
/// sampled is always kept, one that was not never is.
fn sampler(ratio: f64) -> Sampler {
    Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio)))
}

/// The tracer provider: OTLP over HTTP with protobuf bodies, batched on the tokio runtime.
pub(super) fn provider(endpoint: &Url, config: &TelemetryConfig) -> Result<SdkTracerProvider, TelemetryError> {
    let url = traces_url(endpoint);
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url.clone())
        .build()
        .map_err(|e| TelemetryError::Exporter {
            endpoint: url,
            message: e.to_string(),
        })?;
    let batch = BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::Tokio).build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(batch)
        .with_sampler(sampler(config.sampling_ratio))
        .with_resource(
            Resource::builder()
                .with_service_name(config.service_name.clone())
                .build(),
        )
        .build())
}

/// The caller's trace from W3C `traceparent` / `tracestate` header values; an empty context
/// when there is none or it does not parse.
pub(crate) fn remote_parent(traceparent: Option<&str>, tracestate: Option<&str>) -> Context {
    if traceparent.is_none() {
        return Context::new();
    }
    TraceContextPropagator::new().extract(&Headers {
        traceparent,
        tracestate,
    })
}

struct Headers<'a> {
    traceparent: Option<&'a str>,
    tracestate: Option<&'a str>,
}

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            "traceparent" => self.traceparent,
            "tracestate" => self.tracestate,
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent", "tracestate"]
    }
}

/// The root span of one session start, a child of `parent` when that holds a remote span.
/// `channel.number`, `profile` and `mode` are recorded by the handler once it knows them;
/// `error.code` and `otel.status_code` when it fails. Without trace export this is an ordinary
/// tracing span that log lines show.
pub(crate) fn session_start(parent: Context, output: &'static str) -> tracing::Span {
    let span = tracing::info_span!(
        parent: None,
        "session.start",
        otel.kind = "server",
        output,
        channel.number = tracing::field::Empty,
        profile = tracing::field::Empty,
        mode = tracing::field::Empty,
        error.code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    if parent.span().span_context().is_valid() {
        // Fails only when no OpenTelemetry layer is installed: then there is nothing to link.
        let _ = span.set_parent(parent);
    }
    span
}

/// A step of the session start in progress: an INFO span, child of the current span (or of
/// `parent: &span`); or no span at all outside one, so that requests that only reuse a handler
/// (HLS media playlist refreshes) make no traces of their own.
macro_rules! step {
    ($name:literal) => {
        if tracing::Span::current().is_none() {
            tracing::Span::none()
        } else {
            tracing::info_span!($name)
        }
    };
    (parent: $parent:expr, $name:literal) => {
        if $parent.is_none() {
            tracing::Span::none()
        } else {
            tracing::info_span!(parent: $parent, $name)
        }
    };
}
pub(crate) use step;

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SamplingDecision, SpanKind, TraceId};
    use opentelemetry_sdk::trace::ShouldSample as _;

    const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_traces_url_keeps_the_endpoints_path() {
        let url = |s: &str| traces_url(&Url::parse(s).unwrap());
        assert_eq!(url("http://jaeger:4318"), "http://jaeger:4318/v1/traces");
        assert_eq!(url("http://jaeger:4318/"), "http://jaeger:4318/v1/traces");
        assert_eq!(
            url("https://otel.example.org/otlp/"),
            "https://otel.example.org/otlp/v1/traces"
        );
    }

    #[test]
    fn a_traceparent_is_continued() {
        let cx = remote_parent(Some(TRACEPARENT), Some("vendor=x"));
        let span = cx.span();
        let sc = span.span_context();
        assert!(sc.is_valid() && sc.is_remote() && sc.is_sampled());
        assert_eq!(sc.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
        assert_eq!(sc.trace_state().get("vendor"), Some("x"));
    }

    #[test]
    fn a_bad_or_missing_traceparent_starts_a_new_trace() {
        for header in [
            None,
            Some(""),
            Some("garbage"),
            // Version ff is invalid; an all-zero trace id is invalid.
            Some("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
        ] {
            assert!(
                !remote_parent(header, None).span().span_context().is_valid(),
                "{header:?}"
            );
        }
    }

    #[test]
    fn the_sampler_follows_the_parent_and_samples_roots_by_ratio() {
        let decide = |sampler: &Sampler, parent: Option<&Context>, trace: u128| {
            sampler
                .should_sample(
                    parent,
                    TraceId::from(trace),
                    "session.start",
                    &SpanKind::Server,
                    &[],
                    &[],
                )
                .decision
        };
        let sampled = remote_parent(Some(TRACEPARENT), None);
        let unsampled = remote_parent(Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"), None);
        let none = sampler(0.0);
        assert_eq!(decide(&none, None, 1), SamplingDecision::Drop);
        assert_eq!(decide(&none, Some(&sampled), 1), SamplingDecision::RecordAndSample);
        let all = sampler(1.0);
        assert_eq!(decide(&all, None, u128::MAX), SamplingDecision::RecordAndSample);
        assert_eq!(decide(&all, Some(&unsampled), 1), SamplingDecision::Drop);
        // Half: decided by the trace id's low 64 bits, so about half of many ids pass.
        let half = sampler(0.5);
        let kept = (0..1000u128)
            .filter(|i| {
                decide(&half, None, i.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)) != SamplingDecision::Drop
            })
            .count();
        assert!((400..=600).contains(&kept), "{kept} of 1000");
    }
}
