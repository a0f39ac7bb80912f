//! SiliconDust's own discovery, as `hdhomerun_config discover` and apps built on libhdhomerun
//! use it: one named task answers discover requests on UDP 65001 with the device id, tuner
//! count, base URL and lineup URL, and a control channel on TCP (same port) answers `get` of the
//! `/sys/…` variables that name the model. Both stop on the app's shutdown token.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::advertised::{Advertised, is_local_network};
use super::packet::{
    DiscoverReply, DiscoverRequest, Frame, GetSetRequest, MAX_FRAME, PacketError, TYPE_DISCOVER_REQ, TYPE_GETSET_REQ,
    getset_reply,
};
use super::render::{FIRMWARE_NAME, FIRMWARE_VERSION, MODEL_NUMBER};
use super::responder::{Responder, bind_udp};
use super::{Device, HdhrError};

/// A control connection that sends nothing for this long is closed.
const CONTROL_IDLE: Duration = Duration::from_secs(30);
/// Control connections open at once; more are closed at once (a tool opens one at a time).
const MAX_CONTROL_SESSIONS: usize = 8;

/// Binds `listen` on UDP and the same address on TCP, and starts the responder. A TCP port that
/// cannot be bound leaves discovery without the control channel (logged).
pub(crate) fn spawn(
    listen: SocketAddr,
    device: Arc<Device>,
    advertised: Advertised,
    shutdown: CancellationToken,
) -> Result<Responder, HdhrError> {
    let bind_error = |source| HdhrError::DiscoveryBind { addr: listen, source };
    let socket = bind_udp(listen).map_err(bind_error)?;
    let addr = socket.local_addr().map_err(bind_error)?;
    let control = match bind_tcp(addr) {
        Ok(listener) => Some(listener),
        Err(error) => {
            tracing::warn!(%addr, %error, "HDHomeRun control channel off: its TCP port cannot be bound.");
            None
        }
    };
    let span = tracing::info_span!("hdhr-discovery", %addr);
    let task = tokio::spawn(serve(socket, control, device, advertised, shutdown).instrument(span));
    tracing::info!(%addr, "HDHomeRun discovery listening.");
    Ok(Responder::new("hdhr-discovery", addr, task))
}

fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(16)?;
    TcpListener::from_std(socket.into())
}

async fn serve(
    socket: UdpSocket,
    control: Option<TcpListener>,
    device: Arc<Device>,
    advertised: Advertised,
    shutdown: CancellationToken,
) {
    let mut buf = vec![0u8; MAX_FRAME];
    let sessions = Arc::new(tokio::sync::Semaphore::new(MAX_CONTROL_SESSIONS));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            received = socket.recv_from(&mut buf) => match received {
                Ok((len, peer)) => answer_discover(&socket, &buf[..len], peer, &device, &advertised).await,
                Err(error) => tracing::debug!(%error, "HDHomeRun discovery receive failed."),
            },
            accepted = accept(control.as_ref()) => match accepted {
                Ok((stream, peer)) if is_local_network(peer.ip()) => {
                    let Ok(permit) = Arc::clone(&sessions).try_acquire_owned() else {
                        tracing::debug!(%peer, "HDHomeRun control: too many connections; closing this one.");
                        continue;
                    };
                    let span = tracing::debug_span!("hdhr-control", %peer);
                    let session = control_session(stream, Arc::clone(&device), shutdown.clone());
                    tokio::spawn(async move {
                        session.await;
                        drop(permit);
                    }.instrument(span));
                }
                Ok((_, peer)) => tracing::debug!(%peer, "HDHomeRun control from outside local networks refused."),
                Err(error) => tracing::debug!(%error, "HDHomeRun control accept failed."),
            },
        }
    }
    tracing::debug!("HDHomeRun discovery stopped.");
}

/// Waits for a control connection, or forever when there is no listener.
async fn accept(listener: Option<&TcpListener>) -> io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

async fn answer_discover(socket: &UdpSocket, bytes: &[u8], peer: SocketAddr, device: &Device, advertised: &Advertised) {
    let request = match Frame::parse(bytes) {
        Ok((frame, _)) if frame.kind == TYPE_DISCOVER_REQ => DiscoverRequest::parse(&frame),
        Ok(_) => return,
        Err(error) => {
            tracing::debug!(%peer, %error, "Not an HDHomeRun frame.");
            return;
        }
    };
    let Ok(request) = request else {
        return;
    };
    if !request.wants(device.id.value()) {
        return;
    }
    if !is_local_network(peer.ip()) {
        tracing::debug!(%peer, "HDHomeRun discovery from outside local networks ignored.");
        return;
    }
    let Some(base_url) = advertised.base_url(peer) else {
        tracing::debug!(%peer, "HDHomeRun discovery ignored: no local address routes to the searcher.");
        return;
    };
    let reply = DiscoverReply {
        device_id: device.id.value(),
        tuner_count: u8::try_from(device.tuner_count).unwrap_or(u8::MAX),
        device_auth: device.id.auth(),
        base_url,
    };
    match socket.send_to(&reply.encode(), peer).await {
        Ok(_) => tracing::debug!(%peer, "HDHomeRun discovery answered."),
        Err(error) => tracing::debug!(%peer, %error, "HDHomeRun discovery answer not sent."),
    }
}

