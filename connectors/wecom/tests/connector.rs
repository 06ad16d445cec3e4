//! The wecom connector against the WeCom fake (provider-sim), without the
//! broker: the conformance suite, the two flows chosen by the browser, the
//! corp token shared by instances and renewed once on 42001, non-members, and
//! the errcodes a sign-in meets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use idbridge_connector_kit::conformance::{self, BrowserFlow, Expect, Fixture, Params, Upstream};
use idbridge_connector_kit::testing;
use idbridge_connector_wecom::config::WeComSettings;
use idbridge_connector_wecom::WeComFactory;
use idbridge_core::{
    Availability, Begin, BeginRequest, Connector, ConnectorError, ConnectorFactory, ErrorKind,
    ExternalIdentity, Locale, RequestContext, Shared, Stage, Started,
};
use provider_sim::wecom::{CorpApp, Decision, Member, WeComSim};
use std::sync::Arc;

const ID: &str = "wecom";
const CORP: &str = "ww1234567890abcdef";
const AGENT: u64 = 1000002;
const SECRET: &str = "corp-secret-0123456789abcdefghij";
const WECOM_UA: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 wxwork/4.1.22 MicroMessenger/7.0.1 Language/zh";

async fn sim() -> WeComSim {
    let sim = WeComSim::start(CorpApp {
        corp_id: CORP.into(),
        agent_id: AGENT,
        secret: SECRET.into(),
        trusted_domain: "127.0.0.1".into(),
    })
    .await
    .unwrap();
    sim.add_member(Member::new("ZhangSan", "张三").alias("Sam"));
    sim.add_member(Member::new("WangWu", "王五").outside_visible_range());
    sim.add_non_member("oNonMember01");
    sim
}

fn options(sim: &WeComSim) -> serde_json::Value {
    serde_json::json!({
        "corp_id": CORP, "agent_id": AGENT, "corp_secret": SECRET,
        "trusted_domain": "127.0.0.1",
        "login_base_url": sim.base_url(), "open_base_url": sim.base_url(),
        "api_base_url": sim.base_url(),
    })
}

fn build(sim: &WeComSim, extra: serde_json::Value) -> Arc<dyn Connector> {
    testing::build(&WeComFactory, ID, testing::merged(&options(sim), extra)).unwrap()
}

fn ctx(ua: &str) -> RequestContext {
    RequestContext::new(ua, Locale::En, 1_900_000_000)
}

fn redirect(started: &Started) -> Result<String, String> {
    match &started.begin {
        Begin::Redirect(url) => Ok(url.clone()),
        other => Err(format!("a redirect, not {other:?}")),
    }
}

/// Begin in `ua`'s browser, let the fake answer as decided, complete.
async fn sign_in(
    sim: &WeComSim,
    c: &dyn Connector,
    ua: &str,
) -> Result<ExternalIdentity, ConnectorError> {
    let started = c
        .begin(
            &ctx(ua),
            &BeginRequest::new("abc123", testing::callback_url(ID)),
        )
        .await
        .unwrap();
    let back = sim.visit(&redirect(&started).unwrap()).await.unwrap();
    c.complete(
        &ctx(ua),
        &testing::callback_from_url(ID, &back, started.flow_data),
    )
    .await
}

