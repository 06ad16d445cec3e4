//! The conformance suite checked against itself: a toy connector (an OAuth-style
//! upstream in memory, PKCE and a nonce kept in the flow data, a token exchange)
//! passes every check, and each deliberate defect makes exactly its checks fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use async_trait::async_trait;
use idbridge_connector_kit::conformance::{
    self, checks, BrowserFlow, ExchangeFlow, Expect, Fixture, Params, Report, Upstream,
};
use idbridge_connector_kit::flow::FlowSecrets;
use idbridge_connector_kit::options::{parse_options, BaseUrl, Keys, Seconds, Secret, Timeouts};
use idbridge_connector_kit::testing;
use idbridge_core::{
    Begin, BeginRequest, BuildContext, CallbackRequest, ConfigError, Connector, ConnectorError,
    ConnectorFactory, ConnectorId, ConnectorSettings, ErrorKind, ExchangeRequest, ExternalIdentity,
    Profile, RequestContext, Stage, Started, UpstreamTokens,
};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};

const TOKEN_TYPE: &str = "urn:example:toy_code";
const SECRET: &str = "toy-client-secret-0123456789";

/// The toy's upstream: issues codes (bound to a PKCE challenge in the browser
/// flow), redeems each once.
#[derive(Default)]
struct Provider {
    codes: Mutex<HashMap<String, Issued>>,
}

/// A code: for whom, bound to which PKCE challenge, used yet.
struct Issued {
    user: String,
    challenge: Option<String>,
    used: bool,
}

impl Provider {
    fn issue(&self, user: &str, challenge: Option<String>) -> String {
        let mut codes = self.codes.lock().unwrap();
        let code = format!("code{}", codes.len());
        codes.insert(
            code.clone(),
            Issued {
                user: user.to_owned(),
                challenge,
                used: false,
            },
        );
        code
    }

    /// The person approves on the authorize URL: back with a code and the state.
    fn approve(&self, started: &Started, user: &str) -> Result<Params, String> {
        let Begin::Redirect(url) = &started.begin else {
            return Err("not a redirect".into());
        };
        let q = testing::query_params(url);
        let challenge = q.get("code_challenge").cloned();
        if q.get("code_challenge_method").map(String::as_str) != Some("S256")
            || !q.contains_key("nonce")
        {
            return Err(format!("no PKCE S256 or nonce in {url}"));
        }
        let code = self.issue(user, challenge);
        let mut back = testing::params(&[("code", &code)]);
        if let Some(state) = q.get("state") {
            back.insert("state".into(), state.clone());
        }
        Ok(back)
    }

    fn refuse(&self, started: &Started) -> Result<Params, String> {
        let Begin::Redirect(url) = &started.begin else {
            return Err("not a redirect".into());
        };
        let q = testing::query_params(url);
        let mut back = testing::params(&[("error", "access_denied")]);
        back.insert("state".into(), q.get("state").cloned().unwrap_or_default());
        Ok(back)
    }

    fn redeem(
        &self,
        code: &str,
        verifier: Option<&str>,
        stage: Stage,
    ) -> Result<String, ConnectorError> {
        let mut codes = self.codes.lock().unwrap();
        let Some(Issued {
            user,
            challenge,
            used,
        }) = codes.get_mut(code)
        else {
            return Err(ConnectorError::new(stage, ErrorKind::InvalidCode)
                .upstream("invalid_grant", "unknown code"));
        };
        if *used {
            return Err(ConnectorError::new(stage, ErrorKind::CodeReused)
                .upstream("invalid_grant", "code already used"));
        }
        if let Some(challenge) = challenge {
            if !verifier.is_some_and(|v| idbridge_connector_kit::flow::pkce_matches(v, challenge)) {
                return Err(ConnectorError::new(stage, ErrorKind::InvalidCode)
                    .upstream("invalid_grant", "PKCE verification failed"));
            }
        }
        *used = true;
        Ok(user.clone())
    }
}

