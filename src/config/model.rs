//! The validated configuration types the rest of xg2g reads, built from layered values.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use url::Url;

use super::value::Values;

/// The validated configuration. [`Config::default`] is the code defaults from the spec table.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub listen: SocketAddr,
    pub shutdown_timeout: Duration,
    /// Bearer token the API requires; `None` = open.
    pub api_token: Option<Secret>,
    /// Base URL for links in playlists; `None` = derive from the request's Host.
    pub public_url: Option<Url>,
    pub auth: AuthConfig,
    pub log: LogConfig,
    pub telemetry: TelemetryConfig,
    pub receiver: ReceiverConfig,
    pub catalog: CatalogConfig,
    pub epg: EpgConfig,
    pub hdhr: HdhrConfig,
    pub picons: PiconConfig,
    pub circuit_breaker: BreakerConfig,
    pub streaming: StreamingConfig,
    pub hls: HlsConfig,
    pub rate_limit: RateLimitConfig,
    pub gpu_queue: GpuQueueConfig,
    pub preview: PreviewConfig,
    pub gpu: GpuConfig,
}

/// Who may watch: open, or signed stream URLs only.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthConfig {
    pub streams: StreamAuth,
    /// `KID:SECRET` entries, current key first; checked in shape by the config check.
    pub keys: Vec<Secret>,
    /// More keys, read at start-up, after `keys`.
    pub keys_file: Option<std::path::PathBuf>,
    /// `Host` values trusted for links while streams are signed.
    pub allowed_hosts: Vec<String>,
    /// The device tokens' state file (hashes only).
    pub tokens_file: std::path::PathBuf,
    /// The web sign-in's password; the admin token signs in too.
    pub password: Option<Secret>,
}

/// `auth.streams`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamAuth {
    /// Anyone who reaches the server may watch (the default, for the demo).
    Open,
    /// Stream routes need a signed URL.
    Signed,
}

/// Admission of new sessions (REFERENCE.md §3), rates per second.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitConfig {
    pub enabled: bool,
    pub global_rate: u32,
    pub global_burst: u32,
    pub per_ip_rate: u32,
    pub per_ip_burst: u32,
    pub mode_standard: u32,
    pub mode_audio_proxy: u32,
    pub mode_gpu: u32,
    /// CIDR blocks, as written; parsed where they are used.
    pub trusted_proxies: Vec<String>,
    pub max_tracked_ips: u32,
    /// Channels one client may have tuned at once; 0 = no cap.
    pub max_channels_per_client: u32,
}

/// The encoder slot queue.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuQueueConfig {
    pub workers: u32,
    pub size: u32,
    pub max_wait: Duration,
    pub active_window: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PreviewConfig {
    pub cache_ttl: Duration,
}

/// GPU and host statistics sampling.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuConfig {
    pub stats_enabled: bool,
    /// At least 200 ms.
    pub stats_interval: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HlsConfig {
    /// Whole seconds.
    pub target_duration: u32,
    pub window: u32,
    pub idle_timeout: Duration,
    /// `Access-Control-Allow-Origin` of playlists and segments; `None` sends none.
    pub cors_origin: Option<String>,
    /// Date segments with `#EXT-X-PROGRAM-DATE-TIME`.
    pub program_date_time: bool,
}

/// Stream sessions: templates, track choice, lifetimes.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamingConfig {
    pub pipelines_dir: std::path::PathBuf,
    pub default_profile: String,
    pub audio_languages: Vec<String>,
    pub idle_grace: Duration,
    pub max_client_lag: Duration,
    pub stall_timeout: Duration,
    pub reconnect_attempts: u32,
    pub start_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CatalogConfig {
    pub refresh_interval: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EpgConfig {
    pub enabled: bool,
    pub days: u32,
    pub refresh_interval: Duration,
}

/// The emulated HDHomeRun tuner.
#[derive(Debug, Clone, PartialEq)]
pub struct HdhrConfig {
    pub enabled: bool,
    pub ssdp: bool,
    pub ssdp_listen: SocketAddr,
    pub discovery: bool,
    pub discovery_listen: SocketAddr,
    /// `None` = derive one.
    pub device_id: Option<String>,
    pub friendly_name: String,
    pub tuner_count: u32,
    pub profile: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PiconConfig {
    /// `None` = the receiver's `/picon/` folder.
    pub base_url: Option<Url>,
    pub cache_ttl: Duration,
}

/// The circuit breaker around each stream port (REFERENCE.md §3).
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    pub threshold: u32,
    pub window: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
}

/// A fixed stream port for one channel, from `receiver.port_overrides`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortOverride {
    /// The service reference as written; its grammar is checked where it is used.
    pub service_ref: String,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// A tracing `EnvFilter` directive.
    pub level: String,
    pub format: LogFormat,
}

