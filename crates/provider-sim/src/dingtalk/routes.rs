//! The fake's HTTP surface: the sign-in page and the two v1.0 API calls.

use super::{open_id, Decision, Grant, Shared, State, TokenInfo, CODE_TTL_SECS, TOKEN_TTL_SECS};
use crate::server::{escape, page, random, with_query};
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The title of the fake's pages.
const TITLE: &str = "钉钉 DingTalk";

pub(super) fn mount(cfg: &mut web::ServiceConfig) {
    cfg.route("/oauth2/auth", web::get().to(authorize))
        .route("/oauth2/auth/decide", web::get().to(decide))
        .route(
            "/v1.0/oauth2/userAccessToken",
            web::post().to(user_access_token),
        )
        .route("/v1.0/contact/users/me", web::get().to(users_me));
}

/// DingTalk's v1.0 error body.
fn api_error(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({
        "code": code,
        "message": message,
        "requestid": random("", 16).to_ascii_uppercase(),
    }))
}

async fn authorize(
    data: web::Data<Shared>,
    req: HttpRequest,
    query: web::Query<BTreeMap<String, String>>,
) -> HttpResponse {
    let ua = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let (decision, in_app) = {
        let st = data.lock();
        match (&st.client_user, ua.contains("dingtalk/")) {
            (Some(u), true) => (Decision::approve(u), true),
            _ => (st.decision.clone(), false),
        }
    };
    answer(&data, query.into_inner(), decision, in_app)
}

/// The dev-mode page's buttons: `person=UNIONID[&corp=CORPID]` or
/// `person=deny`, with the original request.
async fn decide(
    data: web::Data<Shared>,
    query: web::Query<BTreeMap<String, String>>,
) -> HttpResponse {
    let mut q = query.into_inner();
    let corp = q.remove("corp");
    let decision = match q.remove("person") {
        Some(p) if p != "deny" => Decision::Approve { union_id: p, corp },
        _ => Decision::Deny,
    };
    answer(&data, q, decision, false)
}

/// The page a dev-mode visitor sees: who signs in (for which organisation).
fn ask_page(st: &State, q: &BTreeMap<String, String>, wants_corp: bool) -> HttpResponse {
    let link = |person: &str, corp: Option<&str>| {
        let mut pairs: Vec<(&str, &str)> =
            q.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        pairs.push(("person", person));
        if let Some(c) = corp {
            pairs.push(("corp", c));
        }
        escape(&format!(
            "/oauth2/auth/decide?{}",
            serde_urlencoded::to_string(pairs).unwrap_or_default()
        ))
    };
    let mut items = String::new();
    for p in &st.people {
        let orgs: Vec<String> = p.corps.iter().map(|(c, n)| format!("{n} ({c})")).collect();
        if wants_corp && !p.corps.is_empty() {
            for (c, n) in &p.corps {
                items.push_str(&format!(
                    "<li><a href=\"{}\">Sign in as {} for {}</a></li>",
                    link(&p.union_id, Some(c)),
                    escape(&p.nick),
                    escape(n)
                ));
            }
        } else {
            items.push_str(&format!(
                "<li><a href=\"{}\">Sign in as {}</a> — organisations: {}</li>",
                link(&p.union_id, None),
                escape(&p.nick),
                escape(&orgs.join(", "))
            ));
        }
    }
    let app = q.get("client_id").map(String::as_str).unwrap_or("");
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(format!(
        "<!doctype html><title>钉钉登录 DingTalk login (simulator)</title><h1>钉钉 DingTalk simulator</h1><p>Scan to sign in to <b>{}</b>, or pick who signs in:</p><ul>{items}</ul><p><a href=\"{}\">Cancel 取消</a></p>",
        escape(app),
        link("deny", None)
    ))
}

fn answer(
    data: &Shared,
    q: BTreeMap<String, String>,
    decision: Decision,
    in_app: bool,
) -> HttpResponse {
    let mut st = data.lock();
    st.counters.authorizations += 1;
    let client_id = q.get("client_id").cloned().unwrap_or_default();
    let Some(app) = st.app(&client_id).cloned() else {
        return page(
            StatusCode::BAD_REQUEST,
            TITLE,
            "无效的 client_id: no app with this client_id",
        );
    };
    let Some(redirect) = q.get("redirect_uri").cloned() else {
        return page(
            StatusCode::BAD_REQUEST,
            TITLE,
            "缺少 redirect_uri: redirect_uri is missing",
        );
    };
    if !redirect.starts_with(&app.redirect_prefix) {
        return page(
            StatusCode::BAD_REQUEST, TITLE,
            "redirect_uri 与应用配置的重定向地址不一致: the redirect_uri is not the app's redirect URL");
    }
    if q.get("response_type").map(String::as_str) != Some("code") {
        return page(StatusCode::BAD_REQUEST, TITLE, "response_type must be code");
    }
    let scope = q.get("scope").cloned().unwrap_or_default();
    let scopes: Vec<&str> = scope.split([' ', ',']).filter(|s| !s.is_empty()).collect();
    if !scopes.contains(&"openid") {
        return page(StatusCode::BAD_REQUEST, TITLE, "scope must hold openid");
    }
    let wants_corp = scopes.contains(&"corpid");
    let state = q.get("state").cloned().unwrap_or_default();
    let location = match decision {
        Decision::Ask => return ask_page(&st, &q, wants_corp),
        Decision::Deny => with_query(
            &redirect,
            &[
                ("error", "access_denied"),
                ("error_description", "用户取消授权"),
                ("state", &state),
            ],
        ),
        Decision::Approve { union_id, corp } => {
            let Some(person) = st.person(&union_id).cloned() else {
                return page(
                    StatusCode::BAD_REQUEST,
                    TITLE,
                    "no such person at the simulator",
                );
            };
            let member = |c: &str| person.corps.iter().any(|(id, _)| id == c);
            let corp_id = if wants_corp {
                q.get("corpId")
                    .filter(|c| member(c))
                    .cloned()
                    .or(corp.filter(|c| member(c)))
                    .or_else(|| person.corps.first().map(|(c, _)| c.clone()))
            } else {
                None
            };
            if in_app {
                st.counters.in_app += 1;
            }
            let code = random("", 32);
            let issued_at = st.now();
            st.codes.insert(
                code.clone(),
                Grant {
                    client_id: client_id.clone(),
                    union_id,
                    corp_id,
                    issued_at,
                    used: false,
                },
            );
            with_query(&redirect, &[("authCode", &code), ("state", &state)])
        }
    };
    HttpResponse::Found()
        .insert_header((header::LOCATION, location))
        .finish()
}

