//! The generic fake as the dev-mode upstream: the real `oidc` connector
//! signs in against it over HTTP on 127.0.0.1 (RS256 and ES256), in query and
//! form_post modes, through a key rotation, with userinfo and refresh; and
//! the fake's own refusals (unregistered redirect URI, replayed code).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use idbridge_connector_kit::testing;
use idbridge_connector_oidc::OidcConnector;
use idbridge_core::{Begin, CallbackRequest, Connector, ErrorKind, Locale, RequestContext, Stage};
use provider_sim::oidc::{follow, Alg, Sim, SimConfig, DEV_CLIENT_ID, DEV_CLIENT_SECRET};
use serde_json::json;

const ID: &str = "devop";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn ctx() -> RequestContext {
    testing::request(testing::BROWSER_UA, Locale::En, now())
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn connector(sim: &Sim, extra: serde_json::Value) -> OidcConnector {
    let options = testing::merged(
        &json!({"issuer": sim.issuer(), "client_id": DEV_CLIENT_ID, "client_secret": DEV_CLIENT_SECRET, "jwks_refetch_min_secs": 1}),
        extra,
    );
    let c = OidcConnector::new(&testing::settings(ID, "oidc", options)).unwrap();
    c.prepare(now()).await.unwrap();
    c
}

async fn sign_in(
    c: &OidcConnector,
    extra: &str,
) -> Result<idbridge_core::ExternalIdentity, idbridge_core::ConnectorError> {
    let started = c
        .begin(&ctx(), &testing::begin_request(ID, "State0123456789"))
        .await
        .unwrap();
    let Begin::Redirect(url) = &started.begin else {
        panic!()
    };
    let back = follow(&browser(), &format!("{url}{extra}")).await.unwrap();
    c.complete(
        &ctx(),
        &CallbackRequest::new(back.params, testing::callback_url(ID), started.flow_data),
    )
    .await
}

#[tokio::test]
async fn the_oidc_connector_signs_in_at_the_generic_fake_through_a_key_rotation() {
    for alg in [Alg::ES256, Alg::RS256] {
        let sim = Sim::start(SimConfig {
            alg,
            ..SimConfig::dev_default()
        })
        .await
        .unwrap();
        let c = connector(
            &sim,
            json!({"scopes": ["openid", "profile", "email", "offline_access"]}),
        )
        .await;
        let ada = sign_in(&c, "&sim_user=ada").await.unwrap();
        assert_eq!(ada.subject, "ada");
        assert_eq!(ada.profile.name.as_deref(), Some("Ada Lovelace"));
        assert_eq!(ada.profile.email_verified, Some(true));
        // A new key signs, the old one is gone from the JWKS: the connector
        // fetches the keys again for the unknown kid.
        sim.rotate_keys(true).unwrap();
        let again = sign_in(&c, "&sim_user=ada").await.unwrap();
        assert_eq!(again.subject, "ada");
        let refreshed = c
            .refresh(&ctx(), "ada", again.upstream_tokens.as_ref().unwrap())
            .await
            .unwrap();
        assert_eq!(refreshed.subject, "ada");
        sim.disable_user("ada");
        let e = c
            .refresh(&ctx(), "ada", again.upstream_tokens.as_ref().unwrap())
            .await
            .unwrap_err();
        assert_eq!((e.stage, e.kind), (Stage::Refresh, ErrorKind::InvalidCode));
    }
}

#[tokio::test]
async fn form_post_userinfo_refusal_and_replay() {
    let sim = Sim::start(SimConfig::dev_default()).await.unwrap();
    let c = connector(
        &sim,
        json!({"response_mode": "form_post", "claims_source": "userinfo"}),
    )
    .await;
    let started = c
        .begin(&ctx(), &testing::begin_request(ID, "State0123456789"))
        .await
        .unwrap();
    let Begin::Redirect(url) = &started.begin else {
        panic!()
    };
    // Without sim_user: the page a person clicks in dev mode.
    let page = browser()
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("id=\"as-ada\"") && page.contains("id=\"deny\""),
        "{page}"
    );
    let back = follow(&browser(), &format!("{url}&sim_user=lin"))
        .await
        .unwrap();
    assert!(back.post);
    let callback = CallbackRequest::new(back.params, testing::callback_url(ID), started.flow_data);
    let lin = c.complete(&ctx(), &callback).await.unwrap();
    assert_eq!(lin.profile.name.as_deref(), Some("林小红"));
    assert_eq!(lin.profile.email_verified, Some(false));
    let e = c.complete(&ctx(), &callback).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidCode, "a code works once");
    let e = sign_in(&c, "&sim_deny=1").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::UserCancelled);
    // A tampered token.
    sim.tamper_next_id_token();
    let e = sign_in(&c, "&sim_user=ada").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::TokenVerificationFailed);
    // An unregistered redirect URI is an error page, never a redirect.
    let bad = url.replace(
        "redirect_uri=http",
        "redirect_uri=https%3A%2F%2Fevil.example%2F&x=http",
    );
    assert!(follow(&browser(), &format!("{bad}&sim_user=ada"))
        .await
        .unwrap_err()
        .contains("400"));
}
