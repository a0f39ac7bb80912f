//! The `xg2g` binary as a user runs it: check-config, secrets, signals.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::demo_with;
use xg2g::demo::DemoOptions;

const SECRET: &str = "s3cr3t-P4ss";

fn xg2g() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xg2g"));
    // Only what a test sets: no XG2G_* from the developer's shell.
    for (key, _) in std::env::vars() {
        if key.starts_with("XG2G_") && key != "XG2G_CACHE_DIR" {
            cmd.env_remove(key);
        }
    }
    cmd
}

#[test]
fn check_config_prints_the_effective_config_with_secrets_redacted() {
    let output = xg2g()
        .arg("check-config")
        .env("XG2G_OWI_BASE", "http://192.0.2.10")
        .env("XG2G_OWI_USER", "root")
        .env("XG2G_OWI_PASS", SECRET)
        .env("XG2G_API_TOKEN", "tok-".to_owned() + SECRET)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("base_url = \"http://192.0.2.10/\""), "{stdout}");
    assert!(stdout.contains("environment variable XG2G_OWI_PASS"), "{stdout}");
    assert!(stdout.contains("\"***\""), "{stdout}");
    assert!(!stdout.contains(SECRET), "a secret leaked:\n{stdout}");
}

#[test]
fn check_config_lists_every_problem_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("xg2g.toml");
    std::fs::write(
        &file,
        "listen = \"nonsense\"\n[receiver]\nbogus = 1\nstream_port = \"abc\"\n",
    )
    .unwrap();
    let output = xg2g()
        .arg("check-config")
        .arg("--config")
        .arg(&file)
        .env("XG2G_OWI_TIMEOUT", "soon")
        .env("XG2G_OWI_PASS", SECRET)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let path = file.display();
    for line in [
        format!("{path}: unknown key `receiver.bogus`"),
        format!("{path}: key `listen`: expected a listen address like \":8080\" or \"127.0.0.1:8080\", got \"nonsense\""),
        format!("{path}: key `receiver.stream_port`: expected an integer, got string"),
        "environment variable XG2G_OWI_TIMEOUT: key `receiver.timeout`: expected a duration like \"5s\" or \"500ms\", got \"soon\"".to_owned(),
        "receiver.base_url: required: set it in the config file or XG2G_OWI_BASE".to_owned(),
    ] {
        assert!(stderr.contains(&line), "missing {line:?} in:\n{stderr}");
    }
    assert!(!stderr.contains(SECRET));
}

/// Starts `xg2g serve` with JSON logs on an ephemeral port and returns it with its address.
fn spawn_serve(api_url: &str, envs: &[(&str, &str)]) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    let mut cmd = xg2g();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .env("XG2G_OWI_BASE", api_url)
        .env("XG2G_OWI_BACKOFF", "10ms")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    for pipe in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    (child, rx)
}

/// The first log line containing `needle`, among those seen so far or arriving within 30 s.
fn wait_line(rx: &std::sync::mpsc::Receiver<String>, needle: &str, seen: &mut Vec<String>) -> String {
    if let Some(line) = seen.iter().find(|l| l.contains(needle)) {
        return line.clone();
    }
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no {needle:?} in {seen:#?}"));
        seen.push(line.clone());
        if line.contains(needle) {
            return line;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_0_and_logs_hold_no_secrets() {
    let demo = demo_with(DemoOptions {
        credentials: Some(("root".into(), SECRET.into())),
        ..Default::default()
    })
    .await;
    // First with a wrong password: the failure is logged, the password is not.
    let (mut child, rx) = spawn_serve(
        &demo.api_url(),
        &[
            ("XG2G_OWI_USER", "root"),
            ("XG2G_OWI_PASS", "wr0ng-pw-77"),
            ("XG2G_LOG_LEVEL", "debug"),
        ],
    );
    let mut seen = Vec::new();
    wait_line(&rx, "Channel list not loaded", &mut seen);
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
    seen.extend(rx.try_iter());

    // Then right: it serves, and SIGTERM ends it with status 0.
    let (mut child, rx) = spawn_serve(
        &demo.api_url(),
        &[
            ("XG2G_OWI_USER", "root"),
            ("XG2G_OWI_PASS", SECRET),
            ("XG2G_LOG_LEVEL", "debug"),
        ],
    );
    let mut second = Vec::new();
    let line = wait_line(&rx, "Serving HTTP", &mut second);
    let json: serde_json::Value = serde_json::from_str(&line).unwrap();
    let addr = json["addr"].as_str().unwrap().to_owned();
    wait_line(&rx, "Loaded the channel list", &mut second);
    let ready = reqwest::get(format!("http://{addr}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    second.extend(rx.try_iter());
    assert!(second.iter().any(|l| l.contains("Stopped.")), "{second:#?}");
    seen.extend(second);
    for line in &seen {
        assert!(
            !line.contains(SECRET) && !line.contains("wr0ng-pw-77"),
            "secret in log: {line}"
        );
        assert!(!line.contains("cm9vd"), "an Authorization header value leaked: {line}");
    }
}

#[test]
fn signed_streams_check_config_explains_and_sign_url_signs() {
    let key_secret = "0123456789abcdef0123456789abcdef-file";
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::write(&keys, format!("# current\nk1:{key_secret}\n")).unwrap();
    let run = |args: &[&str], keys_file: &std::path::Path| {
        let output = xg2g()
            .args(args)
            .env("XG2G_OWI_BASE", "http://192.0.2.10")
            .env("XG2G_STREAM_AUTH", "signed")
            .env("XG2G_STREAM_KEYS_FILE", keys_file)
            .env("XG2G_PUBLIC_URL", "https://tv.example.org/")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(
            !stdout.contains(key_secret) && !stderr.contains(key_secret),
            "{stdout}{stderr}"
        );
        (output.status.code(), stdout, stderr)
    };
    let (code, stdout, stderr) = run(&["check-config"], &keys);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("# auth.streams = \"signed\"") && stdout.contains("keys accepted: k1 (\"k1\" signs)"),
        "{stdout}"
    );

    let (code, stdout, stderr) = run(&["sign-url", "/playlist.m3u", "--ttl", "10m"], &keys);
    assert_eq!(code, Some(0), "{stderr}");
    let url = stdout.trim();
    let query = url
        .strip_prefix("https://tv.example.org/playlist.m3u?")
        .unwrap_or_else(|| panic!("{url}"));
    let set = xg2g::auth::KeySet::parse([format!("k1:{key_secret}").as_str()]).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let grant = xg2g::auth::verify(&set, "/playlist.m3u", query, now).expect("the printed URL verifies");
    assert!((now + 595..=now + 600).contains(&grant.expires), "{url}");

    // A missing key file and a short key: exit 2, naming the key and the file.
    let missing = dir.path().join("nope");
    let (code, _, stderr) = run(&["check-config"], &missing);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains(&format!("auth.keys_file {}", missing.display())),
        "{stderr}"
    );
    std::fs::write(&keys, "k1:short\n").unwrap();
    let (code, _, stderr) = run(&["sign-url", "/playlist.m3u"], &keys);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains(&format!("auth.keys and auth.keys_file {}", keys.display()))
            && stderr.contains("key \"k1\": the secret has 5 bytes, at least 32 are needed"),
        "{stderr}"
    );
}
