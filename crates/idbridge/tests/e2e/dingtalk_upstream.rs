//! A broker with DingTalk upstreams on the DingTalk fake (`provider-sim`;
//! `login_base_url` and `api_base_url` point at it): an app signs a person in
//! through /authorize, the browser goes through DingTalk's sign-in page and
//! comes back with `authCode`. A returning person keeps one `sub`, also when
//! they come back inside DingTalk's own browser (routed to DingTalk without
//! the chooser); an organisation outside `corp_ids`, a cancel, an expired
//! authCode, a wrong secret, DingTalk busy or slow each
//! end in the right page or OAuth error, a log line with stage, upstream code
//! and fix, and nothing written; a doubled callback gets the first one's
//! answer without a second call to DingTalk.

use crate::harness::*;
use provider_sim::dingtalk::{Decision, DingApp, DingTalkSim, Faults, Person};
use std::time::Duration;

const APP_KEY: &str = "dingappkeye2e0001";
const SECRET: &str = "dingtalk-e2e-secret-0123456789abcdef";
const ZHANG: &str = "iPiSgnAZhangSanE2E01";
const LI: &str = "iPiSgnALiSiE2E000002";
const ACME: &str = "dingacmee2e0001";
const DINGTALK_UA: &str = "Mozilla/5.0 (Linux; Android 13) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/108.0 Mobile Safari/537.36 AliApp(DingTalk/7.6.0) com.alibaba.android.rimet/34000000 Channel/700159 language/zh-CN";

struct World {
    broker: Broker,
    sim: DingTalkSim,
}

/// The broker with the `dev` connector and `dingtalk`, and with `acme` the
/// `ding-acme` connector (`corp_ids`) too.
async fn world(db_url: &str, acme: bool) -> World {
    let sim = DingTalkSim::start(DingApp {
        client_id: APP_KEY.into(),
        client_secret: SECRET.into(),
        redirect_prefix: String::new(),
    })
    .await
    .unwrap();
    sim.add_person(
        Person::new(ZHANG, "张三")
            .mobile("13800138000")
            .corp(ACME, "Acme"),
    );
    sim.add_person(Person::new(LI, "李四").corp("dingelsewhere01", "Elsewhere"));
    let base = sim.base_url();
    let broker = start(db_url, None, move |s| {
        let dingtalk = |id: &str, extra: serde_json::Value| {
            let mut c = serde_json::json!({
                "id": id, "type": "dingtalk", "name": "钉钉 DingTalk",
                "client_id": APP_KEY, "client_secret": SECRET,
                "login_base_url": base, "api_base_url": base,
                "timeout_secs": 1.0,
            });
            if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
                c.extend(extra.clone());
            }
            c
        };
        s.connectors = vec![
            serde_json::json!({"id": "dev", "type": "dev", "name": "Dev"}),
            dingtalk("dingtalk", serde_json::json!({})),
        ];
        if acme {
            s.connectors.push(dingtalk(
                "ding-acme",
                serde_json::json!({"corp_ids": [ACME]}),
            ));
        }
    })
    .await;
    sim.add_app(DingApp {
        client_id: APP_KEY.into(),
        client_secret: SECRET.into(),
        redirect_prefix: format!("{}/callback/", broker.base),
    });
    World { broker, sim }
}

