//! The demo app of `serve --dev`: a relying party served by the broker itself. It
//! signs in through the broker's own endpoints like any app would (PKCE, nonce,
//! code exchange over HTTP) and shows the decoded tokens and the userinfo answer.
//! Like an app would, it speaks the browser's language (English or 简体中文).

use crate::http::{fallback_locale, found};
use crate::pages::{escape, Page};
use crate::params::append_query;
use crate::state::AppState;
use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use idbridge_core::Locale;
use idbridge_tokens::{pkce_s256, random_token};

pub const DEMO_CLIENT_ID: &str = "demo";
/// The same demo app registered with `require_phone = true`.
pub const DEMO_PHONE_CLIENT_ID: &str = "demo-phone";
const DEMO_COOKIE: &str = "idb_demo";

/// The demo app's registration (its secret is generated per dev directory).
pub struct DemoClient {
    pub secret: String,
}

fn page(locale: Locale, title: &str, body: &str) -> HttpResponse {
    let mut p = Page::new(locale, title, body);
    p.wide = true;
    p.render()
}

/// The demo app's own words (it is an app, not the broker: its text is not in
/// the broker's table).
fn tr(locale: Locale, en: &'static str, zh: &'static str) -> &'static str {
    match locale {
        Locale::ZhCn => zh,
        Locale::En => en,
    }
}

pub async fn home(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let l = fallback_locale(&req);
    let connectors: String = state
        .connectors
        .iter()
        .filter(|(_, c)| c.connector.has_browser_flow())
        .map(|(id, c)| {
            format!(
                "<li><a class=\"button\" href=\"/demo/login?connector={}\">{}</a></li>",
                escape(id),
                escape(c.connector.display_name())
            )
        })
        .collect();
    // The other language, asked for with ui_locales (it wins over the browser's).
    let (other_locale, other_label) = match l {
        Locale::ZhCn => ("en", "Sign in in English"),
        Locale::En => ("zh-CN", "用中文登录"),
    };
    let body = format!(
        "<p>{intro}</p>\
         <ul class=\"choices\"><li><a class=\"button primary\" href=\"/demo/login\">{sign_in}</a></li>{connectors}\
         <li><a class=\"button\" href=\"/demo/login?prompt=login\">{again}</a></li>\
         <li><a class=\"button\" href=\"/demo/login?ui_locales={other_locale}\" lang=\"{other_locale}\">{other_label}</a></li>\
         <li><a class=\"button\" href=\"/demo/login?app=phone\">{phone}</a></li></ul>\
         <p class=\"muted\">{account} <a href=\"/account\">/account</a> · {outbox} <a href=\"/dev/outbox\">/dev/outbox</a> · \
         {discovery} <a href=\"/.well-known/openid-configuration\">/.well-known/openid-configuration</a></p>",
        intro = tr(
            l,
            "A sample app that signs in through this broker with OpenID Connect (authorization code + PKCE).",
            "一个通过本登录服务以 OpenID Connect（授权码 + PKCE）登录的示例应用。"
        ),
        sign_in = tr(l, "Sign in", "登录"),
        again = tr(l, "Sign in again (prompt=login)", "重新登录（prompt=login）"),
        phone = tr(
            l,
            "Sign in to an app that needs a verified phone number",
            "登录到需要验证手机号的应用"
        ),
        account = tr(l, "Your account at the broker:", "你在登录服务的账号："),
        outbox = tr(
            l,
            "codes the development sender \"sent\":",
            "开发用发送器“发出”的验证码："
        ),
        discovery = tr(l, "discovery:", "发现文档："),
    );
    page(l, tr(l, "idbridge demo app", "idbridge 示例应用"), &body)
}

#[derive(serde::Deserialize)]
pub struct LoginQuery {
    connector: Option<String>,
    prompt: Option<String>,
    ui_locales: Option<String>,
    /// `phone`: sign in as the demo app that requires a verified phone number.
    app: Option<String>,
}

