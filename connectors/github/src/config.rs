//! The `github` connector's keys and the checks after parsing.

use idbridge_connector_kit::options::{parse_options, Keys, Seconds, Secret};
use idbridge_connector_oauth2::config::{default_true, endpoint_url, ClientKeys};
use idbridge_connector_oauth2::{ClientAuth, ClientConfig};
use idbridge_core::{ConfigError, ConnectorSettings, ErrorKind};
use serde::Deserialize;

pub const GITHUB_WEB: &str = "https://github.com";
pub const GITHUB_API: &str = "https://api.github.com";
/// The REST API version asked for (`X-GitHub-Api-Version`).
pub const API_VERSION: &str = "2022-11-28";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSettings {
    pub client_id: String,
    pub client_secret: Option<Secret>,
    /// Default `["read:user", "user:email"]`; `read:org` is added when
    /// `allowed_orgs` is set.
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// Organisation logins; empty: every GitHub account may sign in.
    #[serde(default)]
    pub allowed_orgs: Vec<String>,
    /// The web host (`https://github.com`, or a GitHub Enterprise Server's).
    #[serde(default)]
    pub base_url: Option<String>,
    /// The REST API root (`https://api.github.com`; for `base_url` of a GitHub
    /// Enterprise Server, `{base_url}/api/v3` unless set).
    #[serde(default)]
    pub api_url: Option<String>,
    #[serde(default = "default_true")]
    pub pkce: bool,
    #[serde(default = "Seconds::default_connect")]
    pub connect_timeout_secs: Seconds,
    #[serde(default = "Seconds::default_total")]
    pub timeout_secs: Seconds,
}

#[derive(Debug, Clone)]
pub struct GithubSettings {
    pub client: ClientConfig,
    pub base_url: String,
    pub api_url: String,
    /// Lower-cased.
    pub allowed_orgs: Vec<String>,
}

/// GitHub's own token endpoint and callback codes, mapped before the RFC ones
/// (GitHub answers token errors with HTTP 200 and these in `error`).
pub fn github_codes(code: &str) -> Option<(ErrorKind, &'static str)> {
    Some(match code {
        "bad_verification_code" => (
            ErrorKind::InvalidCode,
            "GitHub refused the code: wrong, already used or older than 10 minutes (a replayed or doubled callback, or a slow sign-in); start the sign-in again",
        ),
        "incorrect_client_credentials" => (
            ErrorKind::BadCredentials,
            "GitHub refused client_id with its client_secret: copy the Client ID of the OAuth app (GitHub → Settings → Developer settings → OAuth Apps), generate a new client secret there and set client_secret (or client_secret_file)",
        ),
        "redirect_uri_mismatch" => (
            ErrorKind::Misconfigured,
            "the broker's callback is not the OAuth app's Authorization callback URL: set it to the broker's callback URL, ISSUER/callback/CONNECTOR_ID, in the OAuth app's settings at GitHub",
        ),
        "unverified_user_email" => (
            ErrorKind::NotAllowed,
            "the person's primary email at GitHub is unverified and GitHub refuses the sign-in until they verify it (GitHub → Settings → Emails)",
        ),
        "application_suspended" => (
            ErrorKind::Misconfigured,
            "GitHub says the OAuth app is suspended: see the app's page at GitHub or GitHub support",
        ),
        "bad_refresh_token" => (
            ErrorKind::InvalidCode,
            "GitHub no longer accepts the refresh token (expired, already used, or the person revoked the app); they sign in again",
        ),
        _ => return None,
    })
}

fn default_scopes() -> Vec<String> {
    vec!["read:user".into(), "user:email".into()]
}

impl GithubSettings {
    pub fn parse(settings: &ConnectorSettings) -> Result<Self, Vec<ConfigError>> {
        let raw: RawSettings = parse_options(settings)?;
        let mut keys = Keys::new(settings);
        let base_url = raw
            .base_url
            .clone()
            .unwrap_or_else(|| GITHUB_WEB.to_owned())
            .trim_end_matches('/')
            .to_owned();
        let api_url = match &raw.api_url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None if base_url == GITHUB_WEB => GITHUB_API.to_owned(),
            None => format!("{base_url}/api/v3"),
        };
        endpoint_url(&mut keys, "base_url", &base_url);
        endpoint_url(&mut keys, "api_url", &api_url);
        let mut scopes = raw.scopes.clone().unwrap_or_else(default_scopes);
        for org in &raw.allowed_orgs {
            keys.check(
                "allowed_orgs",
                !org.is_empty() && org.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
                format!("{org:?} is not an organisation login (letters, digits and -)"),
            );
        }
        if !raw.allowed_orgs.is_empty() && !scopes.iter().any(|s| s == "read:org" || s == "user") {
            scopes.push("read:org".into());
        }
        let client = ClientKeys {
            client_id: &raw.client_id,
            client_secret: raw.client_secret.as_ref(),
            client_auth: ClientAuth::SecretPost.as_str(),
            scopes: &scopes,
            connect_timeout_secs: raw.connect_timeout_secs,
            timeout_secs: raw.timeout_secs,
        }
        .check(
            &mut keys,
            format!("{base_url}/login/oauth/authorize"),
            format!("{base_url}/login/oauth/access_token"),
        );
        let (Some(mut client), true) = (client, keys.is_empty()) else {
            return Err(keys.finish(()).err().unwrap_or_default());
        };
        client.pkce = raw.pkce;
        client.provider_codes = github_codes;
        client.user_agent = concat!("idbridge-github/", env!("CARGO_PKG_VERSION")).to_owned();
        keys.finish(GithubSettings {
            client,
            base_url,
            api_url,
            allowed_orgs: raw
                .allowed_orgs
                .iter()
                .map(|o| o.to_ascii_lowercase())
                .collect(),
        })
    }
}
