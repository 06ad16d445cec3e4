//! The typed configuration: what the one validation pass (`validate`) makes of
//! the settings. Keys that the file spells as strings but that take one of a few
//! values become enums here, parsed once, their errors naming the key; `serve`,
//! `serve --dev` and `idbridge doctor` use these values and never the strings.

use super::Settings;
use crate::client_ip::TrustedProxies;
use crate::connector_config::ConnectorConfig;
use idbridge_core::ConfigError;
use idbridge_tokens::{Algorithm, MasterKey};

/// How one-time codes reach a phone (`verification.sender`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    /// `none`: phone codes are off.
    None,
    /// `webhook`: a signed POST to `verification.webhook_url` (the SMS gateway).
    Webhook,
    /// `log`: written to the log and the dev outbox, never sent (development only).
    Log,
}

impl Sender {
    /// The key it is read from.
    pub const KEY: &'static str = "verification.sender";

    /// The value as the file spells it.
    pub fn parse(value: &str) -> Result<Self, ConfigError> {
        match value {
            "none" => Ok(Sender::None),
            "webhook" => Ok(Sender::Webhook),
            "log" => Ok(Sender::Log),
            other => Err(ConfigError::new(
                Self::KEY,
                format!("{other:?}: use \"none\", \"webhook\" or \"log\" (development only)"),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Sender::None => "none",
            Sender::Webhook => "webhook",
            Sender::Log => "log",
        }
    }

    /// Whether codes can be sent to phone numbers at all.
    pub fn sends_to_phones(self) -> bool {
        self != Sender::None
    }

    /// The rule that depends on how the broker runs: `log` only under
    /// `idbridge serve --dev` (`doctor` checks for a broker run without it).
    pub fn check_mode(self, dev_mode: bool) -> Result<(), ConfigError> {
        if self == Sender::Log && !dev_mode {
            return Err(ConfigError::new(
                Self::KEY,
                "\"log\" writes one-time codes to the log instead of sending them: development only (`idbridge serve --dev`); use \"webhook\" (your SMS gateway) or \"none\"",
            ));
        }
        Ok(())
    }
}

/// The signing algorithms (`[signing]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Algorithms {
    /// Those keys are kept for: RS256 first (OpenID requires it), then the
    /// others of `signing.algorithms` in their order, each once.
    pub keys: Vec<Algorithm>,
    /// `signing.default_algorithm`: ID tokens (unless a client says otherwise).
    pub default: Algorithm,
    /// `signing.access_token_algorithm`, else `default`.
    pub access_token: Algorithm,
}

impl Default for Algorithms {
    fn default() -> Self {
        Self {
            keys: vec![Algorithm::RS256],
            default: Algorithm::RS256,
            access_token: Algorithm::RS256,
        }
    }
}

impl Algorithms {
    /// Read `[signing]`'s algorithm keys; a value at fault is reported and left
    /// out (a default or access-token algorithm falls back to RS256 and the
    /// default).
    pub fn read(signing: &super::SigningSettings, errors: &mut Vec<ConfigError>) -> Algorithms {
        let mut keys = vec![Algorithm::RS256];
        for a in &signing.algorithms {
            match a.parse::<Algorithm>() {
                Ok(alg) => {
                    if !keys.contains(&alg) {
                        keys.push(alg);
                    }
                }
                Err(_) => errors.push(ConfigError::new(
                    "signing.algorithms",
                    format!("unknown algorithm {a:?}; use RS256, ES256 or EdDSA"),
                )),
            }
        }
        let listed = |key: &str, value: &str, errors: &mut Vec<ConfigError>| match value
            .parse::<Algorithm>()
        {
            Ok(alg) if keys.contains(&alg) => Some(alg),
            Ok(alg) => {
                errors.push(ConfigError::new(
                    key,
                    format!("{} is not listed in signing.algorithms", alg.as_str()),
                ));
                None
            }
            Err(_) => {
                errors.push(ConfigError::new(key, "use RS256, ES256 or EdDSA"));
                None
            }
        };
        let default = listed(
            "signing.default_algorithm",
            &signing.default_algorithm,
            errors,
        )
        .unwrap_or(Algorithm::RS256);
        let access_token = match &signing.access_token_algorithm {
            Some(value) => listed("signing.access_token_algorithm", value, errors),
            None => None,
        }
        .unwrap_or(default);
        Algorithms {
            keys,
            default,
            access_token,
        }
    }

