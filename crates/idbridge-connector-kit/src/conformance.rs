//! The connector conformance suite: what the broker relies on from every
//! connector, checked against the connector's real upstream (or a stand-in on
//! 127.0.0.1). A connector crate calls [`run`] from one of its tests with a
//! [`Fixture`] that describes its factory, a valid config, which values in it
//! are secrets, and how its upstream approves, refuses and errs:
//!
//! (a whole example, compiled and run, is section 7 of the [guide](crate::guide);
//! the real ones are each connector crate's `the_connector_conforms…` test).
//!
//! Every check runs (one failure does not hide the next); [`run`] then fails
//! the test with one line per failed check, each starting with the check's name
//! (the constants in [`checks`]). [`check`] returns the [`Report`] instead.

use crate::flow::random_alphanumeric;
use crate::testing;
use idbridge_core::{
    Availability, Begin, BeginRequest, CallbackRequest, Connector, ConnectorError,
    ConnectorFactory, ConnectorSettings, ErrorKind, ExchangeRequest, ExternalIdentity, Locale,
    RequestContext, Shared, Stage, Started,
};
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// Callback parameters.
pub type Params = BTreeMap<String, String>;

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;
type StepFn<'a, I, O> = dyn Fn(I) -> BoxFuture<'a, Result<O, String>> + 'a;
type ShowFn<'a> = dyn Fn(&ConnectorSettings) -> String + 'a;

/// The names of the checks, as they appear in a [`Report`] and in a failure.
pub mod checks {
    /// The fixture itself is incomplete or inconsistent.
    pub const FIXTURE: &str = "fixture";
    /// The valid config builds, and `prepare` succeeds.
    pub const BUILDS: &str = "config.builds";
    /// `id()`, `kind()` and `display_name()` are the configured ones.
    pub const IDENTITY: &str = "config.identity";
    /// An unknown key is refused, by its name (`connectors[ID].key`).
    pub const UNKNOWN_KEY: &str = "config.unknown_key_rejected";
    /// A key of the wrong type is refused by its name (or accepted).
    pub const WRONG_TYPE: &str = "config.wrong_type_named";
    /// No option ends in `_file` (the broker reads those as secret files).
    pub const NO_FILE_KEYS: &str = "config.no_file_keys";
    /// The parsed settings' `Debug` does not show the secrets.
    pub const SECRETS_IN_DEBUG: &str = "secrets.hidden_in_debug";
    /// Nothing the connector answers (begin's page or URL, flow data,
    /// identities, errors, config errors) shows a secret.
    pub const SECRETS_IN_OUTPUT: &str = "secrets.not_in_output";
    /// `has_browser_flow()` and `subject_token_types()` match the fixture; a
    /// connector without a browser flow refuses `begin`.
    pub const FLOWS: &str = "flows.declared";
    /// The connector is not unavailable to the fixture's browser.
    pub const AVAILABLE: &str = "begin.available";
    /// `begin` sends the broker's state upstream unchanged.
    pub const SENDS_STATE: &str = "begin.sends_state";
    /// The state as sent upstream is alphanumeric (as the broker made it).
    pub const STATE_ALPHANUMERIC: &str = "begin.state_alphanumeric";
    /// The upstream sends the same state back.
    pub const STATE_ROUND_TRIP: &str = "callback.state_round_trip";
    /// An approved callback becomes an identity of this connector that the
    /// broker accepts (`ExternalIdentity::screened`).
    pub const APPROVED: &str = "callback.approved";
    /// A callback without a code fails with the expected stage and kind.
    pub const NO_CODE: &str = "callback.no_code";
    /// A callback with the upstream's error fails with the expected stage and kind.
    pub const UPSTREAM_ERROR: &str = "callback.upstream_error";
    /// The approved callback, again, fails with the expected stage and kind.
    pub const REPLAY: &str = "callback.replay";
    /// The connector lists the fixture's subject token type.
    pub const TOKEN_TYPE: &str = "exchange.token_type";
    /// A fresh subject token becomes an identity of this connector that the
    /// broker accepts.
    pub const EXCHANGED: &str = "exchange.accepted";
    /// The same subject token, again, fails with the expected stage and kind.
    pub const EXCHANGE_REPLAY: &str = "exchange.replay";
    /// A made-up subject token fails at `Stage::Exchange` (not `Unsupported`).
    pub const EXCHANGE_INVALID: &str = "exchange.invalid_token";
    /// Refresh, when supported, returns the same subject of the same connector.
    pub const REFRESH: &str = "refresh.same_subject";
    /// Refresh, when not supported, says `Unsupported` at `Stage::Refresh` (any
    /// other kind could end the app's grant).
    pub const REFRESH_UNSUPPORTED: &str = "refresh.unsupported";
    /// `supports_refresh()` says what the fixture says: the broker lets an
    /// operator set `recheck_on_refresh` only when it is true.
    pub const REFRESH_DECLARED: &str = "refresh.declared";
    /// A connector that cannot send messages says `Unsupported` at `Stage::Message`.
    pub const MESSAGES_UNSUPPORTED: &str = "message.unsupported";
}

/// One step of the upstream stand-in, e.g. "the person approves on the page
/// `begin` sent them to: where does the browser come back?".
pub struct Upstream<'a, I, O>(Box<StepFn<'a, I, O>>);

