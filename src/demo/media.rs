//! Elementary streams of the demo channels, encoded once with GStreamer and cached on disk.
//!
//! Every stream covers exactly one loop ([`LOOP_90K`], 4.8 s): 240 frames of 720p50 H.264,
//! 120 frames of 576i25 MPEG-2, 200 MP2 frames, 150 AC-3 or E-AC-3 frames. The loop length is a
//! multiple of every frame duration, so the replay is seamless. Each media kind comes at two
//! [`DemoBitrate`]s: light (simple pictures, about 1 Mbit/s) and broadcast (pictures with fine
//! moving detail that the encoder spends the bits of a real channel on).

use std::fs;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::DemoBitrate;
use super::ts::{EsKind, EsStream, Frame};
use crate::pipeline::PipelineGuard;

/// Loop length in 90 kHz ticks (4.8 s).
pub(crate) const LOOP_90K: i64 = 432_000;
const CACHE_VERSION: u32 = 5;

/// The media a demo channel carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum MediaKind {
    /// H.264 1280x720p50, MP2 stereo, AC-3 stereo.
    Hd,
    /// MPEG-2 720x576i25, MP2 stereo, AC-3 5.1.
    Sd,
    /// MP2 stereo only.
    Radio,
    /// H.264 1280x720p50 (the HD pictures), E-AC-3 5.1 as the only sound.
    HdEac3,
}

impl MediaKind {
    fn name(self) -> &'static str {
        match self {
            MediaKind::Hd => "hd",
            MediaKind::Sd => "sd",
            MediaKind::Radio => "radio",
            MediaKind::HdEac3 => "hd-eac3",
        }
    }
}

