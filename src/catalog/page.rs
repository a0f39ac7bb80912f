//! The web page: channels by bouquet with their numbers, each linked to its watch page, TV
//! channels with a thumbnail that the browser loads as it scrolls to it, radio channels with an
//! empty box of the same size so the rows line up, and what runs now and next with a progress
//! bar. `web/guide.js` keeps the guide current; without it the page still shows it, in UTC.

use std::fmt::Write as _;

use super::Snapshot;
use super::now_next::{ChannelNow, Slot, now_next};
use super::xmltv::xmltv_time;

/// Renders `GET /` as it is at `now` (Unix seconds). Before the first load it says what it is
/// waiting for. `stylesheet` and `script` are URLs relative to `/`. Links are relative, so the
/// page works behind a path prefix; `query` gives the query (`?…`, or empty) of the link to an
/// absolute path (signed stream links). `top` is markup the caller vouches for, shown under the
/// heading (the sign-out button).
pub fn render_index(
    snapshot: &Snapshot,
    stylesheet: &str,
    script: &str,
    now: i64,
    query: &dyn Fn(&str) -> String,
    top: &str,
) -> String {
    let mut body = String::new();
    match &snapshot.catalog {
        None => {
            let _ = write!(
                body,
                "<p class=\"wait\">Loading the channel list from the receiver…</p>"
            );
            if let Some(error) = &snapshot.last_error {
                let _ = write!(body, "<p class=\"error\">Last attempt failed: {}</p>", html(error));
            }
        }
        Some(catalog) => {
            let _ = write!(
                body,
                "<p>{} channels · <a href=\"playlist.m3u{}\">playlist.m3u</a> for VLC, mpv and Kodi · \
                 <a href=\"xmltv.xml{}\">xmltv.xml</a> guide</p>",
                catalog.channels.len(),
                html(&query("/playlist.m3u")),
                html(&query("/xmltv.xml")),
            );
            let guide = now_next(catalog, now);
            body.push_str("<div id=\"channels\" data-guide=\"api/v1/guide/now\">");
            for (bouquet, channels) in catalog.by_bouquet() {
                let _ = write!(body, "<section><h2>{}</h2><ol class=\"channels\">", html(bouquet));
                for c in channels {
                    let service_ref = c.service_ref.to_string();
                    let reference = html(&service_ref);
                    let name = html(&c.name);
                    let _ = write!(body, "<li value=\"{}\" data-ref=\"{reference}\">", c.number);
                    if c.is_radio() {
                        // No picture: an empty box of the same size keeps the columns aligned.
                        body.push_str("<span class=\"thumb radio\" aria-hidden=\"true\"></span> ");
                    } else {
                        // Decoded on demand through the encoder queue: lazily, as it scrolls in.
                        let _ = write!(
                            body,
                            "<img class=\"thumb\" src=\"api/v1/channels/{reference}/preview.jpg{}\" alt=\"\" \
                             width=\"80\" height=\"45\" loading=\"lazy\" decoding=\"async\"> ",
                            html(&query(&format!("/api/v1/channels/{service_ref}/preview.jpg")))
                        );
                    }
                    let _ = write!(
                        body,
                        "<span class=\"num\">{n}</span> <a href=\"watch/{reference}{watch}\">{name}</a> \
                         <a class=\"ts\" href=\"stream/{reference}{ts}\" aria-label=\"MPEG-TS stream of {name}\">TS</a>",
                        n = c.number,
                        watch = html(&query(&format!("/watch/{service_ref}"))),
                        ts = html(&query(&format!("/stream/{service_ref}"))),
                    );
                    let entry = guide.channels.iter().find(|g| g.number == c.number);
                    epg(&mut body, entry, now);
                    body.push_str("</li>");
                }
                body.push_str("</ol></section>");
            }
            body.push_str("</div>");
        }
    }
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>xg2g</title>\
         <link rel=\"stylesheet\" href=\"{stylesheet}\"><script src=\"{script}\" defer></script></head>\
         <body><h1>xg2g</h1>{top}{body}</body></html>\n",
        stylesheet = html(stylesheet),
        script = html(script),
    )
}

