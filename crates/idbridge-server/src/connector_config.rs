//! One `[[connectors]]` entry, read once: the broker's own keys (`id`, `type`,
//! `name`, `first_login`, `recheck_on_refresh`) typed and checked here, the
//! connector's own keys left for its factory. `serve`, `serve --dev` and
//! `idbridge doctor` all read entries through [`ConnectorConfig::parse`], so each
//! check is written once.

use crate::config::connector_settings;
use idbridge_core::{ConfigError, Connector, ConnectorSettings};

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

/// A `[[connectors]]` entry with the broker's keys typed.
#[derive(Debug, Clone)]
pub struct ConnectorConfig {
    /// What the registry and the connector's factory get (id, type, name and
    /// the connector's own keys).
    pub settings: ConnectorSettings,
    /// `first_login`: `create` (default), `bind` or `deny`.
    pub first_login: FirstLoginPolicy,
    /// `recheck_on_refresh` (default false): when an app refreshes a grant that
    /// began with this connector, the broker first re-checks the person upstream
    /// with their stored upstream tokens ([`Connector::refresh`]); a person the
    /// upstream no longer accepts loses the grant.
    pub recheck_on_refresh: bool,
}

impl ConnectorConfig {
    /// Read one raw entry; every mistake found, each naming its key.
    pub fn parse(raw: &serde_json::Value) -> Result<Self, Vec<ConfigError>> {
        match Self::read(raw) {
            (Some(entry), errors) if errors.is_empty() => Ok(entry),
            (_, errors) => Err(errors),
        }
    }

    /// [`ConnectorConfig::parse`] for `idbridge doctor`, which reports every
    /// problem at once: the entry (with defaults for the broker keys at fault)
    /// as long as it has an id and a type, and the mistakes found.
    pub fn read(raw: &serde_json::Value) -> (Option<Self>, Vec<ConfigError>) {
        let mut raw = raw.clone();
        let map = raw.as_object_mut();
        let (first_login, recheck) = match map {
            Some(m) => (m.remove("first_login"), m.remove("recheck_on_refresh")),
            None => (None, None),
        };
        let settings = match connector_settings(&raw) {
            Ok(settings) => settings,
            Err(e) => return (None, vec![e]),
        };
        let key = |k: &str| format!("connectors[{}].{k}", settings.id);
        let mut errors = Vec::new();
        let first_login = match first_login.as_ref().map(|v| v.as_str()) {
            None => FirstLoginPolicy::Create,
            Some(Some("create")) => FirstLoginPolicy::Create,
            Some(Some("bind")) => FirstLoginPolicy::Bind,
            Some(Some("deny")) => FirstLoginPolicy::Deny,
            Some(_) => {
                errors.push(ConfigError::new(
                    key("first_login"),
                    "use \"create\", \"bind\" or \"deny\"",
                ));
                FirstLoginPolicy::Create
            }
        };
        let recheck_on_refresh = match recheck {
            None => false,
            Some(serde_json::Value::Bool(b)) => b,
            Some(_) => {
                errors.push(ConfigError::new(
                    key("recheck_on_refresh"),
                    "use true or false",
                ));
                false
            }
        };
        let entry = Self {
            settings,
            first_login,
            recheck_on_refresh,
        };
        (Some(entry), errors)
    }

    /// The checks that need the built connector: `recheck_on_refresh` only on a
    /// connector that can re-check a person upstream.
    pub fn check_built(&self, connector: &dyn Connector) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if self.recheck_on_refresh && !connector.supports_refresh() {
            errors.push(ConfigError::new(
                format!("connectors[{}].recheck_on_refresh", self.settings.id),
                format!(
                    "connector type {:?} cannot re-check a person upstream; remove the key",
                    self.settings.kind
                ),
            ));
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn broker_keys_are_typed_and_the_rest_goes_to_the_factory() {
        let c = ConnectorConfig::parse(&json!({
            "id": "wx", "type": "wechat-web", "name": "WeChat",
            "first_login": "bind", "recheck_on_refresh": true, "appid": "wx1"
        }))
        .unwrap();
        assert_eq!(c.first_login, FirstLoginPolicy::Bind);
        assert!(c.recheck_on_refresh);
        assert_eq!(c.settings.options, json!({ "appid": "wx1" }));
        let c = ConnectorConfig::parse(&json!({ "id": "wx", "type": "wechat-web" })).unwrap();
        assert_eq!(c.first_login, FirstLoginPolicy::Create);
        assert!(!c.recheck_on_refresh);
    }

    #[test]
    fn wrong_values_name_their_keys_all_at_once() {
        let errors = ConnectorConfig::parse(&json!({
            "id": "wx", "type": "wechat-web",
            "first_login": "sometimes", "recheck_on_refresh": "yes"
        }))
        .unwrap_err();
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "connectors[wx].first_login",
                "connectors[wx].recheck_on_refresh"
            ]
        );
    }
}
