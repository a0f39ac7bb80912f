//! The test side of a ladder's playlists: the master's variants and each variant's window parsed
//! here (not by xg2g's own code), fetched together, and the blocking reloads (`_HLS_msn`) that
//! wait for the variants to share segment numbers.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::common::client;

/// One `#EXT-X-STREAM-INF` of a master playlist.
#[derive(Debug, Clone)]
pub(super) struct Variant {
    pub(super) uri: String,
    pub(super) bandwidth: u64,
    pub(super) average: u64,
    pub(super) codecs: String,
    pub(super) resolution: Option<(u32, u32)>,
    pub(super) frame_rate: Option<f64>,
}

/// Splits an attribute list at the commas outside quotes.
fn attributes(list: &str) -> Vec<(String, String)> {
    let (mut out, mut field, mut quoted) = (Vec::new(), String::new(), false);
    for c in list.chars().chain(std::iter::once(',')) {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                let (name, value) = field.split_once('=').expect("NAME=value");
                out.push((name.to_owned(), value.to_owned()));
                field.clear();
            }
            c => field.push(c),
        }
    }
    out
}

/// The variants of a master playlist, in order; panics on a variant without a URI.
pub(super) fn parse_master(text: &str) -> Vec<Variant> {
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.first(), Some(&"#EXTM3U"), "{text}");
    let mut variants = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(list) = line.strip_prefix("#EXT-X-STREAM-INF:") else {
            continue;
        };
        let attrs = attributes(list);
        let get = |name: &str| attrs.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
        let number = |name: &str| -> u64 {
            get(name)
                .unwrap_or_else(|| panic!("{name} missing: {line}"))
                .parse()
                .unwrap()
        };
        let uri = lines.get(i + 1).expect("a URI follows EXT-X-STREAM-INF");
        assert!(!uri.starts_with('#'), "a URI follows {line}");
        variants.push(Variant {
            uri: (*uri).to_owned(),
            bandwidth: number("BANDWIDTH"),
            average: number("AVERAGE-BANDWIDTH"),
            codecs: get("CODECS").unwrap_or_else(|| panic!("CODECS missing: {line}")),
            resolution: get("RESOLUTION").map(|r| {
                let (w, h) = r.split_once('x').expect("WxH");
                (w.parse().unwrap(), h.parse().unwrap())
            }),
            frame_rate: get("FRAME-RATE").map(|r| r.parse().unwrap()),
        });
    }
    variants
}

/// One segment of a media playlist's window.
#[derive(Debug, Clone)]
pub(super) struct Segment {
    /// Its media sequence number.
    pub(super) n: u64,
    pub(super) uri: String,
    /// Its discontinuity sequence number: `EXT-X-DISCONTINUITY-SEQUENCE` plus the
    /// `EXT-X-DISCONTINUITY` tags up to it.
    pub(super) discontinuity: u64,
}

/// A variant's media playlist, as fetched once.
#[derive(Debug, Clone)]
pub(super) struct Window {
    pub(super) sequence: u64,
    pub(super) discontinuity_sequence: u64,
    pub(super) segments: Vec<Segment>,
    pub(super) text: String,
}

impl Window {
    /// The newest segment's number, if any.
    pub(super) fn last(&self) -> Option<u64> {
        self.segments.last().map(|s| s.n)
    }

    pub(super) fn numbers(&self) -> BTreeSet<u64> {
        self.segments.iter().map(|s| s.n).collect()
    }

    pub(super) fn segment(&self, n: u64) -> &Segment {
        self.segments
            .iter()
            .find(|s| s.n == n)
            .unwrap_or_else(|| panic!("segment {n} not in {}", self.text))
    }
}

pub(super) fn parse_media(text: &str) -> Window {
    let tag = |name: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.parse().unwrap())
    };
    let sequence = tag("#EXT-X-MEDIA-SEQUENCE:").unwrap_or_else(|| panic!("media sequence: {text}"));
    let discontinuity_sequence = tag("#EXT-X-DISCONTINUITY-SEQUENCE:").unwrap_or(0);
    let (mut segments, mut discontinuity, mut extinf) = (Vec::new(), discontinuity_sequence, false);
    for line in text.lines() {
        if line == "#EXT-X-DISCONTINUITY" {
            discontinuity += 1;
        } else if line.starts_with("#EXTINF:") {
            extinf = true;
        } else if extinf && !line.starts_with('#') {
            extinf = false;
            segments.push(Segment {
                n: sequence + segments.len() as u64,
                uri: line.to_owned(),
                discontinuity,
            });
        }
    }
    Window {
        sequence,
        discontinuity_sequence,
        segments,
        text: text.to_owned(),
    }
}