/// A row's guide: now (times, title, progress) and next; "No guide" where there is nothing now.
/// Every element is there even when empty, so the script only fills them in.
fn epg(body: &mut String, entry: Option<&ChannelNow>, now: i64) {
    let running = entry.and_then(|e| e.now.as_ref());
    let next = entry.and_then(|e| e.next.as_ref());
    body.push_str("<div class=\"epg\"><p class=\"now\">");
    match running {
        Some(slot) => {
            let _ = write!(
                body,
                "<span class=\"when\">{}</span> <span class=\"title\">{}</span></p>\
                 <progress max=\"{}\" value=\"{}\"></progress>",
                span(slot),
                html(&slot.title),
                slot.stop - slot.start,
                (now - slot.start).clamp(0, slot.stop - slot.start),
            );
        }
        None => {
            let missing = if next.is_some() {
                "Nothing announced"
            } else {
                "No guide"
            };
            let _ = write!(
                body,
                "<span class=\"when\"></span> <span class=\"title none\">{missing}</span></p>\
                 <progress max=\"1\" value=\"0\" hidden></progress>"
            );
        }
    }
    match next {
        Some(slot) => {
            let _ = write!(
                body,
                "<p class=\"next\">Next <span class=\"when\">{}{UTC}</span> <span class=\"title\">{}</span></p>",
                clock(slot.start),
                html(&slot.title),
            );
        }
        None => body
            .push_str("<p class=\"next\" hidden>Next <span class=\"when\"></span> <span class=\"title\"></span></p>"),
    }
    body.push_str("</div>");
}

/// `18:00–19:30 UTC`: the page does not know the reader's time zone; the script rewrites the
/// times in local time and drops the zone.
fn span(slot: &Slot) -> String {
    format!("{}–{}{UTC}", clock(slot.start), clock(slot.stop))
}

const UTC: &str = "<span class=\"tz\"> UTC</span>";

/// `HH:MM` in UTC, with the machine-readable time for the script.
fn clock(unix: i64) -> String {
    let t = xmltv_time(unix);
    format!(
        "<time datetime=\"{}-{}-{}T{}:{}Z\">{}:{}</time>",
        &t[0..4],
        &t[4..6],
        &t[6..8],
        &t[8..10],
        &t[10..12],
        &t[8..10],
        &t[10..12]
    )
}