/// One deliberate defect each (or none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Defect {
    #[default]
    None,
    AcceptsUnknownKeys,
    UnnamedTypeErrors,
    SecretInDebug,
    SecretInRedirect,
    LowercasesState,
    StateWithSuffix,
    AcceptsReplay,
    IgnoresUpstreamError,
    RefreshOtherSubject,
    RefreshUnsupportedAsInvalidCode,
    RefreshNotDeclared,
    IgnoresName,
    NoTokenType,
    AcceptsAnyToken,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ToyOptions {
    client_secret: Secret,
    base_url: BaseUrl,
    #[serde(default = "Seconds::default_connect")]
    connect_timeout_secs: Seconds,
    #[serde(default = "Seconds::default_total")]
    timeout_secs: Seconds,
}

/// The same keys without `deny_unknown_fields`.
#[derive(Deserialize)]
struct LaxToyOptions {
    client_secret: Secret,
    base_url: BaseUrl,
    #[serde(default = "Seconds::default_connect")]
    connect_timeout_secs: Seconds,
    #[serde(default = "Seconds::default_total")]
    timeout_secs: Seconds,
}

struct ToySettings {
    client_secret: Secret,
    base_url: BaseUrl,
    timeouts: Timeouts,
    defect: Defect,
}

impl fmt::Debug for ToySettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ToySettings");
        if self.defect == Defect::SecretInDebug {
            d.field("client_secret", &self.client_secret.expose());
        } else {
            d.field("client_secret", &self.client_secret);
        }
        d.field("base_url", &self.base_url)
            .field("timeouts", &self.timeouts)
            .finish()
    }
}

impl ToySettings {
    fn parse(settings: &ConnectorSettings, defect: Defect) -> Result<Self, Vec<ConfigError>> {
        let (client_secret, base_url, connect, total) = if defect == Defect::AcceptsUnknownKeys {
            let o: LaxToyOptions = parse_options(settings)?;
            (
                o.client_secret,
                o.base_url,
                o.connect_timeout_secs,
                o.timeout_secs,
            )
        } else {
            let o: ToyOptions = parse_options(settings).map_err(|errors| {
                if defect != Defect::UnnamedTypeErrors {
                    return errors;
                }
                // The old way: the key guessed from backticks in serde's message.
                errors
                    .into_iter()
                    .map(|e| {
                        let field = e.message.split('`').nth(1).unwrap_or("?").to_owned();
                        ConfigError::new(format!("connectors[{}].{field}", settings.id), e.message)
                    })
                    .collect()
            })?;
            (
                o.client_secret,
                o.base_url,
                o.connect_timeout_secs,
                o.timeout_secs,
            )
        };
        let mut keys = Keys::new(settings);
        keys.check(
            "client_secret",
            client_secret.len() >= 16,
            "must be the 16+ character client secret",
        );
        keys.base_url("base_url", &base_url);
        let timeouts = Timeouts::check(&mut keys, connect, total);
        keys.finish(ToySettings {
            client_secret,
            base_url,
            timeouts,
            defect,
        })
    }
}

struct ToyFactory {
    provider: Arc<Provider>,
    defect: Defect,
}

impl ConnectorFactory for ToyFactory {
    fn kind(&self) -> &'static str {
        "toy"
    }

    fn build(
        &self,
        settings: &ConnectorSettings,
        _ctx: &BuildContext,
    ) -> Result<Arc<dyn Connector>, Vec<ConfigError>> {
        let cfg = ToySettings::parse(settings, self.defect)?;
        let name = match (&settings.name, self.defect) {
            (Some(n), d) if d != Defect::IgnoresName => n.clone(),
            _ => "Toy".to_owned(),
        };
        Ok(Arc::new(Toy {
            id: settings.id.clone(),
            name,
            cfg,
            provider: self.provider.clone(),
            defect: self.defect,
            seen: Mutex::new(HashMap::new()),
        }))
    }
}

struct Toy {
    id: ConnectorId,
    name: String,
    cfg: ToySettings,
    provider: Arc<Provider>,
    defect: Defect,
    /// AcceptsReplay: identities by code.
    seen: Mutex<HashMap<String, ExternalIdentity>>,
}

