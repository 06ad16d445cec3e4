//! The `dingtalk` connector: sign in with DingTalk (钉钉) through an app's
//! "DingTalk login" (扫码登录 / 登录第三方网站). Setup, every key and
//! troubleshooting: `docs/connectors/dingtalk.md`.
//!
//! - `begin` sends the browser to `login.dingtalk.com/oauth2/auth`
//!   (`response_type=code`, `scope=openid`, `prompt=consent`, the broker's
//!   state). DingTalk comes back with **`authCode`** (not `code`).
//! - `complete` trades it at `POST api.dingtalk.com/v1.0/oauth2/userAccessToken`
//!   (JSON) for the person's token, then reads `GET /v1.0/contact/users/me`
//!   with the `x-acs-dingtalk-access-token` header.
//! - The subject is `{client_id}:{unionId}`: DingTalk's `unionId` names a person
//!   only within one developer organisation (the `openId` only within one
//!   app), so it is scoped by the app's Client ID, which belongs to exactly one
//!   developer: two developers' apps never give the same subject.
//! - `corp_ids`: without it any DingTalk account may sign in
//!   (casdoor/casdoor#1231). With it the connector asks for scope
//!   `openid corpid`, DingTalk makes the person pick one of *their*
//!   organisations and states it as `corpId` with the user token (server to
//!   server, bound to the authCode and the app secret); a `corpId` outside the
//!   list, or none, is `NotAllowed`.
//! - In DingTalk's own browser (`AliApp(DingTalk/…)`) the connector is
//!   `Preferred`: the same authorize URL signs the client's account in without
//!   a QR code.
//! - Refresh: the refresh token (30 days) gets a new token; the person must
//!   still be the same `unionId` (and in `corp_ids`).

mod api;
pub mod config;
pub mod errors;

use api::{Api, Grant, Me, UserToken};
use async_trait::async_trait;
use config::{DingTalkSettings, REFRESH_LIFETIME_SECS};
use idbridge_connector_kit::http::{check_secure_url, shown};
use idbridge_core::{
    Availability, BeginRequest, BuildContext, CallbackRequest, ClientClass, ConfigError, Connector,
    ConnectorError, ConnectorFactory, ConnectorId, ConnectorSettings, ErrorKind, ExternalIdentity,
    Locale, Problem, Profile, RequestContext, Stage, Started, UpstreamTokens,
};
use std::sync::Arc;

pub const KIND: &str = "dingtalk";

/// Builds `type = "dingtalk"` connectors.
pub struct DingTalkFactory;

impl ConnectorFactory for DingTalkFactory {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn build(
        &self,
        settings: &ConnectorSettings,
        _ctx: &BuildContext,
    ) -> Result<Arc<dyn Connector>, Vec<ConfigError>> {
        Ok(Arc::new(DingTalkConnector::new(settings)?))
    }

    /// Both base URLs are https (http only to loopback), the callback is
    /// https, and DingTalk's authorize page answers for the Client ID.
    fn doctor(&self, settings: &ConnectorSettings, ctx: &BuildContext) -> Vec<Problem> {
        let Ok(connector) = DingTalkConnector::new(settings) else {
            return Vec::new();
        };
        let callback = ctx.callback_url.clone();
        let id = connector.id.to_string();
        idbridge_connector_kit::doctor::run(format!("connectors[{id}]"), async move {
            connector.doctor_checks(&callback).await
        })
    }
}

pub struct DingTalkConnector {
    id: ConnectorId,
    name: String,
    settings: DingTalkSettings,
    http: reqwest::Client,
}

impl std::fmt::Debug for DingTalkConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DingTalkConnector")
            .field("id", &self.id)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn not_in_corps_advice(locale: Locale) -> &'static str {
    match locale {
        Locale::ZhCn => "此处仅允许指定组织的成员通过钉钉登录。请重新登录，并在钉钉的授权页面上选择你所在的该组织；如果你不是该组织的成员，请联系管理员。",
        Locale::En => "Only members of particular organisations may sign in here with DingTalk. Sign in again and pick that organisation on DingTalk's authorization page; if you are not a member, ask your administrator.",
    }
}

