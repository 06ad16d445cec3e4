//! Reliability promises: a database outage fails requests cleanly and the broker
//! recovers by itself; a stalled database turns into quick 503s, not hung requests;
//! clock skew between instances is tolerated; guessing is rate-limited while good
//! traffic is not.

use std::time::{Duration, Instant};

use crate::db_proxy::{DbProxy, Mode};
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

async fn healthz(base: &str) -> (u16, serde_json::Value) {
    let r = http()
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("healthz");
    (r.status().as_u16(), r.json().await.unwrap_or_default())
}

/// Polls `/healthz` until it answers 200 (at most `within`).
async fn wait_healthy(base: &str, within: Duration) {
    let started = Instant::now();
    while started.elapsed() < within {
        if healthz(base).await.0 == 200 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("/healthz did not answer 200 within {within:?} of the database coming back");
}

/// `fut`, which must finish within `bound`; returns its output and how long it took.
async fn within<T>(
    what: &str,
    bound: Duration,
    fut: impl std::future::Future<Output = T>,
) -> (T, Duration) {
    let started = Instant::now();
    match tokio::time::timeout(bound, fut).await {
        Ok(out) => (out, started.elapsed()),
        Err(_) => panic!("{what}: still waiting {bound:?} into the database stall"),
    }
}

/// The connection to Postgres freezes (socket open, no answers): each request gets
/// a clean 503 within a few seconds instead of hanging for the whole stall,
/// `/healthz` says the database is down within its bound, and once the store knows,
/// requests fail at once. Unfrozen, the broker recovers by itself, and nothing the
/// stalled requests began was written behind the app's back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stalled_database_gives_quick_503s_and_healthz_says_so_then_recovers() {
    let db = TestDb::new(Db::Postgres);
    let proxy = DbProxy::start(&db.url()).await;
    let broker = start(&proxy.url(&db.url()), None, |s| {
        s.storage.connect_timeout_secs = 1;
        s.storage.query_timeout_secs = 1;
        // No grace: a rotation landing after the app was told "retry" would make
        // the retry a replay, revoking the grant.
        s.tokens.refresh_grace_secs = 0;
    })
    .await;
    let t = tokens_for(&broker.base, "alice").await;
    let rt = t["refresh_token"].as_str().unwrap().to_owned();

    proxy.set(Mode::Freeze);
    let bound = Duration::from_secs(8);
    let (r, took) = within("refresh", bound, refresh(&broker.base, &rt)).await;
    assert_eq!(
        r.status(),
        503,
        "a clean error while the database is stalled"
    );
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["error"],
        "temporarily_unavailable"
    );
    assert!(took < Duration::from_secs(3), "the refresh took {took:?}");
    eprintln!("stalled database: the refresh answered 503 in {took:?}");
    let ((status, body), took) = within("/healthz", bound, healthz(&broker.base)).await;
    eprintln!("stalled database: /healthz answered {status} in {took:?}");
    assert_eq!(
        (status, &body["database"]),
        (503, &"unavailable".into()),
        "{body}"
    );
    assert!(took < Duration::from_millis(2500), "/healthz took {took:?}");
    // The store knows now: requests fail at once instead of each waiting.
    let (r, took) = within("second refresh", bound, refresh(&broker.base, &rt)).await;
    assert_eq!(r.status(), 503);
    assert!(
        took < Duration::from_millis(500),
        "the second refresh took {took:?}"
    );
    // Sign-ins: /authorize sends the error back to the app; the callback shows the
    // page that says to retry.
    let (url, _) = authorize_url(&broker.base, &[]);
    let (back, _) = within("/authorize", bound, browser().get(&url).send()).await;
    let back = location(&back.unwrap());
    assert!(back.starts_with(APP_REDIRECT), "{back}");
    assert_eq!(
        query_param(&back, "error").as_deref(),
        Some("temporarily_unavailable")
    );
    let callback = format!("{}/callback/dev?state=s&user=alice", broker.base);
    let (page, _) = within("callback", bound, browser().get(&callback).send()).await;
    let page = page.unwrap();
    assert_eq!(page.status(), 503);
    assert!(page
        .text()
        .await
        .unwrap()
        .contains("database is unavailable"));
    assert!(
        !log_lines(&["database unreachable", "did not answer within 1s"]).is_empty(),
        "an operator reads why"
    );

    // The stall lasts longer than the timeouts, then ends.
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.set(Mode::Forward);
    wait_healthy(&broker.base, Duration::from_secs(10)).await;
    assert!(!log_lines(&["database answers again"]).is_empty());
    let r = refresh(&broker.base, &rt).await;
    assert_eq!(
        r.status(),
        200,
        "the app's token was not rotated behind its back"
    );
    let next: serde_json::Value = r.json().await.unwrap();
    let r = refresh(&broker.base, next["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.status(), 200);
    broker.stop().await;
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Postgres gone (connections closed, new ones refused) under 50 refreshes a
/// second, with the default timeouts: every answer is a clean 503, and at once —
/// a request does not hold its app's share waiting `connect_timeout_secs` for a
/// database that is known to be down. Back, refreshes succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn database_gone_under_load_answers_503_at_once_and_recovers() {
    let db = TestDb::new(Db::Postgres);
    let proxy = DbProxy::start(&db.url()).await;
    let broker = start(&proxy.url(&db.url()), None, |_| {}).await;
    let t = tokens_for(&broker.base, "alice").await;
    let rt = t["refresh_token"].as_str().unwrap().to_owned();

    proxy.set(Mode::Refuse);
    let client = http();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut sent = Vec::new();
    for _ in 0..150 {
        tick.tick().await;
        let (client, base, rt) = (client.clone(), broker.base.clone(), rt.clone());
        sent.push(tokio::spawn(async move {
            let started = Instant::now();
            let r = client
                .post(format!("{base}/token"))
                .basic_auth(APP_ID, Some(APP_SECRET))
                .form(&[("grant_type", "refresh_token"), ("refresh_token", &rt)])
                .send()
                .await
                .expect("refresh");
            let status = r.status().as_u16();
            let body: serde_json::Value = r.json().await.unwrap_or_default();
            (started.elapsed(), status, body["error"].clone())
        }));
    }
    let mut took = Vec::new();
    for answer in sent {
        let (elapsed, status, error) = answer.await.unwrap();
        assert_eq!((status, error), (503, "temporarily_unavailable".into()));
        took.push(elapsed);
    }
    took.sort();
    let (p50, p99) = (percentile(&took, 0.5), percentile(&took, 0.99));
    eprintln!(
        "database gone, 50 refreshes/s: p50 {p50:?}, p99 {p99:?}, max {:?}",
        took.last().unwrap()
    );
    assert!(
        p99 < Duration::from_millis(1500),
        "p50 {p50:?}, p99 {p99:?}"
    );

    proxy.set(Mode::Forward);
    wait_healthy(&broker.base, Duration::from_secs(10)).await;
    let r = refresh(&broker.base, &rt).await;
    assert_eq!(r.status(), 200, "nothing was lost");
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
