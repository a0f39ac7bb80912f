//! Issue 14's goals (re-baselined at broadcast bitrates) and issue 13's ladder goal, and where
//! a bench run stands against each: met, NOT met, or not measured when the run lacked the
//! scenarios a goal needs. Pure: no IO.

use std::fmt::Write as _;

use super::report::{Row, Spread, ratio};
use super::scenario::{LadderChannel, LadderSetup, Scenario, Server, TopRung};

/// One goal and where this run stands.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct Goal {
    pub what: &'static str,
    pub target: &'static str,
    /// The measured figure, or `None` when the scenarios it needs did not run.
    pub measured: Option<f64>,
    /// The figure as printed, with what it is made of where that helps.
    pub shown: String,
    pub met: Option<bool>,
}

/// A figure printed beside the goals, with no goal of its own.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct Reported {
    pub what: &'static str,
    pub measured: Option<f64>,
}

/// How many `h264` transcodes a server held in real time in every repeat of the ramp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Held {
    /// The most streams that kept up at every size up to it, in every repeat (0: not one).
    pub streams: usize,
    /// Every size the ramp tried kept up, so `streams` is a lower bound (`--max-h264`).
    pub at_top: bool,
}

fn find<'a>(rows: &'a [Row], family: &str, server: Server) -> Option<&'a Row> {
    rows.iter()
        .find(|r| r.scenario.family() == family && r.server == server)
}

/// A ramp: one more stream (or ladder) a run, until a run falls behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ramp {
    /// `h264` transcodes.
    H264,
    /// Whole ladders (`abr`), each on its own channel.
    Ladders,
}

impl Ramp {
    /// The size of a scenario of this ramp; `None` for other scenarios.
    pub(crate) fn size(self, scenario: &Scenario) -> Option<usize> {
        match (self, scenario) {
            (Self::H264, Scenario::H264 { streams }) => Some(*streams),
            (Self::Ladders, Scenario::Ladders { ladders, .. }) => Some(*ladders),
            _ => None,
        }
    }
}

/// The ramp's result for `server`; `None` when the ramp did not run on it. A size counts when
/// every repeat ran it and kept up (a repeat stops its ramp at its first failure).
pub(crate) fn held(rows: &[Row], server: Server, ramp: Ramp) -> Option<Held> {
    let size = |n| {
        rows.iter()
            .find(|r| r.server == server && ramp.size(&r.scenario) == Some(n))
    };
    let repeats = size(1)?.runs;
    let mut streams = 0;
    while size(streams + 1).is_some_and(|r| r.runs == repeats && r.runs_kept_up == repeats) {
        streams += 1;
    }
    let tried = rows
        .iter()
        .filter(|r| r.server == server)
        .filter_map(|r| ramp.size(&r.scenario))
        .max()
        .unwrap_or(0);
    Some(Held {
        streams,
        at_top: streams > 0 && streams == tried,
    })
}

fn two_digits(m: Option<f64>) -> String {
    m.map_or_else(|| "–".into(), |m| format!("{m:.2}"))
}

