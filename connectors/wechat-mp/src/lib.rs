//! Owns the `wechat-mp` connector: WeChat Official Account web authorization
//! (公众号网页授权) inside WeChat's own browser. The person is sent to WeChat's
//! `/connect/oauth2/authorize` page (`snsapi_base`: silent, openid only;
//! `snsapi_userinfo`: a consent page, then the profile); WeChat sends them back to
//! `{issuer}/callback/{id}` with a code, which is exchanged for the openid (subject),
//! the unionid (link key, scoped by the Open Platform account, only with
//! `snsapi_userinfo`) and, with `snsapi_userinfo`, the profile. Snapshot-mode
//! (virtual) users are refused. Outside WeChat the connector is unavailable, so the
//! broker offers the others (e.g. `wechat-web`'s QR code) instead.

mod config;

pub use config::{MpSettings, SCOPE_BASE, SCOPE_USERINFO};

use async_trait::async_trait;
use idbridge_core::{
    escape_html, Availability, Begin, BeginRequest, BuildContext, CallbackRequest, ConfigError,
    Connector, ConnectorError, ConnectorFactory, ConnectorId, ConnectorSettings, ErrorKind,
    ExternalIdentity, Locale, Problem, RequestContext, Stage, Started, UpstreamTokens,
};
use std::sync::Arc;
use wechat_api::{login, oauth2_authorize_url, AppTokens, SnsToken, UserInfo, WeChatClient};

pub struct WeChatMpFactory;

impl ConnectorFactory for WeChatMpFactory {
    fn kind(&self) -> &'static str {
        "wechat-mp"
    }

    fn build(
        &self,
        settings: &ConnectorSettings,
        ctx: &BuildContext,
    ) -> Result<Arc<dyn Connector>, Vec<ConfigError>> {
        let cfg = MpSettings::parse(settings)?;
        let client = cfg.client(&settings.id)?;
        // One app token per Official Account, shared by every broker instance.
        let app_tokens = cfg.messages.then(|| {
            AppTokens::new(
                client.clone(),
                &cfg.appid,
                cfg.appsecret.expose(),
                ctx.shared.clone(),
            )
        });
        Ok(Arc::new(WeChatMp {
            app_tokens,
            id: settings.id.clone(),
            name: settings
                .name
                .clone()
                .unwrap_or_else(|| "微信 WeChat".to_owned()),
            cfg,
            client,
        }))
    }

    fn doctor(&self, settings: &ConnectorSettings, ctx: &BuildContext) -> Vec<Problem> {
        match MpSettings::parse(settings) {
            Ok(cfg) => cfg.doctor(&settings.id, ctx),
            // build() already reports these.
            Err(_) => Vec::new(),
        }
    }
}

pub struct WeChatMp {
    id: ConnectorId,
    name: String,
    cfg: MpSettings,
    client: WeChatClient,
    /// With `messages = true`: the shared app token for customer-service messages.
    app_tokens: Option<AppTokens>,
}

