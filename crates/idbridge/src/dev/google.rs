//! A Google-shaped OpenID provider (provider-sim's generic fake with Google's
//! claims: `hd`, verified addresses) and the `google` preset on it, restricted
//! to the hosted domain `dev.example`: a person of another domain is refused
//! on the signed `hd` claim.

use super::{Ports, Running};
use provider_sim::oidc::{ClientSecret, Sim, SimClient, SimConfig, SimUser};

const CLIENT_ID: &str = "1234567890-idbridge-dev.apps.googleusercontent.com";
const CLIENT_SECRET: &str = "GOCSPX-idbridge-dev-google-secret";
/// The Workspace domain dev mode admits.
const HOSTED_DOMAIN: &str = "dev.example";

fn config() -> SimConfig {
    SimConfig::generic(
        vec![SimClient {
            id: CLIENT_ID.into(),
            secret: ClientSecret::Plain(CLIENT_SECRET.into()),
            redirect_uris: vec!["http://127.0.0.1:*".into(), "http://localhost:*".into()],
        }],
        vec![
            SimUser::new(
                "grace",
                serde_json::json!({"name": "Grace Chen", "email": "grace@dev.example", "email_verified": true, "hd": HOSTED_DOMAIN}),
            ),
            SimUser::new(
                "omar",
                serde_json::json!({"name": "Omar Haddad", "email": "omar@gmail.example", "email_verified": true}),
            ),
        ],
    )
}

pub async fn start(ports: &mut Ports) -> Result<Running, String> {
    let failed = |e: String| {
        format!("no Google sign-in in dev mode: cannot start the Google simulator: {e}")
    };
    let listener = ports
        .listen("Google simulator")
        .map_err(|e| failed(e.to_string()))?;
    let sim = Sim::start_on(config(), listener).await.map_err(failed)?;
    let issuer = sim.issuer();
    let connector = serde_json::json!({
        "id": "google",
        "type": "google",
        "name": "Google (simulator)",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "hosted_domain": HOSTED_DOMAIN,
        "issuer": issuer,
    });
    let banner = vec![format!(
        "  Google simulator:    {issuer}  (\"Google\": grace of {HOSTED_DOMAIN}; omar, of no Workspace domain, is refused)"
    )];
    Ok(Running::new(sim, vec![connector], banner))
}
