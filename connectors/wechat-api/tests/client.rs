//! The WeChat client against real HTTP servers on 127.0.0.1 that answer with canned
//! WeChat bodies: success answers, every mapped errcode, broken upstreams, timeouts,
//! and the promise that secrets, codes and tokens never reach an error.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use idbridge_core::{ConnectorError, ErrorKind, Stage};
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wechat_api::{Api, ClientOptions, WeChatClient, WeChatError, USER_AGENT};

const APPID: &str = "wx0123456789abcdef";
const SECRET: &str = "5ec7e75ec7e75ec7e75ec7e75ec7e7aa";
const CODE: &str = "CODE0a1b2c3d4e5f6071";
const USER_AT: &str = "USERACCESSTOKEN_9f8e7d6c";
const REFRESH_RT: &str = "USERREFRESHTOKEN_1a2b3c";
const APP_AT: &str = "APPACCESSTOKEN_55aa66bb";
const OPENID: &str = "oABCDEFGHIJKLMNOPQRSTUVWXYZ0";

// ---------------------------------------------------------------- test server

/// One canned answer.
#[derive(Clone)]
struct Reply {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    delay: Duration,
    location: Option<&'static str>,
    /// Append the request's query string and body to `body` (a page that echoes the request).
    echo: bool,
}

impl Reply {
    /// A WeChat JSON body, labelled `text/plain` as WeChat does.
    fn wechat(body: &str) -> Self {
        Self::raw(200, "text/plain", body.as_bytes())
    }

    fn errcode(code: i64, msg: &str) -> Self {
        Self::wechat(&format!(r#"{{"errcode":{code},"errmsg":"{msg}"}}"#))
    }

    fn raw(status: u16, content_type: &'static str, body: &[u8]) -> Self {
        Self {
            status,
            content_type,
            body: body.to_vec(),
            delay: Duration::ZERO,
            location: None,
            echo: false,
        }
    }
}

#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    query: String,
    body: String,
    user_agent: String,
}

#[derive(Default)]
struct State {
    /// Served in order; the last one repeats.
    replies: Mutex<VecDeque<Reply>>,
    seen: Mutex<Vec<Seen>>,
}

struct Server {
    base: String,
    state: Arc<State>,
    handle: ServerHandle,
}

impl Server {
    async fn start(replies: Vec<Reply>) -> Self {
        let state = Arc::new(State::default());
        state.replies.lock().unwrap().extend(replies);
        let data = web::Data::from(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(answer))
        })
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .unwrap();
        let port = server.addrs()[0].port();
        let server = server.run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        Self {
            base: format!("http://127.0.0.1:{port}"),
            state,
            handle,
        }
    }

    fn then(&self, reply: Reply) {
        let mut replies = self.state.replies.lock().unwrap();
        replies.clear();
        replies.push_back(reply);
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    fn client(&self) -> WeChatClient {
        client_for(&self.base, Duration::from_secs(5))
    }

    async fn stop(self) {
        self.handle.stop(false).await;
    }
}

fn client_for(base: &str, timeout: Duration) -> WeChatClient {
    WeChatClient::new(ClientOptions {
        api_base_url: base.to_owned(),
        connect_timeout: Duration::from_secs(2),
        timeout,
    })
    .unwrap()
}

async fn answer(req: HttpRequest, body: web::Bytes, state: web::Data<State>) -> HttpResponse {
    let body = String::from_utf8_lossy(&body).into_owned();
    state.seen.lock().unwrap().push(Seen {
        method: req.method().to_string(),
        path: req.path().to_owned(),
        query: req.query_string().to_owned(),
        body: body.clone(),
        user_agent: req
            .headers()
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
    });
    let reply = {
        let mut replies = state.replies.lock().unwrap();
        if replies.len() > 1 {
            replies.pop_front()
        } else {
            replies.front().cloned()
        }
    }
    .unwrap_or_else(|| Reply::raw(500, "text/plain", b"no canned reply"));
    if !reply.delay.is_zero() {
        actix_web::rt::time::sleep(reply.delay).await;
    }
    let mut out = reply.body.clone();
    if reply.echo {
        out.extend_from_slice(format!("{}?{} {}", req.path(), req.query_string(), body).as_bytes());
    }
    let mut response = HttpResponse::build(StatusCode::from_u16(reply.status).unwrap());
    response.insert_header(("content-type", reply.content_type));
    if let Some(location) = reply.location {
        response.insert_header(("location", location));
    }
    response.body(out)
}

/// A raw TCP server for what actix will not do: drop the connection, or send a
/// chunked body with no length. Answers every connection with `response` (then closes).
fn raw_server(response: &'static [u8]) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(response);
            let _ = stream.flush();
            // Dropping the stream closes the connection.
        }
    });
    format!("http://127.0.0.1:{port}")
}

