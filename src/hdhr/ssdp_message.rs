//! SSDP messages, pure: parse an `M-SEARCH` datagram into what it searches for, and write the
//! unicast `HTTP/1.1 200 OK` answers (UPnP Device Architecture 1.0, §1.2.3).

use super::render::DEVICE_TYPE;

/// Largest datagram the responder reads; an M-SEARCH is a few hundred bytes.
pub(crate) const MAX_DATAGRAM: usize = 2048;
/// How long a control point may remember an answer.
const MAX_AGE_S: u32 = 1800;
const SERVER: &str = concat!("Linux/1.0 UPnP/1.0 xg2g/", env!("CARGO_PKG_VERSION"));

/// What an `M-SEARCH` asks for, among the targets this device answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SearchTarget {
    All,
    RootDevice,
    MediaServer,
    /// This device's own `uuid:…`.
    Device,
}

/// One answer: the search target it answers and the unique service name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub st: String,
    pub usn: String,
}

/// The target of a well-formed `M-SEARCH * HTTP/1.1` with `MAN: "ssdp:discover"`, if this
/// device (whose UDN is `udn`) answers it; `None` for anything else (NOTIFY, answers of other
/// devices, other targets, junk, oversized packets).
pub(crate) fn parse_search(datagram: &[u8], udn: &str) -> Option<SearchTarget> {
    if datagram.len() > MAX_DATAGRAM {
        return None;
    }
    let mut headers = [httparse::EMPTY_HEADER; 24];
    let mut request = httparse::Request::new(&mut headers);
    if !matches!(request.parse(datagram), Ok(httparse::Status::Complete(_))) {
        return None;
    }
    if request.method != Some("M-SEARCH") || request.path != Some("*") {
        return None;
    }
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
            .map(str::trim)
    };
    if header("MAN")? != "\"ssdp:discover\"" {
        return None;
    }
    let st = header("ST")?;
    if st == "ssdp:all" {
        Some(SearchTarget::All)
    } else if st == "upnp:rootdevice" {
        Some(SearchTarget::RootDevice)
    } else if st == DEVICE_TYPE {
        Some(SearchTarget::MediaServer)
    } else if st.eq_ignore_ascii_case(udn) {
        Some(SearchTarget::Device)
    } else {
        None
    }
}

/// The answers to `target`: one per advertised target, three for `ssdp:all`.
pub(crate) fn answers(target: &SearchTarget, udn: &str) -> Vec<Answer> {
    let root = || Answer {
        st: "upnp:rootdevice".to_owned(),
        usn: format!("{udn}::upnp:rootdevice"),
    };
    let device = || Answer {
        st: udn.to_owned(),
        usn: udn.to_owned(),
    };
    let media_server = || Answer {
        st: DEVICE_TYPE.to_owned(),
        usn: format!("{udn}::{DEVICE_TYPE}"),
    };
    match target {
        SearchTarget::All => vec![root(), device(), media_server()],
        SearchTarget::RootDevice => vec![root()],
        SearchTarget::MediaServer => vec![media_server()],
        SearchTarget::Device => vec![device()],
    }
}

