//! Owns [`AppTokens`]: one app token (`access_token` for cgi-bin and wxa calls) per appid,
//! shared by every broker instance through the broker's [`Shared`] cache, fetched
//! with `stable_token` by a single instance at a time (the connector kit's
//! [`SharedToken`] lease), and refreshed five minutes before it expires. WeChat
//! allows 2000 fetches a day and each plain fetch retires the previous token, so
//! instances must never fetch their own.

use crate::{Api, WeChatClient, WeChatError};
use idbridge_connector_kit::lease::{LeaseError, LeaseTiming, SharedToken};
use idbridge_core::{CachedValue, ErrorKind, Shared, Stage};

/// The app token of one WeChat app (an Official Account), shared across instances.
pub struct AppTokens {
    client: WeChatClient,
    appid: String,
    secret: String,
    /// Refreshed 5 minutes before WeChat's expiry (a superseded token keeps
    /// working for about 5 minutes, so nobody is caught with a dead one); a 30 s
    /// lease; others wait up to 10 s for the holder's token.
    token: SharedToken,
}

impl AppTokens {
    pub fn new(client: WeChatClient, appid: &str, secret: &str, shared: Shared) -> Self {
        Self {
            client,
            appid: appid.to_owned(),
            secret: secret.to_owned(),
            token: SharedToken::new(
                shared,
                format!("wechat:app_token:{appid}"),
                LeaseTiming::default(),
            ),
        }
    }

    /// A live app token: from this process, else from the shared cache, else fetched
    /// by whichever instance wins the lease (the others wait for it).
    pub async fn get(&self, now: i64) -> Result<String, WeChatError> {
        let fetch = || async {
            let fetched = self
                .client
                .stable_token(&self.appid, &self.secret, false)
                .await;
            // Each one counts against WeChat's 2,000 a day for this app.
            metrics::counter!(
                "idbridge_wechat_app_token_fetches_total",
                "connector" => self.client.connector_label().to_owned(),
                "outcome" => if fetched.is_ok() { "ok" } else { "error" },
            )
            .increment(1);
            let t = fetched?;
            Ok::<_, WeChatError>(CachedValue {
                value: t.access_token,
                expires_at: now + t.expires_in,
            })
        };
        match self.token.get(now, fetch).await {
            Ok(lent) => {
                if lent.fetched {
                    tracing::info!(appid = %self.appid, expires_in = lent.expires_at - now, "fetched the WeChat app token (stable_token) for every broker instance");
                }
                Ok(lent.value)
            }
            Err(LeaseError::Fetch(e)) => Err(e.at_stage(Stage::Message)),
            Err(LeaseError::Cache(e)) => Err(cache_error(e)),
            Err(LeaseError::Busy { waited }) => Err(WeChatError::local(
                Api::CgiStableToken,
                ErrorKind::UpstreamUnavailable,
                None,
                format!(
                    "another broker instance holds the app-token lease for {} and has not stored \
                     a token for {} s; check that instance's log for the stable_token failure",
                    self.appid,
                    waited.as_secs()
                ),
            )
            .at_stage(Stage::Message)),
        }
    }

    /// WeChat rejected `token` (stale, superseded, expired): forget it here and in the
    /// shared cache (unless another instance already replaced it).
    pub async fn rejected(&self, token: &str) {
        self.token.rejected(token).await;
    }

    /// Send a customer-service text message with the shared app token; a rejected
    /// token is dropped and the send retried once with a fresh one.
    pub async fn send_text(
        &self,
        openid: &str,
        content: &str,
        now: i64,
    ) -> Result<(), WeChatError> {
        let token = self.get(now).await?;
        match self.client.send_text(&token, openid, content).await {
            Err(e) if e.app_token_rejected() => {
                tracing::info!(appid = %self.appid, errcode = e.errcode, "WeChat rejected the cached app token; fetching a new one and sending once more");
                self.rejected(&token).await;
                let token = self.get(now).await?;
                self.client
                    .send_text(&token, openid, content)
                    .await
                    .map_err(|e| e.at_stage(Stage::Message))
            }
            other => other.map_err(|e| e.at_stage(Stage::Message)),
        }
    }
}

impl AppTokens {
    /// The verified number behind a Mini Program's `getPhoneNumber` code, with
    /// the shared app token (a rejected one is dropped and the call made once
    /// more: WeChat checks the token before it spends the code). Failures are
    /// reported at [`Stage::Exchange`].
    pub async fn phone_number(
        &self,
        code: &str,
        now: i64,
    ) -> Result<crate::PhoneInfo, WeChatError> {
        let stage = Stage::Exchange;
        let token = self.get(now).await.map_err(|e| e.at_stage(stage))?;
        match self.client.user_phone_number(&token, code).await {
            Err(e) if e.app_token_rejected() => {
                tracing::info!(appid = %self.appid, errcode = e.errcode, "WeChat rejected the cached app token; fetching a new one and asking for the phone number once more");
                self.rejected(&token).await;
                let token = self.get(now).await.map_err(|e| e.at_stage(stage))?;
                self.client
                    .user_phone_number(&token, code)
                    .await
                    .map_err(|e| e.at_stage(stage))
            }
            other => other.map_err(|e| e.at_stage(stage)),
        }
    }
}

fn cache_error(e: idbridge_core::CacheError) -> WeChatError {
    WeChatError::local(
        Api::CgiStableToken,
        ErrorKind::UpstreamUnavailable,
        Some(e.to_string()),
        "the broker's shared cache (its database) is unavailable, so the WeChat app token \
         cannot be read or stored; retry when the database is back"
            .to_owned(),
    )
    .at_stage(Stage::Message)
}
