//! SiliconDust's own discovery: the reply frame on loopback, the off-by-default rule, and (where
//! Debian's `hdhomerun-config` is installed) `hdhomerun_config discover` and `get /sys/model`.

use std::time::Duration;

use tokio::net::UdpSocket;

use crate::common::{config_for, demo, start_app};

/// What `hdhomerun_config discover 127.0.0.1` sends (captured from hdhomerun-config 20220303):
/// a discover request for any device type and any device id, with its CRC.
const DISCOVER_ANY: [u8; 20] = [
    0x00, 0x02, 0x00, 0x0C, 0x01, 0x04, 0xFF, 0xFF, 0xFF, 0xFF, 0x02, 0x04, 0xFF, 0xFF, 0xFF, 0xFF, 0x73, 0xCC, 0x7D,
    0x8F,
];

/// A frame as libhdhomerun writes one, with zlib's CRC32 rather than the code under test's.
fn seal(kind: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = kind.to_be_bytes().to_vec();
    frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    frame.extend_from_slice(payload);
    let mut crc = flate2::Crc::new();
    crc.update(&frame);
    frame.extend_from_slice(&crc.sum().to_le_bytes());
    frame
}

/// The fields of a reply frame, checked here with zlib's CRC rather than the code under test.
fn reply_fields(frame: &[u8]) -> Vec<(u8, Vec<u8>)> {
    assert_eq!(&frame[..2], [0x00, 0x03], "a discover reply");
    let length = usize::from(u16::from_be_bytes([frame[2], frame[3]]));
    assert_eq!(frame.len(), 4 + length + 4);
    assert_eq!(seal(0x0003, &frame[4..4 + length]), frame, "CRC32, little-endian");
    let mut fields = Vec::new();
    let mut rest = &frame[4..4 + length];
    while !rest.is_empty() {
        let (tag, mut len, mut skip) = (rest[0], usize::from(rest[1]), 2);
        if len & 0x80 != 0 {
            len = (len & 0x7F) | (usize::from(rest[2]) << 7);
            skip = 3;
        }
        fields.push((tag, rest[skip..skip + len].to_vec()));
        rest = &rest[skip + len..];
    }
    fields
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_is_off_when_http_listens_on_loopback_only() {
    let demo = demo().await;
    let config = config_for(&demo, &[]);
    assert!(config.hdhr.discovery);
    assert!(config.hdhr.discovery_listen.ip().is_unspecified());
    assert_eq!(config.hdhr.discovery_listen.port(), 65001);
    let (running, _) = start_app(&config).await;
    assert_eq!(running.hdhr_discovery_addr(), None);
    running.stop().await;

    let off = config_for(
        &demo,
        &[("hdhr.discovery", "false"), ("hdhr.discovery_listen", "127.0.0.1:0")],
    );
    let (running, _) = start_app(&off).await;
    assert_eq!(running.hdhr_discovery_addr(), None, "switched off");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_request_gets_the_device_and_its_urls() {
    let demo = demo().await;
    let config = config_for(
        &demo,
        &[
            ("hdhr.discovery_listen", "127.0.0.1:0"),
            ("hdhr.device_id", "1013FADA"),
            ("hdhr.tuner_count", "3"),
        ],
    );
    let (running, base) = start_app(&config).await;
    let responder = running.hdhr_discovery_addr().expect("discovery runs");
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();

    // A damaged frame and a request for another device get no answer; the first reply to
    // arrive must be the one for the good request sent after them.
    assert_eq!(seal(0x0002, &DISCOVER_ANY[4..16]), DISCOVER_ANY);
    let mut damaged = DISCOVER_ANY;
    damaged[19] ^= 0xFF;
    socket.send_to(&damaged, responder).await.unwrap();
    // Device id 10439EFD only.
    let other_device = seal(0x0002, &[0x02, 0x04, 0x10, 0x43, 0x9E, 0xFD]);
    socket.send_to(&other_device, responder).await.unwrap();
    socket.send_to(&DISCOVER_ANY, responder).await.unwrap();

    let mut buf = [0u8; 1500];
    let (len, from) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
        .await
        .expect("a reply within 5 s")
        .unwrap();
    assert_eq!(from, responder);
    let fields = reply_fields(&buf[..len]);
    let field = |tag: u8| {
        fields
            .iter()
            .find(|(t, _)| *t == tag)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("tag {tag:#04x} in {fields:?}"))
    };
    assert_eq!(field(0x01), [0, 0, 0, 1], "device type: tuner");
    assert_eq!(field(0x02), [0x10, 0x13, 0xFA, 0xDA], "device id");
    assert_eq!(field(0x10), [3], "tuner count");
    assert_eq!(String::from_utf8(field(0x2A)).unwrap(), base, "base URL");
    assert_eq!(String::from_utf8(field(0x27)).unwrap(), format!("{base}/lineup.json"));
    running.stop().await;
}

/// Debian's `hdhomerun_config`, when installed (`apt-get install hdhomerun-config`).
fn hdhomerun_config() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("hdhomerun_config"))
        .find(|candidate| candidate.is_file())
}