impl Toy {
    fn identity(&self, user: &str) -> ExternalIdentity {
        ExternalIdentity {
            connector_id: self.id.clone(),
            subject: user.to_owned(),
            link_key: None,
            profile: Profile {
                name: Some(user.to_owned()),
                ..Profile::default()
            },
            upstream_tokens: Some(UpstreamTokens {
                refresh_token: Some(format!("rt-{user}")),
                ..UpstreamTokens::default()
            }),
            raw_claims: serde_json::json!({ "sub": user }),
        }
    }
}

#[async_trait]
impl Connector for Toy {
    fn id(&self) -> &ConnectorId {
        &self.id
    }
    fn kind(&self) -> &'static str {
        "toy"
    }
    fn display_name(&self) -> &str {
        &self.name
    }
    fn supports_refresh(&self) -> bool {
        !matches!(
            self.defect,
            Defect::RefreshNotDeclared | Defect::RefreshUnsupportedAsInvalidCode
        )
    }
    fn subject_token_types(&self) -> &[&str] {
        if self.defect == Defect::NoTokenType {
            &[]
        } else {
            &[TOKEN_TYPE]
        }
    }

    async fn begin(
        &self,
        _ctx: &RequestContext,
        request: &BeginRequest,
    ) -> Result<Started, ConnectorError> {
        let secrets = FlowSecrets::generate();
        let state = match self.defect {
            Defect::LowercasesState => request.state.to_lowercase(),
            Defect::StateWithSuffix => format!("{}-1", request.state),
            _ => request.state.clone(),
        };
        let mut url =
            url::Url::parse(&format!("{}/authorize", self.cfg.base_url.trimmed())).unwrap();
        url.query_pairs_mut()
            .append_pair("redirect_uri", &request.callback_url)
            .append_pair("state", &state)
            .append_pair("nonce", secrets.nonce.as_deref().unwrap_or(""))
            .append_pair(
                "code_challenge",
                &secrets.code_challenge().unwrap_or_default(),
            )
            .append_pair("code_challenge_method", "S256");
        if self.defect == Defect::SecretInRedirect {
            url.query_pairs_mut()
                .append_pair("client_secret", self.cfg.client_secret.expose());
        }
        Ok(Started {
            begin: Begin::Redirect(url.into()),
            flow_data: secrets.to_flow_data(),
        })
    }

    async fn complete(
        &self,
        _ctx: &RequestContext,
        callback: &CallbackRequest,
    ) -> Result<ExternalIdentity, ConnectorError> {
        if self.defect != Defect::IgnoresUpstreamError {
            if let Some(error) = callback.param("error") {
                return Err(
                    ConnectorError::new(Stage::Callback, ErrorKind::UserCancelled)
                        .upstream(error, "refused upstream"),
                );
            }
        }
        let Some(code) = callback.param("code") else {
            return Err(
                ConnectorError::new(Stage::Callback, ErrorKind::InvalidRequest)
                    .fix("the upstream sent no code"),
            );
        };
        if self.defect == Defect::AcceptsReplay {
            if let Some(id) = self.seen.lock().unwrap().get(code) {
                return Ok(id.clone());
            }
        }
        let secrets = FlowSecrets::from_callback(callback)?;
        let user = self.provider.redeem(
            code,
            Some(secrets.require_pkce_verifier()?),
            Stage::TokenExchange,
        )?;
        let id = self.identity(&user);
        self.seen
            .lock()
            .unwrap()
            .insert(code.to_owned(), id.clone());
        Ok(id)
    }

    async fn exchange(
        &self,
        _ctx: &RequestContext,
        request: &ExchangeRequest,
    ) -> Result<ExternalIdentity, ConnectorError> {
        if self.defect == Defect::AcceptsAnyToken {
            return Ok(self.identity("anyone"));
        }
        let user = self
            .provider
            .redeem(&request.subject_token, None, Stage::Exchange)?;
        Ok(self.identity(&user))
    }

    async fn refresh(
        &self,
        _ctx: &RequestContext,
        subject: &str,
        tokens: &UpstreamTokens,
    ) -> Result<ExternalIdentity, ConnectorError> {
        if self.defect == Defect::RefreshUnsupportedAsInvalidCode {
            return Err(ConnectorError::new(Stage::Refresh, ErrorKind::InvalidCode));
        }
        if tokens.refresh_token.as_deref() != Some(&format!("rt-{subject}")) {
            return Err(ConnectorError::new(Stage::Refresh, ErrorKind::InvalidCode));
        }
        let user = if self.defect == Defect::RefreshOtherSubject {
            format!("{subject}2")
        } else {
            subject.to_owned()
        };
        Ok(self.identity(&user))
    }
}

