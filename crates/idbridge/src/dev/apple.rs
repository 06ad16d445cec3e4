//! The Sign in with Apple fake (provider-sim) and the `apple` connector on it.
//! The fake is reached as `http://localhost:PORT` while the broker is
//! `http://127.0.0.1:PORT`: another site for the browser, so Apple's form_post
//! callback arrives as the cross-site POST it is with the real Apple (no
//! SameSite=Lax cookie), and the broker's re-post from its own origin is what
//! a person clicks through. A new `.p8` key is made at every start, and the
//! fake keeps the broker's time (dev mode's clock can be moved).

use super::{Ports, Running};
use idbridge_server::Clock;
use provider_sim::apple::{self, AppleKey};
use std::sync::Arc;

/// The connector's id (its callback is `{issuer}/callback/apple`).
pub const CONNECTOR_ID: &str = "apple";
const SERVICES_ID: &str = "dev.idbridge.web";
const TEAM_ID: &str = "DEVTEAM001";
const KEY_ID: &str = "DEVKEY0001";
/// The host the browser reaches the fake under (another site than 127.0.0.1).
const HOST: &str = "localhost";

/// The people to pick on the fake's page: one with a private-relay address.
fn people() -> Vec<provider_sim::oidc::SimUser> {
    vec![
        apple::user(
            "000101.9c3e2a1b4d5f60718293a4b5c6d7e8f9.0101",
            "q7x2m4k9p1@privaterelay.appleid.com",
            true,
            "Grace",
            "Hopper",
        ),
        apple::user(
            "000102.1a2b3c4d5e6f708192a3b4c5d6e7f809.0102",
            "alan@dev.example",
            false,
            "Alan",
            "Turing",
        ),
    ]
}

fn connector(issuer: &str, key: &AppleKey) -> serde_json::Value {
    serde_json::json!({
        "id": CONNECTOR_ID,
        "type": "apple",
        "name": "Sign in with Apple (simulator)",
        "client_id": SERVICES_ID,
        "team_id": key.team_id,
        "key_id": key.key_id,
        "private_key": key.pem,
        "issuer": issuer,
    })
}

/// Start the fake for the broker at `broker`, on the broker's `clock`: the
/// client secrets the broker signs carry its time, which `/dev/clock` moves.
pub async fn start(ports: &mut Ports, broker: &str, clock: &Arc<Clock>) -> Result<Running, String> {
    let failed = |e: String| {
        format!("no Sign in with Apple in dev mode: cannot start the Apple simulator: {e}")
    };
    let key = AppleKey::generate(TEAM_ID, KEY_ID).map_err(failed)?;
    let callback = format!("{}/callback/{CONNECTOR_ID}", broker.trim_end_matches('/'));
    let config = apple::config(vec![apple::client(SERVICES_ID, &key, &callback)], people());
    let listener = ports
        .listen("Apple simulator")
        .map_err(|e| failed(e.to_string()))?;
    let sim = provider_sim::oidc::Sim::start_on_host(config, listener, HOST)
        .await
        .map_err(failed)?;
    let clock = Arc::clone(clock);
    sim.follow_clock(move || clock.now());
    let issuer = sim.issuer();
    let banner = vec![format!(
        "  Apple simulator:     {issuer}/auth/authorize  (\"Sign in with Apple\"; another site than the broker: its form_post callback is cross-site)"
    )];
    Ok(Running::new(sim, vec![connector(&issuer, &key)], banner))
}
