//! The test-side playlist checker: a media playlist parsed and checked against the Apple rules
//! ([`check_media`]), and the fetches that feed it.

use std::time::Duration;

use crate::common::client;

/// A media playlist as the checker sees it.
#[derive(Debug)]
pub(super) struct Media {
    pub(super) target: u64,
    pub(super) sequence: u64,
    pub(super) segments: Vec<(f64, String, bool)>, // duration, uri, discontinuity before it
    /// Every segment has `#EXT-X-PROGRAM-DATE-TIME`.
    pub(super) dated: bool,
}

/// Checks the Apple rules and returns the parsed playlist; panics naming the broken rule.
pub(super) fn check_media(text: &str) -> Media {
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.first(), Some(&"#EXTM3U"), "starts with #EXTM3U");
    assert!(lines.contains(&"#EXT-X-INDEPENDENT-SEGMENTS"), "independent segments");
    let tag = |name: &str| lines.iter().find_map(|l| l.strip_prefix(name)).map(str::to_owned);
    let target: u64 = tag("#EXT-X-TARGETDURATION:")
        .expect("target duration")
        .parse()
        .expect("integer target");
    let sequence: u64 = tag("#EXT-X-MEDIA-SEQUENCE:").expect("media sequence").parse().unwrap();
    let mut segments = Vec::new();
    let mut discontinuity = false;
    let mut dated = false;
    let mut dated_segments = 0;
    for (i, line) in lines.iter().enumerate() {
        if *line == "#EXT-X-DISCONTINUITY" {
            discontinuity = true;
        } else if let Some(date) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
            assert!(humantime::parse_rfc3339(date).is_ok(), "program date time {date}");
            dated = true;
        } else if let Some(rest) = line.strip_prefix("#EXTINF:") {
            let value = rest.trim_end_matches(',');
            assert!(value.contains('.'), "EXTINF is a float: {line}");
            let duration: f64 = value.parse().unwrap();
            assert!(
                duration.round() as u64 <= target,
                "segment of {duration} s exceeds target {target}"
            );
            dated_segments += usize::from(dated);
            let uri = lines[i + 1];
            assert!(
                !uri.starts_with('#') && !uri.contains("://"),
                "relative URI follows EXTINF"
            );
            segments.push((duration, uri.to_owned(), discontinuity));
            discontinuity = false;
            dated = false;
        }
    }
    // Program date times are opt-in (`hls.program_date_time`): on every segment, or on none.
    assert!(
        dated_segments == 0 || dated_segments == segments.len(),
        "{dated_segments} of {} segments have a program date time",
        segments.len()
    );
    Media {
        target,
        sequence,
        dated: dated_segments > 0,
        segments,
    }
}

pub(super) async fn text(url: &str) -> (u16, String) {
    let response = client().get(url).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// Fetches the media playlist until it holds at least six segments (the live window).
pub(super) async fn full_window(url: &str) -> Media {
    let mut last_sequence = 0;
    let mut previous_first = None;
    for _ in 0..60 {
        let (status, body) = text(url).await;
        assert_eq!(status, 200, "{url}: {body}");
        let media = check_media(&body);
        if let Some(first) = previous_first {
            assert!(media.sequence >= first, "media sequence never goes back");
        }
        previous_first = Some(media.sequence);
        if media.segments.len() >= 6 {
            return media;
        }
        // Wait for the next segment: the next playlist fetch is what a player does, paced by
        // the segment duration it just read.
        last_sequence = media.sequence + media.segments.len() as u64;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("{url}: fewer than six segments after 30 s (sequence {last_sequence})");
}