    /// A client's `id_token_signed_response_alg`, which must be one of `keys`.
    pub fn for_client(&self, client_id: &str, value: &str) -> Result<Algorithm, ConfigError> {
        match value.parse::<Algorithm>() {
            Ok(alg) if self.keys.contains(&alg) => Ok(alg),
            _ => Err(ConfigError::new(
                format!("clients[{client_id}].id_token_signed_response_alg"),
                format!("{value:?} is not one of signing.algorithms"),
            )),
        }
    }
}

/// What the one validation pass found: the settings, their typed values (a
/// value at fault replaced by its default, or `None` where there is none) and
/// every mistake, each naming its key. `idbridge doctor` goes on from
/// here whatever the mistakes; the broker starts only from a [`Config`].
pub struct Checked {
    pub settings: Settings,
    pub master_key: Option<MasterKey>,
    pub sender: Option<Sender>,
    pub algorithms: Algorithms,
    pub proxies: TrustedProxies,
    /// The `[[connectors]]` entries that have a valid id and a type, in order.
    pub connectors: Vec<ConnectorConfig>,
    /// `[telemetry] bind`, when enabled.
    pub telemetry: Option<std::net::SocketAddr>,
    pub errors: Vec<ConfigError>,
}

/// Settings without a mistake, their values typed: what the broker is built from
/// (`serve` and `serve --dev` alike).
pub struct Config {
    pub settings: Settings,
    pub master_key: MasterKey,
    pub sender: Sender,
    pub algorithms: Algorithms,
    pub proxies: TrustedProxies,
    pub connectors: Vec<ConnectorConfig>,
    pub telemetry: Option<std::net::SocketAddr>,
}

impl Checked {
    /// Add the rules that depend on how the broker runs ([`Sender::check_mode`]).
    pub fn for_mode(mut self, dev_mode: bool) -> Self {
        if let Some(Err(e)) = self.sender.map(|s| s.check_mode(dev_mode)) {
            self.errors.push(e);
        }
        self
    }

