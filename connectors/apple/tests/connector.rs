//! The `apple` preset against the Sign in with Apple fake (provider-sim's
//! `apple` shape) over real HTTP on 127.0.0.1: form_post callbacks, the name
//! from the first sign-in's `user` field only, string booleans, private-relay
//! emails, the ES256 client secret (checked by the fake with the public key of
//! the `.p8` key made here) made and renewed with the time passed in, Apple's
//! error bodies, a tampered ID token, and the kit's conformance suite.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use idbridge_connector_apple::secret::{ClientSecretMaker, MAX_LIFETIME};
use idbridge_connector_apple::{parsed_debug, AppleFactory};
use idbridge_connector_kit::conformance::{self, BrowserFlow, Expect, Fixture, Upstream};
use idbridge_connector_kit::testing;
use idbridge_core::{
    Begin, CallbackRequest, Connector, ConnectorError, ErrorKind, ExternalIdentity, Locale,
    RequestContext, Stage, Started,
};
use provider_sim::apple::{self, check_client_secret, AppleKey};
use provider_sim::oidc::{follow, ClientSecret, Sim};
use serde_json::json;
use std::sync::Arc;

const ID: &str = "apple";
const SERVICES_ID: &str = "com.example.signin";
const TEAM: &str = "TEAM123456";
const KEY_ID: &str = "KEY1234567";
const ADA: &str = "001234.5c1f3e6d0a9b4b1c8e2f7a6d5c4b3a21.0917";
const RELAY: &str = "x7k2m9q4p1@privaterelay.appleid.com";
const DAY: i64 = 86_400;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn ctx_at(at: i64) -> RequestContext {
    testing::request(testing::BROWSER_UA, Locale::En, at)
}

async fn fake(key: &AppleKey) -> Sim {
    Sim::start(apple::config(
        vec![apple::client(SERVICES_ID, key, &testing::callback_url(ID))],
        vec![
            apple::user(ADA, RELAY, true, "Ada", "Lovelace"),
            apple::user("002001.bo", "bo@example.com", false, "Bo", "李"),
        ],
    ))
    .await
    .unwrap()
}

fn config(sim: &Sim, key: &AppleKey) -> serde_json::Value {
    json!({
        "client_id": SERVICES_ID,
        "team_id": key.team_id,
        "key_id": key.key_id,
        "private_key": key.pem,
        "issuer": sim.issuer(),
    })
}

