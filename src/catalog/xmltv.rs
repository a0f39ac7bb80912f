//! XMLTV guide for Threadfin, Kodi, Jellyfin and Plex (REFERENCE.md §2): channels with the M3U
//! `tvg-id` (or their number, for Plex's HDHomeRun guide), icons, and programmes in UTC.

use std::fmt::Write as _;

use super::guide::Guide;
use crate::model::Channel;

/// How `<channel id>` and `<programme channel>` name a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelIds {
    /// The M3U `tvg-id`: what Threadfin, Kodi and Jellyfin match on.
    TvgId,
    /// The channel number, which the HDHomeRun lineup calls `GuideNumber`: what Plex matches on.
    Number,
}

impl ChannelIds {
    fn of(self, channel: &Channel) -> String {
        match self {
            Self::TvgId => channel.tvg_id(),
            Self::Number => channel.number.to_string(),
        }
    }
}

/// Renders the guide; `base` is this server's URL without a trailing slash (for icons).
pub fn render_xmltv(channels: &[Channel], guide: &Guide, base: &str, ids: ChannelIds) -> String {
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <!DOCTYPE tv SYSTEM \"xmltv.dtd\">\n\
         <tv generator-info-name=\"xg2g\">\n",
    );
    for c in channels {
        let _ = write!(
            out,
            "  <channel id=\"{id}\">\n    <display-name>{name}</display-name>\n    <icon src=\"{icon}\"/>\n  </channel>\n",
            id = escape(&ids.of(c)),
            name = escape(&c.name),
            icon = escape(&format!("{base}/picon/{}.png", c.service_ref)),
        );
    }
    for c in channels {
        let id = escape(&ids.of(c));
        for p in guide.programmes(&c.service_ref) {
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
        let xml = render_xmltv(&channels, &guide, "http://tv.local:8080", ChannelIds::TvgId);
        assert_eq!(
            xml,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <!DOCTYPE tv SYSTEM \"xmltv.dtd\">\n\
             <tv generator-info-name=\"xg2g\">\n\
             \x20 <channel id=\"1.0.19.283D.3FB.1.C00000.0.0.0\">\n\
             \x20   <display-name>Das Erste HD</display-name>\n\
             \x20   <icon src=\"http://tv.local:8080/picon/1:0:19:283D:3FB:1:C00000:0:0:0:.png\"/>\n\
             \x20 </channel>\n\
             \x20 <channel id=\"1.0.1.6F0B.44D.1.C00000.0.0.0\">\n\
             \x20   <display-name>Bayerisches Fernsehen Süd &amp; Co</display-name>\n\
             \x20   <icon src=\"http://tv.local:8080/picon/1:0:1:6F0B:44D:1:C00000:0:0:0:.png\"/>\n\
             \x20 </channel>\n\
             \x20 <programme start=\"20231114221320 +0000\" stop=\"20231114222820 +0000\" channel=\"1.0.19.283D.3FB.1.C00000.0.0.0\">\n\
             \x20   <title>Tatort: &lt;Münchner&gt; Blut</title>\n\
             \x20   <sub-title>Folge 1</sub-title>\n\
             \x20   <desc>Kommissare &amp; Co.</desc>\n\
             \x20 </programme>\n\
             </tv>\n"
        );
        let by_number = render_xmltv(&channels, &guide, "http://tv.local:8080", ChannelIds::Number);
        assert!(by_number.contains("<channel id=\"1\">"), "{by_number}");
        assert!(by_number.contains("<channel id=\"2\">"), "{by_number}");
        assert!(by_number.contains("channel=\"1\">"), "{by_number}");
        assert!(!by_number.contains("1_0_19"), "{by_number}");
    }
}
