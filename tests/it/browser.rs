//! Headless Chromium for the browser tests: finding it, starting it with the flags this machine
//! needs (no sandbox as root, no background networking on a closed network), stopping its whole
//! process group, and reading the `xg2g-report` console lines of web/watch.js.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr};

/// Debian's Chromium, when installed (`scripts/deps.sh --test` installs it on Debian).
pub fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// Flags every headless run here needs.
pub const HEADLESS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
];

/// A Chromium command with [`HEADLESS`] and a fresh profile in `profile`.
pub fn command(browser: &Path, profile: &Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(browser);
    command
        .args(HEADLESS)
        .arg(format!("--user-data-dir={}", profile.display()))
        .kill_on_drop(true);
    command
}

/// A Chromium playing `url` with sound allowed to start by itself, its console on stderr.
pub struct Chromium {
    child: Child,
    group: String,
    pub lines: Lines<BufReader<ChildStderr>>,
}

impl Chromium {
    pub fn start(browser: &Path, profile: &Path, url: &str, extra: &[&str]) -> Self {
        let mut child = command(browser, profile)
            .args([
                "--autoplay-policy=no-user-gesture-required",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .args(extra)
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("chromium starts");
        let group = child.id().expect("chromium runs").to_string();
        let lines = BufReader::new(child.stderr.take().expect("stderr piped")).lines();
        Self { child, group, lines }
    }

    /// Asked to quit, Chromium ends and reaps its helpers; whatever is left of its process
    /// group after 10 s is killed.
    pub async fn quit(mut self) {
        let _ = std::process::Command::new("kill").args(["-TERM", &self.group]).status();
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.group)])
                .status();
            let _ = self.child.wait().await;
        }
    }
}

/// One `xg2g-report` console line of web/watch.js.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub tag: String,
    pub engine: String,
    pub state: String,
    pub time: f64,
    pub frames: u64,
    pub audio: u64,
    /// Milliseconds from the page's script start to the first decoded frame; -1 before.
    pub first: i64,
    pub stalls: u64,
    /// Milliseconds spent waiting after the first frame, short waits included.
    pub stalled: u64,
    /// The least media buffered ahead of playback since the first frame, in milliseconds
    /// (sampled every 100 ms while playing); -1 before the first frame.
    pub ahead: i64,
    pub error: Option<String>,
}

pub fn parse_report(line: &str) -> Option<Report> {
    let text = &line[line.find("xg2g-report ")? + "xg2g-report ".len()..];
    let text = text.split("\", source:").next()?;
    let (fields, error) = match text.split_once(" error=") {
        Some((fields, error)) => (fields, Some(error.to_owned())),
        None => (text, None),
    };
    let mut report = Report {
        error,
        ..Report::default()
    };
    for field in fields.split(' ') {
        match field.split_once('=')? {
            ("tag", v) => report.tag = v.to_owned(),
            ("engine", v) => report.engine = v.to_owned(),
            ("state", v) => report.state = v.to_owned(),
            ("time", v) => report.time = v.parse().ok()?,
            ("frames", v) => report.frames = v.parse().ok()?,
            ("audio", v) => report.audio = v.parse().ok()?,
            ("first", v) => report.first = v.parse().ok()?,
            ("stalls", v) => report.stalls = v.parse().ok()?,
            ("stalled", v) => report.stalled = v.parse().ok()?,
            ("ahead", v) => report.ahead = v.parse().ok()?,
            _ => {}
        }
    }
    Some(report)
}

#[test]
fn reports_parse_from_console_lines() {
    let line = "[1:1:1127/105812.866247:INFO:CONSOLE:1] \"xg2g-report tag=hd-auto-native engine=native \
                state=playing time=23.4 frames=1167 audio=51234 first=1210 stalls=0 stalled=120 ahead=310\", \
                source: http://127.0.0.1:1/assets/watch.js (1)";
    // A line of the page before it reported tags, audio and first frames.
    let plain = parse_report(
        "[1:1:1127/105812.866247:INFO:CONSOLE:1] \"xg2g-report engine=hls.js state=playing time=23.4 \
         frames=1167\", source: http://127.0.0.1:1/assets/watch.js?v=1 (1)",
    )
    .unwrap();
    assert_eq!((plain.engine.as_str(), plain.state.as_str()), ("hls.js", "playing"));
    assert_eq!((plain.time, plain.frames, plain.error), (23.4, 1167, None));
    let report = parse_report(line).unwrap();
    assert_eq!(
        (report.tag.as_str(), report.engine.as_str(), report.state.as_str()),
        ("hd-auto-native", "native", "playing")
    );
    assert_eq!((report.time, report.frames, report.audio), (23.4, 1167, 51234));
    assert_eq!(
        (report.first, report.stalls, report.stalled, report.ahead, report.error),
        (1210, 0, 120, 310, None)
    );
    let failed = parse_report(
        "\"xg2g-report engine=hls.js state=error time=0.0 frames=0 error=The stream could not be started (x).\", source: s",
    )
    .unwrap();
    assert_eq!(failed.error.as_deref(), Some("The stream could not be started (x)."));
    assert!(parse_report("[INFO:CONSOLE] \"tick\"").is_none());
}
