//! What can go wrong with an OpenID upstream, end to end through the broker on
//! provider-sim's generic OpenID fake: every forged or mismatched ID token
//! (a bad signature, `alg: none`, HS256 keyed with the public key, another
//! audience, another nonce, expired, another issuer), a refusal, a wrong
//! client secret, a provider slower than the connector's timeout, and a
//! provider down at start-up that comes back. Each ends in a page (or the
//! app's OAuth error), a log line with the stage and the cause, and no
//! account; a rotated upstream key is followed, and a returning person keeps
//! one `sub`.

use crate::both_backends;
use crate::cli::free_port;
use crate::harness::*;
use crate::presets_upstream::{app_url, users, wait_ready};
use provider_sim::oidc::{follow, ClientSecret, Forgery, Sim, SimClient, SimConfig, SimUser};
use serde_json::json;

/// What a case does to the provider before the sign-in.
type Forge = Box<dyn Fn(&Sim)>;

const CLIENT: &str = "broker-e2e";
const SECRET: &str = "corp-sso-secret-for-the-failure-tests";

fn provider_config() -> SimConfig {
    SimConfig::generic(
        vec![SimClient {
            id: CLIENT.into(),
            secret: ClientSecret::Plain(SECRET.into()),
            redirect_uris: vec!["http://127.0.0.1:*".into()],
        }],
        vec![SimUser::new(
            "ann",
            json!({"name": "Ann", "email": "ann@example.com", "email_verified": true}),
        )],
    )
}

/// The broker's `oidc` connector `id` at `issuer`, with `secret` and a 1 s timeout.
fn connector(id: &str, issuer: &str, secret: &str) -> serde_json::Value {
    json!({
        "id": id, "type": "oidc", "name": "Corporate SSO",
        "issuer": issuer, "client_id": CLIENT, "client_secret": secret,
        "timeout_secs": 1,
    })
}

/// A fresh browser from the app's URL through the fake as `who` (or Deny):
/// the broker's answer to the callback.
async fn attempt(url: &str, who: &str) -> reqwest::Response {
    let b = browser();
    let resp = b.get(url).send().await.unwrap();
    assert_eq!(resp.status(), 302, "to the provider");
    let at_provider = location(&resp);
    let choice = if who == "deny" {
        "sim_deny=1".to_owned()
    } else {
        format!("sim_user={who}")
    };
    let callback = follow(&http(), &format!("{at_provider}&{choice}"))
        .await
        .unwrap();
    b.get(&callback.url).send().await.unwrap()
}

