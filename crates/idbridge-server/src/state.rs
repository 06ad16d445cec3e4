//! Everything a request handler needs, built once at start-up: settings, store,
//! signing keys, clients, connectors, and the clock.

use crate::clients::Clients;
use crate::clock::Clock;
use crate::config::{Config, Settings};
use crate::keys::Keys;
use idbridge_core::{BuildContext, ConfigError, Connector, Registry, Shared};
use idbridge_store::Store;
use idbridge_tokens::{Algorithm, MasterKey};
use std::collections::BTreeMap;
use std::sync::Arc;

pub use crate::connector_config::FirstLoginPolicy;

/// A built connector with the broker's settings for it.
pub struct ConnectorEntry {
    /// Held behind its set-up ([`crate::connector_setup::Gated`]).
    pub connector: Arc<dyn Connector>,
    pub first_login: FirstLoginPolicy,
    /// `recheck_on_refresh`: re-check the person upstream when an app refreshes.
    pub recheck_on_refresh: bool,
    /// `trust_email`: a new identity's verified address may link it to an account.
    pub trust_email: bool,
    /// Whether its set-up ([`Connector::prepare`]) has succeeded.
    pub setup: Arc<crate::connector_setup::SetupStatus>,
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
    /// Initial access tokens of dynamic client registration (RFC 7591); none: off.
    pub registration: crate::admin::AdminTokens,
    /// The metrics listener (`[telemetry]`).
    pub telemetry: crate::telemetry::Telemetry,
}

/// The ids of the connectors that verify phone numbers themselves.
pub fn phone_connectors(
    connectors: &[(String, ConnectorEntry)],
) -> std::collections::BTreeSet<String> {
    connectors
        .iter()
        .filter(|(_, e)| e.connector.vouches_for_phone())
        .map(|(id, _)| id.clone())
        .collect()
}

impl AppState {
    /// The rules a client registered now is held to (the admin API, RFC 7591).
    pub fn client_rules(&self) -> crate::config::ClientRules {
        crate::config::ClientRules::from_settings(&self.settings)
            .with_phone_connectors(phone_connectors(&self.connectors))
    }

    pub fn connector(&self, id: &str) -> Option<&ConnectorEntry> {
        self.connectors
            .iter()
            .find(|(cid, _)| cid == id)
            .map(|(_, c)| c)
    }

    /// The `connector` label of a metric: a configured connector's id, else
    /// `unknown` (a callback to a connector that is not configured must not
    /// mint a series).
    pub fn connector_label<'a>(&self, id: &'a str) -> &'a str {
        if self.connector(id).is_some() {
            id
        } else {
            "unknown"
        }
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

/// Build every configured connector (read by the config's validation pass)
/// through the registry; all errors at once.
pub fn build_connectors(
    config: &Config,
    registry: &Registry,
    dev_mode: bool,
    shared: &Shared,
) -> Result<Vec<(String, ConnectorEntry)>, Vec<ConfigError>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let issuer = &config.settings.issuer;
    for entry in &config.connectors {
        let cs = &entry.settings;
        let ctx = BuildContext {
            shared: shared.clone(),
            ..BuildContext::new(
                issuer.clone(),
                format!("{issuer}/callback/{}", cs.id),
                dev_mode,
            )
        };
        match registry.build(cs, &ctx) {
            Ok(connector) => {
                let mut errs = entry.check_built(connector.as_ref());
                if !errs.is_empty() {
                    errors.append(&mut errs);
                    continue;
                }
                let setup = Arc::new(crate::connector_setup::SetupStatus::default());
                out.push((
                    cs.id.to_string(),
                    ConnectorEntry {
                        connector: Arc::new(crate::connector_setup::Gated::new(
                            connector,
                            setup.clone(),
                        )),
                        first_login: entry.first_login,
                        recheck_on_refresh: entry.recheck_on_refresh,
                        trust_email: entry.trust_email,
                        setup,
                    },
                ))
            }
            Err(mut errs) => errors.append(&mut errs),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

pub type Connectors = BTreeMap<String, Arc<dyn Connector>>;
