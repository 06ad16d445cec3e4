//! The `feishu` connector against the Feishu fake of `provider-sim` over real
//! HTTP on 127.0.0.1 (`accounts_url` and `open_url` pointing at it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use idbridge_connector_feishu::config::FeishuSettings;
use idbridge_connector_feishu::{FeishuConnector, FeishuFactory};
use idbridge_connector_kit::conformance::{self, BrowserFlow, Expect, Fixture, Params, Upstream};
use idbridge_connector_kit::testing;
use idbridge_core::{
    Availability, Begin, CallbackRequest, Connector, ConnectorError, ConnectorFactory, ErrorKind,
    ExternalIdentity, Locale, RequestContext, Stage, Started,
};
use provider_sim::feishu::{Decision, Fault, FeishuApp, FeishuSim, Person};

const ID: &str = "feishu";
const APP_ID: &str = "cli_a5ca35a685b0x26e";
const SECRET: &str = "baBqE5um9LbFGDy3X7LcfxQX1sqpXlwy";
const ZHANG: &str = "on_d89jhsdhjsajkda7828enjdj328ydhhw3u";
const WANG: &str = "on_0000000000000000000000000000wang";
const FEISHU_UA: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36 Lark/7.20.0 LarkLocale/zh_CN ChannelName/Feishu";

async fn sim() -> FeishuSim {
    let sim = FeishuSim::start(FeishuApp {
        app_id: APP_ID.into(),
        app_secret: SECRET.into(),
        redirect_urls: vec![testing::callback_url(ID)],
    })
    .await
    .unwrap();
    sim.add_person(
        Person::new(ZHANG, "张三")
            .email("zhangsan@example.test")
            .mobile("+8613800138000"),
    );
    sim.add_person(
        Person::new(WANG, "王五")
            .tenant("2ed263bf32cf1651")
            .without_access(),
    );
    sim.decide(Decision::Approve(ZHANG.into()));
    sim
}

fn options(sim: &FeishuSim, extra: serde_json::Value) -> serde_json::Value {
    let mut o = serde_json::json!({
        "client_id": APP_ID,
        "client_secret": SECRET,
        "developer": "acme",
        "accounts_url": sim.base_url(),
        "open_url": sim.base_url(),
        "timeout_secs": 1,
    });
    if let (Some(o), Some(extra)) = (o.as_object_mut(), extra.as_object()) {
        o.extend(extra.clone());
    }
    o
}

fn ctx(locale: Locale) -> RequestContext {
    testing::request(testing::BROWSER_UA, locale, 1_700_000_000)
}

fn connector(options: serde_json::Value) -> FeishuConnector {
    FeishuConnector::new(&testing::settings(ID, "feishu", options)).unwrap()
}

async fn approve(started: Started) -> Result<Params, String> {
    let Begin::Redirect(url) = &started.begin else {
        return Err("not a redirect".into());
    };
    testing::follow_upstream_redirect(url).await
}

/// Begin, the fake's page, and the callback it sends back (not completed).
async fn to_callback(c: &FeishuConnector) -> CallbackRequest {
    let started = c
        .begin(&ctx(Locale::En), &testing::begin_request(ID, "St4te"))
        .await
        .unwrap();
    let params = approve(started.clone()).await.unwrap();
    CallbackRequest::new(params, testing::callback_url(ID), started.flow_data)
}

async fn sign_in_as(
    c: &FeishuConnector,
    locale: Locale,
) -> Result<ExternalIdentity, ConnectorError> {
    let callback = to_callback(c).await;
    c.complete(&ctx(locale), &callback).await
}

async fn sign_in(c: &FeishuConnector) -> Result<ExternalIdentity, ConnectorError> {
    sign_in_as(c, Locale::En).await
}

#[tokio::test]
async fn conforms() {
    let sim = sim().await;
    conformance::run(
        Fixture::new(
            &FeishuFactory,
            options(&sim, serde_json::json!({"offline_access": true})),
        )
        .id(ID)
        .secret("client_secret")
        .settings_debug(|s| format!("{:?}", FeishuSettings::parse(s)))
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
                .replay(Expect::new(Stage::TokenExchange, ErrorKind::CodeReused)),
        ),
    )
    .await;
}

