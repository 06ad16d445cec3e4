//! Owns the `wechat-miniprogram` connector: WeChat Mini Program login (小程序).
//!
//! The Mini Program calls `wx.login()` and sends the `code` it gets to the
//! broker's token endpoint as an RFC 8693 token exchange (subject token type
//! [`SUBJECT_TOKEN_TYPE`]); the connector exchanges it at WeChat's
//! `sns/jscode2session` for the person's openid (the subject), the unionid
//! (the link key, scoped by the Open Platform account, so the same person
//! through the website QR, the Official Account, the mobile app and the Mini
//! Program is one broker account) and the session key.
//!
//! The session key is what WeChat encrypts and signs the person's data for the
//! Mini Program with; WeChat's rule is that it never leaves the developer's
//! servers. It goes into the identity's upstream tokens (as `access_token`,
//! `scope = "session_key"`), which the broker stores sealed under its master
//! key and never returns to an app. `wx.login` gives no profile (no name, no
//! avatar), and there is no upstream refresh: a Mini Program keeps the broker's
//! refresh token, or calls `wx.login` again. There is no browser flow.
//!
//! With `phone_number = true`, the exchange may carry a second code, from the
//! Mini Program's `getPhoneNumber` button, as the parameter
//! [`PHONE_CODE_PARAM`]: the connector trades it at WeChat's
//! `wxa/business/getuserphonenumber` (with the app token every broker instance
//! shares) for the number WeChat verified with the carrier, and reports it as a
//! verified phone the broker records on the account (`vouches_for_phone`).

use async_trait::async_trait;
use idbridge_core::{
    BeginRequest, BuildContext, CallbackRequest, ConfigError, Connector, ConnectorError,
    ConnectorFactory, ConnectorId, ConnectorSettings, ErrorKind, ExchangeRequest, ExternalIdentity,
    LinkKey, Problem, Profile, RequestContext, Stage, Started, UpstreamTokens,
};
use std::sync::Arc;
use wechat_api::{login, AppTokens, ExchangeSettings, MiniProgramSession, PhoneInfo, WeChatClient};

/// The RFC 8693 `subject_token_type` of a `wx.login` code.
pub const SUBJECT_TOKEN_TYPE: &str = "urn:idbridge:params:oauth:token-type:wechat_miniprogram_code";

/// The token-exchange parameter that carries a `getPhoneNumber` code.
pub const PHONE_CODE_PARAM: &str = "wechat_phone_code";

/// The connector's type in `[[connectors]]`.
pub const KIND: &str = "wechat-miniprogram";

/// Where the Mini Program admin console shows the AppID.
const APPID_WHERE: &str = "mp.weixin.qq.com > 开发 > 开发管理 > 开发设置 > AppID(小程序ID)";

pub struct WeChatMiniProgramFactory;

impl ConnectorFactory for WeChatMiniProgramFactory {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn build(
        &self,
        settings: &ConnectorSettings,
        ctx: &BuildContext,
    ) -> Result<Arc<dyn Connector>, Vec<ConfigError>> {
        let cfg = ExchangeSettings::parse(settings, APPID_WHERE)?;
        let client = cfg.client(&settings.id)?;
        // One app token per Mini Program, shared by every broker instance.
        let app_tokens = cfg.phone_number.then(|| {
            AppTokens::new(
                client.clone(),
                &cfg.appid,
                cfg.appsecret.expose(),
                ctx.shared.clone(),
            )
        });
        Ok(Arc::new(WeChatMiniProgram {
            app_tokens,
            id: settings.id.clone(),
            name: settings
                .name
                .clone()
                .unwrap_or_else(|| "微信小程序 WeChat Mini Program".to_owned()),
            cfg,
            client,
        }))
    }

    fn doctor(&self, settings: &ConnectorSettings, _ctx: &BuildContext) -> Vec<Problem> {
        match ExchangeSettings::parse(settings, APPID_WHERE) {
            Ok(cfg) => cfg.doctor(&settings.id, "the Mini Program"),
            // build() already reports these.
            Err(_) => Vec::new(),
        }
    }
}

pub struct WeChatMiniProgram {
    /// With `phone_number = true`.
    app_tokens: Option<AppTokens>,
    id: ConnectorId,
    name: String,
    cfg: ExchangeSettings,
    client: WeChatClient,
}

impl WeChatMiniProgram {
    fn no_browser_flow(&self, stage: Stage) -> ConnectorError {
        ConnectorError::new(stage, ErrorKind::Unsupported).fix(format!(
            "connector {} ({KIND}) has no browser sign-in: the Mini Program sends its wx.login code to the token endpoint (grant_type=urn:ietf:params:oauth:grant-type:token-exchange, subject_token_type={SUBJECT_TOKEN_TYPE})",
            self.id
        ))
    }

