//! The emulated HDHomeRun tuner: its identity, the documents Plex reads, and the two ways it is
//! found: SSDP and SiliconDust's own discovery on UDP 65001.
//!
//! [`Device`] is built once from the config; the renderers (`render`), SSDP messages
//! (`ssdp_message`) and HDHomeRun packets (`packet`) are pure and unit-tested without a runtime;
//! `ssdp` and `discovery` are the tasks with sockets.

mod advertised;
mod discovery;
mod packet;
pub(crate) mod render;
mod responder;
mod ssdp;
mod ssdp_message;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
pub use crate::model::{DeviceId, DeviceIdError};
use advertised::Advertised;
pub(crate) use packet::{DiscoverRequest, Frame, GetSetRequest, MAX_FRAME, TYPE_GETSET_RPY, getset_reply, seal};
pub(crate) use responder::Responder;
pub(crate) use ssdp_message::{answers as ssdp_answers, parse_search as parse_ssdp_search, render_answer};

/// Errors of the tuner emulation.
#[derive(Debug, thiserror::Error)]
pub enum HdhrError {
    #[error("cannot bind the SSDP responder to {addr}: {source}")]
    SsdpBind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot bind HDHomeRun discovery to {addr}: {source}")]
    DiscoveryBind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The tuner as media servers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Device {
    pub id: DeviceId,
    pub friendly_name: String,
    pub tuner_count: u32,
    /// The stream profile lineup URLs ask for.
    pub profile: String,
}

impl Device {
    /// The configured device, or `None` when the emulation is off. Without a configured id, one
    /// is derived from the host so that it stays the same across restarts.
    pub(crate) fn from_config(config: &Config) -> Option<Self> {
        let hdhr = &config.hdhr;
        if !hdhr.enabled {
            return None;
        }
        let configured = hdhr
            .device_id
            .as_deref()
            .and_then(|text| match text.parse::<DeviceId>() {
                Ok(id) => Some(id),
                // The config check refuses such ids; this is a second line of defence.
                Err(error) => {
                    tracing::warn!(device_id = text, %error, "Ignoring hdhr.device_id; deriving one.");
                    None
                }
            });
        let id = configured.unwrap_or_else(|| {
            let id = DeviceId::derive(&host_seed());
            tracing::info!(device_id = %id, "HDHomeRun device id derived from this host; set hdhr.device_id to pin it.");
            id
        });
        Some(Self {
            id,
            friendly_name: hdhr.friendly_name.clone(),
            tuner_count: hdhr.tuner_count,
            profile: hdhr.profile.clone(),
        })
    }
}

/// Starts the SSDP responder when the config asks for it (`advertise` says when it stays off). A failed bind is logged, not fatal: the tuner still works when added by address.
pub(crate) fn start_ssdp(
    config: &Config,
    device: &Arc<Device>,
    http_addr: SocketAddr,
    shutdown: CancellationToken,
) -> Option<Responder> {
    let advertised = advertise(config, config.hdhr.ssdp, config.hdhr.ssdp_listen, http_addr, "SSDP")?;
    match ssdp::spawn(config.hdhr.ssdp_listen, Arc::clone(device), advertised, shutdown) {
        Ok(responder) => Some(responder),
        Err(error) => {
            tracing::warn!(%error, "SSDP off; add the tuner to media servers by its address.");
            None
        }
    }
}

/// Starts HDHomeRun discovery (UDP 65001, and the control channel on TCP) under the same rules
/// as SSDP.
pub(crate) fn start_discovery(
    config: &Config,
    device: &Arc<Device>,
    http_addr: SocketAddr,
    shutdown: CancellationToken,
) -> Option<Responder> {
    let listen = config.hdhr.discovery_listen;
    let advertised = advertise(config, config.hdhr.discovery, listen, http_addr, "HDHomeRun discovery")?;
    match discovery::spawn(listen, Arc::clone(device), advertised, shutdown) {
        Ok(responder) => Some(responder),
        Err(error) => {
            tracing::warn!(%error, "HDHomeRun discovery off; add the tuner to media servers by its address.");
            None
        }
    }
}

/// What a discovery responder tells searchers, or `None` when it should not run: switched off,
/// or HTTP listens on loopback only while the responder would listen on every interface (the
/// network would be told an address it cannot reach) and no `public_url` says otherwise.
fn advertise(
    config: &Config,
    enabled: bool,
    listen: SocketAddr,
    http_addr: SocketAddr,
    what: &'static str,
) -> Option<Advertised> {
    if !enabled {
        return None;
    }
    if http_addr.ip().is_loopback() && listen.ip().is_unspecified() && config.public_url.is_none() {
        tracing::info!(%http_addr, "{what} off: HTTP listens on loopback only.");
        return None;
    }
    Some(Advertised {
        public_url: config
            .public_url
            .as_ref()
            .map(|u| u.as_str().trim_end_matches('/').to_owned()),
        http_addr,
    })
}

/// What identifies this host across restarts: `/etc/machine-id`, else the host name. Containers
/// often have neither stable; they should set `hdhr.device_id`.
fn host_seed() -> Vec<u8> {
    for path in [
        "/etc/machine-id",
        "/var/lib/dbus/machine-id",
        "/proc/sys/kernel/hostname",
    ] {
        if let Ok(text) = std::fs::read_to_string(path) {
            let text = text.trim();
            if !text.is_empty() {
                return text.as_bytes().to_vec();
            }
        }
    }
    std::env::var("HOSTNAME")
        .unwrap_or_else(|_| "xg2g".to_owned())
        .into_bytes()
}
