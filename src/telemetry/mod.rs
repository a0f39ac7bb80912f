//! Logs and traces: tracing with a pretty or JSON formatter filtered by `log.level`, and, when
//! `telemetry.otlp_endpoint` is set, OpenTelemetry spans exported over OTLP/HTTP.
//!
//! Nothing here is installed by a library call: [`init`] is called once by the binary (or by a
//! test that wants the process-wide subscriber), and its [`Telemetry`] is shut down on exit so
//! buffered spans are sent.

mod traces;

pub(crate) use traces::{remote_parent, session_start, step};

use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogConfig, LogFormat, TelemetryConfig};

/// Why logging or trace export could not be set up, or traces not flushed.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("log.level {level:?}: {message}")]
    LogFilter { level: String, message: String },
    #[error("cannot export traces to {endpoint}: {message}")]
    Exporter { endpoint: String, message: String },
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
    #[error("exporting traces: {0}")]
    Export(String),
}

impl TelemetryError {
    pub fn code(&self) -> &'static str {
        match self {
            TelemetryError::LogFilter { .. } => "log-filter-invalid",
            TelemetryError::Exporter { .. } => "trace-exporter-invalid",
            TelemetryError::AlreadyInstalled => "subscriber-already-installed",
            TelemetryError::Export(_) => "trace-export-failed",
        }
    }
}

/// What [`init`] installed. Keep it for the life of the process and call
/// [`Telemetry::shutdown`] on the way out, or spans still in the batch are lost.
#[must_use = "dropping it loses the spans still buffered; call shutdown() on exit"]
pub struct Telemetry {
    /// `None` when no OTLP endpoint is configured.
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn traces_enabled(&self) -> bool {
        self.provider.is_some()
    }

    /// Sends every finished span now and waits for the collector's answer.
    pub async fn flush(&self) -> Result<(), TelemetryError> {
        let Some(provider) = self.provider.clone() else {
            return Ok(());
        };
        // The SDK blocks this thread until the export task (on the runtime) answers.
        tokio::task::spawn_blocking(move || provider.force_flush())
            .await
            .map_err(|e| TelemetryError::Export(e.to_string()))?
            .map_err(|e| TelemetryError::Export(e.to_string()))
    }

    /// Exports what is still buffered and stops the exporter; spans that end later are dropped.
    /// Bounded by the exporter's request timeout (`OTEL_EXPORTER_OTLP_TIMEOUT`, 10 s).
    pub async fn shutdown(self) -> Result<(), TelemetryError> {
        let Some(provider) = self.provider else { return Ok(()) };
        tokio::task::spawn_blocking(move || provider.shutdown())
            .await
            .map_err(|e| TelemetryError::Export(e.to_string()))?
            .map_err(|e| TelemetryError::Export(e.to_string()))
    }
}

/// Installs the process-wide subscriber: the log formatter filtered by `log.level` and, when
/// an OTLP endpoint is set, the OpenTelemetry layer (xg2g's spans and events at INFO and above,
/// whatever `log.level` says). Call once, inside the tokio runtime (the batch exporter runs on
/// it).
pub fn init(log: &LogConfig, telemetry: &TelemetryConfig) -> Result<Telemetry, TelemetryError> {
    let filter = EnvFilter::try_new(&log.level).map_err(|e| TelemetryError::LogFilter {
        level: log.level.clone(),
        message: e.to_string(),
    })?;
    let fmt = match log.format {
        LogFormat::Json => tracing_subscriber::fmt::layer().json().flatten_event(true).boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer().boxed(),
    };
    let provider = telemetry
        .otlp_endpoint
        .as_ref()
        .map(|endpoint| traces::provider(endpoint, telemetry))
        .transpose()?;
    let otel = provider.as_ref().map(|provider| {
        use opentelemetry::trace::TracerProvider as _;
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("xg2g"))
            .with_filter(Targets::new().with_target("xg2g", Level::INFO))
    });
    tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(otel)
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    if let Some(endpoint) = &telemetry.otlp_endpoint {
        tracing::info!(
            endpoint = %traces::traces_url(endpoint),
            service_name = %telemetry.service_name,
            sampling_ratio = telemetry.sampling_ratio,
            "Exporting traces over OTLP/HTTP."
        );
    }
    Ok(Telemetry { provider })
}
