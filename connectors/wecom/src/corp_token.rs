//! Owns [`CorpTokens`]: the corp access token of one self-built app, kept in
//! the broker's shared cache and fetched by one instance at a time (the kit's
//! [`SharedToken`] lease), refreshed five minutes before its 7200 s run out.
//! WeCom rations `gettoken` and asks callers to cache the token, so instances
//! never fetch their own. A token WeCom calls expired (42001) or invalid
//! (40014) is dropped and the call made once more with a new one.

use crate::api::{Api, Failure};
use idbridge_connector_kit::lease::{LeaseError, LeaseTiming, SharedToken};
use idbridge_core::{CachedValue, ConnectorError, ErrorKind, Shared, Stage};
use std::future::Future;

pub struct CorpTokens {
    api: Api,
    corp_id: String,
    agent_id: u64,
    secret: String,
    token: SharedToken,
}

impl CorpTokens {
    pub fn new(api: Api, corp_id: &str, agent_id: u64, secret: &str, shared: Shared) -> Self {
        Self {
            api,
            corp_id: corp_id.to_owned(),
            agent_id,
            secret: secret.to_owned(),
            // One token per app: each app's secret gets its own.
            token: SharedToken::new(
                shared,
                format!("wecom:corp_token:{corp_id}:{agent_id}"),
                LeaseTiming::default(),
            ),
        }
    }

    /// A live corp token (this process, the shared cache, or fetched under the lease).
    pub async fn get(&self, stage: Stage, now: i64) -> Result<String, ConnectorError> {
        let fetch = || async {
            let t = self.api.gettoken(&self.corp_id, &self.secret).await?;
            Ok::<_, Failure>(CachedValue {
                value: t.access_token,
                expires_at: now + t.expires_in,
            })
        };
        match self.token.get(now, fetch).await {
            Ok(lent) => {
                if lent.fetched {
                    tracing::info!(corp_id = %self.corp_id, agent_id = self.agent_id, expires_in = lent.expires_at - now, "fetched the WeCom corp access token (gettoken) for every broker instance");
                }
                Ok(lent.value)
            }
            Err(LeaseError::Fetch(e)) => Err(e.at(stage)),
            Err(LeaseError::Cache(e)) => Err(ConnectorError::new(stage, ErrorKind::UpstreamUnavailable)
                .upstream("shared_cache", e.to_string())
                .fix("the broker's shared cache (its database) is unavailable, so the WeCom corp token cannot be read or stored; retry when the database is back")),
            Err(LeaseError::Busy { waited }) => Err(ConnectorError::new(stage, ErrorKind::UpstreamUnavailable)
                .upstream("token_lease_busy", format!("no corp token stored for {} s", waited.as_secs()))
                .fix(format!("another broker instance holds the corp-token lease for {} and stored no token: check that instance's log for the gettoken failure", self.corp_id))),
        }
    }

    /// `call` with a live token; when WeCom says the token is stale (42001,
    /// 40014) it is dropped here and in the shared cache, and `call` runs once
    /// more with a new one.
    pub async fn with_token<T, F, Fut>(&self, stage: Stage, now: i64, call: F) -> Result<T, Failure>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let token = self.get(stage, now).await.map_err(Failure::Other)?;
        match call(token.clone()).await {
            Err(e) if e.token_rejected() => {
                tracing::info!(corp_id = %self.corp_id, errcode = e.errcode(), "WeCom rejected the cached corp token; fetching a new one and calling once more");
                self.token.rejected(&token).await;
                let token = self.get(stage, now).await.map_err(Failure::Other)?;
                call(token).await
            }
            other => other,
        }
    }
}