/// The delay and the faults every API call plays first.
async fn faults(data: &Shared) -> Option<HttpResponse> {
    let delay = data.lock().faults.delay;
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let st = data.lock();
    if st.faults.busy {
        return Some(api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "The request has failed due to a temporary failure of the server.",
        ));
    }
    if st.faults.throttled {
        return Some(api_error(
            StatusCode::FORBIDDEN,
            "Forbidden.AccessDenied.QpsLimitForApi",
            "调用该接口触发了限流",
        ));
    }
    None
}

fn issue(st: &mut State, info: TokenInfo) -> Value {
    let access = random("", 32);
    let refresh = random("", 32);
    let mut answer = json!({
        "accessToken": access,
        "refreshToken": refresh,
        "expireIn": TOKEN_TTL_SECS,
    });
    if let Some(c) = &info.corp_id {
        answer["corpId"] = json!(c);
    }
    st.tokens.insert(access, info.clone());
    st.refresh_tokens.insert(refresh, info);
    answer
}

async fn user_access_token(data: web::Data<Shared>, body: web::Bytes) -> HttpResponse {
    if let Some(r) = faults(&data).await {
        data.lock().counters.token_requests += 1;
        return r;
    }
    let mut st = data.lock();
    st.counters.token_requests += 1;
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "MissingParameter",
            "请求体不是 JSON",
        );
    };
    st.last_token_body = Some(body.clone());
    let text = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let client_id = text("clientId");
    let secret_ok = st
        .app(&client_id)
        .is_some_and(|a| a.client_secret == text("clientSecret"));
    if !secret_ok {
        return api_error(
            StatusCode::BAD_REQUEST,
            "invalidClientIdOrSecret",
            "无效的clientId或者clientSecret",
        );
    }
    match text("grantType").as_str() {
        "authorization_code" => {
            let now = st.now();
            let code = text("code");
            let grant = st.codes.get_mut(&code).filter(|g| g.client_id == client_id);
            let Some(grant) = grant else {
                return api_error(
                    StatusCode::BAD_REQUEST,
                    "invalidAuthCode",
                    "不合法的临时授权码",
                );
            };
            if grant.used || now - grant.issued_at > CODE_TTL_SECS {
                return api_error(
                    StatusCode::BAD_REQUEST,
                    "invalidAuthCode",
                    "临时授权码已使用或已过期",
                );
            }
            grant.used = true;
            let info = TokenInfo {
                client_id,
                union_id: grant.union_id.clone(),
                corp_id: grant.corp_id.clone(),
            };
            let answer = issue(&mut st, info);
            HttpResponse::Ok().json(answer)
        }
        "refresh_token" => {
            let token = text("refreshToken");
            let info = st
                .refresh_tokens
                .get(&token)
                .filter(|i| i.client_id == client_id)
                .cloned();
            let Some(info) = info else {
                return api_error(
                    StatusCode::BAD_REQUEST,
                    "invalidRefreshToken",
                    "不合法的refreshToken",
                );
            };
            st.refresh_tokens.remove(&token);
            let answer = issue(&mut st, info);
            HttpResponse::Ok().json(answer)
        }
        _ => api_error(
            StatusCode::BAD_REQUEST,
            "invalidParameter.grantType",
            "grantType 只能是 authorization_code 或 refresh_token",
        ),
    }
}

async fn users_me(data: web::Data<Shared>, req: HttpRequest) -> HttpResponse {
    if let Some(r) = faults(&data).await {
        data.lock().counters.me_calls += 1;
        return r;
    }
    let mut st = data.lock();
    st.counters.me_calls += 1;
    let token = req
        .headers()
        .get("x-acs-dingtalk-access-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let bad = || {
        api_error(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthentication",
            "不合法的access_token",
        )
    };
    let Some(info) = st.tokens.get(token).cloned() else {
        return bad();
    };
    if st.faults.no_contact_permission {
        return api_error(
            StatusCode::FORBIDDEN,
            "Forbidden.AccessDenied.AccessTokenPermissionDenied",
            "没有调用该接口的权限，接口权限申请参考：Contact.User.Read",
        );
    }
    let Some(p) = st.person(&info.union_id).cloned() else {
        return bad();
    };
    HttpResponse::Ok().json(json!({
        "nick": p.nick,
        "avatarUrl": format!("https://static-legacy.dingtalk.com/media/{}.png", p.union_id),
        "mobile": p.mobile,
        "openId": open_id(&info.client_id, &p.union_id),
        "unionId": p.union_id,
        "email": p.email,
        "stateCode": p.state_code,
    }))
}
