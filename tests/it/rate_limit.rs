//! Rate limits on new sessions over HTTP, against the demo receiver: new sessions are charged,
//! joins, segment fetches and HEAD are not; forwarding headers count only from trusted proxies.
//!
//! No test waits for a refill: refusals are provoked by requests sent together (their
//! admissions lie milliseconds apart, the refill is a second away), and "not charged" is shown by
//! many quick requests that an empty bucket refilling at 1/s could never all have paid for.

use futures_util::StreamExt;
use futures_util::future::join_all;

use crate::common::{client, config_for, demo, get_text, start_ready};

const HD: &str = "1:0:19:283D:3FB:1:C00000:0:0:0:";
const SD: &str = "1:0:1:6F0B:44D:1:C00000:0:0:0:";
const ORF: &str = "1:0:19:132F:3EF:1:C00000:0:0:0:";
const LOCAL: &str = "1:0:1:2EE3:441:1:C00000:0:0:0:";
/// New sessions at 1/s per address with a burst of one.
const BURST_OF_ONE: [(&str, &str); 2] = [("rate_limit.per_ip_rate", "1"), ("rate_limit.per_ip_burst", "1")];

/// A GET with optional extra headers; the response once its head is in.
async fn get(url: String, headers: Vec<(&'static str, String)>) -> reqwest::Response {
    let mut request = client().get(&url);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    request.send().await.unwrap_or_else(|e| panic!("{url}: {e}"))
}

/// Reads a stream's body in the background so that its session keeps a reading viewer.
fn keep_reading(response: reqwest::Response) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut body = response.bytes_stream();
        while let Some(Ok(_)) = body.next().await {}
    })
}

/// Checks a refusal: 429, `Retry-After` in whole seconds (1 at a rate of 1/s), code
/// `rate-limited`.
async fn assert_rate_limited(response: reqwest::Response) {
    assert_eq!(response.status(), 429);
    let retry_after = response.headers()["retry-after"].to_str().unwrap().to_owned();
    assert_eq!(retry_after, "1", "the next token is at most 1 s away at 1/s");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate-limited", "{body}");
}

async fn metric(base: &str, series: &str) -> Option<String> {
    let text = get_text(format!("{base}/metrics")).await;
    text.lines()
        .find_map(|line| line.strip_prefix(series))
        .map(|value| value.trim().to_owned())
}

