//! The `microsoft` preset against the Entra ID fake (provider-sim's
//! `microsoft` shape) over real HTTP on 127.0.0.1: tenants, the issuer
//! template filled with the token's own `tid`, `allowed_tenants`, the
//! `tid:oid` subject, the never-verified email, Entra's error bodies, and the
//! kit's conformance suite.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use idbridge_connector_kit::conformance::{self, BrowserFlow, Expect, Fixture, Upstream};
use idbridge_connector_kit::testing;
use idbridge_connector_microsoft::{parsed_debug, MicrosoftFactory};
use idbridge_core::{
    Begin, CallbackRequest, Connector, ConnectorError, ConnectorFactory, ErrorKind,
    ExternalIdentity, Locale, RequestContext, Stage, Started,
};
use provider_sim::microsoft::{self, issuer_of, CONSUMERS_TENANT};
use provider_sim::oidc::{follow, Sim};
use serde_json::json;
use std::sync::Arc;

const ID: &str = "microsoft";
const CLIENT: &str = "6731de76-14a6-49ae-97bc-6eba6914391e";
const SECRET: &str = "entra-client-secret-value-0123456789";
const TENANT_A: &str = "aaaaaaaa-0000-4000-8000-00000000000a";
const TENANT_B: &str = "bbbbbbbb-0000-4000-8000-00000000000b";
const ALICE_OID: &str = "00000000-0000-0000-0000-0000000a11ce";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn ctx() -> RequestContext {
    testing::request(testing::BROWSER_UA, Locale::En, now())
}

async fn fake() -> Sim {
    Sim::start(microsoft::config(
        vec![microsoft::client(
            CLIENT,
            SECRET,
            &testing::callback_url(ID),
        )],
        vec![
            microsoft::user("alice", TENANT_A, ALICE_OID, "Alice A", "alice@a.example"),
            // Bob's admin typed Alice's address into Bob's account: the nOAuth trap.
            microsoft::user("bob", TENANT_B, "0000000b-0b0b", "Bob B", "alice@a.example"),
            microsoft::user(
                "carol",
                CONSUMERS_TENANT,
                "0000000c-0c0c",
                "Carol",
                "carol@outlook.example",
            ),
        ],
    ))
    .await
    .unwrap()
}

fn config(sim: &Sim, extra: serde_json::Value) -> serde_json::Value {
    testing::merged(
        &json!({
            "client_id": CLIENT,
            "client_secret": SECRET,
            "authority_url": sim.base_url(),
            "scopes": ["openid", "profile", "email", "offline_access"],
        }),
        extra,
    )
}

