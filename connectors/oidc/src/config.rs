//! The `oidc` connector's config keys (read with the kit's `parse_options`, so
//! every mistake names its key) and the checks after parsing.

use idbridge_connector_kit::options::{parse_options, BaseUrl, Keys, Seconds, Secret, Timeouts};
use idbridge_core::{ConfigError, ConnectorSettings};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde::Deserialize;

use crate::issuer::IssuerRule;

/// The algorithms an ID token may be signed with when `allowed_algorithms` is
/// not set: every asymmetric JWS algorithm this connector verifies. Never
/// `none`, never an HMAC one (`HS*`: the "key" would be the client secret, and
/// a public key must never be usable as one).
pub const DEFAULT_ALGORITHMS: [&str; 9] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// How the connector authenticates itself at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// HTTP Basic with the client id and secret (RFC 6749 2.3.1), the default.
    SecretBasic,
    /// `client_id` and `client_secret` in the form body.
    SecretPost,
    /// A JWT signed with our private key (RFC 7523, OIDC Core 9).
    PrivateKeyJwt,
}

impl ClientAuth {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientAuth::SecretBasic => "client_secret_basic",
            ClientAuth::SecretPost => "client_secret_post",
            ClientAuth::PrivateKeyJwt => "private_key_jwt",
        }
    }
}

/// Where the profile claims come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimsSource {
    /// The verified ID token only (no extra call).
    IdToken,
    /// The ID token, then the userinfo endpoint's answer over it (its `sub`
    /// must be the ID token's).
    Userinfo,
}

/// Which claim holds each profile field (`[connectors.claims]`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ClaimNames {
    /// The person's stable id at the provider (default `sub`). Change it only
    /// for a provider whose `sub` is not stable (e.g. `oid` at Entra ID).
    pub subject: String,
    pub name: String,
    pub given_name: String,
    pub family_name: String,
    pub preferred_username: String,
    pub picture: String,
    pub locale: String,
    pub email: String,
    pub email_verified: String,
    pub phone_number: String,
    pub phone_number_verified: String,
    /// A list of group names (or one string), kept as `groups` in the
    /// identity's raw claims.
    pub groups: String,
}

impl Default for ClaimNames {
    fn default() -> Self {
        Self {
            subject: "sub".into(),
            name: "name".into(),
            given_name: "given_name".into(),
            family_name: "family_name".into(),
            preferred_username: "preferred_username".into(),
            picture: "picture".into(),
            locale: "locale".into(),
            email: "email".into(),
            email_verified: "email_verified".into(),
            phone_number: "phone_number".into(),
            phone_number_verified: "phone_number_verified".into(),
            groups: "groups".into(),
        }
    }
}

/// The keys as written (see `docs/connectors/oidc.md` for each).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSettings {
    /// The provider's issuer identifier, exactly as its discovery document says
    /// it (`https://sso.example.com`, with or without a path; a trailing `/`
    /// matters).
    pub issuer: String,
    pub client_id: String,
    /// For `client_secret_basic` and `client_secret_post` (or
    /// `client_secret_file`, which the broker reads into this key).
    #[serde(default)]
    pub client_secret: Option<Secret>,
    /// `client_secret_basic` (default), `client_secret_post` or `private_key_jwt`.
    #[serde(default = "default_auth")]
    pub token_endpoint_auth: String,
    /// For `private_key_jwt`: a PEM private key (PKCS#8, or PKCS#1 for RSA),
    /// or `private_key_file`.
    #[serde(default)]
    pub private_key: Option<Secret>,
    /// For `private_key_jwt`: `RS256` (default), `PS256` or `ES256`.
    #[serde(default = "default_key_alg")]
    pub private_key_alg: String,
    /// For `private_key_jwt`: the `kid` of our key as registered at the provider.
    #[serde(default)]
    pub private_key_id: Option<String>,
    /// Requested upstream; must hold `openid`.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// `id_token` (default) or `userinfo`.
    #[serde(default = "default_claims_source")]
    pub claims_source: String,
    #[serde(default)]
    pub claims: ClaimNames,
    /// `query` (default) or `form_post`.
    #[serde(default = "default_response_mode")]
    pub response_mode: String,
    /// Narrows the ID token algorithms beyond what the provider advertises.
    #[serde(default)]
    pub allowed_algorithms: Option<Vec<String>>,
    /// When set, the identity's link key is `{scope = link_scope, key = subject}`,
    /// so that connectors with the same `link_scope` (two clients of one
    /// provider) find the same person. Unset: no link key.
    #[serde(default)]
    pub link_scope: Option<String>,
    /// The allowed clock difference with the provider, in seconds (default 60).
    #[serde(default = "default_leeway")]
    pub clock_skew_secs: u64,
    /// A token signed with an unknown `kid` refetches the provider's keys at
    /// most once per this many seconds (default 60).
    #[serde(default = "default_refetch")]
    pub jwks_refetch_min_secs: u64,
    /// How long the discovery document and keys are used before they are
    /// fetched again on the next sign-in (default 86400).
    #[serde(default = "default_discovery_ttl")]
    pub discovery_ttl_secs: u64,
    #[serde(default = "Seconds::default_connect")]
    pub connect_timeout_secs: Seconds,
    #[serde(default = "Seconds::default_total")]
    pub timeout_secs: Seconds,
}

