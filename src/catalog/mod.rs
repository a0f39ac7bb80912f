//! The channel catalog: loaded from the receiver by one owning task, read everywhere else.

mod m3u;
mod page;

pub use m3u::render_m3u;
pub use page::render_index;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::model::{Channel, ServiceRef};
use crate::upstream::{OpenWebIf, load_channels};

const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);

/// One consistent channel list.
#[derive(Debug)]
pub struct Catalog {
    pub channels: Vec<Channel>,
    pub loaded_at: SystemTime,
}

impl Catalog {
    pub fn channel(&self, service_ref: &ServiceRef) -> Option<&Channel> {
        self.channels.iter().find(|c| &c.service_ref == service_ref)
    }

    /// Bouquet names in catalog order, each with its channels.
    pub fn by_bouquet(&self) -> Vec<(&str, Vec<&Channel>)> {
        let mut out: Vec<(&str, Vec<&Channel>)> = Vec::new();
        for c in &self.channels {
            match out.iter_mut().find(|(name, _)| *name == c.bouquet) {
                Some((_, list)) => list.push(c),
                None => out.push((&c.bouquet, vec![c])),
            }
        }
        out
    }
}

/// What readers see: the current catalog, if any, and why the last load failed, if it did.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub catalog: Option<Arc<Catalog>>,
    pub last_error: Option<String>,
}

/// Read side of the catalog, cheap to clone.
#[derive(Debug, Clone)]
pub struct CatalogHandle {
    rx: watch::Receiver<Snapshot>,
}

impl CatalogHandle {
    pub fn snapshot(&self) -> Snapshot {
        self.rx.borrow().clone()
    }

    /// Waits until a catalog has been loaded.
    pub async fn ready(&mut self) -> Arc<Catalog> {
        let snapshot = self.wait_until(|s| s.catalog.is_some()).await;
        snapshot.catalog.expect("checked by the predicate")
    }

    /// Waits until the snapshot satisfies `predicate`; never returns if the loader is gone first.
    pub async fn wait_until(&mut self, predicate: impl Fn(&Snapshot) -> bool) -> Snapshot {
        match self.rx.wait_for(|s| predicate(s)).await {
            Ok(snapshot) => snapshot.clone(),
            Err(_) => std::future::pending().await,
        }
    }
}

/// Starts the task that owns the catalog: it loads at start and retries with backoff until the
/// receiver answers. Stops with `shutdown`.
pub fn spawn_loader(
    client: OpenWebIf,
    bouquets: Vec<String>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> CatalogHandle {
    let (tx, rx) = watch::channel(Snapshot::default());
    tokio::spawn(async move {
        let mut delay = RETRY_FIRST;
        loop {
            let started = std::time::Instant::now();
            let result = tokio::select! {
                () = shutdown.cancelled() => return,
                result = load_channels(&client, &bouquets) => result,
            };
            match result {
                Ok(channels) => {
                    tracing::info!(
                        channels = channels.len(),
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "Loaded channel list."
                    );
                    metrics.catalog_loaded(channels.len());
                    let catalog = Arc::new(Catalog {
                        channels,
                        loaded_at: SystemTime::now(),
                    });
                    tx.send_replace(Snapshot {
                        catalog: Some(catalog),
                        last_error: None,
                    });
                    return;
                }
                Err(error) => {
                    tracing::warn!(%error, code = error.code(), retry_in_s = delay.as_secs(), "Channel list not loaded; retrying.");
                    metrics.catalog_failed();
                    tx.send_modify(|s| s.last_error = Some(error.to_string()));
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(RETRY_MAX);
        }
    });
    CatalogHandle { rx }
}
