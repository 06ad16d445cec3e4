//! The `dingtalk` connector against the DingTalk fake of `provider-sim` over
//! real HTTP on 127.0.0.1 (`login_base_url` and `api_base_url` pointing at it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use idbridge_connector_dingtalk::config::DingTalkSettings;
use idbridge_connector_dingtalk::{DingTalkConnector, DingTalkFactory};
use idbridge_connector_kit::conformance::{self, BrowserFlow, Expect, Fixture, Params, Upstream};
use idbridge_connector_kit::testing;
use idbridge_core::{
    Availability, Begin, CallbackRequest, Connector, ConnectorError, ConnectorFactory, ErrorKind,
    ExternalIdentity, Locale, RequestContext, Stage, Started,
};
use provider_sim::dingtalk::{Decision, DingApp, DingTalkSim, Faults, Person};
use std::time::Duration;

const ID: &str = "dingtalk";
const APP: &str = "dingappkey0001";
const SECRET: &str = "s3cr3t-dingtalk-app-secret-0123456789";
const ZHANG: &str = "iPiSgnAZhangSan00001";
const ACME: &str = "dingacme0001";
const OTHER: &str = "dingother0002";
const DINGTALK_UA: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 AliApp(DingTalk/7.6.0) com.laiwang.DingTalk/34000000 Channel/201200 language/zh-Hans-CN";

async fn sim() -> DingTalkSim {
    let sim = DingTalkSim::start(DingApp {
        client_id: APP.into(),
        client_secret: SECRET.into(),
        redirect_prefix: testing::callback_url(ID),
    })
    .await
    .unwrap();
    sim.add_person(
        Person::new(ZHANG, "张三")
            .mobile("13800138000")
            .email("zs@example.test")
            .corp(ACME, "Acme")
            .corp(OTHER, "Other"),
    );
    sim.decide(Decision::approve(ZHANG));
    sim
}

fn options(sim: &DingTalkSim) -> serde_json::Value {
    serde_json::json!({
        "client_id": APP,
        "client_secret": SECRET,
        "login_base_url": sim.base_url(),
        "api_base_url": sim.base_url(),
    })
}

fn ctx(locale: Locale) -> RequestContext {
    testing::request(testing::BROWSER_UA, locale, 1_700_000_000)
}

fn connector(options: serde_json::Value) -> DingTalkConnector {
    DingTalkConnector::new(&testing::settings(ID, "dingtalk", options)).unwrap()
}

async fn approve(started: Started) -> Result<Params, String> {
    let Begin::Redirect(url) = &started.begin else {
        return Err("not a redirect".into());
    };
    testing::follow_upstream_redirect(url).await
}

async fn sign_in_as(
    c: &DingTalkConnector,
    locale: Locale,
) -> Result<ExternalIdentity, ConnectorError> {
    let started = c
        .begin(&ctx(locale), &testing::begin_request(ID, "St4te"))
        .await
        .unwrap();
    let params = approve(started.clone()).await.unwrap();
    assert!(
        params.contains_key("authCode") || params.contains_key("error"),
        "DingTalk comes back with authCode: {params:?}"
    );
    let callback = CallbackRequest::new(params, testing::callback_url(ID), started.flow_data);
    c.complete(&ctx(locale), &callback).await
}

async fn sign_in(c: &DingTalkConnector) -> Result<ExternalIdentity, ConnectorError> {
    sign_in_as(c, Locale::En).await
}

#[tokio::test]
async fn conforms() {
    let sim = sim().await;
    conformance::run(
        Fixture::new(&DingTalkFactory, options(&sim))
            .id(ID)
            .secret("client_secret")
            .settings_debug(|s| format!("{:?}", DingTalkSettings::parse(s)))
            .refresh_supported(true)
            .browser(
                BrowserFlow::new(Upstream::new_async(approve))
                    .no_code(
                        Upstream::fixed(Params::new()),
                        Expect::new(Stage::Callback, ErrorKind::InvalidRequest),
                    )
                    .upstream_error(
                        Upstream::fixed(testing::params(&[("error", "access_denied")])),
                        Expect::new(Stage::Callback, ErrorKind::UserCancelled),
                    )
                    .replay(Expect::new(Stage::TokenExchange, ErrorKind::InvalidCode)),
            ),
    )
    .await;
}