pub async fn login(state: web::Data<AppState>, q: web::Query<LoginQuery>) -> HttpResponse {
    let (Ok(verifier), Ok(st), Ok(nonce)) = (random_token(32), random_token(16), random_token(16))
    else {
        return HttpResponse::InternalServerError().finish();
    };
    let redirect_uri = state.endpoint("/demo/callback");
    let challenge = pkce_s256(&verifier);
    let (client_id, scope) = if q.app.as_deref() == Some("phone") {
        (DEMO_PHONE_CLIENT_ID, "openid profile phone offline_access")
    } else {
        (DEMO_CLIENT_ID, "openid profile offline_access")
    };
    let mut params = vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect_uri.as_str()),
        ("scope", scope),
        ("state", st.as_str()),
        ("nonce", nonce.as_str()),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    if let Some(c) = &q.connector {
        params.push(("connector", c));
    }
    if let Some(p) = &q.prompt {
        params.push(("prompt", p));
    }
    if let Some(l) = &q.ui_locales {
        params.push(("ui_locales", l));
    }
    let url = append_query(&state.endpoint("/authorize"), &params);
    let mut resp = found(&url);
    let c = Cookie::build(DEMO_COOKIE, format!("{client_id}.{st}.{nonce}.{verifier}"))
        .path("/demo")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(state.secure_cookies)
        .finish();
    let _ = resp.add_cookie(&c);
    resp
}

fn decode_jwt(token: &str) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let part = |i: usize| {
        parts
            .get(i)
            .and_then(|p| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(p)
                    .ok()
            })
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
            .unwrap_or_default()
    };
    format!("header: {}\npayload: {}", part(0), part(1))
}

#[derive(serde::Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
    iss: Option<String>,
}

pub async fn callback(
    state: web::Data<AppState>,
    demo: web::Data<DemoClient>,
    req: HttpRequest,
    q: web::Query<CallbackQuery>,
) -> HttpResponse {
    let l = fallback_locale(&req);
    // What went wrong stays in English: it is the demo app's technical message
    // for the developer trying the broker, not a text of the broker's pages.
    let fail = |msg: String| {
        let mut p = Page::new(
            l,
            tr(l, "Demo app: sign-in failed", "示例应用：登录失败"),
            "",
        );
        let body = format!(
            "<p role=\"alert\">{}</p><p><a class=\"button\" href=\"/demo\">{}</a></p>",
            escape(&msg),
            tr(l, "Back", "返回")
        );
        p.body_html = &body;
        p.status(StatusCode::BAD_REQUEST).render()
    };
    if q.iss.as_deref() != Some(state.issuer.as_str()) {
        return fail(format!(
            "the iss parameter {:?} is not this broker (RFC 9207 mix-up check)",
            q.iss
        ));
    }
    if let Some(e) = &q.error {
        return fail(format!(
            "the broker answered {e}: {}",
            q.error_description.clone().unwrap_or_default()
        ));
    }
    let cookie = req
        .cookie(DEMO_COOKIE)
        .map(|c| c.value().to_owned())
        .unwrap_or_default();
    let mut parts = cookie.splitn(4, '.');
    let (Some(client_id), Some(st), Some(nonce), Some(verifier)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return fail("the demo app's cookie is missing; start again".into());
    };
    if q.state.as_deref() != Some(st) {
        return fail("state does not match what the demo app sent".into());
    }
    let Some(code) = &q.code else {
        return fail("no code".into());
    };
    let redirect_uri = state.endpoint("/demo/callback");
    let resp = state
        .http
        .post(state.endpoint("/token"))
        .basic_auth(client_id, Some(&demo.secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect_uri.as_str()),
            ("code_verifier", verifier),
        ])
        .send()
        .await;
    let tokens: serde_json::Value = match resp {
        Ok(r) => match r.json().await {
            Ok(v) => v,
            Err(e) => return fail(format!("token response unreadable: {e}")),
        },
        Err(e) => return fail(format!("token request failed: {e}")),
    };
    if let Some(err) = tokens.get("error") {
        return fail(format!(
            "token endpoint said {err}: {}",
            tokens.get("error_description").cloned().unwrap_or_default()
        ));
    }
    let id_token = tokens
        .get("id_token")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    let access_token = tokens
        .get("access_token")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    let decoded_id = decode_jwt(id_token);
    let nonce_ok = decoded_id.contains(&format!("\"nonce\": \"{nonce}\""));
    let userinfo = match state
        .http
        .get(state.endpoint("/userinfo"))
        .bearer_auth(access_token)
        .send()
        .await
    {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(e) => format!("userinfo failed: {e}"),
    };
    let logout = append_query(
        &state.endpoint("/logout"),
        &[
            ("id_token_hint", id_token),
            ("post_logout_redirect_uri", &state.endpoint("/demo")),
        ],
    );
    let body = format!(
        "<p>{}</p>\
         <h2>{}</h2><pre>{}</pre><h2>{}</h2><pre>{}</pre>\
         <h2>userinfo</h2><pre>{}</pre><h2>{}</h2><pre>{}</pre>\
         <p><a class=\"button\" href=\"/demo\">{}</a></p><p><a class=\"button\" href=\"{}\">{}</a></p>",
        if nonce_ok {
            tr(l, "Signed in. The nonce matches.", "已登录。nonce 一致。")
        } else {
            tr(l, "Signed in. The nonce DOES NOT match.", "已登录。nonce 不一致！")
        },
        tr(l, "ID token", "ID 令牌"),
        escape(&decoded_id),
        tr(l, "Access token (RFC 9068)", "访问令牌（RFC 9068）"),
        escape(&decode_jwt(access_token)),
        escape(&userinfo),
        tr(l, "Token response", "令牌响应"),
        escape(&serde_json::to_string_pretty(&tokens).unwrap_or_default()),
        tr(l, "Home", "首页"),
        escape(&logout),
        tr(l, "Sign out", "退出登录"),
    );
    page(
        l,
        tr(
            l,
            "idbridge demo app: signed in",
            "idbridge 示例应用：已登录",
        ),
        &body,
    )
}

