//! The `abr` ladder in real players: Chromium's built-in HLS player (`<video src>`, through the
//! watch page) plays the HD ladder's master; hls.js, as xg2g serves it, plays it capped to the
//! lowest level for 8 s, then at the top level for 8 s, without rebuffering, and really switches;
//! and hls.js plays the audio-only variant's media playlist on its own. The hls.js page is
//! `ladder_players.html` (the watch page has no hook to cap a level).
//!
//! Skipped with a message where `chromium` is not installed; ignored in the parallel suite like
//! the other player tests (`cargo test --test it ladder_players -- --ignored --nocapture`).

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use crate::browser::{Chromium, Report, chromium, parse_report};
use crate::common::{config_for, demo, get_text, start_ready};

const HD: &str = "1:0:19:283D:3FB:1:C00000:0:0:0:";
const PAGE: &str = include_str!("ladder_players.html");

/// A report line: the watch page's fields, and the others `key=value` as they came.
type Line = (Report, HashMap<String, String>);

fn extra(line: &str) -> HashMap<String, String> {
    let text = line.split("xg2g-report ").nth(1).unwrap_or_default();
    let text = text.split("\", source:").next().unwrap_or_default();
    let text = text.split(" error=").next().unwrap_or_default();
    text.split(' ')
        .filter_map(|f| f.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Opens `url` in a headless Chromium and follows its report lines until `done` says so (given
/// every line since the first frame); panics on an error the page reports, or after `within`.
async fn follow(browser: &Path, url: &str, within: Duration, done: impl Fn(&[Line]) -> bool) -> Vec<Line> {
    let dir = tempfile::tempdir().unwrap();
    let mut run = Chromium::start(
        browser,
        &dir.path().join("profile"),
        url,
        &[
            "--disable-background-timer-throttling",
            "--disable-renderer-backgrounding",
            "--allow-file-access-from-files",
        ],
    );
    let deadline = tokio::time::Instant::now() + within;
    let mut seen: Vec<Line> = Vec::new();
    let mut last = None;
    let outcome = loop {
        let line = match tokio::time::timeout_at(deadline, run.lines.next_line()).await {
            Ok(Ok(Some(line))) => line,
            Ok(_) => break Err("chromium exited".to_owned()),
            Err(_) => break Err(format!("not done within {within:?}")),
        };
        let Some(report) = parse_report(&line) else { continue };
        if let Some(error) = &report.error {
            break Err(format!("{}: the page reports an error: {error}", report.tag));
        }
        last = Some(line.clone());
        if report.first < 0 {
            continue;
        }
        seen.push((report, extra(&line)));
        if done(&seen) {
            break Ok(());
        }
    };
    run.quit().await;
    if let Err(why) = outcome {
        panic!("{url}: {why}; last report: {last:?}");
    }
    seen
}

/// Media seconds played from the first report after the first frame to the last.
fn played(lines: &[Line]) -> f64 {
    match (lines.first(), lines.last()) {
        (Some(first), Some(last)) => last.0.time - first.0.time,
        _ => 0.0,
    }
}

/// Checks what a player decoded over `lines` and prints it.
fn check(name: &str, lines: &[Line], video: bool) {
    let (first, last) = (&lines[0].0, &lines[lines.len() - 1].0);
    let frames = last.frames.saturating_sub(first.frames);
    let seconds = played(lines);
    eprintln!(
        "ladder player | {name:<16} | first frame {:>5} ms | {seconds:>4.1} s played | {frames:>4} frames | \
         audio {:>7} B | stalls {} ({} ms waited)",
        last.first, last.audio, last.stalls, last.stalled
    );
    assert!(last.audio > 0, "{name}: no audio decoded: {last:?}");
    assert_eq!(last.stalls, 0, "{name}: rebuffered after the first frame: {last:?}");
    if video {
        // 50p: at least half the frames (headless Chromium drops frames under load).
        assert!(
            frames as f64 >= 25.0 * seconds,
            "{name}: {frames} frames in {seconds} s"
        );
    } else {
        assert_eq!(last.frames, 0, "{name}: {last:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run alone: players need the machine to themselves"]
async fn the_hd_ladder_plays_and_switches_levels_in_chromium_and_hls_js() {
    plays_and_switches("the_hd_ladder_plays_and_switches_levels_in_chromium_and_hls_js", "abr").await;
}

/// The same in fMP4: the video variants carry no sound; the players take the AAC rendition
/// (hls.js leaves out the AC-3 variants by CODECS, as Chromium decodes no AC-3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run alone: players need the machine to themselves"]
async fn the_fmp4_ladder_plays_and_switches_levels_in_chromium_and_hls_js() {
    plays_and_switches(
        "the_fmp4_ladder_plays_and_switches_levels_in_chromium_and_hls_js",
        "abr-fmp4",
    )
    .await;
}

async fn plays_and_switches(test: &str, profile: &str) {
    let Some(browser) = chromium() else {
        eprintln!("SKIPPED {test}: no `chromium` on PATH (apt-get install chromium)");
        return;
    };
    let demo = demo().await;
    let (running, base) = start_ready(&config_for(&demo, &[])).await;
    let folder = format!("{base}/hls/{HD}/{profile}/");

    // Chromium's own player, from cold: the watch page starts the ladder session.
    let native = follow(
        &browser,
        &format!("{base}/watch/{HD}?report&engine=native&profile={profile}&tag={profile}-native"),
        Duration::from_secs(40),
        |lines| played(lines) >= 10.0,
    )
    .await;
    assert_eq!(native[0].0.engine, "native");
    check("native", &native, true);

    // hls.js: the lowest level for 8 s, then the top for 8 s.
    let page_dir = tempfile::tempdir().unwrap();
    let page = page_dir.path().join("ladder.html");
    std::fs::write(&page, PAGE).unwrap();
    let page = |src: &str, tag: &str, hold: &str| {
        format!(
            "file://{}?src={src}&hlsjs={base}/assets/hls.min.js&tag={tag}{hold}",
            page.display()
        )
    };
    let lifted = |line: &Line| line.1["lifted"].parse::<f64>().unwrap();
    let ladder = follow(
        &browser,
        &page(&format!("{folder}index.m3u8"), &format!("{profile}-hls.js"), "&hold=8"),
        Duration::from_secs(45),
        |lines| {
            let last = &lines[lines.len() - 1];
            lifted(last) >= 0.0 && last.0.time - lifted(last) >= 8.0 && last.1["height"] == "720"
        },
    )
    .await;
    let last = &ladder[ladder.len() - 1];
    eprintln!("ladder hls.js: {:?}", last.1);
    // hls.js orders its levels by bandwidth, not by height.
    let mut levels: Vec<&str> = last.1["levels"].split(',').collect();
    levels.sort_unstable();
    assert_eq!(levels, ["360", "540", "720"], "hls.js's levels, by height");
    let (low, top) = (last.1["low"].as_str(), last.1["top"].as_str());
    let capped: Vec<&str> = ladder
        .iter()
        .filter(|l| lifted(l) < 0.0)
        .map(|l| l.1["height"].as_str())
        .collect();
    assert!(
        capped.len() >= 8 && capped.iter().all(|h| *h == "360"),
        "capped, the lowest level plays: {capped:?}"
    );
    let switched: Vec<&str> = last.1["switched"].split(',').collect();
    assert!(
        switched.contains(&low) && switched.contains(&top),
        "LEVEL_SWITCHED to the lowest and the top level: {switched:?}"
    );
    assert_eq!((last.1["level"].as_str(), last.1["height"].as_str()), (top, "720"));
    check("hls.js ladder", &ladder, true);

    // The audio-only variant's media playlist, on its own.
    let master = get_text(format!("{folder}index.m3u8")).await;
    let audio = master.lines().last().expect("the audio-only variant's URI");
    assert!(audio.starts_with("media-"), "{master}");
    let alone = follow(
        &browser,
        &page(&format!("{folder}{audio}"), &format!("{profile}-audio"), ""),
        Duration::from_secs(30),
        |lines| played(lines) >= 6.0,
    )
    .await;
    assert_eq!(alone[alone.len() - 1].1["height"], "0", "audio only");
    check("hls.js audio only", &alone, false);
    running.stop().await;
}