fn token_body() -> String {
    format!(
        r#"{{"access_token":"{USER_AT}","expires_in":7200,"refresh_token":"{REFRESH_RT}","openid":"{OPENID}","scope":"snsapi_login","unionid":"uUNION1"}}"#
    )
}

/// Every secret-ish value a test request carries; none may appear in an error.
fn assert_no_secrets(e: &WeChatError) {
    let connector: ConnectorError = e.clone().into();
    for text in [
        format!("{e}"),
        format!("{e:?}"),
        format!("{connector}"),
        format!("{connector:?}"),
    ] {
        for secret in [SECRET, CODE, USER_AT, REFRESH_RT, APP_AT] {
            assert!(!text.contains(secret), "{secret} leaked into: {text}");
        }
    }
}

// ------------------------------------------------------------------ successes

#[actix_web::test]
async fn code_exchange_parses_a_text_plain_answer_and_sends_wechats_parameters() {
    let server = Server::start(vec![Reply::wechat(&token_body())]).await;
    let token = server
        .client()
        .exchange_code(APPID, SECRET, CODE)
        .await
        .unwrap();
    assert_eq!(token.access_token, USER_AT);
    assert_eq!(token.refresh_token, REFRESH_RT);
    assert_eq!(token.expires_in, 7200);
    assert_eq!(token.openid, OPENID);
    assert_eq!(token.scope, "snsapi_login");
    assert_eq!(token.unionid.as_deref(), Some("uUNION1"));
    assert!(!token.is_snapshotuser);
    let debug = format!("{token:?}");
    assert!(
        !debug.contains(USER_AT) && !debug.contains(REFRESH_RT),
        "{debug}"
    );

    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[0].path, "/sns/oauth2/access_token");
    assert_eq!(
        seen[0].query,
        format!("appid={APPID}&secret={SECRET}&code={CODE}&grant_type=authorization_code")
    );
    assert!(
        seen[0].user_agent.contains("idbridge"),
        "{}",
        seen[0].user_agent
    );
    assert_eq!(seen[0].user_agent, USER_AGENT);
    server.stop().await;
}

#[actix_web::test]
async fn snapshot_users_and_unbound_apps_parse() {
    let server = Server::start(vec![Reply::wechat(&format!(
        r#"{{"access_token":"{USER_AT}","expires_in":7200,"refresh_token":"{REFRESH_RT}","openid":"{OPENID}","scope":"snsapi_userinfo","is_snapshotuser":1}}"#
    ))])
    .await;
    let token = server
        .client()
        .exchange_code(APPID, SECRET, CODE)
        .await
        .unwrap();
    assert!(token.is_snapshotuser);
    assert_eq!(token.unionid, None);

    server.then(Reply::wechat(&format!(
        r#"{{"access_token":"{USER_AT}","expires_in":7200,"refresh_token":"{REFRESH_RT}","openid":"{OPENID}","scope":"snsapi_base","unionid":null,"is_snapshotuser":0}}"#
    )));
    let token = server
        .client()
        .exchange_code(APPID, SECRET, CODE)
        .await
        .unwrap();
    assert!(!token.is_snapshotuser);
    assert_eq!(token.unionid, None);
    server.stop().await;
}

#[actix_web::test]
async fn refresh_sends_no_secret() {
    let server = Server::start(vec![Reply::wechat(&token_body())]).await;
    let token = server.client().refresh(APPID, REFRESH_RT).await.unwrap();
    assert_eq!(token.openid, OPENID);
    let seen = server.seen();
    assert_eq!(seen[0].path, "/sns/oauth2/refresh_token");
    assert_eq!(
        seen[0].query,
        format!("appid={APPID}&grant_type=refresh_token&refresh_token={REFRESH_RT}")
    );
    assert!(!seen[0].query.contains("secret"));
    server.stop().await;
}

