//! The fake's HTTP surface: the authorization page, the token endpoint and
//! user_info.

use super::{
    Decision, Fault, Grant, RefreshInfo, Shared, State, TokenInfo, ACCESS_LIFETIME, CODE_LIFETIME,
    REFRESH_LIFETIME,
};
use crate::server::{escape, page, random, with_query};
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The title of the fake's pages.
const TITLE: &str = "飞书 Feishu";

pub(super) fn mount(cfg: &mut web::ServiceConfig) {
    cfg.route("/open-apis/authen/v1/authorize", web::get().to(authorize))
        .route(
            "/open-apis/authen/v1/authorize/decide",
            web::get().to(decide),
        )
        .route("/open-apis/authen/v2/oauth/token", web::post().to(token))
        .route("/open-apis/authen/v1/user_info", web::get().to(user_info));
}

async fn authorize(
    data: web::Data<Shared>,
    query: web::Query<BTreeMap<String, String>>,
) -> HttpResponse {
    let decision = data.lock().decision.clone();
    answer(&data, query.into_inner(), decision)
}

/// The dev-mode page's links: `person=UNION_ID` or `person=deny`, with the
/// original authorization request.
async fn decide(
    data: web::Data<Shared>,
    query: web::Query<BTreeMap<String, String>>,
) -> HttpResponse {
    let mut q = query.into_inner();
    let decision = match q.remove("person") {
        Some(p) if p != "deny" => Decision::Approve(p),
        _ => Decision::Deny,
    };
    answer(&data, q, decision)
}

/// The page a dev-mode visitor sees: who signs in.
fn ask_page(st: &State, q: &BTreeMap<String, String>) -> HttpResponse {
    let link = |person: &str| {
        let mut pairs: Vec<(&str, &str)> =
            q.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        pairs.push(("person", person));
        escape(&format!(
            "/open-apis/authen/v1/authorize/decide?{}",
            serde_urlencoded::to_string(pairs).unwrap_or_default()
        ))
    };
    let mut items = String::new();
    for p in &st.people {
        items.push_str(&format!(
            "<li><a href=\"{}\">授权登录 Sign in as {}</a> — tenant {}{}</li>",
            link(&p.union_id),
            escape(&p.name),
            escape(&p.tenant_key),
            if p.has_access {
                ""
            } else {
                " (not in the app's availability range: 20010)"
            }
        ));
    }
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(format!(
        "<!doctype html><title>飞书授权 Feishu authorization (simulator)</title><h1>飞书 Feishu simulator</h1><p>App <b>{}</b> asks to sign you in.</p><ul>{items}</ul><p><a href=\"{}\">取消 Cancel</a></p>",
        escape(&st.app.app_id),
        link("deny")
    ))
}

fn answer(data: &Shared, q: BTreeMap<String, String>, decision: Decision) -> HttpResponse {
    let mut st = data.lock();
    st.counters.authorizations += 1;
    if q.get("client_id") != Some(&st.app.app_id) {
        return page(
            StatusCode::BAD_REQUEST,
            TITLE,
            "app_id 不存在 (no app with this client_id)",
        );
    }
    let Some(redirect) = q.get("redirect_uri").cloned() else {
        return page(
            StatusCode::BAD_REQUEST,
            TITLE,
            "redirect_uri 缺失 (missing)",
        );
    };
    if !st.app.redirect_urls.iter().any(|r| redirect.starts_with(r)) {
        return page(
            StatusCode::BAD_REQUEST,
            TITLE,
            "redirect_uri 请求不合法 (not in the app's 重定向 URL list)",
        );
    }
    if let Some(method) = q.get("code_challenge_method") {
        if method != "S256" && method != "plain" {
            return page(
                StatusCode::BAD_REQUEST,
                TITLE,
                "code_challenge_method 不合法",
            );
        }
    }
    let state = q.get("state").cloned().unwrap_or_default();
    let location = match decision {
        Decision::Ask => return ask_page(&st, &q),
        Decision::Deny => with_query(&redirect, &[("error", "access_denied"), ("state", &state)]),
        Decision::Approve(union_id) => {
            let code = random("", 32);
            let now = st.now();
            st.codes.insert(
                code.clone(),
                Grant {
                    union_id,
                    redirect_uri: redirect.clone(),
                    code_challenge: q.get("code_challenge").cloned(),
                    scope: q.get("scope").cloned().unwrap_or_default(),
                    issued_at: now,
                    used: false,
                },
            );
            with_query(&redirect, &[("code", &code), ("state", &state)])
        }
    };
    HttpResponse::Found()
        .insert_header((header::LOCATION, location))
        .finish()
}

