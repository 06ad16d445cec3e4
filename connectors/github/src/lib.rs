//! The `github` connector: sign in with GitHub (github.com or a GitHub
//! Enterprise Server) through an OAuth app, on the `oauth2` connector's client.
//! Setup, every key and troubleshooting: `docs/connectors/github.md`.
//!
//! - The subject is GitHub's numeric user id as a decimal string, never the
//!   login (a person can rename it, and a freed login can be taken by someone
//!   else); `preferred_username` is the login, `picture` the avatar.
//! - The email is the person's *primary* address from `GET /user/emails`, and
//!   only when GitHub marks it verified (then `email_verified = true`);
//!   otherwise there is no email claim at all (never an unverified one, and
//!   never the public profile email of `GET /user`).
//! - `allowed_orgs`: the person must be in one of these organisations, as
//!   `GET /user/orgs` lists them (scope `read:org`, added to the scopes);
//!   anyone else is `NotAllowed` (a 403 page with advice).
//! - Token endpoint errors come as HTTP 200 with an `error` field and are
//!   mapped by GitHub's own codes ([`config::github_codes`]).
//! - Refresh: GitHub's OAuth tokens do not expire unless the app opted into
//!   expiring user tokens; then a refresh token comes back and `refresh` uses
//!   it (same id required, organisations checked again); without one it is
//!   `Unsupported`.

mod api;
pub mod config;

use api::Api;
use async_trait::async_trait;
use config::GithubSettings;
use idbridge_connector_oauth2::OAuthClient;
use idbridge_core::{
    BeginRequest, BuildContext, CallbackRequest, ConfigError, Connector, ConnectorError,
    ConnectorFactory, ConnectorId, ConnectorSettings, ErrorKind, ExternalIdentity, Locale, Problem,
    Profile, RequestContext, Stage, Started, UpstreamTokens,
};
use std::sync::Arc;

pub const KIND: &str = "github";

/// Builds `type = "github"` connectors.
pub struct GithubFactory;

impl ConnectorFactory for GithubFactory {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn build(
        &self,
        settings: &ConnectorSettings,
        _ctx: &BuildContext,
    ) -> Result<Arc<dyn Connector>, Vec<ConfigError>> {
        Ok(Arc::new(GithubConnector::new(settings)?))
    }

    /// `base_url` and `api_url` are https (http only to loopback) and the
    /// authorization page answers for our client id.
    fn doctor(&self, settings: &ConnectorSettings, ctx: &BuildContext) -> Vec<Problem> {
        let Ok(connector) = GithubConnector::new(settings) else {
            return Vec::new();
        };
        let callback = ctx.callback_url.clone();
        let id = connector.id.to_string();
        idbridge_connector_kit::doctor::run(format!("connectors[{id}]"), async move {
            let s = &connector.settings;
            let urls = [
                ("base_url", s.base_url.as_str()),
                ("api_url", s.api_url.as_str()),
            ];
            idbridge_connector_oauth2::doctor::checks(&id, &connector.client, &urls, &callback)
                .await
        })
    }
}

pub struct GithubConnector {
    id: ConnectorId,
    name: String,
    settings: GithubSettings,
    client: OAuthClient,
}

impl std::fmt::Debug for GithubConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubConnector")
            .field("id", &self.id)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn not_in_orgs_advice(locale: Locale, orgs: &str) -> String {
    match locale {
        Locale::ZhCn => format!("此处仅允许以下 GitHub 组织的成员登录：{orgs}。如果你是成员，请在 GitHub 授权页面上为该组织授予访问权限，然后重新登录。"),
        Locale::En => format!("Only members of these GitHub organisations may sign in here: {orgs}. If you are a member, grant the organisation access on GitHub's authorization page, then sign in again."),
    }
}

impl GithubConnector {
    pub fn new(settings: &ConnectorSettings) -> Result<Self, Vec<ConfigError>> {
        let parsed = GithubSettings::parse(settings)?;
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
            name: settings.name.clone().unwrap_or_else(|| "GitHub".into()),
            settings: parsed,
            client,
        })
    }

    pub fn settings(&self) -> &GithubSettings {
        &self.settings
    }

    async fn identity(
        &self,
        ctx: &RequestContext,
        stage: Stage,
        tokens: UpstreamTokens,
        access_token: &str,
    ) -> Result<ExternalIdentity, ConnectorError> {
        let api = Api {
            client: &self.client,
            api_url: &self.settings.api_url,
            token: access_token,
            stage,
        };
        let user = api.user().await?;
        let mut orgs_seen = None;
        if !self.settings.allowed_orgs.is_empty() {
            let orgs = api.orgs().await?;
            if !orgs.iter().any(|o| self.settings.allowed_orgs.contains(o)) {
                let allowed = self.settings.allowed_orgs.join(", ");
                return Err(ConnectorError::new(stage, ErrorKind::NotAllowed)
                    .upstream("not_in_allowed_orgs", format!("GitHub user id {} is in none of the allowed organisations", user.id))
                    .fix(format!("the person is not a member of any of allowed_orgs ({allowed}) as GET /user/orgs shows them to this OAuth app: add them to an organisation at GitHub, or, if they are a member, the organisation restricts OAuth app access — an owner approves the app (organisation → Settings → Third-party access)"))
                    .advice(not_in_orgs_advice(ctx.locale, &allowed)));
            }
            orgs_seen = Some(orgs);
        }
        let email = api.verified_primary_email().await?;
        let subject = user.id.to_string();
        let mut raw = serde_json::json!({
            "id": user.id,
            "login": user.login,
            "name": user.name,
            "avatar_url": user.avatar_url,
            "html_url": user.html_url,
        });
        if let Some(orgs) = orgs_seen {
            let allowed: Vec<&String> = orgs
                .iter()
                .filter(|o| self.settings.allowed_orgs.contains(o))
                .collect();
            raw["allowed_orgs"] = serde_json::json!(allowed);
        }
        Ok(ExternalIdentity {
            connector_id: self.id.clone(),
            subject,
            link_key: None,
            profile: Profile {
                name: user.name,
                preferred_username: Some(user.login),
                picture: user.avatar_url,
                email_verified: email.as_ref().map(|_| true),
                email,
                ..Profile::default()
            },
            upstream_tokens: Some(tokens),
            raw_claims: raw,
        })
    }
}

#[async_trait]
impl Connector for GithubConnector {
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
            ctx,
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
            .refresh_kept(tokens, ctx.now, "GitHub gave no refresh token at sign-in (its OAuth tokens do not expire unless the app opts into expiring user tokens), so the person cannot be re-checked: turn recheck_on_refresh off for this connector, or enable token expiration for the app at GitHub")
            .await?;
        let identity = self
            .identity(ctx, Stage::Refresh, kept, &fresh.access_token)
            .await?;
        idbridge_connector_oauth2::same_subject(identity, subject)
    }
}
