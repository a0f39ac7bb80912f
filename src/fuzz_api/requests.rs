//! HTTP requests against the routes, as a client could send them.

use super::Input;

/// What clients and the LAN send: HDHomeRun discovery and control frames, SSDP `M-SEARCH`
/// datagrams, signed-URL queries and forwarding headers. Frames are sealed with a valid CRC so
/// that the field parsers are reached; a control request's reply parses back to its name; an
/// SSDP answer is a complete HTTP response; a signature (URL or sign-in cookie) holds for what
/// it signed until it expires, and no fuzzed one is granted; a device-token file that loads
/// writes back to the same records; a peer that is not a trusted proxy is the client,
/// whatever its headers say.
pub fn requests(data: &[u8]) {
    use crate::hdhr;
    let mut input = Input(data);
    let kind = input.u8();
    let rest = input.rest();
    match kind % 4 {
        0 => {
            let _ = hdhr::Frame::parse(rest).map(|(_, used)| assert!(used <= rest.len()));
            let payload = &rest[..rest.len().min(hdhr::MAX_FRAME)];
            let sealed = hdhr::seal(u16::from(kind), payload);
            let (frame, used) = hdhr::Frame::parse(&sealed).expect("a sealed frame parses");
            assert_eq!(
                (frame.kind, frame.payload, used),
                (u16::from(kind), payload, sealed.len())
            );
            if let Ok(request) = hdhr::DiscoverRequest::parse(&frame) {
                let _ = request.wants(0x1043_9EFD);
            }
            if let Ok(request) = hdhr::GetSetRequest::parse(&frame) {
                let value = request.value.clone().unwrap_or_default();
                let reply = hdhr::getset_reply(&request.name, Ok(&value));
                let (frame, _) = hdhr::Frame::parse(&reply).expect("a reply parses");
                assert_eq!(frame.kind, hdhr::TYPE_GETSET_RPY);
                let back = hdhr::GetSetRequest::parse(&frame).expect("a reply's fields parse");
                assert_eq!((back.name, back.value), (request.name, Some(value)));
            }
        }
        1 => {
            let udn = "uuid:10439efd-0000-4000-8000-000000000000";
            if let Some(target) = hdhr::parse_ssdp_search(rest, udn) {
                let answers = hdhr::ssdp_answers(&target, udn);
                assert!(!answers.is_empty());
                for answer in answers {
                    let text = hdhr::render_answer(&answer, "http://tv.local:8080/device.xml");
                    let mut headers = [httparse::EMPTY_HEADER; 16];
                    let mut response = httparse::Response::new(&mut headers);
                    assert!(
                        matches!(response.parse(text.as_bytes()), Ok(httparse::Status::Complete(n)) if n == text.len())
                    );
                }
            }
        }
        2 => {
            let text = String::from_utf8_lossy(rest);
            let (path, query) = text.split_once('?').unwrap_or((&text, ""));
            let keys = crate::auth::KeySet::parse(["k1:0123456789abcdef0123456789abcdef"]).expect("a valid key");
            let now = 1_800_000_000;
            assert!(
                crate::auth::verify(&keys, path, query, now).is_err(),
                "a fuzzed query is not granted"
            );
            let scope = crate::auth::Scope::of_path(path);
            let signed = crate::auth::sign(keys.current(), &scope, now + 60);
            let grant = crate::auth::verify(&keys, path, &signed, now).expect("its own signature holds");
            assert_eq!((grant.scope, grant.expires), (scope, now + 60));
            assert!(
                crate::auth::verify(&keys, path, &signed, now + 60).is_err(),
                "until it expires"
            );
            let _ = crate::auth::KeySet::parse(crate::auth::keys::file_entries(&text));
            // A sign-in cookie: no fuzzed one passes; a real one holds until it expires and
            // passes for no URL signature, nor a URL signature for one.
            assert!(crate::auth::verify_session(&keys, &text, now).is_err());
            let cookie = crate::auth::sign_session(keys.current(), now + 60);
            assert_eq!(crate::auth::verify_session(&keys, &cookie, now), Ok(now + 60));
            assert!(crate::auth::verify_session(&keys, &signed, now).is_err());
            assert!(crate::auth::verify(&keys, path, &cookie, now).is_err());
            // Device tokens: a fuzzed token is no stored one; a token file that loads writes
            // back to text that loads to the same records.
            let _ = crate::auth::tokens::from_query(query);
            let set = crate::auth::tokens::TokenSet::parse(&text);
            if let Ok(set) = &set {
                let again = crate::auth::tokens::TokenSet::parse(&set.to_json()).expect("written tokens load");
                assert_eq!(again.records(), set.records());
                assert_eq!(set.index().lookup(&text), None);
            }
        }
        _ => {
            let text = String::from_utf8_lossy(rest);
            let mut parts = text.split('\n');
            let proxies: Vec<String> = parts.next().unwrap_or_default().split(' ').map(str::to_owned).collect();
            let proxies = crate::http::TrustedProxies::parse(&proxies).unwrap_or_default();
            let xff: Vec<&str> = parts.next().map(|l| l.split('|').collect()).unwrap_or_default();
            let forwarded: Vec<&str> = parts.collect();
            for peer in ["10.0.0.1", "192.0.2.7", "::ffff:10.0.0.1", "2001:db8::1"] {
                let peer: std::net::IpAddr = peer.parse().expect("an address");
                let _ = proxies.client_ip(peer, &xff, &forwarded);
                let untrusted = crate::http::TrustedProxies::default().client_ip(peer, &xff, &forwarded);
                assert_eq!(
                    untrusted,
                    peer.to_canonical(),
                    "headers of an untrusted peer are ignored"
                );
            }
        }
    }
}
