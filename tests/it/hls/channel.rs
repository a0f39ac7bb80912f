//! One channel's full check under `auto`: the master playlist's variant, a full media window,
//! every segment probed with ffprobe, and the segments joined on the wire.

use super::SD;
use super::playlist::{full_window, text};
use crate::common::{client, ffprobe, first_video_frame};

pub(super) async fn check_channel(base: String, channel: &'static str, want: &'static [&'static str]) {
    let master_url = format!("{base}/hls/{channel}/auto/index.m3u8");
    let (status, master) = text(&master_url).await;
    assert_eq!(
        status, 200,
        "the first playlist request waits for the first segment: {master}"
    );
    assert!(master.starts_with("#EXTM3U\n"));
    let inf = master
        .lines()
        .find(|l| l.starts_with("#EXT-X-STREAM-INF:"))
        .expect("a variant");
    for attribute in ["BANDWIDTH=", "AVERAGE-BANDWIDTH=", "CODECS="] {
        assert!(inf.contains(attribute), "master declares {attribute}: {inf}");
    }
    if want.contains(&"h264") {
        // HD is copied at 1280x720; SD 576i 16:9 is transcoded without upscaling, square pixels.
        let resolution = if channel == SD {
            "RESOLUTION=1024x576"
        } else {
            "RESOLUTION=1280x720"
        };
        assert!(
            inf.contains("avc1.") && inf.contains(resolution) && inf.contains("FRAME-RATE="),
            "{resolution}: {inf}"
        );
    }
    assert!(inf.contains("mp4a.40.2"), "{inf}");
    let media_url = format!("{base}/hls/{channel}/auto/media.m3u8");
    let media = full_window(&media_url).await;
    assert!(media.target <= 2, "short segments: target {}", media.target);
    let dir = tempfile::tempdir().unwrap();
    // Fetched as a player does, one after the other, then checked.
    for (_, uri, _) in &media.segments {
        let response = client()
            .get(format!("{base}/hls/{channel}/auto/{uri}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{uri}");
        assert_eq!(response.headers()["content-type"], "video/mp2t");
        std::fs::write(dir.path().join(uri), response.bytes().await.unwrap()).unwrap();
    }
    for (duration, uri, _) in &media.segments {
        let path = dir.path().join(uri);
        let (json, _) = ffprobe(&path, &["-show_streams"], "error");
        let codecs: Vec<&str> = json["streams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["codec_name"].as_str().unwrap())
            .collect();
        assert_eq!(codecs, want, "{channel} {uri}");
        for s in json["streams"].as_array().unwrap() {
            if s["codec_name"] == "aac" {
                assert_eq!(s["profile"], "LC");
                assert_eq!(s["sample_rate"], "48000");
                assert_eq!(s["channels"], 2);
            }
            if s["codec_name"] == "h264" {
                // Apple 1.14/1.17: progressive; the 576i25 channel comes out at its field rate.
                assert_eq!(s["field_order"], "progressive", "{channel} {uri}: {s}");
                assert_eq!(s["r_frame_rate"], "50/1", "{channel} {uri}: {s}");
            }
        }
        if want.contains(&"h264") {
            // Each segment starts with an IDR: its first decoded video frame is a key frame.
            let first = &first_video_frame(&path);
            assert_eq!(
                first["key_frame"], 1,
                "{channel} {uri} starts with a key frame: {first}"
            );
            assert_eq!(first["pict_type"], "I");
        }
        // Apple 7.7: no segment longer than the target + 0.5 s; short ones start the session.
        assert!(
            *duration > 0.2 && *duration <= media.target as f64 + 0.5,
            "{uri}: {duration} s"
        );
    }
    check_wire(dir.path(), channel, &media.segments);
}

/// The segments in a row, as one stream, through ffprobe's own MPEG-TS demuxer: each starts with
/// PAT then PMT; no continuity counter jumps on any PID from one segment to the next; every
/// stream's decode timestamps rise.
fn check_wire(dir: &std::path::Path, channel: &str, segments: &[(f64, String, bool)]) {
    let mut joined = Vec::new();
    for (_, uri, _) in segments {
        let bytes = std::fs::read(dir.join(uri)).unwrap();
        assert_eq!(bytes.len() % 188, 0, "{uri}: whole packets");
        let pid = |n: usize| (u16::from(bytes[n * 188 + 1] & 0x1F) << 8) | u16::from(bytes[n * 188 + 2]);
        assert_eq!(pid(0), 0, "{channel} {uri}: the PAT first");
        // The PAT's only program names the PMT PID (after any adaptation field and the
        // pointer field).
        let at = 4 + if bytes[3] & 0x20 != 0 {
            1 + usize::from(bytes[4])
        } else {
            0
        };
        let section = &bytes[at + 1 + usize::from(bytes[at])..];
        let pmt_pid = (u16::from(section[10] & 0x1F) << 8) | u16::from(section[11]);
        assert_eq!(pid(1), pmt_pid, "{channel} {uri}: the PMT second");
        joined.extend_from_slice(&bytes);
    }
    let path = dir.join("joined.ts");
    std::fs::write(&path, &joined).unwrap();
    let (json, log) = ffprobe(
        &path,
        &["-show_packets", "-show_entries", "packet=stream_index,dts"],
        "debug",
    );
    assert!(
        !log.contains("Continuity check failed"),
        "{channel}: continuity breaks across segments:\n{}",
        log.lines()
            .filter(|l| l.contains("Continuity"))
            .take(5)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let mut last: std::collections::HashMap<i64, i64> = std::collections::HashMap::new();
    let packets = json["packets"].as_array().expect("packets");
    assert!(packets.len() > 50, "{channel}: {} packets", packets.len());
    for packet in packets {
        let (Some(stream), Some(dts)) = (packet["stream_index"].as_i64(), packet["dts"].as_i64()) else {
            continue;
        };
        if let Some(previous) = last.insert(stream, dts) {
            assert!(dts > previous, "{channel}: stream {stream} DTS {dts} after {previous}");
        }
    }
}
