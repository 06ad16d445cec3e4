//! WeChat Official Account login end to end: a broker with both the website QR
//! connector (wechat-web) and the in-WeChat connector (wechat-mp) against one
//! simulator. The browser's User-Agent decides which one a person gets; the same
//! person through either ends up with one account, linked by the unionid.

use crate::harness::*;
use wechat_sim::{dev, SimConfig, Simulator};

const WECHAT_UA: &str = "Mozilla/5.0 (iPhone) AppleWebKit MicroMessenger/8.0.40";
const DESKTOP_UA: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36";

struct World {
    sim: Simulator,
    broker: Broker,
    db: TestDb,
}

fn web_connector(tag: &str, base: &str) -> serde_json::Value {
    serde_json::json!({
        "id": format!("{tag}-web"), "type": "wechat-web", "name": "WeChat QR",
        "appid": dev::WEB_APPID, "appsecret": dev::WEB_SECRET,
        "open_platform_id": dev::OPEN_PLATFORM_ID,
        "api_base_url": base, "open_base_url": base, "timeout_secs": 1.0,
    })
}

fn mp_connector(id: &str, base: &str, scope: &str) -> serde_json::Value {
    serde_json::json!({
        "id": id, "type": "wechat-mp", "name": "WeChat",
        "appid": dev::MP_APPID, "appsecret": dev::MP_SECRET,
        "open_platform_id": dev::OPEN_PLATFORM_ID, "scope": scope,
        "api_base_url": base, "open_base_url": base, "timeout_secs": 1.0,
    })
}

/// A broker on `db` with a wechat-web connector `{tag}-web` and a wechat-mp
/// connector `{tag}-mp` (with `mp_scope`).
async fn broker(sim: &Simulator, db: &TestDb, tag: &str, mp_scope: &str) -> Broker {
    let base = sim.base_url();
    let (tag, mp_scope) = (tag.to_owned(), mp_scope.to_owned());
    start(&db.url(), None, move |s| {
        s.connectors = vec![
            web_connector(&tag, &base),
            mp_connector(&format!("{tag}-mp"), &base, &mp_scope),
        ];
    })
    .await
}

async fn world(tag: &str, mp_scope: &str) -> World {
    let sim = Simulator::start(SimConfig::dev_default("127.0.0.1"))
        .await
        .unwrap();
    let db = TestDb::new(Db::Sqlite);
    let broker = broker(&sim, &db, tag, mp_scope).await;
    World { sim, broker, db }
}

