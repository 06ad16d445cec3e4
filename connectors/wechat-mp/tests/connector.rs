//! The wechat-mp connector against the WeChat simulator, without the broker:
//! availability per browser, begin builds WeChat's Official Account URL, complete
//! turns a callback into an identity (snsapi_userinfo, snsapi_base, snapshot
//! users, refusals), and refresh re-checks a returning person.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use idbridge_connector_kit::conformance::{self, BrowserFlow, Expect, Fixture, Params, Upstream};
use idbridge_connector_kit::testing;
use idbridge_connector_wechat_mp::{MpSettings, WeChatMpFactory};
use idbridge_core::{
    Availability, Begin, BeginRequest, Connector, ConnectorFactory, ErrorKind, ExternalIdentity,
    Locale, RequestContext, Stage, Started,
};
use std::sync::Arc;
use wechat_sim::{dev, SimConfig, Simulator};

const ID: &str = "wechat-mp";
const CALLBACK: &str = "http://127.0.0.1:9/callback/wechat-mp";
const WECHAT_UA: &str = "Mozilla/5.0 (iPhone) AppleWebKit MicroMessenger/8.0.40";
const WECOM_UA: &str = "Mozilla/5.0 (iPhone) AppleWebKit MicroMessenger/8.0.40 wxwork/4.1.0";
const DESKTOP_WECHAT_UA: &str = "Mozilla/5.0 (Windows NT 10.0) MicroMessenger/7.0.20 WindowsWechat";
const MINI_PROGRAM_UA: &str = "Mozilla/5.0 (iPhone) MicroMessenger/8.0.40 miniProgram";
const BROWSER_UA: &str = "Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0";

fn build(options: serde_json::Value) -> Result<Arc<dyn Connector>, String> {
    testing::build(&WeChatMpFactory, ID, options)
}

fn options(sim: &Simulator) -> serde_json::Value {
    serde_json::json!({
        "appid": dev::MP_APPID, "appsecret": dev::MP_SECRET,
        "open_platform_id": dev::OPEN_PLATFORM_ID,
        "api_base_url": sim.base_url(), "open_base_url": sim.base_url(),
    })
}

fn connector(sim: &Simulator, extra: serde_json::Value) -> Arc<dyn Connector> {
    build(testing::merged(&options(sim), extra)).unwrap()
}

fn ctx(sim: &Simulator) -> RequestContext {
    RequestContext::new(WECHAT_UA, Locale::ZhCn, sim.now_unix())
}

/// begin inside WeChat: the authorize URL.
async fn authorize_url(sim: &Simulator, c: &dyn Connector) -> String {
    let started = c
        .begin(&ctx(sim), &BeginRequest::new("abc123", CALLBACK))
        .await
        .unwrap();
    let Begin::Redirect(url) = started.begin else {
        panic!("a redirect inside WeChat")
    };
    url
}

/// The callback URL turned into what the broker hands `complete`.
async fn complete(
    sim: &Simulator,
    c: &dyn Connector,
    callback: &str,
) -> Result<ExternalIdentity, idbridge_core::ConnectorError> {
    assert_eq!(testing::callback_url(ID), CALLBACK);
    c.complete(
        &ctx(sim),
        &testing::callback_from_url(ID, callback, serde_json::Value::Null),
    )
    .await
}

async fn sign_in(sim: &Simulator, c: &dyn Connector, user: &str) -> ExternalIdentity {
    let url = authorize_url(sim, c).await;
    let callback = sim.scan(&url, user).unwrap().remove(0);
    complete(sim, c, &callback).await.unwrap()
}

fn authorize_url_of(started: &Started) -> Result<String, String> {
    match &started.begin {
        Begin::Redirect(url) => Ok(url.clone()),
        other => Err(format!("a redirect inside WeChat, not {other:?}")),
    }
}