async fn connector(options: serde_json::Value) -> Arc<dyn Connector> {
    let c = testing::build(&AppleFactory, ID, options).unwrap();
    c.prepare(now()).await.unwrap();
    c
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn url_of(started: &Started) -> &str {
    match &started.begin {
        Begin::Redirect(u) => u,
        other => panic!("not a redirect: {other:?}"),
    }
}

/// begin → Apple as `user` (the callback comes as a form_post) → complete at `at`.
async fn sign_in_at(
    c: &dyn Connector,
    user: &str,
    at: i64,
) -> Result<ExternalIdentity, ConnectorError> {
    let started = c
        .begin(&ctx_at(at), &testing::begin_request(ID, "State0123456789"))
        .await
        .unwrap();
    let back = follow(&browser(), &format!("{}&sim_user={user}", url_of(&started)))
        .await
        .unwrap();
    assert!(back.post, "Apple posts the callback (form_post)");
    assert_eq!(back.url, testing::callback_url(ID));
    c.complete(
        &ctx_at(at),
        &CallbackRequest::new(back.params, testing::callback_url(ID), started.flow_data),
    )
    .await
}

async fn sign_in(c: &dyn Connector, user: &str) -> Result<ExternalIdentity, ConnectorError> {
    sign_in_at(c, user, now()).await
}

fn apple_key() -> AppleKey {
    AppleKey::generate(TEAM, KEY_ID).unwrap()
}

#[tokio::test]
async fn the_name_comes_from_the_first_sign_in_only_and_relay_emails_are_kept() {
    let key = apple_key();
    let sim = fake(&key).await;
    let c = connector(config(&sim, &key)).await;
    let started = c
        .begin(
            &ctx_at(now()),
            &testing::begin_request(ID, "State0123456789"),
        )
        .await
        .unwrap();
    let sent = testing::query_params(url_of(&started));
    assert_eq!(sent["response_mode"], "form_post");
    assert_eq!(sent["scope"], "openid name email");
    assert_eq!(sent["client_id"], SERVICES_ID);

    let first = sign_in(c.as_ref(), ADA).await.unwrap();
    assert_eq!(first.subject, ADA);
    assert_eq!(first.profile.name.as_deref(), Some("Ada Lovelace"));
    assert_eq!(first.profile.given_name.as_deref(), Some("Ada"));
    assert_eq!(first.profile.family_name.as_deref(), Some("Lovelace"));
    assert_eq!(first.profile.email.as_deref(), Some(RELAY), "kept as it is");
    assert_eq!(
        first.profile.email_verified,
        Some(true),
        "\"true\" as a string"
    );
    assert_eq!(first.raw_claims["is_private_email"], "true");
    first.clone().screened(Stage::Callback).unwrap();

    let second = sign_in(c.as_ref(), ADA).await.unwrap();
    assert_eq!(second.subject, ADA, "a returning person, the same subject");
    assert_eq!(second.profile.name, None, "Apple sends the name once");
    assert_eq!(second.profile.email.as_deref(), Some(RELAY));

    // A huge or malformed user field is no name (it is not signed by Apple).
    let started = c
        .begin(
            &ctx_at(now()),
            &testing::begin_request(ID, "State0123456789"),
        )
        .await
        .unwrap();
    let mut back = follow(&browser(), &format!("{}&sim_user={ADA}", url_of(&started)))
        .await
        .unwrap();
    back.params.insert(
        "user".into(),
        format!("{{\"name\":{{\"firstName\":\"{}\"}}}}", "x".repeat(5000)),
    );
    let odd = c
        .complete(
            &ctx_at(now()),
            &CallbackRequest::new(back.params, testing::callback_url(ID), started.flow_data),
        )
        .await
        .unwrap();
    assert_eq!(odd.profile.name, None);

    // Another person: a name in other scripts, a real address.
    let bo = sign_in(c.as_ref(), "002001.bo").await.unwrap();
    assert_eq!(bo.profile.name.as_deref(), Some("Bo 李"));
    assert_eq!(bo.raw_claims["is_private_email"], "false");

    // Refresh: Apple's refresh grant, a new ID token, the same person.
    let again = c
        .refresh(&ctx_at(now()), ADA, first.upstream_tokens.as_ref().unwrap())
        .await
        .unwrap();
    assert_eq!(again.subject, ADA);
}

#[tokio::test]
async fn booleans_may_be_strings_or_booleans() {
    let key = apple_key();
    let sim = fake(&key).await;
    let c = connector(config(&sim, &key)).await;
    sim.next_id_token_claims(json!({"email_verified": "false", "is_private_email": false}));
    let i = sign_in(c.as_ref(), ADA).await.unwrap();
    assert_eq!(i.profile.email_verified, Some(false));
    assert_eq!(i.raw_claims["is_private_email"], false);
    sim.next_id_token_claims(json!({"email_verified": true}));
    let i = sign_in(c.as_ref(), ADA).await.unwrap();
    assert_eq!(i.profile.email_verified, Some(true));
}

/// The payload of a JWT.
fn payload(jwt: &str) -> serde_json::Value {
    let part = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}

#[test]
fn the_client_secret_is_made_kept_and_renewed_with_the_time_passed_in() {
    let key = apple_key();
    let expected = ClientSecret::AppleJwt {
        team_id: TEAM.into(),
        key_id: KEY_ID.into(),
        x: key.x.clone(),
        y: key.y.clone(),
    };
    let maker = ClientSecretMaker::new(TEAM, KEY_ID, SERVICES_ID, &key.pem, 30 * DAY).unwrap();
    let t0 = 1_800_000_000;
    let s1 = maker.get(t0).unwrap();
    let claims = payload(s1.expose());
    assert_eq!(
        claims,
        json!({"iss": TEAM, "sub": SERVICES_ID, "aud": "https://appleid.apple.com", "iat": t0, "exp": t0 + 30 * DAY})
    );
    check_client_secret(&expected, SERVICES_ID, s1.expose(), t0 + 1).unwrap();
    // Kept for half its lifetime…
    assert_eq!(maker.get(t0 + 15 * DAY - 1).unwrap(), s1);
    // …then made again, long before it expires.
    let s2 = maker.get(t0 + 15 * DAY).unwrap();
    assert_ne!(s2, s1);
    assert_eq!(payload(s2.expose())["iat"], t0 + 15 * DAY);
    check_client_secret(&expected, SERVICES_ID, s2.expose(), t0 + 29 * DAY).unwrap();
    // A clock that went back makes a new one too (never a secret "from the future").
    assert_ne!(maker.get(t0 - 10).unwrap(), s2);
    // Another key with the same id does not verify.
    let other = apple_key();
    let forged = ClientSecretMaker::new(TEAM, KEY_ID, SERVICES_ID, &other.pem, DAY).unwrap();
    assert!(
        check_client_secret(&expected, SERVICES_ID, forged.get(t0).unwrap().expose(), t0).is_err()
    );
    // Six months at most.
    let longest =
        ClientSecretMaker::new(TEAM, KEY_ID, SERVICES_ID, &key.pem, MAX_LIFETIME).unwrap();
    check_client_secret(
        &expected,
        SERVICES_ID,
        longest.get(t0).unwrap().expose(),
        t0,
    )
    .unwrap();
}

#[tokio::test]
async fn the_fake_gets_a_valid_secret_and_a_renewed_one_after_time_passed() {
    let key = apple_key();
    let sim = fake(&key).await;
    let c = connector(config(&sim, &key)).await;
    let t0 = now();
    sign_in_at(c.as_ref(), ADA, t0).await.unwrap();
    sign_in_at(c.as_ref(), ADA, t0 + 60).await.unwrap();
    let seen = sim.client_secrets_seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0], seen[1], "the secret is kept, not made per request");
    // 16 days later (both clocks), the secret of day 0 is past half its life.
    sim.advance(16 * DAY);
    sign_in_at(c.as_ref(), ADA, t0 + 16 * DAY).await.unwrap();
    let seen = sim.client_secrets_seen();
    assert_ne!(seen[2], seen[0], "renewed");
    assert_eq!(payload(&seen[2])["iat"], t0 + 16 * DAY);
}

