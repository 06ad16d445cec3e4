//! Connectors getting ready ([`idbridge_core::Connector::prepare`]: discovery
//! documents, signing keys). Building a connector checks its configuration and
//! does no I/O; start-up then gives every connector's first `prepare` a few
//! seconds, in parallel, so that healthy ones are ready when the listener
//! opens. A connector whose upstream is down then keeps trying in the
//! background (1 s, doubling, at most 60 s between attempts) while the broker
//! serves everything else; until it succeeds it is "not ready": `/healthz`
//! says so with the last error, the sign-in page shows it unavailable, and it
//! is never begun, completed, asked to exchange, refresh or send a message: the
//! server holds every connector as a [`Gated`] one, so no call site can forget.

use async_trait::async_trait;
use idbridge_core::{
    Availability, BeginRequest, CallbackRequest, Connector, ConnectorError, ConnectorId, ErrorKind,
    ExchangeRequest, ExternalIdentity, RequestContext, Stage, Started, UpstreamTokens,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long start-up waits for the first round of `prepare` calls.
pub const FIRST_ROUND: Duration = Duration::from_secs(5);
/// The longest pause between two attempts of a connector that is not ready.
pub const MAX_PAUSE: Duration = Duration::from_secs(60);

/// Whether one connector is ready, and why not.
#[derive(Debug, Default)]
pub struct SetupStatus {
    ready: AtomicBool,
    /// The last failure, for `/healthz` and the refusal's log line.
    last_error: Mutex<Option<ConnectorError>>,
}

impl SetupStatus {
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    fn last(&self) -> std::sync::MutexGuard<'_, Option<ConnectorError>> {
        match self.last_error.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The last failure of a connector that is not ready.
    pub fn last_error(&self) -> Option<ConnectorError> {
        if self.is_ready() {
            None
        } else {
            self.last().clone()
        }
    }

    fn succeeded(&self) {
        *self.last() = None;
        self.ready.store(true, Ordering::Release);
    }

    fn failed(&self, e: ConnectorError) {
        *self.last() = Some(e);
    }

    /// `Ok` when ready; else the error a sign-in, exchange or re-check through
    /// this connector fails with (the upstream counts as unavailable).
    pub fn check(&self, connector_id: &str) -> Result<(), ConnectorError> {
        if self.is_ready() {
            return Ok(());
        }
        let last = self.last().clone();
        let mut e = ConnectorError::new(Stage::Setup, ErrorKind::UpstreamUnavailable).fix(format!(
            "connector {connector_id} is not ready: its set-up (discovery, keys) has not succeeded yet; the broker keeps retrying (at most every 60 s). {}",
            last.as_ref()
                .and_then(|l| l.fix.clone())
                .unwrap_or_else(|| "Check that the upstream is reachable from the broker".into())
        ));
        if let Some(l) = last {
            e.upstream_code = l.upstream_code;
            e.upstream_message = l.upstream_message;
        }
        Err(e)
    }
}

/// A connector behind its set-up: while [`SetupStatus`] says it is not ready,
/// it is unavailable to every browser and each upstream call fails with the
/// status's error; then it is the connector itself.
pub struct Gated {
    inner: Arc<dyn Connector>,
    status: Arc<SetupStatus>,
}

impl Gated {
    pub fn new(inner: Arc<dyn Connector>, status: Arc<SetupStatus>) -> Self {
        Self { inner, status }
    }

    fn ready(&self) -> Result<(), ConnectorError> {
        self.status.check(self.inner.id().as_str())
    }
}

#[async_trait]
impl Connector for Gated {
    fn id(&self) -> &ConnectorId {
        self.inner.id()
    }
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn display_name(&self) -> &str {
        self.inner.display_name()
    }
    fn shows_inline(&self) -> bool {
        self.inner.shows_inline()
    }
    async fn prepare(&self, now: i64) -> Result<(), ConnectorError> {
        self.inner.prepare(now).await
    }
    fn availability(&self, ctx: &RequestContext) -> Availability {
        if self.status.is_ready() {
            self.inner.availability(ctx)
        } else {
            Availability::Unavailable {
                reason: crate::i18n::t(ctx.locale, "connector_not_ready").to_owned(),
            }
        }
    }
    fn has_browser_flow(&self) -> bool {
        self.inner.has_browser_flow()
    }
    fn subject_token_types(&self) -> &[&str] {
        self.inner.subject_token_types()
    }
    async fn begin(
        &self,
        ctx: &RequestContext,
        request: &BeginRequest,
    ) -> Result<Started, ConnectorError> {
        self.ready()?;
        self.inner.begin(ctx, request).await
    }
    async fn complete(
        &self,
        ctx: &RequestContext,
        callback: &CallbackRequest,
    ) -> Result<ExternalIdentity, ConnectorError> {
        self.ready()?;
        self.inner.complete(ctx, callback).await
    }
    fn vouches_for_email(&self) -> bool {
        self.inner.vouches_for_email()
    }
    fn vouches_for_phone(&self) -> bool {
        self.inner.vouches_for_phone()
    }
    fn supports_refresh(&self) -> bool {
        self.inner.supports_refresh()
    }
    async fn refresh(
        &self,
        ctx: &RequestContext,
        subject: &str,
        tokens: &UpstreamTokens,
    ) -> Result<ExternalIdentity, ConnectorError> {
        self.ready()?;
        self.inner.refresh(ctx, subject, tokens).await
    }
    async fn exchange(
        &self,
        ctx: &RequestContext,
        request: &ExchangeRequest,
    ) -> Result<ExternalIdentity, ConnectorError> {
        self.ready()?;
        self.inner.exchange(ctx, request).await
    }
    fn can_send_messages(&self) -> bool {
        self.inner.can_send_messages()
    }
    async fn send_message(
        &self,
        ctx: &RequestContext,
        subject: &str,
        text: &str,
    ) -> Result<(), ConnectorError> {
        self.ready()?;
        self.inner.send_message(ctx, subject, text).await
    }
}

/// One attempt; logs a failure precisely.
async fn attempt(
    id: &str,
    connector: &dyn Connector,
    status: &SetupStatus,
    now: i64,
    pause: Duration,
) -> bool {
    match connector.prepare(now).await {
        Ok(()) => {
            status.succeeded();
            true
        }
        Err(e) => {
            tracing::warn!(
                event = "connector_not_ready",
                connector = %id,
                stage = e.stage.as_str(),
                kind = e.kind.as_str(),
                upstream_code = e.upstream_code.as_deref().unwrap_or("-"),
                upstream_message = e.upstream_message.as_deref().unwrap_or("-"),
                fix = e.fix.as_deref().unwrap_or("-"),
                retry_in_secs = pause.as_secs(),
                "connector set-up failed; it stays unavailable and is retried, the broker serves the others"
            );
            status.failed(e);
            false
        }
    }
}

/// The first round at start-up: every connector's `prepare` at once, for at
/// most `within` in all. Returns the ids of those not ready.
pub async fn first_round(
    connectors: &[(String, Arc<dyn Connector>, Arc<SetupStatus>)],
    now: i64,
    within: Duration,
) -> Vec<String> {
    let mut round = tokio::task::JoinSet::new();
    for (id, connector, status) in connectors {
        let (id, connector, status) = (id.clone(), connector.clone(), status.clone());
        round.spawn(async move {
            let ok = tokio::time::timeout(
                within,
                attempt(&id, connector.as_ref(), &status, now, Duration::from_secs(1)),
            )
            .await
            .unwrap_or_else(|_| {
                status.failed(
                    ConnectorError::new(Stage::Setup, ErrorKind::Timeout).fix(format!(
                        "the connector's set-up took longer than {} s at start-up; it goes on in the background",
                        within.as_secs()
                    )),
                );
                tracing::warn!(event = "connector_not_ready", connector = %id, stage = "setup", kind = "timeout", "connector set-up is still running after the start-up wait; it is unavailable until it succeeds");
                false
            });
            (!ok).then_some(id)
        });
    }
    let mut not_ready = Vec::new();
    while let Some(done) = round.join_next().await {
        if let Ok(Some(id)) = done {
            not_ready.push(id);
        }
    }
    not_ready.sort();
    not_ready
}

/// Keep trying one connector until it is ready: pauses of 1 s, doubling, at
/// most [`MAX_PAUSE`]. `now` reads the broker's clock.
pub async fn retry_until_ready(
    id: String,
    connector: Arc<dyn Connector>,
    status: Arc<SetupStatus>,
    now: impl Fn() -> i64,
) {
    let mut pause = Duration::from_secs(1);
    let mut attempts = 1u32;
    while !status.is_ready() {
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_PAUSE);
        attempts = attempts.saturating_add(1);
        if attempt(&id, connector.as_ref(), &status, now(), pause).await {
            tracing::info!(event = "connector_ready", connector = %id, attempts, "connector set-up succeeded; it is available again");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use async_trait::async_trait;
    use std::sync::atomic::AtomicU32;

    /// Fails `prepare` its first `failures` times.
    struct Flaky {
        id: ConnectorId,
        failures: u32,
        calls: AtomicU32,
    }

    #[async_trait]
    impl Connector for Flaky {
        fn id(&self) -> &ConnectorId {
            &self.id
        }
        fn kind(&self) -> &'static str {
            "flaky"
        }
        fn display_name(&self) -> &str {
            "Flaky"
        }
        async fn prepare(&self, _now: i64) -> Result<(), ConnectorError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            if n < self.failures {
                Err(
                    ConnectorError::new(Stage::Setup, ErrorKind::UpstreamUnavailable)
                        .upstream("connect", "connection refused")
                        .fix("start the upstream"),
                )
            } else {
                Ok(())
            }
        }
        async fn begin(
            &self,
            _ctx: &RequestContext,
            _request: &BeginRequest,
        ) -> Result<Started, ConnectorError> {
            Ok(Started::redirect("https://upstream.example/"))
        }
        async fn complete(
            &self,
            _ctx: &RequestContext,
            _callback: &CallbackRequest,
        ) -> Result<ExternalIdentity, ConnectorError> {
            Err(ConnectorError::new(Stage::Callback, ErrorKind::Unsupported))
        }
    }

    fn flaky(failures: u32) -> Arc<Flaky> {
        Arc::new(Flaky {
            id: ConnectorId::parse("flaky").unwrap(),
            failures,
            calls: AtomicU32::new(0),
        })
    }

    #[tokio::test]
    async fn a_gated_connector_refuses_every_call_until_ready() {
        let status = Arc::new(SetupStatus::default());
        let gated = Gated::new(flaky(0), status.clone());
        let ctx = RequestContext::new("test", idbridge_core::Locale::En, 0);
        assert!(matches!(
            gated.availability(&ctx),
            Availability::Unavailable { .. }
        ));
        let e = gated
            .begin(&ctx, &BeginRequest::new("s", "http://127.0.0.1:1/cb"))
            .await
            .unwrap_err();
        assert_eq!(
            (e.stage, e.kind),
            (Stage::Setup, ErrorKind::UpstreamUnavailable)
        );
        let list = vec![(
            "flaky".to_owned(),
            Arc::new(gated) as Arc<dyn Connector>,
            status.clone(),
        )];
        assert!(first_round(&list, 0, FIRST_ROUND).await.is_empty());
        let gated = &list[0].1;
        assert_eq!(gated.availability(&ctx), Availability::Available);
        assert!(gated
            .begin(&ctx, &BeginRequest::new("s", "http://127.0.0.1:1/cb"))
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn a_healthy_connector_is_ready_after_the_first_round() {
        let c = flaky(0);
        let status = Arc::new(SetupStatus::default());
        let list = vec![(
            "flaky".to_owned(),
            c.clone() as Arc<dyn Connector>,
            status.clone(),
        )];
        assert!(first_round(&list, 0, FIRST_ROUND).await.is_empty());
        assert!(status.is_ready());
        assert!(status.check("flaky").is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_connector_is_refused_with_its_last_error_then_recovers() {
        let c = flaky(3);
        let status = Arc::new(SetupStatus::default());
        let list = vec![(
            "flaky".to_owned(),
            c.clone() as Arc<dyn Connector>,
            status.clone(),
        )];
        assert_eq!(first_round(&list, 0, FIRST_ROUND).await, ["flaky"]);
        let e = status.check("flaky").unwrap_err();
        assert_eq!(e.stage, Stage::Setup);
        assert_eq!(e.kind, ErrorKind::UpstreamUnavailable);
        assert_eq!(e.upstream_code.as_deref(), Some("connect"));
        assert!(e.fix.unwrap().contains("start the upstream"));
        // Paused time: the pauses (1 s, 2 s, …) pass instantly and in order.
        retry_until_ready("flaky".into(), c.clone(), status.clone(), || 0).await;
        assert!(status.is_ready());
        assert_eq!(c.calls.load(Ordering::SeqCst), 4);
        assert!(status.last_error().is_none());
    }
}
