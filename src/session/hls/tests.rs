//! Tests of the HLS state and its playlists, TS and fMP4.

use super::*;
use std::time::UNIX_EPOCH;

fn seg(sequence: u64, duration: f64, discontinuity: bool) -> Segment {
    Segment {
        sequence,
        duration,
        bytes: Bytes::from(vec![0u8; 250_000]),
        started_at: UNIX_EPOCH + Duration::from_secs(1_700_000_000 + sequence * 2),
        discontinuity,
        init: 0,
    }
}

#[test]
fn media_playlist_follows_the_apple_rules() {
    let mut hls = HlsState::new(3, Duration::from_secs(2));
    for i in 0..12 {
        hls.push(0, seg(i, if i == 8 { 2.6 } else { 1.92 }, i == 4 || i == 10));
    }
    let text = hls.media_playlist(0, None, true);
    assert_eq!(
        text,
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:3\n#EXT-X-MEDIA-SEQUENCE:6\n\
         #EXT-X-DISCONTINUITY-SEQUENCE:1\n#EXT-X-INDEPENDENT-SEGMENTS\n\
         #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES\n\
         #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:32.000Z\n#EXTINF:1.920,\n6.ts\n\
         #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:34.000Z\n#EXTINF:1.920,\n7.ts\n\
         #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:36.000Z\n#EXTINF:2.600,\n8.ts\n\
         #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:38.000Z\n#EXTINF:1.920,\n9.ts\n\
         #EXT-X-DISCONTINUITY\n\
         #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:40.000Z\n#EXTINF:1.920,\n10.ts\n\
         #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:42.000Z\n#EXTINF:1.920,\n11.ts\n",
        "window of six (the minimum), one discontinuity already left it"
    );
    assert_eq!(hls.last_sequence(0), Some(11));
    let undated = hls.media_playlist(0, None, false);
    assert!(!undated.contains("PROGRAM-DATE-TIME"), "{undated}");
    assert_eq!(
        undated.lines().filter(|l| l.starts_with("#EXTINF:")).count(),
        6,
        "{undated}"
    );
    let signed = hls.media_playlist(0, Some("exp=9&kid=k&sig=S"), true);
    assert_eq!(signed.matches(".ts?exp=9&kid=k&sig=S\n").count(), 6, "{signed}");
    for i in 12..19 {
        hls.push(0, seg(i, 1.92, false));
    }
    assert!(hls.segment(0, 1).is_some(), "spare segments stay fetchable");
    assert!(hls.segment(0, 0).is_none(), "older ones are gone");
}

#[test]
fn the_target_duration_never_changes_down_and_an_ended_playlist_says_so() {
    let mut hls = HlsState::new(6, Duration::from_secs(2));
    hls.push(0, seg(0, 0.3, false));
    assert!(
        hls.media_playlist(0, None, true).contains("#EXT-X-TARGETDURATION:2\n"),
        "short first segments keep it"
    );
    hls.push(0, seg(1, 3.4, false));
    assert_eq!(hls.target_duration(), 3, "a longer segment raises it");
    hls.push(0, seg(2, 1.0, false));
    for _ in 0..10 {
        let next = hls.last_sequence(0).unwrap() + 1;
        hls.push(0, seg(next, 1.0, false));
    }
    let text = hls.media_playlist(0, None, true);
    assert!(text.contains("#EXT-X-TARGETDURATION:3\n"), "and it stays: {text}");
    assert!(!text.contains("#EXT-X-ENDLIST"));
    hls.end();
    let text = hls.media_playlist(0, None, true);
    assert!(text.ends_with("#EXT-X-ENDLIST\n"), "{text}");
    assert!(!text.contains("CAN-BLOCK-RELOAD"), "nothing to wait for");
    assert!(hls.is_ended());
}

#[test]
fn master_playlist_declares_codecs_and_rates() {
    let mut hls = HlsState::new(6, Duration::from_secs(2));
    hls.push(0, seg(0, 2.0, false));
    hls.push(0, seg(1, 1.0, false));
    hls.learn_media(
        0,
        Some(VideoInfo {
            codec: avc1_codec("high", "3.2"),
            width: 1280,
            height: 720,
            frame_rate: 50.0,
        }),
        Some("mp4a.40.2".into()),
    );
    assert_eq!(
        hls.master_playlist(media_playlist_name),
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-STREAM-INF:BANDWIDTH=2000000,\
         AVERAGE-BANDWIDTH=1500000,CODECS=\"avc1.640020,mp4a.40.2\",RESOLUTION=1280x720,FRAME-RATE=50.000\n\
         media.m3u8\n"
    );
}

