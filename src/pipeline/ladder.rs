//! An adaptive-bitrate ladder as a template describes it: the shared decode, one encoded branch
//! per rung, the optional copied top rung and the audio-only rung, validated into [`Ladder`].
//! Which rungs a channel gets is decided once its picture is known ([`Ladder::plan`]): no rung
//! above the source's height, none that repeats another's height. Pure: no GStreamer.

use std::collections::BTreeMap;

use serde::Deserialize;

/// Highest audio-only rung: Apple's authoring rules (9.21) want a cellular variant of at most
/// 192 kbit/s; the issue asks for audio at most 64 kbit/s.
pub const AUDIO_ONLY_MAX_BPS: u32 = 64_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LadderFile {
    pub(crate) decode: String,
    pub(crate) rung: String,
    pub(crate) audio_only: String,
    #[serde(default)]
    copy_h264: bool,
    rungs: Vec<RungFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RungFile {
    width: u32,
    height: u32,
    /// kbit/s, as `{video_bitrate}` of the encoders.
    video_bitrate: u32,
    /// Most frames a second; the picture's own rate when absent.
    frame_rate: Option<u32>,
}

/// One encoded rung: a bound on the picture and the encoder's bitrate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rung {
    pub width: u32,
    pub height: u32,
    /// kbit/s.
    pub video_bitrate: u32,
    /// Most frames a second: a picture with more keeps only as many (never dropping a frame a
    /// key frame is due on, so every rung still starts its segments on the same frame). `None`:
    /// the picture's own rate (50 after deinterlacing 25i).
    pub frame_rate: Option<u32>,
}

/// A validated ladder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ladder {
    /// Decoding and deinterlacing, done once for every encoded rung.
    pub decode: String,
    /// One encoded rung's graph, with `{width}`, `{height}` and `{video_bitrate}`.
    pub rung: String,
    /// The audio-only rung's graph (decode to AAC), fed from the same audio track.
    pub audio_only: String,
    /// Whether H.264 sources are copied as the top rung.
    pub copy_h264: bool,
    /// Highest first.
    pub rungs: Vec<Rung>,
}

/// What one video output of a ladder session carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RungSource {
    /// The source's H.264, as it comes.
    Copy,
    /// Encoded from the shared decode: index into [`Ladder::rungs`].
    Encoded(usize),
}

/// The source's picture, as its parser announced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourcePicture {
    pub height: u32,
    pub h264: bool,
    pub interlaced: bool,
}

impl Ladder {
    /// The video outputs for a source, top first: the copy when the source is progressive H.264
    /// and copying is on, then every rung that is below the source and below the rungs before
    /// it (a rung whose bound is at or above the source makes the source's height, once).
    pub fn plan(&self, source: SourcePicture) -> Vec<RungSource> {
        let mut out = Vec::new();
        let mut above = u32::MAX;
        if self.copy_h264 && source.h264 && !source.interlaced {
            out.push(RungSource::Copy);
            above = source.height;
        }
        for (i, rung) in self.rungs.iter().enumerate() {
            let height = rung.height.min(source.height);
            if height < above {
                out.push(RungSource::Encoded(i));
                above = height;
            }
        }
        out
    }

    /// A rung's `{encoder}`: the encoder with its ladder properties at the rung's bitrate, and a
    /// paced rung's frame rate in the caps in front of it (x264's rate control is per frame).
    pub(crate) fn encoder_fragment(encoder: &super::EncoderChoice, rung: &Rung, keyint: u32) -> String {
        let fragment = encoder.ladder_fragment(&rung.video_bitrate.to_string(), keyint);
        match rung.frame_rate {
            Some(rate) => format!("capssetter caps=\"video/x-raw,framerate={rate}/1\" ! {fragment}"),
            None => fragment,
        }
    }

    /// The values of a rung's placeholders ([`RUNG_PLACEHOLDERS`]).
    pub(crate) fn rung_values(rung: &Rung) -> BTreeMap<&'static str, String> {
        BTreeMap::from([
            ("width", rung.width.to_string()),
            ("height", rung.height.to_string()),
            ("video_bitrate", rung.video_bitrate.to_string()),
        ])
    }
}

/// Placeholders a rung's graph gets from its `[[ladder.rungs]]` entry.
pub(crate) const RUNG_PLACEHOLDERS: &[&str] = &["width", "height", "video_bitrate"];

/// A problem with a ladder: which rung (0-based, as listed), if one, and what.
pub(crate) type LadderProblem = (Option<usize>, String);