pub(super) async fn get(url: &str) -> (u16, String) {
    let response = client().get(url).send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.text().await.expect("text body"))
}

/// Every variant's media playlist, fetched at once (`folder` ends with `/`).
pub(super) async fn windows_together(folder: &str, uris: &[String]) -> Vec<Window> {
    let fetches = uris.iter().map(|uri| async move {
        let (status, text) = get(&format!("{folder}{uri}")).await;
        assert_eq!(status, 200, "{uri}: {text}");
        parse_media(&text)
    });
    futures_util::future::join_all(fetches).await
}

/// Sequence numbers every window holds.
pub(super) fn common(windows: &[Window]) -> Vec<u64> {
    let mut sets = windows.iter().map(Window::numbers);
    let first = sets.next().unwrap_or_default();
    sets.fold(first, |all, set| all.intersection(&set).copied().collect())
        .into_iter()
        .collect()
}

/// Waits until the variants' windows, fetched together, share `want` sequence numbers from
/// `from` on: each
/// round asks for the next segment of the variant that is furthest behind with a blocking
/// reload (`_HLS_msn`, answered when it is published or after three target durations).
/// Returns that fetch and the shared numbers; panics after `within`.
pub(super) async fn common_segments(
    folder: &str,
    uris: &[String],
    from: u64,
    want: usize,
    within: Duration,
) -> (Vec<Window>, Vec<u64>) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let windows = windows_together(folder, uris).await;
        let shared: Vec<u64> = common(&windows).into_iter().filter(|n| *n >= from).collect();
        if shared.len() >= want {
            return (windows, shared);
        }
        let behind = (0..windows.len())
            .min_by_key(|&i| windows[i].last().map_or(0, |n| n + 1))
            .expect("variants");
        let next = windows[behind].last().map_or(0, |n| n + 1);
        let url = format!("{folder}{}?_HLS_msn={next}", uris[behind]);
        let answer = tokio::time::timeout_at(deadline, get(&url)).await;
        let windows: Vec<(&String, &str)> = uris.iter().zip(windows.iter().map(|w| w.text.as_str())).collect();
        let Ok((status, text)) = answer else {
            panic!("no {want} segment numbers shared by every variant within {within:?}: {windows:#?}")
        };
        assert_eq!(status, 200, "{url}: {text}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {want} segment numbers shared by every variant within {within:?}: {windows:#?}"
        );
    }
}

/// What a variant's segments are called: `N.ts` for the first playlist (`media.m3u8`), `T-N.ts`
/// for `media-T.m3u8`.
pub(super) fn segment_name(playlist: &str, n: u64) -> String {
    match playlist.strip_prefix("media-").and_then(|t| t.strip_suffix(".m3u8")) {
        Some(track) => format!("{track}-{n}.ts"),
        None => format!("{n}.ts"),
    }
}

#[test]
fn the_test_side_parsers_read_what_they_should() {
    let master = parse_master(
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=2,AVERAGE-BANDWIDTH=1,CODECS=\"avc1.640020,mp4a.40.2\",\
         RESOLUTION=1280x720,FRAME-RATE=50.000\nmedia.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=5,\
         AVERAGE-BANDWIDTH=4,CODECS=\"mp4a.40.2\"\nmedia-4.m3u8\n",
    );
    assert_eq!(master.len(), 2);
    assert_eq!(
        (master[0].codecs.as_str(), master[0].resolution, master[0].frame_rate),
        ("avc1.640020,mp4a.40.2", Some((1280, 720)), Some(50.0))
    );
    assert_eq!(
        (master[1].uri.as_str(), master[1].resolution, master[1].bandwidth),
        ("media-4.m3u8", None, 5)
    );
    let window = parse_media(
        "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:7\n#EXT-X-DISCONTINUITY-SEQUENCE:2\n#EXTINF:2.000,\n2-7.ts\n\
         #EXT-X-DISCONTINUITY\n#EXTINF:2.000,\n2-8.ts\n",
    );
    let got: Vec<_> = window
        .segments
        .iter()
        .map(|s| (s.n, s.uri.as_str(), s.discontinuity))
        .collect();
    assert_eq!(got, [(7, "2-7.ts", 2), (8, "2-8.ts", 3)]);
    assert_eq!(segment_name("media-2.m3u8", 8), "2-8.ts");
    assert_eq!(segment_name("media.m3u8", 8), "8.ts");
}
