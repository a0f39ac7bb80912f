//! The bench's scenarios as plain data: which clients, on which channels, with which profile,
//! and the URL each server gives them. No IO here.

use std::fmt;

use xg2g::demo::{LineupEntry, LineupVideo};

use super::client::ClientKind;

/// Which server a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Server {
    Xg2g,
    Ffmpeg,
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Xg2g => "xg2g",
            Self::Ffmpeg => "ffmpeg",
        })
    }
}

/// A load scenario. Names are the command line's `--scenario` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "name")]
pub(crate) enum Scenario {
    /// One `aac` TS client: the cost of one stream, the base of the sharing ratio.
    AacOne,
    /// One `aac` TS client on each video channel: the cost per session.
    AacChannels,
    /// Many `aac` TS clients on one channel (150 by default: viewers of one popular 8 Mbit/s
    /// channel): what sharing a session buys.
    AacShared { clients: usize },
    /// HLS clients (`auto`) on the H.264 channels, fetching playlists and segments like players.
    Hls,
    /// `h264` TS transcodes on this many distinct channels.
    H264 { streams: usize },
    /// TS (`aac`, `copy`, radio) and HLS (`auto`, H.264 and MPEG-2 channels) together.
    Mixed { clients: usize },
}

impl Scenario {
    /// The scenario families `--scenario` accepts.
    pub(crate) const NAMES: [&'static str; 6] = ["aac-one", "aac-channels", "aac-shared", "hls", "h264", "mixed"];

    pub(crate) fn family(&self) -> &'static str {
        match self {
            Self::AacOne => "aac-one",
            Self::AacChannels => "aac-channels",
            Self::AacShared { .. } => "aac-shared",
            Self::Hls => "hls",
            Self::H264 { .. } => "h264",
            Self::Mixed { .. } => "mixed",
        }
    }

    /// The label in tables: the family plus its size where it has one.
    pub(crate) fn label(&self) -> String {
        match self {
            Self::AacShared { clients } => format!("aac-shared ×{clients}"),
            Self::H264 { streams } => format!("h264 ×{streams}"),
            Self::Mixed { clients } => format!("mixed ×{clients}"),
            other => other.family().to_owned(),
        }
    }
}

/// What a profile does; the names are xg2g's profiles and the FFmpeg proxy's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Profile {
    Copy,
    Aac,
    H264,
    /// HLS: `aac` for H.264 channels, `h264` for the rest (xg2g decides; the peer is told).
    Auto,
}

impl Profile {
    fn as_str(self) -> &'static str {
        match self {
            Self::Copy => "copy",
            Self::Aac => "aac",
            Self::H264 => "h264",
            Self::Auto => "auto",
        }
    }
}

/// One client of a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Planned {
    pub kind: ClientKind,
    pub channel: LineupEntry,
    pub profile: Profile,
}

impl Planned {
    /// `TS aac Das Erste HD`: what the client watches, for reports.
    pub(crate) fn label(&self) -> String {
        let kind = match self.kind {
            ClientKind::Ts => "TS",
            ClientKind::Hls => "HLS",
        };
        format!("{kind} {} {}", self.profile.as_str(), self.channel.name)
    }
}

/// The channels by role, from the demo line-up.
#[derive(Debug, Clone)]
pub(crate) struct Channels {
    /// Every channel with video, in bouquet order.
    pub video: Vec<LineupEntry>,
    pub h264: Vec<LineupEntry>,
    pub mpeg2: Vec<LineupEntry>,
    pub radio: Vec<LineupEntry>,
}

impl Channels {
    pub(crate) fn new(lineup: &[LineupEntry]) -> Self {
        let of = |video: LineupVideo| lineup.iter().copied().filter(|c| c.video == video).collect::<Vec<_>>();
        Self {
            video: lineup
                .iter()
                .copied()
                .filter(|c| c.video != LineupVideo::None)
                .collect(),
            h264: of(LineupVideo::H264),
            mpeg2: of(LineupVideo::Mpeg2),
            radio: of(LineupVideo::None),
        }
    }
}

