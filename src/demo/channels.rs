//! The demo receiver's line-up: bouquets (one nested in another, as Enigma2 allows), channels,
//! PIDs and a made-up programme guide with gaps, and none at all for one radio channel.

use super::media::MediaKind;

pub(crate) struct DemoBouquet {
    pub reference: &'static str,
    pub name: &'static str,
    pub entries: &'static [Entry],
}

/// One line of a bouquet, as `getservices` lists it.
pub(crate) enum Entry {
    Marker {
        reference: &'static str,
        name: &'static str,
    },
    Directory {
        reference: &'static str,
        name: &'static str,
    },
    Channel(DemoChannel),
}

pub(crate) struct DemoChannel {
    pub name: &'static str,
    pub reference: &'static str,
    pub media: MediaKind,
    /// Plays only through the stream relay; the plain stream port sends it scrambled.
    pub whitelisted: bool,
    pub pmt_pid: u16,
    /// 0 where the channel has no such stream.
    pub video_pid: u16,
    pub mp2_pid: u16,
    /// AC-3 or E-AC-3.
    pub ac3_pid: u16,
    /// Whether the receiver has guide events for it (small radio stations often have none).
    pub guide: bool,
}

/// A bouquet listed inside "Favourites (TV)", not in `/api/bouquets`.
const HD_KANAELE: &str = "1:7:1:0:0:0:0:0:0:0:FROM BOUQUET \"subbouquet.hd.tv\" ORDER BY bouquet";

/// The bouquets `/api/bouquets` lists.
pub(crate) const BOUQUETS: &[DemoBouquet] = &[
    DemoBouquet {
        reference: "1:7:1:0:0:0:0:0:0:0:FROM BOUQUET \"userbouquet.favourites.tv\" ORDER BY bouquet",
        name: "Favourites (TV)",
        entries: &[
            Entry::Marker {
                reference: "1:64:1:0:0:0:0:0:0:0::Öffentlich-Rechtliche",
                name: "Öffentlich-Rechtliche",
            },
            Entry::Channel(DemoChannel {
                name: "Das Erste HD",
                reference: "1:0:19:283D:3FB:1:C00000:0:0:0:",
                media: MediaKind::Hd,
                whitelisted: false,
                pmt_pid: 0x64,
                video_pid: 0x65,
                mp2_pid: 0x66,
                ac3_pid: 0x6A,
                guide: true,
            }),
            Entry::Channel(DemoChannel {
                name: "Bayerisches Fernsehen Süd",
                reference: "1:0:1:6F0B:44D:1:C00000:0:0:0:",
                media: MediaKind::Sd,
                whitelisted: false,
                pmt_pid: 0x1F4,
                video_pid: 0x1FF,
                mp2_pid: 0x200,
                ac3_pid: 0x203,
                guide: true,
            }),
            Entry::Directory {
                reference: HD_KANAELE,
                name: "HD Kanäle",
            },
            Entry::Directory {
                reference: "1:7:1:0:0:0:0:0:0:0:FROM BOUQUET \"userbouquet.archiv.tv\" ORDER BY bouquet",
                name: "Archiv",
            },
        ],
    },
    DemoBouquet {
        reference: "1:7:1:0:0:0:0:0:0:0:FROM BOUQUET \"userbouquet.regional.tv\" ORDER BY bouquet",
        name: "Regional & Radio",
        entries: &[
            Entry::Channel(DemoChannel {
                name: "Münchner Lokalfernsehen",
                reference: "1:0:1:2EE3:441:1:C00000:0:0:0:",
                media: MediaKind::Sd,
                whitelisted: false,
                pmt_pid: 0x100,
                video_pid: 0x101,
                mp2_pid: 0x102,
                ac3_pid: 0x106,
                guide: true,
            }),
            Entry::Marker {
                reference: "1:64:2:0:0:0:0:0:0:0::Hörfunk",
                name: "Hörfunk",
            },
            Entry::Channel(DemoChannel {
                name: "Ö1",
                reference: "1:0:2:2F1C:441:1:C00000:0:0:0:",
                media: MediaKind::Radio,
                whitelisted: false,
                pmt_pid: 0x5DC,
                video_pid: 0,
                mp2_pid: 0x5DD,
                ac3_pid: 0,
                guide: false,
            }),
        ],
    },
];

/// Bouquets only reachable through a directory entry of another.
pub(crate) const NESTED: &[DemoBouquet] = &[DemoBouquet {
    reference: HD_KANAELE,
    name: "HD Kanäle",
    entries: &[Entry::Channel(DemoChannel {
        name: "ORF1 HD",
        reference: "1:0:19:132F:3EF:1:C00000:0:0:0:",
        // E-AC-3 5.1 is its only sound, as on some HD channels: no MP2 to fall back on.
        media: MediaKind::HdEac3,
        whitelisted: true,
        pmt_pid: 0x44C,
        video_pid: 0x4B0,
        mp2_pid: 0,
        ac3_pid: 0x4B3,
        guide: true,
    })],
}];

