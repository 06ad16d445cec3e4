//! The fakes' HTTP server: one engine, three shapes.

use super::keys::{self, random, SigningKey};
use super::{Alg, ClientSecret, Shape, SimClient, SimConfig, SimUser};
use crate::{apple, microsoft};
use actix_web::dev::ServerHandle;
use actix_web::http::header;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

pub fn system_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[derive(Clone)]
struct Grant {
    client_id: String,
    redirect_uri: String,
    user_id: String,
    nonce: Option<String>,
    challenge: Option<String>,
    scope: String,
    issued_at: i64,
    used: bool,
}

/// Where a fake reads "now" from instead of the wall clock (dev mode: the
/// broker's clock, which `/dev/clock` moves).
pub type ClockFn = Arc<dyn Fn() -> i64 + Send + Sync>;

/// How the next ID token is forged ([`crate::oidc::Sim::forge_next_id_token`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forgery {
    /// Signed, then one character of the signature changed.
    BadSignature,
    /// `alg: none` and no signature.
    AlgNone,
    /// HS256 keyed with the provider's public key (the RS256/HS256 confusion).
    Hs256WithPublicKey,
}

#[derive(Default)]
pub struct State {
    pub clock: Option<ClockFn>,
    pub keys: Vec<Arc<SigningKey>>,
    codes: HashMap<String, Grant>,
    refresh: HashMap<String, Grant>,
    access: HashMap<String, String>,
    pub next_claims: Option<Map<String, Value>>,
    pub tamper_next: Option<Forgery>,
    /// How long the token endpoint waits before it answers.
    pub token_delay: Option<std::time::Duration>,
    pub disabled: HashSet<String>,
    pub offset: i64,
    pub secrets_seen: Vec<String>,
    pub token_requests: usize,
    /// Every request's path and W3C `traceparent` header, oldest first.
    pub requests_seen: Vec<(String, Option<String>)>,
    apple_seen: HashSet<(String, String)>,
}

pub struct Shared {
    pub alg: Alg,
    config: SimConfig,
    base: String,
    state: Mutex<State>,
}

impl State {
    /// The fake's "now": its clock (or the wall clock) plus its offset.
    pub fn now(&self) -> i64 {
        self.clock.as_ref().map_or_else(system_now, |c| c()) + self.offset
    }
}

impl Shared {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut guard = match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    fn now(&self) -> i64 {
        self.with(|s| s.now())
    }

    fn client(&self, id: &str) -> Option<&SimClient> {
        self.config.clients.iter().find(|c| c.id == id)
    }

    fn user(&self, id: &str) -> Option<&SimUser> {
        self.config.users.iter().find(|u| u.id == id)
    }

    fn shape(&self) -> &Shape {
        &self.config.shape
    }
}

