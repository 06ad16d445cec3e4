//! The DingTalk fake (provider-sim) and the `dingtalk` connector on it: a
//! person is picked on the fake's sign-in page; in DingTalk's own browser (its
//! User-Agent) the fake signs its client's person in at once.

use super::{Ports, Running};

/// The connector on the fake at `base` (its page and its API alike).
fn connector(base: &str) -> serde_json::Value {
    serde_json::json!({
        "id": "dingtalk",
        "type": "dingtalk",
        "name": "钉钉 DingTalk (simulator)",
        "client_id": provider_sim::dingtalk::dev::CLIENT_ID,
        "client_secret": provider_sim::dingtalk::dev::CLIENT_SECRET,
        "login_base_url": base,
        "api_base_url": base,
    })
}

pub async fn start(ports: &mut Ports, issuer: &str) -> Result<Running, String> {
    let failed = |e: std::io::Error| {
        format!("no DingTalk sign-in in dev mode: cannot start the DingTalk simulator: {e}")
    };
    let listener = ports.listen("DingTalk simulator").map_err(failed)?;
    let sim = provider_sim::dingtalk::dev::start(issuer, listener)
        .await
        .map_err(failed)?;
    let banner = vec![format!(
        "  DingTalk simulator:  {}/oauth2/auth  (pick who signs in; API at the same address)",
        sim.base_url()
    )];
    let connectors = vec![connector(&sim.base_url())];
    Ok(Running::new(sim, connectors, banner))
}
