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

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(number: u32, bouquet: &str) -> Channel {
        Channel {
            number,
            name: format!("Channel {number}"),
            service_ref: format!("1:0:19:{number:X}:3FB:1:C00000:0:0:0:").parse().unwrap(),
            bouquet: bouquet.to_owned(),
        }
    }

    fn handle() -> (CatalogHandle, watch::Sender<Snapshot>, mpsc::Receiver<Command>) {
        let (tx, rx) = watch::channel(Snapshot::default());
        let (commands, inbox) = mpsc::channel(1);
        (CatalogHandle { rx, commands }, tx, inbox)
    }

    #[test]
    fn bouquets_keep_catalog_order_and_gather_their_channels() {
        let catalog = Catalog {
            channels: vec![channel(1, "TV"), channel(2, "Radio"), channel(3, "TV")],
            loaded_at: SystemTime::UNIX_EPOCH,
            guide: Arc::default(),
        };
        let grouped: Vec<(&str, Vec<u32>)> = catalog
            .by_bouquet()
            .into_iter()
            .map(|(name, list)| (name, list.iter().map(|c| c.number).collect()))
            .collect();
        assert_eq!(grouped, [("TV", vec![1, 3]), ("Radio", vec![2])]);
        let second = &catalog.channels[1].service_ref;
        assert_eq!(catalog.channel(second).map(|c| c.number), Some(2));
        assert!(catalog.channel(&channel(9, "TV").service_ref).is_none());
    }

    #[test]
    fn the_channel_list_error_comes_before_the_guide_error() {
        let mut snapshot = Snapshot::default();
        assert_eq!(snapshot.refresh_error(), None);
        snapshot.guide_error = Some("guide".to_owned());
        assert_eq!(snapshot.refresh_error(), Some("guide"));
        snapshot.last_error = Some("channels".to_owned());
        assert_eq!(snapshot.refresh_error(), Some("channels"));
    }

    #[tokio::test]
    async fn refresh_asks_the_task_and_returns_its_answer() {
        let (handle, _tx, mut inbox) = handle();
        let task = tokio::spawn(async move {
            let Some(Command::Refresh(reply)) = inbox.recv().await else {
                panic!("a refresh command");
            };
            let _ = reply.send(Err(RefreshError::InProgress {
                retry_after: std::time::Duration::from_secs(7),
            }));
            // The task goes away: a later refresh reports it stopped.
        });
        let err = handle.refresh().await.unwrap_err();
        assert_eq!(err.code(), "refresh-in-progress");
        task.await.unwrap();
        assert!(matches!(handle.refresh().await, Err(RefreshError::Stopped)));
    }

    #[tokio::test]
    async fn ready_waits_for_the_first_catalog() {
        let (mut handle, tx, _inbox) = handle();
        assert!(handle.snapshot().catalog.is_none());
        let load = async {
            // Let the waiter see the empty snapshot first.
            tokio::task::yield_now().await;
            tx.send_modify(|s| {
                s.catalog = Some(Arc::new(Catalog {
                    channels: vec![channel(1, "TV")],
                    loaded_at: SystemTime::UNIX_EPOCH,
                    guide: Arc::default(),
                }));
            });
        };
        let (catalog, ()) = tokio::join!(handle.ready(), load);
        assert_eq!(catalog.channels.len(), 1);
    }
}
