//! Owns [`WeChatClient`]: one shared HTTP client (connect and total timeouts, redirects
//! never followed, an idbridge User-Agent) and one method per WeChat API call, each
//! returning a typed answer or a [`WeChatError`]. Retries are never automatic; the one
//! documented retry lives in [`WeChatClient::exchange_code_with_retry`].

use crate::body::{self, Answer, Sensitive, MAX_BODY_BYTES};
use crate::error::{seconds, Api, WeChatError, ERRCODE_CODE_USED};
use crate::types::{AppToken, FieldProblem, SnsToken, UserInfo};
use crate::urls::DEFAULT_API_BASE_URL;
use idbridge_connector_kit::call::UpstreamCall;
use idbridge_core::ErrorKind;
use reqwest::header::{CONTENT_TYPE, LOCATION};
use reqwest::{redirect, Url};
use serde_json::{json, Map, Value};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// How to reach WeChat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// Default [`DEFAULT_API_BASE_URL`]; a simulator's URL in tests and dev mode. May
    /// carry a path prefix (`http://127.0.0.1:9000/wechat`).
    pub api_base_url: String,
    /// Time to establish a connection (default 3 s).
    pub connect_timeout: Duration,
    /// Time for a whole call, body included (default 10 s).
    pub timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            api_base_url: DEFAULT_API_BASE_URL.to_owned(),
            connect_timeout: Duration::from_secs(3),
            timeout: Duration::from_secs(10),
        }
    }
}

/// The client could not be built (bad base URL, TLS backend failure).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("api_base_url {url:?} is not usable: {reason}")]
    InvalidBaseUrl { url: String, reason: &'static str },
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
}

/// The User-Agent sent on every call.
pub const USER_AGENT: &str = concat!(
    "idbridge/",
    env!("CARGO_PKG_VERSION"),
    " (wechat-api; +https://example.invalid/idbridge)"
);

/// The WeChat HTTP client. Cheap to clone: clones share one connection pool.
#[derive(Clone)]
pub struct WeChatClient {
    http: reqwest::Client,
    inner: Arc<Inner>,
}

struct Inner {
    base: Url,
    /// `host[:port]` of the base URL, for error messages.
    host: String,
    timeout: Duration,
    connect_timeout: Duration,
    /// The `connector` label of this client's metrics ([`WeChatClient::for_connector`]).
    connector: String,
}

impl fmt::Debug for WeChatClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeChatClient")
            .field("api_base_url", &self.inner.base.as_str())
            .field("connect_timeout", &self.inner.connect_timeout)
            .field("timeout", &self.inner.timeout)
            .finish()
    }
}

