//! A ladder through a receiver drop: every variant marks the discontinuity on the same segment,
//! numbers its segments without a gap, and after the reconnect its segment n still starts at
//! the same PTS as the other variants'.

use xg2g::demo::StreamFault;

use super::playlist::{Media, check_media, text};
use super::{HD, client, config_for, demo, ffprobe, ready, start_app};

/// Variant playlists of the HD ladder: the copy, 540p, 360p, then audio only.
const VARIANTS: [(&str, &str); 4] = [
    ("media.m3u8", ""),
    ("media-1.m3u8", "1-"),
    ("media-2.m3u8", "2-"),
    ("media-4.m3u8", "4-"),
];

/// The sequence numbers a playlist's segment URIs carry, after the variant's prefix.
fn numbers(media: &Media, prefix: &str) -> Vec<u64> {
    media
        .segments
        .iter()
        .map(|(_, uri, _)| {
            let name = uri.split('?').next().unwrap();
            name.strip_prefix(prefix)
                .unwrap()
                .strip_suffix(".ts")
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
    let demo = demo().await;
    let (running, base) = start_app(&config_for(
        &demo,
        &[
            ("streaming.stall_timeout", "1s"),
            ("streaming.reconnect_attempts", "10"),
            ("hls.window", "12"),
        ],
    ))
    .await;
    ready(&running).await;
    let ladder = format!("{base}/hls/{HD}/abr");
    let (status, master) = text(&format!("{ladder}/index.m3u8")).await;
    assert_eq!(status, 200, "{master}");
    for (name, _) in VARIANTS {
        assert!(master.contains(&format!("\n{name}\n")), "{name} listed: {master}");
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
    for (name, prefix) in VARIANTS {
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
            "{name}: the discontinuity is on segment {cut}"
        );
        // The second segment after the reconnect: its start is where the leader cut.
        let response = client()
            .get(format!("{ladder}/{prefix}{}.ts", cut + 2))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{name}");
        let path = dir.path().join(format!("{prefix}{}.ts", cut + 2));
        std::fs::write(&path, response.bytes().await.unwrap()).unwrap();
        let (json, _) = ffprobe(&path, &["-show_packets", "-read_intervals", "%+#4"], "error");
        let packets = json["packets"].as_array().unwrap();
        let first = |kind: &str| {
            packets
                .iter()
                .find(|p| p["codec_type"] == kind)
                .and_then(|p| p["pts"].as_i64())
        };
        match first("video") {
            Some(pts) => first_pts.push((name, pts)),
            None => first_pts.push((name, first("audio").expect("audio in the audio-only variant"))),
        }
    }
    let (_, lead) = first_pts[0];
    for (name, pts) in &first_pts {
        // Video variants start on the same frame; the audio-only one on the AAC frame nearest
        // it (one frame is 1920 ticks at 90 kHz for 48 kHz audio).
        let slack = if *name == "media-4.m3u8" { 1_920 } else { 0 };
        assert!(
            (pts - lead).abs() <= slack,
            "{name} starts at {pts}, the leader at {lead}: {first_pts:?}"
        );
    }
    running.stop().await;
}
