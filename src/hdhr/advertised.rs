//! Where the tuner is, as SSDP and HDHomeRun discovery tell searchers: the base URL a peer
//! reaches this server at, and the rule that only local networks get answers.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket as StdUdpSocket};

/// Where this server is, as the discovery responders tell it.
#[derive(Debug, Clone)]
pub(crate) struct Advertised {
    /// `public_url` from the config, without a trailing slash; wins when set.
    pub public_url: Option<String>,
    /// The HTTP server's bound address.
    pub http_addr: SocketAddr,
}

impl Advertised {
    /// This server's URL as `peer` reaches it, without a trailing slash: the public URL, else the
    /// HTTP address, else (when HTTP listens on every interface) the local address that routes to
    /// `peer`.
    pub(crate) fn base_url(&self, peer: SocketAddr) -> Option<String> {
        if let Some(url) = &self.public_url {
            return Some(url.clone());
        }
        let ip = if self.http_addr.ip().is_unspecified() {
            local_ip_towards(peer)?
        } else {
            self.http_addr.ip()
        };
        Some(format!("http://{}", SocketAddr::new(ip, self.http_addr.port())))
    }
}

/// The local address the kernel would send from to reach `peer` (a connected UDP socket sends
/// nothing).
fn local_ip_towards(peer: SocketAddr) -> Option<IpAddr> {
    let any: SocketAddr = match peer {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let probe = StdUdpSocket::bind(any).ok()?;
    probe.connect(peer).ok()?;
    Some(probe.local_addr().ok()?.ip())
}

/// SSDP is a local-network protocol: answer loopback, private, shared (CGNAT, VPN overlays) and
/// link-local addresses only, so a forged search cannot aim answers at a host on the internet.
pub(crate) fn is_local_network(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback() || v4.is_private() || v4.is_link_local() || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_local_network(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback() || (first & 0xFE00) == 0xFC00 || (first & 0xFFC0) == 0xFE80
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_only_local_networks() {
        for local in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.9",
            "192.168.178.20",
            "169.254.1.1",
            "100.101.102.103",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:192.168.1.2",
        ] {
            assert!(is_local_network(local.parse().unwrap()), "{local}");
        }
        for remote in [
            "8.8.8.8",
            "100.128.0.1",
            "172.32.0.1",
            "2001:db8::1",
            "::ffff:1.1.1.1",
            "0.0.0.0",
        ] {
            assert!(!is_local_network(remote.parse().unwrap()), "{remote}");
        }
    }

    #[test]
    fn base_url_prefers_public_url_then_http_address() {
        let peer: SocketAddr = "127.0.0.1:50000".parse().unwrap();
        let public = Advertised {
            public_url: Some("https://tv.example.org".to_owned()),
            http_addr: "0.0.0.0:8080".parse().unwrap(),
        };
        assert_eq!(public.base_url(peer).unwrap(), "https://tv.example.org");
        let bound = Advertised {
            public_url: None,
            http_addr: "192.168.1.5:8080".parse().unwrap(),
        };
        assert_eq!(bound.base_url(peer).unwrap(), "http://192.168.1.5:8080");
        let v6 = Advertised {
            public_url: None,
            http_addr: "[fd00::5]:8080".parse().unwrap(),
        };
        assert_eq!(v6.base_url(peer).unwrap(), "http://[fd00::5]:8080");
    }

    #[test]
    fn base_url_on_every_interface_uses_the_route_to_the_peer() {
        let any = Advertised {
            public_url: None,
            http_addr: "0.0.0.0:8080".parse().unwrap(),
        };
        let peer: SocketAddr = "127.0.0.1:50000".parse().unwrap();
        assert_eq!(any.base_url(peer).unwrap(), "http://127.0.0.1:8080");
    }
}
