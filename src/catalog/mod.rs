//! The channel catalog and guide: loaded and refreshed from the receiver by one owning task
//! (`refresh`), read everywhere else through [`CatalogHandle`]; M3U, XMLTV and page renderers.

mod guide;
mod m3u;
mod now_next;
mod page;
mod refresh;
mod xmltv;

pub(crate) use guide::programmes;
pub use guide::{Guide, GuideLoad, GuideWindow, Programme, load_guide};
pub use m3u::render_m3u;
pub use now_next::{ChannelNow, NowNext, Slot, now_next};
pub(crate) use page::html as escape_html;
pub use page::render_index;
pub use refresh::{RefreshError, RefreshSummary};
pub(crate) use xmltv::escape as escape_xml;
pub use xmltv::{ChannelIds, NUMBER_ID_DOMAIN, render_xmltv};

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::model::{Channel, ServiceRef};
use crate::upstream::OpenWebIf;
use refresh::{Command, Settings, Task};

/// One consistent channel list with its guide. Replaced whole, never changed in place.
#[derive(Debug)]
pub struct Catalog {
    pub channels: Vec<Channel>,
    /// When the channel list was loaded.
    pub loaded_at: SystemTime,
    /// Empty until the first guide load (and while `epg.enabled` is off).
    pub guide: Arc<Guide>,
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

/// What readers see: the current catalog, if any, and why the last loads failed, if they did.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub catalog: Option<Arc<Catalog>>,
    /// Why the last channel list load failed; `None` after a success.
    pub last_error: Option<String>,
    /// Why the last guide load failed in whole or in part; `None` after a full success.
    pub guide_error: Option<String>,
}

impl Snapshot {
    /// The most recent refresh problem, channel list first.
    pub fn refresh_error(&self) -> Option<&str> {
        self.last_error.as_deref().or(self.guide_error.as_deref())
    }
}

/// Read side of the catalog and the way to ask its task for a refresh; cheap to clone.
#[derive(Debug, Clone)]
pub struct CatalogHandle {
    rx: watch::Receiver<Snapshot>,
    commands: mpsc::Sender<Command>,
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

    /// Reloads the channels and (when enabled) the guide now, and waits for the result. Fails at
    /// once with [`RefreshError::InProgress`] while another refresh runs, scheduled or asked for.
    pub async fn refresh(&self) -> Result<RefreshSummary, RefreshError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Refresh(reply))
            .await
            .map_err(|_| RefreshError::Stopped)?;
        answer.await.map_err(|_| RefreshError::Stopped)?
    }
}

/// Starts the task that owns the catalog: it loads at start, retrying with backoff until the
/// receiver answers, then refreshes the channels every `catalog.refresh_interval` and the guide
/// every `epg.refresh_interval` (when `epg.enabled`), and on [`CatalogHandle::refresh`]. A failed
/// refresh keeps the previous catalog. Stops with `shutdown`.
pub fn spawn_loader(
    client: OpenWebIf,
    config: &Config,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> CatalogHandle {
    let (tx, rx) = watch::channel(Snapshot::default());
    let (commands, inbox) = mpsc::channel(8);
    let task = Task::new(client, Settings::from_config(config), metrics, tx);
    tokio::spawn(task.run(inbox, shutdown));
    CatalogHandle { rx, commands }
}
