//! The provider's discovery document (OpenID Connect Discovery 1.0, RFC 8414):
//! fetched by `prepare`, checked against our settings, kept in memory.

use crate::config::{ClaimsSource, OidcSettings};
use crate::http::{json_object, shown, Http};
use idbridge_connector_kit::call::endpoint;
use idbridge_core::{ConnectorError, ErrorKind, Stage};
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

/// `{issuer}/.well-known/openid-configuration` (a trailing `/` of the issuer
/// removed first, as Discovery 4.1 says).
pub fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

/// What the connector uses from the discovery document.
#[derive(Debug, Clone)]
pub struct Discovery {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub userinfo_endpoint: Option<String>,
    pub jwks_uri: String,
    /// RFC 9207: the authorization response carries `iss`, which we then require.
    pub iss_parameter: bool,
    /// The ID token algorithms accepted: the provider's, narrowed by ours.
    pub algorithms: Vec<Algorithm>,
    /// Whether `code_challenge_methods_supported` lists `S256` (PKCE is sent anyway).
    pub pkce_advertised: bool,
}

/// One finding about the document: fatal ones stop `prepare`.
#[derive(Debug, Clone)]
pub struct Finding {
    pub fatal: bool,
    pub message: String,
}

fn string(doc: &Map<String, Value>, key: &str) -> Option<String> {
    doc.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn strings(doc: &Map<String, Value>, key: &str) -> Option<Vec<String>> {
    doc.get(key).and_then(Value::as_array).map(|a| {
        a.iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()
    })
}

fn is_http_url(url: &str) -> bool {
    url::Url::parse(url)
        .is_ok_and(|u| (u.scheme() == "https" || u.scheme() == "http") && u.has_host())
}

/// Check the document against the settings: every finding, and the
/// [`Discovery`] when none is fatal.
pub fn check(
    doc: &Map<String, Value>,
    settings: &OidcSettings,
) -> (Option<Discovery>, Vec<Finding>) {
    let url = discovery_url(&settings.issuer);
    let mut findings = Vec::new();
    let mut fatal_messages: Vec<String> = Vec::new();
    let issuer = string(doc, "issuer");
    let expected = settings.issuer_rule.discovery_issuer();
    match &issuer {
        None => fatal_messages.push(format!("the discovery document at {url} has no issuer")),
        Some(i) if i != expected => fatal_messages.push(format!(
            "issuer mismatch: the discovery document at {url} says issuer {i:?}, the expected issuer is {expected:?}; set issuer = {i:?} exactly (a trailing slash matters), or point it at the right provider"
        )),
        Some(_) => {}
    }
    let endpoint = |key: &str, fatal: &mut Vec<String>| -> Option<String> {
        match string(doc, key) {
            Some(e) if is_http_url(&e) => Some(e),
            Some(e) => {
                fatal.push(format!(
                    "the discovery document's {key} {e:?} is not an http(s) URL"
                ));
                None
            }
            None => {
                fatal.push(format!(
                    "the discovery document at {url} has no {key}: this connector needs it"
                ));
                None
            }
        }
    };
    let authorization_endpoint = endpoint("authorization_endpoint", &mut fatal_messages);
    let token_endpoint = endpoint("token_endpoint", &mut fatal_messages);
    let jwks_uri = endpoint("jwks_uri", &mut fatal_messages);
    let userinfo_endpoint = string(doc, "userinfo_endpoint").filter(|u| is_http_url(u));
    if settings.claims_source == ClaimsSource::Userinfo && userinfo_endpoint.is_none() {
        fatal_messages.push(format!("claims_source = \"userinfo\", but the discovery document at {url} has no userinfo_endpoint: set claims_source = \"id_token\""));
    }
    match strings(doc, "response_types_supported") {
        Some(types) if types.iter().any(|t| t == "code") => {}
        Some(types) => fatal_messages.push(format!(
            "the provider does not offer the authorization code flow: response_types_supported is {types:?}, without \"code\"; enable the code flow for the client at the provider"
        )),
        None => fatal_messages.push(format!(
            "the discovery document at {url} has no response_types_supported"
        )),
    }
    let pkce_advertised = match strings(doc, "code_challenge_methods_supported") {
        Some(methods) if methods.iter().any(|m| m == "S256") => true,
        Some(methods) => {
            fatal_messages.push(format!(
                "the provider does not support PKCE with S256: code_challenge_methods_supported is {methods:?}; enable S256 PKCE at the provider"
            ));
            false
        }
        None => {
            findings.push(Finding {
                fatal: false,
                message: format!("no PKCE advertised: the discovery document at {url} has no code_challenge_methods_supported; the connector sends an S256 challenge anyway (a provider without PKCE ignores it), so a stolen code is protected only by the client secret"),
            });
            false
        }
    };
    let method = settings.credentials.method().as_str();
    // Absent: client_secret_basic (Discovery 3).
    let methods = strings(doc, "token_endpoint_auth_methods_supported")
        .unwrap_or_else(|| vec!["client_secret_basic".to_owned()]);
    if !methods.iter().any(|m| m == method) {
        fatal_messages.push(format!(
            "token_endpoint_auth = {method:?}, but the provider supports {methods:?} (token_endpoint_auth_methods_supported); pick one of those"
        ));
    }
    if settings.form_post {
        if let Some(modes) = strings(doc, "response_modes_supported") {
            if !modes.iter().any(|m| m == "form_post") {
                fatal_messages.push(format!("response_mode = \"form_post\", but the provider's response_modes_supported is {modes:?}; use response_mode = \"query\""));
            }
        }
    }
    let advertised = strings(doc, "id_token_signing_alg_values_supported");
    let algorithms: Vec<Algorithm> = match &advertised {
        Some(list) => settings
            .allowed_algorithms
            .iter()
            .copied()
            .filter(|a| list.iter().any(|l| alg_name(*a) == l))
            .collect(),
        None => Vec::new(),
    };
    if algorithms.is_empty() {
        let allowed: Vec<&str> = settings
            .allowed_algorithms
            .iter()
            .map(|a| alg_name(*a))
            .collect();
        fatal_messages.push(match advertised {
            Some(list) => format!("no usable ID token algorithm: the provider signs ID tokens with {list:?} (id_token_signing_alg_values_supported) and this connector accepts {allowed:?}; have the provider sign with an asymmetric algorithm (RS256 is the common one), never none or HS*"),
            None => format!("the discovery document at {url} has no id_token_signing_alg_values_supported, so the algorithm cannot be pinned"),
        });
    }
    let iss_parameter = doc
        .get("authorization_response_iss_parameter_supported")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let discovery = match (
        issuer,
        authorization_endpoint,
        token_endpoint,
        jwks_uri,
        !fatal_messages.is_empty(),
    ) {
        (
            Some(issuer),
            Some(authorization_endpoint),
            Some(token_endpoint),
            Some(jwks_uri),
            false,
        ) => Some(Discovery {
            issuer,
            authorization_endpoint,
            token_endpoint,
            userinfo_endpoint,
            jwks_uri,
            iss_parameter,
            algorithms,
            pkce_advertised,
        }),
        _ => None,
    };
    let mut all: Vec<Finding> = fatal_messages
        .into_iter()
        .map(|message| Finding {
            fatal: true,
            message,
        })
        .collect();
    all.append(&mut findings);
    (discovery, all)
}

/// The JOSE name.
pub fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::EdDSA => "EdDSA",
    }
}