#[test]
fn avc1_strings() {
    assert_eq!(avc1_codec("constrained-baseline", "3"), "avc1.42e01e");
    assert_eq!(avc1_codec("main", "4.1"), "avc1.4d0029");
    assert_eq!(avc1_codec("high", "4"), "avc1.640028");
}

#[test]
fn a_ladder_master_lists_the_variants_in_use_once_each_is_known() {
    let mut hls = HlsState::new(6, Duration::from_secs(1));
    hls.set_tracks(3);
    assert!(
        !hls.variants_known(),
        "nothing known before the graph says what is in use"
    );
    hls.set_in_use(vec![true, false, true]);
    hls.push(0, seg(0, 0.5, false));
    hls.learn_media(0, None, Some("mp4a.40.2".into()));
    assert!(!hls.variants_known(), "track 2 has no segment yet");
    let master = hls.master_playlist(media_playlist_name);
    assert!(
        master.contains("media.m3u8") && !master.contains("media-2.m3u8"),
        "{master}"
    );
    hls.push(2, seg(0, 0.5, false));
    hls.learn_media(2, None, Some("mp4a.40.2".into()));
    assert!(hls.variants_known());
    let master = hls.master_playlist(media_playlist_name);
    assert_eq!(master.matches("#EXT-X-STREAM-INF:").count(), 2, "{master}");
    assert!(
        master.contains("\nmedia-2.m3u8\n") && !master.contains("media-1.m3u8"),
        "{master}"
    );
    let media = hls.media_playlist(2, None, false);
    assert!(media.contains("\n2-0.ts\n"), "{media}");
}

#[test]
fn tracks_number_on_together_across_a_reconnect() {
    let mut hls = HlsState::new(6, Duration::from_secs(1));
    let at = UNIX_EPOCH;
    hls.reconnected();
    hls.append(0, 0.5, Bytes::new(), at);
    assert!(!hls.segment(0, 0).unwrap().discontinuity, "nothing before it: no mark");
    hls.set_tracks(2);
    assert_eq!(hls.next_sequence(1), 1, "a new track numbers on with the others");
    hls.append(0, 0.5, Bytes::new(), at);
    // The drop left track 1 behind: after the reconnect both go on from the highest.
    hls.reconnected();
    assert_eq!((hls.next_sequence(0), hls.next_sequence(1)), (2, 2));
    hls.append(1, 0.5, Bytes::new(), at);
    hls.append(1, 0.5, Bytes::new(), at);
    assert!(hls.segment(1, 2).unwrap().discontinuity, "the first after it is marked");
    assert!(!hls.segment(1, 3).unwrap().discontinuity, "once");
    hls.append(0, 0.5, Bytes::new(), at);
    assert!(hls.segment(0, 2).unwrap().discontinuity, "in every track");
}

fn video(codec: &str, width: u32, height: u32) -> Option<VideoInfo> {
    Some(VideoInfo {
        codec: codec.into(),
        width,
        height,
        frame_rate: 25.0,
    })
}

