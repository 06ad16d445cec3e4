//! Owns [`AppTokens`]: one app token (`access_token` for cgi-bin calls) per appid,
//! shared by every broker instance through the broker's [`Shared`] cache, fetched
//! with `stable_token` by a single instance at a time (a lease in the cache), and
//! refreshed five minutes before it expires. WeChat allows 2000 fetches a day and
//! each plain fetch retires the previous token, so instances must never fetch
//! their own.

use crate::{Api, WeChatClient, WeChatError};
use idbridge_core::{CachedValue, ErrorKind, Shared, Stage};
use std::sync::Mutex;
use std::time::Duration;

/// Refresh this long before WeChat's expiry (a superseded token keeps working for
/// about 5 minutes, so nobody is caught with a dead one).
const MARGIN_SECS: i64 = 300;
/// How long one instance may hold the refresh lease.
const LEASE_SECS: i64 = 30;
/// How long to wait for another instance's refresh, polling the cache.
const WAIT_POLLS: u32 = 100;
const POLL_EVERY: Duration = Duration::from_millis(100);

/// The app token of one WeChat app (an Official Account), shared across instances.
pub struct AppTokens {
    client: WeChatClient,
    appid: String,
    secret: String,
    shared: Shared,
    key: String,
    /// This process's name in the lease.
    holder: String,
    /// The last token seen, so most calls touch neither WeChat nor the store.
    local: Mutex<Option<CachedValue>>,
    /// One refresher per process; the lease makes it one across instances.
    refreshing: tokio::sync::Mutex<()>,
}

impl AppTokens {
    pub fn new(client: WeChatClient, appid: &str, secret: &str, shared: Shared) -> Self {
        Self {
            client,
            appid: appid.to_owned(),
            secret: secret.to_owned(),
            shared,
            key: format!("wechat:app_token:{appid}"),
            holder: format!("{:016x}", rand::random::<u64>()),
            local: Mutex::new(None),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    fn usable(v: &CachedValue, now: i64) -> bool {
        v.expires_at - MARGIN_SECS > now
    }

    fn local(&self, now: i64) -> Option<String> {
        let guard = self.local.lock().unwrap_or_else(|p| p.into_inner());
        guard
            .as_ref()
            .filter(|v| Self::usable(v, now))
            .map(|v| v.value.clone())
    }

    fn remember(&self, v: Option<CachedValue>) {
        *self.local.lock().unwrap_or_else(|p| p.into_inner()) = v;
    }

    /// A live app token: from this process, else from the shared cache, else fetched
    /// by whichever instance wins the lease (the others wait for it).
    pub async fn get(&self, now: i64) -> Result<String, WeChatError> {
        if let Some(token) = self.local(now) {
            return Ok(token);
        }
        let _one_at_a_time = self.refreshing.lock().await;
        for _ in 0..WAIT_POLLS {
            if let Some(token) = self.local(now) {
                return Ok(token);
            }
            if let Some(token) = self.cached(now).await? {
                return Ok(token);
            }
            let leased = self
                .shared
                .try_lease(&self.key, &self.holder, now, now + LEASE_SECS)
                .await
                .map_err(cache_error)?;
            if leased {
                // Another instance may have stored its token and let go of the
                // lease between the read above and this lease: look once more
                // before asking WeChat, or both would fetch.
                if let Some(token) = self.cached(now).await? {
                    self.release_lease().await;
                    return Ok(token);
                }
                return self.fetch(now).await;
            }
            // Another instance is fetching: its token lands in the cache shortly.
            tokio::time::sleep(POLL_EVERY).await;
        }
        Err(WeChatError::local(
            Api::CgiStableToken,
            ErrorKind::UpstreamUnavailable,
            None,
            format!(
                "another broker instance holds the app-token lease for {} and has not stored \
                 a token for {} s; check that instance's log for the stable_token failure",
                self.appid,
                WAIT_POLLS as u64 * POLL_EVERY.as_millis() as u64 / 1000
            ),
        )
        .at_stage(Stage::Message))
    }

    /// A usable token from the shared cache, remembered here too.
    async fn cached(&self, now: i64) -> Result<Option<String>, WeChatError> {
        let cached = self.shared.get(&self.key, now).await.map_err(cache_error)?;
        Ok(cached.filter(|v| Self::usable(v, now)).map(|v| {
            let token = v.value.clone();
            self.remember(Some(v));
            token
        }))
    }

    async fn release_lease(&self) {
        if let Err(release) = self.shared.release(&self.key, &self.holder).await {
            tracing::warn!(appid = %self.appid, error = %release, "cannot release the app-token lease; it runs out by itself");
        }
    }

    async fn fetch(&self, now: i64) -> Result<String, WeChatError> {
        match self
            .client
            .stable_token(&self.appid, &self.secret, false)
            .await
        {
            Ok(t) => {
                let v = CachedValue {
                    value: t.access_token.clone(),
                    expires_at: now + t.expires_in,
                };
                self.shared
                    .put(&self.key, &self.holder, &v, now)
                    .await
                    .map_err(cache_error)?;
                tracing::info!(appid = %self.appid, expires_in = t.expires_in, "fetched the WeChat app token (stable_token) for every broker instance");
                self.remember(Some(v));
                Ok(t.access_token)
            }
            Err(e) => {
                self.release_lease().await;
                Err(e.at_stage(Stage::Message))
            }
        }
    }

    /// WeChat rejected `token` (stale, superseded, expired): forget it here and in the
    /// shared cache (unless another instance already replaced it).
    pub async fn rejected(&self, token: &str) {
        self.remember(None);
        if let Err(e) = self.shared.invalidate(&self.key, token).await {
            tracing::warn!(appid = %self.appid, error = %e, "cannot drop the rejected app token from the shared cache");
        }
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