/// Trace export (OpenTelemetry OTLP over HTTP).
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryConfig {
    /// The collector's base URL; spans go to `<endpoint>/v1/traces`. `None` = no traces.
    pub otlp_endpoint: Option<Url>,
    pub service_name: String,
    /// 0.0-1.0: the share of root traces kept; a sampled parent is always followed.
    pub sampling_ratio: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

impl LogFormat {
    pub(crate) const ALL: [Self; 2] = [Self::Json, Self::Pretty];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Pretty => "pretty",
        }
    }
}

/// The Enigma2 receiver and how to talk to its OpenWebIF.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceiverConfig {
    /// OpenWebIF base URL, without credentials; `None` = no receiver configured.
    pub base_url: Option<Url>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// Bouquet names to publish; empty = every TV bouquet.
    pub bouquets: Vec<String>,
    pub stream_port: u16,
    pub relay_port: u16,
    /// Per-request timeout; never zero.
    pub timeout: Duration,
    pub retries: u32,
    /// First retry delay; doubles per retry, with jitter.
    pub retry_backoff: Duration,
    /// Most OpenWebIF requests in flight at once; at least 1.
    pub max_concurrency: u32,
    pub smart_stream_detection: bool,
    pub detection_ttl: Duration,
    pub port_overrides: Vec<PortOverride>,
}

