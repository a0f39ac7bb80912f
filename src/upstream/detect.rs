//! Smart stream ports: which receiver port streams a channel, behind one circuit breaker per port.
//!
//! [`StreamResolver::resolve`] answers with a [`StreamSource`], by these rules in order:
//! 1. a per-channel `receiver.port_overrides` entry wins;
//! 2. with `receiver.smart_stream_detection = false` every channel uses `receiver.stream_port`;
//! 3. a channel in the receiver's relay whitelist uses the relay port, never probed (the stream
//!    port would send it scrambled); the whitelist is fetched lazily and refreshed at most once
//!    per catalog refresh interval;
//! 4. a port detected earlier is reused for `receiver.detection_ttl`;
//! 5. otherwise the stream port and then the relay port are probed with `GET` +
//!    `Range: bytes=0-0` (never `HEAD`: OSCam answers it with an empty reply), credentials sent up
//!    front; the status line is read and the connection dropped. Probes run one at a time, and
//!    new relay probes keep [`RELAY_PROBE_GAP`] apart (REFERENCE.md §1).
//!
//! Every port has a circuit breaker (`stream_8001`, `relay_17999`, `port_<n>` for overrides) fed
//! by probes and by [`StreamResolver::report_connect`]. A port whose breaker is open is not used:
//! a detected port falls back to the other one, and when every port a channel may use is open,
//! `resolve` fails at once with [`DetectError::AllPortsOpen`]. A whitelisted channel never falls
//! back to the stream port, nor an override or a fixed port to any other.
//!
//! The decisions live in `detector::Detector`, a synchronous owner of the cache, the whitelist
//! and the breakers that takes the time as an argument; the resolver holds it behind a lock that
//! is never held across an await, and does the IO around it.

mod detector;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use url::{Host, Url};

use super::openwebif::OpenWebIf;
use crate::config::{Config, Secret};
use crate::metrics::Metrics;
use crate::model::{ParseServiceRefError, ServiceRef};
use detector::{Decision, Detector, Ports, Settings};

/// Least time between two new probe requests to the relay port: OSCam refuses connections
/// when probed faster.
pub const RELAY_PROBE_GAP: Duration = Duration::from_secs(1);
const USER_AGENT: &str = concat!("xg2g/", env!("CARGO_PKG_VERSION"));
/// The most a probe reads while waiting for the end of the response head.
const HEAD_LIMIT: usize = 8 * 1024;

/// Where to stream a channel from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSource {
    pub port: u16,
    /// Whether `port` is the OSCam relay port.
    pub relay: bool,
    /// `http://<receiver host>:<port>/<service ref>`; never with credentials (send them in an
    /// `Authorization` header up front: the relay sends no challenge).
    pub url: Url,
}

/// Why a connection to a stream port failed; the label of
/// `xg2g_stream_detection_errors_total{error_type}` is [`ConnectFailure::error_type`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectFailure {
    /// No answer within the timeout.
    Timeout,
    /// The connection was refused, or closed before a byte of reply (how OSCam refuses).
    Refused,
    /// The connection broke (reset, or a reply that is not HTTP).
    Reset,
    /// The port answered with a non-success status.
    Status(u16),
}

impl ConnectFailure {
    pub fn error_type(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Refused => "refused",
            Self::Reset => "reset",
            Self::Status(_) => "http_status",
        }
    }

    /// Classifies an IO error from connecting, writing or reading.
    pub fn from_io(error: &io::Error) -> Self {
        match error.kind() {
            io::ErrorKind::TimedOut => Self::Timeout,
            io::ErrorKind::ConnectionRefused | io::ErrorKind::UnexpectedEof => Self::Refused,
            _ => Self::Reset,
        }
    }

    /// Whether this says the port itself is failing (and counts against its breaker). A 4xx is
    /// an answer about the channel from a port that works.
    pub fn is_port_failure(self) -> bool {
        match self {
            Self::Status(status) => status >= 500,
            Self::Timeout | Self::Refused | Self::Reset => true,
        }
    }
}

impl fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout => f.write_str("timed out"),
            Self::Refused => f.write_str("refused"),
            Self::Reset => f.write_str("connection reset"),
            Self::Status(status) => write!(f, "HTTP {status}"),
        }
    }
}

