//! One `[[connectors]]` entry, read once: the broker's own keys (`id`, `type`,
//! `name`, `first_login`, `recheck_on_refresh`, `trust_email`) typed and checked here, the
//! connector's own keys left for its factory. The configuration's one validation
//! pass (`config::Checked::new`, which `serve`, `serve --dev` and
//! `idbridge doctor` all go through) reads every entry with
//! [`ConnectorConfig::read`], so each check is written once; what is checked
//! across entries (an id used twice) is checked there.

use idbridge_core::{ConfigError, Connector, ConnectorId, ConnectorSettings};

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
    /// `trust_email` (default false): a new identity from this connector whose
    /// address the upstream verified (`email_verified = true`) is linked to the
    /// account that holds that address, and such an identity's verified
    /// address becomes a link target itself (docs/accounts.md, "Linking by
    /// email"). Refused on a connector that cannot vouch for an address
    /// ([`Connector::vouches_for_email`]).
    pub trust_email: bool,
}

impl ConnectorConfig {
    /// Read entry `index` (its place in `[[connectors]]`, for the keys of an
    /// entry without a usable id); every mistake found, each naming its key.
    pub fn parse(index: usize, raw: &serde_json::Value) -> Result<Self, Vec<ConfigError>> {
        match Self::read(index, raw) {
            (Some(entry), errors) if errors.is_empty() => Ok(entry),
            (_, errors) => Err(errors),
        }
    }