pub struct Running {
    pub shared: Arc<Shared>,
    handle: Option<ServerHandle>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Running {
    pub async fn start(config: SimConfig) -> Result<Running, String> {
        let listener =
            std::net::TcpListener::bind(("127.0.0.1", config.port)).map_err(|e| e.to_string())?;
        Self::start_on(config, listener, None).await
    }

    /// Serve on `listener` (`config.port` is not used), as
    /// `http://{host}:PORT` (`None`: the listener's address).
    pub async fn start_on(
        config: SimConfig,
        listener: std::net::TcpListener,
        host: Option<&str>,
    ) -> Result<Running, String> {
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let base = match host {
            Some(host) => format!("http://{host}:{}", addr.port()),
            None => format!("http://{addr}"),
        };
        let key = SigningKey::generate(config.alg)?;
        let shared = Arc::new(Shared {
            alg: config.alg,
            base,
            config,
            state: Mutex::new(State {
                keys: vec![Arc::new(key)],
                ..State::default()
            }),
        });
        let data = web::Data::from(Arc::clone(&shared));
        let server = HttpServer::new(move || {
            let seen = data.clone();
            let app = App::new().app_data(data.clone()).wrap_fn(move |req, srv| {
                let traceparent = req
                    .headers()
                    .get("traceparent")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let path = req.path().to_owned();
                seen.with(|s| s.requests_seen.push((path, traceparent)));
                actix_web::dev::Service::call(srv, req)
            });
            match data.config.shape {
                Shape::Generic => app
                    .route(
                        "/.well-known/openid-configuration",
                        web::get().to(discovery),
                    )
                    .route("/jwks", web::get().to(jwks))
                    .route("/authorize", web::get().to(authorize))
                    .route("/token", web::post().to(token))
                    .route("/userinfo", web::get().to(userinfo)),
                Shape::Microsoft => app
                    .route(
                        "/{tenant}/v2.0/.well-known/openid-configuration",
                        web::get().to(discovery),
                    )
                    .route("/{tenant}/discovery/v2.0/keys", web::get().to(jwks))
                    .route("/{tenant}/oauth2/v2.0/authorize", web::get().to(authorize))
                    .route("/{tenant}/oauth2/v2.0/token", web::post().to(token))
                    .route("/oidc/userinfo", web::get().to(userinfo)),
                Shape::Apple => app
                    .route(
                        "/.well-known/openid-configuration",
                        web::get().to(discovery),
                    )
                    .route("/auth/keys", web::get().to(jwks))
                    .route("/auth/authorize", web::get().to(authorize))
                    .route("/auth/token", web::post().to(token)),
            }
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)
        .map_err(|e| e.to_string())?
        .run();
        let handle = server.handle();
        let task = tokio::spawn(server);
        tracing::info!(%addr, base = %shared.base, shape = ?shared.config.shape, "provider simulator listening");
        Ok(Running {
            shared,
            handle: Some(handle),
            task: Some(task),
        })
    }

    pub fn base_url(&self) -> String {
        self.shared.base.clone()
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        self.shared.with(f)
    }

    pub async fn stop(mut self) {
        if let Some(h) = self.handle.take() {
            h.stop(true).await;
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            drop(h.stop(false));
        }
    }
}

fn tenant(req: &HttpRequest) -> String {
    req.match_info().get("tenant").unwrap_or("").to_owned()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn page(status: u16, title: &str, body: &str) -> HttpResponse {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title></head><body><h1>{t}</h1>{body}</body></html>",
        t = escape(title)
    );
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap_or_default())
        .content_type("text/html; charset=utf-8")
        .body(html)
}

fn json_response(status: u16, body: Value) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap_or_default())
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body)
}