/// Splits responses into admitted (200) and refused ones; anything else fails the test.
fn split(responses: Vec<reqwest::Response>) -> (Vec<reqwest::Response>, Vec<reqwest::Response>) {
    for r in &responses {
        assert!(matches!(r.status().as_u16(), 200 | 429), "{}: {}", r.url(), r.status());
    }
    responses.into_iter().partition(|r| r.status() == 200)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_third_new_session_is_refused_and_joins_are_free() {
    let demo = demo().await;
    let (running, base) = start_ready(&config_for(
        &demo,
        &[("rate_limit.per_ip_rate", "1"), ("rate_limit.per_ip_burst", "2")],
    ))
    .await;
    let url = |channel: &str| format!("{base}/stream/{channel}?profile=copy");

    // Three new sessions at once from one address: a burst of two, then 429.
    let responses = join_all([HD, SD, LOCAL].map(|c| get(url(c), Vec::new()))).await;
    let (admitted, refused) = split(responses);
    assert_eq!((admitted.len(), refused.len()), (2, 1));
    let running_urls: Vec<String> = admitted.iter().map(|r| r.url().to_string()).collect();
    let readers: Vec<_> = admitted.into_iter().map(keep_reading).collect();
    for response in refused {
        assert_rate_limited(response).await;
    }

    // The bucket is empty now and refills one token a second. Joining the running sessions
    // ten times in a row costs nothing: charged, most of these would be refused.
    for url in &running_urls {
        for _ in 0..5 {
            let join = get(url.clone(), Vec::new()).await;
            assert_eq!(join.status(), 200, "joining {url} is free");
        }
    }
    // HEAD never starts a session, so it is never charged.
    for channel in [HD, SD, LOCAL, ORF] {
        let head = client().head(url(channel)).send().await.unwrap();
        assert_eq!(head.status(), 200);
    }
    let series = "xg2g_rate_limit_exceeded_total{scope=\"ip\",mode=\"standard\"}";
    assert_eq!(metric(&base, series).await.as_deref(), Some("1"));
    for reader in readers {
        reader.abort();
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hls_first_playlists_are_charged_and_segments_are_free() {
    let demo = demo().await;
    let (running, base) = start_ready(&config_for(&demo, &BURST_OF_ONE)).await;
    let master = |channel: &str| format!("{base}/hls/{channel}/aac/index.m3u8");

    // Two first playlists at once with a burst of one: one session starts, one is refused.
    let responses = join_all([HD, ORF].map(|c| get(master(c), Vec::new()))).await;
    let (admitted, refused) = split(responses);
    assert_eq!((admitted.len(), refused.len()), (1, 1));
    for response in refused {
        assert_rate_limited(response).await;
    }
    let media = admitted[0].url().to_string().replace("index.m3u8", "media.m3u8");

    // Playlists and segments of the running session: 20+ requests, none charged.
    let mut segments = 0;
    for _ in 0..10 {
        let response = get(media.clone(), Vec::new()).await;
        assert_eq!(response.status(), 200, "a running session's playlist is free");
        let playlist = response.text().await.unwrap();
        for uri in playlist.lines().filter(|l| l.ends_with(".ts")) {
            let segment = get(media.replace("media.m3u8", uri), Vec::new()).await;
            // A segment may just have left the live window; it is never refused.
            assert!(matches!(segment.status().as_u16(), 200 | 404), "{}", segment.status());
            segments += usize::from(segment.status() == 200);
        }
    }
    assert!(segments >= 5, "fetched {segments} segments");
    let again = get(admitted[0].url().to_string(), Vec::new()).await;
    assert_eq!(again.status(), 200, "the master playlist of a running session is free");

    let series = "xg2g_rate_limit_exceeded_total{scope=\"ip\",mode=\"audio_proxy\"}";
    assert_eq!(metric(&base, series).await.as_deref(), Some("1"));
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_count_only_from_trusted_proxies() {
    let demo = demo().await;
    let forwarded_for = |ip: &str| vec![("x-forwarded-for", ip.to_owned())];

    // Loopback is a trusted proxy: its X-Forwarded-For names the clients.
    let mut trusted = BURST_OF_ONE.to_vec();
    trusted.push(("rate_limit.trusted_proxies", "127.0.0.1/32"));
    let (running, base) = start_ready(&config_for(&demo, &trusted)).await;
    let url = |channel: &str| format!("{base}/stream/{channel}?profile=copy");
    let responses = join_all([
        get(url(HD), forwarded_for("198.51.100.1")),
        get(url(LOCAL), forwarded_for("198.51.100.1")),
        // A client's own entry on the left is not what counts: the proxy's rightmost is.
        get(url(SD), forwarded_for("198.51.100.1, 198.51.100.2")),
        get(url(ORF), vec![("forwarded", "for=\"[2001:db8::1]:4711\"".to_owned())]),
    ])
    .await;
    let statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    let mut first_client = [statuses[0], statuses[1]];
    first_client.sort_unstable();
    assert_eq!(first_client, [200, 429], "198.51.100.1 has a burst of one");
    assert_eq!(statuses[2], 200, "198.51.100.2 has a bucket of its own");
    assert_eq!(statuses[3], 200, "2001:db8::1 has a bucket of its own");
    drop(responses);
    running.stop().await;

    // Without trusted proxies the same headers are ignored: one address, one burst.
    let (running, base) = start_ready(&config_for(&demo, &BURST_OF_ONE)).await;
    let url = |channel: &str| format!("{base}/stream/{channel}?profile=copy");
    let responses = join_all([
        get(url(HD), forwarded_for("198.51.100.1")),
        get(url(SD), forwarded_for("198.51.100.2")),
    ])
    .await;
    let (admitted, refused) = split(responses);
    assert_eq!((admitted.len(), refused.len()), (1, 1), "both count as 127.0.0.1");
    for response in refused {
        assert_rate_limited(response).await;
    }
    drop(admitted);
    running.stop().await;
}

/// `auto` must read a new channel's PMT from the receiver: that probe is charged like the
/// session it leads to (a refused request never reaches the receiver), once (the session it
/// leads to is not charged again), and shared by every request for the channel at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_probes_are_charged_once_and_shared() {
    let demo = demo().await;
    let (running, base) = start_ready(&config_for(&demo, &BURST_OF_ONE)).await;
    let streams = || {
        demo.stats()
            .stream_connections
            .load(std::sync::atomic::Ordering::SeqCst)
    };
    let master = |channel: &str| format!("{base}/hls/{channel}/auto/index.m3u8");

    // Eight players ask for a new channel at once: one is admitted (a burst of one), and its
    // port detection, codec probe and session are the receiver connections; the seven others
    // never reach it.
    let before = streams();
    let responses = join_all((0..8).map(|_| get(master(HD), Vec::new()))).await;
    let (admitted, refused) = split(responses);
    assert_eq!((admitted.len(), refused.len()), (1, 7));
    for response in refused {
        assert_rate_limited(response).await;
    }
    let used = streams() - before;
    assert!(
        used <= 3,
        "a port detection, one probe and one session, not {used} receiver connections"
    );
    running.stop().await;

    // Without limits, eight requests at once for a new channel share one probe.
    let (running, base) = start_ready(&config_for(&demo, &[("rate_limit.enabled", "false")])).await;
    let before = streams();
    let responses = join_all((0..8).map(|_| get(format!("{base}/hls/{SD}/auto/index.m3u8"), Vec::new()))).await;
    for response in responses {
        assert_eq!(response.status(), 200);
    }
    let used = streams() - before;
    assert!(
        used <= 3,
        "a port detection, one probe and one session, not {used} receiver connections"
    );
    running.stop().await;
}

/// One client may keep only so many channels tuned at once (each may hold a receiver tuner);
/// another profile of a channel it watches, and other clients, are not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_tunes_at_most_its_share_of_channels() {
    let demo = demo().await;
    let (running, base) = start_ready(&config_for(
        &demo,
        &[
            ("rate_limit.max_channels_per_client", "2"),
            ("rate_limit.trusted_proxies", "127.0.0.1/32"),
        ],
    ))
    .await;
    let from = |ip: &str| vec![("x-forwarded-for", ip.to_owned())];
    let url = |channel: &str, profile: &str| format!("{base}/stream/{channel}?profile={profile}");
    let mut readers = Vec::new();
    for channel in [HD, SD] {
        let response = get(url(channel, "copy"), from("198.51.100.7")).await;
        assert_eq!(response.status(), 200);
        readers.push(keep_reading(response));
    }
    let third = get(url(ORF, "copy"), from("198.51.100.7")).await;
    assert_eq!(third.status(), 429);
    assert_eq!(third.headers()["retry-after"], "3");
    let body: serde_json::Value = third.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too-many-channels", "{body}");
    // The same channel in another profile tunes nothing new for this client.
    let other_profile = get(url(HD, "aac"), from("198.51.100.7")).await;
    assert_eq!(other_profile.status(), 200);
    readers.push(keep_reading(other_profile));
    // Another client has its own share.
    let neighbour = get(url(ORF, "copy"), from("198.51.100.8")).await;
    assert_eq!(neighbour.status(), 200);
    drop(neighbour);
    // A thumbnail holds a tuner for one frame, not for as long as the client watches: the cap
    // does not refuse it.
    let thumbnail = get(
        format!("{base}/api/v1/channels/{LOCAL}/preview.jpg"),
        from("198.51.100.7"),
    )
    .await;
    assert_eq!(thumbnail.status(), 200);
    for reader in readers {
        reader.abort();
    }
    running.stop().await;
}

/// A thumbnail that has to be made tunes the receiver: it is charged like a session start (two
/// new ones at once, one token: one is refused), while a cached one is free (five at once, which
/// an empty bucket refilling at 1/s could never have paid for).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thumbnails_are_charged_only_when_one_is_made() {
    let demo = demo().await;
    let (running, base) = start_ready(&config_for(&demo, &BURST_OF_ONE)).await;
    let thumbnail = |channel: &str| format!("{base}/api/v1/channels/{channel}/preview.jpg");
    let responses = join_all([SD, HD].map(|channel| get(thumbnail(channel), Vec::new()))).await;
    let (admitted, refused) = split(responses);
    assert_eq!((admitted.len(), refused.len()), (1, 1));
    let made = admitted[0].url().to_string();
    for response in refused {
        assert_rate_limited(response).await;
    }
    let again = join_all((0..5).map(|_| get(made.clone(), Vec::new()))).await;
    for response in again {
        assert_eq!(response.status(), 200, "{made}: from the cache, not charged");
        assert_eq!(response.headers()["content-type"], "image/jpeg");
    }
    assert_eq!(
        metric(&base, "xg2g_rate_limit_exceeded_total{scope=\"ip\",mode=\"preview\"}").await,
        Some("1".to_owned())
    );
    running.stop().await;
}
