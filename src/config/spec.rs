//! The key table: every configuration key with its environment variable, default, type and doc.

use std::fmt;

use super::checks::{
    at_least_200ms, at_least_one, at_least_six, cidr_blocks, cors_origin, greater_than_zero, hdhr_device_id,
    host_names, no_credentials, no_userinfo, not_empty, password, port_overrides, signing_keys, stream_auth,
};
use super::value::Value;

/// The type of a key's value; it decides how TOML values and strings are parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A listen address: `":8080"` (all IPv4 interfaces), `"127.0.0.1:8080"` or `"[::1]:8080"`.
    /// IP addresses only, no host names.
    Listen,
    /// A duration in humantime form: `"10s"`, `"500ms"`, `"1m 30s"`.
    Duration,
    /// Free text; where the key is optional, empty means unset.
    Text,
    /// Text that is never printed: rendered and debug-printed as `***`. Empty means unset.
    Secret,
    /// An `http://` or `https://` URL; empty means unset.
    HttpUrl,
    /// The log output format: `json` or `pretty`.
    LogFormat,
    /// A list of strings; from the environment or a flag, comma-separated.
    List,
    /// A list of strings that is never printed (signing keys): rendered as `***` when set.
    SecretList,
    /// A TCP port, 1-65535.
    Port,
    /// A whole number (0 to 2^32-1).
    Count,
    /// `true` or `false`; from the environment or a flag also `1`/`0`/`yes`/`no`.
    Bool,
    /// A fraction from 0.0 to 1.0: a TOML float (or the integers 0 and 1); from the environment
    /// or a flag a decimal like `0.25`.
    Ratio,
}

/// A key's code default, typed; [`fmt::Display`] writes it as a TOML literal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DefaultValue {
    Str(&'static str),
    Int(i64),
    Bool(bool),
    List(&'static [&'static str]),
    Float(f64),
}

impl DefaultValue {
    pub(crate) fn to_toml(self) -> toml::Value {
        match self {
            Self::Str(s) => toml::Value::String(s.to_owned()),
            Self::Int(i) => toml::Value::Integer(i),
            Self::Bool(b) => toml::Value::Boolean(b),
            Self::Float(f) => toml::Value::Float(f),
            Self::List(items) => {
                toml::Value::Array(items.iter().map(|s| toml::Value::String((*s).to_owned())).collect())
            }
        }
    }
}

impl fmt::Display for DefaultValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_toml().fmt(f)
    }
}

/// A check on a key's final value; `Err` holds the problem, e.g. `must be greater than zero`.
pub(crate) type Check = fn(&Value) -> Result<(), String>;

/// One configuration key. The spec table ([`super::keys`]) is the single list of keys: the
/// loader, the example file and `check-config` are all driven by it.
#[derive(Debug, Clone, Copy)]
pub struct KeySpec {
    /// Dotted key: `receiver.base_url` is `base_url` in the file's `[receiver]` table.
    pub key: &'static str,
    /// The environment variable that sets this key, if any.
    pub env: Option<&'static str>,
    pub default: DefaultValue,
    pub kind: Kind,
    /// One line for the example file and `--help`.
    pub doc: &'static str,
    /// A check on the final (layered) value; the error text names the problem.
    pub(crate) check: Option<Check>,
}

impl KeySpec {
    /// Whether the value must never be printed.
    pub fn is_secret(&self) -> bool {
        matches!(self.kind, Kind::Secret | Kind::SecretList)
    }

    /// The table the key lives in (`receiver` for `receiver.base_url`), or `None` at top level.
    pub(crate) fn table(&self) -> Option<&'static str> {
        self.key.rsplit_once('.').map(|(table, _)| table)
    }

    /// The key's name inside its table (`base_url` for `receiver.base_url`).
    pub(crate) fn name(&self) -> &'static str {
        self.key.rsplit_once('.').map_or(self.key, |(_, name)| name)
    }
}