/// Fetch the discovery document as JSON (a `Setup` error when that fails).
pub async fn fetch(http: &Http, issuer: &str) -> Result<Map<String, Value>, ConnectorError> {
    let url = discovery_url(issuer);
    let what = "the discovery document";
    let answer = http
        .send(
            Stage::Setup,
            (what, endpoint::DISCOVERY),
            &url,
            http.get(&url),
        )
        .await
        .map_err(|e| {
            if e.kind == ErrorKind::UpstreamUnavailable || e.kind == ErrorKind::Timeout {
                let fix = e.fix.clone().unwrap_or_default();
                e.fix(format!("unreachable: {fix}"))
            } else {
                e
            }
        })?;
    if answer.status != 200 {
        let kind = if answer.status >= 500 || answer.status == 429 {
            ErrorKind::UpstreamUnavailable
        } else {
            ErrorKind::Misconfigured
        };
        return Err(ConnectorError::new(Stage::Setup, kind)
            .upstream(format!("HTTP {}", answer.status), "discovery document")
            .fix(format!(
                "{} answered HTTP {} for the discovery document: check the issuer (it must be the provider's issuer identifier; the connector appends /.well-known/openid-configuration)",
                shown(&url),
                answer.status
            )));
    }
    json_object(Stage::Setup, what, &url, &answer)
}

/// The first fatal finding as a `Setup` error.
pub fn first_fatal(findings: &[Finding]) -> ConnectorError {
    let message = findings
        .iter()
        .find(|f| f.fatal)
        .map(|f| f.message.clone())
        .unwrap_or_else(|| "the discovery document is unusable".into());
    ConnectorError::new(Stage::Setup, ErrorKind::Misconfigured).fix(message)
}