#[tokio::test]
async fn the_subject_is_the_union_id_under_the_developer_and_open_id_is_kept() {
    let sim = sim().await;
    let c = connector(options(&sim, serde_json::json!({})));
    let me = sign_in(&c).await.unwrap();
    assert_eq!(me.subject, format!("feishu:acme:{ZHANG}"));
    let link = me.link_key.as_ref().unwrap();
    assert_eq!(
        (link.scope.as_str(), link.key.as_str()),
        ("feishu:acme", ZHANG)
    );
    assert_eq!(me.raw_claims["open_id"], sim.open_id(ZHANG));
    assert_eq!(me.raw_claims["tenant_key"], "736588c9260f175d");
    assert_eq!(me.profile.name.as_deref(), Some("张三"));
    // Admin-typed, never verified.
    assert_eq!(me.profile.email.as_deref(), Some("zhangsan@example.test"));
    assert_eq!(me.profile.email_verified, Some(false));
    assert_eq!(me.profile.phone_number_verified, Some(false));
    assert!(!c.vouches_for_email());
    // A JSON token request, as Feishu's v2 endpoint wants.
    assert!(sim
        .last_token_content_type()
        .unwrap()
        .starts_with("application/json"));
    // Without offline_access: no refresh token, refresh is not offered.
    assert!(!c.supports_refresh());
    assert!(me.upstream_tokens.as_ref().unwrap().refresh_token.is_none());
    // The same person again: the same subject.
    assert_eq!(sign_in(&c).await.unwrap().subject, me.subject);
}

#[tokio::test]
async fn a_person_without_access_to_the_app_is_told_what_to_ask_for() {
    let sim = sim().await;
    sim.decide(Decision::Approve(WANG.into()));
    let c = connector(options(&sim, serde_json::json!({})));
    let e = sign_in_as(&c, Locale::ZhCn).await.unwrap_err();
    assert_eq!(
        (e.stage, e.kind),
        (Stage::TokenExchange, ErrorKind::NotAllowed)
    );
    assert_eq!(e.upstream_code.as_deref(), Some("20010"));
    assert!(e.fix.as_deref().unwrap().contains("可用范围"), "{e}");
    assert!(e.advice.as_deref().unwrap().contains("可用范围"), "{e:?}");
}

#[tokio::test]
async fn an_expired_code_and_a_wrong_secret_are_named() {
    let sim = sim().await;
    let c = connector(options(&sim, serde_json::json!({})));
    let callback = to_callback(&c).await;
    sim.advance(301); // past the code's 5 minutes
    let e = c.complete(&ctx(Locale::En), &callback).await.unwrap_err();
    assert_eq!(
        (e.kind, e.upstream_code.as_deref()),
        (ErrorKind::InvalidCode, Some("20004"))
    );
    assert!(e.fix.as_deref().unwrap().contains("5 minutes"), "{e}");

    sim.set_app_secret("reset-in-the-console");
    let e = sign_in(&c).await.unwrap_err();
    assert_eq!(
        (e.kind, e.upstream_code.as_deref()),
        (ErrorKind::BadCredentials, Some("20002"))
    );
    assert!(!e.to_string().contains(SECRET));
}

#[tokio::test]
async fn busy_throttled_and_slow_feishu() {
    let sim = sim().await;
    let c = connector(options(&sim, serde_json::json!({})));
    sim.set_fault(Fault::Busy);
    let e = sign_in(&c).await.unwrap_err();
    assert_eq!(
        (e.kind, e.upstream_code.as_deref()),
        (ErrorKind::UpstreamUnavailable, Some("20050"))
    );
    sim.set_fault(Fault::Throttled);
    let e = sign_in(&c).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::RateLimited);
    sim.set_fault(Fault::Slow(std::time::Duration::from_millis(2500)));
    let e = sign_in(&c).await.unwrap_err();
    assert_eq!(
        (e.stage, e.kind),
        (Stage::TokenExchange, ErrorKind::Timeout)
    );
}

