//! The `oauth2` connector's keys (read with the kit's `parse_options`, so every
//! mistake names its key) and the checks after parsing. The client keys are
//! shared with presets: [`ClientKeys`] is flattened into theirs.

use crate::client::{ClientAuth, ClientConfig};
use idbridge_connector_kit::claims::ClaimPath;
use idbridge_connector_kit::options::{parse_options, BaseUrl, Keys, Seconds, Secret, Timeouts};
use idbridge_core::{ConfigError, ConnectorSettings};
use serde::Deserialize;

/// Which member of the userinfo answer holds each profile field
/// (`[connectors.claims]`; paths as `idbridge_connector_kit::claims` reads them).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimMapping {
    /// The person's stable id at the provider (required; a number becomes its
    /// decimal string).
    pub subject: ClaimPath,
    #[serde(default)]
    pub name: Option<ClaimPath>,
    #[serde(default)]
    pub preferred_username: Option<ClaimPath>,
    #[serde(default)]
    pub picture: Option<ClaimPath>,
    #[serde(default)]
    pub email: Option<ClaimPath>,
    /// Unset: the email is not known to be verified (`email_verified` absent).
    #[serde(default)]
    pub email_verified: Option<ClaimPath>,
}

/// The `oauth2` connector's keys, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSettings {
    pub authorization_url: String,
    pub token_url: String,
    pub userinfo_url: String,
    pub client_id: String,
    pub client_secret: Option<Secret>,
    #[serde(default = "default_client_auth")]
    pub client_auth: String,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default = "default_true")]
    pub pkce: bool,
    pub claims: ClaimMapping,
    #[serde(default = "Seconds::default_connect")]
    pub connect_timeout_secs: Seconds,
    #[serde(default = "Seconds::default_total")]
    pub timeout_secs: Seconds,
}

pub fn default_client_auth() -> String {
    ClientAuth::SecretBasic.as_str().to_owned()
}

pub fn default_true() -> bool {
    true
}

/// The checked settings of an `oauth2` connector.
#[derive(Debug, Clone)]
pub struct OAuth2Settings {
    pub client: ClientConfig,
    pub userinfo_url: String,
    pub claims: ClaimMapping,
}

/// The client keys every connector on this crate has, checked into `keys`.
pub struct ClientKeys<'a> {
    pub client_id: &'a str,
    pub client_secret: Option<&'a Secret>,
    pub client_auth: &'a str,
    pub scopes: &'a [String],
    pub connect_timeout_secs: Seconds,
    pub timeout_secs: Seconds,
}

impl ClientKeys<'_> {
    /// Check the keys; the `ClientConfig` (to complete with the URLs) when
    /// every one is right.
    pub fn check(
        &self,
        keys: &mut Keys<'_>,
        authorization_url: String,
        token_url: String,
    ) -> Option<ClientConfig> {
        keys.check(
            "client_id",
            !self.client_id.trim().is_empty(),
            "must not be empty: the client id the provider gave this broker",
        );
        keys.one_of("client_auth", self.client_auth, &ClientAuth::NAMES);
        let secret = self.client_secret.filter(|s| !s.is_empty()).cloned();
        if secret.is_none() {
            keys.error(
                "client_secret",
                "required: the client secret the provider gave this broker (or client_secret_file = \"/path\")",
            );
        }
        keys.check(
            "scopes",
            self.scopes.iter().all(|s| {
                !s.is_empty()
                    && s.bytes()
                        .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
            }),
            "a scope is a non-empty word of printable ASCII without spaces, quotes or backslashes",
        );
        let timeouts = Timeouts::check(keys, self.connect_timeout_secs, self.timeout_secs);
        let mut config = ClientConfig::new(
            authorization_url,
            token_url,
            self.client_id.to_owned(),
            secret?,
        );
        config.client_auth = ClientAuth::parse(self.client_auth)?;
        config.scopes = self.scopes.to_vec();
        config.timeouts = timeouts;
        Some(config)
    }
}

/// Report `key` unless `url` is an absolute http(s) URL without a fragment.
pub fn endpoint_url(keys: &mut Keys<'_>, key: &str, url: &str) {
    keys.base_url(key, &BaseUrl::new(url));
    if let Ok(u) = url::Url::parse(url) {
        keys.check(
            key,
            u.fragment().is_none(),
            "an endpoint URL has no #fragment",
        );
    }
}

impl OAuth2Settings {
    pub fn parse(settings: &ConnectorSettings) -> Result<Self, Vec<ConfigError>> {
        let raw: RawSettings = parse_options(settings)?;
        let mut keys = Keys::new(settings);
        endpoint_url(&mut keys, "authorization_url", &raw.authorization_url);
        endpoint_url(&mut keys, "token_url", &raw.token_url);
        endpoint_url(&mut keys, "userinfo_url", &raw.userinfo_url);
        let client = ClientKeys {
            client_id: &raw.client_id,
            client_secret: raw.client_secret.as_ref(),
            client_auth: &raw.client_auth,
            scopes: &raw.scopes,
            connect_timeout_secs: raw.connect_timeout_secs,
            timeout_secs: raw.timeout_secs,
        }
        .check(
            &mut keys,
            raw.authorization_url.clone(),
            raw.token_url.clone(),
        );
        let (Some(mut client), true) = (client, keys.is_empty()) else {
            return Err(keys.finish(()).err().unwrap_or_default());
        };
        client.pkce = raw.pkce;
        keys.finish(OAuth2Settings {
            client,
            userinfo_url: raw.userinfo_url,
            claims: raw.claims,
        })
    }
}
