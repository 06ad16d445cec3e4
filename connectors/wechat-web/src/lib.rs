//! The `wechat-web` connector: WeChat website login (Open Platform 网站应用). The
//! person scans a QR code (or confirms in desktop WeChat) on WeChat's qrconnect page,
//! or on an embedded QR inside the broker's own page; WeChat sends them back to
//! `{issuer}/callback/{id}` with a code, which is exchanged for the openid (subject),
//! the unionid (link key, scoped by the Open Platform account) and the profile.

mod config;

pub use config::WebSettings;

use async_trait::async_trait;
use idbridge_core::{
    escape_html, Begin, BeginRequest, BuildContext, CallbackRequest, ConfigError, Connector,
    ConnectorError, ConnectorFactory, ConnectorId, ConnectorSettings, ErrorKind, ExternalIdentity,
    Locale, Problem, RequestContext, Stage, Started, UpstreamTokens,
};
use std::sync::Arc;
use wechat_api::{encode_component, login, qrconnect_url, SnsToken, WeChatClient};

pub struct WeChatWebFactory;

impl ConnectorFactory for WeChatWebFactory {
    fn kind(&self) -> &'static str {
        "wechat-web"
    }

    fn build(
        &self,
        settings: &ConnectorSettings,
        _ctx: &BuildContext,
    ) -> Result<Arc<dyn Connector>, Vec<ConfigError>> {
        let cfg = WebSettings::parse(settings)?;
        let client = cfg.client(&settings.id)?;
        Ok(Arc::new(WeChatWeb {
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
        match WebSettings::parse(settings) {
            Ok(cfg) => cfg.doctor(&settings.id, ctx),
            // build() already reports these.
            Err(_) => Vec::new(),
        }
    }
}

pub struct WeChatWeb {
    id: ConnectorId,
    name: String,
    cfg: WebSettings,
    client: WeChatClient,
}

impl WeChatWeb {
    fn lang(&self, ctx: &RequestContext) -> &'static str {
        match self.cfg.lang.as_str() {
            "cn" => "cn",
            "en" => "en",
            _ => match ctx.locale {
                Locale::ZhCn => "cn",
                Locale::En => "en",
            },
        }
    }

    /// The embedded QR: WeChat's own qrconnect page in an iframe, exactly what
    /// wxLogin.js would create, so the broker's page needs no script at all.
    fn embedded_page(&self, ctx: &RequestContext, request: &BeginRequest) -> Begin {
        let lang = self.lang(ctx);
        let mut src = format!(
            "{}/connect/qrconnect?appid={}&scope=snsapi_login&redirect_uri={}&state={}&login_type=jssdk&self_redirect=false&style={}&lang={}",
            self.cfg.open_base_url.trimmed(),
            encode_component(&self.cfg.appid),
            encode_component(&request.callback_url),
            encode_component(&request.state),
            encode_component(&self.cfg.qr_style),
            lang,
        );
        if let Some(href) = &self.cfg.qr_css_url {
            src.push_str("&href=");
            src.push_str(&encode_component(href));
        }
        if self.cfg.fast_login {
            src.push_str("&fast_login=1");
        }
        let (title, hint, other) = if lang == "cn" {
            (
                "微信扫码登录",
                "请使用微信扫描二维码登录",
                "无法扫码？在新页面打开",
            )
        } else {
            (
                "Sign in with WeChat",
                "Scan the QR code with WeChat to sign in",
                "Cannot scan? Open the WeChat page",
            )
        };
        let full = qrconnect_url(
            self.cfg.open_base_url.as_str(),
            &self.cfg.appid,
            &request.callback_url,
            &request.state,
            Some(lang),
        );
        let body_html = format!(
            "<p>{hint}</p>\
             <iframe title=\"{title}\" src=\"{src}\" width=\"300\" height=\"400\" \
             sandbox=\"allow-scripts allow-top-navigation allow-same-origin allow-forms\"></iframe>\
             <p><a href=\"{full}\">{other}</a></p>",
            src = escape_html(&src),
            full = escape_html(&full),
        );
        Begin::Page {
            title: title.to_owned(),
            body_html,
            script_sources: Vec::new(),
            frame_sources: vec![self.cfg.open_base_url.origin()],
        }
    }
}

impl WeChatWeb {
    fn login_app(&self) -> login::LoginApp<'_> {
        login::LoginApp {
            connector_id: &self.id,
            appid: &self.cfg.appid,
            appsecret: self.cfg.appsecret.expose(),
            open_platform_id: self.cfg.open_platform_id.as_deref(),
        }
    }

    fn identity(
        &self,
        token: &SnsToken,
        profile: &wechat_api::UserInfo,
        now: i64,
    ) -> ExternalIdentity {
        login::identity(
            &self.id,
            &self.cfg.appid,
            self.cfg.open_platform_id.as_deref(),
            token,
            Some(profile),
            now,
        )
    }
}

#[async_trait]
impl Connector for WeChatWeb {
    fn id(&self) -> &ConnectorId {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "wechat-web"
    }

    fn display_name(&self) -> &str {
        &self.name
    }

    /// The embedded QR code is shown on the sign-in page itself.
    fn shows_inline(&self) -> bool {
        self.cfg.mode == "embedded"
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
        let begin = if self.cfg.mode == "embedded" {
            self.embedded_page(ctx, request)
        } else {
            Begin::Redirect(qrconnect_url(
                self.cfg.open_base_url.as_str(),
                &self.cfg.appid,
                &request.callback_url,
                &request.state,
                Some(self.lang(ctx)),
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
        // A website app's token (snsapi_login) always may fetch the profile.
        login::complete_sign_in(&self.client, &self.login_app(), ctx, callback, |_| true).await
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
            "scan again",
        )
        .await?;
        let profile = login::fetch_profile(&self.client, &token, ctx.locale).await?;
        Ok(login::keep_refresh_expiry(
            self.identity(&token, &profile, ctx.now),
            tokens,
        ))
    }
}
