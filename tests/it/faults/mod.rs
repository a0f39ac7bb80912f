//! The fault matrix (issue 15): every fault the demo receiver injects, against a client playing
//! the faulted channel, a client starting one, and a second channel that must play on. Each row
//! runs on its own receiver and server, all rows at once; the test prints the measured table
//! (README "Fault matrix") and then checks every row's expectations.
//!
//! Times are measured on events: the fault switched on, xg2g's reconnect (its metric), the
//! receiver back, the client's first bytes after the gap. No sleep orders anything here; waits
//! poll what a client or the receiver can observe, each with a deadline.

mod case;
mod check;
mod row;
mod tape;

use std::time::Duration;

use case::{Case, Expect, cases};
use check::check;
use row::run;

/// The faulted channel: H.264, so that ffmpeg's decode errors after a splice mean something.
const HD: &str = "1:0:19:283D:3FB:1:C00000:0:0:0:";
/// The other channel, on the same stream port, playing throughout.
const SD: &str = "1:0:1:6F0B:44D:1:C00000:0:0:0:";
/// The channel a new client asks for while the fault holds.
const LOCAL: &str = "1:0:1:2EE3:441:1:C00000:0:0:0:";
const HD_VIDEO_PID: u16 = 0x65;
const TOKEN: &str = "fault-matrix-token";
/// The server's stall timeout is the default, 2 s: a stall is noticed within it and a tick.
const STALL_NOTICE: Duration = Duration::from_millis(2_500);
/// A receiver that closes, resets or refuses is noticed at once (before the reconnect's backoff).
const FAILURE_NOTICE: Duration = Duration::from_secs(1);
/// Short, so that a tuner-busy start is answered quickly; every other start is far below it.
const START_TIMEOUT: &str = "4s";
/// A gap longer than this in the other channel's stream counts as harm.
const OTHER_MAX_GAP: Duration = Duration::from_secs(1);
const POLL: Duration = Duration::from_millis(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fault_matrix() {
    let started = std::time::Instant::now();
    // One task polls every row; the servers, receivers and decodes run on the runtime's workers.
    // `XG2G_FAULT_ROWS=drop,stall` runs only the rows whose fault starts with one of these.
    let only = std::env::var("XG2G_FAULT_ROWS").unwrap_or_default();
    let picked: Vec<Case> = cases()
        .into_iter()
        .filter(|c| only.is_empty() || only.split(',').any(|p| c.fault.starts_with(p.trim())))
        .collect();
    let expects: Vec<Expect> = picked.iter().map(|c| c.expect).collect();
    let rows = futures_util::future::join_all(picked.into_iter().map(run)).await;
    let mut table = String::from(
        "| fault | client outcome | detect | recover | decode errors after splice | other channel ok |\n\
         |---|---|---|---|---|---|\n",
    );
    for row in &rows {
        table.push_str(&row.table_line());
        table.push('\n');
    }
    println!("{table}\nfault matrix: {:.1} s", started.elapsed().as_secs_f64());
    let wrong: Vec<String> = rows
        .iter()
        .zip(expects)
        .flat_map(|(row, expect)| check(row, expect))
        .collect();
    assert!(wrong.is_empty(), "{}\n\n{table}", wrong.join("\n"));
}