/// The token endpoint's error shape.
fn token_error(status: StatusCode, code: i64, error: &str, description: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({
        "code": code,
        "error": error,
        "error_description": description,
    }))
}

fn issue(st: &mut State, union_id: &str, scope: &str) -> Value {
    let access = random("u-", 40);
    let now = st.now();
    let mut answer = json!({
        "code": 0,
        "access_token": access,
        "expires_in": ACCESS_LIFETIME,
        "token_type": "Bearer",
        "scope": scope,
    });
    if scope.split(' ').any(|s| s == "offline_access") {
        let refresh = random("ur-", 40);
        answer["refresh_token"] = json!(refresh);
        answer["refresh_token_expires_in"] = json!(REFRESH_LIFETIME);
        st.refresh_tokens.insert(
            refresh,
            RefreshInfo {
                union_id: union_id.to_owned(),
                scope: scope.to_owned(),
                expires_at: now + REFRESH_LIFETIME,
                used: false,
            },
        );
    }
    st.tokens.insert(
        access,
        TokenInfo {
            union_id: union_id.to_owned(),
            scope: scope.to_owned(),
            expires_at: now + ACCESS_LIFETIME,
        },
    );
    answer
}

async fn token(data: web::Data<Shared>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let fault = {
        let mut st = data.lock();
        st.counters.token_requests += 1;
        st.last_token_content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        st.fault
    };
    match fault {
        Fault::Slow(d) => tokio::time::sleep(d).await,
        Fault::Busy => {
            return token_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                20050,
                "server_error",
                "An unexpected server error occurred. Please retry your request.",
            )
        }
        Fault::Throttled => {
            return token_error(
                StatusCode::TOO_MANY_REQUESTS,
                99991400,
                "rate_limited",
                "request trigger frequency limit",
            )
        }
        Fault::None => {}
    }
    let json_body = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let form: BTreeMap<String, Value> =
        match serde_json::from_slice(&body) {
            Ok(f) if json_body => f,
            _ => return token_error(
                StatusCode::BAD_REQUEST,
                20063,
                "invalid_request",
                "The request body must be JSON (Content-Type: application/json; charset=utf-8).",
            ),
        };
    let field = |k: &str| form.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let mut st = data.lock();
    if field("client_id") != st.app.app_id || field("client_secret") != st.app.app_secret {
        return token_error(
            StatusCode::BAD_REQUEST,
            20002,
            "invalid_client",
            "Client authentication failed.",
        );
    }
    let now = st.now();
    match field("grant_type").as_str() {
        "authorization_code" => {}
        "refresh_token" => {
            st.counters.refreshes += 1;
            let token = field("refresh_token");
            let Some(info) = st.refresh_tokens.get_mut(&token) else {
                return token_error(
                    StatusCode::BAD_REQUEST,
                    20064,
                    "invalid_grant",
                    "The refresh token has been revoked.",
                );
            };
            if info.used {
                return token_error(
                    StatusCode::BAD_REQUEST,
                    20073,
                    "invalid_grant",
                    "The refresh token has been used.",
                );
            }
            if info.expires_at <= now {
                return token_error(
                    StatusCode::BAD_REQUEST,
                    20037,
                    "invalid_grant",
                    "The refresh token has expired.",
                );
            }
            info.used = true;
            let (union_id, scope) = (info.union_id.clone(), info.scope.clone());
            if !st
                .people
                .iter()
                .any(|p| p.union_id == union_id && p.has_access)
            {
                return token_error(
                    StatusCode::BAD_REQUEST,
                    20010,
                    "invalid_grant",
                    "The user does not have permission to use this app.",
                );
            }
            let answer = issue(&mut st, &union_id, &scope);
            return HttpResponse::Ok().json(answer);
        }
        _ => {
            return token_error(
                StatusCode::BAD_REQUEST,
                20036,
                "unsupported_grant_type",
                "The grant type is not supported.",
            )
        }
    }
    let code = field("code");
    let Some(grant) = st.codes.get_mut(&code) else {
        return token_error(
            StatusCode::BAD_REQUEST,
            20003,
            "invalid_grant",
            "The authorization code is not found.",
        );
    };
    if grant.used {
        return token_error(
            StatusCode::BAD_REQUEST,
            20065,
            "invalid_grant",
            "The authorization code has been used.",
        );
    }
    if now - grant.issued_at >= CODE_LIFETIME {
        return token_error(
            StatusCode::BAD_REQUEST,
            20004,
            "invalid_grant",
            "The authorization code has expired.",
        );
    }
    grant.used = true;
    if field("redirect_uri") != grant.redirect_uri {
        return token_error(
            StatusCode::BAD_REQUEST,
            20071,
            "invalid_grant",
            "The redirect_uri does not match the one of the authorization request.",
        );
    }
    if let Some(challenge) = &grant.code_challenge {
        let verifier = field("code_verifier");
        let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
        if URL_SAFE_NO_PAD.encode(digest.as_ref()) != *challenge {
            return token_error(
                StatusCode::BAD_REQUEST,
                20049,
                "invalid_grant",
                "PKCE verification failed.",
            );
        }
    }
    let (union_id, scope) = (grant.union_id.clone(), grant.scope.clone());
    if !st
        .people
        .iter()
        .any(|p| p.union_id == union_id && p.has_access)
    {
        return token_error(
            StatusCode::BAD_REQUEST,
            20010,
            "invalid_grant",
            "The user does not have permission to use this app.",
        );
    }
    let answer = issue(&mut st, &union_id, &scope);
    HttpResponse::Ok().json(answer)
}

