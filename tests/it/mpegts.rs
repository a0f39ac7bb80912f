//! `xg2g::mpegts` over transport streams that FFmpeg muxed, checked against what ffprobe reads
//! from the same bytes: the PMT's streams, every video PES's PTS and DTS, the audio PES starts,
//! the key frames, and the 27 MHz PCR (in a constant-rate stream, where it follows the byte
//! position exactly). The unit tests in `src/mpegts.rs` build their packets themselves, and the
//! demo receiver's stream is written by xg2g: this is the parser read against a muxer and a
//! demuxer nobody here wrote. Two layouts: DVB (H.264, MP2, AC-3 as a private stream with its
//! descriptor, null packets at a constant 4 Mbit/s) and ATSC-style (MPEG-2 video, AAC, AC-3 as
//! type 0x81).

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::Command;

use xg2g::mpegts::{self, PACKET, Packetizer};

use crate::common::ffprobe;

/// Mux rate of the constant-rate stream, bit/s.
const MUX_RATE: u64 = 4_000_000;

/// Three seconds of a test picture and two tones, muxed by FFmpeg with `mux` options.
fn mux(dir: &Path, name: &str, codecs: &[&str], mux: &[&str]) -> std::path::PathBuf {
    let out = dir.join(name);
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=720x576:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-f", "lavfi", "-i", "sine=frequency=880:sample_rate=48000"])
        .args(["-t", "3", "-map", "0:v", "-map", "1:a", "-map", "2:a"])
        .args(["-g", "12", "-bf", "2", "-pix_fmt", "yuv420p", "-b:v", "2M"])
        .args(["-metadata:s:a:0", "language=deu", "-metadata:s:a:1", "language=eng"])
        .args(codecs)
        .args(["-f", "mpegts", "-mpegts_service_id", "10301"])
        .args(["-mpegts_pmt_start_pid", "100", "-mpegts_start_pid", "511"])
        .args(mux)
        .arg(&out)
        .status()
        .expect("ffmpeg runs (install ffmpeg)");
    assert!(status.success(), "ffmpeg muxed {name}");
    out
}

/// One PES start as xg2g's parser reads it.
#[derive(Debug)]
struct PesStart {
    pts: Option<u64>,
    dts: Option<u64>,
    random_access: bool,
    decodable: bool,
}

/// What the parser reads from a whole file: the PMT's streams, PES starts per PID, and the
/// (byte offset, PCR) pairs of the PCR PID.
struct Parsed {
    streams: Vec<mpegts::PmtStream>,
    pes: HashMap<u16, Vec<PesStart>>,
    pcrs: Vec<(usize, u64)>,
}

fn parse(data: &[u8], pcr_pid: u16) -> Parsed {
    let mut pmt_pid = None;
    let streams = mpegts::scan_pmt(data, &mut pmt_pid).expect("a PAT and a PMT");
    assert_eq!(pmt_pid, Some(100), "the PAT names the PMT PID");
    let types: HashMap<u16, u8> = streams.iter().map(|s| (s.pid, s.stream_type)).collect();
    let mut pes: HashMap<u16, Vec<PesStart>> = HashMap::new();
    let mut pcrs = Vec::new();
    for (n, packet) in data.chunks_exact(PACKET).enumerate() {
        assert_eq!(packet[0], mpegts::SYNC, "packet {n} is in sync");
        assert!(!mpegts::transport_error(packet), "packet {n}");
        let pid = mpegts::pid(packet);
        if pid == pcr_pid
            && let Some(pcr) = mpegts::pcr(packet)
        {
            pcrs.push((n * PACKET, pcr));
        }
        let Some(&stream_type) = types.get(&pid) else {
            continue;
        };
        if mpegts::unit_start(packet) {
            pes.entry(pid).or_default().push(PesStart {
                pts: mpegts::pes_pts(packet),
                dts: mpegts::pes_dts(packet),
                random_access: mpegts::random_access(packet),
                decodable: mpegts::starts_decodable(stream_type, packet),
            });
        }
    }
    Parsed { streams, pes, pcrs }
}

/// ffprobe's packets of one stream: (pts, dts, key frame), in 90 kHz ticks as muxed.
fn probe_packets(path: &Path, index: usize) -> Vec<(u64, u64, bool)> {
    let (json, log) = ffprobe(
        path,
        &[
            "-select_streams",
            &index.to_string(),
            "-show_entries",
            "packet=pts,dts,flags",
        ],
        "error",
    );
    assert!(log.is_empty(), "ffprobe reads the file cleanly: {log}");
    json["packets"]
        .as_array()
        .expect("packets")
        .iter()
        .map(|p| {
            (
                p["pts"].as_u64().expect("pts"),
                p["dts"].as_u64().expect("dts"),
                p["flags"].as_str().unwrap_or("").contains('K'),
            )
        })
        .collect()
}