#[actix_web::test]
async fn userinfo_parses_full_and_sparse_profiles() {
    let server = Server::start(vec![Reply::wechat(&format!(
        r#"{{"openid":"{OPENID}","nickname":"小明 🐼","sex":1,"province":"广东","city":"广州","country":"中国","headimgurl":"https://thirdwx.qlogo.cn/mmopen/x/132","privilege":["chinaunicom"],"unionid":"uUNION1"}}"#
    ))])
    .await;
    let client = server.client();
    let info = client.userinfo(USER_AT, OPENID, "en").await.unwrap();
    assert_eq!(info.nickname, "小明 🐼");
    assert_eq!(info.sex, 1);
    assert_eq!(info.city, "广州");
    assert_eq!(info.headimgurl, "https://thirdwx.qlogo.cn/mmopen/x/132");
    assert_eq!(info.privilege, vec!["chinaunicom".to_owned()]);
    assert_eq!(info.unionid.as_deref(), Some("uUNION1"));
    let seen = server.seen();
    assert_eq!(seen[0].path, "/sns/userinfo");
    assert_eq!(
        seen[0].query,
        format!("access_token={USER_AT}&openid={OPENID}&lang=en")
    );

    // Since 2021-10: sex 0, empty places; here also no headimgurl, privilege or unionid.
    server.then(Reply::wechat(&format!(
        r#"{{"openid":"{OPENID}","nickname":"微信用户","sex":0,"province":"","city":"","country":""}}"#
    )));
    let info = client.userinfo(USER_AT, OPENID, "zh_CN").await.unwrap();
    assert_eq!(info.sex, 0);
    assert_eq!(info.headimgurl, "");
    assert!(info.privilege.is_empty());
    assert_eq!(info.unionid, None);
    server.stop().await;
}

#[actix_web::test]
async fn check_token_succeeds_on_errcode_zero() {
    let server = Server::start(vec![Reply::wechat(r#"{"errcode":0,"errmsg":"ok"}"#)]).await;
    server.client().check_token(USER_AT, OPENID).await.unwrap();
    let seen = server.seen();
    assert_eq!(seen[0].path, "/sns/auth");
    assert_eq!(
        seen[0].query,
        format!("access_token={USER_AT}&openid={OPENID}")
    );

    // An answer without errcode is not a success for sns/auth.
    server.then(Reply::wechat(r#"{"errmsg":"ok"}"#));
    let e = server
        .client()
        .check_token(USER_AT, OPENID)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadResponse);
    assert_eq!(e.stage, Stage::Refresh);
    server.stop().await;
}

#[actix_web::test]
async fn app_token_uses_client_credential() {
    let server = Server::start(vec![Reply::wechat(&format!(
        r#"{{"access_token":"{APP_AT}","expires_in":7200}}"#
    ))])
    .await;
    let token = server.client().app_token(APPID, SECRET).await.unwrap();
    assert_eq!(token.access_token, APP_AT);
    assert_eq!(token.expires_in, 7200);
    assert!(!format!("{token:?}").contains(APP_AT));
    let seen = server.seen();
    assert_eq!(seen[0].path, "/cgi-bin/token");
    assert_eq!(
        seen[0].query,
        format!("grant_type=client_credential&appid={APPID}&secret={SECRET}")
    );
    server.stop().await;
}

#[actix_web::test]
async fn stable_token_posts_the_json_fields() {
    let server = Server::start(vec![Reply::wechat(&format!(
        r#"{{"access_token":"{APP_AT}","expires_in":7200}}"#
    ))])
    .await;
    let client = server.client();
    client.stable_token(APPID, SECRET, false).await.unwrap();
    client.stable_token(APPID, SECRET, true).await.unwrap();
    let seen = server.seen();
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].path, "/cgi-bin/stable_token");
    assert_eq!(seen[0].query, "");
    let body: serde_json::Value = serde_json::from_str(&seen[0].body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"grant_type":"client_credential","appid":APPID,"secret":SECRET,"force_refresh":false})
    );
    let body: serde_json::Value = serde_json::from_str(&seen[1].body).unwrap();
    assert_eq!(body["force_refresh"], serde_json::json!(true));
    server.stop().await;
}

#[actix_web::test]
async fn send_text_succeeds_on_errcode_zero_and_posts_the_message() {
    let server = Server::start(vec![Reply::wechat(r#"{"errcode":0,"errmsg":"ok"}"#)]).await;
    server
        .client()
        .send_text(APP_AT, OPENID, "验证码 123456")
        .await
        .unwrap();
    let seen = server.seen();
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].path, "/cgi-bin/message/custom/send");
    assert_eq!(seen[0].query, format!("access_token={APP_AT}"));
    let body: serde_json::Value = serde_json::from_str(&seen[0].body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"touser":OPENID,"msgtype":"text","text":{"content":"验证码 123456"}})
    );
    server.stop().await;
}