#[tokio::test]
async fn apples_errors_get_fixes() {
    let key = apple_key();
    let sim = fake(&key).await;
    // A .p8 that is not the one registered under key_id.
    let wrong = connector(testing::merged(
        &config(&sim, &key),
        json!({"private_key": apple_key().pem}),
    ))
    .await;
    let e = sign_in(wrong.as_ref(), ADA).await.unwrap_err();
    assert_eq!(
        (e.stage, e.kind),
        (Stage::TokenExchange, ErrorKind::BadCredentials)
    );
    assert_eq!(e.upstream_code.as_deref(), Some("invalid_client"));
    let fix = e.fix.unwrap();
    assert!(fix.contains("key_id") && fix.contains("team_id"), "{fix}");
    // The wrong key id.
    let wrong = connector(testing::merged(
        &config(&sim, &key),
        json!({"key_id": "OTHERKEY01"}),
    ))
    .await;
    let e = sign_in(wrong.as_ref(), ADA).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadCredentials);
    // A secret Apple sees as expired (the broker's clock is a month behind).
    let c = connector(config(&sim, &key)).await;
    sim.advance(31 * DAY);
    let e = sign_in_at(c.as_ref(), ADA, now()).await.unwrap_err();
    assert_eq!(e.upstream_code.as_deref(), Some("invalid_client"));
    assert!(e.fix.unwrap().contains("clock"));
    sim.advance(-31 * DAY);

    // Refusal at Apple.
    let started = c
        .begin(
            &ctx_at(now()),
            &testing::begin_request(ID, "State0123456789"),
        )
        .await
        .unwrap();
    let denied = follow(&browser(), &format!("{}&sim_deny=1", url_of(&started)))
        .await
        .unwrap();
    assert!(denied.post);
    let e = c
        .complete(
            &ctx_at(now()),
            &CallbackRequest::new(denied.params, testing::callback_url(ID), started.flow_data),
        )
        .await
        .unwrap_err();
    assert_eq!(
        (e.stage, e.kind),
        (Stage::Callback, ErrorKind::UserCancelled)
    );
    assert_eq!(e.upstream_code.as_deref(), Some("user_cancelled_authorize"));

    // A replayed code.
    let started = c
        .begin(
            &ctx_at(now()),
            &testing::begin_request(ID, "State0123456789"),
        )
        .await
        .unwrap();
    let back = follow(&browser(), &format!("{}&sim_user={ADA}", url_of(&started)))
        .await
        .unwrap();
    let callback = CallbackRequest::new(back.params, testing::callback_url(ID), started.flow_data);
    c.complete(&ctx_at(now()), &callback).await.unwrap();
    let e = c.complete(&ctx_at(now()), &callback).await.unwrap_err();
    assert_eq!(
        (e.stage, e.kind),
        (Stage::TokenExchange, ErrorKind::InvalidCode)
    );
    assert!(e.fix.unwrap().contains("5 minutes"));
}