/// Escapes text for HTML element content and double- or single-quoted attribute values. The one
/// HTML escaper of the crate: the watch page uses it too.
pub(crate) fn html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::SystemTime;

    use super::*;
    use crate::catalog::{Catalog, Guide};
    use crate::model::Channel;

    fn channel(number: u32, name: &str, reference: &str, bouquet: &str) -> Channel {
        Channel {
            number,
            name: name.into(),
            service_ref: reference.parse().unwrap(),
            bouquet: bouquet.into(),
        }
    }

    fn programme(start: i64, stop: i64, title: &str) -> crate::catalog::Programme {
        crate::catalog::Programme {
            start,
            stop,
            title: title.into(),
            subtitle: None,
            description: None,
        }
    }

    const HD: &str = "1:0:19:283D:3FB:1:C00000:0:0:0:";
    const RADIO: &str = "1:0:2:2F1C:441:1:C00000:0:0:0:";
    /// 2026-01-01 18:20:00 UTC.
    const NOW: i64 = 1_767_291_600;

    fn snapshot(channels: Vec<Channel>, guide: Guide) -> Snapshot {
        Snapshot {
            catalog: Some(Arc::new(Catalog {
                channels,
                loaded_at: SystemTime::UNIX_EPOCH,
                guide: Arc::new(guide),
            })),
            ..Snapshot::default()
        }
    }

    fn page() -> String {
        let mut guide = Guide::default();
        guide.set(
            HD.parse().unwrap(),
            vec![
                programme(NOW - 1_200, NOW + 2_400, "Tagesschau <live> & mehr"),
                programme(NOW + 2_400, NOW + 6_000, "Tatort"),
            ],
        );
        render_index(
            &snapshot(
                vec![
                    channel(1, "Das Erste HD", HD, "Favourites (TV)"),
                    channel(2, "Ö1 <Radio> & \"Kultur\"", RADIO, "R&R"),
                ],
                guide,
            ),
            "assets/xg2g.css?v=1",
            "assets/guide.js?v=2",
            NOW,
            &|_| String::new(),
            "",
        )
    }

    #[test]
    fn signed_links_carry_their_query_and_the_caller_s_markup_shows() {
        let guide = Guide::default();
        let page = render_index(
            &snapshot(vec![channel(1, "Das Erste HD", HD, "B")], guide),
            "s.css",
            "g.js",
            NOW,
            &|path| match path {
                p if p.starts_with("/stream/") || p.ends_with(".m3u") => format!("?p={}&sig=S", p.len()),
                _ => String::new(),
            },
            "<form method=\"post\" action=\"logout\"></form>",
        );
        assert!(
            page.contains("<h1>xg2g</h1><form method=\"post\" action=\"logout\"></form>"),
            "{page}"
        );
        assert!(
            page.contains("href=\"stream/1:0:19:283D:3FB:1:C00000:0:0:0:?p=39&amp;sig=S\""),
            "{page}"
        );
        assert!(page.contains("href=\"playlist.m3u?p=13&amp;sig=S\""), "{page}");
        assert!(page.contains("href=\"xmltv.xml\""), "{page}");
        assert!(
            page.contains("<a href=\"watch/1:0:19:283D:3FB:1:C00000:0:0:0:\">"),
            "{page}"
        );
    }

    #[test]
    fn links_each_channel_to_its_watch_page_and_its_stream() {
        let page = page();
        assert!(page.contains(
            "<li value=\"1\" data-ref=\"1:0:19:283D:3FB:1:C00000:0:0:0:\"><img class=\"thumb\" \
             src=\"api/v1/channels/1:0:19:283D:3FB:1:C00000:0:0:0:/preview.jpg\" \
             alt=\"\" width=\"80\" height=\"45\" loading=\"lazy\" decoding=\"async\"> \
             <span class=\"num\">1</span> <a href=\"watch/1:0:19:283D:3FB:1:C00000:0:0:0:\">Das Erste HD</a> \
             <a class=\"ts\" href=\"stream/1:0:19:283D:3FB:1:C00000:0:0:0:\" aria-label=\"MPEG-TS stream of Das Erste HD\">TS</a>"
        ));
        // A radio channel has no picture to show: an empty box keeps the rows aligned.
        assert!(page.contains(
            "<li value=\"2\" data-ref=\"1:0:2:2F1C:441:1:C00000:0:0:0:\"><span class=\"thumb radio\" aria-hidden=\"true\"></span> \
             <span class=\"num\">2</span> <a href=\"watch/1:0:2:2F1C:441:1:C00000:0:0:0:\">"
        ));
        assert_eq!(page.matches("<img ").count(), 1);
        assert!(page.contains(
            "<a href=\"watch/1:0:2:2F1C:441:1:C00000:0:0:0:\">Ö1 &lt;Radio&gt; &amp; &quot;Kultur&quot;</a>"
        ));
        assert!(page.contains("<h2>R&amp;R</h2>"));
        assert!(page.contains("<link rel=\"stylesheet\" href=\"assets/xg2g.css?v=1\">"));
        // Everything the page needs comes from xg2g: one served script, no inline styles or
        // scripts, no handlers in attributes (CSP).
        assert_eq!(page.matches("<script").count(), 1);
        assert!(page.contains("<script src=\"assets/guide.js?v=2\" defer></script>"));
        assert!(!page.contains("<style") && !page.contains("style=") && !page.contains("//"));
        assert!(!page.contains(" onclick=") && !page.contains(" onload="));
    }

    #[test]
    fn shows_now_next_and_progress_or_says_there_is_no_guide() {
        let page = page();
        assert!(page.contains("<div id=\"channels\" data-guide=\"api/v1/guide/now\">"));
        // 18:00–19:00 UTC, 20 of 60 minutes gone; next at 19:00.
        assert!(page.contains(
            "<div class=\"epg\"><p class=\"now\"><span class=\"when\"><time datetime=\"2026-01-01T18:00Z\">18:00</time>\
             –<time datetime=\"2026-01-01T19:00Z\">19:00</time><span class=\"tz\"> UTC</span></span> \
             <span class=\"title\">Tagesschau &lt;live&gt; &amp; mehr</span></p>\
             <progress max=\"3600\" value=\"1200\"></progress>\
             <p class=\"next\">Next <span class=\"when\"><time datetime=\"2026-01-01T19:00Z\">19:00</time>\
             <span class=\"tz\"> UTC</span></span> <span class=\"title\">Tatort</span></p></div>"
        ), "{page}");
        // The radio has no guide: said so, with the empty elements the script fills later.
        let radio = &page[page.find("data-ref=\"1:0:2:").unwrap()..];
        assert!(
            radio.contains("<span class=\"title none\">No guide</span></p><progress max=\"1\" value=\"0\" hidden>")
        );
        assert!(radio.contains("<p class=\"next\" hidden>"));
    }

    #[test]
    fn a_hole_in_the_guide_is_not_no_guide() {
        let mut guide = Guide::default();
        guide.set(HD.parse().unwrap(), vec![programme(NOW + 600, NOW + 4_200, "Später")]);
        let page = render_index(
            &snapshot(vec![channel(1, "Das Erste HD", HD, "B")], guide),
            "s.css",
            "g.js",
            NOW,
            &|_| String::new(),
            "",
        );
        assert!(page.contains("<span class=\"title none\">Nothing announced</span>"));
        assert!(page.contains("<span class=\"title\">Später</span>"));
    }

    #[test]
    fn says_why_it_waits() {
        let page = render_index(
            &Snapshot {
                last_error: Some("connection <refused>".into()),
                ..Snapshot::default()
            },
            "assets/xg2g.css",
            "assets/guide.js",
            NOW,
            &|_| String::new(),
            "",
        );
        assert!(page.contains("Loading the channel list"));
        assert!(page.contains("Last attempt failed: connection &lt;refused&gt;"));
    }

    #[test]
    fn escapes_every_special_character() {
        assert_eq!(html("a&b<c>d\"e'f"), "a&amp;b&lt;c&gt;d&quot;e&#39;f");
    }
}
