//! An Entra ID fake (provider-sim's `microsoft` shape: the `{tenantid}` issuer
//! of multi-tenant authorities, `tid`/`oid`) and the `microsoft` preset on it,
//! for the `organizations` authority limited to one tenant.

use super::{Ports, Running};
use provider_sim::microsoft;
use provider_sim::oidc::Sim;

const CLIENT_ID: &str = "5b0e9a52-1d3c-4f6e-8a7b-0c9d8e7f6a5b";
const CLIENT_SECRET: &str = "idbridge-dev-entra-client-secret";
/// The one tenant dev mode admits.
const TENANT: &str = "d0d0d0d0-de70-4000-8000-00000000000d";
/// Another organisation's tenant, refused.
const OTHER_TENANT: &str = "e0e0e0e0-0e70-4000-8000-00000000000e";

pub async fn start(ports: &mut Ports) -> Result<Running, String> {
    let failed = |e: String| {
        format!("no Microsoft sign-in in dev mode: cannot start the Entra ID simulator: {e}")
    };
    let mut app = microsoft::client(CLIENT_ID, CLIENT_SECRET, "http://127.0.0.1:*");
    app.redirect_uris.push("http://localhost:*".into());
    let config = microsoft::config(
        vec![app],
        vec![
            microsoft::user(
                "mei",
                TENANT,
                "1d1d1d1d-3e10-0000",
                "Mei Wong",
                "mei@dev.example",
            ),
            microsoft::user(
                "olaf",
                OTHER_TENANT,
                "2e2e2e2e-01af-0000",
                "Olaf Berg",
                "olaf@other.example",
            ),
        ],
    );
    let listener = ports
        .listen("Entra ID simulator")
        .map_err(|e| failed(e.to_string()))?;
    let sim = Sim::start_on(config, listener).await.map_err(failed)?;
    let authority = sim.base_url();
    let connector = serde_json::json!({
        "id": "microsoft",
        "type": "microsoft",
        "name": "Microsoft (simulator)",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "tenant": "organizations",
        "allowed_tenants": [TENANT],
        "authority_url": authority,
    });
    let banner = vec![format!(
        "  Entra ID simulator:  {authority}  (\"Microsoft\": mei of the dev tenant; olaf, of another tenant, is refused)"
    )];
    Ok(Running::new(sim, vec![connector], banner))
}