async fn run(tool: &std::path::Path, args: &[&str]) -> String {
    let output = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::new(tool)
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("hdhomerun_config ends within 20 s")
    .expect("hdhomerun_config runs");
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hdhomerun_config_discovers_the_tuner_and_reads_its_model() {
    let Some(tool) = hdhomerun_config() else {
        eprintln!("skipped: hdhomerun_config is not installed (apt-get install hdhomerun-config)");
        return;
    };
    let demo = demo().await;
    // hdhomerun_config only talks to port 65001.
    let config = config_for(
        &demo,
        &[
            ("hdhr.discovery_listen", "127.0.0.1:65001"),
            ("hdhr.device_id", "105404BE"),
        ],
    );
    let (running, _) = start_app(&config).await;
    assert!(
        running.hdhr_discovery_addr().is_some(),
        "discovery runs (is UDP 65001 on 127.0.0.1 taken?)"
    );
    let found = run(&tool, &["discover", "127.0.0.1"]).await;
    assert!(
        found.contains("hdhomerun device 105404BE found at 127.0.0.1"),
        "{found}"
    );
    let model = run(&tool, &["127.0.0.1", "get", "/sys/model"]).await;
    assert_eq!(model.trim(), "hdhomeruntc_atsc", "{model}");
    let hwmodel = run(&tool, &["127.0.0.1", "get", "/sys/hwmodel"]).await;
    assert_eq!(hwmodel.trim(), "HDTC-2US", "{hwmodel}");
    // Tuner state is not emulated; the tool prints the device's error.
    let unknown = run(&tool, &["127.0.0.1", "get", "/tuner0/channel"]).await;
    assert_eq!(unknown.trim(), "ERROR: unknown getset variable", "{unknown}");
    running.stop().await;
}

/// `get /sys/model` over a fresh control connection; `None` when the connection is closed
/// without an answer.
async fn get_model(addr: std::net::SocketAddr) -> Option<Vec<u8>> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = b"/sys/model\0";
    let mut payload = vec![0x03, name.len() as u8];
    payload.extend_from_slice(name);
    stream.write_all(&seal(0x0004, &payload)).await.ok()?;
    let mut reply = vec![0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut reply))
        .await
        .expect("an answer or a close within 5 s")
        .ok()?;
    (n > 0).then(|| reply[..n].to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_connections_are_bounded() {
    use tokio::io::AsyncReadExt as _;
    let demo = demo().await;
    let config = config_for(&demo, &[("hdhr.discovery_listen", "127.0.0.1:0")]);
    let (running, _) = start_app(&config).await;
    let control = running.hdhr_discovery_addr().expect("discovery runs");

    // Eight idle connections hold every slot: the ninth is closed unanswered.
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(tokio::net::TcpStream::connect(control).await.unwrap());
    }
    let mut ninth = tokio::net::TcpStream::connect(control).await.unwrap();
    let mut byte = [0u8; 1];
    let closed = tokio::time::timeout(Duration::from_secs(5), ninth.read(&mut byte))
        .await
        .expect("closed within 5 s");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");

    // One closes; its slot comes back once the server has seen it go.
    drop(held.pop());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let reply = loop {
        if let Some(reply) = get_model(control).await {
            break reply;
        }
        assert!(tokio::time::Instant::now() < deadline, "no slot came back within 5 s");
        tokio::task::yield_now().await;
    };
    assert_eq!(&reply[..2], [0x00, 0x05], "a get/set reply");
    assert!(reply.windows(16).any(|w| w == b"hdhomeruntc_atsc"));
    running.stop().await;
}