/// A value that must not be printed: `Debug` and `Display` show `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Config {
    /// Builds the typed configuration; every key in `values` already holds its kind's variant.
    pub(crate) fn from_values(v: &Values) -> Self {
        Self {
            listen: v.addr("listen"),
            shutdown_timeout: v.duration("shutdown_timeout"),
            api_token: v.secret("api_token"),
            public_url: v.url("public_url"),
            auth: AuthConfig {
                streams: if v.text("auth.streams") == "signed" {
                    StreamAuth::Signed
                } else {
                    StreamAuth::Open
                },
                keys: v.list("auth.keys").into_iter().map(Secret::new).collect(),
                keys_file: v.optional_text("auth.keys_file").map(Into::into),
                allowed_hosts: v.list("auth.allowed_hosts"),
                tokens_file: v.text("auth.tokens_file").into(),
                password: v.secret("auth.password"),
            },
            log: LogConfig {
                level: v.text("log.level"),
                format: v.format("log.format"),
            },
            telemetry: TelemetryConfig {
                otlp_endpoint: v.url("telemetry.otlp_endpoint"),
                service_name: v.text("telemetry.service_name"),
                sampling_ratio: v.ratio("telemetry.sampling_ratio"),
            },
            receiver: ReceiverConfig {
                base_url: v.url("receiver.base_url"),
                username: v.optional_text("receiver.username"),
                password: v.secret("receiver.password"),
                bouquets: v.list("receiver.bouquets"),
                stream_port: v.port("receiver.stream_port"),
                relay_port: v.port("receiver.relay_port"),
                timeout: v.duration("receiver.timeout"),
                retries: v.count("receiver.retries"),
                retry_backoff: v.duration("receiver.retry_backoff"),
                max_concurrency: v.count("receiver.max_concurrency"),
                smart_stream_detection: v.boolean("receiver.smart_stream_detection"),
                detection_ttl: v.duration("receiver.detection_ttl"),
                port_overrides: v
                    .list("receiver.port_overrides")
                    .iter()
                    .filter_map(|item| {
                        // Shape checked by the spec's `port_overrides` check.
                        let (service_ref, port) = item.rsplit_once('=')?;
                        Some(PortOverride {
                            service_ref: service_ref.trim().to_owned(),
                            port: port.trim().parse().ok()?,
                        })
                    })
                    .collect(),
            },
            catalog: CatalogConfig {
                refresh_interval: v.duration("catalog.refresh_interval"),
            },
            epg: EpgConfig {
                enabled: v.boolean("epg.enabled"),
                days: v.count("epg.days"),
                refresh_interval: v.duration("epg.refresh_interval"),
            },
            hdhr: HdhrConfig {
                enabled: v.boolean("hdhr.enabled"),
                ssdp: v.boolean("hdhr.ssdp"),
                ssdp_listen: v.addr("hdhr.ssdp_listen"),
                discovery: v.boolean("hdhr.discovery"),
                discovery_listen: v.addr("hdhr.discovery_listen"),
                device_id: v.optional_text("hdhr.device_id"),
                friendly_name: v.text("hdhr.friendly_name"),
                tuner_count: v.count("hdhr.tuner_count"),
                profile: v.text("hdhr.profile"),
            },
            picons: PiconConfig {
                base_url: v.url("picons.base_url"),
                cache_ttl: v.duration("picons.cache_ttl"),
            },
            circuit_breaker: BreakerConfig {
                threshold: v.count("circuit_breaker.threshold"),
                window: v.duration("circuit_breaker.window"),
                timeout: v.duration("circuit_breaker.timeout"),
                success_threshold: v.count("circuit_breaker.success_threshold"),
            },
            streaming: StreamingConfig {
                pipelines_dir: v.text("streaming.pipelines_dir").into(),
                default_profile: v.text("streaming.default_profile"),
                audio_languages: v.list("streaming.audio_languages"),
                idle_grace: v.duration("streaming.idle_grace"),
                max_client_lag: v.duration("streaming.max_client_lag"),
                stall_timeout: v.duration("streaming.stall_timeout"),
                reconnect_attempts: v.count("streaming.reconnect_attempts"),
                start_timeout: v.duration("streaming.start_timeout"),
            },
            hls: HlsConfig {
                target_duration: v.count("hls.target_duration"),
                window: v.count("hls.window"),
                idle_timeout: v.duration("hls.idle_timeout"),
                cors_origin: v.optional_text("hls.cors_origin"),
                program_date_time: v.boolean("hls.program_date_time"),
            },
            rate_limit: RateLimitConfig {
                enabled: v.boolean("rate_limit.enabled"),
                global_rate: v.count("rate_limit.global_rate"),
                global_burst: v.count("rate_limit.global_burst"),
                per_ip_rate: v.count("rate_limit.per_ip_rate"),
                per_ip_burst: v.count("rate_limit.per_ip_burst"),
                mode_standard: v.count("rate_limit.mode_standard"),
                mode_audio_proxy: v.count("rate_limit.mode_audio_proxy"),
                mode_gpu: v.count("rate_limit.mode_gpu"),
                trusted_proxies: v.list("rate_limit.trusted_proxies"),
                max_tracked_ips: v.count("rate_limit.max_tracked_ips"),
                max_channels_per_client: v.count("rate_limit.max_channels_per_client"),
            },
            gpu_queue: GpuQueueConfig {
                workers: v.count("gpu_queue.workers"),
                size: v.count("gpu_queue.size"),
                max_wait: v.duration("gpu_queue.max_wait"),
                active_window: v.duration("gpu_queue.active_window"),
            },
            preview: PreviewConfig {
                cache_ttl: v.duration("preview.cache_ttl"),
            },
            gpu: GpuConfig {
                stats_enabled: v.boolean("gpu.stats_enabled"),
                stats_interval: v.duration("gpu.stats_interval"),
            },
        }
    }
}

impl Default for Config {
    /// The code defaults: what [`super::load()`] gives with no file, environment or flags.
    fn default() -> Self {
        super::load::resolve(None, &super::no_env, &[], super::Requirements::None)
            .expect("the spec table's defaults are valid (tested)")
            .config
    }
}
