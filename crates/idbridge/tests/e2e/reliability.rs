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

/// A guessed refresh token from `ip`, sent through a proxy at 127.0.0.1 that
/// says so in `X-Forwarded-For`.
async fn guess_via_proxy(base: &str, ip: &str) -> u16 {
    http()
        .post(format!("{base}/token"))
        .basic_auth(APP_ID, Some(APP_SECRET))
        .header("x-forwarded-for", format!("{ip}, 10.9.8.7"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", "guess")])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Behind a reverse proxy every request comes from the proxy. With the proxy in
/// `server.trusted_proxies`, the failure limit counts each client named by
/// `X-Forwarded-For`, so one guesser does not lock out everyone behind the
/// proxy, and the audit log records the person's address. Without it, the header
/// is ignored: a guesser cannot dodge the limit by making addresses up.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn behind_a_trusted_proxy_each_client_has_its_own_failure_limit() {
    let db = TestDb::new(Db::Sqlite);
    let broker = start(&db.url(), None, |s| {
        s.server.failures_per_minute = 3;
        s.server.trusted_proxies = vec!["127.0.0.1".into(), "10.0.0.0/8".into()];
    })
    .await;
    for _ in 0..3 {
        assert_eq!(guess_via_proxy(&broker.base, "203.0.113.7").await, 400);
    }
    assert_eq!(guess_via_proxy(&broker.base, "203.0.113.7").await, 429);
    // Another person behind the same proxy is not limited.
    assert_eq!(guess_via_proxy(&broker.base, "203.0.113.8").await, 400);

    // A sign-in through the proxy: the login event has the person's address.
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        "x-forwarded-for",
        reqwest::header::HeaderValue::from_static("198.51.100.20"),
    );
    let b = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(headers)
        .build()
        .unwrap();
    let (url, _) = authorize_url(&broker.base, &[]);
    let back = sign_in(&b, &broker.base, &url, "alice").await;
    assert!(query_param(&back, "code").is_some(), "{back}");
    let logins = audit_events(&broker, "login").await;
    assert_eq!(
        logins.first().and_then(|l| l.event.ip.clone()).as_deref(),
        Some("198.51.100.20")
    );
    broker.stop().await;

    // No trusted proxies: made-up addresses do not get a guesser more tries.
    let db2 = TestDb::new(Db::Sqlite);
    let broker2 = start(&db2.url(), None, |s| s.server.failures_per_minute = 3).await;
    for ip in ["192.0.2.1", "192.0.2.2", "192.0.2.3"] {
        assert_eq!(guess_via_proxy(&broker2.base, ip).await, 400);
    }
    assert_eq!(guess_via_proxy(&broker2.base, "192.0.2.4").await, 429);
    broker2.stop().await;
}
