//! A broker with Feishu upstreams on the Feishu fake (`provider-sim`;
//! `accounts_url`/`open_url` point at it): an app signs a person in through
//! /authorize, the browser goes through Feishu's authorization page and back.
//! A returning person keeps one `sub`, and two apps of one developer are one
//! account (the union_id link key); inside Feishu's browser the chooser is
//! skipped; cancel, a person without access (20010), an expired or replayed
//! code, a wrong App Secret, Feishu busy or slow, and a tenant outside
//! `tenant_keys` each end in the right page or OAuth error, a log line with
//! stage, Feishu's code and the fix, and nothing written; `recheck_on_refresh`
//! with `offline_access` rotates Feishu's single-use refresh tokens and ends
//! the grant when Feishu revokes the person. On SQLite and Postgres.

use crate::harness::*;
use provider_sim::feishu::{Decision, Fault, FeishuApp, FeishuSim, Person};

const APP: &str = "cli_a5ca35a685b0x26e";
const SECRET: &str = "baBqE5um9LbFGDy3X7LcfxQX1sqpXlwy";
const ZHANG: &str = "on_d89jhsdhjsajkda7828enjdj328ydhhw3u";
const LI: &str = "on_7a1b2c3d4e5f60718293a4b5c6d7e8f9";
const FEISHU_UA: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Lark/7.20.0 LarkLocale/zh_CN ChannelName/Feishu";

struct World {
    broker: Broker,
    sim: FeishuSim,
}

async fn world(db_url: &str) -> World {
    let sim = FeishuSim::start(FeishuApp {
        app_id: APP.into(),
        app_secret: SECRET.into(),
        redirect_urls: Vec::new(),
    })
    .await
    .unwrap();
    sim.add_person(Person::new(ZHANG, "张三").email("zhangsan@example.test"));
    sim.add_person(Person::new(LI, "李四").without_access());
    sim.decide(Decision::Approve(ZHANG.into()));
    let base = sim.base_url();
    let broker = start(db_url, None, move |s| {
        let feishu = |id: &str, extra: serde_json::Value| {
            let mut c = serde_json::json!({
                "id": id, "type": "feishu", "name": "飞书",
                "client_id": APP, "client_secret": SECRET, "developer": "acme",
                "accounts_url": base, "open_url": base, "timeout_secs": 1,
            });
            if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
                c.extend(extra.clone());
            }
            c
        };
        s.connectors = vec![
            feishu("feishu", serde_json::json!({})),
            feishu("feishu-hr", serde_json::json!({})),
            feishu(
                "feishu-partner",
                serde_json::json!({"tenant_keys": ["2ed263bf32cf1651"]}),
            ),
            feishu(
                "feishu-offline",
                serde_json::json!({"offline_access": true, "recheck_on_refresh": true}),
            ),
            serde_json::json!({"id": "dev", "type": "dev"}),
        ];
    })
    .await;
    sim.set_redirect_urls(vec![format!("{}/callback/", broker.base)]);
    World { broker, sim }
}

impl World {
    fn authorize(&self, connector: &str) -> (String, String) {
        let (url, verifier) = authorize_url(&self.broker.base, &[]);
        let url = url
            .replace("connector=dev", &format!("connector={connector}"))
            .replace(
                "scope=openid+profile+offline_access",
                "scope=openid+profile+email+offline_access",
            );
        (url, verifier)
    }

    /// From `url` through the broker and the fake until the browser leaves
    /// both (the app's redirect: its URL), or stops at a page (its text).
    async fn browse(&self, b: &reqwest::Client, url: &str) -> (u16, String) {
        let mut url = url::Url::parse(url).unwrap();
        for _ in 0..10 {
            let resp = b.get(url.clone()).send().await.unwrap();
            let status = resp.status().as_u16();
            if !resp.status().is_redirection() {
                return (status, resp.text().await.unwrap_or_default());
            }
            let next = url.join(&location(&resp)).unwrap();
            if !next.as_str().starts_with(&self.broker.base)
                && !next.as_str().starts_with(&self.sim.base_url())
            {
                return (status, next.to_string());
            }
            url = next;
        }
        panic!("too many redirects");
    }