/// The clients of a scenario, in the order they start.
pub(crate) fn plan(scenario: Scenario, channels: &Channels) -> Vec<Planned> {
    let ts = |channel: LineupEntry, profile| Planned {
        kind: ClientKind::Ts,
        channel,
        profile,
    };
    let hls = |channel: LineupEntry| Planned {
        kind: ClientKind::Hls,
        channel,
        profile: Profile::Auto,
    };
    match scenario {
        Scenario::AacOne => vec![ts(channels.h264[0], Profile::Aac)],
        Scenario::AacChannels => channels.video.iter().map(|&c| ts(c, Profile::Aac)).collect(),
        Scenario::AacShared { clients } => (0..clients).map(|_| ts(channels.h264[0], Profile::Aac)).collect(),
        Scenario::Hls => (0..8).map(|i| hls(channels.h264[i % channels.h264.len()])).collect(),
        // One transcode a session: TS on each video channel, then HLS on each (a session is
        // per channel, profile and output, so xg2g shares none of them).
        Scenario::H264 { streams } => channels
            .video
            .iter()
            .map(|&c| ts(c, Profile::H264))
            .chain(channels.video.iter().map(|&c| Planned {
                kind: ClientKind::Hls,
                channel: c,
                profile: Profile::H264,
            }))
            .take(streams)
            .collect(),
        Scenario::Mixed { clients } => {
            // 25 clients: 12 aac TS over the video channels, 3 copy TS, 8 HLS (half on an H.264
            // channel, half on an MPEG-2 one, which `auto` transcodes), 2 radio aac TS;
            // interleaved so that any prefix is a mix too.
            let v = |i: usize| channels.video[i % channels.video.len()];
            let (h, m) = (channels.h264[0], channels.mpeg2[0]);
            let radio = channels.radio.first().copied().unwrap_or(h);
            let pattern = [
                ts(v(0), Profile::Aac),
                hls(h),
                ts(v(1), Profile::Aac),
                hls(m),
                ts(v(2), Profile::Aac),
                ts(h, Profile::Copy),
                ts(v(3), Profile::Aac),
                hls(h),
                ts(radio, Profile::Aac),
                ts(v(0), Profile::Aac),
                hls(m),
                ts(v(1), Profile::Aac),
                ts(m, Profile::Copy),
                ts(v(2), Profile::Aac),
                hls(h),
                ts(v(3), Profile::Aac),
                hls(m),
                ts(v(0), Profile::Aac),
                ts(h, Profile::Copy),
                ts(v(1), Profile::Aac),
                hls(h),
                ts(v(2), Profile::Aac),
                hls(m),
                ts(radio, Profile::Aac),
                ts(v(3), Profile::Aac),
            ];
            pattern.iter().copied().cycle().take(clients).collect()
        }
    }
}

/// Where each server is, to build the URLs of a plan.
#[derive(Debug, Clone)]
pub(crate) struct Endpoints {
    /// xg2g's base URL, `http://127.0.0.1:port`.
    pub xg2g: String,
    /// The FFmpeg proxy's base URL.
    pub ffmpeg: String,
    /// The demo receiver's stream and relay ports, `http://127.0.0.1:port`.
    pub stream: String,
    pub relay: String,
}

