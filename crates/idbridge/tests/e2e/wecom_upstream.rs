//! A broker with a `wecom` upstream on the WeCom fake (`provider-sim`): an app
//! signs a member in through the web QR login, and again from inside the WeCom
//! client, where the broker routes to the in-app authorize page by itself;
//! one `sub` for both. A refusal, an expired or replayed code, a non-member,
//! a wrong secret, WeCom busy or slow each end in the app's error or a page,
//! a log line with stage, WeCom's errcode and the fix, and no account.

use crate::harness::*;
use provider_sim::wecom::{CorpApp, Decision, Member, WeComSim};

const CORP: &str = "ww1234567890abcdef";
const AGENT: u64 = 1000002;
const SECRET: &str = "corp-secret-0123456789abcdefghij";
const WECOM_UA: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 wxwork/4.1.22 MicroMessenger/7.0.1 Language/zh";

struct World {
    broker: Broker,
    sim: WeComSim,
}

/// A broker whose only upstream besides `dev` is `wecom` (with `extra` keys).
async fn world(db_url: &str, extra: serde_json::Value) -> World {
    let sim = WeComSim::start(CorpApp {
        corp_id: CORP.into(),
        agent_id: AGENT,
        secret: SECRET.into(),
        trusted_domain: "127.0.0.1".into(),
    })
    .await
    .unwrap();
    sim.add_member(Member::new("ZhangSan", "张三"));
    sim.add_non_member("oNonMember01");
    let base = sim.base_url();
    let broker = start(db_url, None, move |s| {
        let mut c = serde_json::json!({
            "id": "wecom", "type": "wecom", "name": "企业微信",
            "corp_id": CORP, "agent_id": AGENT, "corp_secret": SECRET,
            "trusted_domain": "127.0.0.1", "timeout_secs": 1,
            "login_base_url": base, "open_base_url": base, "api_base_url": base,
        });
        if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
            c.extend(extra.clone());
        }
        s.connectors.push(c);
    })
    .await;
    World { broker, sim }
}

fn client(ua: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(ua)
        .build()
        .unwrap()
}

impl World {
    /// The app's authorize URL (`connector=wecom`, or none: the broker picks).
    fn authorize(&self, connector: Option<&str>) -> (String, String) {
        let (url, verifier) = authorize_url(&self.broker.base, &[]);
        let url = match connector {
            Some(c) => url.replace("connector=dev", &format!("connector={c}")),
            None => url.replace("&connector=dev", ""),
        };
        (url, verifier)
    }

    /// Follow the browser from `url` until it leaves the broker and the fake
    /// (the app's redirect) or stops at a page; every URL on the way.
    async fn browse(&self, b: &reqwest::Client, url: &str) -> (u16, String, Vec<String>) {
        let mut url = url::Url::parse(url).unwrap();
        let mut seen = Vec::new();
        for _ in 0..10 {
            seen.push(url.to_string());
            let resp = b.get(url.clone()).send().await.unwrap();
            let status = resp.status().as_u16();
            if !resp.status().is_redirection() {
                return (status, resp.text().await.unwrap_or_default(), seen);
            }
            let next = url
                .join(location(&resp).split('#').next().unwrap())
                .unwrap();
            if !next.as_str().starts_with(&self.broker.base)
                && !next.as_str().starts_with(&self.sim.base_url())
            {
                return (status, next.to_string(), seen);
            }
            url = next;
        }
        panic!("too many redirects");
    }

    async fn sign_in(&self, ua: &str, connector: Option<&str>) -> (serde_json::Value, Vec<String>) {
        let (url, verifier) = self.authorize(connector);
        let (_, back, seen) = self.browse(&client(ua), &url).await;
        assert!(back.starts_with(APP_REDIRECT), "{back}");
        let code = query_param(&back, "code").expect("a code for the app");
        let tokens: serde_json::Value = redeem(&self.broker.base, &code, &verifier)
            .await
            .json()
            .await
            .unwrap();
        (
            claims(tokens["id_token"].as_str().expect("an ID token")),
            seen,
        )
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

    /// A sign-in that must fail: (status, page text or the app's URL), no account made.
    async fn refused(&self) -> (u16, String) {
        let before = self.users().await;
        let (url, _) = self.authorize(Some("wecom"));
        let (status, page, _) = self.browse(&client(testing_ua()), &url).await;
        assert_eq!(self.users().await, before, "no account was created");
        (status, page)
    }
}

fn testing_ua() -> &'static str {
    "Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0"
}

