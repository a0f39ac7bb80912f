//! Domain types shared by every layer: service references, bouquets, channels, tuner ids.

mod device_id;
mod service_ref;

pub use device_id::{DeviceId, DeviceIdError};
pub use service_ref::{ParseServiceRefError, RawRef, ServiceKind, ServiceRef};

/// A bouquet as the receiver lists it: an opaque reference and a display name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bouquet {
    pub reference: String,
    pub name: String,
}

/// One playable channel of the catalog, numbered in bouquet order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    /// 1-based position across the configured bouquets.
    pub number: u32,
    pub name: String,
    pub service_ref: ServiceRef,
    /// Name of the bouquet the channel was listed in.
    pub bouquet: String,
}

impl Channel {
    /// The stable id shared by the M3U `tvg-id` and the XMLTV channel id.
    pub fn tvg_id(&self) -> String {
        self.service_ref.tvg_id()
    }

    pub fn is_radio(&self) -> bool {
        self.service_ref.kind() == ServiceKind::Radio
    }
}

/// A channel's video, as its PMT announces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    H264,
    Hevc,
    Mpeg2,
    /// A radio channel.
    None,
    Other,
}

impl VideoCodec {
    /// From the PMT's stream types (ISO 13818-1 table 2-34).
    pub fn from_stream_types(types: &[u8]) -> Self {
        let video: Vec<u8> = types
            .iter()
            .copied()
            .filter(|t| matches!(t, 0x01 | 0x02 | 0x10 | 0x1B | 0x24))
            .collect();
        match video.first() {
            None => VideoCodec::None,
            Some(0x1B) => VideoCodec::H264,
            Some(0x24) => VideoCodec::Hevc,
            Some(0x01 | 0x02) => VideoCodec::Mpeg2,
            Some(_) => VideoCodec::Other,
        }
    }
}
