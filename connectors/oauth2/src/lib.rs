//! The `oauth2` connector: sign people in at a plain OAuth 2.0 provider (no
//! OpenID Connect: no ID token, no discovery) with the authorization code
//! flow, then read who they are from its userinfo endpoint through a claim
//! mapping. Setup, every key and troubleshooting: `docs/connectors/oauth2.md`.
//!
//! - `begin` redirects to `authorization_url` with the broker's state as it
//!   is and a PKCE S256 challenge (`pkce = true`, the default), the verifier
//!   kept in flow data;
//! - `complete` maps the provider's `error` (`access_denied` is the person
//!   cancelling), exchanges the code at `token_url` on the `oauth2` crate
//!   (`client_secret_basic` or `client_secret_post`), calls `userinfo_url`
//!   with the access token and maps `[connectors.claims]`;
//! - `refresh` uses the refresh token grant when the provider gave a refresh
//!   token (else `Unsupported`), reads userinfo again and requires the same
//!   subject.
//!
//! The client part ([`client::OAuthClient`]) is public for presets on plain
//! OAuth 2.0 (`idbridge-connector-github`).

pub mod api;
pub mod client;
pub mod config;
pub mod doctor;
mod transport;

pub use api::{api_error, same_subject, ApiAnswer};
pub use client::{ClientAuth, ClientConfig, OAuthClient, Tokens};
pub use transport::MAX_BODY_BYTES;

use async_trait::async_trait;
use config::{ClaimMapping, OAuth2Settings};
use idbridge_core::{
    BeginRequest, BuildContext, CallbackRequest, ConfigError, Connector, ConnectorError,
    ConnectorFactory, ConnectorId, ConnectorSettings, ErrorKind, ExternalIdentity, Problem,
    Profile, RequestContext, Stage, Started, UpstreamTokens,
};
use serde_json::Value;
use std::sync::Arc;

pub const KIND: &str = "oauth2";

/// Builds `type = "oauth2"` connectors.
pub struct OAuth2Factory;

impl ConnectorFactory for OAuth2Factory {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn build(
        &self,
        settings: &ConnectorSettings,
        _ctx: &BuildContext,
    ) -> Result<Arc<dyn Connector>, Vec<ConfigError>> {
        Ok(Arc::new(OAuth2Connector::new(settings)?))
    }

    /// The endpoint URLs are https (http only to loopback) and the
    /// authorization URL answers.
    fn doctor(&self, settings: &ConnectorSettings, ctx: &BuildContext) -> Vec<Problem> {
        let Ok(connector) = OAuth2Connector::new(settings) else {
            return Vec::new(); // build already reported the config errors
        };
        let callback = ctx.callback_url.clone();
        let id = connector.id.to_string();
        idbridge_connector_kit::doctor::run(format!("connectors[{id}]"), async move {
            let c = &connector.settings.client;
            let urls = [
                ("authorization_url", c.authorization_url.as_str()),
                ("token_url", c.token_url.as_str()),
                ("userinfo_url", connector.settings.userinfo_url.as_str()),
            ];
            doctor::checks(&id, &connector.client, &urls, &callback).await
        })
    }
}

/// Build an `ExternalIdentity`-shaped profile from `doc` by `mapping`; the
/// subject is required.
pub fn map_claims(
    stage: Stage,
    mapping: &ClaimMapping,
    doc: &Value,
) -> Result<(String, Profile), ConnectorError> {
    let Some(subject) = mapping.subject.text(doc) else {
        return Err(ConnectorError::new(stage, ErrorKind::BadResponse).fix(format!(
            "the userinfo answer has no usable subject at claims.subject = {:?} (a non-empty string or an integer): set claims.subject to the path of the person's stable id",
            mapping.subject.as_str()
        )));
    };
    let text = |p: &Option<idbridge_connector_kit::claims::ClaimPath>| {
        p.as_ref().and_then(|p| p.text(doc))
    };
    let email = text(&mapping.email);
    let profile = Profile {
        name: text(&mapping.name),
        preferred_username: text(&mapping.preferred_username),
        picture: text(&mapping.picture),
        email_verified: email
            .as_ref()
            .and(mapping.email_verified.as_ref().and_then(|p| p.boolean(doc))),
        email,
        ..Profile::default()
    };
    Ok((subject, profile))
}

