//! WeChat website login end to end: a real broker, the WeChat simulator as the
//! upstream, an app redeeming codes over HTTP. Every failure must end in the right
//! page or OAuth error, the right log line, no panic and no half-created account.

use crate::harness::*;
use wechat_sim::{dev, Endpoint, Fault, FaultKind, SimConfig, Simulator};

struct World {
    sim: Simulator,
    broker: Broker,
    _db: TestDb,
}

/// A broker with wechat-web connectors against a fresh simulator. `id` is unique
/// per test so its log lines can be told apart.
async fn world(id: &str, tweak: impl FnOnce(&mut serde_json::Value) + Send + 'static) -> World {
    world_tuned(id, tweak, |_| {}).await
}

/// [`world`], with the broker's settings tweaked too.
async fn world_tuned(
    id: &str,
    tweak: impl FnOnce(&mut serde_json::Value) + Send + 'static,
    settings: impl FnOnce(&mut idbridge_server::Settings) + Send + 'static,
) -> World {
    let sim = Simulator::start(SimConfig::dev_default("127.0.0.1"))
        .await
        .unwrap();
    let db = TestDb::new(Db::Sqlite);
    let base = sim.base_url();
    let id = id.to_owned();
    let broker = start(&db.url(), None, move |s| {
        let mut main = serde_json::json!({
            "id": id, "type": "wechat-web", "name": "WeChat",
            "appid": dev::WEB_APPID, "appsecret": dev::WEB_SECRET,
            "open_platform_id": dev::OPEN_PLATFORM_ID,
            "api_base_url": base, "open_base_url": base,
            "timeout_secs": 1.0,
        });
        tweak(&mut main);
        let other = serde_json::json!({
            "id": format!("{id}-other"), "type": "wechat-web",
            "appid": dev::UNBOUND_WEB_APPID, "appsecret": dev::UNBOUND_WEB_SECRET,
            "api_base_url": base, "open_base_url": base,
        });
        s.connectors = vec![main, other];
        settings(s);
    })
    .await;
    World {
        sim,
        broker,
        _db: db,
    }
}

impl World {
    fn id(&self) -> String {
        self.broker.state.connectors[0].0.clone()
    }

    /// Start a login at the broker; returns (browser, WeChat authorize URL, PKCE verifier).
    async fn begin(&self) -> (reqwest::Client, String, String) {
        let b = browser();
        let (url, verifier) = authorize_url(&self.broker.base, &[]);
        let url = url.replace("connector=dev", &format!("connector={}", self.id()));
        let resp = b.get(&url).send().await.unwrap();
        assert_eq!(resp.status(), 302);
        let wechat = location(&resp);
        assert!(
            wechat.starts_with(&format!("{}/connect/qrconnect?appid=", self.sim.base_url())),
            "{wechat}"
        );
        (b, wechat, verifier)
    }

    async fn users(&self) -> usize {
        self.broker
            .state
            .store
            .find_users("", 1000)
            .await
            .unwrap()
            .len()
    }

    /// A whole login as `user`; returns the app's token response.
    async fn login(&self, user: &str) -> serde_json::Value {
        let (b, wechat, verifier) = self.begin().await;
        let callbacks = self.sim.scan(&wechat, user).unwrap();
        let resp = b.get(&callbacks[0]).send().await.unwrap();
        assert_eq!(
            resp.status(),
            302,
            "{}",
            resp.text().await.unwrap_or_default()
        );
        let code = query_param(&location(&resp), "code").expect("code for the app");
        redeem(&self.broker.base, &code, &verifier)
            .await
            .json()
            .await
            .unwrap()
    }

