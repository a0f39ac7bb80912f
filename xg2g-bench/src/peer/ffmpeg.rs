//! The ffmpeg command lines the peers run: three profiles, two outputs (the one-process ladder
//! is in `ladder.rs`).

use std::path::Path;

pub(super) const PLAYLIST: &str = "media.m3u8";

/// Deinterlaces what is interlaced (25i to 50p, one frame per field), passes progressive 50p
/// through and scales like xg2g's h264.toml: down to fit 1280x720, never up (576i 16:9 becomes
/// 1024x576), square pixels. xg2g's h264.toml uses GStreamer's `deinterlace method=linear
/// fields=all` (mode auto): the same frame rates, a cheaper filter than yadif; close enough for a
/// CPU comparison. Plain `yadif=1` (deint=all) would double the progressive HD channel to 100 fps
/// and twice the x264 work; `fps=50` keeps the declared rate at 50 (yadif declares 100 even for
/// the frames it passes through, which made x264's rate control aim at half the bitrate).
const H264_FILTER: &str = "yadif=mode=send_field:deint=interlaced,fps=50,\
     scale=w='trunc(min(720,ih)*dar/2)*2':h='min(720,ih)',setsar=1,format=yuv420p";

/// [`H264_FILTER`]'s deinterlacing, done once for every rung of a ladder.
pub(super) const DEINTERLACE: &str = "yadif=mode=send_field:deint=interlaced,fps=50";

/// [`H264_FILTER`]'s scaling at another height bound.
pub(super) fn scale_to(height: u16) -> String {
    format!("scale=w='trunc(min({height},ih)*dar/2)*2':h='min({height},ih)',setsar=1,format=yuv420p")
}

/// The three ways the peers run FFmpeg for a live channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Profile {
    /// The original product's audio proxy: video copied, audio to stereo AAC.
    Aac,
    /// Remux only.
    Copy,
    /// Deinterlace, scale to 720p, x264 and AAC.
    H264,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown profile `{0}`: use aac, copy or h264 (HLS also ladder or ladder-copy)")]
pub(super) struct UnknownProfile(String);

impl std::str::FromStr for Profile {
    type Err = UnknownProfile;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "aac" => Ok(Profile::Aac),
            "copy" => Ok(Profile::Copy),
            "h264" => Ok(Profile::H264),
            other => Err(UnknownProfile(other.chars().take(32).collect())),
        }
    }
}

/// What one HLS ffmpeg makes: one profile's media playlist, or a whole ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HlsJob {
    Single(Profile),
    /// The ladder of `xg2g-bench peer --ladder`, from one decode; `copy_top`: the source's
    /// video is the top rung as it comes (xg2g's `abr` does so for H.264 sources).
    Ladder {
        copy_top: bool,
    },
}