async fn connector(sim: &Sim, extra: serde_json::Value) -> Arc<dyn Connector> {
    let c = testing::build(&MicrosoftFactory, ID, config(sim, extra)).unwrap();
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

/// begin → the fake as `user` → complete.
async fn sign_in(c: &dyn Connector, user: &str) -> Result<ExternalIdentity, ConnectorError> {
    let started = c
        .begin(&ctx(), &testing::begin_request(ID, "State0123456789"))
        .await
        .unwrap();
    let back = follow(&browser(), &format!("{}&sim_user={user}", url_of(&started)))
        .await
        .unwrap();
    assert!(!back.post, "query callback");
    c.complete(
        &ctx(),
        &CallbackRequest::new(back.params, testing::callback_url(ID), started.flow_data),
    )
    .await
}

#[tokio::test]
async fn multi_tenant_sign_in_names_the_person_by_tid_and_oid_and_never_trusts_the_email() {
    let sim = fake().await;
    let c = connector(&sim, json!({"tenant": "common"})).await;
    let started = c
        .begin(&ctx(), &testing::begin_request(ID, "State0123456789"))
        .await
        .unwrap();
    let sent = testing::query_params(url_of(&started));
    assert!(
        url_of(&started).starts_with(&format!("{}/common/oauth2/v2.0/authorize", sim.base_url()))
    );
    assert_eq!(sent["client_id"], CLIENT);
    assert_eq!(sent["code_challenge_method"], "S256");

    let alice = sign_in(c.as_ref(), "alice").await.unwrap();
    assert_eq!(alice.subject, format!("{TENANT_A}:{ALICE_OID}"));
    assert_eq!(alice.profile.name.as_deref(), Some("Alice A"));
    assert_eq!(alice.profile.email.as_deref(), Some("alice@a.example"));
    assert_eq!(
        alice.profile.email_verified,
        Some(false),
        "Entra's email is never verified"
    );
    assert_eq!(alice.raw_claims["tid"], TENANT_A);
    alice.clone().screened(Stage::Callback).unwrap();

    let bob = sign_in(c.as_ref(), "bob").await.unwrap();
    assert_eq!(bob.profile.email.as_deref(), Some("alice@a.example"));
    assert_eq!(bob.profile.email_verified, Some(false));
    assert_ne!(bob.subject, alice.subject, "the same email, another person");

    // A personal account through common.
    let carol = sign_in(c.as_ref(), "carol").await.unwrap();
    assert!(carol.subject.starts_with(CONSUMERS_TENANT));

    // Refresh re-checks and keeps the subject.
    let again = c
        .refresh(
            &ctx(),
            &alice.subject,
            alice.upstream_tokens.as_ref().unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(again.subject, alice.subject);
    sim.disable_user("alice");
    let ended = c
        .refresh(
            &ctx(),
            &alice.subject,
            alice.upstream_tokens.as_ref().unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        (ended.stage, ended.kind),
        (Stage::Refresh, ErrorKind::InvalidCode)
    );
    assert_eq!(ended.upstream_code.as_deref(), Some("invalid_grant"));
}

#[tokio::test]
async fn a_token_whose_iss_names_another_tenant_than_its_own_tid_is_refused() {
    let sim = fake().await;
    let c = connector(&sim, json!({"tenant": "organizations"})).await;
    // Alice's token (tid A), signed by Microsoft's key, but with tenant B's issuer.
    sim.next_id_token_claims(json!({"iss": issuer_of(&sim.base_url(), TENANT_B)}));
    let e = sign_in(c.as_ref(), "alice").await.unwrap_err();
    assert_eq!(
        (e.stage, e.kind),
        (Stage::TokenExchange, ErrorKind::TokenVerificationFailed)
    );
    let fix = e.fix.unwrap();
    assert!(fix.contains("iss") && fix.contains(TENANT_B), "{fix}");
    // A token without a tid cannot have its issuer checked at all.
    sim.next_id_token_claims(json!({"tid": null}));
    let e = sign_in(c.as_ref(), "alice").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::TokenVerificationFailed);
    // The untouched token passes.
    assert!(sign_in(c.as_ref(), "alice").await.is_ok());
}

#[tokio::test]
async fn a_single_tenant_connector_refuses_every_other_tenant() {
    let sim = fake().await;
    let c = connector(&sim, json!({"tenant": TENANT_A})).await;
    assert!(sign_in(c.as_ref(), "alice").await.is_ok());
    // The authority itself refuses Bob (AADSTS50020)…
    let started = c
        .begin(&ctx(), &testing::begin_request(ID, "State0123456789"))
        .await
        .unwrap();
    let page = follow(&browser(), &format!("{}&sim_user=bob", url_of(&started))).await;
    assert!(page.unwrap_err().contains("AADSTS50020"));
    // …and a token of tenant B (consistent iss and tid) is refused by us.
    sim.next_id_token_claims(json!({"tid": TENANT_B, "iss": issuer_of(&sim.base_url(), TENANT_B)}));
    let e = sign_in(c.as_ref(), "alice").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::TokenVerificationFailed);
    assert!(e.fix.unwrap().contains(TENANT_A));
    // Only the tid changed (iss still A): our tenant check refuses it.
    sim.next_id_token_claims(json!({"tid": TENANT_B, "iss": issuer_of(&sim.base_url(), TENANT_A)}));
    let e = sign_in(c.as_ref(), "alice").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotAllowed, "{e:?}");
    assert!(e.fix.unwrap().contains(TENANT_B));
}

#[tokio::test]
async fn allowed_tenants_narrows_a_multi_tenant_authority() {
    let sim = fake().await;
    let c = connector(
        &sim,
        json!({"tenant": "organizations", "allowed_tenants": [TENANT_A]}),
    )
    .await;
    assert!(sign_in(c.as_ref(), "alice").await.is_ok());
    let e = sign_in(c.as_ref(), "bob").await.unwrap_err();
    assert_eq!(
        (e.stage, e.kind),
        (Stage::TokenExchange, ErrorKind::NotAllowed)
    );
    let fix = e.fix.unwrap();
    assert!(
        fix.contains(TENANT_B) && fix.contains("allowed_tenants"),
        "{fix}"
    );
    // organizations: a personal account never gets a code.
    let started = c
        .begin(&ctx(), &testing::begin_request(ID, "State0123456789"))
        .await
        .unwrap();
    let page = follow(&browser(), &format!("{}&sim_user=carol", url_of(&started))).await;
    assert!(page.unwrap_err().contains("AADSTS50020"));
}

