//! The wechat-app connector against the WeChat simulator, without the broker: an
//! SDK code becomes an identity linked with the person's other WeChat apps, and
//! every way an SDK code exchange fails is typed, staged `exchange`, and carries
//! WeChat's errcode and a fix an operator can act on.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use idbridge_connector_kit::conformance::{self, ExchangeFlow, Expect, Fixture, Upstream};
use idbridge_connector_kit::testing;
use idbridge_connector_wechat_app::{AppSettings, WeChatAppFactory, SUBJECT_TOKEN_TYPE};
use idbridge_core::{
    BeginRequest, BuildContext, Connector, ConnectorError, ConnectorFactory, ConnectorSettings,
    ErrorKind, ExternalIdentity, Locale, RequestContext, Stage,
};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wechat_sim::{dev, Endpoint, Fault, FaultKind, SimConfig, Simulator};

const APP_UA: &str = "okhttp/4.12.0";
const ID: &str = "wechat-app";

fn settings(options: serde_json::Value) -> ConnectorSettings {
    testing::settings(ID, "wechat-app", options)
}

fn build_ctx() -> BuildContext {
    testing::build_context_at("https://id.example.com", ID, false)
}

fn options(sim: &Simulator) -> serde_json::Value {
    serde_json::json!({
        "appid": dev::MOBILE_APPID, "appsecret": dev::MOBILE_SECRET,
        "open_platform_id": dev::OPEN_PLATFORM_ID,
        "api_base_url": sim.base_url(), "timeout_secs": 1.0,
    })
}

fn build(options: serde_json::Value) -> Result<Arc<dyn Connector>, String> {
    WeChatAppFactory
        .build(&settings(options), &build_ctx())
        .map_err(|e| format!("{e:?}"))
}

fn connector(sim: &Simulator, extra: serde_json::Value) -> Arc<dyn Connector> {
    build(testing::merged(&options(sim), extra)).unwrap()
}

async fn sim() -> Simulator {
    Simulator::start(SimConfig::dev_default("127.0.0.1"))
        .await
        .unwrap()
}

fn ctx(sim: &Simulator, locale: Locale) -> RequestContext {
    RequestContext::new(APP_UA, locale, sim.now_unix())
}

async fn exchange(
    sim: &Simulator,
    c: &dyn Connector,
    code: &str,
) -> Result<ExternalIdentity, ConnectorError> {
    let request = idbridge_core::ExchangeRequest::new(code, SUBJECT_TOKEN_TYPE);
    c.exchange(&ctx(sim, Locale::ZhCn), &request).await
}

fn sdk_code(sim: &Simulator, user: &str) -> String {
    sim.issue_code(dev::MOBILE_APPID, user, "snsapi_userinfo")
        .unwrap()
}

#[track_caller]
fn assert_failure(err: &ConnectorError, kind: ErrorKind, upstream_code: Option<&str>) {
    assert_eq!((err.stage, err.kind), (Stage::Exchange, kind), "{err}");
    if let Some(code) = upstream_code {
        assert_eq!(err.upstream_code.as_deref(), Some(code), "{err}");
    }
    assert!(err.fix.is_some(), "every failure says what to do: {err}");
}

#[tokio::test]
async fn the_connector_conforms() {
    let sim = sim().await;
    conformance::run(
        Fixture::new(&WeChatAppFactory, options(&sim))
            .secret("appsecret")
            .settings_debug(|s| format!("{:?}", AppSettings::parse(s, "AppID")))
            .user_agent(APP_UA)
            .clock(|| sim.now_unix())
            .exchange(
                ExchangeFlow::new(
                    SUBJECT_TOKEN_TYPE,
                    Upstream::new(|()| {
                        sim.issue_code(dev::MOBILE_APPID, dev::USER_ALICE, "snsapi_userinfo")
                            .map_err(|e| format!("{e:?}"))
                    }),
                )
                .replay(Expect::new(Stage::Exchange, ErrorKind::CodeReused))
                // WeChat's 40029 for a code it never issued.
                .invalid_token(Expect::new(Stage::Exchange, ErrorKind::InvalidCode)),
            )
            .refresh_supported(true),
    )
    .await;
    sim.stop().await;
}