#[tokio::test]
async fn the_connector_conforms_with_either_scope() {
    let sim = Simulator::start(SimConfig::dev_default("127.0.0.1"))
        .await
        .unwrap();
    for scope in ["snsapi_userinfo", "snsapi_base"] {
        let approve = |started: Started| -> Result<Params, String> {
            let back = sim
                .scan(&authorize_url_of(&started)?, dev::USER_XIAOMING)
                .map_err(|e| format!("{e:?}"))?;
            Ok(testing::query_params(&back[0]))
        };
        let refuse = |started: Started| -> Result<Params, String> {
            let back = sim
                .refuse(&authorize_url_of(&started)?)
                .map_err(|e| format!("{e:?}"))?;
            Ok(testing::query_params(&back))
        };
        conformance::run(
            Fixture::new(
                &WeChatMpFactory,
                testing::merged(&options(&sim), serde_json::json!({ "scope": scope })),
            )
            .secret("appsecret")
            .settings_debug(|s| format!("{:?}", MpSettings::parse(s)))
            .user_agent(WECHAT_UA)
            .clock(|| sim.now_unix())
            .browser(
                BrowserFlow::new(Upstream::new(approve))
                    .no_code(
                        Upstream::fixed(Params::new()),
                        Expect::new(Stage::Callback, ErrorKind::UserCancelled),
                    )
                    .upstream_error(
                        Upstream::new(refuse),
                        Expect::new(Stage::Callback, ErrorKind::UserCancelled),
                    )
                    .replay(Expect::new(Stage::TokenExchange, ErrorKind::CodeReused)),
            )
            .refresh_supported(true),
        )
        .await;
    }
    sim.stop().await;
}