fn default_auth() -> String {
    ClientAuth::SecretBasic.as_str().into()
}
fn default_key_alg() -> String {
    "RS256".into()
}
fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "profile".into(), "email".into()]
}
fn default_claims_source() -> String {
    "id_token".into()
}
fn default_response_mode() -> String {
    "query".into()
}
fn default_leeway() -> u64 {
    60
}
fn default_refetch() -> u64 {
    60
}
fn default_discovery_ttl() -> u64 {
    86_400
}

/// How the connector signs its client assertions (`private_key_jwt`).
#[derive(Clone)]
pub struct AssertionKey {
    pub key: EncodingKey,
    pub alg: Algorithm,
    pub kid: Option<String>,
}

impl std::fmt::Debug for AssertionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssertionKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// The client's credentials for the token endpoint.
#[derive(Debug, Clone)]
pub enum Credentials {
    Secret(ClientAuth, Secret),
    PrivateKey(AssertionKey),
    /// A secret a preset makes at request time (Apple's ES256 JWT), sent with
    /// this method.
    Provided(ClientAuth),
}

impl Credentials {
    pub fn method(&self) -> ClientAuth {
        match self {
            Credentials::Secret(m, _) | Credentials::Provided(m) => *m,
            Credentials::PrivateKey(_) => ClientAuth::PrivateKeyJwt,
        }
    }
}

/// The checked settings the connector runs with.
#[derive(Debug, Clone)]
pub struct OidcSettings {
    /// Where discovery is fetched from (`{issuer}/.well-known/openid-configuration`).
    pub issuer: String,
    /// What the discovery document and the tokens must say as `iss` (for
    /// `type = "oidc"`: `issuer` exactly; a preset may say otherwise).
    pub issuer_rule: IssuerRule,
    pub client_id: String,
    pub credentials: Credentials,
    pub scopes: Vec<String>,
    pub claims_source: ClaimsSource,
    pub claims: ClaimNames,
    pub form_post: bool,
    /// In the configured order.
    pub allowed_algorithms: Vec<Algorithm>,
    pub link_scope: Option<String>,
    pub leeway: i64,
    pub jwks_refetch_min: i64,
    pub discovery_ttl: i64,
    pub timeouts: Timeouts,
}

/// A JWS algorithm name this connector verifies, or `None` (`none`, `HS*`,
/// an unknown name).
pub fn asymmetric_algorithm(name: &str) -> Option<Algorithm> {
    if !DEFAULT_ALGORITHMS.contains(&name) {
        return None;
    }
    name.parse::<Algorithm>().ok()
}

impl OidcSettings {
    pub fn parse(settings: &ConnectorSettings) -> Result<Self, Vec<ConfigError>> {
        Self::parse_with(settings, None)
    }

