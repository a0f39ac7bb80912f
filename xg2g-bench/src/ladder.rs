//! The ladder the `ladder` scenario measures, read from xg2g's `abr` template, and the two
//! baselines made from it: an `h264` profile at each lower rung's size for xg2g (three
//! separate sessions), and the rungs the FFmpeg peer's one-process ladder encodes. Pure: no IO.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

/// One rung: a bound on the picture and the video bitrate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Rung {
    pub width: u16,
    pub height: u16,
    /// kbit/s.
    pub kbps: u32,
    /// Frames a second when the rung has its own (abr.toml's `frame_rate`); else the source's.
    pub fps: Option<u16>,
}

/// A three-rung ladder as `pipelines/abr.toml` ships it: the top rung (copied from an H.264
/// source when `copy_h264`), two lower rungs, the AAC shared by the video rungs and the
/// audio-only rung's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct LadderSpec {
    /// Highest first.
    pub rungs: [Rung; 3],
    pub copy_h264: bool,
    /// kbit/s of the AAC every video rung carries.
    pub audio_kbps: u32,
    /// kbit/s of the audio-only rung.
    pub audio_only_kbps: u32,
}

impl Default for LadderSpec {
    /// The ladder issue 13 asks for: 720p at 3000 kbit/s, 480p at 1200, 360p at 700, AAC at
    /// 128 and 48 (`xg2g-bench peer`'s default; the bench passes the one of abr.toml).
    fn default() -> Self {
        Self {
            rungs: [
                Rung {
                    width: 1280,
                    height: 720,
                    kbps: 3000,
                    fps: None,
                },
                Rung {
                    width: 854,
                    height: 480,
                    kbps: 1200,
                    fps: None,
                },
                Rung {
                    width: 640,
                    height: 360,
                    kbps: 700,
                    fps: None,
                },
            ],
            copy_h264: true,
            audio_kbps: 128,
            audio_only_kbps: 48,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LadderError {
    #[error("{file}: {detail}")]
    Template { file: &'static str, detail: String },
    #[error("ladder {text:?}: {detail}; write it as 1280x720@3000,854x480@1200,640x360@700;aac@128,48")]
    Spec { text: String, detail: String },
}

fn template(file: &'static str, detail: impl Into<String>) -> LadderError {
    LadderError::Template {
        file,
        detail: detail.into(),
    }
}

// Only what the bench mirrors; xg2g validates the rest.
#[derive(Deserialize)]
struct AbrFile {
    ladder: Option<AbrLadder>,
    #[serde(default)]
    params: toml::Table,
}

#[derive(Deserialize)]
struct AbrLadder {
    #[serde(default)]
    copy_h264: bool,
    rungs: Vec<AbrRung>,
}

#[derive(Deserialize)]
struct AbrRung {
    width: u16,
    height: u16,
    video_bitrate: u32,
    frame_rate: Option<u16>,
}

/// A bit rate parameter of a template (`"128000"`, bit/s) in kbit/s.
fn kbps_param(params: &toml::Table, key: &str) -> Result<u32, LadderError> {
    let value = params
        .get(key)
        .ok_or_else(|| template("abr.toml", format!("[params] has no {key}")))?;
    let bps = match value {
        toml::Value::String(s) => s.trim().parse::<u32>().ok(),
        toml::Value::Integer(i) => u32::try_from(*i).ok(),
        _ => None,
    }
    .ok_or_else(|| template("abr.toml", format!("{key} = {value} is not bit/s")))?;
    Ok(bps / 1000)
}

impl LadderSpec {
    /// The ladder of xg2g's `abr.toml`.
    pub fn from_abr_toml(text: &str) -> Result<Self, LadderError> {
        let file: AbrFile = toml::from_str(text).map_err(|e| template("abr.toml", e.message().to_owned()))?;
        let ladder = file
            .ladder
            .ok_or_else(|| template("abr.toml", "no [ladder] table: not a ladder template"))?;
        let rungs: Vec<Rung> = ladder
            .rungs
            .iter()
            .map(|r| Rung {
                width: r.width,
                height: r.height,
                kbps: r.video_bitrate,
                fps: r.frame_rate,
            })
            .collect();
        let rungs: [Rung; 3] = rungs.try_into().map_err(|r: Vec<Rung>| {
            template(
                "abr.toml",
                format!("{} rungs: the ladder scenario compares three", r.len()),
            )
        })?;
        Ok(Self {
            rungs,
            copy_h264: ladder.copy_h264,
            audio_kbps: kbps_param(&file.params, "audio_bitrate")?,
            audio_only_kbps: kbps_param(&file.params, "audio_only_bitrate")?,
        })
    }

    /// The rungs below the top, whose sizes the `h264-{height}` baselines take.
    pub fn lower(&self) -> [Rung; 2] {
        [self.rungs[1], self.rungs[2]]
    }

    /// The heights of the lower rungs, as scenarios carry them.
    pub fn lower_heights(&self) -> [u16; 2] {
        self.lower().map(|r| r.height)
    }
}

/// `1280x720@3000,854x480@1200,640x360@700;aac@128,48` (a rung with its own frame rate
/// `960x540@2000/25`): how the bench tells the peer
/// (`xg2g-bench peer --ladder`) which ladder to encode. `copy_h264` is not in it: the bench
/// asks for `ladder-copy` or `ladder` per channel.
impl fmt::Display for LadderSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.rungs.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            write!(f, "{sep}{}x{}@{}", r.width, r.height, r.kbps)?;
            if let Some(fps) = r.fps {
                write!(f, "/{fps}")?;
            }
        }
        write!(f, ";aac@{},{}", self.audio_kbps, self.audio_only_kbps)
    }
}

impl FromStr for LadderSpec {
    type Err = LadderError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |detail: &str| LadderError::Spec {
            text: text.chars().take(80).collect(),
            detail: detail.to_owned(),
        };
        let (video, audio) = text.split_once(";aac@").ok_or_else(|| bad("no ;aac@"))?;
        let rung = |s: &str| -> Option<Rung> {
            let (size, rate) = s.split_once('@')?;
            let (w, h) = size.split_once('x')?;
            let (kbps, fps) = match rate.split_once('/') {
                Some((kbps, fps)) => (kbps, Some(fps.parse().ok()?)),
                None => (rate, None),
            };
            Some(Rung {
                width: w.parse().ok()?,
                height: h.parse().ok()?,
                kbps: kbps.parse().ok()?,
                fps,
            })
        };
        let rungs: Vec<Rung> = video
            .split(',')
            .map(|s| rung(s).ok_or_else(|| bad("a rung is WIDTHxHEIGHT@KBPS")))
            .collect::<Result<_, _>>()?;
        let rungs: [Rung; 3] = rungs.try_into().map_err(|_| bad("three rungs"))?;
        let (a, only) = audio.split_once(',').ok_or_else(|| bad("two AAC rates"))?;
        let kbps = |s: &str| s.parse::<u32>().map_err(|_| bad("AAC rates are kbit/s"));
        Ok(Self {
            rungs,
            copy_h264: true,
            audio_kbps: kbps(a)?,
            audio_only_kbps: kbps(only)?,
        })
    }
}