/// The encoded streams of one media kind.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Media {
    pub video: Option<EsStream>,
    pub mp2: Option<EsStream>,
    /// AC-3 or E-AC-3.
    pub ac3: Option<EsStream>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum MediaError {
    #[error("GStreamer is not usable: {0}")]
    Init(#[from] gst::glib::Error),
    #[error("demo encoder pipeline `{pipeline}` failed: {message}")]
    Pipeline { pipeline: String, message: String },
}

/// Returns the media of a kind, encoding it on first use (light: a few seconds; broadcast:
/// about 10 s on 2 cores) or reading the cache.
pub(crate) fn media(kind: MediaKind, bitrate: DemoBitrate) -> Result<Arc<Media>, MediaError> {
    const KINDS: usize = 4;
    static CELLS: [OnceLock<Arc<Media>>; 2 * KINDS] = [const { OnceLock::new() }; 2 * KINDS];
    let index = match kind {
        MediaKind::Hd => 0,
        MediaKind::Sd => 1,
        MediaKind::Radio => 2,
        MediaKind::HdEac3 => 3,
    } + match bitrate {
        DemoBitrate::Light => 0,
        DemoBitrate::Broadcast => KINDS,
    };
    let cell = &CELLS[index];
    if let Some(media) = cell.get() {
        return Ok(Arc::clone(media));
    }
    // The E-AC-3 channel is the HD pictures (cached as such) and 50 ms of audio encoding:
    // a cache file of its own would store the HD video a second time.
    let media = if kind == MediaKind::HdEac3 {
        encode(kind, bitrate)?
    } else if let Some(media) = read_cache(kind, bitrate) {
        media
    } else {
        let media = encode(kind, bitrate)?;
        if let Err(error) = write_cache(kind, bitrate, &media) {
            tracing::debug!(%error, "demo media cache not written");
        }
        media
    };
    Ok(Arc::clone(cell.get_or_init(|| Arc::new(media))))
}

/// H.264 720p50, two-second GOPs of 24 frames with B-frames, as HD channels send it. Light: a
/// ball on a plain background (about 1 Mbit/s whatever the rate asked). Broadcast: a moving
/// zone plate, fine detail in motion that takes all of 10 Mbit/s.
fn hd_video(bitrate: DemoBitrate) -> String {
    let (pattern, kbits) = match bitrate {
        DemoBitrate::Light => ("pattern=ball motion=sweep", 3_000),
        DemoBitrate::Broadcast => ("pattern=zone-plate kx2=6 ky2=6 kt=1", 10_000),
    };
    format!(
        "videotestsrc {pattern} num-buffers=240 ! \
         video/x-raw,format=I420,width=1280,height=720,framerate=50/1 ! \
         x264enc bitrate={kbits} key-int-max=24 bframes=2 b-adapt=false speed-preset=veryfast \
         option-string=scenecut=0:open-gop=0:aud=1 ! h264parse config-interval=-1 ! \
         video/x-h264,stream-format=byte-stream,alignment=au ! appsink name=sink sync=false"
    )
}

/// MPEG-2 576i25 (interlaced, flagged so), 16:9 anamorphic, closed GOPs of 12; mpeg2enc holds
/// the rate it is given: 3 Mbit/s light, 4.5 Mbit/s broadcast.
fn sd_video(bitrate: DemoBitrate) -> String {
    let kbits = match bitrate {
        DemoBitrate::Light => 3_000,
        DemoBitrate::Broadcast => 4_500,
    };
    format!(
        "videotestsrc pattern=smpte horizontal-speed=4 num-buffers=120 ! \
         video/x-raw,format=I420,width=720,height=576,framerate=25/1,interlace-mode=interleaved,\
         pixel-aspect-ratio=64/45 ! mpeg2enc format=3 bitrate={kbits} min-gop-size=12 max-gop-size=12 \
         closed-gop=true sequence-header-every-gop=true interlace-mode=1 aspect=3 ! \
         mpegvideoparse ! appsink name=sink sync=false"
    )
}

fn encode(kind: MediaKind, bitrate: DemoBitrate) -> Result<Media, MediaError> {
    gst::init()?;
    let started = std::time::Instant::now();
    let media = match kind {
        MediaKind::Hd => Media {
            video: Some(encode_video(&hd_video(bitrate), EsKind::H264, 240, 1_800)?),
            mp2: Some(encode_audio(EsKind::Mp2, 440, 2, bitrate)?),
            ac3: Some(encode_audio(EsKind::Ac3, 660, 2, bitrate)?),
        },
        MediaKind::Sd => Media {
            video: Some(encode_video(&sd_video(bitrate), EsKind::Mpeg2Video, 120, 3_600)?),
            mp2: Some(encode_audio(EsKind::Mp2, 523, 2, bitrate)?),
            ac3: Some(encode_audio(EsKind::Ac3, 330, 6, bitrate)?),
        },
        MediaKind::Radio => Media {
            video: None,
            mp2: Some(encode_audio(EsKind::Mp2, 392, 2, bitrate)?),
            ac3: None,
        },
        // The HD pictures again (encoded once), with other sound.
        MediaKind::HdEac3 => Media {
            video: media(MediaKind::Hd, bitrate)?.video.clone(),
            mp2: None,
            ac3: Some(encode_audio(EsKind::Eac3, 587, 6, bitrate)?),
        },
    };
    tracing::info!(
        kind = kind.name(),
        ?bitrate,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "Encoded demo media."
    );
    Ok(media)
}

fn encode_video(description: &str, kind: EsKind, frames: usize, duration: i64) -> Result<EsStream, MediaError> {
    let buffers = run_to_eos(description)?;
    let fail = |message: String| MediaError::Pipeline {
        pipeline: description.to_owned(),
        message,
    };
    if buffers.len() != frames {
        return Err(fail(format!("expected {frames} frames, got {}", buffers.len())));
    }
    let origin = buffers
        .iter()
        .filter_map(|b| b.pts)
        .min()
        .ok_or_else(|| fail("no timestamps".into()))?;
    let to_90k = |ns: i64| (ns as i128 * 9 / 100_000) as i64;
    // Some encoders (mpeg2enc) give no DTS. In decode order with B-frames, the decode time runs
    // one frame ahead of the presentation time of the first picture.
    let reordered = buffers.windows(2).any(|w| w[1].pts < w[0].pts);
    let synthesize = buffers.iter().any(|b| b.dts.is_none());
    let lead = if reordered { duration } else { 0 };
    // Round to the frame grid: encoders report nanoseconds, the loop needs exact ticks.
    let snap = |t: i64| (t as f64 / duration as f64).round() as i64 * duration;
    let mut out = Vec::with_capacity(frames);
    for (i, b) in buffers.into_iter().enumerate() {
        let pts = snap(to_90k(
            b.pts.ok_or_else(|| fail("frame without PTS".into()))? as i64 - origin as i64,
        ));
        let dts = match b.dts {
            Some(d) if !synthesize => snap(to_90k(d as i64 - origin as i64)),
            _ => i as i64 * duration - lead,
        };
        out.push(Frame {
            data: b.data,
            pts,
            dts,
            key: b.key,
        });
    }
    Ok(EsStream {
        kind,
        frame_duration: duration,
        frames: out,
    })
}

/// One loop of audio: a tone (light), or a tone over pink noise (broadcast), which an audio
/// encoder finds as hard as programme sound; on a bare tone FFmpeg's AAC coders cost the same,
/// on programme sound its fast coder costs half of its default.
fn encode_audio(kind: EsKind, freq: u32, channels: u32, bitrate: DemoBitrate) -> Result<EsStream, MediaError> {
    let (encoder, parser, samples, kbits) = match kind {
        EsKind::Mp2 => ("avenc_mp2", "mpegaudioparse", 1_152i64, 192_000),
        // E-AC-3 5.1 as DVB HD channels send it (ac3parse frames both).
        EsKind::Eac3 => ("avenc_eac3", "ac3parse", 1_536, 256_000),
        _ => ("avenc_ac3", "ac3parse", 1_536, 448_000),
    };
    let duration = samples * 90_000 / 48_000;
    let frames = (LOOP_90K / duration) as usize;
    let mask = if channels == 6 {
        ",channel-mask=(bitmask)0x3f"
    } else {
        ""
    };
    // A few frames more than a loop: encoders hold some samples back.
    let raw = format!("audio/x-raw,format=F32LE,rate=48000,channels={channels}{mask}");
    let source = |wave: &str, volume: f64| {
        format!(
            "audiotestsrc {wave} volume={volume} samplesperbuffer={samples} num-buffers={} ! {raw}",
            frames + 4
        )
    };
    let encode = format!("audioconvert ! {encoder} bitrate={kbits} ! {parser} ! appsink name=sink sync=false");
    let description = match bitrate {
        DemoBitrate::Light => format!("{} ! {encode}", source(&format!("wave=sine freq={freq}"), 0.3)),
        DemoBitrate::Broadcast => format!(
            "audiomixer name=mix ! {raw} ! {encode} {} ! mix. {} ! mix.",
            source(&format!("wave=sine freq={freq}"), 0.25),
            source("wave=pink-noise", 0.1)
        ),
    };
    let buffers = run_to_eos(&description)?;
    if buffers.len() < frames {
        return Err(MediaError::Pipeline {
            pipeline: description,
            message: format!("expected {frames} audio frames, got {}", buffers.len()),
        });
    }
    let out = buffers
        .into_iter()
        .take(frames)
        .enumerate()
        .map(|(i, b)| Frame {
            data: b.data,
            pts: i as i64 * duration,
            dts: i as i64 * duration,
            key: true,
        })
        .collect();
    Ok(EsStream {
        kind,
        frame_duration: duration,
        frames: out,
    })
}

struct Encoded {
    data: Vec<u8>,
    pts: Option<u64>,
    dts: Option<u64>,
    key: bool,
}

/// Runs a finite pipeline and collects what reaches its appsink `sink`.
fn run_to_eos(description: &str) -> Result<Vec<Encoded>, MediaError> {
    let fail = |message: String| MediaError::Pipeline {
        pipeline: description.to_owned(),
        message,
    };
    let pipeline = gst::parse::launch(description)
        .map_err(|e| fail(e.to_string()))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| fail("not a pipeline".into()))?;
    let guard = PipelineGuard::new(pipeline.clone());
    let sink = pipeline
        .by_name("sink")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .ok_or_else(|| fail("no appsink named sink".into()))?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| fail(e.to_string()))?;
    let mut out = Vec::new();
    while let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_seconds(30)) {
        let Some(buffer) = sample.buffer() else { continue };
        let map = buffer.map_readable().map_err(|e| fail(e.to_string()))?;
        out.push(Encoded {
            data: map.as_slice().to_vec(),
            pts: buffer.pts().map(|t| t.nseconds()),
            dts: buffer.dts().map(|t| t.nseconds()),
            key: !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT),
        });
    }
    if let Some(bus) = pipeline.bus()
        && let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error])
        && let gst::MessageView::Error(err) = msg.view()
    {
        return Err(fail(format!(
            "{} ({})",
            err.error(),
            msg.src().map(|s| s.name().to_string()).unwrap_or_default()
        )));
    }
    drop(guard);
    Ok(out)
}

