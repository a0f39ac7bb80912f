//! The bench's scenarios as plain data: which clients, on which channels, with which profile,
//! and the URL each server gives them. No IO here.

use std::borrow::Cow;
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
    /// One adaptive ladder on one channel, or the same rungs as separate sessions; a player on
    /// each video rung.
    Ladder { channel: LadderChannel, setup: LadderSetup },
    /// This many ladders at once, each on its own channel (HD, SD, HD, SD), a player on each
    /// video rung of each.
    Ladders { ladders: usize, copy_h264: bool },
}

/// The channel of a `ladder` scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub(crate) enum LadderChannel {
    /// The demo's H.264 720p50 channel, whose top rung the ladder copies.
    Hd,
    /// The demo's MPEG-2 576i channel: every rung encoded.
    Sd,
}

/// What a `ladder` scenario runs on its channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "setup")]
pub(crate) enum LadderSetup {
    /// The ladder: xg2g's `abr` profile, or the peer's one ffmpeg with `split`. `copy_h264`:
    /// the top rung of an H.264 channel is its video as it comes (abr.toml's `copy_h264`).
    Abr { copy_h264: bool },
    /// xg2g only: one session per rung, the top one `top`, then `h264-{height}` at each lower
    /// rung's size.
    Separate { top: TopRung, lower: [u16; 2] },
}

/// The top rung of the separate sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum TopRung {
    /// `aac`: the source's video copied, what a player of a copied top rung costs.
    Aac,
    /// `h264`: transcoded (fit in 1280x720, as the ladder's top rung when it encodes).
    H264,
}

impl Scenario {
    /// The scenario families `--scenario` accepts.
    pub(crate) const NAMES: [&'static str; 7] = [
        "aac-one",
        "aac-channels",
        "aac-shared",
        "hls",
        "h264",
        "mixed",
        "ladder",
    ];

    pub(crate) fn family(&self) -> &'static str {
        match self {
            Self::AacOne => "aac-one",
            Self::AacChannels => "aac-channels",
            Self::AacShared { .. } => "aac-shared",
            Self::Hls => "hls",
            Self::H264 { .. } => "h264",
            Self::Mixed { .. } => "mixed",
            Self::Ladder { .. } | Self::Ladders { .. } => "ladder",
        }
    }

    /// Whether the FFmpeg peer runs it too: not the separate sessions of a ladder, which only
    /// xg2g's ladder is measured against.
    pub(crate) fn on_ffmpeg(&self) -> bool {
        !matches!(
            self,
            Self::Ladder {
                setup: LadderSetup::Separate { .. },
                ..
            }
        )
    }

    /// The label in tables: the family plus its size where it has one.
    pub(crate) fn label(&self) -> String {
        match self {
            Self::AacShared { clients } => format!("aac-shared ×{clients}"),
            Self::H264 { streams } => format!("h264 ×{streams}"),
            Self::Mixed { clients } => format!("mixed ×{clients}"),
            Self::Ladder { channel, setup } => {
                let on = match channel {
                    LadderChannel::Hd => "HD",
                    LadderChannel::Sd => "SD",
                };
                match setup {
                    LadderSetup::Abr { .. } => format!("ladder {on}"),
                    LadderSetup::Separate { top, lower } => {
                        let top = match top {
                            TopRung::Aac => "aac",
                            TopRung::H264 => "h264",
                        };
                        let lower = lower.map(crate::ladder::rung_profile).join(" + ");
                        format!("ladder {on} as {top} + {lower}")
                    }
                }
            }
            Self::Ladders { ladders, .. } => format!("ladders ×{ladders}"),
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
    /// HLS: xg2g's adaptive ladder; the peer's one-process ladder, its top rung copied on an
    /// H.264 channel when `copy_h264`.
    Abr {
        copy_h264: bool,
    },
    /// xg2g's `h264` at a lower rung's size (the profile the bench adds, `h264-{height}`).
    H264Rung {
        height: u16,
    },
}

impl Profile {
    fn name(self) -> Cow<'static, str> {
        match self {
            Self::Copy => "copy".into(),
            Self::Aac => "aac".into(),
            Self::H264 => "h264".into(),
            Self::Auto => "auto".into(),
            Self::Abr { .. } => "abr".into(),
            Self::H264Rung { height } => crate::ladder::rung_profile(height).into(),
        }
    }
}

