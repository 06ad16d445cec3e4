//! The fake's HTTP surface: the OAuth web flow and the REST API calls.

use super::{Decision, Grant, Person, Shared, State, TokenInfo};
use crate::server::{escape, page, random, with_query};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The title of the fake's pages.
const TITLE: &str = "GitHub";

pub(super) fn mount(cfg: &mut web::ServiceConfig) {
    cfg.route("/login/oauth/authorize", web::get().to(authorize))
        .route("/login/oauth/authorize/decide", web::get().to(decide))
        .route("/login/oauth/access_token", web::post().to(access_token))
        .route("/api/v3/user", web::get().to(user))
        .route("/api/v3/user/emails", web::get().to(emails))
        .route("/api/v3/user/orgs", web::get().to(orgs));
}

async fn authorize(
    data: web::Data<Shared>,
    query: web::Query<BTreeMap<String, String>>,
) -> HttpResponse {
    let decision = data.lock().decision.clone();
    answer(&data, query.into_inner(), decision)
}

/// The dev-mode page's buttons: `person=ID` or `person=deny`, with the
/// original authorization request.
async fn decide(
    data: web::Data<Shared>,
    query: web::Query<BTreeMap<String, String>>,
) -> HttpResponse {
    let mut q = query.into_inner();
    let decision = match q.remove("person").as_deref().map(str::parse::<u64>) {
        Some(Ok(id)) => Decision::Approve(id),
        _ => Decision::Deny,
    };
    answer(&data, q, decision)
}

/// The page a dev-mode visitor sees: who to sign in as.
fn ask_page(st: &State, q: &BTreeMap<String, String>) -> HttpResponse {
    let link = |person: &str| {
        let mut pairs: Vec<(&str, &str)> =
            q.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        pairs.push(("person", person));
        escape(&format!(
            "/login/oauth/authorize/decide?{}",
            serde_urlencoded::to_string(pairs).unwrap_or_default()
        ))
    };
    let mut items = String::new();
    for p in &st.people {
        let id = p.id.to_string();
        let emails: Vec<String> = p
            .emails
            .iter()
            .map(|e| {
                format!(
                    "{}{}{}",
                    e.email,
                    if e.primary { " (primary)" } else { "" },
                    if e.verified { "" } else { " (unverified)" }
                )
            })
            .collect();
        items.push_str(&format!(
            "<li><a href=\"{}\">Authorize as {} (id {id})</a> — {} — orgs: {}</li>",
            link(&id),
            escape(&p.login),
            escape(&emails.join(", ")),
            escape(&p.orgs.join(", "))
        ));
    }
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(format!(
        "<!doctype html><title>Authorize application (GitHub simulator)</title><h1>GitHub simulator</h1><p>Authorize <b>{}</b>?</p><ul>{items}</ul><p><a href=\"{}\">Cancel</a></p>",
        escape(&st.app.client_id),
        link("deny")
    ))
}

fn answer(data: &Shared, q: BTreeMap<String, String>, decision: Decision) -> HttpResponse {
    let mut st = data.lock();
    st.counters.authorizations += 1;
    if q.get("client_id") != Some(&st.app.client_id) {
        return page(
            actix_web::http::StatusCode::NOT_FOUND,
            TITLE,
            "Not Found: no OAuth app with this client_id",
        );
    }
    let redirect = q.get("redirect_uri").cloned();
    if let Some(r) = &redirect {
        if !r.starts_with(&st.app.callback_url) {
            return page(
                actix_web::http::StatusCode::OK,
                TITLE,
                "The redirect_uri is not associated with this application.",
            );
        }
    }
    let back = redirect
        .clone()
        .unwrap_or_else(|| st.app.callback_url.clone());
    let state = q.get("state").cloned().unwrap_or_default();
    let location = match decision {
        Decision::Ask => return ask_page(&st, &q),
        Decision::Deny => with_query(
            &back,
            &[
                ("error", "access_denied"),
                ("error_description", "The user has denied your application access."),
                ("error_uri", "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-authorization-request-errors/#access-denied"),
                ("state", &state),
            ],
        ),
        Decision::Approve(person) => {
            let code = random("", 36);
            let code = code.get(..20).unwrap_or(&code).to_owned();
            let scopes = q
                .get("scope")
                .map(|s| s.split([' ', ',']).filter(|s| !s.is_empty()).map(str::to_owned).collect())
                .unwrap_or_default();
            st.codes.insert(
                code.clone(),
                Grant {
                    person,
                    redirect_uri: redirect,
                    code_challenge: q.get("code_challenge").cloned(),
                    scopes,
                    used: false,
                },
            );
            with_query(&back, &[("code", &code), ("state", &state)])
        }
    };
    HttpResponse::Found()
        .insert_header((header::LOCATION, location))
        .finish()
}

