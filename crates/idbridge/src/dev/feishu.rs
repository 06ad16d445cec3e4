//! The Feishu fake (provider-sim) and the `feishu` connector on it: a person is
//! picked on the fake's authorization page.

use super::{Ports, Running};
use provider_sim::feishu::dev;

/// The connector on the fake at `base` (both of Feishu's hosts).
fn connector(base: &str) -> serde_json::Value {
    serde_json::json!({
        "id": "feishu",
        "type": "feishu",
        "name": "飞书 Feishu (simulator)",
        "client_id": dev::APP_ID,
        "client_secret": dev::APP_SECRET,
        "developer": dev::DEVELOPER,
        "accounts_url": base,
        "open_url": base,
    })
}

pub async fn start(ports: &mut Ports, issuer: &str) -> Result<Running, String> {
    let failed = |e: std::io::Error| {
        format!("no Feishu sign-in in dev mode: cannot start the Feishu simulator: {e}")
    };
    let listener = ports.listen("Feishu simulator").map_err(failed)?;
    let sim = dev::start(issuer, listener).await.map_err(failed)?;
    let banner = vec![format!(
        "  Feishu simulator:    {}/open-apis/authen/v1/authorize  (pick who signs in; token and user_info on the same host)",
        sim.base_url()
    )];
    let connectors = vec![connector(&sim.base_url())];
    Ok(Running::new(sim, connectors, banner))
}
