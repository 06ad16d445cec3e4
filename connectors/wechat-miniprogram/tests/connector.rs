//! The wechat-miniprogram connector against the WeChat simulator, without the
//! broker: a `wx.login` code becomes the identity linked with the person's
//! other WeChat apps, the session key stays in the upstream tokens only, and
//! every way `sns/jscode2session` fails is typed, staged `exchange`, and
//! carries WeChat's errcode and a fix.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use idbridge_connector_kit::conformance::{self, ExchangeFlow, Expect, Fixture, Upstream};
use idbridge_connector_kit::testing;
use idbridge_connector_wechat_miniprogram::{WeChatMiniProgramFactory, KIND, SUBJECT_TOKEN_TYPE};
use idbridge_core::{
    Connector, ConnectorError, ConnectorFactory, ErrorKind, ExternalIdentity, Locale,
    RequestContext, Stage,
};
use std::sync::Arc;
use wechat_api::ExchangeSettings;
use wechat_sim::{dev, Endpoint, Fault, FaultKind, SimConfig, Simulator};

const MINI_PROGRAM_UA: &str = "Mozilla/5.0 (iPhone) MicroMessenger/8.0.50 miniProgram";
const ID: &str = "wechat-mini";

fn options(sim: &Simulator) -> serde_json::Value {
    serde_json::json!({
        "appid": dev::MINI_PROGRAM_APPID, "appsecret": dev::MINI_PROGRAM_SECRET,
        "open_platform_id": dev::OPEN_PLATFORM_ID,
        "api_base_url": sim.base_url(), "timeout_secs": 1.0,
    })
}

fn connector(sim: &Simulator, extra: serde_json::Value) -> Arc<dyn Connector> {
    let settings = testing::settings(ID, KIND, testing::merged(&options(sim), extra));
    WeChatMiniProgramFactory
        .build(&settings, &testing::build_context(ID))
        .map_err(|e| format!("{e:?}"))
        .unwrap()
}

async fn sim() -> Simulator {
    Simulator::start(SimConfig::dev_default("127.0.0.1"))
        .await
        .unwrap()
}

async fn exchange(
    sim: &Simulator,
    c: &dyn Connector,
    code: &str,
) -> Result<ExternalIdentity, ConnectorError> {
    let ctx = RequestContext::new(MINI_PROGRAM_UA, Locale::ZhCn, sim.now_unix());
    let request = idbridge_core::ExchangeRequest::new(code, SUBJECT_TOKEN_TYPE);
    c.exchange(&ctx, &request).await
}

fn login_code(sim: &Simulator, user: &str) -> String {
    sim.issue_login_code(dev::MINI_PROGRAM_APPID, user).unwrap()
}

#[track_caller]
fn assert_failure(err: &ConnectorError, kind: ErrorKind, upstream_code: &str) {
    assert_eq!((err.stage, err.kind), (Stage::Exchange, kind), "{err}");
    assert_eq!(err.upstream_code.as_deref(), Some(upstream_code), "{err}");
    assert!(err.fix.is_some(), "every failure says what to do: {err}");
}

#[tokio::test]
async fn the_connector_conforms() {
    let sim = sim().await;
    conformance::run(
        Fixture::new(&WeChatMiniProgramFactory, options(&sim))
            .secret("appsecret")
            .settings_debug(|s| format!("{:?}", ExchangeSettings::parse(s, "AppID")))
            .user_agent(MINI_PROGRAM_UA)
            .clock(|| sim.now_unix())
            .exchange(
                ExchangeFlow::new(
                    SUBJECT_TOKEN_TYPE,
                    Upstream::new(|()| {
                        sim.issue_login_code(dev::MINI_PROGRAM_APPID, dev::USER_ALICE)
                            .map_err(|e| format!("{e:?}"))
                    }),
                )
                .replay(Expect::new(Stage::Exchange, ErrorKind::CodeReused))
                .invalid_token(Expect::new(Stage::Exchange, ErrorKind::InvalidCode)),
            )
            .refresh_supported(false),
    )
    .await;
    sim.stop().await;
}

