//! A small generic OpenID provider, and the engine of the [`crate::microsoft`]
//! and [`crate::apple`] shapes.
//!
//! ```no_run
//! # async fn demo() -> Result<(), String> {
//! use provider_sim::oidc::{Sim, SimConfig};
//! let sim = Sim::start(SimConfig::dev_default()).await?;
//! let issuer = sim.issuer(); // http://127.0.0.1:PORT
//! # let _ = issuer; sim.stop().await; Ok(()) }
//! ```
//!
//! Generic endpoints: `/.well-known/openid-configuration`, `/jwks`,
//! `/authorize`, `/token` (`client_secret_basic` or `client_secret_post`),
//! `/userinfo`. The authorize endpoint checks `client_id` and `redirect_uri`
//! (an error page, never a redirect, when they are wrong), then decides:
//! `sim_user=ID` approves as that user, `sim_deny=1` refuses
//! (`error=access_denied`), and without either it shows a page with one link
//! per user and a "Deny" link (what a person clicks in dev mode). The
//! callback is a 302 with `code`, `state` and `iss` (RFC 9207), or with
//! `response_mode=form_post` a page that POSTs them. A refresh token is
//! issued for the `offline_access` scope (or Google's `access_type=offline`). Codes are single-use
//! (a second use is `invalid_grant`) and checked against the PKCE verifier.
//!
//! Scripting ([`Sim`]): [`Sim::next_id_token_claims`] merges claims into the
//! next ID token (still correctly signed: an issuer or audience the test
//! wants), [`Sim::tamper_next_id_token`] breaks the next one's signature,
//! [`Sim::rotate_keys`], [`Sim::disable_user`], [`Sim::advance`] (the fake's
//! clock). [`follow`] plays the browser from an authorization URL to the
//! callback.

mod browser;
mod engine;
mod keys;

pub use browser::{follow, Callback};
pub use engine::Forgery;
pub use keys::{p256_pem, Alg};

use serde_json::{Map, Value};
use std::sync::Arc;

/// What the fake answers as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    Generic,
    Microsoft,
    Apple,
}

/// How a client authenticates at the token endpoint.
#[derive(Debug, Clone)]
pub enum ClientSecret {
    /// A shared secret (Basic or in the form).
    Plain(String),
    /// Apple: an ES256 JWT (`iss` team id, `sub` client id, `kid` key id,
    /// `aud` `https://appleid.apple.com`) checked with this public key.
    AppleJwt {
        team_id: String,
        key_id: String,
        x: String,
        y: String,
    },
}

#[derive(Debug, Clone)]
pub struct SimClient {
    pub id: String,
    pub secret: ClientSecret,
    pub redirect_uris: Vec<String>,
}

/// A person at the fake: `id` picks them (`sim_user=ID`), `claims` go into
/// their ID tokens and userinfo (the shape adds `iss`, `sub`, `aud`, times).
#[derive(Debug, Clone)]
pub struct SimUser {
    pub id: String,
    pub claims: Map<String, Value>,
}

impl SimUser {
    pub fn new(id: impl Into<String>, claims: Value) -> Self {
        Self {
            id: id.into(),
            claims: match claims {
                Value::Object(m) => m,
                _ => Map::new(),
            },
        }
    }
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub shape: Shape,
    pub alg: Alg,
    pub clients: Vec<SimClient>,
    pub users: Vec<SimUser>,
    /// A fixed port (dev mode); 0: any free one.
    pub port: u16,
}

/// The dev-mode client of [`SimConfig::dev_default`].
pub const DEV_CLIENT_ID: &str = "idbridge-dev";
pub const DEV_CLIENT_SECRET: &str = "dev-openid-provider-secret-0123456789";

impl SimConfig {
    /// A generic provider with one client ([`DEV_CLIENT_ID`], any redirect URI
    /// under `http://127.0.0.1` or `http://localhost`) and two users, `ada`
    /// and `lin`.
    pub fn dev_default() -> Self {
        Self {
            shape: Shape::Generic,
            alg: Alg::ES256,
            clients: vec![SimClient {
                id: DEV_CLIENT_ID.into(),
                secret: ClientSecret::Plain(DEV_CLIENT_SECRET.into()),
                redirect_uris: vec!["http://127.0.0.1:*".into(), "http://localhost:*".into()],
            }],
            users: vec![
                SimUser::new(
                    "ada",
                    serde_json::json!({"name": "Ada Lovelace", "given_name": "Ada", "family_name": "Lovelace", "email": "ada@dev.example", "email_verified": true}),
                ),
                SimUser::new(
                    "lin",
                    serde_json::json!({"name": "林小红", "email": "lin@dev.example", "email_verified": false}),
                ),
            ],
            port: 0,
        }
    }

