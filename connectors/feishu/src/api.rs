//! The calls a Feishu sign-in makes: the token endpoint
//! (`POST /open-apis/authen/v2/oauth/token`, a JSON body — not a form — and an
//! RFC 6749 answer with Feishu's numeric `code` beside it) for the code and
//! the refresh grant, and `GET /open-apis/authen/v1/user_info` with the
//! person's token (the `{code, msg, data}` envelope).

use crate::codes;
use crate::config::FeishuSettings;
use idbridge_connector_kit::call::{self, endpoint, UpstreamCall};
use idbridge_connector_kit::http::{self as kit_http, shown};
use idbridge_connector_kit::oauth_errors::clean_description;
use idbridge_connector_oauth2::{api_error, OAuthClient, Tokens, MAX_BODY_BYTES};
use idbridge_core::{ConnectorError, ErrorKind, Stage, UpstreamTokens};
use serde_json::{json, Value};
use tracing::Instrument;

/// A token answer and the refresh token's lifetime, which Feishu gives apart.
pub struct Granted {
    pub tokens: Tokens,
    pub refresh_expires_in: Option<i64>,
}

impl Granted {
    /// What the broker keeps at `now`. A refresh token is single use: the one
    /// spent is never kept.
    pub fn upstream(&self, now: i64) -> UpstreamTokens {
        let mut kept = self.tokens.upstream(now, None);
        kept.refresh_expires_at = self
            .tokens
            .refresh_token
            .as_ref()
            .and(self.refresh_expires_in)
            .map(|s| now.saturating_add(s));
        kept
    }
}

/// Who `user_info` says the person is.
pub struct User {
    pub union_id: String,
    pub open_id: String,
    pub tenant_key: Option<String>,
    pub user_id: Option<String>,
    pub name: Option<String>,
    pub en_name: Option<String>,
    pub avatar_url: Option<String>,
    pub email: Option<String>,
    pub mobile: Option<String>,
}

pub struct Api<'a> {
    pub client: &'a OAuthClient,
    pub settings: &'a FeishuSettings,
}

