//! Runs only the embedded demo receiver on fixed loopback ports (API 8090, stream 8001, relay 17999;
//! `DEMO_*_PORT` to change them), at `DEMO_BITRATE=light` (the default) or `broadcast`.
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let port = |name: &str, default: u16| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let demo = xg2g::demo::DemoReceiver::start(xg2g::demo::DemoOptions {
        api_port: port("DEMO_API_PORT", 8090),
        stream_port: port("DEMO_STREAM_PORT", 8001),
        relay_port: port("DEMO_RELAY_PORT", 17999),
        bitrate: match std::env::var("DEMO_BITRATE").as_deref() {
            Ok("broadcast") => xg2g::demo::DemoBitrate::Broadcast,
            Ok("light") | Err(_) => xg2g::demo::DemoBitrate::Light,
            Ok(other) => anyhow::bail!("DEMO_BITRATE={other}: expected light or broadcast"),
        },
        ..Default::default()
    })
    .await?;
    println!(
        "api={} stream={} relay={}",
        demo.api_url(),
        demo.stream_addr(),
        demo.relay_addr()
    );
    tokio::signal::ctrl_c().await?;
    demo.stop().await;
    Ok(())
}
