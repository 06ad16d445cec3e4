//! Owns the WeChat error taxonomy: [`WeChatError`], the errcode → kind/fix table (keyed
//! by which API answered, since one errcode means different things on different calls)
//! and the conversion into the broker's [`ConnectorError`].
//!
//! Every `fix` is a sentence an operator can act on without reading code. Nothing in
//! here ever holds a secret, a code or a token: callers pass in text that
//! [`crate::body`] has already redacted.

use idbridge_core::{ConnectorError, ErrorKind, Stage};
use std::fmt;
use std::time::Duration;

/// Which WeChat API call failed. Decides what an errcode means and the default stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    /// `GET /sns/oauth2/access_token` (code → user token).
    SnsAccessToken,
    /// `GET /sns/oauth2/refresh_token`.
    SnsRefreshToken,
    /// `GET /sns/userinfo`.
    SnsUserinfo,
    /// `GET /sns/auth` (is this user token still valid?).
    SnsAuth,
    /// `GET /cgi-bin/token` (app token).
    CgiToken,
    /// `POST /cgi-bin/stable_token` (app token).
    CgiStableToken,
    /// `POST /cgi-bin/message/custom/send` (customer-service message).
    CustomSend,
    /// `GET /sns/jscode2session` (a Mini Program's `wx.login` code → openid and
    /// session_key).
    JsCode2Session,
    /// `POST /wxa/business/getuserphonenumber` (a Mini Program's
    /// `getPhoneNumber` code → the person's verified number; app token).
    PhoneNumber,
}

impl Api {
    /// The request path on the API host.
    pub fn path(self) -> &'static str {
        match self {
            Api::SnsAccessToken => "/sns/oauth2/access_token",
            Api::SnsRefreshToken => "/sns/oauth2/refresh_token",
            Api::SnsUserinfo => "/sns/userinfo",
            Api::SnsAuth => "/sns/auth",
            Api::CgiToken => "/cgi-bin/token",
            Api::CgiStableToken => "/cgi-bin/stable_token",
            Api::CustomSend => "/cgi-bin/message/custom/send",
            Api::JsCode2Session => "/sns/jscode2session",
            Api::PhoneNumber => "/wxa/business/getuserphonenumber",
        }
    }

    /// The HTTP method WeChat expects.
    pub fn method(self) -> &'static str {
        match self {
            Api::CgiStableToken | Api::CustomSend | Api::PhoneNumber => "POST",
            _ => "GET",
        }
    }

    /// The stage a failure of this call is reported at, unless the caller re-stages it
    /// with [`WeChatError::at_stage`] (e.g. the mobile-app connector reports a code
    /// exchange at [`Stage::Exchange`]). App-token and message calls default to
    /// [`Stage::Callback`]: they happen while finishing a sign-in.
    pub fn default_stage(self) -> Stage {
        match self {
            Api::SnsAccessToken | Api::JsCode2Session => Stage::TokenExchange,
            Api::SnsRefreshToken | Api::SnsAuth => Stage::Refresh,
            Api::SnsUserinfo => Stage::Userinfo,
            Api::CgiToken | Api::CgiStableToken | Api::CustomSend => Stage::Callback,
            Api::PhoneNumber => Stage::Exchange,
        }
    }

    fn fetches_app_token(self) -> bool {
        matches!(self, Api::CgiToken | Api::CgiStableToken)
    }
}

impl fmt::Display for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method(), self.path())
    }
}

/// A failed WeChat call, typed for the broker.
///
/// - `errcode`/`errmsg`: WeChat's own, verbatim (the `rid:` in errmsg is what WeChat
///   support asks for), when WeChat sent them. For failures without an errcode
///   (timeouts, HTTP errors, unparseable bodies) `errmsg` holds a short, sanitized
///   description of what came back instead.
/// - `fix`: what an operator should do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct WeChatError {
    pub stage: Stage,
    pub kind: ErrorKind,
    /// The call that failed (not in the brief's shape; kept because the same errcode
    /// means different things on different calls, and callers such as the app-token
    /// cache need to know which one it was).
    pub api: Api,
    pub errcode: Option<i64>,
    pub errmsg: Option<String>,
    pub fix: String,
}

impl fmt::Display for WeChatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "wechat {}: stage={} kind={}",
            self.api,
            self.stage.as_str(),
            self.kind.as_str()
        )?;
        if let Some(code) = self.errcode {
            write!(f, " errcode={code}")?;
        }
        if let Some(msg) = &self.errmsg {
            write!(f, " errmsg={msg:?}")?;
        }
        write!(f, " fix={:?}", self.fix)
    }
}

