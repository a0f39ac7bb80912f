//! The web page: channels by bouquet with their numbers, each linked to its watch page, TV
//! channels with a thumbnail that the browser loads as it scrolls to it.

use std::fmt::Write as _;

use super::Snapshot;

/// Renders `GET /`. Before the first load it says what it is waiting for. `stylesheet` is the
/// stylesheet's URL relative to `/`. Links are relative, so the page works behind a path prefix.
pub fn render_index(snapshot: &Snapshot, stylesheet: &str) -> String {
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
                "<p>{} channels · <a href=\"playlist.m3u\">playlist.m3u</a> for VLC, mpv and Kodi · \
                 <a href=\"xmltv.xml\">xmltv.xml</a> guide</p>",
                catalog.channels.len()
            );
            for (bouquet, channels) in catalog.by_bouquet() {
                let _ = write!(body, "<section><h2>{}</h2><ol>", html(bouquet));
                for c in channels {
                    let reference = html(&c.service_ref.to_string());
                    let name = html(&c.name);
                    let _ = write!(body, "<li value=\"{}\">", c.number);
                    if !c.is_radio() {
                        // Decoded on demand through the encoder queue: lazily, as it scrolls in.
                        let _ = write!(
                            body,
                            "<img class=\"thumb\" src=\"api/v1/channels/{reference}/preview.jpg\" alt=\"\" \
                             width=\"80\" height=\"45\" loading=\"lazy\" decoding=\"async\"> "
                        );
                    }
                    let _ = write!(
                        body,
                        "<span class=\"num\">{n}</span> <a href=\"watch/{reference}\">{name}</a> \
                         <a class=\"ts\" href=\"stream/{reference}\" aria-label=\"MPEG-TS stream of {name}\">TS</a></li>",
                        n = c.number,
                    );
                }
                body.push_str("</ol></section>");
            }
        }
    }
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>xg2g</title>\
         <link rel=\"stylesheet\" href=\"{stylesheet}\"></head>\
         <body><h1>xg2g</h1>{body}</body></html>\n",
        stylesheet = html(stylesheet)
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

    fn snapshot(channels: Vec<Channel>) -> Snapshot {
        Snapshot {
            catalog: Some(Arc::new(Catalog {
                channels,
                loaded_at: SystemTime::UNIX_EPOCH,
                guide: Arc::new(Guide::default()),
            })),
            ..Snapshot::default()
        }
    }

    #[test]
    fn links_each_channel_to_its_watch_page_and_its_stream() {
        let page = render_index(
            &snapshot(vec![
                channel(1, "Das Erste HD", "1:0:19:283D:3FB:1:C00000:0:0:0:", "Favourites (TV)"),
                channel(2, "Ö1 <Radio> & \"Kultur\"", "1:0:2:2F1C:441:1:C00000:0:0:0:", "R&R"),
            ]),
            "assets/xg2g.css?v=1",
        );
        assert!(page.contains(
            "<li value=\"1\"><img class=\"thumb\" src=\"api/v1/channels/1:0:19:283D:3FB:1:C00000:0:0:0:/preview.jpg\" \
             alt=\"\" width=\"80\" height=\"45\" loading=\"lazy\" decoding=\"async\"> \
             <span class=\"num\">1</span> <a href=\"watch/1:0:19:283D:3FB:1:C00000:0:0:0:\">Das Erste HD</a> \
             <a class=\"ts\" href=\"stream/1:0:19:283D:3FB:1:C00000:0:0:0:\" aria-label=\"MPEG-TS stream of Das Erste HD\">TS</a></li>"
        ));
        // A radio channel has no picture to show.
        assert!(page.contains(
            "<li value=\"2\"><span class=\"num\">2</span> <a href=\"watch/1:0:2:2F1C:441:1:C00000:0:0:0:\">"
        ));
        assert_eq!(page.matches("<img ").count(), 1);
        assert!(page.contains(
            "<a href=\"watch/1:0:2:2F1C:441:1:C00000:0:0:0:\">Ö1 &lt;Radio&gt; &amp; &quot;Kultur&quot;</a>"
        ));
        assert!(page.contains("<h2>R&amp;R</h2>"));
        assert!(page.contains("<link rel=\"stylesheet\" href=\"assets/xg2g.css?v=1\">"));
        // Everything the page needs comes from xg2g: no inline styles or scripts (CSP).
        assert!(!page.contains("<style") && !page.contains("<script") && !page.contains("//"));
    }

    #[test]
    fn says_why_it_waits() {
        let page = render_index(
            &Snapshot {
                last_error: Some("connection <refused>".into()),
                ..Snapshot::default()
            },
            "assets/xg2g.css",
        );
        assert!(page.contains("Loading the channel list"));
        assert!(page.contains("Last attempt failed: connection &lt;refused&gt;"));
    }

    #[test]
    fn escapes_every_special_character() {
        assert_eq!(html("a&b<c>d\"e'f"), "a&amp;b&lt;c&gt;d&quot;e&#39;f");
    }
}
