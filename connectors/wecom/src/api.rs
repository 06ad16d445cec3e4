//! WeCom's server API as one sign-in calls it (`qyapi.weixin.qq.com`):
//! `cgi-bin/gettoken`, `cgi-bin/auth/getuserinfo`, `cgi-bin/user/get`. Every
//! answer is HTTP 200 with `errcode` (0 for success) and `errmsg`; a non-zero
//! errcode comes back as [`Failure::Errcode`] so the caller can tell a stale
//! corp token from the rest.

use crate::errcodes;
use idbridge_connector_kit::call::{self, UpstreamCall};
use idbridge_connector_kit::http::{self, ReadError};
use idbridge_connector_kit::options::{BaseUrl, Timeouts};
use idbridge_core::{ConnectorError, ErrorKind, Stage};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use tracing::Instrument;

/// WeCom's answers are small; more than this is not WeCom.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// Why a call gave no answer.
#[derive(Debug)]
pub enum Failure {
    /// WeCom answered a non-zero errcode.
    Errcode {
        api: &'static str,
        errcode: i64,
        errmsg: String,
    },
    /// Transport, HTTP status or an unreadable body, already the broker's error.
    Other(ConnectorError),
}

impl Failure {
    pub fn token_rejected(&self) -> bool {
        matches!(self, Failure::Errcode { errcode, .. } if errcodes::token_rejected(*errcode))
    }

    pub fn errcode(&self) -> Option<i64> {
        match self {
            Failure::Errcode { errcode, .. } => Some(*errcode),
            Failure::Other(_) => None,
        }
    }

    pub fn at(self, stage: Stage) -> ConnectorError {
        match self {
            Failure::Errcode {
                api,
                errcode,
                errmsg,
            } => errcodes::error(stage, api, errcode, &errmsg),
            Failure::Other(mut e) => {
                e.stage = stage;
                e
            }
        }
    }
}

#[derive(Deserialize)]
struct Status {
    #[serde(default)]
    errcode: i64,
    #[serde(default)]
    errmsg: String,
}

#[derive(Deserialize)]
pub struct CorpToken {
    pub access_token: String,
    pub expires_in: i64,
}

/// Who `auth/getuserinfo` says signed in. The older `user/getuserinfo`
/// spelled the keys `UserId`/`OpenId`; both are read.
#[derive(Debug, Deserialize)]
pub struct Visitor {
    #[serde(default, alias = "UserId")]
    pub userid: Option<String>,
    #[serde(default, alias = "OpenId")]
    pub openid: Option<String>,
    /// With `snsapi_privateinfo`, for a member in the app's visible range: the
    /// ticket for `auth/getuserdetail` (1800 s).
    #[serde(default)]
    pub user_ticket: Option<String>,
}

/// What `auth/getuserdetail` tells about a member who allowed it
/// (`snsapi_privateinfo`); each field only when the admin picked it for the app.
#[derive(Debug, Default, Deserialize, serde::Serialize)]
pub struct Detail {
    #[serde(default)]
    pub avatar: Option<String>,
    #[serde(default)]
    pub mobile: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub biz_mail: Option<String>,
}

/// What `user/get` tells about a member (since 2022-06 no avatar, gender,
/// mobile or email for apps made after that).
#[derive(Debug, Deserialize, serde::Serialize)]
pub struct Member {
    pub userid: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub alias: Option<String>,
    #[serde(default)]
    pub position: Option<String>,
    #[serde(default)]
    pub department: Vec<u64>,
}

/// The HTTP client for one app's calls.
#[derive(Clone)]
pub struct Api {
    client: reqwest::Client,
    base: String,
    timeouts: Timeouts,
    /// The configured connector id: the `connector` label of the calls' metrics and spans.
    connector: String,
}

impl Api {
    pub fn new(base: &BaseUrl, timeouts: Timeouts) -> Result<Self, String> {
        let client = http::client(
            timeouts,
            concat!("idbridge-wecom/", env!("CARGO_PKG_VERSION")),
        )?;
        Ok(Self {
            client,
            base: base.trimmed().to_owned(),
            timeouts,
            connector: "unknown".to_owned(),
        })
    }

    /// The same client, its calls labelled `connector=id` (the configured id).
    pub fn for_connector(mut self, id: &str) -> Self {
        self.connector = id.to_owned();
        self
    }

    async fn get<T: DeserializeOwned>(
        &self,
        api: &'static str,
        what: &str,
        query: &[(&str, &str)],
    ) -> Result<T, Failure> {
        self.call(api, what, |c, url| c.get(url).query(query)).await
    }

