//! The `wecom` connector: sign in with WeCom (企业微信) through a self-built
//! app (自建应用). Setup, every key and troubleshooting: `docs/connectors/wecom.md`.
//!
//! - In an ordinary browser `begin` sends the person to WeCom's web QR login
//!   (`login.work.weixin.qq.com/wwlogin/sso/login`, `login_type=CorpApp`,
//!   `appid` = corp id, `agentid`); inside the WeCom client (User-Agent
//!   `wxwork/`) to the in-WeCom authorize page
//!   (`open.weixin.qq.com/connect/oauth2/authorize`, `snsapi_base`, silent),
//!   and the connector is `Preferred` there.
//! - The callback's code goes to `cgi-bin/auth/getuserinfo` with the corp
//!   access token ([`corp_token::CorpTokens`]: one per app, shared by every
//!   broker instance); a member comes back as `userid`, then `cgi-bin/user/get`
//!   gives the name (`profile = "basic"`). With `profile = "private"` the
//!   in-WeCom page asks for `snsapi_privateinfo`; a member who allows it comes
//!   back with a `user_ticket`, and `cgi-bin/auth/getuserdetail` gives the
//!   avatar, mobile and email the admin picked for the app (never verified).
//! - The subject is `{corp_id}:{userid}`: a userid is unique only within its
//!   corp, and an operator may rename it but WeCom never reuses one in the
//!   corp at the same time. A non-member (a WeChat user outside the corp) comes
//!   back with an `openid` only; refused unless `allow_non_members`, then
//!   `{corp_id}:openid:{openid}` (a userid has no `:`, so the two never meet).
//! - errcodes are mapped in [`errcodes`]; 42001 (token expired) and 40014 drop
//!   the cached token and call once more.

mod api;
pub mod config;
mod corp_token;
pub mod errcodes;

use api::{Api, Detail, Failure, Member};
use async_trait::async_trait;
use config::WeComSettings;
use corp_token::CorpTokens;
use idbridge_core::{
    Availability, BeginRequest, BuildContext, CallbackRequest, ClientClass, ConfigError, Connector,
    ConnectorError, ConnectorFactory, ConnectorId, ConnectorSettings, ErrorKind, ExternalIdentity,
    Locale, Problem, Profile, RequestContext, Stage, Started,
};
use std::sync::Arc;

pub const KIND: &str = "wecom";

/// Builds `type = "wecom"` connectors.
pub struct WeComFactory;

impl ConnectorFactory for WeComFactory {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn build(
        &self,
        settings: &ConnectorSettings,
        ctx: &BuildContext,
    ) -> Result<Arc<dyn Connector>, Vec<ConfigError>> {
        let cfg = WeComSettings::parse(settings)?;
        let api = Api::new(&cfg.api_base_url, cfg.timeouts)
            .map(|a| a.for_connector(settings.id.as_str()))
            .map_err(|e| {
                vec![ConfigError::new(
                    format!("connectors[{}]", settings.id),
                    format!("cannot build the HTTP client: {e}"),
                )]
            })?;
        let tokens = CorpTokens::new(
            api.clone(),
            &cfg.corp_id,
            cfg.agent_id,
            cfg.corp_secret.expose(),
            ctx.shared.clone(),
        );
        Ok(Arc::new(WeCom {
            id: settings.id.clone(),
            name: settings
                .name
                .clone()
                .unwrap_or_else(|| "企业微信 WeCom".to_owned()),
            cfg,
            api,
            tokens,
        }))
    }

    /// The callback's host is the app's trusted domain; the URLs are https;
    /// and WeCom gives a corp token for `corp_id` and `corp_secret` to this
    /// machine (a wrong secret, corp id or an untrusted IP shows here, before
    /// anyone signs in). WeCom's `gettoken` answers the same token while it
    /// is valid, so asking retires nothing the instances share.
    fn doctor(&self, settings: &ConnectorSettings, ctx: &BuildContext) -> Vec<Problem> {
        let Ok(cfg) = WeComSettings::parse(settings) else {
            // build() already reports these.
            return Vec::new();
        };
        let id = settings.id.to_string();
        let mut problems = cfg.doctor(&id, &ctx.callback_url);
        if problems.iter().any(|p| p.fatal) {
            return problems;
        }
        let Ok(api) = Api::new(&cfg.api_base_url, cfg.timeouts) else {
            return problems;
        };
        let key = format!("connectors[{id}]");
        problems.extend(idbridge_connector_kit::doctor::run(
            key.clone(),
            async move {
                match api.gettoken(&cfg.corp_id, cfg.corp_secret.expose()).await {
                    Ok(_) => Vec::new(),
                    Err(e) => {
                        let which = match e.errcode() {
                            Some(errcodes::INVALID_SECRET) => "corp_secret",
                            Some(errcodes::INVALID_CORP_ID) => "corp_id",
                            _ => "api_base_url",
                        };
                        vec![Problem {
                            key: format!("{key}.{which}"),
                            message: e.at(Stage::Setup).to_string(),
                            fatal: true,
                        }]
                    }
                }
            },
        ));
        problems
    }
}