    /// The [`Config`], when nothing was found wrong.
    pub fn into_config(self) -> Result<Config, Vec<ConfigError>> {
        let mut errors = self.errors;
        match (self.master_key, self.sender) {
            (Some(master_key), Some(sender)) if errors.is_empty() => Ok(Config {
                settings: self.settings,
                master_key,
                sender,
                algorithms: self.algorithms,
                proxies: self.proxies,
                connectors: self.connectors,
                telemetry: self.telemetry,
            }),
            (master_key, sender) => {
                // The pass reports a value it could not type; never start without one.
                if errors.is_empty() {
                    errors.push(match (master_key, sender) {
                        (None, _) => missing_master_key(),
                        _ => ConfigError::new(Sender::KEY, "could not be read"),
                    });
                }
                Err(errors)
            }
        }
    }
}

/// `signing.master_key` is not set.
pub(super) fn missing_master_key() -> ConfigError {
    ConfigError::new(
        "signing.master_key",
        "missing: set signing.master_key or signing.master_key_file (32 random bytes, base64; `idbridge keys generate-master` prints one)",
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sender_values_are_typed_or_name_the_key() {
        for (value, expected) in [
            ("none", Ok(Sender::None)),
            ("webhook", Ok(Sender::Webhook)),
            ("log", Ok(Sender::Log)),
            (
                "sms",
                Err("\"sms\": use \"none\", \"webhook\" or \"log\" (development only)"),
            ),
            (
                "Log",
                Err("\"Log\": use \"none\", \"webhook\" or \"log\" (development only)"),
            ),
            (
                "",
                Err("\"\": use \"none\", \"webhook\" or \"log\" (development only)"),
            ),
        ] {
            match (Sender::parse(value), expected) {
                (Ok(sender), Ok(want)) => {
                    assert_eq!(sender, want, "{value:?}");
                    assert_eq!(sender.as_str(), value);
                }
                (Err(e), Err(message)) => {
                    assert_eq!(e.key, "verification.sender", "{value:?}");
                    assert_eq!(e.message, message, "{value:?}");
                }
                (got, want) => panic!("{value:?}: {got:?}, expected {want:?}"),
            }
        }
    }

    #[test]
    fn log_is_for_dev_mode_only() {
        for (sender, dev_mode, ok) in [
            (Sender::Log, true, true),
            (Sender::Log, false, false),
            (Sender::None, false, true),
            (Sender::Webhook, false, true),
            (Sender::Webhook, true, true),
        ] {
            match sender.check_mode(dev_mode) {
                Ok(()) => assert!(ok, "{sender:?} dev_mode={dev_mode}"),
                Err(e) => {
                    assert!(!ok, "{sender:?} dev_mode={dev_mode}");
                    assert_eq!(e.key, "verification.sender");
                    assert!(e.message.contains("development only"), "{e:?}");
                }
            }
        }
    }

    fn signing(
        algorithms: &[&str],
        default: &str,
        access_token: Option<&str>,
    ) -> super::super::SigningSettings {
        super::super::SigningSettings {
            algorithms: algorithms.iter().map(|a| a.to_string()).collect(),
            default_algorithm: default.into(),
            access_token_algorithm: access_token.map(str::to_owned),
            ..Default::default()
        }
    }

    #[test]
    fn algorithms_are_typed_or_name_their_key() {
        use Algorithm::*;
        type Case<'a> = (
            &'a [&'a str],
            &'a str,
            Option<&'a str>,
            Result<(&'a [Algorithm], Algorithm, Algorithm), &'a [(&'a str, &'a str)]>,
        );
        let cases: &[Case] = &[
            (
                &["RS256", "ES256", "EdDSA"],
                "RS256",
                None,
                Ok((&[RS256, ES256, EdDSA], RS256, RS256)),
            ),
            (&[], "RS256", None, Ok((&[RS256], RS256, RS256))),
            (
                &["ES256", "RS256", "ES256"],
                "ES256",
                None,
                Ok((&[RS256, ES256], ES256, ES256)),
            ),
            (
                &["ES256"],
                "RS256",
                Some("ES256"),
                Ok((&[RS256, ES256], RS256, ES256)),
            ),
            (
                &["HS256"],
                "RS256",
                None,
                Err(&[(
                    "signing.algorithms",
                    "unknown algorithm \"HS256\"; use RS256, ES256 or EdDSA",
                )]),
            ),
            (
                &["RS256"],
                "ES256",
                None,
                Err(&[(
                    "signing.default_algorithm",
                    "ES256 is not listed in signing.algorithms",
                )]),
            ),
            (
                &["RS256"],
                "rs256",
                Some("none"),
                Err(&[
                    ("signing.default_algorithm", "use RS256, ES256 or EdDSA"),
                    (
                        "signing.access_token_algorithm",
                        "use RS256, ES256 or EdDSA",
                    ),
                ]),
            ),
            (
                &[],
                "RS256",
                Some("EdDSA"),
                Err(&[(
                    "signing.access_token_algorithm",
                    "EdDSA is not listed in signing.algorithms",
                )]),
            ),
        ];
        for (algorithms, default, access_token, expected) in cases {
            let mut errors = Vec::new();
            let got = Algorithms::read(&signing(algorithms, default, *access_token), &mut errors);
            match expected {
                Ok((keys, default, access_token)) => {
                    assert!(errors.is_empty(), "{algorithms:?}: {errors:?}");
                    assert_eq!(
                        got,
                        Algorithms {
                            keys: keys.to_vec(),
                            default: *default,
                            access_token: *access_token
                        }
                    );
                }
                Err(want) => {
                    let errors: Vec<(&str, &str)> = errors
                        .iter()
                        .map(|e| (e.key.as_str(), e.message.as_str()))
                        .collect();
                    assert_eq!(&errors, want, "{algorithms:?} {default:?} {access_token:?}");
                }
            }
        }
    }

    #[test]
    fn a_client_algorithm_must_be_kept() {
        let algs = Algorithms {
            keys: vec![Algorithm::RS256, Algorithm::ES256],
            ..Algorithms::default()
        };
        assert_eq!(algs.for_client("a", "ES256").unwrap(), Algorithm::ES256);
        assert_eq!(algs.for_client("a", "RS256").unwrap(), Algorithm::RS256);
        for value in ["EdDSA", "es256", "HS256"] {
            let e = algs.for_client("a", value).unwrap_err();
            assert_eq!(e.key, "clients[a].id_token_signed_response_alg");
            assert_eq!(
                e.message,
                format!("{value:?} is not one of signing.algorithms")
            );
        }
    }
}
