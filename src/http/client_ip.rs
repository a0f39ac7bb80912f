//! Who the client is, for per-client rate limits: the peer address, or — only when the peer is
//! a trusted proxy — the address the proxies' `X-Forwarded-For` / `Forwarded` headers name.
//! Also the one admission call the session-creating routes make.
//!
//! Forwarding headers are walked from the right (the hop our peer added) to the left, skipping
//! trusted proxies; the first untrusted address is the client. Anything a client wrote itself
//! sits to the left of that and is never reached, so it cannot pick its own address. An entry
//! that is not an address (`unknown`, an obfuscated `_name`, garbage) ends the walk at the last
//! address reached. `X-Forwarded-For` is read when present (nginx, Traefik, Caddy, HAProxy and
//! ingress-nginx write it); `Forwarded` (RFC 7239) only without it, so a client-sent
//! `Forwarded` header cannot override what a proxy appended to `X-Forwarded-For`. A proxy that
//! writes only `Forwarded` must drop a client's `X-Forwarded-For`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use actix_web::HttpRequest;
use ipnet::IpNet;

use super::AppState;
use super::error::HttpError;
use crate::limits::Start;
use crate::pipeline::Mode;
use crate::session::SessionKey;

/// The proxies whose forwarding headers are believed (`rate_limit.trusted_proxies`).
#[derive(Debug, Clone, Default)]
pub(crate) struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    /// From CIDR blocks or single addresses; `Err` names the first entry that is neither
    /// (the config check has already refused those, so this is a second line).
    pub(crate) fn parse(entries: &[String]) -> Result<Self, String> {
        let nets = entries
            .iter()
            .map(|entry| {
                let text = entry.trim();
                text.parse::<IpNet>()
                    .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
                    .map(canonical_net)
                    .map_err(|_| format!("not a CIDR block or address: {entry:?}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { nets })
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// The client of `req`: see the module docs. A request without a peer address (none over
    /// TCP) counts as `0.0.0.0`.
    pub(crate) fn client_of(&self, req: &HttpRequest) -> IpAddr {
        let peer = req
            .peer_addr()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |addr| addr.ip());
        let values = |name: &str| -> Vec<&str> {
            req.headers()
                .get_all(name)
                .filter_map(|value| value.to_str().ok())
                .collect()
        };
        self.client_ip(peer, &values("x-forwarded-for"), &values("forwarded"))
    }

    /// The client, from the peer address and the values of every `X-Forwarded-For` and
    /// `Forwarded` header in order.
    pub(crate) fn client_ip(&self, peer: IpAddr, x_forwarded_for: &[&str], forwarded: &[&str]) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.is_trusted(peer) {
            return peer;
        }
        let hops: Vec<String> = if x_forwarded_for.is_empty() {
            forwarded_for(forwarded)
        } else {
            x_forwarded_for
                .iter()
                .flat_map(|value| value.split(','))
                .map(str::trim)
                .filter(|hop| !hop.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let mut client = peer;
        for hop in hops.iter().rev() {
            let Some(ip) = parse_node(hop) else { break };
            client = ip;
            if !self.is_trusted(ip) {
                break;
            }
        }
        client
    }
}

/// An IPv4 network written in its IPv6-mapped form (`::ffff:10.0.0.0/104`) as IPv4
/// (`10.0.0.0/8`), so that it matches the canonical addresses compared against it.
fn canonical_net(net: IpNet) -> IpNet {
    match (net.network(), net.network().to_canonical()) {
        (IpAddr::V6(_), v4 @ IpAddr::V4(_)) => IpNet::new(v4, net.prefix_len().saturating_sub(96)).unwrap_or(net),
        _ => net,
    }
}

/// A node as proxies write it: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`,
/// `[2001:db8::1]`, `[2001:db8::1]:4711`, optionally in quotes. `None` for anything else.
fn parse_node(node: &str) -> Option<IpAddr> {
    let node = node.trim();
    let node = node.strip_prefix('"').and_then(|n| n.strip_suffix('"')).unwrap_or(node);
    if let Some(rest) = node.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        return host.parse::<Ipv6Addr>().ok().map(|ip| IpAddr::V6(ip).to_canonical());
    }
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    let (host, port) = node.rsplit_once(':')?;
    if !is_port(port) {
        return None;
    }
    host.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

/// A port number, or an obfuscated port (`_abc`, RFC 7239 §6.3).
fn is_port(port: &str) -> bool {
    let digits = port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok();
    let obfuscated = port.len() > 1
        && port.starts_with('_')
        && port[1..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    digits || obfuscated
}

/// The `for=` values of `Forwarded` headers (RFC 7239), left to right; an element without one
/// yields an empty value (which ends the walk: that hop did not say whom it forwarded for).
fn forwarded_for(values: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for value in values {
        for element in split_unquoted(value, ',') {
            if element.trim().is_empty() {
                continue;
            }
            let for_value = split_unquoted(&element, ';').into_iter().find_map(|pair| {
                let (name, value) = pair.split_once('=')?;
                name.trim().eq_ignore_ascii_case("for").then(|| unquote(value.trim()))
            });
            out.push(for_value.unwrap_or_default());
        }
    }
    out
}

/// Splits at `sep` outside quoted strings.
fn split_unquoted(text: &str, sep: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut quoted = false;
    let mut escaped = false;
    for c in text.chars() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            parts.push(String::new());
            continue;
        }
        parts.last_mut().expect("never empty").push(c);
    }
    parts
}

/// A token, or a quoted string without its quotes and escapes.
fn unquote(value: &str) -> String {
    let Some(inner) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) else {
        return value.to_owned();
    };
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' { chars.next().unwrap_or(c) } else { c });
    }
    out
}

/// Charges a request that would start the session for `key` to the limits
/// ([`crate::limits::admit`]); a request that joins a running session is free. Between this
/// check and the join a session may start or end: two first requests for one key may both be
/// charged, and a request may start a session uncharged right after the previous one ended.
/// Both are rare and bounded by one request.
pub(crate) async fn admit_new_session(
    state: &AppState,
    req: &HttpRequest,
    key: &SessionKey,
    mode: Mode,
) -> Result<(), HttpError> {
    if !state.admission.is_enabled() || state.streaming.registry.exists(key).await {
        return Ok(());
    }
    admit(state, req, &key.service_ref, Start::Session(mode.as_str())).await
}

/// Charges the limits for a receiver probe that comes before a new session (`auto` learning a
/// channel's codec); the session it leads to is not charged again.
pub(crate) async fn admit_probe(
    state: &AppState,
    req: &HttpRequest,
    service_ref: &crate::model::ServiceRef,
) -> Result<(), HttpError> {
    admit(state, req, service_ref, Start::Probe).await
}

/// Charges the limits for a thumbnail that is neither cached nor being made: its fetch opens a
/// receiver connection.
pub(crate) async fn admit_preview(
    state: &AppState,
    req: &HttpRequest,
    service_ref: &crate::model::ServiceRef,
) -> Result<(), HttpError> {
    admit(state, req, service_ref, Start::Preview).await
}

async fn admit(
    state: &AppState,
    req: &HttpRequest,
    service_ref: &crate::model::ServiceRef,
    start: Start,
) -> Result<(), HttpError> {
    let client = state.trusted_proxies.client_of(req);
    crate::limits::admit(&state.admission, &state.encoder_queue, client, service_ref, start)
        .await
        .map_err(HttpError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted(nets: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(&nets.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// The client for a peer and `X-Forwarded-For` values.
    fn xff(proxies: &TrustedProxies, peer: &str, values: &[&str]) -> IpAddr {
        proxies.client_ip(ip(peer), values, &[])
    }

    fn fwd(proxies: &TrustedProxies, peer: &str, values: &[&str]) -> IpAddr {
        proxies.client_ip(ip(peer), &[], values)
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_says() {
        let none = TrustedProxies::default();
        assert_eq!(xff(&none, "198.51.100.9", &["203.0.113.7"]), ip("198.51.100.9"));
        assert_eq!(fwd(&none, "198.51.100.9", &["for=203.0.113.7"]), ip("198.51.100.9"));
        let lan = trusted(&["10.0.0.0/8"]);
        assert_eq!(xff(&lan, "198.51.100.9", &["10.0.0.5"]), ip("198.51.100.9"));
        assert_eq!(xff(&lan, "2001:db8::9", &["203.0.113.7"]), ip("2001:db8::9"));
    }

    #[test]
    fn a_trusted_proxy_names_the_client() {
        let lan = trusted(&["10.0.0.0/8", "fd00::/8"]);
        assert_eq!(xff(&lan, "10.1.2.3", &["203.0.113.7"]), ip("203.0.113.7"));
        assert_eq!(xff(&lan, "fd00::1", &["2001:db8::7"]), ip("2001:db8::7"));
        assert_eq!(
            xff(&lan, "10.1.2.3", &[]),
            ip("10.1.2.3"),
            "no header: the proxy itself"
        );
        // A single trusted address without a prefix length.
        let one = trusted(&["127.0.0.1"]);
        assert_eq!(xff(&one, "127.0.0.1", &["203.0.113.7"]), ip("203.0.113.7"));
        assert_eq!(xff(&one, "127.0.0.2", &["203.0.113.7"]), ip("127.0.0.2"));
    }

    #[test]
    fn a_spoofed_chain_yields_the_rightmost_untrusted_hop() {
        let lan = trusted(&["10.0.0.0/8"]);
        // The client wrote "1.1.1.1, 10.9.9.9" itself; the proxy appended what it saw.
        assert_eq!(
            xff(&lan, "10.0.0.1", &["1.1.1.1, 10.9.9.9, 203.0.113.7"]),
            ip("203.0.113.7")
        );
        // Two trusted proxies in a row, headers split over several lines.
        assert_eq!(
            xff(&lan, "10.0.0.1", &["1.1.1.1", "203.0.113.7, 10.0.0.2"]),
            ip("203.0.113.7")
        );
        // Every hop trusted: the leftmost.
        assert_eq!(xff(&lan, "10.0.0.1", &["10.0.0.3 , 10.0.0.2"]), ip("10.0.0.3"));
        // Garbage ends the walk at the last address reached.
        assert_eq!(
            xff(&lan, "10.0.0.1", &["203.0.113.7, garbage, 10.0.0.2"]),
            ip("10.0.0.2")
        );
        assert_eq!(xff(&lan, "10.0.0.1", &["unknown"]), ip("10.0.0.1"));
        // Empty items from stray commas are skipped.
        assert_eq!(xff(&lan, "10.0.0.1", &["203.0.113.7,,"]), ip("203.0.113.7"));
    }

    #[test]
    fn ports_brackets_and_mapped_addresses() {
        let lan = trusted(&["10.0.0.0/8", "::ffff:192.168.0.0/112"]);
        assert_eq!(xff(&lan, "10.0.0.1", &["203.0.113.7:5555"]), ip("203.0.113.7"));
        assert_eq!(xff(&lan, "10.0.0.1", &["[2001:db8::7]:443"]), ip("2001:db8::7"));
        assert_eq!(xff(&lan, "10.0.0.1", &["[2001:db8::7]"]), ip("2001:db8::7"));
        assert_eq!(xff(&lan, "10.0.0.1", &["\"[2001:db8::7]:443\""]), ip("2001:db8::7"));
        assert_eq!(xff(&lan, "10.0.0.1", &["2001:db8::7"]), ip("2001:db8::7"));
        // An IPv4 client seen by a dual-stack proxy, and a dual-stack peer.
        assert_eq!(xff(&lan, "10.0.0.1", &["::ffff:203.0.113.7"]), ip("203.0.113.7"));
        assert_eq!(xff(&lan, "::ffff:10.0.0.1", &["203.0.113.7"]), ip("203.0.113.7"));
        assert_eq!(xff(&lan, "::ffff:198.51.100.9", &["203.0.113.7"]), ip("198.51.100.9"));
        // A mapped network matches IPv4 peers.
        assert_eq!(xff(&lan, "192.168.0.1", &["203.0.113.7"]), ip("203.0.113.7"));
        // Not addresses: a bad port, a zone, brackets around IPv4, a host name.
        for bad in [
            "203.0.113.7:99999",
            "[2001:db8::7]x",
            "fe80::1%eth0",
            "[203.0.113.7]",
            "proxy.lan",
        ] {
            assert_eq!(xff(&lan, "10.0.0.1", &[bad]), ip("10.0.0.1"), "{bad}");
        }
    }

    #[test]
    fn forwarded_headers_per_rfc_7239() {
        let lan = trusted(&["10.0.0.0/8"]);
        assert_eq!(
            fwd(&lan, "10.0.0.1", &["for=192.0.2.60;proto=http;by=203.0.113.43"]),
            ip("192.0.2.60")
        );
        assert_eq!(
            fwd(&lan, "10.0.0.1", &["For=\"[2001:db8:cafe::17]:4711\""]),
            ip("2001:db8:cafe::17")
        );
        assert_eq!(fwd(&lan, "10.0.0.1", &["for=\"192.0.2.43:47011\""]), ip("192.0.2.43"));
        // A spoofed first element, the proxies' own after it, over two header lines.
        assert_eq!(
            fwd(
                &lan,
                "10.0.0.1",
                &["for=1.1.1.1, for=192.0.2.60", "proto=https;for=10.0.0.2"]
            ),
            ip("192.0.2.60")
        );
        // A quoted comma or semicolon does not split.
        assert_eq!(
            fwd(&lan, "10.0.0.1", &["for=192.0.2.60;by=\"a,b;c\""]),
            ip("192.0.2.60")
        );
        // unknown, obfuscated, or no for= at all: the walk ends at the last known hop.
        assert_eq!(fwd(&lan, "10.0.0.1", &["for=unknown"]), ip("10.0.0.1"));
        assert_eq!(fwd(&lan, "10.0.0.1", &["for=_hidden, for=10.0.0.2"]), ip("10.0.0.2"));
        assert_eq!(fwd(&lan, "10.0.0.1", &["proto=https"]), ip("10.0.0.1"));
        // X-Forwarded-For wins when both are present.
        assert_eq!(
            lan.client_ip(ip("10.0.0.1"), &["203.0.113.7"], &["for=1.1.1.1"]),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn bad_proxy_entries_are_refused() {
        let err = TrustedProxies::parse(&["10.0.0.0/8".into(), "10.0.0.0/33".into()]).unwrap_err();
        assert_eq!(err, "not a CIDR block or address: \"10.0.0.0/33\"");
        assert!(TrustedProxies::parse(&[" 10.0.0.0/8 ".into(), "fd00::/8".into(), "::1".into()]).is_ok());
    }

    #[test]
    fn the_config_check_names_every_bad_entry() {
        let no_env = |_: &str| None;
        let sources = crate::config::Sources {
            file: None,
            env: &no_env,
            overrides: vec![crate::config::Override::new(
                "rate_limit.trusted_proxies",
                "10.0.0.0/8,proxy.lan,192.168.1.0/40",
                "test",
            )],
        };
        let err = crate::config::load(&sources, crate::config::Requirements::None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "key `rate_limit.trusted_proxies`: expected CIDR blocks like \"10.0.0.0/8\" or \"fd00::/8\", \
                 got \"proxy.lan\", \"192.168.1.0/40\""
            ),
            "{err}"
        );
    }
}