/// One client of a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Planned {
    pub kind: ClientKind,
    pub channel: LineupEntry,
    pub profile: Profile,
    /// HLS: which video variant of a master playlist the client plays (0: the first, the top
    /// rung of a ladder).
    pub variant: usize,
}

impl Planned {
    /// `TS aac Das Erste HD`: what the client watches, for reports.
    pub(crate) fn label(&self) -> String {
        let kind = match self.kind {
            ClientKind::Ts => "TS",
            ClientKind::Hls => "HLS",
        };
        let variant = match self.profile {
            Profile::Abr { .. } => format!(" rung {}", self.variant),
            _ => String::new(),
        };
        format!("{kind} {}{variant} {}", self.profile.name(), self.channel.name)
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
        variant: 0,
    };
    let hls_as = |channel: LineupEntry, profile| Planned {
        kind: ClientKind::Hls,
        channel,
        profile,
        variant: 0,
    };
    let hls = |channel: LineupEntry| hls_as(channel, Profile::Auto);
    // A ladder: a player on each video rung, each entering by the master playlist.
    let ladder = |channel: LineupEntry, copy_h264| {
        (0..3).map(move |variant| Planned {
            variant,
            ..hls_as(channel, Profile::Abr { copy_h264 })
        })
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
            .chain(channels.video.iter().map(|&c| hls_as(c, Profile::H264)))
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
        Scenario::Ladder { channel, setup } => {
            let channel = match channel {
                LadderChannel::Hd => channels.h264[0],
                LadderChannel::Sd => channels.mpeg2[0],
            };
            match setup {
                LadderSetup::Abr { copy_h264 } => ladder(channel, copy_h264).collect(),
                LadderSetup::Separate { top, lower } => {
                    let top = match top {
                        TopRung::Aac => Profile::Aac,
                        TopRung::H264 => Profile::H264,
                    };
                    let lower = lower.map(|height| Profile::H264Rung { height });
                    [top, lower[0], lower[1]]
                        .into_iter()
                        .map(|profile| hls_as(channel, profile))
                        .collect()
                }
            }
        }
        // HD, SD, then the second of each: a session is per channel and profile.
        Scenario::Ladders { ladders, copy_h264 } => {
            let mut order = Vec::new();
            for i in 0..channels.h264.len().max(channels.mpeg2.len()) {
                order.extend(channels.h264.get(i));
                order.extend(channels.mpeg2.get(i));
            }
            order
                .into_iter()
                .take(ladders)
                .flat_map(|&c| ladder(c, copy_h264))
                .collect()
        }
    }
}

