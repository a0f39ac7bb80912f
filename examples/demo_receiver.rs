//! Runs only the embedded demo receiver on fixed loopback ports (API 8090, stream 8001, relay 17999).
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let port = |name: &str, default: u16| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let demo = xg2g::demo::DemoReceiver::start(xg2g::demo::DemoOptions {
        api_port: port("DEMO_API_PORT", 8090),
        stream_port: port("DEMO_STREAM_PORT", 8001),
        relay_port: port("DEMO_RELAY_PORT", 17999),
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