    /// As [`OidcSettings::parse`]; with `provided = Some(method)` the client
    /// secret comes from a preset's hook (the options must have none).
    pub fn parse_with(
        settings: &ConnectorSettings,
        provided: Option<ClientAuth>,
    ) -> Result<Self, Vec<ConfigError>> {
        let raw: RawSettings = parse_options(settings)?;
        let mut keys = Keys::new(settings);
        let issuer = BaseUrl::new(raw.issuer.clone());
        keys.base_url("issuer", &issuer);
        if let Ok(u) = url::Url::parse(&raw.issuer) {
            keys.check(
                "issuer",
                u.query().is_none() && u.fragment().is_none(),
                "an issuer has no query or fragment (RFC 8414 2)",
            );
        }
        keys.check(
            "client_id",
            !raw.client_id.trim().is_empty(),
            "must not be empty: the client id the provider gave this broker",
        );
        keys.one_of(
            "token_endpoint_auth",
            &raw.token_endpoint_auth,
            &[
                "client_secret_basic",
                "client_secret_post",
                "private_key_jwt",
            ],
        );
        let secret = raw.client_secret.clone().filter(|s| !s.is_empty());
        let credentials = match raw.token_endpoint_auth.as_str() {
            _ if provided.is_some() => {
                if raw.client_secret.is_some() {
                    keys.error(
                        "client_secret",
                        "not used: this connector type makes its client secret itself",
                    );
                }
                provided.map(Credentials::Provided)
            }
            "private_key_jwt" => {
                if raw.client_secret.is_some() {
                    keys.error(
                        "client_secret",
                        "not used with token_endpoint_auth = \"private_key_jwt\"; remove it (or use client_secret_basic)",
                    );
                }
                assertion_key(&mut keys, &raw).map(Credentials::PrivateKey)
            }
            method => {
                let auth = if method == "client_secret_post" {
                    ClientAuth::SecretPost
                } else {
                    ClientAuth::SecretBasic
                };
                if raw.private_key.is_some() {
                    keys.error(
                        "private_key",
                        format!("only used with token_endpoint_auth = \"private_key_jwt\", not {method:?}"),
                    );
                }
                match secret {
                    Some(s) => Some(Credentials::Secret(auth, s)),
                    None => {
                        keys.error(
                            "client_secret",
                            format!("required with token_endpoint_auth = {method:?}: the client secret the provider gave this broker (or client_secret_file = \"/path\")"),
                        );
                        None
                    }
                }
            }
        };
        keys.check(
            "scopes",
            raw.scopes.iter().any(|s| s == "openid"),
            "must hold \"openid\" (without it the provider sends no ID token)",
        );
        keys.check(
            "scopes",
            raw.scopes.iter().all(|s| {
                !s.is_empty()
                    && s.bytes()
                        .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
            }),
            "a scope is a non-empty word of printable ASCII without spaces, quotes or backslashes",
        );
        keys.one_of(
            "claims_source",
            &raw.claims_source,
            &["id_token", "userinfo"],
        );
        keys.one_of("response_mode", &raw.response_mode, &["query", "form_post"]);
        let claim_names = [
            ("claims.subject", &raw.claims.subject),
            ("claims.name", &raw.claims.name),
            ("claims.given_name", &raw.claims.given_name),
            ("claims.family_name", &raw.claims.family_name),
            ("claims.preferred_username", &raw.claims.preferred_username),
            ("claims.picture", &raw.claims.picture),
            ("claims.locale", &raw.claims.locale),
            ("claims.email", &raw.claims.email),
            ("claims.email_verified", &raw.claims.email_verified),
            ("claims.phone_number", &raw.claims.phone_number),
            (
                "claims.phone_number_verified",
                &raw.claims.phone_number_verified,
            ),
            ("claims.groups", &raw.claims.groups),
        ];
        for (key, name) in claim_names {
            keys.check(key, !name.trim().is_empty(), "must name a claim");
        }
        let allowed_algorithms = match &raw.allowed_algorithms {
            None => DEFAULT_ALGORITHMS
                .iter()
                .filter_map(|a| asymmetric_algorithm(a))
                .collect(),
            Some(list) => {
                let mut out = Vec::new();
                for name in list {
                    match asymmetric_algorithm(name) {
                        Some(a) => out.push(a),
                        None => keys.error(
                            "allowed_algorithms",
                            format!(
                                "{name:?} is not allowed: use some of {}",
                                DEFAULT_ALGORITHMS.join(", ")
                            ),
                        ),
                    }
                }
                if list.is_empty() {
                    keys.error(
                        "allowed_algorithms",
                        "must not be empty (leave it out to allow what the provider advertises)",
                    );
                }
                out
            }
        };
        if let Some(scope) = &raw.link_scope {
            keys.check(
                "link_scope",
                !scope.trim().is_empty() && !scope.chars().any(char::is_control),
                "must be a non-empty name without control characters",
            );
        }
        keys.check(
            "clock_skew_secs",
            raw.clock_skew_secs <= 300,
            "at most 300 seconds",
        );
        keys.check(
            "jwks_refetch_min_secs",
            (1..=3600).contains(&raw.jwks_refetch_min_secs),
            "between 1 and 3600 seconds",
        );
        keys.check(
            "discovery_ttl_secs",
            (60..=7 * 86_400).contains(&raw.discovery_ttl_secs),
            "between 60 seconds and 7 days (604800)",
        );
        let timeouts = Timeouts::check(&mut keys, raw.connect_timeout_secs, raw.timeout_secs);
        let (Some(credentials), true) = (credentials, keys.is_empty()) else {
            return Err(keys.finish(()).err().unwrap_or_default());
        };
        keys.finish(OidcSettings {
            issuer_rule: IssuerRule::Exact {
                issuer: raw.issuer.clone(),
                also: Vec::new(),
            },
            issuer: raw.issuer,
            client_id: raw.client_id,
            credentials,
            scopes: raw.scopes,
            claims_source: if raw.claims_source == "userinfo" {
                ClaimsSource::Userinfo
            } else {
                ClaimsSource::IdToken
            },
            claims: raw.claims,
            form_post: raw.response_mode == "form_post",
            allowed_algorithms,
            link_scope: raw.link_scope,
            leeway: i64::try_from(raw.clock_skew_secs).unwrap_or(300),
            jwks_refetch_min: i64::try_from(raw.jwks_refetch_min_secs).unwrap_or(60),
            discovery_ttl: i64::try_from(raw.discovery_ttl_secs).unwrap_or(86_400),
            timeouts,
        })
    }
}