fn browser_as(ua: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .user_agent(ua)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

impl World {
    /// The app's authorize URL (through `connector`, or the chooser's pick
    /// when `None`), with its PKCE verifier.
    fn authorize(&self, connector: Option<&str>) -> (String, String) {
        let (url, verifier) = authorize_url(&self.broker.base, &[]);
        let url = match connector {
            Some(c) => url.replace("connector=dev", &format!("connector={c}")),
            None => url.replace("&connector=dev", ""),
        };
        (url, verifier)
    }

    /// Follow the browser from `url` through the broker and the fake until it
    /// leaves both (the app's redirect), stops at a page, or (`stop_at`) is
    /// about to load a URL starting so: (status, where or the page's text).
    async fn browse_until(
        &self,
        b: &reqwest::Client,
        url: &str,
        stop_at: Option<&str>,
    ) -> (u16, String) {
        let mut url = url::Url::parse(url).unwrap();
        for _ in 0..10 {
            let resp = b.get(url.clone()).send().await.unwrap();
            let status = resp.status().as_u16();
            if !resp.status().is_redirection() {
                return (status, resp.text().await.unwrap_or_default());
            }
            let next = url.join(&location(&resp)).unwrap();
            if stop_at.is_some_and(|s| next.as_str().starts_with(s))
                || (!next.as_str().starts_with(&self.broker.base)
                    && !next.as_str().starts_with(&self.sim.base_url()))
            {
                return (status, next.to_string());
            }
            url = next;
        }
        panic!("too many redirects");
    }

    async fn browse(&self, b: &reqwest::Client, url: &str) -> (u16, String) {
        self.browse_until(b, url, None).await
    }

    /// A whole sign-in in browser `b`: the app's ID token claims.
    async fn sign_in_with(
        &self,
        b: &reqwest::Client,
        connector: Option<&str>,
    ) -> serde_json::Value {
        let (url, verifier) = self.authorize(connector);
        let (_, back) = self.browse(b, &url).await;
        assert!(back.starts_with(APP_REDIRECT), "{back}");
        let code = query_param(&back, "code").expect("a code for the app");
        let tokens: serde_json::Value = redeem(&self.broker.base, &code, &verifier)
            .await
            .json()
            .await
            .unwrap();
        claims(tokens["id_token"].as_str().expect("an ID token"))
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

    /// A sign-in through `connector` that must fail: the page's status and
    /// text (or where the app was sent), with no account created.
    async fn refused(&self, connector: &str) -> (u16, String) {
        let before = self.users().await;
        let (url, _) = self.authorize(Some(connector));
        let (status, page) = self.browse(&browser(), &url).await;
        assert_eq!(self.users().await, before, "no account was created");
        (status, page)
    }
}

fn logged(needles: &[&str]) {
    assert!(
        !log_lines(needles).is_empty(),
        "no log line with {needles:?}"
    );
}

async fn a_dingtalk_person_keeps_one_sub_also_inside_dingtalk(db_url: &str) {
    capture_logs();
    let w = world(db_url, false).await;
    w.sim.decide(Decision::approve(ZHANG));
    let first = w.sign_in_with(&browser(), Some("dingtalk")).await;
    assert_eq!(first["name"], "张三", "{first}");
    let sub = first["sub"].as_str().unwrap().to_owned();
    let identities = w.broker.state.store.list_identities(&sub).await.unwrap();
    assert_eq!(identities.len(), 1);
    assert_eq!(
        identities[0].subject,
        format!("{APP_KEY}:{ZHANG}"),
        "the unionId, scoped by the app"
    );
    let again = w.sign_in_with(&browser(), Some("dingtalk")).await;
    assert_eq!(
        again["sub"],
        sub.as_str(),
        "a returning person keeps one sub"
    );

    // Without connector= an ordinary browser gets the chooser (dev and
    // dingtalk); DingTalk's own browser goes straight to DingTalk (the
    // connector is Preferred there), whose client signs its person in.
    let (url, _) = w.authorize(None);
    let (status, page) = w.browse(&browser(), &url).await;
    assert_eq!(status, 200, "the chooser: {page}");
    assert!(
        page.contains("钉钉 DingTalk") && page.contains("Dev"),
        "{page}"
    );
    w.sim.decide(Decision::Deny);
    w.sim.set_client_user(Some(ZHANG));
    let inside = browser_as(DINGTALK_UA);
    let (_, at) = w.browse_until(&inside, &url, Some(&w.sim.base_url())).await;
    assert!(
        at.starts_with(&format!("{}/oauth2/auth?", w.sim.base_url())),
        "routed to DingTalk without the chooser: {at}"
    );
    let claims = w.sign_in_with(&inside, None).await;
    assert_eq!(
        claims["sub"],
        sub.as_str(),
        "the same person inside DingTalk"
    );
    assert_eq!(
        w.sim.counters().in_app,
        1,
        "signed in by the client, no page"
    );
    w.broker.stop().await;
}
crate::both_backends!(a_dingtalk_person_keeps_one_sub_also_inside_dingtalk);

async fn an_outside_organisation_is_refused_with_a_page_and_a_fix(db_url: &str) {
    capture_logs();
    let w = world(db_url, true).await;
    w.sim.decide(Decision::approve(LI));
    let (status, page) = w.refused("ding-acme").await;
    assert_eq!(status, 403, "{page}");
    assert!(
        page.contains("Only members of particular organisations"),
        "{page}"
    );
    logged(&[
        "login_failed",
        "connector=ding-acme",
        "stage=\"token_exchange\"",
        "kind=\"not_allowed\"",
        "upstream_code=\"corp_not_allowed\"",
        "fix=",
        "dingelsewhere01",
    ]);
    // A member of the allowed organisation signs in.
    w.sim.decide(Decision::approve(ZHANG));
    let me = w.sign_in_with(&browser(), Some("ding-acme")).await;
    assert_eq!(me["name"], "张三");
    w.broker.stop().await;
}
crate::both_backends!(an_outside_organisation_is_refused_with_a_page_and_a_fix);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancel_sends_the_app_access_denied() {
    let db = TestDb::new(Db::Sqlite);
    let w = world(&db.url(), false).await;
    w.sim.decide(Decision::Deny);
    let (_, back) = w.refused("dingtalk").await;
    assert!(back.starts_with(APP_REDIRECT), "{back}");
    assert_eq!(
        query_param(&back, "error").as_deref(),
        Some("access_denied")
    );
    w.broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_authcode_and_a_replayed_callback_end_in_pages() {
    capture_logs();
    let db = TestDb::new(Db::Sqlite);
    let w = world(&db.url(), false).await;
    w.sim.decide(Decision::approve(ZHANG));
    let callback_prefix = format!("{}/callback/dingtalk?", w.broker.base);
    let b = browser();
    let (url, _) = w.authorize(Some("dingtalk"));
    let (_, callback) = w.browse_until(&b, &url, Some(&callback_prefix)).await;
    assert!(query_param(&callback, "authCode").is_some(), "{callback}");
    w.sim.advance(301);
    let (status, page) = w.browse(&b, &callback).await;
    assert_eq!(status, 502, "{page}");
    assert_eq!(w.users().await, 0, "nothing written");
    logged(&[
        "login_failed",
        "connector=dingtalk",
        "stage=\"token_exchange\"",
        "kind=\"invalid_code\"",
        "upstream_code=\"invalidAuthCode\"",
        "fix=",
    ]);
    // A good callback, then the same one again (a doubled request): the broker
    // answers as the first time, without spending the authCode again at DingTalk.
    let b = browser();
    let (url, _) = w.authorize(Some("dingtalk"));
    let (_, callback) = w.browse_until(&b, &url, Some(&callback_prefix)).await;
    let (_, back) = w.browse(&b, &callback).await;
    assert!(back.starts_with(APP_REDIRECT), "{back}");
    let (_, again) = w.browse(&b, &callback).await;
    assert_eq!(again, back, "the same answer to the app");
    assert_eq!(w.users().await, 1);
    assert_eq!(
        w.sim.counters().token_requests,
        2,
        "the replay never reached DingTalk"
    );
    w.broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_secret_busy_or_slow_dingtalk_show_pages_and_name_the_fix() {
    capture_logs();
    let db = TestDb::new(Db::Sqlite);
    let w = world(&db.url(), false).await;
    w.sim.decide(Decision::approve(ZHANG));
    w.sim.set_client_secret(APP_KEY, "rotated-at-dingtalk");
    let (status, page) = w.refused("dingtalk").await;
    assert_eq!(status, 502, "{page}");
    assert!(page.contains("kind=bad_credentials"), "{page}");
    assert!(!page.contains(SECRET), "the secret never shows");
    logged(&[
        "login_failed",
        "connector=dingtalk",
        "stage=\"token_exchange\"",
        "upstream_code=\"invalidClientIdOrSecret\"",
        "fix=",
        "Client Secret (AppSecret)",
    ]);
    w.sim.set_client_secret(APP_KEY, SECRET);
    w.sim.set_faults(Faults {
        busy: true,
        ..Faults::default()
    });
    let (status, page) = w.refused("dingtalk").await;
    assert_eq!(status, 502, "{page}");
    logged(&[
        "login_failed",
        "connector=dingtalk",
        "kind=\"upstream_unavailable\"",
        "upstream_code=\"ServiceUnavailable\"",
        "fix=",
    ]);
    w.sim.set_faults(Faults {
        delay: Some(Duration::from_millis(2500)),
        ..Faults::default()
    });
    let (status, page) = w.refused("dingtalk").await;
    assert_eq!(status, 502, "{page}");
    logged(&[
        "login_failed",
        "connector=dingtalk",
        "stage=\"token_exchange\"",
        "kind=\"timeout\"",
        "raise connect_timeout_secs / timeout_secs",
    ]);
    w.broker.stop().await;
}

/// `serve --dev` offers "钉钉 DingTalk (simulator)" on the chooser; inside
/// DingTalk's browser the demo app's sign-in goes straight to the fake, whose
/// client signs 张三 in, and the demo app shows them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dev_mode_offers_dingtalk_and_its_browser_goes_straight_there() {
    use crate::cli::{dev_command, free_port, temp_dir, wait_for, Killed};
    let dir = temp_dir("dev-dingtalk");
    let port = free_port();
    let _guard = Killed(
        dev_command(port, &dir.join(".idbridge-dev"))
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    wait_for(&base).await;
    let at = |u: &str| url::Url::parse(&base).unwrap().join(u).unwrap().to_string();
    // An ordinary browser: the chooser names the simulator's connector.
    let b = browser();
    let demo = b.get(format!("{base}/demo/login")).send().await.unwrap();
    let authorize = b.get(at(&location(&demo))).send().await.unwrap();
    let page = get_text(&b, at(&location(&authorize))).await;
    assert!(page.contains("钉钉 DingTalk (simulator)"), "{page}");
    // DingTalk's browser: redirects only, until the fake, then back.
    let inside = browser_as(DINGTALK_UA);
    let mut next = format!("{base}/demo/login");
    for _ in 0..10 {
        let resp = inside.get(&next).send().await.unwrap();
        assert!(resp.status().is_redirection(), "no page on the way: {next}");
        next = at(&location(&resp));
        if next.starts_with(&format!("{base}/demo/callback?")) {
            break;
        }
    }
    assert!(next.contains("code="), "{next}");
    let shown = get_text(&inside, &next).await;
    assert!(shown.contains("张三 Zhang San"), "{shown}");
    let _ = std::fs::remove_dir_all(dir);
}
