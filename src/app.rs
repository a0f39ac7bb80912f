//! Wiring: config → metrics → receiver client → catalog → HTTP server; start, signals, stop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::catalog::{self, CatalogHandle};
use crate::config::Config;
use base64::Engine as _;
use std::sync::RwLock;

use crate::http::{self, AppState, SourceTarget, Streaming};
use crate::metrics::Metrics;
use crate::pipeline::{self, TemplateErrors};
pub use crate::pipeline::{ReloadError, Reloaded};
use crate::session::{Registry, Settings};
use crate::upstream::{OpenWebIf, UpstreamError};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("pipeline templates have problems:\n{0}")]
    Templates(#[from] TemplateErrors),
    #[error(transparent)]
    Detect(#[from] crate::upstream::DetectError),
    #[error("rate_limit.trusted_proxies: {0}")]
    TrustedProxies(String),
    #[error(transparent)]
    Keys(#[from] KeysError),
    #[error(transparent)]
    Tokens(#[from] crate::auth::store::StoreError),
}

/// The signing keys could not be loaded. Names the key and the file; never holds a secret.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("auth.keys_file {}: cannot read it: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", describe(.path.as_deref(), .problems))]
    Invalid {
        /// The key file, when the problems may be in it.
        path: Option<std::path::PathBuf>,
        problems: Vec<crate::auth::KeyError>,
    },
}

fn describe(path: Option<&std::path::Path>, problems: &[crate::auth::KeyError]) -> String {
    let place = match path {
        Some(path) => format!("auth.keys and auth.keys_file {}", path.display()),
        None => "auth.keys".to_owned(),
    };
    let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
    format!("{place}: {}", list.join("; "))
}

/// The stream signing keys while `auth.streams = "signed"`: `auth.keys` first (the first key
/// signs), then the lines of `auth.keys_file`. `None` while streams are open.
///
/// # Errors
///
/// The file cannot be read, or a key is malformed, duplicated or too short.
pub fn stream_keys(auth: &crate::config::AuthConfig) -> Result<Option<crate::auth::KeySet>, KeysError> {
    if auth.streams == crate::config::StreamAuth::Open {
        return Ok(None);
    }
    let file = match &auth.keys_file {
        Some(path) => Some(std::fs::read_to_string(path).map_err(|source| KeysError::Read {
            path: path.clone(),
            source,
        })?),
        None => None,
    };
    let inline = auth.keys.iter().map(crate::config::Secret::expose);
    let from_file = file.iter().flat_map(|text| crate::auth::keys::file_entries(text));
    crate::auth::KeySet::parse(inline.chain(from_file))
        .map(Some)
        .map_err(|problems| KeysError::Invalid {
            path: auth.keys_file.clone(),
            problems,
        })
}

/// Templates, the session registry and where streams come from.
fn streaming(config: &Config, metrics: &Arc<Metrics>, shutdown: &CancellationToken) -> Result<Streaming, StartError> {
    let profiles = pipeline::load(Some(&config.streaming.pipelines_dir))?;
    tracing::info!(
        origin = %profiles.origin,
        profiles = ?profiles.names().collect::<Vec<_>>(),
        encoder = profiles.encoder.as_ref().map_or("none", |e| e.factory.as_str()),
        "Loaded pipeline templates."
    );
    let s = &config.streaming;
    let settings = Settings {
        audio_languages: s.audio_languages.clone(),
        idle_grace: s.idle_grace,
        max_client_lag: s.max_client_lag,
        stall_timeout: s.stall_timeout,
        reconnect_attempts: s.reconnect_attempts,
        start_timeout: s.start_timeout,
        hls_target_duration: config.hls.target_duration,
        hls_window: config.hls.window as usize,
        hls_idle_timeout: config.hls.idle_timeout,
    };
    let receiver = &config.receiver;
    let authorization = receiver.username.as_ref().map(|user| {
        let pass = receiver.password.as_ref().map(|p| p.expose()).unwrap_or_default();
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    });
    Ok(Streaming {
        registry: Registry::spawn(settings, Arc::clone(metrics), shutdown.clone()),
        profiles: RwLock::new(Arc::new(profiles)),
        default_profile: s.default_profile.clone(),
        max_client_lag: s.max_client_lag,
        probe_client: reqwest::Client::builder()
            .user_agent(concat!("xg2g/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| StartError::Upstream(UpstreamError::Client { source: e }))?,
        source: SourceTarget { authorization },
        hls: http::HlsOptions {
            cors_origin: config.hls.cors_origin.clone(),
            program_date_time: config.hls.program_date_time,
            start_timeout: s.start_timeout,
        },
    })
}

/// A started xg2g. Dropping it without [`Running::stop`] leaves the server to the runtime.
pub struct Running {
    addr: SocketAddr,
    server: actix_web::dev::ServerHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    shutdown: CancellationToken,
    catalog: CatalogHandle,
    shutdown_timeout: Duration,
    ssdp: Option<crate::hdhr::Responder>,
    hdhr_discovery: Option<crate::hdhr::Responder>,
    state: Arc<AppState>,
    /// Reloads the templates on SIGHUP (unix).
    sighup: Option<tokio::task::JoinHandle<()>>,
    /// GPU and host statistics, when `gpu.stats_enabled`.
    gpu_stats: Option<crate::gpu::GpuStats>,
}

/// Binds the listener and starts every part. Returns once the server accepts connections; the
/// channel list loads in the background (see `/readyz`).
pub async fn start(config: &Config) -> Result<Running, StartError> {
    let metrics = Arc::new(Metrics::new());
    let shutdown = CancellationToken::new();
    let client = OpenWebIf::new(&config.receiver)?;
    let resolver = crate::upstream::StreamResolver::new(config, client.clone(), Arc::clone(&metrics))?;
    let picons = crate::picon::spawn(&config.picons, client.clone(), shutdown.clone());
    let hdhr = crate::hdhr::Device::from_config(config).map(Arc::new);
    let catalog = catalog::spawn_loader(client, config, Arc::clone(&metrics), shutdown.clone());

    let listener = std::net::TcpListener::bind(config.listen).map_err(|source| StartError::Bind {
        addr: config.listen,
        source,
    })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.listen,
        source,
    })?;
    let listen_host = if addr.ip().is_unspecified() {
        format!("localhost:{}", addr.port())
    } else {
        addr.to_string()
    };
    let streaming = streaming(config, &metrics, &shutdown)?;
    let stream_gate = match stream_keys(&config.auth)? {
        None => None,
        Some(keys) => {
            let tokens = crate::auth::store::load(&config.auth.tokens_file)?;
            tracing::info!(
                keys = ?keys.ids().collect::<Vec<_>>(),
                signing = keys.current().id(),
                device_tokens = tokens.records().len(),
                "Streams need signed URLs or device tokens."
            );
            let tokens =
                crate::auth::store::TokenStore::spawn(config.auth.tokens_file.clone(), tokens, shutdown.clone());
            Some(http::StreamGate::new(keys, config.auth.allowed_hosts.clone(), tokens))
        }
    };
    let trusted_proxies =
        http::TrustedProxies::parse(&config.rate_limit.trusted_proxies).map_err(StartError::TrustedProxies)?;
    let admission = crate::limits::AdmissionHandle::spawn(&config.rate_limit, Arc::clone(&metrics), shutdown.clone());
    let encoder_queue = crate::limits::queue::EncoderQueue::spawn(config, Arc::clone(&metrics), shutdown.clone());
    let previews = crate::preview::spawn(
        config,
        encoder_queue.clone(),
        streaming.source.authorization.clone(),
        shutdown.clone(),
    );
    let state = AppState {
        catalog: catalog.clone(),
        metrics,
        public_url: config.public_url.as_ref().map(|u| u.to_string()),
        listen_host,
        hdhr: hdhr.clone(),
        picons,
        streaming,
        resolver,
        api_token: config.api_token.clone(),
        password: config.auth.password.clone(),
        reload: pipeline::Reloader::new(config.streaming.pipelines_dir.clone()),
        admission,
        trusted_proxies,
        encoder_queue,
        previews,
        stream_gate,
        auth_failures: http::AuthFailures::new(config.rate_limit.max_tracked_ips),
    };
    let state = Arc::new(state);
    let server =
        http::server(listener, Arc::clone(&state), config.shutdown_timeout).map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
    let handle = server.handle();
    let task = tokio::spawn(server);
    let ssdp = hdhr
        .as_ref()
        .and_then(|device| crate::hdhr::start_ssdp(config, device, addr, shutdown.clone()));
    let hdhr_discovery = hdhr
        .as_ref()
        .and_then(|device| crate::hdhr::start_discovery(config, device, addr, shutdown.clone()));
    let sighup = spawn_on_sighup(Arc::clone(&state), shutdown.clone());
    let gpu_stats = config
        .gpu
        .stats_enabled
        .then(|| crate::gpu::spawn(config.gpu.stats_interval, Arc::clone(&state.metrics), shutdown.clone()));
    tracing::info!(%addr, "Serving HTTP.");
    Ok(Running {
        addr,
        server: handle,
        task,
        shutdown,
        catalog,
        shutdown_timeout: config.shutdown_timeout,
        ssdp,
        hdhr_discovery,
        state,
        sighup,
        gpu_stats,
    })
}

impl Running {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn catalog(&self) -> CatalogHandle {
        self.catalog.clone()
    }

    /// The SSDP responder's UDP address, when it runs.
    pub fn ssdp_addr(&self) -> Option<SocketAddr> {
        self.ssdp.as_ref().map(|s| s.addr())
    }

    /// The HDHomeRun discovery responder's UDP address (its control channel listens on the same
    /// TCP port), when it runs.
    pub fn hdhr_discovery_addr(&self) -> Option<SocketAddr> {
        self.hdhr_discovery.as_ref().map(|d| d.addr())
    }

    /// Reloads the pipeline templates from `streaming.pipelines_dir`, as SIGHUP and
    /// `POST /api/v1/reload` do: all valid → swapped in; any problem → the previous templates stay.
    pub async fn reload_templates(&self) -> Result<Reloaded, ReloadError> {
        pipeline::reload_templates(
            &self.state.reload,
            &self.state.streaming.profiles,
            pipeline::Trigger::Signal,
        )
        .await
    }

    /// Stops accepting, lets open requests finish within the shutdown timeout, then stops the
    /// background tasks.
    pub async fn stop(self) {
        tracing::info!(
            timeout_s = self.shutdown_timeout.as_secs_f64(),
            "Stopping: draining connections."
        );
        // Stop accepting first, then end every session (their clients' streams end cleanly),
        // so that draining does not wait out the timeout on endless streams.
        let drained = self.server.stop(true);
        self.shutdown.cancel();
        drained.await;
        if let Some(ssdp) = self.ssdp {
            ssdp.join().await;
        }
        if let Some(discovery) = self.hdhr_discovery {
            discovery.join().await;
        }
        if let Some(gpu_stats) = self.gpu_stats {
            gpu_stats.join().await;
        }
        if let Some(sighup) = self.sighup
            && let Err(error) = sighup.await
        {
            tracing::warn!(%error, "SIGHUP task ended abnormally.");
        }
        if let Err(error) = self.task.await {
            tracing::warn!(%error, "HTTP server task ended abnormally.");
        }
        tracing::info!("Stopped.");
    }

    /// Serves until SIGINT or SIGTERM arrives on `signals`, then stops gracefully.
    pub async fn run_until(self, mut signals: Signals) {
        signals.wait().await;
        self.stop().await;
    }
}

/// SIGINT and SIGTERM, caught from the moment this is created: install it before starting
/// anything, so that a signal during start-up drains instead of killing the process.
pub struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    pub async fn wait(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => tracing::info!(signal = "SIGTERM", "Signal received."),
            _ = self.int.recv() => tracing::info!(signal = "SIGINT", "Signal received."),
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Reloads the templates on every SIGHUP until `shutdown`. Unix only: elsewhere, or when the
/// handler cannot be installed (logged), `None`.
fn spawn_on_sighup(state: Arc<AppState>, shutdown: CancellationToken) -> Option<tokio::task::JoinHandle<()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        // Installed here, before returning, so that a SIGHUP right after start is not lost.
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(hangups) => hangups,
            Err(error) => {
                tracing::warn!(%error, "Cannot catch SIGHUP; templates reload only through the API.");
                return None;
            }
        };
        let task = async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    received = hangups.recv() => {
                        if received.is_none() {
                            return;
                        }
                        tracing::info!(signal = "SIGHUP", "Signal received; reloading the templates.");
                        // Failures are logged inside; the previous templates stay.
                        let _ = pipeline::reload_templates(&state.reload, &state.streaming.profiles, pipeline::Trigger::Signal).await;
                    }
                }
            }
        };
        Some(tokio::spawn(task.instrument(tracing::info_span!("template-reload"))))
    }
    #[cfg(not(unix))]
    {
        let _ = (state, shutdown);
        None
    }
}