impl WeChatMp {
    /// What a person outside WeChat is told.
    fn outside_reason(&self, locale: Locale) -> &'static str {
        match (self.cfg.outside_wechat.as_str(), locale) {
            ("hide", Locale::ZhCn) => "仅限微信内使用",
            ("hide", Locale::En) => "Only inside WeChat",
            (_, Locale::ZhCn) => "请在微信客户端打开链接：用微信扫描或在微信中打开本页，即可使用微信登录。",
            (_, Locale::En) => "Open this link in WeChat: sign-in with this WeChat Official Account only works inside the WeChat app.",
        }
    }

    /// Shown instead of WeChat's own "请在微信客户端打开链接" when this connector is
    /// started (by `connector=`) from a browser outside WeChat.
    fn outside_page(&self, ctx: &RequestContext) -> Begin {
        let title = if ctx.locale == Locale::ZhCn {
            "请在微信中打开"
        } else {
            "Open in WeChat"
        };
        Begin::Page {
            title: title.to_owned(),
            body_html: format!(
                "<p role=\"alert\">{}</p>",
                escape_html(self.outside_reason(ctx.locale))
            ),
            script_sources: Vec::new(),
            frame_sources: Vec::new(),
        }
    }

    /// Whether this token may call `sns/userinfo`: only `snsapi_userinfo` tokens
    /// can (`snsapi_base` gets 48001), and only when the connector asks for a profile.
    fn wants_profile(&self, token: &SnsToken) -> bool {
        self.cfg.scope == SCOPE_USERINFO
            && token.scope.split(',').any(|s| s.trim() == SCOPE_USERINFO)
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

    /// The profile, when the token's scope allows it; `None` for `snsapi_base`.
    async fn profile(
        &self,
        token: &SnsToken,
        ctx: &RequestContext,
    ) -> Result<Option<UserInfo>, ConnectorError> {
        if !self.wants_profile(token) {
            return Ok(None);
        }
        login::fetch_profile(&self.client, token, ctx.locale)
            .await
            .map(Some)
    }
}

#[async_trait]
impl Connector for WeChatMp {
    fn id(&self) -> &ConnectorId {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "wechat-mp"
    }

    fn display_name(&self) -> &str {
        &self.name
    }

    fn availability(&self, ctx: &RequestContext) -> Availability {
        if ctx.client_class.is_wechat() {
            Availability::Preferred
        } else {
            // WeCom and ordinary browsers: WeChat would only show "请在微信客户端打开链接".
            Availability::Unavailable {
                reason: self.outside_reason(ctx.locale).to_owned(),
            }
        }
    }

    async fn begin(
        &self,
        ctx: &RequestContext,
        request: &BeginRequest,
    ) -> Result<Started, ConnectorError> {
        if !wechat_api::is_valid_state(&request.state) {
            return Err(ConnectorError::new(Stage::Begin, ErrorKind::Misconfigured)
                .fix("the broker's state must be 1-128 characters of a-zA-Z0-9 for WeChat"));
        }
        let begin = if !ctx.client_class.is_wechat() && self.cfg.outside_wechat == "page" {
            self.outside_page(ctx)
        } else {
            Begin::Redirect(oauth2_authorize_url(
                self.cfg.open_base_url.as_str(),
                &self.cfg.appid,
                &request.callback_url,
                &self.cfg.scope,
                &request.state,
            ))
        };
        Ok(Started {
            begin,
            flow_data: serde_json::Value::Null,
        })
    }

    async fn complete(
        &self,
        ctx: &RequestContext,
        callback: &CallbackRequest,
    ) -> Result<ExternalIdentity, ConnectorError> {
        let app = login::LoginApp {
            connector_id: &self.id,
            appid: &self.cfg.appid,
            appsecret: self.cfg.appsecret.expose(),
            open_platform_id: self.cfg.open_platform_id.as_deref(),
        };
        login::complete_sign_in(&self.client, &app, ctx, callback, |token| {
            self.wants_profile(token)
        })
        .await
    }

    fn can_send_messages(&self) -> bool {
        self.app_tokens.is_some()
    }

    /// A customer-service text message into the person's chat with the Official
    /// Account (`subject` is their openid here).
    async fn send_message(
        &self,
        ctx: &RequestContext,
        subject: &str,
        text: &str,
    ) -> Result<(), ConnectorError> {
        let Some(app_tokens) = &self.app_tokens else {
            return Err(ConnectorError::new(Stage::Message, ErrorKind::Unsupported)
                .fix("set messages = true on this wechat-mp connector to send codes through the Official Account"));
        };
        app_tokens
            .send_text(subject, text, ctx.now)
            .await
            .map_err(ConnectorError::from)
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
            "sign in again inside WeChat",
        )
        .await?;
        let profile = self.profile(&token, ctx).await?;
        Ok(login::keep_refresh_expiry(
            self.identity(&token, profile, ctx.now),
            tokens,
        ))
    }
}