pub struct WeCom {
    id: ConnectorId,
    name: String,
    cfg: WeComSettings,
    api: Api,
    tokens: CorpTokens,
}

fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn not_member_advice(locale: Locale) -> &'static str {
    match locale {
        Locale::ZhCn => "此处仅允许本企业的企业微信成员登录。请使用你所在企业的企业微信扫码，或联系管理员将你加入企业。",
        Locale::En => "Only members of this organisation's WeCom may sign in here. Scan with the WeCom app of your organisation, or ask an administrator to add you.",
    }
}

fn not_visible_advice(locale: Locale) -> &'static str {
    match locale {
        Locale::ZhCn => "你不在该应用的可见范围内。请联系企业微信管理员把你加入该应用的可见范围，然后重新登录。",
        Locale::En => "You are not in this app's visible range in WeCom. Ask your WeCom administrator to add you to the app's visible range, then sign in again.",
    }
}

impl WeCom {
    /// The web QR login page.
    fn qr_url(&self, request: &BeginRequest, locale: Locale) -> String {
        format!(
            "{}/wwlogin/sso/login?login_type=CorpApp&appid={}&agentid={}&redirect_uri={}&state={}&lang={}",
            self.cfg.login_base_url.trimmed(),
            encode(&self.cfg.corp_id),
            self.cfg.agent_id,
            encode(&request.callback_url),
            request.state,
            if locale == Locale::ZhCn { "zh" } else { "en" },
        )
    }

    /// The in-WeCom authorize page: silent (`snsapi_base`), or asking the member
    /// to allow their details (`snsapi_privateinfo`, `profile = "private"`).
    fn in_app_url(&self, request: &BeginRequest) -> String {
        format!(
            "{}/connect/oauth2/authorize?appid={}&redirect_uri={}&response_type=code&scope={}&state={}&agentid={}#wechat_redirect",
            self.cfg.open_base_url.trimmed(),
            encode(&self.cfg.corp_id),
            encode(&request.callback_url),
            if self.cfg.private_info {
                "snsapi_privateinfo"
            } else {
                "snsapi_base"
            },
            request.state,
            self.cfg.agent_id,
        )
    }

    fn identity(
        &self,
        subject: String,
        profile: Profile,
        raw: serde_json::Value,
    ) -> ExternalIdentity {
        ExternalIdentity {
            connector_id: self.id.clone(),
            subject,
            link_key: None,
            profile,
            upstream_tokens: None,
            raw_claims: raw,
        }
    }

    fn member_identity(
        &self,
        userid: &str,
        member: Option<Member>,
        detail: Option<Detail>,
    ) -> ExternalIdentity {
        let given = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
        let d = detail.as_ref();
        // The corp mailbox first, then the address in the directory; neither is
        // verified by WeCom towards the app, and neither is a phone check.
        let email = d.and_then(|d| given(&d.biz_mail).or_else(|| given(&d.email)));
        let phone = d.and_then(|d| given(&d.mobile)).map(|m| e164(&m));
        let profile = Profile {
            name: member
                .as_ref()
                .and_then(|m| m.name.clone())
                .filter(|n| !n.is_empty()),
            preferred_username: Some(userid.to_owned()),
            picture: d.and_then(|d| given(&d.avatar)),
            email_verified: email.as_ref().map(|_| false),
            email,
            phone_number_verified: phone.as_ref().map(|_| false),
            phone_number: phone,
            ..Profile::default()
        };
        let mut raw = serde_json::json!({
            "corp_id": self.cfg.corp_id,
            "userid": userid,
            "member": true,
        });
        if let Some(m) = member {
            raw["name"] = serde_json::json!(m.name);
            raw["alias"] = serde_json::json!(m.alias.filter(|a| !a.is_empty()));
            raw["position"] = serde_json::json!(m.position.filter(|p| !p.is_empty()));
            raw["department"] = serde_json::json!(m.department);
        }
        if let Some(d) = detail {
            raw["detail"] = serde_json::json!(d);
        }
        self.identity(format!("{}:{userid}", self.cfg.corp_id), profile, raw)
    }
}

#[async_trait]
impl Connector for WeCom {
    fn id(&self) -> &ConnectorId {
        &self.id
    }

