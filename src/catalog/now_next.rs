//! What runs now and what comes next on every channel, for the page and its script
//! (`GET /api/v1/guide/now`). Pure: a catalog and a time in, serialisable values out.

use serde::Serialize;

use super::Catalog;
use super::guide::Programme;

/// One programme as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Slot {
    pub title: String,
    /// Unix seconds.
    pub start: i64,
    /// Unix seconds.
    pub stop: i64,
}

/// One channel's now and next. `now` is `None` in a hole of the guide (or without a guide);
/// `next` is the first programme that starts after `now` ends (or after the time asked for).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChannelNow {
    #[serde(rename = "ref")]
    pub service_ref: String,
    pub number: u32,
    pub name: String,
    pub radio: bool,
    pub now: Option<Slot>,
    pub next: Option<Slot>,
}

/// The answer of `GET /api/v1/guide/now`: the server's time and every channel in catalog order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NowNext {
    /// Unix seconds the answer was computed for; the script measures progress against its own
    /// clock corrected by this.
    pub time: i64,
    pub channels: Vec<ChannelNow>,
}

fn slot(p: &Programme) -> Slot {
    Slot {
        title: p.title.clone(),
        start: p.start,
        stop: p.stop,
    }
}

/// The programme running at `time` and the one after it, for every channel.
pub fn now_next(catalog: &Catalog, time: i64) -> NowNext {
    let channels = catalog
        .channels
        .iter()
        .map(|c| {
            let list = catalog.guide.programmes(&c.service_ref);
            let now = list.iter().find(|p| p.start <= time && time < p.stop);
            let after = now.map_or(time, |p| p.stop);
            let next = list.iter().find(|p| p.start >= after);
            ChannelNow {
                service_ref: c.service_ref.to_string(),
                number: c.number,
                name: c.name.clone(),
                radio: c.is_radio(),
                now: now.map(slot),
                next: next.map(slot),
            }
        })
        .collect();
    NowNext { time, channels }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::SystemTime;

    use super::*;
    use crate::catalog::Guide;
    use crate::model::Channel;

    fn programme(start: i64, stop: i64, title: &str) -> Programme {
        Programme {
            start,
            stop,
            title: title.to_owned(),
            subtitle: None,
            description: None,
        }
    }

    fn catalog() -> Catalog {
        let channel = |number: u32, name: &str, reference: &str| Channel {
            number,
            name: name.to_owned(),
            service_ref: reference.parse().unwrap(),
            bouquet: "B".to_owned(),
        };
        let channels = vec![
            channel(1, "Das Erste HD", "1:0:19:283D:3FB:1:C00000:0:0:0:"),
            channel(2, "Ö1", "1:0:2:2F1C:441:1:C00000:0:0:0:"),
        ];
        let mut guide = Guide::default();
        // 1000–2000 News, a hole 2000–2500, 2500–4000 Film, 4000–5000 Late.
        guide.set(
            channels[0].service_ref.clone(),
            vec![
                programme(1000, 2000, "News"),
                programme(2500, 4000, "Film"),
                programme(4000, 5000, "Late"),
            ],
        );
        Catalog {
            channels,
            loaded_at: SystemTime::UNIX_EPOCH,
            guide: Arc::new(guide),
        }
    }

    fn titles(answer: &NowNext) -> (Option<String>, Option<String>) {
        let c = &answer.channels[0];
        (
            c.now.as_ref().map(|s| s.title.clone()),
            c.next.as_ref().map(|s| s.title.clone()),
        )
    }

    #[test]
    fn running_programme_and_the_one_after() {
        let catalog = catalog();
        let at = |t| titles(&now_next(&catalog, t));
        assert_eq!(at(1000), (Some("News".into()), Some("Film".into())), "start is inside");
        assert_eq!(at(1999), (Some("News".into()), Some("Film".into())));
        assert_eq!(at(2000), (None, Some("Film".into())), "a hole: nothing now");
        assert_eq!(at(3000), (Some("Film".into()), Some("Late".into())));
        assert_eq!(at(4000), (Some("Late".into()), None), "stop is outside");
        assert_eq!(at(9000), (None, None), "past the guide");
        assert_eq!(at(0), (None, Some("News".into())), "before the guide");
    }

    #[test]
    fn channels_without_a_guide_are_listed_empty() {
        let answer = now_next(&catalog(), 3000);
        assert_eq!(answer.time, 3000);
        let radio = &answer.channels[1];
        assert_eq!(
            (radio.number, radio.radio, &radio.now, &radio.next),
            (2, true, &None, &None)
        );
        let value = serde_json::to_value(&answer).unwrap();
        assert_eq!(
            value["channels"][0],
            serde_json::json!({
                "ref": "1:0:19:283D:3FB:1:C00000:0:0:0:", "number": 1, "name": "Das Erste HD", "radio": false,
                "now": {"title": "Film", "start": 2500, "stop": 4000},
                "next": {"title": "Late", "start": 4000, "stop": 5000},
            })
        );
        assert_eq!(value["channels"][1]["now"], serde_json::Value::Null);
    }
}