async fn user_info(data: web::Data<Shared>, req: HttpRequest) -> HttpResponse {
    let mut st = data.lock();
    st.counters.user_info_calls += 1;
    if st.fault == Fault::Throttled {
        return HttpResponse::TooManyRequests()
            .json(json!({"code": 99991400, "msg": "request trigger frequency limit", "data": {}}));
    }
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let now = st.now();
    let invalid = || {
        HttpResponse::Unauthorized().json(json!({
            "code": 99991668,
            "msg": "Invalid access token for authorization. Please make a request with token attached.",
            "data": {},
        }))
    };
    let Some(info) = st.tokens.get(token).filter(|t| t.expires_at > now) else {
        return invalid();
    };
    let _ = &info.scope;
    let Some(p) = st.people.iter().find(|p| p.union_id == info.union_id) else {
        return invalid();
    };
    let open_id = st.open_id(&p.union_id);
    let avatar = format!(
        "https://s1-imfile.feishucdn.com/static-resource/v1/{}~?image_size=240x240",
        &open_id
    );
    HttpResponse::Ok().json(json!({
        "code": 0,
        "msg": "success",
        "data": {
            "name": p.name,
            "en_name": p.en_name.clone().unwrap_or_else(|| p.name.clone()),
            "avatar_url": avatar,
            "avatar_thumb": avatar,
            "avatar_middle": avatar,
            "avatar_big": avatar,
            "open_id": open_id,
            "union_id": p.union_id,
            "enterprise_email": p.email,
            "mobile": p.mobile,
            "tenant_key": p.tenant_key,
        }
    }))
}