pub(crate) fn goals(rows: &[Row]) -> Vec<Goal> {
    let pair = |family: &str, f: &dyn Fn(&Row) -> Option<Spread>| {
        ratio(
            find(rows, family, Server::Xg2g).and_then(f),
            find(rows, family, Server::Ffmpeg).and_then(f),
        )
    };
    let goal = |what, target, measured: Option<f64>, met: &dyn Fn(f64) -> bool| Goal {
        what,
        target,
        measured,
        shown: two_digits(measured),
        met: measured.map(met),
    };
    let shared = find(rows, "aac-shared", Server::Xg2g);
    let shared_stalls = shared.map(|r| (r.stalls, r.errors));
    vec![
        goal(
            "aac session CPU, xg2g / ffmpeg (aac-channels)",
            "≤ 0.5",
            pair("aac-channels", &|r| r.cpu_per_stream_minute),
            &|m| m <= 0.5,
        ),
        goal(
            "aac session memory, xg2g / ffmpeg (aac-channels)",
            "≤ 0.25",
            pair("aac-channels", &|r| r.memory_per_session_mib),
            &|m| m <= 0.25,
        ),
        transcodes_goal(rows),
        goal(
            "aac-shared, xg2g CPU in cores (median)",
            "< 0.5",
            shared.and_then(|r| r.cpu_percent).map(|c| c.median / 100.0),
            &|m| m < 0.5,
        ),
        Goal {
            what: "aac-shared, xg2g stalls (every repeat; errors count too)",
            target: "0",
            measured: shared_stalls.map(|(s, e)| f64::from(s) + e as f64),
            shown: shared_stalls.map_or_else(|| "–".into(), |(s, e)| format!("{s} stalls, {e} errors")),
            met: shared_stalls.map(|(s, e)| s == 0 && e == 0),
        },
        goal(
            "aac-shared, xg2g slowest client × real time (worst repeat)",
            "≥ 0.95",
            shared.and_then(|r| r.slowest_client_speed).map(|s| s.min),
            &|m| m >= 0.95,
        ),
        aac_latency_goal(rows),
        ladder_goal(
            rows,
            LadderChannel::Hd,
            TopRung::Aac,
            "ladder CPU, HD channel (top rung copied), xg2g abr / three sessions: aac + h264 at the two lower rungs",
        ),
        ladder_goal(
            rows,
            LadderChannel::Sd,
            TopRung::H264,
            "ladder CPU, SD channel (every rung encoded), xg2g abr / three sessions: h264 + h264 at the two lower rungs",
        ),
    ]
}

/// The `ladder` row of a channel and setup.
fn ladder_row<'a>(
    rows: &'a [Row],
    server: Server,
    on: LadderChannel,
    setup: &dyn Fn(LadderSetup) -> bool,
) -> Option<&'a Row> {
    rows.iter().find(|r| {
        r.server == server && matches!(r.scenario, Scenario::Ladder { channel, setup: s } if channel == on && setup(s))
    })
}

fn is_abr(setup: LadderSetup) -> bool {
    matches!(setup, LadderSetup::Abr { .. })
}

fn separate(top: TopRung) -> impl Fn(LadderSetup) -> bool {
    move |setup| matches!(setup, LadderSetup::Separate { top: t, .. } if t == top)
}

/// xg2g's ladder over the same rungs as separate sessions, as a figure of `figure`.
fn ladder_ratio(rows: &[Row], on: LadderChannel, top: TopRung, figure: fn(&Row) -> Option<Spread>) -> Option<f64> {
    ratio(
        ladder_row(rows, Server::Xg2g, on, &is_abr).and_then(figure),
        ladder_row(rows, Server::Xg2g, on, &separate(top)).and_then(figure),
    )
}

/// Issue 13: a ladder's CPU at most 0.7 of its rungs as separate sessions (the whole process's
/// CPU, both with a player on every rung).
fn ladder_goal(rows: &[Row], on: LadderChannel, top: TopRung, what: &'static str) -> Goal {
    let measured = ladder_ratio(rows, on, top, |r| r.cpu_percent);
    Goal {
        what,
        target: "≤ 0.7",
        measured,
        shown: two_digits(measured),
        met: measured.map(|m| m <= 0.7),
    }
}

