//! The GitHub fake (provider-sim) and the `github` connector on it: a person is
//! picked on the fake's authorize page.

use super::{Ports, Running};

/// The connector on the fake at `web` (its pages) and `api` (its REST API).
fn connector(web: &str, api: &str) -> serde_json::Value {
    serde_json::json!({
        "id": "github",
        "type": "github",
        "name": "GitHub (simulator)",
        "client_id": provider_sim::github::dev::CLIENT_ID,
        "client_secret": provider_sim::github::dev::CLIENT_SECRET,
        "base_url": web,
        "api_url": api,
    })
}

pub async fn start(ports: &mut Ports, issuer: &str) -> Result<Running, String> {
    let failed = |e: std::io::Error| {
        format!("no GitHub sign-in in dev mode: cannot start the GitHub simulator: {e}")
    };
    let listener = ports.listen("GitHub simulator").map_err(failed)?;
    let gh = provider_sim::github::dev::start(issuer, listener)
        .await
        .map_err(failed)?;
    let banner = vec![format!(
        "  GitHub simulator:    {}/login/oauth/authorize  (pick who signs in; API at {})",
        gh.base_url(),
        gh.api_url()
    )];
    let connectors = vec![connector(&gh.base_url(), &gh.api_url())];
    Ok(Running::new(gh, connectors, banner))
}