#[tokio::test]
async fn the_subject_is_the_unionid_scoped_by_the_app_and_the_request_is_dingtalks() {
    let sim = sim().await;
    let c = connector(options(&sim));
    let started = c
        .begin(&ctx(Locale::En), &testing::begin_request(ID, "St4te"))
        .await
        .unwrap();
    let Begin::Redirect(url) = &started.begin else {
        panic!()
    };
    assert!(url.starts_with(&format!("{}/oauth2/auth?", sim.base_url())));
    let q = testing::query_params(url);
    assert_eq!(
        (
            q["client_id"].as_str(),
            q["scope"].as_str(),
            q["prompt"].as_str(),
            q["response_type"].as_str()
        ),
        (APP, "openid", "consent", "code")
    );
    let me = sign_in(&c).await.unwrap();
    assert_eq!(me.subject, format!("{APP}:{ZHANG}"));
    assert_eq!(me.profile.name.as_deref(), Some("张三"));
    assert_eq!(me.profile.phone_number.as_deref(), Some("+8613800138000"));
    assert_eq!(me.profile.email_verified, Some(false));
    assert_eq!(me.raw_claims["corpId"], serde_json::Value::Null);
    let tokens = me.upstream_tokens.as_ref().unwrap();
    assert_eq!(tokens.access_expires_at, Some(1_700_000_000 + 7200));
    assert!(!c.vouches_for_email());
    // The JSON the token endpoint got.
    let body = sim.last_token_body().unwrap();
    assert_eq!(body["grantType"], "authorization_code");
    assert_eq!(body["clientId"], APP);
    // Another developer's app (another client id) at the same fake: the same
    // unionId gives another subject.
    sim.add_app(DingApp {
        client_id: "dingotherdeveloper".into(),
        client_secret: SECRET.into(),
        redirect_prefix: testing::callback_url(ID),
    });
    let other = connector(testing::merged(
        &options(&sim),
        serde_json::json!({"client_id": "dingotherdeveloper"}),
    ));
    let them = sign_in(&other).await.unwrap();
    assert_ne!(them.subject, me.subject);
    assert_ne!(
        them.raw_claims["openId"], me.raw_claims["openId"],
        "openId is per app"
    );
}

#[tokio::test]
async fn corp_ids_admit_the_picked_member_organisation_and_refuse_others() {
    let sim = sim().await;
    let c = connector(testing::merged(
        &options(&sim),
        serde_json::json!({"corp_ids": [ACME]}),
    ));
    let started = c
        .begin(&ctx(Locale::En), &testing::begin_request(ID, "S"))
        .await
        .unwrap();
    let Begin::Redirect(url) = &started.begin else {
        panic!()
    };
    let q = testing::query_params(url);
    assert_eq!(
        (q["scope"].as_str(), q["corpId"].as_str()),
        ("openid corpid", ACME)
    );
    let me = sign_in(&c).await.unwrap();
    assert_eq!(me.raw_claims["corpId"], ACME);
    // The person picks their other organisation.
    let two = connector(testing::merged(
        &options(&sim),
        serde_json::json!({"corp_ids": ["dingnotthisone", ACME]}),
    ));
    sim.decide(Decision::approve_for(ZHANG, OTHER));
    let e = sign_in_as(&two, Locale::ZhCn).await.unwrap_err();
    assert_eq!(
        (e.stage, e.kind),
        (Stage::TokenExchange, ErrorKind::NotAllowed)
    );
    assert_eq!(e.upstream_code.as_deref(), Some("corp_not_allowed"));
    assert!(e.fix.as_deref().unwrap().contains(OTHER), "{e:?}");
    assert!(e.advice.as_deref().unwrap().contains("仅允许"), "{e:?}");
    // No organisation at all: refused too.
    sim.leave(ZHANG, ACME);
    sim.leave(ZHANG, OTHER);
    let e = sign_in(&c).await.unwrap_err();
    assert_eq!(e.upstream_code.as_deref(), Some("no_corp_id"));
    assert_eq!(
        sim.counters().me_calls,
        1,
        "refused before reading the person"
    );
}

#[tokio::test]
async fn dingtalks_errors_are_mapped_with_fixes() {
    let sim = sim().await;
    let c = connector(options(&sim));
    sim.set_client_secret(APP, "rotated");
    let e = sign_in(&c).await.unwrap_err();
    assert_eq!(
        (e.stage, e.kind, e.upstream_code.as_deref()),
        (
            Stage::TokenExchange,
            ErrorKind::BadCredentials,
            Some("invalidClientIdOrSecret")
        )
    );
    assert!(e.fix.as_deref().unwrap().contains("client_secret"));
    assert!(!e.to_string().contains(SECRET));
    sim.set_client_secret(APP, SECRET);
    sim.set_faults(Faults {
        busy: true,
        ..Faults::default()
    });
    let e = sign_in(&c).await.unwrap_err();
    assert_eq!(
        (e.kind, e.upstream_code.as_deref()),
        (ErrorKind::UpstreamUnavailable, Some("ServiceUnavailable"))
    );
    sim.set_faults(Faults {
        throttled: true,
        ..Faults::default()
    });
    assert_eq!(sign_in(&c).await.unwrap_err().kind, ErrorKind::RateLimited);
    sim.set_faults(Faults {
        no_contact_permission: true,
        ..Faults::default()
    });
    let e = sign_in(&c).await.unwrap_err();
    assert_eq!(
        (e.stage, e.kind),
        (Stage::Userinfo, ErrorKind::Misconfigured)
    );
    assert!(e.fix.as_deref().unwrap().contains("Contact.User.Read"));
    sim.set_faults(Faults {
        delay: Some(Duration::from_millis(1500)),
        ..Faults::default()
    });
    let slow = connector(testing::merged(
        &options(&sim),
        serde_json::json!({"timeout_secs": 0.5}),
    ));
    let e = sign_in(&slow).await.unwrap_err();
    assert_eq!(
        (e.stage, e.kind),
        (Stage::TokenExchange, ErrorKind::Timeout)
    );
    sim.set_faults(Faults::default());
    // An expired authCode.
    let started = c
        .begin(&ctx(Locale::En), &testing::begin_request(ID, "S"))
        .await
        .unwrap();
    let params = approve(started.clone()).await.unwrap();
    sim.advance(301);
    let e = c
        .complete(
            &ctx(Locale::En),
            &CallbackRequest::new(params, testing::callback_url(ID), started.flow_data),
        )
        .await
        .unwrap_err();
    assert_eq!(
        (e.stage, e.kind, e.upstream_code.as_deref()),
        (
            Stage::TokenExchange,
            ErrorKind::InvalidCode,
            Some("invalidAuthCode")
        )
    );
    // The person cancels.
    sim.decide(Decision::Deny);
    let e = sign_in(&c).await.unwrap_err();
    assert_eq!(
        (e.stage, e.kind),
        (Stage::Callback, ErrorKind::UserCancelled)
    );
}

