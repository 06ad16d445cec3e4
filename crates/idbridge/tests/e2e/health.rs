//! The probes a load balancer or Kubernetes uses: `/livez` (the process serves)
//! and `/readyz` (this instance can take traffic), next to the combined `/healthz`.

use std::time::{Duration, Instant};

use crate::db_proxy::{DbProxy, Mode};
use crate::harness::*;

async fn probe(base: &str, path: &str) -> (u16, serde_json::Value, Duration) {
    let started = Instant::now();
    let r = http()
        .get(format!("{base}{path}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    let status = r.status().as_u16();
    assert_eq!(
        r.headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store"),
        "{path} is never cached"
    );
    let body = r.json().await.unwrap_or_default();
    (status, body, started.elapsed())
}

async fn probes_on_a_healthy_broker(db_url: &str) {
    let broker = start(db_url, None, |_| {}).await;
    let (status, body, _) = probe(&broker.base, "/livez").await;
    assert_eq!((status, body), (200, serde_json::json!({"status": "ok"})));
    let (status, body, _) = probe(&broker.base, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        serde_json::json!({
            "status": "ready",
            "checks": {"database": "ok", "signing_keys": "ok", "migrations": "ok"},
            "not_ready": [],
        })
    );
    // Asked again (the migrations check is remembered), the same answer.
    let (status, again, _) = probe(&broker.base, "/readyz").await;
    assert_eq!((status, again), (200, body));
    // /healthz is unchanged.
    let h = http()
        .get(format!("{}/healthz", broker.base))
        .send()
        .await
        .unwrap();
    assert_eq!(h.status(), 200);
    let h: serde_json::Value = h.json().await.unwrap();
    assert_eq!((&h["status"], &h["database"]), (&"ok".into(), &"ok".into()));
    broker.stop().await;
}
crate::both_backends!(probes_on_a_healthy_broker);

/// Postgres unreachable (refused, then stalled): `/readyz` answers 503 naming the
/// database within its bound, `/livez` stays 200 and quick; once the database is
/// back, `/readyz` is ready again by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readyz_names_the_database_when_postgres_is_unreachable_and_livez_stays_up() {
    let db = TestDb::new(Db::Postgres);
    let proxy = DbProxy::start(&db.url()).await;
    let broker = start(&proxy.url(&db.url()), None, |s| {
        s.storage.connect_timeout_secs = 1;
        s.storage.query_timeout_secs = 1;
    })
    .await;
    assert_eq!(probe(&broker.base, "/readyz").await.0, 200);

    for mode in [Mode::Refuse, Mode::Freeze] {
        proxy.set(mode);
        let (status, body, took) = probe(&broker.base, "/readyz").await;
        assert_eq!(status, 503, "{mode:?}: {body}");
        assert_eq!(body["status"], "not_ready", "{mode:?}: {body}");
        assert_eq!(body["not_ready"], serde_json::json!(["database"]), "{body}");
        assert_eq!(body["checks"]["database"], "unavailable", "{body}");
        // Keys are in memory and the migrations were already seen applied.
        assert_eq!(body["checks"]["signing_keys"], "ok", "{body}");
        assert_eq!(body["checks"]["migrations"], "ok", "{body}");
        assert!(
            took < Duration::from_millis(2500),
            "{mode:?}: /readyz took {took:?}"
        );
        let (status, body, took) = probe(&broker.base, "/livez").await;
        assert_eq!((status, &body["status"]), (200, &"ok".into()), "{mode:?}");
        assert!(
            took < Duration::from_millis(500),
            "{mode:?}: /livez took {took:?}"
        );
    }

    proxy.set(Mode::Forward);
    let started = Instant::now();
    loop {
        let (status, body, _) = probe(&broker.base, "/readyz").await;
        if status == 200 {
            assert_eq!(body["status"], "ready");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "/readyz not ready 10 s after the database came back: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    broker.stop().await;
}

/// A migration this build embeds is missing from the database (say, rolled back by
/// hand while the broker ran): `/readyz` answers 503 naming `migrations` and which
/// one, and the other checks still pass.
async fn readyz_names_a_pending_migration(kind: Db) {
    let db = TestDb::new(kind);
    let broker = start(&db.url(), None, |_| {}).await;
    let newest = newest_migration();
    db.db.execute(
        "DELETE FROM __diesel_schema_migrations \
         WHERE version = (SELECT MAX(version) FROM __diesel_schema_migrations)",
    );
    let (status, body, _) = probe(&broker.base, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body["not_ready"],
        serde_json::json!(["migrations"]),
        "{body}"
    );
    assert_eq!(body["checks"]["migrations"], "pending", "{body}");
    assert_eq!(
        body["checks"]["migrations_pending"],
        serde_json::json!([newest]),
        "{body}"
    );
    assert_eq!(body["checks"]["database"], "ok", "{body}");
    assert_eq!(body["checks"]["signing_keys"], "ok", "{body}");
    assert!(!log_lines(&["readiness", "migrations not applied", &newest]).is_empty());
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readyz_names_a_pending_migration_on_sqlite() {
    readyz_names_a_pending_migration(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readyz_names_a_pending_migration_on_postgres() {
    readyz_names_a_pending_migration(Db::Postgres).await;
}