/// The URL a client of `server` requests. `index` makes each peer HLS client its own ffmpeg.
pub(crate) fn url(planned: &Planned, server: Server, endpoints: &Endpoints, index: usize) -> String {
    let reference = planned.channel.reference;
    match server {
        Server::Xg2g => match planned.kind {
            ClientKind::Ts => format!(
                "{}/stream/{reference}?profile={}",
                endpoints.xg2g,
                planned.profile.as_str()
            ),
            ClientKind::Hls => format!(
                "{}/hls/{reference}/{}/index.m3u8",
                endpoints.xg2g,
                planned.profile.as_str()
            ),
        },
        Server::Ffmpeg => {
            // The source xg2g would open: the relay for whitelisted channels.
            let origin = if planned.channel.relay {
                &endpoints.relay
            } else {
                &endpoints.stream
            };
            let source = format!("{origin}/{reference}");
            let src = percent_encoding::utf8_percent_encode(&source, percent_encoding::NON_ALPHANUMERIC);
            let profile = match planned.profile {
                Profile::Auto if planned.channel.video == LineupVideo::H264 => Profile::Aac,
                Profile::Auto => Profile::H264,
                other => other,
            };
            match planned.kind {
                ClientKind::Ts => format!("{}/ts/{}?src={src}", endpoints.ffmpeg, profile.as_str()),
                ClientKind::Hls => {
                    format!(
                        "{}/hls/c{index}/{}/media.m3u8?src={src}",
                        endpoints.ffmpeg,
                        profile.as_str()
                    )
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channels() -> Channels {
        Channels::new(&xg2g::demo::lineup())
    }

    #[test]
    fn the_demo_lineup_has_every_role() {
        let c = channels();
        assert_eq!(c.video.len(), 4);
        assert_eq!((c.h264.len(), c.mpeg2.len(), c.radio.len()), (2, 2, 1));
    }

    #[test]
    fn mixed_fifty_has_the_documented_shares() {
        let plan = plan(Scenario::Mixed { clients: 50 }, &channels());
        assert_eq!(plan.len(), 50);
        let count = |f: &dyn Fn(&Planned) -> bool| plan.iter().filter(|p| f(p)).count();
        assert_eq!(count(&|p| p.kind == ClientKind::Hls), 16);
        assert_eq!(
            count(&|p| p.kind == ClientKind::Hls && p.channel.video == LineupVideo::Mpeg2),
            8
        );
        assert_eq!(count(&|p| p.profile == Profile::Copy), 6);
        assert_eq!(count(&|p| p.channel.video == LineupVideo::None), 4);
        assert_eq!(
            count(&|p| p.profile == Profile::Aac && p.channel.video != LineupVideo::None),
            24
        );
        // A short prefix still mixes TS and HLS.
        let prefix = super::plan(Scenario::Mixed { clients: 4 }, &channels());
        assert!(prefix.iter().any(|p| p.kind == ClientKind::Hls));
        assert!(prefix.iter().any(|p| p.kind == ClientKind::Ts));
    }

    #[test]
    fn sizes_follow_the_scenario() {
        let c = channels();
        assert_eq!(plan(Scenario::AacOne, &c).len(), 1);
        assert_eq!(plan(Scenario::AacChannels, &c).len(), 4);
        assert_eq!(plan(Scenario::AacShared { clients: 100 }, &c).len(), 100);
        let h264 = plan(Scenario::H264 { streams: 8 }, &c);
        assert_eq!(h264.len(), 8);
        // Distinct sessions (channel and output), so that xg2g runs one transcode each.
        for (i, a) in h264.iter().enumerate() {
            for b in &h264[i + 1..] {
                assert!(
                    a.channel != b.channel || a.kind != b.kind,
                    "{a:?} and {b:?} share a session"
                );
            }
        }
        assert_eq!(
            plan(Scenario::H264 { streams: 9 }, &c).len(),
            8,
            "no more distinct sessions"
        );
        assert!(
            plan(Scenario::Hls, &c)
                .iter()
                .all(|p| p.channel.video == LineupVideo::H264)
        );
    }

    #[test]
    fn peer_urls_carry_the_source_xg2g_would_open() {
        let c = channels();
        let endpoints = Endpoints {
            xg2g: "http://127.0.0.1:1".into(),
            ffmpeg: "http://127.0.0.1:2".into(),
            stream: "http://127.0.0.1:8001".into(),
            relay: "http://127.0.0.1:17999".into(),
        };
        let relay = c
            .video
            .iter()
            .find(|ch| ch.relay)
            .copied()
            .expect("a whitelisted channel");
        let p = Planned {
            kind: ClientKind::Ts,
            channel: relay,
            profile: Profile::Aac,
        };
        assert_eq!(
            url(&p, Server::Xg2g, &endpoints, 0),
            format!("http://127.0.0.1:1/stream/{}?profile=aac", relay.reference)
        );
        let peer = url(&p, Server::Ffmpeg, &endpoints, 0);
        assert!(
            peer.starts_with("http://127.0.0.1:2/ts/aac?src=http%3A%2F%2F127%2E0%2E0%2E1%3A17999%2F1%3A0%3A19"),
            "{peer}"
        );
        let hls_sd = Planned {
            kind: ClientKind::Hls,
            channel: c.mpeg2[0],
            profile: Profile::Auto,
        };
        assert!(
            url(&hls_sd, Server::Ffmpeg, &endpoints, 7).starts_with("http://127.0.0.1:2/hls/c7/h264/media.m3u8?src=")
        );
        assert!(url(&hls_sd, Server::Xg2g, &endpoints, 7).ends_with("/auto/index.m3u8"));
    }
}
