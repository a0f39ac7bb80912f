//! Now and next on the channel list: the JSON the page's script reads, the rows the server
//! renders, and (where Debian's `chromium` is installed) the script filling them in under the
//! page's Content-Security-Policy.

use std::time::Duration;

use crate::common::{client, config_for, demo, guide_loaded, ready, start_app};

const RADIO: &str = "1:0:2:2F1C:441:1:C00000:0:0:0:";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guide_now_lists_every_channel_with_its_running_programme() {
    let demo = demo().await;
    demo.set_faults(|f| f.api_delay = Duration::from_millis(1_000));
    let (running, base) = start_app(&config_for(&demo, &[])).await;
    let http = client();
    let early = http.get(format!("{base}/api/v1/guide/now")).send().await.unwrap();
    assert_eq!(early.status(), 503);
    let body: serde_json::Value = early.json().await.unwrap();
    assert_eq!(body["error"]["code"], "catalog-not-ready");
    demo.set_faults(|f| f.api_delay = Duration::ZERO);
    ready(&running).await;
    // The guide loads after the channel list.
    guide_loaded(&running).await;

    let response = http.get(format!("{base}/api/v1/guide/now")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: serde_json::Value = response.json().await.unwrap();
    let time = body["time"].as_i64().unwrap();
    let channels = body["channels"].as_array().unwrap();
    let refs: Vec<&str> = channels.iter().map(|c| c["ref"].as_str().unwrap()).collect();
    assert_eq!(refs, demo.channel_refs());
    let numbers: Vec<u64> = channels.iter().map(|c| c["number"].as_u64().unwrap()).collect();
    assert_eq!(numbers, [1, 2, 3, 4, 5]);
    for channel in channels {
        let slot = |key: &str| (channel[key]["start"].as_i64(), channel[key]["stop"].as_i64());
        if let (Some(start), Some(stop)) = slot("now") {
            assert!(start <= time && time < stop, "{channel}");
        }
        if channel["ref"] == RADIO {
            assert_eq!(channel["radio"], true);
            assert!(
                channel["now"].is_null() && channel["next"].is_null(),
                "no guide: {channel}"
            );
        } else {
            // The demo's guide has holes of half an hour, never two in a row.
            let (start, _) = slot("next");
            assert!(start.is_some_and(|s| s >= time), "{channel}");
            assert!(
                channel["now"].is_object() || start.unwrap() - time <= 1_800,
                "{channel}"
            );
        }
    }

    let page = http.get(format!("{base}/")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("data-guide=\"api/v1/guide/now\""));
    assert_eq!(page.matches("<div class=\"epg\">").count(), 5);
    assert!(page.contains(&format!("data-ref=\"{RADIO}\"><span class=\"thumb radio\"")));
    assert!(page.contains("<span class=\"title none\">No guide</span>"));
    let script = page.split("<script src=\"").nth(1).unwrap().split('"').next().unwrap();
    assert!(script.starts_with("assets/guide.js?v="), "{script}");
    let asset = http.get(format!("{base}/{script}")).send().await.unwrap();
    assert_eq!(asset.headers()["content-type"], "application/javascript");
    let source = asset.text().await.unwrap();
    assert_eq!(source, std::fs::read_to_string("web/guide.js").unwrap());
    assert!(source.contains("api/v1/guide/now") || source.contains("dataset.guide"));
    running.stop().await;
}

/// The page as headless Chromium leaves it once its script has run: the server's UTC times are
/// replaced by local ones and the progress bars are labelled, which only the script does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_script_fills_in_the_guide_in_a_browser() {
    let Some(browser) = crate::browser::chromium() else {
        eprintln!("skipped: chromium is not installed (apt-get install chromium)");
        return;
    };
    let demo = demo().await;
    let (running, base) = start_app(&config_for(&demo, &[])).await;
    guide_loaded(&running).await;
    let server_page = client()
        .get(format!("{base}/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let bars = server_page.matches("<progress max=").count() - server_page.matches(" hidden></progress>").count();
    assert!(bars >= 3, "{bars} programmes running: {server_page}");
    assert!(server_page.contains("<span class=\"tz\"> UTC</span>"));

    let profile = tempfile::tempdir().unwrap();
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        crate::browser::command(&browser, profile.path())
            .args(["--virtual-time-budget=5000", "--dump-dom"])
            .arg(format!("{base}/"))
            .output(),
    )
    .await
    .expect("chromium ends within 60 s")
    .expect("chromium runs");
    let dom = String::from_utf8_lossy(&output.stdout);
    assert!(dom.contains("data-guide=\"api/v1/guide/now\""), "{dom}");
    assert!(!dom.contains("class=\"tz\""), "the script rewrote the times: {dom}");
    let progress: Vec<&str> = dom
        .split("<progress ")
        .skip(1)
        .map(|rest| &rest[..rest.find('>').unwrap()])
        .collect();
    assert_eq!(progress.len(), 5, "one bar per row: {dom}");
    let labelled = progress
        .iter()
        .filter(|attributes| attributes.contains("aria-label="))
        .count();
    assert!(
        labelled >= bars,
        "{labelled} bars labelled by the script, {bars} running: {dom}"
    );
    assert!(dom.contains("No guide"));
    running.stop().await;
}