async fn every_failure_ends_cleanly(db_url: &str) {
    // Log lines are the whole binary's: each backend's run has its own id.
    let id = if db_url.starts_with("postgres") {
        "corp-fail-pg"
    } else {
        "corp-fail-sqlite"
    };
    let field = format!("connector={id}");
    let sim = Sim::start(provider_config()).await.unwrap();
    let (db, issuer) = (db_url.to_owned(), sim.issuer());
    let c = connector(id, &issuer, SECRET);
    let broker = start(&db, None, move |s| s.connectors = vec![c]).await;
    let (url, verifier) = app_url(&broker.base, id);
    wait_ready(&url, &sim.base_url()).await;

    // Forged and mismatched ID tokens: a 502 page, a log line naming the
    // check, and no account.
    let now = sim.now();
    let cases: Vec<(&str, Forge, &str)> = vec![
        (
            "bad signature",
            Box::new(|s: &Sim| s.forge_next_id_token(Forgery::BadSignature)),
            "signature",
        ),
        (
            "alg none",
            Box::new(|s: &Sim| s.forge_next_id_token(Forgery::AlgNone)),
            "alg",
        ),
        (
            "HS256 with the public key",
            Box::new(|s: &Sim| s.forge_next_id_token(Forgery::Hs256WithPublicKey)),
            "alg",
        ),
        (
            "another audience",
            Box::new(|s: &Sim| s.next_id_token_claims(json!({"aud": "someone-else"}))),
            "aud",
        ),
        (
            "another nonce",
            Box::new(|s: &Sim| s.next_id_token_claims(json!({"nonce": "not-ours"}))),
            "nonce",
        ),
        (
            "expired",
            Box::new(move |s: &Sim| {
                s.next_id_token_claims(json!({"iat": now - 7200, "exp": now - 3600}))
            }),
            "exp",
        ),
        (
            "another issuer",
            Box::new(|s: &Sim| {
                s.next_id_token_claims(json!({"iss": "https://sso.attacker.example"}))
            }),
            "iss",
        ),
    ];
    for (what, forge, check) in cases {
        let before = log_lines(&["login_failed", &field, "token_verification_failed"]).len();
        forge(&sim);
        let resp = attempt(&url, "ann").await;
        assert_eq!(resp.status(), 502, "{what}: an error page");
        let page = resp.text().await.unwrap();
        assert!(
            page.contains("<h1"),
            "{what}: a page that says what happened"
        );
        let lines = log_lines(&[
            "login_failed",
            &field,
            "token_verification_failed",
            "stage=\"token_exchange\"",
        ]);
        assert!(
            lines.len() > before,
            "{what}: a log line with the stage: {:?}",
            log_lines(&["login_failed", &field])
        );
        let last = lines.last().unwrap();
        assert!(
            last.to_lowercase().contains(check),
            "{what}: the line names the check ({check}): {last}"
        );
        assert_eq!(users(&broker).await, 0, "{what}: nothing half-written");
    }

    // The person refuses: the app gets access_denied.
    let resp = attempt(&url, "deny").await;
    assert_eq!(resp.status(), 302);
    let back = location(&resp);
    assert_eq!(
        query_param(&back, "error").as_deref(),
        Some("access_denied"),
        "{back}"
    );
    assert!(!log_lines(&["login_failed", &field, "user_cancelled"]).is_empty());

    // A good sign-in, then the provider rotates its key and drops the old one:
    // the new kid is fetched, and the person keeps one sub.
    let first = attempt(&url, "ann").await;
    let first = crate::presets_upstream::sub_of(&broker.base, first, &verifier).await;
    sim.rotate_keys(true).unwrap();
    let again = attempt(&url, "ann").await;
    let again = crate::presets_upstream::sub_of(&broker.base, again, &verifier).await;
    assert_eq!(first["sub"], again["sub"]);
    assert_eq!(users(&broker).await, 1);

    // Slower than the connector's 1 s timeout at the token endpoint.
    sim.set_token_delay(Some(std::time::Duration::from_millis(2500)));
    let resp = attempt(&url, "ann").await;
    assert!(resp.status().is_server_error(), "{}", resp.status());
    assert!(!log_lines(&["login_failed", &field, "timeout"]).is_empty());
    sim.set_token_delay(None);
    assert_eq!(users(&broker).await, 1);
    broker.stop().await;

    // A wrong client secret: the provider's invalid_client, a page, the fix.
    let wrong = format!("{id}-secret");
    let c = connector(&wrong, &issuer, "not-the-secret");
    let broker = start(&db, None, move |s| s.connectors = vec![c]).await;
    let (url, _) = app_url(&broker.base, &wrong);
    wait_ready(&url, &sim.base_url()).await;
    let resp = attempt(&url, "ann").await;
    assert!(resp.status().is_server_error(), "{}", resp.status());
    let wrong_field = format!("connector={wrong}");
    assert!(!log_lines(&[
        "login_failed",
        &wrong_field,
        "bad_credentials",
        "invalid_client"
    ])
    .is_empty());
    broker.stop().await;
}
both_backends!(every_failure_ends_cleanly);

async fn a_provider_down_at_start_up_is_used_once_it_answers(db_url: &str) {
    let id = if db_url.starts_with("postgres") {
        "corp-late-pg"
    } else {
        "corp-late-sqlite"
    };
    // The provider's port is known, but nothing answers there yet.
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let (db, c) = (db_url.to_owned(), connector(id, &issuer, SECRET));
    let broker = start(&db, None, move |s| s.connectors = vec![c]).await;
    let (url, verifier) = app_url(&broker.base, id);
    // Meanwhile the sign-in is refused with a page, and the log says why.
    let resp = http().get(&url).send().await.unwrap();
    assert!(
        resp.status().is_server_error() || resp.status() == 200,
        "{}",
        resp.status()
    );
    assert_ne!(resp.status(), 302, "not sent to a provider that is down");
    let field = format!("connector={id}");
    assert!(
        !log_lines(&[&field, "setup"]).is_empty(),
        "the log names the setup stage"
    );
    // The provider comes up on its port: the connector gets ready by itself.
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let sim = Sim::start_on(provider_config(), listener).await.unwrap();
    wait_ready(&url, &sim.base_url()).await;
    let done = attempt(&url, "ann").await;
    let id_token = crate::presets_upstream::sub_of(&broker.base, done, &verifier).await;
    assert_eq!(id_token["name"], "Ann");
    broker.stop().await;
}
both_backends!(a_provider_down_at_start_up_is_used_once_it_answers);