impl<'a, I: 'a, O: 'a> Upstream<'a, I, O> {
    pub fn new(step: impl Fn(I) -> Result<O, String> + 'a) -> Self {
        Self(Box::new(move |input| {
            let out = step(input);
            Box::pin(async move { out })
        }))
    }

    pub fn new_async<Fut>(step: impl Fn(I) -> Fut + 'a) -> Self
    where
        Fut: Future<Output = Result<O, String>> + 'a,
    {
        Self(Box::new(move |input| Box::pin(step(input))))
    }

    async fn call(&self, input: I) -> Result<O, String> {
        (self.0)(input).await
    }
}

impl<'a, I: 'a, O: Clone + 'a> Upstream<'a, I, O> {
    /// Always the same answer (e.g. the callback parameters of a refusal).
    pub fn fixed(out: O) -> Self {
        Self::new(move |_| Ok(out.clone()))
    }
}

/// The stage and kind a failure must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expect {
    pub stage: Stage,
    pub kind: ErrorKind,
}

impl Expect {
    pub fn new(stage: Stage, kind: ErrorKind) -> Self {
        Self { stage, kind }
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "stage={} kind={}",
            self.stage.as_str(),
            self.kind.as_str()
        )
    }
}

/// What a second use of the same code (or subject token) must give.
#[derive(Debug, Clone)]
enum Replay {
    Unset,
    Rejected(Expect),
    NotDetected(String),
}

/// The browser sign-in: `begin`, the upstream, the callback.
pub struct BrowserFlow<'a> {
    approve: Upstream<'a, Started, Params>,
    no_code: Option<(Upstream<'a, Started, Params>, Expect)>,
    upstream_error: Option<(Upstream<'a, Started, Params>, Expect)>,
    replay: Replay,
}

impl<'a> BrowserFlow<'a> {
    /// `approve`: the person signs in and approves on the page `begin` sent
    /// them to (given the `Started` it answered); it answers the parameters the
    /// browser comes back to the callback with (the `state` among them).
    pub fn new(approve: Upstream<'a, Started, Params>) -> Self {
        Self {
            approve,
            no_code: None,
            upstream_error: None,
            replay: Replay::Unset,
        }
    }

    /// A callback without a code (what the upstream sends, or `fixed` params;
    /// the suite adds the state) and the failure it must give.
    pub fn no_code(mut self, callback: Upstream<'a, Started, Params>, expect: Expect) -> Self {
        self.no_code = Some((callback, expect));
        self
    }

    /// A callback with the upstream's error (the person refused…) and the
    /// failure it must give.
    pub fn upstream_error(
        mut self,
        callback: Upstream<'a, Started, Params>,
        expect: Expect,
    ) -> Self {
        self.upstream_error = Some((callback, expect));
        self
    }

    /// The approved callback completed a second time must fail so.
    pub fn replay(mut self, expect: Expect) -> Self {
        self.replay = Replay::Rejected(expect);
        self
    }

    /// The upstream cannot tell a replay (there is no code); `why` says what
    /// guards against it instead (the broker's single-use state, at least).
    pub fn replay_not_detected(mut self, why: impl Into<String>) -> Self {
        self.replay = Replay::NotDetected(why.into());
        self
    }
}

/// Token exchange (RFC 8693) of a token a native app got upstream.
pub struct ExchangeFlow<'a> {
    token_type: String,
    fresh: Upstream<'a, (), String>,
    replay: Replay,
    invalid: Option<Expect>,
}

impl<'a> ExchangeFlow<'a> {
    /// `token_type`: the `subject_token_type` the connector must accept;
    /// `fresh`: a new valid subject token from the upstream.
    pub fn new(token_type: impl Into<String>, fresh: Upstream<'a, (), String>) -> Self {
        Self {
            token_type: token_type.into(),
            fresh,
            replay: Replay::Unset,
            invalid: None,
        }
    }

    /// The same subject token exchanged a second time must fail so.
    pub fn replay(mut self, expect: Expect) -> Self {
        self.replay = Replay::Rejected(expect);
        self
    }

    /// The upstream accepts a token more than once; `why` says why that is safe.
    pub fn replay_not_detected(mut self, why: impl Into<String>) -> Self {
        self.replay = Replay::NotDetected(why.into());
        self
    }

    /// A made-up subject token must fail exactly so (by default: any kind but
    /// `Unsupported`, at `Stage::Exchange`).
    pub fn invalid_token(mut self, expect: Expect) -> Self {
        self.invalid = Some(expect);
        self
    }
}

/// What the suite needs to know about a connector and its upstream.
pub struct Fixture<'a> {
    factory: &'a dyn ConnectorFactory,
    id: String,
    config: serde_json::Value,
    secrets: Vec<String>,
    settings_debug: Option<Box<ShowFn<'a>>>,
    user_agent: String,
    locale: Locale,
    clock: Box<dyn Fn() -> i64 + 'a>,
    shared: Shared,
    browser: Option<BrowserFlow<'a>>,
    exchange: Option<ExchangeFlow<'a>>,
    refresh_supported: bool,
}

