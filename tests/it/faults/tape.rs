//! What one client's response delivered, and when ([`Tape`], read by a [`Viewer`]), and the
//! measurements taken from it and from xg2g: waits, gaps, `/metrics` values, ffmpeg's decode
//! errors and a request's answer.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::Instant;

use super::{HD_VIDEO_PID, POLL, TOKEN};
use crate::common::client;

/// What one client's response delivered, and when.
#[derive(Default)]
pub(super) struct Tape {
    pub(super) status: Option<u16>,
    pub(super) arrivals: Vec<(Instant, usize)>,
    pub(super) bytes: Vec<u8>,
    /// When and how the response ended, if it did.
    pub(super) end: Option<(Instant, String)>,
}

/// A client reading a live stream in the background into a [`Tape`].
pub(super) struct Viewer {
    pub(super) tape: Arc<Mutex<Tape>>,
    task: tokio::task::JoinHandle<()>,
}

impl Viewer {
    pub(super) fn start(url: String, keep_bytes: bool) -> Self {
        let tape = Arc::new(Mutex::new(Tape::default()));
        let writer = Arc::clone(&tape);
        let task = tokio::spawn(async move {
            let response = match client().get(&url).send().await {
                Ok(response) => response,
                Err(e) => {
                    writer.lock().unwrap().end = Some((Instant::now(), format!("request failed: {e}")));
                    return;
                }
            };
            writer.lock().unwrap().status = Some(response.status().as_u16());
            let mut body = response.bytes_stream();
            loop {
                let next = body.next().await;
                let mut tape = writer.lock().unwrap();
                match next {
                    Some(Ok(chunk)) => {
                        tape.arrivals.push((Instant::now(), chunk.len()));
                        if keep_bytes {
                            tape.bytes.extend_from_slice(&chunk);
                        }
                    }
                    Some(Err(e)) => {
                        tape.end = Some((Instant::now(), format!("ended with an error: {e}")));
                        return;
                    }
                    None => {
                        tape.end = Some((Instant::now(), "ended".to_owned()));
                        return;
                    }
                }
            }
        });
        Self { tape, task }
    }

    pub(super) fn read<T>(&self, f: impl FnOnce(&Tape) -> T) -> T {
        f(&self.tape.lock().unwrap())
    }

    /// Stops reading and hands back the tape.
    pub(super) fn stop(self) -> Tape {
        self.task.abort();
        std::mem::take(&mut *self.tape.lock().unwrap())
    }
}

/// Polls `ready` until it holds or `deadline` passes; returns when it held.
pub(super) async fn until(deadline: Instant, mut ready: impl FnMut() -> bool) -> Option<Instant> {
    let mut tick = tokio::time::interval(POLL);
    loop {
        tick.tick().await;
        if ready() {
            return Some(Instant::now());
        }
        if Instant::now() >= deadline {
            return None;
        }
    }
}

/// Seconds of stream a tape covers from `from` on.
pub(super) fn span_after(tape: &Tape, from: Instant) -> Duration {
    let mut after = tape.arrivals.iter().map(|(at, _)| *at).filter(|at| *at >= from);
    match (after.next(), tape.arrivals.last()) {
        (Some(first), Some((last, _))) => last.saturating_duration_since(first),
        _ => Duration::ZERO,
    }
}

/// The end of the longest silence after `from` (counting from `from` itself): where data flowed
/// again after the fault.
pub(super) fn resumed_at(tape: &Tape, from: Instant) -> Option<Instant> {
    let mut previous = from;
    let mut best: Option<(Duration, Instant)> = None;
    for (at, _) in tape.arrivals.iter().filter(|(at, _)| *at > from) {
        let gap = at.saturating_duration_since(previous);
        if best.is_none_or(|(longest, _)| gap > longest) {
            best = Some((gap, *at));
        }
        previous = *at;
    }
    best.map(|(_, at)| at)
}

/// The longest silence in a tape between `from` and `to` (both edges count).
pub(super) fn longest_gap(tape: &Tape, from: Instant, to: Instant) -> Duration {
    let mut previous = from;
    let mut longest = Duration::ZERO;
    for (at, _) in tape.arrivals.iter().filter(|(at, _)| *at > from && *at <= to) {
        longest = longest.max(at.saturating_duration_since(previous));
        previous = *at;
    }
    longest.max(to.saturating_duration_since(previous))
}

/// A metric's value from `/metrics`; `series` is its name with labels, as exported.
pub(super) async fn metric(base: &str, series: &str) -> Option<f64> {
    let response = client().get(format!("{base}/metrics")).send().await.ok()?;
    let text = response.text().await.ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
}

pub(super) async fn reconnects(base: &str) -> u64 {
    metric(base, "xg2g_upstream_reconnects_total")
        .await
        .map_or(0, |v| v as u64)
}

/// ffmpeg's decode errors over a capture cut before its last video PES, so that what the
/// capture window cut short is not counted.
pub(super) fn decode_errors(bytes: &[u8]) -> (usize, String) {
    let whole = &bytes[..bytes.len() / 188 * 188];
    let last_start = whole
        .chunks_exact(188)
        .rposition(|p| {
            p[0] == 0x47 && p[1] & 0x40 != 0 && (u16::from(p[1] & 0x1F) << 8 | u16::from(p[2])) == HD_VIDEO_PID
        })
        .unwrap_or(whole.len() / 188);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("capture.ts");
    std::fs::write(&path, &whole[..last_start * 188]).unwrap();
    let output = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-i"])
        .arg(&path)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg runs (install ffmpeg)");
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    (log.lines().count(), log)
}

/// `{status} {code}` of an error answer, or `200` with the time to the first bytes.
pub(super) async fn answer(url: &str, method: reqwest::Method) -> (u16, String, Duration) {
    let asked = Instant::now();
    let response = match client()
        .request(method, url)
        .header("x-api-token", TOKEN)
        .timeout(Duration::from_secs(40))
        .send()
        .await
    {
        Ok(response) => response,
        Err(e) => return (0, format!("no answer: {e}"), asked.elapsed()),
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(|v| format!(", Retry-After {v}"))
        .unwrap_or_default();
    if response.status().is_success() {
        let mut body = response.bytes_stream();
        let first = tokio::time::timeout(Duration::from_secs(10), body.next()).await;
        let what = match first {
            Ok(Some(Ok(_))) => "",
            _ => " without bytes",
        };
        return (status, what.to_owned(), asked.elapsed());
    }
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let code = body["error"]["code"].as_str().unwrap_or("(no JSON code)").to_owned();
    (status, format!("{code}{retry_after}"), asked.elapsed())
}