#[tokio::test]
async fn preferred_inside_wechat_unavailable_elsewhere() {
    let sim = Simulator::start(SimConfig::dev_default("127.0.0.1"))
        .await
        .unwrap();
    let c = connector(&sim, serde_json::json!({}));
    for ua in [WECHAT_UA, DESKTOP_WECHAT_UA, MINI_PROGRAM_UA] {
        let here = RequestContext::new(ua, Locale::En, 0);
        assert_eq!(c.availability(&here), Availability::Preferred, "{ua}");
    }
    let zh = RequestContext::new(BROWSER_UA, Locale::ZhCn, 0);
    match c.availability(&zh) {
        Availability::Unavailable { reason } => {
            assert!(reason.contains("请在微信客户端打开链接"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    let wecom = RequestContext::new(WECOM_UA, Locale::En, 0);
    match c.availability(&wecom) {
        Availability::Unavailable { reason } => {
            assert!(reason.contains("Open this link in WeChat"), "{reason}")
        }
        other => panic!("WeCom is not WeChat: {other:?}"),
    }
    // Started anyway from a browser (connector=...): the broker's own page, not
    // WeChat's dead end.
    let started = c
        .begin(&zh, &BeginRequest::new("abc123", CALLBACK))
        .await
        .unwrap();
    match started.begin {
        Begin::Page { body_html, .. } => assert!(body_html.contains("请在微信客户端打开链接")),
        other => panic!("{other:?}"),
    }

    let hidden = connector(&sim, serde_json::json!({"outside_wechat": "hide"}));
    let browser = RequestContext::new(BROWSER_UA, Locale::En, 0);
    assert_eq!(
        hidden.availability(&browser),
        Availability::Unavailable {
            reason: "Only inside WeChat".into()
        }
    );
    sim.stop().await;
}

#[tokio::test]
async fn the_authorize_url_is_exactly_what_wechat_documents() {
    let sim = Simulator::start(SimConfig::dev_default("127.0.0.1"))
        .await
        .unwrap();
    let c = connector(&sim, serde_json::json!({}));
    assert_eq!(
        authorize_url(&sim, c.as_ref()).await,
        format!(
            "{}/connect/oauth2/authorize?appid={}&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcallback%2Fwechat-mp&response_type=code&scope=snsapi_userinfo&state=abc123#wechat_redirect",
            sim.base_url(),
            dev::MP_APPID
        )
    );
    let base = connector(&sim, serde_json::json!({"scope": "snsapi_base"}));
    assert!(authorize_url(&sim, base.as_ref())
        .await
        .ends_with("&response_type=code&scope=snsapi_base&state=abc123#wechat_redirect"));
    sim.stop().await;
}

#[tokio::test]
async fn snsapi_userinfo_gives_the_profile_and_the_platform_unionid() {
    let sim = Simulator::start(SimConfig::dev_default("127.0.0.1"))
        .await
        .unwrap();
    let c = connector(&sim, serde_json::json!({}));
    let before = sim.counters().userinfo_calls;
    let id = sign_in(&sim, c.as_ref(), dev::USER_XIAOMING).await;
    assert_eq!(id.subject, sim.openid(dev::MP_APPID, dev::USER_XIAOMING));
    assert_ne!(
        id.subject,
        sim.openid(dev::WEB_APPID, dev::USER_XIAOMING),
        "openids are per app"
    );
    let link = id.link_key.clone().unwrap();
    assert_eq!(link.scope, dev::OPEN_PLATFORM_ID);
    assert_eq!(
        Some(link.key.clone()),
        sim.unionid(dev::MP_APPID, dev::USER_XIAOMING)
    );
    assert_eq!(
        Some(link.key),
        sim.unionid(dev::WEB_APPID, dev::USER_XIAOMING),
        "the same unionid as the website app's"
    );
    assert_eq!(id.profile.name.as_deref(), Some("王小明🐼✨"));
    assert!(id.profile.picture.as_deref().unwrap().ends_with("/0"));
    assert_eq!(sim.counters().userinfo_calls, before + 1);
    let tokens = id.upstream_tokens.clone().unwrap();
    assert!(tokens.access_token.is_some() && tokens.refresh_token.is_some());

    // Refresh: a new WeChat token, the profile again, the refresh expiry kept.
    sim.advance(2 * 3600 + 60);
    let again = c.refresh(&ctx(&sim), &id.subject, &tokens).await.unwrap();
    assert_eq!(again.subject, id.subject);
    assert_eq!(again.profile.name.as_deref(), Some("王小明🐼✨"));
    let new_tokens = again.upstream_tokens.unwrap();
    assert_ne!(new_tokens.access_token, tokens.access_token);
    assert_eq!(new_tokens.refresh_expires_at, tokens.refresh_expires_at);
    sim.stop().await;
}

#[tokio::test]
async fn snsapi_base_gives_the_openid_only_and_never_calls_userinfo() {
    let sim = Simulator::start(SimConfig::dev_default("127.0.0.1"))
        .await
        .unwrap();
    let c = connector(&sim, serde_json::json!({"scope": "snsapi_base"}));
    let before = sim.counters().userinfo_calls;
    let id = sign_in(&sim, c.as_ref(), dev::USER_ALICE).await;
    assert_eq!(id.subject, sim.openid(dev::MP_APPID, dev::USER_ALICE));
    assert!(id.link_key.is_none(), "snsapi_base returns no unionid");
    assert!(id.profile.name.is_none() && id.profile.picture.is_none());
    assert!(id.upstream_tokens.is_some());
    // Refresh of a snsapi_base token: still no userinfo (it would be 48001).
    sim.advance(2 * 3600 + 60);
    let tokens = id.upstream_tokens.clone().unwrap();
    let again = c.refresh(&ctx(&sim), &id.subject, &tokens).await.unwrap();
    assert_eq!(again.subject, id.subject);
    assert_eq!(
        sim.counters().userinfo_calls,
        before,
        "no sns/userinfo call with snsapi_base"
    );
    sim.stop().await;
}

#[tokio::test]
async fn a_snapshot_user_is_refused() {
    let sim = Simulator::start(SimConfig::dev_default("127.0.0.1"))
        .await
        .unwrap();
    let c = connector(&sim, serde_json::json!({}));
    let url = authorize_url(&sim, c.as_ref()).await;
    let url = url.replace("#wechat_redirect", "&sim_snapshot=1#wechat_redirect");
    let callback = sim.scan(&url, dev::USER_ALICE).unwrap().remove(0);
    let err = complete(&sim, c.as_ref(), &callback).await.unwrap_err();
    assert_eq!(
        (err.stage, err.kind),
        (Stage::TokenExchange, ErrorKind::NotAllowed)
    );
    assert_eq!(err.upstream_code.as_deref(), Some("is_snapshotuser"));
    assert!(err.fix.as_deref().unwrap().contains("full page"));
    // The same text as wechat-web's (wechat_api::login::snapshot_user_refused).
    assert_eq!(
        err,
        wechat_api::login::snapshot_user_refused(Stage::TokenExchange, Locale::ZhCn)
    );
    assert!(err.fix.unwrap().contains("使用完整服务"));
    sim.stop().await;
}

#[tokio::test]
async fn refusing_is_user_cancelled() {
    let sim = Simulator::start(SimConfig::dev_default("127.0.0.1"))
        .await
        .unwrap();
    let c = connector(&sim, serde_json::json!({}));
    let url = authorize_url(&sim, c.as_ref()).await;
    let back = sim.refuse(&url).unwrap();
    let exchanges = sim.counters().code_exchanges;
    let err = complete(&sim, c.as_ref(), &back).await.unwrap_err();
    assert_eq!(
        (err.stage, err.kind),
        (Stage::Callback, ErrorKind::UserCancelled)
    );
    assert_eq!(sim.counters().code_exchanges, exchanges);
    sim.stop().await;
}

#[test]
fn config_errors_name_their_key() {
    let err = build(serde_json::json!({
        "appid": dev::MP_APPID, "appsecret": dev::MP_SECRET, "scope": "snsapi_login",
        "outside_wechat": "redirect",
    }))
    .err()
    .unwrap();
    assert!(err.contains("connectors[wechat-mp].scope"), "{err}");
    assert!(
        err.contains("connectors[wechat-mp].outside_wechat"),
        "{err}"
    );
    let err = build(serde_json::json!({
        "appid": dev::MP_APPID, "appsecret": dev::MP_SECRET, "mode": "embedded",
    }))
    .err()
    .unwrap();
    assert!(err.contains("connectors[wechat-mp].mode"), "{err}");
}

#[test]
fn doctor_checks_the_callback_domain() {
    let settings = testing::settings(
        ID,
        "wechat-mp",
        serde_json::json!({
            "appid": dev::MP_APPID, "appsecret": dev::MP_SECRET,
            "open_platform_id": dev::OPEN_PLATFORM_ID,
            "callback_domain": "www.example.com",
        }),
    );
    let ctx = testing::build_context_at("https://example.com", ID, false);
    assert_eq!(ctx.callback_url, "https://example.com/callback/wechat-mp");
    let problems = WeChatMpFactory.doctor(&settings, &ctx);
    assert!(
        problems
            .iter()
            .any(|p| p.fatal && p.key == "connectors[wechat-mp].callback_domain"),
        "{problems:?}"
    );
}

/// A connector with customer-service messages on, sharing `cache` (one per broker
/// deployment; each call here stands for one broker instance).
fn messaging(sim: &Simulator, cache: &idbridge_core::Shared) -> Arc<dyn Connector> {
    let settings = testing::settings(
        ID,
        "wechat-mp",
        testing::merged(&options(sim), serde_json::json!({ "messages": true })),
    );
    let ctx = testing::build_context_sharing(ID, cache);
    WeChatMpFactory.build(&settings, &ctx).unwrap()
}

#[tokio::test]
async fn messages_reach_the_chat_and_share_one_app_token_between_instances() {
    let sim = Simulator::start(SimConfig::dev_default("127.0.0.1"))
        .await
        .unwrap();
    let cache = idbridge_core::Shared::default();
    let first = messaging(&sim, &cache);
    let second = messaging(&sim, &cache);
    assert!(first.can_send_messages());
    let openid = sim.openid(dev::MP_APPID, "alice");
    sim.mark_interaction(dev::MP_APPID, "alice");
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..4 {
        let c = if i % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        let (ctx, openid) = (ctx(&sim), openid.clone());
        sends.spawn(async move { c.send_message(&ctx, &openid, &format!("code {i}")).await });
    }
    while let Some(r) = sends.join_next().await {
        r.unwrap().unwrap();
    }
    let texts: Vec<String> = sim.messages().into_iter().map(|m| m.content).collect();
    assert_eq!(texts.len(), 4, "{texts:?}");
    assert!(sim.messages().iter().all(|m| m.touser == openid));
    let counters = sim.counters();
    assert_eq!(
        counters.app_token_requests, 1,
        "one fetch for both instances"
    );
    assert_eq!(counters.app_token_fetches, 1);
}

#[tokio::test]
async fn a_message_outside_the_48_hour_window_says_so() {
    let sim = Simulator::start(SimConfig::dev_default("127.0.0.1"))
        .await
        .unwrap();
    let c = messaging(&sim, &idbridge_core::Shared::default());
    let openid = sim.openid(dev::MP_APPID, "xiaoming");
    let e = c
        .send_message(&ctx(&sim), &openid, "123456")
        .await
        .unwrap_err();
    assert_eq!(e.stage, Stage::Message);
    assert_eq!(e.kind, ErrorKind::NotAllowed);
    assert_eq!(e.upstream_code.as_deref(), Some("45015"));
    assert!(e.fix.unwrap().contains("48 h"));
    // The code itself never appears in the error.
    assert!(!format!("{:?}", e.upstream_message).contains("123456"));
    // The window opens when the person messages the account; then it works.
    sim.mark_interaction(dev::MP_APPID, "xiaoming");
    c.send_message(&ctx(&sim), &openid, "123456").await.unwrap();
}

#[tokio::test]
async fn a_rejected_app_token_is_dropped_and_the_send_retried_once() {
    let sim = Simulator::start(SimConfig::dev_default("127.0.0.1"))
        .await
        .unwrap();
    let cache = idbridge_core::Shared::default();
    let c = messaging(&sim, &cache);
    let openid = sim.openid(dev::MP_APPID, "alice");
    sim.mark_interaction(dev::MP_APPID, "alice");
    c.send_message(&ctx(&sim), &openid, "one").await.unwrap();
    sim.set_fault(wechat_sim::Fault {
        endpoint: wechat_sim::Endpoint::CustomSend,
        kind: wechat_sim::FaultKind::Errcode(
            40001,
            "invalid credential, access_token is invalid or not latest".into(),
        ),
        times: Some(1),
    });
    c.send_message(&ctx(&sim), &openid, "two").await.unwrap();
    let counters = sim.counters();
    assert_eq!(counters.custom_send_calls, 3);
    assert_eq!(
        counters.app_token_requests, 2,
        "fetched again after the rejection"
    );
    assert_eq!(sim.messages().len(), 2);
}

#[tokio::test]
async fn app_token_failures_name_the_fix_and_messages_off_is_unsupported() {
    let sim = Simulator::start(SimConfig::dev_default("127.0.0.1"))
        .await
        .unwrap();
    let openid = sim.openid(dev::MP_APPID, "alice");
    sim.mark_interaction(dev::MP_APPID, "alice");
    let off = connector(&sim, serde_json::json!({}));
    assert!(!off.can_send_messages());
    let e = off
        .send_message(&ctx(&sim), &openid, "x")
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unsupported);
    let c = messaging(&sim, &idbridge_core::Shared::default());
    sim.set_fault(wechat_sim::Fault {
        endpoint: wechat_sim::Endpoint::StableToken,
        kind: wechat_sim::FaultKind::Errcode(45009, "reach max api daily quota limit".into()),
        times: Some(1),
    });
    let e = c.send_message(&ctx(&sim), &openid, "x").await.unwrap_err();
    assert_eq!(e.stage, Stage::Message);
    assert_eq!(e.kind, ErrorKind::RateLimited);
    assert_eq!(e.upstream_code.as_deref(), Some("45009"));
    assert!(e.fix.unwrap().contains("quota"));
    // The lease was released: the next send fetches at once and works.
    c.send_message(&ctx(&sim), &openid, "x").await.unwrap();
    assert_eq!(sim.messages().len(), 1);
}
