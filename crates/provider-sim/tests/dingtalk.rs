//! The DingTalk fake answers as DingTalk documents it, over real HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use provider_sim::dingtalk::{dev, open_id, Decision, DingTalkSim, Faults};
use serde_json::{json, Value};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn location(r: &reqwest::Response) -> String {
    r.headers()["location"].to_str().unwrap().to_owned()
}

fn param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

async fn dev_sim() -> DingTalkSim {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    dev::start("http://127.0.0.1:9", listener).await.unwrap()
}

fn authorize_url(sim: &DingTalkSim, scope: &str) -> String {
    format!(
        "{}/oauth2/auth?redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcallback%2Fdingtalk&response_type=code&client_id={}&scope={scope}&state=S1&prompt=consent",
        sim.base_url(),
        dev::CLIENT_ID
    )
}

async fn token(sim: &DingTalkSim, body: Value) -> reqwest::Response {
    client()
        .post(format!("{}/v1.0/oauth2/userAccessToken", sim.base_url()))
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn code_body(code: &str) -> Value {
    json!({"clientId": dev::CLIENT_ID, "clientSecret": dev::CLIENT_SECRET, "code": code, "grantType": "authorization_code"})
}

#[tokio::test]
async fn the_dev_page_asks_who_signs_in_and_the_authcode_gets_the_person() {
    let sim = dev_sim().await;
    let page = client()
        .get(authorize_url(&sim, "openid"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("Sign in as 张三 Zhang San"), "{html}");
    assert!(html.contains("Cancel 取消"), "{html}");
    let href = html
        .split("<a href=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .replace("&amp;", "&");
    let back = client()
        .get(format!("{}{href}", sim.base_url()))
        .send()
        .await
        .unwrap();
    let to = location(&back);
    assert!(
        to.starts_with("http://127.0.0.1:9/callback/dingtalk?"),
        "{to}"
    );
    assert_eq!(param(&to, "state").as_deref(), Some("S1"));
    assert!(
        param(&to, "code").is_none(),
        "DingTalk says authCode, not code"
    );
    let code = param(&to, "authCode").unwrap();
    let answer = token(&sim, code_body(&code)).await;
    assert_eq!(answer.status(), 200);
    let t: Value = answer.json().await.unwrap();
    assert_eq!(t["expireIn"], 7200);
    assert!(t.get("corpId").is_none(), "no corpId without scope corpid");
    // The token goes in x-acs-dingtalk-access-token, not Authorization.
    let me_url = format!("{}/v1.0/contact/users/me", sim.base_url());
    let bearer = client()
        .get(&me_url)
        .bearer_auth(t["accessToken"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 401);
    let e: Value = bearer.json().await.unwrap();
    assert_eq!(e["code"], "InvalidAuthentication");
    assert!(e["requestid"].as_str().is_some_and(|r| !r.is_empty()));
    let me: Value = client()
        .get(&me_url)
        .header(
            "x-acs-dingtalk-access-token",
            t["accessToken"].as_str().unwrap(),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["unionId"], "iPiSgnAdevZhangSan0001");
    assert_eq!(
        me["openId"],
        open_id(dev::CLIENT_ID, "iPiSgnAdevZhangSan0001")
    );
    assert_eq!(
        (me["mobile"].as_str(), me["stateCode"].as_str()),
        (Some("13800138000"), Some("86"))
    );
    // The authCode is single use.
    let again = token(&sim, code_body(&code)).await;
    assert_eq!(again.status(), 400);
    let e: Value = again.json().await.unwrap();
    assert_eq!(e["code"], "invalidAuthCode");
}

#[tokio::test]
async fn scope_corpid_says_the_picked_organisation_and_refresh_keeps_it() {
    let sim = dev_sim().await;
    sim.decide(Decision::approve("iPiSgnAdevZhangSan0001"));
    let back = client()
        .get(authorize_url(&sim, "openid%20corpid"))
        .send()
        .await
        .unwrap();
    let code = param(&location(&back), "authCode").unwrap();
    let t: Value = token(&sim, code_body(&code)).await.json().await.unwrap();
    assert_eq!(t["corpId"], dev::CORP_ID);
    let r: Value = token(
        &sim,
        json!({"clientId": dev::CLIENT_ID, "clientSecret": dev::CLIENT_SECRET, "refreshToken": t["refreshToken"], "grantType": "refresh_token"}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(r["corpId"], dev::CORP_ID);
    assert_ne!(r["accessToken"], t["accessToken"]);
}

#[tokio::test]
async fn errors_have_dingtalks_shape_and_faults_play() {
    let sim = dev_sim().await;
    // A wrong secret.
    let r = token(
        &sim,
        json!({"clientId": dev::CLIENT_ID, "clientSecret": "wrong", "code": "x", "grantType": "authorization_code"}),
    )
    .await;
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["code"], "invalidClientIdOrSecret");
    assert!(e["message"].as_str().is_some() && e["requestid"].as_str().is_some());
    // A redirect_uri that is not the app's.
    let page = client()
        .get(authorize_url(&sim, "openid").replace("127.0.0.1%3A9", "evil.example"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 400);
    // Cancel.
    sim.decide(Decision::Deny);
    let back = client()
        .get(authorize_url(&sim, "openid"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        param(&location(&back), "error").as_deref(),
        Some("access_denied")
    );
    // Busy and throttled.
    sim.set_faults(Faults {
        busy: true,
        ..Faults::default()
    });
    let r = token(&sim, code_body("x")).await;
    assert_eq!(r.status(), 503);
    assert_eq!(
        r.json::<Value>().await.unwrap()["code"],
        "ServiceUnavailable"
    );
    sim.set_faults(Faults {
        throttled: true,
        ..Faults::default()
    });
    let r = token(&sim, code_body("x")).await;
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<Value>().await.unwrap()["code"],
        "Forbidden.AccessDenied.QpsLimitForApi"
    );
    // An expired authCode.
    sim.set_faults(Faults::default());
    sim.decide(Decision::approve("iPiSgnAdevLiSi00000002"));
    let back = client()
        .get(authorize_url(&sim, "openid"))
        .send()
        .await
        .unwrap();
    let code = param(&location(&back), "authCode").unwrap();
    sim.advance(301);
    let r = token(&sim, code_body(&code)).await;
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "invalidAuthCode");
    assert_eq!(sim.counters().token_requests, 4);
}

#[tokio::test]
async fn dingtalks_browser_signs_its_client_person_in_without_a_page() {
    let sim = dev_sim().await;
    let inside = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent("Mozilla/5.0 (iPhone) AliApp(DingTalk/7.6.0) com.laiwang.DingTalk/34000000")
        .build()
        .unwrap();
    let back = inside
        .get(authorize_url(&sim, "openid"))
        .send()
        .await
        .unwrap();
    assert_eq!(back.status(), 302);
    let code = param(&location(&back), "authCode").unwrap();
    let t: Value = token(&sim, code_body(&code)).await.json().await.unwrap();
    assert!(t["accessToken"].as_str().is_some());
    assert_eq!(sim.counters().in_app, 1);
}
