//! The OpenWebIF client: one small keep-alive pool to the receiver, credentials sent up front,
//! at most `max_concurrency` requests in flight, retries with backoff, bodies decoded from UTF-8
//! or Latin-1.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, RETRY_AFTER};
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;
use url::Url;

use super::backoff::{self, Backoff};
use super::error::{UpstreamError, chain};
use super::text::{clean_name, decode, parse_whitelist};
use super::wire::{self, BouquetList, ServiceList};
use crate::config::ReceiverConfig;
use crate::model::{Bouquet, ServiceRef};

/// Sent on every request: OSCam drops requests with an empty User-Agent.
const USER_AGENT: &str = concat!("xg2g/", env!("CARGO_PKG_VERSION"));
/// The receiver is a small box: a few idle connections are plenty (at least one per request
/// that may be in flight, so none has to reconnect).
const MAX_IDLE_PER_HOST: usize = 4;
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const WHITELIST_FILE: &str = "/etc/enigma2/whitelist_streamrelay";

/// Query values are encoded with everything but RFC 3986's unreserved characters escaped, so a
/// space is `%20` (never `+`) and `:`/`"`/`/` in references survive every receiver's parser.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// One entry of a bouquet as the receiver lists it: a channel, a marker or a nested bouquet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEntry {
    /// The raw service reference; see [`RawRef`](crate::model::RawRef) to classify it.
    pub reference: String,
    /// Display name, decoded and without control characters.
    pub name: String,
}

/// Client of the receiver's OpenWebIF API. Cheap to clone: clones share the connection pool,
/// the cookie store and the bound on requests in flight.
#[derive(Clone)]
pub struct OpenWebIf {
    http: reqwest::Client,
    base: Url,
    retries: u32,
    backoff: Backoff,
    /// One permit per request in flight, shared by every clone: the receiver never sees more
    /// than `receiver.max_concurrency` requests from xg2g at once. Held for one attempt (send and
    /// body), never across a retry's wait.
    in_flight: Arc<Semaphore>,
    /// Attempts sent through this client and its clones, since [`OpenWebIf::counted`].
    requests: Arc<AtomicU64>,
}

impl fmt::Debug for OpenWebIf {
    // Only what is safe to print: the client's default headers hold the credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenWebIf")
            .field("base", &self.base.as_str())
            .field("retries", &self.retries)
            .field("backoff", &self.backoff)
            .field("free_permits", &self.in_flight.available_permits())
            .finish_non_exhaustive()
    }
}