#[tokio::test]
async fn the_connector_conforms() {
    let sim = sim().await;
    let back_as = |decision: Decision| {
        let sim = &sim;
        move |started: Started| {
            let decision = decision.clone();
            async move {
                sim.decide(decision);
                let back = sim.visit(&redirect(&started)?).await?;
                Ok::<Params, String>(testing::query_params(&back))
            }
        }
    };
    conformance::run(
        Fixture::new(&WeComFactory, options(&sim))
            .id(ID)
            .secret("corp_secret")
            .settings_debug(|s| format!("{:?}", WeComSettings::parse(s)))
            .browser(
                BrowserFlow::new(Upstream::new_async(back_as(Decision::Member(
                    "ZhangSan".into(),
                ))))
                // WeCom documents a refusal as redirect_uri?state=STATE.
                .no_code(
                    Upstream::fixed(Params::new()),
                    Expect::new(Stage::Callback, ErrorKind::UserCancelled),
                )
                .upstream_error(
                    Upstream::new_async(back_as(Decision::Cancel)),
                    Expect::new(Stage::Callback, ErrorKind::UserCancelled),
                )
                // A used code is the same 40029 as a wrong or expired one.
                .replay(Expect::new(Stage::TokenExchange, ErrorKind::InvalidCode)),
            ),
    )
    .await;
}

#[tokio::test]
async fn a_browser_gets_the_qr_login_and_the_wecom_client_the_in_app_page() {
    let sim = sim().await;
    let c = build(&sim, serde_json::json!({}));
    let req = BeginRequest::new("abc123", testing::callback_url(ID));
    let qr = redirect(&c.begin(&ctx(testing::BROWSER_UA), &req).await.unwrap()).unwrap();
    assert!(
        qr.starts_with(&format!(
            "{}/wwlogin/sso/login?login_type=CorpApp&appid={CORP}&agentid={AGENT}&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcallback%2Fwecom&state=abc123",
            sim.base_url()
        )),
        "{qr}"
    );
    let in_app = redirect(&c.begin(&ctx(WECOM_UA), &req).await.unwrap()).unwrap();
    assert!(
        in_app.starts_with(&format!(
            "{}/connect/oauth2/authorize?appid={CORP}&",
            sim.base_url()
        )) && in_app.contains("&response_type=code&scope=snsapi_base&state=abc123&agentid=1000002")
            && in_app.ends_with("#wechat_redirect"),
        "{in_app}"
    );
    assert_eq!(c.availability(&ctx(WECOM_UA)), Availability::Preferred);
    assert_eq!(
        c.availability(&ctx(testing::BROWSER_UA)),
        Availability::Available
    );

    sim.decide(Decision::Member("ZhangSan".into()));
    let by_qr = sign_in(&sim, c.as_ref(), testing::BROWSER_UA)
        .await
        .unwrap();
    let in_wecom = sign_in(&sim, c.as_ref(), WECOM_UA).await.unwrap();
    assert_eq!(by_qr.subject, format!("{CORP}:ZhangSan"));
    assert_eq!(
        in_wecom.subject, by_qr.subject,
        "one subject for both flows"
    );
    assert_eq!(by_qr.profile.name.as_deref(), Some("张三"));
    assert_eq!(
        by_qr.profile.preferred_username.as_deref(),
        Some("ZhangSan")
    );
    assert_eq!(by_qr.raw_claims["alias"], "Sam");
    let counters = sim.counters();
    assert_eq!((counters.qr_pages, counters.in_app_pages), (1, 1));
}

#[tokio::test]
async fn instances_share_one_corp_token_and_renew_it_once_when_it_expired() {
    let sim = sim().await;
    let shared = Shared::default();
    let build_sharing = || {
        WeComFactory
            .build(
                &testing::settings(ID, "wecom", options(&sim)),
                &testing::build_context_sharing(ID, &shared),
            )
            .unwrap()
    };
    let (one, two) = (build_sharing(), build_sharing());
    sim.decide(Decision::Member("ZhangSan".into()));
    for c in [&one, &two, &one, &two] {
        sign_in(&sim, c.as_ref(), testing::BROWSER_UA)
            .await
            .unwrap();
    }
    assert_eq!(
        sim.counters().tokens_issued,
        1,
        "one gettoken for both instances"
    );

    // WeCom says the cached token expired (42001): dropped, fetched again once.
    sim.expire_tokens();
    let me = sign_in(&sim, one.as_ref(), testing::BROWSER_UA)
        .await
        .unwrap();
    assert_eq!(me.subject, format!("{CORP}:ZhangSan"));
    assert_eq!(sim.counters().tokens_issued, 2);
    // The other instance reads the new token from the shared cache.
    sign_in(&sim, two.as_ref(), testing::BROWSER_UA)
        .await
        .unwrap();
    assert_eq!(sim.counters().tokens_issued, 2);
}