#[tokio::test]
async fn refresh_rechecks_the_person_and_a_withdrawn_app_ends_it() {
    let sim = sim().await;
    let c = connector(testing::merged(
        &options(&sim),
        serde_json::json!({"corp_ids": [ACME]}),
    ));
    let me = sign_in(&c).await.unwrap();
    let again = c
        .refresh(
            &ctx(Locale::En),
            &me.subject,
            me.upstream_tokens.as_ref().unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(again.subject, me.subject);
    assert_eq!(again.raw_claims["corpId"], ACME);
    sim.revoke(ZHANG);
    let e = c
        .refresh(
            &ctx(Locale::En),
            &me.subject,
            again.upstream_tokens.as_ref().unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        (e.stage, e.kind, e.upstream_code.as_deref()),
        (
            Stage::Refresh,
            ErrorKind::InvalidCode,
            Some("invalidRefreshToken")
        )
    );
}

#[tokio::test]
async fn preferred_in_dingtalks_browser_which_signs_its_account_in() {
    let sim = sim().await;
    sim.decide(Decision::Deny);
    sim.set_client_user(Some(ZHANG));
    let c = connector(options(&sim));
    let inside = testing::request(DINGTALK_UA, Locale::ZhCn, 1_700_000_000);
    assert_eq!(c.availability(&inside), Availability::Preferred);
    assert_eq!(c.availability(&ctx(Locale::En)), Availability::Available);
    let started = c
        .begin(&inside, &testing::begin_request(ID, "S"))
        .await
        .unwrap();
    let Begin::Redirect(url) = &started.begin else {
        panic!()
    };
    let answer = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(DINGTALK_UA)
        .build()
        .unwrap()
        .get(url)
        .send()
        .await
        .unwrap();
    let location = answer.headers()["location"].to_str().unwrap().to_owned();
    let params = testing::query_params(&location);
    let me = c
        .complete(
            &inside,
            &CallbackRequest::new(params, testing::callback_url(ID), started.flow_data),
        )
        .await
        .unwrap();
    assert_eq!(me.subject, format!("{APP}:{ZHANG}"));
    assert_eq!(sim.counters().in_app, 1);
}

#[test]
fn wrong_keys_are_named() {
    let err = testing::build(
        &DingTalkFactory,
        ID,
        serde_json::json!({"client_id": "has space", "client_secret": "", "corp_ids": ["a b"], "api_base_url": "api.dingtalk.com"}),
    )
    .err()
    .unwrap();
    for key in ["client_id", "client_secret", "corp_ids", "api_base_url"] {
        assert!(
            err.contains(&format!("connectors[dingtalk].{key}")),
            "{key}: {err}"
        );
    }
    let s = DingTalkSettings::parse(&testing::settings(
        ID,
        "dingtalk",
        serde_json::json!({"client_id": APP, "client_secret": SECRET}),
    ))
    .unwrap();
    assert_eq!(
        (s.login_base_url.as_str(), s.api_base_url.as_str()),
        ("https://login.dingtalk.com", "https://api.dingtalk.com")
    );
}

#[test]
fn doctor_refuses_plain_http_to_a_remote_host() {
    let settings = testing::settings(
        ID,
        "dingtalk",
        serde_json::json!({"client_id": APP, "client_secret": SECRET, "api_base_url": "http://api.example.com", "login_base_url": "http://127.0.0.1:9"}),
    );
    let problems = DingTalkFactory.doctor(&settings, &testing::build_context(ID));
    assert!(
        problems
            .iter()
            .any(|p| p.key == "connectors[dingtalk].api_base_url" && p.fatal),
        "{problems:?}"
    );
}