/// Why no stream port can be given.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DetectError {
    /// Every port the channel may use has an open circuit breaker.
    #[error("the receiver's stream ports are failing (circuit open); retry in {} s", whole_seconds(*.retry_after))]
    AllPortsOpen { retry_after: Duration },
    /// Every port the channel may use was probed and none could stream it.
    #[error("no stream port of the receiver can stream the channel: {}", failure_list(failures))]
    NoPortAnswered { failures: Vec<(u16, ConnectFailure)> },
    /// A `receiver.port_overrides` entry names no channel.
    #[error("receiver.port_overrides entry \"{entry}\": {source}")]
    InvalidOverride {
        entry: String,
        #[source]
        source: ParseServiceRefError,
    },
}

impl DetectError {
    /// A stable kebab-case code; clients match this, not the text.
    pub fn code(&self) -> &'static str {
        match self {
            Self::AllPortsOpen { .. } | Self::NoPortAnswered { .. } => "upstream-unavailable",
            Self::InvalidOverride { .. } => "config-invalid",
        }
    }

    /// When a retry may succeed, where that is known.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::AllPortsOpen { retry_after } => Some(*retry_after),
            _ => None,
        }
    }
}

/// Whole seconds, rounded up, at least 1: the form of a `Retry-After` header.
pub(crate) fn whole_seconds(duration: Duration) -> u64 {
    let rounded_up = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    rounded_up.max(1)
}

fn failure_list(failures: &[(u16, ConnectFailure)]) -> String {
    let parts: Vec<String> = failures.iter().map(|(port, f)| format!("port {port} {f}")).collect();
    parts.join(", ")
}

/// Picks and checks stream ports; see the module documentation. Cheap to clone: clones share
/// the cache, the whitelist and the breakers.
#[derive(Clone)]
pub struct StreamResolver {
    inner: Arc<Inner>,
}

struct Inner {
    detector: Mutex<Detector>,
    ports: Ports,
    client: OpenWebIf,
    /// Host name or address to connect to, without brackets.
    connect_host: String,
    /// Base of the stream URLs: the receiver's host, scheme `http`, no credentials.
    url_base: Url,
    /// `Basic …` for the `Authorization` header, when the receiver wants credentials.
    authorization: Option<Secret>,
    probe_timeout: Duration,
    /// One whitelist fetch at a time.
    whitelist_fetch: tokio::sync::Mutex<()>,
    /// One probe at a time (the receiver has few tuners); holds when the relay may be probed next.
    probing: tokio::sync::Mutex<Option<Instant>>,
}

impl fmt::Debug for StreamResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamResolver")
            .field("url_base", &self.inner.url_base.as_str())
            .field("probe_timeout", &self.inner.probe_timeout)
            .finish_non_exhaustive()
    }
}

impl StreamResolver {
    /// Builds the resolver; nothing is fetched or probed until the first [`resolve`].
    ///
    /// [`resolve`]: StreamResolver::resolve
    pub fn new(config: &Config, client: OpenWebIf, metrics: Arc<Metrics>) -> Result<Self, DetectError> {
        let receiver = &config.receiver;
        let mut overrides = HashMap::new();
        for entry in &receiver.port_overrides {
            let service_ref =
                entry
                    .service_ref
                    .parse::<ServiceRef>()
                    .map_err(|source| DetectError::InvalidOverride {
                        entry: format!("{}={}", entry.service_ref, entry.port),
                        source,
                    })?;
            overrides.insert(service_ref, entry.port);
        }
        let ports = Ports {
            stream: receiver.stream_port,
            relay: receiver.relay_port,
        };
        let detector = Detector::new(
            Settings {
                ports,
                smart: receiver.smart_stream_detection,
                ttl: receiver.detection_ttl,
                whitelist_every: config.catalog.refresh_interval.max(Duration::from_secs(1)),
                overrides,
            },
            &config.circuit_breaker,
            metrics,
        );

        let base = client.base_url();
        let connect_host = match base.host() {
            Some(Host::Domain(name)) => name.to_owned(),
            Some(Host::Ipv4(addr)) => addr.to_string(),
            Some(Host::Ipv6(addr)) => addr.to_string(),
            None => "localhost".to_owned(),
        };
        let mut url_base = base.clone();
        // Both are special schemes, so this cannot fail; the stream ports speak plain HTTP.
        let _ = url_base.set_scheme("http");
        let _ = url_base.set_username("");
        let _ = url_base.set_password(None);
        url_base.set_query(None);
        url_base.set_fragment(None);
        let authorization = receiver.username.as_ref().map(|user| {
            let pass = receiver.password.as_ref().map(Secret::expose).unwrap_or_default();
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
            Secret::new(format!("Basic {token}"))
        });
        Ok(Self {
            inner: Arc::new(Inner {
                detector: Mutex::new(detector),
                ports,
                client,
                connect_host,
                url_base,
                authorization,
                probe_timeout: receiver.timeout,
                whitelist_fetch: tokio::sync::Mutex::new(()),
                probing: tokio::sync::Mutex::new(None),
            }),
        })
    }