    fn kind(&self) -> &'static str {
        KIND
    }

    fn display_name(&self) -> &str {
        &self.name
    }

    /// Inside the WeCom client the in-app flow signs the member in without a
    /// scan: preferred there.
    fn availability(&self, ctx: &RequestContext) -> Availability {
        if ctx.client_class == ClientClass::WeCom {
            Availability::Preferred
        } else {
            Availability::Available
        }
    }

    async fn begin(
        &self,
        ctx: &RequestContext,
        request: &BeginRequest,
    ) -> Result<Started, ConnectorError> {
        let state_ok = !request.state.is_empty()
            && request.state.len() <= 128
            && request.state.bytes().all(|b| b.is_ascii_alphanumeric());
        if !state_ok {
            return Err(ConnectorError::new(Stage::Begin, ErrorKind::Misconfigured)
                .fix("the broker's state must be 1-128 characters of a-zA-Z0-9 for WeCom"));
        }
        let url = if ctx.client_class == ClientClass::WeCom {
            self.in_app_url(request)
        } else {
            self.qr_url(request, ctx.locale)
        };
        Ok(Started::redirect(url))
    }

    async fn complete(
        &self,
        ctx: &RequestContext,
        callback: &CallbackRequest,
    ) -> Result<ExternalIdentity, ConnectorError> {
        let Some(code) = callback.param("code") else {
            // WeCom's refusal: back to redirect_uri?state=STATE, no code.
            return Err(
                ConnectorError::new(Stage::Callback, ErrorKind::UserCancelled)
                    .upstream("no_code", "WeCom came back without a code")
                    .fix("the person refused or closed WeCom's page; nothing to fix"),
            );
        };
        let code = code.to_owned();
        let visitor = self
            .tokens
            .with_token(Stage::TokenExchange, ctx.now, |token| {
                let api = self.api.clone();
                let code = code.clone();
                async move { api.getuserinfo(&token, &code).await }
            })
            .await
            .map_err(|e| e.at(Stage::TokenExchange))?;
        if let Some(userid) = visitor.userid.filter(|u| !u.is_empty()) {
            let member = if self.cfg.fetch_member {
                let found = self
                    .tokens
                    .with_token(Stage::Userinfo, ctx.now, |token| {
                        let api = self.api.clone();
                        let userid = userid.clone();
                        async move { api.user_get(&token, &userid).await }
                    })
                    .await;
                match found {
                    Ok(m) => Some(m),
                    Err(
                        e @ Failure::Errcode {
                            errcode: errcodes::NO_PRIVILEGE,
                            ..
                        },
                    ) => return Err(e.at(Stage::Userinfo).advice(not_visible_advice(ctx.locale))),
                    Err(e) => return Err(e.at(Stage::Userinfo)),
                }
            } else {
                None
            };
            let detail = match visitor.user_ticket.filter(|t| !t.is_empty()) {
                Some(ticket) if self.cfg.private_info => self
                    .tokens
                    .with_token(Stage::Userinfo, ctx.now, |token| {
                        let api = self.api.clone();
                        let ticket = ticket.clone();
                        async move { api.getuserdetail(&token, &ticket).await }
                    })
                    .await
                    .map_err(|e| e.at(Stage::Userinfo))?
                    .into(),
                _ => None,
            };
            return Ok(self.member_identity(&userid, member, detail));
        }
        match visitor.openid.filter(|o| !o.is_empty()) {
            Some(openid) if self.cfg.allow_non_members => Ok(self.identity(
                format!("{}:openid:{openid}", self.cfg.corp_id),
                Profile::default(),
                serde_json::json!({ "corp_id": self.cfg.corp_id, "openid": openid, "member": false }),
            )),
            Some(_) => Err(ConnectorError::new(Stage::TokenExchange, ErrorKind::NotAllowed)
                .upstream("not_a_member", "WeCom answered an openid: the person is not a member of the corp")
                .fix(format!("a WeChat user outside corp {} signed in; they are refused because allow_non_members is false. Add them to the corp, or set allow_non_members = true to let non-members in", self.cfg.corp_id))
                .advice(not_member_advice(ctx.locale))),
            None => Err(ConnectorError::new(Stage::TokenExchange, ErrorKind::BadResponse)
                .upstream("no_userid", "auth/getuserinfo answered neither userid nor openid")
                .fix("WeCom's answer named nobody: check api_base_url; if it is WeCom's, retry")),
        }
    }

    /// WeCom reports no verified email to a self-built app (nor a verified phone:
    /// `auth/getuserdetail`'s mobile is what the directory holds).
    fn vouches_for_email(&self) -> bool {
        false
    }
}

/// A mobile number as WeCom's directory holds it, as E.164 where it can tell:
/// eleven digits starting with 1 are a mainland China number; anything else
/// (with `+` or a country code already) is kept as given.
fn e164(mobile: &str) -> String {
    let m = mobile.trim();
    if m.len() == 11 && m.starts_with('1') && m.bytes().all(|b| b.is_ascii_digit()) {
        format!("+86{m}")
    } else {
        m.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::e164;

    #[test]
    fn mainland_mobiles_become_e164_and_others_stay_as_given() {
        assert_eq!(e164("13800138000"), "+8613800138000");
        assert_eq!(e164(" 13800138000 "), "+8613800138000");
        assert_eq!(e164("+85291234567"), "+85291234567");
        assert_eq!(e164("8613800138000"), "8613800138000");
        assert_eq!(e164("23800138000"), "23800138000");
    }
}
