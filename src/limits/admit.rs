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

/// The `kind` of the `auto` profile's codec probe (charged to the global and per-address buckets).
pub const PROBE: &str = "probe";
/// The `kind` of a thumbnail fetch (global and per-address buckets; no channel cap).
pub const PREVIEW: &str = "preview";

/// Charges a start by `client` on `channel` of `kind` (a session's mode, [`PROBE`] or
/// [`PREVIEW`]). Free when the rate limits are off. Whether the start is new at all (a join of
/// a running session, a cached thumbnail, are free) is the caller's to know.
pub async fn admit(
    admission: &AdmissionHandle,
    queue: &EncoderQueue,
    client: IpAddr,
    channel: &ServiceRef,
    kind: &'static str,
) -> Result<(), Refusal> {
    if !admission.is_enabled() {
        return Ok(());
    }
    if kind != PREVIEW
        && let Some(cap) = admission.max_channels()
        && queue.channels_of(client, &channel.to_string()).await >= cap as usize
    {
        return Err(Refusal::TooManyChannels { cap });
    }
    admission.admit(client, kind).await?;
    Ok(())
}
