//! The Feishu fake answers as Feishu documents it, over real HTTP: the dev
//! page asks who signs in, codes are single use and expire, the token
//! endpoint wants JSON and answers `{code, error, error_description}`,
//! user_info wraps the person in `{code, msg, data}`, per-app `open_id`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use provider_sim::feishu::{dev, open_id, FeishuSim};
use serde_json::{json, Value};

const CALLBACK: &str = "http://127.0.0.1:9/callback/feishu";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

async fn dev_sim() -> FeishuSim {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    dev::start("http://127.0.0.1:9", listener).await.unwrap()
}

/// The dev page, and the callback URL its `n`th link leads to.
async fn pick(sim: &FeishuSim, n: usize) -> (String, String) {
    let url = format!(
        "{}/open-apis/authen/v1/authorize?client_id={}&response_type=code&redirect_uri={}&state=S1",
        sim.base_url(),
        dev::APP_ID,
        url::form_urlencoded::byte_serialize(CALLBACK.as_bytes()).collect::<String>()
    );
    let html = client()
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let href = html
        .split("<a href=\"")
        .nth(n)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .replace("&amp;", "&");
    let back = client()
        .get(format!("{}{href}", sim.base_url()))
        .send()
        .await
        .unwrap();
    let location = back.headers()["location"].to_str().unwrap().to_owned();
    (html, location)
}

async fn token(sim: &FeishuSim, body: Value) -> (u16, Value) {
    let r = client()
        .post(format!(
            "{}/open-apis/authen/v2/oauth/token",
            sim.base_url()
        ))
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

fn code_grant(code: &str) -> Value {
    json!({"grant_type": "authorization_code", "client_id": dev::APP_ID, "client_secret": dev::APP_SECRET, "code": code, "redirect_uri": CALLBACK})
}

#[tokio::test]
async fn a_picked_person_gets_a_token_and_user_info_once_per_code() {
    let sim = dev_sim().await;
    let (html, back) = pick(&sim, 1).await;
    assert!(html.contains("Sign in as 张三 Zhang San"), "{html}");
    assert!(html.contains("取消 Cancel"), "{html}");
    assert!(back.starts_with(CALLBACK), "{back}");
    assert_eq!(param(&back, "state").as_deref(), Some("S1"));
    let code = param(&back, "code").unwrap();
    let (status, answer) = token(&sim, code_grant(&code)).await;
    assert_eq!(
        (status, answer["code"].as_i64()),
        (200, Some(0)),
        "{answer}"
    );
    assert!(
        answer.get("refresh_token").is_none(),
        "no offline_access: {answer}"
    );
    let access = answer["access_token"].as_str().unwrap();
    let me: Value = client()
        .get(format!("{}/open-apis/authen/v1/user_info", sim.base_url()))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["code"], 0);
    let union_id = me["data"]["union_id"].as_str().unwrap();
    assert_eq!(me["data"]["open_id"], open_id(dev::APP_ID, union_id));
    assert_ne!(
        open_id("cli_another", union_id),
        open_id(dev::APP_ID, union_id)
    );
    // Again: 20065, and the form-encoded body Feishu does not take: 20063.
    let (status, again) = token(&sim, code_grant(&code)).await;
    assert_eq!(
        (status, again["code"].as_i64()),
        (400, Some(20065)),
        "{again}"
    );
    let form = client()
        .post(format!(
            "{}/open-apis/authen/v2/oauth/token",
            sim.base_url()
        ))
        .form(&[("grant_type", "authorization_code"), ("code", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 400);
}

#[tokio::test]
async fn cancel_expiry_and_the_person_without_access() {
    let sim = dev_sim().await;
    // The last link is Cancel.
    let (_, back) = pick(&sim, 3).await;
    assert_eq!(
        param(&back, "error").as_deref(),
        Some("access_denied"),
        "{back}"
    );
    // Li Si is outside the availability range: 20010 at the token endpoint.
    let (_, back) = pick(&sim, 2).await;
    let (_, answer) = token(&sim, code_grant(&param(&back, "code").unwrap())).await;
    assert_eq!(answer["code"], 20010, "{answer}");
    // A code older than 5 minutes: 20004.
    let (_, back) = pick(&sim, 1).await;
    sim.advance(300);
    let (_, answer) = token(&sim, code_grant(&param(&back, "code").unwrap())).await;
    assert_eq!(answer["code"], 20004, "{answer}");
    assert_eq!(answer["error"], "invalid_grant");
}