/// A listed or nested bouquet by reference.
pub(crate) fn bouquet(reference: &str) -> Option<&'static DemoBouquet> {
    BOUQUETS.iter().chain(NESTED).find(|b| b.reference == reference)
}

/// Every channel once, in the order a receiver's bouquet view shows them: a nested bouquet's
/// channels where its directory entry is.
pub(crate) fn channels() -> impl Iterator<Item = &'static DemoChannel> {
    fn walk(entries: &'static [Entry], out: &mut Vec<&'static DemoChannel>) {
        for entry in entries {
            match entry {
                Entry::Channel(c) if !out.iter().any(|o| o.reference == c.reference) => out.push(c),
                Entry::Directory { reference, .. } => {
                    if let Some(nested) = NESTED.iter().find(|b| b.reference == *reference) {
                        walk(nested.entries, out);
                    }
                }
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    for bouquet in BOUQUETS {
        walk(bouquet.entries, &mut out);
    }
    out.into_iter()
}

/// A guide event, in the shape of `/api/epgservice`.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Event {
    pub id: u32,
    pub title: String,
    pub shortdesc: String,
    pub longdesc: String,
    pub begin_timestamp: i64,
    pub duration_sec: i64,
    pub sref: String,
}

const SHOWS: &[(&str, &str)] = &[
    ("Tagesschau", "Nachrichten aus aller Welt"),
    ("Tatort: Münchner Blut", "Kriminalfilm, Deutschland 2025"),
    ("Sportschau", "Fußball-Bundesliga, Zusammenfassung"),
    ("Wetter vor acht", "Die Aussichten für Österreich und Süddeutschland"),
    ("Musik für Genießer", "Klassik am Abend"),
    ("Quarks", "Wissenschaft verständlich"),
];

/// Events of one channel from one hour before `now` for `days` days, in 30- and 60-minute slots,
/// with a half-hour hole now and then, at different times per channel (a receiver's guide has
/// holes); none for a channel without a guide.
pub(crate) fn events(channel: &DemoChannel, channel_index: usize, now: i64, days: u32) -> Vec<Event> {
    if !channel.guide {
        return Vec::new();
    }
    let start = now - now.rem_euclid(3_600) - 3_600;
    let end = now + i64::from(days) * 86_400;
    let mut out = Vec::new();
    let mut t = start;
    let mut slot = (start / 1_800) as usize;
    while t < end {
        let (title, desc) = SHOWS[(slot + channel_index) % SHOWS.len()];
        let duration = if slot.is_multiple_of(3) { 3_600 } else { 1_800 };
        if (slot + channel_index) % 7 == 5 {
            // A hole in the guide: nothing announced for this half hour.
            t += 1_800;
            slot += 1;
            continue;
        }
        out.push(Event {
            id: ((t / 60) % 65_536) as u32,
            title: title.to_owned(),
            shortdesc: desc.to_owned(),
            longdesc: format!("{title}: {desc}. Eine Sendung auf {}.", channel.name),
            begin_timestamp: t,
            duration_sec: duration,
            sref: channel.reference.to_owned(),
        });
        t += duration;
        slot += duration as usize / 1_800;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_channels_stand_where_their_bouquet_entry_is() {
        let names: Vec<&str> = channels().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "Das Erste HD",
                "Bayerisches Fernsehen Süd",
                "ORF1 HD",
                "Münchner Lokalfernsehen",
                "Ö1"
            ]
        );
        assert_eq!(bouquet(HD_KANAELE).map(|b| b.name), Some("HD Kanäle"));
        assert!(
            BOUQUETS.iter().all(|b| b.reference != HD_KANAELE),
            "not listed at the top"
        );
    }

    #[test]
    fn the_guide_has_holes_and_the_radio_none() {
        let now = 1_767_291_600;
        let radio = channels().find(|c| c.media == MediaKind::Radio).unwrap();
        assert!(events(radio, 4, now, 1).is_empty());
        let tv = channels().next().unwrap();
        let list = events(tv, 0, now, 1);
        assert!(list.len() > 20, "{}", list.len());
        let holes = list
            .windows(2)
            .filter(|w| w[0].begin_timestamp + w[0].duration_sec < w[1].begin_timestamp)
            .count();
        assert!(holes >= 3, "{holes} holes in a day");
        assert!(
            list.windows(2)
                .all(|w| w[0].begin_timestamp + w[0].duration_sec <= w[1].begin_timestamp)
        );
    }
}