/// Checks everything the parser reads from `path` against ffprobe, and returns what it read
/// for the layout's own checks.
fn agrees_with_ffprobe(path: &Path) -> Parsed {
    let data = std::fs::read(path).unwrap();
    assert_eq!(data.len() % PACKET, 0);
    let (programs, _) = ffprobe(
        path,
        &[
            "-show_entries",
            "program=pcr_pid:stream=index,id,codec_type:stream_tags=language",
        ],
        "error",
    );
    let program = &programs["programs"][0];
    let pcr_pid = program["pcr_pid"].as_u64().expect("a PCR PID") as u16;
    let parsed = parse(&data, pcr_pid);

    // The PMT: the same PIDs in the same order, video and audio told apart the same way, the
    // same languages (ffprobe lists the streams' tags at the top level, not in the program).
    let probed = programs["streams"].as_array().expect("streams");
    assert_eq!(parsed.streams.len(), probed.len(), "{:?}", parsed.streams);
    for (stream, probe) in parsed.streams.iter().zip(probed) {
        let id = probe["id"].as_str().expect("a PID");
        assert_eq!(format!("{:#x}", stream.pid), id);
        let kind = probe["codec_type"].as_str().unwrap();
        assert_eq!(stream.is_video(), kind == "video", "{stream:?} is {kind}");
        assert_eq!(stream.is_audio(), kind == "audio", "{stream:?} is {kind}");
        assert_eq!(
            stream.language.as_deref(),
            probe["tags"]["language"].as_str(),
            "{stream:?}"
        );
    }

    for (index, stream) in parsed.streams.iter().enumerate() {
        let probed = probe_packets(path, index);
        let ours = &parsed.pes[&stream.pid];
        if stream.is_video() {
            // FFmpeg writes one frame per video PES: the same timestamps, frame for frame, and
            // a random-access flag exactly on ffprobe's key frames, each a place to start.
            let read: Vec<(u64, u64, bool)> = ours
                .iter()
                .map(|p| (p.pts.expect("a PTS"), p.dts.expect("a DTS or PTS"), p.random_access))
                .collect();
            assert_eq!(read, probed, "video PES timestamps and key frames");
            assert!(
                probed.iter().filter(|p| p.2).count() >= 6,
                "a key frame every 12 frames"
            );
            for (pes, probe) in ours.iter().zip(&probed) {
                assert_eq!(pes.decodable, probe.2, "decodable exactly at key frames: {pes:?}");
            }
        } else {
            // Audio PES carry several frames: each starts at one of ffprobe's frames, the first
            // at its first, with no DTS of its own.
            let starts: BTreeSet<u64> = probed.iter().map(|p| p.0).collect();
            assert_eq!(ours[0].pts, Some(probed[0].0));
            for pes in ours {
                let pts = pes.pts.expect("a PTS");
                assert!(starts.contains(&pts), "{pts} is a frame's start");
                assert_eq!(pes.dts, Some(pts), "the decoding time is the PTS");
            }
            assert!(ours.len() >= 10, "{} audio PES", ours.len());
        }
    }
    // The PCR, 27 MHz (base and extension), runs on.
    assert!(parsed.pcrs.len() >= 30, "{} PCRs", parsed.pcrs.len());
    assert!(parsed.pcrs.windows(2).all(|w| w[1].1 > w[0].1), "the PCR rises");
    parsed
}

/// Reassembles `data` from pieces of awkward sizes and checks every packet comes out whole.
fn packetizer_rejoins(data: &[u8]) {
    let mut packetizer = Packetizer::default();
    let mut out: Vec<u8> = Vec::new();
    let mut rest = data;
    for size in [1usize, 187, 189, 1000, 7, 4096].iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (piece, tail) = rest.split_at((*size).min(rest.len()));
        rest = tail;
        let (joined, whole) = packetizer.split(piece);
        assert_eq!(whole.len() % PACKET, 0, "whole packets only");
        out.extend(joined.iter().flatten());
        out.extend_from_slice(whole);
    }
    assert_eq!(out.len(), data.len() - data.len() % PACKET);
    assert!(out == data[..out.len()], "the packets come out as they went in");
}

#[test]
fn a_dvb_stream_muxed_by_ffmpeg_reads_as_ffprobe_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = mux(
        dir.path(),
        "dvb.ts",
        &[
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a:0",
            "mp2",
            "-b:a:0",
            "192k",
            "-c:a:1",
            "ac3",
            "-b:a:1",
            "384k",
        ],
        &["-mpegts_flags", "system_b", "-muxrate", &MUX_RATE.to_string()],
    );
    let Parsed { streams, pcrs, .. } = agrees_with_ffprobe(&path);
    let types: Vec<u8> = streams.iter().map(|s| s.stream_type).collect();
    assert_eq!(
        types,
        [0x1B, 0x03, 0x06],
        "H.264, MPEG audio, AC-3 as a DVB private stream"
    );
    assert!(streams[2].descriptor_tags.contains(&0x6A), "{:?}", streams[2]);

    // At a constant mux rate FFmpeg stamps each PCR from its byte position: the parsed values
    // (base × 300 + extension) follow the bytes between them to the tick.
    for pair in pcrs.windows(2) {
        let bytes = (pair[1].0 - pair[0].0) as u64;
        assert_eq!(pair[1].1 - pair[0].1, bytes * 8 * 27_000_000 / MUX_RATE, "{pair:?}");
    }
    packetizer_rejoins(&std::fs::read(&path).unwrap());
}

#[test]
fn an_mpeg2_stream_with_aac_and_atsc_ac3_reads_as_ffprobe_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = mux(
        dir.path(),
        "atsc.ts",
        &[
            "-c:v",
            "mpeg2video",
            "-c:a:0",
            "aac",
            "-b:a:0",
            "128k",
            "-c:a:1",
            "ac3",
            "-b:a:1",
            "384k",
        ],
        &[],
    );
    let streams = agrees_with_ffprobe(&path).streams;
    let types: Vec<u8> = streams.iter().map(|s| s.stream_type).collect();
    assert_eq!(
        types,
        [0x02, 0x0F, 0x81],
        "MPEG-2 video, AAC (ADTS), AC-3 as ATSC's type"
    );
}
