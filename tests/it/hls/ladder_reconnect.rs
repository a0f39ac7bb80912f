//! A ladder through a receiver drop: every variant marks the discontinuity on the same segment,
//! numbers its segments without a gap, and after the reconnect its segment n still starts at
//! the same PTS as the other variants'. In TS and in fMP4, where time must also run on (a new
//! connection's decode times go on from the published end).

use xg2g::demo::StreamFault;

use super::playlist::{Media, check_media, text};
use super::{HD, client, config_for, demo, ffprobe, ready, start_app};

/// Variant playlists of the HD ladder in TS: the copy, 540p, 360p, then audio only.
const VARIANTS: [(&str, &str); 4] = [
    ("media.m3u8", ""),
    ("media-1.m3u8", "1-"),
    ("media-2.m3u8", "2-"),
    ("media-4.m3u8", "4-"),
];

/// The same in fMP4: the rungs, the AAC and the AC-3 renditions, audio only.
const RENDITIONS: [(&str, &str); 6] = [
    ("media.m3u8", ""),
    ("media-1.m3u8", "1-"),
    ("media-2.m3u8", "2-"),
    ("media-4.m3u8", "4-"),
    ("media-5.m3u8", "5-"),
    ("media-6.m3u8", "6-"),
];

/// The sequence numbers a playlist's segment URIs carry, after the variant's prefix.
fn numbers(media: &Media, prefix: &str) -> Vec<u64> {
    media
        .segments
        .iter()
        .map(|(_, uri, _)| {
            let name = uri.split('?').next().unwrap();
            let name = name.strip_prefix(prefix).unwrap();
            name.strip_suffix(".ts")
                .or_else(|| name.strip_suffix(".m4s"))
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect()
}

/// The sequence number of the first segment after a discontinuity, if the window shows one.
fn marked(media: &Media, prefix: &str) -> Option<u64> {
    let numbers = numbers(media, prefix);
    media
        .segments
        .iter()
        .zip(numbers)
        .find(|((_, _, d), _)| *d)
        .map(|(_, n)| n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ladder_comes_out_of_a_receiver_drop_with_its_variants_together() {
    through_a_drop("abr", &VARIANTS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_fmp4_ladder_comes_out_of_a_receiver_drop_with_its_renditions_together_and_time_running_on() {
    through_a_drop("abr-fmp4", &RENDITIONS).await;
}

/// A playable file of segment `n` of a variant: the segment, after its init segment in fMP4
/// (the one the playlist maps it to).
async fn fetch(ladder: &str, media_body: &str, prefix: &str, n: u64, dir: &std::path::Path) -> std::path::PathBuf {
    let get = |uri: String| async move {
        let response = client().get(uri).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.bytes().await.unwrap()
    };
    let fmp4 = media_body.contains(".m4s");
    let name = format!("{prefix}{n}.{}", if fmp4 { "m4s" } else { "ts" });
    let mut bytes = Vec::new();
    if fmp4 {
        // The last EXT-X-MAP before the segment's URI.
        let before = &media_body[..media_body.find(&name).expect("the segment is listed")];
        let map = before
            .rsplit_once("#EXT-X-MAP:URI=\"")
            .and_then(|(_, rest)| rest.split('"').next())
            .expect("an EXT-X-MAP before the segment");
        bytes.extend_from_slice(&get(format!("{ladder}/{map}")).await);
    }
    bytes.extend_from_slice(&get(format!("{ladder}/{name}")).await);
    let path = dir.join(if fmp4 { format!("{name}.mp4") } else { name });
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The first timestamp of `path`'s video (else audio), in its stream's time base, as seconds.
fn first_time(path: &std::path::Path) -> f64 {
    let (json, _) = ffprobe(path, &["-show_packets", "-read_intervals", "%+#4"], "error");
    let packets = json["packets"].as_array().unwrap();
    let first = |kind: &str| {
        packets
            .iter()
            .find(|p| p["codec_type"] == kind)
            .and_then(|p| p["pts_time"].as_str())
            .and_then(|t| t.parse::<f64>().ok())
    };
    first("video").or_else(|| first("audio")).expect("media in the segment")
}

async fn through_a_drop(profile: &str, variants: &[(&str, &str)]) {
    let demo = demo().await;
    let (running, base) = start_app(&config_for(
        &demo,
        &[
            ("streaming.stall_timeout", "1s"),
            ("streaming.reconnect_attempts", "10"),
            ("hls.window", "30"),
        ],
    ))
    .await;
    ready(&running).await;
    let ladder = format!("{base}/hls/{HD}/{profile}");
    let (status, master) = text(&format!("{ladder}/index.m3u8")).await;
    assert_eq!(status, 200, "{master}");
    for (name, _) in variants {
        let listed = master.contains(&format!("\n{name}\n")) || master.contains(&format!("URI=\"{name}\""));
        assert!(listed, "{name} listed: {master}");
    }
    // The receiver drops this channel's connection after ~3 s of media; xg2g reconnects.
    demo.set_faults(|f| {
        f.streams.insert(HD.into(), StreamFault::DropAfter(400_000));
    });
    // Blocking reloads of the leader until its window shows the discontinuity and four
    // segments after it.
    let mut wanted = check_media(&text(&format!("{ladder}/media.m3u8")).await.1).sequence;
    let leader = loop {
        let (status, body) = text(&format!("{ladder}/media.m3u8?_HLS_msn={wanted}")).await;
        assert_eq!(status, 200, "{body}");
        let media = check_media(&body);
        let last = *numbers(&media, "").last().unwrap();
        if marked(&media, "").is_some_and(|m| last >= m + 4) {
            break media;
        }
        assert!(last < 200, "no discontinuity after 200 segments");
        wanted = last + 1;
    };
    let cut = marked(&leader, "").unwrap();
    demo.set_faults(|f| {
        f.streams.remove(HD);
    });
    let dir = tempfile::tempdir().unwrap();
    let mut first_pts = Vec::new();
    for &(name, prefix) in variants {
        let (status, body) = text(&format!("{ladder}/{name}?_HLS_msn={}", cut + 3)).await;
        assert_eq!(status, 200, "{name}: {body}");
        let media = check_media(&body);
        let numbers = numbers(&media, prefix);
        assert_eq!(
            numbers[0], media.sequence,
            "{name}: the media sequence is the first URI's"
        );
        assert!(
            numbers.windows(2).all(|w| w[1] == w[0] + 1),
            "{name}: numbered without a gap across the drop: {numbers:?}"
        );
        assert_eq!(
            marked(&media, prefix),
            Some(cut),
            "{name}: the discontinuity is on segment {cut}: {body}\nleader: {leader:?}"
        );
        // The second segment after the reconnect: its start is where the leader cut.
        let after = fetch(&ladder, &body, prefix, cut + 2, dir.path()).await;
        first_pts.push((name, first_time(&after)));
        // Time runs on across the discontinuity (Chromium's own player keeps one time line).
        let before = fetch(&ladder, &body, prefix, cut - 1, dir.path()).await;
        let (until, from) = (
            first_time(&before),
            first_time(&fetch(&ladder, &body, prefix, cut, dir.path()).await),
        );
        assert!(
            from > until,
            "{name}: segment {cut} starts at {from} s, after {until} s before the drop"
        );
    }
    let (_, lead) = first_pts[0];
    let (_, encoded) = first_pts[1];
    for (name, at) in &first_pts {
        // Video variants start on the same frame (fMP4's copied rung one frame later: the live
        // muxer writes no edit list for its reorder delay); audio on the frame nearest it (an
        // AAC frame is 21.3 ms, an AC-3 one 32 ms).
        let audio = ["media-4.m3u8", "media-5.m3u8", "media-6.m3u8"].contains(name)
            && !(profile == "abr" && *name != "media-4.m3u8");
        let near = match (profile, audio) {
            ("abr", false) => (at - lead).abs() < 0.000_01,
            ("abr", true) => (at - lead).abs() <= 0.021_4,
            (_, false) => (at - encoded).abs() < 0.000_01 || (*name == "media.m3u8" && at - encoded <= 0.021),
            (_, true) => (at - encoded).abs() <= 0.016_1,
        };
        assert!(near, "{name} starts at {at}, the leader at {lead}: {first_pts:?}");
    }
    running.stop().await;
}