    /// What an operator reads for the failures a Mini Program causes most often.
    fn explain(&self, e: ConnectorError) -> ConnectorError {
        match (e.kind, e.upstream_code.as_deref()) {
            (ErrorKind::InvalidCode, Some("40029")) => e.fix(format!(
                "invalid code: the wx.login code is older than 5 minutes, made up, or from another Mini Program; if every exchange fails this way, the Mini Program runs under another AppID than connectors[{}].appid ({}) — WeChat DevTools' project AppID is a common culprit. The Mini Program must call wx.login again",
                self.id, self.cfg.appid
            )),
            (ErrorKind::CodeReused, _) => e.fix(
                "code been used: the Mini Program sent this wx.login code twice (a replay, or a retry after a lost response); each code works once: call wx.login again",
            ),
            (ErrorKind::UpstreamUnavailable, Some("-1")) => e.fix(
                "WeChat is busy (-1): the code may already be spent, so it is not retried; the Mini Program should call wx.login again and retry shortly",
            ),
            _ => e,
        }
    }

    /// The verified number behind a `getPhoneNumber` code, in E.164.
    async fn phone(&self, code: &str, now: i64) -> Result<String, ConnectorError> {
        let Some(app_tokens) = &self.app_tokens else {
            return Err(ConnectorError::new(Stage::Exchange, ErrorKind::InvalidRequest)
                .upstream("phone_number_off", "this connector does not take getPhoneNumber codes")
                .fix(format!(
                    "the Mini Program sent {PHONE_CODE_PARAM}, but connectors[{}].phone_number is not true: turn it on to record the number WeChat verified, or stop sending the parameter",
                    self.id
                )));
        };
        let code = login::exchanged_code(
            code,
            "malformed_phone_code",
            "the phone code is not a getPhoneNumber code",
            &format!("the Mini Program sent something in {PHONE_CODE_PARAM} that is not a getPhoneNumber code (empty, too long, or with spaces or control characters); send e.detail.code of the button's bindgetphonenumber event as it is"),
        )?;
        let info: PhoneInfo = app_tokens
            .phone_number(code, now)
            .await
            .map_err(ConnectorError::from)?;
        if info.watermark_appid != self.cfg.appid {
            return Err(ConnectorError::new(Stage::Exchange, ErrorKind::BadResponse)
                .upstream("watermark_mismatch", "the phone number's watermark names another Mini Program")
                .fix(format!(
                    "WeChat's answer names AppID {:?}, not connectors[{}].appid ({}): the number is not recorded; check that the broker calls WeChat for this Mini Program",
                    info.watermark_appid, self.id, self.cfg.appid
                )));
        }
        info.e164().ok_or_else(|| {
            ConnectorError::new(Stage::Exchange, ErrorKind::BadResponse)
                .upstream("bad_phone_number", "WeChat returned a number that is not E.164")
                .fix("WeChat's phone_info had a country code or number that is not digits (or longer than 15 digits together); nothing was recorded: report the answer to WeChat support")
        })
    }

    fn identity(&self, session: MiniProgramSession) -> ExternalIdentity {
        let unionid = session.unionid.filter(|u| !u.is_empty());
        let link_key = match (&self.cfg.open_platform_id, &unionid) {
            (Some(scope), Some(key)) => Some(LinkKey {
                scope: scope.clone(),
                key: key.clone(),
            }),
            _ => None,
        };
        ExternalIdentity {
            connector_id: self.id.clone(),
            raw_claims: serde_json::json!({
                "openid": session.openid,
                "unionid": unionid,
                "appid": self.cfg.appid,
            }),
            subject: session.openid,
            link_key,
            profile: Profile::default(),
            upstream_tokens: Some(UpstreamTokens {
                access_token: Some(session.session_key),
                scope: Some("session_key".to_owned()),
                ..UpstreamTokens::default()
            }),
        }
    }
}

#[async_trait]
impl Connector for WeChatMiniProgram {
    fn id(&self) -> &ConnectorId {
        &self.id
    }

    fn kind(&self) -> &'static str {
        KIND
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

    fn vouches_for_phone(&self) -> bool {
        self.app_tokens.is_some()
    }

    fn vouches_for_email(&self) -> bool {
        false
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
            "the subject_token is not a wx.login code",
            "the Mini Program sent something that is not a wx.login code (empty, too long, or with spaces or control characters); send the `code` of wx.login's success callback as it is",
        )?;
        let session = self
            .client
            .mini_program_session(&self.cfg.appid, self.cfg.appsecret.expose(), code)
            .await
            .map_err(|e| self.explain(ConnectorError::from(e.at_stage(Stage::Exchange))))?;
        let mut identity = self.identity(session);
        // After the sign-in code: an app that sends a phone code is refused
        // (nothing written) when the number cannot be had.
        if let Some(phone_code) = request.param(PHONE_CODE_PARAM) {
            identity.profile.phone_number = Some(self.phone(phone_code, ctx.now).await?);
            identity.profile.phone_number_verified = Some(true);
        }
        Ok(identity)
    }
}
