//! The OAuth 2.0 client part, shared by the `oauth2` connector and presets
//! built on it (`github`): the authorization request (the broker's state as it
//! is, PKCE S256 kept in flow data), the code and refresh grants on the
//! `oauth2` crate with `client_secret_basic` or `client_secret_post`, and
//! bearer calls to the provider's API, every failure a `ConnectorError` with a
//! stage, the provider's code and a fix.

use crate::transport::{CallError, Transport};
use idbridge_connector_kit::flow::FlowSecrets;
use idbridge_connector_kit::http::{self as kit_http, shown};
use idbridge_connector_kit::oauth_errors::{
    authorization_error, clean_description, token_error, TokenFailure,
};
use idbridge_connector_kit::options::{Secret, Timeouts};
use idbridge_core::{
    Begin, BeginRequest, CallbackRequest, ConnectorError, ErrorKind, Stage, Started, UpstreamTokens,
};
use oauth2::basic::{BasicClient, BasicTokenResponse};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet,
    EndpointSet, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError,
    Scope, TokenResponse, TokenUrl,
};
use serde_json::Value;
use std::borrow::Cow;

/// How the client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// HTTP Basic with the id and secret (RFC 6749 2.3.1).
    SecretBasic,
    /// `client_id` and `client_secret` in the form body.
    SecretPost,
}

impl ClientAuth {
    pub const NAMES: [&'static str; 2] = ["client_secret_basic", "client_secret_post"];

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "client_secret_basic" => Some(ClientAuth::SecretBasic),
            "client_secret_post" => Some(ClientAuth::SecretPost),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ClientAuth::SecretBasic => "client_secret_basic",
            ClientAuth::SecretPost => "client_secret_post",
        }
    }
}

/// A provider's own code at the token endpoint or on the callback, mapped
/// before the RFC 6749 table (`None`: not one of the provider's own).
pub type ProviderCodes = fn(&str) -> Option<(ErrorKind, &'static str)>;

fn no_provider_codes(_: &str) -> Option<(ErrorKind, &'static str)> {
    None
}

/// Everything the client needs, checked by the connector's config parsing.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub authorization_url: String,
    pub token_url: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub client_auth: ClientAuth,
    pub scopes: Vec<String>,
    pub pkce: bool,
    pub timeouts: Timeouts,
    /// Sent on every call (GitHub's API refuses calls without one).
    pub user_agent: String,
    /// The provider's own error codes, tried before the RFC ones.
    pub provider_codes: ProviderCodes,
}

impl ClientConfig {
    /// A config without provider-specific codes.
    pub fn new(
        authorization_url: String,
        token_url: String,
        client_id: String,
        client_secret: Secret,
    ) -> Self {
        Self {
            authorization_url,
            token_url,
            client_id,
            client_secret,
            client_auth: ClientAuth::SecretBasic,
            scopes: Vec::new(),
            pkce: true,
            timeouts: Timeouts::default(),
            user_agent: concat!("idbridge/", env!("CARGO_PKG_VERSION")).to_owned(),
            provider_codes: no_provider_codes,
        }
    }
}

/// The token endpoint's successful answer.
#[derive(Clone)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in: Option<i64>,
    pub scope: Option<String>,
}

impl Tokens {
    /// What the broker keeps (`old_refresh` stays when a refresh grant gives
    /// no new refresh token).
    pub fn upstream(&self, now: i64, old_refresh: Option<&str>) -> UpstreamTokens {
        UpstreamTokens {
            access_token: Some(self.access_token.clone()),
            refresh_token: self
                .refresh_token
                .clone()
                .or_else(|| old_refresh.map(str::to_owned)),
            access_expires_at: self.expires_in.map(|s| now.saturating_add(s)),
            refresh_expires_at: None,
            scope: self.scope.clone(),
        }
    }
}

type Oauth2Client =
    BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

