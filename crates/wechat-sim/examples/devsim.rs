//! Runs the simulator with the dev defaults until Ctrl-C, for clicking through
//! by hand: `cargo run -p wechat-sim --example devsim -- [ADDR] [CALLBACK_DOMAIN]`
//! (defaults `127.0.0.1:8707` and `127.0.0.1`).

use wechat_sim::{dev, SimConfig, Simulator};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8707".to_owned());
    let domain = args.next().unwrap_or_else(|| "127.0.0.1".to_owned());
    let listener = std::net::TcpListener::bind(&addr)?;
    let sim = Simulator::start_on(SimConfig::dev_default(&domain), listener).await?;
    let base = sim.base_url();
    println!("WeChat simulator on {base} (callback domain {domain})");
    println!("  admin page:        {base}/__sim/");
    println!(
        "  website login:     {base}/connect/qrconnect?appid={}&redirect_uri=http%3A%2F%2F{domain}%2Fcallback&response_type=code&scope=snsapi_login&state=demo",
        dev::WEB_APPID
    );
    println!(
        "  official account:  {base}/connect/oauth2/authorize?appid={}&redirect_uri=http%3A%2F%2F{domain}%2Fcallback&response_type=code&scope=snsapi_userinfo&state=demo (needs a MicroMessenger/ User-Agent)",
        dev::MP_APPID
    );
    tokio::signal::ctrl_c().await?;
    sim.stop().await;
    Ok(())
}