/// GitHub's token endpoint errors: HTTP 200 with an `error` field.
fn token_error(code: &str, description: &str, anchor: &str) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "error": code,
        "error_description": description,
        "error_uri": format!("https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/#{anchor}"),
    }))
}

fn basic_credentials(req: &HttpRequest) -> Option<(String, String)> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let decoded = STANDARD.decode(value.strip_prefix("Basic ")?).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let dec = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((dec(id)?, dec(secret)?))
}

fn issue(st: &mut State, person: u64, scopes: Vec<String>) -> Value {
    let access = random("gho_", 36);
    let mut answer = json!({
        "access_token": access,
        "token_type": "bearer",
        "scope": scopes.join(","),
    });
    if st.app.expiring_tokens {
        let refresh = random("ghr_", 36);
        answer["expires_in"] = json!(28800);
        answer["refresh_token"] = json!(refresh);
        answer["refresh_token_expires_in"] = json!(15_897_600);
        st.refresh_tokens.insert(
            refresh,
            TokenInfo {
                person,
                scopes: scopes.clone(),
            },
        );
    }
    st.tokens.insert(access, TokenInfo { person, scopes });
    answer
}

async fn access_token(data: web::Data<Shared>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let form: BTreeMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let mut st = data.lock();
    st.counters.token_requests += 1;
    st.last_token_request = Some(form.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
    let (client_id, secret) = match basic_credentials(&req) {
        Some(c) => c,
        None => (
            form.get("client_id").cloned().unwrap_or_default(),
            form.get("client_secret").cloned().unwrap_or_default(),
        ),
    };
    if client_id != st.app.client_id || secret != st.app.client_secret {
        return token_error(
            "incorrect_client_credentials",
            "The client_id and/or client_secret passed are incorrect.",
            "incorrect-client-credentials",
        );
    }
    if form.get("grant_type").map(String::as_str) == Some("refresh_token") {
        let token = form.get("refresh_token").cloned().unwrap_or_default();
        let Some(info) = st.refresh_tokens.remove(&token) else {
            return token_error(
                "bad_refresh_token",
                "The refresh token passed is incorrect or expired.",
                "bad-refresh-token",
            );
        };
        let answer = issue(&mut st, info.person, info.scopes);
        return HttpResponse::Ok().json(answer);
    }
    let code = form.get("code").cloned().unwrap_or_default();
    let bad_code = || {
        token_error(
            "bad_verification_code",
            "The code passed is incorrect or expired.",
            "bad-verification-code",
        )
    };
    let Some(grant) = st.codes.get_mut(&code) else {
        return bad_code();
    };
    if grant.used {
        return bad_code();
    }
    grant.used = true;
    if let (Some(registered), Some(sent)) = (&grant.redirect_uri, form.get("redirect_uri")) {
        if registered != sent {
            return token_error(
                "redirect_uri_mismatch",
                "The redirect_uri MUST match the registered callback URL for this application.",
                "redirect-uri-mismatch2",
            );
        }
    }
    if let Some(challenge) = &grant.code_challenge {
        let verifier = form.get("code_verifier").cloned().unwrap_or_default();
        let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
        if URL_SAFE_NO_PAD.encode(digest.as_ref()) != *challenge {
            return bad_code();
        }
    }
    let (person, scopes) = (grant.person, grant.scopes.clone());
    let answer = issue(&mut st, person, scopes);
    let wants_json = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("json"));
    if wants_json {
        HttpResponse::Ok().json(answer)
    } else {
        // GitHub's default: a form-encoded body.
        let pairs: Vec<(String, String)> = answer
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            v.as_str()
                                .map(str::to_owned)
                                .unwrap_or_else(|| v.to_string()),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        HttpResponse::Ok()
            .content_type("application/x-www-form-urlencoded; charset=utf-8")
            .body(serde_urlencoded::to_string(pairs).unwrap_or_default())
    }
}

