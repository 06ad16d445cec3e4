//! Limits on what one client can make the broker do: request bodies bounded in
//! size and time, and failure limits that hold across instances.

use crate::harness::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A 1 MB form at an app endpoint is refused like any OAuth error: JSON,
/// `invalid_request`, `no-store`; at a browser endpoint, a page saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oversized_bodies_get_oauth_errors_and_pages() {
    let db = TestDb::new(Db::Sqlite);
    let broker = start(&db.url(), None, |_| {}).await;
    let big = format!(
        "grant_type=refresh_token&refresh_token={}",
        "a".repeat(1 << 20)
    );
    for path in ["/token", "/revoke", "/introspect"] {
        let resp = http()
            .post(format!("{}{path}", broker.base))
            .basic_auth(APP_ID, Some(APP_SECRET))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(big.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 413, "{path}");
        assert_eq!(resp.headers()["cache-control"], "no-store", "{path}");
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json"),
            "{path}: {:?}",
            resp.headers()["content-type"]
        );
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "invalid_request", "{path}: {body}");
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .contains("larger than 64 KiB"),
            "{path}: {body}"
        );
    }
    // A posted form of a hosted page.
    let resp = http()
        .post(format!("{}/account/link", broker.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    // A hosted page, refused or not, carries the pages' security headers.
    assert_eq!(resp.headers()["x-frame-options"], "DENY");
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    let page = resp.text().await.unwrap();
    assert!(page.contains("was too large"), "{page}");
    assert!(page.contains("send it again"), "{page}");
    assert!(
        !log_lines(&["request body refused", "reason=\"too_large\"", "/token"]).is_empty(),
        "an operator sees why"
    );
    broker.stop().await;
}

/// Send `head` and `sent` of a body announced as `length` bytes, then nothing.
/// Returns what the broker answered and how long it took to answer or close.
async fn stall(base: &str, head: &str, sent: &str) -> (String, Duration) {
    let addr = base.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(sent.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    // Give up well past the bound: the old broker waited for ever.
    let read = tokio::time::timeout(Duration::from_secs(15), conn.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "the stalled request was neither answered nor closed within 15 s"
    );
    (
        String::from_utf8_lossy(&answer).into_owned(),
        started.elapsed(),
    )
}

fn post_head(path: &str, length: usize) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic YXBwOmFwcC1zZWNyZXQtMDEyMzQ1Njc4OWFiY2RlZg==\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {length}\r\n\r\n"
    )
}

/// A client that sends the headers and a few bytes of the body, then nothing,
/// holds a connection only for `server.request_read_timeout_secs`: then it gets
/// an OAuth error (408, `no-store`) or a page, and the connection is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stalled_bodies_are_cut_off_within_the_bound() {
    let db = TestDb::new(Db::Sqlite);
    let broker = start(&db.url(), None, |s| s.server.request_read_timeout_secs = 2).await;
    for path in ["/token", "/revoke", "/introspect"] {
        let (answer, took) = stall(&broker.base, &post_head(path, 100), "grant_type=").await;
        assert!(
            took < Duration::from_secs(4),
            "{path}: answered after {took:?}"
        );
        assert!(answer.starts_with("HTTP/1.1 408"), "{path}: {answer}");
        assert!(
            answer.contains("cache-control: no-store"),
            "{path}: {answer}"
        );
        assert!(
            answer.contains(r#""error":"invalid_request""#)
                && answer.contains("did not arrive within 2 s"),
            "{path}: {answer}"
        );
    }
    let (answer, took) = stall(
        &broker.base,
        &post_head("/account/link", 500),
        "csrf=abc&connector=",
    )
    .await;
    assert!(
        took < Duration::from_secs(4),
        "page: answered after {took:?}"
    );
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("did not arrive in time"), "{answer}");
    // A head that never ends (slowloris) is cut off by the same bound.
    let (answer, took) = stall(
        &broker.base,
        "POST /token HTTP/1.1\r\nHost: 127.0.0.1\r\n",
        "Content-Type: appl",
    )
    .await;
    assert!(took < Duration::from_secs(4), "head: closed after {took:?}");
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    broker.stop().await;
}

/// Two instances on one Postgres database behind a load balancer: failures
/// from one address, alternated between them, count in total: the limit trips
/// after `failures_per_minute` failures, on both, not after twice as many.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_failure_limit_holds_across_instances() {
    let db = TestDb::new(Db::Postgres);
    let url = db.url();
    let tweak = |s: &mut idbridge_server::Settings| s.server.failures_per_minute = 6;
    let (a, b) = tokio::join!(start(&url, None, tweak), start(&url, None, tweak));
    // Good traffic first: never counted, on either.
    let t = tokens_for(&a.base, "alice").await;
    let mut rt = t["refresh_token"].as_str().unwrap().to_owned();
    for base in [&a.base, &b.base, &a.base, &b.base] {
        let r: serde_json::Value = refresh(base, &rt).await.json().await.unwrap();
        rt = r["refresh_token"].as_str().unwrap().to_owned();
    }
    for n in 0..6 {
        let base = if n % 2 == 0 { &a.base } else { &b.base };
        let r = refresh(base, "guess").await;
        assert_eq!(r.status(), 400, "failure {n} at {base}");
    }
    for base in [&a.base, &b.base] {
        let r = refresh(base, "guess").await;
        assert_eq!(r.status(), 429, "{base}: the seventh failure in total");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"], "slow_down");
        // Good requests from the address are refused too until it refills.
        assert_eq!(refresh(base, &rt).await.status(), 429);
    }
    // A minute on (the brokers' clocks), the budget is back on both.
    a.clock().advance(60);
    b.clock().advance(60);
    let r: serde_json::Value = refresh(&b.base, &rt).await.json().await.unwrap();
    assert!(r["access_token"].is_string(), "{r}");
    assert_eq!(refresh(&a.base, "guess").await.status(), 400);
    a.stop().await;
    b.stop().await;
}
