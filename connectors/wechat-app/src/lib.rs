//! Owns the `wechat-app` connector: WeChat mobile-app login (Open Platform 移动应用).
//! The native app asks the WeChat SDK to sign the person in; the SDK hands the app
//! a single-use `code` (scope `snsapi_userinfo`), and the app (or its backend)
//! exchanges it at the broker's token endpoint (RFC 8693 token exchange, subject
//! token type [`SUBJECT_TOKEN_TYPE`]). The connector exchanges the code at WeChat
//! for the openid (subject), the unionid (link key, scoped by the Open Platform
//! account) and the profile. Snapshot-mode (virtual) users are refused. There is no
//! browser flow: the broker never offers this connector on its login page.

mod config;

pub use config::AppSettings;

use async_trait::async_trait;
use idbridge_core::{
    BeginRequest, BuildContext, CallbackRequest, ConfigError, Connector, ConnectorError,
    ConnectorFactory, ConnectorId, ConnectorSettings, ErrorKind, ExchangeRequest, ExternalIdentity,
    Problem, RequestContext, Stage, Started, UpstreamTokens,
};
use std::sync::Arc;
use wechat_api::{login, SnsToken, UserInfo, WeChatClient};

/// The RFC 8693 `subject_token_type` of a code from the WeChat SDK.
pub const SUBJECT_TOKEN_TYPE: &str = "urn:idbridge:params:oauth:token-type:wechat_sdk_code";

/// The scope a mobile app's code carries.
const SCOPE_USERINFO: &str = "snsapi_userinfo";

pub struct WeChatAppFactory;

impl ConnectorFactory for WeChatAppFactory {
    fn kind(&self) -> &'static str {
        "wechat-app"
    }

    fn build(
        &self,
        settings: &ConnectorSettings,
        _ctx: &BuildContext,
    ) -> Result<Arc<dyn Connector>, Vec<ConfigError>> {
        let cfg = config::parse(settings)?;
        let client = cfg.client(&settings.id)?;
        Ok(Arc::new(WeChatApp {
            id: settings.id.clone(),
            name: settings
                .name
                .clone()
                .unwrap_or_else(|| "微信 WeChat (app)".to_owned()),
            cfg,
            client,
        }))
    }

    fn doctor(&self, settings: &ConnectorSettings, _ctx: &BuildContext) -> Vec<Problem> {
        match config::parse(settings) {
            Ok(cfg) => config::doctor(&cfg, &settings.id),
            // build() already reports these.
            Err(_) => Vec::new(),
        }
    }
}

pub struct WeChatApp {
    id: ConnectorId,
    name: String,
    cfg: AppSettings,
    client: WeChatClient,
}

impl WeChatApp {
    fn no_browser_flow(&self, stage: Stage) -> ConnectorError {
        ConnectorError::new(stage, ErrorKind::Unsupported).fix(format!(
            "connector {} (wechat-app) has no browser sign-in: the native app exchanges its WeChat SDK code at the token endpoint (grant_type=urn:ietf:params:oauth:grant-type:token-exchange, subject_token_type={SUBJECT_TOKEN_TYPE})",
            self.id
        ))
    }

    /// What an operator reads for the failures a mobile app causes most often.
    fn explain(&self, e: ConnectorError) -> ConnectorError {
        let appid_hint = format!(
            "if every exchange fails this way, the app's WeChat SDK is registered with another AppID than connectors[{}].appid ({}), e.g. the website app's or the Official Account's",
            self.id, self.cfg.appid
        );
        match (e.kind, e.upstream_code.as_deref()) {
            (ErrorKind::InvalidCode, Some("40029")) => e.fix(format!(
                "invalid code: the SDK code is expired, for another appid, or made up; the app must ask the WeChat SDK for a new code. {appid_hint}"
            )),
            (ErrorKind::InvalidCode, Some("42003")) => e.fix(
                "code expired (5 minutes): the app must send the SDK code to the broker right away, and ask the WeChat SDK for a new one",
            ),
            (ErrorKind::CodeReused, _) => e.fix(
                "code been used: the app sent this SDK code twice (a replay, or a retry after a lost response); each code works once: the app must ask the WeChat SDK for a new code",
            ),
            _ => e,
        }
    }

    async fn profile(
        &self,
        token: &SnsToken,
        ctx: &RequestContext,
    ) -> Result<Option<UserInfo>, ConnectorError> {
        // Mobile apps always get snsapi_userinfo; without it sns/userinfo says 48001.
        if !token.scope.split(',').any(|s| s.trim() == SCOPE_USERINFO) {
            return Ok(None);
        }
        login::fetch_profile(&self.client, token, ctx.locale)
            .await
            .map(Some)
    }

    fn identity(&self, token: &SnsToken, profile: Option<UserInfo>, now: i64) -> ExternalIdentity {
        login::identity(
            &self.id,
            &self.cfg.appid,
            self.cfg.open_platform_id.as_deref(),
            token,
            profile.as_ref(),
            now,
        )
    }
}

#[async_trait]
impl Connector for WeChatApp {
    fn id(&self) -> &ConnectorId {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "wechat-app"
    }

    fn display_name(&self) -> &str {
        &self.name
    }

    fn has_browser_flow(&self) -> bool {
        false
    }

    fn subject_token_types(&self) -> &[&str] {
        &[SUBJECT_TOKEN_TYPE]
    }

    async fn begin(
        &self,
        _ctx: &RequestContext,
        _request: &BeginRequest,
    ) -> Result<Started, ConnectorError> {
        Err(self.no_browser_flow(Stage::Begin))
    }

    async fn complete(
        &self,
        _ctx: &RequestContext,
        _callback: &CallbackRequest,
    ) -> Result<ExternalIdentity, ConnectorError> {
        Err(self.no_browser_flow(Stage::Callback))
    }

    async fn exchange(
        &self,
        ctx: &RequestContext,
        request: &ExchangeRequest,
    ) -> Result<ExternalIdentity, ConnectorError> {
        let code = login::exchanged_code(
            &request.subject_token,
            "malformed_code",
            "the subject_token is not a WeChat SDK code",
            "the app sent something that is not a WeChat SDK code (empty, too long, or with spaces or control characters); send the `code` field of the SDK's SendAuth response as it is",
        )?;
        let token = self
            .client
            .exchange_code_with_retry(&self.cfg.appid, self.cfg.appsecret.expose(), code)
            .await
            .map_err(|e| self.explain(ConnectorError::from(e.at_stage(Stage::Exchange))))?;
        if token.is_snapshotuser {
            // Virtual openid, unionid and profile: never create or link an account.
            return Err(ConnectorError::new(Stage::Exchange, ErrorKind::NotAllowed)
                .upstream("is_snapshotuser", "a snapshot-mode (virtual) WeChat user")
                .fix("WeChat returned a snapshot-mode (virtual) user; the person must sign in with their full WeChat account and the app must ask the WeChat SDK for a new code"));
        }
        let profile = self.profile(&token, ctx).await?;
        Ok(self.identity(&token, profile, ctx.now))
    }

    /// WeChat reports no email address.
    fn vouches_for_email(&self) -> bool {
        false
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
        let token = login::refreshed_token(
            &self.client,
            &self.cfg.appid,
            subject,
            tokens,
            ctx.now,
            "sign in again in the app",
        )
        .await?;
        let profile = self.profile(&token, ctx).await?;
        Ok(login::keep_refresh_expiry(
            self.identity(&token, profile, ctx.now),
            tokens,
        ))
    }
}