#[tokio::test]
async fn a_non_member_is_refused_unless_the_operator_allows_them() {
    let sim = sim().await;
    sim.decide(Decision::NonMember("oNonMember01".into()));
    let refused = sign_in(
        &sim,
        build(&sim, serde_json::json!({})).as_ref(),
        testing::BROWSER_UA,
    )
    .await
    .unwrap_err();
    assert_eq!(refused.kind, ErrorKind::NotAllowed);
    assert_eq!(refused.upstream_code.as_deref(), Some("not_a_member"));
    assert!(refused
        .fix
        .as_deref()
        .unwrap()
        .contains("allow_non_members"));
    assert!(refused.advice.as_deref().unwrap().contains("Only members"));

    let open = build(&sim, serde_json::json!({"allow_non_members": true}));
    let me = sign_in(&sim, open.as_ref(), testing::BROWSER_UA)
        .await
        .unwrap();
    assert_eq!(me.subject, format!("{CORP}:openid:oNonMember01"));
    assert_eq!(me.raw_claims["member"], false);
}

#[tokio::test]
async fn errcodes_become_kinds_with_a_fix() {
    let sim = sim().await;
    let c = build(&sim, serde_json::json!({}));
    // A member outside the app's visible range: user/get answers 60011.
    sim.decide(Decision::Member("WangWu".into()));
    let started = c
        .begin(
            &ctx(WECOM_UA),
            &BeginRequest::new("abc123", testing::callback_url(ID)),
        )
        .await
        .unwrap();
    let back = sim.visit(&redirect(&started).unwrap()).await.unwrap();
    let e = c
        .complete(
            &ctx(WECOM_UA),
            &testing::callback_from_url(ID, &back, serde_json::Value::Null),
        )
        .await
        .unwrap_err();
    assert_eq!((e.stage, e.kind), (Stage::Userinfo, ErrorKind::NotAllowed));
    assert_eq!(e.upstream_code.as_deref(), Some("60011"));
    assert!(e.advice.as_deref().unwrap().contains("visible range"));

    // An expired code: 40029.
    sim.decide(Decision::Member("ZhangSan".into()));
    let started = c
        .begin(
            &ctx(testing::BROWSER_UA),
            &BeginRequest::new("abc123", testing::callback_url(ID)),
        )
        .await
        .unwrap();
    let back = sim.visit(&redirect(&started).unwrap()).await.unwrap();
    sim.advance(301);
    let e = c
        .complete(
            &ctx(testing::BROWSER_UA),
            &testing::callback_from_url(ID, &back, serde_json::Value::Null),
        )
        .await
        .unwrap_err();
    assert_eq!(
        (e.stage, e.kind),
        (Stage::TokenExchange, ErrorKind::InvalidCode)
    );
    assert_eq!(e.upstream_code.as_deref(), Some("40029"));

    // The broker's IP not trusted (60020), WeCom busy (-1), a wrong secret (40001).
    for (fault, code, kind) in [
        ("ip", "60020", ErrorKind::Misconfigured),
        ("busy", "-1", ErrorKind::UpstreamUnavailable),
        ("secret", "40001", ErrorKind::BadCredentials),
    ] {
        let fresh = build(&sim, serde_json::json!({}));
        match fault {
            "ip" => sim.set_ip_denied(true),
            "busy" => sim.set_busy(true),
            _ => sim.set_secret("rotated-in-the-admin-console"),
        }
        let e = sign_in(&sim, fresh.as_ref(), testing::BROWSER_UA)
            .await
            .unwrap_err();
        assert_eq!(
            (e.kind, e.upstream_code.as_deref()),
            (kind, Some(code)),
            "{fault}: {e}"
        );
        assert!(e.fix.is_some(), "{e}");
        assert!(!e.to_string().contains(SECRET), "{e}");
        sim.set_ip_denied(false);
        sim.set_busy(false);
        sim.set_secret(SECRET);
    }
}