#[test]
fn an_fmp4_media_playlist_maps_each_init_segment() {
    let mut hls = HlsState::new(6, Duration::from_secs(1));
    hls.set_format(SegmentFormat::Fmp4);
    hls.set_tracks(2);
    let at = UNIX_EPOCH;
    hls.set_init(1, Bytes::from_static(b"moov A"));
    hls.append(1, 0.5, Bytes::new(), at);
    hls.set_init(1, Bytes::from_static(b"moov A"));
    hls.append(1, 0.5, Bytes::new(), at);
    hls.reconnected();
    hls.set_init(1, Bytes::from_static(b"moov B"));
    hls.append(1, 0.5, Bytes::new(), at);
    hls.set_init(1, Bytes::from_static(b"moov C"));
    hls.append(1, 0.5, Bytes::new(), at);
    let text = hls.media_playlist(1, Some("sig=S"), false);
    assert_eq!(
        text,
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n\
         #EXT-X-DISCONTINUITY-SEQUENCE:0\n#EXT-X-INDEPENDENT-SEGMENTS\n\
         #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES\n\
         #EXT-X-MAP:URI=\"1-init-0.mp4?sig=S\"\n#EXTINF:0.500,\n1-0.m4s?sig=S\n\
         #EXTINF:0.500,\n1-1.m4s?sig=S\n\
         #EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"1-init-1.mp4?sig=S\"\n#EXTINF:0.500,\n1-2.m4s?sig=S\n\
         #EXT-X-MAP:URI=\"1-init-2.mp4?sig=S\"\n#EXTINF:0.500,\n1-3.m4s?sig=S\n",
        "identical init bytes keep the version; the map follows the discontinuity"
    );
    let dated = hls.media_playlist(1, None, true);
    assert!(
        dated.contains("#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"1-init-1.mp4\"\n#EXT-X-PROGRAM-DATE-TIME:"),
        "{dated}"
    );
    let parsed = m3u8_rs::parse_playlist_res(text.as_bytes());
    let Ok(m3u8_rs::Playlist::MediaPlaylist(media)) = parsed else {
        panic!("not a media playlist: {parsed:?}")
    };
    assert_eq!(media.version, Some(7));
    let maps: Vec<Option<&str>> = media
        .segments
        .iter()
        .map(|s| s.map.as_ref().map(|m| m.uri.as_str()))
        .collect();
    assert_eq!(
        maps,
        [
            Some("1-init-0.mp4?sig=S"),
            None,
            Some("1-init-1.mp4?sig=S"),
            Some("1-init-2.mp4?sig=S")
        ]
    );
    assert!(media.segments[2].discontinuity);
    assert_eq!(media.segments[3].uri, "1-3.m4s?sig=S");

    assert_eq!(
        hls.init_segment(1, 0).as_deref(),
        Some(&b"moov A"[..]),
        "still followed"
    );
    assert_eq!(hls.init_segment(1, 2).as_deref(), Some(&b"moov C"[..]));
    assert_eq!(hls.init_segment(1, 3), None);
    assert_eq!(hls.init_segment(0, 0), None, "track 0 has none");
    for _ in 0..18 {
        hls.append(1, 0.5, Bytes::new(), at);
    }
    assert_eq!(hls.init_segment(1, 0), None, "no stored segment follows it any more");
    assert_eq!(hls.init_segment(1, 1), None);
    assert!(hls.init_segment(1, 2).is_some(), "the current one stays");
    let text = hls.media_playlist(1, None, false);
    assert_eq!(text.matches("#EXT-X-MAP:URI=\"1-init-2.mp4\"\n").count(), 1, "{text}");
    assert!(
        text.contains("#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES\n#EXT-X-MAP:"),
        "the window's first segment is mapped: {text}"
    );
}