#[tokio::test]
async fn an_sdk_code_becomes_the_identity_linked_with_the_other_wechat_apps() {
    let sim = sim().await;
    let c = connector(&sim, serde_json::json!({}));
    let before = sim.counters();
    let id = exchange(&sim, c.as_ref(), &sdk_code(&sim, dev::USER_XIAOMING))
        .await
        .unwrap();
    assert_eq!(id.connector_id.as_str(), "wechat-app");
    assert_eq!(
        id.subject,
        sim.openid(dev::MOBILE_APPID, dev::USER_XIAOMING),
        "the subject is the mobile app's own openid"
    );
    assert_ne!(id.subject, sim.openid(dev::WEB_APPID, dev::USER_XIAOMING));
    let link = id.link_key.clone().unwrap();
    assert_eq!(link.scope, dev::OPEN_PLATFORM_ID);
    assert_eq!(
        Some(link.key),
        sim.unionid(dev::WEB_APPID, dev::USER_XIAOMING),
        "the website app's unionid: one person across the platform's apps"
    );
    assert_eq!(id.profile.name.as_deref(), Some("王小明🐼✨"));
    assert!(id.profile.picture.as_deref().unwrap().ends_with("/0"));
    assert_eq!(id.raw_claims["appid"], dev::MOBILE_APPID);
    let tokens = id.upstream_tokens.clone().unwrap();
    assert!(tokens.access_token.is_some() && tokens.refresh_token.is_some());
    let after = sim.counters();
    assert_eq!(after.code_exchanges, before.code_exchanges + 1);
    assert_eq!(after.userinfo_calls, before.userinfo_calls + 1);

    // Without open_platform_id nothing is linked (the subject stays the openid).
    let unscoped = connector(&sim, serde_json::json!({"open_platform_id": null}));
    let id2 = exchange(&sim, unscoped.as_ref(), &sdk_code(&sim, dev::USER_XIAOMING))
        .await
        .unwrap();
    assert_eq!(id2.subject, id.subject);
    assert!(id2.link_key.is_none());

    // Refresh: a new WeChat token for the same openid, the profile again.
    sim.advance(2 * 3600 + 60);
    let again = c
        .refresh(&ctx(&sim, Locale::En), &id.subject, &tokens)
        .await
        .unwrap();
    assert_eq!(again.subject, id.subject);
    assert_eq!(again.profile.name.as_deref(), Some("王小明🐼✨"));
    let new_tokens = again.upstream_tokens.unwrap();
    assert_ne!(new_tokens.access_token, tokens.access_token);
    assert_eq!(new_tokens.refresh_expires_at, tokens.refresh_expires_at);
    sim.stop().await;
}

#[tokio::test]
async fn it_has_no_browser_flow_and_accepts_only_wechat_sdk_codes() {
    let sim = sim().await;
    let c = connector(&sim, serde_json::json!({}));
    assert!(!c.has_browser_flow());
    assert_eq!(c.subject_token_types(), [SUBJECT_TOKEN_TYPE]);
    assert_eq!(
        SUBJECT_TOKEN_TYPE,
        "urn:idbridge:params:oauth:token-type:wechat_sdk_code"
    );
    let err = c
        .begin(
            &ctx(&sim, Locale::En),
            &BeginRequest::new("abc123", "https://id.example.com/callback/wechat-app"),
        )
        .await
        .unwrap_err();
    assert_eq!(
        (err.stage, err.kind),
        (Stage::Begin, ErrorKind::Unsupported)
    );
    assert!(err.fix.unwrap().contains("token-exchange"));
    sim.stop().await;
}

