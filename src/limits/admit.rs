//! The one admission check for anything that opens a receiver connection for a client: a TS or
//! HLS session start, the `auto` profile's codec probe before one, or a thumbnail that is not
//! cached. The channel cap first (every channel may hold a tuner, and a box has few; not for a
//! thumbnail, which holds one for a frame), then the rate limits' buckets.

use std::net::IpAddr;

use super::queue::EncoderQueue;
use super::rate::{AdmissionHandle, RateLimited};
use crate::model::ServiceRef;

/// Why a start was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Refusal {
    #[error(transparent)]
    RateLimited(#[from] RateLimited),
    /// The client already watches `cap` other channels (`rate_limit.max_channels_per_client`).
    #[error("this client already watches {cap} other channels")]
    TooManyChannels { cap: u32 },
}

/// What a client starts that opens a receiver connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// A session of this mode (`pipeline::Mode::as_str()`): global, mode and address buckets.
    Session(&'static str),
    /// The `auto` profile's codec probe before a session: global and address buckets.
    Probe,
    /// A thumbnail that must be made: global and address buckets.
    Preview,
}

impl Start {
    /// The name the rate limits and their metrics know it by.
    pub fn kind(self) -> &'static str {
        match self {
            Start::Session(mode) => mode,
            Start::Probe => "probe",
            Start::Preview => "preview",
        }
    }

    /// Whether it keeps the channel tuned while the client watches, so that the channel cap
    /// counts it; a thumbnail holds a tuner for one frame.
    fn keeps_a_tuner(self) -> bool {
        !matches!(self, Start::Preview)
    }
}

/// Charges `start` by `client` on `channel`. Free when the rate limits are off. Whether the
/// start is new at all (a join of a running session, a cached thumbnail, are free) is the
/// caller's to know.
pub async fn admit(
    admission: &AdmissionHandle,
    queue: &EncoderQueue,
    client: IpAddr,
    channel: &ServiceRef,
    start: Start,
) -> Result<(), Refusal> {
    if !admission.is_enabled() {
        return Ok(());
    }
    if start.keeps_a_tuner()
        && let Some(cap) = admission.max_channels()
        && queue.channels_of(client, &channel.to_string()).await >= cap as usize
    {
        return Err(Refusal::TooManyChannels { cap });
    }
    admission.admit(client, start.kind()).await?;
    Ok(())
}