/// The xg2g profile name of the `h264` baseline at a lower rung's height.
pub fn rung_profile(height: u16) -> String {
    format!("h264-{height}")
}

/// xg2g's `h264.toml` turned into the `h264-{height}` profile of one lower rung: its name and
/// its `width`, `height` and `video_bitrate` parameters replaced, everything else as shipped
/// (graph, encoder, audio), so that three separate sessions cost what three `h264` sessions
/// at the ladder's sizes cost. A rung with its own frame rate gets a `videorate` before the
/// scaler and the rate in the scaler's caps, so that the session encodes as many frames as the
/// ladder's rung.
pub fn rung_template(h264_toml: &str, rung: Rung) -> Result<String, LadderError> {
    let mut table: toml::Table =
        toml::from_str(h264_toml).map_err(|e| template("h264.toml", e.message().to_owned()))?;
    if table.get("name").and_then(toml::Value::as_str) != Some("h264") {
        return Err(template("h264.toml", "name is not \"h264\""));
    }
    let name = rung_profile(rung.height);
    table.insert(
        "description".into(),
        format!("{name}: the bench's baseline rung").into(),
    );
    table.insert("name".into(), name.into());
    let params = table
        .get_mut("params")
        .and_then(toml::Value::as_table_mut)
        .ok_or_else(|| template("h264.toml", "no [params]"))?;
    for (key, value) in [
        ("width", rung.width.to_string()),
        ("height", rung.height.to_string()),
        ("video_bitrate", rung.kbps.to_string()),
    ] {
        if !params.contains_key(key) {
            return Err(template("h264.toml", format!("[params] has no {key}")));
        }
        params.insert(key.into(), value.into());
    }
    if let Some(fps) = rung.fps {
        let graph = table
            .get_mut("video")
            .and_then(|v| v.get_mut("graph"))
            .ok_or_else(|| template("h264.toml", "no [video] graph"))?;
        let text = graph.as_str().unwrap_or_default();
        let (scale, caps) = ("! videoconvert ! videoscale", "pixel-aspect-ratio=1/1");
        if text.matches(scale).count() != 1 || text.matches(caps).count() != 1 {
            return Err(template(
                "h264.toml",
                format!("the video graph has no one `{scale}` and `{caps}` to set {fps} frames a second at"),
            ));
        }
        *graph = text
            .replace(scale, &format!("! videorate {scale}"))
            .replace(caps, &format!("{caps},framerate={fps}/1"))
            .into();
    }
    toml::to_string(&table).map_err(|e| template("h264.toml", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ABR: &str = r#"
name = "abr"
mode = "gpu"
outputs = ["hls"]
[audio]
graph = "queue"
[ladder]
copy_h264 = true
decode = "queue"
rung = "queue"
audio_only = "queue"
[[ladder.rungs]]
width = 1280
height = 720
video_bitrate = 3000
[[ladder.rungs]]
width = 854
height = 480
video_bitrate = 1200
[[ladder.rungs]]
width = 640
height = 360
video_bitrate = 700
[params]
audio_bitrate = "128000"
audio_only_bitrate = "48000"
aac_coder = "fast"
"#;

    #[test]
    fn the_shipped_abr_template_is_the_default_ladder() {
        assert_eq!(LadderSpec::from_abr_toml(ABR), Ok(LadderSpec::default()));
        // The file in the repository, once it exists, reads too.
        let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/../pipelines/abr.toml");
        if let Ok(text) = std::fs::read_to_string(shipped) {
            let spec = LadderSpec::from_abr_toml(&text).expect("pipelines/abr.toml");
            assert_eq!(spec.rungs[0].height, 720, "{spec:?}");
        }
    }

    #[test]
    fn abr_templates_the_scenario_cannot_compare_are_named() {
        let two = ABR.replacen(
            "[[ladder.rungs]]\nwidth = 640\nheight = 360\nvideo_bitrate = 700\n",
            "",
            1,
        );
        let error = LadderSpec::from_abr_toml(&two).unwrap_err().to_string();
        assert_eq!(error, "abr.toml: 2 rungs: the ladder scenario compares three");
        let error = LadderSpec::from_abr_toml("name = \"h264\"").unwrap_err().to_string();
        assert!(error.contains("no [ladder] table"), "{error}");
        let no_rate = ABR.replace("audio_only_bitrate = \"48000\"\n", "");
        assert!(
            LadderSpec::from_abr_toml(&no_rate)
                .unwrap_err()
                .to_string()
                .contains("audio_only_bitrate")
        );
    }

    #[test]
    fn a_rung_with_its_own_frame_rate_gets_it_in_both_baselines() {
        let abr = ABR.replacen("video_bitrate = 1200\n", "video_bitrate = 1200\nframe_rate = 25\n", 1);
        let spec = LadderSpec::from_abr_toml(&abr).expect("abr");
        assert_eq!(spec.rungs.map(|r| r.fps), [None, Some(25), None]);
        let text = spec.to_string();
        assert_eq!(text, "1280x720@3000,854x480@1200/25,640x360@700;aac@128,48");
        assert_eq!(text.parse(), Ok(spec));
        let h264 = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../pipelines/h264.toml"))
            .expect("pipelines/h264.toml");
        let made: toml::Table = toml::from_str(&rung_template(&h264, spec.rungs[1]).expect("rung")).expect("TOML");
        let graph = made["video"]["graph"].as_str().expect("graph");
        assert!(graph.contains("! videorate ! videoconvert ! videoscale"), "{graph}");
        assert!(graph.contains("pixel-aspect-ratio=1/1,framerate=25/1"), "{graph}");
    }

    #[test]
    fn the_peer_argument_round_trips() {
        let spec = LadderSpec::default();
        let text = spec.to_string();
        assert_eq!(text, "1280x720@3000,854x480@1200,640x360@700;aac@128,48");
        assert_eq!(text.parse(), Ok(spec));
        for bad in [
            "",
            "1280x720@3000;aac@128,48",
            "1280x720@3000,854x480@1200,640x360;aac@128,48",
            "1280x720@3000,854x480@1200,640x360@700",
            "1280x720@3000,854x480@1200,640x360@700;aac@128",
        ] {
            assert!(bad.parse::<LadderSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_rung_template_is_h264_at_the_rungs_size() {
        let h264 = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../pipelines/h264.toml"))
            .expect("pipelines/h264.toml");
        let rung = LadderSpec::default().rungs[1];
        let text = rung_template(&h264, rung).expect("rung template");
        let made: toml::Table = toml::from_str(&text).expect("valid TOML");
        let shipped: toml::Table = toml::from_str(&h264).expect("valid TOML");
        assert_eq!(made["name"].as_str(), Some("h264-480"));
        let params = made["params"].as_table().expect("params");
        assert_eq!(params["width"].as_str(), Some("854"));
        assert_eq!(params["height"].as_str(), Some("480"));
        assert_eq!(params["video_bitrate"].as_str(), Some("1200"));
        // Everything else as shipped: the graphs, the audio, the mode.
        for key in ["mode", "outputs", "video", "audio"] {
            assert_eq!(made[key], shipped[key], "{key}");
        }
        assert_eq!(params["audio_bitrate"], shipped["params"]["audio_bitrate"]);
        assert!(!text.contains("videorate"), "the source's rate: {text}");
        assert!(rung_template("name = \"aac\"\n[params]\n", rung).is_err());
        assert!(rung_template("name = \"h264\"\n[params]\nwidth = \"1\"\n", rung).is_err());
    }
}
