//! What xg2g writes for players: M3U, XMLTV and HLS playlists, parsed back by independent
//! parsers.

use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::catalog::{ChannelIds, Guide, GuideWindow, render_m3u, render_xmltv};
use crate::model::Channel;
use crate::session::{HlsState, Segment};

use super::Input;

/// Playlists: the HLS media and master playlists parse with `m3u8-rs` to what was rendered
/// (sequence numbers, durations, URIs, discontinuities, the end); the M3U keeps two lines per
/// channel whatever the names; the XMLTV parses as XML and keeps names and titles.
pub fn playlists(data: &[u8]) {
    let mut input = Input(data);
    hls(&mut input);
    let channels: Vec<Channel> = (0..usize::from(input.u8() % 6))
        .map(|i| Channel {
            number: u32::try_from(i).unwrap_or_default() + 1,
            name: input.text(),
            service_ref: format!(
                "1:0:{:X}:{:X}:3FB:1:C00000:0:0:0:",
                1 + u32::from(input.u8()),
                input.u16()
            )
            .parse()
            .expect("a valid reference"),
            bouquet: input.text(),
        })
        .collect();
    let m3u = render_m3u(&channels, "http://tv.local:8080", &|path| path.to_owned());
    assert_eq!(m3u.lines().count(), 1 + 2 * channels.len(), "{m3u}");
    for (c, pair) in channels.iter().zip(m3u.lines().skip(1).collect::<Vec<_>>().chunks(2)) {
        assert!(pair[0].starts_with("#EXTINF:-1 "));
        assert_eq!(pair[1], format!("http://tv.local:8080/stream/{}", c.service_ref));
    }

    let now = 1_700_000_000 + i64::from(input.u32());
    let mut guide = Guide::default();
    if let Some(first) = channels.first() {
        let events = (0..usize::from(input.u8() % 8))
            .map(|i| crate::upstream::EpgEvent {
                id: i as u64,
                service_ref: first.service_ref.to_string(),
                start: now + i64::from(input.u16() as i16) * 60,
                duration: input.i64(),
                title: input.text(),
                short_description: input.text(),
                long_description: input.text(),
            })
            .collect();
        let list = crate::catalog::programmes(&first.service_ref, events, GuideWindow::days_from(now, 7));
        guide.set(first.service_ref.clone(), list);
    }
    let ids = if input.u8() & 1 == 0 {
        ChannelIds::TvgId
    } else {
        ChannelIds::Number
    };
    let xml = render_xmltv(&channels, &guide, "http://tv.local:8080", ids, now);
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    let doc =
        roxmltree::Document::parse_with_options(&xml, options).unwrap_or_else(|e| panic!("XMLTV parses: {e}\n{xml}"));
    let names: Vec<String> = doc
        .descendants()
        .filter(|n| n.has_tag_name("channel"))
        .map(|n| {
            n.children()
                .find(|c| c.has_tag_name("display-name"))
                .and_then(|c| c.text())
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    let expected: Vec<String> = channels.iter().map(|c| xml_text(&c.name)).collect();
    assert_eq!(names, expected);
    for c in &channels {
        let programmes = doc
            .descendants()
            .filter(|n| n.has_tag_name("programme") && n.attribute("channel").is_some())
            .filter(|n| {
                let id = match ids {
                    ChannelIds::TvgId => c.tvg_id(),
                    ChannelIds::Number => format!("{}.xg2g", c.number),
                };
                n.attribute("channel") == Some(id.as_str())
            })
            .count();
        assert!(programmes > 0, "every channel has programmes");
    }
}

/// What XML gives back for text the XMLTV renderer escaped: the characters XML can carry.
fn xml_text(s: &str) -> String {
    s.chars()
        .filter(|c| matches!(c, '\n' | '\t') || !(c.is_control() || matches!(c, '\u{FFFE}' | '\u{FFFF}')))
        .collect()
}

fn hls(input: &mut Input<'_>) {
    let window = usize::from(input.u8() % 12);
    let mut state = HlsState::new(window, Duration::from_millis(u64::from(input.u16())));
    let mut sequence = u64::from(input.u32());
    let count = usize::from(input.u8() % 40);
    let started = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    for i in 0..count {
        let flags = input.u8();
        state.push(
            0,
            Segment {
                sequence,
                duration: f64::from(input.u16()) / 1000.0,
                bytes: Bytes::from(vec![0u8; usize::from(flags) * 7]),
                started_at: started + Duration::from_millis(i as u64 * 500),
                discontinuity: flags & 1 == 1,
                init: 0,
            },
        );
        sequence += 1 + u64::from(flags >> 7);
    }
    if input.u8() & 1 == 1 {
        state.end();
    }
    let length = usize::from(input.u8() % 32);
    let query: String = input
        .bytes(length)
        .iter()
        .map(|b| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789-_=&.~"[usize::from(*b) % 42]))
        .collect();
    let query = (!query.is_empty()).then_some(query);
    let dated = input.u8() & 1 == 1;
    let text = state.media_playlist(0, query.as_deref(), dated);
    let playlist = m3u8_rs::parse_media_playlist_res(text.as_bytes())
        .unwrap_or_else(|e| panic!("the media playlist parses: {e:?}\n{text}"));
    let stored: Vec<std::sync::Arc<Segment>> = (0..=sequence)
        .rev()
        .take(200)
        .filter_map(|s| state.segment(0, s))
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let shown = &stored[stored.len().saturating_sub(window.max(6))..];
    assert_eq!(playlist.segments.len(), shown.len(), "{text}");
    assert_eq!(playlist.media_sequence, shown.first().map_or(0, |s| s.sequence));
    assert_eq!(playlist.end_list, state.is_ended());
    for (parsed, segment) in playlist.segments.iter().zip(shown) {
        let suffix = query.as_ref().map(|q| format!("?{q}")).unwrap_or_default();
        assert_eq!(parsed.uri, format!("{}.ts{suffix}", segment.sequence));
        assert!((f64::from(parsed.duration) - segment.duration).abs() < 0.002);
        assert_eq!(parsed.discontinuity, segment.discontinuity);
        assert!(parsed.duration.round() as u64 <= playlist.target_duration, "{text}");
    }
    let master = state.master_playlist(crate::session::media_playlist_name);
    let parsed = m3u8_rs::parse_master_playlist_res(master.as_bytes())
        .unwrap_or_else(|e| panic!("the master playlist parses: {e:?}\n{master}"));
    assert_eq!(parsed.variants.len(), 1);
    assert_eq!(parsed.variants[0].uri, "media.m3u8");
    assert!(parsed.variants[0].bandwidth >= 1);
}