fn assert_logged(needles: &[&str]) {
    assert!(
        !log_lines(needles).is_empty(),
        "no log line with {needles:?}"
    );
}

async fn a_member_keeps_one_sub_through_the_qr_and_the_in_wecom_flow(db_url: &str) {
    let w = world(db_url, serde_json::json!({})).await;
    w.sim.decide(Decision::Member("ZhangSan".into()));
    let (by_qr, seen) = w.sign_in(testing_ua(), Some("wecom")).await;
    assert!(
        seen.iter()
            .any(|u| u.contains("/wwlogin/sso/login?login_type=CorpApp")),
        "{seen:?}"
    );
    assert_eq!(by_qr["name"], "张三", "{by_qr}");
    let sub = by_qr["sub"].as_str().unwrap().to_owned();
    let identities = w.broker.state.store.list_identities(&sub).await.unwrap();
    assert_eq!(identities.len(), 1);
    assert_eq!(
        identities[0].subject,
        format!("{CORP}:ZhangSan"),
        "corp id + userid"
    );

    // Inside the WeCom client, without connector=: the broker picks wecom and
    // WeCom's in-app page signs the member in without a scan.
    let (in_app, seen) = w.sign_in(WECOM_UA, None).await;
    assert!(
        seen.iter()
            .any(|u| u.contains("/connect/oauth2/authorize?appid=")),
        "{seen:?}"
    );
    assert!(!seen.iter().any(|u| u.contains("/wwlogin/")), "{seen:?}");
    assert_eq!(in_app["sub"], sub.as_str(), "one sub for both flows");
    assert_eq!(w.users().await, 1);
    assert_eq!(
        w.sim.counters().tokens_issued,
        1,
        "one corp token for every sign-in"
    );
    w.broker.stop().await;
}
crate::both_backends!(a_member_keeps_one_sub_through_the_qr_and_the_in_wecom_flow);

/// `profile = "private"`: inside WeCom the page asks for `snsapi_privateinfo`,
/// and a member who allows it brings the avatar, the corp mailbox and the
/// mobile (as E.164) from `auth/getuserdetail`, none of them verified. The web
/// QR login gets no ticket, so nothing more is read there; `basic` never asks.
async fn private_info_brings_what_the_member_allowed(db_url: &str) {
    let w = world(db_url, serde_json::json!({ "profile": "private" })).await;
    w.sim
        .add_member(Member::new("ZhangSan", "张三").private_info(
            "13800138000",
            "zhangsan@corp.example",
            "https://wework.qpic.cn/zhangsan/0",
        ));
    w.sim.decide(Decision::Member("ZhangSan".into()));
    let scoped = |url: String| {
        url.replace(
            "scope=openid+profile+offline_access",
            "scope=openid+profile+email+phone",
        )
    };
    let (url, verifier) = w.authorize(None);
    let url = scoped(url);
    assert!(url.contains("email+phone"), "{url}");
    let (_, back, seen) = w.browse(&client(WECOM_UA), &url).await;
    assert!(
        seen.iter().any(|u| u.contains("scope=snsapi_privateinfo")),
        "{seen:?}"
    );
    let code = query_param(&back, "code").expect("a code for the app");
    let tokens: serde_json::Value = redeem(&w.broker.base, &code, &verifier)
        .await
        .json()
        .await
        .unwrap();
    let id = claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(id["name"], "张三", "{id}");
    assert_eq!(id["picture"], "https://wework.qpic.cn/zhangsan/0", "{id}");
    assert_eq!(id["email"], "zhangsan@corp.example", "{id}");
    assert_eq!(id["email_verified"], false, "{id}");
    assert_eq!(id["phone_number"], "+8613800138000", "{id}");
    assert_eq!(id["phone_number_verified"], false, "{id}");
    assert_eq!(w.sim.counters().getuserdetail_calls, 1);

    // The web QR login: no ticket, no getuserdetail; the same sub.
    let (url, verifier) = w.authorize(Some("wecom"));
    let (_, back, _) = w.browse(&client(testing_ua()), &scoped(url)).await;
    let code = query_param(&back, "code").expect("a code for the app");
    let tokens: serde_json::Value = redeem(&w.broker.base, &code, &verifier)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        claims(tokens["id_token"].as_str().unwrap())["sub"],
        id["sub"]
    );
    assert_eq!(w.sim.counters().getuserdetail_calls, 1);
    w.broker.stop().await;

    // `basic` (the default) stays silent inside WeCom: snsapi_base, no details.
    let w = world(db_url, serde_json::json!({})).await;
    w.sim.decide(Decision::Member("ZhangSan".into()));
    let (_, seen) = w.sign_in(WECOM_UA, None).await;
    assert!(
        seen.iter().any(|u| u.contains("scope=snsapi_base")),
        "{seen:?}"
    );
    assert_eq!(w.sim.counters().getuserdetail_calls, 0);
    w.broker.stop().await;
}
crate::both_backends!(private_info_brings_what_the_member_allowed);