fn assertion_key(keys: &mut Keys<'_>, raw: &RawSettings) -> Option<AssertionKey> {
    let alg = match raw.private_key_alg.as_str() {
        "RS256" => Algorithm::RS256,
        "PS256" => Algorithm::PS256,
        "ES256" => Algorithm::ES256,
        other => {
            keys.error(
                "private_key_alg",
                format!("{other:?}: use \"RS256\", \"PS256\" or \"ES256\""),
            );
            return None;
        }
    };
    if let Some(kid) = &raw.private_key_id {
        keys.check(
            "private_key_id",
            !kid.is_empty() && !kid.chars().any(char::is_control),
            "must be the non-empty kid of the key registered at the provider",
        );
    }
    let Some(pem) = raw.private_key.as_ref().filter(|p| !p.is_empty()) else {
        keys.error(
            "private_key",
            "required with token_endpoint_auth = \"private_key_jwt\": a PEM private key (or private_key_file = \"/path\"), whose public key is registered at the provider",
        );
        return None;
    };
    let parsed = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(pem.expose().as_bytes()),
        _ => EncodingKey::from_rsa_pem(pem.expose().as_bytes()),
    };
    match parsed {
        Ok(key) => Some(AssertionKey {
            key,
            alg,
            kid: raw.private_key_id.clone(),
        }),
        Err(_) => {
            let kind = if alg == Algorithm::ES256 {
                "a P-256 EC key in PEM (-----BEGIN PRIVATE KEY----- or -----BEGIN EC PRIVATE KEY-----)"
            } else {
                "an RSA key in PEM (-----BEGIN PRIVATE KEY----- or -----BEGIN RSA PRIVATE KEY-----)"
            };
            keys.error(
                "private_key",
                format!(
                    "is not {kind} for private_key_alg = {:?}",
                    raw.private_key_alg
                ),
            );
            None
        }
    }
}