async fn discovery(shared: web::Data<Shared>, req: HttpRequest) -> HttpResponse {
    let base = &shared.base;
    let alg = shared.alg.name();
    let doc = match shared.shape() {
        Shape::Generic => json!({
            "issuer": base,
            "authorization_endpoint": format!("{base}/authorize"),
            "token_endpoint": format!("{base}/token"),
            "userinfo_endpoint": format!("{base}/userinfo"),
            "jwks_uri": format!("{base}/jwks"),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query", "form_post"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "id_token_signing_alg_values_supported": [alg],
            "subject_types_supported": ["public"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "authorization_response_iss_parameter_supported": true,
        }),
        Shape::Microsoft => microsoft::discovery(base, &tenant(&req), alg),
        Shape::Apple => apple::discovery(base, alg),
    };
    json_response(200, doc)
}

async fn jwks(shared: web::Data<Shared>) -> HttpResponse {
    let keys: Vec<Value> = shared.with(|s| s.keys.iter().map(|k| k.jwk.clone()).collect());
    json_response(200, json!({ "keys": keys }))
}

fn redirect_allowed(client: &SimClient, uri: &str) -> bool {
    client
        .redirect_uris
        .iter()
        .any(|r| match r.strip_suffix('*') {
            Some(prefix) => uri.starts_with(prefix),
            None => r == uri,
        })
}

/// The callback: a redirect with the parameters, or a self-posting form.
fn deliver(redirect_uri: &str, form_post: bool, params: &[(String, String)]) -> HttpResponse {
    if form_post {
        let inputs: String = params
            .iter()
            .map(|(k, v)| {
                format!(
                    "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                    escape(k),
                    escape(v)
                )
            })
            .collect();
        let body = format!(
            "<form method=\"post\" action=\"{}\">{inputs}<button type=\"submit\">Continue</button></form><script>document.forms[0].submit()</script>",
            escape(redirect_uri)
        );
        return page(200, "Signing you in", &body);
    }
    let mut url = match url::Url::parse(redirect_uri) {
        Ok(u) => u,
        Err(_) => return page(400, "invalid redirect_uri", ""),
    };
    url.query_pairs_mut().extend_pairs(params);
    HttpResponse::Found()
        .insert_header((header::LOCATION, url.to_string()))
        .finish()
}

async fn authorize(
    shared: web::Data<Shared>,
    req: HttpRequest,
    query: web::Query<BTreeMap<String, String>>,
) -> HttpResponse {
    let q = query.into_inner();
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    let Some(client) = shared.client(get("client_id")) else {
        return match shared.shape() {
            Shape::Microsoft => page(
                400,
                "AADSTS700016",
                "AADSTS700016: Application with identifier was not found in the directory.",
            ),
            _ => page(400, "invalid_client", "unknown client_id"),
        };
    };
    let redirect_uri = get("redirect_uri").to_owned();
    if !redirect_allowed(client, &redirect_uri) {
        return match shared.shape() {
            Shape::Microsoft => page(400, "AADSTS50011", "AADSTS50011: The redirect URI specified in the request does not match the redirect URIs configured for the application."),
            _ => page(400, "invalid_request", "invalid redirect_uri: it is not registered for the client"),
        };
    }
    let form_post = get("response_mode") == "form_post";
    let mut params: Vec<(String, String)> = Vec::new();
    let state = get("state").to_owned();
    let iss = match shared.shape() {
        Shape::Generic => Some(shared.base.clone()),
        _ => None,
    };
    let error = |code: &str, description: &str| {
        let mut p = vec![("error".to_owned(), code.to_owned())];
        if !description.is_empty() {
            p.push(("error_description".to_owned(), description.to_owned()));
        }
        if !state.is_empty() {
            p.push(("state".to_owned(), state.clone()));
        }
        if let Some(iss) = &iss {
            p.push(("iss".to_owned(), iss.clone()));
        }
        deliver(&redirect_uri, form_post, &p)
    };
    if get("response_type") != "code" {
        return error("unsupported_response_type", "only code");
    }
    let mut scope = get("scope").to_owned();
    if get("access_type") == "offline" {
        // Google's way to ask for a refresh token.
        scope.push_str(" offline_access");
    }
    if *shared.shape() == Shape::Apple {
        if let Err(why) = apple::check_authorize(&scope, form_post) {
            return page(400, "invalid_request", &escape(&why));
        }
    }
    if get("sim_deny") == "1" {
        return match shared.shape() {
            Shape::Generic => error("access_denied", "The person refused."),
            Shape::Microsoft => error(
                "access_denied",
                "AADSTS65004: User declined to consent to access the app.",
            ),
            Shape::Apple => error("user_cancelled_authorize", ""),
        };
    }
    let wanted = if q.contains_key("sim_user") {
        get("sim_user")
    } else {
        get("login_hint")
    };
    let Some(user) = shared.user(wanted) else {
        // The chooser a person clicks in dev mode.
        let here = req.uri().to_string();
        let sep = if here.contains('?') { '&' } else { '?' };
        let links: String = shared
            .config
            .users
            .iter()
            .map(|u| {
                format!(
                    "<li><a id=\"as-{id}\" href=\"{here}{sep}sim_user={id}\">{}</a></li>",
                    escape(&display_name(u)),
                    id = escape(&u.id),
                    here = escape(&here)
                )
            })
            .collect();
        let body = format!(
            "<p>A fake OpenID provider for tests and dev mode. Sign in as:</p><ul>{links}</ul><p><a id=\"deny\" href=\"{here}{sep}sim_deny=1\">Deny</a></p>",
            here = escape(&here)
        );
        return page(200, "Sign in (provider simulator)", &body);
    };
    if *shared.shape() == Shape::Microsoft {
        if let Err(why) = microsoft::check_user_in_authority(&tenant(&req), user) {
            return page(400, "AADSTS50020", &escape(&why));
        }
    }
    let now = shared.now();
    let code = random(24);
    let grant = Grant {
        client_id: client.id.clone(),
        redirect_uri: redirect_uri.clone(),
        user_id: user.id.clone(),
        nonce: q.get("nonce").cloned(),
        challenge: q.get("code_challenge").cloned(),
        scope: scope.clone(),
        issued_at: now,
        used: false,
    };
    let first_time = shared.with(|s| {
        s.codes.insert(code.clone(), grant);
        s.apple_seen.insert((user.id.clone(), client.id.clone()))
    });
    params.push(("code".into(), code));
    if !state.is_empty() {
        params.push(("state".into(), state.clone()));
    }
    if let Some(iss) = &iss {
        params.push(("iss".into(), iss.clone()));
    }
    if *shared.shape() == Shape::Apple && first_time {
        if let Some(u) = apple::user_field(&scope, user) {
            params.push(("user".into(), u));
        }
    }
    deliver(&redirect_uri, form_post, &params)
}

/// How the fake's page names a person: `name`, else given and family name
/// (Apple's people), else the id.
fn display_name(user: &SimUser) -> String {
    let text = |k: &str| user.claims.get(k).and_then(Value::as_str).unwrap_or("");
    if !text("name").is_empty() {
        return text("name").to_owned();
    }
    let parts: Vec<&str> = [text("given_name"), text("family_name")]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
    if parts.is_empty() {
        user.id.clone()
    } else {
        parts.join(" ")
    }
}

fn token_error(shared: &Shared, status: u16, code: &str, detail: &str) -> HttpResponse {
    let body = match shared.shape() {
        Shape::Generic => json!({"error": code, "error_description": detail}),
        Shape::Microsoft => microsoft::error_body(code, detail, shared.now()),
        Shape::Apple => apple::error_body(code),
    };
    json_response(status, body)
}

/// The client authenticated by the request, or why not.
fn authenticate<'a>(
    shared: &'a Shared,
    req: &HttpRequest,
    form: &BTreeMap<String, String>,
) -> Result<&'a SimClient, &'static str> {
    let basic = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let (id, secret) = match (&basic, form.get("client_id"), form.get("client_secret")) {
        (Some(pair), _, None) => {
            let (id, secret) = pair.split_once(':').ok_or("malformed Basic")?;
            let dec = |s: &str| {
                url::form_urlencoded::parse(format!("x={s}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default()
            };
            (dec(id), dec(secret))
        }
        (None, Some(id), Some(secret)) => (id.clone(), secret.clone()),
        _ => return Err("no client authentication"),
    };
    shared.with(|s| s.secrets_seen.push(secret.clone()));
    let client = shared.client(&id).ok_or("unknown client")?;
    let ok = match &client.secret {
        ClientSecret::Plain(expected) => *expected == secret,
        ClientSecret::AppleJwt { .. } => {
            apple::check_client_secret(&client.secret, &client.id, &secret, shared.now()).is_ok()
        }
    };
    if ok {
        Ok(client)
    } else {
        Err("wrong client secret")
    }
}

async fn token(
    shared: web::Data<Shared>,
    req: HttpRequest,
    form: web::Form<BTreeMap<String, String>>,
) -> HttpResponse {
    let form = form.into_inner();
    let delay = shared.with(|s| {
        s.token_requests += 1;
        s.token_delay
    });
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let client = match authenticate(&shared, &req, &form) {
        Ok(c) => c,
        Err(why) => return token_error(&shared, 401, "invalid_client", why),
    };
    let now = shared.now();
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let grant = match get("grant_type") {
        "authorization_code" => {
            let code = get("code").to_owned();
            let found = shared.with(|s| {
                let g = s.codes.get_mut(&code)?;
                let was_used = g.used;
                g.used = true;
                Some((g.clone(), was_used))
            });
            let Some((grant, was_used)) = found else {
                return token_error(&shared, 400, "invalid_grant", "unknown code");
            };
            let lifetime = if *shared.shape() == Shape::Apple {
                300
            } else {
                600
            };
            if was_used {
                return token_error(
                    &shared,
                    400,
                    "invalid_grant",
                    "the code was already redeemed",
                );
            }
            if now - grant.issued_at > lifetime {
                return token_error(&shared, 400, "invalid_grant", "the code has expired");
            }
            if grant.client_id != client.id || grant.redirect_uri != get("redirect_uri") {
                return token_error(
                    &shared,
                    400,
                    "invalid_grant",
                    "the code was issued to another client or redirect_uri",
                );
            }
            if let (Some(challenge), false) = (&grant.challenge, *shared.shape() == Shape::Apple) {
                if keys::s256(get("code_verifier")) != *challenge {
                    return token_error(&shared, 400, "invalid_grant", "PKCE verification failed");
                }
            }
            grant
        }
        "refresh_token" => {
            let found = shared.with(|s| s.refresh.get(get("refresh_token")).cloned());
            let Some(mut grant) = found.filter(|g| g.client_id == client.id) else {
                return token_error(&shared, 400, "invalid_grant", "unknown refresh token");
            };
            if shared.with(|s| s.disabled.contains(&grant.user_id)) {
                return token_error(&shared, 400, "invalid_grant", "the user is disabled");
            }
            grant.nonce = None;
            grant
        }
        _ => return token_error(&shared, 400, "unsupported_grant_type", ""),
    };
    let Some(user) = shared.user(&grant.user_id) else {
        return token_error(&shared, 400, "invalid_grant", "unknown user");
    };
    let access_token = random(24);
    let mut claims = Map::new();
    for (k, v) in &user.claims {
        claims.insert(k.clone(), v.clone());
    }
    claims.insert("sub".into(), Value::from(user.id.clone()));
    claims.insert("iss".into(), Value::from(shared.base.clone()));
    match shared.shape() {
        Shape::Generic => {
            claims.insert("at_hash".into(), Value::from(keys::at_hash(&access_token)));
        }
        Shape::Microsoft => microsoft::shape_claims(&mut claims, &shared.base, &client.id, user),
        Shape::Apple => apple::shape_claims(&mut claims),
    }
    claims.insert("aud".into(), Value::from(client.id.clone()));
    claims.insert("iat".into(), Value::from(now));
    claims.insert("exp".into(), Value::from(now + 3600));
    claims.insert("auth_time".into(), Value::from(grant.issued_at));
    if let Some(nonce) = &grant.nonce {
        claims.insert("nonce".into(), Value::from(nonce.clone()));
    }
    let (key, extra, tamper) = shared.with(|s| {
        (
            s.keys.last().cloned(),
            s.next_claims.take(),
            s.tamper_next.take(),
        )
    });
    for (k, v) in extra.unwrap_or_default() {
        claims.insert(k, v);
    }
    let Some(key) = key else {
        return token_error(&shared, 500, "server_error", "no signing key");
    };
    let claims = Value::Object(claims);
    let signed = match tamper {
        Some(Forgery::AlgNone) => Ok(keys::unsigned(&key, &claims)),
        Some(Forgery::Hs256WithPublicKey) => key.sign_hs256_with_public_key(&claims),
        _ => key.sign(&claims),
    };
    let mut id_token = match signed {
        Ok(t) => t,
        Err(e) => return token_error(&shared, 500, "server_error", &e),
    };
    if tamper == Some(Forgery::BadSignature) {
        // Change one character inside the signature (not the last one, whose
        // low bits are padding: the token must still decode, and fail only
        // its signature check).
        let at = id_token.rfind('.').map_or(0, |dot| dot + 10);
        if let Some(c) = id_token.get(at..at + 1).map(str::to_owned) {
            let other = if c == "A" { "B" } else { "A" };
            id_token.replace_range(at..at + 1, other);
        }
    }
    let refresh = match (get("grant_type"), shared.shape()) {
        ("refresh_token", _) => None,
        (_, Shape::Apple) => Some(random(24)),
        _ if grant.scope.split(' ').any(|s| s == "offline_access") => Some(random(24)),
        _ => None,
    };
    shared.with(|s| {
        s.access.insert(access_token.clone(), user.id.clone());
        if let Some(r) = &refresh {
            s.refresh.insert(r.clone(), grant.clone());
        }
    });
    let mut body = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": 3600,
        "id_token": id_token,
    });
    if let (Some(r), Value::Object(m)) = (refresh, &mut body) {
        m.insert("refresh_token".into(), Value::from(r));
    }
    json_response(200, body)
}

async fn userinfo(shared: web::Data<Shared>, req: HttpRequest) -> HttpResponse {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let user = shared.with(|s| s.access.get(token).cloned());
    let Some(user) = user.and_then(|u| shared.user(&u).cloned()) else {
        return HttpResponse::Unauthorized()
            .insert_header((header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\""))
            .finish();
    };
    let mut claims = user.claims.clone();
    claims.insert("sub".into(), Value::from(user.id.clone()));
    json_response(200, Value::Object(claims))
}
