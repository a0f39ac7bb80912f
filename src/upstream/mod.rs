//! Receiver-facing clients: the OpenWebIF HTTP API of the Enigma2 box and the channel line-up.
//!
//! [`OpenWebIf`] owns the one connection pool to the receiver (small, keep-alive, cookies,
//! credentials sent up front) and the retry policy; [`load_channels`] turns its bouquets into the
//! numbered [`Channel`](crate::model::Channel) list. Wire shapes (`wire`), text decoding
//! (`text`), the line-up rules (`lineup`) and the backoff (`backoff`) are pure and tested without
//! a runtime.

mod backoff;
mod codec;
mod detect;
mod epg;
mod error;
mod lineup;
mod locate;
mod openwebif;
mod text;
mod wire;

pub use codec::{PROBE_BYTES, PROBE_TIME, ProbeError, probe_video_codec};
pub use detect::{ConnectFailure, DetectError, RELAY_PROBE_GAP, StreamResolver, StreamSource};
pub use epg::EpgEvent;
pub(crate) use epg::{parse_json as parse_epg_json, parse_xml as parse_epg_xml};
pub use error::UpstreamError;
pub use lineup::load_channels;
pub use locate::{PortLocator, SourceLocator, SourceOutcome};
pub use openwebif::{OpenWebIf, ServiceEntry};
pub(crate) use text::{decode, parse_whitelist};
pub(crate) use wire::{BouquetList, ServiceList, parse as parse_wire};