#[tokio::test]
async fn a_code_works_once() {
    let sim = sim().await;
    let c = connector(&sim, serde_json::json!({}));
    let code = sdk_code(&sim, dev::USER_ALICE);
    exchange(&sim, c.as_ref(), &code).await.unwrap();
    let err = exchange(&sim, c.as_ref(), &code).await.unwrap_err();
    assert_failure(&err, ErrorKind::CodeReused, Some("40163"));
    assert!(err.fix.unwrap().contains("twice"));
    assert!(err.upstream_message.unwrap().contains("rid:"));
    sim.stop().await;
}

#[tokio::test]
async fn unknown_expired_and_foreign_codes_are_invalid() {
    let sim = sim().await;
    let c = connector(&sim, serde_json::json!({}));
    let err = exchange(&sim, c.as_ref(), "061AbCdEfGhIjKlMnOpQrStUvWx0AbCd")
        .await
        .unwrap_err();
    assert_failure(&err, ErrorKind::InvalidCode, Some("40029"));
    let fix = err.fix.unwrap();
    assert!(
        fix.contains("connectors[wechat-app].appid") && fix.contains(dev::MOBILE_APPID),
        "{fix}"
    );

    // A code of the website app (another appid): WeChat says 40029 too.
    let web_code = sim
        .issue_code(dev::WEB_APPID, dev::USER_ALICE, "snsapi_login")
        .unwrap();
    let err = exchange(&sim, c.as_ref(), &web_code).await.unwrap_err();
    assert_failure(&err, ErrorKind::InvalidCode, Some("40029"));

    let code = sdk_code(&sim, dev::USER_ALICE);
    sim.advance(301);
    let err = exchange(&sim, c.as_ref(), &code).await.unwrap_err();
    assert_failure(&err, ErrorKind::InvalidCode, None);
    sim.stop().await;
}

#[tokio::test]
async fn something_that_is_not_a_code_never_reaches_wechat() {
    let sim = sim().await;
    let c = connector(&sim, serde_json::json!({}));
    let before = sim.counters().code_exchanges;
    for bad in ["", "   ", "two words", &"x".repeat(600), "line\nbreak"] {
        let err = exchange(&sim, c.as_ref(), bad).await.unwrap_err();
        assert_failure(&err, ErrorKind::InvalidCode, Some("malformed_code"));
    }
    assert_eq!(sim.counters().code_exchanges, before);
    sim.stop().await;
}

#[tokio::test]
async fn a_wrong_secret_or_appid_is_bad_credentials() {
    let sim = sim().await;
    let c = connector(
        &sim,
        serde_json::json!({"appsecret": "0123456789abcdef0123456789abcdef"}),
    );
    let err = exchange(&sim, c.as_ref(), &sdk_code(&sim, dev::USER_ALICE))
        .await
        .unwrap_err();
    assert_failure(&err, ErrorKind::BadCredentials, Some("40125"));
    assert!(err.fix.unwrap().contains("AppSecret"));
    let c = connector(&sim, serde_json::json!({"appid": "wx00000000000000ff"}));
    let err = exchange(&sim, c.as_ref(), &sdk_code(&sim, dev::USER_ALICE))
        .await
        .unwrap_err();
    assert_failure(&err, ErrorKind::BadCredentials, Some("40013"));
    sim.stop().await;
}