#[tokio::test]
async fn consumers_serves_personal_accounts_only() {
    let sim = fake().await;
    let c = connector(&sim, json!({"tenant": "consumers"})).await;
    let carol = sign_in(c.as_ref(), "carol").await.unwrap();
    assert_eq!(carol.subject, format!("{CONSUMERS_TENANT}:0000000c-0c0c"));
    // A work account's token (consistent iss and tid) is refused.
    sim.next_id_token_claims(json!({"tid": TENANT_A, "iss": issuer_of(&sim.base_url(), TENANT_A)}));
    let e = sign_in(c.as_ref(), "carol").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::TokenVerificationFailed);
}

#[tokio::test]
async fn entra_error_bodies_become_errors_with_fixes() {
    let sim = fake().await;
    let wrong = connector(
        &sim,
        json!({"tenant": "common", "client_secret": "not-the-secret-value"}),
    )
    .await;
    let e = sign_in(wrong.as_ref(), "alice").await.unwrap_err();
    assert_eq!(
        (e.stage, e.kind),
        (Stage::TokenExchange, ErrorKind::BadCredentials)
    );
    assert_eq!(e.upstream_code.as_deref(), Some("invalid_client"));
    assert!(e.upstream_message.unwrap().starts_with("AADSTS7000215"));
    assert!(e.fix.unwrap().contains("client_secret"));

    let c = connector(&sim, json!({"tenant": "common"})).await;
    let started = c
        .begin(&ctx(), &testing::begin_request(ID, "State0123456789"))
        .await
        .unwrap();
    let denied = follow(&browser(), &format!("{}&sim_deny=1", url_of(&started)))
        .await
        .unwrap();
    let e = c
        .complete(
            &ctx(),
            &CallbackRequest::new(denied.params, testing::callback_url(ID), started.flow_data),
        )
        .await
        .unwrap_err();
    assert_eq!(
        (e.stage, e.kind),
        (Stage::Callback, ErrorKind::UserCancelled)
    );
    assert!(e.upstream_message.unwrap().contains("AADSTS65004"));
}

#[tokio::test]
async fn config_mistakes_name_their_keys() {
    let sim = fake().await;
    let fail = |extra: serde_json::Value| {
        let errors = MicrosoftFactory
            .build(
                &testing::settings(ID, "microsoft", config(&sim, extra)),
                &testing::build_context(ID),
            )
            .err()
            .expect("refused");
        errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        fail(json!({"tenant": "contoso.onmicrosoft.com"})).contains("connectors[microsoft].tenant")
    );
    assert!(
        fail(json!({"tenant": TENANT_A, "allowed_tenants": [TENANT_B]}))
            .contains("allowed_tenants")
    );
    assert!(fail(json!({"allowed_tenants": ["contoso"]})).contains("allowed_tenants"));
    assert!(fail(json!({"scopes": ["profile"]})).contains("connectors[microsoft].scopes"));
    assert!(fail(json!({"tenat": "common"})).contains("tenat"));
    assert!(fail(json!({"authority_url": "login.microsoftonline.com"}))
        .contains("connectors[microsoft].authority_url"));
}

#[tokio::test]
async fn the_connector_conforms_against_the_entra_fake() {
    let sim = fake().await;
    let approve = Upstream::new_async(|started: Started| async move {
        follow(&browser(), &format!("{}&sim_user=alice", url_of(&started)))
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
        Fixture::new(&MicrosoftFactory, config(&sim, json!({"tenant": "common"})))
            .secret("client_secret")
            .settings_debug(parsed_debug)
            .browser(flow)
            .refresh_supported(true),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_discovery_and_our_callback() {
    let sim = fake().await;
    let settings = testing::settings(ID, "microsoft", config(&sim, json!({"tenant": "common"})));
    let fine = MicrosoftFactory.doctor(&settings, &testing::build_context(ID));
    assert!(fine.iter().all(|p| !p.fatal), "{fine:?}");
    let elsewhere = testing::build_context_at("https://id.elsewhere.example", ID, false);
    let problems = MicrosoftFactory.doctor(&settings, &elsewhere);
    assert!(
        problems.iter().any(|p| p.fatal
            && p.message
                .contains("https://id.elsewhere.example/callback/microsoft")),
        "{problems:?}"
    );
    let down = testing::settings(
        ID,
        "microsoft",
        config(
            &sim,
            json!({"tenant": "common", "authority_url": "http://127.0.0.1:9"}),
        ),
    );
    let problems = MicrosoftFactory.doctor(&down, &testing::build_context(ID));
    assert!(
        problems
            .iter()
            .any(|p| p.fatal && p.message.contains("discovery")),
        "{problems:?}"
    );
}