    pub fn generic(clients: Vec<SimClient>, users: Vec<SimUser>) -> Self {
        Self {
            shape: Shape::Generic,
            alg: Alg::RS256,
            clients,
            users,
            port: 0,
        }
    }
}

/// A running fake; stopped when dropped.
pub struct Sim {
    pub(crate) inner: engine::Running,
}

impl Sim {
    pub async fn start(config: SimConfig) -> Result<Sim, String> {
        Ok(Sim {
            inner: engine::Running::start(config).await?,
        })
    }

    /// Serve on `listener` (`config.port` is not used).
    pub async fn start_on(
        config: SimConfig,
        listener: std::net::TcpListener,
    ) -> Result<Sim, String> {
        Ok(Sim {
            inner: engine::Running::start_on(config, listener, None).await?,
        })
    }

    /// Serve on `listener` under another host name than the listener's
    /// address: `http://{host}:PORT` is its base URL and issuer (e.g.
    /// `localhost` for a broker on `127.0.0.1`: another site for the browser,
    /// so its callbacks are cross-site as a real provider's are).
    pub async fn start_on_host(
        config: SimConfig,
        listener: std::net::TcpListener,
        host: &str,
    ) -> Result<Sim, String> {
        Ok(Sim {
            inner: engine::Running::start_on(config, listener, Some(host)).await?,
        })
    }

    /// `http://127.0.0.1:PORT` (or the host it was started under).
    pub fn base_url(&self) -> String {
        self.inner.base_url()
    }

    /// The generic and Apple shapes' issuer (the base URL).
    pub fn issuer(&self) -> String {
        self.base_url()
    }

    /// Merge `claims` into the next ID token issued (signed correctly).
    pub fn next_id_token_claims(&self, claims: Value) {
        self.inner.with(|s| {
            s.next_claims = match claims {
                Value::Object(m) => Some(m),
                _ => None,
            }
        });
    }

    /// Break the signature of the next ID token issued.
    pub fn tamper_next_id_token(&self) {
        self.forge_next_id_token(Forgery::BadSignature);
    }

    /// Forge the next ID token issued.
    pub fn forge_next_id_token(&self, forgery: Forgery) {
        self.inner.with(|s| s.tamper_next = Some(forgery));
    }

    /// The token endpoint waits `delay` before each answer from now on
    /// (`None`: answers at once).
    pub fn set_token_delay(&self, delay: Option<std::time::Duration>) {
        self.inner.with(|s| s.token_delay = delay);
    }

    /// A new signing key signs from now on; the old one stays in the JWKS
    /// unless `drop_old`.
    pub fn rotate_keys(&self, drop_old: bool) -> Result<String, String> {
        let alg = self.inner.shared.alg;
        let key = keys::SigningKey::generate(alg)?;
        let kid = key.kid.clone();
        self.inner.with(|s| {
            if drop_old {
                s.keys.clear();
            }
            s.keys.push(Arc::new(key));
        });
        Ok(kid)
    }

    /// The user's refresh tokens stop working (`invalid_grant`).
    pub fn disable_user(&self, id: &str) {
        self.inner.with(|s| {
            s.disabled.insert(id.to_owned());
        });
    }

    /// Move the fake's clock.
    pub fn advance(&self, secs: i64) {
        self.inner.with(|s| s.offset += secs);
    }

    /// The fake's clock (unix seconds).
    pub fn now(&self) -> i64 {
        self.inner.with(|s| s.now())
    }

    /// Read "now" from `clock` (unix seconds) instead of the wall clock, e.g.
    /// the broker's in dev mode, so that a clock moved there moves here too
    /// (Apple checks the `iat` and `exp` of client secrets made with it).
    pub fn follow_clock(&self, clock: impl Fn() -> i64 + Send + Sync + 'static) {
        self.inner.with(|s| s.clock = Some(Arc::new(clock)));
    }

    /// The client secrets sent to the token endpoint so far, oldest first.
    pub fn client_secrets_seen(&self) -> Vec<String> {
        self.inner.with(|s| s.secrets_seen.clone())
    }

    /// Every request so far: its path and its `traceparent` header (what the
    /// broker passed on of its trace), oldest first.
    pub fn requests_seen(&self) -> Vec<(String, Option<String>)> {
        self.inner.with(|s| s.requests_seen.clone())
    }

    /// How many token requests were answered (any outcome).
    pub fn token_requests(&self) -> usize {
        self.inner.with(|s| s.token_requests)
    }

    pub async fn stop(self) {
        self.inner.stop().await;
    }
}

/// A random identifier (trace ids, codes).
pub(crate) fn random_id() -> String {
    keys::random(12)
}
