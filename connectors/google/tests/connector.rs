//! The `google` preset against provider-sim's generic OpenID provider over
//! real HTTP on 127.0.0.1: `hd` sent upstream AND enforced on the signed ID
//! token, `email_verified` from Google's claim, and the conformance suite.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use idbridge_connector_google::{parsed_debug, GoogleFactory};
use idbridge_connector_kit::conformance::{self, BrowserFlow, Expect, Fixture, Upstream};
use idbridge_connector_kit::testing;
use idbridge_core::{
    Begin, CallbackRequest, Connector, ConnectorError, ErrorKind, ExternalIdentity, Locale,
    RequestContext, Stage, Started,
};
use provider_sim::oidc::{follow, ClientSecret, Sim, SimClient, SimConfig, SimUser};
use serde_json::json;
use std::sync::Arc;

const ID: &str = "google";
const CLIENT: &str = "1234567890-abc.apps.googleusercontent.com";
const SECRET: &str = "GOCSPX-google-client-secret-0123";

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
    Sim::start(SimConfig::generic(
        vec![SimClient {
            id: CLIENT.into(),
            secret: ClientSecret::Plain(SECRET.into()),
            redirect_uris: vec![testing::callback_url(ID)],
        }],
        vec![
            SimUser::new("1001", json!({"name": "Ann", "email": "ann@example.com", "email_verified": true, "hd": "example.com"})),
            SimUser::new("1002", json!({"name": "Zed", "email": "zed@other.example", "email_verified": true, "hd": "other.example"})),
            SimUser::new("1003", json!({"name": "Cy", "email": "cy@gmail.example", "email_verified": false})),
        ],
    ))
    .await
    .unwrap()
}

fn config(sim: &Sim, extra: serde_json::Value) -> serde_json::Value {
    testing::merged(
        &json!({"client_id": CLIENT, "client_secret": SECRET, "issuer": sim.issuer()}),
        extra,
    )
}

async fn connector(options: serde_json::Value) -> Arc<dyn Connector> {
    let c = testing::build(&GoogleFactory, ID, options).unwrap();
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

async fn sign_in(
    c: &dyn Connector,
    user: &str,
) -> (Result<ExternalIdentity, ConnectorError>, String) {
    let started = c
        .begin(&ctx(), &testing::begin_request(ID, "State0123456789"))
        .await
        .unwrap();
    let url = url_of(&started).to_owned();
    let back = follow(&browser(), &format!("{url}&sim_user={user}"))
        .await
        .unwrap();
    let result = c
        .complete(
            &ctx(),
            &CallbackRequest::new(back.params, testing::callback_url(ID), started.flow_data),
        )
        .await;
    (result, url)
}

#[tokio::test]
async fn the_hosted_domain_is_sent_and_enforced_on_the_id_token() {
    let sim = fake().await;
    let c = connector(config(&sim, json!({"hosted_domain": "Example.com"}))).await;
    let (ann, url) = sign_in(c.as_ref(), "1001").await;
    assert_eq!(testing::query_params(&url)["hd"], "example.com");
    assert!(!testing::query_params(&url).contains_key("access_type"));
    let ann = ann.unwrap();
    assert_eq!(ann.subject, "1001");
    assert_eq!(ann.profile.email_verified, Some(true));

    // The hd parameter is only a hint: a person of another domain gets through
    // Google's page, and the signed hd claim refuses them.
    let (zed, _) = sign_in(c.as_ref(), "1002").await;
    let e = zed.unwrap_err();
    assert_eq!(
        (e.stage, e.kind),
        (Stage::TokenExchange, ErrorKind::NotAllowed)
    );
    assert_eq!(e.upstream_message.as_deref(), Some("other.example"));
    assert!(e.fix.unwrap().contains("hosted_domain"));
    let (cy, _) = sign_in(c.as_ref(), "1003").await;
    assert!(cy.unwrap_err().fix.unwrap().contains("consumer account"));
}

#[tokio::test]
async fn without_a_hosted_domain_everyone_signs_in_and_email_verified_is_googles() {
    let sim = fake().await;
    let c = connector(config(&sim, json!({}))).await;
    let (cy, url) = sign_in(c.as_ref(), "1003").await;
    assert!(!testing::query_params(&url).contains_key("hd"));
    let cy = cy.unwrap();
    assert_eq!(cy.profile.email.as_deref(), Some("cy@gmail.example"));
    assert_eq!(cy.profile.email_verified, Some(false));
    assert!(sign_in(c.as_ref(), "1002").await.0.is_ok());
}

#[tokio::test]
async fn config_mistakes_name_their_keys() {
    let sim = fake().await;
    let fail = |extra| {
        testing::build(&GoogleFactory, ID, config(&sim, extra))
            .err()
            .expect("refused")
    };
    assert!(
        fail(json!({"hosted_domain": "not a domain"})).contains("connectors[google].hosted_domain")
    );
    assert!(fail(json!({"client_secret": null})).contains("client_secret"));
    assert!(fail(json!({"hd": "example.com"})).contains("hd"));
}

#[tokio::test]
async fn the_connector_conforms_against_the_fake() {
    let sim = fake().await;
    let approve = Upstream::new_async(|started: Started| async move {
        follow(&browser(), &format!("{}&sim_user=1001", url_of(&started)))
            .await
            .map(|c| c.params)
    });
    let deny = Upstream::new_async(|started: Started| async move {
        follow(&browser(), &format!("{}&sim_deny=1", url_of(&started)))
            .await
            .map(|c| c.params)
    });
    let issuer = sim.issuer();
    let no_code =
        Upstream::new(move |_s: Started| Ok(testing::params(&[("iss", issuer.as_str())])));
    let flow = BrowserFlow::new(approve)
        .no_code(
            no_code,
            Expect::new(Stage::Callback, ErrorKind::InvalidRequest),
        )
        .upstream_error(deny, Expect::new(Stage::Callback, ErrorKind::UserCancelled))
        .replay(Expect::new(Stage::TokenExchange, ErrorKind::InvalidCode));
    conformance::run(
        Fixture::new(
            &GoogleFactory,
            config(
                &sim,
                json!({"hosted_domain": "example.com", "offline": true}),
            ),
        )
        .secret("client_secret")
        .settings_debug(parsed_debug)
        .browser(flow)
        .refresh_supported(true),
    )
    .await;
}