async fn report(defect: Defect) -> Report {
    let provider = Arc::new(Provider::default());
    let factory = ToyFactory {
        provider: provider.clone(),
        defect,
    };
    let p = provider.clone();
    let fixture = Fixture::new(
        &factory,
        serde_json::json!({"client_secret": SECRET, "base_url": "http://127.0.0.1:9/toy", "timeout_secs": 2.5}),
    )
    .secret("client_secret")
    .settings_debug(move |s| format!("{:?}", ToySettings::parse(s, defect)))
    .browser(
        BrowserFlow::new(Upstream::new(|started: Started| provider.approve(&started, "alice")))
            .no_code(Upstream::fixed(Params::new()), Expect::new(Stage::Callback, ErrorKind::InvalidRequest))
            .upstream_error(Upstream::new(|started: Started| provider.refuse(&started)), Expect::new(Stage::Callback, ErrorKind::UserCancelled))
            .replay(Expect::new(Stage::TokenExchange, ErrorKind::CodeReused)),
    )
    .exchange(
        ExchangeFlow::new(TOKEN_TYPE, Upstream::new(move |()| Ok(p.issue("bob", None))))
            .replay(Expect::new(Stage::Exchange, ErrorKind::CodeReused)),
    )
    .refresh_supported(defect != Defect::RefreshUnsupportedAsInvalidCode);
    conformance::check(fixture).await
}

#[tokio::test]
async fn a_sound_connector_passes_every_check() {
    let r = report(Defect::None).await;
    assert!(r.is_ok(), "{r}");
    for name in [
        checks::FIXTURE,
        checks::BUILDS,
        checks::IDENTITY,
        checks::UNKNOWN_KEY,
        checks::WRONG_TYPE,
        checks::NO_FILE_KEYS,
        checks::SECRETS_IN_DEBUG,
        checks::SECRETS_IN_OUTPUT,
        checks::FLOWS,
        checks::AVAILABLE,
        checks::SENDS_STATE,
        checks::STATE_ALPHANUMERIC,
        checks::STATE_ROUND_TRIP,
        checks::APPROVED,
        checks::NO_CODE,
        checks::UPSTREAM_ERROR,
        checks::REPLAY,
        checks::TOKEN_TYPE,
        checks::EXCHANGED,
        checks::EXCHANGE_REPLAY,
        checks::EXCHANGE_INVALID,
        checks::REFRESH,
        checks::REFRESH_DECLARED,
        checks::MESSAGES_UNSUPPORTED,
    ] {
        assert!(r.passed.contains(&name), "{name} did not run: {r}");
    }
}