/// The most ladders [`Scenario::Ladders`] can run: one a video channel.
pub(crate) fn max_ladders(channels: &Channels) -> usize {
    channels.h264.len() + channels.mpeg2.len()
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
                planned.profile.name()
            ),
            ClientKind::Hls => format!(
                "{}/hls/{reference}/{}/index.m3u8",
                endpoints.xg2g,
                planned.profile.name()
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
            let h264_source = planned.channel.video == LineupVideo::H264;
            let profile = match planned.profile {
                Profile::Auto if h264_source => Profile::Aac,
                Profile::Auto => Profile::H264,
                other => other,
            };
            match (planned.kind, profile) {
                // One ffmpeg a ladder, whichever rung its players play: the client id is the
                // channel's (a run has one ladder a channel).
                (ClientKind::Hls, Profile::Abr { copy_h264 }) => {
                    let id: String = reference.chars().filter(char::is_ascii_alphanumeric).collect();
                    let job = if copy_h264 && h264_source {
                        "ladder-copy"
                    } else {
                        "ladder"
                    };
                    format!("{}/hls/l{id}/{job}/index.m3u8?src={src}", endpoints.ffmpeg)
                }
                (ClientKind::Ts, _) => format!("{}/ts/{}?src={src}", endpoints.ffmpeg, profile.name()),
                (ClientKind::Hls, _) => {
                    format!(
                        "{}/hls/c{index}/{}/media.m3u8?src={src}",
                        endpoints.ffmpeg,
                        profile.name()
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
            variant: 0,
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
            variant: 0,
        };
        assert!(
            url(&hls_sd, Server::Ffmpeg, &endpoints, 7).starts_with("http://127.0.0.1:2/hls/c7/h264/media.m3u8?src=")
        );
        assert!(url(&hls_sd, Server::Xg2g, &endpoints, 7).ends_with("/auto/index.m3u8"));
    }

    const HD: &str = "1:0:19:283D:3FB:1:C00000:0:0:0:";
    const SD: &str = "1:0:1:6F0B:44D:1:C00000:0:0:0:";

    #[test]
    fn ladder_scenarios_run_on_the_hd_and_sd_channels_with_a_player_a_rung() {
        let c = channels();
        let endpoints = Endpoints {
            xg2g: "http://127.0.0.1:1".into(),
            ffmpeg: "http://127.0.0.1:2".into(),
            stream: "http://127.0.0.1:8001".into(),
            relay: "http://127.0.0.1:17999".into(),
        };
        let abr = LadderSetup::Abr { copy_h264: true };
        let hd = plan(
            Scenario::Ladder {
                channel: LadderChannel::Hd,
                setup: abr,
            },
            &c,
        );
        assert_eq!(hd.iter().map(|p| p.variant).collect::<Vec<_>>(), [0, 1, 2]);
        assert!(
            hd.iter()
                .all(|p| p.channel.reference == HD && p.kind == ClientKind::Hls)
        );
        let urls: Vec<String> = hd.iter().map(|p| url(p, Server::Xg2g, &endpoints, 0)).collect();
        assert!(
            urls.iter()
                .all(|u| u == &format!("http://127.0.0.1:1/hls/{HD}/abr/index.m3u8"))
        );
        // The peer: one ffmpeg (one client id) for the three players, the top rung copied.
        let peer: Vec<String> = hd
            .iter()
            .enumerate()
            .map(|(i, p)| url(p, Server::Ffmpeg, &endpoints, i))
            .collect();
        assert!(
            peer.iter()
                .all(|u| u.starts_with("http://127.0.0.1:2/hls/l1019283D3FB1C00000000/ladder-copy/index.m3u8?src=")),
            "{peer:?}"
        );
        assert_eq!(hd[1].label(), "HLS abr rung 1 Das Erste HD");

        let sd = plan(
            Scenario::Ladder {
                channel: LadderChannel::Sd,
                setup: abr,
            },
            &c,
        );
        assert!(sd.iter().all(|p| p.channel.reference == SD));
        assert!(url(&sd[0], Server::Ffmpeg, &endpoints, 0).contains("/ladder/index.m3u8?src="));
        let uncopied = Planned {
            profile: Profile::Abr { copy_h264: false },
            ..hd[0]
        };
        assert!(url(&uncopied, Server::Ffmpeg, &endpoints, 0).contains("/ladder/index.m3u8?src="));

        let separate = Scenario::Ladder {
            channel: LadderChannel::Hd,
            setup: LadderSetup::Separate {
                top: TopRung::Aac,
                lower: [480, 360],
            },
        };
        assert_eq!(separate.label(), "ladder HD as aac + h264-480 + h264-360");
        assert_eq!(separate.family(), "ladder");
        let sessions: Vec<String> = plan(separate, &c)
            .iter()
            .map(|p| url(p, Server::Xg2g, &endpoints, 0))
            .collect();
        assert_eq!(
            sessions,
            ["aac", "h264-480", "h264-360"].map(|p| format!("http://127.0.0.1:1/hls/{HD}/{p}/index.m3u8"))
        );
    }

    #[test]
    fn the_ladder_ramp_takes_one_channel_a_ladder_hd_and_sd_in_turn() {
        let c = channels();
        assert_eq!(max_ladders(&c), 4);
        let ramp = |ladders| {
            plan(
                Scenario::Ladders {
                    ladders,
                    copy_h264: true,
                },
                &c,
            )
        };
        let two = ramp(2);
        assert_eq!(two.len(), 6);
        assert_eq!(two[0].channel.reference, HD);
        assert_eq!(two[3].channel.reference, SD);
        let four = ramp(4);
        let mut refs: Vec<&str> = four.iter().map(|p| p.channel.reference).collect();
        refs.dedup();
        assert_eq!(refs.len(), 4, "distinct channels: {refs:?}");
        assert_eq!(ramp(5).len(), 12, "no more channels");
        assert_eq!(
            Scenario::Ladders {
                ladders: 3,
                copy_h264: true
            }
            .label(),
            "ladders ×3"
        );
    }
}
