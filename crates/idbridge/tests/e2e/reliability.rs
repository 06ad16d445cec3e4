//! Reliability promises: a database outage fails requests cleanly and the broker
//! recovers by itself; clock skew between instances is tolerated; guessing is
//! rate-limited while good traffic is not.

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn database_outage_fails_cleanly_and_recovers() {
    let db = TestDb::new(Db::Postgres);
    let broker = start(&db.url(), None, |s| s.storage.connect_timeout_secs = 1).await;
    let t = tokens_for(&broker.base, "alice").await;
    let rt = t["refresh_token"].as_str().unwrap().to_owned();

    db.db.set_postgres_down(true);
    let health = http()
        .get(format!("{}/healthz", broker.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 503);
    assert_eq!(
        health.json::<serde_json::Value>().await.unwrap()["status"],
        "degraded"
    );
    let r = refresh(&broker.base, &rt).await;
    assert_eq!(r.status(), 503, "a clean error while the database is down");
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["error"],
        "temporarily_unavailable"
    );
    // Discovery and JWKS keep answering from memory.
    assert_eq!(
        http()
            .get(format!("{}/jwks", broker.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    db.db.set_postgres_down(false);
    let mut recovered = false;
    for _ in 0..50 {
        if http()
            .get(format!("{}/healthz", broker.base))
            .send()
            .await
            .unwrap()
            .status()
            == 200
        {
            recovered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(recovered, "the broker reconnects by itself");
    // Nothing committed was lost: the refresh token from before the outage works.
    let r = refresh(&broker.base, &rt).await;
    assert_eq!(r.status(), 200);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clock_skew_between_instances_is_tolerated() {
    let db = TestDb::new(Db::Postgres);
    let a = start(&db.url(), None, |_| {}).await;
    let b = start(&db.url(), Some(&a.base), |_| {}).await;
    // A runs 25 s ahead of B: its tokens look issued in B's future.
    a.clock().advance(25);
    let t = tokens_for(&a.base, "alice").await;
    let at = t["access_token"].as_str().unwrap();
    let r = http()
        .get(format!("{}/userinfo", b.base))
        .bearer_auth(at)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "25 s of skew is within the 30 s leeway");
    let c = claims(at);
    assert!(c.get("nbf").is_none(), "no nbf to trip over");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn guessing_is_rate_limited_but_good_traffic_is_not() {
    let db = TestDb::new(Db::Sqlite);
    let broker = start(&db.url(), None, |s| s.server.failures_per_minute = 5).await;
    // Plenty of successful requests: never limited.
    let t = tokens_for(&broker.base, "alice").await;
    let mut rt = t["refresh_token"].as_str().unwrap().to_owned();
    for _ in 0..20 {
        let r: serde_json::Value = refresh(&broker.base, &rt).await.json().await.unwrap();
        rt = r["refresh_token"].as_str().unwrap().to_owned();
    }
    // Guessing refresh tokens: five failures, then 429 with Retry-After.
    for _ in 0..5 {
        assert_eq!(refresh(&broker.base, "guess").await.status(), 400);
    }
    let limited = refresh(&broker.base, "guess").await;
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers().get("retry-after").unwrap(), "60");
    // Guessing callback states is limited too.
    let db2 = TestDb::new(Db::Sqlite);
    let broker2 = start(&db2.url(), None, |s| s.server.failures_per_minute = 3).await;
    for _ in 0..3 {
        let r = http()
            .get(format!("{}/callback/dev?state=guess&user=a", broker2.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
    }
    let r = http()
        .get(format!("{}/callback/dev?state=guess&user=a", broker2.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    broker.stop().await;
    broker2.stop().await;
}