impl DingTalkConnector {
    pub fn new(settings: &ConnectorSettings) -> Result<Self, Vec<ConfigError>> {
        let parsed = DingTalkSettings::parse(settings)?;
        let ua = concat!("idbridge-dingtalk/", env!("CARGO_PKG_VERSION"));
        let http = idbridge_connector_kit::http::client(parsed.timeouts, ua).map_err(|e| {
            vec![ConfigError::new(
                format!("connectors[{}]", settings.id),
                format!("cannot build the HTTP client: {e}"),
            )]
        })?;
        Ok(Self {
            id: settings.id.clone(),
            name: settings
                .name
                .clone()
                .unwrap_or_else(|| "钉钉 DingTalk".into()),
            settings: parsed,
            http,
        })
    }

    pub fn settings(&self) -> &DingTalkSettings {
        &self.settings
    }

    fn api(&self) -> Api<'_> {
        Api {
            http: &self.http,
            settings: &self.settings,
            connector: self.id.to_string(),
        }
    }

    /// The authorize URL for `state` and `callback`.
    pub fn authorize_url(&self, state: &str, callback: &str) -> String {
        let base = format!("{}/oauth2/auth", self.settings.login_base_url);
        let mut pairs = vec![
            ("redirect_uri", callback),
            ("response_type", "code"),
            ("client_id", self.settings.client_id.as_str()),
            ("scope", self.settings.scope()),
            ("state", state),
            ("prompt", "consent"),
        ];
        // One organisation: DingTalk preselects it on the organisation step.
        if let [corp] = self.settings.corp_ids.as_slice() {
            pairs.push(("corpId", corp.as_str()));
        }
        match url::Url::parse_with_params(&base, &pairs) {
            Ok(u) => u.to_string(),
            Err(_) => base,
        }
    }

    /// `corpId` must be one of `corp_ids` (when set).
    fn check_corp(
        &self,
        ctx: &RequestContext,
        stage: Stage,
        token: &UserToken,
    ) -> Result<(), ConnectorError> {
        if self.settings.corp_ids.is_empty() {
            return Ok(());
        }
        let allowed = self.settings.corp_ids.join(", ");
        match &token.corp_id {
            Some(corp) if self.settings.corp_ids.contains(corp) => Ok(()),
            Some(corp) => Err(ConnectorError::new(stage, ErrorKind::NotAllowed)
                .upstream("corp_not_allowed", format!("the person signed in for organisation {corp}, which is not in corp_ids"))
                .fix(format!("the person picked organisation {corp} on DingTalk's page, which is not in corp_ids ({allowed}): if they should sign in, add that corpId to corp_ids; members of an allowed organisation pick it on DingTalk's page"))
                .advice(not_in_corps_advice(ctx.locale))),
            None => Err(ConnectorError::new(stage, ErrorKind::NotAllowed)
                .upstream("no_corp_id", "the user token came without a corpId")
                .fix(format!("DingTalk did not say which organisation the person signed in for, so corp_ids ({allowed}) cannot be checked: the authorize request asks for scope \"openid corpid\"; check the app may use it (an app of an organisation, not a personal one) and that login_base_url/api_base_url point at DingTalk"))
                .advice(not_in_corps_advice(ctx.locale))),
        }
    }

    fn identity(&self, ctx: &RequestContext, token: UserToken, me: Me) -> ExternalIdentity {
        let tokens = UpstreamTokens {
            access_token: Some(token.access_token),
            access_expires_at: token.expires_in.map(|s| ctx.now + s),
            refresh_expires_at: token
                .refresh_token
                .as_ref()
                .map(|_| ctx.now + REFRESH_LIFETIME_SECS),
            refresh_token: token.refresh_token,
            scope: Some(self.settings.scope().to_owned()),
        };
        let raw = serde_json::json!({
            "unionId": me.union_id,
            "openId": me.open_id,
            "nick": me.nick,
            "corpId": token.corp_id,
        });
        ExternalIdentity {
            connector_id: self.id.clone(),
            subject: format!("{}:{}", self.settings.client_id, me.union_id),
            link_key: None,
            profile: Profile {
                name: me.nick.clone(),
                preferred_username: me.nick,
                picture: me.avatar_url,
                // Set by the person or an admin; DingTalk does not verify it.
                email_verified: me.email.as_ref().map(|_| false),
                email: me.email,
                phone_number: me.phone,
                ..Profile::default()
            },
            upstream_tokens: Some(tokens),
            raw_claims: raw,
        }
    }

    async fn doctor_checks(&self, callback: &str) -> Vec<Problem> {
        let key = |k: &str| format!("connectors[{}].{k}", self.id);
        let mut problems = Vec::new();
        for (k, url) in [
            ("login_base_url", &self.settings.login_base_url),
            ("api_base_url", &self.settings.api_base_url),
        ] {
            if let Err(message) = check_secure_url(url) {
                problems.push(Problem {
                    key: key(k),
                    message,
                    fatal: true,
                });
            }
        }
        if check_secure_url(callback).is_err() {
            problems.push(Problem {
                key: key("client_id"),
                message: format!("the broker's callback {callback} is not https: DingTalk only redirects to the app's registered https redirect URL; give the broker an https issuer"),
                fatal: false,
            });
        }
        let url = self.authorize_url("idbridgeDoctorCheck", callback);
        match self.http.get(&url).send().await {
            Err(e) => problems.push(Problem {
                key: key("login_base_url"),
                message: format!(
                    "DingTalk's authorize page {} does not answer: {}",
                    shown(&url),
                    idbridge_connector_kit::transport::error_chain(&e.without_url())
                ),
                fatal: true,
            }),
            Ok(r) if !r.status().is_success() && !r.status().is_redirection() => {
                problems.push(Problem {
                    key: key("client_id"),
                    message: format!(
                        "DingTalk's authorize page {} answers HTTP {}: check client_id and that the broker's callback {callback} is the app's redirect URL (developer console → the app → Security settings)",
                        shown(&url),
                        r.status().as_u16()
                    ),
                    fatal: false,
                })
            }
            Ok(_) => {}
        }
        problems
    }
}