    /// One API call, built by `build` from the client and the URL.
    async fn call<T: DeserializeOwned>(
        &self,
        api: &'static str,
        what: &str,
        build: impl FnOnce(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    ) -> Result<T, Failure> {
        let url = format!("{}/{api}", self.base);
        // Observed as one upstream call: the span and the metric name the API's
        // path, never the query (it carries the access token or the secret).
        let sent = match build(&self.client, &url).build() {
            Ok(mut request) => {
                let observed = UpstreamCall::begin(&self.connector, api, &mut request);
                let sent = self
                    .client
                    .execute(request)
                    .instrument(observed.span())
                    .await;
                let outcome = match &sent {
                    Ok(r) => call::outcome(Ok(r.status().as_u16())),
                    Err(e) => call::outcome(Err(e)),
                };
                observed.end(sent.as_ref().ok().map(|r| r.status().as_u16()), outcome);
                sent
            }
            Err(e) => Err(e),
        };
        let resp = sent.map_err(|e| {
            Failure::Other(http::transport_error(
                Stage::Userinfo,
                what,
                &url,
                e,
                self.timeouts,
            ))
        })?;
        let status = resp.status();
        let body = http::read_capped(resp, MAX_BODY_BYTES)
            .await
            .map_err(|e| match e {
                ReadError::TooLarge => Failure::Other(
                    ConnectorError::new(Stage::Userinfo, ErrorKind::BadResponse)
                        .upstream("body_too_large", format!("{api}: more than {MAX_BODY_BYTES} bytes"))
                        .fix(format!("{} answered {what} with a body far larger than WeCom's: check api_base_url", http::shown(&url))),
                ),
                ReadError::Transport(e) => Failure::Other(http::transport_error(
                    Stage::Userinfo,
                    what,
                    &url,
                    e,
                    self.timeouts,
                )),
            })?;
        if !status.is_success() {
            let kind = if status.is_server_error() || status.as_u16() == 429 {
                ErrorKind::UpstreamUnavailable
            } else {
                ErrorKind::BadResponse
            };
            return Err(Failure::Other(
                ConnectorError::new(Stage::Userinfo, kind)
                    .upstream(format!("http_{}", status.as_u16()), format!("{api} answered HTTP {status}"))
                    .fix(format!("WeCom answers its API with HTTP 200; HTTP {status} from {} means a proxy or the wrong api_base_url: check the broker's egress and api_base_url", http::shown(&url))),
            ));
        }
        let unreadable = || {
            Failure::Other(
                ConnectorError::new(Stage::Userinfo, ErrorKind::BadResponse)
                    .upstream("unreadable", format!("{api}: not WeCom's JSON"))
                    .fix(format!("{} did not answer {what} with WeCom's JSON: check api_base_url (default {})", http::shown(&url), crate::config::API_BASE_URL)),
            )
        };
        let st: Status = serde_json::from_slice(&body).map_err(|_| unreadable())?;
        if st.errcode != 0 {
            return Err(Failure::Errcode {
                api,
                errcode: st.errcode,
                errmsg: st.errmsg,
            });
        }
        serde_json::from_slice(&body).map_err(|_| unreadable())
    }

    /// `GET cgi-bin/gettoken?corpid&corpsecret`: the corp access token (7200 s).
    pub async fn gettoken(&self, corp_id: &str, secret: &str) -> Result<CorpToken, Failure> {
        self.get(
            "cgi-bin/gettoken",
            "the corp access token",
            &[("corpid", corp_id), ("corpsecret", secret)],
        )
        .await
    }

    /// `GET cgi-bin/auth/getuserinfo?access_token&code`: who scanned or opened.
    pub async fn getuserinfo(&self, token: &str, code: &str) -> Result<Visitor, Failure> {
        self.get(
            "cgi-bin/auth/getuserinfo",
            "the sign-in code",
            &[("access_token", token), ("code", code)],
        )
        .await
    }

    /// `POST cgi-bin/auth/getuserdetail?access_token` with `{"user_ticket"}`: what
    /// the member allowed (`snsapi_privateinfo`).
    pub async fn getuserdetail(&self, token: &str, ticket: &str) -> Result<Detail, Failure> {
        let body = serde_json::json!({ "user_ticket": ticket });
        self.call(
            "cgi-bin/auth/getuserdetail",
            "the member's allowed details",
            |c, url| c.post(url).query(&[("access_token", token)]).json(&body),
        )
        .await
    }

    /// `GET cgi-bin/user/get?access_token&userid`: the member's details.
    pub async fn user_get(&self, token: &str, userid: &str) -> Result<Member, Failure> {
        self.get(
            "cgi-bin/user/get",
            "the member's details",
            &[("access_token", token), ("userid", userid)],
        )
        .await
    }
}
