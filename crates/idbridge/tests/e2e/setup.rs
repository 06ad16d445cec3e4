//! A connector whose upstream is down at start-up: the broker starts and serves
//! everything else, `/healthz` names the connector not ready with the reason, the
//! sign-in page shows it unavailable and asking for it gets a clear page; once
//! the upstream answers, the background retries make it ready without a restart.
//!
//! The connector here is the test's own (a real connector crate would fetch a
//! discovery document the same way): its `prepare` GETs a URL on 127.0.0.1, where
//! nothing listens until the test starts a real HTTP server there.

use crate::harness::*;
use async_trait::async_trait;
use idbridge_core::{
    BeginRequest, BuildContext, CallbackRequest, ConfigError, Connector, ConnectorError,
    ConnectorFactory, ConnectorId, ConnectorSettings, ErrorKind, ExternalIdentity, RequestContext,
    Stage, Started,
};
use std::sync::Arc;
use std::time::Duration;

struct Discovering {
    id: ConnectorId,
    url: String,
    http: reqwest::Client,
}

#[async_trait]
impl Connector for Discovering {
    fn id(&self) -> &ConnectorId {
        &self.id
    }
    fn kind(&self) -> &'static str {
        "discovering"
    }
    fn display_name(&self) -> &str {
        "Discovering IdP"
    }
    async fn prepare(&self, _now: i64) -> Result<(), ConnectorError> {
        let setup = |code: String, message: String| {
            ConnectorError::new(Stage::Setup, ErrorKind::UpstreamUnavailable)
                .upstream(code, message)
                .fix(format!("make {} reachable from the broker", self.url))
        };
        match self.http.get(&self.url).send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(setup(r.status().as_u16().to_string(), "HTTP error".into())),
            Err(_) => Err(setup("connect".into(), "cannot connect".into())),
        }
    }
    async fn begin(
        &self,
        _ctx: &RequestContext,
        request: &BeginRequest,
    ) -> Result<Started, ConnectorError> {
        Ok(Started::redirect(format!(
            "{}authorize?state={}",
            self.url, request.state
        )))
    }
    async fn complete(
        &self,
        _ctx: &RequestContext,
        _callback: &CallbackRequest,
    ) -> Result<ExternalIdentity, ConnectorError> {
        Err(ConnectorError::new(Stage::Callback, ErrorKind::Unsupported))
    }
}

struct DiscoveringFactory;

impl ConnectorFactory for DiscoveringFactory {
    fn kind(&self) -> &'static str {
        "discovering"
    }
    fn build(
        &self,
        settings: &ConnectorSettings,
        _ctx: &BuildContext,
    ) -> Result<Arc<dyn Connector>, Vec<ConfigError>> {
        let url = settings.options["url"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        Ok(Arc::new(Discovering {
            id: settings.id.clone(),
            url,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(1))
                .build()
                .unwrap(),
        }))
    }
}

/// A real HTTP server on `listener` that answers 200 to everything.
fn serve_ok(listener: std::net::TcpListener) -> actix_web::dev::ServerHandle {
    let server = actix_web::HttpServer::new(|| {
        actix_web::App::new().default_service(actix_web::web::to(|| async { "{}" }))
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    handle
}

async fn health(base: &str) -> serde_json::Value {
    get_json(&http(), format!("{base}/healthz")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_connector_down_at_start_up_becomes_ready_without_a_restart() {
    // A port where nothing listens yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/");
    let db = TestDb::new(Db::Sqlite);
    let registry = idbridge::registry().with(DiscoveringFactory);
    let connector_url = url.clone();
    let broker = start_with_registry(&db.url(), None, registry, move |s| {
        s.connectors = vec![
            serde_json::json!({"id": "dev", "type": "dev"}),
            serde_json::json!({"id": "dev2", "type": "dev", "name": "Second dev"}),
            serde_json::json!({"id": "idp", "type": "discovering", "url": connector_url}),
        ];
    })
    .await;
    let base = &broker.base;

    // The broker serves; the connector is not ready, and says why.
    let h = health(base).await;
    assert_eq!(h["status"], "degraded", "{h}");
    assert_eq!(h["database"], "ok");
    assert_eq!(h["connectors"]["dev"], "ok");
    assert_eq!(h["connectors"]["dev2"], "ok");
    assert_eq!(h["connectors"]["idp"]["status"], "not_ready", "{h}");
    assert_eq!(h["connectors"]["idp"]["stage"], "setup");
    assert_eq!(h["connectors"]["idp"]["upstream_code"], "connect");
    assert!(!log_lines(&[
        "connector_not_ready",
        "connector=idp",
        "fix=\"make http://127.0.0.1"
    ])
    .is_empty());

    // The chooser shows it unavailable, with the reason; asking for it directly
    // gets a page naming the stage, not a redirect to a dead upstream.
    let (url_any, _) = authorize_url(base, &[]);
    let b = browser();
    let first = b
        .get(url_any.replace("&connector=dev", ""))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 302);
    let chooser = b.get(location(&first)).send().await.unwrap();
    assert_eq!(chooser.status(), 200);
    let page = chooser.text().await.unwrap();
    assert!(page.contains("Discovering IdP"), "{page}");
    assert!(page.contains("cannot reach its provider"), "{page}");
    let (url_idp, _) = authorize_url(base, &[]);
    let b = browser();
    let resp = b
        .get(url_idp.replace("connector=dev", "connector=idp"))
        .send()
        .await
        .unwrap();
    let resp = if resp.status() == 302 {
        b.get(location(&resp)).send().await.unwrap()
    } else {
        resp
    };
    assert_eq!(resp.status(), 502);
    let page = resp.text().await.unwrap();
    assert!(
        page.contains("stage=setup kind=upstream_unavailable"),
        "{page}"
    );

    // Everything else works meanwhile.
    let t = tokens_for(base, "alice").await;
    assert!(t["id_token"].is_string(), "{t}");

    // The upstream comes up: the background retries find it.
    let server = serve_ok(std::net::TcpListener::bind(("127.0.0.1", port)).unwrap());
    let mut ready = false;
    for _ in 0..80 {
        if health(base).await["connectors"]["idp"] == "ok" {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "{}", health(base).await);
    assert_eq!(health(base).await["status"], "ok");
    assert!(!log_lines(&["connector_ready", "connector=idp"]).is_empty());
    let b = browser();
    let resp = b
        .get(url_idp.replace("connector=dev", "connector=idp"))
        .send()
        .await
        .unwrap();
    let resp = if resp.status() == 302 && location(&resp).starts_with(base.as_str()) {
        b.get(location(&resp)).send().await.unwrap()
    } else {
        resp
    };
    assert_eq!(resp.status(), 302);
    assert!(location(&resp).starts_with(&format!("{url}authorize?state=")));
    server.stop(true).await;
    broker.stop().await;
}
