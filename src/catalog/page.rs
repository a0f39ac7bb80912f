//! The web page: channels by bouquet with their numbers.

use std::fmt::Write as _;

use super::Snapshot;

/// Renders `GET /`. Before the first load it says what it is waiting for.
pub fn render_index(snapshot: &Snapshot) -> String {
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
                    let _ = write!(
                        body,
                        "<li value=\"{n}\"><span class=\"num\">{n}</span> <a href=\"stream/{r}\">{name}</a></li>",
                        n = c.number,
                        r = c.service_ref,
                        name = html(&c.name)
                    );
                }
                body.push_str("</ol></section>");
            }
        }
    }
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>xg2g</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:48rem;margin:2rem auto;padding:0 1rem}}\
         ol{{list-style:none;padding:0}}li{{padding:.3rem 0;border-bottom:1px solid #ddd}}\
         .num{{display:inline-block;min-width:2.5rem;color:#666}}.error{{color:#b00}}</style></head>\
         <body><h1>xg2g</h1>{body}</body></html>\n"
    )
}

fn html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