/// xg2g's transcodes held over FFmpeg's. Where FFmpeg held none the ratio is infinite; where
/// xg2g held the ramp's top, the ratio is a lower bound and decides only when it is enough.
fn transcodes_goal(rows: &[Row]) -> Goal {
    const LIMIT: f64 = 1.25;
    let mut goal = Goal {
        what: "real-time 720p50 h264 transcodes held, xg2g / ffmpeg",
        target: "≥ 1.25",
        measured: None,
        shown: "–".into(),
        met: None,
    };
    let (Some(x), Some(f)) = (
        held(rows, Server::Xg2g, Ramp::H264),
        held(rows, Server::Ffmpeg, Ramp::H264),
    ) else {
        return goal;
    };
    let count = |h: Held| {
        if h.at_top {
            format!("{}, the ramp's top", h.streams)
        } else {
            h.streams.to_string()
        }
    };
    let parts = format!("xg2g {}; ffmpeg {}", count(x), count(f));
    let measured = match (x.streams, f.streams) {
        (0, 0) => None,
        (_, 0) => Some(f64::INFINITY),
        (x, f) => Some(x as f64 / f as f64),
    };
    let shown = match measured {
        Some(m) if m.is_infinite() => "∞".to_owned(),
        Some(m) if x.at_top => format!("≥ {m:.2}"),
        other => two_digits(other),
    };
    goal.shown = format!("{shown} ({parts})");
    goal.measured = measured;
    goal.met = match measured {
        Some(m) if m >= LIMIT => Some(true),
        // A lower bound below the limit: the ramp stopped before xg2g did (raise --max-h264).
        Some(_) if x.at_top => None,
        _ => Some(false),
    };
    goal
}

/// The worst median P95 of xg2g's `audio_proxy` stages over the `aac` scenarios that ran.
fn aac_latency_goal(rows: &[Row]) -> Goal {
    let worst = rows
        .iter()
        .filter(|r| r.server == Server::Xg2g)
        .filter(|r| {
            matches!(
                r.scenario,
                Scenario::AacOne | Scenario::AacChannels | Scenario::AacShared { .. }
            )
        })
        .flat_map(|r| {
            r.transcode_p95_ms
                .iter()
                .filter(|s| s.mode == "audio_proxy")
                .map(move |s| (s.p95_ms.median, r.scenario))
        })
        .max_by(|a, b| a.0.total_cmp(&b.0));
    Goal {
        what: "P95 transcode latency of aac (audio_proxy), xg2g, worst aac scenario (median)",
        target: "< 50 ms",
        measured: worst.map(|w| w.0),
        shown: worst.map_or_else(|| "–".into(), |(ms, s)| format!("{ms:.0} ms ({})", s.label())),
        met: worst.map(|w| w.0 < 50.0),
    }
}

/// Figures reported beside the goals, with no goal of their own.
pub(crate) fn reported(rows: &[Row]) -> Vec<Reported> {
    let reported = |what, measured| Reported { what, measured };
    let against_ffmpeg = |on, figure: fn(&Row) -> Option<Spread>| {
        ratio(
            ladder_row(rows, Server::Xg2g, on, &is_abr).and_then(figure),
            ladder_row(rows, Server::Ffmpeg, on, &is_abr).and_then(figure),
        )
    };
    let (hd, sd) = (LadderChannel::Hd, LadderChannel::Sd);
    let cpu = |r: &Row| r.cpu_percent;
    let memory = |r: &Row| r.memory_growth_mib;
    vec![
        reported(
            "time to first byte, xg2g / ffmpeg (aac-channels, median)",
            ratio(
                find(rows, "aac-channels", Server::Xg2g).and_then(|r| r.ttfb_median_ms),
                find(rows, "aac-channels", Server::Ffmpeg).and_then(|r| r.ttfb_median_ms),
            ),
        ),
        reported(
            "ladder CPU, HD channel, xg2g abr / three sessions all transcoded: h264 + h264 at the two lower rungs",
            ladder_ratio(rows, hd, TopRung::H264, cpu),
        ),
        reported(
            "ladder memory, HD channel, xg2g abr / three sessions: aac + h264 at the two lower rungs",
            ladder_ratio(rows, hd, TopRung::Aac, memory),
        ),
        reported(
            "ladder memory, SD channel, xg2g abr / three sessions: h264 + h264 at the two lower rungs",
            ladder_ratio(rows, sd, TopRung::H264, memory),
        ),
        reported(
            "ladder CPU, HD channel, xg2g abr / one ffmpeg with split",
            against_ffmpeg(hd, cpu),
        ),
        reported(
            "ladder CPU, SD channel, xg2g abr / one ffmpeg with split",
            against_ffmpeg(sd, cpu),
        ),
        reported(
            "ladder memory, HD channel, xg2g abr / one ffmpeg with split",
            against_ffmpeg(hd, memory),
        ),
        reported(
            "ladder memory, SD channel, xg2g abr / one ffmpeg with split",
            against_ffmpeg(sd, memory),
        ),
    ]
}