    /// The port and URL to stream `service_ref` from. Fails at once, without touching the
    /// receiver, when every port the channel may use has an open breaker; may otherwise fetch
    /// the whitelist and probe (bounded by the receiver timeout per probe).
    ///
    /// Call it before every connect to the receiver, reconnects included: it is the breakers'
    /// gate (an open port is skipped; after its timeout, the first call is the half-open trial),
    /// and then report the connect's outcome with [`StreamResolver::report_connect`].
    pub async fn resolve(&self, service_ref: &ServiceRef) -> Result<StreamSource, DetectError> {
        let mut fetched = false;
        loop {
            let decision = self.detector().decide(service_ref, Instant::now(), !fetched);
            match decision {
                Decision::Use(port) => return Ok(self.source(service_ref, port)),
                Decision::Fail(error) => return Err(error),
                Decision::FetchWhitelist => {
                    self.refresh_whitelist().await;
                    fetched = true;
                }
                Decision::Probe => return self.probe_channel(service_ref).await,
            }
        }
    }

    /// Feeds the outcome of a connection to a stream port (a session's upstream connect or
    /// reconnect) into that port's breaker: timeouts, refusals, resets and 5xx count as
    /// failures; a 4xx is an answer from a working port. Ports without a breaker are ignored,
    /// and so are outcomes while the port's breaker is open. Cheap and synchronous.
    pub fn report_connect(&self, port: u16, outcome: Result<(), ConnectFailure>) {
        let ok = match outcome {
            Ok(()) => true,
            Err(failure) => !failure.is_port_failure(),
        };
        self.detector().record(port, Instant::now(), ok);
    }

    fn detector(&self) -> std::sync::MutexGuard<'_, Detector> {
        // The detector's state stays consistent even if a holder panicked: every change is one
        // assignment.
        self.inner.detector.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn source(&self, service_ref: &ServiceRef, port: u16) -> StreamSource {
        let mut url = self.inner.url_base.clone();
        let _ = url.set_port(Some(port));
        url.set_path(&format!("/{service_ref}"));
        StreamSource {
            port,
            relay: port == self.inner.ports.relay,
            url,
        }
    }

    async fn refresh_whitelist(&self) {
        let _single = self.inner.whitelist_fetch.lock().await;
        if !self.detector().whitelist_due(Instant::now()) {
            return; // Another resolve fetched it while this one waited.
        }
        let result = self.inner.client.whitelist().await;
        let now = Instant::now();
        match result {
            Ok(list) => {
                tracing::info!(channels = list.len(), "Fetched the stream relay whitelist.");
                self.detector().set_whitelist(now, Some(list.into_iter().collect()));
            }
            Err(error) => {
                tracing::warn!(%error, code = error.code(), "Stream relay whitelist not fetched; using the previous one.");
                self.detector().set_whitelist(now, None);
            }
        }
    }

    async fn probe_channel(&self, service_ref: &ServiceRef) -> Result<StreamSource, DetectError> {
        let mut relay_next = self.inner.probing.lock().await;
        // Another probe may have answered (or the breakers opened) while this one waited.
        let decision = self.detector().decide(service_ref, Instant::now(), false);
        match decision {
            Decision::Use(port) => return Ok(self.source(service_ref, port)),
            Decision::Fail(error) => return Err(error),
            Decision::Probe | Decision::FetchWhitelist => {}
        }
        let ports = self.inner.ports;
        let order = if ports.stream == ports.relay {
            vec![ports.stream]
        } else {
            vec![ports.stream, ports.relay]
        };
        let mut failures = Vec::new();
        let mut stream_answered = false;
        let mut retry_after: Option<Duration> = None;
        for port in order {
            if port == ports.relay {
                let relay_open = self.detector().retry_after(port, Instant::now()).is_some();
                if let Some(next) = relay_next.filter(|_| !relay_open) {
                    tokio::time::sleep_until(next).await;
                }
            }
            let gate = self.detector().gate(port, Instant::now());
            if let Err(wait) = gate {
                retry_after = Some(retry_after.map_or(wait, |r| r.min(wait)));
                continue;
            }
            if port == ports.relay {
                *relay_next = Some(Instant::now() + RELAY_PROBE_GAP);
            }
            let started = Instant::now();
            let outcome = self.probe(service_ref, port).await;
            let elapsed_ms = started.elapsed().as_millis() as u64;
            let relay = port == ports.relay;
            match outcome {
                Ok(()) => {
                    // A relay answer is kept only when the stream port answered too (it works,
                    // but not for this channel): a failing stream port may be back soon.
                    let keep = !relay || stream_answered;
                    let cached = self.detector().detected(service_ref, port, Instant::now(), keep);
                    tracing::info!(service_ref = %service_ref, port, relay, cached, elapsed_ms, "Stream port detected.");
                    return Ok(self.source(service_ref, port));
                }
                Err(failure) => {
                    tracing::warn!(
                        service_ref = %service_ref,
                        port,
                        relay,
                        error_type = failure.error_type(),
                        elapsed_ms,
                        "Stream port probe failed: {failure}."
                    );
                    stream_answered |= !relay && !failure.is_port_failure();
                    self.detector().probe_failed(port, Instant::now(), failure);
                    failures.push((port, failure));
                }
            }
        }
        match retry_after {
            Some(retry_after) if failures.is_empty() => Err(DetectError::AllPortsOpen { retry_after }),
            _ => Err(DetectError::NoPortAnswered { failures }),
        }
    }