#[actix_web::test]
async fn a_base_url_with_a_path_prefix_is_kept() {
    let server = Server::start(vec![Reply::wechat(r#"{"errcode":0,"errmsg":"ok"}"#)]).await;
    let client = client_for(&format!("{}/wechat/", server.base), Duration::from_secs(5));
    client.check_token(USER_AT, OPENID).await.unwrap();
    assert_eq!(server.seen()[0].path, "/wechat/sns/auth");
    server.stop().await;
}

// ------------------------------------------------------------------- errcodes

#[derive(Clone, Copy, Debug)]
enum Call {
    Exchange,
    Refresh,
    Userinfo,
    Auth,
    AppToken,
    StableToken,
    Send,
}

async fn run(client: &WeChatClient, call: Call) -> Result<(), WeChatError> {
    match call {
        Call::Exchange => client.exchange_code(APPID, SECRET, CODE).await.map(drop),
        Call::Refresh => client.refresh(APPID, REFRESH_RT).await.map(drop),
        Call::Userinfo => client.userinfo(USER_AT, OPENID, "zh_CN").await.map(drop),
        Call::Auth => client.check_token(USER_AT, OPENID).await,
        Call::AppToken => client.app_token(APPID, SECRET).await.map(drop),
        Call::StableToken => client.stable_token(APPID, SECRET, false).await.map(drop),
        Call::Send => client.send_text(APP_AT, OPENID, "hello").await,
    }
}

#[actix_web::test]
async fn every_mapped_errcode_gives_its_kind_stage_and_fix() {
    use Call::*;
    use ErrorKind as K;
    #[rustfmt::skip]
    let table: &[(Call, i64, ErrorKind, Stage, &str)] = &[
        (Exchange, -1, K::UpstreamUnavailable, Stage::TokenExchange, "busy"),
        (Userinfo, -1, K::UpstreamUnavailable, Stage::Userinfo, "busy"),
        (Exchange, 40001, K::BadCredentials, Stage::TokenExchange, "appsecret"),
        (Userinfo, 40001, K::InvalidCode, Stage::Userinfo, "access token invalid"),
        (Auth, 40001, K::InvalidCode, Stage::Refresh, "access token invalid"),
        (AppToken, 40001, K::BadCredentials, Stage::Callback, "wrong secret"),
        (StableToken, 40001, K::BadCredentials, Stage::Callback, "wrong secret"),
        (Send, 40001, K::BadCredentials, Stage::Callback, "app token stale or superseded"),
        (Userinfo, 40003, K::InvalidRequest, Stage::Userinfo, "does not belong to this access token"),
        (Send, 40003, K::InvalidRequest, Stage::Callback, "not an openid of this Official Account"),
        (Exchange, 40013, K::BadCredentials, Stage::TokenExchange, "appid wrong in config"),
        (AppToken, 40013, K::BadCredentials, Stage::Callback, "appid wrong in config"),
        (Userinfo, 40014, K::InvalidCode, Stage::Userinfo, "access token invalid"),
        (Send, 40014, K::BadCredentials, Stage::Callback, "invalid app token"),
        (Exchange, 40029, K::InvalidCode, Stage::TokenExchange, "expired, for another appid, or made up: restart login"),
        (Refresh, 40030, K::InvalidCode, Stage::Refresh, "invalid refresh_token"),
        (Exchange, 40125, K::BadCredentials, Stage::TokenExchange, "secret wrong or reset on the WeChat side"),
        (AppToken, 40125, K::BadCredentials, Stage::Callback, "reset on the WeChat side"),
        (Exchange, 40163, K::CodeReused, Stage::TokenExchange, "double callback"),
        (Exchange, 40164, K::Misconfigured, Stage::TokenExchange, "add the broker's egress IP to the allow-list in the WeChat console"),
        (AppToken, 40164, K::Misconfigured, Stage::Callback, "allow-list"),
        (Userinfo, 41001, K::InvalidRequest, Stage::Userinfo, "access_token missing"),
        (Exchange, 41002, K::Misconfigured, Stage::TokenExchange, "appid is empty in config"),
        (Refresh, 41003, K::InvalidRequest, Stage::Refresh, "refresh_token missing"),
        (AppToken, 41004, K::Misconfigured, Stage::Callback, "appsecret is empty in config"),
        (Exchange, 41008, K::InvalidRequest, Stage::TokenExchange, "code missing"),
        (Userinfo, 42001, K::InvalidCode, Stage::Userinfo, "access token expired"),
        (Send, 42001, K::BadCredentials, Stage::Callback, "app token expired"),
        (Refresh, 42002, K::InvalidCode, Stage::Refresh, "refresh_token expired"),
        (Exchange, 42003, K::InvalidCode, Stage::TokenExchange, "code expired"),
        (AppToken, 45009, K::RateLimited, Stage::Callback, "daily quota"),
        (Send, 45009, K::RateLimited, Stage::Callback, "daily quota"),
        (Exchange, 45011, K::RateLimited, Stage::TokenExchange, "too frequent"),
        (Send, 45015, K::NotAllowed, Stage::Callback, "outside the 48 h window"),
        (Userinfo, 48001, K::Misconfigured, Stage::Userinfo, "userinfo called with a snsapi_base token"),
        (Send, 48001, K::Misconfigured, Stage::Callback, "api unauthorized"),
    ];
    let server = Server::start(vec![]).await;
    let client = server.client();
    for &(call, code, kind, stage, fix) in table {
        let errmsg = format!("canned {code}, rid: 6650a1b2-0c0ffee0-{}", code.abs());
        server.then(Reply::errcode(code, &errmsg));
        let e = run(&client, call)
            .await
            .expect_err(&format!("{call:?} {code} must fail"));
        let case = format!("{call:?} {code}: {e}");
        assert_eq!(e.kind, kind, "{case}");
        assert_eq!(e.stage, stage, "{case}");
        assert_eq!(e.errcode, Some(code), "{case}");
        assert_eq!(
            e.errmsg.as_deref(),
            Some(errmsg.as_str()),
            "rid kept: {case}"
        );
        assert!(e.fix.contains(fix), "fix should say {fix:?}: {case}");
        assert_eq!(
            e.app_token_rejected(),
            matches!((call, code), (Send, 40001 | 40014 | 42001)),
            "{case}"
        );
        let c: ConnectorError = e.clone().into();
        assert_eq!(c.upstream_code, Some(code.to_string()));
        assert_eq!(c.upstream_message.as_deref(), Some(errmsg.as_str()));
        assert_eq!(c.fix.as_deref(), Some(e.fix.as_str()));
        assert_no_secrets(&e);
    }
    server.stop().await;
}

#[actix_web::test]
async fn unknown_errcodes_get_a_generic_fix_naming_the_code() {
    let server = Server::start(vec![Reply::errcode(61451, "invalid parameter, rid: x")]).await;
    let e = server
        .client()
        .exchange_code(APPID, SECRET, CODE)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadResponse);
    assert_eq!(e.errcode, Some(61451));
    assert!(e.fix.contains("61451"), "{e}");

    server.then(Reply::errcode(-2, "weird"));
    let e = server
        .client()
        .exchange_code(APPID, SECRET, CODE)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::UpstreamUnavailable);
    assert!(e.fix.contains("-2"), "{e}");
    server.stop().await;
}

#[actix_web::test]
async fn errcode_zero_without_the_success_fields_is_a_bad_response() {
    let server = Server::start(vec![Reply::wechat(r#"{"errcode":0,"errmsg":"ok"}"#)]).await;
    let e = server
        .client()
        .exchange_code(APPID, SECRET, CODE)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadResponse);
    assert!(
        e.errmsg
            .as_deref()
            .unwrap()
            .contains("`access_token` is missing"),
        "{e}"
    );
    server.stop().await;
}

// ------------------------------------------------------------- broken upstreams

#[actix_web::test]
async fn json_missing_required_fields_is_a_bad_response_naming_the_field() {
    // A token answer without openid: the error names the field, never the token.
    let server = Server::start(vec![Reply::wechat(&format!(
        r#"{{"access_token":"{USER_AT}","expires_in":7200,"refresh_token":"{REFRESH_RT}","scope":"snsapi_login"}}"#
    ))])
    .await;
    let e = server
        .client()
        .exchange_code(APPID, SECRET, CODE)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadResponse);
    assert_eq!(e.stage, Stage::TokenExchange);
    assert_eq!(e.errcode, None);
    assert!(
        e.errmsg.as_deref().unwrap().contains("`openid` is missing"),
        "{e}"
    );
    assert_no_secrets(&e);

    server.then(Reply::wechat(r#"{"nickname":"x"}"#));
    let e = server
        .client()
        .userinfo(USER_AT, OPENID, "zh_CN")
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadResponse);
    assert_eq!(e.stage, Stage::Userinfo);

    server.then(Reply::wechat(r#"{"access_token":"x","expires_in":"soon"}"#));
    let e = server.client().app_token(APPID, SECRET).await.unwrap_err();
    assert!(
        e.errmsg
            .as_deref()
            .unwrap()
            .contains("`expires_in` is not an integer"),
        "{e}"
    );
    server.stop().await;
}

#[actix_web::test]
async fn garbage_and_non_object_bodies_are_bad_responses_with_an_excerpt() {
    let server = Server::start(vec![Reply::raw(
        200,
        "text/html",
        b"<html><body>\n  Service temporarily moved\n</body></html>",
    )])
    .await;
    let e = server
        .client()
        .exchange_code(APPID, SECRET, CODE)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadResponse);
    let msg = e.errmsg.clone().unwrap();
    assert!(msg.contains("not JSON"), "{msg}");
    assert!(msg.contains("Service temporarily moved"), "{msg}");
    assert!(!msg.contains('\n'), "{msg}");

    server.then(Reply::wechat("[1,2,3]"));
    let e = server
        .client()
        .exchange_code(APPID, SECRET, CODE)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadResponse);
    assert!(e.errmsg.unwrap().contains("not an object"));
    server.stop().await;
}

#[actix_web::test]
async fn an_empty_gbk_html_body_is_a_bad_response() {
    let server = Server::start(vec![Reply::raw(200, "text/html; charset=GBK", b"")]).await;
    let e = server
        .client()
        .exchange_code(APPID, SECRET, CODE)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadResponse);
    let msg = e.errmsg.clone().unwrap();
    assert!(msg.contains("empty body"), "{msg}");
    assert!(msg.contains("charset=GBK"), "{msg}");

    // A non-empty GBK page ("系统繁忙" in GBK) is not UTF-8; still a clean BadResponse.
    server.then(Reply::raw(
        200,
        "text/html; charset=GBK",
        b"\xCF\xB5\xCD\xB3\xB7\xB1\xC3\xA6",
    ));
    let e = server
        .client()
        .exchange_code(APPID, SECRET, CODE)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadResponse);
    assert!(e.errmsg.unwrap().contains("not UTF-8"));
    server.stop().await;
}

#[actix_web::test]
async fn http_5xx_is_upstream_unavailable_with_the_status() {
    let server = Server::start(vec![Reply::raw(500, "text/html", b"<h1>Internal</h1>")]).await;
    let e = server
        .client()
        .exchange_code(APPID, SECRET, CODE)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::UpstreamUnavailable);
    assert!(e.errmsg.as_deref().unwrap().starts_with("HTTP 500"), "{e}");
    assert!(e.fix.contains("HTTP 500"), "{e}");

    server.then(Reply::raw(502, "text/html", b"<h1>Bad Gateway</h1>"));
    let e = server
        .client()
        .userinfo(USER_AT, OPENID, "en")
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::UpstreamUnavailable);
    assert_eq!(e.stage, Stage::Userinfo);
    assert!(e.errmsg.as_deref().unwrap().starts_with("HTTP 502"), "{e}");

    // Other non-2xx: a bad response.
    server.then(Reply::raw(404, "text/plain", b"not found"));
    let e = server.client().app_token(APPID, SECRET).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadResponse);
    assert!(e.errmsg.as_deref().unwrap().starts_with("HTTP 404"), "{e}");
    server.stop().await;
}

