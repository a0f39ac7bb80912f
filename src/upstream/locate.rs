//! Where a session's stream comes from: the trait sessions ask before every connect, and its
//! implementation over port detection and the ports' circuit breakers.

use std::sync::{Mutex, PoisonError};

use futures_util::future::BoxFuture;

use super::{ConnectFailure, StreamResolver};
use crate::model::ServiceRef;

/// How one connection to a located URL went, as far as the receiver's port is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceOutcome {
    /// The stream's data arrived.
    Delivered,
    /// The port itself failed before any data: no connection, a reset, a server error. Counts
    /// against the port, which every channel on it shares.
    PortFailed,
    /// The port answered, but not with this channel's stream (a refusal, no data, data that is
    /// no transport stream, a stall): this channel's problem, not its port's.
    ChannelFailed,
}

/// Finds the receiver URL of a session's channel and hears how connecting to it went (so that
/// port detection and its circuit breakers see sessions' connects too).
pub trait SourceLocator: Send + Sync + 'static {
    /// The stream URL, without credentials; an error is a reason to retry later.
    fn locate(&self) -> BoxFuture<'_, Result<String, String>>;
    /// How a connection to the last located URL went.
    fn connected(&self, outcome: SourceOutcome);
}

/// A channel's stream found through port detection ([`StreamResolver`]) before every connect;
/// what a connect did reaches the port's circuit breaker.
pub struct PortLocator {
    resolver: StreamResolver,
    service_ref: ServiceRef,
    port: Mutex<Option<u16>>,
}

impl SourceLocator for PortLocator {
    fn locate(&self) -> BoxFuture<'_, Result<String, String>> {
        Box::pin(async move {
            let source = self
                .resolver
                .resolve(&self.service_ref)
                .await
                .map_err(|e| e.to_string())?;
            *self.port.lock().unwrap_or_else(PoisonError::into_inner) = Some(source.port);
            Ok(source.url.to_string())
        })
    }

    /// Only what says something about the port reaches its breaker: one broken channel must
    /// not take every channel on the port down with it.
    fn connected(&self, outcome: SourceOutcome) {
        let Some(port) = *self.port.lock().unwrap_or_else(PoisonError::into_inner) else {
            return;
        };
        match outcome {
            SourceOutcome::Delivered => self.resolver.report_connect(port, Ok(())),
            SourceOutcome::PortFailed => self.resolver.report_connect(port, Err(ConnectFailure::Reset)),
            SourceOutcome::ChannelFailed => {
                tracing::debug!(port, service_ref = %self.service_ref, "The channel failed, not its port.");
            }
        }
    }
}

impl PortLocator {
    pub fn new(resolver: StreamResolver, service_ref: ServiceRef) -> Self {
        Self {
            resolver,
            service_ref,
            port: Mutex::new(None),
        }
    }
}
