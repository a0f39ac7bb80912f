//! Per-device tokens end to end: made, listed and revoked through the admin API; kept in a
//! state file across restarts; M3U and HDHomeRun answers fetched with a token list stream URLs
//! that carry it and play; a revoked token is refused at once and its open streams end.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::common::{
    client, config_for, demo, get_json, get_text, lineup_urls, ready, send_json, start_app, start_ready,
};
use crate::signed::{ADMIN, CURRENT, HD, PUBLIC_HOST, local, status};

pub(crate) fn token_config(demo: &xg2g::demo::DemoReceiver, tokens_file: &Path) -> xg2g::config::Config {
    config_for(
        demo,
        &[
            ("auth.streams", "signed"),
            ("auth.keys", CURRENT),
            ("auth.allowed_hosts", PUBLIC_HOST),
            ("api_token", ADMIN),
            ("auth.tokens_file", tokens_file.to_str().unwrap()),
        ],
    )
}

/// `POST /api/v1/tokens` with the admin token; the answer.
pub(crate) async fn create(base: &str, name: &str) -> Value {
    let response = client()
        .post(format!("{base}/api/v1/tokens"))
        .header("X-API-Token", ADMIN)
        .json(&json!({ "name": name }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    response.json().await.unwrap()
}

async fn revoke(base: &str, id: &str) -> u16 {
    client()
        .delete(format!("{base}/api/v1/tokens/{id}"))
        .header("X-API-Token", ADMIN)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Mints a device token named `name` through the admin API; the token itself.
pub(crate) async fn device_token(base: &str, name: &str) -> String {
    create(base, name).await["token"].as_str().unwrap().to_owned()
}

/// Starts xg2g with device tokens kept in `dir`, and waits for its channel list.
pub(crate) async fn start_with_tokens(demo: &xg2g::demo::DemoReceiver, dir: &Path) -> (xg2g::app::Running, String) {
    start_ready(&token_config(demo, &dir.join("tokens.json"))).await
}

/// The stream links of an M3U.
pub(crate) fn stream_links(m3u: &str) -> Vec<String> {
    m3u.lines()
        .filter(|l| l.contains("/stream/"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_made_listed_revoked_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state/tokens.json");
    let demo = demo().await;
    let config = token_config(&demo, &file);
    let (running, base) = start_app(&config).await;
    ready(&running).await;
    // The admin token is needed: none 401, a wrong one 403.
    let bare = client().get(format!("{base}/api/v1/tokens")).send().await.unwrap();
    assert_eq!(bare.status().as_u16(), 401);
    let wrong = client()
        .post(format!("{base}/api/v1/tokens"))
        .header("X-API-Token", "wrong")
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 403);

    let made = create(&base, "Plex").await;
    let token = made["token"].as_str().unwrap().to_owned();
    let id = made["id"].as_str().unwrap().to_owned();
    assert!(token.starts_with("xg2g_dev_"), "{made}");
    assert_eq!(
        made["playlist_url"],
        format!("http://{PUBLIC_HOST}/playlist.m3u?token={token}")
    );
    let stored = std::fs::read_to_string(&file).unwrap();
    assert!(stored.contains(&id) && !stored.contains(&token[9..]), "{stored}");
    let m3u_path = format!("/playlist.m3u?token={token}");
    assert_eq!(status(&base, &m3u_path).await.0, 200);
    running.stop().await;

    // Started again on the same file: the token still works, and is listed without itself.
    let (running, base) = start_app(&config).await;
    ready(&running).await;
    assert_eq!(status(&base, &m3u_path).await.0, 200);
    let listed = send_json(
        client()
            .get(format!("{base}/api/v1/tokens"))
            .header("X-API-Token", ADMIN),
    )
    .await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["name"], "Plex");
    assert!(listed[0]["created"].as_u64().is_some());
    assert!(!listed.to_string().contains(&token[9..]), "{listed}");

    assert_eq!(revoke(&base, &id).await, 204);
    assert_eq!(status(&base, &m3u_path).await, (403, "token-invalid".into()));
    assert_eq!(revoke(&base, &id).await, 404);
    // An unknown token is a wrong credential like a wrong signature.
    let made_up = "/playlist.m3u?token=xg2g_dev_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    assert_eq!(status(&base, made_up).await, (403, "token-invalid".into()));
    running.stop().await;
    let (running, base) = start_app(&config).await;
    assert_eq!(status(&base, &m3u_path).await.0, 403, "revoked for good");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_token_file_stops_start_up_and_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.json");
    std::fs::write(&file, "{\"version\": 1, \"tokens\": [").unwrap();
    let demo = demo().await;
    let error = match xg2g::app::start(&token_config(&demo, &file)).await {
        Ok(_) => panic!("started with a corrupt token file"),
        Err(e) => e.to_string(),
    };
    assert!(
        error.contains(&file.display().to_string()) && error.contains("not a token file"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_token_m3u_and_lineup_list_urls_that_carry_it_and_play() {
    let dir = tempfile::tempdir().unwrap();
    let demo = demo().await;
    let (running, base) = start_with_tokens(&demo, dir.path()).await;
    let token = device_token(&base, "VLC").await;
    let m3u = get_text(format!("{base}/playlist.m3u?token={token}")).await;
    let links = stream_links(&m3u);
    assert!(!links.is_empty(), "{m3u}");
    for link in &links {
        assert!(link.ends_with(&format!("?token={token}")), "{link}");
    }
    assert!(m3u.contains(&format!("/xmltv.xml?token={token}")), "{m3u}");
    let hd = local(&base, links.iter().find(|l| l.contains(HD)).unwrap());
    // ffmpeg, as a player would: three seconds of the stream from the listed URL.
    let out = dir.path().join("hd.ts");
    let ffmpeg = tokio::task::spawn_blocking({
        let (hd, out) = (hd.clone(), out.clone());
        move || {
            Command::new("ffmpeg")
                .args([
                    "-hide_banner",
                    "-loglevel",
                    "error",
                    "-rw_timeout",
                    "20000000",
                    "-i",
                    &hd,
                ])
                .args(["-t", "3", "-c", "copy", "-y"])
                .arg(&out)
                .output()
                .expect("ffmpeg runs (install ffmpeg)")
        }
    })
    .await
    .unwrap();
    assert!(ffmpeg.status.success(), "{}", String::from_utf8_lossy(&ffmpeg.stderr));
    let (probe, log) = crate::common::ffprobe(&out, &["-show_streams", "-show_format"], "error");
    let streams = probe["streams"].as_array().unwrap_or_else(|| panic!("{log}"));
    assert!(streams.iter().any(|s| s["codec_type"] == "video"), "{probe}");
    assert!(streams.iter().any(|s| s["codec_type"] == "audio"), "{probe}");
    let seconds: f64 = probe["format"]["duration"].as_str().unwrap().parse().unwrap();
    assert!(seconds >= 2.5, "{seconds} s");

    // The HDHomeRun answers fetched with the token hand it on.
    let discover = get_json(format!("{base}/discover.json?token={token}")).await;
    let lineup_url = discover["LineupURL"].as_str().unwrap();
    assert_eq!(lineup_url, format!("http://{PUBLIC_HOST}/lineup.json?token={token}"));
    for url in lineup_urls(local(&base, lineup_url)).await {
        assert!(url.ends_with(&format!("?profile=copy&token={token}")), "{url}");
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_refused_at_once_and_its_streams_end() {
    let dir = tempfile::tempdir().unwrap();
    let demo = demo().await;
    let (running, base) = start_with_tokens(&demo, dir.path()).await;
    let made = create(&base, "Threadfin").await;
    let token = made["token"].as_str().unwrap().to_owned();
    let other = device_token(&base, "Kodi").await;

    // A TS stream of each device, both delivering.
    let open = |token: String| {
        let base = base.clone();
        async move {
            let response = client()
                .get(format!("{base}/stream/{HD}?token={token}"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 200);
            let mut body = response.bytes_stream();
            let first = tokio::time::timeout(Duration::from_secs(20), body.next()).await;
            assert!(matches!(first, Ok(Some(Ok(_)))), "the stream delivers");
            body
        }
    };
    let mut revoked_body = open(token.clone()).await;
    let mut kept_body = open(other.clone()).await;
    // And HLS with the token: the master lists the media playlist with it.
    let master = get_text(format!("{base}/hls/{HD}/aac/index.m3u8?token={token}")).await;
    assert_eq!(crate::signed::uris(&master), [format!("media.m3u8?token={token}")]);
    let media = get_text(format!("{base}/hls/{HD}/aac/media.m3u8?token={token}")).await;
    let segment = crate::signed::uris(&media)[0].clone();
    assert!(segment.ends_with(&format!(".ts?token={token}")), "{segment}");

    let revoked_at = tokio::time::Instant::now();
    assert_eq!(revoke(&base, made["id"].as_str().unwrap()).await, 204);
    // New requests: refused at once, playlists and segments alike.
    for path in [
        format!("/stream/{HD}?token={token}"),
        format!("/hls/{HD}/aac/media.m3u8?token={token}"),
        format!("/hls/{HD}/aac/{segment}"),
        format!("/playlist.m3u?token={token}"),
    ] {
        assert_eq!(status(&base, &path).await, (403, "token-invalid".into()), "{path}");
    }
    // The open stream ends (drained of what was in flight) within a few seconds.
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(_)) = revoked_body.next().await {}
    })
    .await;
    let took = revoked_at.elapsed();
    assert!(ended.is_ok(), "the revoked device's stream still runs after 5 s");
    eprintln!("revoked stream ended {took:?} after the revocation");
    // The other device's stream goes on.
    let next = tokio::time::timeout(Duration::from_secs(5), kept_body.next()).await;
    assert!(matches!(next, Ok(Some(Ok(_)))), "the other device still streams");
    assert_eq!(status(&base, &format!("/playlist.m3u?token={other}")).await.0, 200);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_device_tokens_are_throttled_per_client_address() {
    let dir = tempfile::tempdir().unwrap();
    let demo = demo().await;
    let (running, base) = start_with_tokens(&demo, dir.path()).await;
    let token = device_token(&base, "Jellyfin").await;
    let good = format!("/playlist.m3u?token={token}");
    assert_eq!(status(&base, &good).await.0, 200);
    // Guesses: the real token with its last character changed, and made-up ones.
    let last = if token.ends_with('A') { "B" } else { "A" };
    let altered = format!("/playlist.m3u?token={}{last}", &token[..token.len() - 1]);
    for attempt in 0..10 {
        let guess = if attempt % 2 == 0 {
            altered.clone()
        } else {
            format!("/stream/{HD}?token=xg2g_dev_{attempt}")
        };
        assert_eq!(
            status(&base, &guess).await,
            (403, "token-invalid".into()),
            "attempt {attempt}"
        );
    }
    assert_eq!(status(&base, &altered).await, (429, "signature-throttled".into()));
    // While throttled, not even the device's own token is looked up.
    assert_eq!(status(&base, &good).await, (429, "signature-throttled".into()));
    running.stop().await;
}
