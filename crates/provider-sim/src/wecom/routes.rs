//! The fake's HTTP surface: the QR and in-app pages, and the cgi-bin API.

use super::{Code, Decision, Shared, State, Who, CODE_TTL_SECS, TICKET_TTL_SECS, TOKEN_TTL_SECS};
use crate::server::{escape, with_query};
use actix_web::http::header;
use actix_web::{web, HttpResponse};
use rand::distributions::{Alphanumeric, DistString};
use serde_json::json;
use std::collections::BTreeMap;

type Query = web::Query<BTreeMap<String, String>>;

pub(super) fn mount(cfg: &mut web::ServiceConfig) {
    cfg.route("/wwlogin/sso/login", web::get().to(qr_login))
        .route("/connect/oauth2/authorize", web::get().to(in_app))
        .route("/__sim/decide", web::get().to(decide))
        .route("/cgi-bin/gettoken", web::get().to(gettoken))
        .route("/cgi-bin/auth/getuserinfo", web::get().to(getuserinfo))
        .route("/cgi-bin/user/get", web::get().to(user_get))
        .route("/cgi-bin/auth/getuserdetail", web::post().to(getuserdetail));
}

/// WeCom's own error page: the browser stays there.
fn error_page(errcode: i64, text: &str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(format!(
            "<!doctype html><title>企业微信</title><p>{}</p><p>errcode: {errcode}</p>",
            escape(text)
        ))
}

/// WeCom's API answers: HTTP 200 with `errcode`/`errmsg`.
fn api_error(errcode: i64, errmsg: &str) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "errcode": errcode,
        "errmsg": format!("{errmsg}, hint: [{}], from ip: 127.0.0.1, more info at https://open.work.weixin.qq.com/devtool/query?e={errcode}", Alphanumeric.sample_string(&mut rand::thread_rng(), 16)),
    }))
}

/// Which page asked: the web QR login or the in-WeCom authorize page.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Page {
    Qr,
    InApp,
}

async fn qr_login(data: web::Data<Shared>, query: Query) -> HttpResponse {
    let q = query.into_inner();
    let decision = {
        let mut st = data.lock();
        st.counters.qr_pages += 1;
        st.decision.clone()
    };
    if q.get("login_type").map(String::as_str) != Some("CorpApp") {
        return error_page(
            40001,
            "参数错误：login_type 须为 CorpApp（企业自建应用）或 ServiceApp",
        );
    }
    answer(&data, Page::Qr, q, decision)
}

async fn in_app(data: web::Data<Shared>, query: Query) -> HttpResponse {
    let q = query.into_inner();
    let decision = {
        let mut st = data.lock();
        st.counters.in_app_pages += 1;
        st.decision.clone()
    };
    if q.get("response_type").map(String::as_str) != Some("code") {
        return error_page(40001, "参数错误：response_type 须为 code");
    }
    answer(&data, Page::InApp, q, decision)
}

/// The dev page's buttons: `pick=member:ID`, `pick=openid:ID` or `pick=cancel`,
/// with the original request and `page=qr|in_app`.
async fn decide(data: web::Data<Shared>, query: Query) -> HttpResponse {
    let mut q = query.into_inner();
    let page = match q.remove("page").as_deref() {
        Some("in_app") => Page::InApp,
        _ => Page::Qr,
    };
    let pick = q.remove("pick").unwrap_or_default();
    let decision = if let Some(id) = pick.strip_prefix("member:") {
        Decision::Member(id.to_owned())
    } else if let Some(id) = pick.strip_prefix("openid:") {
        Decision::NonMember(id.to_owned())
    } else {
        Decision::Cancel
    };
    answer(&data, page, q, decision)
}

fn ask_page(st: &State, page: Page, q: &BTreeMap<String, String>) -> HttpResponse {
    let link = |pick: &str| {
        let mut pairs: Vec<(&str, &str)> =
            q.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        pairs.push(("pick", pick));
        pairs.push(("page", if page == Page::Qr { "qr" } else { "in_app" }));
        escape(&format!(
            "/__sim/decide?{}",
            serde_urlencoded::to_string(pairs).unwrap_or_default()
        ))
    };
    let mut items = String::new();
    for m in &st.members {
        items.push_str(&format!(
            "<li><a href=\"{}\">以成员 {} 登录 Sign in as member {} ({})</a>{}</li>",
            link(&format!("member:{}", m.userid)),
            escape(&m.name),
            escape(&m.name),
            escape(&m.userid),
            if m.visible {
                ""
            } else {
                " — outside the app's visible range"
            }
        ));
    }
    for openid in &st.non_members {
        items.push_str(&format!(
            "<li><a href=\"{}\">以非企业成员登录 Sign in as a non-member (openid {})</a></li>",
            link(&format!("openid:{openid}")),
            escape(openid)
        ));
    }
    let title = match page {
        Page::Qr => "企业微信扫码登录 WeCom QR login (simulator)",
        Page::InApp => "企业微信网页授权 WeCom in-app authorization (simulator)",
    };
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(format!(
        "<!doctype html><meta charset=utf-8><title>{title}</title><h1>{title}</h1><p>corp {}, agent {}</p><ul>{items}</ul><p><a href=\"{}\">取消 Cancel</a></p>",
        escape(&st.app.corp_id),
        st.app.agent_id,
        link("cancel")
    ))
}