/// The datagram of one answer; `location` is the device.xml URL.
pub(crate) fn render_answer(answer: &Answer, location: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\n\
         CACHE-CONTROL: max-age={MAX_AGE_S}\r\n\
         EXT:\r\n\
         LOCATION: {location}\r\n\
         SERVER: {SERVER}\r\n\
         ST: {st}\r\n\
         USN: {usn}\r\n\
         \r\n",
        st = answer.st,
        usn = answer.usn,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const UDN: &str = "uuid:10439efd-1234-5abc-8def-0123456789ab";

    fn search(st: &str) -> Vec<u8> {
        format!(
            "M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 2\r\nST: {st}\r\n\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn answers_the_targets_it_advertises() {
        assert_eq!(parse_search(&search("ssdp:all"), UDN), Some(SearchTarget::All));
        assert_eq!(
            parse_search(&search("upnp:rootdevice"), UDN),
            Some(SearchTarget::RootDevice)
        );
        assert_eq!(
            parse_search(&search("urn:schemas-upnp-org:device:MediaServer:1"), UDN),
            Some(SearchTarget::MediaServer)
        );
        assert_eq!(parse_search(&search(UDN), UDN), Some(SearchTarget::Device));
        assert_eq!(
            parse_search(&search(&UDN.to_uppercase().replace("UUID", "uuid")), UDN),
            Some(SearchTarget::Device)
        );
    }

    #[test]
    fn header_names_are_case_insensitive() {
        let datagram = b"M-SEARCH * HTTP/1.1\r\nhost: 239.255.255.250:1900\r\nman: \"ssdp:discover\"\r\nst: ssdp:all\r\nmx: 1\r\n\r\n";
        assert_eq!(parse_search(datagram, UDN), Some(SearchTarget::All));
    }

    #[test]
    fn ignores_everything_else() {
        let other_targets = [
            "urn:schemas-upnp-org:device:MediaRenderer:1",
            "urn:dial-multiscreen-org:service:dial:1",
            "uuid:00000000-0000-0000-0000-000000000000",
            "",
        ];
        for st in other_targets {
            assert_eq!(parse_search(&search(st), UDN), None, "{st:?}");
        }
        let no_man = b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nST: ssdp:all\r\n\r\n";
        assert_eq!(parse_search(no_man, UDN), None);
        let unquoted_man = b"M-SEARCH * HTTP/1.1\r\nMAN: ssdp:discover\r\nST: ssdp:all\r\n\r\n";
        assert_eq!(parse_search(unquoted_man, UDN), None);
        let notify =
            b"NOTIFY * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nNT: upnp:rootdevice\r\nNTS: ssdp:alive\r\n\r\n";
        assert_eq!(parse_search(notify, UDN), None);
        let answer = render_answer(&answers(&SearchTarget::RootDevice, UDN)[0], "http://h/device.xml");
        assert_eq!(parse_search(answer.as_bytes(), UDN), None);
        let truncated = b"M-SEARCH * HTTP/1.1\r\nMAN: \"ssdp:discover\"\r\nST: ssdp:all\r\n";
        assert_eq!(parse_search(truncated, UDN), None);
        assert_eq!(parse_search(&[0xFF; 64], UDN), None);
        let mut huge = search("ssdp:all");
        huge.extend(std::iter::repeat_n(b'x', MAX_DATAGRAM));
        assert_eq!(parse_search(&huge, UDN), None);
    }

    #[test]
    fn ssdp_all_gets_one_answer_per_target() {
        let all = answers(&SearchTarget::All, UDN);
        let pairs: Vec<(&str, &str)> = all.iter().map(|a| (a.st.as_str(), a.usn.as_str())).collect();
        assert_eq!(
            pairs,
            [
                (
                    "upnp:rootdevice",
                    "uuid:10439efd-1234-5abc-8def-0123456789ab::upnp:rootdevice"
                ),
                (UDN, UDN),
                (
                    "urn:schemas-upnp-org:device:MediaServer:1",
                    "uuid:10439efd-1234-5abc-8def-0123456789ab::urn:schemas-upnp-org:device:MediaServer:1"
                ),
            ]
        );
    }

    #[test]
    fn answer_is_a_parsable_http_response() {
        let text = render_answer(
            &answers(&SearchTarget::MediaServer, UDN)[0],
            "http://10.0.0.2:8080/device.xml",
        );
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut response = httparse::Response::new(&mut headers);
        assert_eq!(
            response.parse(text.as_bytes()),
            Ok(httparse::Status::Complete(text.len()))
        );
        assert_eq!(response.code, Some(200));
        let get = |name: &str| {
            response
                .headers
                .iter()
                .find(|h| h.name == name)
                .map(|h| std::str::from_utf8(h.value).unwrap())
        };
        assert_eq!(get("CACHE-CONTROL"), Some("max-age=1800"));
        assert_eq!(get("EXT"), Some(""));
        assert_eq!(get("LOCATION"), Some("http://10.0.0.2:8080/device.xml"));
        assert_eq!(get("ST"), Some("urn:schemas-upnp-org:device:MediaServer:1"));
        assert!(get("SERVER").unwrap().contains("UPnP/1.0"));
        assert!(get("USN").unwrap().starts_with(UDN));
    }
}