#[actix_web::test]
async fn a_302_is_not_followed_and_names_the_location_host() {
    let mut redirect = Reply::raw(302, "text/html", b"");
    redirect.location =
        Some("https://login.captive.example/portal?secret=5ec7e75ec7e75ec7e75ec7e75ec7e7aa");
    let server = Server::start(vec![redirect]).await;
    let e = server
        .client()
        .exchange_code(APPID, SECRET, CODE)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadResponse);
    assert!(e.to_string().contains("login.captive.example"), "{e}");
    assert!(!e.to_string().contains("/portal"), "{e}");
    assert_no_secrets(&e);
    // Not followed: exactly one request reached us, and nothing went to the target.
    assert_eq!(server.seen().len(), 1);
    server.stop().await;
}

#[actix_web::test]
async fn a_body_over_the_cap_is_refused() {
    let huge = format!(
        r#"{{"access_token":"{USER_AT}","expires_in":7200,"pad":"{}"}}"#,
        "x".repeat(wechat_api::MAX_BODY_BYTES)
    );
    let server = Server::start(vec![Reply::wechat(&huge)]).await;
    let e = server.client().app_token(APPID, SECRET).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadResponse);
    assert!(
        e.errmsg
            .as_deref()
            .unwrap()
            .contains("larger than 65536 bytes"),
        "{e}"
    );
    assert_no_secrets(&e);
    server.stop().await;
}

