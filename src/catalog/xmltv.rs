//! XMLTV guide for Threadfin, Kodi, Jellyfin and Plex (REFERENCE.md §2): channels with the M3U
//! `tvg-id` (or an id made of their number, for Plex's HDHomeRun guide), their name and number as
//! display names, icons, and programmes in UTC. Every id has the `name.domain` shape the XMLTV
//! tools require, and every channel has programmes: one without a guide gets placeholders.

use std::fmt::Write as _;

use super::guide::Guide;
use crate::model::Channel;

/// How `<channel id>` and `<programme channel>` name a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelIds {
    /// The M3U `tvg-id`: what Threadfin, Kodi and Jellyfin match on.
    TvgId,
    /// `<number>.xg2g`, from the number the HDHomeRun lineup calls `GuideNumber`, for Plex's
    /// tuner guide (the number itself is also a display name, which is what Plex matches on).
    Number,
}

/// The domain part of number ids: XMLTV ids are `name.domain` (RFC 2838), and `tv_validate_file`
/// refuses a bare number.
pub const NUMBER_ID_DOMAIN: &str = "xg2g";

impl ChannelIds {
    fn of(self, channel: &Channel) -> String {
        match self {
            Self::TvgId => channel.tvg_id(),
            Self::Number => format!("{}.{NUMBER_ID_DOMAIN}", channel.number),
        }
    }
}

/// How long each placeholder programme of a channel without a guide lasts.
const PLACEHOLDER_SECS: i64 = 6 * 3_600;
/// How far ahead placeholders reach when the guide has nothing that ends later.
const PLACEHOLDER_MIN_SPAN: i64 = 86_400;
/// How far ahead placeholders reach at most: a receiver event with a bogus length (years) must
/// not make every channel without a guide render placeholders up to it.
const PLACEHOLDER_MAX_SPAN: i64 = 31 * 86_400;

/// Renders the guide; `base` is this server's URL without a trailing slash (for icons), `now`
/// the current Unix time. A channel without programmes gets placeholders titled with its name,
/// in 6-hour blocks from the block holding `now` to the end of the guide (at least a day, at
/// most 31 days):
/// media servers hide channels without guide data, and XMLTV validators refuse them.
pub fn render_xmltv(channels: &[Channel], guide: &Guide, base: &str, ids: ChannelIds, now: i64) -> String {
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <!DOCTYPE tv SYSTEM \"xmltv.dtd\">\n\
         <tv generator-info-name=\"xg2g\">\n",
    );
    for c in channels {
        let _ = write!(
            out,
            "  <channel id=\"{id}\">\n    <display-name>{name}</display-name>\n    <display-name>{number}</display-name>\n    \
             <icon src=\"{icon}\"/>\n  </channel>\n",
            id = escape(&ids.of(c)),
            name = escape(&c.name),
            number = c.number,
            icon = escape(&format!("{base}/picon/{}.png", c.service_ref)),
        );
    }
    let placeholders_until = guide
        .last_stop()
        .unwrap_or(now)
        .max(now.saturating_add(PLACEHOLDER_MIN_SPAN))
        .min(now.saturating_add(PLACEHOLDER_MAX_SPAN));
    for c in channels {
        let id = escape(&ids.of(c));
        let own = guide.programmes(&c.service_ref);
        if own.is_empty() {
            let mut start = now - now.rem_euclid(PLACEHOLDER_SECS);
            while start < placeholders_until {
                let stop = start + PLACEHOLDER_SECS;
                let _ = writeln!(
                    out,
                    "  <programme start=\"{}\" stop=\"{}\" channel=\"{id}\">\n    <title>{}</title>\n  </programme>",
                    xmltv_time(start),
                    xmltv_time(stop),
                    escape(&c.name)
                );
                start = stop;
            }
            continue;
        }
        for p in own {
            let _ = writeln!(
                out,
                "  <programme start=\"{}\" stop=\"{}\" channel=\"{id}\">",
                xmltv_time(p.start),
                xmltv_time(p.stop)
            );
            let _ = writeln!(out, "    <title>{}</title>", escape(&p.title));
            if let Some(subtitle) = &p.subtitle {
                let _ = writeln!(out, "    <sub-title>{}</sub-title>", escape(subtitle));
            }
            if let Some(desc) = &p.description {
                let _ = writeln!(out, "    <desc>{}</desc>", escape(desc));
            }
            out.push_str("  </programme>\n");
        }
    }
    out.push_str("</tv>\n");
    out
}