    /// `GET /<ref>` with `Range: bytes=0-0` on `port`: the status line decides, the connection
    /// is dropped right after the response head.
    async fn probe(&self, service_ref: &ServiceRef, port: u16) -> Result<(), ConnectFailure> {
        let inner = &self.inner;
        let host = inner.url_base.host_str().unwrap_or("localhost");
        let mut request = format!(
            "GET /{service_ref} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: {USER_AGENT}\r\nRange: bytes=0-0\r\nAccept: */*\r\nConnection: close\r\n"
        );
        if let Some(authorization) = &inner.authorization {
            request.push_str("Authorization: ");
            request.push_str(authorization.expose());
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        let exchange = async {
            let mut socket = TcpStream::connect((inner.connect_host.as_str(), port))
                .await
                .map_err(|e| ConnectFailure::from_io(&e))?;
            socket
                .write_all(request.as_bytes())
                .await
                .map_err(|e| ConnectFailure::from_io(&e))?;
            read_status(&mut socket).await
        };
        let status = tokio::time::timeout(inner.probe_timeout, exchange)
            .await
            .unwrap_or(Err(ConnectFailure::Timeout))?;
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(ConnectFailure::Status(status))
        }
    }
}

/// Reads until the response head is complete and returns its status.
async fn read_status(socket: &mut TcpStream) -> Result<u16, ConnectFailure> {
    let mut buf = Vec::with_capacity(512);
    loop {
        let mut chunk = [0u8; 512];
        let n = socket.read(&mut chunk).await.map_err(|e| ConnectFailure::from_io(&e))?;
        if n == 0 {
            // Hung up: before any byte, a refusal; in the middle of the head, a broken reply.
            return Err(if buf.is_empty() {
                ConnectFailure::Refused
            } else {
                ConnectFailure::Reset
            });
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => return response.code.ok_or(ConnectFailure::Reset),
            Ok(httparse::Status::Partial) if buf.len() < HEAD_LIMIT => {}
            _ => return Err(ConnectFailure::Reset),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn connect_failures_classify_and_print() {
        let io = |kind| ConnectFailure::from_io(&io::Error::from(kind));
        assert_eq!(io(io::ErrorKind::ConnectionRefused), ConnectFailure::Refused);
        assert_eq!(io(io::ErrorKind::ConnectionReset), ConnectFailure::Reset);
        assert_eq!(io(io::ErrorKind::TimedOut), ConnectFailure::Timeout);
        assert_eq!(ConnectFailure::Status(503).error_type(), "http_status");
        let e = DetectError::NoPortAnswered {
            failures: vec![(8001, ConnectFailure::Refused), (17999, ConnectFailure::Status(404))],
        };
        assert_eq!(
            e.to_string(),
            "no stream port of the receiver can stream the channel: port 8001 refused, port 17999 HTTP 404"
        );
        let e = DetectError::AllPortsOpen {
            retry_after: Duration::from_millis(12_300),
        };
        assert_eq!(e.retry_after(), Some(Duration::from_millis(12_300)));
        assert_eq!(e.code(), "upstream-unavailable");
        assert_eq!(
            e.to_string(),
            "the receiver's stream ports are failing (circuit open); retry in 13 s"
        );
        assert_eq!(whole_seconds(Duration::ZERO), 1);
        assert_eq!(whole_seconds(S), 1);
        assert_eq!(whole_seconds(Duration::from_millis(1_001)), 2);
    }
}
