//! The idbridge server: an OpenID Connect provider in front of pluggable upstream
//! connectors. `build_state` wires settings, store, keys, clients and connectors;
//! `routes` mounts every endpoint; `run` serves them and runs the background jobs
//! (key rotation, expiry collection).

pub mod access_token;
pub mod account;
pub mod admin;
pub mod audit;
pub mod bind;
pub mod body;
pub mod client_ip;
pub mod clients;
pub mod clock;
pub mod config;
pub mod connector_config;
pub mod connector_setup;
pub mod consent;
pub mod contact;
pub mod cors;
pub mod csrf;
pub mod demo;
pub mod discovery;
pub mod email_link;
pub mod error;
pub mod exchange;
pub mod fair;
pub mod health;
pub mod http;
pub mod i18n;
pub mod introspection;
pub mod issue;
pub mod keys;
pub mod limits;
pub mod login;
pub mod logout;
pub mod one_time_codes;
pub mod pages;
pub mod par;
pub mod params;
pub mod phone;
pub mod recheck;
pub mod registration;
pub mod revocation;
pub mod screen;
pub mod sessions;
pub mod shared_cache;
pub mod state;
pub mod telemetry;
pub mod token;
pub mod upstream;
pub mod upstream_errors;
pub mod userinfo;

use actix_web::middleware::DefaultHeaders;
use actix_web::{web, App, HttpServer};
use idbridge_core::{ConfigError, Registry};
use idbridge_store::{Store, StoreOptions};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

pub use clock::Clock;
pub use config::Settings;
pub use state::AppState;

