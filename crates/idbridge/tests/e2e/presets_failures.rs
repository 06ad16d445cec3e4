//! Issue 13's failure list for the `apple` preset, end to end on provider-sim's
//! Apple fake: a rotated upstream key (a new `kid` refetches the keys), Apple's
//! refusal, an ID token from another issuer, and a client secret signed with a
//! key Apple does not know. Each ends in the app's error or a page, a log line
//! with the stage and the upstream's code, and no account written.

use crate::both_backends;
use crate::harness::*;
use crate::presets_upstream::{app_url, through_apple, users, wait_ready};
use provider_sim::apple::{self, AppleKey};
use provider_sim::oidc::Sim;

const SERVICES_ID: &str = "com.example.failures";
const TEAM: &str = "TEAMFA1234";
const KID: &str = "KEYFA12345";
const GRACE: &str = "000301.aa.0301";

async fn apple_fake(key: &AppleKey) -> Sim {
    Sim::start(apple::config(
        vec![apple::client(SERVICES_ID, key, "http://127.0.0.1:*")],
        vec![apple::user(
            GRACE,
            "grace@example.com",
            false,
            "Grace",
            "Hopper",
        )],
    ))
    .await
    .unwrap()
}

/// A broker with one `apple` connector on `sim`, signing its secrets with `pem`.
async fn broker_on(db_url: &str, sim: &Sim, pem: String) -> Broker {
    let issuer = sim.issuer();
    start(db_url, None, move |s| {
        s.connectors = vec![serde_json::json!({
            "id": "apple", "type": "apple", "name": "Sign in with Apple",
            "client_id": SERVICES_ID, "team_id": TEAM, "key_id": KID,
            "private_key": pem, "issuer": issuer,
        })];
    })
    .await
}

async fn apple_failures_end_cleanly(db_url: &str) {
    let key = AppleKey::generate(TEAM, KID).unwrap();
    let sim = apple_fake(&key).await;
    let broker = broker_on(db_url, &sim, key.pem.clone()).await;
    let (url, _) = app_url(&broker.base, "apple");
    wait_ready(&url, &sim.issuer()).await;

    // Apple rotated its key (the old one is gone): the new kid is fetched.
    sim.rotate_keys(true).unwrap();
    let done = through_apple(&browser(), &url, GRACE).await;
    assert_eq!(
        done.status(),
        302,
        "{}",
        done.text().await.unwrap_or_default()
    );
    assert!(
        query_param(&location(&done), "code").is_some(),
        "signed in after the rotation"
    );
    assert_eq!(users(&broker).await, 1);

    // The person cancels at Apple (`sim_deny`, Apple's user_cancelled_authorize):
    // the app is told access_denied.
    let refused = through_apple(&browser(), &url, "nobody&sim_deny=1").await;
    assert_eq!(refused.status(), 302);
    let back = location(&refused);
    assert!(back.starts_with(APP_REDIRECT), "{back}");
    assert_eq!(
        query_param(&back, "error").as_deref(),
        Some("access_denied")
    );
    assert!(
        !log_lines(&[
            "login_failed",
            "connector=apple",
            "user_cancelled_authorize"
        ])
        .is_empty(),
        "a log line names Apple's code"
    );

    // An ID token from another issuer, correctly signed: refused, with a page.
    sim.next_id_token_claims(serde_json::json!({"iss": "https://evil.example"}));
    let wrong_iss = through_apple(&browser(), &url, GRACE).await;
    assert!(wrong_iss.status().is_client_error() || wrong_iss.status().is_server_error());
    assert!(wrong_iss.text().await.unwrap().contains("<html"));
    assert!(
        !log_lines(&[
            "login_failed",
            "connector=apple",
            "token_verification_failed",
            "iss"
        ])
        .is_empty(),
        "a log line names the issuer check: {:?}",
        log_lines(&["connector=apple", "token_verification_failed"])
    );
    assert_eq!(users(&broker).await, 1, "nothing half-written");
    broker.stop().await;

    // A broker signing its client secrets with another .p8 key than the one
    // Apple has for the Services ID: invalid_client, a page, the fix in the log.
    let other = AppleKey::generate(TEAM, KID).unwrap();
    let sim = apple_fake(&key).await;
    let db = TestDb::new(if db_url.starts_with("postgres") {
        Db::Postgres
    } else {
        Db::Sqlite
    });
    let broker = broker_on(&db.url(), &sim, other.pem).await;
    let (url, _) = app_url(&broker.base, "apple");
    wait_ready(&url, &sim.issuer()).await;
    let failed = through_apple(&browser(), &url, GRACE).await;
    assert!(failed.status().is_client_error() || failed.status().is_server_error());
    let page = failed.text().await.unwrap();
    assert!(page.contains("invalid_client"), "{page}");
    assert!(
        !log_lines(&[
            "login_failed",
            "connector=apple",
            "token_exchange",
            "invalid_client",
            "key_id"
        ])
        .is_empty(),
        "a log line with the stage, Apple's code and the fix"
    );
    assert_eq!(users(&broker).await, 0, "no account");
    broker.stop().await;
}
both_backends!(apple_failures_end_cleanly);