impl<'a> Fixture<'a> {
    /// `config`: a valid config of the connector (its own keys, as JSON),
    /// pointing at the upstream stand-in. The connector id is the factory's
    /// kind unless [`Fixture::id`] says otherwise.
    pub fn new(factory: &'a dyn ConnectorFactory, config: serde_json::Value) -> Self {
        Self {
            factory,
            id: factory.kind().to_owned(),
            config,
            secrets: Vec::new(),
            settings_debug: None,
            user_agent: testing::BROWSER_UA.to_owned(),
            locale: Locale::En,
            clock: Box::new(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or(0)
            }),
            shared: Shared::default(),
            browser: None,
            exchange: None,
            refresh_supported: false,
        }
    }

    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// A key of the config whose value is a secret (top level, or a JSON
    /// pointer such as `/keys/private`); the value must be at least 8 characters.
    pub fn secret(mut self, key: impl Into<String>) -> Self {
        self.secrets.push(key.into());
        self
    }

    /// How the connector parses its settings, shown with `Debug` (e.g.
    /// `|s| format!("{:?}", MySettings::parse(s))`): the suite checks the
    /// secrets do not appear. Required when there are secrets.
    pub fn settings_debug(mut self, show: impl Fn(&ConnectorSettings) -> String + 'a) -> Self {
        self.settings_debug = Some(Box::new(show));
        self
    }

    /// The browser's User-Agent (default: a desktop Firefox).
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    pub fn locale(mut self, locale: Locale) -> Self {
        self.locale = locale;
        self
    }

    /// "Now" in unix seconds, for every request (default: the system clock); a
    /// simulator with its own clock passes it here.
    pub fn clock(mut self, now: impl Fn() -> i64 + 'a) -> Self {
        self.clock = Box::new(now);
        self
    }

    /// The shared cache the connectors are built with (default: a fresh one).
    pub fn shared(mut self, shared: Shared) -> Self {
        self.shared = shared;
        self
    }

    pub fn browser(mut self, flow: BrowserFlow<'a>) -> Self {
        self.browser = Some(flow);
        self
    }

    pub fn exchange(mut self, flow: ExchangeFlow<'a>) -> Self {
        self.exchange = Some(flow);
        self
    }

    /// Whether `refresh` re-checks a person from the tokens the sign-in kept.
    pub fn refresh_supported(mut self, supported: bool) -> Self {
        self.refresh_supported = supported;
        self
    }
}