/// `require_phone` clients without a code sender, now that the connectors are
/// built: each connector such a client may use must verify phone numbers itself
/// (the config file's validation pass could not know).
fn check_phone_clients(
    settings: &Settings,
    connectors: &[(String, state::ConnectorEntry)],
) -> Result<(), Vec<idbridge_core::ConfigError>> {
    let rules = config::ClientRules::from_settings(settings)
        .with_phone_connectors(state::phone_connectors(connectors));
    let errors: Vec<_> = settings
        .clients
        .iter()
        .filter_map(|c| {
            rules.phone_problem(c).map(|p| {
                idbridge_core::ConfigError::new(format!("clients[{}].{}", c.id, p.field), p.message)
            })
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("configuration:\n{}", .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Config(Vec<ConfigError>),
    #[error("storage ({url}): {source}")]
    Store {
        url: String,
        source: idbridge_store::StoreError,
    },
    #[error("signing keys: {0}")]
    Keys(#[from] keys::KeyError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub struct Options {
    pub dev_mode: bool,
    /// Secret of the built-in demo app (dev mode only).
    pub demo_secret: Option<String>,
    pub clock: Arc<Clock>,
}

/// Check and type the settings ([`config::Config::new`], with the rules of
/// `--dev` or of a run without it), then connect, migrate, build connectors and
/// load (or create) signing keys.
pub async fn build_state(
    settings: Settings,
    registry: &Registry,
    options: &Options,
) -> Result<web::Data<AppState>, StartError> {
    let config = config::Config::new(settings, options.dev_mode).map_err(StartError::Config)?;
    if config.telemetry.is_some() {
        // Before the first calls (migrations, connectors' discovery), so they count.
        telemetry::install();
    }
    let master_key = config.master_key.clone();
    let store_err = |source| StartError::Store {
        url: redact_url(&config.settings.storage.url),
        source,
    };
    let store = Store::connect(
        &config.settings.storage.url,
        StoreOptions {
            max_connections: config.settings.storage.max_connections,
            connect_timeout: Duration::from_secs(config.settings.storage.connect_timeout_secs),
            query_timeout: Duration::from_secs(config.settings.storage.query_timeout_secs),
        },
    )
    .await
    .map_err(store_err)?;
    // The store logs each migration it applies.
    store.migrate().await.map_err(store_err)?;
    let shared = idbridge_core::Shared(std::sync::Arc::new(shared_cache::StoreCache::new(
        store.clone(),
        master_key.clone(),
    )));
    let connectors = state::build_connectors(&config, registry, options.dev_mode, &shared)
        .map_err(StartError::Config)?;
    check_phone_clients(&config.settings, &connectors).map_err(StartError::Config)?;
    let setups: Vec<_> = connectors
        .iter()
        .map(|(id, e)| (id.clone(), e.connector.clone(), e.setup.clone()))
        .collect();
    let not_ready =
        connector_setup::first_round(&setups, options.clock.now(), connector_setup::FIRST_ROUND)
            .await;
    if !not_ready.is_empty() {
        tracing::warn!(connectors = ?not_ready, "some connectors are not ready; the broker starts without them and keeps retrying");
    }
    let config::Config {
        mut settings,
        sender,
        algorithms,
        proxies,
        telemetry,
        ..
    } = config;
    let keys = keys::Keys::new(algorithms.keys, keys::policy(&settings))?;
    keys.sync(&store, &master_key, options.clock.now()).await?;
    let mut client_settings = settings.clients.clone();
    if let Some(secret) = &options.demo_secret {
        // The demo app, and the same app registered as needing a phone number.
        for (id, name, require_phone) in [
            (demo::DEMO_CLIENT_ID, "idbridge demo app", false),
            (
                demo::DEMO_PHONE_CLIENT_ID,
                "idbridge demo app (needs a phone number)",
                true,
            ),
        ] {
            client_settings.push(config::ClientSettings {
                id: id.into(),
                name: Some(name.into()),
                secret: Some(secret.clone()),
                secret_file: None,
                public: false,
                redirect_uris: vec![format!("{}/demo/callback", settings.issuer)],
                post_logout_redirect_uris: vec![format!("{}/demo", settings.issuer)],
                require_pkce: true,
                id_token_signed_response_alg: None,
                connectors: Vec::new(),
                require_phone,
                // The operator's own app: no consent page.
                skip_consent: true,
                refresh_without_offline_access: false,
                id_token_on_refresh: true,
                require_pushed_authorization_requests: false,
                allowed_origins: Vec::new(),
            });
        }
    }
    client_settings.extend(account::client_settings(&settings.issuer));
    let clients = clients::Clients::new(&client_settings, store.clone(), options.clock.clone())
        .map_err(keys::KeyError::Token)?;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| StartError::Io(std::io::Error::other(e)))?;
    let failures = limits::FailureLimiter::new(settings.server.failures_per_minute, store.clone());
    let fair = fair::FairShare::new(settings.server.in_progress_per_client);
    let verifier = one_time_codes::sender::Verifier::new(settings.verification.clone(), sender)
        .map_err(|e| StartError::Io(std::io::Error::other(e)))?;
    // Only hashes of the admin tokens are kept.
    let admin = admin::AdminTokens::new(&settings.admin.tokens).map_err(StartError::Config)?;
    settings.admin.tokens.clear();
    if admin.enabled() {
        tracing::info!(path = admin::http::PREFIX, "admin API enabled");
    }
    let registration =
        admin::AdminTokens::new(&settings.admin.registration_tokens).map_err(StartError::Config)?;
    settings.admin.registration_tokens.clear();
    if registration.enabled() {
        tracing::info!(
            path = registration::PATH,
            "dynamic client registration (RFC 7591) enabled"
        );
    }
    Ok(web::Data::new(AppState {
        issuer: settings.issuer.clone(),
        secure_cookies: settings.issuer.starts_with("https://"),
        dev_mode: options.dev_mode,
        default_alg: algorithms.default,
        access_token_alg: algorithms.access_token,
        settings,
        store,
        keys,
        clients,
        connectors,
        master_key,
        clock: options.clock.clone(),
        http,
        failures,
        fair,
        proxies,
        upstream: health::status::UpstreamHealth::default(),
        readiness: health::status::Readiness::default(),
        verifier,
        admin,
        registration,
        telemetry: telemetry::Telemetry::new(telemetry),
    }))
}

fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("****"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

/// Every endpoint. The demo app is mounted only in dev mode.
pub fn routes(cfg: &mut web::ServiceConfig, dev_mode: bool) {
    cfg.route(
        "/.well-known/openid-configuration",
        web::get().to(discovery::configuration),
    )
    .route("/jwks", web::get().to(discovery::jwks))
    .route("/healthz", web::get().to(health::health))
    .route("/livez", web::get().to(health::live))
    .route("/readyz", web::get().to(health::ready))
    .route("/authorize", web::get().to(login::authorize::authorize))
    .route("/authorize", web::post().to(login::authorize::authorize))
    .route("/return", web::get().to(login::response::return_to_app))
    .route("/login/{request}", web::get().to(login::chooser::login))
    .route("/login/{request}/bind", web::get().to(bind::show))
    .route("/login/{request}/bind/send", web::post().to(bind::send))
    .route(
        "/login/{request}/bind/separate",
        web::post().to(bind::separate),
    )
    .route("/login/{request}/bind/code", web::get().to(bind::code_form))
    .route("/login/{request}/bind/code", web::post().to(bind::check))
    .route(
        "/login/{request}/consent",
        web::get().to(consent::page::show),
    )
    .route(
        "/login/{request}/consent",
        web::post().to(consent::page::decide),
    )
    .route("/login/{request}/phone", web::get().to(phone::show))
    .route("/login/{request}/phone/send", web::post().to(phone::send))
    .route(
        "/login/{request}/phone/code",
        web::get().to(phone::code_form),
    )
    .route("/login/{request}/phone/code", web::post().to(phone::check))
    .route("/account", web::get().to(account::show))
    .route("/account/done", web::get().to(account::done))
    .route("/account/link", web::post().to(account::link))
    .route("/account/unlink", web::post().to(account::unlink))
    .route(
        "/account/consents/revoke",
        web::post().to(consent::apps::revoke),
    )
    .route(
        "/account/confirm/send",
        web::post().to(account::confirm_send),
    )
    .route(
        "/account/confirm/code",
        web::get().to(account::confirm_code_form),
    )
    .route(
        "/account/confirm/code",
        web::post().to(account::confirm_check),
    )
    .route(
        "/account/confirm/signin",
        web::post().to(account::confirm_sign_in),
    )
    .route(
        "/callback/{connector}",
        web::get().to(login::callback::callback),
    )
    .route(
        "/callback/{connector}",
        web::post().to(login::callback::callback),
    )
    .route("/token", web::post().to(token::token))
    .route("/par", web::post().to(par::push))
    .route("/userinfo", web::get().to(userinfo::userinfo))
    .route("/userinfo", web::post().to(userinfo::userinfo))
    .route("/revoke", web::post().to(revocation::revoke))
    .route("/introspect", web::post().to(introspection::introspect))
    .route("/logout", web::get().to(logout::logout))
    .route("/logout", web::post().to(logout::logout))
    .route("/assets/idbridge.css", web::get().to(pages::stylesheet));
    if dev_mode {
        cfg.route("/demo", web::get().to(demo::home))
            .route("/demo/login", web::get().to(demo::login))
            .route("/demo/callback", web::get().to(demo::callback))
            .route("/dev/outbox", web::get().to(demo::outbox))
            .route("/dev/clock", web::post().to(demo::advance_clock));
    }
}

/// Serve on `listener` until stopped; runs key rotation and expiry collection in
/// the background. With `[telemetry] enabled`, also listens on `telemetry.bind`
/// (the same server, so it stops with it) and answers only `/metrics` there.
pub fn run(
    state: web::Data<AppState>,
    demo_secret: Option<String>,
    listener: TcpListener,
) -> std::io::Result<actix_web::dev::Server> {
    let metrics_listener = state.telemetry.listen()?;
    let metrics_addr = state.telemetry.local_addr();
    spawn_background(state.clone());
    let workers = state.settings.server.workers;
    let dev_mode = state.dev_mode;
    let admin_api = state.admin.enabled();
    let registration = state.registration.enabled();
    let demo = web::Data::new(demo::DemoClient {
        secret: demo_secret.unwrap_or_default(),
    });
    // Bounds how long a client may take to send a request's head (actix answers
    // 408 and closes); the body gets the same again in `body::read`.
    let read_timeout = Duration::from_secs(state.settings.server.request_read_timeout_secs);
    let state_shutdown_timeout = state.settings.server.shutdown_timeout_secs;
    let mut server = HttpServer::new(move || {
        let cors_state = state.clone();
        App::new()
            .app_data(state.clone())
            .app_data(demo.clone())
            .app_data(web::PayloadConfig::new(body::LIMIT))
            // Both inside DefaultHeaders, so their refusals carry the security headers too.
            .wrap(actix_web::middleware::from_fn(screen::guard))
            .wrap(actix_web::middleware::from_fn(move |req, next| {
                body::read(read_timeout, req, next)
            }))
            // Outside both, so their refusals carry the CORS headers too.
            .wrap(actix_web::middleware::from_fn(move |req, next| {
                cors::layer(cors_state.clone(), req, next)
            }))
            .wrap(
                DefaultHeaders::new()
                    .add(("X-Content-Type-Options", "nosniff"))
                    .add(("X-Frame-Options", "DENY"))
                    .add(("Referrer-Policy", "no-referrer"))
                    .add((
                        "Content-Security-Policy",
                        "default-src 'none'; frame-ancestors 'none'",
                    )),
            )
            // Request metrics by route template, then `/metrics` only on the
            // telemetry listener: outermost, so they see every answer (crate::telemetry).
            .wrap(actix_web::middleware::from_fn(telemetry::http))
            // The request's span (off unless tracing is configured) around all of it.
            .wrap(actix_web::middleware::from_fn(telemetry::spans::request))
            .wrap(actix_web::middleware::from_fn(move |req, next| {
                telemetry::split(metrics_addr, req, next)
            }))
            .configure(|cfg| routes(cfg, dev_mode))
            .configure(|cfg| admin::http::routes(cfg, admin_api))
            .configure(|cfg| registration::routes(cfg, registration))
    })
    .client_request_timeout(read_timeout)
    // Requests in flight when the server stops get this long to finish.
    .shutdown_timeout(state_shutdown_timeout)
    // actix would stop at once on SIGINT; `stop_on_signals` stops gracefully on
    // both SIGTERM and SIGINT, and says so in the log.
    .disable_signals()
    .listen(listener)?;
    if let Some(metrics) = metrics_listener {
        server = server.listen(metrics)?;
    }
    if workers > 0 {
        server = server.workers(workers);
    }
    Ok(server.run())
}

/// Stops `server` gracefully on the first SIGTERM or SIGINT: it stops accepting
/// at once (new connections are refused), lets requests in flight finish within
/// `server.shutdown_timeout_secs`, then closes whatever is left. Logs one line
/// when shutdown starts; the caller logs when the server has stopped.
pub fn stop_on_signals(server: actix_web::dev::ServerHandle, timeout_secs: u64) {
    actix_web::rt::spawn(async move {
        let Some(signal) = shutdown_signal().await else {
            return;
        };
        tracing::info!(
            signal,
            timeout_secs,
            "shutdown started: no new connections; finishing requests in flight"
        );
        server.stop(true).await;
    });
}

/// The name of the first SIGTERM or SIGINT received; `None` when the handlers
/// cannot be installed (then the process keeps the default behaviour: it dies).
#[cfg(unix)]
async fn shutdown_signal() -> Option<&'static str> {
    use actix_web::rt::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot handle SIGTERM; it will end the process at once");
            return None;
        }
    };
    let mut int = match signal(SignalKind::interrupt()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot handle SIGINT; it will end the process at once");
            return None;
        }
    };
    tokio::select! {
        _ = term.recv() => Some("SIGTERM"),
        _ = int.recv() => Some("SIGINT"),
    }
}