impl From<WeChatError> for ConnectorError {
    fn from(e: WeChatError) -> Self {
        ConnectorError {
            stage: e.stage,
            kind: e.kind,
            upstream_code: e.errcode.map(|c| c.to_string()),
            upstream_message: e.errmsg,
            fix: Some(e.fix),
            advice: None,
        }
    }
}

/// errcode -1: WeChat is busy.
pub const ERRCODE_BUSY: i64 = -1;
/// errcode 40163: the code was already used.
pub const ERRCODE_CODE_USED: i64 = 40163;

impl WeChatError {
    /// Report the failure at another stage (the errcode mapping stays).
    #[must_use]
    pub fn at_stage(mut self, stage: Stage) -> Self {
        self.stage = stage;
        self
    }

    /// WeChat answered -1 (system busy).
    pub fn is_busy(&self) -> bool {
        self.errcode == Some(ERRCODE_BUSY)
    }

    /// Whether trying again may help (delegates to [`ErrorKind::retryable`]).
    pub fn is_retryable(&self) -> bool {
        self.kind.retryable()
    }

    /// A message send was refused because the app token is stale, superseded, invalid
    /// or expired (40001, 40014, 42001 on `custom/send`): the cached app token must be
    /// dropped and fetched again.
    pub fn app_token_rejected(&self) -> bool {
        matches!(self.api, Api::CustomSend | Api::PhoneNumber)
            && matches!(self.errcode, Some(40001 | 40014 | 42001))
    }

    /// Builds the error for a non-zero errcode. `errmsg` must already be redacted.
    pub(crate) fn from_errcode(api: Api, errcode: i64, errmsg: Option<String>) -> Self {
        let (kind, fix) = classify(api, errcode);
        Self {
            stage: api.default_stage(),
            kind,
            api,
            errcode: Some(errcode),
            errmsg,
            fix,
        }
    }

    /// Builds an error that carries no errcode (transport, HTTP, body problems).
    pub(crate) fn local(api: Api, kind: ErrorKind, errmsg: Option<String>, fix: String) -> Self {
        Self {
            stage: api.default_stage(),
            kind,
            api,
            errcode: None,
            errmsg,
            fix,
        }
    }

    /// A code exchange got -1, was retried once, and the retry got 40163: the busy
    /// attempt had spent the code. Reported as UpstreamUnavailable, not CodeReused, so a
    /// connector does not mistake it for WeChat's harmless double callback.
    pub(crate) fn code_spent_after_busy(retry: WeChatError) -> Self {
        Self {
            kind: ErrorKind::UpstreamUnavailable,
            fix: "WeChat answered busy (-1) to the code exchange and the single retry got \
                  40163: the busy attempt had already spent the code, so this is not a \
                  replay. WeChat was unavailable; ask the person to sign in again"
                .to_owned(),
            ..retry
        }
    }
}

/// Seconds for an operator, without noise: 0.3, 3, 10.
pub(crate) fn seconds(d: Duration) -> String {
    format!("{}", d.as_secs_f64())
}

const USER_TOKEN_INVALID: &str =
    "user access token invalid or expired: refresh it, or restart login";
const APP_TOKEN_STALE: &str = "app token stale or superseded: something else fetched a newer \
     app token for this appid (each fetch retires the previous one after about 5 minutes). Use \
     one shared, cached app token with a single refresher; drop the cached token and fetch again";

