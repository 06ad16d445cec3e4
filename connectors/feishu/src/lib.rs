//! The `feishu` connector: sign in with Feishu (飞书), or Lark with
//! `region = "lark"`, through an app's web sign-in (网页应用登录), on the
//! `oauth2` connector's client. Setup, every key and troubleshooting:
//! `docs/connectors/feishu.md`.
//!
//! - The authorization page is `accounts.feishu.cn/open-apis/authen/v1/authorize`
//!   with PKCE S256; the code (5 minutes, single use) is exchanged at
//!   `open.feishu.cn/open-apis/authen/v2/oauth/token` with a JSON body, then
//!   `authen/v1/user_info` says who the person is.
//! - The subject is `REGION:DEVELOPER:UNION_ID`: `union_id` is one person
//!   across the apps of one developer, and only there, so the configured
//!   `developer` (and the region: Feishu's and Lark's ids are separate) is part
//!   of it. The link key is the `union_id` under `REGION:DEVELOPER`, so two
//!   connectors (two apps) of one developer sign a person into one account.
//!   `open_id` (per app), `tenant_key` and `user_id` are kept in the raw claims.
//! - Email and mobile are typed in by tenant admins, never verified by
//!   Feishu: reported with `*_verified = false`, and `vouches_for_email` is
//!   false (so `trust_email` is a configuration error).
//! - `offline_access = true` asks for a refresh token; each is single use, so
//!   `refresh` stores the new one Feishu returns. Without it there is none and
//!   `supports_refresh()` is false.
//! - `tenant_keys`: only people of those tenants may sign in.
//! - Inside Feishu's own browser (`Lark/…` User-Agent) the connector is
//!   `Preferred`: the same authorization page then signs in without asking.

mod api;
pub mod codes;
pub mod config;

use api::{Api, Granted};
use async_trait::async_trait;
use config::FeishuSettings;
use idbridge_connector_oauth2::OAuthClient;
use idbridge_core::{
    Availability, BeginRequest, BuildContext, CallbackRequest, ClientClass, ConfigError, Connector,
    ConnectorError, ConnectorFactory, ConnectorId, ConnectorSettings, ErrorKind, ExternalIdentity,
    LinkKey, Locale, Problem, Profile, RequestContext, Stage, Started, UpstreamTokens,
};
use std::sync::Arc;

pub const KIND: &str = "feishu";

/// Builds `type = "feishu"` connectors.
pub struct FeishuFactory;

impl ConnectorFactory for FeishuFactory {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn build(
        &self,
        settings: &ConnectorSettings,
        _ctx: &BuildContext,
    ) -> Result<Arc<dyn Connector>, Vec<ConfigError>> {
        Ok(Arc::new(FeishuConnector::new(settings)?))
    }

    /// `accounts_url` and `open_url` are https (http only to loopback) and the
    /// authorization page answers for our App ID.
    fn doctor(&self, settings: &ConnectorSettings, ctx: &BuildContext) -> Vec<Problem> {
        let Ok(connector) = FeishuConnector::new(settings) else {
            return Vec::new();
        };
        let callback = ctx.callback_url.clone();
        let id = connector.id.to_string();
        idbridge_connector_kit::doctor::run(format!("connectors[{id}]"), async move {
            let s = &connector.settings;
            let urls = [
                ("accounts_url", s.accounts_url.as_str()),
                ("open_url", s.open_url.as_str()),
            ];
            idbridge_connector_oauth2::doctor::checks(&id, &connector.client, &urls, &callback)
                .await
        })
    }
}

pub struct FeishuConnector {
    id: ConnectorId,
    name: String,
    settings: FeishuSettings,
    client: OAuthClient,
}

impl std::fmt::Debug for FeishuConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeishuConnector")
            .field("id", &self.id)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn no_access_advice(locale: Locale) -> &'static str {
    match locale {
        Locale::ZhCn => "你的飞书账号没有使用此应用的权限。请联系企业管理员把你加入该应用的可用范围，然后重新登录。",
        Locale::En => "Your Feishu account may not use this app. Ask your organisation's Feishu admin to add you to the app's availability range, then sign in again.",
    }
}

fn other_tenant_advice(locale: Locale) -> &'static str {
    match locale {
        Locale::ZhCn => "此处仅允许指定企业的飞书账号登录。请切换到所在企业的飞书账号后重新登录。",
        Locale::En => "Only Feishu accounts of certain organisations may sign in here. Switch to your organisation's Feishu account, then sign in again.",
    }
}

impl FeishuConnector {
    pub fn new(settings: &ConnectorSettings) -> Result<Self, Vec<ConfigError>> {
        let parsed = FeishuSettings::parse(settings)?;
        let client = OAuthClient::new(parsed.client.clone())
            .map(|c| c.for_connector(settings.id.as_str()))
            .map_err(|e| {
                vec![ConfigError::new(
                    format!("connectors[{}]", settings.id),
                    format!("cannot build the HTTP client: {e}"),
                )]
            })?;
        Ok(Self {
            id: settings.id.clone(),
            name: settings.name.clone().unwrap_or_else(|| {
                match parsed.region {
                    config::Region::Feishu => "飞书 Feishu",
                    config::Region::Lark => "Lark",
                }
                .into()
            }),
            settings: parsed,
            client,
        })
    }