impl WeChatClient {
    pub fn new(options: ClientOptions) -> Result<Self, BuildError> {
        let invalid = |reason| BuildError::InvalidBaseUrl {
            url: options.api_base_url.clone(),
            reason,
        };
        let base =
            Url::parse(options.api_base_url.trim()).map_err(|_| invalid("not an absolute URL"))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https"));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(invalid("it must not have a query or a fragment"));
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(invalid("it must not carry credentials"));
        }
        let host = match (base.host_str(), base.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            (None, _) => return Err(invalid("it has no host")),
        };
        let http = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .timeout(options.timeout)
            .redirect(redirect::Policy::none())
            .user_agent(USER_AGENT)
            .build()
            .map_err(|e| BuildError::Http(e.without_url().to_string()))?;
        Ok(Self {
            http,
            inner: Arc::new(Inner {
                base,
                host,
                timeout: options.timeout,
                connect_timeout: options.connect_timeout,
                connector: "unknown".to_owned(),
            }),
        })
    }

    /// The same client, its calls' metrics labelled `connector=id` (the configured
    /// connector id: a bounded label). Through the `metrics` facade: recorded only
    /// when the process has a recorder (the server's `[telemetry]`).
    pub fn for_connector(self, id: &str) -> Self {
        Self {
            http: self.http,
            inner: Arc::new(Inner {
                base: self.inner.base.clone(),
                host: self.inner.host.clone(),
                timeout: self.inner.timeout,
                connect_timeout: self.inner.connect_timeout,
                connector: id.to_owned(),
            }),
        }
    }

    /// The `connector` label of this client's metrics.
    pub fn connector_label(&self) -> &str {
        &self.inner.connector
    }

    /// The base URL calls go to.
    pub fn api_base_url(&self) -> &str {
        self.inner.base.as_str()
    }

    /// Code → user token (`GET /sns/oauth2/access_token`, grant_type=authorization_code).
    ///
    /// A code is single use: do not retry this blindly. See
    /// [`exchange_code_with_retry`](Self::exchange_code_with_retry) for the one safe retry.
    pub async fn exchange_code(
        &self,
        appid: &str,
        secret: &str,
        code: &str,
    ) -> Result<SnsToken, WeChatError> {
        let api = Api::SnsAccessToken;
        let url = self.url(
            api,
            &[
                ("appid", appid),
                ("secret", secret),
                ("code", code),
                ("grant_type", "authorization_code"),
            ],
        );
        let sensitive = Sensitive::new(&[secret, code]);
        let object = self.call(api, self.http.get(url), &sensitive).await?;
        self.read(api, &object, SnsToken::from_json)
    }

    /// Exchanges a code, retrying exactly once if WeChat answers -1 (busy).
    ///
    /// WeChat documents that a busy code exchange may be retried once. The busy attempt
    /// may nevertheless have spent the code, so a 40163 ("code been used") on the retry
    /// is reported as [`ErrorKind::UpstreamUnavailable`] with errcode 40163 and a fix
    /// saying so, not as [`ErrorKind::CodeReused`]: a connector must not mistake it for
    /// WeChat's harmless double callback. Any other outcome of the retry (success, -1
    /// again, another errcode) is returned as is. Timeouts and transport failures are
    /// never retried: whether WeChat spent the code is unknown. The retry is immediate.
    pub async fn exchange_code_with_retry(
        &self,
        appid: &str,
        secret: &str,
        code: &str,
    ) -> Result<SnsToken, WeChatError> {
        match self.exchange_code(appid, secret, code).await {
            Err(first) if first.is_busy() => {
                tracing::debug!(api = %Api::SnsAccessToken, "WeChat busy (-1); retrying the code exchange once");
                match self.exchange_code(appid, secret, code).await {
                    Err(retry) if retry.errcode == Some(ERRCODE_CODE_USED) => {
                        Err(WeChatError::code_spent_after_busy(retry))
                    }
                    other => other,
                }
            }
            other => other,
        }
    }

    /// A Mini Program's `wx.login` code → openid, session key and unionid
    /// (`GET /sns/jscode2session`). The code is single use and lives 5 minutes;
    /// -1 (busy) is not retried here: whether WeChat spent the code is unknown,
    /// and the Mini Program can call `wx.login` again at no cost.
    pub async fn mini_program_session(
        &self,
        appid: &str,
        secret: &str,
        js_code: &str,
    ) -> Result<crate::MiniProgramSession, WeChatError> {
        let api = Api::JsCode2Session;
        let url = self.url(
            api,
            &[
                ("appid", appid),
                ("secret", secret),
                ("js_code", js_code),
                ("grant_type", "authorization_code"),
            ],
        );
        let sensitive = Sensitive::new(&[secret, js_code]);
        let object = self.call(api, self.http.get(url), &sensitive).await?;
        self.read(api, &object, crate::MiniProgramSession::from_json)
    }

    /// Renews a user token (`GET /sns/oauth2/refresh_token`; no secret needed).
    pub async fn refresh(&self, appid: &str, refresh_token: &str) -> Result<SnsToken, WeChatError> {
        let api = Api::SnsRefreshToken;
        let url = self.url(
            api,
            &[
                ("appid", appid),
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ],
        );
        let sensitive = Sensitive::new(&[refresh_token]);
        let object = self.call(api, self.http.get(url), &sensitive).await?;
        self.read(api, &object, SnsToken::from_json)
    }

    /// The profile (`GET /sns/userinfo`). `lang` is `zh_CN`, `zh_TW` or `en`. Needs a
    /// `snsapi_userinfo` (or `snsapi_login`) token: a `snsapi_base` token gives 48001.
    pub async fn userinfo(
        &self,
        access_token: &str,
        openid: &str,
        lang: &str,
    ) -> Result<UserInfo, WeChatError> {
        let api = Api::SnsUserinfo;
        let url = self.url(
            api,
            &[
                ("access_token", access_token),
                ("openid", openid),
                ("lang", lang),
            ],
        );
        let sensitive = Sensitive::new(&[access_token]);
        let object = self.call(api, self.http.get(url), &sensitive).await?;
        self.read(api, &object, UserInfo::from_json)
    }

    /// Is this user token still valid for this openid? (`GET /sns/auth`; success is
    /// errcode 0.)
    pub async fn check_token(&self, access_token: &str, openid: &str) -> Result<(), WeChatError> {
        let api = Api::SnsAuth;
        let url = self.url(api, &[("access_token", access_token), ("openid", openid)]);
        let sensitive = Sensitive::new(&[access_token]);
        let object = self.call(api, self.http.get(url), &sensitive).await?;
        self.require_errcode_zero(api, &object)
    }

    /// An app token (`GET /cgi-bin/token`, grant_type=client_credential). Each fetch
    /// retires the previous token after about 5 minutes and counts against a quota of
    /// 2000 a day: callers must cache one shared token.
    pub async fn app_token(&self, appid: &str, secret: &str) -> Result<AppToken, WeChatError> {
        let api = Api::CgiToken;
        let url = self.url(
            api,
            &[
                ("grant_type", "client_credential"),
                ("appid", appid),
                ("secret", secret),
            ],
        );
        let sensitive = Sensitive::new(&[secret]);
        let object = self.call(api, self.http.get(url), &sensitive).await?;
        self.read(api, &object, AppToken::from_json)
    }

    /// An app token (`POST /cgi-bin/stable_token`): the same token while it is valid;
    /// `force_refresh` (20 a day) forces a new one.
    pub async fn stable_token(
        &self,
        appid: &str,
        secret: &str,
        force_refresh: bool,
    ) -> Result<AppToken, WeChatError> {
        let api = Api::CgiStableToken;
        let url = self.url(api, &[]);
        let body = json!({
            "grant_type": "client_credential",
            "appid": appid,
            "secret": secret,
            "force_refresh": force_refresh,
        });
        let sensitive = Sensitive::new(&[secret]);
        let object = self
            .call(api, self.http.post(url).json(&body), &sensitive)
            .await?;
        self.read(api, &object, AppToken::from_json)
    }

    /// A customer-service text message (`POST /cgi-bin/message/custom/send`; success is
    /// errcode 0). Only within 48 h of the user's last interaction (else 45015). On
    /// [`WeChatError::app_token_rejected`] drop the cached app token and fetch again.
    pub async fn send_text(
        &self,
        app_token: &str,
        touser_openid: &str,
        content: &str,
    ) -> Result<(), WeChatError> {
        let api = Api::CustomSend;
        let url = self.url(api, &[("access_token", app_token)]);
        let body = json!({
            "touser": touser_openid,
            "msgtype": "text",
            "text": { "content": content },
        });
        // The content may be a one-time code (sent to the person's WeChat): keep it out
        // of errors too.
        let sensitive = Sensitive::new(&[app_token, content]);
        let object = self
            .call(api, self.http.post(url).json(&body), &sensitive)
            .await?;
        self.require_errcode_zero(api, &object)
    }

    /// The number behind a Mini Program's `getPhoneNumber` code
    /// (`POST /wxa/business/getuserphonenumber`, with the app token).
    pub async fn user_phone_number(
        &self,
        app_token: &str,
        code: &str,
    ) -> Result<crate::PhoneInfo, WeChatError> {
        let api = Api::PhoneNumber;
        let url = self.url(api, &[("access_token", app_token)]);
        let body = json!({ "code": code });
        let sensitive = Sensitive::new(&[app_token, code]);
        let object = self
            .call(api, self.http.post(url).json(&body), &sensitive)
            .await?;
        self.read(api, &object, crate::PhoneInfo::from_json)
    }

    fn url(&self, api: Api, query: &[(&str, &str)]) -> Url {
        let mut url = self.inner.base.clone();
        let path = format!(
            "{}{}",
            self.inner.base.path().trim_end_matches('/'),
            api.path()
        );
        url.set_path(&path);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// Send, read the body under the cap, and parse it. The URL (which carries secrets
    /// and codes) never reaches an error or a log line.
    async fn call(
        &self,
        api: Api,
        request: reqwest::RequestBuilder,
        sensitive: &Sensitive<'_>,
    ) -> Result<Map<String, Value>, WeChatError> {
        let started = Instant::now();
        let mut request = request
            .build()
            .map_err(|e| self.transport_error(api, e, sensitive))?;
        // A span (under the current one) with the host and the API's path only,
        // never the query (secret, code, access_token), and the trace context on
        // the request; the latency in idbridge_upstream_request_duration_seconds.
        let observed = UpstreamCall::begin(&self.inner.connector, api.path(), &mut request);
        let result = self
            .call_inner(api, request, sensitive)
            .instrument(observed.span())
            .await;
        let elapsed_ms = started.elapsed().as_millis();
        // Outcome: `ok`, or the error's kind (a closed set); the errcode is in the
        // server's sign-in failure family, bounded there.
        match &result {
            Ok(_) => observed.end(None, "ok"),
            Err(e) => observed.end(None, e.kind.as_str()),
        }
        match &result {
            Ok(_) => tracing::debug!(api = %api, elapsed_ms, "wechat call succeeded"),
            Err(e) => tracing::debug!(
                api = %api,
                elapsed_ms,
                kind = e.kind.as_str(),
                errcode = e.errcode,
                errmsg = e.errmsg.as_deref(),
                "wechat call failed"
            ),
        }
        result
    }

    async fn call_inner(
        &self,
        api: Api,
        request: reqwest::Request,
        sensitive: &Sensitive<'_>,
    ) -> Result<Map<String, Value>, WeChatError> {
        let mut response = self
            .http
            .execute(request)
            .await
            .map_err(|e| self.transport_error(api, e, sensitive))?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let location_host = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|loc| response.url().join(loc).ok())
            .and_then(|u| u.host_str().map(str::to_owned));

        let body = if (300..400).contains(&status) {
            Vec::new()
        } else {
            self.read_body(api, &mut response, sensitive).await?
        };
        let answer = Answer {
            status,
            content_type: content_type.as_deref(),
            location_host: location_host.as_deref(),
            body: &body,
        };
        body::parse_answer(api, &self.inner.host, &answer, sensitive)
    }

    /// The body, refused past [`MAX_BODY_BYTES`] whether or not a length was declared.
    async fn read_body(
        &self,
        api: Api,
        response: &mut reqwest::Response,
        sensitive: &Sensitive<'_>,
    ) -> Result<Vec<u8>, WeChatError> {
        if response
            .content_length()
            .is_some_and(|len| len > MAX_BODY_BYTES as u64)
        {
            return Err(self.too_large(api));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport_error(api, e, sensitive))?
        {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(self.too_large(api));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    fn too_large(&self, api: Api) -> WeChatError {
        body::bad_body(
            api,
            &self.inner.host,
            format!("a body larger than {MAX_BODY_BYTES} bytes"),
        )
    }

    fn transport_error(
        &self,
        api: Api,
        error: reqwest::Error,
        sensitive: &Sensitive<'_>,
    ) -> WeChatError {
        // Without the URL: it carries the secret, the code or a token.
        let error = error.without_url();
        let host = &self.inner.host;
        let detail = sensitive.redact(&idbridge_connector_kit::transport::error_chain(&error));
        if error.is_timeout() {
            let fix = if error.is_connect() {
                format!(
                    "WeChat did not answer within {} s: no connection to {host} within the \
                     connect timeout; check the broker's egress to WeChat (firewall, proxy, DNS)",
                    seconds(self.inner.connect_timeout)
                )
            } else {
                format!(
                    "WeChat did not answer within {} s ({api} on {host}); check the broker's \
                     egress to WeChat, then retry",
                    seconds(self.inner.timeout)
                )
            };
            return WeChatError::local(api, ErrorKind::Timeout, None, fix);
        }
        if error.is_connect() {
            return WeChatError::local(
                api,
                ErrorKind::UpstreamUnavailable,
                Some(detail),
                format!(
                    "could not connect to {host} for {api}: check DNS, firewall and proxy for \
                     the broker's egress, and api_base_url"
                ),
            );
        }
        WeChatError::local(
            api,
            ErrorKind::UpstreamUnavailable,
            Some(detail),
            format!(
                "the connection to {host} failed before a complete answer to {api}: retry; if it \
                 persists, look at proxies or middleboxes between the broker and WeChat"
            ),
        )
    }

    fn read<T>(
        &self,
        api: Api,
        object: &Map<String, Value>,
        read: fn(&Map<String, Value>) -> Result<T, FieldProblem>,
    ) -> Result<T, WeChatError> {
        read(object).map_err(|p| body::bad_body(api, &self.inner.host, p.describe(object)))
    }

    fn require_errcode_zero(
        &self,
        api: Api,
        object: &Map<String, Value>,
    ) -> Result<(), WeChatError> {
        // parse_answer already turned a non-zero errcode into an error.
        if object.get("errcode").and_then(body::as_i64) == Some(0) {
            Ok(())
        } else {
            let problem = FieldProblem {
                field: "errcode",
                problem: "is missing (success is errcode 0)",
            };
            Err(body::bad_body(
                api,
                &self.inner.host,
                problem.describe(object),
            ))
        }
    }
}