    /// Up to the callback Feishu sends the browser to (not followed).
    async fn to_callback(&self, b: &reqwest::Client, connector: &str) -> String {
        let (url, _) = self.authorize(connector);
        let to_feishu = location(&b.get(&url).send().await.unwrap());
        let to_feishu = url::Url::parse(&self.broker.base)
            .unwrap()
            .join(&to_feishu)
            .unwrap();
        assert!(
            to_feishu.as_str().starts_with(&self.sim.base_url()),
            "{to_feishu}"
        );
        let back = location(&b.get(to_feishu).send().await.unwrap());
        assert!(
            back.starts_with(&format!("{}/callback/{connector}?", self.broker.base)),
            "{back}"
        );
        back
    }

    /// A whole sign-in through `connector`: the app's token response.
    async fn tokens(&self, connector: &str) -> serde_json::Value {
        let (url, verifier) = self.authorize(connector);
        let (_, back) = self.browse(&browser(), &url).await;
        assert!(back.starts_with(APP_REDIRECT), "{back}");
        let code = query_param(&back, "code").expect("a code for the app");
        redeem(&self.broker.base, &code, &verifier)
            .await
            .json()
            .await
            .unwrap()
    }

    async fn sign_in(&self, connector: &str) -> serde_json::Value {
        let t = self.tokens(connector).await;
        claims(t["id_token"].as_str().expect("an ID token"))
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
}

fn logged(needles: &[&str]) {
    assert!(
        !log_lines(needles).is_empty(),
        "no log line with {needles:?}"
    );
}

async fn a_feishu_person_keeps_one_sub_across_the_developers_apps(db_url: &str) {
    let w = world(db_url).await;
    let first = w.sign_in("feishu").await;
    assert_eq!(first["name"], "张三", "{first}");
    assert_ne!(
        first.get("email_verified"),
        Some(&serde_json::json!(true)),
        "Feishu never verifies: {first}"
    );
    let sub = first["sub"].as_str().unwrap().to_owned();
    let identities = w.broker.state.store.list_identities(&sub).await.unwrap();
    assert_eq!(identities.len(), 1);
    assert_eq!(
        identities[0].subject,
        format!("feishu:acme:{ZHANG}"),
        "union_id under the developer"
    );
    let again = w.sign_in("feishu").await;
    assert_eq!(
        again["sub"],
        sub.as_str(),
        "a returning person keeps one sub"
    );
    // Another app of the same developer: the union_id links to the same account.
    let hr = w.sign_in("feishu-hr").await;
    assert_eq!(hr["sub"], sub.as_str());
    assert_eq!(
        w.broker
            .state
            .store
            .list_identities(&sub)
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(w.users().await, 1);
    w.broker.stop().await;
}
crate::both_backends!(a_feishu_person_keeps_one_sub_across_the_developers_apps);

async fn every_failure_ends_in_its_page_and_writes_nothing(db_url: &str) {
    let w = world(db_url).await;
    // Cancel on Feishu's page: access_denied to the app.
    w.sim.decide(Decision::Deny);
    let (url, _) = w.authorize("feishu");
    let (_, back) = w.browse(&browser(), &url).await;
    assert_eq!(
        query_param(&back, "error").as_deref(),
        Some("access_denied"),
        "{back}"
    );

    // No access to the app (20010): a 403 page telling the person whom to ask.
    w.sim.decide(Decision::Approve(LI.into()));
    let (url, _) = w.authorize("feishu");
    let (status, page) = w.browse(&browser(), &url).await;
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("availability range"), "{page}");
    logged(&[
        "login_failed",
        "connector=feishu",
        "stage=\"token_exchange\"",
        "upstream_code=\"20010\"",
        "可用范围",
    ]);

    // A code older than 5 minutes, then a replayed callback.
    w.sim.decide(Decision::Approve(ZHANG.into()));
    let b = browser();
    let callback = w.to_callback(&b, "feishu").await;
    w.sim.advance(301);
    let expired = b.get(&callback).send().await.unwrap();
    assert_eq!(
        expired.status(),
        502,
        "the broker's 'expired, start again' page"
    );
    logged(&["login_failed", "upstream_code=\"20004\"", "5 minutes"]);
    let b = browser();
    let callback = w.to_callback(&b, "feishu").await;
    let code = query_param(&callback, "code").unwrap();
    assert!(b
        .get(&callback)
        .send()
        .await
        .unwrap()
        .status()
        .is_redirection());
    // The spent code on another browser's fresh sign-in: Feishu says 20065.
    let b2 = browser();
    let callback2 = w.to_callback(&b2, "feishu").await;
    let replay = callback2.replace(&query_param(&callback2, "code").unwrap(), &code);
    let replayed = b2.get(&replay).send().await.unwrap();
    assert_eq!(replayed.status(), 502);
    logged(&[
        "login_failed",
        "kind=\"code_reused\"",
        "upstream_code=\"20065\"",
    ]);
    let users = w.users().await;

    // The App Secret was reset in the console: not the person's fault.
    w.sim.set_app_secret("reset-in-the-console-000000000000");
    let (url, _) = w.authorize("feishu");
    let (status, page) = w.browse(&browser(), &url).await;
    assert!(status >= 500, "{status}: {page}");
    assert!(!page.contains(SECRET));
    logged(&[
        "login_failed",
        "stage=\"token_exchange\"",
        "upstream_code=\"20002\"",
        "凭证与基础信息",
    ]);
    w.sim.set_app_secret(SECRET);

    // Busy, then slow past timeout_secs.
    w.sim.set_fault(Fault::Busy);
    let (url, _) = w.authorize("feishu");
    let (status, page) = w.browse(&browser(), &url).await;
    assert!(status >= 500, "{status}: {page}");
    logged(&[
        "login_failed",
        "kind=\"upstream_unavailable\"",
        "upstream_code=\"20050\"",
    ]);
    w.sim
        .set_fault(Fault::Slow(std::time::Duration::from_millis(2500)));
    let (url, _) = w.authorize("feishu");
    let (status, page) = w.browse(&browser(), &url).await;
    assert!(status >= 500, "{status}: {page}");
    logged(&[
        "login_failed",
        "connector=feishu",
        "kind=\"timeout\"",
        "timeout_secs",
    ]);
    w.sim.set_fault(Fault::None);

    // A tenant outside tenant_keys.
    let (url, _) = w.authorize("feishu-partner");
    let (status, page) = w.browse(&browser(), &url).await;
    assert_eq!(status, 403, "{page}");
    logged(&[
        "login_failed",
        "connector=feishu-partner",
        "stage=\"userinfo\"",
        "kind=\"not_allowed\"",
        "tenant_keys",
    ]);

    assert_eq!(w.users().await, users, "no failure wrote an account");
    assert_eq!(
        users, 1,
        "only the sign-in that succeeded before the replay"
    );
    w.broker.stop().await;
}
crate::both_backends!(every_failure_ends_in_its_page_and_writes_nothing);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn inside_feishus_browser_the_chooser_is_skipped() {
    let db = TestDb::new(Db::Sqlite);
    let sim = FeishuSim::start(FeishuApp {
        app_id: APP.into(),
        app_secret: SECRET.into(),
        redirect_urls: Vec::new(),
    })
    .await
    .unwrap();
    sim.add_person(Person::new(ZHANG, "张三"));
    sim.decide(Decision::Approve(ZHANG.into()));
    let base = sim.base_url();
    let broker = start(&db.url(), None, move |s| {
        s.connectors = vec![
            serde_json::json!({
                "id": "feishu", "type": "feishu", "client_id": APP, "client_secret": SECRET,
                "developer": "acme", "accounts_url": base, "open_url": base,
            }),
            serde_json::json!({"id": "dev", "type": "dev"}),
        ];
    })
    .await;
    sim.set_redirect_urls(vec![format!("{}/callback/", broker.base)]);
    let inside = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(FEISHU_UA)
        .build()
        .unwrap();
    let (url, _) = authorize_url(&broker.base, &[]);
    let url = url.replace("&connector=dev", "");
    // In Feishu: straight to Feishu's authorization page, no chooser.
    let first = location(&inside.get(&url).send().await.unwrap());
    let mut next = url::Url::parse(&broker.base).unwrap().join(&first).unwrap();
    if !next.as_str().starts_with(&sim.base_url()) {
        next = next
            .join(&location(&inside.get(next.clone()).send().await.unwrap()))
            .unwrap();
    }
    assert!(
        next.as_str().starts_with(&format!(
            "{}/open-apis/authen/v1/authorize?",
            sim.base_url()
        )),
        "{next}"
    );
    // In an ordinary browser: the chooser, with both.
    let ordinary = browser();
    let chooser = url::Url::parse(&broker.base)
        .unwrap()
        .join(&location(&ordinary.get(&url).send().await.unwrap()))
        .unwrap();
    let page = get_text(&ordinary, chooser).await;
    assert!(
        page.contains("飞书 Feishu")
            && page.contains("connector=feishu")
            && page.contains("connector=dev"),
        "{page}"
    );
    broker.stop().await;
}

async fn recheck_rotates_feishus_refresh_token_and_a_revoked_person_loses_the_grant(db_url: &str) {
    let w = world(db_url).await;
    let t = w.tokens("feishu-offline").await;
    let rt = t["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_owned();
    // Twice: each re-check spends Feishu's refresh token and keeps the new one.
    let mut rt = rt;
    for _ in 0..2 {
        let resp = refresh(&w.broker.base, &rt).await;
        assert_eq!(resp.status(), 200);
        let body: serde_json::Value = resp.json().await.unwrap();
        rt = body["refresh_token"].as_str().unwrap().to_owned();
    }
    assert_eq!(w.sim.counters().refreshes, 2);
    w.sim.revoke(ZHANG);
    let resp = refresh(&w.broker.base, &rt).await;
    assert_eq!(resp.status(), 400);
    let err: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(err["error"], "invalid_grant");
    assert!(
        err["error_description"].as_str().unwrap().contains("20064"),
        "{err}"
    );
    assert_eq!(introspect(&w.broker.base, &rt).await["active"], false);
    logged(&[
        "upstream_recheck_failed",
        "connector=feishu-offline",
        "stage=\"refresh\"",
        "upstream_code=\"20064\"",
    ]);
    w.broker.stop().await;
}
crate::both_backends!(recheck_rotates_feishus_refresh_token_and_a_revoked_person_loses_the_grant);

/// `recheck_on_refresh` without `offline_access` (no refresh token to re-check
/// with) and `trust_email` (Feishu's addresses are admin-typed) are
/// configuration errors naming their keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recheck_without_offline_access_and_trust_email_are_refused_by_name() {
    let db = TestDb::new(Db::Sqlite);
    let mut s = base_settings("http://127.0.0.1:1", &db.url());
    let feishu = |id: &str, key: &str| {
        let mut c = serde_json::json!({
            "id": id, "type": "feishu", "client_id": APP, "client_secret": SECRET,
            "developer": "acme",
        });
        c[key] = serde_json::json!(true);
        c
    };
    s.connectors = vec![
        feishu("feishu-a", "recheck_on_refresh"),
        feishu("feishu-b", "trust_email"),
    ];
    let config = idbridge_server::config::Config::new(s, true).expect("the entries read");
    let errors = match idbridge_server::state::build_connectors(
        &config,
        &idbridge::registry(),
        true,
        &idbridge_core::Shared::default(),
    ) {
        Ok(_) => panic!("accepted"),
        Err(errors) => errors,
    };
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "connectors[feishu-a].recheck_on_refresh",
            "connectors[feishu-b].trust_email"
        ],
        "{errors:?}"
    );
}