#[tokio::test]
async fn wechat_busy_is_retried_once_and_slowness_times_out() {
    let sim = sim().await;
    let c = connector(&sim, serde_json::json!({}));
    sim.set_fault(Fault {
        endpoint: Endpoint::AccessToken,
        kind: FaultKind::Busy,
        times: Some(1),
    });
    exchange(&sim, c.as_ref(), &sdk_code(&sim, dev::USER_ALICE))
        .await
        .expect("the one retry succeeds");
    sim.set_fault(Fault {
        endpoint: Endpoint::AccessToken,
        kind: FaultKind::Busy,
        times: Some(2),
    });
    let err = exchange(&sim, c.as_ref(), &sdk_code(&sim, dev::USER_ALICE))
        .await
        .unwrap_err();
    assert_failure(&err, ErrorKind::UpstreamUnavailable, Some("-1"));

    sim.set_fault(Fault {
        endpoint: Endpoint::AccessToken,
        kind: FaultKind::Slow(Duration::from_secs(3)),
        times: Some(1),
    });
    let started = Instant::now();
    let err = exchange(&sim, c.as_ref(), &sdk_code(&sim, dev::USER_ALICE))
        .await
        .unwrap_err();
    assert_failure(&err, ErrorKind::Timeout, None);
    assert!(started.elapsed() < Duration::from_millis(2500));

    // userinfo failing is reported at its own stage.
    sim.set_fault(Fault {
        endpoint: Endpoint::UserInfo,
        kind: FaultKind::Garbage,
        times: Some(1),
    });
    let err = exchange(&sim, c.as_ref(), &sdk_code(&sim, dev::USER_ALICE))
        .await
        .unwrap_err();
    assert_eq!(
        (err.stage, err.kind),
        (Stage::Userinfo, ErrorKind::BadResponse)
    );
    sim.stop().await;
}

#[tokio::test]
async fn a_snapshot_user_is_refused() {
    let sim = sim().await;
    let c = connector(&sim, serde_json::json!({}));
    let code = sim
        .issue_snapshot_code(dev::MOBILE_APPID, dev::USER_ALICE)
        .unwrap();
    let userinfo = sim.counters().userinfo_calls;
    let err = exchange(&sim, c.as_ref(), &code).await.unwrap_err();
    assert_failure(&err, ErrorKind::NotAllowed, Some("is_snapshotuser"));
    assert_eq!(
        sim.counters().userinfo_calls,
        userinfo,
        "not even the profile of a virtual user"
    );
    sim.stop().await;
}

#[test]
fn config_errors_name_their_key() {
    let err = build(serde_json::json!({
        "appid": "wx123", "appsecret": "short", "open_platform_id": "gh bad",
        "timeout_secs": 0.0,
    }))
    .err()
    .unwrap();
    for key in ["appid", "appsecret", "open_platform_id", "timeout_secs"] {
        assert!(
            err.contains(&format!("connectors[wechat-app].{key}")),
            "{key}: {err}"
        );
    }
    // A mobile app has no authorize page and no callback: those keys are mistakes.
    for key in ["open_base_url", "callback_domain", "scope"] {
        let err = build(serde_json::json!({
            "appid": dev::MOBILE_APPID, "appsecret": dev::MOBILE_SECRET, key: "x",
        }))
        .err()
        .unwrap();
        assert!(
            err.contains(&format!("connectors[wechat-app].{key}")),
            "{err}"
        );
    }
    let err = build(serde_json::json!({"appsecret": dev::MOBILE_SECRET}))
        .err()
        .unwrap();
    assert!(err.contains("connectors[wechat-app].appid"), "{err}");
}

#[test]
fn doctor_warns_when_nothing_links_and_when_pointed_away_from_wechat() {
    let problems = WeChatAppFactory.doctor(
        &settings(serde_json::json!({
            "appid": dev::MOBILE_APPID, "appsecret": dev::MOBILE_SECRET,
            "api_base_url": "http://127.0.0.1:9",
        })),
        &build_ctx(),
    );
    assert!(
        problems
            .iter()
            .any(|p| !p.fatal && p.key == "connectors[wechat-app].open_platform_id"),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| !p.fatal && p.key == "connectors[wechat-app].api_base_url"),
        "{problems:?}"
    );
    assert!(
        !problems.iter().any(|p| p.key.contains("callback_domain")),
        "a mobile app has no callback domain: {problems:?}"
    );
    let clean = WeChatAppFactory.doctor(
        &settings(serde_json::json!({
            "appid": dev::MOBILE_APPID, "appsecret": dev::MOBILE_SECRET,
            "open_platform_id": dev::OPEN_PLATFORM_ID,
        })),
        &build_ctx(),
    );
    assert!(clean.is_empty(), "{clean:?}");
}