async fn a_refusal_an_expired_code_and_a_replay_leave_nothing_behind(db_url: &str) {
    let w = world(db_url, serde_json::json!({})).await;
    // The person refuses: WeCom comes back with the state only.
    w.sim.decide(Decision::Cancel);
    let (_, back) = w.refused().await;
    assert!(back.starts_with(APP_REDIRECT), "{back}");
    assert_eq!(
        query_param(&back, "error").as_deref(),
        Some("access_denied"),
        "{back}"
    );

    // The code is older than 5 minutes when the callback arrives: 40029.
    w.sim.decide(Decision::Member("ZhangSan".into()));
    let b = client(testing_ua());
    let (url, _) = w.authorize(Some("wecom"));
    let to_wecom = b.get(&url).send().await.unwrap();
    let qr = location(&to_wecom);
    let callback = w.sim.visit(&qr).await.unwrap();
    w.sim.advance(301);
    let before = w.users().await;
    let resp = b.get(&callback).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 502);
    let page = resp.text().await.unwrap();
    assert!(page.contains("kind=invalid_code"), "{page}");
    assert_logged(&[
        "login_failed",
        "connector=wecom",
        "stage=\"token_exchange\"",
        "upstream_code=\"40029\"",
        "fix=",
    ]);
    // The same callback again: the broker's state is spent.
    let again = b.get(&callback).send().await.unwrap();
    assert!(again.status().is_client_error(), "{}", again.status());
    assert_eq!(w.users().await, before, "nothing written");
    w.broker.stop().await;
}
crate::both_backends!(a_refusal_an_expired_code_and_a_replay_leave_nothing_behind);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_non_member_gets_a_403_page_unless_the_operator_allows_them() {
    let db = TestDb::new(Db::Sqlite);
    let w = world(&db.url(), serde_json::json!({})).await;
    w.sim.decide(Decision::NonMember("oNonMember01".into()));
    let (status, page) = w.refused().await;
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("Only members of this organisation"), "{page}");
    assert_logged(&[
        "login_failed",
        "connector=wecom",
        "kind=\"not_allowed\"",
        "upstream_code=\"not_a_member\"",
        "allow_non_members = true",
    ]);
    w.broker.stop().await;

    let db = TestDb::new(Db::Sqlite);
    let w = world(&db.url(), serde_json::json!({"allow_non_members": true})).await;
    w.sim.decide(Decision::NonMember("oNonMember01".into()));
    let (me, _) = w.sign_in(testing_ua(), Some("wecom")).await;
    let identities = w
        .broker
        .state
        .store
        .list_identities(me["sub"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(identities[0].subject, format!("{CORP}:openid:oNonMember01"));
    w.broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_secret_a_busy_or_slow_wecom_and_an_untrusted_ip_name_the_fix() {
    let db = TestDb::new(Db::Sqlite);
    let w = world(&db.url(), serde_json::json!({})).await;
    w.sim.decide(Decision::Member("ZhangSan".into()));

    w.sim.set_secret("reset-in-the-admin-console");
    let (status, page) = w.refused().await;
    assert_eq!(status, 502, "{page}");
    assert!(
        page.contains("kind=bad_credentials") && !page.contains(SECRET),
        "{page}"
    );
    assert_logged(&["connector=wecom", "upstream_code=\"40001\"", "corp_secret"]);
    w.sim.set_secret(SECRET);

    w.sim.set_busy(true);
    let (status, page) = w.refused().await;
    assert!(
        status == 502 || page.contains("temporarily_unavailable"),
        "{status}: {page}"
    );
    assert_logged(&[
        "connector=wecom",
        "kind=\"upstream_unavailable\"",
        "upstream_code=\"-1\"",
    ]);
    w.sim.set_busy(false);

    w.sim.set_ip_denied(true);
    let (status, _) = w.refused().await;
    assert_eq!(status, 502);
    assert_logged(&["connector=wecom", "upstream_code=\"60020\"", "trusted IPs"]);
    w.sim.set_ip_denied(false);

    w.sim.set_slow(Some(std::time::Duration::from_secs(3)));
    let (status, page) = w.refused().await;
    assert!(
        status == 502 || page.contains("temporarily_unavailable"),
        "{status}: {page}"
    );
    assert_logged(&["connector=wecom", "kind=\"timeout\"", "timeout_secs"]);
    w.sim.set_slow(None);

    // WeCom answers again: the member signs in.
    let (me, _) = w.sign_in(testing_ua(), Some("wecom")).await;
    assert_eq!(me["name"], "张三");
    w.broker.stop().await;
}

/// `serve --dev` offers "企业微信 WeCom (simulator)": the fake's QR page asks
/// who signs in, and the demo app gets the member back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dev_mode_offers_wecom_through_its_simulator() {
    use crate::cli::{dev_command, free_port, temp_dir, wait_for, Killed};
    let dir = temp_dir("dev-wecom");
    let port = free_port();
    let _guard = Killed(
        dev_command(port, &dir.join(".idbridge-dev"))
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    wait_for(&base).await;
    let b = browser();
    let at = |l: String| {
        url::Url::parse(&base)
            .unwrap()
            .join(&l)
            .unwrap()
            .to_string()
    };
    let demo = b.get(format!("{base}/demo/login")).send().await.unwrap();
    let chooser = b.get(at(location(&demo))).send().await.unwrap();
    let chooser = at(location(&chooser));
    let page = get_text(&b, &chooser).await;
    assert!(page.contains("企业微信 WeCom (simulator)"), "{page}");
    let to_wecom = b
        .get(format!("{chooser}?connector=wecom"))
        .send()
        .await
        .unwrap();
    let qr = location(&to_wecom);
    assert!(qr.contains("/wwlogin/sso/login?login_type=CorpApp"), "{qr}");
    let ask = get_text(&b, &qr).await;
    assert!(ask.contains("Sign in as member 张三"), "{ask}");
    let pick = ask
        .split("<a href=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .replace("&amp;", "&");
    let origin = url::Url::parse(&qr).unwrap().origin().ascii_serialization();
    let back = b.get(format!("{origin}{pick}")).send().await.unwrap();
    let callback = at(location(&back));
    assert!(
        callback.starts_with(&format!("{base}/callback/wecom?")),
        "{callback}"
    );
    let to_app = b.get(&callback).send().await.unwrap();
    let app = at(location(&to_app));
    assert!(
        app.starts_with(&format!("{base}/demo/callback?code=")),
        "{app}"
    );
    let shown = get_text(&b, &app).await;
    assert!(shown.contains("张三"), "{shown}");
    let _ = std::fs::remove_dir_all(dir);
}
