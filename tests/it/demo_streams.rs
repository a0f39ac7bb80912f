//! The demo receiver's streams, checked with ffprobe and a walk over the transport stream.

use std::collections::HashMap;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use xg2g::demo::StreamFault;

use crate::common::{capture, demo, ffprobe};

const HD: &str = "1:0:19:283D:3FB:1:C00000:0:0:0:";
const SD: &str = "1:0:1:6F0B:44D:1:C00000:0:0:0:";
const RADIO: &str = "1:0:2:2F1C:441:1:C00000:0:0:0:";
const ENCRYPTED: &str = "1:0:19:132F:3EF:1:C00000:0:0:0:";
/// Longer than one 4.8 s loop, so every capture crosses a loop boundary.
const WINDOW: Duration = Duration::from_millis(5_600);

struct Expect {
    pmt_program: u64,
    pcr_pid: u64,
    streams: &'static [(&'static str, u64, Option<u64>)], // codec, pid, channels
}

/// Walks the packets: sync bytes, continuity counters per PID and PCR steps on the PCR PID.
fn walk_ts(bytes: &[u8], pcr_pid: u16) -> (usize, Vec<u64>) {
    let mut cc: HashMap<u16, u8> = HashMap::new();
    let mut pcrs = Vec::new();
    let whole = bytes.len() / 188 * 188;
    for p in bytes[..whole].chunks(188) {
        assert_eq!(p[0], 0x47, "sync byte");
        let pid = (u16::from(p[1] & 0x1F) << 8) | u16::from(p[2]);
        if p[3] & 0x10 != 0 {
            let counter = p[3] & 0x0F;
            if let Some(prev) = cc.insert(pid, counter) {
                assert_eq!(counter, (prev + 1) & 0x0F, "continuity counter on PID {pid:#x}");
            }
        }
        if pid == pcr_pid && p[3] & 0x20 != 0 && p[4] > 0 && p[5] & 0x10 != 0 {
            let b = &p[6..12];
            let base = (u64::from(b[0]) << 25)
                | (u64::from(b[1]) << 17)
                | (u64::from(b[2]) << 9)
                | (u64::from(b[3]) << 1)
                | (u64::from(b[4]) >> 7);
            pcrs.push(base);
        }
    }
    (whole / 188, pcrs)
}