    /// Deliver a callback; assert a failure page that names the problem, and the
    /// log line an operator would read.
    async fn expect_failure(
        &self,
        b: &reqwest::Client,
        callback: &str,
        kind: &str,
        upstream_code: Option<&str>,
    ) {
        let before = self.users().await;
        let resp = b.get(callback).send().await.unwrap();
        assert_eq!(resp.status(), 502, "a failure page, not a redirect");
        let page = resp.text().await.unwrap();
        assert!(page.contains(&format!("kind={kind}")), "{page}");
        assert!(page.contains("Return to the application"), "{page}");
        let id = format!("connector={}", self.id());
        let kind_field = format!("kind=\"{kind}\"");
        let mut needles = vec!["login_failed", id.as_str(), kind_field.as_str(), "fix="];
        let code_field = upstream_code.map(|c| format!("upstream_code=\"{c}\""));
        if let Some(c) = &code_field {
            needles.push(c);
        }
        assert!(
            !log_lines(&needles).is_empty(),
            "no log line with {needles:?}"
        );
        assert_eq!(self.users().await, before, "no account was created");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scan_signs_in_and_a_returning_person_keeps_their_sub() {
    let w = world("wx-ok", |_| {}).await;
    let t = w.login(dev::USER_XIAOMING).await;
    let id = claims(t["id_token"].as_str().unwrap());
    assert_eq!(id["name"], "王小明🐼✨");
    assert!(id["picture"].as_str().unwrap().ends_with("/0"));
    assert_eq!(id["linked_connectors"], serde_json::json!(["wx-ok"]));
    let again = w.login(dev::USER_XIAOMING).await;
    assert_eq!(
        claims(again["id_token"].as_str().unwrap())["sub"],
        id["sub"]
    );
    let other = w.login(dev::USER_ALICE).await;
    assert_ne!(
        claims(other["id_token"].as_str().unwrap())["sub"],
        id["sub"]
    );
    // The identity is the per-app openid, linked by the platform-scoped unionid.
    let sub = id["sub"].as_str().unwrap();
    let identities = w.broker.state.store.list_identities(sub).await.unwrap();
    assert_eq!(
        identities[0].subject,
        w.sim.openid(dev::WEB_APPID, dev::USER_XIAOMING)
    );
    assert_eq!(
        identities[0].link_key,
        w.sim.unionid(dev::WEB_APPID, dev::USER_XIAOMING)
    );
    assert_eq!(
        identities[0].link_scope.as_deref(),
        Some(dev::OPEN_PLATFORM_ID)
    );
    assert!(
        identities[0].upstream_tokens.is_some(),
        "WeChat tokens are kept (encrypted)"
    );
    assert_eq!(w.users().await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_authorize_url_is_exactly_what_wechat_documents() {
    let w = world("wx-url", |_| {}).await;
    let (_, wechat, _) = w.begin().await;
    let callback = format!("{}/callback/wx-url", w.broker.base);
    let state = query_param(&wechat, "state").unwrap();
    assert!(state.len() <= 128 && state.bytes().all(|b| b.is_ascii_alphanumeric()));
    let expected = format!(
        "{}/connect/qrconnect?appid={}&redirect_uri={}&response_type=code&scope=snsapi_login&state={state}&lang=en#wechat_redirect",
        w.sim.base_url(),
        dev::WEB_APPID,
        wechat_api::encode_component(&callback),
    );
    assert_eq!(wechat, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_person_clicks_through_the_wechat_page() {
    let w = world("wx-page", |_| {}).await;
    let (b, wechat, verifier) = w.begin().await;
    let page = b.get(&wechat).send().await.unwrap().text().await.unwrap();
    let marker = "name=\"flow\" value=\"";
    let start = page.find(marker).expect("the scan page's form") + marker.len();
    let flow = &page[start..start + page[start..].find('"').unwrap()];
    let decided = b
        .post(format!("{}/connect/sim/decide", w.sim.base_url()))
        .form(&[("flow", flow), ("user", dev::USER_ALICE)])
        .send()
        .await
        .unwrap();
    assert_eq!(decided.status(), 302);
    let back = b.get(location(&decided)).send().await.unwrap();
    let code = query_param(&location(&back), "code").expect("signed in");
    assert_eq!(redeem(&w.broker.base, &code, &verifier).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refusing_at_wechat_returns_access_denied_to_the_app() {
    let w = world("wx-refuse", |_| {}).await;
    let (b, wechat, _) = w.begin().await;
    let back = w.sim.refuse(&wechat).unwrap();
    assert!(query_param(&back, "code").is_none());
    let resp = b.get(&back).send().await.unwrap();
    assert_eq!(resp.status(), 302);
    let loc = location(&resp);
    assert!(loc.starts_with(APP_REDIRECT));
    assert_eq!(query_param(&loc, "error").as_deref(), Some("access_denied"));
    assert!(!log_lines(&[
        "login_failed",
        "connector=wx-refuse",
        "kind=\"user_cancelled\""
    ])
    .is_empty());
    assert_eq!(w.users().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replayed_code_is_refused_with_40163() {
    let w = world("wx-replay", |_| {}).await;
    let (b, wechat, _) = w.begin().await;
    let first = w.sim.scan(&wechat, dev::USER_ALICE).unwrap().remove(0);
    assert_eq!(b.get(&first).send().await.unwrap().status(), 302);
    // The same WeChat code delivered with a fresh sign-in's state.
    let (b2, wechat2, _) = w.begin().await;
    let state2 = query_param(&wechat2, "state").unwrap();
    let code = query_param(&first, "code").unwrap();
    let replay = format!(
        "{}/callback/wx-replay?code={code}&state={state2}",
        w.broker.base
    );
    w.expect_failure(&b2, &replay, "code_reused", Some("40163"))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_code_asks_to_start_again() {
    let w = world("wx-expired", |_| {}).await;
    let (b, wechat, _) = w.begin().await;
    let callback = w.sim.scan(&wechat, dev::USER_ALICE).unwrap().remove(0);
    w.sim.advance(301);
    w.expect_failure(&b, &callback, "invalid_code", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_secret_is_named_in_the_log() {
    let w = world("wx-secret", |c| {
        c["appsecret"] = "0123456789abcdef0123456789abcdef".into()
    })
    .await;
    let (b, wechat, _) = w.begin().await;
    let callback = w.sim.scan(&wechat, dev::USER_ALICE).unwrap().remove(0);
    w.expect_failure(&b, &callback, "bad_credentials", Some("40125"))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_appid_is_named_in_the_log() {
    let w = world("wx-appid", |c| c["appid"] = "wx00000000000000ff".into()).await;
    let (b, wechat, _) = w.begin().await;
    // WeChat itself would refuse the QR page for an unknown appid.
    let page = b.get(&wechat).send().await.unwrap().text().await.unwrap();
    assert!(
        page.contains("error-message"),
        "WeChat shows its error page: {page}"
    );
    // A code from the real app delivered to this misconfigured connector: 40013.
    let state = query_param(&wechat, "state").unwrap();
    let code = w
        .sim
        .issue_code(dev::WEB_APPID, dev::USER_ALICE, "snsapi_login")
        .unwrap();
    let callback = format!(
        "{}/callback/wx-appid?code={code}&state={state}",
        w.broker.base
    );
    w.expect_failure(&b, &callback, "bad_credentials", Some("40013"))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wechat_busy_is_retried_once_then_reported() {
    let w = world("wx-busy", |_| {}).await;
    // Busy once: the one retry succeeds.
    w.sim.set_fault(Fault {
        endpoint: Endpoint::AccessToken,
        kind: FaultKind::Busy,
        times: Some(1),
    });
    let t = w.login(dev::USER_ALICE).await;
    assert!(t["access_token"].is_string());
    // Busy twice: a clear "try later".
    w.sim.set_fault(Fault {
        endpoint: Endpoint::AccessToken,
        kind: FaultKind::Busy,
        times: Some(2),
    });
    let (b, wechat, _) = w.begin().await;
    let callback = w.sim.scan(&wechat, dev::USER_XIAOMING).unwrap().remove(0);
    w.expect_failure(&b, &callback, "upstream_unavailable", Some("-1"))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wechat_slower_than_the_timeout_fails_fast() {
    let w = world("wx-slow", |_| {}).await;
    w.sim.set_fault(Fault {
        endpoint: Endpoint::AccessToken,
        kind: FaultKind::Slow(std::time::Duration::from_secs(4)),
        times: None,
    });
    let (b, wechat, _) = w.begin().await;
    let callback = w.sim.scan(&wechat, dev::USER_ALICE).unwrap().remove(0);
    let started = std::time::Instant::now();
    w.expect_failure(&b, &callback, "timeout", None).await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_and_html_bodies_are_bad_responses() {
    let w = world("wx-garbage", |_| {}).await;
    for kind in [
        FaultKind::Garbage,
        FaultKind::HtmlGbk,
        FaultKind::Http5xx(502),
    ] {
        w.sim.set_fault(Fault {
            endpoint: Endpoint::AccessToken,
            kind: kind.clone(),
            times: Some(1),
        });
        let (b, wechat, _) = w.begin().await;
        let callback = w.sim.scan(&wechat, dev::USER_ALICE).unwrap().remove(0);
        let expected = if matches!(kind, FaultKind::Http5xx(_)) {
            "upstream_unavailable"
        } else {
            "bad_response"
        };
        w.expect_failure(&b, &callback, expected, None).await;
    }
    // And userinfo answering garbage fails at the userinfo stage.
    w.sim.set_fault(Fault {
        endpoint: Endpoint::UserInfo,
        kind: FaultKind::Garbage,
        times: Some(1),
    });
    let (b, wechat, _) = w.begin().await;
    let callback = w.sim.scan(&wechat, dev::USER_ALICE).unwrap().remove(0);
    w.expect_failure(&b, &callback, "bad_response", None).await;
    assert!(!log_lines(&["connector=wx-garbage", "stage=\"userinfo\""]).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tampered_or_reused_state_is_rejected_before_calling_wechat() {
    let w = world("wx-state", |_| {}).await;
    let (b, wechat, _) = w.begin().await;
    let callback = w.sim.scan(&wechat, dev::USER_ALICE).unwrap().remove(0);
    let exchanges = w.sim.counters().code_exchanges;
    let state = query_param(&callback, "state").unwrap();
    let tampered = callback.replace(
        &format!("state={state}"),
        &format!("state={}X", &state[..state.len() - 1]),
    );
    let resp = b.get(&tampered).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("expired"));
    assert!(!log_lines(&["connector=wx-state", "reason=\"unknown_state\""]).is_empty());
    assert_eq!(
        w.sim.counters().code_exchanges,
        exchanges,
        "no upstream call for a bad state"
    );
    // Another browser with the real state: rejected too.
    let stranger = browser().get(&callback).send().await.unwrap();
    assert_eq!(stranger.status(), 400);
    assert_eq!(w.sim.counters().code_exchanges, exchanges);
    assert_eq!(w.users().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_callback_at_another_connectors_path_is_rejected() {
    let w = world("wx-mixup", |_| {}).await;
    let (b, wechat, _) = w.begin().await;
    let callback = w.sim.scan(&wechat, dev::USER_ALICE).unwrap().remove(0);
    let exchanges = w.sim.counters().code_exchanges;
    let elsewhere = callback.replace("/callback/wx-mixup?", "/callback/wx-mixup-other?");
    let resp = b.get(&elsewhere).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    assert!(!log_lines(&["connector=wx-mixup-other", "reason=\"connector_mismatch\""]).is_empty());
    assert_eq!(
        w.sim.counters().code_exchanges,
        exchanges,
        "rejected before any upstream call"
    );
    // The genuine callback still works afterwards.
    assert_eq!(b.get(&callback).send().await.unwrap().status(), 302);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wechats_double_callback_does_not_break_a_good_login() {
    let w = world("wx-double", |_| {}).await;
    w.sim.set_fault(Fault {
        endpoint: Endpoint::Authorize,
        kind: FaultKind::DoubleCallback,
        times: Some(1),
    });
    let (b, wechat, verifier) = w.begin().await;
    let callbacks = w.sim.scan(&wechat, dev::USER_ALICE).unwrap();
    assert_eq!(callbacks.len(), 2, "two callbacks, two codes, one state");
    assert_ne!(
        query_param(&callbacks[0], "code"),
        query_param(&callbacks[1], "code")
    );
    // Both arrive at once, as the browser fires them.
    let (r1, r2) = tokio::join!(b.get(&callbacks[0]).send(), b.get(&callbacks[1]).send());
    let (r1, r2) = (r1.unwrap(), r2.unwrap());
    assert_eq!(r1.status(), 302);
    assert_eq!(r2.status(), 302);
    assert_eq!(
        location(&r1),
        location(&r2),
        "both land where the first went"
    );
    let code = query_param(&location(&r2), "code").unwrap();
    assert_eq!(redeem(&w.broker.base, &code, &verifier).await.status(), 200);
    assert_eq!(w.users().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_mode_shows_wechats_qr_frame_on_the_brokers_page() {
    let w = world("wx-embed", |c| c["mode"] = "embedded".into()).await;
    let b = browser();
    let (url, verifier) = authorize_url(&w.broker.base, &[]);
    let url = url.replace("connector=dev", "connector=wx-embed");
    let resp = b.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200, "the broker's own page");
    let csp = resp
        .headers()
        .get("content-security-policy")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains(&format!("frame-src {}", w.sim.base_url())),
        "{csp}"
    );
    assert!(
        csp.contains("script-src 'none'"),
        "no script on the broker's page: {csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    let page = resp.text().await.unwrap();
    let marker = "<iframe title=\"Sign in with WeChat\" src=\"";
    let start = page.find(marker).expect("the QR frame") + marker.len();
    let src = page[start..start + page[start..].find('"').unwrap()].replace("&amp;", "&");
    assert!(
        src.contains("login_type=jssdk") && src.contains("self_redirect=false"),
        "{src}"
    );
    let callback = w.sim.scan(&src, dev::USER_ALICE).unwrap().remove(0);
    let back = b.get(&callback).send().await.unwrap();
    let code = query_param(&location(&back), "code").expect("signed in");
    assert_eq!(redeem(&w.broker.base, &code, &verifier).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_chooser_shows_the_embedded_qr_inline_beside_the_other_methods() {
    let w = world("wx-inline", |c| c["mode"] = "embedded".into()).await;
    let b = browser();
    let (url, verifier) = authorize_url(&w.broker.base, &[]);
    // No connector=: the app leaves the choice to the person.
    let resp = b
        .get(url.replace("&connector=dev", ""))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    let chooser = b.get(location(&resp)).send().await.unwrap();
    assert_eq!(chooser.status(), 200);
    let csp = chooser
        .headers()
        .get("content-security-policy")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains(&format!("frame-src {}", w.sim.base_url())),
        "{csp}"
    );
    let page = chooser.text().await.unwrap();
    assert!(page.contains("id=\"inline-wx-inline\""), "{page}");
    // The other connector is still a button.
    assert!(page.contains("connector=wx-inline-other"), "{page}");
    let marker = "<iframe title=\"Sign in with WeChat\" src=\"";
    let start = page.find(marker).expect("the QR frame on the chooser") + marker.len();
    let src = page[start..start + page[start..].find('"').unwrap()].replace("&amp;", "&");
    // Scanning it signs the person in, like the embedded page does.
    let callback = w.sim.scan(&src, dev::USER_ALICE).unwrap().remove(0);
    let back = b.get(&callback).send().await.unwrap();
    let code = query_param(&location(&back), "code").expect("signed in");
    assert_eq!(redeem(&w.broker.base, &code, &verifier).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_wechat_is_reported_degraded_while_other_connectors_work() {
    let w = world("wx-health", |_| {}).await;
    let health = || async {
        http()
            .get(format!("{}/healthz", w.broker.base))
            .send()
            .await
            .unwrap()
    };
    let h: serde_json::Value = health().await.json().await.unwrap();
    assert_eq!(h["status"], "ok");
    w.sim.set_fault(Fault {
        endpoint: Endpoint::AccessToken,
        kind: FaultKind::Http5xx(503),
        times: Some(3),
    });
    for _ in 0..3 {
        let (b, wechat, _) = w.begin().await;
        let callback = w.sim.scan(&wechat, dev::USER_ALICE).unwrap().remove(0);
        assert_eq!(b.get(&callback).send().await.unwrap().status(), 502);
    }
    let resp = health().await;
    assert_eq!(resp.status(), 200, "the broker still serves");
    let h: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(h["status"], "degraded");
    assert_eq!(h["connectors"]["wx-health"], "degraded");
    assert_eq!(h["connectors"]["wx-health-other"], "ok");
    // One upstream down never takes the broker out of its load balancer.
    let ready = http()
        .get(format!("{}/readyz", w.broker.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        ready.status(),
        200,
        "a degraded upstream leaves /readyz ready"
    );
    // Another WeChat app's connector still signs people in meanwhile.
    let b = browser();
    let (url, _) = authorize_url(&w.broker.base, &[]);
    let url = url.replace("connector=dev", "connector=wx-health-other");
    let wechat = location(&b.get(&url).send().await.unwrap());
    let callback = w.sim.scan(&wechat, dev::USER_ALICE).unwrap().remove(0);
    assert_eq!(b.get(&callback).send().await.unwrap().status(), 302);
    // WeChat recovers: one good login and the connector is healthy again.
    w.login(dev::USER_ALICE).await;
    let h: serde_json::Value = health().await.json().await.unwrap();
    assert_eq!(h["status"], "ok");
}

/// Each app has a share of the broker's local work (`server.in_progress_per_client`),
/// taken only after the upstream has answered. With a share of one, sign-ins
/// waiting on a slow WeChat hold none of it: the same app's refresh goes through
/// while they wait, and then every one of them completes, queued, not refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logins_waiting_on_a_slow_wechat_hold_no_share_of_the_broker() {
    let w = world_tuned(
        "wx-share",
        |c| c["timeout_secs"] = serde_json::json!(10.0),
        |s| s.server.in_progress_per_client = 1,
    )
    .await;
    let refresh_token = w.login(dev::USER_ALICE).await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    w.sim.set_fault(Fault {
        endpoint: Endpoint::AccessToken,
        kind: FaultKind::Slow(std::time::Duration::from_secs(3)),
        times: None,
    });
    let mut waiting = Vec::new();
    for _ in 0..6 {
        let (b, wechat, verifier) = w.begin().await;
        let callback = w.sim.scan(&wechat, dev::USER_XIAOMING).unwrap().remove(0);
        waiting.push((
            tokio::spawn(async move { b.get(&callback).send().await.unwrap() }),
            verifier,
        ));
    }
    // The six callbacks are now waiting on WeChat's code exchange.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let resp = refresh(&w.broker.base, &refresh_token).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    assert!(
        waiting.iter().all(|(h, _)| !h.is_finished()),
        "the refresh should not have waited for the slow sign-ins"
    );
    // Then all six finish, and their codes are redeemed at once: queued on the
    // app's single turn, every one succeeds.
    let mut redeeming = Vec::new();
    for (h, verifier) in waiting {
        let resp = h.await.unwrap();
        assert_eq!(resp.status(), 302, "{}", resp.text().await.unwrap());
        let code = query_param(&location(&resp), "code").expect("code for the app");
        let base = w.broker.base.clone();
        redeeming.push(tokio::spawn(async move {
            redeem(&base, &code, &verifier).await.status()
        }));
    }
    for r in redeeming {
        assert_eq!(r.await.unwrap(), 200);
    }
}