#[tokio::test]
async fn a_tampered_or_misdirected_id_token_is_refused() {
    let key = apple_key();
    let sim = fake(&key).await;
    let c = connector(config(&sim, &key)).await;
    sim.tamper_next_id_token();
    let e = sign_in(c.as_ref(), ADA).await.unwrap_err();
    assert_eq!(
        (e.stage, e.kind),
        (Stage::TokenExchange, ErrorKind::TokenVerificationFailed)
    );
    assert!(e.fix.unwrap().contains("signature"));
    sim.next_id_token_claims(json!({"aud": "com.other.app"}));
    let e = sign_in(c.as_ref(), ADA).await.unwrap_err();
    assert!(e.fix.unwrap().contains("aud"));
    sim.next_id_token_claims(json!({"iss": "https://appleid.apple.com.evil.example"}));
    let e = sign_in(c.as_ref(), ADA).await.unwrap_err();
    assert!(e.fix.unwrap().contains("iss"));
    sim.next_id_token_claims(json!({"nonce": "another-sign-in"}));
    let e = sign_in(c.as_ref(), ADA).await.unwrap_err();
    assert!(e.fix.unwrap().contains("nonce"));
    assert!(sign_in(c.as_ref(), ADA).await.is_ok());
}

#[tokio::test]
async fn config_mistakes_name_their_keys() {
    let key = apple_key();
    let sim = fake(&key).await;
    let fail = |extra: serde_json::Value| {
        testing::build(
            &AppleFactory,
            ID,
            testing::merged(&config(&sim, &key), extra),
        )
        .err()
        .expect("refused")
    };
    assert!(fail(json!({"team_id": "TEAM"})).contains("connectors[apple].team_id"));
    assert!(fail(json!({"key_id": ""})).contains("connectors[apple].key_id"));
    let bad_key = fail(
        json!({"private_key": "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----"}),
    );
    assert!(
        bad_key.contains("connectors[apple].private_key") && !bad_key.contains("nope"),
        "{bad_key}"
    );
    assert!(
        fail(json!({"client_secret_lifetime_secs": MAX_LIFETIME + 1}))
            .contains("client_secret_lifetime_secs")
    );
    assert!(fail(json!({"client_secret": "static-secret-0123"})).contains("client_secret"));
    assert!(fail(json!({"scopes": ["name"]})).contains("connectors[apple].scopes"));
}

#[tokio::test]
async fn the_connector_conforms_against_the_apple_fake() {
    let key = apple_key();
    let sim = fake(&key).await;
    let approve = Upstream::new_async(|started: Started| async move {
        follow(&browser(), &format!("{}&sim_user={ADA}", url_of(&started)))
            .await
            .map(|c| c.params)
    });
    let deny = Upstream::new_async(|started: Started| async move {
        follow(&browser(), &format!("{}&sim_deny=1", url_of(&started)))
            .await
            .map(|c| c.params)
    });
    let flow = BrowserFlow::new(approve)
        .no_code(
            Upstream::fixed(testing::params(&[])),
            Expect::new(Stage::Callback, ErrorKind::InvalidRequest),
        )
        .upstream_error(deny, Expect::new(Stage::Callback, ErrorKind::UserCancelled))
        .replay(Expect::new(Stage::TokenExchange, ErrorKind::InvalidCode));
    conformance::run(
        Fixture::new(&AppleFactory, config(&sim, &key))
            .secret("private_key")
            .settings_debug(parsed_debug)
            .browser(flow)
            .refresh_supported(true),
    )
    .await;
}