#[test]
fn an_fmp4_ladder_master_groups_its_audio() {
    let mut hls = HlsState::new(6, Duration::from_secs(1));
    hls.set_format(SegmentFormat::Fmp4);
    hls.set_tracks(5);
    hls.set_in_use(vec![true; 5]);
    // Bytes per one-second segment: 4 Mbit/s, 2 Mbit/s, 128 kbit/s, 384 kbit/s, 128 kbit/s.
    for (track, size) in [(0, 500_000), (1, 250_000), (2, 16_000), (3, 48_000), (4, 16_000)] {
        hls.set_init(track, Bytes::from_static(b"moov"));
        hls.append(track, 1.0, Bytes::from(vec![0u8; size]), UNIX_EPOCH);
    }
    hls.learn_media(0, video("avc1.640028", 1920, 1080), None);
    hls.learn_media(1, video("avc1.64001f", 1280, 720), None);
    hls.learn_media(2, None, Some("mp4a.40.2".into()));
    hls.learn_media(3, None, Some("ac-3".into()));
    hls.learn_media(4, None, Some("mp4a.40.2".into()));
    hls.learn_channels(2, 2);
    hls.learn_channels(3, 6);
    hls.learn_channels(3, 2);
    assert!(hls.variants_known());
    let master = hls.master_playlist(|track| format!("{}?sig=S", media_playlist_name(track)));
    assert_eq!(
        master,
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n\
         #EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aac\",NAME=\"Stereo\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"2\",\
         URI=\"media-2.m3u8?sig=S\"\n\
         #EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"ac3\",NAME=\"Dolby Digital\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"6\",\
         URI=\"media-3.m3u8?sig=S\"\n\
         #EXT-X-STREAM-INF:BANDWIDTH=4128000,AVERAGE-BANDWIDTH=4128000,CODECS=\"avc1.640028,mp4a.40.2\",\
         RESOLUTION=1920x1080,FRAME-RATE=25.000,AUDIO=\"aac\"\nmedia.m3u8?sig=S\n\
         #EXT-X-STREAM-INF:BANDWIDTH=2128000,AVERAGE-BANDWIDTH=2128000,CODECS=\"avc1.64001f,mp4a.40.2\",\
         RESOLUTION=1280x720,FRAME-RATE=25.000,AUDIO=\"aac\"\nmedia-1.m3u8?sig=S\n\
         #EXT-X-STREAM-INF:BANDWIDTH=4384000,AVERAGE-BANDWIDTH=4384000,CODECS=\"avc1.640028,ac-3\",\
         RESOLUTION=1920x1080,FRAME-RATE=25.000,AUDIO=\"ac3\"\nmedia.m3u8?sig=S\n\
         #EXT-X-STREAM-INF:BANDWIDTH=2384000,AVERAGE-BANDWIDTH=2384000,CODECS=\"avc1.64001f,ac-3\",\
         RESOLUTION=1280x720,FRAME-RATE=25.000,AUDIO=\"ac3\"\nmedia-1.m3u8?sig=S\n\
         #EXT-X-STREAM-INF:BANDWIDTH=128000,AVERAGE-BANDWIDTH=128000,CODECS=\"mp4a.40.2\"\nmedia-4.m3u8?sig=S\n",
        "renditions first; AAC variants before AC-3 ones; the audio-only rung last"
    );
    let parsed = m3u8_rs::parse_playlist_res(master.as_bytes());
    let Ok(m3u8_rs::Playlist::MasterPlaylist(parsed)) = parsed else {
        panic!("not a master playlist: {parsed:?}")
    };
    let groups: Vec<(&str, Option<&str>, Option<&str>)> = parsed
        .alternatives
        .iter()
        .map(|a| {
            assert_eq!(a.media_type, m3u8_rs::AlternativeMediaType::Audio);
            (a.group_id.as_str(), a.channels.as_deref(), a.uri.as_deref())
        })
        .collect();
    assert_eq!(
        groups,
        [
            ("aac", Some("2"), Some("media-2.m3u8?sig=S")),
            ("ac3", Some("6"), Some("media-3.m3u8?sig=S"))
        ]
    );
    let variants: Vec<(u64, Option<&str>)> = parsed
        .variants
        .iter()
        .map(|v| (v.bandwidth, v.audio.as_deref()))
        .collect();
    assert_eq!(
        variants,
        [
            (4_128_000, Some("aac")),
            (2_128_000, Some("aac")),
            (4_384_000, Some("ac3")),
            (2_384_000, Some("ac3")),
            (128_000, None)
        ]
    );

    // Without the AC-3 track in use: no AC-3 group and no AC-3 variants.
    hls.set_in_use(vec![true, true, true, false, true]);
    let master = hls.master_playlist(media_playlist_name);
    assert!(!master.contains("ac3") && !master.contains("ac-3"), "{master}");
    assert_eq!(master.matches("#EXT-X-STREAM-INF:").count(), 3, "{master}");
    // With E-AC-3 instead, the name says so.
    let mut plus = HlsState::new(6, Duration::from_secs(1));
    plus.set_format(SegmentFormat::Fmp4);
    plus.set_tracks(3);
    plus.append(0, 1.0, Bytes::from_static(b"v"), UNIX_EPOCH);
    plus.append(1, 1.0, Bytes::from_static(b"a"), UNIX_EPOCH);
    plus.append(2, 1.0, Bytes::from_static(b"a"), UNIX_EPOCH);
    plus.learn_media(0, video("avc1.640028", 1920, 1080), None);
    plus.learn_media(1, None, Some("ec-3".into()));
    plus.learn_media(2, None, Some("mp4a.40.2".into()));
    let master = plus.master_playlist(media_playlist_name);
    assert!(
        master.contains("GROUP-ID=\"ac3\",NAME=\"Dolby Digital Plus\",DEFAULT=YES,AUTOSELECT=YES,URI="),
        "no CHANNELS while unknown: {master}"
    );
    assert!(master.contains("CODECS=\"avc1.640028,ec-3\""), "{master}");
}

#[test]
fn an_fmp4_radio_master_lists_its_audio_as_variants() {
    let mut hls = HlsState::new(6, Duration::from_secs(1));
    hls.set_format(SegmentFormat::Fmp4);
    hls.append(0, 1.0, Bytes::from(vec![0u8; 16_000]), UNIX_EPOCH);
    hls.learn_media(0, None, Some("mp4a.40.2".into()));
    hls.learn_channels(0, 2);
    assert_eq!(
        hls.master_playlist(media_playlist_name),
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n\
         #EXT-X-STREAM-INF:BANDWIDTH=128000,AVERAGE-BANDWIDTH=128000,CODECS=\"mp4a.40.2\"\nmedia.m3u8\n"
    );
    assert_eq!(hls.format(), SegmentFormat::Fmp4);
    assert_eq!(HlsState::default().format(), SegmentFormat::Ts);
}
