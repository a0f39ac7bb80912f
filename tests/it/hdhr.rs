//! The HDHomeRun tuner as Plex sees it: the JSON documents with their field names and types,
//! device.xml, the device id check, and SSDP discovery on loopback.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::net::UdpSocket;
use xg2g::config::{self, Override, Requirements, Sources};

use crate::common::{client, config_for, demo, get_text, ready, start_app};

/// libhdhomerun's `hdhomerun_discover_validate_device_id`, written out again here so the test
/// does not trust the code it checks.
fn libhdhomerun_valid(id: u32) -> bool {
    const LOOKUP: [u32; 16] = [
        0xA, 0x5, 0xF, 0x6, 0x7, 0xC, 0x1, 0xB, 0x9, 0x2, 0x8, 0xD, 0x4, 0x3, 0xE, 0x0,
    ];
    let mut checksum = 0;
    checksum ^= LOOKUP[((id >> 28) & 0x0F) as usize];
    checksum ^= (id >> 24) & 0x0F;
    checksum ^= LOOKUP[((id >> 20) & 0x0F) as usize];
    checksum ^= (id >> 16) & 0x0F;
    checksum ^= LOOKUP[((id >> 12) & 0x0F) as usize];
    checksum ^= (id >> 8) & 0x0F;
    checksum ^= LOOKUP[((id >> 4) & 0x0F) as usize];
    checksum ^= id & 0x0F;
    checksum == 0
}