#[actix_web::test]
async fn a_chunked_body_over_the_cap_without_a_length_is_refused() {
    // 20 chunks of 4 KiB = 80 KiB, no Content-Length.
    static RESPONSE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let response = RESPONSE.get_or_init(|| {
        let mut r =
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_vec();
        for _ in 0..20 {
            r.extend_from_slice(b"1000\r\n");
            r.extend_from_slice(&[b' '; 4096]);
            r.extend_from_slice(b"\r\n");
        }
        r.extend_from_slice(b"0\r\n\r\n");
        r
    });
    let base = raw_server(response);
    let e = client_for(&base, Duration::from_secs(5))
        .app_token(APPID, SECRET)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadResponse);
    assert!(e.errmsg.as_deref().unwrap().contains("larger than"), "{e}");
}

#[actix_web::test]
async fn a_slow_server_times_out_within_about_the_timeout() {
    let mut slow = Reply::wechat(&token_body());
    slow.delay = Duration::from_secs(2);
    let server = Server::start(vec![slow]).await;
    let client = client_for(&server.base, Duration::from_millis(300));
    let started = Instant::now();
    let e = client.exchange_code(APPID, SECRET, CODE).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_millis(1500), "took {elapsed:?}");
    assert_eq!(e.kind, ErrorKind::Timeout);
    assert_eq!(e.stage, Stage::TokenExchange);
    assert!(e.fix.contains("WeChat did not answer within 0.3 s"), "{e}");
    assert_no_secrets(&e);
    server.stop().await;
}