/// Every key, top-level keys first, then each table's keys together (the renderers rely on
/// that order; a test checks it).
pub(crate) static SPEC: &[KeySpec] = &[
    KeySpec {
        key: "listen",
        env: Some("XG2G_LISTEN"),
        default: DefaultValue::Str(":8080"),
        kind: Kind::Listen,
        doc: "Address to listen on: \":PORT\" for every IPv4 interface, or \"IP:PORT\".",
        check: None,
    },
    KeySpec {
        key: "shutdown_timeout",
        env: Some("XG2G_SHUTDOWN_TIMEOUT"),
        default: DefaultValue::Str("10s"),
        kind: Kind::Duration,
        doc: "How long running streams get to finish on shutdown.",
        check: None,
    },
    KeySpec {
        key: "api_token",
        env: Some("XG2G_API_TOKEN"),
        default: DefaultValue::Str(""),
        kind: Kind::Secret,
        doc: "Token the admin routes (refresh, reload) require in X-API-Token or Authorization: Bearer; empty = those routes answer 401.",
        check: None,
    },
    KeySpec {
        key: "public_url",
        env: Some("XG2G_PUBLIC_URL"),
        default: DefaultValue::Str(""),
        kind: Kind::HttpUrl,
        doc: "URL clients reach xg2g at, for playlist links; empty = each request's Host.",
        check: Some(no_userinfo),
    },
    KeySpec {
        key: "log.level",
        env: Some("XG2G_LOG_LEVEL"),
        default: DefaultValue::Str("info"),
        kind: Kind::Text,
        doc: "Log filter, a tracing EnvFilter directive such as \"info\" or \"xg2g=debug,info\".",
        check: Some(not_empty),
    },
    KeySpec {
        key: "log.format",
        env: Some("XG2G_LOG_FORMAT"),
        default: DefaultValue::Str("pretty"),
        kind: Kind::LogFormat,
        doc: "Log output format: \"json\" or \"pretty\".",
        check: None,
    },
    KeySpec {
        key: "telemetry.otlp_endpoint",
        env: Some("XG2G_OTLP_ENDPOINT"),
        default: DefaultValue::Str(""),
        kind: Kind::HttpUrl,
        doc: "OTLP/HTTP collector for traces, e.g. Jaeger's \"http://jaeger:4318\" (spans go to <endpoint>/v1/traces); empty = no traces.",
        check: Some(no_userinfo),
    },
    KeySpec {
        key: "telemetry.service_name",
        env: Some("XG2G_OTEL_SERVICE_NAME"),
        default: DefaultValue::Str("xg2g"),
        kind: Kind::Text,
        doc: "The service.name traces carry.",
        check: Some(not_empty),
    },
    KeySpec {
        key: "telemetry.sampling_ratio",
        env: Some("XG2G_OTEL_SAMPLING_RATIO"),
        default: DefaultValue::Float(1.0),
        kind: Kind::Ratio,
        doc: "Share of session starts traced, 0.0-1.0; a request's sampled traceparent is always followed.",
        check: None,
    },
    KeySpec {
        key: "auth.streams",
        env: Some("XG2G_STREAM_AUTH"),
        default: DefaultValue::Str("open"),
        kind: Kind::Text,
        doc: "Who may watch: \"open\" = anyone who reaches the server; \"signed\" = only requests carrying a signed URL (exp, kid, sig) or a device token (token=) on /stream, /hls, /watch, previews, M3U, XMLTV and the HDHomeRun JSON; see README \"Protecting streams\".",
        check: Some(stream_auth),
    },
    KeySpec {
        key: "auth.keys",
        env: Some("XG2G_STREAM_KEYS"),
        default: DefaultValue::List(&[]),
        kind: Kind::SecretList,
        doc: "Keys that sign and verify stream URLs, as \"KID:SECRET\" (secret at least 32 bytes); the first signs, all verify, so a new key goes first and the old one stays until its URLs expire (env: comma-separated). Never printed.",
        check: Some(signing_keys),
    },
    KeySpec {
        key: "auth.keys_file",
        env: Some("XG2G_STREAM_KEYS_FILE"),
        default: DefaultValue::Str(""),
        kind: Kind::Text,
        doc: "A file of further keys, one \"KID:SECRET\" per line (# comments), accepted after auth.keys; empty = none.",
        check: None,
    },
    KeySpec {
        key: "auth.allowed_hosts",
        env: Some("XG2G_ALLOWED_HOSTS"),
        default: DefaultValue::List(&[]),
        kind: Kind::List,
        doc: "Host headers (\"tv.example.org\" or \"tv.lan:8080\") trusted for links in playlists while streams are signed; another Host gets the first of them. Signed needs this or public_url.",
        check: Some(host_names),
    },
    KeySpec {
        key: "auth.tokens_file",
        env: Some("XG2G_TOKENS_FILE"),
        default: DefaultValue::Str("state/tokens.json"),
        kind: Kind::Text,
        doc: "Where device tokens (POST /api/v1/tokens) are kept, as SHA-256 hashes, while streams are signed; relative to the working directory (/var/lib/xg2g in the images). A missing file = no tokens.",
        check: Some(not_empty),
    },
    KeySpec {
        key: "auth.password",
        env: Some("XG2G_WEB_PASSWORD"),
        default: DefaultValue::Str(""),
        kind: Kind::Secret,
        doc: "Password of the web sign-in while streams are signed (at least 8 characters); the admin token signs in too; empty = the admin token only. Never printed.",
        check: Some(password),
    },
    KeySpec {
        key: "receiver.base_url",
        env: Some("XG2G_OWI_BASE"),
        default: DefaultValue::Str(""),
        kind: Kind::HttpUrl,
        doc: "OpenWebIF URL of the receiver, e.g. \"http://192.168.1.20\"; empty = not configured.",
        check: Some(no_credentials),
    },
    KeySpec {
        key: "receiver.username",
        env: Some("XG2G_OWI_USER"),
        default: DefaultValue::Str(""),
        kind: Kind::Text,
        doc: "OpenWebIF user name; empty = no authentication.",
        check: None,
    },
    KeySpec {
        key: "receiver.password",
        env: Some("XG2G_OWI_PASS"),
        default: DefaultValue::Str(""),
        kind: Kind::Secret,
        doc: "OpenWebIF password.",
        check: None,
    },
    KeySpec {
        key: "receiver.bouquets",
        env: Some("XG2G_BOUQUET"),
        default: DefaultValue::List(&[]),
        kind: Kind::List,
        doc: "Bouquets to publish, by name (env: comma-separated); empty = every TV bouquet.",
        check: None,
    },
    KeySpec {
        key: "receiver.stream_port",
        env: Some("XG2G_STREAM_PORT"),
        default: DefaultValue::Int(8001),
        kind: Kind::Port,
        doc: "Receiver's streaming port.",
        check: None,
    },
    KeySpec {
        key: "receiver.relay_port",
        env: Some("XG2G_RELAY_PORT"),
        default: DefaultValue::Int(17999),
        kind: Kind::Port,
        doc: "Receiver's stream relay port, used for encrypted channels.",
        check: None,
    },
    KeySpec {
        key: "receiver.timeout",
        env: Some("XG2G_OWI_TIMEOUT"),
        default: DefaultValue::Str("10s"),
        kind: Kind::Duration,
        doc: "Timeout for each OpenWebIF request.",
        check: Some(greater_than_zero),
    },
    KeySpec {
        key: "receiver.retries",
        env: Some("XG2G_OWI_RETRIES"),
        default: DefaultValue::Int(3),
        kind: Kind::Count,
        doc: "Retries of a failed OpenWebIF request.",
        check: None,
    },
    KeySpec {
        key: "receiver.retry_backoff",
        env: Some("XG2G_OWI_BACKOFF"),
        default: DefaultValue::Str("500ms"),
        kind: Kind::Duration,
        doc: "Wait before the first retry; it doubles for each further retry, with jitter.",
        check: None,
    },
    KeySpec {
        key: "receiver.max_concurrency",
        env: Some("XG2G_OWI_MAX_CONCURRENCY"),
        default: DefaultValue::Int(5),
        kind: Kind::Count,
        doc: "Most OpenWebIF requests in flight at once; the receiver is a small box.",
        check: Some(at_least_one),
    },
    KeySpec {
        key: "receiver.smart_stream_detection",
        env: Some("XG2G_SMART_STREAM_DETECTION"),
        default: DefaultValue::Bool(true),
        kind: Kind::Bool,
        doc: "Pick each channel's stream port (relay for whitelisted channels, else probe); false = stream_port for all.",
        check: None,
    },
    KeySpec {
        key: "receiver.detection_ttl",
        env: Some("XG2G_STREAM_DETECTION_TTL"),
        default: DefaultValue::Str("24h"),
        kind: Kind::Duration,
        doc: "How long a detected stream port is remembered.",
        check: Some(greater_than_zero),
    },
    KeySpec {
        key: "receiver.port_overrides",
        env: Some("XG2G_PORT_OVERRIDES"),
        default: DefaultValue::List(&[]),
        kind: Kind::List,
        doc: "Fixed stream ports per channel, as \"SERVICE_REF=PORT\" (env: comma-separated).",
        check: Some(port_overrides),
    },
    KeySpec {
        key: "catalog.refresh_interval",
        env: Some("XG2G_REFRESH_INTERVAL"),
        default: DefaultValue::Str("15m"),
        kind: Kind::Duration,
        doc: "How often the channel list is reloaded from the receiver.",
        check: Some(greater_than_zero),
    },
    KeySpec {
        key: "epg.enabled",
        env: Some("XG2G_EPG_ENABLED"),
        default: DefaultValue::Bool(true),
        kind: Kind::Bool,
        doc: "Load the programme guide for XMLTV.",
        check: None,
    },
    KeySpec {
        key: "epg.days",
        env: Some("XG2G_EPG_DAYS"),
        default: DefaultValue::Int(7),
        kind: Kind::Count,
        doc: "Days of programme guide to publish.",
        check: Some(at_least_one),
    },
    KeySpec {
        key: "epg.refresh_interval",
        env: Some("XG2G_EPG_REFRESH_INTERVAL"),
        default: DefaultValue::Str("60m"),
        kind: Kind::Duration,
        doc: "How often the programme guide is reloaded.",
        check: Some(greater_than_zero),
    },
    KeySpec {
        key: "hdhr.enabled",
        env: Some("XG2G_HDHR_ENABLED"),
        default: DefaultValue::Bool(true),
        kind: Kind::Bool,
        doc: "Emulate an HDHomeRun tuner for Plex, Jellyfin and Emby.",
        check: None,
    },
    KeySpec {
        key: "hdhr.ssdp",
        env: Some("XG2G_HDHR_SSDP"),
        default: DefaultValue::Bool(true),
        kind: Kind::Bool,
        doc: "Answer SSDP discovery so media servers find the tuner on the network.",
        check: None,
    },
    KeySpec {
        key: "hdhr.ssdp_listen",
        env: Some("XG2G_HDHR_SSDP_LISTEN"),
        default: DefaultValue::Str(":1900"),
        kind: Kind::Listen,
        doc: "UDP address the SSDP responder listens on.",
        check: None,
    },
    KeySpec {
        key: "hdhr.discovery",
        env: Some("XG2G_HDHR_DISCOVERY"),
        default: DefaultValue::Bool(true),
        kind: Kind::Bool,
        doc: "Answer SiliconDust's HDHomeRun discovery (libhdhomerun, hdhomerun_config) and its control channel.",
        check: None,
    },
    KeySpec {
        key: "hdhr.discovery_listen",
        env: Some("XG2G_HDHR_DISCOVERY_LISTEN"),
        default: DefaultValue::Str(":65001"),
        kind: Kind::Listen,
        doc: "UDP (discovery) and TCP (control) address of HDHomeRun discovery.",
        check: None,
    },
    KeySpec {
        key: "hdhr.device_id",
        env: Some("XG2G_HDHR_DEVICE_ID"),
        default: DefaultValue::Str(""),
        kind: Kind::Text,
        doc: "HDHomeRun device id (8 hex digits with a valid check digit); empty = derived from the host.",
        check: Some(hdhr_device_id),
    },
    KeySpec {
        key: "hdhr.friendly_name",
        env: Some("XG2G_HDHR_NAME"),
        default: DefaultValue::Str("xg2g"),
        kind: Kind::Text,
        doc: "Tuner name shown by media servers.",
        check: Some(not_empty),
    },
    KeySpec {
        key: "hdhr.tuner_count",
        env: Some("XG2G_HDHR_TUNER_COUNT"),
        default: DefaultValue::Int(4),
        kind: Kind::Count,
        doc: "Tuners the emulated device reports.",
        check: Some(at_least_one),
    },
    KeySpec {
        key: "hdhr.profile",
        env: Some("XG2G_HDHR_PROFILE"),
        default: DefaultValue::Str("copy"),
        kind: Kind::Text,
        doc: "Stream profile the tuner's lineup URLs ask for.",
        check: Some(not_empty),
    },
    KeySpec {
        key: "picons.base_url",
        env: Some("XG2G_PICON_BASE"),
        default: DefaultValue::Str(""),
        kind: Kind::HttpUrl,
        doc: "Where channel logos come from; empty = the receiver's /picon/ folder.",
        check: Some(no_userinfo),
    },
    KeySpec {
        key: "picons.cache_ttl",
        env: Some("XG2G_PICON_CACHE_TTL"),
        default: DefaultValue::Str("24h"),
        kind: Kind::Duration,
        doc: "How long a fetched logo is kept.",
        check: Some(greater_than_zero),
    },
    KeySpec {
        key: "circuit_breaker.threshold",
        env: Some("XG2G_CIRCUIT_BREAKER_THRESHOLD"),
        default: DefaultValue::Int(5),
        kind: Kind::Count,
        doc: "Failures within the window that open a stream port's breaker.",
        check: Some(at_least_one),
    },
    KeySpec {
        key: "circuit_breaker.window",
        env: Some("XG2G_CIRCUIT_BREAKER_WINDOW"),
        default: DefaultValue::Str("10s"),
        kind: Kind::Duration,
        doc: "Window in which failures are counted.",
        check: Some(greater_than_zero),
    },
    KeySpec {
        key: "circuit_breaker.timeout",
        env: Some("XG2G_CIRCUIT_BREAKER_TIMEOUT"),
        default: DefaultValue::Str("30s"),
        kind: Kind::Duration,
        doc: "How long an open breaker waits before letting a trial request through.",
        check: Some(greater_than_zero),
    },
    KeySpec {
        key: "circuit_breaker.success_threshold",
        env: Some("XG2G_CIRCUIT_BREAKER_SUCCESS_THRESHOLD"),
        default: DefaultValue::Int(3),
        kind: Kind::Count,
        doc: "Successes in half-open state that close the breaker again.",
        check: Some(at_least_one),
    },
    KeySpec {
        key: "streaming.pipelines_dir",
        env: Some("XG2G_PIPELINES_DIR"),
        default: DefaultValue::Str("pipelines"),
        kind: Kind::Text,
        doc: "Folder of pipeline templates; when it does not exist the built-in templates are used.",
        check: Some(not_empty),
    },
    KeySpec {
        key: "streaming.default_profile",
        env: Some("XG2G_DEFAULT_PROFILE"),
        default: DefaultValue::Str("aac"),
        kind: Kind::Text,
        doc: "Profile of /stream/{ref} when the request names none.",
        check: Some(not_empty),
    },
    KeySpec {
        key: "streaming.audio_languages",
        env: Some("XG2G_AUDIO_LANGUAGES"),
        default: DefaultValue::List(&["deu", "eng"]),
        kind: Kind::List,
        doc: "Preferred audio languages (ISO 639-2), most wanted first; then AC-3 over MP2.",
        check: None,
    },
    KeySpec {
        key: "streaming.idle_grace",
        env: Some("XG2G_SESSION_GRACE"),
        default: DefaultValue::Str("5s"),
        kind: Kind::Duration,
        doc: "How long a session outlives its last TS client.",
        check: None,
    },
    KeySpec {
        key: "streaming.max_client_lag",
        env: Some("XG2G_MAX_CLIENT_LAG"),
        default: DefaultValue::Str("5s"),
        kind: Kind::Duration,
        doc: "A TS client this far behind the live stream is dropped.",
        check: Some(greater_than_zero),
    },
    KeySpec {
        key: "streaming.stall_timeout",
        env: Some("XG2G_STALL_TIMEOUT"),
        default: DefaultValue::Str("2s"),
        kind: Kind::Duration,
        doc: "No data from the receiver for this long counts as a stall and reconnects (a DVB stream carries a PCR every 40 ms).",
        check: Some(greater_than_zero),
    },
    KeySpec {
        key: "streaming.reconnect_attempts",
        env: Some("XG2G_RECONNECT_ATTEMPTS"),
        default: DefaultValue::Int(3),
        kind: Kind::Count,
        doc: "Reconnects after an upstream stall or end before clients are ended.",
        check: None,
    },
    KeySpec {
        key: "streaming.start_timeout",
        env: Some("XG2G_START_TIMEOUT"),
        default: DefaultValue::Str("20s"),
        kind: Kind::Duration,
        doc: "How long a new session may take to deliver its first bytes.",
        check: Some(greater_than_zero),
    },
    KeySpec {
        key: "hls.target_duration",
        env: Some("XG2G_HLS_TARGET_DURATION"),
        default: DefaultValue::Int(1),
        kind: Kind::Count,
        doc: "HLS target duration in whole seconds; segments are cut every half of it (Apple recommends 6; shorter starts faster).",
        check: Some(at_least_one),
    },
    KeySpec {
        key: "hls.window",
        env: Some("XG2G_HLS_WINDOW"),
        default: DefaultValue::Int(6),
        kind: Kind::Count,
        doc: "Segments in a live playlist (at least 6, per Apple's rules).",
        check: Some(at_least_six),
    },
    KeySpec {
        key: "hls.idle_timeout",
        env: Some("XG2G_HLS_IDLE_TIMEOUT"),
        default: DefaultValue::Str("30s"),
        kind: Kind::Duration,
        doc: "An HLS session ends this long after its last playlist or segment request.",
        check: Some(greater_than_zero),
    },
    KeySpec {
        key: "hls.cors_origin",
        env: Some("XG2G_HLS_CORS_ORIGIN"),
        default: DefaultValue::Str("*"),
        kind: Kind::Text,
        doc: "Access-Control-Allow-Origin of HLS playlists and segments, so players on other sites load them: \"*\", one origin such as \"https://tv.example.org\", or empty for none.",
        check: Some(cors_origin),
    },
    KeySpec {
        key: "hls.program_date_time",
        env: Some("XG2G_HLS_PROGRAM_DATE_TIME"),
        default: DefaultValue::Bool(false),
        kind: Kind::Bool,
        doc: "Date every segment with #EXT-X-PROGRAM-DATE-TIME (Apple rule 8.4). Off by default: Chromium's built-in HLS player fails with \"Parsed buffers not in DTS sequence\" after its first rebuffer when the tag is there.",
        check: None,
    },
    KeySpec {
        key: "rate_limit.enabled",
        env: Some("XG2G_RATE_LIMIT_ENABLED"),
        default: DefaultValue::Bool(true),
        kind: Kind::Bool,
        doc: "Limit how fast new stream sessions start (TS starts, first HLS playlists).",
        check: None,
    },
    KeySpec {
        key: "rate_limit.global_rate",
        env: Some("XG2G_RATE_LIMIT_GLOBAL_RATE"),
        default: DefaultValue::Int(100),
        kind: Kind::Count,
        doc: "New sessions per second, all clients together.",
        check: Some(at_least_one),
    },
    KeySpec {
        key: "rate_limit.global_burst",
        env: Some("XG2G_RATE_LIMIT_GLOBAL_BURST"),
        default: DefaultValue::Int(200),
        kind: Kind::Count,
        doc: "Burst allowance of the global limit.",
        check: Some(at_least_one),
    },
    KeySpec {
        key: "rate_limit.per_ip_rate",
        env: Some("XG2G_RATE_LIMIT_PER_IP_RATE"),
        default: DefaultValue::Int(10),
        kind: Kind::Count,
        doc: "New sessions per second for one client address.",
        check: Some(at_least_one),
    },
    KeySpec {
        key: "rate_limit.per_ip_burst",
        env: Some("XG2G_RATE_LIMIT_PER_IP_BURST"),
        default: DefaultValue::Int(20),
        kind: Kind::Count,
        doc: "Burst allowance per client address.",
        check: Some(at_least_one),
    },
    KeySpec {
        key: "rate_limit.mode_standard",
        env: Some("XG2G_RATE_LIMIT_MODE_STANDARD"),
        default: DefaultValue::Int(50),
        kind: Kind::Count,
        doc: "New sessions per second of standard (copy) profiles.",
        check: Some(at_least_one),
    },
    KeySpec {
        key: "rate_limit.mode_audio_proxy",
        env: Some("XG2G_RATE_LIMIT_MODE_AUDIO_PROXY"),
        default: DefaultValue::Int(30),
        kind: Kind::Count,
        doc: "New sessions per second of audio-proxy (aac) profiles.",
        check: Some(at_least_one),
    },
    KeySpec {
        key: "rate_limit.mode_gpu",
        env: Some("XG2G_RATE_LIMIT_MODE_GPU"),
        default: DefaultValue::Int(20),
        kind: Kind::Count,
        doc: "New sessions per second of GPU (h264) profiles.",
        check: Some(at_least_one),
    },
    KeySpec {
        key: "rate_limit.trusted_proxies",
        env: Some("XG2G_TRUSTED_PROXIES"),
        default: DefaultValue::List(&[]),
        kind: Kind::List,
        doc: "Proxies (CIDR) whose X-Forwarded-For/Forwarded headers name the client (env: comma-separated).",
        check: Some(cidr_blocks),
    },
    KeySpec {
        key: "rate_limit.max_tracked_ips",
        env: Some("XG2G_RATE_LIMIT_MAX_IPS"),
        default: DefaultValue::Int(10000),
        kind: Kind::Count,
        doc: "Most client addresses tracked at once; idle ones are evicted first.",
        check: Some(at_least_one),
    },
    KeySpec {
        key: "rate_limit.max_channels_per_client",
        env: Some("XG2G_RATE_LIMIT_MAX_CHANNELS"),
        default: DefaultValue::Int(6),
        kind: Kind::Count,
        doc: "Most channels one client address may keep tuned at once (each may hold a receiver tuner); 0 = no cap.",
        check: None,
    },
    KeySpec {
        key: "gpu_queue.workers",
        env: Some("XG2G_GPU_QUEUE_WORKERS"),
        default: DefaultValue::Int(4),
        kind: Kind::Count,
        doc: "Encoder slots: sessions that may encode video at once.",
        check: Some(at_least_one),
    },
    KeySpec {
        key: "gpu_queue.size",
        env: Some("XG2G_GPU_QUEUE_SIZE"),
        default: DefaultValue::Int(100),
        kind: Kind::Count,
        doc: "Requests that may wait for an encoder slot; more are refused at once.",
        check: Some(at_least_one),
    },
    KeySpec {
        key: "gpu_queue.max_wait",
        env: Some("XG2G_GPU_QUEUE_MAX_WAIT"),
        default: DefaultValue::Str("30s"),
        kind: Kind::Duration,
        doc: "Longest wait for an encoder slot before 503.",
        check: Some(greater_than_zero),
    },
    KeySpec {
        key: "gpu_queue.active_window",
        env: Some("XG2G_GPU_QUEUE_ACTIVE_WINDOW"),
        default: DefaultValue::Str("10s"),
        kind: Kind::Duration,
        doc: "A client that watched a channel this recently gets Active priority for it.",
        check: Some(greater_than_zero),
    },
    KeySpec {
        key: "preview.cache_ttl",
        env: Some("XG2G_PREVIEW_CACHE_TTL"),
        default: DefaultValue::Str("60s"),
        kind: Kind::Duration,
        doc: "How long a channel thumbnail is reused.",
        check: Some(greater_than_zero),
    },
    KeySpec {
        key: "gpu.stats_enabled",
        env: Some("XG2G_GPU_STATS_ENABLED"),
        default: DefaultValue::Bool(true),
        kind: Kind::Bool,
        doc: "Sample GPU (NVIDIA, Intel, AMD) and host CPU/memory statistics for /metrics.",
        check: None,
    },
    KeySpec {
        key: "gpu.stats_interval",
        env: Some("XG2G_GPU_STATS_INTERVAL"),
        default: DefaultValue::Str("5s"),
        kind: Kind::Duration,
        doc: "How often GPU and host statistics are sampled (at least 200ms).",
        check: Some(at_least_200ms),
    },
];

/// The spec of `key`, if it is a key.
pub(crate) fn find(key: &str) -> Option<&'static KeySpec> {
    SPEC.iter().find(|spec| spec.key == key)
}

/// Whether `key` names a table that holds keys (`receiver`).
pub(crate) fn is_table(key: &str) -> bool {
    SPEC.iter().any(|spec| spec.table() == Some(key))
}
