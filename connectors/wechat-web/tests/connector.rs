//! The wechat-web connector against the WeChat simulator, without the broker:
//! begin builds WeChat's URL, complete turns a callback into an identity, and
//! refresh re-checks a returning person with the stored WeChat tokens.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use idbridge_connector_wechat_web::WeChatWebFactory;
use idbridge_core::{
    BeginRequest, BuildContext, CallbackRequest, ConnectorFactory, ConnectorId, ConnectorSettings,
    ErrorKind, Locale, RequestContext, Stage,
};
use std::collections::BTreeMap;
use wechat_sim::{dev, SimConfig, Simulator};

const CALLBACK: &str = "http://127.0.0.1:9/callback/wechat";

fn connector(sim: &Simulator) -> std::sync::Arc<dyn idbridge_core::Connector> {
    let settings = ConnectorSettings {
        id: ConnectorId::parse("wechat").unwrap(),
        kind: "wechat-web".into(),
        name: None,
        options: serde_json::json!({
            "appid": dev::WEB_APPID, "appsecret": dev::WEB_SECRET,
            "open_platform_id": dev::OPEN_PLATFORM_ID,
            "api_base_url": sim.base_url(), "open_base_url": sim.base_url(),
        }),
    };
    let ctx = BuildContext::new("http://127.0.0.1:9", CALLBACK, false);
    WeChatWebFactory
        .build(&settings, &ctx)
        .map_err(|e| format!("{e:?}"))
        .unwrap()
}

fn ctx(sim: &Simulator) -> RequestContext {
    RequestContext::new("Mozilla/5.0", Locale::ZhCn, sim.now_unix())
}

async fn sign_in(
    sim: &Simulator,
    c: &dyn idbridge_core::Connector,
) -> idbridge_core::ExternalIdentity {
    let started = c
        .begin(&ctx(sim), &BeginRequest::new("abc123", CALLBACK))
        .await
        .unwrap();
    let idbridge_core::Begin::Redirect(url) = started.begin else {
        panic!("redirect mode")
    };
    assert!(url.ends_with("&lang=cn#wechat_redirect"), "{url}");
    let callback = sim.scan(&url, dev::USER_XIAOMING).unwrap().remove(0);
    let params: BTreeMap<String, String> = url::Url::parse(&callback)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    c.complete(
        &ctx(sim),
        &CallbackRequest::new(params, CALLBACK, serde_json::Value::Null),
    )
    .await
    .unwrap()
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
    let settings = ConnectorSettings {
        id: ConnectorId::parse("wechat").unwrap(),
        kind: "wechat-web".into(),
        name: None,
        options: serde_json::json!({
            "appid": dev::UNBOUND_WEB_APPID, "appsecret": dev::UNBOUND_WEB_SECRET,
            "open_platform_id": dev::OPEN_PLATFORM_ID,
            "api_base_url": sim.base_url(), "open_base_url": sim.base_url(),
        }),
    };
    let bctx = BuildContext::new("http://127.0.0.1:9", CALLBACK, false);
    let c = WeChatWebFactory
        .build(&settings, &bctx)
        .map_err(|e| format!("{e:?}"))
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
