//! Template reload (`POST /api/v1/reload` and the function the SIGHUP task calls) and template
//! validation in `check-config` and at start, on copies of the shipped `pipelines/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use xg2g::app::{ReloadError, Running};

use crate::common::{capture, client, config_for, demo, ffprobe, ready, start_app};

const HD: &str = "1:0:19:283D:3FB:1:C00000:0:0:0:";
const TOKEN: &str = "r3load-t0ken";
const ENCODERS: &[&str] = &["nvh264enc", "vah264enc", "vaapih264enc", "qsvh264enc", "x264enc"];

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines")
}

/// A temporary folder holding a copy of every shipped template.
fn shipped_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(shipped()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    dir
}

/// The `name = "…"` of every template file in `dir`, sorted: what a load should offer.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml") && !p.ends_with("encoders.toml"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let line = text.lines().find(|l| l.starts_with("name = ")).unwrap();
            line.trim_start_matches("name = ").trim_matches('"').to_owned()
        })
        .collect();
    names.sort();
    names
}

/// Writes `aac96.toml`: the shipped `aac` at 96 kb/s.
fn add_aac96(dir: &Path) {
    let aac = std::fs::read_to_string(dir.join("aac.toml")).unwrap();
    let (mut named, mut rated) = (false, false);
    let text: Vec<String> = aac
        .lines()
        .map(|l| {
            if l.starts_with("name = ") {
                named = true;
                "name = \"aac96\"".to_owned()
            } else if l.starts_with("audio_bitrate = ") {
                rated = true;
                "audio_bitrate = \"96000\"".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect();
    assert!(named && rated, "aac.toml has a name and an audio_bitrate:\n{aac}");
    std::fs::write(dir.join("aac96.toml"), text.join("\n") + "\n").unwrap();
}

/// Breaks the shipped templates twice: `aac.toml` names an element that does not exist, and a
/// new `unbound.toml` uses a placeholder nobody binds. Returns the problems a load must report,
/// in order, as (file, line, element, message).
fn break_templates(dir: &Path) -> Vec<(String, Option<u64>, Option<String>, String)> {
    let aac_path = dir.join("aac.toml");
    let aac = std::fs::read_to_string(&aac_path).unwrap();
    assert_eq!(aac.matches("avenc_aac ").count(), 1, "{aac}");
    let broken = aac.replace("avenc_aac ", "avenc_aacx ");
    std::fs::write(&aac_path, &broken).unwrap();
    let aac_line = broken.lines().position(|l| l.contains("avenc_aacx")).unwrap() as u64 + 1;
    std::fs::write(
        dir.join("unbound.toml"),
        "name = \"unbound\"\ndescription = \"AAC at a bitrate nobody set\"\nmode = \"audio_proxy\"\n\
         outputs = [\"ts\"]\n\n[audio]\ngraph = \"queue ! audioconvert ! avenc_aac bitrate={bitrate}\"\n",
    )
    .unwrap();
    vec![
        (
            aac_path.display().to_string(),
            Some(aac_line),
            Some("avenc_aacx".to_owned()),
            "no element \"avenc_aacx\"".to_owned(),
        ),
        (
            dir.join("unbound.toml").display().to_string(),
            Some(7),
            None,
            "placeholder {bitrate} is not bound: add it to [params] or remove it".to_owned(),
        ),
    ]
}

async fn start(dir: &Path) -> (xg2g::demo::DemoReceiver, Running, String) {
    let demo = demo().await;
    let dir = dir.display().to_string();
    let config = config_for(
        &demo,
        &[
            ("api_token", TOKEN),
            ("streaming.pipelines_dir", &dir),
            ("streaming.idle_grace", "1s"),
        ],
    );
    let (running, base) = start_app(&config).await;
    (demo, running, base)
}

async fn post_reload(base: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = client().post(format!("{base}/api/v1/reload"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// Opens `/stream/<HD>?profile=…`, expecting 200.
async fn open_stream(base: &str, profile: &str) -> impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> {
    let response = client()
        .get(format!("{base}/stream/{HD}?profile={profile}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "profile {profile}");
    response.bytes_stream()
}

/// Reads until at least `want` bytes have arrived, within 20 s.
async fn read_at_least(
    body: &mut (impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    want: usize,
) -> usize {
    let mut got = 0;
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        while got < want {
            match body.next().await {
                Some(chunk) => got += chunk.expect("stream chunk").len(),
                None => break,
            }
        }
    })
    .await;
    assert!(read.is_ok() && got >= want, "wanted {want} bytes, got {got}");
    got
}

async fn status_of(base: &str, profile: &str) -> (u16, Value) {
    let response = client()
        .get(format!("{base}/stream/{HD}?profile={profile}"))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_needs_the_admin_token_and_says_what_it_loaded() {
    let dir = shipped_copy();
    let (_demo, running, base) = start(dir.path()).await;
    let (status, body) = post_reload(&base, None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized")),
        "{body}"
    );
    let (status, body) = post_reload(&base, Some("r3load-t0keN")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );

    let (status, body) = post_reload(&base, Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["profiles"], json!(names_in(dir.path())));
    assert_eq!(body["origin"], json!(dir.path().display().to_string()));
    let encoder = body["encoder"].as_str().unwrap_or_default();
    assert!(ENCODERS.contains(&encoder), "{body}");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_reload_names_every_problem_and_keeps_the_old_templates() {
    let dir = shipped_copy();
    let (_demo, running, base) = start(dir.path()).await;
    ready(&running).await;
    let expected = break_templates(dir.path());

    let (status, body) = post_reload(&base, Some(TOKEN)).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "invalid-templates", "{body}");
    let want: Vec<Value> = expected
        .iter()
        .map(|(file, line, element, message)| json!({"file": file, "line": line, "element": element, "message": message}))
        .collect();
    assert_eq!(body["error"]["problems"], json!(want), "{body:#}");

    // The path SIGHUP takes reports the same problems.
    match running.reload_templates().await {
        Err(ReloadError::Invalid(errors)) => {
            let got: Vec<_> = errors
                .0
                .iter()
                .map(|p| {
                    (
                        p.file.clone(),
                        p.line.map(|l| l as u64),
                        p.element.clone(),
                        p.message.clone(),
                    )
                })
                .collect();
            assert_eq!(got, expected);
        }
        other => panic!("expected invalid templates, got {other:?}"),
    }

    // The previous templates stay: `aac` still streams, the broken new profile is not there.
    let mut body = open_stream(&base, "aac").await;
    read_at_least(&mut body, 10_000).await;
    drop(body);
    let (status, body) = status_of(&base, "unbound").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("profile-not-found"))
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_reload_adds_a_profile_and_running_sessions_keep_their_template() {
    let dir = shipped_copy();
    let (_demo, running, base) = start(dir.path()).await;
    ready(&running).await;
    let mut watching = open_stream(&base, "aac").await;
    read_at_least(&mut watching, 100_000).await;

    add_aac96(dir.path());
    let (status, body) = post_reload(&base, Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["profiles"], json!(names_in(dir.path())));
    assert!(body["profiles"].as_array().unwrap().contains(&json!("aac96")), "{body}");
    // The viewer from before the reload keeps receiving on the same response.
    read_at_least(&mut watching, 100_000).await;

    // The new profile streams stereo AAC-LC, checked by ffprobe.
    let bytes = capture(&format!("{base}/stream/{HD}?profile=aac96"), Duration::from_secs(2)).await;
    let probed = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(probed.path(), &bytes[..bytes.len() / 188 * 188]).unwrap();
    let (json, log) = ffprobe(probed.path(), &["-show_streams", "-select_streams", "a"], "error");
    let audio = &json["streams"][0];
    assert_eq!(
        (
            audio["codec_name"].as_str(),
            audio["profile"].as_str(),
            audio["channels"].as_u64()
        ),
        (Some("aac"), Some("LC"), Some(2)),
        "{json:#}\n{log}"
    );

    // Now `aac` goes away, through the path SIGHUP takes. The running `aac` session holds its own
    // template: its viewer keeps playing while new `aac` requests find no such profile.
    std::fs::remove_file(dir.path().join("aac.toml")).unwrap();
    let reloaded = running.reload_templates().await.expect("a valid set");
    assert_eq!(reloaded.profiles, names_in(dir.path()));
    assert!(!reloaded.profiles.contains(&"aac".to_owned()));
    read_at_least(&mut watching, 100_000).await;
    let (status, body) = status_of(&base, "aac").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("profile-not-found"))
    );
    drop(watching);
    running.stop().await;
}

fn xg2g() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xg2g"));
    // Only what a test sets: no XG2G_* from the developer's shell.
    for (key, _) in std::env::vars() {
        if key.starts_with("XG2G_") && key != "XG2G_CACHE_DIR" {
            cmd.env_remove(key);
        }
    }
    cmd.env("XG2G_OWI_BASE", "http://192.0.2.10");
    cmd
}

/// The lines a load prints for `expected`, as `TemplateProblem` displays them.
fn problem_lines(expected: &[(String, Option<u64>, Option<String>, String)]) -> Vec<String> {
    expected
        .iter()
        .map(|(file, line, element, message)| {
            let line = line.map(|l| format!(":{l}")).unwrap_or_default();
            let element = element.as_ref().map(|e| format!(": element `{e}`")).unwrap_or_default();
            format!("{file}{line}{element}: {message}")
        })
        .collect()
}

#[test]
fn check_config_reports_template_problems_and_exits_2() {
    let dir = shipped_copy();
    let expected = problem_lines(&break_templates(dir.path()));
    let output = xg2g()
        .arg("check-config")
        .env("XG2G_PIPELINES_DIR", dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines,
        [
            &["xg2g: the pipeline templates have problems:"][..],
            &expected.iter().map(String::as_str).collect::<Vec<_>>()
        ]
        .concat()
    );
}

#[test]
fn check_config_prints_the_encoder_and_the_profiles() {
    let output = xg2g()
        .arg("check-config")
        .env("XG2G_PIPELINES_DIR", shipped())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let encoder = stdout
        .lines()
        .find_map(|l| l.strip_prefix("# H.264 encoder: "))
        .unwrap_or_else(|| panic!("no encoder line in:\n{stdout}"));
    assert!(ENCODERS.contains(&encoder), "{stdout}");
    let profiles = format!("# profiles: {}", names_in(&shipped()).join(", "));
    assert!(stdout.lines().any(|l| l == profiles), "no {profiles:?} in:\n{stdout}");
    assert!(
        stdout.contains(&format!("# pipeline templates: {}", shipped().display())),
        "{stdout}"
    );
}

#[tokio::test]
async fn serve_with_bad_templates_says_so_once_and_exits_2() {
    let dir = shipped_copy();
    let expected = problem_lines(&break_templates(dir.path()));
    let mut cmd = tokio::process::Command::from(xg2g());
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .env("XG2G_PIPELINES_DIR", dir.path())
        .kill_on_drop(true);
    // Bounded: a serve that did start would never exit by itself.
    let output = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("xg2g serve stops at once with broken templates")
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(2), "{all}");
    for line in &expected {
        assert_eq!(
            all.matches(line.as_str()).count(),
            1,
            "{line:?} once, on a line of its own, in:\n{all}"
        );
        assert!(
            all.lines().any(|l| l == line),
            "{line:?} on a line of its own in:\n{all}"
        );
    }
}