    /// [`ConnectorConfig::parse`] reporting every problem at once: the entry
    /// (with defaults for the broker keys at fault) as long as it has a valid id
    /// and a type, and the mistakes found.
    pub fn read(index: usize, raw: &serde_json::Value) -> (Option<Self>, Vec<ConfigError>) {
        let mut errors = Vec::new();
        let mut map = raw.as_object().cloned().unwrap_or_default();
        let id_raw = map.remove("id").and_then(|v| v.as_str().map(str::to_owned));
        let id = match id_raw.as_deref().map(ConnectorId::parse) {
            None => {
                errors.push(ConfigError::new(
                    format!("connectors[{index}].id"),
                    "missing",
                ));
                None
            }
            Some(Err(msg)) => {
                errors.push(ConfigError::new(format!("connectors[{index}].id"), msg));
                None
            }
            Some(Ok(id)) => Some(id),
        };
        let kind = map
            .remove("type")
            .and_then(|v| v.as_str().map(str::to_owned));
        if kind.is_none() {
            errors.push(ConfigError::new(
                format!("connectors[{}].type", id_raw.as_deref().unwrap_or("?")),
                "missing",
            ));
        }
        let (Some(id), Some(kind)) = (id, kind) else {
            return (None, errors);
        };
        let key = |k: &str| format!("connectors[{id}].{k}");
        let first_login = match map.remove("first_login").as_ref().map(|v| v.as_str()) {
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
        let recheck_on_refresh = match map.remove("recheck_on_refresh") {
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
        let trust_email = match map.remove("trust_email") {
            None => false,
            Some(serde_json::Value::Bool(b)) => b,
            Some(_) => {
                errors.push(ConfigError::new(key("trust_email"), "use true or false"));
                false
            }
        };
        let name = map
            .remove("name")
            .and_then(|v| v.as_str().map(str::to_owned));
        let entry = Self {
            settings: ConnectorSettings {
                id,
                kind,
                name,
                options: serde_json::Value::Object(map),
            },
            first_login,
            recheck_on_refresh,
            trust_email,
        };
        (Some(entry), errors)
    }

    /// The checks that need the built connector: `recheck_on_refresh` only on a
    /// connector that can re-check a person upstream, `trust_email` only on one
    /// whose upstream can vouch for an email address.
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
        if self.trust_email && !connector.vouches_for_email() {
            errors.push(ConfigError::new(
                format!("connectors[{}].trust_email", self.settings.id),
                format!(
                    "connector type {:?} never reports an email address it verified, so no account may be linked by its email; remove the key",
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
        let c = ConnectorConfig::parse(
            0,
            &json!({
                "id": "wx", "type": "wechat-web", "name": "WeChat",
                "first_login": "bind", "recheck_on_refresh": true, "appid": "wx1",
                "trust_email": true
            }),
        )
        .unwrap();
        assert_eq!(c.first_login, FirstLoginPolicy::Bind);
        assert!(c.recheck_on_refresh);
        assert!(c.trust_email);
        assert_eq!(c.settings.options, json!({ "appid": "wx1" }));
        let c = ConnectorConfig::parse(0, &json!({ "id": "wx", "type": "wechat-web" })).unwrap();
        assert_eq!(c.first_login, FirstLoginPolicy::Create);
        assert!(!c.recheck_on_refresh);
        assert!(!c.trust_email);
    }

    #[test]
    fn wrong_values_name_their_keys_all_at_once() {
        let errors = ConnectorConfig::parse(
            0,
            &json!({
                "id": "wx", "type": "wechat-web",
                "first_login": "sometimes", "recheck_on_refresh": "yes",
                "trust_email": "yes"
            }),
        )
        .unwrap_err();
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "connectors[wx].first_login",
                "connectors[wx].recheck_on_refresh",
                "connectors[wx].trust_email"
            ]
        );
    }

    #[test]
    fn an_entry_without_a_usable_id_or_type_is_named_by_place_or_raw_id() {
        for (raw, expected) in [
            (
                json!({ "type": "dev" }),
                vec![("connectors[3].id", "missing")],
            ),
            (
                json!({ "id": 7, "type": "dev" }),
                vec![("connectors[3].id", "missing")],
            ),
            (
                json!({ "id": "dev" }),
                vec![("connectors[dev].type", "missing")],
            ),
            (
                json!({}),
                vec![
                    ("connectors[3].id", "missing"),
                    ("connectors[?].type", "missing"),
                ],
            ),
            (
                json!("not a table"),
                vec![
                    ("connectors[3].id", "missing"),
                    ("connectors[?].type", "missing"),
                ],
            ),
        ] {
            let (entry, errors) = ConnectorConfig::read(3, &raw);
            assert!(entry.is_none(), "{raw}");
            let got: Vec<(&str, &str)> = errors
                .iter()
                .map(|e| (e.key.as_str(), e.message.as_str()))
                .collect();
            assert_eq!(got, expected, "{raw}");
        }
        let (entry, errors) = ConnectorConfig::read(3, &json!({ "id": "a b", "type": "dev" }));
        assert!(entry.is_none());
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["connectors[3].id"], "{errors:?}");
    }

    #[test]
    fn broker_key_values_are_typed_or_name_their_key() {
        for (first_login, recheck, expected) in [
            (
                json!("create"),
                json!(false),
                Ok((FirstLoginPolicy::Create, false)),
            ),
            (
                json!("bind"),
                json!(true),
                Ok((FirstLoginPolicy::Bind, true)),
            ),
            (
                json!("deny"),
                json!(false),
                Ok((FirstLoginPolicy::Deny, false)),
            ),
            (
                json!("Create"),
                json!(false),
                Err((
                    "connectors[wx].first_login",
                    "use \"create\", \"bind\" or \"deny\"",
                )),
            ),
            (
                json!(1),
                json!(false),
                Err((
                    "connectors[wx].first_login",
                    "use \"create\", \"bind\" or \"deny\"",
                )),
            ),
            (
                json!("create"),
                json!("true"),
                Err(("connectors[wx].recheck_on_refresh", "use true or false")),
            ),
        ] {
            let raw = json!({
                "id": "wx", "type": "wechat-web",
                "first_login": first_login, "recheck_on_refresh": recheck
            });
            match (ConnectorConfig::parse(0, &raw), expected) {
                (Ok(c), Ok((policy, recheck))) => {
                    assert_eq!((c.first_login, c.recheck_on_refresh), (policy, recheck));
                }
                (Err(errors), Err((key, message))) => {
                    assert_eq!(errors.len(), 1, "{errors:?}");
                    assert_eq!(
                        (errors[0].key.as_str(), errors[0].message.as_str()),
                        (key, message)
                    );
                }
                (got, want) => panic!("{raw}: {got:?}, expected {want:?}"),
            }
        }
    }
}