/// Checks a ladder's rungs; each problem names the rung (1-based, as listed) and its height.
pub(crate) fn validate(file: LadderFile, params: &BTreeMap<String, String>) -> Result<Ladder, Vec<LadderProblem>> {
    let mut problems: Vec<LadderProblem> = Vec::new();
    if file.rungs.is_empty() {
        problems.push((None, "[ladder] lists no [[ladder.rungs]]".to_owned()));
    }
    let mut previous: Option<&RungFile> = None;
    for (i, rung) in file.rungs.iter().enumerate() {
        let name = format!("ladder rung {} (height {})", i + 1, rung.height);
        if !(16..=4320).contains(&rung.height) || rung.height % 2 != 0 {
            problems.push((Some(i), format!("{name}: height must be even, 16 to 4320")));
        }
        if !(16..=7680).contains(&rung.width) || rung.width % 2 != 0 {
            problems.push((
                Some(i),
                format!("{name}: width {} must be even, 16 to 7680", rung.width),
            ));
        }
        if rung.frame_rate.is_some_and(|r| !(1..=120).contains(&r)) {
            problems.push((Some(i), format!("{name}: frame_rate must be 1 to 120")));
        }
        if !(64..=100_000).contains(&rung.video_bitrate) {
            problems.push((
                Some(i),
                format!(
                    "{name}: video_bitrate {} kbit/s is outside 64 to 100000",
                    rung.video_bitrate
                ),
            ));
        }
        if let Some(before) = previous {
            if rung.height >= before.height {
                problems.push((
                    Some(i),
                    format!(
                        "{name}: rungs go from the highest down, and this one is not below {}",
                        before.height
                    ),
                ));
            }
            if rung.video_bitrate >= before.video_bitrate {
                problems.push((
                    Some(i),
                    format!(
                        "{name}: video_bitrate {} kbit/s is not below the rung above ({} kbit/s)",
                        rung.video_bitrate, before.video_bitrate
                    ),
                ));
            }
        }
        previous = Some(rung);
    }
    match params.get("audio_only_bitrate").map(|b| b.parse::<u32>()) {
        Some(Ok(bps)) if (8_000..=AUDIO_ONLY_MAX_BPS).contains(&bps) => {}
        Some(Ok(bps)) => problems.push((
            None,
            format!("audio_only_bitrate {bps} bit/s: the audio-only rung must be 8000 to {AUDIO_ONLY_MAX_BPS}"),
        )),
        Some(Err(_)) => problems.push((None, "audio_only_bitrate is not a whole number of bit/s".to_owned())),
        None => problems.push((
            None,
            "[params] needs audio_only_bitrate (bit/s) for the audio-only rung".to_owned(),
        )),
    }
    if !file.audio_only.contains("{audio_only_bitrate}") {
        problems.push((None, "[ladder] audio_only must use {audio_only_bitrate}".to_owned()));
    }
    if problems.is_empty() {
        Ok(Ladder {
            decode: file.decode,
            rung: file.rung,
            audio_only: file.audio_only,
            copy_h264: file.copy_h264,
            rungs: file
                .rungs
                .iter()
                .map(|r| Rung {
                    width: r.width,
                    height: r.height,
                    video_bitrate: r.video_bitrate,
                    frame_rate: r.frame_rate,
                })
                .collect(),
        })
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ladder(copy_h264: bool, heights: &[u32]) -> Ladder {
        Ladder {
            decode: String::new(),
            rung: String::new(),
            audio_only: String::new(),
            copy_h264,
            rungs: heights
                .iter()
                .map(|&height| Rung {
                    width: height * 16 / 9,
                    height,
                    video_bitrate: height * 4,
                    frame_rate: None,
                })
                .collect(),
        }
    }

    fn source(height: u32, h264: bool, interlaced: bool) -> SourcePicture {
        SourcePicture {
            height,
            h264,
            interlaced,
        }
    }

    #[test]
    fn no_rung_above_the_source_and_none_twice() {
        use RungSource::{Copy, Encoded};
        let l = ladder(true, &[720, 480, 360]);
        assert_eq!(
            l.plan(source(720, true, false)),
            [Copy, Encoded(1), Encoded(2)],
            "720p H.264: the copy is the top rung"
        );
        assert_eq!(
            l.plan(source(1080, true, true)),
            [Encoded(0), Encoded(1), Encoded(2)],
            "1080i H.264 is not copied"
        );
        assert_eq!(
            l.plan(source(576, false, true)),
            [Encoded(0), Encoded(1), Encoded(2)],
            "576i MPEG-2: the 720 rung keeps 576"
        );
        assert_eq!(
            l.plan(source(400, false, false)),
            [Encoded(0), Encoded(2)],
            "a 400-line source: 720 and 480 both make 400, once"
        );
        assert_eq!(
            ladder(false, &[720, 480]).plan(source(720, true, false)),
            [Encoded(0), Encoded(1)],
            "copy off"
        );
    }

    fn file(heights: &[(u32, u32)]) -> LadderFile {
        LadderFile {
            decode: "d".into(),
            rung: "r".into(),
            audio_only: "a {audio_only_bitrate}".into(),
            copy_h264: true,
            rungs: heights
                .iter()
                .map(|&(height, video_bitrate)| RungFile {
                    width: 640,
                    height,
                    video_bitrate,
                    frame_rate: None,
                })
                .collect(),
        }
    }

    #[test]
    fn a_bad_rung_is_named() {
        let params = BTreeMap::from([("audio_only_bitrate".to_owned(), "48000".to_owned())]);
        assert!(validate(file(&[(720, 3000), (480, 1200)]), &params).is_ok());
        let problems = validate(file(&[(720, 3000), (720, 1200), (361, 1500)]), &params).unwrap_err();
        assert_eq!(
            problems.iter().map(|(rung, _)| *rung).collect::<Vec<_>>(),
            [Some(1), Some(2), Some(2)]
        );
        assert_eq!(
            problems.into_iter().map(|(_, m)| m).collect::<Vec<_>>(),
            [
                "ladder rung 2 (height 720): rungs go from the highest down, and this one is not below 720",
                "ladder rung 3 (height 361): height must be even, 16 to 4320",
                "ladder rung 3 (height 361): video_bitrate 1500 kbit/s is not below the rung above (1200 kbit/s)",
            ]
        );
        let loud = BTreeMap::from([("audio_only_bitrate".to_owned(), "96000".to_owned())]);
        assert_eq!(
            validate(file(&[(720, 3000)]), &loud).unwrap_err(),
            [(
                None,
                "audio_only_bitrate 96000 bit/s: the audio-only rung must be 8000 to 64000".to_owned()
            )]
        );
    }
}