impl OpenWebIf {
    /// Builds the client; fails with [`UpstreamError::NotConfigured`] without a base URL.
    pub fn new(cfg: &ReceiverConfig) -> Result<Self, UpstreamError> {
        let mut base = cfg.base_url.clone().ok_or(UpstreamError::NotConfigured)?;
        // Config refuses credentials in the URL; make sure none can leak into errors or logs.
        let _ = base.set_username("");
        let _ = base.set_password(None);
        base.set_query(None);
        base.set_fragment(None);

        let mut headers = HeaderMap::new();
        if let Some(user) = &cfg.username {
            let pass = cfg.password.as_ref().map(|p| p.expose()).unwrap_or_default();
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
            let mut value =
                HeaderValue::from_str(&format!("Basic {token}")).expect("base64 text is a valid header value");
            // Sensitive values print as "Sensitive" in any Debug output of headers.
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .default_headers(headers)
            .cookie_store(true)
            .pool_max_idle_per_host(MAX_IDLE_PER_HOST.max(cfg.max_concurrency as usize))
            .pool_idle_timeout(IDLE_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT.min(cfg.timeout))
            .timeout(cfg.timeout)
            .build()
            .map_err(|source| UpstreamError::Client { source })?;
        Ok(Self {
            http,
            base,
            retries: cfg.retries,
            backoff: Backoff::new(cfg.retry_backoff),
            in_flight: Arc::new(Semaphore::new(cfg.max_concurrency.max(1) as usize)),
            requests: Arc::new(AtomicU64::new(0)),
        })
    }

    /// A clone that shares the pool and the in-flight bound but counts its own requests from
    /// zero, so a caller can tell how many requests one job made.
    pub fn counted(&self) -> Self {
        Self {
            requests: Arc::new(AtomicU64::new(0)),
            ..self.clone()
        }
    }

    /// HTTP requests sent (every attempt, retries included) through this client and the clones
    /// made from it by `clone`, since it was built or made by [`OpenWebIf::counted`].
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// The receiver's base URL (never with credentials).
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// The receiver's bouquets, in its order (`GET /api/bouquets`).
    pub async fn bouquets(&self) -> Result<Vec<Bouquet>, UpstreamError> {
        let list: BouquetList = self.get_json("/api/bouquets", &[]).await?;
        Ok(list
            .bouquets
            .into_iter()
            .map(|(reference, name)| Bouquet {
                reference,
                name: clean_name(&name),
            })
            .collect())
    }

    /// The entries of one bouquet, in its order, markers and nested bouquets included
    /// (`GET /api/getservices?sRef=…`).
    pub async fn services(&self, bouquet: &Bouquet) -> Result<Vec<ServiceEntry>, UpstreamError> {
        let list: ServiceList = self
            .get_json("/api/getservices", &[("sRef", bouquet.reference.as_str())])
            .await?;
        Ok(list
            .services
            .into_iter()
            .map(|s| ServiceEntry {
                reference: s.servicereference,
                name: clean_name(&s.servicename),
            })
            .collect())
    }

    /// The channels the OSCam stream relay descrambles (`/etc/enigma2/whitelist_streamrelay`).
    /// A box without the file (HTTP 404) has an empty whitelist.
    pub async fn whitelist(&self) -> Result<Vec<ServiceRef>, UpstreamError> {
        match self.get("/file", &[("file", WHITELIST_FILE)]).await {
            Ok(body) => Ok(parse_whitelist(&decode(&body))),
            Err(UpstreamError::Status { status: 404, .. }) => {
                tracing::debug!(file = WHITELIST_FILE, "The receiver has no stream relay whitelist.");
                Ok(Vec::new())
            }
            Err(e) => Err(e),
        }
    }

    /// GETs a file below the base URL (`/picon/1_0_19_283D_3FB_1_C00000_0_0_0.png`) in one
    /// attempt, without retries: callers cache the answer and ask again later. `endpoint` names
    /// the call in errors and logs.
    pub(crate) async fn get_file(&self, path: &str, endpoint: &'static str) -> Result<Bytes, UpstreamError> {
        let url = self.url(path, &[]);
        self.attempt(&url)
            .await
            .map_err(|failure| failure.into_error(endpoint, 1))
    }

    /// GETs `endpoint` (a path such as `/api/epgservice`) and parses the JSON answer.
    pub(crate) async fn get_json<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        query: &[(&str, &str)],
    ) -> Result<T, UpstreamError> {
        let body = self.get(endpoint, query).await?;
        wire::parse(endpoint, &body)
    }

    /// GETs `endpoint` with retries; the body of a 2xx answer, else the last failure.
    pub(crate) async fn get(&self, endpoint: &'static str, query: &[(&str, &str)]) -> Result<Bytes, UpstreamError> {
        let url = self.url(endpoint, query);
        let mut retry = 0;
        loop {
            let started = Instant::now();
            let failure = match self.attempt(&url).await {
                Ok(body) => {
                    tracing::debug!(
                        endpoint,
                        bytes = body.len(),
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "Receiver answered."
                    );
                    return Ok(body);
                }
                Err(failure) => failure,
            };
            let attempts = retry + 1;
            if !failure.retryable() || retry >= self.retries {
                return Err(failure.into_error(endpoint, attempts));
            }
            let delay = failure
                .retry_after()
                .unwrap_or_else(|| self.backoff.delay(retry, &mut rand::rng()));
            tracing::warn!(
                endpoint,
                attempt = attempts,
                retries = self.retries,
                delay_ms = delay.as_millis() as u64,
                error = %failure,
                "Receiver request failed; retrying."
            );
            tokio::time::sleep(delay).await;
            retry += 1;
        }
    }

