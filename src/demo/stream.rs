//! The demo's stream ports: a minimal HTTP/1.0 server like Enigma2's streamserver and OSCam's
//! relay, including their quirks (the relay drops `HEAD` without a reply, wants credentials up
//! front, and the plain port sends whitelisted channels scrambled), with whole-port faults.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::{LiveChannel, PortFault, State, StreamFault};
use crate::model::ServiceRef;

const HEAD_LIMIT: usize = 8 * 1024;
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// One of the demo's two stream ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// Enigma2's own stream server (8001 on a real box).
    Stream,
    /// OSCam's stream relay (17999 on a real box).
    Relay,
}

pub(crate) async fn serve(listener: TcpListener, port: Port, state: Arc<State>, shutdown: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((socket, _)) = accepted else { continue };
        let counter = match port {
            Port::Stream => &state.stats.stream_connections,
            Port::Relay => &state.stats.relay_connections,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let refuse = port_fault(&state, port) == Some(PortFault::Refuse);
        let state = Arc::clone(&state);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let serve = async {
                if refuse {
                    hang_up(socket).await;
                } else {
                    connection(socket, port, &state).await;
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = serve => {}
            }
        });
    }
}

fn port_fault(state: &State, port: Port) -> Option<PortFault> {
    let faults = state.faults();
    match port {
        Port::Stream => faults.stream_port,
        Port::Relay => faults.relay_port,
    }
}

/// Closes without a byte of reply. The write side is shut first and what the client sent is
/// drained, so the client sees a clean end of stream (FIN), not a reset.
async fn hang_up(mut socket: TcpStream) {
    let _ = socket.shutdown().await;
    drain(&mut socket).await;
}

/// Reads and discards until the client closes (bounded by [`HEAD_TIMEOUT`]).
async fn drain(socket: &mut TcpStream) {
    let mut sink = [0u8; 1024];
    let until_closed = async { while matches!(socket.read(&mut sink).await, Ok(n) if n > 0) {} };
    let _ = tokio::time::timeout(HEAD_TIMEOUT, until_closed).await;
}

struct Request {
    method: String,
    path: String,
    authorization: Option<String>,
}

async fn read_request(socket: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::with_capacity(1024);
    let read = async {
        loop {
            let mut chunk = [0u8; 1024];
            let n = socket.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(&buf) {
                Ok(httparse::Status::Complete(_)) => {
                    let authorization = req
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case("authorization"))
                        .and_then(|h| std::str::from_utf8(h.value).ok())
                        .map(str::to_owned);
                    return Some(Request {
                        method: req.method?.to_owned(),
                        path: req.path?.to_owned(),
                        authorization,
                    });
                }
                Ok(httparse::Status::Partial) if buf.len() < HEAD_LIMIT => {}
                _ => return None,
            }
        }
    };
    tokio::time::timeout(HEAD_TIMEOUT, read).await.ok().flatten()
}

