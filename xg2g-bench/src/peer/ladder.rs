//! The peers' way to an adaptive ladder: one ffmpeg that decodes and deinterlaces once, splits
//! the picture (`-filter_complex split`) and encodes each rung with libx264 as the `h264`
//! profile does, with the video rungs sharing one AAC track (an HLS audio group) and an
//! audio-only variant with its own, as xg2g's `abr` has. Its master playlist is `index.m3u8`,
//! variant `n`'s `media_n.m3u8` with segments `n_seq.ts`; the video rungs are variants 0 to 2,
//! top first, in both the master's order and the names.

use std::path::Path;

use crate::ladder::LadderSpec;

use super::ffmpeg::{DEINTERLACE, scale_to};

/// The master playlist of a ladder.
pub(super) const MASTER: &str = "index.m3u8";

/// Whether `name` is a variant playlist of a ladder (`media_0.m3u8` …).
pub(super) fn is_variant_playlist(name: &str) -> bool {
    name.strip_prefix("media_")
        .and_then(|rest| rest.strip_suffix(".m3u8"))
        .is_some_and(|n| !n.is_empty() && n.len() <= 2 && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The ffmpeg command line (without `ffmpeg`) of one ladder into `dir`. `copy_top`: the
/// source's video is variant 0 as it comes, and only the lower rungs are decoded and encoded.
pub(super) fn ladder_args(spec: &LadderSpec, copy_top: bool, src: &str, dir: &Path) -> Vec<String> {
    let words = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    let mut args = words("-hide_banner -loglevel error -nostdin -fflags +genpts+igndts -i");
    args.push(src.to_owned());
    let encoded = if copy_top { &spec.rungs[1..] } else { &spec.rungs[..] };
    // [0:v:0]deinterlace,split=N[s0]…; [s0]scale[v0]; …
    let split: String = (0..encoded.len()).map(|i| format!("[s{i}]")).collect();
    let mut graph = format!("[0:v:0]{DEINTERLACE},split={}{split}", encoded.len());
    for (i, rung) in encoded.iter().enumerate() {
        // A rung with its own frame rate keeps every n-th frame, as xg2g's does.
        let fps = rung.fps.map(|f| format!(",fps={f}")).unwrap_or_default();
        graph.push_str(&format!(";[s{i}]{}{fps}[v{i}]", scale_to(rung.height)));
    }
    args.extend(["-filter_complex".to_owned(), graph]);
    // The h264 peer's encoder settings for every rung (a key frame every 2 s at 50 frames a
    // second), before the rungs' own, which override them.
    args.extend(words("-preset veryfast -tune zerolatency -bf 0 -g 100"));
    let mut out = 0;
    if copy_top {
        args.extend(words("-map 0:v:0 -c:v:0 copy"));
        out = 1;
    }
    for (i, rung) in encoded.iter().enumerate() {
        // The h264 peer's rate control (-b:v 3000k -bufsize 1000k) at each rung's bitrate.
        let (n, kbps) = (out + i, rung.kbps);
        args.extend(words(&format!(
            "-map [v{i}] -c:v:{n} libx264 -b:v:{n} {kbps}k -maxrate:v:{n} {kbps}k -bufsize:v:{n} {}k",
            kbps / 3
        )));
        if let Some(fps) = rung.fps {
            args.extend(words(&format!("-g:v:{n} {}", 2 * u32::from(fps))));
        }
    }
    args.extend(words(&format!(
        "-map 0:a:0 -map 0:a:0 -c:a aac -ac 2 -b:a:0 {}k -b:a:1 {}k",
        spec.audio_kbps, spec.audio_only_kbps
    )));
    args.extend(words(
        "-f hls -hls_time 2 -hls_list_size 6 \
         -hls_flags delete_segments+independent_segments+program_date_time",
    ));
    args.extend([
        "-master_pl_name".to_owned(),
        MASTER.to_owned(),
        "-var_stream_map".to_owned(),
        "v:0,agroup:aud v:1,agroup:aud v:2,agroup:aud a:0,agroup:aud a:1".to_owned(),
        "-hls_segment_filename".to_owned(),
        dir.join("%v_%d.ts").to_string_lossy().into_owned(),
        dir.join("media_%v.m3u8").to_string_lossy().into_owned(),
    ]);
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "http://127.0.0.1:40001/1:0:1:6F0B:44D:1:C00000:0:0:0:";

    #[test]
    fn an_sd_ladder_encodes_three_rungs_from_one_split() {
        let args = ladder_args(&LadderSpec::default(), false, SRC, Path::new("/w/l1"));
        let line = args.join(" ");
        let graph = &args[args.iter().position(|a| a == "-filter_complex").expect("graph") + 1];
        assert_eq!(
            graph,
            &format!(
                "[0:v:0]{DEINTERLACE},split=3[s0][s1][s2];[s0]{}[v0];[s1]{}[v1];[s2]{}[v2]",
                scale_to(720),
                scale_to(480),
                scale_to(360)
            )
        );
        for expected in [
            "-map [v0] -c:v:0 libx264 -b:v:0 3000k -maxrate:v:0 3000k -bufsize:v:0 1000k",
            "-map [v1] -c:v:1 libx264 -b:v:1 1200k -maxrate:v:1 1200k -bufsize:v:1 400k",
            "-map [v2] -c:v:2 libx264 -b:v:2 700k",
            "-preset veryfast -tune zerolatency -bf 0 -g 100",
            "-map 0:a:0 -map 0:a:0 -c:a aac -ac 2 -b:a:0 128k -b:a:1 48k",
            "-master_pl_name index.m3u8",
            "-hls_segment_filename /w/l1/%v_%d.ts /w/l1/media_%v.m3u8",
        ] {
            assert!(line.contains(expected), "{expected} in {line}");
        }
        assert!(!line.contains("copy"), "{line}");
        assert_eq!(&args[6..8], ["-i", SRC]);
    }

    #[test]
    fn an_hd_ladder_copies_its_top_rung_and_encodes_the_rest() {
        let args = ladder_args(&LadderSpec::default(), true, SRC, Path::new("/w/l1"));
        let line = args.join(" ");
        assert!(line.contains(&format!(
            "[0:v:0]{DEINTERLACE},split=2[s0][s1];[s0]{}[v0];[s1]{}[v1]",
            scale_to(480),
            scale_to(360)
        )));
        assert!(line.contains("-map 0:v:0 -c:v:0 copy -map [v0] -c:v:1 libx264 -b:v:1 1200k"));
        assert!(line.contains("-map [v1] -c:v:2 libx264 -b:v:2 700k"));
        assert!(!line.contains("3000k") && !line.contains("-g:v"), "{line}");
        // A rung at its own frame rate: every other frame, a key frame every 2 s still.
        let mut spec = LadderSpec::default();
        spec.rungs[2].fps = Some(25);
        let line = ladder_args(&spec, true, SRC, Path::new("/w/l1")).join(" ");
        assert!(line.contains(&format!(";[s1]{},fps=25[v1]", scale_to(360))), "{line}");
        assert!(
            line.contains("-b:v:2 700k -maxrate:v:2 700k -bufsize:v:2 233k -g:v:2 50"),
            "{line}"
        );
        // The output streams the variant map names: three videos, the group's AAC, the audio-only one.
        assert!(line.contains("-var_stream_map v:0,agroup:aud v:1,agroup:aud v:2,agroup:aud a:0,agroup:aud a:1"));
    }

    #[test]
    fn variant_playlists_are_told_from_other_names() {
        for ok in ["media_0.m3u8", "media_4.m3u8", "media_12.m3u8"] {
            assert!(is_variant_playlist(ok), "{ok}");
        }
        for bad in [
            "media.m3u8",
            "media_.m3u8",
            "media_a.m3u8",
            "media_123.m3u8",
            "index.m3u8",
            "0_1.ts",
        ] {
            assert!(!is_variant_playlist(bad), "{bad}");
        }
    }
}