/// Unix seconds as XMLTV's `YYYYMMDDHHMMSS +0000`.
pub(crate) fn xmltv_time(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02} +0000",
        secs / 3_600,
        secs % 3_600 / 60,
        secs % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Text and attribute values: markup characters escaped, characters XML 1.0 forbids (most C0
/// controls, U+FFFE, U+FFFF) dropped, C1 controls dropped too (validators read them as
/// mis-encoded Windows-1252).
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\n' | '\t' => out.push(c),
            '\u{FFFE}' | '\u{FFFF}' => {}
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::guide::{GuideWindow, programmes};
    use super::*;
    use crate::upstream::EpgEvent;

    fn channel(number: u32, name: &str, reference: &str) -> Channel {
        Channel {
            number,
            name: name.to_owned(),
            service_ref: reference.parse().unwrap(),
            bouquet: "Favourites (TV)".to_owned(),
        }
    }

    #[test]
    fn times_are_utc_with_offset() {
        assert_eq!(xmltv_time(0), "19700101000000 +0000");
        assert_eq!(xmltv_time(1_700_000_000), "20231114221320 +0000");
        assert_eq!(
            xmltv_time(951_782_400),
            "20000229000000 +0000",
            "leap day of a century leap year"
        );
        assert_eq!(
            xmltv_time(4_107_542_399),
            "21000228235959 +0000",
            "2100 is no leap year"
        );
        assert_eq!(xmltv_time(4_107_542_400), "21000301000000 +0000");
        assert_eq!(xmltv_time(-1), "19691231235959 +0000");
    }

    #[test]
    fn escapes_markup_and_drops_what_xml_forbids() {
        assert_eq!(
            escape("Tom & Jerry <live> \"Süd\"\n\u{1}\u{86}x\u{FFFF}"),
            "Tom &amp; Jerry &lt;live&gt; &quot;Süd&quot;\nx"
        );
    }

    #[test]
    fn renders_channels_then_programmes() {
        let channels = [
            channel(1, "Das Erste HD", "1:0:19:283D:3FB:1:C00000:0:0:0:"),
            channel(2, "Bayerisches Fernsehen Süd & Co", "1:0:1:6F0B:44D:1:C00000:0:0:0:"),
        ];
        let mut guide = Guide::default();
        let event = EpgEvent {
            id: 1,
            service_ref: "1:0:19:283D:3FB:1:C00000:0:0:0:".to_owned(),
            start: 1_700_000_000,
            duration: 900,
            title: "Tatort: <Münchner> Blut".to_owned(),
            short_description: "Folge 1".to_owned(),
            long_description: "Kommissare & Co.".to_owned(),
        };
        let list = programmes(
            &channels[0].service_ref,
            vec![event],
            GuideWindow::days_from(1_700_000_000, 1),
        );
        guide.set(channels[0].service_ref.clone(), list);
        let xml = render_xmltv(
            &channels[..1],
            &guide,
            "http://tv.local:8080",
            ChannelIds::TvgId,
            1_700_000_000,
        );
        assert_eq!(
            xml,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <!DOCTYPE tv SYSTEM \"xmltv.dtd\">\n\
             <tv generator-info-name=\"xg2g\">\n\
             \x20 <channel id=\"1.0.19.283D.3FB.1.C00000.0.0.0\">\n\
             \x20   <display-name>Das Erste HD</display-name>\n\
             \x20   <display-name>1</display-name>\n\
             \x20   <icon src=\"http://tv.local:8080/picon/1:0:19:283D:3FB:1:C00000:0:0:0:.png\"/>\n\
             \x20 </channel>\n\
             \x20 <programme start=\"20231114221320 +0000\" stop=\"20231114222820 +0000\" channel=\"1.0.19.283D.3FB.1.C00000.0.0.0\">\n\
             \x20   <title>Tatort: &lt;Münchner&gt; Blut</title>\n\
             \x20   <sub-title>Folge 1</sub-title>\n\
             \x20   <desc>Kommissare &amp; Co.</desc>\n\
             \x20 </programme>\n\
             </tv>\n"
        );
        let by_number = render_xmltv(
            &channels,
            &guide,
            "http://tv.local:8080",
            ChannelIds::Number,
            1_700_000_000,
        );
        assert!(by_number.contains("<channel id=\"1.xg2g\">"), "{by_number}");
        assert!(by_number.contains("<channel id=\"2.xg2g\">"), "{by_number}");
        assert!(by_number.contains("channel=\"1.xg2g\">"), "{by_number}");
        assert!(by_number.contains(
            "<display-name>Bayerisches Fernsehen Süd &amp; Co</display-name>\n    <display-name>2</display-name>"
        ));
        assert!(!by_number.contains("1_0_19"), "{by_number}");
    }

    #[test]
    fn a_channel_without_a_guide_gets_placeholders_to_the_end_of_the_guide() {
        let channels = [
            channel(1, "Das Erste HD", "1:0:19:283D:3FB:1:C00000:0:0:0:"),
            channel(2, "Ö1 & Co", "1:0:2:2F1C:441:1:C00000:0:0:0:"),
        ];
        let now = 1_700_000_000; // 2023-11-14 22:13:20 UTC
        let event = |start: i64| EpgEvent {
            id: 1,
            service_ref: "1:0:19:283D:3FB:1:C00000:0:0:0:".to_owned(),
            start,
            duration: 3_600,
            title: "Tagesschau".to_owned(),
            short_description: String::new(),
            long_description: String::new(),
        };
        let mut guide = Guide::default();
        let list = programmes(
            &channels[0].service_ref,
            vec![event(now), event(now + 2 * 86_400)],
            GuideWindow::days_from(now, 3),
        );
        guide.set(channels[0].service_ref.clone(), list);
        let xml = render_xmltv(&channels, &guide, "http://h", ChannelIds::TvgId, now);
        let placeholders: Vec<&str> = xml
            .lines()
            .filter(|l| l.contains("channel=\"1.0.2.2F1C.441.1.C00000.0.0.0\""))
            .collect();
        // From the block holding now (18:00) to past the guide's last stop (2023-11-16 23:13):
        // 2023-11-14 18:00 … 2023-11-17 00:00, nine blocks of six hours.
        assert_eq!(placeholders.len(), 9, "{xml}");
        assert_eq!(
            placeholders[0],
            "  <programme start=\"20231114180000 +0000\" stop=\"20231115000000 +0000\" channel=\"1.0.2.2F1C.441.1.C00000.0.0.0\">"
        );
        assert!(placeholders[8].contains("stop=\"20231117000000 +0000\""));
        assert_eq!(xml.matches("<title>Ö1 &amp; Co</title>").count(), 9);
        // The channel with a guide keeps exactly its own programmes.
        assert_eq!(xml.matches("<title>Tagesschau</title>").count(), 2);

        // With no guide at all, placeholders still cover a day.
        let empty = render_xmltv(&channels, &Guide::default(), "http://h", ChannelIds::TvgId, now);
        assert_eq!(empty.matches("<programme ").count(), 2 * 5, "{empty}");
    }

    /// Found by the `playlists` fuzz target: one event of a bogus length (here ~35,000 years)
    /// made the placeholders of every other channel run up to its end, which never came.
    #[test]
    fn placeholders_stop_a_month_ahead_whatever_the_guide_claims() {
        let channels = [
            channel(1, "Das Erste HD", "1:0:19:283D:3FB:1:C00000:0:0:0:"),
            channel(2, "Ö1", "1:0:2:2F1C:441:1:C00000:0:0:0:"),
        ];
        let now = 1_700_000_000;
        let event = EpgEvent {
            id: 1,
            service_ref: "1:0:19:283D:3FB:1:C00000:0:0:0:".to_owned(),
            start: now,
            duration: 1 << 40,
            title: "Endlos".to_owned(),
            short_description: String::new(),
            long_description: String::new(),
        };
        let mut guide = Guide::default();
        let list = programmes(&channels[0].service_ref, vec![event], GuideWindow::days_from(now, 7));
        guide.set(channels[0].service_ref.clone(), list);
        let xml = render_xmltv(&channels, &guide, "http://h", ChannelIds::TvgId, now);
        // From the block holding now to 31 days ahead: 31 * 4 blocks and the one begun.
        assert_eq!(xml.matches("<title>Ö1</title>").count(), 31 * 4 + 1, "{xml}");
    }
}
