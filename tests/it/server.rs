//! xg2g's HTTP surface against the demo receiver: readiness, pages, playlist, metrics, errors.

use std::time::Duration;

use crate::common::{client, config_for, demo, ready, start_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_turns_200_after_the_first_load() {
    let demo = demo().await;
    // Hold the receiver's answers back so the first probe sees the app before its first load.
    demo.set_faults(|f| f.api_delay = Duration::from_millis(1_500));
    let (running, base) = start_app(&config_for(&demo, &[])).await;
    let http = client();

    let health = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let early = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(early.status(), 503);
    let body: serde_json::Value = early.json().await.unwrap();
    assert_eq!(body["status"], "not-ready");
    assert_eq!(body["missing"][0], "channel-list");
    let playlist = http.get(format!("{base}/playlist.m3u")).send().await.unwrap();
    assert_eq!(playlist.status(), 503);
    let body: serde_json::Value = playlist.json().await.unwrap();
    assert_eq!(body["error"]["code"], "catalog-not-ready");

    demo.set_faults(|f| f.api_delay = Duration::ZERO);
    ready(&running).await;
    let late = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(late.status(), 200);
    let body: serde_json::Value = late.json().await.unwrap();
    assert_eq!(body["channels"], 5);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_reports_why_the_receiver_failed() {
    let demo = demo().await;
    demo.set_faults(|f| f.api_fail_next = 1_000);
    let (running, base) = start_app(&config_for(&demo, &[("receiver.retries", "0")])).await;
    let http = client();
    let mut catalog = running.catalog();
    tokio::time::timeout(Duration::from_secs(30), catalog.wait_until(|s| s.last_error.is_some()))
        .await
        .expect("the first load fails within 30 s");
    let body: serde_json::Value = http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["status"], "not-ready");
    let detail = body["detail"].as_str().unwrap_or_default().to_owned();
    assert!(
        detail.contains("500"),
        "readyz detail names the receiver's answer: {detail:?}"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn playlist_page_and_errors() {
    let demo = demo().await;
    let (running, base) = start_app(&config_for(&demo, &[])).await;
    ready(&running).await;
    let http = client();

    let response = http.get(format!("{base}/playlist.m3u")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("audio/x-mpegurl")
    );
    let m3u = response.text().await.unwrap();
    let lines: Vec<&str> = m3u.lines().collect();
    assert_eq!(lines.len(), 1 + 2 * 5);
    let host = running.addr().to_string();
    assert_eq!(lines[0], format!("#EXTM3U x-tvg-url=\"http://{host}/xmltv.xml\""));
    assert_eq!(
        lines[3],
        format!(
            "#EXTINF:-1 tvg-chno=\"2\" tvg-id=\"1.0.1.6F0B.44D.1.C00000.0.0.0\" tvg-name=\"Bayerisches Fernsehen Süd\" \
             tvg-logo=\"http://{host}/picon/1:0:1:6F0B:44D:1:C00000:0:0:0:.png\" group-title=\"Favourites (TV)\",\
             Bayerisches Fernsehen Süd"
        )
    );
    assert_eq!(lines[4], format!("http://{host}/stream/1:0:1:6F0B:44D:1:C00000:0:0:0:"));
    assert!(m3u.contains("group-title=\"Regional & Radio\",Ö1\n"));
    // The bouquet nested in "Favourites (TV)" is a group of its own.
    assert!(m3u.contains("tvg-chno=\"3\" "));
    assert!(m3u.contains("group-title=\"HD Kanäle\",ORF1 HD\n"), "{m3u}");

    let page = http.get(format!("{base}/")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("<h2>Favourites (TV)</h2>"));
    assert!(page.contains("<h2>Regional &amp; Radio</h2>"));
    let sections: Vec<&str> = page
        .split("<h2>")
        .skip(1)
        .map(|s| &s[..s.find("</h2>").unwrap()])
        .collect();
    assert_eq!(sections, ["Favourites (TV)", "HD Kanäle", "Regional &amp; Radio"]);
    assert!(page.contains("<span class=\"num\">5</span> <a href=\"watch/1:0:2:2F1C:441:1:C00000:0:0:0:\">Ö1</a>"));

    let missing = http.get(format!("{base}/no/such/page")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not-found");

    let metrics = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = metrics.text().await.unwrap();
    for needle in [
        "xg2g_http_requests_total{route=\"/playlist.m3u\",status=\"200\"} 1",
        "xg2g_http_requests_total{route=\"unmatched\",status=\"404\"} 1",
        "xg2g_http_request_duration_seconds_count{route=\"/\"} 1",
        "xg2g_build_info{version=",
        "xg2g_catalog_channels 5",
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
    ] {
        assert!(text.contains(needle), "metrics lack {needle:?}:\n{text}");
    }
    assert!(!text.contains("/no/such/page"), "raw paths never become labels");
    assert!(text.trim_end().ends_with("# EOF"));
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_closes_the_listener() {
    let demo = demo().await;
    let (running, base) = start_app(&config_for(&demo, &[])).await;
    let addr = running.addr();
    assert_eq!(
        client().get(format!("{base}/healthz")).send().await.unwrap().status(),
        200
    );
    tokio::time::timeout(Duration::from_secs(15), running.stop())
        .await
        .expect("stops within the drain timeout");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}