/// One control connection: frames in, one reply per get/set request, until the peer closes,
/// falls silent for [`CONTROL_IDLE`], sends something that is not a frame, or shutdown.
async fn control_session(mut stream: TcpStream, device: Arc<Device>, shutdown: CancellationToken) {
    let mut buf: Vec<u8> = Vec::with_capacity(MAX_FRAME);
    let mut chunk = [0u8; MAX_FRAME];
    loop {
        let read = tokio::select! {
            () = shutdown.cancelled() => return,
            read = tokio::time::timeout(CONTROL_IDLE, stream.read(&mut chunk)) => read,
        };
        let n = match read {
            Ok(Ok(0)) | Err(_) => return,
            Ok(Ok(n)) => n,
            Ok(Err(error)) => {
                tracing::debug!(%error, "HDHomeRun control read failed.");
                return;
            }
        };
        buf.extend_from_slice(&chunk[..n]);
        loop {
            let (reply, used) = match Frame::parse(&buf) {
                Ok((frame, used)) => (control_reply(&frame, &device), used),
                Err(PacketError::Short(_) | PacketError::Length { .. }) if buf.len() < MAX_FRAME => break,
                Err(error) => {
                    tracing::debug!(%error, "HDHomeRun control: not a frame; closing.");
                    return;
                }
            };
            buf.drain(..used);
            if let Some(reply) = reply
                && stream.write_all(&reply).await.is_err()
            {
                return;
            }
        }
    }
}

/// The reply to one control frame; `None` for frames that are not get/set requests.
fn control_reply(frame: &Frame<'_>, device: &Device) -> Option<Vec<u8>> {
    if frame.kind != TYPE_GETSET_REQ {
        return None;
    }
    let request = GetSetRequest::parse(frame).ok()?;
    let answer = if request.value.is_some() {
        Err("ERROR: read-only: xg2g takes its settings from its config".to_owned())
    } else {
        variable(&request.name, device).ok_or_else(|| "ERROR: unknown getset variable".to_owned())
    };
    Some(getset_reply(&request.name, answer.as_deref().map_err(String::as_str)))
}

/// The variables a real tuner answers that say what it is; tuner state is not emulated.
pub(crate) fn variable(name: &str, device: &Device) -> Option<String> {
    let value = match name {
        "/sys/model" => FIRMWARE_NAME.to_owned(),
        "/sys/hwmodel" => MODEL_NUMBER.to_owned(),
        "/sys/version" => FIRMWARE_VERSION.to_owned(),
        "/sys/copyright" => format!("xg2g, emulating device {}", device.id),
        _ => return None,
    };
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::super::packet::{TYPE_GETSET_RPY, seal};
    use super::*;

    fn device() -> Device {
        Device {
            id: "10439EFD".parse().unwrap(),
            friendly_name: "xg2g".to_owned(),
            tuner_count: 2,
            profile: "copy".to_owned(),
        }
    }

    fn get(name: &str, value: Option<&str>) -> Vec<u8> {
        let mut payload = vec![0x03, (name.len() + 1) as u8];
        payload.extend_from_slice(name.as_bytes());
        payload.push(0);
        if let Some(value) = value {
            payload.extend_from_slice(&[0x04, (value.len() + 1) as u8]);
            payload.extend_from_slice(value.as_bytes());
            payload.push(0);
        }
        seal(TYPE_GETSET_REQ, &payload)
    }

    fn reply_text(bytes: &[u8]) -> String {
        let (frame, _) = Frame::parse(bytes).unwrap();
        assert_eq!(frame.kind, TYPE_GETSET_RPY);
        String::from_utf8_lossy(frame.payload).into_owned()
    }

    #[test]
    fn control_answers_the_model_and_refuses_the_rest() {
        let device = device();
        let bytes = get("/sys/model", None);
        let (frame, _) = Frame::parse(&bytes).unwrap();
        let text = reply_text(&control_reply(&frame, &device).unwrap());
        assert!(
            text.contains("/sys/model\0") && text.contains("hdhomeruntc_atsc\0"),
            "{text:?}"
        );

        let bytes = get("/tuner0/channel", None);
        let (frame, _) = Frame::parse(&bytes).unwrap();
        let text = reply_text(&control_reply(&frame, &device).unwrap());
        assert!(text.contains("ERROR: unknown getset variable"), "{text:?}");

        let bytes = get("/sys/model", Some("other"));
        let (frame, _) = Frame::parse(&bytes).unwrap();
        let text = reply_text(&control_reply(&frame, &device).unwrap());
        assert!(text.contains("ERROR: read-only"), "{text:?}");

        let discover = seal(TYPE_DISCOVER_REQ, &[]);
        let (frame, _) = Frame::parse(&discover).unwrap();
        assert_eq!(control_reply(&frame, &device), None);
    }

    #[test]
    fn variables_name_the_model() {
        let device = device();
        assert_eq!(variable("/sys/hwmodel", &device).unwrap(), "HDTC-2US");
        assert_eq!(variable("/sys/version", &device).unwrap(), FIRMWARE_VERSION);
        assert_eq!(variable("/sys/nonsense", &device), None);
    }
}