/// The client: one per connector, cheap to share.
pub struct OAuthClient {
    config: ClientConfig,
    http: reqwest::Client,
    oauth: Oauth2Client,
    /// The configured connector id: the `connector` label of the calls' metrics
    /// and spans ([`OAuthClient::for_connector`]).
    connector: String,
}

impl std::fmt::Debug for OAuthClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthClient")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl OAuthClient {
    /// Build the client (no I/O). `Err`: a URL the `oauth2` crate refuses, or
    /// no HTTP client could be made.
    pub fn new(config: ClientConfig) -> Result<Self, String> {
        let http = kit_http::client(config.timeouts, &config.user_agent)?;
        let auth = AuthUrl::new(config.authorization_url.clone())
            .map_err(|e| format!("authorization_url: {e}"))?;
        let token =
            TokenUrl::new(config.token_url.clone()).map_err(|e| format!("token_url: {e}"))?;
        let oauth = BasicClient::new(ClientId::new(config.client_id.clone()))
            .set_client_secret(ClientSecret::new(config.client_secret.expose().to_owned()))
            .set_auth_uri(auth)
            .set_token_uri(token)
            .set_auth_type(match config.client_auth {
                ClientAuth::SecretBasic => AuthType::BasicAuth,
                ClientAuth::SecretPost => AuthType::RequestBody,
            });
        Ok(Self {
            config,
            http,
            oauth,
            connector: "unknown".to_owned(),
        })
    }

    /// The same client, its calls labelled `connector=id` (the configured id).
    pub fn for_connector(mut self, id: &str) -> Self {
        self.connector = id.to_owned();
        self
    }

    /// The `connector` label of this client's calls.
    pub fn connector_label(&self) -> &str {
        &self.connector
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The HTTP client (timeouts, no redirects, the user agent).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The authorization URL for `request`, and the PKCE verifier to keep.
    pub fn authorization_url(
        &self,
        request: &BeginRequest,
    ) -> Result<(String, FlowSecrets), ConnectorError> {
        let redirect = RedirectUrl::new(request.callback_url.clone()).map_err(|_| {
            ConnectorError::new(Stage::Begin, ErrorKind::Misconfigured)
                .fix("the broker's callback URL is not a URL: check the issuer")
        })?;
        let state = request.state.clone();
        let mut auth = self
            .oauth
            .authorize_url(move || CsrfToken::new(state))
            .set_redirect_uri(Cow::Owned(redirect))
            .add_scopes(self.config.scopes.iter().cloned().map(Scope::new));
        let mut secrets = FlowSecrets::default();
        if self.config.pkce {
            let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
            auth = auth.set_pkce_challenge(challenge);
            secrets.pkce_verifier = Some(verifier.secret().clone());
        }
        let (url, _) = auth.url();
        Ok((url.to_string(), secrets))
    }

    /// `begin`: a redirect to the provider; the flow data keeps the PKCE
    /// verifier (or marks a flow without PKCE).
    pub fn begin(&self, request: &BeginRequest) -> Result<Started, ConnectorError> {
        let (url, secrets) = self.authorization_url(request)?;
        let flow_data = if self.config.pkce {
            secrets.to_flow_data()
        } else {
            serde_json::json!({ "pkce": false })
        };
        Ok(Started {
            begin: Begin::Redirect(url),
            flow_data,
        })
    }

    /// The callback's `error` (the provider's codes first), or its `code` and
    /// the PKCE verifier `begin` kept.
    pub fn callback_code<'a>(
        &self,
        callback: &'a CallbackRequest,
    ) -> Result<(&'a str, Option<String>), ConnectorError> {
        if let Some(code) = callback.param("error") {
            let description = clean_description(callback.param("error_description").unwrap_or(""));
            if let Some((kind, fix)) = (self.config.provider_codes)(code) {
                return Err(ConnectorError::new(Stage::Callback, kind)
                    .upstream(code, description)
                    .fix(fix));
            }
            return Err(authorization_error(code, &description));
        }
        let verifier = if self.config.pkce {
            let flow = FlowSecrets::from_callback(callback)?;
            Some(flow.require_pkce_verifier()?.to_owned())
        } else {
            None
        };
        let Some(code) = callback.param("code").filter(|c| !c.is_empty()) else {
            return Err(
                ConnectorError::new(Stage::Callback, ErrorKind::InvalidRequest)
                    .fix("the provider's callback has neither code nor error"),
            );
        };
        Ok((code, verifier))
    }

    /// `grant_type=authorization_code` for the callback's code.
    pub async fn exchange_code(
        &self,
        callback: &CallbackRequest,
    ) -> Result<Tokens, ConnectorError> {
        let (code, verifier) = self.callback_code(callback)?;
        let redirect = RedirectUrl::new(callback.callback_url.clone()).map_err(|_| {
            ConnectorError::new(Stage::TokenExchange, ErrorKind::Misconfigured)
                .fix("the broker's callback URL is not a URL: check the issuer")
        })?;
        let mut request = self
            .oauth
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_redirect_uri(Cow::Owned(redirect));
        if let Some(v) = verifier {
            request = request.set_pkce_verifier(PkceCodeVerifier::new(v));
        }
        let transport = Transport {
            http: &self.http,
            connector: &self.connector,
        };
        let result = request.request_async(&transport).await;
        self.tokens(Stage::TokenExchange, "the code exchange", result)
    }

    /// `grant_type=refresh_token`.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Tokens, ConnectorError> {
        let token = RefreshToken::new(refresh_token.to_owned());
        let transport = Transport {
            http: &self.http,
            connector: &self.connector,
        };
        let result = self
            .oauth
            .exchange_refresh_token(&token)
            .request_async(&transport)
            .await;
        self.tokens(Stage::Refresh, "the refresh token grant", result)
    }

    /// The refresh token grant with the refresh token kept at sign-in: the new
    /// tokens, and what the broker keeps of them (at `now`). No refresh token
    /// kept: `Unsupported` at `Stage::Refresh` with `no_refresh_fix`.
    pub async fn refresh_kept(
        &self,
        kept: &UpstreamTokens,
        now: i64,
        no_refresh_fix: &str,
    ) -> Result<(Tokens, UpstreamTokens), ConnectorError> {
        let Some(refresh_token) = kept.refresh_token.as_deref() else {
            return Err(
                ConnectorError::new(Stage::Refresh, ErrorKind::Unsupported).fix(no_refresh_fix)
            );
        };
        let fresh = self.refresh(refresh_token).await?;
        let upstream = fresh.upstream(now, Some(refresh_token));
        Ok((fresh, upstream))
    }

    fn tokens(
        &self,
        stage: Stage,
        what: &str,
        result: Result<
            BasicTokenResponse,
            RequestTokenError<CallError, oauth2::basic::BasicErrorResponse>,
        >,
    ) -> Result<Tokens, ConnectorError> {
        match result {
            Ok(t) => {
                if t.access_token().secret().is_empty() {
                    return Err(ConnectorError::new(stage, ErrorKind::BadResponse).fix(format!(
                        "the token endpoint {} answered {what} with an empty access_token",
                        shown(&self.config.token_url)
                    )));
                }
                Ok(Tokens {
                    access_token: t.access_token().secret().clone(),
                    refresh_token: t
                        .refresh_token()
                        .map(|r| r.secret().clone())
                        .filter(|r| !r.is_empty()),
                    expires_in: t
                        .expires_in()
                        .and_then(|d| i64::try_from(d.as_secs()).ok()),
                    scope: t.scopes().map(|s| {
                        s.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")
                    }),
                })
            }
            Err(RequestTokenError::Request(e)) => Err(self.call_error(stage, what, e)),
            // A 200 that is not a token answer: some providers (GitHub) answer
            // errors with 200 and an `error` field.
            Err(RequestTokenError::Parse(e, body)) => {
                if let Some(err) = self.oauth_error(stage, what, 200, &body) {
                    return Err(err);
                }
                Err(ConnectorError::new(stage, ErrorKind::BadResponse)
                    .upstream("HTTP 200", e.to_string())
                    .fix(format!(
                        "the token endpoint {} answered {what} with something that is not a token response ({}): check token_url points at the provider's token endpoint",
                        shown(&self.config.token_url),
                        e.path()
                    )))
            }
            Err(RequestTokenError::ServerResponse(e)) => Err(self.failure(
                stage,
                what,
                200,
                Some(e.error().as_ref()),
                &clean_description(e.error_description().map(String::as_str).unwrap_or("")),
            )),
            Err(RequestTokenError::Other(why)) => Err(ConnectorError::new(stage, ErrorKind::BadResponse)
                .upstream("HTTP 200", why.chars().take(200).collect::<String>())
                .fix(format!(
                    "the token endpoint {} answered {what} with an unusable token response: check token_url, and that the provider answers JSON",
                    shown(&self.config.token_url)
                ))),
        }
    }

    /// `{"error": …}` in `body`, mapped; `None` when the body has no `error`.
    fn oauth_error(
        &self,
        stage: Stage,
        what: &str,
        status: u16,
        body: &[u8],
    ) -> Option<ConnectorError> {
        let doc: Value = serde_json::from_slice(body).ok()?;
        let code = doc.get("error")?.as_str()?;
        let description = clean_description(
            doc.get("error_description")
                .and_then(Value::as_str)
                .unwrap_or(""),
        );
        Some(self.failure(stage, what, status, Some(code), &description))
    }

    fn failure(
        &self,
        stage: Stage,
        what: &str,
        status: u16,
        code: Option<&str>,
        description: &str,
    ) -> ConnectorError {
        if let Some((kind, fix)) = code.and_then(self.config.provider_codes) {
            return ConnectorError::new(stage, kind)
                .upstream(code.unwrap_or_default(), description)
                .fix(fix);
        }
        let method = self.config.client_auth.as_str();
        token_error(
            stage,
            TokenFailure {
                code,
                description,
                status,
                endpoint: &self.config.token_url,
                what,
                credentials_fix: format!(
                    "the provider refused client_id {:?} with its client_secret (client_auth = {method:?}): check that client_secret (or client_secret_file) is the client's current secret at the provider, and that the provider takes the credentials as {method} (else set client_auth to the other one)",
                    self.config.client_id
                ),
                client_id: &self.config.client_id,
            },
        )
    }

    fn call_error(&self, stage: Stage, what: &str, error: CallError) -> ConnectorError {
        let url = &self.config.token_url;
        match error {
            CallError::Transport(e) => kit_http::transport_error(stage, what, url, e, self.config.timeouts),
            CallError::Build(why) => ConnectorError::new(stage, ErrorKind::Misconfigured)
                .fix(format!("cannot build {what}: {why}")),
            CallError::TooLarge => ConnectorError::new(stage, ErrorKind::BadResponse).fix(format!(
                "the token endpoint {} answered {what} with more than {} bytes; this is not a token response",
                shown(url),
                crate::transport::MAX_BODY_BYTES
            )),
            CallError::Status { status, location, .. } if (300..400).contains(&status) => {
                let target = location.map(|l| shown(&l)).unwrap_or_else(|| "nowhere".into());
                ConnectorError::new(stage, ErrorKind::Misconfigured)
                    .upstream(format!("HTTP {status}"), format!("redirect to {target}"))
                    .fix(format!(
                        "the token endpoint {} answered {what} with a redirect to {target}, which is never followed: check token_url (scheme, host, path) against the provider's docs",
                        shown(url)
                    ))
            }
            CallError::Status { status, body, .. } => self
                .oauth_error(stage, what, status, &body)
                .unwrap_or_else(|| self.failure(stage, what, status, None, "")),
        }
    }
}
