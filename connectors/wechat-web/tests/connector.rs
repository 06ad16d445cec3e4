//! The wechat-web connector against the WeChat simulator, without the broker:
//! begin builds WeChat's URL, complete turns a callback into an identity, and
//! refresh re-checks a returning person with the stored WeChat tokens.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use idbridge_connector_kit::conformance::{self, BrowserFlow, Expect, Fixture, Params, Upstream};
use idbridge_connector_kit::testing;
use idbridge_connector_wechat_web::{WeChatWebFactory, WebSettings};
use idbridge_core::{Begin, BeginRequest, ErrorKind, Locale, RequestContext, Stage, Started};
use wechat_sim::{dev, SimConfig, Simulator};

const ID: &str = "wechat";
const CALLBACK: &str = "http://127.0.0.1:9/callback/wechat";

fn options(sim: &Simulator) -> serde_json::Value {
    serde_json::json!({
        "appid": dev::WEB_APPID, "appsecret": dev::WEB_SECRET,
        "open_platform_id": dev::OPEN_PLATFORM_ID,
        "api_base_url": sim.base_url(), "open_base_url": sim.base_url(),
    })
}

fn connector(sim: &Simulator) -> std::sync::Arc<dyn idbridge_core::Connector> {
    testing::build(&WeChatWebFactory, ID, options(sim)).unwrap()
}

fn ctx(sim: &Simulator) -> RequestContext {
    RequestContext::new("Mozilla/5.0", Locale::ZhCn, sim.now_unix())
}

async fn sign_in(
    sim: &Simulator,
    c: &dyn idbridge_core::Connector,
) -> idbridge_core::ExternalIdentity {
    assert_eq!(testing::callback_url(ID), CALLBACK);
    let started = c
        .begin(&ctx(sim), &BeginRequest::new("abc123", CALLBACK))
        .await
        .unwrap();
    let idbridge_core::Begin::Redirect(url) = started.begin else {
        panic!("redirect mode")
    };
    assert!(url.ends_with("&lang=cn#wechat_redirect"), "{url}");
    let callback = sim.scan(&url, dev::USER_XIAOMING).unwrap().remove(0);
    c.complete(
        &ctx(sim),
        &testing::callback_from_url(ID, &callback, serde_json::Value::Null),
    )
    .await
    .unwrap()
}

/// Where `begin` sends the person: the redirect, or the embedded page's link
/// to the same qrconnect page.
fn authorize_url(started: &Started) -> Result<String, String> {
    match &started.begin {
        Begin::Redirect(url) => Ok(url.clone()),
        Begin::Page { body_html, .. } => body_html
            .split("<a href=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .map(|href| href.replace("&amp;", "&"))
            .ok_or_else(|| format!("no qrconnect link on the page: {body_html}")),
    }
}

#[tokio::test]
async fn the_connector_conforms_in_both_modes() {
    let sim = Simulator::start(SimConfig::dev_default("127.0.0.1"))
        .await
        .unwrap();
    for mode in ["redirect", "embedded"] {
        let approve = |started: Started| -> Result<Params, String> {
            let url = authorize_url(&started)?;
            let back = sim
                .scan(&url, dev::USER_XIAOMING)
                .map_err(|e| format!("{e:?}"))?;
            Ok(testing::query_params(&back[0]))
        };
        let refuse = |started: Started| -> Result<Params, String> {
            let back = sim
                .refuse(&authorize_url(&started)?)
                .map_err(|e| format!("{e:?}"))?;
            Ok(testing::query_params(&back))
        };
        conformance::run(
            Fixture::new(
                &WeChatWebFactory,
                testing::merged(&options(&sim), serde_json::json!({ "mode": mode })),
            )
            .id(ID)
            .secret("appsecret")
            .settings_debug(|s| format!("{:?}", WebSettings::parse(s)))
            .clock(|| sim.now_unix())
            .browser(
                BrowserFlow::new(Upstream::new(approve))
                    // WeChat sends the person back with only the state when they refuse.
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
async fn refresh_rechecks_a_returning_person_without_a_new_scan() {
    let sim = Simulator::start(SimConfig::dev_default("127.0.0.1"))
        .await
        .unwrap();
    let c = connector(&sim);
    let first = sign_in(&sim, c.as_ref()).await;
    assert_eq!(
        first.subject,
        sim.openid(dev::WEB_APPID, dev::USER_XIAOMING)
    );
    assert_eq!(
        first.link_key.as_ref().map(|l| l.key.clone()),
        sim.unionid(dev::WEB_APPID, dev::USER_XIAOMING)
    );
    let tokens = first.upstream_tokens.clone().unwrap();

    // Two hours later the access token has expired; the refresh token still works.
    sim.advance(2 * 3600 + 60);
    let before = sim.counters();
    let again = c
        .refresh(&ctx(&sim), &first.subject, &tokens)
        .await
        .unwrap();
    assert_eq!(again.subject, first.subject);
    assert_eq!(again.profile.name.as_deref(), Some("王小明🐼✨"));
    let new_tokens = again.upstream_tokens.clone().unwrap();
    assert_ne!(
        new_tokens.access_token, tokens.access_token,
        "a new WeChat access token"
    );
    assert_eq!(
        new_tokens.refresh_expires_at, tokens.refresh_expires_at,
        "WeChat refresh tokens are not renewed"
    );
    let after = sim.counters();
    assert_eq!(after.refresh_calls, before.refresh_calls + 1);
    assert_eq!(
        after.auth_calls,
        before.auth_calls + 1,
        "the new token is checked with sns/auth"
    );

    // After 30 days the person must scan again: a clear error, no upstream call.
    sim.advance(31 * 86400);
    let later = RequestContext::new("Mozilla/5.0", Locale::En, sim.now_unix());
    let err = c
        .refresh(&later, &first.subject, &new_tokens)
        .await
        .unwrap_err();
    assert_eq!(
        (err.stage, err.kind),
        (Stage::Refresh, ErrorKind::InvalidCode)
    );
    assert_eq!(sim.counters().refresh_calls, after.refresh_calls);

    // A refresh token WeChat does not know: WeChat's own error, typed.
    let mut bogus = tokens.clone();
    bogus.refresh_token = Some("not-a-wechat-refresh-token".into());
    bogus.refresh_expires_at = None;
    let err = c.refresh(&later, &first.subject, &bogus).await.unwrap_err();
    assert_eq!(err.stage, Stage::Refresh);
    assert_eq!(err.upstream_code.as_deref(), Some("40030"));
    sim.stop().await;
}

#[tokio::test]
async fn an_unbound_app_links_nothing() {
    let sim = Simulator::start(SimConfig::dev_default("127.0.0.1"))
        .await
        .unwrap();
    let c = testing::build(
        &WeChatWebFactory,
        ID,
        testing::merged(
            &options(&sim),
            serde_json::json!({
                "appid": dev::UNBOUND_WEB_APPID, "appsecret": dev::UNBOUND_WEB_SECRET,
            }),
        ),
    )
    .unwrap();
    let id = sign_in(&sim, c.as_ref()).await;
    assert!(
        id.link_key.is_none(),
        "no unionid from an app not bound to an Open Platform account"
    );
    assert_eq!(
        id.subject,
        sim.openid(dev::UNBOUND_WEB_APPID, dev::USER_XIAOMING)
    );
    sim.stop().await;
}
