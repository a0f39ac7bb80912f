//! The OpenWebIF client against the demo receiver: line-up, Latin-1 names, retries, timeouts,
//! credentials and the relay whitelist.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use xg2g::config::{Config, ReceiverConfig, Secret};
use xg2g::demo::{DemoOptions, DemoReceiver};
use xg2g::upstream::{OpenWebIf, UpstreamError, load_channels};

use crate::common;

const USER: &str = "root";
const PASSWORD: &str = "s3cr3t-P4ss";

/// Receiver settings for `base`: short backoff, generous timeout, no retries unless a test asks.
fn receiver(base: &str) -> ReceiverConfig {
    ReceiverConfig {
        base_url: Some(base.parse().expect("base URL")),
        timeout: Duration::from_secs(5),
        retries: 0,
        retry_backoff: Duration::from_millis(10),
        ..Config::default().receiver
    }
}

fn client(cfg: &ReceiverConfig) -> OpenWebIf {
    OpenWebIf::new(cfg).expect("client builds")
}

fn api_requests(demo: &DemoReceiver) -> u64 {
    demo.stats().api_requests.load(Ordering::Relaxed)
}

fn names(wanted: &[&str]) -> Vec<String> {
    wanted.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loads_the_demo_line_up_in_bouquet_order() -> anyhow::Result<()> {
    let demo = common::demo().await;
    let client = client(&receiver(&demo.api_url()));

    let channels = load_channels(&client, &[]).await?;
    let got: Vec<(u32, &str, &str)> = channels
        .iter()
        .map(|c| (c.number, c.name.as_str(), c.bouquet.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (1, "Das Erste HD", "Favourites (TV)"),
            (2, "Bayerisches Fernsehen Süd", "Favourites (TV)"),
            (3, "ORF1 HD", "HD Kanäle"),
            (4, "Münchner Lokalfernsehen", "Regional & Radio"),
            (5, "Ö1", "Regional & Radio"),
        ]
    );
    let refs: Vec<String> = channels.iter().map(|c| c.service_ref.to_string()).collect();
    assert_eq!(
        refs,
        demo.channel_refs(),
        "markers are skipped, a nested bouquet's channels stand where its entry does"
    );
    assert!(channels[4].is_radio());

    let regional = load_channels(&client, &names(&["Regional & Radio"])).await?;
    let got: Vec<(u32, &str)> = regional.iter().map(|c| (c.number, c.name.as_str())).collect();
    assert_eq!(got, [(1, "Münchner Lokalfernsehen"), (2, "Ö1")]);

    let reversed = load_channels(&client, &names(&["regional & radio", "Favourites (TV)"])).await?;
    let numbered: Vec<(u32, &str)> = reversed.iter().map(|c| (c.number, c.name.as_str())).collect();
    assert_eq!(
        numbered[0],
        (1, "Münchner Lokalfernsehen"),
        "configured order, names match ignoring case"
    );
    assert_eq!(numbered[4], (5, "ORF1 HD"));

    let err = load_channels(&client, &names(&["Regional & Radio", "Foo"]))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "bouquet \"Foo\" not found on the receiver; available: \"Favourites (TV)\", \"Regional & Radio\""
    );
    assert_eq!(err.code(), "bouquet-not-found");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_keep_markers_and_decode_latin1_names() -> anyhow::Result<()> {
    let demo = common::demo().await;
    let client = client(&receiver(&demo.api_url()));
    let bouquets = client.bouquets().await?;
    let favourites = bouquets
        .iter()
        .find(|b| b.name == "Favourites (TV)")
        .expect("bouquet listed");
    let entries = client.services(favourites).await?;
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "Öffentlich-Rechtliche",
            "Das Erste HD",
            "Bayerisches Fernsehen Süd",
            "HD Kanäle",
            "Archiv"
        ]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_server_errors_until_the_receiver_answers() -> anyhow::Result<()> {
    let demo = common::demo().await;
    demo.set_faults(|f| f.api_fail_next = 2);
    let client = client(&ReceiverConfig {
        retries: 3,
        ..receiver(&demo.api_url())
    });
    let bouquets = client.bouquets().await?;
    assert_eq!(bouquets.len(), 2);
    assert_eq!(api_requests(&demo), 3, "two failed attempts, then the answer");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gives_up_after_the_configured_retries() {
    let demo = common::demo().await;
    demo.set_faults(|f| f.api_fail_next = 10);
    let client = client(&ReceiverConfig {
        retries: 1,
        ..receiver(&demo.api_url())
    });
    let err = client.bouquets().await.unwrap_err();
    assert!(
        matches!(
            err,
            UpstreamError::Status {
                endpoint: "/api/bouquets",
                status: 500
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.code(), "upstream-unavailable");
    assert_eq!(err.to_string(), "receiver answered /api/bouquets with HTTP 500");
    assert_eq!(api_requests(&demo), 2, "one attempt and one retry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_json_names_the_endpoint_and_is_not_retried() -> anyhow::Result<()> {
    let demo = common::demo().await;
    let client = client(&ReceiverConfig {
        retries: 3,
        ..receiver(&demo.api_url())
    });
    let favourites = client.bouquets().await?.remove(0);
    demo.set_faults(|f| f.api_invalid_json = true);
    let before = api_requests(&demo);

    let err = client.services(&favourites).await.unwrap_err();
    assert!(
        matches!(
            err,
            UpstreamError::InvalidResponse {
                endpoint: "/api/getservices",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("receiver sent an invalid answer to /api/getservices: "),
        "{err}"
    );
    assert_eq!(err.code(), "upstream-invalid-response");
    assert_eq!(
        api_requests(&demo) - before,
        1,
        "a malformed answer will not improve on retry"
    );

    let err = load_channels(&client, &[]).await.unwrap_err();
    assert!(err.to_string().contains("/api/bouquets"), "{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_receiver_times_out_and_a_merely_slow_one_answers() -> anyhow::Result<()> {
    let demo = common::demo().await;
    demo.set_faults(|f| f.api_delay = Duration::from_secs(2));
    let impatient = client(&ReceiverConfig {
        timeout: Duration::from_millis(300),
        retries: 0,
        ..receiver(&demo.api_url())
    });
    let started = Instant::now();
    let err = impatient.bouquets().await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(err, UpstreamError::Unreachable { attempts: 1, .. }), "{err:?}");
    assert_eq!(err.code(), "upstream-unavailable");
    assert!(err.to_string().contains("timed out"), "{err}");
    // A bound on a hang, not a performance check: the answer would take 2 s.
    assert!(elapsed < Duration::from_millis(1_500), "gave up after {elapsed:?}");

    demo.set_faults(|f| f.api_delay = Duration::from_millis(200));
    let patient = client(&ReceiverConfig {
        timeout: Duration::from_secs(2),
        ..receiver(&demo.api_url())
    });
    assert_eq!(patient.bouquets().await?.len(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_receiver_is_retried_then_reported() {
    // A port that was free a moment ago: connections are refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let client = client(&ReceiverConfig {
        retries: 2,
        ..receiver(&format!("http://127.0.0.1:{port}"))
    });
    let err = client.bouquets().await.unwrap_err();
    assert!(matches!(err, UpstreamError::Unreachable { attempts: 3, .. }), "{err:?}");
    assert_eq!(err.code(), "upstream-unavailable");
    assert_eq!(
        err.to_string(),
        "receiver unreachable: /api/bouquets could not connect after 3 attempt(s)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_is_sent_up_front_and_never_printed() -> anyhow::Result<()> {
    let demo = common::demo_with(DemoOptions {
        credentials: Some((USER.to_owned(), PASSWORD.to_owned())),
        ..DemoOptions::default()
    })
    .await;
    let with = |password: Option<&str>| {
        client(&ReceiverConfig {
            username: password.map(|_| USER.to_owned()),
            password: password.map(Secret::new),
            ..receiver(&demo.api_url())
        })
    };

    let channels = load_channels(&with(Some(PASSWORD)), &[]).await?;
    assert_eq!(channels.len(), 5);
    assert_eq!(
        api_requests(&demo),
        5,
        "bouquets and four service lists (two nested), each authorised on the first try"
    );

    let wrong = with(Some("wrong"));
    let err = load_channels(&wrong, &[]).await.unwrap_err();
    assert!(matches!(err, UpstreamError::Status { status: 401, .. }), "{err:?}");
    assert_eq!(err.code(), "upstream-auth-failed");
    assert_eq!(api_requests(&demo), 5 + 1, "a refusal is not retried");

    let right = with(Some(PASSWORD));
    let anonymous = with(None);
    let err = anonymous.bouquets().await.unwrap_err();
    assert!(matches!(err, UpstreamError::Status { status: 401, .. }), "{err:?}");

    let printed = format!("{err} {err:?} {right:?} {wrong:?}");
    for secret in [PASSWORD, "cm9vdDpzM2NyM3QtUDRzcw"] {
        assert!(!printed.contains(secret), "{printed}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_request_carries_user_agent_and_credentials() -> anyhow::Result<()> {
    // A one-shot server that records the raw request, to see the headers as sent.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await?;
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = socket.read(&mut buf).await?;
            anyhow::ensure!(n > 0, "connection closed before the request ended");
            request.extend_from_slice(&buf[..n]);
        }
        let body = r#"{"bouquets": []}"#;
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        socket.write_all(answer.as_bytes()).await?;
        Ok(String::from_utf8(request)?)
    });
    let client = client(&ReceiverConfig {
        username: Some(USER.to_owned()),
        password: Some(Secret::new(PASSWORD)),
        ..receiver(&base)
    });
    assert!(client.bouquets().await?.is_empty());
    let request = server.await??;
    assert!(request.starts_with("GET /api/bouquets HTTP/1.1\r\n"), "{request}");
    let header = |name: &str| {
        request.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim().to_owned())
        })
    };
    assert_eq!(
        header("user-agent"),
        Some(format!("xg2g/{}", env!("CARGO_PKG_VERSION")))
    );
    // base64("root:s3cr3t-P4ss")
    assert_eq!(
        header("authorization").as_deref(),
        Some("Basic cm9vdDpzM2NyM3QtUDRzcw==")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whitelist_lists_the_relay_channels() -> anyhow::Result<()> {
    let demo = common::demo().await;
    let client = client(&receiver(&demo.api_url()));
    let refs: Vec<String> = client.whitelist().await?.iter().map(ToString::to_string).collect();
    assert_eq!(refs, ["1:0:19:132F:3EF:1:C00000:0:0:0:"]);
    Ok(())
}