impl std::str::FromStr for HlsJob {
    type Err = UnknownProfile;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ladder" => Ok(HlsJob::Ladder { copy_top: false }),
            "ladder-copy" => Ok(HlsJob::Ladder { copy_top: true }),
            other => other.parse().map(HlsJob::Single),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Output {
    /// MPEG-TS on stdout.
    Ts,
    /// `media.m3u8` and `%d.ts` in `hls_dir`.
    Hls,
}

/// The ffmpeg command line (without `ffmpeg`) for one profile and output. For HLS, `hls_dir` is
/// where the playlist and segments go (`None`: ffmpeg's working directory).
pub(super) fn ffmpeg_args(profile: Profile, output: Output, src: &str, hls_dir: Option<&Path>) -> Vec<String> {
    let words = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    let mut args = words("-hide_banner -loglevel error -nostdin -fflags +genpts+igndts -i");
    args.push(src.to_owned());
    // `-map 0:v?`: with the original's plain `-map 0:v` ffmpeg 5.1 refuses the radio channel
    // ("Stream map '0:v' matches no streams") after probing, and writes nothing.
    args.extend(words(match profile {
        Profile::Aac => {
            "-map 0:v? -c:v copy -map 0:a -c:a aac -b:a 192k -ac 2 -async 1 -start_at_zero \
             -avoid_negative_ts make_zero -muxdelay 0 -muxpreload 0"
        }
        Profile::Copy => "-map 0:v? -map 0:a? -c copy",
        Profile::H264 => "-map 0:v:0? -vf",
    }));
    if profile == Profile::H264 {
        args.push(H264_FILTER.to_owned());
        args.extend(words(
            "-c:v libx264 -preset veryfast -tune zerolatency -b:v 3000k -maxrate 3000k -bufsize 1000k -bf 0 -g 100 \
             -map 0:a:0 -c:a aac -b:a 160k -ac 2",
        ));
    }
    match output {
        Output::Ts => {
            if profile == Profile::Aac {
                args.extend(words(
                    "-mpegts_copyts 1 -mpegts_flags resend_headers+initial_discontinuity",
                ));
            }
            args.extend(words("-f mpegts pipe:1"));
        }
        Output::Hls => {
            let dir = hls_dir.unwrap_or(Path::new(""));
            args.extend(words(
                "-f hls -hls_time 2 -hls_list_size 6 \
                 -hls_flags delete_segments+independent_segments+program_date_time -hls_segment_filename",
            ));
            args.push(dir.join("%d.ts").to_string_lossy().into_owned());
            args.push(dir.join(PLAYLIST).to_string_lossy().into_owned());
        }
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "http://127.0.0.1:40001/1:0:19:283D:3FB:1:C00000:0:0:0:";

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn aac_ts_args_are_the_original_audio_proxy() {
        let expected = format!(
            "-hide_banner -loglevel error -nostdin -fflags +genpts+igndts -i {SRC} \
             -map 0:v? -c:v copy -map 0:a -c:a aac -b:a 192k -ac 2 -async 1 -start_at_zero \
             -avoid_negative_ts make_zero -muxdelay 0 -muxpreload 0 -mpegts_copyts 1 \
             -mpegts_flags resend_headers+initial_discontinuity -f mpegts pipe:1"
        );
        assert_eq!(ffmpeg_args(Profile::Aac, Output::Ts, SRC, None), words(&expected));
    }

    #[test]
    fn copy_and_h264_ts_args() {
        let copy = format!(
            "-hide_banner -loglevel error -nostdin -fflags +genpts+igndts -i {SRC} \
             -map 0:v? -map 0:a? -c copy -f mpegts pipe:1"
        );
        assert_eq!(ffmpeg_args(Profile::Copy, Output::Ts, SRC, None), words(&copy));
        let h264 = format!(
            "-hide_banner -loglevel error -nostdin -fflags +genpts+igndts -i {SRC} \
             -map 0:v:0? -vf {H264_FILTER} -c:v libx264 -preset veryfast -tune zerolatency -b:v 3000k \
             -maxrate 3000k -bufsize 1000k -bf 0 -g 100 -map 0:a:0 -c:a aac -b:a 160k -ac 2 -f mpegts pipe:1"
        );
        assert_eq!(ffmpeg_args(Profile::H264, Output::Ts, SRC, None), words(&h264));
    }

    #[test]
    fn hls_args_replace_the_mpegts_tail_and_end_in_the_playlist() {
        let dir = Path::new("/work/c1");
        let tail = words(
            "-f hls -hls_time 2 -hls_list_size 6 -hls_flags \
             delete_segments+independent_segments+program_date_time \
             -hls_segment_filename /work/c1/%d.ts /work/c1/media.m3u8",
        );
        for profile in [Profile::Aac, Profile::Copy, Profile::H264] {
            let hls = ffmpeg_args(profile, Output::Hls, SRC, Some(dir));
            let ts = ffmpeg_args(profile, Output::Ts, SRC, None);
            assert!(hls.ends_with(&tail), "{profile:?}: {hls:?}");
            assert!(
                !hls.iter()
                    .any(|a| a.starts_with("-mpegts") || a == "pipe:1" || a == "mpegts")
            );
            // Everything before the output part is the TS command's.
            let head = &hls[..hls.len() - tail.len()];
            assert!(ts.starts_with(head), "{profile:?}");
            assert_eq!(&hls[6..8], ["-i", SRC]);
        }
        let relative = ffmpeg_args(Profile::Copy, Output::Hls, SRC, None);
        assert_eq!(relative[relative.len() - 2..], ["%d.ts", "media.m3u8"]);
    }

    #[test]
    fn profiles_parse_and_unknown_ones_are_named() {
        assert_eq!("aac".parse(), Ok(Profile::Aac));
        assert_eq!("copy".parse(), Ok(Profile::Copy));
        assert_eq!("h264".parse(), Ok(Profile::H264));
        let error = "AAC".parse::<Profile>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown profile `AAC`: use aac, copy or h264 (HLS also ladder or ladder-copy)"
        );
        assert!("".parse::<Profile>().is_err());
        assert!("abr".parse::<Profile>().is_err());
        assert!("ladder".parse::<Profile>().is_err(), "a ladder is HLS only");
        assert_eq!("ladder".parse(), Ok(HlsJob::Ladder { copy_top: false }));
        assert_eq!("ladder-copy".parse(), Ok(HlsJob::Ladder { copy_top: true }));
        assert_eq!("aac".parse(), Ok(HlsJob::Single(Profile::Aac)));
        assert!("abr".parse::<HlsJob>().is_err());
    }
}