fn text(doc: &Value, key: &str) -> Option<String> {
    doc.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn feishu_code(doc: &Value) -> Option<i64> {
    doc.get("code").and_then(Value::as_i64)
}

impl Api<'_> {
    /// `grant_type=authorization_code` with the PKCE verifier.
    pub async fn exchange_code(
        &self,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Result<Granted, ConnectorError> {
        let c = self.client.config();
        let body = json!({
            "grant_type": "authorization_code",
            "client_id": c.client_id,
            "client_secret": c.client_secret.expose(),
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        });
        self.token(Stage::TokenExchange, "the code exchange", &body)
            .await
    }

    /// `grant_type=refresh_token`: Feishu answers with a new refresh token
    /// and the one sent is spent.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Granted, ConnectorError> {
        let c = self.client.config();
        let body = json!({
            "grant_type": "refresh_token",
            "client_id": c.client_id,
            "client_secret": c.client_secret.expose(),
            "refresh_token": refresh_token,
        });
        self.token(Stage::Refresh, "the refresh token grant", &body)
            .await
    }

    async fn token(
        &self,
        stage: Stage,
        what: &str,
        body: &Value,
    ) -> Result<Granted, ConnectorError> {
        let url = self.settings.token_url();
        let timeouts = self.client.config().timeouts;
        let sent = match self
            .client
            .http()
            .post(&url)
            .header("content-type", "application/json; charset=utf-8")
            .body(body.to_string())
            .build()
        {
            // One observed upstream call (span, trace context, latency).
            Ok(mut request) => {
                let observed = UpstreamCall::begin(
                    self.client.connector_label(),
                    endpoint::TOKEN,
                    &mut request,
                );
                let sent = self
                    .client
                    .http()
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
        let response =
            sent.map_err(|e| kit_http::transport_error(stage, what, &url, e, timeouts))?;
        let status = response.status().as_u16();
        let bytes = match kit_http::read_capped(response, MAX_BODY_BYTES).await {
            Ok(b) => b,
            Err(kit_http::ReadError::TooLarge) => {
                return Err(
                    ConnectorError::new(stage, ErrorKind::BadResponse).fix(format!(
                    "the token endpoint {} answered {what} with more than {MAX_BODY_BYTES} bytes",
                    shown(&url)
                )),
                )
            }
            Err(kit_http::ReadError::Transport(e)) => {
                return Err(kit_http::transport_error(stage, what, &url, e, timeouts))
            }
        };
        let doc: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let code = feishu_code(&doc).unwrap_or(0);
        let access = text(&doc, "access_token");
        if status == 200 && code == 0 {
            if let Some(access_token) = access {
                let tokens = Tokens {
                    access_token,
                    refresh_token: text(&doc, "refresh_token"),
                    expires_in: doc.get("expires_in").and_then(Value::as_i64),
                    scope: text(&doc, "scope"),
                };
                return Ok(Granted {
                    tokens,
                    refresh_expires_in: doc.get("refresh_token_expires_in").and_then(Value::as_i64),
                });
            }
        }
        Err(self.token_failure(stage, what, &url, status, &doc, &bytes))
    }

    fn token_failure(
        &self,
        stage: Stage,
        what: &str,
        url: &str,
        status: u16,
        doc: &Value,
        bytes: &[u8],
    ) -> ConnectorError {
        let place = shown(url);
        let description = clean_description(
            doc.get("error_description")
                .or_else(|| doc.get("msg"))
                .and_then(Value::as_str)
                .unwrap_or(""),
        );
        if let Some(code) = feishu_code(doc).filter(|c| *c != 0) {
            let (kind, fix) = codes::token_code(code).unwrap_or((
                if status >= 500 {
                    ErrorKind::UpstreamUnavailable
                } else {
                    ErrorKind::BadResponse
                },
                "an error code this broker does not know: look it up in Feishu's error code list (open.feishu.cn/document → 服务端错误码)",
            ));
            return ConnectorError::new(stage, kind)
                .upstream(code, description)
                .fix(format!("{fix} ({what} at {place})"));
        }
        let (kind, fix) = match status {
            429 => (ErrorKind::RateLimited, format!("{place} throttles the broker ({what}); retry later")),
            s if s >= 500 => (ErrorKind::UpstreamUnavailable, format!("{place} answered {what} with HTTP {s}; retry later")),
            200 => (ErrorKind::BadResponse, format!("{place} answered {what} without an access_token: check open_url points at Feishu's open platform (https://open.feishu.cn, or https://open.larksuite.com for Lark)")),
            s => (ErrorKind::BadResponse, format!("{place} answered {what} with HTTP {s} and no Feishu error code: check open_url")),
        };
        let start: String = String::from_utf8_lossy(bytes)
            .chars()
            .filter(|c| !c.is_control())
            .take(120)
            .collect();
        ConnectorError::new(stage, kind)
            .upstream(format!("HTTP {status}"), start)
            .fix(fix)
    }

    /// `GET user_info` with the person's token, at `stage`.
    pub async fn user(&self, stage: Stage, access_token: &str) -> Result<User, ConnectorError> {
        let what = "GET user_info";
        let url = self.settings.user_info_url();
        let answer = self
            .client
            .get(stage, what, &url, access_token, &[])
            .await?;
        let doc = answer.json();
        match feishu_code(&doc) {
            Some(0) => {}
            Some(code) => {
                let msg = clean_description(doc.get("msg").and_then(Value::as_str).unwrap_or(""));
                let (kind, fix) = if code == 99991400 {
                    (
                        ErrorKind::RateLimited,
                        "Feishu throttles the app (99991400); retry later".to_owned(),
                    )
                } else if codes::is_token_refused(code) && stage == Stage::Refresh {
                    (ErrorKind::InvalidCode, "Feishu no longer accepts the person's token (revoked or expired): they sign in again".to_owned())
                } else if codes::is_token_refused(code) {
                    (ErrorKind::BadResponse, format!("{} refused the user_access_token the token endpoint just issued: check that accounts_url and open_url belong to the same region", shown(&url)))
                } else if answer.status >= 500 {
                    (
                        ErrorKind::UpstreamUnavailable,
                        format!("{} failed ({code}); retry later", shown(&url)),
                    )
                } else {
                    (ErrorKind::BadResponse, format!("{} answered Feishu error {code}: look it up in Feishu's error code list", shown(&url)))
                };
                return Err(ConnectorError::new(stage, kind)
                    .upstream(code, msg)
                    .fix(fix));
            }
            None => return Err(api_error(stage, what, &url, &answer)),
        }
        let data = doc.get("data").cloned().unwrap_or(Value::Null);
        let (Some(union_id), Some(open_id)) = (text(&data, "union_id"), text(&data, "open_id"))
        else {
            return Err(ConnectorError::new(stage, ErrorKind::BadResponse)
                .upstream("HTTP 200", answer.start())
                .fix(format!("{} answered without union_id and open_id: check open_url points at Feishu's open platform", shown(&url))));
        };
        Ok(User {
            union_id,
            open_id,
            tenant_key: text(&data, "tenant_key"),
            user_id: text(&data, "user_id"),
            name: text(&data, "name"),
            en_name: text(&data, "en_name"),
            avatar_url: text(&data, "avatar_url"),
            email: text(&data, "enterprise_email").or_else(|| text(&data, "email")),
            mobile: text(&data, "mobile"),
        })
    }
}