#[tokio::test]
async fn each_defect_fails_exactly_its_checks() {
    use Defect::*;
    let cases: [(Defect, &[&str]); 14] = [
        (AcceptsUnknownKeys, &[checks::UNKNOWN_KEY]),
        (UnnamedTypeErrors, &[checks::WRONG_TYPE]),
        (SecretInDebug, &[checks::SECRETS_IN_DEBUG]),
        (SecretInRedirect, &[checks::SECRETS_IN_OUTPUT]),
        (
            LowercasesState,
            &[checks::SENDS_STATE, checks::STATE_ROUND_TRIP],
        ),
        (
            StateWithSuffix,
            &[
                checks::SENDS_STATE,
                checks::STATE_ALPHANUMERIC,
                checks::STATE_ROUND_TRIP,
            ],
        ),
        (AcceptsReplay, &[checks::REPLAY]),
        (IgnoresUpstreamError, &[checks::UPSTREAM_ERROR]),
        (RefreshOtherSubject, &[checks::REFRESH]),
        (
            RefreshUnsupportedAsInvalidCode,
            &[checks::REFRESH_UNSUPPORTED],
        ),
        (RefreshNotDeclared, &[checks::REFRESH_DECLARED]),
        (IgnoresName, &[checks::IDENTITY]),
        (NoTokenType, &[checks::TOKEN_TYPE]),
        (
            AcceptsAnyToken,
            &[checks::EXCHANGE_INVALID, checks::EXCHANGE_REPLAY],
        ),
    ];
    for (defect, expected) in cases {
        let r = report(defect).await;
        let mut failed = r.failed_checks();
        failed.sort_unstable();
        let mut expected = expected.to_vec();
        expected.sort_unstable();
        assert_eq!(failed, expected, "{defect:?}:\n{r}");
        // Every failure names its check first and says what is wrong.
        let text = r.to_string();
        for name in &expected {
            assert!(
                text.contains(&format!("FAILED {name}: ")),
                "{defect:?}: {text}"
            );
        }
    }
}

#[tokio::test]
#[should_panic(expected = "FAILED config.unknown_key_rejected: a config with the unknown key")]
async fn run_fails_the_test_naming_the_check() {
    let provider = Arc::new(Provider::default());
    let factory = ToyFactory {
        provider: provider.clone(),
        defect: Defect::AcceptsUnknownKeys,
    };
    conformance::run(
        Fixture::new(
            &factory,
            serde_json::json!({"client_secret": SECRET, "base_url": "http://127.0.0.1:9"}),
        )
        .secret("client_secret")
        .settings_debug(|s| format!("{:?}", ToySettings::parse(s, Defect::AcceptsUnknownKeys)))
        .exchange(
            ExchangeFlow::new(
                TOKEN_TYPE,
                Upstream::new(|()| Ok(provider.issue("bob", None))),
            )
            .replay(Expect::new(Stage::Exchange, ErrorKind::CodeReused)),
        ),
    )
    .await;
}

#[tokio::test]
async fn an_incomplete_fixture_is_reported_and_nothing_else_runs() {
    let factory = ToyFactory {
        provider: Arc::new(Provider::default()),
        defect: Defect::None,
    };
    let r = conformance::check(
        Fixture::new(&factory, serde_json::json!({"client_secret": "short", "base_url": "http://127.0.0.1:9", "ca_file": "/x"}))
            .secret("client_secret")
            .secret("missing")
            .browser(BrowserFlow::new(Upstream::fixed(BTreeMap::new()))),
    )
    .await;
    assert_eq!(r.failed_checks(), [checks::FIXTURE], "{r}");
    let text = r.to_string();
    for needle in [
        "at least 8 characters",
        "\"missing\" is not a string",
        "no settings_debug",
        "no_code",
        "upstream_error",
        "replay",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
    assert!(r.passed.is_empty());
}

#[tokio::test]
async fn a_file_key_in_the_config_is_named() {
    let factory = ToyFactory {
        provider: Arc::new(Provider::default()),
        defect: Defect::AcceptsUnknownKeys,
    };
    let r = conformance::check(
        Fixture::new(&factory, serde_json::json!({"client_secret": SECRET, "base_url": "http://127.0.0.1:9", "ca_file": "/x"}))
            .secret("client_secret")
            .settings_debug(|s| format!("{:?}", ToySettings::parse(s, Defect::AcceptsUnknownKeys)))
            .exchange(ExchangeFlow::new(TOKEN_TYPE, Upstream::fixed("nope".to_owned())).replay_not_detected("test")),
    )
    .await;
    let failed = r.failed_checks();
    assert!(failed.contains(&checks::NO_FILE_KEYS), "{r}");
    assert!(r.to_string().contains("ca_file"), "{r}");
}