async fn check_channel(base: String, reference: &'static str, expect: Expect) {
    let bytes = capture(&format!("{base}/{reference}"), WINDOW).await;
    let (packets, pcrs) = walk_ts(&bytes, expect.pcr_pid as u16);
    assert!(packets > 500, "{reference}: only {packets} packets in {WINDOW:?}");
    // PCR: present at least every 40 ms (DVB), strictly increasing, and pacing real time.
    assert!(pcrs.len() > 100, "{reference}: {} PCRs", pcrs.len());
    for w in pcrs.windows(2) {
        assert!(
            w[1] > w[0] && w[1] - w[0] <= 3_600,
            "{reference}: PCR step {} -> {}",
            w[0],
            w[1]
        );
    }
    let span = (pcrs[pcrs.len() - 1] - pcrs[0]) as f64 / 90_000.0;
    assert!(
        (4.0..7.0).contains(&span),
        "{reference}: PCR spans {span:.2} s of a {WINDOW:?} capture"
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("capture.ts");
    std::fs::write(&path, &bytes).unwrap();
    let (json, _) = ffprobe(&path, &["-show_streams", "-show_programs"], "error");
    let program = &json["programs"][0];
    assert_eq!(
        program["program_num"].as_u64(),
        Some(expect.pmt_program),
        "{reference}: program"
    );
    assert_eq!(
        program["pcr_pid"].as_u64(),
        Some(expect.pcr_pid),
        "{reference}: PCR PID"
    );
    let streams = json["streams"].as_array().expect("streams");
    let found: Vec<(String, u64, Option<u64>)> = streams
        .iter()
        .map(|s| {
            let pid = u64::from_str_radix(s["id"].as_str().unwrap().trim_start_matches("0x"), 16).unwrap();
            (
                s["codec_name"].as_str().unwrap().to_owned(),
                pid,
                s["channels"].as_u64(),
            )
        })
        .collect();
    let want: Vec<(String, u64, Option<u64>)> = expect
        .streams
        .iter()
        .map(|(c, p, ch)| ((*c).to_owned(), *p, *ch))
        .collect();
    assert_eq!(found, want, "{reference}: streams");

    // Timestamps: decode times of every stream advance by one frame, across the loop boundary.
    let (json, log) = ffprobe(
        &path,
        &[
            "-show_packets",
            "-show_entries",
            "packet=stream_index,dts,duration,flags",
        ],
        "debug",
    );
    assert!(
        !log.contains("Continuity check failed"),
        "{reference}: ffprobe saw a continuity error"
    );
    let mut last: HashMap<u64, i64> = HashMap::new();
    let packets = json["packets"].as_array().expect("packets");
    for (i, p) in packets.iter().enumerate() {
        let (Some(stream), Some(dts)) = (p["stream_index"].as_u64(), p["dts"].as_i64()) else {
            continue;
        };
        // The final packet of a capture may be cut short; everything before must be whole.
        if p["flags"].as_str().unwrap_or_default().contains('C') {
            assert!(i + 8 > packets.len(), "{reference}: corrupt packet in the middle");
            continue;
        }
        // A tune lands mid-GOP: before the first key frame a demuxer still guesses the
        // reorder delay, so start checking there.
        let key = p["flags"].as_str().unwrap_or_default().contains('K');
        if !last.contains_key(&stream) && !key {
            continue;
        }
        if let Some(prev) = last.insert(stream, dts) {
            let step = dts - prev;
            assert!(
                (1..=3_600).contains(&step),
                "{reference}: stream {stream} DTS step {step} at {dts}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_channel_streams_valid_continuous_mpeg_ts() {
    let demo = demo().await;
    let stream = format!("http://{}", demo.stream_addr());
    let relay = format!("http://{}", demo.relay_addr());
    tokio::join!(
        check_channel(
            stream.clone(),
            HD,
            Expect {
                pmt_program: 0x283D,
                pcr_pid: 0x65,
                streams: &[("h264", 0x65, None), ("mp2", 0x66, Some(2)), ("ac3", 0x6A, Some(2))],
            },
        ),
        check_channel(
            stream.clone(),
            SD,
            Expect {
                pmt_program: 0x6F0B,
                pcr_pid: 0x1FF,
                streams: &[
                    ("mpeg2video", 0x1FF, None),
                    ("mp2", 0x200, Some(2)),
                    ("ac3", 0x203, Some(6))
                ],
            },
        ),
        check_channel(
            stream.clone(),
            RADIO,
            Expect {
                pmt_program: 0x2F1C,
                pcr_pid: 0x5DD,
                streams: &[("mp2", 0x5DD, Some(2))]
            },
        ),
        check_channel(
            relay,
            ENCRYPTED,
            Expect {
                pmt_program: 0x132F,
                pcr_pid: 0x4B0,
                streams: &[("h264", 0x4B0, None), ("eac3", 0x4B3, Some(6))],
            },
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whitelisted_channel_is_scrambled_on_the_stream_port() {
    let demo = demo().await;
    let bytes = capture(
        &format!("http://{}/{ENCRYPTED}", demo.stream_addr()),
        Duration::from_millis(500),
    )
    .await;
    let whole = bytes.len() / 188 * 188;
    let es_packets: Vec<&[u8]> = bytes[..whole]
        .chunks(188)
        .filter(|p| {
            let pid = (u16::from(p[1] & 0x1F) << 8) | u16::from(p[2]);
            pid == 0x4B0 || pid == 0x4B3
        })
        .collect();
    assert!(!es_packets.is_empty());
    assert!(
        es_packets.iter().all(|p| p[3] & 0xC0 == 0x80),
        "every ES packet is marked scrambled"
    );
}

async fn raw_request(addr: std::net::SocketAddr, request: &str) -> Vec<u8> {
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    // Read until the peer closes or 1 MiB arrived.
    while out.len() < 1 << 20 {
        match tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf)).await {
            Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_drops_head_and_stream_port_answers_it() {
    let demo = demo().await;
    let relay = raw_request(demo.relay_addr(), &format!("HEAD /{HD} HTTP/1.1\r\nHost: x\r\n\r\n")).await;
    assert!(relay.is_empty(), "the relay answers HEAD with an empty reply");
    let stream = raw_request(demo.stream_addr(), &format!("HEAD /{HD} HTTP/1.1\r\nHost: x\r\n\r\n")).await;
    assert!(String::from_utf8_lossy(&stream).starts_with("HTTP/1.0 200 OK\r\n"));
    let missing = raw_request(demo.stream_addr(), "GET /1:0:1:1:1:1:C00000:0:0:0: HTTP/1.1\r\n\r\n").await;
    assert!(String::from_utf8_lossy(&missing).starts_with("HTTP/1.0 404"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_faults_behave_as_injected() {
    let demo = demo().await;
    demo.set_faults(|f| {
        f.streams.insert(HD.into(), StreamFault::DropAfter(100_000));
        f.streams.insert(SD.into(), StreamFault::NotFound);
        f.streams.insert(RADIO.into(), StreamFault::Garbage);
    });
    let addr = demo.stream_addr();
    let dropped = raw_request(addr, &format!("GET /{HD} HTTP/1.0\r\n\r\n")).await;
    let header = dropped.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(
        dropped.len() - header,
        100_000,
        "the connection closes after exactly the injected byte count"
    );
    let missing = raw_request(addr, &format!("GET /{SD} HTTP/1.0\r\n\r\n")).await;
    assert!(String::from_utf8_lossy(&missing).starts_with("HTTP/1.0 404"));
    let garbage = capture(&format!("http://{addr}/{RADIO}"), Duration::from_millis(600)).await;
    let syncs = garbage.chunks(188).filter(|p| p[0] == 0x47).count();
    assert!(syncs * 10 < garbage.len() / 188, "garbage has no TS structure");

    demo.set_faults(|f| {
        f.streams.insert(HD.into(), StreamFault::StallAfter(50_000));
    });
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket
        .write_all(format!("GET /{HD} HTTP/1.0\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    // Read until 1 s passes without a byte: the stall.
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(1), socket.read(&mut buf)).await {
        assert!(n > 0, "a stalled stream keeps the connection open");
        got.extend_from_slice(&buf[..n]);
    }
    let header = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(got.len() - header, 50_000);
}