    /// One request under a permit of the in-flight bound.
    async fn attempt(&self, url: &Url) -> Result<Bytes, Failure> {
        // The semaphore is never closed, so acquiring only waits.
        let _permit = self
            .in_flight
            .acquire()
            .await
            .expect("the in-flight semaphore is never closed");
        self.requests.fetch_add(1, Ordering::Relaxed);
        let response = self.http.get(url.clone()).send().await.map_err(Failure::Network)?;
        let status = response.status();
        if status.is_success() {
            return response.bytes().await.map_err(Failure::Network);
        }
        let retry_after = matches!(status, StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE)
            .then(|| {
                let value = response.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok());
                backoff::retry_after(value, self.backoff.cap)
            })
            .flatten();
        // Read the (small) error page so the connection can go back to the pool.
        drop(response.bytes().await);
        Err(Failure::Status { status, retry_after })
    }

    fn url(&self, endpoint: &str, query: &[(&str, &str)]) -> Url {
        let mut url = self.base.clone();
        let path = format!("{}{endpoint}", self.base.path().trim_end_matches('/'));
        url.set_path(&path);
        if !query.is_empty() {
            let pairs: Vec<String> = query
                .iter()
                .map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, QUERY_VALUE)))
                .collect();
            url.set_query(Some(&pairs.join("&")));
        }
        url
    }
}

/// One failed attempt, before deciding whether to retry it.
enum Failure {
    Network(reqwest::Error),
    Status {
        status: StatusCode,
        retry_after: Option<Duration>,
    },
}

impl Failure {
    /// Network errors, timeouts, 5xx and 429 may pass; other answers will not change.
    fn retryable(&self) -> bool {
        match self {
            Self::Network(e) => !e.is_builder() && !e.is_redirect(),
            Self::Status { status, .. } => status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            Self::Network(_) => None,
        }
    }

    fn into_error(self, endpoint: &'static str, attempts: u32) -> UpstreamError {
        match self {
            Self::Network(source) => UpstreamError::Unreachable {
                endpoint,
                attempts,
                source,
            },
            Self::Status { status, .. } => UpstreamError::Status {
                endpoint,
                status: status.as_u16(),
            },
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Network(e) => f.write_str(&chain(e)),
            Self::Status { status, .. } => write!(f, "HTTP {status}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Secret};

    fn config(base: &str) -> ReceiverConfig {
        ReceiverConfig {
            base_url: Some(base.parse().unwrap()),
            ..Config::default().receiver
        }
    }

    #[test]
    fn needs_a_base_url() {
        let cfg = ReceiverConfig {
            base_url: None,
            ..Config::default().receiver
        };
        assert!(matches!(OpenWebIf::new(&cfg), Err(UpstreamError::NotConfigured)));
    }

    #[test]
    fn urls_keep_a_base_path_and_escape_references() {
        let client = OpenWebIf::new(&config("http://box.local:8080/owif/")).unwrap();
        let bouquet = "1:7:1:0:0:0:0:0:0:0:FROM BOUQUET \"userbouquet.favourites.tv\" ORDER BY bouquet";
        assert_eq!(
            client.url("/api/getservices", &[("sRef", bouquet)]).as_str(),
            "http://box.local:8080/owif/api/getservices?sRef=1%3A7%3A1%3A0%3A0%3A0%3A0%3A0%3A0%3A0%3AFROM%20BOUQUET%20%22userbouquet.favourites.tv%22%20ORDER%20BY%20bouquet"
        );
        let client = OpenWebIf::new(&config("http://192.168.1.20")).unwrap();
        assert_eq!(
            client.url("/file", &[("file", WHITELIST_FILE)]).as_str(),
            "http://192.168.1.20/file?file=%2Fetc%2Fenigma2%2Fwhitelist_streamrelay"
        );
        assert_eq!(
            client.url("/api/bouquets", &[]).as_str(),
            "http://192.168.1.20/api/bouquets"
        );
    }

    #[test]
    fn debug_output_hides_credentials() {
        let cfg = ReceiverConfig {
            username: Some("root".to_owned()),
            password: Some(Secret::new("s3cr3t-P4ss")),
            ..config("http://192.168.1.20")
        };
        let client = OpenWebIf::new(&cfg).unwrap();
        let printed = format!("{client:?} {:?}", client.http);
        assert!(!printed.contains("s3cr3t-P4ss"), "{printed}");
        // base64("root:s3cr3t-P4ss")
        assert!(!printed.contains("cm9vdDpzM2NyM3QtUDRzcw"), "{printed}");
    }
}
