//! Seed inputs for every target, for the stable test loop and for cargo-fuzz's corpus.

use crate::mpegts::{self, PACKET};

/// Seed inputs of each target: real shapes the fuzzers start from (also written to
/// `fuzz/corpus/<target>/` by `scripts/fuzz`).
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    match target {
        "ts" => vec![[&[188, 0, 0, 1, 50, 0, 7, 0, 0][..], &seed_stream()].concat()],
        "service_ref" => ["1:0:19:283D:3FB:1:C00000:0:0:0:", "1:64:1:0:0:0:0:0:0:0:", "1:0:1:6f0b:44d:1:c00000:0:0:0"]
            .map(|s| s.as_bytes().to_vec())
            .to_vec(),
        "config" => vec![
            crate::config::render_example().into_bytes(),
            b"[receiver]\nbase_url = \"http://192.168.1.20\"\nusername = \"root\"\n\n[hls]\nwindow = 8\n".to_vec(),
        ],
        "template" => crate::pipeline::EMBEDDED.iter().map(|(_, text)| text.as_bytes().to_vec()).collect(),
        "openwebif" => vec![
            [&[0][..], br#"{"result": true, "events": [{"id": 32845, "title": "Tagesschau\u008aHeute", "shortdesc": "News", "longdesc": "Die Nachrichten.", "begin_timestamp": 1700000000, "duration_sec": 900, "sref": "1:0:19:283D:3FB:1:C00000:0:0:0:"}]}"#].concat(),
            [&[1][..], b"<?xml version=\"1.0\"?><e2eventlist><e2event><e2eventid>1</e2eventid><e2eventstart>1700000000</e2eventstart><e2eventduration>900</e2eventduration><e2eventtitle>S\xfcd</e2eventtitle><e2eventservicereference>1:0:19:283D:3FB:1:C00000:0:0:0:</e2eventservicereference></e2event></e2eventlist>"].concat(),
            [&[2][..], br#"{"bouquets": [["1:7:1:0:0:0:0:0:0:0:FROM BOUQUET \"userbouquet.favourites.tv\" ORDER BY bouquet", "Favourites (TV)"]]}"#].concat(),
            [&[3][..], br#"{"services": [{"servicereference": "1:64:1:0:0:0:0:0:0:0:", "servicename": "News"}, {"servicereference": "1:0:19:283D:3FB:1:C00000:0:0:0:", "servicename": null}]}"#].concat(),
            [&[4][..], b"# relay\n1:0:19:283D:3FB:1:C00000:0:0:0\n1:0:19:283D:3FB:1:C00000:0:0:0:\n\n".as_slice()].concat(),
        ],
        "playlists" => vec![(0u8..=255).cycle().take(600).collect()],
        "requests" => vec![
            // hdhomerun_config's discover (unsealed), and a get of /sys/model (sealed again).
            [&[0][..], &[0, 2, 0, 12, 1, 4, 255, 255, 255, 255, 2, 4, 255, 255, 255, 255, 0x73, 0xCC, 0x7D, 0x8F]].concat(),
            [&[4][..], &[3, 11][..], b"/sys/model\0", &[4, 4], b"abc\0"].concat(),
            [&[1][..], b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\nST: ssdp:all\r\n\r\n"].concat(),
            [&[2][..], b"/hls/1:0:19:283D:3FB:1:C00000:0:0:0:/aac/index.m3u8?exp=1800000060&kid=k1&sig=AAAA&token=xg2g_dev_AAAA".as_slice()].concat(),
            [&[2][..], br#"{"version": 1, "tokens": [{"id": "0011223344556677", "name": "Plex", "sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "created": 1800000000, "last_used": null}]}"#.as_slice()].concat(),
            [&[3][..], b"10.0.0.0/8 ::1\n203.0.113.9, 10.0.0.2|10.0.0.3\nfor=\"[2001:db8::7]:4711\";proto=https".as_slice()].concat(),
        ],
        _ => Vec::new(),
    }
}

/// PAT, PMT (H.264 and MP2) and a few seconds of PES starts, key frames every half second.
pub(crate) fn seed_stream() -> Vec<u8> {
    let mut out = Vec::new();
    let mut packet = |pid: u16, start: bool, adaptation: Option<u8>, body: &[u8], counter: u8| {
        let mut p = [0xFF; PACKET];
        p[..3].copy_from_slice(&[mpegts::SYNC, (u8::from(start) << 6) | (pid >> 8) as u8, pid as u8]);
        let at = match adaptation {
            Some(flags) => {
                p[3] = 0x30 | counter;
                p[4] = 1;
                p[5] = flags;
                6
            }
            None => {
                p[3] = 0x10 | counter;
                4
            }
        };
        p[at..at + body.len()].copy_from_slice(body);
        out.extend_from_slice(&p);
    };
    for i in 0u8..24 {
        let pts = 900_000 + u64::from(i) * 3_600 * 5;
        let header = |stream: u8| {
            [
                0,
                0,
                1,
                stream,
                0,
                0,
                0x80,
                0x80,
                5,
                0x21 | ((pts >> 29) & 0x0E) as u8,
                (pts >> 22) as u8,
                0x01 | ((pts >> 14) & 0xFE) as u8,
                (pts >> 7) as u8,
                0x01 | ((pts << 1) & 0xFE) as u8,
            ]
        };
        if i % 6 == 0 {
            packet(
                0,
                true,
                None,
                &[0, 0, 0xB0, 0x0D, 0, 1, 0xC1, 0, 0, 0, 1, 0xF0, 0x00, 0, 0, 0, 0],
                (i / 6) & 0x0F,
            );
            let pmt = [
                0, 0x02, 0xB0, 0x1D, 0, 1, 0xC1, 0, 0, 0xE1, 0x00, 0xF0, 0, 0x1B, 0xE1, 0x00, 0xF0, 0, 0x03, 0xE1,
                0x01, 0xF0, 6, 0x0A, 4, b'd', b'e', b'u', 0, 0, 0, 0, 0,
            ];
            packet(0x1000, true, None, &pmt, (i / 6) & 0x0F);
        }
        let key = i % 3 == 0;
        let video = [&header(0xE0)[..], &[0, 0, 0, 1, 0x67, 0, 0, 0, 1, 0x65]].concat();
        packet(0x100, true, key.then_some(0x40), &video, i & 0x0F);
        packet(0x100, false, None, &[0x11; 16], (i + 1) & 0x0F);
        packet(0x101, true, None, &header(0xC0), i & 0x0F);
    }
    out
}
