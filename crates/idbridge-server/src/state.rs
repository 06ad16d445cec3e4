//! Everything a request handler needs, built once at start-up: settings, store,
//! signing keys, clients, connectors, and the clock.

use crate::clients::Clients;
use crate::clock::Clock;
use crate::config::{connector_settings, Settings};
use crate::keys::Keys;
use idbridge_core::{BuildContext, ConfigError, Connector, Registry, Shared};
use idbridge_store::Store;
use idbridge_tokens::{Algorithm, MasterKey};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What a connector does with a person it has never seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstLoginPolicy {
    /// Create an account.
    Create,
    /// The person must first prove an existing account (another linked sign-in
    /// method, or a one-time code); then this identity is linked to it.
    Bind,
    /// Refuse: only identities already linked may sign in.
    Deny,
}

impl FirstLoginPolicy {
    /// The store's policy for it (`Bind` refuses until the person proves an account).
    pub fn store_policy(self) -> idbridge_store::FirstLogin {
        match self {
            FirstLoginPolicy::Create => idbridge_store::FirstLogin::Create,
            // Binding is an interactive step: without it, nothing is created.
            FirstLoginPolicy::Deny | FirstLoginPolicy::Bind => idbridge_store::FirstLogin::Refuse,
        }
    }
}

pub struct ConnectorEntry {
    pub connector: Arc<dyn Connector>,
    pub first_login: FirstLoginPolicy,
}

pub struct AppState {
    pub settings: Settings,
    pub issuer: String,
    pub store: Store,
    pub keys: Keys,
    pub clients: Clients,
    /// Configured connectors, in config order.
    pub connectors: Vec<(String, ConnectorEntry)>,
    pub master_key: MasterKey,
    pub clock: Arc<Clock>,
    pub default_alg: Algorithm,
    /// Signs access tokens (`signing.access_token_algorithm`, else `default_alg`).
    pub access_token_alg: Algorithm,
    pub dev_mode: bool,
    /// Issuer is https: cookies get `Secure`.
    pub secure_cookies: bool,
    /// For the demo app and other outbound calls.
    pub http: reqwest::Client,
    pub failures: crate::limits::FailureLimiter,
    /// Who the client is behind a reverse proxy (`server.trusted_proxies`).
    pub proxies: crate::client_ip::TrustedProxies,
    /// Each app's share of the broker's local work (`server.in_progress_per_client`).
    pub fair: crate::fair::FairShare,
    pub upstream: crate::health::status::UpstreamHealth,
    /// What `/readyz` has already established.
    pub readiness: crate::health::status::Readiness,
    /// One-time codes (binding, phone numbers) and their senders.
    pub verifier: crate::one_time_codes::sender::Verifier,
    /// Admin API tokens (hashes); none configured = the admin API is off.
    pub admin: crate::admin::AdminTokens,
}

impl AppState {
    pub fn connector(&self, id: &str) -> Option<&ConnectorEntry> {
        self.connectors
            .iter()
            .find(|(cid, _)| cid == id)
            .map(|(_, c)| c)
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{}", self.issuer, path)
    }
}

/// Build every configured connector through the registry; all errors at once.
pub fn build_connectors(
    settings: &Settings,
    registry: &Registry,
    dev_mode: bool,
    shared: &Shared,
) -> Result<Vec<(String, ConnectorEntry)>, Vec<ConfigError>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for raw in &settings.connectors {
        let mut raw = raw.clone();
        let policy = match raw.as_object_mut().and_then(|m| m.remove("first_login")) {
            None => Ok(FirstLoginPolicy::Create),
            Some(v) => match v.as_str() {
                Some("create") => Ok(FirstLoginPolicy::Create),
                Some("bind") => Ok(FirstLoginPolicy::Bind),
                Some("deny") => Ok(FirstLoginPolicy::Deny),
                _ => Err(()),
            },
        };
        let cs = match connector_settings(&raw) {
            Ok(cs) => cs,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let Ok(first_login) = policy else {
            errors.push(ConfigError::new(
                format!("connectors[{}].first_login", cs.id),
                "use \"create\", \"bind\" or \"deny\"",
            ));
            continue;
        };
        let ctx = BuildContext {
            shared: shared.clone(),
            ..BuildContext::new(
                settings.issuer.clone(),
                format!("{}/callback/{}", settings.issuer, cs.id),
                dev_mode,
            )
        };
        match registry.build(&cs, &ctx) {
            Ok(connector) => out.push((
                cs.id.to_string(),
                ConnectorEntry {
                    connector,
                    first_login,
                },
            )),
            Err(mut errs) => errors.append(&mut errs),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// The algorithms keys are kept for: the configured ones, RS256 always first.
pub fn algorithms(settings: &Settings) -> Vec<Algorithm> {
    let mut algs = vec![Algorithm::RS256];
    for a in &settings.signing.algorithms {
        if let Ok(alg) = a.parse::<Algorithm>() {
            if !algs.contains(&alg) {
                algs.push(alg);
            }
        }
    }
    algs
}

pub type Connectors = BTreeMap<String, Arc<dyn Connector>>;
