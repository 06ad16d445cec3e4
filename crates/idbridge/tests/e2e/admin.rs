//! The operator's tools against real brokers: the admin HTTP API (off without
//! tokens, 401 and rate limits for bad tokens, find / show / unlink / disable /
//! enable / revoke / audit), observed the way an operator and the apps observe
//! them; the `idbridge admin` command on a real SQLite file; and every example
//! in docs/admin.md, executed.

use crate::both_backends;
use crate::harness::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use wechat_sim::{dev, SimConfig, Simulator};

const ADMIN_TOKEN: &str = "t3st-Admin-Token_0123456789abcdefGHIJKL";
const WECHAT_UA: &str = "Mozilla/5.0 (iPhone) AppleWebKit MicroMessenger/8.0.40";
const DESKTOP_UA: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36";

async fn admin_broker(
    db_url: &str,
    tweak: impl FnOnce(&mut idbridge_server::Settings) + Send + 'static,
) -> Broker {
    start(db_url, None, move |s| {
        s.admin.tokens = vec![ADMIN_TOKEN.into()];
        tweak(s);
    })
    .await
}

/// One admin API call: status, headers, JSON body (`null` when not JSON).
async fn call(
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let url = format!("{base}{path}");
    let mut req = match method {
        "GET" => http().get(url),
        "POST" => http().post(url),
        m => panic!("method {m}"),
    };
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

async fn get(base: &str, path: &str) -> (u16, Value) {
    let (s, h, v) = call(base, "GET", path, Some(ADMIN_TOKEN), None).await;
    assert_eq!(h["cache-control"], "no-store", "{path}");
    (s, v)
}

async fn post(base: &str, path: &str, body: Value) -> (u16, Value) {
    let (s, h, v) = call(base, "POST", path, Some(ADMIN_TOKEN), Some(body)).await;
    assert_eq!(h["cache-control"], "no-store", "{path}");
    (s, v)
}

/// Sign in as `user` through the development connector in `b`; the token response.
async fn sign_in_with(b: &reqwest::Client, base: &str, user: &str) -> Value {
    let (url, verifier) = authorize_url(base, &[]);
    let back = sign_in(b, base, &url, user).await;
    let code = query_param(&back, "code").unwrap_or_else(|| panic!("no code: {back}"));
    redeem(base, &code, &verifier).await.json().await.unwrap()
}

fn sub(tokens: &Value) -> String {
    claims(tokens["id_token"].as_str().unwrap())["sub"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn userinfo_status(base: &str, access_token: &str) -> u16 {
    http()
        .get(format!("{base}/userinfo"))
        .bearer_auth(access_token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Where `prompt=none` in this browser sends the person: the app's `error`, or
/// `None` when the broker issued a code.
async fn silent_sign_in(b: &reqwest::Client, base: &str) -> Option<String> {
    let (url, _) = authorize_url(base, &[("prompt", "none")]);
    let resp = b.get(&url).send().await.unwrap();
    let back = location(&resp);
    assert!(back.starts_with(APP_REDIRECT), "{back}");
    query_param(&back, "error")
}

// ---------------------------------------------------------------- access to the API

#[tokio::test]
async fn without_tokens_every_admin_path_is_404() {
    let db = TestDb::new(Db::Sqlite);
    let broker = start(&db.url(), None, |_| {}).await;
    for (method, path) in [
        ("GET", "/admin/v1/users"),
        ("GET", "/admin/v1/users/someone"),
        ("POST", "/admin/v1/users/someone/disable"),
        ("GET", "/admin/v1/audit"),
        ("GET", "/admin/v1/whatever"),
    ] {
        for token in [None, Some(ADMIN_TOKEN)] {
            let (status, _, _) = call(&broker.base, method, path, token, None).await;
            assert_eq!(status, 404, "{method} {path}");
        }
    }
    broker.stop().await;
}

#[tokio::test]
async fn missing_or_wrong_admin_tokens_are_401_and_limited_per_address() {
    let db = TestDb::new(Db::Sqlite);
    let broker = admin_broker(&db.url(), |s| s.server.failures_per_minute = 3).await;
    let base = &broker.base;
    let (status, _) = get(base, "/admin/v1/users").await;
    assert_eq!(status, 200);

    let (status, headers, body) = call(base, "GET", "/admin/v1/users", None, None).await;
    assert_eq!(status, 401);
    assert_eq!(
        headers["www-authenticate"],
        "Bearer realm=\"idbridge-admin\""
    );
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(body["error"], "unauthorized");

    let wrong = "not-the-admin-token-0123456789abcdef";
    let (status, headers, body) = call(base, "GET", "/admin/v1/users", Some(wrong), None).await;
    assert_eq!(status, 401);
    assert_eq!(
        headers["www-authenticate"],
        "Bearer realm=\"idbridge-admin\", error=\"invalid_token\""
    );
    assert_eq!(body["error"], "invalid_token");
    // Another scheme is no admin token either; probing unknown paths counts too.
    let resp = http()
        .post(format!("{base}/admin/v1/users/x/disable"))
        .basic_auth("admin", Some(ADMIN_TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    // Three failures: this address is now refused, even with the right token.
    let (status, headers, body) =
        call(base, "GET", "/admin/v1/users", Some(ADMIN_TOKEN), None).await;
    assert_eq!(status, 429);
    assert_eq!(headers["retry-after"], "60");
    assert_eq!(body["error"], "slow_down");

    let refused = log_lines(&["admin_auth_failed", "wrong_token"]);
    assert!(!refused.is_empty());
    assert!(!log_lines(&["admin_auth_failed", "missing_token"]).is_empty());
    assert!(
        log_lines(&[wrong]).is_empty(),
        "a presented token is never logged"
    );
    assert!(
        log_lines(&[ADMIN_TOKEN]).is_empty(),
        "the admin token is never logged"
    );
    broker.stop().await;
}

// ---------------------------------------------------------------- find and show

async fn find_and_show_users(db_url: &str) {
    let broker = admin_broker(db_url, |_| {}).await;
    let base = &broker.base;
    let first = sign_in_with(&browser(), base, "alice").await;
    broker.clock().advance(5);
    let second = sign_in_with(&browser(), base, "alice").await;
    let alice = sub(&first);
    assert_eq!(sub(&second), alice);
    let bob = sub(&tokens_for(base, "bob").await);

    let (status, found) = get(base, "/admin/v1/users?q=ALI").await;
    assert_eq!(status, 200);
    assert_eq!(found["users"].as_array().unwrap().len(), 1, "{found}");
    let u = &found["users"][0];
    assert_eq!(u["id"], alice.as_str());
    assert_eq!(u["name"], "Alice");
    assert_eq!(
        (u["disabled"].clone(), u["identities"].clone()),
        (json!(false), json!(1))
    );
    // By upstream subject, by id, everyone, and nobody.
    let (_, by_subject) = get(base, "/admin/v1/users?q=bob").await;
    assert_eq!(by_subject["users"][0]["id"], bob.as_str());
    let (_, by_id) = get(base, &format!("/admin/v1/users?q={alice}")).await;
    assert_eq!(by_id["users"][0]["id"], alice.as_str());
    let (_, all) = get(base, "/admin/v1/users").await;
    assert_eq!(all["users"].as_array().unwrap().len(), 2);
    let (_, one) = get(base, "/admin/v1/users?limit=1").await;
    assert_eq!(one["users"].as_array().unwrap().len(), 1);
    let (_, none) = get(base, "/admin/v1/users?q=nobody").await;
    assert_eq!(none, json!({"users": []}));

    let (status, shown) = get(base, &format!("/admin/v1/users/{alice}")).await;
    assert_eq!(status, 200);
    assert_eq!(shown["user"]["id"], alice.as_str());
    assert_eq!(shown["identities"].as_array().unwrap().len(), 1);
    assert_eq!(shown["identities"][0]["connector_id"], "dev");
    assert_eq!(shown["identities"][0]["subject"], "alice");
    let sessions = shown["sessions"].as_array().unwrap();
    let grants = shown["grants"].as_array().unwrap();
    assert_eq!((sessions.len(), grants.len()), (2, 2), "{shown}");
    // Newest first; each grant names the session it was made under (the ID token's sid).
    assert_eq!(
        grants[0]["sso_session_id"],
        claims(second["id_token"].as_str().unwrap())["sid"]
    );
    assert_eq!(sessions[0]["id"], grants[0]["sso_session_id"]);
    assert_eq!(grants[0]["client_id"], APP_ID);
    assert_eq!(grants[0]["scope"], "openid profile offline_access");

    // Bad input: a clear 400 naming the problem; unknown ids: 404.
    for (path, needle) in [
        ("/admin/v1/users?limit=0", "limit"),
        ("/admin/v1/users?limit=501", "limit"),
        ("/admin/v1/users?limit=ten", "limit"),
        ("/admin/v1/users?query=alice", "query"),
        ("/admin/v1/users?q=a&q=b", "more than once"),
    ] {
        let (status, err) = get(base, path).await;
        assert_eq!(status, 400, "{path}");
        assert_eq!(err["error"], "invalid_request", "{path}");
        let d = err["error_description"].as_str().unwrap();
        assert!(d.contains(needle), "{path}: {d}");
    }
    let (status, err) = get(base, "/admin/v1/users/nobody").await;
    assert_eq!(status, 404);
    assert_eq!(
        err,
        json!({"error": "not_found", "error_description": "no user with id \"nobody\""})
    );
    let (status, err) = get(base, "/admin/v1/nothing-here").await;
    assert_eq!((status, err["error"].clone()), (404, json!("not_found")));
    broker.stop().await;
}
both_backends!(find_and_show_users);

// ---------------------------------------------------------------- disable, enable, revoke

async fn disabling_stops_tokens_at_once_and_refuses_sign_in_until_enabled(db_url: &str) {
    let broker = admin_broker(db_url, |_| {}).await;
    let base = &broker.base;
    let b = browser();
    let tokens = sign_in_with(&b, base, "alice").await;
    let alice = sub(&tokens);
    let access = tokens["access_token"].as_str().unwrap();
    let refresh_token = tokens["refresh_token"].as_str().unwrap();
    let bob = tokens_for(base, "bob").await;
    assert_eq!(userinfo_status(base, access).await, 200);
    assert_eq!(introspect(base, access).await["active"], true);

    let (status, out) = post(
        base,
        &format!("/admin/v1/users/{alice}/disable"),
        json!({"reason": "account reported stolen"}),
    )
    .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["disabled"], true);
    assert_eq!(out["was_disabled"], false);
    assert_eq!(
        (out["sessions_ended"].clone(), out["grants_revoked"].clone()),
        (json!(1), json!(1))
    );

    // Her access token is dead at once, and so is her refresh token.
    assert_eq!(userinfo_status(base, access).await, 401);
    assert_eq!(introspect(base, access).await["active"], false);
    assert_eq!(introspect(base, refresh_token).await["active"], false);
    let refreshed = refresh(base, refresh_token).await;
    assert_eq!(refreshed.status(), 400);
    assert_eq!(
        refreshed.json::<Value>().await.unwrap()["error"],
        "invalid_grant"
    );
    // Her browser's session is over, and a new sign-in is refused.
    assert_eq!(
        silent_sign_in(&b, base).await.as_deref(),
        Some("login_required")
    );
    let (url, _) = authorize_url(base, &[]);
    let back = sign_in(&browser(), base, &url, "alice").await;
    assert_eq!(
        query_param(&back, "error").as_deref(),
        Some("access_denied"),
        "{back}"
    );
    // Bob is untouched.
    assert_eq!(
        userinfo_status(base, bob["access_token"].as_str().unwrap()).await,
        200
    );

    let (_, shown) = get(base, &format!("/admin/v1/users/{alice}")).await;
    assert_eq!(shown["user"]["disabled"], true);
    assert_eq!(shown["sessions"], json!([]));
    assert_eq!(shown["grants"], json!([]));
    // Disabling again keeps the first time.
    let (_, again) = post(base, &format!("/admin/v1/users/{alice}/disable"), json!({})).await;
    assert_eq!(again["was_disabled"], true);
    assert_eq!(again["disabled_at"], out["disabled_at"]);

    // Enabled: she signs in again; the old tokens stay dead.
    let (status, enabled) = post(base, &format!("/admin/v1/users/{alice}/enable"), json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(
        (enabled["disabled"].clone(), enabled["was_disabled"].clone()),
        (json!(false), json!(true))
    );
    let fresh = sign_in_with(&browser(), base, "alice").await;
    assert_eq!(sub(&fresh), alice);
    assert_eq!(
        userinfo_status(base, fresh["access_token"].as_str().unwrap()).await,
        200
    );
    assert_eq!(userinfo_status(base, access).await, 401);

    // The audit log tells the story, naming the admin token by its id only.
    let (_, audit) = get(base, &format!("/admin/v1/audit?user={alice}")).await;
    let events: Vec<&str> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        [
            "login",
            "admin_enable",
            "admin_disable",
            "login_denied",
            "admin_disable",
            "login"
        ]
    );
    let disable = &audit["events"][4];
    assert_eq!(disable["detail"]["reason"], "account reported stolen");
    assert_eq!(
        disable["detail"]["admin"],
        idbridge_server::admin::tokens::token_id(ADMIN_TOKEN)
    );
    assert_eq!(disable["detail"]["via"], "api");
    assert_eq!(disable["ip"], "127.0.0.1");
    assert_eq!(audit["events"][3]["detail"]["reason"], "disabled");
    assert!(!audit.to_string().contains(ADMIN_TOKEN));
    assert!(!log_lines(&["action=\"disable\"", alice.as_str()]).is_empty());
    broker.stop().await;
}
both_backends!(disabling_stops_tokens_at_once_and_refuses_sign_in_until_enabled);

async fn revoking_signs_a_person_out_everywhere_but_lets_them_back_in(db_url: &str) {
    let broker = admin_broker(db_url, |_| {}).await;
    let base = &broker.base;
    let (laptop, phone) = (browser(), browser());
    let t1 = sign_in_with(&laptop, base, "alice").await;
    let t2 = sign_in_with(&phone, base, "alice").await;
    let alice = sub(&t1);
    assert_eq!(silent_sign_in(&laptop, base).await, None, "SSO before");

    let (status, out) = post(
        base,
        &format!("/admin/v1/users/{alice}/revoke"),
        json!({"reason": "lost phone"}),
    )
    .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["sessions_ended"], 2);
    assert_eq!(out["grants_revoked"], 2);
    assert_eq!(out["disabled"], false);

    for b in [&laptop, &phone] {
        assert_eq!(
            silent_sign_in(b, base).await.as_deref(),
            Some("login_required")
        );
        // Without prompt=none the person is asked to sign in again (the login page).
        let (url, _) = authorize_url(base, &[]);
        let resp = b.get(&url).send().await.unwrap();
        assert_eq!(resp.status(), 200, "the login page, not a code");
    }
    for t in [&t1, &t2] {
        let access = t["access_token"].as_str().unwrap();
        assert_eq!(userinfo_status(base, access).await, 401);
        assert_eq!(introspect(base, access).await["active"], false);
        assert_eq!(
            refresh(base, t["refresh_token"].as_str().unwrap())
                .await
                .status(),
            400
        );
    }
    // Not disabled: signing in again works, same account.
    let back = sign_in_with(&laptop, base, "alice").await;
    assert_eq!(sub(&back), alice);
    assert_eq!(
        userinfo_status(base, back["access_token"].as_str().unwrap()).await,
        200
    );
    let (status, err) = post(base, "/admin/v1/users/nobody/revoke", json!({})).await;
    assert_eq!((status, err["error"].clone()), (404, json!("not_found")));
    let (status, err) = post(
        base,
        &format!("/admin/v1/users/{alice}/revoke"),
        json!({"reasn": "x"}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        err["error_description"].as_str().unwrap().contains("reasn"),
        "{err}"
    );
    let (status, _) = post(
        base,
        &format!("/admin/v1/users/{alice}/revoke"),
        json!({"reason": "a".repeat(501)}),
    )
    .await;
    assert_eq!(status, 400);
    broker.stop().await;
}
both_backends!(revoking_signs_a_person_out_everywhere_but_lets_them_back_in);

// ---------------------------------------------------------------- unlink, with WeChat

/// A broker with WeChat website login (`wechat`) and Official Account login
/// (`wechat-mp`) on one simulator, bound to one Open Platform account.
struct WeChat {
    sim: Simulator,
    broker: Broker,
}

impl WeChat {
    async fn start(db_url: &str) -> WeChat {
        let sim = Simulator::start(SimConfig::dev_default("127.0.0.1"))
            .await
            .unwrap();
        let api = sim.base_url();
        let broker = admin_broker(db_url, move |s| {
            s.connectors = vec![
                json!({
                    "id": "wechat", "type": "wechat-web", "name": "WeChat QR",
                    "appid": dev::WEB_APPID, "appsecret": dev::WEB_SECRET,
                    "open_platform_id": dev::OPEN_PLATFORM_ID,
                    "api_base_url": api, "open_base_url": api, "timeout_secs": 1.0,
                }),
                json!({
                    "id": "wechat-mp", "type": "wechat-mp", "name": "WeChat",
                    "appid": dev::MP_APPID, "appsecret": dev::MP_SECRET,
                    "open_platform_id": dev::OPEN_PLATFORM_ID, "scope": "snsapi_userinfo",
                    "api_base_url": api, "open_base_url": api, "timeout_secs": 1.0,
                }),
            ];
        })
        .await;
        WeChat { sim, broker }
    }

    /// A whole sign-in of `user` in a fresh browser with this User-Agent (a
    /// desktop gets the QR connector, WeChat's browser the Official Account);
    /// the app's token response.
    async fn sign_in(&self, ua: &str, user: &str) -> Value {
        let b = reqwest::Client::builder()
            .cookie_store(true)
            .user_agent(ua)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let base = &self.broker.base;
        let (url, verifier) = authorize_url(base, &[]);
        let url = url.replace("&connector=dev", "");
        let resp = b.get(&url).send().await.unwrap();
        assert_eq!(resp.status(), 302);
        let callback = self.sim.scan(&location(&resp), user).unwrap().remove(0);
        let resp = b.get(&callback).send().await.unwrap();
        let code = query_param(&location(&resp), "code").expect("a code for the app");
        redeem(base, &code, &verifier).await.json().await.unwrap()
    }
}

async fn unlinking_keeps_the_account_reachable_and_refuses_the_last_identity(db_url: &str) {
    let w = WeChat::start(db_url).await;
    let base = &w.broker.base;
    let alice = sub(&w.sign_in(DESKTOP_UA, dev::USER_ALICE).await);
    assert_eq!(
        sub(&w.sign_in(WECHAT_UA, dev::USER_ALICE).await),
        alice,
        "one account"
    );
    let (_, shown) = get(base, &format!("/admin/v1/users/{alice}")).await;
    let subject_of = |connector: &str| {
        shown["identities"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["connector_id"] == connector)
            .unwrap()["subject"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (web, mp) = (subject_of("wechat"), subject_of("wechat-mp"));
    let unlink = format!("/admin/v1/users/{alice}/unlink");

    // Bad requests change nothing.
    for (body, needle) in [
        (json!({}), "connector_id is required"),
        (json!({"connector_id": "wechat-mp"}), "subject is required"),
        (
            json!({"connector_id": "wechat-mp", "subject": mp, "forse": true}),
            "forse",
        ),
        (json!(["wechat-mp"]), "JSON body"),
    ] {
        let (status, err) = post(base, &unlink, body).await;
        assert_eq!(status, 400);
        let d = err["error_description"].as_str().unwrap();
        assert!(d.contains(needle), "{d}");
    }
    let resp = http()
        .post(format!("{base}{unlink}"))
        .bearer_auth(ADMIN_TOKEN)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let (status, err) = post(
        base,
        &unlink,
        json!({"connector_id": "wechat-mp", "subject": "o-nobody"}),
    )
    .await;
    assert_eq!((status, err["error"].clone()), (404, json!("not_found")));
    let (status, _) = post(
        base,
        "/admin/v1/users/nobody/unlink",
        json!({"connector_id": "wechat-mp", "subject": mp}),
    )
    .await;
    assert_eq!(status, 404);

    // The Official Account identity goes; the website identity carries the same
    // unionid, so it stays linked and her next sign-in in WeChat comes back here.
    let (status, out) = post(
        base,
        &unlink,
        json!({"connector_id": "wechat-mp", "subject": mp}),
    )
    .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(
        (
            out["identities_left"].clone(),
            out["link_key_removed"].clone()
        ),
        (json!(1), json!(false))
    );
    let (_, shown) = get(base, &format!("/admin/v1/users/{alice}")).await;
    assert_eq!(shown["user"]["identities"], 1);
    assert_eq!(sub(&w.sign_in(WECHAT_UA, dev::USER_ALICE).await), alice);
    let (_, shown) = get(base, &format!("/admin/v1/users/{alice}")).await;
    assert_eq!(shown["user"]["identities"], 2, "relinked by the unionid");

    // Down to the last identity: refused without force, and nothing changes.
    post(
        base,
        &unlink,
        json!({"connector_id": "wechat-mp", "subject": mp}),
    )
    .await;
    let (status, err) = post(
        base,
        &unlink,
        json!({"connector_id": "wechat", "subject": web}),
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(err["error"], "last_identity");
    let (_, shown) = get(base, &format!("/admin/v1/users/{alice}")).await;
    assert_eq!(shown["identities"][0]["subject"], web.as_str());
    // Forced: the unionid goes with it, and her next sign-in is a new account.
    let (status, out) = post(
        base,
        &unlink,
        json!({"connector_id": "wechat", "subject": web, "force": true, "reason": "merge request 12"}),
    )
    .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(
        (
            out["identities_left"].clone(),
            out["link_key_removed"].clone()
        ),
        (json!(0), json!(true))
    );
    let newcomer = sub(&w.sign_in(DESKTOP_UA, dev::USER_ALICE).await);
    assert_ne!(newcomer, alice, "a new account, a new sub");
    let (_, found) = get(base, &format!("/admin/v1/users?q={web}")).await;
    assert_eq!(found["users"][0]["id"], newcomer.as_str());
    let (_, old) = get(base, &format!("/admin/v1/users/{alice}")).await;
    assert_eq!(old["user"]["identities"], 0);

    let (_, audit) = get(
        base,
        &format!("/admin/v1/audit?user={alice}&event=admin_unlink"),
    )
    .await;
    let details: Vec<&Value> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["detail"])
        .collect();
    assert_eq!(details.len(), 3);
    assert_eq!(details[0]["forced"], true);
    assert_eq!(details[0]["reason"], "merge request 12");
    assert_eq!(details[0]["subject"], web.as_str());
    assert_eq!(audit["events"][0]["connector_id"], "wechat");
    w.broker.stop().await;
}
both_backends!(unlinking_keeps_the_account_reachable_and_refuses_the_last_identity);

// ---------------------------------------------------------------- audit log

async fn the_audit_log_filters_by_user_event_and_time_and_pages(db_url: &str) {
    let broker = admin_broker(db_url, |_| {}).await;
    let base = &broker.base;
    let start = broker.clock().now();
    let alice = sub(&tokens_for(base, "alice").await);
    broker.clock().advance(3600);
    let bob = sub(&tokens_for(base, "bob").await);
    post(base, &format!("/admin/v1/users/{bob}/disable"), json!({})).await;
    broker.clock().advance(3600);
    post(base, &format!("/admin/v1/users/{bob}/enable"), json!({})).await;

    let events = |v: &Value| -> Vec<(String, String)> {
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["event"].as_str().unwrap().to_owned(),
                    e["user_id"].as_str().unwrap_or("-").to_owned(),
                )
            })
            .collect()
    };
    let (status, all) = get(base, "/admin/v1/audit").await;
    assert_eq!(status, 200);
    let owned = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    };
    assert_eq!(
        events(&all),
        owned(&[
            ("admin_enable", &bob),
            ("admin_disable", &bob),
            ("login", &bob),
            ("login", &alice)
        ])
    );
    assert_eq!(all["next_before"], Value::Null);
    let (_, logins) = get(base, "/admin/v1/audit?event=login").await;
    assert_eq!(
        events(&logins),
        owned(&[("login", &bob), ("login", &alice)])
    );
    let (_, admin) = get(base, "/admin/v1/audit?event=admin_disable,admin_enable").await;
    assert_eq!(events(&admin).len(), 2);
    let (_, of_alice) = get(base, &format!("/admin/v1/audit?user={alice}")).await;
    assert_eq!(events(&of_alice), owned(&[("login", &alice)]));
    // Time windows: since is inclusive, until exclusive; "90m" means 90 minutes ago.
    let (_, recent) = get(base, "/admin/v1/audit?since=90m").await;
    assert_eq!(events(&recent).len(), 3);
    let (_, early) = get(base, &format!("/admin/v1/audit?until={}", start + 60)).await;
    assert_eq!(events(&early), owned(&[("login", &alice)]));
    let since = idbridge_server::admin::time::format(start + 3600);
    let (_, middle) = get(
        base,
        &format!("/admin/v1/audit?since={since}&until={}", start + 7200),
    )
    .await;
    assert_eq!(
        events(&middle),
        owned(&[("admin_disable", &bob), ("login", &bob)])
    );

    // Paging: a full page says where the next one starts.
    let (_, page1) = get(base, "/admin/v1/audit?limit=3").await;
    assert_eq!(events(&page1).len(), 3);
    let next = page1["next_before"].as_i64().unwrap();
    assert_eq!(next, page1["events"][2]["id"].as_i64().unwrap());
    let (_, page2) = get(base, &format!("/admin/v1/audit?limit=3&before={next}")).await;
    assert_eq!(events(&page2), owned(&[("login", &alice)]));
    assert_eq!(page2["next_before"], Value::Null);

    for (query, needle) in [
        ("since=yesterday", "since"),
        ("until=2026-02-30", "until"),
        ("since=2h&until=3h", "before until"),
        ("before=abc", "before"),
        ("before=0", "before"),
        ("event=Login", "event"),
        ("limit=-1", "limit"),
        ("who=alice", "who"),
    ] {
        let (status, err) = get(base, &format!("/admin/v1/audit?{query}")).await;
        assert_eq!(status, 400, "{query}");
        let d = err["error_description"].as_str().unwrap();
        assert!(d.contains(needle), "{query}: {d}");
    }
    broker.stop().await;
}
both_backends!(the_audit_log_filters_by_user_event_and_time_and_pages);

// ---------------------------------------------------------------- the command line

fn idbridge() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_idbridge"));
    cmd.env_remove("IDBRIDGE_LOG").env("USER", "root");
    cmd
}

fn temp_dir(label: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "idbridge-admin-{label}-{}-{}",
        std::process::id(),
        idbridge_tokens::random_alnum(8).unwrap()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A config file for the CLI: the broker's database and master key.
fn cli_config(dir: &std::path::Path, db_url: &str) -> std::path::PathBuf {
    let path = dir.join("idbridge.toml");
    std::fs::write(
        &path,
        format!(
            "issuer = \"http://127.0.0.1:9\"\n[storage]\nurl = \"{db_url}\"\n[signing]\nmaster_key = \"{MASTER_KEY}\"\n"
        ),
    )
    .unwrap();
    path
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(args: &[&str]) -> Run {
    let out = idbridge().args(args).output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_command_works_on_the_database_of_a_running_broker() {
    let db = TestDb::new(Db::Sqlite);
    let broker = start(&db.url(), None, |_| {}).await;
    let base = broker.base.clone();
    let dir = temp_dir("cli");
    let config = cli_config(&dir, &db.url());
    let config = config.to_str().unwrap();
    let tokens = tokens_for(&base, "alice").await;
    let alice = sub(&tokens);
    let access = tokens["access_token"].as_str().unwrap().to_owned();

    let r = run(&["admin", "find", "alice", "--config", config]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.starts_with("ID "), "{}", r.stdout);
    assert!(r.stdout.contains(&alice), "{}", r.stdout);
    let r = run(&["admin", "find", "alice", "--json", "--config", config]);
    let found: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: exit {} stdout {:?} stderr {:?}",
            r.code, r.stdout, r.stderr
        )
    });
    assert_eq!(found["users"][0]["id"], alice.as_str());
    assert_eq!(found["users"][0]["identities"], 1);
    let r = run(&["admin", "show", &alice, "--json", "--config", config]);
    let shown: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: exit {} stdout {:?} stderr {:?}",
            r.code, r.stdout, r.stderr
        )
    });
    assert_eq!(
        (
            shown["sessions"].as_array().unwrap().len(),
            shown["grants"].as_array().unwrap().len()
        ),
        (1, 1)
    );

    // Exit codes: 1 not found, 2 bad usage or config or refused, and nothing changed.
    let r = run(&["admin", "show", "nobody", "--config", config]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("no user with id \"nobody\""),
        "{}",
        r.stderr
    );
    assert_eq!(
        run(&["admin", "disable", "nobody", "--config", config]).code,
        1
    );
    assert_eq!(
        run(&["admin", "unlink", &alice, "dev", "bob", "--config", config]).code,
        1
    );
    assert_eq!(
        run(&["admin", "find", "--limit", "0", "--config", config]).code,
        2
    );
    assert_eq!(
        run(&["admin", "audit", "--until", "soon", "--config", config]).code,
        2
    );
    assert_eq!(
        run(&["admin", "show", "--config", config]).code,
        2,
        "USER is required"
    );
    assert_eq!(
        run(&["admin", "find", "--config", "/nonexistent/idbridge.toml"]).code,
        2
    );
    let r = run(&[
        "admin", "unlink", &alice, "dev", "alice", "--config", config,
    ]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("last identity"), "{}", r.stderr);
    assert_eq!(
        userinfo_status(&base, &access).await,
        200,
        "nothing changed so far"
    );

    // A change made by the command is seen by the running broker at once.
    let r = run(&[
        "admin",
        "disable",
        &alice,
        "--reason",
        "from the CLI",
        "--json",
        "--config",
        config,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let out: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: exit {} stdout {:?} stderr {:?}",
            r.code, r.stdout, r.stderr
        )
    });
    assert_eq!(
        (out["disabled"].clone(), out["grants_revoked"].clone()),
        (json!(true), json!(1))
    );
    assert_eq!(userinfo_status(&base, &access).await, 401);
    assert_eq!(introspect(&base, &access).await["active"], false);
    let (url, _) = authorize_url(&base, &[]);
    let back = sign_in(&browser(), &base, &url, "alice").await;
    assert_eq!(
        query_param(&back, "error").as_deref(),
        Some("access_denied")
    );
    let r = run(&["admin", "enable", &alice, "--config", config]);
    assert_eq!(
        (r.code, r.stdout.trim()),
        (0, format!("user {alice} enabled").as_str())
    );
    let again = sign_in_with(&browser(), &base, "alice").await;
    assert_eq!(
        userinfo_status(&base, again["access_token"].as_str().unwrap()).await,
        200
    );
    let r = run(&["admin", "revoke", &alice, "--config", config]);
    assert_eq!(
        r.stdout.trim(),
        format!("user {alice}: 1 session(s) ended, 1 grant(s) revoked")
    );
    assert_eq!(
        userinfo_status(&base, again["access_token"].as_str().unwrap()).await,
        401
    );
    let r = run(&[
        "admin", "unlink", &alice, "dev", "alice", "--force", "--config", config,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("no identity left"), "{}", r.stdout);

    // The audit log names the command and the operating-system user.
    let r = run(&[
        "admin",
        "audit",
        "--user",
        &alice,
        "--event",
        "admin_disable,admin_unlink",
        "--json",
        "--config",
        config,
    ]);
    let audit: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: exit {} stdout {:?} stderr {:?}",
            r.code, r.stdout, r.stderr
        )
    });
    let events = audit["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["event"], "admin_unlink");
    assert_eq!(events[1]["detail"]["admin"], "cli:root");
    assert_eq!(events[1]["detail"]["via"], "cli");
    assert_eq!(events[1]["detail"]["reason"], "from the CLI");
    assert_eq!(events[1]["ip"], Value::Null);
    let r = run(&["admin", "audit", "--limit", "2", "--config", config]);
    assert!(r.stdout.contains("(more: --before "), "{}", r.stdout);
    broker.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_token_from_a_token_file_opens_the_api_of_a_served_broker() {
    let dir = temp_dir("serve");
    let r = run(&["admin", "generate-token"]);
    assert_eq!(r.code, 0);
    let token = r.stdout.trim().to_owned();
    assert_eq!(token.len(), 43);
    assert!(r
        .stderr
        .contains(&idbridge_server::admin::tokens::token_id(&token)));
    std::fs::write(dir.join("admin.tokens"), format!("# ops team\n{token}\n\n")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let config = dir.join("idbridge.toml");
    let db = dir.join("idbridge.db");
    let head = format!(
        "issuer = \"{base}\"\n[server]\nbind = \"127.0.0.1:{port}\"\n[storage]\nurl = \"sqlite://{}\"\n[signing]\nmaster_key = \"{MASTER_KEY}\"\nalgorithms = [\"RS256\"]\n",
        db.display()
    );
    std::fs::write(
        &config,
        format!(
            "{head}[admin]\ntoken_file = \"{}\"\n",
            dir.join("admin.tokens").display()
        ),
    )
    .unwrap();
    let r = run(&["doctor", "--config", config.to_str().unwrap()]);
    assert!(
        !r.stdout.contains("admin."),
        "a generated token draws no warning: {}",
        r.stdout
    );

    let mut child = idbridge()
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut up = false;
    for _ in 0..300 {
        if http().get(format!("{base}/healthz")).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let status = |token: Option<String>| {
        let base = base.clone();
        async move {
            let mut req = http().get(format!("{base}/admin/v1/users"));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            req.send().await.unwrap().status().as_u16()
        }
    };
    let (with, wrong) = if up {
        (
            status(Some(token.clone())).await,
            status(Some(format!("{token}x"))).await,
        )
    } else {
        (0, 0)
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(up, "the broker started");
    assert_eq!((with, wrong), (200, 401));

    // Tokens from the environment, space-separated; tokens and token_file together is a mistake.
    let out = idbridge()
        .args(["doctor", "--config", config.to_str().unwrap()])
        .env(
            "IDBRIDGE__ADMIN__TOKENS",
            format!("{token} abcabcabcabcabcabcabcabcabcabcabc"),
        )
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("admin.token_file: set either tokens or token_file"),
        "{report}"
    );
    std::fs::write(&config, &head).unwrap();
    let out = idbridge()
        .args(["doctor", "--config", config.to_str().unwrap()])
        .env(
            "IDBRIDGE__ADMIN__TOKENS",
            format!("{token} abcabcabcabcabcabcabcabcabcabcabc"),
        )
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}");
    assert!(report.contains("warning admin.tokens[1]: weak"), "{report}");
    assert!(!report.contains("admin.tokens[0]"), "{report}");

    // A weak token: doctor warns; a short one stops start-up, naming the key.
    std::fs::write(
        &config,
        format!("{head}[admin]\ntokens = [\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"]\n"),
    )
    .unwrap();
    let r = run(&["doctor", "--config", config.to_str().unwrap()]);
    assert!(
        r.stdout.contains("warning admin.tokens[0]: weak"),
        "{}",
        r.stdout
    );
    std::fs::write(
        &config,
        format!("{head}[admin]\ntokens = [\"short-token\"]\n"),
    )
    .unwrap();
    let r = run(&["serve", "--config", config.to_str().unwrap()]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("admin.tokens[0]") && r.stderr.contains("too short"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("short-token"), "the token is not echoed");
    let _ = std::fs::remove_dir_all(dir);
}

// ---------------------------------------------------------------- docs/admin.md, executed

/// The values the examples in docs/admin.md use in place of what a run produces.
const DOC_USER: &str = "mJ2a5Yk0QbKc7pWz9RtV1w";
const DOC_TOKEN_ID: &str = "token:Hk3vQ9xZ2m";
const DOC_CONFIG: &str = "/etc/idbridge/idbridge.toml";

fn admin_doc() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/admin.md")).unwrap()
}

/// The bodies of the fenced blocks with this info string, in order.
fn fenced(doc: &str, lang: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in doc.lines() {
        match &mut current {
            None if line.trim_end() == format!("```{lang}") => current = Some(Vec::new()),
            Some(lines) if line.trim_end() == "```" => {
                out.push(lines.join("\n"));
                current = None;
            }
            Some(lines) => lines.push(line),
            None => {}
        }
    }
    out
}

/// Head lines and body of an HTTP message as written in the doc.
fn message(text: &str) -> (Vec<String>, String) {
    let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
    (head.lines().map(str::to_owned).collect(), body.to_owned())
}

/// Does `actual` have the documented shape? Same keys, same types, arrays of
/// the same length; booleans, the mapped placeholders and the values that are
/// the same on every run are compared exactly.
fn assert_shape(doc: &Value, actual: &Value, at: &str, map: &HashMap<&str, String>) {
    const EXACT_STRINGS: &[&str] = &[
        "error",
        "error_description",
        "event",
        "connector_id",
        "client_id",
        "subject",
        "link_scope",
        "link_key",
        "name",
        "scope",
        "via",
        "reason",
    ];
    const EXACT_NUMBERS: &[&str] = &[
        "identities",
        "identities_left",
        "sessions_ended",
        "grants_revoked",
    ];
    let key = at.rsplit('.').next().unwrap_or("");
    match (doc, actual) {
        (Value::Object(d), Value::Object(a)) => {
            let (dk, ak): (Vec<_>, Vec<_>) = (d.keys().collect(), a.keys().collect());
            assert_eq!(dk, ak, "keys of {at}");
            for (k, v) in d {
                assert_shape(v, &a[k], &format!("{at}.{k}"), map);
            }
        }
        (Value::Array(d), Value::Array(a)) => {
            assert_eq!(d.len(), a.len(), "length of {at}: {actual}");
            for (i, (dv, av)) in d.iter().zip(a).enumerate() {
                assert_shape(dv, av, &format!("{at}[{i}]"), map);
            }
        }
        (Value::String(d), Value::String(a)) => {
            if let Some(mapped) = map.get(d.as_str()) {
                assert_eq!(a, mapped, "{at}");
            } else if EXACT_STRINGS.contains(&key) {
                assert_eq!(a, d, "{at}");
            }
        }
        (Value::Number(d), Value::Number(a)) => {
            if EXACT_NUMBERS.contains(&key) {
                assert_eq!(a, d, "{at}");
            }
        }
        (Value::Bool(d), Value::Bool(a)) => assert_eq!(a, d, "{at}"),
        (Value::Null, Value::Null) => {}
        _ => panic!("{at}: documented {doc}, got {actual}"),
    }
}

/// Alice signs in with the website QR on her desktop, then five minutes later
/// inside WeChat with the Official Account: the situation docs/admin.md shows.
async fn doc_world(db_url: &str) -> (WeChat, String) {
    let w = WeChat::start(db_url).await;
    let alice = sub(&w.sign_in(DESKTOP_UA, dev::USER_ALICE).await);
    w.broker.clock().advance(331);
    assert_eq!(sub(&w.sign_in(WECHAT_UA, dev::USER_ALICE).await), alice);
    (w, alice)
}

async fn the_api_examples_in_the_admin_doc_are_what_the_broker_does(db_url: &str) {
    let (w, alice) = doc_world(db_url).await;
    let map: HashMap<&str, String> = HashMap::from([
        (DOC_USER, alice.clone()),
        (
            DOC_TOKEN_ID,
            idbridge_server::admin::tokens::token_id(ADMIN_TOKEN),
        ),
    ]);
    let blocks = fenced(&admin_doc(), "http");
    let mut examples = 0;
    let mut i = 0;
    while i < blocks.len() {
        let (head, body) = message(&blocks[i]);
        let request_line = head[0].clone();
        if request_line.starts_with("HTTP/") {
            panic!("a response without a request: {request_line}");
        }
        let (resp_head, resp_body) = message(&blocks[i + 1]);
        i += 2;
        let mut parts = request_line.split(' ');
        let (method, target) = (
            parts.next().unwrap(),
            parts.next().unwrap().replace(DOC_USER, &alice),
        );
        let mut req = match method {
            "GET" => http().get(format!("{}{target}", w.broker.base)),
            "POST" => http().post(format!("{}{target}", w.broker.base)),
            m => panic!("{m}"),
        };
        for h in &head[1..] {
            let (name, value) = h.split_once(": ").unwrap();
            if name != "Host" {
                req = req.header(name, value.replace("$ADMIN_TOKEN", ADMIN_TOKEN));
            }
        }
        if !body.is_empty() {
            req = req.body(body.replace(DOC_USER, &alice));
        }
        let resp = req.send().await.unwrap();
        let status: u16 = resp_head[0].split(' ').nth(1).unwrap().parse().unwrap();
        assert_eq!(resp.status().as_u16(), status, "{request_line}");
        for h in &resp_head[1..] {
            let (name, value) = h.split_once(": ").unwrap();
            assert_eq!(
                resp.headers().get(name).and_then(|v| v.to_str().ok()),
                Some(value),
                "{request_line}: header {name}"
            );
        }
        let actual: Value = resp.json().await.unwrap();
        let documented: Value = serde_json::from_str(&resp_body)
            .unwrap_or_else(|e| panic!("{request_line}: the documented body is not JSON: {e}"));
        assert_shape(&documented, &actual, &request_line, &map);
        examples += 1;
    }
    assert!(
        examples >= 13,
        "found only {examples} API examples in docs/admin.md"
    );
    w.broker.stop().await;
}
both_backends!(the_api_examples_in_the_admin_doc_are_what_the_broker_does);

/// Words of a line with the run's values put back to the doc's: the user id,
/// and every UTC time as `<time>`.
fn normalized(text: &str, alice: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|line| {
            line.split_whitespace()
                .map(|w| {
                    if w.len() == 20
                        && w.ends_with('Z')
                        && idbridge_server::admin::time::parse(w, 0).is_ok()
                    {
                        "<time>".to_owned()
                    } else {
                        w.replace(alice, DOC_USER)
                    }
                })
                .collect()
        })
        .collect()
}

/// Split a documented command line into arguments ("double quotes" group words).
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            ' ' if !quoted => {
                if any {
                    words.push(std::mem::take(&mut current));
                    any = false;
                }
            }
            c => {
                current.push(c);
                any = true;
            }
        }
    }
    if any {
        words.push(current);
    }
    words
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_command_examples_in_the_admin_doc_are_what_the_command_does() {
    let db = TestDb::new(Db::Sqlite);
    let (w, alice) = doc_world(&db.url()).await;
    let dir = temp_dir("doc");
    let config = cli_config(&dir, &db.url());
    let map: HashMap<&str, String> = HashMap::from([(DOC_USER, alice.clone())]);
    let mut commands = 0;
    for block in fenced(&admin_doc(), "sh") {
        if !block.starts_with("$ ") {
            continue; // set-up snippets, not a session
        }
        let mut last_code = None;
        let mut steps: Vec<(String, Vec<String>)> = Vec::new();
        for line in block.lines() {
            match line.strip_prefix("$ ") {
                Some(cmd) => steps.push((cmd.to_owned(), Vec::new())),
                None => steps.last_mut().unwrap().1.push(line.to_owned()),
            }
        }
        for (i, (cmd, expected)) in steps.iter().enumerate() {
            if cmd == "echo $?" {
                assert_eq!(
                    Some(expected.join("\n")),
                    last_code.map(|c: i32| c.to_string()),
                    "exit code"
                );
                continue;
            }
            let words = shell_words(
                &cmd.replace(DOC_USER, &alice)
                    .replace(DOC_CONFIG, config.to_str().unwrap()),
            );
            assert_eq!(words[0], "idbridge", "{cmd}");
            let out = idbridge().args(&words[1..]).output().unwrap();
            let code = out.status.code().unwrap_or(-1);
            let checked = steps.get(i + 1).is_some_and(|(next, _)| next == "echo $?");
            assert!(
                checked || code == 0,
                "{cmd}: exit {code}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            last_code = Some(code);
            let printed = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let expected = expected.join("\n");
            if expected.starts_with('{') {
                let documented: Value = serde_json::from_str(&expected).unwrap();
                let actual: Value = serde_json::from_str(&printed).unwrap();
                assert_shape(&documented, &actual, cmd, &map);
            } else {
                assert_eq!(
                    normalized(&printed, &alice),
                    normalized(&expected, &alice),
                    "{cmd}\n{printed}"
                );
            }
            commands += 1;
        }
    }
    assert!(
        commands >= 10,
        "found only {commands} commands in docs/admin.md"
    );
    w.broker.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}