/// A cookie-keeping browser with this User-Agent that does not follow redirects.
fn browser_as(ua: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .user_agent(ua)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

impl World {
    async fn users(&self) -> usize {
        self.broker
            .state
            .store
            .find_users("", 1000)
            .await
            .unwrap()
            .len()
    }

    /// Start a login at the broker with no `connector=`; returns where the broker
    /// sent the browser and the PKCE verifier.
    async fn begin(&self, b: &reqwest::Client) -> (String, String) {
        let (url, verifier) = authorize_url(&self.broker.base, &[]);
        let url = url.replace("&connector=dev", "");
        assert!(!url.contains("connector="), "{url}");
        let resp = b.get(&url).send().await.unwrap();
        assert_eq!(
            resp.status(),
            302,
            "{}",
            resp.text().await.unwrap_or_default()
        );
        (location(&resp), verifier)
    }

    /// Finish at the broker with WeChat's callback; returns the id_token's claims.
    async fn finish(
        &self,
        b: &reqwest::Client,
        callback: &str,
        verifier: &str,
    ) -> serde_json::Value {
        let resp = b.get(callback).send().await.unwrap();
        assert_eq!(
            resp.status(),
            302,
            "{}",
            resp.text().await.unwrap_or_default()
        );
        let code = query_param(&location(&resp), "code").expect("code for the app");
        let t: serde_json::Value = redeem(&self.broker.base, &code, verifier)
            .await
            .json()
            .await
            .unwrap();
        claims(t["id_token"].as_str().unwrap())
    }

    /// A whole login in a fresh browser with `ua` as `user`; `path` is the WeChat
    /// page the broker must pick on its own.
    async fn login(&self, ua: &str, path: &str, user: &str) -> serde_json::Value {
        let b = browser_as(ua);
        let (wechat, verifier) = self.begin(&b).await;
        assert!(
            wechat.starts_with(&format!("{}{path}?appid=", self.sim.base_url())),
            "{wechat}"
        );
        let callback = self.sim.scan(&wechat, user).unwrap().remove(0);
        self.finish(&b, &callback, &verifier).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn inside_wechat_the_official_account_flow_is_picked() {
    let w = world("mp-in", "snsapi_userinfo").await;
    let b = browser_as(WECHAT_UA);
    let (wechat, _) = w.begin(&b).await;
    let callback = format!("{}/callback/mp-in-mp", w.broker.base);
    let state = query_param(&wechat, "state").unwrap();
    assert_eq!(
        wechat,
        format!(
            "{}/connect/oauth2/authorize?appid={}&redirect_uri={}&response_type=code&scope=snsapi_userinfo&state={state}#wechat_redirect",
            w.sim.base_url(),
            dev::MP_APPID,
            wechat_api::encode_component(&callback),
        )
    );
    let id = w
        .login(WECHAT_UA, "/connect/oauth2/authorize", dev::USER_ALICE)
        .await;
    assert_eq!(id["name"], "Alice");
    assert_eq!(id["linked_connectors"], serde_json::json!(["mp-in-mp"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_desktop_browser_gets_the_website_qr() {
    let w = world("mp-out", "snsapi_userinfo").await;
    let id = w
        .login(DESKTOP_UA, "/connect/qrconnect", dev::USER_ALICE)
        .await;
    assert_eq!(id["linked_connectors"], serde_json::json!(["mp-out-web"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_person_through_qr_and_official_account_has_one_sub() {
    let w = world("mp-link", "snsapi_userinfo").await;
    let web = w
        .login(DESKTOP_UA, "/connect/qrconnect", dev::USER_ALICE)
        .await;
    let mp = w
        .login(WECHAT_UA, "/connect/oauth2/authorize", dev::USER_ALICE)
        .await;
    assert_eq!(mp["sub"], web["sub"], "one account, linked by the unionid");
    let mut linked: Vec<String> = serde_json::from_value(mp["linked_connectors"].clone()).unwrap();
    linked.sort();
    assert_eq!(linked, ["mp-link-mp", "mp-link-web"]);
    let identities = w
        .broker
        .state
        .store
        .list_identities(mp["sub"].as_str().unwrap())
        .await
        .unwrap();
    let mp_identity = identities
        .iter()
        .find(|i| i.connector_id == "mp-link-mp")
        .unwrap();
    assert_eq!(
        mp_identity.subject,
        w.sim.openid(dev::MP_APPID, dev::USER_ALICE),
        "the subject is the Official Account's openid"
    );
    // Another person stays another account.
    let other = w
        .login(WECHAT_UA, "/connect/oauth2/authorize", dev::USER_ALICE2)
        .await;
    assert_ne!(other["sub"], web["sub"]);
    assert_eq!(w.users().await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_snapshot_user_gets_a_page_and_no_account() {
    let w = world("mp-snap", "snsapi_userinfo").await;
    let b = browser_as(WECHAT_UA);
    let (wechat, _) = w.begin(&b).await;
    let snapshot = wechat.replace("#wechat_redirect", "&sim_snapshot=1#wechat_redirect");
    let callback = w.sim.scan(&snapshot, dev::USER_ALICE).unwrap().remove(0);
    let resp = b.get(&callback).send().await.unwrap();
    // A policy refusal, not a gateway failure (issue 11, item 7).
    assert_eq!(resp.status(), 403, "a page, not a login");
    let page = resp.text().await.unwrap();
    assert!(page.contains("kind=not_allowed"), "{page}");
    assert!(page.contains("code=is_snapshotuser"), "{page}");
    // The page says what to do: open the full page (WeChat's button text).
    assert!(
        page.contains("使用完整服务") && page.contains("open the full page"),
        "{page}"
    );
    assert!(!log_lines(&[
        "login_failed",
        "connector=mp-snap-mp",
        "upstream_code=\"is_snapshotuser\"",
        "full page"
    ])
    .is_empty());
    assert_eq!(w.users().await, 0, "no account from a virtual user");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn snsapi_base_first_then_snsapi_userinfo_keeps_one_account() {
    let w = world("mp-scope", "snsapi_base").await;
    let userinfo_calls = w.sim.counters().userinfo_calls;
    let first = w
        .login(WECHAT_UA, "/connect/oauth2/authorize", dev::USER_ALICE)
        .await;
    assert!(first.get("name").is_none_or(|n| n.is_null()), "{first}");
    assert_eq!(w.sim.counters().userinfo_calls, userinfo_calls);
    // No unionid with snsapi_base: a QR login now is another account.
    // The operator switches the connector to snsapi_userinfo (same id, same database).
    let World { sim, broker, db } = w;
    broker.stop().await;
    let w = World {
        broker: self::broker(&sim, &db, "mp-scope", "snsapi_userinfo").await,
        sim,
        db,
    };
    let second = w
        .login(WECHAT_UA, "/connect/oauth2/authorize", dev::USER_ALICE)
        .await;
    assert_eq!(
        second["sub"], first["sub"],
        "the same openid, the same account"
    );
    assert_eq!(second["name"], "Alice");
    // The unionid learnt on that login links the website QR login to it as well.
    let web = w
        .login(DESKTOP_UA, "/connect/qrconnect", dev::USER_ALICE)
        .await;
    assert_eq!(web["sub"], first["sub"]);
    assert_eq!(w.users().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outside_wechat_the_page_says_to_open_the_link_in_wechat() {
    let sim = Simulator::start(SimConfig::dev_default("127.0.0.1"))
        .await
        .unwrap();
    let db = TestDb::new(Db::Sqlite);
    let base = sim.base_url();
    // Only the Official Account connector: a desktop browser cannot use it.
    let broker = start(&db.url(), None, move |s| {
        s.connectors = vec![mp_connector("only-mp", &base, "snsapi_userinfo")];
    })
    .await;
    let b = browser_as(DESKTOP_UA);
    let (url, _) = authorize_url(&broker.base, &[("ui_locales", "en")]);
    let url = url.replace("&connector=dev", "");
    let resp = b.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 302);
    let chooser = get_text(&b, location(&resp)).await;
    assert!(
        chooser.contains("No sign-in method is available"),
        "{chooser}"
    );
    assert!(chooser.contains("id=\"unavailable-only-mp\""), "{chooser}");
    assert!(chooser.contains("Open this link in WeChat"), "{chooser}");
    sim.stop().await;
}