#[actix_web::test]
async fn connection_refused_is_upstream_unavailable() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }; // closed again: nothing listens there now
    let client = client_for(&format!("http://127.0.0.1:{port}"), Duration::from_secs(5));
    let e = client.exchange_code(APPID, SECRET, CODE).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::UpstreamUnavailable);
    assert!(e.fix.contains("could not connect"), "{e}");
    assert!(e.fix.contains(&format!("127.0.0.1:{port}")), "{e}");
    assert_no_secrets(&e);
}

#[actix_web::test]
async fn a_dropped_connection_is_upstream_unavailable() {
    let base = raw_server(b"");
    let e = client_for(&base, Duration::from_secs(5))
        .exchange_code(APPID, SECRET, CODE)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::UpstreamUnavailable);
    assert!(e.fix.contains("failed before a complete answer"), "{e}");
    assert_no_secrets(&e);

    // Headers, then the connection drops mid-body.
    let base = raw_server(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 500\r\n\r\n{\"access_token\":");
    let e = client_for(&base, Duration::from_secs(5))
        .exchange_code(APPID, SECRET, CODE)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::UpstreamUnavailable, "{e}");
    assert_no_secrets(&e);
}

#[actix_web::test]
async fn secrets_codes_and_tokens_never_reach_an_error() {
    let server = Server::start(vec![]).await;
    let client = server.client();
    let echo = |status, content_type| {
        let mut r = Reply::raw(status, content_type, b"<html>Cannot handle ");
        r.echo = true;
        r
    };
    // Pages that echo the whole request (query with secret and code, POST body).
    for reply in [
        echo(200, "text/html"),
        echo(404, "text/html"),
        echo(502, "text/html; charset=GBK"),
    ] {
        for call in [
            Call::Exchange,
            Call::Refresh,
            Call::Userinfo,
            Call::Auth,
            Call::AppToken,
            Call::StableToken,
            Call::Send,
        ] {
            server.then(reply.clone());
            let e = run(&client, call).await.unwrap_err();
            assert_no_secrets(&e);
        }
    }
    // An errmsg that quotes the secret; the rid survives.
    server.then(Reply::errcode(
        40125,
        &format!("invalid appsecret {SECRET}, rid: 6650-abc"),
    ));
    let e = run(&client, Call::AppToken).await.unwrap_err();
    assert_no_secrets(&e);
    assert!(
        e.errmsg.as_deref().unwrap().contains("rid: 6650-abc"),
        "{e}"
    );
    // Truncated JSON carrying tokens, and tokens the request never sent.
    server.then(Reply::wechat(&format!(
        r#"{{"access_token":"{USER_AT}","refresh_token":"{REFRESH_RT}","#
    )));
    let e = run(&client, Call::Exchange).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadResponse);
    assert_no_secrets(&e);
    server.then(Reply::wechat(&format!(r#"{{"access_token":"{APP_AT}""#)));
    let e = run(&client, Call::AppToken).await.unwrap_err();
    assert_no_secrets(&e);
    server.stop().await;
}

// ------------------------------------------------------------------ the retry

#[actix_web::test]
async fn exchange_retry_recovers_from_one_busy_answer() {
    let server = Server::start(vec![
        Reply::errcode(-1, "system error, rid: 1"),
        Reply::wechat(&token_body()),
    ])
    .await;
    let token = server
        .client()
        .exchange_code_with_retry(APPID, SECRET, CODE)
        .await
        .unwrap();
    assert_eq!(token.openid, OPENID);
    assert_eq!(server.seen().len(), 2);
    server.stop().await;
}

#[actix_web::test]
async fn exchange_retry_reports_a_code_spent_by_the_busy_attempt() {
    let server = Server::start(vec![
        Reply::errcode(-1, "system error, rid: 1"),
        Reply::errcode(40163, "code been used, rid: 2"),
    ])
    .await;
    let e = server
        .client()
        .exchange_code_with_retry(APPID, SECRET, CODE)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::UpstreamUnavailable);
    assert_eq!(e.errcode, Some(40163));
    assert_eq!(e.stage, Stage::TokenExchange);
    assert_eq!(e.errmsg.as_deref(), Some("code been used, rid: 2"));
    assert!(
        e.fix.contains("busy attempt had already spent the code"),
        "{e}"
    );
    assert!(e.fix.contains("sign in again"), "{e}");
    assert_eq!(server.seen().len(), 2);
    assert_no_secrets(&e);
    server.stop().await;
}

#[actix_web::test]
async fn exchange_retry_retries_only_once_and_only_on_busy() {
    let server = Server::start(vec![Reply::errcode(-1, "system error")]).await;
    let client = server.client();
    let e = client
        .exchange_code_with_retry(APPID, SECRET, CODE)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::UpstreamUnavailable);
    assert_eq!(e.errcode, Some(-1));
    assert_eq!(server.seen().len(), 2);

    // A plain 40163 (double callback) is CodeReused and not retried.
    server.then(Reply::errcode(40163, "code been used"));
    let e = client
        .exchange_code_with_retry(APPID, SECRET, CODE)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::CodeReused);
    assert_eq!(server.seen().len(), 3);

    server.then(Reply::errcode(40029, "invalid code"));
    let e = client
        .exchange_code_with_retry(APPID, SECRET, CODE)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidCode);
    assert_eq!(server.seen().len(), 4);
    server.stop().await;
}