fn cache_path(kind: MediaKind, bitrate: DemoBitrate) -> Option<PathBuf> {
    let dir = std::env::var_os("XG2G_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("xg2g")))
        .or_else(|| std::env::var_os("HOME").map(|d| PathBuf::from(d).join(".cache/xg2g")))?;
    let weight = match bitrate {
        DemoBitrate::Light => "light",
        DemoBitrate::Broadcast => "broadcast",
    };
    Some(dir.join(format!("demo-media-v{CACHE_VERSION}-{}-{weight}.bin", kind.name())))
}

fn read_cache(kind: MediaKind, bitrate: DemoBitrate) -> Option<Media> {
    let mut bytes = Vec::new();
    fs::File::open(cache_path(kind, bitrate)?)
        .ok()?
        .read_to_end(&mut bytes)
        .ok()?;
    let mut r = Reader(&bytes);
    let mut streams = Vec::new();
    for _ in 0..r.u32()? {
        streams.push(r.stream()?);
    }
    let mut video = None;
    let mut mp2 = None;
    let mut ac3 = None;
    for s in streams {
        match s.kind {
            EsKind::H264 | EsKind::Mpeg2Video => video = Some(s),
            EsKind::Mp2 => mp2 = Some(s),
            EsKind::Ac3 | EsKind::Eac3 => ac3 = Some(s),
        }
    }
    (mp2.is_some() || ac3.is_some()).then_some(Media { video, mp2, ac3 })
}

fn write_cache(kind: MediaKind, bitrate: DemoBitrate, media: &Media) -> io::Result<()> {
    let path = cache_path(kind, bitrate).ok_or_else(|| io::Error::other("no cache directory"))?;
    let dir = path.parent().ok_or_else(|| io::Error::other("no cache directory"))?;
    fs::create_dir_all(dir)?;
    let streams: Vec<&EsStream> = media.video.iter().chain(&media.mp2).chain(&media.ac3).collect();
    let mut out = Vec::new();
    out.extend_from_slice(&(streams.len() as u32).to_le_bytes());
    for s in streams {
        out.push(match s.kind {
            EsKind::H264 => 0,
            EsKind::Mpeg2Video => 1,
            EsKind::Mp2 => 2,
            EsKind::Ac3 => 3,
            EsKind::Eac3 => 4,
        });
        out.extend_from_slice(&s.frame_duration.to_le_bytes());
        out.extend_from_slice(&(s.frames.len() as u32).to_le_bytes());
        for f in &s.frames {
            out.extend_from_slice(&f.pts.to_le_bytes());
            out.extend_from_slice(&f.dts.to_le_bytes());
            out.push(f.key as u8);
            out.extend_from_slice(&(f.data.len() as u32).to_le_bytes());
            out.extend_from_slice(&f.data);
        }
    }
    // Write then rename, so a concurrent reader never sees half a file.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    fs::File::create(&tmp)?.write_all(&out)?;
    fs::rename(tmp, path)
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn stream(&mut self) -> Option<EsStream> {
        let kind = match self.take(1)?[0] {
            0 => EsKind::H264,
            1 => EsKind::Mpeg2Video,
            2 => EsKind::Mp2,
            3 => EsKind::Ac3,
            4 => EsKind::Eac3,
            _ => return None,
        };
        let frame_duration = self.i64()?;
        let count = self.u32()?;
        let mut frames = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let pts = self.i64()?;
            let dts = self.i64()?;
            let key = self.take(1)?[0] != 0;
            let len = self.u32()? as usize;
            frames.push(Frame {
                data: self.take(len)?.to_vec(),
                pts,
                dts,
                key,
            });
        }
        Some(EsStream {
            kind,
            frame_duration,
            frames,
        })
    }
}