#[tokio::test]
async fn a_slow_wecom_is_a_timeout() {
    let sim = sim().await;
    let c = build(&sim, serde_json::json!({"timeout_secs": 0.3}));
    sim.decide(Decision::Member("ZhangSan".into()));
    sim.set_slow(Some(std::time::Duration::from_secs(2)));
    let e = sign_in(&sim, c.as_ref(), testing::BROWSER_UA)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Timeout, "{e}");
    assert!(e.fix.as_deref().unwrap().contains("timeout_secs"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_asks_wecom_for_a_token_and_names_the_wrong_secret() {
    let sim = sim().await;
    let ctx = testing::build_context_at("http://127.0.0.1:9", ID, false);
    let settings = |extra| testing::settings(ID, "wecom", testing::merged(&options(&sim), extra));
    assert!(WeComFactory
        .doctor(&settings(serde_json::json!({})), &ctx)
        .is_empty());
    assert_eq!(sim.counters().tokens_issued, 1);
    let wrong = WeComFactory.doctor(
        &settings(serde_json::json!({"corp_secret": "not-the-apps-secret-0123456789"})),
        &ctx,
    );
    assert_eq!(wrong.len(), 1, "{wrong:?}");
    assert!(
        wrong[0].fatal && wrong[0].key == "connectors[wecom].corp_secret",
        "{wrong:?}"
    );
    assert!(
        wrong[0].message.contains("upstream_code=40001"),
        "{wrong:?}"
    );
    assert!(
        !wrong[0].message.contains("not-the-apps-secret"),
        "{wrong:?}"
    );
    sim.set_ip_denied(true);
    let ip = WeComFactory.doctor(&settings(serde_json::json!({})), &ctx);
    assert!(ip[0].message.contains("trusted IPs"), "{ip:?}");
}

#[test]
fn doctor_holds_the_callback_host_to_the_trusted_domain() {
    let settings = |domain: serde_json::Value| {
        testing::settings(
            ID,
            "wecom",
            // Nothing listens on port 9: the token check fails at once.
            serde_json::json!({"corp_id": CORP, "agent_id": AGENT, "corp_secret": SECRET, "trusted_domain": domain, "api_base_url": "http://127.0.0.1:9"}),
        )
    };
    let ctx = testing::build_context_at("https://id.example.com", ID, false);
    let doctor = |domain| WeComFactory.doctor(&settings(domain), &ctx);
    let right = doctor(serde_json::json!("id.example.com"));
    assert!(
        right
            .iter()
            .all(|p| p.key == "connectors[wecom].api_base_url"),
        "only the token check (nothing on port 9) fails: {right:?}"
    );
    let wrong = doctor(serde_json::json!("www.example.com"));
    assert!(
        wrong[0].fatal && wrong[0].key == "connectors[wecom].trusted_domain",
        "{wrong:?}"
    );
    assert!(wrong[0].message.contains("50001"), "{wrong:?}");
    let unset = doctor(serde_json::Value::Null);
    assert!(
        !unset[0].fatal && unset[0].message.contains("id.example.com"),
        "{unset:?}"
    );
    let e = testing::build(
        &WeComFactory,
        ID,
        serde_json::json!({"corp_id": "no", "agent_id": 0, "corp_secret": "x", "profile": "all"}),
    )
    .err()
    .unwrap();
    for key in ["corp_id", "agent_id", "corp_secret", "profile"] {
        assert!(e.contains(&format!("connectors[wecom].{key}")), "{e}");
    }
}