fn answer(
    data: &Shared,
    page: Page,
    q: BTreeMap<String, String>,
    decision: Decision,
) -> HttpResponse {
    let mut st = data.lock();
    if q.get("appid") != Some(&st.app.corp_id) {
        return error_page(40013, "该链接无法访问：不合法的 CorpID (invalid corpid)");
    }
    let agent_ok = q.get("agentid") == Some(&st.app.agent_id.to_string());
    let private =
        page == Page::InApp && q.get("scope").map(String::as_str) == Some("snsapi_privateinfo");
    // The in-app page needs agentid only for snsapi_privateinfo.
    if !agent_ok && (page == Page::Qr || private || q.contains_key("agentid")) {
        return error_page(40056, "该链接无法访问：不合法的 agentid (invalid agentid)");
    }
    let Some(redirect) = q.get("redirect_uri").cloned() else {
        return error_page(50001, "该链接无法访问：缺少 redirect_uri");
    };
    let host = url::Url::parse(&redirect)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    if !host.eq_ignore_ascii_case(&st.app.trusted_domain) {
        return error_page(
            50001,
            "该链接无法访问：redirect_uri 的域名与应用的可信域名不一致 (redirect_url not trusted)",
        );
    }
    let state = q.get("state").cloned().unwrap_or_default();
    let who = match decision {
        Decision::Ask => return ask_page(&st, page, &q),
        Decision::Cancel => {
            // WeCom documents the refusal as redirect_uri?state=STATE.
            return found(with_query(&redirect, &[("state", &state)]));
        }
        Decision::Member(userid) => match st.members.iter().find(|m| m.userid == userid) {
            Some(m) if !m.visible && page == Page::Qr => {
                return error_page(
                    60011,
                    "你没有权限登录该应用：不在应用的可见范围内 (no privilege)",
                )
            }
            Some(_) => Who::Member(userid),
            None => return error_page(60111, "成员不存在 (userid not found)"),
        },
        Decision::NonMember(openid) => Who::NonMember(openid),
    };
    let code = Alphanumeric.sample_string(&mut rand::thread_rng(), 43);
    let issued_at = st.now();
    st.codes.insert(
        code.clone(),
        Code {
            who,
            issued_at,
            used: false,
            private,
        },
    );
    found(with_query(&redirect, &[("code", &code), ("state", &state)]))
}

fn found(location: String) -> HttpResponse {
    HttpResponse::Found()
        .insert_header((header::LOCATION, location))
        .finish()
}

/// The faults every API call shares, after the configured delay.
async fn common_faults(data: &Shared) -> Option<HttpResponse> {
    let slow = data.lock().slow;
    if let Some(delay) = slow {
        tokio::time::sleep(delay).await;
    }
    let st = data.lock();
    if st.busy {
        return Some(api_error(-1, "system busy"));
    }
    if st.ip_denied {
        return Some(api_error(60020, "not allow to access from your ip"));
    }
    None
}

/// WeCom's answer when the request's corp token is missing, unknown or expired.
fn unauthorized(st: &State, q: &BTreeMap<String, String>) -> Option<HttpResponse> {
    let Some(token) = q.get("access_token").filter(|t| !t.is_empty()) else {
        return Some(api_error(41001, "access_token missing"));
    };
    match st.tokens.get(token) {
        None => Some(api_error(40014, "invalid access_token")),
        Some(expires) if *expires <= st.now() => Some(api_error(42001, "access_token expired")),
        Some(_) => None,
    }
}

async fn gettoken(data: web::Data<Shared>, query: Query) -> HttpResponse {
    data.lock().counters.gettoken_calls += 1;
    if let Some(fault) = common_faults(&data).await {
        return fault;
    }
    let q = query.into_inner();
    let mut st = data.lock();
    if q.get("corpid") != Some(&st.app.corp_id) {
        return api_error(40013, "invalid corpid");
    }
    if q.get("corpsecret") != Some(&st.app.secret) {
        return api_error(40001, "invalid credential");
    }
    st.counters.tokens_issued += 1;
    let now = st.now();
    // Within its validity gettoken answers the same token (what is left of
    // its 7200 s); after it, a new one.
    if let Some((token, expires)) = st.tokens.iter().find(|(_, e)| **e > now) {
        return HttpResponse::Ok().json(json!({
            "errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": expires - now,
        }));
    }
    let token = Alphanumeric.sample_string(&mut rand::thread_rng(), 64);
    st.tokens.insert(token.clone(), now + TOKEN_TTL_SECS);
    HttpResponse::Ok().json(json!({
        "errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": TOKEN_TTL_SECS,
    }))
}