#[tokio::test]
async fn refresh_rotates_the_single_use_refresh_token() {
    let sim = sim().await;
    let c = connector(options(&sim, serde_json::json!({"offline_access": true})));
    assert!(c.supports_refresh());
    let me = sign_in(&c).await.unwrap();
    let first = me.upstream_tokens.clone().unwrap();
    let spent = first.refresh_token.clone().unwrap();
    assert!(first.refresh_expires_at.is_some());
    let again = c
        .refresh(&ctx(Locale::En), &me.subject, &first)
        .await
        .unwrap();
    let second = again.upstream_tokens.unwrap();
    assert_ne!(
        second.refresh_token.as_deref(),
        Some(spent.as_str()),
        "a new one"
    );
    assert_eq!(again.subject, me.subject);
    // The spent one again: 20073, the grant ends.
    let e = c
        .refresh(&ctx(Locale::En), &me.subject, &first)
        .await
        .unwrap_err();
    assert_eq!(
        (e.stage, e.kind, e.upstream_code.as_deref()),
        (Stage::Refresh, ErrorKind::CodeReused, Some("20073"))
    );
    // Revoked: 20064.
    sim.revoke(ZHANG);
    let e = c
        .refresh(&ctx(Locale::En), &me.subject, &second)
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind, e.upstream_code.as_deref()),
        (ErrorKind::InvalidCode, Some("20064"))
    );
}

#[tokio::test]
async fn only_the_configured_tenants_sign_in() {
    let sim = sim().await;
    let c = connector(options(
        &sim,
        serde_json::json!({"tenant_keys": ["2ed263bf32cf1651"]}),
    ));
    let e = sign_in(&c).await.unwrap_err();
    assert_eq!((e.stage, e.kind), (Stage::Userinfo, ErrorKind::NotAllowed));
    assert!(
        e.fix
            .as_deref()
            .unwrap()
            .contains("tenant_keys (2ed263bf32cf1651)"),
        "{e}"
    );
    let ok = connector(options(
        &sim,
        serde_json::json!({"tenant_keys": ["736588c9260f175d"]}),
    ));
    assert!(sign_in(&ok).await.is_ok());
}

#[tokio::test]
async fn preferred_inside_feishu_available_elsewhere() {
    let sim = sim().await;
    let c = connector(options(&sim, serde_json::json!({})));
    let inside = testing::request(FEISHU_UA, Locale::ZhCn, 0);
    assert_eq!(c.availability(&inside), Availability::Preferred);
    assert_eq!(c.availability(&ctx(Locale::En)), Availability::Available);
}

#[test]
fn doctor_refuses_plain_http_to_a_remote_host() {
    let settings = testing::settings(
        ID,
        "feishu",
        serde_json::json!({"client_id": APP_ID, "client_secret": SECRET, "developer": "acme",
            "accounts_url": "http://accounts.example.com", "open_url": "http://open.example.com"}),
    );
    let problems = FeishuFactory.doctor(&settings, &testing::build_context(ID));
    for key in ["accounts_url", "open_url"] {
        assert!(
            problems
                .iter()
                .any(|p| p.key == format!("connectors[feishu].{key}") && p.fatal),
            "{key}: {problems:?}"
        );
    }
}

#[tokio::test]
async fn doctor_passes_an_app_the_authorization_page_knows() {
    let sim = sim().await;
    let settings = testing::settings(ID, "feishu", options(&sim, serde_json::json!({})));
    let problems = tokio::task::spawn_blocking(move || {
        FeishuFactory.doctor(&settings, &testing::build_context(ID))
    })
    .await
    .unwrap();
    assert!(
        problems
            .iter()
            .all(|p| !p.fatal && !p.key.ends_with("authorization_url")),
        "{problems:?}"
    );
    assert!(sim.counters().authorizations >= 1, "doctor asked the page");
    // The callback taken out of the app's 重定向 URL list: doctor says so.
    sim.set_redirect_urls(Vec::new());
    let settings = testing::settings(ID, "feishu", options(&sim, serde_json::json!({})));
    let problems = tokio::task::spawn_blocking(move || {
        FeishuFactory.doctor(&settings, &testing::build_context(ID))
    })
    .await
    .unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p.message.contains("refuses our callback")),
        "{problems:?}"
    );
}
