//! Wiring: config → metrics → receiver client → catalog → HTTP server; start, signals, stop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::catalog::{self, CatalogHandle};
use crate::config::Config;
use crate::http::{self, AppState};
use crate::metrics::Metrics;
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
}

/// A started xg2g. Dropping it without [`Running::stop`] leaves the server to the runtime.
pub struct Running {
    addr: SocketAddr,
    server: actix_web::dev::ServerHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    shutdown: CancellationToken,
    catalog: CatalogHandle,
    shutdown_timeout: Duration,
}

/// Binds the listener and starts every part. Returns once the server accepts connections; the
/// channel list loads in the background (see `/readyz`).
pub async fn start(config: &Config) -> Result<Running, StartError> {
    let metrics = Arc::new(Metrics::new());
    let shutdown = CancellationToken::new();
    let client = OpenWebIf::new(&config.receiver)?;
    let catalog = catalog::spawn_loader(
        client,
        config.receiver.bouquets.clone(),
        Arc::clone(&metrics),
        shutdown.clone(),
    );

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
    let state = AppState {
        catalog: catalog.clone(),
        metrics,
        public_url: config.public_url.as_ref().map(|u| u.to_string()),
        listen_host,
    };
    let server = http::server(listener, state, config.shutdown_timeout).map_err(|source| StartError::Bind {
        addr: config.listen,
        source,
    })?;
    let handle = server.handle();
    let task = tokio::spawn(server);
    tracing::info!(%addr, "Serving HTTP.");
    Ok(Running {
        addr,
        server: handle,
        task,
        shutdown,
        catalog,
        shutdown_timeout: config.shutdown_timeout,
    })
}

impl Running {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn catalog(&self) -> CatalogHandle {
        self.catalog.clone()
    }

    /// Stops accepting, lets open requests finish within the shutdown timeout, then stops the
    /// background tasks.
    pub async fn stop(self) {
        tracing::info!(
            timeout_s = self.shutdown_timeout.as_secs_f64(),
            "Stopping: draining connections."
        );
        self.server.stop(true).await;
        self.shutdown.cancel();
        if let Err(error) = self.task.await {
            tracing::warn!(%error, "HTTP server task ended abnormally.");
        }
        tracing::info!("Stopped.");
    }

    /// Serves until SIGINT or SIGTERM, then stops gracefully.
    pub async fn run_until_signal(self) -> std::io::Result<()> {
        wait_for_signal().await?;
        self.stop().await;
        Ok(())
    }
}

#[cfg(unix)]
async fn wait_for_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => tracing::info!(signal = "SIGTERM", "Signal received."),
        _ = int.recv() => tracing::info!(signal = "SIGINT", "Signal received."),
    }
    Ok(())
}

#[cfg(not(unix))]
async fn wait_for_signal() -> std::io::Result<()> {
    tokio::signal::ctrl_c().await
}