fn api_message(status: actix_web::http::StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({
        "message": message,
        "documentation_url": "https://docs.github.com/rest",
        "status": status.as_u16().to_string(),
    }))
}

/// The person behind the request's token, or the answer GitHub gives.
fn authenticated(
    data: &Shared,
    req: &HttpRequest,
) -> Result<(Person, Vec<String>), Box<HttpResponse>> {
    let mut st = data.lock();
    st.counters.api_calls += 1;
    if req.headers().get(header::USER_AGENT).is_none() {
        return Err(Box::new(api_message(
            actix_web::http::StatusCode::FORBIDDEN,
            "Request forbidden by administrative rules. Please make sure your request has a User-Agent header (https://docs.github.com/en/rest/overview/resources-in-the-rest-api#user-agent-required).",
        )));
    }
    if st.rate_limited {
        return Err(Box::new(HttpResponse::Forbidden()
            .insert_header(("x-ratelimit-limit", "5000"))
            .insert_header(("x-ratelimit-remaining", "0"))
            .insert_header(("x-ratelimit-reset", "1900000000"))
            .json(json!({
                "message": "API rate limit exceeded for user ID 1.",
                "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
            }))));
    }
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("token "))
        })
        .unwrap_or_default();
    let bad = || {
        Box::new(api_message(
            actix_web::http::StatusCode::UNAUTHORIZED,
            "Bad credentials",
        ))
    };
    let info = st.tokens.get(token).ok_or_else(bad)?;
    let scopes = info.scopes.clone();
    let person = st
        .people
        .iter()
        .find(|p| p.id == info.person)
        .cloned()
        .ok_or_else(bad)?;
    Ok((person, scopes))
}

fn has_scope(scopes: &[String], wanted: &[&str]) -> bool {
    scopes.iter().any(|s| wanted.contains(&s.as_str()))
}

async fn user(data: web::Data<Shared>, req: HttpRequest) -> HttpResponse {
    let (p, _) = match authenticated(&data, &req) {
        Ok(p) => p,
        Err(answer) => return *answer,
    };
    HttpResponse::Ok().json(json!({
        "login": p.login,
        "id": p.id,
        "node_id": format!("U_{}", p.id),
        "avatar_url": format!("https://avatars.githubusercontent.com/u/{}?v=4", p.id),
        "html_url": format!("https://github.com/{}", p.login),
        "type": "User",
        "site_admin": false,
        "name": p.name,
        // The public profile email, which the person may leave unset.
        "email": Value::Null,
    }))
}

async fn emails(data: web::Data<Shared>, req: HttpRequest) -> HttpResponse {
    let (p, scopes) = match authenticated(&data, &req) {
        Ok(p) => p,
        Err(answer) => return *answer,
    };
    if !has_scope(&scopes, &["user:email", "user"]) {
        return api_message(actix_web::http::StatusCode::NOT_FOUND, "Not Found");
    }
    let list: Vec<Value> = p
        .emails
        .iter()
        .map(|e| json!({"email": e.email, "verified": e.verified, "primary": e.primary, "visibility": if e.primary { "private" } else { "null" }}))
        .collect();
    HttpResponse::Ok().json(list)
}

async fn orgs(data: web::Data<Shared>, req: HttpRequest) -> HttpResponse {
    let (p, scopes) = match authenticated(&data, &req) {
        Ok(p) => p,
        Err(answer) => return *answer,
    };
    if !has_scope(&scopes, &["read:org", "user"]) {
        return api_message(
            actix_web::http::StatusCode::FORBIDDEN,
            "Resource not accessible by integration",
        );
    }
    let list: Vec<Value> = p
        .orgs
        .iter()
        .enumerate()
        .map(|(i, o)| json!({"login": o, "id": 1000 + i, "url": format!("https://api.github.com/orgs/{o}")}))
        .collect();
    HttpResponse::Ok().json(list)
}
