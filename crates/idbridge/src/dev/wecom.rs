//! The WeCom fake (provider-sim) and the `wecom` connector on it: a member, a
//! non-member or Cancel is picked on the fake's QR page (or, with a WeCom
//! User-Agent, on its in-app authorize page).

use super::{Ports, Running};
use provider_sim::wecom::dev;

/// The connector on the fake at `sim` (it plays all three WeCom hosts).
fn connector(sim: &str) -> serde_json::Value {
    serde_json::json!({
        "id": "wecom",
        "type": "wecom",
        "name": "企业微信 WeCom (simulator)",
        "corp_id": dev::CORP_ID,
        "agent_id": dev::AGENT_ID,
        "corp_secret": dev::SECRET,
        "trusted_domain": "127.0.0.1",
        "login_base_url": sim,
        "open_base_url": sim,
        "api_base_url": sim,
    })
}

pub async fn start(ports: &mut Ports) -> Result<Running, String> {
    let failed = |e: std::io::Error| {
        format!("no WeCom sign-in in dev mode: cannot start the WeCom simulator: {e}")
    };
    let listener = ports.listen("WeCom simulator").map_err(failed)?;
    let sim = dev::start(listener).await.map_err(failed)?;
    let banner = vec![format!(
        "  WeCom simulator:     {}/wwlogin/sso/login  (pick a member, a non-member or Cancel)",
        sim.base_url()
    )];
    let connectors = vec![connector(&sim.base_url())];
    Ok(Running::new(sim, connectors, banner))
}