async fn get_json(url: &str) -> (reqwest::StatusCode, String, Value) {
    let response = client().get(url).send().await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, content_type, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_json_has_the_fields_and_types_plex_expects() {
    let demo = demo().await;
    let config = config_for(
        &demo,
        &[
            ("hdhr.device_id", "10439EFD"),
            ("hdhr.friendly_name", "Wohnzimmer Sat"),
            ("hdhr.tuner_count", "2"),
        ],
    );
    let (running, base) = start_app(&config).await;
    let (status, content_type, body) = get_json(&format!("{base}/discover.json")).await;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("application/json"), "{content_type}");
    let object = body.as_object().expect("discover.json is an object");
    let keys: BTreeSet<&str> = object.keys().map(String::as_str).collect();
    let expected: BTreeSet<&str> = [
        "FriendlyName",
        "ModelNumber",
        "FirmwareName",
        "FirmwareVersion",
        "DeviceID",
        "DeviceAuth",
        "BaseURL",
        "LineupURL",
        "TunerCount",
    ]
    .into();
    assert_eq!(keys, expected);
    for (key, value) in object {
        if key == "TunerCount" {
            assert!(value.is_u64(), "TunerCount is a JSON number: {value}");
        } else {
            assert!(value.is_string(), "{key} is a JSON string: {value}");
        }
    }
    assert_eq!(body["FriendlyName"], "Wohnzimmer Sat");
    assert_eq!(body["ModelNumber"], "HDTC-2US");
    assert_eq!(body["FirmwareName"], "hdhomeruntc_atsc");
    assert_eq!(body["DeviceID"], "10439EFD");
    assert_eq!(body["TunerCount"], 2);
    assert_eq!(body["BaseURL"], base.as_str());
    assert_eq!(body["LineupURL"], format!("{base}/lineup.json"));
    assert!(!body["DeviceAuth"].as_str().unwrap().is_empty());

    // The URLs Plex follows must work.
    let (status, _, _) = get_json(body["LineupURL"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base_url_follows_public_url_when_set() {
    let demo = demo().await;
    let config = config_for(&demo, &[("public_url", "https://tv.example.org/")]);
    let (running, base) = start_app(&config).await;
    let (_, _, body) = get_json(&format!("{base}/discover.json")).await;
    assert_eq!(body["BaseURL"], "https://tv.example.org");
    assert_eq!(body["LineupURL"], "https://tv.example.org/lineup.json");
    ready(&running).await;
    let (_, _, lineup) = get_json(&format!("{base}/lineup.json")).await;
    let url = lineup[0]["URL"].as_str().unwrap();
    assert!(url.starts_with("https://tv.example.org/stream/"), "{url}");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lineup_numbers_match_the_catalog_and_urls_point_at_the_ts_route() {
    let demo = demo().await;
    let (running, base) = start_app(&config_for(&demo, &[("hdhr.profile", "aac")])).await;
    ready(&running).await;
    let catalog = running.catalog().snapshot().catalog.expect("catalog loaded");
    let (status, content_type, body) = get_json(&format!("{base}/lineup.json")).await;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("application/json"), "{content_type}");
    let entries = body.as_array().expect("lineup.json is an array");
    assert_eq!(entries.len(), catalog.channels.len());
    assert_eq!(entries.len(), 5);

    // The M3U's tvg-chno per stream URL, to check the guide numbers against the playlist.
    let m3u = get_text(format!("{base}/playlist.m3u")).await;
    let lines: Vec<&str> = m3u.lines().collect();
    for (entry, channel) in entries.iter().zip(&catalog.channels) {
        for key in ["GuideNumber", "GuideName", "URL"] {
            assert!(entry[key].is_string(), "{key} is a JSON string: {entry}");
        }
        assert_eq!(entry["GuideNumber"], channel.number.to_string());
        assert_eq!(entry["GuideName"], channel.name.as_str());
        let stream = format!("{base}/stream/{}", channel.service_ref);
        assert_eq!(entry["URL"], format!("{stream}?profile=aac"));
        let extinf = lines
            .windows(2)
            .find(|pair| pair[1] == stream)
            .map(|pair| pair[0])
            .unwrap_or_else(|| panic!("{stream} in the M3U"));
        assert!(extinf.contains(&format!("tvg-chno=\"{}\"", channel.number)), "{extinf}");
    }
    let names: Vec<&str> = entries.iter().map(|e| e["GuideName"].as_str().unwrap()).collect();
    assert!(names.contains(&"Bayerisches Fernsehen Süd"), "{names:?}");
    assert!(names.contains(&"Ö1"), "{names:?}");
    let numbers: BTreeSet<&str> = entries.iter().map(|e| e["GuideNumber"].as_str().unwrap()).collect();
    assert_eq!(numbers.len(), entries.len(), "guide numbers are unique");

    // Plex's guide: /xmltv.xml?ids=number names the same channels, with ids made of the guide
    // number and the number itself as the second display name.
    let xmltv = get_text(format!("{base}/xmltv.xml?ids=number")).await;
    // XMLTV files carry a DOCTYPE for xmltv.dtd.
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    let doc = roxmltree::Document::parse_with_options(&xmltv, options).unwrap_or_else(|e| panic!("XMLTV parses: {e}"));
    let guide_channels: Vec<(String, String, String)> = doc
        .root_element()
        .children()
        .filter(|n| n.has_tag_name("channel"))
        .map(|n| {
            let names: Vec<&str> = n
                .children()
                .filter(|c| c.has_tag_name("display-name"))
                .filter_map(|c| c.text())
                .collect();
            assert_eq!(names.len(), 2, "name and number");
            (
                n.attribute("id").unwrap_or_default().to_owned(),
                names[1].to_owned(),
                names[0].to_owned(),
            )
        })
        .collect();
    let lineup_channels: Vec<(String, String, String)> = entries
        .iter()
        .map(|e| {
            let field = |k: &str| e[k].as_str().unwrap().to_owned();
            let number = field("GuideNumber");
            (format!("{number}.xg2g"), number, field("GuideName"))
        })
        .collect();
    assert_eq!(guide_channels, lineup_channels);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lineup_status_device_xml_and_lineup_post() {
    let demo = demo().await;
    let config = config_for(
        &demo,
        &[("hdhr.device_id", "105404BE"), ("hdhr.friendly_name", "Küche & Bad")],
    );
    let (running, base) = start_app(&config).await;
    let http = client();

    let (status, _, body) = get_json(&format!("{base}/lineup_status.json")).await;
    assert_eq!(status, 200);
    assert_eq!(body["ScanInProgress"], 0);
    assert_eq!(body["ScanPossible"], 1);
    assert!(body["ScanInProgress"].is_u64() && body["ScanPossible"].is_u64());
    assert_eq!(body["Source"], "Cable");
    assert_eq!(body["SourceList"], serde_json::json!(["Cable"]));

    let response = http.get(format!("{base}/device.xml")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.contains("xml"), "{content_type}");
    let xml = response.text().await.unwrap();
    let device = parse_device_xml(&xml);
    assert_eq!(device.device_type, "urn:schemas-upnp-org:device:MediaServer:1");
    assert_eq!(device.friendly_name, "Küche & Bad");
    assert_eq!(device.serial_number, "105404BE");
    assert_eq!(device.model_name, "HDTC-2US");
    assert!(!device.manufacturer.is_empty());
    assert!(device.udn.starts_with("uuid:105404be-"), "{}", device.udn);

    for scan in ["start", "abort"] {
        let response = http
            .post(format!("{base}/lineup.post?scan={scan}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "scan={scan}");
    }
    assert_eq!(
        http.post(format!("{base}/lineup.post")).send().await.unwrap().status(),
        200
    );
    let bad = http
        .post(format!("{base}/lineup.post?scan=later"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid-parameter");
    running.stop().await;
}

/// What Plex's and Channels' channel scans send: a scan with a source, the found line-up while
/// it "runs", and the status after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_media_server_scan_finds_the_lineup() {
    let demo = demo().await;
    let (running, base) = start_app(&config_for(&demo, &[])).await;
    ready(&running).await;
    let http = client();
    let scan = http
        .post(format!("{base}/lineup.post?scan=start&source=Cable"))
        .send()
        .await
        .unwrap();
    assert_eq!(scan.status(), 200);
    let (status, _, found) = get_json(&format!("{base}/lineup.json?show=found")).await;
    assert_eq!(status, 200);
    let (_, _, all) = get_json(&format!("{base}/lineup.json")).await;
    assert_eq!(found, all, "every channel counts as found");
    assert_eq!(found.as_array().unwrap().len(), 5);
    let (_, _, state) = get_json(&format!("{base}/lineup_status.json")).await;
    assert_eq!(state["ScanInProgress"], 0, "the scan is over at once");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switched_off_the_tuner_routes_are_not_there() {
    let demo = demo().await;
    let (running, base) = start_app(&config_for(
        &demo,
        &[("hdhr.enabled", "false"), ("hdhr.ssdp_listen", "127.0.0.1:0")],
    ))
    .await;
    for path in ["discover.json", "lineup.json", "lineup_status.json", "device.xml"] {
        let (status, _, body) = get_json(&format!("{base}/{path}")).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(body["error"]["code"], "not-found", "{path}");
    }
    assert_eq!(running.ssdp_addr(), None, "no SSDP without the tuner");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn derived_device_id_passes_the_check_and_is_stable() {
    let demo = demo().await;
    let config = config_for(&demo, &[]);
    assert_eq!(config.hdhr.device_id, None);
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (running, base) = start_app(&config).await;
        let (_, _, body) = get_json(&format!("{base}/discover.json")).await;
        ids.push(body["DeviceID"].as_str().unwrap().to_owned());
        running.stop().await;
    }
    assert_eq!(ids[0], ids[1], "the same host gets the same id");
    let id = &ids[0];
    assert_eq!(id.len(), 8, "{id}");
    assert!(
        id.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase()),
        "{id}"
    );
    assert!(libhdhomerun_valid(u32::from_str_radix(id, 16).unwrap()), "{id}");
}

#[test]
fn configured_device_ids_are_checked() {
    assert!(libhdhomerun_valid(0x10439EFD));
    assert!(!libhdhomerun_valid(0x10439EFE));
    let load = |id: &str| {
        let no_env = |_: &str| None;
        let sources = Sources {
            file: None,
            env: &no_env,
            overrides: vec![Override::new("hdhr.device_id", id, "--test")],
        };
        config::load(&sources, Requirements::None).map(|c| c.config.hdhr.device_id)
    };
    assert_eq!(load("10439EFD").unwrap(), Some("10439EFD".to_owned()));
    assert_eq!(load("").unwrap(), None);
    let wrong_digit = load("10439EFE").unwrap_err().to_string();
    assert!(wrong_digit.contains("hdhr.device_id"), "{wrong_digit}");
    assert!(
        wrong_digit.contains("fails the HDHomeRun check digit (Plex ignores such a tuner); 10439EFD would pass"),
        "{wrong_digit}"
    );
    let shape = load("10439EF").unwrap_err().to_string();
    assert!(shape.contains("must be 8 hexadecimal digits"), "{shape}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssdp_is_off_when_http_listens_on_loopback_only() {
    let demo = demo().await;
    // The default SSDP address is every interface on port 1900; HTTP here is loopback only.
    let config = config_for(&demo, &[]);
    assert!(config.hdhr.ssdp);
    assert!(config.hdhr.ssdp_listen.ip().is_unspecified());
    let (running, _) = start_app(&config).await;
    assert_eq!(running.ssdp_addr(), None);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssdp_answers_m_search_on_loopback_with_a_working_location() {
    let demo = demo().await;
    let config = config_for(
        &demo,
        &[("hdhr.ssdp_listen", "127.0.0.1:0"), ("hdhr.device_id", "1013FADA")],
    );
    let (running, base) = start_app(&config).await;
    let ssdp = running.ssdp_addr().expect("SSDP responder runs");
    assert!(ssdp.ip().is_loopback() && ssdp.port() != 0, "{ssdp}");
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();

    // Searches for other devices and NOTIFYs get no answer: send them, then a search for the
    // device type; the first answer that arrives must be for that search (an answer to
    // anything before it would arrive first, and "ssdp:all"-like answers start with the root).
    send_search(&socket, ssdp, "urn:schemas-upnp-org:device:MediaRenderer:1").await;
    send_search(&socket, ssdp, "uuid:00000000-0000-0000-0000-000000000000").await;
    socket
        .send_to(
            b"NOTIFY * HTTP/1.1\r\nNT: upnp:rootdevice\r\nNTS: ssdp:alive\r\n\r\n",
            ssdp,
        )
        .await
        .unwrap();
    send_search(&socket, ssdp, "urn:schemas-upnp-org:device:MediaServer:1").await;
    let media_server = receive(&socket).await;
    assert_eq!(media_server.header("ST"), "urn:schemas-upnp-org:device:MediaServer:1");

    send_search(&socket, ssdp, "upnp:rootdevice").await;
    let root = receive(&socket).await;
    assert_eq!(root.status, 200);
    assert_eq!(root.header("ST"), "upnp:rootdevice");
    assert_eq!(root.header("CACHE-CONTROL"), "max-age=1800");
    assert_eq!(root.header("EXT"), "");
    assert!(root.header("SERVER").contains("UPnP/1.0"));
    assert_eq!(root.header("LOCATION"), format!("{base}/device.xml"));
    let udn = root
        .header("USN")
        .strip_suffix("::upnp:rootdevice")
        .expect("USN is uuid::upnp:rootdevice")
        .to_owned();
    assert!(udn.starts_with("uuid:1013fada-"), "{udn}");

    // ssdp:all: one answer per advertised target.
    send_search(&socket, ssdp, "ssdp:all").await;
    let mut targets = BTreeSet::new();
    for _ in 0..3 {
        let answer = receive(&socket).await;
        assert_eq!(answer.header("LOCATION"), format!("{base}/device.xml"));
        assert!(answer.header("USN").starts_with(&udn));
        targets.insert(answer.header("ST"));
    }
    let expected: BTreeSet<String> = [
        "upnp:rootdevice".to_owned(),
        "urn:schemas-upnp-org:device:MediaServer:1".to_owned(),
        udn.clone(),
    ]
    .into();
    assert_eq!(targets, expected);

    // The uuid: one answer, and the device type's USN names the same device.
    assert_eq!(
        media_server.header("USN"),
        format!("{udn}::urn:schemas-upnp-org:device:MediaServer:1")
    );
    send_search(&socket, ssdp, &udn).await;
    let by_uuid = receive(&socket).await;
    assert_eq!(by_uuid.header("ST"), udn);
    assert_eq!(by_uuid.header("USN"), udn);

    // LOCATION leads to the device description with the same UDN.
    let xml = get_text(root.header("LOCATION")).await;
    let device = parse_device_xml(&xml);
    assert_eq!(device.udn, udn);
    assert_eq!(device.serial_number, "1013FADA");
    running.stop().await;

    // After stop the responder is gone: a search gets no answer.
    send_search(&socket, ssdp, "ssdp:all").await;
    let mut buf = [0u8; 2048];
    let late = tokio::time::timeout(Duration::from_millis(300), socket.recv_from(&mut buf)).await;
    assert!(
        !matches!(late, Ok(Ok(_))),
        "no answer after stop: {:?}",
        late.map(|r| r.map(|(n, _)| String::from_utf8_lossy(&buf[..n]).into_owned()))
    );
}

async fn send_search(socket: &UdpSocket, to: SocketAddr, st: &str) {
    let message = format!(
        "M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\nST: {st}\r\n\r\n"
    );
    socket.send_to(message.as_bytes(), to).await.unwrap();
}

struct SsdpAnswer {
    status: u16,
    headers: Vec<(String, String)>,
}

impl SsdpAnswer {
    fn header(&self, name: &str) -> String {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("header {name} in {:?}", self.headers))
    }
}

/// One answer datagram, parsed as an HTTP response by httparse; bounded in time.
async fn receive(socket: &UdpSocket) -> SsdpAnswer {
    let mut buf = [0u8; 2048];
    let (len, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
        .await
        .expect("an SSDP answer within 5 s")
        .unwrap();
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut response = httparse::Response::new(&mut headers);
    let status = response.parse(&buf[..len]).expect("an HTTP response");
    assert!(status.is_complete(), "{:?}", String::from_utf8_lossy(&buf[..len]));
    assert_eq!(response.version, Some(1), "HTTP/1.1");
    SsdpAnswer {
        status: response.code.unwrap(),
        headers: response
            .headers
            .iter()
            .map(|h| (h.name.to_owned(), String::from_utf8(h.value.to_vec()).unwrap()))
            .collect(),
    }
}

struct DeviceDescription {
    device_type: String,
    friendly_name: String,
    manufacturer: String,
    model_name: String,
    serial_number: String,
    udn: String,
}

/// device.xml read with an XML parser, in the UPnP device namespace.
fn parse_device_xml(xml: &str) -> DeviceDescription {
    const NS: &str = "urn:schemas-upnp-org:device-1-0";
    let doc = roxmltree::Document::parse(xml).unwrap_or_else(|e| panic!("device.xml parses: {e}\n{xml}"));
    let root = doc.root_element();
    assert!(root.has_tag_name((NS, "root")), "{xml}");
    let device = root
        .children()
        .find(|n| n.has_tag_name((NS, "device")))
        .expect("<device>");
    let text = |name: &str| {
        device
            .children()
            .find(|n| n.has_tag_name((NS, name)))
            .and_then(|n| n.text())
            .unwrap_or_else(|| panic!("<{name}> in {xml}"))
            .to_owned()
    };
    DeviceDescription {
        device_type: text("deviceType"),
        friendly_name: text("friendlyName"),
        manufacturer: text("manufacturer"),
        model_name: text("modelName"),
        serial_number: text("serialNumber"),
        udn: text("UDN"),
    }
}
