//! The SSDP responder: one named task on a UDP socket that answers `M-SEARCH` with a unicast
//! `200 OK` pointing at `/device.xml`, and stops on the app's shutdown token. It never sends
//! NOTIFY broadcasts and never answers hosts outside local networks.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::advertised::{Advertised, is_local_network};
use super::responder::{Responder, bind_udp};
use super::ssdp_message::{MAX_DATAGRAM, answers, parse_search, render_answer};
use super::{Device, HdhrError};

/// The SSDP multicast group (UPnP Device Architecture 1.0).
const MULTICAST_V4: Ipv4Addr = Ipv4Addr::new(239, 255, 255, 250);

/// Binds `listen` and starts the responder. Joins the SSDP multicast group when bound to every
/// IPv4 interface; a failed join is logged and leaves a responder that answers unicast only.
pub(crate) fn spawn(
    listen: SocketAddr,
    device: Arc<Device>,
    advertised: Advertised,
    shutdown: CancellationToken,
) -> Result<Responder, HdhrError> {
    // SO_REUSEADDR: xg2g shares port 1900 with other SSDP listeners on the host (each gets the
    // multicast searches).
    let socket = bind_udp(listen).map_err(|source| HdhrError::SsdpBind { addr: listen, source })?;
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
    Ok(Responder::new("ssdp", addr, task))
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
        let Some(location) = advertised.base_url(peer).map(|base| format!("{base}/device.xml")) else {
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
