#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The WeChat simulator over real HTTP on 127.0.0.1: one test per rule of
//! WECHAT.md that a connector touches. Time moves with `advance`, never sleep.

use std::time::{Duration, Instant};

use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE, USER_AGENT};
use reqwest::{redirect, Client, Response, StatusCode};
use serde_json::{json, Value};
use url::Url;
use wechat_sim::dev::*;
use wechat_sim::{
    AppKind, Endpoint, Fault, FaultKind, SimApp, SimConfig, SimError, SimLimits, SimUser, Simulator,
};

const WECHAT_UA: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 16_0 like Mac OS X) AppleWebKit/605.1.15 \
     (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.40(0x18002831) NetType/WIFI Language/zh_CN";
const DESKTOP_UA: &str =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36";
const WECOM_UA: &str =
    "Mozilla/5.0 (iPhone; CPU iPhone OS 16_0 like Mac OS X) AppleWebKit/605.1.15 \
     (KHTML, like Gecko) Mobile/15E148 MicroMessenger/7.0.1 wxwork/4.1.10 Language/zh";
const CALLBACK: &str = "http://127.0.0.1/wechat/callback";

struct Harness {
    sim: Simulator,
    http: Client,
    base: String,
}

async fn start() -> Harness {
    start_with(SimConfig::dev_default("127.0.0.1")).await
}

async fn start_with(config: SimConfig) -> Harness {
    let sim = Simulator::start(config).await.unwrap();
    let http = Client::builder()
        .redirect(redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let base = sim.base_url();
    Harness { sim, http, base }
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn errcode(v: &Value) -> i64 {
    v.get("errcode").and_then(Value::as_i64).unwrap_or(0)
}

#[track_caller]
fn assert_wx_error(v: &Value, code: i64) {
    assert_eq!(errcode(v), code, "expected errcode {code}, got {v}");
    let msg = v["errmsg"].as_str().unwrap();
    assert!(msg.contains(" rid: "), "errmsg without rid: {msg}");
}

#[track_caller]
fn assert_success(v: &Value) {
    assert!(v.get("errcode").is_none(), "expected success, got {v}");
}

fn qr_url(appid: &str, redirect_uri: &str, scope: &str, state: &str) -> String {
    format!(
        "/connect/qrconnect?appid={appid}&redirect_uri={}&response_type=code&scope={scope}&state={state}#wechat_redirect",
        enc(redirect_uri)
    )
}

fn mp_url(appid: &str, redirect_uri: &str, scope: &str, state: &str) -> String {
    format!(
        "/connect/oauth2/authorize?appid={appid}&redirect_uri={}&response_type=code&scope={scope}&state={state}#wechat_redirect",
        enc(redirect_uri)
    )
}

/// Adds `extra` query parameters before the `#wechat_redirect` fragment.
fn plus(path: &str, extra: &str) -> String {
    match path.split_once('#') {
        Some((before, fragment)) => format!("{before}&{extra}#{fragment}"),
        None => format!("{path}&{extra}"),
    }
}

fn flow_id(html: &str) -> String {
    let marker = "name=\"flow\" value=\"";
    let start = html
        .find(marker)
        .unwrap_or_else(|| panic!("no flow in {html}"))
        + marker.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].to_owned()
}

fn query_param(url: &str, name: &str) -> Option<String> {
    Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

impl Harness {
    async fn get(&self, path: &str) -> Response {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
    }

    async fn get_ua(&self, path: &str, ua: &str) -> Response {
        self.http
            .get(format!("{}{path}", self.base))
            .header(USER_AGENT, ua)
            .send()
            .await
            .unwrap()
    }

    async fn json(&self, path: &str) -> Value {
        let resp = self.get(path).await;
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        serde_json::from_str(&resp.text().await.unwrap()).unwrap()
    }

    async fn post_json(&self, path: &str, body: &Value) -> Value {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        serde_json::from_str(&resp.text().await.unwrap()).unwrap()
    }

    async fn exchange(&self, appid: &str, secret: &str, code: &str) -> Value {
        self.json(&format!(
            "/sns/oauth2/access_token?appid={appid}&secret={secret}&code={code}&grant_type=authorization_code"
        ))
        .await
    }

    /// A code from the SDK path, exchanged.
    async fn login(&self, appid: &str, secret: &str, user: &str, scope: &str) -> Value {
        let code = self.sim.issue_code(appid, user, scope).unwrap();
        let v = self.exchange(appid, secret, &code).await;
        assert_success(&v);
        v
    }

    async fn userinfo(&self, token: &Value) -> Value {
        self.json(&format!(
            "/sns/userinfo?access_token={}&openid={}&lang=zh_CN",
            token["access_token"].as_str().unwrap(),
            token["openid"].as_str().unwrap()
        ))
        .await
    }

    /// Opens an authorize page and returns (status, html).
    async fn page(&self, path: &str, ua: &str) -> (StatusCode, String, Option<String>) {
        let resp = self.get_ua(path, ua).await;
        let status = resp.status();
        let location = resp
            .headers()
            .get(LOCATION)
            .map(|v| v.to_str().unwrap().to_owned());
        (status, resp.text().await.unwrap(), location)
    }

    /// Submits the page's form as a click on `#confirm-<user>` or `#refuse`.
    async fn decide(&self, flow: &str, user: Option<&str>) -> Response {
        let mut form = vec![("flow", flow.to_owned()), ("lang", "cn".to_owned())];
        match user {
            Some(u) => form.push(("user", u.to_owned())),
            None => form.push(("decision", "refuse".to_owned())),
        }
        self.http
            .post(format!("{}/connect/sim/decide", self.base))
            .form(&form)
            .send()
            .await
            .unwrap()
    }

    /// qrconnect → confirm as `user` → the callback URL.
    async fn web_login_callback(&self, redirect_uri: &str, state: &str, user: &str) -> String {
        let (status, html, _) = self
            .page(
                &qr_url(WEB_APPID, redirect_uri, "snsapi_login", state),
                DESKTOP_UA,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let resp = self.decide(&flow_id(&html), Some(user)).await;
        assert_eq!(resp.status(), StatusCode::FOUND);
        resp.headers()[LOCATION].to_str().unwrap().to_owned()
    }

    async fn app_token(&self, appid: &str, secret: &str) -> Value {
        self.json(&format!(
            "/cgi-bin/token?grant_type=client_credential&appid={appid}&secret={secret}"
        ))
        .await
    }

    async fn stable_token(&self, force: bool) -> Value {
        self.post_json(
            "/cgi-bin/stable_token",
            &json!({"grant_type": "client_credential", "appid": MP_APPID, "secret": MP_SECRET, "force_refresh": force}),
        )
        .await
    }

    async fn send_text(&self, token: &str, touser: &str, content: &str) -> Value {
        self.post_json(
            &format!("/cgi-bin/message/custom/send?access_token={token}"),
            &json!({"touser": touser, "msgtype": "text", "text": {"content": content}}),
        )
        .await
    }
}

/// Asserts an HTML error page (HTTP 200, no redirect) showing `text` and `code`.
#[track_caller]
fn assert_error_page(page: &(StatusCode, String, Option<String>), text: &str, code: Option<i64>) {
    let (status, html, location) = page;
    assert_eq!(*status, StatusCode::OK, "{html}");
    assert!(location.is_none(), "an error page never calls back");
    assert!(html.contains("id=\"error-message\""), "{html}");
    assert!(html.contains(text), "expected {text:?} in {html}");
    match code {
        Some(c) => assert!(html.contains(&format!("data-errcode=\"{c}\"")), "{html}"),
        None => assert!(!html.contains("data-errcode"), "{html}"),
    }
}

// ---- identifiers -------------------------------------------------------------

#[tokio::test]
async fn openid_is_per_app_and_unionid_per_open_platform() {
    let h = start().await;
    let web = h
        .login(WEB_APPID, WEB_SECRET, USER_ALICE, "snsapi_login")
        .await;
    let mobile = h
        .login(MOBILE_APPID, MOBILE_SECRET, USER_ALICE, "snsapi_userinfo")
        .await;
    let mp = h
        .login(MP_APPID, MP_SECRET, USER_ALICE, "snsapi_userinfo")
        .await;
    let other = h
        .login(
            OTHER_WEB_APPID,
            OTHER_WEB_SECRET,
            USER_ALICE,
            "snsapi_login",
        )
        .await;
    let unbound = h
        .login(
            UNBOUND_WEB_APPID,
            UNBOUND_WEB_SECRET,
            USER_ALICE,
            "snsapi_login",
        )
        .await;

    let openids: Vec<&str> = [&web, &mobile, &mp, &other, &unbound]
        .iter()
        .map(|v| v["openid"].as_str().unwrap())
        .collect();
    for (i, a) in openids.iter().enumerate() {
        assert_eq!(a.len(), 28);
        assert!(a.starts_with('o'));
        for b in &openids[i + 1..] {
            assert_ne!(a, b, "openids must differ between apps");
        }
    }
    // Same platform: same unionid; another platform: another; unbound: none.
    assert_eq!(web["unionid"], mobile["unionid"]);
    assert_eq!(web["unionid"], mp["unionid"]);
    assert_ne!(web["unionid"], other["unionid"]);
    assert!(other["unionid"].is_string());
    assert!(unbound.get("unionid").is_none());
    // The handle predicts them.
    assert_eq!(web["openid"], h.sim.openid(WEB_APPID, USER_ALICE).as_str());
    assert_eq!(
        web["unionid"],
        h.sim.unionid(WEB_APPID, USER_ALICE).unwrap().as_str()
    );
    assert_eq!(h.sim.unionid(UNBOUND_WEB_APPID, USER_ALICE), None);
    // Another user: another unionid.
    let bob = h
        .login(WEB_APPID, WEB_SECRET, USER_XIAOMING, "snsapi_login")
        .await;
    assert_ne!(bob["unionid"], web["unionid"]);
}

#[tokio::test]
async fn binding_an_app_later_adds_unionid_and_keeps_openid() {
    let h = start().await;
    let before = h
        .login(
            UNBOUND_WEB_APPID,
            UNBOUND_WEB_SECRET,
            USER_ALICE,
            "snsapi_login",
        )
        .await;
    assert!(before.get("unionid").is_none());
    h.sim
        .set_open_platform(UNBOUND_WEB_APPID, Some(OPEN_PLATFORM_ID))
        .unwrap();
    let after = h
        .login(
            UNBOUND_WEB_APPID,
            UNBOUND_WEB_SECRET,
            USER_ALICE,
            "snsapi_login",
        )
        .await;
    assert_eq!(before["openid"], after["openid"]);
    assert_eq!(
        after["unionid"],
        h.sim.unionid(WEB_APPID, USER_ALICE).unwrap().as_str()
    );
}

// ---- code exchange -------------------------------------------------------------

#[tokio::test]
async fn code_exchange_success_has_the_documented_fields() {
    let h = start().await;
    let v = h
        .login(WEB_APPID, WEB_SECRET, USER_ALICE, "snsapi_login")
        .await;
    assert_eq!(v["expires_in"], 7200);
    assert_eq!(v["scope"], "snsapi_login");
    assert!(v["access_token"].as_str().unwrap().len() > 20);
    assert!(v["refresh_token"].as_str().unwrap().len() > 20);
    assert!(v.get("is_snapshotuser").is_none());
}

#[tokio::test]
async fn code_is_single_use_second_exchange_gets_40163() {
    let h = start().await;
    let code = h
        .sim
        .issue_code(WEB_APPID, USER_ALICE, "snsapi_login")
        .unwrap();
    assert_success(&h.exchange(WEB_APPID, WEB_SECRET, &code).await);
    assert_wx_error(&h.exchange(WEB_APPID, WEB_SECRET, &code).await, 40163);
}

#[tokio::test]
async fn code_expires_after_five_minutes_42003() {
    let h = start().await;
    let young = h
        .sim
        .issue_code(WEB_APPID, USER_ALICE, "snsapi_login")
        .unwrap();
    let old = h
        .sim
        .issue_code(WEB_APPID, USER_ALICE, "snsapi_login")
        .unwrap();
    h.sim.advance(290);
    assert_success(&h.exchange(WEB_APPID, WEB_SECRET, &young).await);
    h.sim.advance(11);
    assert_wx_error(&h.exchange(WEB_APPID, WEB_SECRET, &old).await, 42003);
}

#[tokio::test]
async fn code_for_another_appid_or_made_up_is_40029() {
    let h = start().await;
    let code = h
        .sim
        .issue_code(WEB_APPID, USER_ALICE, "snsapi_login")
        .unwrap();
    assert_wx_error(
        &h.exchange(OTHER_WEB_APPID, OTHER_WEB_SECRET, &code).await,
        40029,
    );
    assert_wx_error(
        &h.exchange(WEB_APPID, WEB_SECRET, "made-up-code").await,
        40029,
    );
    // The failed attempt did not spend it.
    assert_success(&h.exchange(WEB_APPID, WEB_SECRET, &code).await);
}

#[tokio::test]
async fn wrong_secret_is_40125_and_does_not_spend_the_code() {
    let h = start().await;
    let code = h
        .sim
        .issue_code(WEB_APPID, USER_ALICE, "snsapi_login")
        .unwrap();
    assert_wx_error(&h.exchange(WEB_APPID, OTHER_WEB_SECRET, &code).await, 40125);
    assert_success(&h.exchange(WEB_APPID, WEB_SECRET, &code).await);
}

#[tokio::test]
async fn unknown_appid_is_40013() {
    let h = start().await;
    assert_wx_error(
        &h.exchange("wx0000000000000000", WEB_SECRET, "x").await,
        40013,
    );
}

#[tokio::test]
async fn missing_parameters_are_41002_41004_41008_and_bad_grant_type_40002() {
    let h = start().await;
    let base = "/sns/oauth2/access_token";
    assert_wx_error(
        &h.json(&format!(
            "{base}?secret={WEB_SECRET}&code=c&grant_type=authorization_code"
        ))
        .await,
        41002,
    );
    assert_wx_error(
        &h.json(&format!(
            "{base}?appid={WEB_APPID}&code=c&grant_type=authorization_code"
        ))
        .await,
        41004,
    );
    assert_wx_error(
        &h.json(&format!(
            "{base}?appid={WEB_APPID}&secret={WEB_SECRET}&grant_type=authorization_code"
        ))
        .await,
        41008,
    );
    assert_wx_error(
        &h.json(&format!(
            "{base}?appid={WEB_APPID}&secret={WEB_SECRET}&code=c&grant_type=password"
        ))
        .await,
        40002,
    );
}

#[tokio::test]
async fn sns_answers_are_labelled_text_plain_and_cgi_bin_json() {
    let h = start().await;
    let code = h
        .sim
        .issue_code(WEB_APPID, USER_ALICE, "snsapi_login")
        .unwrap();
    let path = format!(
        "/sns/oauth2/access_token?appid={WEB_APPID}&secret={WEB_SECRET}&code={code}&grant_type=authorization_code"
    );
    for expect_error in [false, true] {
        let resp = h.get(&path).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[CONTENT_TYPE], "text/plain");
        let v: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
        assert_eq!(v.get("errcode").is_some(), expect_error, "{v}");
    }
    let resp = h.get("/sns/userinfo?access_token=nope&openid=x").await;
    assert_eq!(resp.headers()[CONTENT_TYPE], "text/plain");
    let resp = h
        .get(&format!(
            "/cgi-bin/token?grant_type=client_credential&appid={MP_APPID}&secret={MP_SECRET}"
        ))
        .await;
    assert_eq!(
        resp.headers()[CONTENT_TYPE],
        "application/json; encoding=utf-8"
    );
}

#[tokio::test]
async fn code_exchange_minute_quota_is_45011() {
    let h = start().await;
    h.sim.set_limits(SimLimits {
        code_exchanges_per_minute: 2,
        ..SimLimits::default()
    });
    assert_wx_error(&h.exchange(WEB_APPID, WEB_SECRET, "a").await, 40029);
    assert_wx_error(&h.exchange(WEB_APPID, WEB_SECRET, "b").await, 40029);
    assert_wx_error(&h.exchange(WEB_APPID, WEB_SECRET, "c").await, 45011);
    h.sim.advance(60);
    assert_wx_error(&h.exchange(WEB_APPID, WEB_SECRET, "d").await, 40029);
}

#[tokio::test]
async fn mobile_app_codes_come_from_the_sdk_with_snsapi_userinfo() {
    let h = start().await;
    assert!(matches!(
        h.sim.issue_code(MOBILE_APPID, USER_ALICE, "snsapi_login"),
        Err(SimError::ScopeNotAllowed { .. })
    ));
    assert!(matches!(
        h.sim.issue_code("wx00", USER_ALICE, "snsapi_login"),
        Err(SimError::UnknownApp(_))
    ));
    assert!(matches!(
        h.sim.issue_code(WEB_APPID, "nobody", "snsapi_login"),
        Err(SimError::UnknownUser(_))
    ));
    let v = h
        .login(
            MOBILE_APPID,
            MOBILE_SECRET,
            USER_XIAOMING,
            "snsapi_userinfo",
        )
        .await;
    assert_eq!(
        v["unionid"],
        h.sim.unionid(MOBILE_APPID, USER_XIAOMING).unwrap().as_str()
    );
    assert_eq!(h.userinfo(&v).await["nickname"], "王小明🐼✨");
}

#[tokio::test]
async fn sdk_codes_over_http_and_snapshot_sdk_codes() {
    let h = start().await;
    // The admin API hands out an SDK code like the Rust helper does.
    let resp = h
        .http
        .post(format!(
            "{}/__sim/codes?appid={MOBILE_APPID}&user={USER_XIAOMING}",
            h.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let code = resp.json::<Value>().await.unwrap()["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let v = h.exchange(MOBILE_APPID, MOBILE_SECRET, &code).await;
    assert_success(&v);
    assert_eq!(
        v["openid"],
        h.sim.openid(MOBILE_APPID, USER_XIAOMING).as_str()
    );
    assert_eq!(v["scope"], "snsapi_userinfo");
    assert!(v.get("is_snapshotuser").is_none(), "{v}");

    // A snapshot-mode user: virtual ids and profile, flagged.
    let code = h.sim.issue_snapshot_code(MOBILE_APPID, USER_ALICE).unwrap();
    let v = h.exchange(MOBILE_APPID, MOBILE_SECRET, &code).await;
    assert_eq!(v["is_snapshotuser"], 1, "{v}");
    assert_ne!(v["openid"], h.sim.openid(MOBILE_APPID, USER_ALICE).as_str());
    assert_ne!(
        v["unionid"],
        h.sim.unionid(MOBILE_APPID, USER_ALICE).unwrap().as_str()
    );
    assert_eq!(h.userinfo(&v).await["nickname"], "微信用户");
    let resp = h
        .http
        .post(format!(
            "{}/__sim/codes?appid={MOBILE_APPID}&user={USER_ALICE}&snapshot=1",
            h.base
        ))
        .send()
        .await
        .unwrap();
    let code = resp.json::<Value>().await.unwrap()["code"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        h.exchange(MOBILE_APPID, MOBILE_SECRET, &code).await["is_snapshotuser"],
        1
    );
    let resp = h
        .http
        .post(format!(
            "{}/__sim/codes?appid={WEB_APPID}&user={USER_ALICE}&scope=snsapi_login&snapshot=1",
            h.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = h
        .http
        .post(format!("{}/__sim/codes?appid={MOBILE_APPID}", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    // The second mobile app belongs to the other Open Platform account.
    let mine = h
        .login(MOBILE_APPID, MOBILE_SECRET, USER_ALICE, "snsapi_userinfo")
        .await;
    let other = h
        .login(
            OTHER_MOBILE_APPID,
            OTHER_MOBILE_SECRET,
            USER_ALICE,
            "snsapi_userinfo",
        )
        .await;
    assert_ne!(mine["openid"], other["openid"]);
    assert_ne!(mine["unionid"], other["unionid"]);
    assert_eq!(
        other["unionid"],
        h.sim.unionid(OTHER_WEB_APPID, USER_ALICE).unwrap().as_str(),
        "one unionid per Open Platform account"
    );
}

// ---- Official Account scopes and snapshot mode ------------------------------------

#[tokio::test]
async fn snsapi_base_has_no_unionid_and_userinfo_is_48001() {
    let h = start().await;
    let (status, _, location) = h
        .page(
            &plus(
                &mp_url(MP_APPID, CALLBACK, "snsapi_base", "s1"),
                &format!("sim_user={USER_XIAOMING}"),
            ),
            WECHAT_UA,
        )
        .await;
    assert_eq!(status, StatusCode::FOUND, "snsapi_base is silent");
    let location = location.unwrap();
    assert_eq!(query_param(&location, "state").as_deref(), Some("s1"));
    let code = query_param(&location, "code").unwrap();
    let v = h.exchange(MP_APPID, MP_SECRET, &code).await;
    assert_success(&v);
    assert_eq!(v["scope"], "snsapi_base");
    assert_eq!(v["openid"], h.sim.openid(MP_APPID, USER_XIAOMING).as_str());
    assert!(
        v.get("unionid").is_none(),
        "snsapi_base returns no unionid: {v}"
    );
    assert_wx_error(&h.userinfo(&v).await, 48001);
    // sns/auth works with a base token.
    let auth = h
        .json(&format!(
            "/sns/auth?access_token={}&openid={}",
            v["access_token"].as_str().unwrap(),
            v["openid"].as_str().unwrap()
        ))
        .await;
    assert_eq!(auth, json!({"errcode": 0, "errmsg": "ok"}));
}

#[tokio::test]
async fn snsapi_userinfo_on_official_account_returns_unionid_and_profile() {
    let h = start().await;
    let (status, html, _) = h
        .page(
            &mp_url(MP_APPID, CALLBACK, "snsapi_userinfo", "s2"),
            WECHAT_UA,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "snsapi_userinfo shows a consent page"
    );
    assert!(html.contains("id=\"allow\"") && html.contains("id=\"refuse\""));
    assert!(html.contains(&format!("id=\"confirm-{USER_ALICE2}\"")));
    let resp = h.decide(&flow_id(&html), Some(USER_ALICE)).await;
    assert_eq!(resp.status(), StatusCode::FOUND);
    let code = query_param(resp.headers()[LOCATION].to_str().unwrap(), "code").unwrap();
    let v = h.exchange(MP_APPID, MP_SECRET, &code).await;
    assert_eq!(v["scope"], "snsapi_userinfo");
    assert_eq!(
        v["unionid"],
        h.sim.unionid(MP_APPID, USER_ALICE).unwrap().as_str()
    );
    assert_eq!(h.userinfo(&v).await["unionid"], v["unionid"]);
}

#[tokio::test]
async fn snapshot_user_gets_flag_virtual_ids_and_virtual_profile() {
    let h = start().await;
    let path = plus(
        &mp_url(MP_APPID, CALLBACK, "snsapi_userinfo", "snap"),
        &format!("sim_snapshot=1&sim_user={USER_ALICE}"),
    );
    let (status, _, location) = h.page(&path, WECHAT_UA).await;
    assert_eq!(status, StatusCode::FOUND);
    let code = query_param(&location.unwrap(), "code").unwrap();
    let v = h.exchange(MP_APPID, MP_SECRET, &code).await;
    assert_success(&v);
    assert_eq!(v["is_snapshotuser"], 1);
    assert_ne!(
        v["openid"],
        h.sim.openid(MP_APPID, USER_ALICE).as_str(),
        "virtual openid"
    );
    assert!(v["unionid"].is_string());
    assert_ne!(
        v["unionid"],
        h.sim.unionid(MP_APPID, USER_ALICE).unwrap().as_str(),
        "virtual unionid"
    );
    let info = h.userinfo(&v).await;
    assert_eq!(info["nickname"], "微信用户");
    assert_ne!(info["nickname"], "Alice");
    assert!(info["headimgurl"].as_str().unwrap().ends_with("/132"));
}

// ---- tokens ----------------------------------------------------------------------

#[tokio::test]
async fn refresh_rotates_the_access_token_and_keeps_the_refresh_token() {
    let h = start().await;
    let v = h
        .login(WEB_APPID, WEB_SECRET, USER_ALICE, "snsapi_login")
        .await;
    let refresh = v["refresh_token"].as_str().unwrap();
    let r = h
        .json(&format!("/sns/oauth2/refresh_token?appid={WEB_APPID}&grant_type=refresh_token&refresh_token={refresh}"))
        .await;
    assert_success(&r);
    assert_ne!(r["access_token"], v["access_token"]);
    assert_eq!(r["refresh_token"], v["refresh_token"]);
    assert_eq!(r["openid"], v["openid"]);
    assert_eq!(r["expires_in"], 7200);
    assert_wx_error(&h.userinfo(&v).await, 40014);
    assert_success(&h.userinfo(&r).await);
    // Bad refresh tokens.
    assert_wx_error(
        &h.json(&format!("/sns/oauth2/refresh_token?appid={WEB_APPID}&grant_type=refresh_token&refresh_token=nope")).await,
        40030,
    );
    assert_wx_error(
        &h.json(&format!("/sns/oauth2/refresh_token?appid={OTHER_WEB_APPID}&grant_type=refresh_token&refresh_token={refresh}")).await,
        40030,
    );
    assert_wx_error(
        &h.json(&format!(
            "/sns/oauth2/refresh_token?appid={WEB_APPID}&grant_type=refresh_token"
        ))
        .await,
        41003,
    );
}

#[tokio::test]
async fn refresh_token_expires_after_30_days_42002() {
    let h = start().await;
    let v = h
        .login(WEB_APPID, WEB_SECRET, USER_ALICE, "snsapi_login")
        .await;
    let path = format!(
        "/sns/oauth2/refresh_token?appid={WEB_APPID}&grant_type=refresh_token&refresh_token={}",
        v["refresh_token"].as_str().unwrap()
    );
    h.sim.advance(29 * 86_400);
    assert_success(&h.json(&path).await);
    h.sim.advance(86_400 + 1);
    assert_wx_error(&h.json(&path).await, 42002);
}

#[tokio::test]
async fn user_access_token_expires_after_two_hours_42001() {
    let h = start().await;
    let v = h
        .login(WEB_APPID, WEB_SECRET, USER_ALICE, "snsapi_login")
        .await;
    h.sim.advance(7190);
    assert_success(&h.userinfo(&v).await);
    h.sim.advance(11);
    assert_wx_error(&h.userinfo(&v).await, 42001);
}

#[tokio::test]
async fn userinfo_has_the_post_2021_shape() {
    let h = start().await;
    let v = h
        .login(WEB_APPID, WEB_SECRET, USER_XIAOMING, "snsapi_login")
        .await;
    let info = h.userinfo(&v).await;
    assert_eq!(info["openid"], v["openid"]);
    assert_eq!(info["nickname"], "王小明🐼✨");
    assert_eq!(info["sex"], 0);
    assert_eq!(info["province"], "");
    assert_eq!(info["city"], "");
    assert_eq!(info["country"], "");
    assert_eq!(info["privilege"], json!([]));
    assert_eq!(info["unionid"], v["unionid"]);
    assert!(info["headimgurl"].as_str().unwrap().ends_with("/0"));
    let alice = h
        .login(WEB_APPID, WEB_SECRET, USER_ALICE, "snsapi_login")
        .await;
    assert!(h.userinfo(&alice).await["headimgurl"]
        .as_str()
        .unwrap()
        .ends_with("/132"));
    // Nicknames are not unique; avatars may be empty.
    let alice2 = h
        .login(WEB_APPID, WEB_SECRET, USER_ALICE2, "snsapi_login")
        .await;
    let info2 = h.userinfo(&alice2).await;
    assert_eq!(info2["nickname"], "Alice");
    assert_eq!(info2["headimgurl"], "");
    assert_ne!(info2["openid"], alice["openid"]);
}

#[tokio::test]
async fn userinfo_rejects_bad_token_and_foreign_openid() {
    let h = start().await;
    let v = h
        .login(WEB_APPID, WEB_SECRET, USER_ALICE, "snsapi_login")
        .await;
    let token = v["access_token"].as_str().unwrap();
    let bob = h.sim.openid(WEB_APPID, USER_XIAOMING);
    assert_wx_error(
        &h.json(&format!("/sns/userinfo?access_token={token}&openid={bob}"))
            .await,
        40003,
    );
    assert_wx_error(
        &h.json(&format!("/sns/userinfo?access_token=bogus&openid={bob}"))
            .await,
        40014,
    );
    assert_wx_error(&h.json(&format!("/sns/userinfo?openid={bob}")).await, 41001);
}

#[tokio::test]
async fn profile_changes_show_in_userinfo() {
    let h = start().await;
    let v = h
        .login(WEB_APPID, WEB_SECRET, USER_ALICE, "snsapi_login")
        .await;
    h.sim
        .update_user(SimUser {
            id: USER_ALICE.into(),
            nickname: "Alice 🌸".into(),
            headimgurl: "https://thirdwx.qlogo.cn/mmopen/vi_32/NewAvatar/132".into(),
        })
        .unwrap();
    let info = h.userinfo(&v).await;
    assert_eq!(info["nickname"], "Alice 🌸");
    assert!(info["headimgurl"].as_str().unwrap().contains("NewAvatar"));
}

#[tokio::test]
async fn sns_auth_checks_token_and_openid() {
    let h = start().await;
    let v = h
        .login(WEB_APPID, WEB_SECRET, USER_ALICE, "snsapi_login")
        .await;
    let token = v["access_token"].as_str().unwrap();
    let openid = v["openid"].as_str().unwrap();
    assert_eq!(
        h.json(&format!("/sns/auth?access_token={token}&openid={openid}"))
            .await,
        json!({"errcode": 0, "errmsg": "ok"})
    );
    let other = h.sim.openid(WEB_APPID, USER_XIAOMING);
    assert_wx_error(
        &h.json(&format!("/sns/auth?access_token={token}&openid={other}"))
            .await,
        40003,
    );
    assert_wx_error(
        &h.json(&format!("/sns/auth?access_token=bogus&openid={openid}"))
            .await,
        40014,
    );
    h.sim.advance(7201);
    assert_wx_error(
        &h.json(&format!("/sns/auth?access_token={token}&openid={openid}"))
            .await,
        42001,
    );
}

// ---- qrconnect -------------------------------------------------------------------

#[tokio::test]
async fn qrconnect_shows_the_scan_page_with_stable_ids_and_languages() {
    let h = start().await;
    let (status, html, _) = h
        .page(
            &qr_url(WEB_APPID, CALLBACK, "snsapi_login", "abc"),
            DESKTOP_UA,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    for id in [
        "confirm-alice",
        "confirm-xiaoming",
        "confirm-alice2",
        "refuse",
        "lang-switch",
    ] {
        assert!(html.contains(&format!("id=\"{id}\"")), "missing #{id}");
    }
    assert!(html.contains("确认登录") && html.contains("拒绝") && html.contains("王小明🐼✨"));
    let (_, en, _) = h
        .page(
            &plus(
                &qr_url(WEB_APPID, CALLBACK, "snsapi_login", "abc"),
                "lang=en",
            ),
            DESKTOP_UA,
        )
        .await;
    assert!(en.contains("Confirm") && en.contains("Refuse") && !en.contains("确认登录"));
}

#[tokio::test]
async fn qrconnect_confirm_redirects_with_code_and_state() {
    let h = start().await;
    let location = h.web_login_callback(CALLBACK, "st4te", USER_ALICE).await;
    assert!(
        location.starts_with(&format!("{CALLBACK}?code=")),
        "{location}"
    );
    assert_eq!(query_param(&location, "state").as_deref(), Some("st4te"));
    let code = query_param(&location, "code").unwrap();
    let v = h.exchange(WEB_APPID, WEB_SECRET, &code).await;
    assert_eq!(v["openid"], h.sim.openid(WEB_APPID, USER_ALICE).as_str());
    assert_eq!(h.sim.last_redirects(), vec![location]);
}

#[tokio::test]
async fn qrconnect_confirm_appends_to_an_existing_query() {
    let h = start().await;
    let location = h
        .web_login_callback("http://127.0.0.1:8080/cb?next=%2Fhome&x=1", "s", USER_ALICE)
        .await;
    let url = Url::parse(&location).unwrap();
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    assert_eq!(pairs[0], ("next".into(), "/home".into()));
    assert_eq!(pairs[1], ("x".into(), "1".into()));
    assert_eq!(pairs[2].0, "code");
    assert_eq!(pairs[3], ("state".into(), "s".into()));
    assert_eq!(url.port(), Some(8080));
    assert_eq!(url.path(), "/cb");
}

#[tokio::test]
async fn qrconnect_refusal_redirects_with_state_and_no_code() {
    let h = start().await;
    let (_, html, _) = h
        .page(
            &qr_url(WEB_APPID, CALLBACK, "snsapi_login", "no1"),
            DESKTOP_UA,
        )
        .await;
    let resp = h.decide(&flow_id(&html), None).await;
    assert_eq!(resp.status(), StatusCode::FOUND);
    let location = resp.headers()[LOCATION].to_str().unwrap();
    assert_eq!(location, format!("{CALLBACK}?state=no1"));
    assert_eq!(query_param(location, "code"), None);
}

#[tokio::test]
async fn qrconnect_page_can_be_confirmed_only_once() {
    let h = start().await;
    let (_, html, _) = h
        .page(
            &qr_url(WEB_APPID, CALLBACK, "snsapi_login", "once"),
            DESKTOP_UA,
        )
        .await;
    let flow = flow_id(&html);
    assert_eq!(
        h.decide(&flow, Some(USER_ALICE)).await.status(),
        StatusCode::FOUND
    );
    let again = h.decide(&flow, Some(USER_ALICE)).await;
    assert_eq!(again.status(), StatusCode::OK);
    assert!(again.text().await.unwrap().contains("二维码已失效"));
}

#[tokio::test]
async fn qrconnect_redirect_uri_host_must_equal_callback_domain_10003() {
    let mut config = SimConfig::dev_default("a.example");
    config.apps.push(SimApp {
        appid: "wx00000000000000aa".into(),
        secret: "00000000000000000000000000000000".into(),
        kind: AppKind::Website,
        open_platform_id: None,
        callback_domain: "www.b.example".into(),
    });
    let h = start_with(config).await;
    for bad in [
        "https://evil.example/cb",
        "https://www.a.example/cb",
        "https://a.example.evil/cb",
        "not a url",
    ] {
        let page = h
            .page(&qr_url(WEB_APPID, bad, "snsapi_login", "s"), DESKTOP_UA)
            .await;
        assert_error_page(&page, "redirect_uri 参数错误", Some(10003));
    }
    // The callback domain covers only itself: www.b.example does not cover b.example.
    let page = h
        .page(
            &qr_url(
                "wx00000000000000aa",
                "https://b.example/cb",
                "snsapi_login",
                "s",
            ),
            DESKTOP_UA,
        )
        .await;
    assert_error_page(&page, "redirect_uri 参数错误", Some(10003));
    let (status, html, _) = h
        .page(
            &qr_url(
                "wx00000000000000aa",
                "https://www.b.example/cb",
                "snsapi_login",
                "s",
            ),
            DESKTOP_UA,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("confirm-alice"));
    // Any path and port on the right host is fine.
    let (_, html, _) = h
        .page(
            &qr_url(
                WEB_APPID,
                "http://a.example:8443/any/path?x=1",
                "snsapi_login",
                "s",
            ),
            DESKTOP_UA,
        )
        .await;
    assert!(html.contains("confirm-alice"));
}

#[tokio::test]
async fn qrconnect_redirect_uri_encoded_twice_is_10003() {
    let h = start().await;
    let twice = enc(CALLBACK);
    let page = h
        .page(&qr_url(WEB_APPID, &twice, "snsapi_login", "s"), DESKTOP_UA)
        .await;
    assert_error_page(&page, "redirect_uri 参数错误", Some(10003));
}

#[tokio::test]
async fn qrconnect_wrong_app_kind_or_scope_is_10005() {
    let h = start().await;
    for (appid, scope) in [
        (MP_APPID, "snsapi_login"),
        (MOBILE_APPID, "snsapi_login"),
        (WEB_APPID, "snsapi_userinfo"),
        (WEB_APPID, "snsapi_base"),
    ] {
        let page = h
            .page(&qr_url(appid, CALLBACK, scope, "s"), DESKTOP_UA)
            .await;
        assert_error_page(&page, "Scope 参数错误或没有 Scope 权限", Some(10005));
    }
}

#[tokio::test]
async fn qrconnect_state_longer_than_128_bytes_is_refused() {
    let h = start().await;
    let page = h
        .page(
            &qr_url(WEB_APPID, CALLBACK, "snsapi_login", &"a".repeat(129)),
            DESKTOP_UA,
        )
        .await;
    assert_error_page(&page, "state参数过长", None);
    let (status, html, _) = h
        .page(
            &qr_url(WEB_APPID, CALLBACK, "snsapi_login", &"a".repeat(128)),
            DESKTOP_UA,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("confirm-alice"));
}

#[tokio::test]
async fn qrconnect_missing_parameters_are_10010_to_10013() {
    let h = start().await;
    let r = enc(CALLBACK);
    let cases = [
        (format!("/connect/qrconnect?redirect_uri={r}&response_type=code&scope=snsapi_login&state=s"), 10012),
        (format!("/connect/qrconnect?appid={WEB_APPID}&response_type=code&scope=snsapi_login&state=s"), 10011),
        (format!("/connect/qrconnect?appid={WEB_APPID}&redirect_uri={r}&response_type=code&state=s"), 10010),
        (format!("/connect/qrconnect?appid={WEB_APPID}&redirect_uri={r}&response_type=code&scope=snsapi_login"), 10013),
        (format!("/connect/qrconnect?appid={WEB_APPID}&redirect_uri={r}&response_type=code&scope=snsapi_login&state="), 10013),
    ];
    for (path, code) in cases {
        let page = h.page(&path, DESKTOP_UA).await;
        assert_error_page(&page, "参数错误", Some(code));
    }
    let page = h
        .page(
            &qr_url("wx0000000000000000", CALLBACK, "snsapi_login", "s"),
            DESKTOP_UA,
        )
        .await;
    assert_error_page(&page, "AppID 参数错误", None);
    let page = h
        .page(&format!("/connect/qrconnect?appid={WEB_APPID}&redirect_uri={r}&response_type=token&scope=snsapi_login&state=s"), DESKTOP_UA)
        .await;
    assert_error_page(&page, "response_type", None);
}

#[tokio::test]
async fn authorize_parameters_out_of_order_are_refused() {
    let h = start().await;
    let r = enc(CALLBACK);
    let path = format!("/connect/qrconnect?redirect_uri={r}&appid={WEB_APPID}&response_type=code&scope=snsapi_login&state=s");
    assert_error_page(&h.page(&path, DESKTOP_UA).await, "参数顺序错误", None);
    let path = format!("/connect/oauth2/authorize?appid={MP_APPID}&redirect_uri={r}&scope=snsapi_base&response_type=code&state=s");
    assert_error_page(&h.page(&path, WECHAT_UA).await, "参数顺序错误", None);
}

#[tokio::test]
async fn embedded_qr_script_and_iframe_page() {
    let h = start().await;
    let resp = h.get("/connect/zh_CN/htmledition/js/wxLogin.js").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let js = resp.text().await.unwrap();
    assert!(js.contains("WxLogin") && js.contains("login_type=jssdk"));
    // What wxLogin.js loads: WeChat's own order, no response_type.
    let r = enc(CALLBACK);
    let iframe = format!(
        "/connect/qrconnect?appid={WEB_APPID}&scope=snsapi_login&redirect_uri={r}&state=emb\
         &login_type=jssdk&self_redirect=default&styletype=&sizetype=&bgcolor=&rst=&style=black"
    );
    let (status, html, _) = h.page(&iframe, DESKTOP_UA).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("class=\"embedded\""));
    assert!(
        html.contains("target=\"_top\""),
        "the callback replaces the top window"
    );
    let resp = h.decide(&flow_id(&html), Some(USER_ALICE)).await;
    let location = resp.headers()[LOCATION].to_str().unwrap();
    assert_eq!(query_param(location, "state").as_deref(), Some("emb"));
    // self_redirect=true: the callback stays in the iframe.
    let (_, html, _) = h
        .page(
            &iframe.replace("self_redirect=default", "self_redirect=true"),
            DESKTOP_UA,
        )
        .await;
    assert!(!html.contains("target=\"_top\""));
    // The embedded page still checks the callback domain.
    let bad = iframe.replace(&r, &enc("http://evil.example/cb"));
    assert_error_page(
        &h.page(&bad, DESKTOP_UA).await,
        "redirect_uri 参数错误",
        Some(10003),
    );
}

#[tokio::test]
async fn authorize_page_fault_shows_an_error_page_such_as_10009() {
    let h = start().await;
    h.sim.set_fault(Fault {
        endpoint: Endpoint::Authorize,
        kind: FaultKind::Errcode(10009, "操作太频繁了，请稍后再试".into()),
        times: Some(1),
    });
    let page = h
        .page(
            &qr_url(WEB_APPID, CALLBACK, "snsapi_login", "s"),
            DESKTOP_UA,
        )
        .await;
    assert_error_page(&page, "操作太频繁了", Some(10009));
    let (_, html, _) = h
        .page(
            &qr_url(WEB_APPID, CALLBACK, "snsapi_login", "s"),
            DESKTOP_UA,
        )
        .await;
    assert!(html.contains("confirm-alice"));
}

// ---- oauth2/authorize ------------------------------------------------------------

#[tokio::test]
async fn oauth2_authorize_outside_wechat_asks_to_open_in_wechat() {
    let h = start().await;
    let path = mp_url(MP_APPID, CALLBACK, "snsapi_base", "s");
    assert_error_page(
        &h.page(&path, DESKTOP_UA).await,
        "请在微信客户端打开链接",
        None,
    );
    // WeCom also says MicroMessenger but is not WeChat.
    assert_error_page(
        &h.page(&path, WECOM_UA).await,
        "请在微信客户端打开链接",
        None,
    );
    // Case-insensitive match on MicroMessenger/.
    let (status, _, _) = h.page(&path, &WECHAT_UA.to_lowercase()).await;
    assert_eq!(status, StatusCode::FOUND);
}

#[tokio::test]
async fn oauth2_authorize_with_open_platform_appid_is_10016() {
    let h = start().await;
    for appid in [WEB_APPID, MOBILE_APPID] {
        let page = h
            .page(&mp_url(appid, CALLBACK, "snsapi_userinfo", "s"), WECHAT_UA)
            .await;
        assert_error_page(&page, "不支持微信开放平台的Appid", Some(10016));
    }
    let page = h
        .page(&mp_url(MP_APPID, CALLBACK, "snsapi_login", "s"), WECHAT_UA)
        .await;
    assert_error_page(&page, "Scope 参数错误或没有 Scope 权限", Some(10005));
    let page = h
        .page(
            &mp_url(MP_APPID, "http://evil.example/cb", "snsapi_base", "s"),
            WECHAT_UA,
        )
        .await;
    assert_error_page(&page, "redirect_uri 参数错误", Some(10003));
}

#[tokio::test]
async fn current_wechat_user_comes_from_sim_user_then_cookie_then_first_user() {
    let h = start().await;
    let path = mp_url(MP_APPID, CALLBACK, "snsapi_base", "s");
    let code_of = |location: Option<String>| query_param(&location.unwrap(), "code").unwrap();
    // Default: the first user.
    let (_, _, loc) = h.page(&path, WECHAT_UA).await;
    let v = h.exchange(MP_APPID, MP_SECRET, &code_of(loc)).await;
    assert_eq!(v["openid"], h.sim.openid(MP_APPID, USER_ALICE).as_str());
    // Confirming on a consent page as xiaoming sets the cookie.
    let (_, html, _) = h
        .page(
            &mp_url(MP_APPID, CALLBACK, "snsapi_userinfo", "s"),
            WECHAT_UA,
        )
        .await;
    let resp = h.decide(&flow_id(&html), Some(USER_XIAOMING)).await;
    let cookie = resp.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("sim_wechat_user=xiaoming"), "{cookie}");
    let resp = h
        .http
        .get(format!("{}{path}", h.base))
        .header(USER_AGENT, WECHAT_UA)
        .header(COOKIE, "sim_wechat_user=xiaoming")
        .send()
        .await
        .unwrap();
    let loc = resp
        .headers()
        .get(LOCATION)
        .map(|v| v.to_str().unwrap().to_owned());
    let v = h.exchange(MP_APPID, MP_SECRET, &code_of(loc)).await;
    assert_eq!(v["openid"], h.sim.openid(MP_APPID, USER_XIAOMING).as_str());
    // sim_user on the URL wins over the cookie.
    let resp = h
        .http
        .get(format!(
            "{}{}",
            h.base,
            plus(&path, &format!("sim_user={USER_ALICE2}"))
        ))
        .header(USER_AGENT, WECHAT_UA)
        .header(COOKIE, "sim_wechat_user=xiaoming")
        .send()
        .await
        .unwrap();
    let loc = resp
        .headers()
        .get(LOCATION)
        .map(|v| v.to_str().unwrap().to_owned());
    let v = h.exchange(MP_APPID, MP_SECRET, &code_of(loc)).await;
    assert_eq!(v["openid"], h.sim.openid(MP_APPID, USER_ALICE2).as_str());
    // The admin page sets it too.
    let resp = h
        .http
        .post(format!("{}/__sim/wechat-user", h.base))
        .form(&[("user", USER_ALICE2)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert!(resp.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .starts_with("sim_wechat_user=alice2"));
    // Unknown sim_user: an error page.
    let page = h.page(&plus(&path, "sim_user=nobody"), WECHAT_UA).await;
    assert_error_page(&page, "sim_user=nobody", None);
}

#[tokio::test]
async fn official_account_refusal_redirects_without_code() {
    let h = start().await;
    let (_, html, _) = h
        .page(
            &mp_url(MP_APPID, CALLBACK, "snsapi_userinfo", "r1"),
            WECHAT_UA,
        )
        .await;
    let resp = h.decide(&flow_id(&html), None).await;
    assert_eq!(
        resp.headers()[LOCATION].to_str().unwrap(),
        format!("{CALLBACK}?state=r1")
    );
}

#[tokio::test]
async fn scan_and_refuse_helpers_match_the_pages() {
    let h = start().await;
    let url = format!(
        "{}{}",
        h.base,
        qr_url(WEB_APPID, CALLBACK, "snsapi_login", "h1")
    );
    let urls = h.sim.scan(&url, USER_XIAOMING).unwrap();
    assert_eq!(urls.len(), 1);
    let v = h
        .exchange(
            WEB_APPID,
            WEB_SECRET,
            &query_param(&urls[0], "code").unwrap(),
        )
        .await;
    assert_eq!(v["openid"], h.sim.openid(WEB_APPID, USER_XIAOMING).as_str());
    assert_eq!(h.sim.refuse(&url).unwrap(), format!("{CALLBACK}?state=h1"));
    let bad = format!(
        "{}{}",
        h.base,
        qr_url(WEB_APPID, "http://evil.example/", "snsapi_login", "h1")
    );
    assert!(matches!(
        h.sim.scan(&bad, USER_ALICE),
        Err(SimError::Page {
            code: Some(10003),
            ..
        })
    ));
}

// ---- app tokens ----------------------------------------------------------------------

#[tokio::test]
async fn cgi_bin_token_mints_each_call_and_the_previous_one_lasts_five_minutes() {
    let h = start().await;
    let first = h.app_token(MP_APPID, MP_SECRET).await;
    assert_eq!(first["expires_in"], 7200);
    let t1 = first["access_token"].as_str().unwrap().to_owned();
    let openid = h.sim.openid(MP_APPID, USER_ALICE);
    h.sim.mark_interaction(MP_APPID, USER_ALICE);
    let second = h.app_token(MP_APPID, MP_SECRET).await;
    let t2 = second["access_token"].as_str().unwrap().to_owned();
    assert_ne!(t1, t2);
    assert_eq!(h.sim.counters().app_token_fetches, 2);
    h.sim.advance(290);
    assert_eq!(
        errcode(&h.send_text(&t1, &openid, "old still works").await),
        0
    );
    h.sim.advance(11);
    assert_wx_error(&h.send_text(&t1, &openid, "old is gone").await, 40001);
    assert_eq!(errcode(&h.send_text(&t2, &openid, "new works").await), 0);
    assert_wx_error(&h.send_text("unknown-token", &openid, "x").await, 40001);
}

#[tokio::test]
async fn cgi_bin_token_errors() {
    let h = start().await;
    assert_wx_error(&h.app_token(MP_APPID, WEB_SECRET).await, 40001);
    assert_wx_error(&h.app_token("wx0000000000000000", MP_SECRET).await, 40013);
    assert_wx_error(&h.app_token(WEB_APPID, WEB_SECRET).await, 40013);
    assert_wx_error(
        &h.json(&format!(
            "/cgi-bin/token?appid={MP_APPID}&secret={MP_SECRET}"
        ))
        .await,
        40002,
    );
    assert_eq!(h.sim.counters().app_token_fetches, 0);
    assert_eq!(h.sim.counters().app_token_requests, 4);
}

#[tokio::test]
async fn app_token_expires_after_two_hours_42001() {
    let h = start().await;
    let t = h.app_token(MP_APPID, MP_SECRET).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    h.sim.advance(3600);
    h.sim.mark_interaction(MP_APPID, USER_ALICE);
    h.sim.advance(3601);
    assert_wx_error(
        &h.send_text(&t, &h.sim.openid(MP_APPID, USER_ALICE), "x")
            .await,
        42001,
    );
}

#[tokio::test]
async fn stable_token_returns_the_same_token_until_force_refresh() {
    let h = start().await;
    let a = h.stable_token(false).await;
    assert_success(&a);
    h.sim.advance(100);
    let b = h.stable_token(false).await;
    assert_eq!(a["access_token"], b["access_token"]);
    let left = b["expires_in"].as_i64().unwrap();
    assert!(
        (7090..=7100).contains(&left),
        "remaining lifetime, got {left}"
    );
    assert_eq!(h.sim.counters().app_token_fetches, 1);
    let c = h.stable_token(true).await;
    assert_ne!(c["access_token"], a["access_token"]);
    assert_eq!(c["expires_in"], 7200);
    assert_eq!(h.sim.counters().app_token_fetches, 2);
    // Kept apart from cgi-bin/token: a plain fetch does not knock it out.
    h.app_token(MP_APPID, MP_SECRET).await;
    assert_eq!(
        h.stable_token(false).await["access_token"],
        c["access_token"]
    );
    // After it expires, a new one.
    h.sim.advance(7201);
    let d = h.stable_token(false).await;
    assert_ne!(d["access_token"], c["access_token"]);
}

#[tokio::test]
async fn stable_token_errors() {
    let h = start().await;
    let hr = &h;
    let post = move |body: Value| async move { hr.post_json("/cgi-bin/stable_token", &body).await };
    assert_wx_error(
        &post(json!({"grant_type": "client_credential", "appid": MP_APPID, "secret": WEB_SECRET}))
            .await,
        40125,
    );
    assert_wx_error(&post(json!({"grant_type": "client_credential", "appid": "wx0000000000000000", "secret": MP_SECRET})).await, 40013);
    assert_wx_error(
        &post(json!({"grant_type": "client_credential", "secret": MP_SECRET})).await,
        41002,
    );
    assert_wx_error(
        &post(json!({"grant_type": "client_credential", "appid": MP_APPID})).await,
        41004,
    );
    assert_wx_error(
        &post(json!({"appid": MP_APPID, "secret": MP_SECRET})).await,
        40002,
    );
    let resp = h
        .http
        .post(format!("{}/cgi-bin/stable_token", h.base))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_wx_error(&resp.json::<Value>().await.unwrap(), 47001);
    let resp = h
        .http
        .post(format!("{}/cgi-bin/stable_token", h.base))
        .send()
        .await
        .unwrap();
    assert_wx_error(&resp.json::<Value>().await.unwrap(), 44002);
}

#[tokio::test]
async fn app_token_daily_quota_is_45009_and_resets_next_day() {
    let h = start().await;
    h.sim.set_limits(SimLimits {
        app_token_daily_quota: 3,
        ..SimLimits::default()
    });
    for _ in 0..2 {
        assert_success(&h.app_token(MP_APPID, MP_SECRET).await);
    }
    assert_success(&h.stable_token(false).await);
    assert_wx_error(&h.app_token(MP_APPID, MP_SECRET).await, 45009);
    assert_wx_error(&h.stable_token(true).await, 45009);
    // A stable_token call that needs no new token still answers.
    assert_success(&h.stable_token(false).await);
    assert_eq!(h.sim.counters().app_token_fetches, 3);
    h.sim.advance(86_400);
    assert_success(&h.app_token(MP_APPID, MP_SECRET).await);
}

#[tokio::test]
async fn stable_token_force_refresh_daily_limit_is_45009() {
    let h = start().await;
    h.sim.set_limits(SimLimits {
        force_refresh_daily_quota: 2,
        ..SimLimits::default()
    });
    assert_success(&h.stable_token(true).await);
    assert_success(&h.stable_token(true).await);
    assert_wx_error(&h.stable_token(true).await, 45009);
    assert_success(&h.stable_token(false).await);
}

#[tokio::test]
async fn app_token_ip_allowlist_is_40164() {
    let h = start().await;
    h.sim
        .set_ip_allowlist(MP_APPID, Some(vec!["10.1.2.3".parse().unwrap()]))
        .unwrap();
    assert_wx_error(&h.app_token(MP_APPID, MP_SECRET).await, 40164);
    assert_wx_error(&h.stable_token(false).await, 40164);
    h.sim
        .set_ip_allowlist(MP_APPID, Some(vec!["127.0.0.1".parse().unwrap()]))
        .unwrap();
    assert_success(&h.app_token(MP_APPID, MP_SECRET).await);
}

// ---- customer-service messages ---------------------------------------------------

#[tokio::test]
async fn custom_message_needs_the_48h_window_45015() {
    let h = start().await;
    let token = h.app_token(MP_APPID, MP_SECRET).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let openid = h.sim.openid(MP_APPID, USER_XIAOMING);
    assert_wx_error(&h.send_text(&token, &openid, "hi").await, 45015);
    h.sim.mark_interaction(MP_APPID, USER_XIAOMING);
    assert_eq!(
        h.send_text(&token, &openid, "你的验证码是 123456").await,
        json!({"errcode": 0, "errmsg": "ok"})
    );
    let sent = h.sim.messages();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].appid, MP_APPID);
    assert_eq!(sent[0].touser, openid);
    assert_eq!(sent[0].content, "你的验证码是 123456");
    assert_eq!(h.sim.counters().messages_sent, 1);
    // 48 h later the window is closed (use a fresh token: the first one expired).
    h.sim.advance(48 * 3600);
    let token = h.app_token(MP_APPID, MP_SECRET).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_wx_error(&h.send_text(&token, &openid, "late").await, 45015);
}

#[tokio::test]
async fn custom_messages_per_window_are_capped_45047() {
    let h = start().await;
    let token = h.app_token(MP_APPID, MP_SECRET).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let openid = h.sim.openid(MP_APPID, USER_ALICE);
    h.sim.mark_interaction(MP_APPID, USER_ALICE);
    for i in 0..5 {
        assert_eq!(
            errcode(&h.send_text(&token, &openid, &format!("m{i}")).await),
            0
        );
    }
    assert_wx_error(&h.send_text(&token, &openid, "one too many").await, 45047);
    assert_eq!(h.sim.messages().len(), 5);
    // A new interaction opens a new window.
    h.sim.mark_interaction(MP_APPID, USER_ALICE);
    assert_eq!(errcode(&h.send_text(&token, &openid, "again").await), 0);
}

#[tokio::test]
async fn custom_message_to_a_foreign_openid_is_40003() {
    let h = start().await;
    let token = h.app_token(MP_APPID, MP_SECRET).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    h.sim.mark_interaction(MP_APPID, USER_ALICE);
    // The website app's openid for the same person is not this account's.
    assert_wx_error(
        &h.send_text(&token, &h.sim.openid(WEB_APPID, USER_ALICE), "x")
            .await,
        40003,
    );
    let bad_type = h
        .post_json(
            &format!("/cgi-bin/message/custom/send?access_token={token}"),
            &json!({"touser": h.sim.openid(MP_APPID, USER_ALICE), "msgtype": "image", "image": {"media_id": "m"}}),
        )
        .await;
    assert_wx_error(&bad_type, 40008);
    assert_wx_error(
        &h.send_text(&token, &h.sim.openid(MP_APPID, USER_ALICE), "")
            .await,
        44004,
    );
}

// ---- faults -------------------------------------------------------------------------

fn fault(endpoint: Endpoint, kind: FaultKind, times: Option<u32>) -> Fault {
    Fault {
        endpoint,
        kind,
        times,
    }
}

#[tokio::test]
async fn busy_fault_is_errcode_minus_1_and_does_not_spend_the_code() {
    let h = start().await;
    let code = h
        .sim
        .issue_code(WEB_APPID, USER_ALICE, "snsapi_login")
        .unwrap();
    h.sim
        .set_fault(fault(Endpoint::AccessToken, FaultKind::Busy, Some(1)));
    assert_wx_error(&h.exchange(WEB_APPID, WEB_SECRET, &code).await, -1);
    assert_success(&h.exchange(WEB_APPID, WEB_SECRET, &code).await);
}

#[tokio::test]
async fn busy_after_apply_spends_the_code_so_the_retry_gets_40163() {
    let h = start().await;
    let code = h
        .sim
        .issue_code(WEB_APPID, USER_ALICE, "snsapi_login")
        .unwrap();
    h.sim.set_fault(fault(
        Endpoint::AccessToken,
        FaultKind::BusyAfterApply,
        Some(1),
    ));
    assert_wx_error(&h.exchange(WEB_APPID, WEB_SECRET, &code).await, -1);
    assert_wx_error(&h.exchange(WEB_APPID, WEB_SECRET, &code).await, 40163);
}

#[tokio::test]
async fn patch_fault_changes_fields_of_a_success_answer_only() {
    let h = start().await;
    // Over the admin API, as a test in another language would set it.
    let resp = h
        .http
        .post(format!("{}/__sim/faults", h.base))
        .json(&json!({"endpoint": "access_token", "kind": "patch", "fields": {"unionid": "u\u{0}x"}, "times": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        h.json("/__sim/faults").await[0]["fields"]["unionid"],
        "u\u{0}x"
    );
    let token = h
        .login(WEB_APPID, WEB_SECRET, USER_ALICE, "snsapi_login")
        .await;
    assert_eq!(token["unionid"], "u\u{0}x");
    assert_success(&token);
    // Once: the next answer is WeChat's own again.
    let again = h
        .login(WEB_APPID, WEB_SECRET, USER_ALICE, "snsapi_login")
        .await;
    assert_eq!(
        again["unionid"],
        json!(h.sim.unionid(WEB_APPID, USER_ALICE))
    );
    // An error answer is left alone.
    h.sim.set_fault(fault(
        Endpoint::AccessToken,
        FaultKind::Patch(serde_json::Map::from_iter([(
            "openid".to_owned(),
            json!("o\u{0}"),
        )])),
        Some(1),
    ));
    let err = h.exchange(WEB_APPID, WEB_SECRET, "made-up").await;
    assert_wx_error(&err, 40029);
    assert!(err.get("openid").is_none(), "{err}");
}

#[tokio::test]
async fn errcode_fault_answers_that_error() {
    let h = start().await;
    h.sim.set_fault(fault(
        Endpoint::UserInfo,
        FaultKind::Errcode(45011, "api minute-quota reach limit".into()),
        Some(1),
    ));
    let v = h
        .login(WEB_APPID, WEB_SECRET, USER_ALICE, "snsapi_login")
        .await;
    assert_wx_error(&h.userinfo(&v).await, 45011);
    assert_success(&h.userinfo(&v).await);
}

#[tokio::test]
async fn http5xx_fault_answers_that_status() {
    let h = start().await;
    h.sim
        .set_fault(fault(Endpoint::AppToken, FaultKind::Http5xx(503), Some(1)));
    let resp = h
        .get(&format!(
            "/cgi-bin/token?grant_type=client_credential&appid={MP_APPID}&secret={MP_SECRET}"
        ))
        .await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn garbage_fault_is_not_json() {
    let h = start().await;
    h.sim
        .set_fault(fault(Endpoint::AccessToken, FaultKind::Garbage, Some(1)));
    let resp = h.get(&format!("/sns/oauth2/access_token?appid={WEB_APPID}&secret={WEB_SECRET}&code=x&grant_type=authorization_code")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[CONTENT_TYPE], "text/plain");
    assert!(serde_json::from_str::<Value>(&resp.text().await.unwrap()).is_err());
}

#[tokio::test]
async fn html_gbk_fault_is_labelled_gbk_html() {
    let h = start().await;
    h.sim
        .set_fault(fault(Endpoint::RefreshToken, FaultKind::HtmlGbk, Some(1)));
    let resp = h
        .get(&format!(
            "/sns/oauth2/refresh_token?appid={WEB_APPID}&grant_type=refresh_token&refresh_token=x"
        ))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[CONTENT_TYPE], "text/html; charset=GBK");
    let body = resp.bytes().await.unwrap();
    assert!(
        std::str::from_utf8(&body).is_err(),
        "GBK bytes are not UTF-8"
    );
    assert!(serde_json::from_slice::<Value>(&body).is_err());
}

#[tokio::test]
async fn slow_fault_delays_the_answer() {
    let h = start().await;
    h.sim.set_fault(fault(
        Endpoint::Auth,
        FaultKind::Slow(Duration::from_millis(300)),
        Some(1),
    ));
    let started = Instant::now();
    let v = h.json("/sns/auth?access_token=x&openid=y").await;
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "took {:?}",
        started.elapsed()
    );
    assert_wx_error(&v, 40014); // then the normal answer
}

#[tokio::test]
async fn drop_fault_closes_the_connection_without_an_answer() {
    let h = start().await;
    h.sim
        .set_fault(fault(Endpoint::StableToken, FaultKind::Drop, Some(1)));
    let err = h
        .http
        .post(format!("{}/cgi-bin/stable_token", h.base))
        .json(&json!({"grant_type": "client_credential", "appid": MP_APPID, "secret": MP_SECRET}))
        .send()
        .await
        .expect_err("the connection is closed");
    assert!(!err.is_timeout(), "{err}");
    assert!(err.status().is_none(), "{err}");
    assert_success(&h.stable_token(false).await);
}

#[tokio::test]
async fn fault_times_is_honoured_then_normal_again() {
    let h = start().await;
    h.sim
        .set_fault(fault(Endpoint::Any, FaultKind::Busy, Some(2)));
    assert_wx_error(&h.app_token(MP_APPID, MP_SECRET).await, -1);
    assert_wx_error(&h.json("/sns/auth?access_token=x&openid=y").await, -1);
    assert_wx_error(&h.json("/sns/auth?access_token=x&openid=y").await, 40014);
    assert!(h.sim.faults().is_empty());
    // Until cleared.
    h.sim
        .set_fault(fault(Endpoint::Auth, FaultKind::Busy, None));
    for _ in 0..3 {
        assert_wx_error(&h.json("/sns/auth?access_token=x&openid=y").await, -1);
    }
    // Other endpoints are untouched.
    assert_success(&h.app_token(MP_APPID, MP_SECRET).await);
    h.sim.clear_faults();
    assert_wx_error(&h.json("/sns/auth?access_token=x&openid=y").await, 40014);
}

#[tokio::test]
async fn double_callback_gives_two_codes_for_the_same_state_and_spends_both() {
    let h = start().await;
    h.sim
        .set_fault(fault(Endpoint::Any, FaultKind::DoubleCallback, Some(1)));
    let (_, html, _) = h
        .page(
            &qr_url(WEB_APPID, CALLBACK, "snsapi_login", "dbl"),
            DESKTOP_UA,
        )
        .await;
    let resp = h.decide(&flow_id(&html), Some(USER_ALICE)).await;
    assert_eq!(resp.status(), StatusCode::OK, "a page, not a 302");
    let page = resp.text().await.unwrap();
    let urls = h.sim.last_redirects();
    assert_eq!(urls.len(), 2);
    let esc = |u: &str| u.replace('&', "&amp;");
    assert!(
        page.contains(&format!(
            "id=\"first-callback\" title=\"callback 1\" src=\"{}\"",
            esc(&urls[0])
        )),
        "{page}"
    );
    assert!(page.contains(&format!("url={}\"", esc(&urls[1]))), "{page}");
    let (c1, c2) = (
        query_param(&urls[0], "code").unwrap(),
        query_param(&urls[1], "code").unwrap(),
    );
    assert_ne!(c1, c2);
    assert_eq!(query_param(&urls[0], "state").as_deref(), Some("dbl"));
    assert_eq!(query_param(&urls[1], "state").as_deref(), Some("dbl"));
    // Either code works; the second exchange gets 40163, as on WeChat.
    let v = h.exchange(WEB_APPID, WEB_SECRET, &c2).await;
    assert_eq!(v["openid"], h.sim.openid(WEB_APPID, USER_ALICE).as_str());
    assert_wx_error(&h.exchange(WEB_APPID, WEB_SECRET, &c1).await, 40163);
    // times honoured: the next confirm is a plain 302.
    let location = h.web_login_callback(CALLBACK, "next", USER_ALICE).await;
    assert_eq!(h.sim.last_redirects(), vec![location]);
}

#[tokio::test]
async fn double_callback_codes_each_work_when_first() {
    let h = start().await;
    h.sim.set_fault(fault(
        Endpoint::Authorize,
        FaultKind::DoubleCallback,
        Some(1),
    ));
    let url = format!(
        "{}{}",
        h.base,
        mp_url(MP_APPID, CALLBACK, "snsapi_base", "b")
    );
    let urls = h.sim.scan(&url, USER_XIAOMING).unwrap();
    assert_eq!(urls.len(), 2);
    let v = h
        .exchange(MP_APPID, MP_SECRET, &query_param(&urls[0], "code").unwrap())
        .await;
    assert_success(&v);
    assert_wx_error(
        &h.exchange(MP_APPID, MP_SECRET, &query_param(&urls[1], "code").unwrap())
            .await,
        40163,
    );
}

// ---- admin API and robustness ----------------------------------------------------------

#[tokio::test]
async fn admin_api_flips_faults_and_reads_counters() {
    let h = start().await;
    let resp = h
        .http
        .post(format!("{}/__sim/faults", h.base))
        .json(&json!({"endpoint": "access_token", "kind": "errcode", "errcode": 40164, "errmsg": "invalid ip", "times": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(h.sim.faults().len(), 1);
    assert_eq!(h.json("/__sim/faults").await[0]["kind"], "errcode");
    assert_wx_error(&h.exchange(WEB_APPID, WEB_SECRET, "x").await, 40164);

    h.http
        .post(format!("{}/__sim/faults", h.base))
        .json(&json!({"endpoint": "any", "kind": "slow", "ms": 1}))
        .send()
        .await
        .unwrap();
    let resp = h
        .http
        .delete(format!("{}/__sim/faults", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(h.sim.faults().is_empty());
    let resp = h
        .http
        .post(format!("{}/__sim/faults", h.base))
        .json(&json!({"endpoint": "nowhere", "kind": "busy"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    h.login(WEB_APPID, WEB_SECRET, USER_ALICE, "snsapi_login")
        .await;
    let counters = h.json("/__sim/counters").await;
    assert_eq!(counters["code_exchanges"], 2);
    assert_eq!(counters["codes_issued"], 1);
    assert_eq!(counters, serde_json::to_value(h.sim.counters()).unwrap());

    // Clock, limits, interaction, SDK codes, messages over HTTP.
    let before = h.sim.now_unix();
    let resp = h
        .http
        .post(format!("{}/__sim/advance?secs=600", h.base))
        .send()
        .await
        .unwrap();
    assert!(resp.json::<Value>().await.unwrap()["now"].as_i64().unwrap() >= before + 600);
    let limits = h
        .post_json("/__sim/limits", &json!({"messages_per_window": 1}))
        .await;
    assert_eq!(limits["messages_per_window"], 1);
    assert_eq!(h.sim.limits().messages_per_window, 1);
    assert_eq!(h.sim.limits().app_token_daily_quota, 2000);
    let ok = h
        .post_json(
            &format!("/__sim/interaction?appid={MP_APPID}&user={USER_ALICE}"),
            &json!({}),
        )
        .await;
    assert_eq!(ok["ok"], true);
    let code = h
        .post_json(
            &format!("/__sim/codes?appid={MOBILE_APPID}&user={USER_ALICE}"),
            &json!({}),
        )
        .await;
    assert_success(
        &h.exchange(MOBILE_APPID, MOBILE_SECRET, code["code"].as_str().unwrap())
            .await,
    );
    let token = h.app_token(MP_APPID, MP_SECRET).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        errcode(
            &h.send_text(&token, &h.sim.openid(MP_APPID, USER_ALICE), "via admin")
                .await
        ),
        0
    );
    assert_eq!(h.json("/__sim/messages").await[0]["content"], "via admin");
    let index = h.get("/__sim/").await.text().await.unwrap();
    assert!(index.contains(WEB_APPID) && index.contains("id=\"as-alice\""));
}

#[tokio::test]
async fn bad_requests_get_wechat_shaped_answers() {
    let h = start().await;
    let v = h
        .json("/sns/oauth2/access_token?appid=%FF%FE&secret=%&code=%%%")
        .await;
    assert_wx_error(&v, 40013);
    let resp = h.get("/sns/nothing-here").await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_wx_error(&resp.json::<Value>().await.unwrap(), 40066);
    let resp = h
        .http
        .post(format!("{}/connect/sim/decide", h.base))
        .body("flow=%ZZ&user=")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.text().await.unwrap().contains("二维码已失效"));
    let page = h.page("/connect/qrconnect?%%%&&&==", DESKTOP_UA).await;
    assert_error_page(&page, "appid", Some(10012));
}

#[tokio::test]
async fn stop_shuts_the_server_down() {
    let h = start().await;
    let base = h.base.clone();
    h.sim.stop().await;
    assert!(h
        .http
        .get(format!("{base}/__sim/counters"))
        .send()
        .await
        .is_err());
}

/// `wxa/business/getuserphonenumber`: a getPhoneNumber code for the Mini
/// Program's app token gives the number with its watermark, once.
#[tokio::test]
async fn a_phone_code_gives_the_number_once_to_the_mini_program() {
    let h = start().await;
    let token = h.app_token(MINI_PROGRAM_APPID, MINI_PROGRAM_SECRET).await;
    let token = token["access_token"].as_str().unwrap().to_owned();
    let code = h
        .sim
        .issue_phone_code(MINI_PROGRAM_APPID, "+8613800138000")
        .unwrap();
    let path = format!("/wxa/business/getuserphonenumber?access_token={token}");
    let v = h.post_json(&path, &json!({ "code": code })).await;
    assert_eq!(v["errcode"], 0, "{v}");
    let info = &v["phone_info"];
    assert_eq!(info["phoneNumber"], "13800138000");
    assert_eq!(info["purePhoneNumber"], "13800138000");
    assert_eq!(info["countryCode"], "86");
    assert_eq!(info["watermark"]["appid"], MINI_PROGRAM_APPID);
    // Single use.
    assert_wx_error(&h.post_json(&path, &json!({ "code": code })).await, 40029);
    // Another app's token cannot redeem one.
    let other = h.app_token(MP_APPID, MP_SECRET).await;
    let other = other["access_token"].as_str().unwrap();
    let code = h
        .sim
        .issue_phone_code(MINI_PROGRAM_APPID, "+12025550123")
        .unwrap();
    let other_path = format!("/wxa/business/getuserphonenumber?access_token={other}");
    assert_wx_error(
        &h.post_json(&other_path, &json!({ "code": code })).await,
        40029,
    );
    // A made-up token.
    assert_wx_error(
        &h.post_json(
            "/wxa/business/getuserphonenumber?access_token=nope",
            &json!({ "code": code }),
        )
        .await,
        40001,
    );
    // A foreign number keeps its country code apart.
    let v = h.post_json(&path, &json!({ "code": code })).await;
    assert_eq!(v["phone_info"]["countryCode"], "1");
    assert_eq!(v["phone_info"]["purePhoneNumber"], "2025550123");
    assert_eq!(v["phone_info"]["phoneNumber"], "+1 2025550123");
    // Only a Mini Program hands out phone codes.
    assert!(h.sim.issue_phone_code(MP_APPID, "+8613800138000").is_err());
    assert!(h
        .sim
        .issue_phone_code(MINI_PROGRAM_APPID, "13800138000")
        .is_err());
}