/// The errcode table. Keep in step with WECHAT.md's "Error codes worth naming".
fn classify(api: Api, code: i64) -> (ErrorKind, String) {
    use ErrorKind as K;
    let (kind, fix): (ErrorKind, &str) = match code {
        -1 if api == Api::SnsAccessToken => (
            K::UpstreamUnavailable,
            "WeChat is busy (-1): retry shortly. A code exchange may be retried once \
             (exchange_code_with_retry); a 40163 after that means the busy attempt spent the code",
        ),
        -1 => (K::UpstreamUnavailable, "WeChat is busy (-1): retry shortly"),
        40001 => match api {
            Api::CgiToken | Api::CgiStableToken => (
                K::BadCredentials,
                "wrong secret: WeChat answers 40001 on cgi-bin/token when the appsecret does \
                 not match the appid; check appsecret in config (it may have been reset on \
                 the WeChat side)",
            ),
            Api::CustomSend | Api::PhoneNumber => (K::BadCredentials, APP_TOKEN_STALE),
            Api::SnsAccessToken => (
                K::BadCredentials,
                "invalid credential on the code exchange: the appsecret is most likely wrong \
                 or was reset on the WeChat side; check appsecret in config",
            ),
            Api::SnsRefreshToken | Api::SnsUserinfo | Api::SnsAuth => {
                (K::InvalidCode, USER_TOKEN_INVALID)
            }
            Api::JsCode2Session => (
                K::BadCredentials,
                "invalid credential on jscode2session: the Mini Program's AppSecret is most \
                 likely wrong or was reset; check appsecret in config",
            ),
        },
        40003 if api == Api::CustomSend => (
            K::InvalidRequest,
            "invalid openid: touser is not an openid of this Official Account (openids are \
             per app; one from the website or mobile app does not work here)",
        ),
        40003 => (
            K::InvalidRequest,
            "invalid openid: the openid does not belong to this access token (an openid from \
             another app, or another user's token)",
        ),
        40013 => (
            K::BadCredentials,
            "appid wrong in config: check for typos, and that it is this app's appid (not \
             another app's, nor the Open Platform account id)",
        ),
        40014 if matches!(api, Api::CustomSend | Api::PhoneNumber) => (
            K::BadCredentials,
            "invalid app token: drop the cached app token and fetch a new one; if it keeps \
             happening, another system is fetching app tokens for this appid",
        ),
        40014 => (K::InvalidCode, USER_TOKEN_INVALID),
        40029 if api == Api::PhoneNumber => (
            K::InvalidCode,
            "invalid phone code: the getPhoneNumber code is older than 5 minutes, already \
             used, made up, or from another Mini Program; the person taps the phone button \
             again (each code works once), and the Mini Program sends the new code",
        ),
        40029 => (
            K::InvalidCode,
            "invalid code: expired, for another appid, or made up: restart login (if every \
             login fails this way, check that the authorize URL and the exchange use the same \
             appid)",
        ),
        40030 => (
            K::InvalidCode,
            "invalid refresh_token: expired (30 days), for another appid, or malformed: \
             restart login",
        ),
        40125 => (
            K::BadCredentials,
            "secret wrong or reset on the WeChat side: copy the current AppSecret from the \
             WeChat console into appsecret",
        ),
        40163 => (
            K::CodeReused,
            "code been used: a replay, or WeChat's double callback (it can call the \
             redirect_uri twice); if this sign-in already succeeded ignore it, otherwise \
             restart login",
        ),
        40164 => (
            K::Misconfigured,
            "caller IP not in the allow-list: add the broker's egress IP to the allow-list in \
             the WeChat console (errmsg names the IP WeChat saw)",
        ),
        41001 if matches!(api, Api::CustomSend | Api::PhoneNumber) => (
            K::InvalidRequest,
            "access_token missing: the message was sent without an app token (empty cached \
             token?)",
        ),
        41001 => (
            K::InvalidRequest,
            "access_token missing: the call was made without a user access token (empty \
             stored token?): restart login",
        ),
        41002 => (
            K::Misconfigured,
            "appid missing: the appid is empty in config",
        ),
        41003 => (
            K::InvalidRequest,
            "refresh_token missing: no stored refresh token was sent; restart login",
        ),
        41004 => (
            K::Misconfigured,
            "secret missing: the appsecret is empty in config (check appsecret or \
             appsecret_file)",
        ),
        41008 => (
            K::InvalidRequest,
            "code missing: the callback carried no code (the person may have refused); \
             restart login",
        ),
        42001 if matches!(api, Api::CustomSend | Api::PhoneNumber) => (
            K::BadCredentials,
            "app token expired (7200 s): drop the cached app token and fetch a new one; \
             refresh it before it expires",
        ),
        42001 => (
            K::InvalidCode,
            "user access token expired (7200 s): refresh it, or restart login",
        ),
        42002 => (
            K::InvalidCode,
            "refresh_token expired (30 days; it cannot be renewed): restart login",
        ),
        42003 => (
            K::InvalidCode,
            "code expired (single use, 5 to 10 minutes): restart login; if it happens every \
             time, look for callbacks being queued or delayed before the exchange",
        ),
        45009 if api.fetches_app_token() => (
            K::RateLimited,
            "daily quota reached: app tokens were fetched too often (cgi-bin/token 2000 a day, \
             stable_token force_refresh 20 a day). Cache one shared token with a single \
             refresher; the quota resets daily or can be cleared in the WeChat console",
        ),
        45009 => (
            K::RateLimited,
            "daily quota reached for this API and appid: wait for the daily reset, or clear \
             the quota in the WeChat console",
        ),
        45011 if api == Api::JsCode2Session => (
            K::RateLimited,
            "too frequent: WeChat allows 100 jscode2session calls per person per minute; the \
             Mini Program is calling wx.login in a loop: sign in once and keep the broker's \
             tokens (refresh them) instead",
        ),
        40226 => (
            K::NotAllowed,
            "high-risk user: WeChat's risk control blocks this person from signing in to Mini \
             Programs (40226); nothing the broker can change: the person must appeal in WeChat \
             (the Mini Program's security settings show the risk level)",
        ),
        45011 => (
            K::RateLimited,
            "too frequent: WeChat is throttling this appid; back off and retry later",
        ),
        45015 => (
            K::NotAllowed,
            "outside the 48 h window: the person has not messaged the Official Account in the \
             last 48 hours, so it cannot message them now; they must send the account a \
             message (which reopens the window), or use another channel",
        ),
        45047 => (
            K::RateLimited,
            "out of response count limit: the Official Account already sent this person the \
             most customer-service messages WeChat allows in one 48 h window; they must message \
             the account again before it can send more",
        ),
        48001 if api == Api::SnsUserinfo => (
            K::Misconfigured,
            "userinfo called with a snsapi_base token: use scope snsapi_userinfo to get the \
             profile, or do not call userinfo after snsapi_base",
        ),
        48001 if api == Api::PhoneNumber => (
            K::Misconfigured,
            "api unauthorized: getPhoneNumber needs a verified (认证) Mini Program of a \
             business: check the Mini Program's verification in mp.weixin.qq.com, or turn \
             phone_number off for this connector",
        ),
        48001 => (
            K::Misconfigured,
            "api unauthorized: this app lacks the permission for this API (check the app \
             type, its verification and interface permissions in the WeChat console)",
        ),
        other => {
            let kind = if other < 0 {
                K::UpstreamUnavailable
            } else {
                K::BadResponse
            };
            return (
                kind,
                format!(
                    "WeChat returned errcode {other}, which idbridge does not know: look it up \
                     in WeChat's global return codes and quote the errmsg (with its rid) to \
                     WeChat support"
                ),
            );
        }
    };
    (kind, fix.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL_APIS: [Api; 9] = [
        Api::SnsAccessToken,
        Api::SnsRefreshToken,
        Api::SnsUserinfo,
        Api::SnsAuth,
        Api::CgiToken,
        Api::CgiStableToken,
        Api::CustomSend,
        Api::JsCode2Session,
        Api::PhoneNumber,
    ];

    /// Every code of WECHAT.md's table, on every API, has a mapped (non-generic) fix.
    #[test]
    fn every_documented_errcode_is_mapped_on_every_api() {
        let documented = [
            -1, 40001, 40003, 40013, 40014, 40029, 40030, 40125, 40163, 40164, 41001, 41002, 41003,
            41004, 41008, 42001, 42002, 42003, 45009, 45011, 45015, 45047, 48001, 40226,
        ];
        for api in ALL_APIS {
            for code in documented {
                let (_, fix) = classify(api, code);
                assert!(
                    !fix.contains("does not know"),
                    "{api} {code} fell through to the generic fix"
                );
            }
        }
    }

    #[test]
    fn forty_thousand_one_depends_on_the_call() {
        assert_eq!(classify(Api::CgiToken, 40001).0, ErrorKind::BadCredentials);
        assert!(classify(Api::CgiToken, 40001).1.contains("wrong secret"));
        assert!(classify(Api::CustomSend, 40001)
            .1
            .contains("stale or superseded"));
        assert_eq!(classify(Api::SnsUserinfo, 40001).0, ErrorKind::InvalidCode);
        assert!(classify(Api::SnsUserinfo, 40001)
            .1
            .contains("access token invalid"));
    }

    #[test]
    fn unknown_codes_name_the_code() {
        let (kind, fix) = classify(Api::SnsAccessToken, 61234);
        assert_eq!(kind, ErrorKind::BadResponse);
        assert!(fix.contains("61234"));
        let (kind, fix) = classify(Api::SnsAccessToken, -1000);
        assert_eq!(kind, ErrorKind::UpstreamUnavailable);
        assert!(fix.contains("-1000"));
    }

    #[test]
    fn conversion_keeps_everything() {
        let e = WeChatError::from_errcode(
            Api::SnsAccessToken,
            40029,
            Some("invalid code, rid: 6650-abc".to_owned()),
        );
        let c: ConnectorError = e.clone().into();
        assert_eq!(c.stage, Stage::TokenExchange);
        assert_eq!(c.kind, ErrorKind::InvalidCode);
        assert_eq!(c.upstream_code.as_deref(), Some("40029"));
        assert_eq!(
            c.upstream_message.as_deref(),
            Some("invalid code, rid: 6650-abc")
        );
        assert_eq!(c.fix.as_deref(), Some(e.fix.as_str()));
    }

    #[test]
    fn restaging_keeps_the_mapping() {
        let e =
            WeChatError::from_errcode(Api::SnsAccessToken, 40163, None).at_stage(Stage::Exchange);
        assert_eq!(e.stage, Stage::Exchange);
        assert_eq!(e.kind, ErrorKind::CodeReused);
    }

    #[test]
    fn seconds_read_well() {
        assert_eq!(seconds(Duration::from_millis(300)), "0.3");
        assert_eq!(seconds(Duration::from_secs(10)), "10");
    }
}
