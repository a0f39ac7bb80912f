//! The programme guide: which receiver events belong to which channel, within the published
//! window, and loading it per channel with a bounded number of requests in flight.

use std::collections::HashMap;
use std::time::SystemTime;

use futures_util::StreamExt as _;

use crate::model::{Channel, ServiceRef};
use crate::upstream::{EpgEvent, OpenWebIf, UpstreamError};

const DAY: i64 = 86_400;

/// One programme of one channel, ready to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Programme {
    /// Unix seconds.
    pub start: i64,
    /// Unix seconds, after `start`.
    pub stop: i64,
    pub title: String,
    /// The receiver's short description, where it adds something to the title and the text.
    pub subtitle: Option<String>,
    pub description: Option<String>,
}

/// The guide of every channel, keyed by service reference.
#[derive(Debug, Default, Clone)]
pub struct Guide {
    programmes: HashMap<ServiceRef, Vec<Programme>>,
    /// When it was last loaded; `None` = never.
    pub loaded_at: Option<SystemTime>,
}

impl Guide {
    /// A channel's programmes in time order; empty when it has none.
    pub fn programmes(&self, service_ref: &ServiceRef) -> &[Programme] {
        self.programmes.get(service_ref).map_or(&[], Vec::as_slice)
    }

    /// Programmes of every channel together.
    pub fn len(&self) -> usize {
        self.programmes.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// When the last programme of any channel ends; `None` for an empty guide.
    pub fn last_stop(&self) -> Option<i64> {
        self.programmes.values().flatten().map(|p| p.stop).max()
    }

    /// Sets one channel's programmes (time-ordered, as [`programmes`] makes them).
    pub(crate) fn set(&mut self, service_ref: ServiceRef, list: Vec<Programme>) {
        if list.is_empty() {
            self.programmes.remove(&service_ref);
        } else {
            self.programmes.insert(service_ref, list);
        }
    }
}

/// The span of time the guide publishes: from now (the running programme included) `days` ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuideWindow {
    /// Unix seconds; programmes that end at or before it are gone.
    pub from: i64,
    /// Unix seconds; programmes that start at or after it are not published yet.
    pub until: i64,
}

impl GuideWindow {
    pub fn days_from(now: i64, days: u32) -> Self {
        Self {
            from: now,
            until: now.saturating_add(i64::from(days).saturating_mul(DAY)),
        }
    }

    /// The window from the system clock.
    pub fn days_from_now(days: u32) -> Self {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        Self::days_from(now, days)
    }
}

/// The programmes of `channel` among `events`: only events whose reference is the channel's
/// (receivers list linked services too), with a title and a positive duration, inside `window`;
/// sorted by start, one per start time.
pub(crate) fn programmes(channel: &ServiceRef, events: Vec<EpgEvent>, window: GuideWindow) -> Vec<Programme> {
    let mut out: Vec<Programme> = events
        .into_iter()
        .filter(|e| e.service_ref.parse::<ServiceRef>().is_ok_and(|r| &r == channel))
        .filter(|e| e.duration > 0 && !e.title.is_empty())
        .filter_map(|e| {
            let stop = e.start.checked_add(e.duration)?;
            (stop > window.from && e.start < window.until).then(|| programme(e, stop))
        })
        .collect();
    out.sort_by_key(|p| p.start);
    out.dedup_by_key(|p| p.start);
    out
}

fn programme(e: EpgEvent, stop: i64) -> Programme {
    let long = (!e.long_description.is_empty()).then_some(e.long_description);
    let short = (!e.short_description.is_empty()).then_some(e.short_description);
    let (subtitle, description) = match (short, long) {
        (Some(short), Some(long)) => {
            let adds = short != e.title && !long.contains(&short);
            (adds.then_some(short), Some(long))
        }
        (short, long) => (None, long.or(short)),
    };
    Programme {
        start: e.start,
        stop,
        title: e.title,
        subtitle,
        description,
    }
}

/// What loading the guide gave: the new guide and the channels whose guide could not be read.
#[derive(Debug)]
pub struct GuideLoad {
    pub guide: Guide,
    /// Channels whose guide failed; the new guide keeps their programmes from `previous`.
    pub failed: Vec<(ServiceRef, UpstreamError)>,
}

