//! `idbridge doctor` for an `oidc` connector or a preset built on it: the
//! discovery document, the keys, and whether the provider refuses our callback.

use crate::discovery;
use crate::OidcConnector;
use idbridge_connector_kit::call::endpoint;
use idbridge_connector_kit::flow::FlowSecrets;
use idbridge_core::{BeginRequest, BuildContext, Problem, Stage};

/// `idbridge doctor` for an `oidc` connector or a preset built on it (see
/// [`OidcFactory::doctor`]).
pub fn doctor(connector: OidcConnector, ctx: &BuildContext) -> Vec<Problem> {
    let callback = ctx.callback_url.clone();
    let run = move || -> Vec<Problem> {
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(connector.doctor_checks(&callback)),
            Err(e) => vec![Problem {
                key: format!("connectors[{}]", connector.id),
                message: format!("cannot run the discovery check: {e}"),
                fatal: false,
            }],
        }
    };
    std::thread::scope(|s| s.spawn(run).join().unwrap_or_default())
}

impl OidcConnector {
    /// What `idbridge doctor` reports.
    async fn doctor_checks(&self, callback_url: &str) -> Vec<Problem> {
        let key = |k: &str| format!("connectors[{}].{k}", self.id);
        let problem = |k: &str, message: String, fatal: bool| Problem {
            key: key(k),
            message,
            fatal,
        };
        let doc = match discovery::fetch(&self.http, &self.settings.issuer).await {
            Ok(doc) => doc,
            Err(e) => {
                return vec![problem(
                    "issuer",
                    format!(
                        "cannot load the discovery document {}: {}",
                        discovery::discovery_url(&self.settings.issuer),
                        e.fix.clone().unwrap_or_else(|| e.to_string())
                    ),
                    true,
                )]
            }
        };
        let (discovery, findings) = discovery::check(&doc, &self.settings);
        let mut problems: Vec<Problem> = findings
            .into_iter()
            .map(|f| problem("issuer", f.message, f.fatal))
            .collect();
        let Some(discovery) = discovery else {
            return problems;
        };
        if let Err(e) = self.fetch_keys(Stage::Setup, &discovery.jwks_uri).await {
            problems.push(problem(
                "issuer",
                e.fix.clone().unwrap_or_else(|| e.to_string()),
                true,
            ));
        }
        // Ask the authorization endpoint about our callback, without following it.
        let secrets = FlowSecrets::generate();
        let request = BeginRequest::new("idbridgeDoctorCheck", callback_url);
        let Ok(url) = self.authorization_url(&discovery, &request, &secrets) else {
            return problems;
        };
        let sent = self
            .http
            .send(
                Stage::Setup,
                ("the authorization request", endpoint::CHECK),
                &url,
                self.http.get(&url),
            )
            .await;
        match sent {
            Ok(answer) if answer.status >= 400 => {
                let body = String::from_utf8_lossy(&answer.body).to_lowercase();
                if body.contains("redirect_uri") || body.contains("redirect uri") {
                    problems.push(problem(
                        "client_id",
                        format!("the provider refuses our callback {callback_url} for client_id {:?}: register it as a redirect URI of the client at the provider", self.settings.client_id),
                        true,
                    ));
                } else if body.contains("client") {
                    problems.push(problem(
                        "client_id",
                        format!("the provider refuses the authorization request for client_id {:?} (HTTP {}): check the client exists and may use the code flow", self.settings.client_id, answer.status),
                        true,
                    ));
                }
            }
            // A redirect (to a login page, or back to us) or no answer: nothing to say.
            _ => {}
        }
        problems
    }
}
