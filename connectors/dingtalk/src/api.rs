//! The two calls of a DingTalk sign-in, on the v1.0 API:
//! `POST /v1.0/oauth2/userAccessToken` (JSON in and out; the authCode or a
//! refresh token for the person's token, and with scope `corpid` the
//! organisation they picked) and `GET /v1.0/contact/users/me` (the token in
//! the `x-acs-dingtalk-access-token` header, not `Authorization`).

use crate::config::DingTalkSettings;
use crate::errors::{api_error, ApiError};
use idbridge_connector_kit::call::{self, endpoint, UpstreamCall};
use idbridge_connector_kit::http::{read_capped, transport_error, ReadError};
use idbridge_core::{ConnectorError, ErrorKind, Stage};
use serde_json::Value;
use tracing::Instrument;

/// The most a DingTalk answer may be.
const MAX_BODY: usize = 64 * 1024;

/// The user token answer.
pub struct UserToken {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in: Option<i64>,
    /// The organisation the person signed in for (scope `corpid` only).
    pub corp_id: Option<String>,
}

/// Who `users/me` says the person is.
pub struct Me {
    pub union_id: String,
    pub open_id: Option<String>,
    pub nick: Option<String>,
    pub avatar_url: Option<String>,
    pub email: Option<String>,
    /// `+{stateCode}{mobile}` when both are there.
    pub phone: Option<String>,
}

pub struct Api<'a> {
    pub http: &'a reqwest::Client,
    pub settings: &'a DingTalkSettings,
    /// The configured connector id (the calls' `connector` label).
    pub connector: String,
}

/// How the person's token is asked for.
pub enum Grant<'a> {
    Code(&'a str),
    Refresh(&'a str),
}

fn text(doc: &Value, key: &str) -> Option<String> {
    doc.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

impl Api<'_> {
    /// Send one call, observed as an upstream call: its span and latency by
    /// `endpoint`, never the token header or the body.
    async fn send(
        &self,
        endpoint: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, reqwest::Error> {
        let mut request = request.build()?;
        let observed = UpstreamCall::begin(&self.connector, endpoint, &mut request);
        let sent = self.http.execute(request).instrument(observed.span()).await;
        let outcome = match &sent {
            Ok(r) => call::outcome(Ok(r.status().as_u16())),
            Err(e) => call::outcome(Err(e)),
        };
        observed.end(sent.as_ref().ok().map(|r| r.status().as_u16()), outcome);
        sent
    }

    async fn answer(
        &self,
        stage: Stage,
        what: &str,
        url: &str,
        sent: Result<reqwest::Response, reqwest::Error>,
    ) -> Result<Value, ConnectorError> {
        let timeouts = self.settings.timeouts;
        let response = sent.map_err(|e| transport_error(stage, what, url, e, timeouts))?;
        let status = response.status().as_u16();
        let body = match read_capped(response, MAX_BODY).await {
            Ok(b) => b,
            Err(ReadError::Transport(e)) => {
                return Err(transport_error(stage, what, url, e, timeouts))
            }
            Err(ReadError::TooLarge) => {
                return Err(ConnectorError::new(stage, ErrorKind::BadResponse)
                    .upstream(format!("HTTP {status}"), "answer too large")
                    .fix(format!("{what} answered more than {MAX_BODY} bytes: check api_base_url points at DingTalk's API (https://api.dingtalk.com)")))
            }
        };
        if !(200..300).contains(&status) {
            return Err(api_error(stage, what, url, &ApiError::read(status, &body)));
        }
        serde_json::from_slice(&body).map_err(|_| {
            ConnectorError::new(stage, ErrorKind::BadResponse)
                .upstream(format!("HTTP {status}"), "not JSON")
                .fix(format!("{what} answered something other than JSON: check api_base_url points at DingTalk's API (https://api.dingtalk.com)"))
        })
    }

    /// `POST /v1.0/oauth2/userAccessToken`.
    pub async fn user_token(
        &self,
        stage: Stage,
        grant: Grant<'_>,
    ) -> Result<UserToken, ConnectorError> {
        let what = "POST /v1.0/oauth2/userAccessToken";
        let url = format!("{}/v1.0/oauth2/userAccessToken", self.settings.api_base_url);
        let mut body = serde_json::json!({
            "clientId": self.settings.client_id,
            "clientSecret": self.settings.client_secret.expose(),
        });
        match grant {
            Grant::Code(code) => {
                body["code"] = Value::from(code);
                body["grantType"] = Value::from("authorization_code");
            }
            Grant::Refresh(token) => {
                body["refreshToken"] = Value::from(token);
                body["grantType"] = Value::from("refresh_token");
            }
        }
        let sent = self
            .send(endpoint::TOKEN, self.http.post(&url).json(&body))
            .await;
        let doc = self.answer(stage, what, &url, sent).await?;
        let Some(access_token) = text(&doc, "accessToken") else {
            return Err(ConnectorError::new(stage, ErrorKind::BadResponse)
                .upstream("HTTP 200", "no accessToken")
                .fix(format!("{what} answered without an accessToken: check api_base_url points at DingTalk's API (https://api.dingtalk.com)")));
        };
        Ok(UserToken {
            access_token,
            refresh_token: text(&doc, "refreshToken"),
            expires_in: doc.get("expireIn").and_then(Value::as_i64),
            corp_id: text(&doc, "corpId"),
        })
    }

    /// `GET /v1.0/contact/users/me` with the person's token.
    pub async fn me(&self, stage: Stage, token: &str) -> Result<Me, ConnectorError> {
        let what = "GET /v1.0/contact/users/me";
        let url = format!("{}/v1.0/contact/users/me", self.settings.api_base_url);
        let request = self
            .http
            .get(&url)
            .header("x-acs-dingtalk-access-token", token);
        let sent = self.send(endpoint::USERINFO, request).await;
        let doc = self.answer(stage, what, &url, sent).await?;
        let Some(union_id) = text(&doc, "unionId") else {
            return Err(ConnectorError::new(stage, ErrorKind::BadResponse)
                .upstream("HTTP 200", "no unionId")
                .fix(format!("{what} answered without a unionId: check api_base_url points at DingTalk's API, and that the app has the Contact.User.Read permission")));
        };
        let phone = match (text(&doc, "stateCode"), text(&doc, "mobile")) {
            (Some(cc), Some(m)) => Some(format!("+{}{m}", cc.trim_start_matches('+'))),
            _ => None,
        };
        Ok(Me {
            union_id,
            open_id: text(&doc, "openId"),
            nick: text(&doc, "nick"),
            avatar_url: text(&doc, "avatarUrl"),
            email: text(&doc, "email"),
            phone,
        })
    }
}