pub struct OAuth2Connector {
    id: ConnectorId,
    name: String,
    settings: OAuth2Settings,
    client: OAuthClient,
}

impl std::fmt::Debug for OAuth2Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuth2Connector")
            .field("id", &self.id)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl OAuth2Connector {
    pub fn new(settings: &ConnectorSettings) -> Result<Self, Vec<ConfigError>> {
        let parsed = OAuth2Settings::parse(settings)?;
        let client = OAuthClient::new(parsed.client.clone())
            .map(|c| c.for_connector(settings.id.as_str()))
            .map_err(|e| {
                vec![ConfigError::new(
                    format!("connectors[{}]", settings.id),
                    format!("cannot build the OAuth client: {e}"),
                )]
            })?;
        Ok(Self {
            id: settings.id.clone(),
            name: settings.name.clone().unwrap_or_else(|| "OAuth 2.0".into()),
            settings: parsed,
            client,
        })
    }

    pub fn settings(&self) -> &OAuth2Settings {
        &self.settings
    }

    async fn identity(
        &self,
        stage: Stage,
        tokens: UpstreamTokens,
        access_token: &str,
    ) -> Result<ExternalIdentity, ConnectorError> {
        let url = &self.settings.userinfo_url;
        let what = "the userinfo request";
        let answer = self
            .client
            .get(
                stage,
                what,
                url,
                access_token,
                &[("accept", "application/json")],
            )
            .await?;
        if answer.status != 200 {
            return Err(api_error(stage, what, url, &answer));
        }
        let doc = answer.json();
        if !doc.is_object() {
            return Err(ConnectorError::new(stage, ErrorKind::BadResponse)
                .upstream("HTTP 200", answer.start())
                .fix(format!(
                    "the userinfo answer of {} is not a JSON object: check userinfo_url",
                    idbridge_connector_kit::http::shown(url)
                )));
        }
        let (subject, profile) = map_claims(stage, &self.settings.claims, &doc)?;
        let mut raw_claims = doc;
        if raw_claims.to_string().len() > 16 * 1024 {
            raw_claims = serde_json::json!({ "subject": subject });
        }
        Ok(ExternalIdentity {
            connector_id: self.id.clone(),
            subject,
            link_key: None,
            profile,
            upstream_tokens: Some(tokens),
            raw_claims,
        })
    }
}

#[async_trait]
impl Connector for OAuth2Connector {
    fn id(&self) -> &ConnectorId {
        &self.id
    }

    fn kind(&self) -> &'static str {
        KIND
    }

    fn display_name(&self) -> &str {
        &self.name
    }

    async fn begin(
        &self,
        _ctx: &RequestContext,
        request: &BeginRequest,
    ) -> Result<Started, ConnectorError> {
        self.client.begin(request)
    }

    async fn complete(
        &self,
        ctx: &RequestContext,
        callback: &CallbackRequest,
    ) -> Result<ExternalIdentity, ConnectorError> {
        let tokens = self.client.exchange_code(callback).await?;
        self.identity(
            Stage::Userinfo,
            tokens.upstream(ctx.now, None),
            &tokens.access_token,
        )
        .await
    }

    fn supports_refresh(&self) -> bool {
        true
    }

    async fn refresh(
        &self,
        ctx: &RequestContext,
        subject: &str,
        tokens: &UpstreamTokens,
    ) -> Result<ExternalIdentity, ConnectorError> {
        let (fresh, kept) = self
            .client
            .refresh_kept(tokens, ctx.now, "the provider gave no refresh token at sign-in, so the person cannot be re-checked: turn recheck_on_refresh off for this connector, or ask the provider for refresh tokens (often a scope such as offline_access)")
            .await?;
        let identity = self
            .identity(Stage::Refresh, kept, &fresh.access_token)
            .await?;
        same_subject(identity, subject)
    }
}