async fn getuserinfo(data: web::Data<Shared>, query: Query) -> HttpResponse {
    data.lock().counters.getuserinfo_calls += 1;
    if let Some(fault) = common_faults(&data).await {
        return fault;
    }
    let q = query.into_inner();
    let mut st = data.lock();
    if let Some(answer) = unauthorized(&st, &q) {
        return answer;
    }
    let now = st.now();
    let code = q.get("code").cloned().unwrap_or_default();
    let Some(grant) = st.codes.get_mut(&code) else {
        return api_error(40029, "invalid code");
    };
    // Used or older than 5 minutes: the same 40029.
    if grant.used || now - grant.issued_at > CODE_TTL_SECS {
        return api_error(40029, "invalid code");
    }
    grant.used = true;
    let private = grant.private;
    match &grant.who {
        Who::Member(userid) => {
            let userid = userid.clone();
            let visible = st.members.iter().any(|m| m.userid == userid && m.visible);
            // snsapi_privateinfo, a member in the visible range: a ticket too.
            if private && visible {
                let ticket = Alphanumeric.sample_string(&mut rand::thread_rng(), 48);
                st.tickets
                    .insert(ticket.clone(), (userid.clone(), now + TICKET_TTL_SECS));
                return HttpResponse::Ok().json(json!({
                    "errcode": 0, "errmsg": "ok", "userid": userid,
                    "user_ticket": ticket, "expires_in": TICKET_TTL_SECS,
                }));
            }
            HttpResponse::Ok().json(json!({
                "errcode": 0, "errmsg": "ok", "userid": userid,
            }))
        }
        Who::NonMember(openid) => HttpResponse::Ok().json(json!({
            "errcode": 0, "errmsg": "ok", "openid": openid,
        })),
    }
}

async fn user_get(data: web::Data<Shared>, query: Query) -> HttpResponse {
    data.lock().counters.user_get_calls += 1;
    if let Some(fault) = common_faults(&data).await {
        return fault;
    }
    let q = query.into_inner();
    let st = data.lock();
    if let Some(answer) = unauthorized(&st, &q) {
        return answer;
    }
    let userid = q.get("userid").cloned().unwrap_or_default();
    let Some(m) = st.members.iter().find(|m| m.userid == userid) else {
        return api_error(60111, "userid not found");
    };
    if !m.visible {
        return api_error(60011, "no privilege to access/modify contact/party/agent");
    }
    // Since 2022-06 no avatar, gender, mobile or email for new apps.
    HttpResponse::Ok().json(json!({
        "errcode": 0, "errmsg": "ok",
        "userid": m.userid, "name": m.name, "department": m.department,
        "position": m.position.clone().unwrap_or_default(),
        "alias": m.alias.clone().unwrap_or_default(),
        "status": 1, "main_department": m.department.first().copied().unwrap_or(1),
    }))
}

/// `POST /cgi-bin/auth/getuserdetail?access_token` with `{"user_ticket"}`: the
/// sensitive fields of the member the ticket names, while it lives. An unknown
/// or expired ticket is refused with WeCom's `invalid code` answer (the fake
/// does not know WeCom's own code for it; the connector treats any errcode
/// alike).
async fn getuserdetail(
    data: web::Data<Shared>,
    query: Query,
    body: web::Json<serde_json::Value>,
) -> HttpResponse {
    data.lock().counters.getuserdetail_calls += 1;
    if let Some(fault) = common_faults(&data).await {
        return fault;
    }
    let q = query.into_inner();
    let st = data.lock();
    if let Some(answer) = unauthorized(&st, &q) {
        return answer;
    }
    let ticket = body
        .get("user_ticket")
        .and_then(|t| t.as_str())
        .unwrap_or_default();
    let now = st.now();
    let Some((userid, _)) = st.tickets.get(ticket).filter(|(_, exp)| *exp > now) else {
        return api_error(40029, "invalid user_ticket");
    };
    let Some(m) = st.members.iter().find(|m| &m.userid == userid) else {
        return api_error(60111, "userid not found");
    };
    HttpResponse::Ok().json(json!({
        "errcode": 0, "errmsg": "ok", "userid": m.userid,
        "gender": "0",
        "avatar": m.avatar.clone().unwrap_or_default(),
        "mobile": m.mobile.clone().unwrap_or_default(),
        "email": m.email.clone().unwrap_or_default(),
        "biz_mail": m.biz_mail.clone().unwrap_or_default(),
    }))
}