/// Loads the guide of every channel, at most `concurrency` channels at a time (the client bounds
/// the requests in flight as well). A channel whose guide fails keeps its programmes from
/// `previous` that are still inside the window.
pub async fn load_guide(
    client: &OpenWebIf,
    channels: &[Channel],
    window: GuideWindow,
    previous: Option<&Guide>,
    concurrency: usize,
) -> GuideLoad {
    let requests: Vec<_> = channels.iter().map(|c| fetch(client, &c.service_ref)).collect();
    let mut results = futures_util::stream::iter(requests).buffer_unordered(concurrency.max(1));
    let mut guide = Guide {
        programmes: HashMap::with_capacity(channels.len()),
        loaded_at: Some(SystemTime::now()),
    };
    let mut failed = Vec::new();
    while let Some((service_ref, result)) = results.next().await {
        let list = match result {
            Ok(events) => programmes(service_ref, events, window),
            Err(error) => {
                tracing::warn!(service = %service_ref, code = error.code(), %error, "Guide of a channel not loaded; keeping the previous one.");
                let kept = previous.map(|p| p.programmes(service_ref)).unwrap_or_default();
                failed.push((service_ref.clone(), error));
                kept.iter().filter(|p| p.stop > window.from).cloned().collect()
            }
        };
        guide.set(service_ref.clone(), list);
    }
    // Report failures in line-up order, whatever order the answers came in.
    failed.sort_by_key(|(r, _)| channels.iter().position(|c| &c.service_ref == r));
    GuideLoad { guide, failed }
}

/// One channel's events, with its reference (a named `async fn`, so the borrow is not tied to a
/// closure's lifetime).
async fn fetch<'a>(
    client: &'a OpenWebIf,
    service_ref: &'a ServiceRef,
) -> (&'a ServiceRef, Result<Vec<EpgEvent>, UpstreamError>) {
    (service_ref, client.epg_service(service_ref).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ERSTE: &str = "1:0:19:283D:3FB:1:C00000:0:0:0:";

    fn event(sref: &str, start: i64, duration: i64, title: &str) -> EpgEvent {
        EpgEvent {
            id: 1,
            service_ref: sref.to_owned(),
            start,
            duration,
            title: title.to_owned(),
            short_description: String::new(),
            long_description: String::new(),
        }
    }

    fn titles(list: &[Programme]) -> Vec<&str> {
        list.iter().map(|p| p.title.as_str()).collect()
    }

    #[test]
    fn only_the_channels_own_events_inside_the_window() {
        let channel: ServiceRef = ERSTE.parse().unwrap();
        let window = GuideWindow::days_from(10_000, 1);
        assert_eq!(window.until, 10_000 + 86_400);
        let events = vec![
            event(ERSTE, 12_000, 600, "later"),
            event(ERSTE, 9_000, 1_000, "ended at now"),
            event(ERSTE, 9_500, 1_000, "running"),
            event("1:0:19:283d:3fb:1:c00000:0:0:0:", 11_000, 600, "same ref, lower case"),
            event("1:0:19:283E:3FB:1:C00000:0:0:0:", 11_500, 600, "linked service"),
            event("not a ref", 11_600, 600, "garbage ref"),
            event(ERSTE, 12_000, 900, "duplicate start"),
            event(ERSTE, 13_000, 0, "no duration"),
            event(ERSTE, 13_100, 60, ""),
            event(ERSTE, 10_000 + 86_400 - 1, 600, "last to start"),
            event(ERSTE, 10_000 + 86_400, 600, "beyond the window"),
        ];
        let list = programmes(&channel, events, window);
        assert_eq!(
            titles(&list),
            ["running", "same ref, lower case", "later", "last to start"]
        );
        assert_eq!((list[0].start, list[0].stop), (9_500, 10_500));
    }

    #[test]
    fn descriptions_are_not_repeated() {
        let channel: ServiceRef = ERSTE.parse().unwrap();
        let with = |short: &str, long: &str| {
            let mut e = event(ERSTE, 100, 60, "Tatort");
            e.short_description = short.to_owned();
            e.long_description = long.to_owned();
            let p = programmes(&channel, vec![e], GuideWindow::days_from(0, 1)).remove(0);
            (p.subtitle, p.description)
        };
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(with("", ""), (None, None));
        assert_eq!(with("Krimi", ""), (None, some("Krimi")));
        assert_eq!(with("", "Ein Fall."), (None, some("Ein Fall.")));
        assert_eq!(with("Krimi", "Krimi. Ein Fall."), (None, some("Krimi. Ein Fall.")));
        assert_eq!(with("Tatort", "Ein Fall."), (None, some("Ein Fall.")));
        assert_eq!(
            with("Münchner Blut", "Ein Fall."),
            (some("Münchner Blut"), some("Ein Fall."))
        );
    }

    #[test]
    fn guide_counts_and_lookups() {
        let channel: ServiceRef = ERSTE.parse().unwrap();
        let mut guide = Guide::default();
        assert!(guide.is_empty());
        guide.set(
            channel.clone(),
            programmes(
                &channel,
                vec![event(ERSTE, 1, 2, "a"), event(ERSTE, 3, 2, "b")],
                GuideWindow::days_from(0, 1),
            ),
        );
        assert_eq!(guide.len(), 2);
        assert_eq!(titles(guide.programmes(&channel)), ["a", "b"]);
        assert!(
            guide
                .programmes(&"1:0:1:1:1:1:C00000:0:0:0:".parse().unwrap())
                .is_empty()
        );
    }
}
