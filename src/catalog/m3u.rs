//! M3U playlist for VLC, mpv, Kodi and Threadfin (REFERENCE.md §2).

use std::fmt::Write as _;

use crate::model::Channel;

/// Renders the playlist; `base` is this server's URL without a trailing slash. The header points
/// players at the guide (`x-tvg-url`), whose channel ids are the `tvg-id`s here. `link` turns
/// the path of each guide and stream link into what the playlist lists (it appends a
/// signature when streams are signed; logos are not signed).
pub fn render_m3u(channels: &[Channel], base: &str, link: &dyn Fn(&str) -> String) -> String {
    let mut out = format!("#EXTM3U x-tvg-url=\"{base}{}\"\n", link("/xmltv.xml"));
    for c in channels {
        let _ = writeln!(
            out,
            "#EXTINF:-1 tvg-chno=\"{}\" tvg-id=\"{}\" tvg-name=\"{}\" tvg-logo=\"{base}/picon/{}.png\" group-title=\"{}\",{}",
            c.number,
            c.tvg_id(),
            attr(&c.name),
            c.service_ref,
            attr(&c.bouquet),
            line(&c.name),
        );
        let _ = writeln!(out, "{base}{}", link(&format!("/stream/{}", c.service_ref)));
    }
    out
}

/// Attribute values are double-quoted; a quote or line break inside would end them.
fn attr(s: &str) -> String {
    line(s).replace('"', "'")
}

fn line(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_extinf_lines_with_escaped_names() {
        let channels = vec![
            Channel {
                number: 1,
                name: "Das Erste HD".into(),
                service_ref: "1:0:19:283D:3FB:1:C00000:0:0:0:".parse().unwrap(),
                bouquet: "Favourites (TV)".into(),
            },
            Channel {
                number: 2,
                name: "Süd \"Spezial\"\nTV".into(),
                service_ref: "1:0:1:6F0B:44D:1:C00000:0:0:0:".parse().unwrap(),
                bouquet: "Regional".into(),
            },
        ];
        let m3u = render_m3u(&channels, "http://tv.local:8080", &|path| path.to_owned());
        assert_eq!(
            m3u,
            "#EXTM3U x-tvg-url=\"http://tv.local:8080/xmltv.xml\"\n\
             #EXTINF:-1 tvg-chno=\"1\" tvg-id=\"1.0.19.283D.3FB.1.C00000.0.0.0\" tvg-name=\"Das Erste HD\" \
             tvg-logo=\"http://tv.local:8080/picon/1:0:19:283D:3FB:1:C00000:0:0:0:.png\" group-title=\"Favourites (TV)\",Das Erste HD\n\
             http://tv.local:8080/stream/1:0:19:283D:3FB:1:C00000:0:0:0:\n\
             #EXTINF:-1 tvg-chno=\"2\" tvg-id=\"1.0.1.6F0B.44D.1.C00000.0.0.0\" tvg-name=\"Süd 'Spezial' TV\" \
             tvg-logo=\"http://tv.local:8080/picon/1:0:1:6F0B:44D:1:C00000:0:0:0:.png\" group-title=\"Regional\",Süd \"Spezial\" TV\n\
             http://tv.local:8080/stream/1:0:1:6F0B:44D:1:C00000:0:0:0:\n"
        );
    }

    #[test]
    fn guide_and_stream_links_go_through_link() {
        let channels = vec![Channel {
            number: 1,
            name: "Eins".into(),
            service_ref: "1:0:19:283D:3FB:1:C00000:0:0:0:".parse().unwrap(),
            bouquet: "Favourites (TV)".into(),
        }];
        let m3u = render_m3u(&channels, "http://h", &|path| format!("{path}?sig=S"));
        assert!(
            m3u.starts_with("#EXTM3U x-tvg-url=\"http://h/xmltv.xml?sig=S\"\n"),
            "{m3u}"
        );
        assert!(
            m3u.contains("tvg-logo=\"http://h/picon/1:0:19:283D:3FB:1:C00000:0:0:0:.png\""),
            "{m3u}"
        );
        assert!(
            m3u.ends_with("\nhttp://h/stream/1:0:19:283D:3FB:1:C00000:0:0:0:?sig=S\n"),
            "{m3u}"
        );
    }
}