async fn connection(mut socket: TcpStream, port: Port, state: &State) {
    let Some(request) = read_request(&mut socket).await else {
        return;
    };
    let path = request
        .path
        .split('?')
        .next()
        .unwrap_or_default()
        .trim_start_matches('/');
    let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
    let channel = decoded.parse::<ServiceRef>().ok().and_then(|r| state.channel(&r));
    if let Some(channel) = channel {
        match port {
            Port::Stream => &channel.stream_requests,
            Port::Relay => &channel.relay_requests,
        }
        .fetch_add(1, Ordering::Relaxed);
    }
    match port_fault(state, port) {
        Some(PortFault::Silent) => {
            // Never answers; holds the connection until the client gives up.
            let mut sink = [0u8; 256];
            while matches!(socket.read(&mut sink).await, Ok(n) if n > 0) {}
            return;
        }
        Some(PortFault::Status(status)) => {
            let head = format!("HTTP/1.0 {status} Injected Fault\r\nConnection: close\r\n\r\n");
            let _ = socket.write_all(head.as_bytes()).await;
            return;
        }
        Some(PortFault::Refuse) | None => {}
    }
    if port == Port::Relay && request.method == "HEAD" {
        // OSCam's relay closes on HEAD without a byte of reply.
        return;
    }
    if let Some((user, pass)) = &state.options.credentials {
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        );
        if request.authorization.as_deref() != Some(expected.as_str()) {
            if port == Port::Stream {
                let _ = socket
                    .write_all(b"HTTP/1.0 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"streamserver\"\r\nConnection: close\r\n\r\n")
                    .await;
            }
            // The relay has no challenge: it simply hangs up.
            return;
        }
    }
    let mut seen = state.faults_changed.load(Ordering::Acquire);
    let mut fault = channel.and_then(|c| channel_fault(state, c));
    let refusal = match fault {
        Some(StreamFault::NotFound) => Some(404),
        Some(StreamFault::Status(status)) => Some(status),
        _ => None,
    };
    let Some(channel) = channel.filter(|_| refusal.is_none()) else {
        let status = refusal.unwrap_or(404);
        let head = format!("HTTP/1.0 {status} {}\r\nConnection: close\r\n\r\n", reason(status));
        let _ = socket.write_all(head.as_bytes()).await;
        return;
    };
    if fault == Some(StreamFault::Reset) {
        reset(socket);
        return;
    }
    if !state.options.tune_delay.is_zero() {
        tokio::time::sleep(state.options.tune_delay).await;
    }
    let header = b"HTTP/1.0 200 OK\r\nConnection: Close\r\nContent-Type: video/mpeg\r\nServer: streamserver\r\n\r\n";
    if socket.write_all(header).await.is_err() || request.method == "HEAD" {
        return;
    }
    let feed = match (port, &channel.scrambled) {
        (Port::Stream, Some(scrambled)) => scrambled,
        _ => &channel.clear,
    };
    let mut rx = feed.subscribe();
    state.stats.active_streams.fetch_add(1, Ordering::Relaxed);
    let _active = ActiveGuard(state);
    let mut sent: u64 = 0;
    let mut noise: u64 = 0x9E37_79B9_7F4A_7C15;
    loop {
        let mut chunk = match rx.recv().await {
            Ok(chunk) => chunk,
            // A viewer too slow for real time is cut off, as a real box does.
            Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => return,
        };
        // Faults switched while this connection streams apply from this chunk on.
        let changed = state.faults_changed.load(Ordering::Acquire);
        if changed != seen {
            seen = changed;
            fault = channel_fault(state, channel);
        }
        match fault {
            Some(StreamFault::StallAfter(limit) | StreamFault::DropAfter(limit))
                if sent + chunk.len() as u64 >= limit =>
            {
                let keep = limit.saturating_sub(sent) as usize;
                let _ = socket.write_all(&chunk[..keep]).await;
                if matches!(fault, Some(StreamFault::StallAfter(_))) {
                    drop(rx);
                    // Hold the connection open, silent, until the client gives up.
                    let mut sink = [0u8; 256];
                    while matches!(socket.read(&mut sink).await, Ok(n) if n > 0) {}
                }
                return;
            }
            Some(StreamFault::NotFound | StreamFault::Status(_)) => return,
            Some(StreamFault::Reset) => {
                reset(socket);
                return;
            }
            // The chunk is consumed and not sent: the feed runs on, live.
            Some(StreamFault::Pause) => continue,
            Some(StreamFault::Garbage) => {
                let mut bytes = chunk.to_vec();
                for b in &mut bytes {
                    noise ^= noise << 13;
                    noise ^= noise >> 7;
                    noise ^= noise << 17;
                    *b = noise as u8;
                }
                chunk = bytes.into();
            }
            _ => {}
        }
        if socket.write_all(&chunk).await.is_err() {
            return;
        }
        sent += chunk.len() as u64;
    }
}

fn channel_fault(state: &State, channel: &LiveChannel) -> Option<StreamFault> {
    state
        .faults
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .streams
        .get(&channel.service_ref.to_string())
        .copied()
}

fn reason(status: u16) -> &'static str {
    match status {
        404 => "Not Found",
        _ => "Injected Fault",
    }
}

/// Closes with a TCP reset: linger zero makes the close send RST instead of FIN.
fn reset(socket: TcpStream) {
    let _ = socket2::SockRef::from(&socket).set_linger(Some(Duration::ZERO));
    drop(socket);
}

struct ActiveGuard<'a>(&'a State);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.stats.active_streams.fetch_sub(1, Ordering::Relaxed);
    }
}
