//! The `auto` profile's question: which video does a channel carry? One receiver connection,
//! read until its PMT, bounded in bytes and time. Callers charge it to the rate limits first
//! and share one probe per channel (`session::Registry::learn_codec`).

use std::time::Duration;

use futures_util::StreamExt as _;

use super::{DetectError, StreamResolver};
use crate::model::{ServiceRef, VideoCodec};
use crate::mpegts::{self, PACKET};

/// How much of a stream is read at most to find the PMT.
pub const PROBE_BYTES: usize = 2 * 1024 * 1024;
/// How long a probe may take from its request to the receiver on (port detection has its own
/// bounds): a receiver that accepts and never answers, as one with every tuner busy may, is
/// given up on then, not after minutes.
pub const PROBE_TIME: Duration = Duration::from_secs(8);

/// Why a channel's codec was not learned.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProbeError {
    /// No port could stream the channel.
    #[error(transparent)]
    Detect(#[from] DetectError),
    /// The receiver answered without a PMT (an error, silence, no transport stream); the words
    /// are for the log.
    #[error("probing the channel: {0}")]
    Receiver(String),
}

/// Reads the channel's video codec from its PMT.
pub async fn probe_video_codec(
    resolver: &StreamResolver,
    client: &reqwest::Client,
    authorization: Option<&str>,
    service_ref: &ServiceRef,
) -> Result<VideoCodec, ProbeError> {
    let source = resolver.resolve(service_ref).await?;
    let deadline = tokio::time::Instant::now() + PROBE_TIME;
    let mut request = client.get(source.url.as_str());
    if let Some(auth) = authorization {
        request = request.header(reqwest::header::AUTHORIZATION, auth);
    }
    let response = match tokio::time::timeout_at(deadline, request.send()).await {
        Err(_) => return Err(ProbeError::Receiver(format!("no answer within {PROBE_TIME:?}"))),
        Ok(Err(e)) => return Err(ProbeError::Receiver(e.without_url().to_string())),
        Ok(Ok(response)) => response,
    };
    if !response.status().is_success() {
        return Err(ProbeError::Receiver(format!(
            "the receiver answered {}",
            response.status()
        )));
    }
    let mut body = response.bytes_stream();
    let mut seen = Vec::new();
    let mut read = 0usize;
    let mut pmt_pid = None;
    while read < PROBE_BYTES {
        let chunk = match tokio::time::timeout_at(deadline, body.next()).await {
            Ok(Some(Ok(chunk))) => chunk,
            _ => break,
        };
        read += chunk.len();
        seen.extend_from_slice(&chunk);
        if let Some(streams) = mpegts::scan_pmt(&seen, &mut pmt_pid) {
            let types: Vec<u8> = streams.iter().map(|s| s.stream_type).collect();
            let codec = VideoCodec::from_stream_types(&types);
            tracing::info!(channel = %service_ref, ?codec, "Learned the channel's video codec.");
            return Ok(codec);
        }
        // Keep only the tail: a table may straddle chunks, never more than one packet.
        if seen.len() > PACKET * 64 {
            let keep = seen.len() % PACKET + PACKET;
            seen.drain(..seen.len() - keep);
        }
    }
    Err(ProbeError::Receiver("no PMT in the channel's stream".into()))
}