    pub fn settings(&self) -> &FeishuSettings {
        &self.settings
    }

    fn api(&self) -> Api<'_> {
        Api {
            client: &self.client,
            settings: &self.settings,
        }
    }

    /// `REGION:DEVELOPER`, the scope `union_id` is unique in.
    fn union_scope(&self) -> String {
        format!(
            "{}:{}",
            self.settings.region.as_str(),
            self.settings.developer
        )
    }

    async fn identity(
        &self,
        ctx: &RequestContext,
        stage: Stage,
        granted: &Granted,
    ) -> Result<ExternalIdentity, ConnectorError> {
        let user = self.api().user(stage, &granted.tokens.access_token).await?;
        if !self.settings.tenant_keys.is_empty() {
            let inside = user
                .tenant_key
                .as_ref()
                .is_some_and(|t| self.settings.tenant_keys.contains(t));
            if !inside {
                let allowed = self.settings.tenant_keys.join(", ");
                return Err(ConnectorError::new(stage, ErrorKind::NotAllowed)
                    .upstream("tenant_not_allowed", format!("Feishu user {} is of tenant {}", user.open_id, user.tenant_key.as_deref().unwrap_or("(none)")))
                    .fix(format!("the person's tenant_key is not in tenant_keys ({allowed}): add their tenant's tenant_key if they should sign in here"))
                    .advice(other_tenant_advice(ctx.locale)));
            }
        }
        let scope = self.union_scope();
        let raw = serde_json::json!({
            "union_id": user.union_id,
            "open_id": user.open_id,
            "tenant_key": user.tenant_key,
            "user_id": user.user_id,
            "name": user.name,
            "en_name": user.en_name,
        });
        Ok(ExternalIdentity {
            connector_id: self.id.clone(),
            subject: format!("{scope}:{}", user.union_id),
            link_key: Some(LinkKey {
                scope,
                key: user.union_id,
            }),
            profile: Profile {
                name: user.name.or(user.en_name),
                picture: user.avatar_url,
                // Typed in by the tenant's admins: Feishu verifies neither.
                email_verified: user.email.as_ref().map(|_| false),
                email: user.email,
                phone_number_verified: user.mobile.as_ref().map(|_| false),
                phone_number: user.mobile,
                ..Profile::default()
            },
            upstream_tokens: Some(granted.upstream(ctx.now)),
            raw_claims: raw,
        })
    }

    /// A 20010 ("no access to the app") gets the person's advice too.
    fn with_advice(ctx: &RequestContext, e: ConnectorError) -> ConnectorError {
        if e.upstream_code.as_deref() == Some("20010") {
            e.advice(no_access_advice(ctx.locale))
        } else {
            e
        }
    }
}

#[async_trait]
impl Connector for FeishuConnector {
    fn id(&self) -> &ConnectorId {
        &self.id
    }

    fn kind(&self) -> &'static str {
        KIND
    }

    fn display_name(&self) -> &str {
        &self.name
    }

    /// Inside Feishu's (or Lark's) own browser the same page signs the person
    /// in without a confirmation: pick this connector without asking.
    fn availability(&self, ctx: &RequestContext) -> Availability {
        if ctx.client_class == ClientClass::Feishu {
            Availability::Preferred
        } else {
            Availability::Available
        }
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
        let (code, verifier) = self.client.callback_code(callback)?;
        let verifier = verifier.unwrap_or_default();
        let granted = self
            .api()
            .exchange_code(code, &verifier, &callback.callback_url)
            .await
            .map_err(|e| Self::with_advice(ctx, e))?;
        self.identity(ctx, Stage::Userinfo, &granted).await
    }

    fn supports_refresh(&self) -> bool {
        self.settings.offline_access
    }

    /// Email and mobile are what the tenant's admin typed in.
    fn vouches_for_email(&self) -> bool {
        false
    }

    async fn refresh(
        &self,
        ctx: &RequestContext,
        subject: &str,
        tokens: &UpstreamTokens,
    ) -> Result<ExternalIdentity, ConnectorError> {
        let Some(refresh_token) = tokens.refresh_token.as_deref() else {
            return Err(ConnectorError::new(Stage::Refresh, ErrorKind::Unsupported).fix(
                "Feishu gave no refresh token at sign-in: set offline_access = true on the connector (and grant the app the offline_access permission in the developer console), or turn recheck_on_refresh off",
            ));
        };
        let granted = self
            .api()
            .refresh(refresh_token)
            .await
            .map_err(|e| Self::with_advice(ctx, e))?;
        let identity = self.identity(ctx, Stage::Refresh, &granted).await?;
        idbridge_connector_oauth2::same_subject(identity, subject)
    }
}
