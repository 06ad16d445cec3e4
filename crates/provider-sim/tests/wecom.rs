//! The WeCom fake answers as WeCom documents it, over real HTTP: errcode
//! bodies with HTTP 200, single-use codes that expire, corp tokens counted,
//! the same while valid, and expiring, the trusted-domain page, the refusal without a code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use provider_sim::wecom::{dev, Decision, WeComSim};
use serde_json::Value;

fn param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

async fn dev_sim() -> WeComSim {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    dev::start(listener).await.unwrap()
}

fn qr_url(sim: &WeComSim, redirect: &str) -> String {
    format!(
        "{}/wwlogin/sso/login?login_type=CorpApp&appid={}&agentid={}&redirect_uri={}&state=S1",
        sim.base_url(),
        dev::CORP_ID,
        dev::AGENT_ID,
        url::form_urlencoded::byte_serialize(redirect.as_bytes()).collect::<String>()
    )
}

async fn api(sim: &WeComSim, path: &str) -> Value {
    let resp = reqwest::get(format!("{}{path}", sim.base_url()))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "WeCom answers errors with HTTP 200");
    resp.json().await.unwrap()
}

async fn token(sim: &WeComSim) -> String {
    let t = api(
        sim,
        &format!(
            "/cgi-bin/gettoken?corpid={}&corpsecret={}",
            dev::CORP_ID,
            dev::SECRET
        ),
    )
    .await;
    assert_eq!(
        (t["errcode"].as_i64(), t["expires_in"].as_i64()),
        (Some(0), Some(7200)),
        "{t}"
    );
    t["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_scanned_code_names_the_member_once_and_expires() {
    let sim = dev_sim().await;
    let page = sim
        .visit(&qr_url(&sim, "http://127.0.0.1:9/cb"))
        .await
        .unwrap_err();
    assert!(
        page.contains("Sign in as member 张三") && page.contains("Cancel"),
        "{page}"
    );

    sim.decide(Decision::Member("ZhangSan".into()));
    let back = sim
        .visit(&qr_url(&sim, "http://127.0.0.1:9/cb"))
        .await
        .unwrap();
    assert_eq!(param(&back, "state").as_deref(), Some("S1"));
    let code = param(&back, "code").unwrap();
    let t = token(&sim).await;
    let who = api(
        &sim,
        &format!("/cgi-bin/auth/getuserinfo?access_token={t}&code={code}"),
    )
    .await;
    assert_eq!(who["userid"], "ZhangSan", "{who}");
    let again = api(
        &sim,
        &format!("/cgi-bin/auth/getuserinfo?access_token={t}&code={code}"),
    )
    .await;
    assert_eq!(again["errcode"], 40029, "a code is used once: {again}");
    let member = api(
        &sim,
        &format!("/cgi-bin/user/get?access_token={t}&userid=ZhangSan"),
    )
    .await;
    assert_eq!(member["name"], "张三", "{member}");
    assert!(member.get("mobile").is_none() && member.get("email").is_none());
    let hidden = api(
        &sim,
        &format!("/cgi-bin/user/get?access_token={t}&userid=WangWu"),
    )
    .await;
    assert_eq!(
        hidden["errcode"], 60011,
        "outside the visible range: {hidden}"
    );

    let back = sim
        .visit(&qr_url(&sim, "http://127.0.0.1:9/cb"))
        .await
        .unwrap();
    sim.advance(301);
    let code = param(&back, "code").unwrap();
    let late = api(
        &sim,
        &format!("/cgi-bin/auth/getuserinfo?access_token={t}&code={code}"),
    )
    .await;
    assert_eq!(late["errcode"], 40029, "{late}");
    assert_eq!(sim.counters().tokens_issued, 1);
}

#[tokio::test]
async fn tokens_expire_secrets_are_checked_and_faults_answer_errcodes() {
    let sim = dev_sim().await;
    let t = token(&sim).await;
    assert_eq!(token(&sim).await, t, "the same token while it is valid");
    sim.expire_tokens();
    let expired = api(
        &sim,
        &format!("/cgi-bin/user/get?access_token={t}&userid=ZhangSan"),
    )
    .await;
    assert_eq!(expired["errcode"], 42001, "{expired}");
    assert_ne!(token(&sim).await, t, "a new one after it expired");
    let unknown = api(&sim, "/cgi-bin/user/get?access_token=nope&userid=ZhangSan").await;
    assert_eq!(unknown["errcode"], 40014, "{unknown}");
    let wrong = api(
        &sim,
        &format!("/cgi-bin/gettoken?corpid={}&corpsecret=wrong", dev::CORP_ID),
    )
    .await;
    assert_eq!(wrong["errcode"], 40001, "{wrong}");
    assert!(wrong["errmsg"]
        .as_str()
        .unwrap()
        .starts_with("invalid credential"));
    sim.set_busy(true);
    assert_eq!(
        api(&sim, "/cgi-bin/gettoken?corpid=x&corpsecret=y").await["errcode"],
        -1
    );
    sim.set_busy(false);
    sim.set_ip_denied(true);
    assert_eq!(
        api(&sim, "/cgi-bin/gettoken?corpid=x&corpsecret=y").await["errcode"],
        60020
    );
    assert_eq!(sim.counters().gettoken_calls, 6);
}

#[tokio::test]
async fn an_untrusted_callback_stays_on_wecoms_page_and_a_refusal_has_no_code() {
    let sim = dev_sim().await;
    sim.decide(Decision::Member("ZhangSan".into()));
    let page = sim
        .visit(&qr_url(&sim, "https://elsewhere.example/cb"))
        .await
        .unwrap_err();
    assert!(
        page.contains("该链接无法访问") && page.contains("50001"),
        "{page}"
    );
    sim.decide(Decision::Cancel);
    let back = sim
        .visit(&qr_url(&sim, "http://127.0.0.1:9/cb"))
        .await
        .unwrap();
    assert_eq!(param(&back, "state").as_deref(), Some("S1"));
    assert_eq!(param(&back, "code"), None);
    // The in-app page: silent for snsapi_base, the same codes.
    sim.decide(Decision::NonMember(dev::NON_MEMBER_OPENID.into()));
    let in_app = format!(
        "{}/connect/oauth2/authorize?appid={}&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb&response_type=code&scope=snsapi_base&state=S2&agentid={}#wechat_redirect",
        sim.base_url(), dev::CORP_ID, dev::AGENT_ID
    );
    let back = sim.visit(&in_app).await.unwrap();
    let t = token(&sim).await;
    let code = param(&back, "code").unwrap();
    let who = api(
        &sim,
        &format!("/cgi-bin/auth/getuserinfo?access_token={t}&code={code}"),
    )
    .await;
    assert_eq!(
        who["openid"],
        dev::NON_MEMBER_OPENID,
        "a non-member has no userid: {who}"
    );
    assert!(who.get("userid").is_none());
}