#[cfg(not(unix))]
async fn shutdown_signal() -> Option<&'static str> {
    actix_web::rt::signal::ctrl_c()
        .await
        .ok()
        .map(|()| "ctrl-c")
}

fn spawn_background(state: web::Data<AppState>) {
    for (id, entry) in &state.connectors {
        if !entry.setup.is_ready() {
            let clock = state.clock.clone();
            actix_web::rt::spawn(connector_setup::retry_until_ready(
                id.clone(),
                entry.connector.clone(),
                entry.setup.clone(),
                move || clock.now(),
            ));
        }
    }
    let keys_state = state.clone();
    actix_web::rt::spawn(async move {
        let mut tick = actix_web::rt::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            let s = &keys_state;
            if let Err(e) = s.keys.sync(&s.store, &s.master_key, s.now()).await {
                tracing::error!(stage = "keys", error = %e, "signing key sync failed; keeping the current keys");
            }
        }
    });
    actix_web::rt::spawn(async move {
        let every = state.settings.storage.gc_interval_secs.max(10);
        let mut tick = actix_web::rt::time::interval(Duration::from_secs(every));
        loop {
            tick.tick().await;
            let retention = state.settings.storage.audit_retention_days * 86400;
            match state.store.collect_garbage(state.now(), retention).await {
                Ok(report) => tracing::debug!(?report, "expired rows collected"),
                Err(e) => {
                    tracing::warn!(stage = "gc", error = %e, "expiry collection failed; will retry")
                }
            }
        }
    });
}