/// The goals, then the reported figures, as a Markdown list.
pub(crate) fn text(goals: &[Goal], reported: &[Reported]) -> String {
    let mut out = String::new();
    for g in goals {
        let status = match g.met {
            Some(true) => "met",
            Some(false) => "NOT met",
            None => "not measured in this run",
        };
        let _ = writeln!(out, "- {}: {} (goal {}): {status}", g.what, g.shown, g.target);
    }
    for r in reported {
        let _ = writeln!(out, "- {}: {} (reported, no goal)", r.what, two_digits(r.measured));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::run;
    use crate::report::{RunResult, TranscodeP95, rows};

    fn of(scenario: Scenario, server: Server, repeat: usize) -> RunResult {
        RunResult {
            scenario,
            ..run(server, repeat, 3.0, 14 * 1024, &[200])
        }
    }

    /// The ramp on one server: `kept[repeat]` sizes kept up, then one that fell behind (unless
    /// the repeat reached `top`).
    fn ramp(server: Server, kept: &[usize], top: usize) -> Vec<RunResult> {
        let mut out = Vec::new();
        for (repeat, &k) in kept.iter().enumerate() {
            for streams in 1..=(k + 1).min(top) {
                let mut r = of(Scenario::H264 { streams }, server, repeat);
                if streams > k {
                    r.min_speed = Some(0.8);
                }
                out.push(r);
            }
        }
        out
    }

    fn goal<'a>(goals: &'a [Goal], what: &str) -> &'a Goal {
        goals
            .iter()
            .find(|g| g.what.starts_with(what))
            .unwrap_or_else(|| panic!("no goal {what}"))
    }

    #[test]
    fn issue_14_goals_are_met_or_not_from_the_rows() {
        let mut results = vec![
            // aac-channels: xg2g 3.0 CPU s against 7.5 (0.4), 1 MiB a session against 5 (0.2).
            run(Server::Xg2g, 0, 3.0, 14 * 1024, &[200]),
            run(Server::Ffmpeg, 0, 7.5, 30 * 1024, &[1000]),
        ];
        let mut shared = of(Scenario::AacShared { clients: 150 }, Server::Xg2g, 0);
        shared.cpu_s = 0.3 * 30.0;
        shared.min_speed = Some(0.97);
        let mut one = of(Scenario::AacOne, Server::Xg2g, 0);
        one.transcode_p95 = Some(vec![TranscodeP95 {
            mode: "audio_proxy".into(),
            encoder: "avenc_aac".into(),
            p95_ms: 62.0,
            samples: 222,
        }]);
        results.extend([shared, one]);
        results.extend(ramp(Server::Xg2g, &[5], 8));
        results.extend(ramp(Server::Ffmpeg, &[4], 8));
        let goals = goals(&rows(&results));
        assert_eq!(goals.len(), 9);
        let cpu = goal(&goals, "aac session CPU");
        assert_eq!((cpu.shown.as_str(), cpu.met), ("0.40", Some(true)));
        assert_eq!(goal(&goals, "aac session memory").met, Some(true));
        let held = goal(&goals, "real-time 720p50");
        assert_eq!((held.shown.as_str(), held.met), ("1.25 (xg2g 5; ffmpeg 4)", Some(true)));
        let shared_cpu = goal(&goals, "aac-shared, xg2g CPU");
        assert_eq!((shared_cpu.shown.as_str(), shared_cpu.met), ("0.30", Some(true)));
        let stalls = goal(&goals, "aac-shared, xg2g stalls");
        assert_eq!((stalls.shown.as_str(), stalls.met), ("0 stalls, 0 errors", Some(true)));
        assert_eq!(goal(&goals, "aac-shared, xg2g slowest").met, Some(true));
        let latency = goal(&goals, "P95 transcode latency");
        assert_eq!((latency.shown.as_str(), latency.met), ("62 ms (aac-one)", Some(false)));
        let text = text(&goals, &reported(&rows(&results)));
        assert!(
            text.contains("- aac session CPU, xg2g / ffmpeg (aac-channels): 0.40 (goal ≤ 0.5): met\n"),
            "{text}"
        );
        assert!(text.contains("(aac-one) (goal < 50 ms): NOT met\n"), "{text}");
        assert!(
            text.contains("- time to first byte, xg2g / ffmpeg (aac-channels, median): 0.20 (reported, no goal)\n"),
            "{text}"
        );
        assert!(
            text.contains("(every rung encoded), xg2g abr / three sessions: h264 + h264 at the two lower rungs: – (goal ≤ 0.7): not measured in this run\n"),
            "{text}"
        );
    }

    #[test]
    fn goals_fail_past_their_limits() {
        let mut shared = of(Scenario::AacShared { clients: 150 }, Server::Xg2g, 0);
        shared.cpu_s = 0.5 * 30.0;
        shared.stalls = 1;
        shared.min_speed = Some(0.94);
        // aac-channels: 4.5 CPU s against 7.5 (0.6), 1.5 MiB a session against 5 (0.3).
        let results = [
            shared,
            run(Server::Xg2g, 0, 4.5, 16 * 1024, &[200]),
            run(Server::Ffmpeg, 0, 7.5, 30 * 1024, &[1000]),
        ];
        let goals = goals(&rows(&results));
        assert_eq!(goal(&goals, "aac session CPU").met, Some(false));
        assert_eq!(goal(&goals, "aac session memory").met, Some(false));
        assert_eq!(
            goal(&goals, "aac-shared, xg2g CPU").met,
            Some(false),
            "0.5 is not below 0.5"
        );
        assert_eq!(goal(&goals, "aac-shared, xg2g stalls").met, Some(false));
        assert_eq!(goal(&goals, "aac-shared, xg2g slowest").met, Some(false));
    }

    #[test]
    fn goals_without_their_scenarios_are_not_measured() {
        // xg2g alone, aac-one only: the smoke run.
        let goals = goals(&rows(&[of(Scenario::AacOne, Server::Xg2g, 0)]));
        for g in &goals {
            assert_eq!((g.measured, g.met, g.shown.as_str()), (None, None, "–"), "{}", g.what);
        }
        assert!(
            text(&goals, &[])
                .lines()
                .all(|l| l.ends_with(": not measured in this run"))
        );
    }

    #[test]
    fn the_ramp_counts_sizes_every_repeat_held() {
        // Repeat 0 fell behind at 5, repeat 1 at 3: held 2, though repeat 0 held 4.
        let held_of = |kept: &[usize], server| held(&rows(&ramp(Server::Xg2g, kept, 8)), server, Ramp::H264);
        assert_eq!(
            held_of(&[4, 2], Server::Xg2g),
            Some(Held {
                streams: 2,
                at_top: false
            })
        );
        assert_eq!(held_of(&[4, 2], Server::Ffmpeg), None);
        // A repeat that reached a size the other never ran does not count it.
        assert_eq!(
            held_of(&[8, 3], Server::Xg2g),
            Some(Held {
                streams: 3,
                at_top: false
            })
        );
        assert_eq!(
            held_of(&[8, 8], Server::Xg2g),
            Some(Held {
                streams: 8,
                at_top: true
            })
        );
    }

    #[test]
    fn the_transcode_ratio_handles_a_ramp_top_and_an_ffmpeg_that_held_none() {
        let goal_of = |x: &[usize], f: &[usize]| {
            let mut results = ramp(Server::Xg2g, x, 8);
            results.extend(ramp(Server::Ffmpeg, f, 8));
            goals(&rows(&results)).remove(2)
        };
        let g = goal_of(&[4], &[4]);
        assert_eq!((g.shown.as_str(), g.met), ("1.00 (xg2g 4; ffmpeg 4)", Some(false)));
        let g = goal_of(&[8], &[7]);
        assert_eq!(g.shown, "≥ 1.14 (xg2g 8, the ramp's top; ffmpeg 7)");
        assert_eq!(g.met, None, "a lower bound below the goal decides nothing");
        assert_eq!(goal_of(&[8], &[6]).met, Some(true), "a lower bound above it does");
        let g = goal_of(&[2], &[0]);
        assert_eq!((g.shown.as_str(), g.met), ("∞ (xg2g 2; ffmpeg 0)", Some(true)));
        assert_eq!(goal_of(&[0], &[0]).met, Some(false));
    }

    fn ladder(on: LadderChannel, setup: LadderSetup, server: Server, cpu_s: f64, loaded_mib: u64) -> RunResult {
        let mut r = of(Scenario::Ladder { channel: on, setup }, server, 0);
        r.cpu_s = cpu_s;
        r.loaded_kib = loaded_mib * 1024;
        r
    }

    #[test]
    fn the_ladder_goal_compares_each_channel_with_its_fair_separate_sessions() {
        let abr = LadderSetup::Abr { copy_h264: true };
        let sep = |top| LadderSetup::Separate { top, lower: [480, 360] };
        let (hd, sd) = (LadderChannel::Hd, LadderChannel::Sd);
        // 10 MiB idle; CPU seconds over the 30 s window.
        let results = [
            ladder(hd, abr, Server::Xg2g, 12.0, 40),
            ladder(hd, sep(TopRung::Aac), Server::Xg2g, 20.0, 70),
            ladder(hd, sep(TopRung::H264), Server::Xg2g, 40.0, 100),
            ladder(hd, abr, Server::Ffmpeg, 15.0, 70),
            ladder(sd, abr, Server::Xg2g, 24.0, 40),
            ladder(sd, sep(TopRung::H264), Server::Xg2g, 30.0, 70),
        ];
        let rows = rows(&results);
        let goals = goals(&rows);
        let hd_goal = goal(&goals, "ladder CPU, HD channel");
        assert_eq!((hd_goal.shown.as_str(), hd_goal.met), ("0.60", Some(true)));
        let sd_goal = goal(&goals, "ladder CPU, SD channel");
        assert_eq!((sd_goal.shown.as_str(), sd_goal.met), ("0.80", Some(false)));
        let reported = reported(&rows);
        // Two digits, as printed.
        let figure = |what: &str| {
            reported
                .iter()
                .find(|r| r.what.starts_with(what))
                .unwrap_or_else(|| panic!("no figure {what}"))
                .measured
                .map(|m| format!("{m:.2}"))
        };
        let all_transcoded = figure("ladder CPU, HD channel, xg2g abr / three sessions all transcoded");
        assert_eq!(all_transcoded.as_deref(), Some("0.30"));
        // Memory: the growth of the whole process, 30 MiB against 60.
        let memory = figure("ladder memory, HD channel, xg2g abr / three sessions");
        assert_eq!(memory.as_deref(), Some("0.50"));
        let peer = figure("ladder CPU, HD channel, xg2g abr / one ffmpeg");
        assert_eq!(peer.as_deref(), Some("0.80"));
        assert_eq!(
            figure("ladder CPU, SD channel, xg2g abr / one ffmpeg"),
            None,
            "no ffmpeg run"
        );
    }

    #[test]
    fn the_ladder_ramp_is_its_own() {
        let mut results = ramp(Server::Xg2g, &[4], 8);
        for ladders in 1..=3 {
            let mut r = of(
                Scenario::Ladders {
                    ladders,
                    copy_h264: true,
                },
                Server::Xg2g,
                0,
            );
            r.min_speed = Some(if ladders == 3 { 0.5 } else { 1.0 });
            results.push(r);
        }
        let rows = rows(&results);
        assert_eq!(held(&rows, Server::Xg2g, Ramp::H264).map(|h| h.streams), Some(4));
        assert_eq!(
            held(&rows, Server::Xg2g, Ramp::Ladders),
            Some(Held {
                streams: 2,
                at_top: false
            })
        );
        assert_eq!(held(&rows, Server::Ffmpeg, Ramp::Ladders), None);
    }
}