#[actix_web::test]
async fn re_staging_for_the_mobile_app_exchange() {
    let server = Server::start(vec![Reply::errcode(40029, "invalid code")]).await;
    let e = server
        .client()
        .exchange_code(APPID, SECRET, CODE)
        .await
        .unwrap_err()
        .at_stage(Stage::Exchange);
    let c: ConnectorError = e.into();
    assert_eq!(c.stage, Stage::Exchange);
    assert_eq!(c.kind, ErrorKind::InvalidCode);
    server.stop().await;
}

#[test]
fn unusable_base_urls_are_refused_at_build_time() {
    for url in [
        "api.weixin.qq.com",
        "ftp://api.weixin.qq.com",
        "https://api.weixin.qq.com/?x=1",
        "https://user:pw@api.weixin.qq.com",
    ] {
        let result = WeChatClient::new(ClientOptions {
            api_base_url: url.to_owned(),
            ..ClientOptions::default()
        });
        assert!(result.is_err(), "{url} accepted");
    }
    let client = WeChatClient::new(ClientOptions::default()).unwrap();
    assert_eq!(client.api_base_url(), "https://api.weixin.qq.com/");
    assert_eq!(Api::SnsAccessToken.path(), "/sns/oauth2/access_token");
}

// ---------------------------------------------------------------- shared app token

/// A shared cache in which another broker instance stores its freshly fetched
/// app token (and lets go of the lease) just before this instance takes the
/// lease: the interleaving that made two instances both fetch.
struct OtherInstanceStoresFirst {
    inner: idbridge_core::MemoryCache,
    value: idbridge_core::CachedValue,
}

#[async_trait::async_trait]
impl idbridge_core::SharedCache for OtherInstanceStoresFirst {
    async fn get(
        &self,
        key: &str,
        now: i64,
    ) -> Result<Option<idbridge_core::CachedValue>, idbridge_core::CacheError> {
        self.inner.get(key, now).await
    }
    async fn try_lease(
        &self,
        key: &str,
        holder: &str,
        now: i64,
        until: i64,
    ) -> Result<bool, idbridge_core::CacheError> {
        assert!(self.inner.try_lease(key, "other", now, until).await?);
        self.inner.put(key, "other", &self.value, now).await?;
        self.inner.try_lease(key, holder, now, until).await
    }
    async fn put(
        &self,
        key: &str,
        holder: &str,
        value: &idbridge_core::CachedValue,
        now: i64,
    ) -> Result<(), idbridge_core::CacheError> {
        self.inner.put(key, holder, value, now).await
    }
    async fn release(&self, key: &str, holder: &str) -> Result<(), idbridge_core::CacheError> {
        self.inner.release(key, holder).await
    }
    async fn invalidate(&self, key: &str, value: &str) -> Result<(), idbridge_core::CacheError> {
        self.inner.invalidate(key, value).await
    }
}

#[actix_web::test]
async fn an_app_token_stored_by_another_instance_just_before_the_lease_is_used() {
    let server = Server::start(vec![Reply::wechat(&format!(
        r#"{{"access_token":"{APP_AT}","expires_in":7200}}"#
    ))])
    .await;
    let now = 1_800_000_000;
    let cache = OtherInstanceStoresFirst {
        inner: idbridge_core::MemoryCache::default(),
        value: idbridge_core::CachedValue {
            value: "TOKEN_FROM_THE_OTHER_INSTANCE".into(),
            expires_at: now + 7200,
        },
    };
    let tokens = wechat_api::AppTokens::new(
        server.client(),
        APPID,
        SECRET,
        idbridge_core::Shared(Arc::new(cache)),
    );
    assert_eq!(
        tokens.get(now).await.unwrap(),
        "TOKEN_FROM_THE_OTHER_INSTANCE"
    );
    assert!(server.seen().is_empty(), "this instance asked WeChat too");
    server.stop().await;
}
