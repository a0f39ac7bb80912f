//! What the UDP responders (SSDP, HDHomeRun discovery) share: binding a reusable socket, and the
//! handle the app keeps to await a responder's task on shutdown.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

const STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// A running responder; owned by the app, which awaits it on shutdown.
#[derive(Debug)]
pub(crate) struct Responder {
    /// Its task's name, for the log.
    name: &'static str,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Responder {
    pub(super) fn new(name: &'static str, addr: SocketAddr, task: JoinHandle<()>) -> Self {
        Self { name, addr, task }
    }

    /// The bound UDP address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits, bounded, for the task to end after the shutdown token was cancelled.
    pub(crate) async fn join(self) {
        if tokio::time::timeout(STOP_TIMEOUT, self.task).await.is_err() {
            tracing::warn!(task = self.name, "A responder did not stop in time.");
        }
    }
}

/// A non-blocking UDP socket on `listen` that other processes may bind as well.
pub(super) fn bind_udp(listen: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(listen), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&listen.into())?;
    UdpSocket::from_std(socket.into())
}
