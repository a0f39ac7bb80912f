//! The SSDP responder: one named task on a UDP socket that answers `M-SEARCH` with a unicast
//! `200 OK` pointing at `/device.xml`, and stops on the app's shutdown token. It never sends
//! NOTIFY broadcasts and never answers hosts outside local networks.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::ssdp_message::{MAX_DATAGRAM, answers, parse_search, render_answer};
use super::{Device, HdhrError};

/// The SSDP multicast group (UPnP Device Architecture 1.0).
const MULTICAST_V4: Ipv4Addr = Ipv4Addr::new(239, 255, 255, 250);
const STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the device description lives, as the responder advertises it.
#[derive(Debug, Clone)]
pub(crate) struct Advertised {
    /// `public_url` from the config, without a trailing slash; wins when set.
    pub public_url: Option<String>,
    /// The HTTP server's bound address.
    pub http_addr: SocketAddr,
}

impl Advertised {
    /// The `LOCATION` for an answer to `peer`: the public URL, else the HTTP address, else (when
    /// HTTP listens on every interface) the local address that routes to `peer`.
    fn location(&self, peer: SocketAddr) -> Option<String> {
        if let Some(url) = &self.public_url {
            return Some(format!("{url}/device.xml"));
        }
        let ip = if self.http_addr.ip().is_unspecified() {
            local_ip_towards(peer)?
        } else {
            self.http_addr.ip()
        };
        Some(format!(
            "http://{}/device.xml",
            SocketAddr::new(ip, self.http_addr.port())
        ))
    }
}

/// The running responder; owned by the app, which awaits it on shutdown.
#[derive(Debug)]
pub(crate) struct SsdpResponder {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl SsdpResponder {
    /// The bound UDP address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits, bounded, for the task to end after the shutdown token was cancelled.
    pub(crate) async fn join(self) {
        if tokio::time::timeout(STOP_TIMEOUT, self.task).await.is_err() {
            tracing::warn!(task = "ssdp", "SSDP responder did not stop in time.");
        }
    }
}

/// Binds `listen` and starts the responder. Joins the SSDP multicast group when bound to every
/// IPv4 interface; a failed join is logged and leaves a responder that answers unicast only.
pub(crate) fn spawn(
    listen: SocketAddr,
    device: Arc<Device>,
    advertised: Advertised,
    shutdown: CancellationToken,
) -> Result<SsdpResponder, HdhrError> {
    let socket = bind(listen).map_err(|source| HdhrError::SsdpBind { addr: listen, source })?;
    let addr = socket
        .local_addr()
        .map_err(|source| HdhrError::SsdpBind { addr: listen, source })?;
    if listen.ip() == IpAddr::V4(Ipv4Addr::UNSPECIFIED) {
        match socket.join_multicast_v4(MULTICAST_V4, Ipv4Addr::UNSPECIFIED) {
            Ok(()) => tracing::info!(group = %MULTICAST_V4, "SSDP joined the multicast group."),
            Err(error) => tracing::warn!(
                group = %MULTICAST_V4,
                %error,
                "SSDP could not join the multicast group; media servers must be given the tuner's address."
            ),
        }
    }
    let span = tracing::info_span!("ssdp", %addr);
    let task = tokio::spawn(serve(socket, device, advertised, shutdown).instrument(span));
    tracing::info!(%addr, "SSDP responder listening.");
    Ok(SsdpResponder { addr, task })
}

/// A non-blocking UDP socket with `SO_REUSEADDR`, so xg2g shares port 1900 with other SSDP
/// listeners on the host (each gets the multicast searches).
fn bind(listen: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(listen), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&listen.into())?;
    UdpSocket::from_std(socket.into())
}

async fn serve(socket: UdpSocket, device: Arc<Device>, advertised: Advertised, shutdown: CancellationToken) {
    let udn = device.id.udn();
    // One byte more than the largest datagram we accept, to tell an oversized one apart.
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    loop {
        let (len, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            received = socket.recv_from(&mut buf) => match received {
                Ok(received) => received,
                Err(error) => {
                    tracing::debug!(%error, "SSDP receive failed.");
                    continue;
                }
            },
        };
        let Some(target) = parse_search(&buf[..len], &udn) else {
            continue;
        };
        if !is_local_network(peer.ip()) {
            tracing::debug!(%peer, "SSDP search from outside local networks ignored.");
            continue;
        }
        let Some(location) = advertised.location(peer) else {
            tracing::debug!(%peer, "SSDP search ignored: no local address routes to the searcher.");
            continue;
        };
        for answer in answers(&target, &udn) {
            if let Err(error) = socket.send_to(render_answer(&answer, &location).as_bytes(), peer).await {
                tracing::debug!(%peer, %error, "SSDP answer not sent.");
                break;
            }
        }
        tracing::debug!(%peer, ?target, "SSDP search answered.");
    }
    tracing::debug!("SSDP responder stopped.");
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
    fn location_prefers_public_url_then_http_address() {
        let peer: SocketAddr = "127.0.0.1:50000".parse().unwrap();
        let public = Advertised {
            public_url: Some("https://tv.example.org".to_owned()),
            http_addr: "0.0.0.0:8080".parse().unwrap(),
        };
        assert_eq!(public.location(peer).unwrap(), "https://tv.example.org/device.xml");
        let bound = Advertised {
            public_url: None,
            http_addr: "192.168.1.5:8080".parse().unwrap(),
        };
        assert_eq!(bound.location(peer).unwrap(), "http://192.168.1.5:8080/device.xml");
        let v6 = Advertised {
            public_url: None,
            http_addr: "[fd00::5]:8080".parse().unwrap(),
        };
        assert_eq!(v6.location(peer).unwrap(), "http://[fd00::5]:8080/device.xml");
    }

    #[test]
    fn location_on_every_interface_uses_the_route_to_the_peer() {
        let any = Advertised {
            public_url: None,
            http_addr: "0.0.0.0:8080".parse().unwrap(),
        };
        let peer: SocketAddr = "127.0.0.1:50000".parse().unwrap();
        assert_eq!(any.location(peer).unwrap(), "http://127.0.0.1:8080/device.xml");
    }
}