#[async_trait]
impl Connector for DingTalkConnector {
    fn id(&self) -> &ConnectorId {
        &self.id
    }

    fn kind(&self) -> &'static str {
        KIND
    }

    fn display_name(&self) -> &str {
        &self.name
    }

    /// `Preferred` in DingTalk's browser (it signs its own account in).
    fn availability(&self, ctx: &RequestContext) -> Availability {
        if ctx.client_class == ClientClass::DingTalk {
            Availability::Preferred
        } else {
            Availability::Available
        }
    }

    /// DingTalk does not verify the email a person or admin sets.
    fn vouches_for_email(&self) -> bool {
        false
    }

    async fn begin(
        &self,
        _ctx: &RequestContext,
        request: &BeginRequest,
    ) -> Result<Started, ConnectorError> {
        Ok(Started::redirect(
            self.authorize_url(&request.state, &request.callback_url),
        ))
    }

    async fn complete(
        &self,
        ctx: &RequestContext,
        callback: &CallbackRequest,
    ) -> Result<ExternalIdentity, ConnectorError> {
        if let Some(error) = callback.param("error") {
            let description = callback.param("error_description").unwrap_or("");
            return Err(idbridge_connector_kit::oauth_errors::authorization_error(
                error,
                &idbridge_connector_kit::oauth_errors::clean_description(description),
            ));
        }
        let Some(code) = callback
            .param("authCode")
            .or_else(|| callback.param("code"))
        else {
            return Err(ConnectorError::new(Stage::Callback, ErrorKind::InvalidRequest)
                .upstream("no_auth_code", "the callback has no authCode")
                .fix("DingTalk came back without authCode: the person closed DingTalk's page, or something between DingTalk and the broker dropped the query; if it repeats, check the app's redirect URL is exactly the broker's callback"));
        };
        let api = self.api();
        let token = api
            .user_token(Stage::TokenExchange, Grant::Code(code))
            .await?;
        self.check_corp(ctx, Stage::TokenExchange, &token)?;
        let me = api.me(Stage::Userinfo, &token.access_token).await?;
        Ok(self.identity(ctx, token, me))
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
        let Some(refresh) = tokens.refresh_token.as_deref() else {
            return Err(ConnectorError::new(Stage::Refresh, ErrorKind::Unsupported)
                .fix("DingTalk gave no refresh token at sign-in, so the person cannot be re-checked: turn recheck_on_refresh off for this connector"));
        };
        let api = self.api();
        let token = api
            .user_token(Stage::Refresh, Grant::Refresh(refresh))
            .await?;
        self.check_corp(ctx, Stage::Refresh, &token)?;
        let me = api.me(Stage::Refresh, &token.access_token).await?;
        let identity = self.identity(ctx, token, me);
        if identity.subject != subject {
            return Err(ConnectorError::new(Stage::Refresh, ErrorKind::NotAllowed)
                .upstream("subject_changed", "the refreshed token is another person's")
                .fix("DingTalk answered the refresh with another unionId than the sign-in's: the stored tokens are not this person's; they sign in again"));
        }
        Ok(identity)
    }
}
