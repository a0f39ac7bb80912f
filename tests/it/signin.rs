//! The web sign-in: a password or the admin token sets an `HttpOnly`, `SameSite=Lax` cookie that
//! opens `/` and the watch pages, which then hand out signed stream and HLS URLs; the cookie
//! itself opens no media; posts from other sites are refused.

use serde_json::Value;

use crate::common::{config_for, demo, ready, start_app};
use crate::signed::{ADMIN, CURRENT, HD, now};

const PASSWORD: &str = "correct horse battery";

/// A client that shows redirects instead of following them.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn login(base: &str, password: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = browser().post(format!("{base}/login")).form(&[("password", password)]);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

async fn code(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, body["error"]["code"].as_str().unwrap_or("").to_owned())
}

async fn get(url: &str, cookie: &str) -> reqwest::Response {
    browser().get(url).header("Cookie", cookie).send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_opens_the_pages_which_hand_out_signed_urls() {
    let demo = demo().await;
    let config = config_for(
        &demo,
        &[
            ("auth.streams", "signed"),
            ("auth.keys", CURRENT),
            ("public_url", "https://tv.test:8443"),
            ("api_token", ADMIN),
            ("auth.password", PASSWORD),
        ],
    );
    let (running, base) = start_app(&config).await;
    ready(&running).await;

    // Not signed in: `/` is the sign-in form and nothing else.
    let page = browser().get(format!("{base}/")).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let page = page.text().await.unwrap();
    assert!(
        page.contains("<form class=\"sign-in\" method=\"post\" action=\"login\">"),
        "{page}"
    );
    assert!(!page.contains("watch/"), "{page}");

    assert_eq!(
        code(login(&base, "wrong password", &[]).await).await,
        (403, "wrong-password".into())
    );
    // A browser posting from another site is refused, the right password too.
    for headers in [
        [("Sec-Fetch-Site", "cross-site"), ("Origin", "https://tv.test:8443")],
        [("Origin", "https://evil.example"), ("X-Unused", "")],
        [("Origin", "null"), ("X-Unused", "")],
    ] {
        let refused = login(&base, PASSWORD, &headers).await;
        assert_eq!(code(refused).await, (403, "cross-site-request".into()), "{headers:?}");
    }

    // Signed in from its own page (the admin token signs in too).
    let own = [("Sec-Fetch-Site", "same-origin"), ("Origin", "https://tv.test:8443")];
    assert_eq!(login(&base, ADMIN, &own).await.status().as_u16(), 303);
    let signed_in = login(&base, PASSWORD, &own).await;
    assert_eq!(signed_in.status().as_u16(), 303);
    assert_eq!(signed_in.headers()["location"], "./");
    let set_cookie = signed_in.headers()["set-cookie"].to_str().unwrap().to_owned();
    let attributes: Vec<&str> = set_cookie.split("; ").collect();
    assert!(attributes[0].starts_with("xg2g_session=v1."), "{set_cookie}");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=604800", "Secure"] {
        assert!(attributes.contains(&attribute), "{attribute} in {set_cookie}");
    }
    let cookie = attributes[0].to_owned();

    // The channel list: watch pages and thumbnails plain (the cookie opens them), streams signed.
    let index = get(&format!("{base}/"), &cookie).await;
    assert_eq!(index.headers()["cache-control"], "private, no-store");
    let index = index.text().await.unwrap();
    assert!(index.contains(&format!("<a href=\"watch/{HD}\">")), "{index}");
    assert!(index.contains(&format!("href=\"stream/{HD}?exp=")), "{index}");
    assert!(index.contains("action=\"logout\""), "{index}");
    let preview = get(&format!("{base}/api/v1/channels/{HD}/preview.jpg"), &cookie).await;
    assert_ne!(preview.status().as_u16(), 401, "the cookie opens thumbnails");

    // The watch page hands out an HLS URL signed for six hours, which plays without the cookie.
    let watch = get(&format!("{base}/watch/{HD}"), &cookie).await;
    assert_eq!(watch.status().as_u16(), 200);
    let watch = watch.text().await.unwrap();
    let hls = watch
        .split("data-hls=\"../")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .replace("&amp;", "&");
    let expires: u64 = hls
        .split("exp=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((now() + 6 * 3600 - 5..=now() + 6 * 3600).contains(&expires), "{hls}");
    let master = browser().get(format!("{base}/{hls}")).send().await.unwrap();
    assert_eq!(master.status().as_u16(), 200, "{hls}");

    // The cookie alone opens no media: a page elsewhere cannot make a browser fetch it.
    for path in [
        format!("/stream/{HD}"),
        format!("/hls/{HD}/aac/index.m3u8"),
        "/playlist.m3u".into(),
    ] {
        let refused = get(&format!("{base}{path}"), &cookie).await;
        assert_eq!(code(refused).await, (401, "signature-required".into()), "{path}");
    }
    // An altered cookie is no sign-in.
    let altered = cookie.replace("xg2g_session=v1.", "xg2g_session=v1.9");
    assert!(
        get(&format!("{base}/"), &altered)
            .await
            .text()
            .await
            .unwrap()
            .contains("action=\"login\"")
    );
    assert_eq!(
        get(&format!("{base}/watch/{HD}"), &altered).await.status().as_u16(),
        401
    );

    // Signing out clears the cookie.
    let out = browser()
        .post(format!("{base}/logout"))
        .header("Cookie", &cookie)
        .header("Sec-Fetch-Site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(out.status().as_u16(), 303);
    let cleared = out.headers()["set-cookie"].to_str().unwrap();
    assert!(
        cleared.starts_with("xg2g_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_are_throttled_and_open_streams_have_no_sign_in() {
    let demo = demo().await;
    let config = config_for(
        &demo,
        &[
            ("auth.streams", "signed"),
            ("auth.keys", CURRENT),
            ("auth.allowed_hosts", "tv.test"),
            ("auth.password", PASSWORD),
        ],
    );
    let (running, base) = start_app(&config).await;
    for attempt in 0..10 {
        assert_eq!(
            login(&base, "guess", &[]).await.status().as_u16(),
            403,
            "attempt {attempt}"
        );
    }
    let throttled = login(&base, PASSWORD, &[]).await;
    assert!(throttled.headers().contains_key("retry-after"));
    assert_eq!(code(throttled).await, (429, "sign-in-throttled".into()));
    running.stop().await;

    let (running, base) = start_app(&config_for(&demo, &[("auth.password", PASSWORD)])).await;
    assert_eq!(
        code(login(&base, PASSWORD, &[]).await).await,
        (409, "signing-off".into())
    );
    running.stop().await;
}
