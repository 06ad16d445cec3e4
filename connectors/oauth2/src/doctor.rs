//! What `idbridge doctor` says about an OAuth 2.0 connector: every endpoint
//! URL is https (plain http only to a loopback host), and the authorization
//! URL answers, without a redirect being followed (a provider that refuses our
//! callback or client id says so in its answer).

use crate::client::OAuthClient;
use idbridge_connector_kit::http::{check_secure_url, shown};
use idbridge_core::{BeginRequest, Problem};

/// The checks; `urls` are `(key, url)` pairs, the authorization URL first.
pub async fn checks(
    id: &str,
    client: &OAuthClient,
    urls: &[(&str, &str)],
    callback_url: &str,
) -> Vec<Problem> {
    let key = |k: &str| format!("connectors[{id}].{k}");
    let mut problems = Vec::new();
    for (k, url) in urls {
        if let Err(message) = check_secure_url(url) {
            problems.push(Problem {
                key: key(k),
                message,
                fatal: true,
            });
        }
    }
    if check_secure_url(callback_url).is_err() {
        problems.push(Problem {
            key: key("client_id"),
            message: format!("the broker's callback {callback_url} is not https: providers refuse (or should refuse) to send codes there; give the broker an https issuer"),
            fatal: false,
        });
    }
    let request = BeginRequest::new("idbridgeDoctorCheck", callback_url);
    let Ok((url, _)) = client.authorization_url(&request) else {
        return problems;
    };
    let shown_url = shown(&url);
    match client.http().get(&url).send().await {
        Err(e) => problems.push(Problem {
            key: key("authorization_url"),
            message: format!(
                "the authorization URL {shown_url} does not answer: {}",
                idbridge_connector_kit::transport::error_chain(&e.without_url())
            ),
            fatal: true,
        }),
        Ok(r) if r.status().is_server_error() => problems.push(Problem {
            key: key("authorization_url"),
            message: format!(
                "the authorization URL {shown_url} answers HTTP {}",
                r.status().as_u16()
            ),
            fatal: false,
        }),
        Ok(r) if r.status().is_client_error() => {
            let status = r.status().as_u16();
            let body = r.text().await.unwrap_or_default().to_lowercase();
            let message = if body.contains("redirect_uri") || body.contains("redirect uri") {
                format!("the provider refuses our callback {callback_url}: register it as the client's callback (redirect) URL at the provider")
            } else {
                format!("the authorization URL {shown_url} answers HTTP {status}: check authorization_url and that client_id {:?} exists at the provider", client.config().client_id)
            };
            problems.push(Problem {
                key: key("authorization_url"),
                message,
                fatal: status != 404 || body.contains("client"),
            });
        }
        // 200 (a sign-in page) or a redirect (to one): nothing to say.
        Ok(_) => {}
    }
    problems
}