/// GET /dev/outbox: the codes the development sender "sent" (newest first), so a
/// person trying dev mode can finish a phone or binding step without a phone.
pub async fn outbox(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let l = fallback_locale(&req);
    let rows: String = state
        .verifier
        .outbox
        .list()
        .iter()
        .map(|m| {
            format!(
                "<tr><td>{}</td><td>{}</td><td class=\"code\"><code>{}</code></td><td>{}</td></tr>",
                escape(m.channel),
                escape(&m.to),
                escape(&m.code),
                escape(&m.text)
            )
        })
        .collect();
    let body = format!(
        "<p>{}</p>\
         <table><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>{rows}</tbody></table>",
        tr(
            l,
            "Messages the development sender would have sent (nothing leaves this machine). Newest first.",
            "开发用发送器本应发出的消息（不会离开本机），最新的在前。"
        ),
        tr(l, "channel", "渠道"),
        tr(l, "to", "发送至"),
        tr(l, "code", "验证码"),
        tr(l, "text", "内容"),
    );
    page(l, tr(l, "Dev outbox", "开发用发件箱"), &body)
}

#[derive(serde::Deserialize)]
pub struct AdvanceQuery {
    secs: i64,
}

/// POST /dev/clock?secs=N (dev mode only): move the broker's clock forward, to
/// try what happens when codes, requests or a sign-in get old, without waiting.
pub async fn advance_clock(
    state: web::Data<AppState>,
    q: web::Query<AdvanceQuery>,
) -> HttpResponse {
    if !(0..=366 * 86_400).contains(&q.secs) {
        return HttpResponse::BadRequest()
            .content_type("text/plain; charset=utf-8")
            .body("secs must be between 0 and one year");
    }
    state.clock.advance(q.secs);
    tracing::info!(
        secs = q.secs,
        "dev mode: the broker's clock was moved forward"
    );
    HttpResponse::Ok().json(serde_json::json!({ "now": state.now() }))
}
