//! The GitHub fake answers as GitHub documents it, over real HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use provider_sim::github::{dev, Decision, GithubSim};
use serde_json::Value;

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

async fn dev_sim() -> GithubSim {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    dev::start("http://127.0.0.1:9", listener).await.unwrap()
}

fn authorize_url(sim: &GithubSim) -> String {
    format!(
        "{}/login/oauth/authorize?client_id={}&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcallback%2Fgithub&scope=read%3Auser+user%3Aemail&state=S1",
        sim.base_url(),
        dev::CLIENT_ID
    )
}

#[tokio::test]
async fn the_dev_page_asks_who_signs_in_and_the_code_gets_a_token() {
    let sim = dev_sim().await;
    let page = client().get(authorize_url(&sim)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("Authorize as octocat (id 583231)"), "{html}");
    assert!(
        html.contains("mona@example.test (primary) (unverified)"),
        "{html}"
    );
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
    assert_eq!(back.status(), 302);
    let target = location(&back);
    assert!(
        target.starts_with("http://127.0.0.1:9/callback/github?"),
        "{target}"
    );
    assert_eq!(param(&target, "state").as_deref(), Some("S1"));
    let code = param(&target, "code").unwrap();

    let token = |code: String, secret: &'static str| {
        let url = format!("{}/login/oauth/access_token", sim.base_url());
        async move {
            client()
                .post(url)
                .header("accept", "application/json")
                .form(&[
                    ("client_id", dev::CLIENT_ID),
                    ("client_secret", secret),
                    ("code", &code),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    // A wrong secret: HTTP 200 and GitHub's error body.
    let wrong = token(code.clone(), "nope").await;
    assert_eq!(wrong.status(), 200);
    let body: Value = wrong.json().await.unwrap();
    assert_eq!(body["error"], "incorrect_client_credentials");
    let ok: Value = token(code.clone(), dev::CLIENT_SECRET)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ok["token_type"], "bearer");
    assert_eq!(ok["scope"], "read:user,user:email");
    let access = ok["access_token"].as_str().unwrap().to_owned();
    assert!(access.starts_with("gho_"));
    // The code is single use.
    let again: Value = token(code, dev::CLIENT_SECRET).await.json().await.unwrap();
    assert_eq!(again["error"], "bad_verification_code");

    let api = |path: &str, token: &str, ua: bool| {
        let mut r = client()
            .get(format!("{}{path}", sim.api_url()))
            .bearer_auth(token)
            .header("accept", "application/vnd.github+json");
        if ua {
            r = r.header("user-agent", "test");
        }
        r.send()
    };
    let me: Value = api("/user", &access, true)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (me["id"].as_u64(), me["login"].as_str()),
        (Some(583231), Some("octocat"))
    );
    let emails: Value = api("/user/emails", &access, true)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(emails[0]["verified"], true);
    // No read:org scope: /user/orgs is refused.
    assert_eq!(
        api("/user/orgs", &access, true).await.unwrap().status(),
        403
    );
    let bad = api("/user", "gho_unknown", true).await.unwrap();
    assert_eq!(bad.status(), 401);
    assert_eq!(
        bad.json::<Value>().await.unwrap()["message"],
        "Bad credentials"
    );
    assert_eq!(
        api("/user", &access, false).await.unwrap().status(),
        403,
        "no User-Agent"
    );
    sim.set_rate_limited(true);
    let limited = api("/user", &access, true).await.unwrap();
    assert_eq!(
        (
            limited.status().as_u16(),
            limited.headers()["x-ratelimit-remaining"].to_str().unwrap()
        ),
        (403, "0")
    );
}

#[tokio::test]
async fn cancel_and_an_unregistered_callback() {
    let sim = dev_sim().await;
    sim.decide(Decision::Deny);
    let back = client().get(authorize_url(&sim)).send().await.unwrap();
    assert_eq!(
        param(&location(&back), "error").as_deref(),
        Some("access_denied")
    );
    let elsewhere = authorize_url(&sim).replace("127.0.0.1%3A9", "evil.example");
    let page = client()
        .get(elsewhere)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("redirect_uri is not associated"), "{page}");
    assert_eq!(sim.counters().authorizations, 2);
}