/// The outcome of each check.
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// Connector type and id.
    pub connector: String,
    pub passed: Vec<&'static str>,
    /// Check name and what went wrong.
    pub failed: Vec<(&'static str, String)>,
    /// Check name and why it did not apply.
    pub skipped: Vec<(&'static str, String)>,
}

impl Report {
    pub fn is_ok(&self) -> bool {
        self.failed.is_empty()
    }

    /// The names of the failed checks, each once, in order.
    pub fn failed_checks(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = Vec::new();
        for (name, _) in &self.failed {
            if !out.contains(name) {
                out.push(name);
            }
        }
        out
    }

    fn pass(&mut self, name: &'static str) {
        if !self.passed.contains(&name) {
            self.passed.push(name);
        }
    }

    fn fail(&mut self, name: &'static str, why: impl Into<String>) {
        self.failed.push((name, why.into()));
    }

    fn skip(&mut self, name: &'static str, why: impl Into<String>) {
        self.skipped.push((name, why.into()));
    }

    fn outcome(&mut self, name: &'static str, result: Result<(), String>) {
        match result {
            Ok(()) => self.pass(name),
            Err(why) => self.fail(name, why),
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let passed: Vec<&&str> = self
            .passed
            .iter()
            .filter(|p| !self.failed.iter().any(|(n, _)| n == *p))
            .collect();
        writeln!(
            f,
            "connector conformance of {}: {} checks failed, {} passed, {} skipped",
            self.connector,
            self.failed_checks().len(),
            passed.len(),
            self.skipped.len()
        )?;
        for (name, why) in &self.failed {
            writeln!(f, "  FAILED {name}: {why}")?;
        }
        for (name, why) in &self.skipped {
            writeln!(f, "  skipped {name}: {why}")?;
        }
        Ok(())
    }
}

/// Run the suite and fail the calling test, listing every failed check.
pub async fn run(fixture: Fixture<'_>) -> Report {
    let report = check(fixture).await;
    // The suite runs inside a connector's tests: failing means panicking.
    #[allow(clippy::panic)]
    if !report.is_ok() {
        panic!("{report}");
    }
    eprint!("{report}");
    report
}

/// A marker key no connector has.
const UNKNOWN_KEY: &str = "idbridge_conformance_unknown_key";
/// A subject token no upstream issued.
const MADE_UP_TOKEN: &str = "idbridgeConformanceMadeUpToken0123456789";
/// The display name the suite configures.
const DISPLAY_NAME: &str = "Conformance check 检查";

struct Suite<'f, 'a> {
    fx: &'f Fixture<'a>,
    report: Report,
    /// Everything the connector answered, as `Debug`, for the secrets check.
    seen: Vec<(String, String)>,
    secrets: Vec<(String, String)>,
}

/// Run the suite and return its report (for tests of the suite itself, or to
/// look at the outcome before failing).
pub async fn check(fixture: Fixture<'_>) -> Report {
    let mut suite = Suite {
        report: Report {
            connector: format!("type {:?} (id {:?})", fixture.factory.kind(), fixture.id),
            ..Report::default()
        },
        fx: &fixture,
        seen: Vec::new(),
        secrets: Vec::new(),
    };
    suite.run().await;
    suite.report
}

impl<'f, 'a> Suite<'f, 'a> {
    fn ctx(&self) -> RequestContext {
        RequestContext::new(&self.fx.user_agent, self.fx.locale, (self.fx.clock)())
    }

    fn callback_url(&self) -> String {
        testing::callback_url(&self.fx.id)
    }

    fn settings(&self, options: serde_json::Value) -> Option<ConnectorSettings> {
        let id = idbridge_core::ConnectorId::parse(&self.fx.id).ok()?;
        Some(ConnectorSettings {
            id,
            kind: self.fx.factory.kind().to_owned(),
            name: None,
            options,
        })
    }

    fn build(
        &mut self,
        settings: &ConnectorSettings,
    ) -> Result<Arc<dyn Connector>, Vec<idbridge_core::ConfigError>> {
        let ctx = idbridge_core::BuildContext {
            shared: self.fx.shared.clone(),
            ..testing::build_context(&self.fx.id)
        };
        let built = self.fx.factory.build(settings, &ctx);
        if let Err(errors) = &built {
            self.saw("config errors", errors);
        }
        built
    }

    fn saw(&mut self, what: &str, value: &dyn fmt::Debug) {
        self.seen.push((what.to_owned(), format!("{value:?}")));
    }

    fn saw_error(&mut self, what: &str, e: &ConnectorError) {
        self.seen.push((what.to_owned(), format!("{e:?} {e}")));
    }

    fn key(&self, key: &str) -> String {
        format!("connectors[{}].{key}", self.fx.id)
    }

    async fn run(&mut self) {
        if !self.check_fixture() {
            return;
        }
        let Some(connector) = self.check_config().await else {
            return;
        };
        let ctx = self.ctx();
        if !connector.can_send_messages() {
            let got = connector.send_message(&ctx, "someone", "123456").await;
            let result = self.expect_failure(
                "send_message",
                got.map(|_| ()),
                Expect::new(Stage::Message, ErrorKind::Unsupported),
            );
            self.report.outcome(checks::MESSAGES_UNSUPPORTED, result);
        } else {
            self.report
                .skip(checks::MESSAGES_UNSUPPORTED, "the connector sends messages");
        }
        self.check_flows(connector.as_ref()).await;
        let mut signed_in = None;
        if self.fx.browser.is_some() {
            signed_in = self.check_browser(connector.as_ref()).await;
        }
        if self.fx.exchange.is_some() {
            let exchanged = self.check_exchange(connector.as_ref()).await;
            signed_in = signed_in.or(exchanged);
        }
        self.check_refresh(connector.as_ref(), signed_in).await;
        self.check_secrets_seen();
    }

    /// The fixture must be usable; false stops the suite.
    fn check_fixture(&mut self) -> bool {
        let mut problems = Vec::new();
        if idbridge_core::ConnectorId::parse(&self.fx.id).is_err() {
            problems.push(format!("{:?} is not a connector id", self.fx.id));
        }
        if !self.fx.config.is_object() {
            problems.push("the config must be a JSON object of the connector's keys".to_owned());
        }
        for key in &self.fx.secrets {
            let value = if key.starts_with('/') {
                self.fx.config.pointer(key)
            } else {
                self.fx.config.get(key)
            };
            match value.and_then(|v| v.as_str()) {
                Some(v) if v.chars().count() >= 8 => {
                    self.secrets.push((key.clone(), v.to_owned()));
                }
                Some(_) => problems.push(format!(
                    "secret {key:?} must be at least 8 characters in the fixture's config, so that finding it elsewhere means something"
                )),
                None => problems.push(format!("secret {key:?} is not a string in the config")),
            }
        }
        if !self.fx.secrets.is_empty() && self.fx.settings_debug.is_none() {
            problems.push("the config has secrets but no settings_debug: pass how the connector parses its settings (settings_debug(|s| format!(\"{:?}\", MySettings::parse(s)))) so the suite can check its Debug".to_owned());
        }
        if self.fx.browser.is_none() && self.fx.exchange.is_none() {
            problems.push("describe the browser flow, the exchange flow, or both".to_owned());
        }
        if let Some(b) = &self.fx.browser {
            if b.no_code.is_none() {
                problems.push("the browser flow needs no_code(callback, expect)".to_owned());
            }
            if b.upstream_error.is_none() {
                problems.push("the browser flow needs upstream_error(callback, expect)".to_owned());
            }
            if matches!(b.replay, Replay::Unset) {
                problems.push(
                    "the browser flow needs replay(expect) or replay_not_detected(why)".to_owned(),
                );
            }
        }
        if let Some(x) = &self.fx.exchange {
            if matches!(x.replay, Replay::Unset) {
                problems.push(
                    "the exchange flow needs replay(expect) or replay_not_detected(why)".to_owned(),
                );
            }
        }
        if problems.is_empty() {
            self.report.pass(checks::FIXTURE);
            true
        } else {
            for p in problems {
                self.report.fail(checks::FIXTURE, p);
            }
            false
        }
    }

    async fn check_config(&mut self) -> Option<Arc<dyn Connector>> {
        let config = self.fx.config.clone();
        let settings = self.settings(config.clone())?;

        // No `_file` keys: the broker would have read them as secret files.
        let file_keys: Vec<&String> = config
            .as_object()
            .map(|m| m.keys().filter(|k| k.ends_with("_file")).collect())
            .unwrap_or_default();
        if file_keys.is_empty() {
            self.report.pass(checks::NO_FILE_KEYS);
        } else {
            self.report.fail(
                checks::NO_FILE_KEYS,
                format!("{file_keys:?}: the broker reads every connector key ending in `_file` as a secret file into the key without `_file`; name the option otherwise (or declare it as the secret it is, without `_file`)"),
            );
        }

        // Secrets never in the parsed settings' Debug.
        if let Some(show) = &self.fx.settings_debug {
            let shown = show(&settings);
            let leaked: Vec<&str> = self
                .secrets
                .iter()
                .filter(|(_, v)| shown.contains(v.as_str()))
                .map(|(k, _)| k.as_str())
                .collect();
            if leaked.is_empty() {
                self.report.pass(checks::SECRETS_IN_DEBUG);
            } else {
                self.report.fail(
                    checks::SECRETS_IN_DEBUG,
                    format!("the settings' Debug shows secret {leaked:?}: declare it as idbridge_connector_kit::options::Secret (or redact it in a hand-written Debug)"),
                );
            }
        } else {
            self.report
                .skip(checks::SECRETS_IN_DEBUG, "the config has no secrets");
        }

        // The valid config builds and gets ready.
        let connector = match self.build(&settings) {
            Ok(c) => c,
            Err(errors) => {
                self.report.fail(
                    checks::BUILDS,
                    format!("the fixture's valid config does not build: {errors:?}"),
                );
                return None;
            }
        };
        let now = (self.fx.clock)();
        if let Err(e) = connector.prepare(now).await {
            self.saw_error("prepare", &e);
            self.report
                .fail(checks::BUILDS, format!("prepare failed: {e}"));
            return None;
        }
        self.report.pass(checks::BUILDS);

        // Identity: the configured id, the factory's kind, the configured name.
        let mut wrong = Vec::new();
        if connector.id().as_str() != self.fx.id {
            wrong.push(format!(
                "id() is {:?}, configured {:?}",
                connector.id().as_str(),
                self.fx.id
            ));
        }
        if connector.kind() != self.fx.factory.kind() {
            wrong.push(format!(
                "kind() is {:?}, the factory's is {:?}",
                connector.kind(),
                self.fx.factory.kind()
            ));
        }
        if connector.display_name().trim().is_empty() {
            wrong.push("display_name() is empty without a configured name".to_owned());
        }
        let named = ConnectorSettings {
            name: Some(DISPLAY_NAME.to_owned()),
            ..settings.clone()
        };
        match self.build(&named) {
            Ok(c) if c.display_name() == DISPLAY_NAME => {}
            Ok(c) => wrong.push(format!(
                "with name = {DISPLAY_NAME:?} configured, display_name() is {:?}",
                c.display_name()
            )),
            Err(e) => wrong.push(format!("with a name configured it does not build: {e:?}")),
        }
        self.report.outcome(
            checks::IDENTITY,
            if wrong.is_empty() {
                Ok(())
            } else {
                Err(wrong.join("; "))
            },
        );

        // An unknown key is refused by its name.
        let mut with_unknown = config.clone();
        if let Some(m) = with_unknown.as_object_mut() {
            m.insert(UNKNOWN_KEY.to_owned(), serde_json::json!("x"));
        }
        let expected = self.key(UNKNOWN_KEY);
        let result = match self.settings(with_unknown).map(|s| self.build(&s)) {
            Some(Ok(_)) => Err(format!("a config with the unknown key {UNKNOWN_KEY:?} builds: a misspelt key would be ignored silently (use #[serde(deny_unknown_fields)] and idbridge_connector_kit::options::parse_options)")),
            Some(Err(errors)) if errors.iter().any(|e| e.key == expected) => Ok(()),
            Some(Err(errors)) => Err(format!("the unknown key is refused, but no error names {expected}: {errors:?}")),
            None => Err("no settings".to_owned()),
        };
        self.report.outcome(checks::UNKNOWN_KEY, result);

        // A wrong type is refused by the key's name (or accepted).
        let keys: Vec<(String, serde_json::Value)> = config
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        let mut unnamed = Vec::new();
        for (key, value) in keys {
            let wrong_value = match value {
                serde_json::Value::Object(_) | serde_json::Value::Array(_) => {
                    serde_json::json!(true)
                }
                _ => serde_json::json!({ "idbridge_conformance": [1, 2] }),
            };
            let mut options = config.clone();
            options[&key] = wrong_value;
            let expected = self.key(&key);
            if let Some(Err(errors)) = self.settings(options).map(|s| self.build(&s)) {
                let named = errors.iter().any(|e| {
                    e.key == expected
                        || e.key.starts_with(&format!("{expected}."))
                        || e.key.starts_with(&format!("{expected}["))
                });
                if !named {
                    unnamed.push(format!("{key}: {errors:?}"));
                }
            }
        }
        self.report.outcome(
            checks::WRONG_TYPE,
            if unnamed.is_empty() {
                Ok(())
            } else {
                Err(format!("a value of the wrong type is refused without naming its key (use idbridge_connector_kit::options::parse_options): {}", unnamed.join("; ")))
            },
        );
        Some(connector)
    }

    async fn check_flows(&mut self, connector: &dyn Connector) {
        let mut wrong = Vec::new();
        let browser = self.fx.browser.is_some();
        if connector.has_browser_flow() != browser {
            wrong.push(format!(
                "has_browser_flow() is {} but the fixture {} a browser flow",
                connector.has_browser_flow(),
                if browser { "describes" } else { "describes no" }
            ));
        }
        let types = connector.subject_token_types();
        match &self.fx.exchange {
            None if !types.is_empty() => wrong.push(format!(
                "subject_token_types() lists {types:?} but the fixture describes no exchange flow"
            )),
            _ => {}
        }
        if !browser {
            let ctx = self.ctx();
            let request = BeginRequest::new(random_alphanumeric(32), self.callback_url());
            match connector.begin(&ctx, &request).await {
                Ok(started) => {
                    self.saw("begin", &started);
                    wrong.push("a connector without a browser flow answered begin; it must fail (Unsupported)".to_owned());
                }
                Err(e) => self.saw_error("begin", &e),
            }
        }
        self.report.outcome(
            checks::FLOWS,
            if wrong.is_empty() {
                Ok(())
            } else {
                Err(wrong.join("; "))
            },
        );
    }

    /// A fresh begin, checked; `None` (and a failure recorded) if it failed.
    async fn begin(
        &mut self,
        connector: &dyn Connector,
        check_state: bool,
    ) -> Option<(String, Started)> {
        let ctx = self.ctx();
        let state = random_alphanumeric(32);
        let request = BeginRequest::new(state.clone(), self.callback_url())
            .with_scopes(["openid", "profile"]);
        let started = match connector.begin(&ctx, &request).await {
            Ok(s) => s,
            Err(e) => {
                self.saw_error("begin", &e);
                self.report
                    .fail(checks::SENDS_STATE, format!("begin failed: {e}"));
                return None;
            }
        };
        self.saw("begin", &started);
        if check_state {
            let (sent, alphanumeric) = match &started.begin {
                Begin::Redirect(url) => match url::Url::parse(url) {
                    Ok(u) => {
                        let pairs: Vec<(String, String)> = u.query_pairs().into_owned().collect();
                        let sent = pairs.iter().any(|(_, v)| *v == state);
                        let states: Vec<&String> = pairs
                            .iter()
                            .filter(|(k, _)| k == "state")
                            .map(|(_, v)| v)
                            .collect();
                        let alphanumeric = states.iter().all(|v| {
                            !v.is_empty()
                                && v.len() <= 128
                                && v.bytes().all(|b| b.is_ascii_alphanumeric())
                        });
                        (
                            if sent {
                                Ok(())
                            } else {
                                Err(format!("the redirect URL {url} has no query parameter equal to the broker's state {state:?}"))
                            },
                            if alphanumeric {
                                Ok(())
                            } else {
                                Err(format!("the redirect URL's state {states:?} is not 1-128 characters of a-zA-Z0-9; send the broker's state as it is"))
                            },
                        )
                    }
                    Err(e) => (
                        Err(format!("the redirect {url:?} is not an absolute URL: {e}")),
                        Ok(()),
                    ),
                },
                Begin::Page { body_html, .. } => (
                    if body_html.contains(&state) {
                        Ok(())
                    } else {
                        Err(format!(
                            "the page does not carry the broker's state {state:?}"
                        ))
                    },
                    Ok(()),
                ),
            };
            self.report.outcome(checks::SENDS_STATE, sent);
            self.report
                .outcome(checks::STATE_ALPHANUMERIC, alphanumeric);
        }
        Some((state, started))
    }

    /// Where the upstream sends the browser back, with the state checked or added.
    async fn callback(
        &mut self,
        step: &Upstream<'a, Started, Params>,
        what: &'static str,
        state: &str,
        started: &Started,
    ) -> Option<CallbackRequest> {
        let mut params = match step.call(started.clone()).await {
            Ok(p) => p,
            Err(e) => {
                self.report
                    .fail(what, format!("the fixture's upstream step failed: {e}"));
                return None;
            }
        };
        match params.get("state") {
            Some(back) if back != state => {
                self.report.fail(
                    checks::STATE_ROUND_TRIP,
                    format!("the upstream sent back state {back:?}, the broker's was {state:?}"),
                );
            }
            Some(_) => self.report.pass(checks::STATE_ROUND_TRIP),
            None => {
                params.insert("state".to_owned(), state.to_owned());
            }
        }
        Some(CallbackRequest::new(
            params,
            self.callback_url(),
            started.flow_data.clone(),
        ))
    }

    fn expect_failure<T: fmt::Debug>(
        &mut self,
        what: &str,
        got: Result<T, ConnectorError>,
        expect: Expect,
    ) -> Result<(), String> {
        match got {
            Ok(v) => {
                self.saw(what, &v);
                Err(format!(
                    "{what} succeeded ({v:?}); expected a failure with {expect}"
                ))
            }
            Err(e) => {
                self.saw_error(what, &e);
                if e.stage == expect.stage && e.kind == expect.kind {
                    Ok(())
                } else {
                    Err(format!("{what} failed with {e}; expected {expect}"))
                }
            }
        }
    }

    fn check_identity(
        &mut self,
        what: &str,
        identity: &ExternalIdentity,
        stage: Stage,
    ) -> Result<(), String> {
        self.saw(what, identity);
        if identity.connector_id.as_str() != self.fx.id {
            return Err(format!(
                "{what} gave an identity of connector {:?}, not {:?}",
                identity.connector_id.as_str(),
                self.fx.id
            ));
        }
        if identity.subject.trim().is_empty() {
            return Err(format!("{what} gave an identity with an empty subject"));
        }
        identity
            .clone()
            .screened(stage)
            .map(|_| ())
            .map_err(|e| format!("the broker refuses {what}'s identity: {e}"))
    }

    async fn check_browser(&mut self, connector: &dyn Connector) -> Option<ExternalIdentity> {
        let fx = self.fx;
        let flow = fx.browser.as_ref()?;
        let ctx = self.ctx();
        match connector.availability(&ctx) {
            Availability::Unavailable { reason } => self.report.fail(
                checks::AVAILABLE,
                format!("unavailable to the fixture's browser ({:?}): {reason}; set the fixture's user_agent", fx.user_agent),
            ),
            _ => self.report.pass(checks::AVAILABLE),
        }

        // Approved: an identity.
        let mut identity = None;
        if let Some((state, started)) = self.begin(connector, true).await {
            if let Some(callback) = self
                .callback(&flow.approve, checks::APPROVED, &state, &started)
                .await
            {
                match connector.complete(&self.ctx(), &callback).await {
                    Ok(id) => {
                        let result = self.check_identity("complete", &id, Stage::Callback);
                        self.report.outcome(checks::APPROVED, result);
                        identity = Some(id);
                    }
                    Err(e) => {
                        self.saw_error("complete", &e);
                        self.report.fail(
                            checks::APPROVED,
                            format!("the approved callback failed: {e}"),
                        );
                    }
                }
                match &flow.replay {
                    Replay::Rejected(expect) => {
                        if identity.is_some() {
                            let got = connector.complete(&self.ctx(), &callback).await;
                            let result = self.expect_failure("the replayed callback", got, *expect);
                            self.report.outcome(checks::REPLAY, result);
                            // A provider revokes what it issued for a code used twice
                            // (RFC 6749 4.1.2), so the refresh check gets the tokens
                            // of a sign-in of its own.
                            if let Some(again) = self.sign_in_again(connector, flow).await {
                                identity = Some(again);
                            }
                        } else {
                            self.report
                                .skip(checks::REPLAY, "no approved callback to replay");
                        }
                    }
                    Replay::NotDetected(why) => self.report.skip(checks::REPLAY, why.clone()),
                    Replay::Unset => {}
                }
            }
        } else {
            self.report.skip(checks::APPROVED, "begin failed");
        }

        for (slot, name) in [
            (&flow.no_code, checks::NO_CODE),
            (&flow.upstream_error, checks::UPSTREAM_ERROR),
        ] {
            let Some((step, expect)) = slot else { continue };
            let Some((state, started)) = self.begin(connector, false).await else {
                self.report.skip(name, "begin failed");
                continue;
            };
            if let Some(callback) = self.callback(step, name, &state, &started).await {
                let got = connector.complete(&self.ctx(), &callback).await;
                let result = self.expect_failure(name, got, *expect);
                self.report.outcome(name, result);
            }
        }
        identity
    }

    /// One more approved sign-in (for the refresh check after a replay);
    /// `None` if any step fails (the approved check already reported it).
    async fn sign_in_again(
        &mut self,
        connector: &dyn Connector,
        flow: &BrowserFlow<'a>,
    ) -> Option<ExternalIdentity> {
        let (state, started) = self.begin(connector, false).await?;
        let callback = self
            .callback(&flow.approve, checks::APPROVED, &state, &started)
            .await?;
        match connector.complete(&self.ctx(), &callback).await {
            Ok(identity) => {
                self.saw("complete", &identity);
                Some(identity)
            }
            Err(e) => {
                self.saw_error("complete", &e);
                None
            }
        }
    }

    async fn check_exchange(&mut self, connector: &dyn Connector) -> Option<ExternalIdentity> {
        let fx = self.fx;
        let flow = fx.exchange.as_ref()?;
        let types = connector.subject_token_types();
        if types.contains(&flow.token_type.as_str()) {
            self.report.pass(checks::TOKEN_TYPE);
        } else {
            self.report.fail(
                checks::TOKEN_TYPE,
                format!("subject_token_types() is {types:?}; it must list {:?}, or the broker never calls exchange", flow.token_type),
            );
        }
        let mut identity = None;
        match flow.fresh.call(()).await {
            Err(e) => self.report.fail(
                checks::EXCHANGED,
                format!("the fixture's upstream gave no subject token: {e}"),
            ),
            Ok(token) => {
                let request = ExchangeRequest::new(token.as_str(), flow.token_type.as_str());
                match connector.exchange(&self.ctx(), &request).await {
                    Ok(id) => {
                        let result = self.check_identity("exchange", &id, Stage::Exchange);
                        self.report.outcome(checks::EXCHANGED, result);
                        identity = Some(id);
                    }
                    Err(e) => {
                        self.saw_error("exchange", &e);
                        self.report.fail(
                            checks::EXCHANGED,
                            format!("a fresh subject token failed: {e}"),
                        );
                    }
                }
                match &flow.replay {
                    Replay::Rejected(expect) if identity.is_some() => {
                        let got = connector.exchange(&self.ctx(), &request).await;
                        let result =
                            self.expect_failure("the replayed subject token", got, *expect);
                        self.report.outcome(checks::EXCHANGE_REPLAY, result);
                    }
                    Replay::Rejected(_) => self
                        .report
                        .skip(checks::EXCHANGE_REPLAY, "no accepted token to replay"),
                    Replay::NotDetected(why) => {
                        self.report.skip(checks::EXCHANGE_REPLAY, why.clone())
                    }
                    Replay::Unset => {}
                }
            }
        }
        let made_up = ExchangeRequest::new(MADE_UP_TOKEN, flow.token_type.as_str());
        let got = connector.exchange(&self.ctx(), &made_up).await;
        let result = match (got, flow.invalid) {
            (got, Some(expect)) => self.expect_failure("a made-up subject token", got, expect),
            (Ok(id), None) => {
                self.saw("exchange", &id);
                Err(format!(
                    "a made-up subject token {MADE_UP_TOKEN:?} was accepted: {id:?}"
                ))
            }
            (Err(e), None) => {
                self.saw_error("exchange", &e);
                if e.stage == Stage::Exchange && e.kind != ErrorKind::Unsupported {
                    Ok(())
                } else {
                    Err(format!("a made-up subject token failed with {e}; expected stage=exchange and a kind other than unsupported"))
                }
            }
        };
        self.report.outcome(checks::EXCHANGE_INVALID, result);
        identity
    }

    async fn check_refresh(
        &mut self,
        connector: &dyn Connector,
        identity: Option<ExternalIdentity>,
    ) {
        let ctx = self.ctx();
        let declared = connector.supports_refresh();
        let result = if declared == self.fx.refresh_supported {
            Ok(())
        } else if declared {
            Err(
                "supports_refresh() is true but the fixture says refresh is not supported"
                    .to_owned(),
            )
        } else {
            Err("refresh works but supports_refresh() is false: override it to return true, or operators cannot set recheck_on_refresh".to_owned())
        };
        self.report.outcome(checks::REFRESH_DECLARED, result);
        if !self.fx.refresh_supported {
            let tokens = identity
                .as_ref()
                .and_then(|i| i.upstream_tokens.clone())
                .unwrap_or_default();
            let subject = identity
                .as_ref()
                .map(|i| i.subject.clone())
                .unwrap_or_else(|| "someone".to_owned());
            let got = connector.refresh(&ctx, &subject, &tokens).await;
            let result = self.expect_failure(
                "refresh",
                got,
                Expect::new(Stage::Refresh, ErrorKind::Unsupported),
            );
            self.report.outcome(checks::REFRESH_UNSUPPORTED, result);
            return;
        }
        let Some(first) = identity else {
            self.report.skip(
                checks::REFRESH,
                "no sign-in succeeded, so there is nothing to refresh",
            );
            return;
        };
        let Some(tokens) = first.upstream_tokens.clone() else {
            self.report.fail(
                checks::REFRESH,
                "refresh is supported but the sign-in kept no upstream tokens to refresh with",
            );
            return;
        };
        let result = match connector.refresh(&ctx, &first.subject, &tokens).await {
            Ok(again) => {
                self.saw("refresh", &again);
                if again.subject != first.subject {
                    Err(format!("refresh returned subject {:?} for {:?}: a refreshed identity must be the same person", again.subject, first.subject))
                } else if again.connector_id != first.connector_id {
                    Err(format!(
                        "refresh returned an identity of connector {:?}",
                        again.connector_id.as_str()
                    ))
                } else {
                    again
                        .screened(Stage::Refresh)
                        .map(|_| ())
                        .map_err(|e| format!("the broker refuses the refreshed identity: {e}"))
                }
            }
            Err(e) => {
                self.saw_error("refresh", &e);
                Err(format!("refresh right after the sign-in failed: {e}"))
            }
        };
        self.report.outcome(checks::REFRESH, result);
    }

    fn check_secrets_seen(&mut self) {
        if self.secrets.is_empty() {
            self.report
                .skip(checks::SECRETS_IN_OUTPUT, "the config has no secrets");
            return;
        }
        let mut leaks = Vec::new();
        for (what, shown) in &self.seen {
            for (key, value) in &self.secrets {
                if shown.contains(value.as_str()) {
                    leaks.push(format!("{what} shows secret {key:?}"));
                }
            }
        }
        leaks.dedup();
        self.report.outcome(
            checks::SECRETS_IN_OUTPUT,
            if leaks.is_empty() {
                Ok(())
            } else {
                Err(leaks.join("; "))
            },
        );
    }
}