#[tokio::test]
async fn a_login_code_becomes_the_identity_linked_with_the_other_wechat_apps() {
    let sim = sim().await;
    let c = connector(&sim, serde_json::json!({}));
    let before = sim.counters();
    let id = exchange(&sim, c.as_ref(), &login_code(&sim, dev::USER_XIAOMING))
        .await
        .unwrap();
    assert_eq!(
        id.subject,
        sim.openid(dev::MINI_PROGRAM_APPID, dev::USER_XIAOMING),
        "the subject is the Mini Program's own openid"
    );
    let link = id.link_key.clone().unwrap();
    assert_eq!(link.scope, dev::OPEN_PLATFORM_ID);
    assert_eq!(
        Some(link.key),
        sim.unionid(dev::WEB_APPID, dev::USER_XIAOMING),
        "the website app's unionid: one person across the platform's apps"
    );
    // wx.login gives no profile.
    assert_eq!(id.profile.name, None);
    // The session key is kept for the broker to seal, and nowhere else.
    let tokens = id.upstream_tokens.clone().unwrap();
    let session_key = tokens.access_token.clone().unwrap();
    assert!(!session_key.is_empty());
    assert_eq!(tokens.scope.as_deref(), Some("session_key"));
    assert_eq!(tokens.refresh_token, None);
    assert!(!id.raw_claims.to_string().contains(&session_key));
    assert!(
        !format!("{tokens:?}").contains(&session_key),
        "redacted in Debug"
    );
    assert_eq!(
        sim.counters().mini_program_sessions,
        before.mini_program_sessions + 1
    );

    // Without open_platform_id nothing is linked.
    let unscoped = connector(&sim, serde_json::json!({"open_platform_id": null}));
    let id2 = exchange(
        &sim,
        unscoped.as_ref(),
        &login_code(&sim, dev::USER_XIAOMING),
    )
    .await
    .unwrap();
    assert_eq!(id2.link_key, None);
    assert_eq!(id2.subject, id.subject);
    sim.stop().await;
}

#[tokio::test]
async fn every_documented_failure_is_typed_with_wechats_code_and_a_fix() {
    let sim = sim().await;
    let c = connector(&sim, serde_json::json!({}));

    // A made-up code, a code of another app, a used code.
    let e = exchange(&sim, c.as_ref(), "made-up-code")
        .await
        .unwrap_err();
    assert_failure(&e, ErrorKind::InvalidCode, "40029");
    assert!(
        e.fix.as_deref().unwrap().contains(dev::MINI_PROGRAM_APPID),
        "{e}"
    );
    let mobile = sim
        .issue_code(dev::MOBILE_APPID, dev::USER_ALICE, "snsapi_userinfo")
        .unwrap();
    let e = exchange(&sim, c.as_ref(), &mobile).await.unwrap_err();
    assert_failure(&e, ErrorKind::InvalidCode, "40029");
    let code = login_code(&sim, dev::USER_ALICE);
    exchange(&sim, c.as_ref(), &code).await.unwrap();
    let e = exchange(&sim, c.as_ref(), &code).await.unwrap_err();
    assert_failure(&e, ErrorKind::CodeReused, "40163");

    // An expired code (5 minutes).
    let code = login_code(&sim, dev::USER_ALICE);
    sim.advance(301);
    let e = exchange(&sim, c.as_ref(), &code).await.unwrap_err();
    assert_failure(&e, ErrorKind::InvalidCode, "40029");

    // A wrong secret.
    let wrong = connector(
        &sim,
        serde_json::json!({"appsecret": "0123456789abcdef0123456789abcdef"}),
    );
    let e = exchange(&sim, wrong.as_ref(), &login_code(&sim, dev::USER_ALICE))
        .await
        .unwrap_err();
    assert_failure(&e, ErrorKind::BadCredentials, "40125");

    // Scripted: a high-risk user, the per-person limit, WeChat busy.
    for (errcode, kind) in [
        (40226, ErrorKind::NotAllowed),
        (45011, ErrorKind::RateLimited),
        (-1, ErrorKind::UpstreamUnavailable),
    ] {
        sim.set_fault(Fault {
            endpoint: Endpoint::JsCode2Session,
            kind: FaultKind::Errcode(errcode, "scripted".into()),
            times: Some(1),
        });
        let e = exchange(&sim, c.as_ref(), &login_code(&sim, dev::USER_ALICE))
            .await
            .unwrap_err();
        assert_failure(&e, kind, &errcode.to_string());
    }

    // Not a code at all: refused without calling WeChat.
    let before = sim.counters().mini_program_sessions;
    let e = exchange(&sim, c.as_ref(), "has spaces").await.unwrap_err();
    assert_failure(&e, ErrorKind::InvalidCode, "malformed_code");
    assert_eq!(sim.counters().mini_program_sessions, before);
    sim.stop().await;
}

#[tokio::test]
async fn the_simulator_enforces_wechats_per_person_minute_limit() {
    let sim = sim().await;
    let c = connector(&sim, serde_json::json!({}));
    for _ in 0..100 {
        exchange(&sim, c.as_ref(), &login_code(&sim, dev::USER_ALICE))
            .await
            .unwrap();
    }
    let e = exchange(&sim, c.as_ref(), &login_code(&sim, dev::USER_ALICE))
        .await
        .unwrap_err();
    assert_failure(&e, ErrorKind::RateLimited, "45011");
    assert!(e.fix.as_deref().unwrap().contains("100"), "{e}");
    // Another person is not limited by it.
    exchange(&sim, c.as_ref(), &login_code(&sim, dev::USER_XIAOMING))
        .await
        .unwrap();
    sim.stop().await;
}
