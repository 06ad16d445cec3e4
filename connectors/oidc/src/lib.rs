//! The `oidc` connector: sign people in at any OpenID Connect provider
//! (Keycloak, Entra ID, Okta, Google, Authentik, …) with the authorization code
//! flow. Setup, every key and troubleshooting: `docs/connectors/oidc.md`.
//!
//! - `prepare` fetches the discovery document and checks it (the issuer equals
//!   the configured one exactly, `code` is offered, S256 PKCE if it lists
//!   methods, a token endpoint, a usable ID token algorithm), then the keys
//!   (JWKS). Both stay in memory, fetched again after `discovery_ttl_secs`;
//!   an ID token signed with an unknown `kid` refetches the keys at once, at
//!   most once per `jwks_refetch_min_secs` (key rotation without a restart,
//!   and no amplification from forged tokens).
//! - `begin` redirects with `response_type=code`, the broker's state as it
//!   is, a fresh nonce and PKCE S256 challenge (kept in flow data with the
//!   kit's `FlowSecrets`), and the app's `prompt`, `max_age`, `login_hint` and
//!   `ui_locales`; `response_mode=form_post` on request.
//! - `complete` checks RFC 9207 `iss` (required when the provider advertises
//!   it), maps the provider's `error`, exchanges the code with the verifier and
//!   the configured client authentication (`client_secret_basic`,
//!   `client_secret_post`, `private_key_jwt`), verifies the ID token strictly
//!   ([`verify`]), reads userinfo when `claims_source = "userinfo"` (its `sub`
//!   must be the ID token's), and maps the claims.
//! - `refresh` uses the refresh token grant; a new ID token is verified and
//!   must name the same person; `invalid_grant` is `InvalidCode`, which ends
//!   the app's grant.
//!
//! # Why not the `openidconnect` crate
//!
//! The workspace has `openidconnect` 4 (as a test client of the broker). This
//! connector uses `reqwest` for the few HTTP calls and `jsonwebtoken` for the
//! signature only, with every other check written out in [`verify`] — the same
//! design as the broker's own `idbridge-tokens::KeySet::verify` — because:
//! the checks must use the time the broker passes in (`RequestContext::now`),
//! not the system clock; each failure must become an `ErrorKind` with a `fix`
//! that names exactly what failed (wrong `iss`, `aud` without our client,
//! a nonce mismatch, an expired token, an unknown `kid`), which the crate's
//! typed errors do not give; unknown-`kid` refetching with a rate limit, HTTP
//! without redirects and with a body cap, and discovery documents with
//! unknown values must be ours to decide; and `jsonwebtoken`, `reqwest` and
//! `ring` are already in every build, while `openidconnect` would bring
//! `oauth2` and a second set of RSA, ECDSA and Ed25519 implementations into
//! the binary. The `oauth2` crate alone would only build two form posts.

pub mod config;
pub mod discovery;
mod doctor;
mod http;
pub mod issuer;
pub mod preset;
pub mod token;
pub mod verify;

#[cfg(feature = "test-support")]
pub mod test_provider;

use async_trait::async_trait;
use config::{ClaimsSource, OidcSettings};
use discovery::Discovery;
use http::{json_object, shown, Http};
use idbridge_connector_kit::call::endpoint;
use idbridge_connector_kit::flow::FlowSecrets;
use idbridge_connector_kit::oauth_errors::{authorization_error, clean_description};
use idbridge_core::{
    BeginRequest, BuildContext, CallbackRequest, ConfigError, Connector, ConnectorError,
    ConnectorFactory, ConnectorId, ConnectorSettings, ErrorKind, ExternalIdentity, LinkKey,
    Problem, Profile, RequestContext, Stage, Started, UpstreamTokens,
};
use preset::Preset;
use serde_json::{Map, Value};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use verify::{KeySet, Refusal};

pub use doctor::doctor;

pub const KIND: &str = "oidc";

/// Builds `type = "oidc"` connectors.
pub struct OidcFactory;

impl ConnectorFactory for OidcFactory {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn build(
        &self,
        settings: &ConnectorSettings,
        _ctx: &BuildContext,
    ) -> Result<Arc<dyn Connector>, Vec<ConfigError>> {
        Ok(Arc::new(OidcConnector::new(settings)?))
    }

    /// Fetches the discovery document and the keys and says what is wrong
    /// (unreachable, issuer mismatch, no `code`, no PKCE, no usable keys),
    /// then asks the authorization endpoint about our callback: a provider
    /// that refuses an unregistered `redirect_uri` says so. `doctor` is
    /// synchronous and runs inside the CLI's runtime, so the checks run on a
    /// thread of their own with a small runtime.
    fn doctor(&self, settings: &ConnectorSettings, ctx: &BuildContext) -> Vec<Problem> {
        let Ok(connector) = OidcConnector::new(settings) else {
            return Vec::new(); // build already reported the config errors
        };
        doctor(connector, ctx)
    }
}

/// What `prepare` fetched.
struct Ready {
    discovery: Discovery,
    keys: KeySet,
    fetched_at: i64,
}

pub struct OidcConnector {
    id: ConnectorId,
    name: String,
    settings: OidcSettings,
    http: Http,
    ready: RwLock<Option<Arc<Ready>>>,
    /// When the keys were last fetched because of an unknown `kid`.
    last_kid_fetch: AtomicI64,
    preset: Preset,
}

impl std::fmt::Debug for OidcConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcConnector")
            .field("id", &self.id)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn claim_string(claims: &Map<String, Value>, name: &str) -> Option<String> {
    match claims.get(name)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn claim_bool(claims: &Map<String, Value>, name: &str) -> Option<bool> {
    match claims.get(name)? {
        Value::Bool(b) => Some(*b),
        // Some providers (Cognito) send "true"/"false".
        Value::String(s) if s == "true" => Some(true),
        Value::String(s) if s == "false" => Some(false),
        _ => None,
    }
}

impl OidcConnector {
    pub fn new(settings: &ConnectorSettings) -> Result<Self, Vec<ConfigError>> {
        Self::with_preset(settings, Preset::oidc())
    }

    /// A preset's connector: `settings.options` are this connector's options
    /// (the preset's keys translated), `preset` its issuer rule and hooks.
    pub fn with_preset(
        settings: &ConnectorSettings,
        preset: Preset,
    ) -> Result<Self, Vec<ConfigError>> {
        let mut parsed = OidcSettings::parse_with(settings, preset.secret_method)?;
        if let Some(rule) = &preset.issuer {
            parsed.issuer_rule = rule.clone();
        }
        let http = Http::new(parsed.timeouts, settings.id.as_str()).map_err(|e| {
            vec![ConfigError::new(
                format!("connectors[{}]", settings.id),
                format!("cannot build the HTTP client: {e}"),
            )]
        })?;
        Ok(Self {
            id: settings.id.clone(),
            name: settings
                .name
                .clone()
                .unwrap_or_else(|| preset.default_name.into()),
            settings: parsed,
            http,
            ready: RwLock::new(None),
            last_kid_fetch: AtomicI64::new(i64::MIN),
            preset,
        })
    }

    pub fn settings(&self) -> &OidcSettings {
        &self.settings
    }

    fn current(&self) -> Option<Arc<Ready>> {
        self.ready.read().ok().and_then(|r| r.clone())
    }

    fn store(&self, ready: Ready) {
        if let Ok(mut slot) = self.ready.write() {
            *slot = Some(Arc::new(ready));
        }
    }

    fn ready(&self, stage: Stage) -> Result<Arc<Ready>, ConnectorError> {
        self.current().ok_or_else(|| {
            ConnectorError::new(stage, ErrorKind::UpstreamUnavailable).fix(
                "the provider's discovery document is not loaded yet (prepare has not succeeded); see the connector's setup error",
            )
        })
    }

    async fn fetch_keys(&self, stage: Stage, jwks_uri: &str) -> Result<KeySet, ConnectorError> {
        let what = "the provider's keys (jwks_uri)";
        let answer = self
            .http
            .send(
                stage,
                (what, endpoint::JWKS),
                jwks_uri,
                self.http.get(jwks_uri),
            )
            .await?;
        if answer.status != 200 {
            return Err(ConnectorError::new(
                stage,
                if answer.status >= 500 {
                    ErrorKind::UpstreamUnavailable
                } else {
                    ErrorKind::BadResponse
                },
            )
            .upstream(format!("HTTP {}", answer.status), "jwks_uri")
            .fix(format!(
                "the provider's jwks_uri {} answered HTTP {}",
                shown(jwks_uri),
                answer.status
            )));
        }
        let doc = json_object(stage, what, jwks_uri, &answer)?;
        let keys = KeySet::parse(&doc).map_err(|why| {
            ConnectorError::new(stage, ErrorKind::BadResponse)
                .fix(format!("{} is not a JWKS: {why}", shown(jwks_uri)))
        })?;
        if keys.keys.is_empty() {
            return Err(ConnectorError::new(stage, ErrorKind::BadResponse).fix(format!(
                "the provider's jwks_uri {} holds no public signing key this connector can use ({} skipped: symmetric, encryption or unsupported curve)",
                shown(jwks_uri),
                keys.skipped
            )));
        }
        Ok(keys)
    }

    /// Discovery, checked, then the keys.
    async fn load(&self, stage: Stage, now: i64) -> Result<Ready, ConnectorError> {
        let doc = discovery::fetch(&self.http, &self.settings.issuer).await?;
        let (discovery, findings) = discovery::check(&doc, &self.settings);
        for f in findings.iter().filter(|f| !f.fatal) {
            tracing::warn!(connector = %self.id, stage = "setup", "{}", f.message);
        }
        let Some(discovery) = discovery else {
            let mut e = discovery::first_fatal(&findings);
            e.stage = stage;
            return Err(e);
        };
        let keys = self.fetch_keys(stage, &discovery.jwks_uri).await?;
        Ok(Ready {
            discovery,
            keys,
            fetched_at: now,
        })
    }

    /// The cached discovery, fetched again once older than `discovery_ttl_secs`
    /// (a failure keeps the old one and is logged).
    async fn fresh(&self, stage: Stage, now: i64) -> Result<Arc<Ready>, ConnectorError> {
        let ready = self.ready(stage)?;
        if now.saturating_sub(ready.fetched_at) < self.settings.discovery_ttl {
            return Ok(ready);
        }
        match self.load(stage, now).await {
            Ok(r) => {
                self.store(r);
                self.ready(stage)
            }
            Err(e) => {
                tracing::warn!(connector = %self.id, error = %e, "could not fetch the discovery document again; using the one loaded before");
                Ok(ready)
            }
        }
    }

    /// Refetch the keys for an unknown `kid`, unless that was done less than
    /// `jwks_refetch_min_secs` ago. `Ok(false)`: not refetched.
    async fn refetch_keys(&self, stage: Stage, now: i64) -> Result<bool, ConnectorError> {
        let min = self.settings.jwks_refetch_min;
        let claimed = self
            .last_kid_fetch
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
                (now.saturating_sub(last) >= min).then_some(now)
            })
            .is_ok();
        if !claimed {
            return Ok(false);
        }
        let ready = self.ready(stage)?;
        let keys = self.fetch_keys(stage, &ready.discovery.jwks_uri).await?;
        tracing::info!(connector = %self.id, kids = ?keys.kids(), "fetched the provider's keys again for a token with an unknown kid");
        self.store(Ready {
            discovery: ready.discovery.clone(),
            keys,
            fetched_at: ready.fetched_at,
        });
        Ok(true)
    }

    /// Verify an ID token, refetching the keys once for an unknown `kid`.
    async fn verify_id_token(
        &self,
        stage: Stage,
        token: &str,
        now: i64,
        nonce: Option<&str>,
        access_token: Option<&str>,
        max_age: Option<u64>,
    ) -> Result<Map<String, Value>, ConnectorError> {
        let failed =
            |why: String| ConnectorError::new(stage, ErrorKind::TokenVerificationFailed).fix(why);
        let mut refetched = false;
        loop {
            let ready = self.ready(stage)?;
            let expect = verify::Expect {
                issuer: &self.settings.issuer_rule,
                client_id: &self.settings.client_id,
                algorithms: &ready.discovery.algorithms,
                now,
                leeway: self.settings.leeway,
                nonce,
                access_token,
                max_age,
            };
            match verify::verify(token, &ready.keys, &expect) {
                Ok(claims) => {
                    self.preset.hooks.check_claims(stage, &claims)?;
                    return Ok(claims);
                }
                Err(Refusal::Invalid(why)) => return Err(failed(why)),
                Err(Refusal::UnknownKid(kid)) if !refetched => {
                    if self.refetch_keys(stage, now).await? {
                        refetched = true;
                        continue;
                    }
                    return Err(failed(format!(
                        "the ID token is signed with key {kid:?}, which the provider's keys do not hold, and they were fetched again less than {} s ago (jwks_refetch_min_secs): a forged token, or the provider rotated keys twice within that time",
                        self.settings.jwks_refetch_min
                    )));
                }
                Err(Refusal::UnknownKid(kid)) => {
                    return Err(failed(format!(
                        "the ID token is signed with key {kid:?}, which the provider's keys (jwks_uri) do not hold even after fetching them again: forged, or signed by another provider"
                    )))
                }
            }
        }
    }

    /// The ID token's claims, with userinfo's over them when configured.
    async fn claims(
        &self,
        stage: Stage,
        ready: &Ready,
        id_claims: Map<String, Value>,
        access_token: &str,
    ) -> Result<Map<String, Value>, ConnectorError> {
        if self.settings.claims_source != ClaimsSource::Userinfo {
            return Ok(id_claims);
        }
        let Some(url) = ready.discovery.userinfo_endpoint.as_deref() else {
            return Err(ConnectorError::new(stage, ErrorKind::Misconfigured)
                .fix("claims_source = \"userinfo\" but the provider has no userinfo_endpoint"));
        };
        let info = token::userinfo(&self.http, Stage::Userinfo, url, access_token).await?;
        let sub = id_claims.get("sub").and_then(Value::as_str);
        if sub.is_some() && info.get("sub").and_then(Value::as_str) != sub {
            return Err(ConnectorError::new(Stage::Userinfo, ErrorKind::TokenVerificationFailed)
                .fix("the userinfo answer's sub is not the ID token's: it is about another person and is not used (OIDC Core 5.3.2)"));
        }
        let mut merged = id_claims;
        for (k, v) in info {
            if !matches!(
                k.as_str(),
                "iss" | "aud" | "azp" | "exp" | "iat" | "nonce" | "auth_time"
            ) {
                merged.insert(k, v);
            }
        }
        Ok(merged)
    }

    fn subject(&self, stage: Stage, claims: &Map<String, Value>) -> Result<String, ConnectorError> {
        let name = &self.settings.claims.subject;
        claim_string(claims, name).ok_or_else(|| {
            ConnectorError::new(stage, ErrorKind::Misconfigured).fix(format!(
                "the provider's claims have no {name:?} (claims.subject) to identify the person by; set claims.subject to a claim the provider sends (sub is always there)"
            ))
        })
    }

    fn identity(
        &self,
        stage: Stage,
        claims: &Map<String, Value>,
        tokens: UpstreamTokens,
        callback: Option<&CallbackRequest>,
    ) -> Result<ExternalIdentity, ConnectorError> {
        let names = &self.settings.claims;
        let subject = self.subject(stage, claims)?;
        let text = |name: &str| claim_string(claims, name);
        let email = text(&names.email).and_then(|e| match Profile::safe_email(&e) {
            Ok(e) => Some(e),
            Err(why) => {
                tracing::info!(connector = %self.id, "the provider's email {why}; not kept");
                None
            }
        });
        let phone = text(&names.phone_number).and_then(|p| match Profile::safe_phone(&p) {
            Ok(p) => Some(p),
            Err(why) => {
                tracing::info!(connector = %self.id, "the provider's phone number {why}; not kept");
                None
            }
        });
        let profile = Profile {
            name: text(&names.name),
            given_name: text(&names.given_name),
            family_name: text(&names.family_name),
            preferred_username: text(&names.preferred_username),
            picture: text(&names.picture),
            locale: text(&names.locale),
            email_verified: email
                .as_ref()
                .and(claim_bool(claims, &names.email_verified)),
            email,
            phone_number_verified: phone
                .as_ref()
                .and(claim_bool(claims, &names.phone_number_verified)),
            phone_number: phone,
        };
        let mut raw: Map<String, Value> = claims
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "nonce" | "at_hash" | "c_hash" | "s_hash"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let groups: Option<Vec<Value>> = match claims.get(&names.groups) {
            Some(Value::Array(a)) => Some(
                a.iter()
                    .filter(|v| v.is_string())
                    .take(256)
                    .cloned()
                    .collect(),
            ),
            Some(Value::String(s)) => Some(vec![Value::String(s.clone())]),
            _ => None,
        };
        raw.remove(&names.groups);
        if let Some(groups) = groups {
            raw.insert("groups".into(), Value::Array(groups));
        }
        let mut raw_claims = Value::Object(raw);
        if raw_claims.to_string().len() > 16 * 1024 {
            // Keep the audit log small: only what identifies and what was mapped.
            let keep = ["iss", "sub", "aud", "auth_time", "acr", "amr", "groups"];
            if let Value::Object(m) = &mut raw_claims {
                m.retain(|k, _| keep.contains(&k.as_str()));
            }
        }
        let mut identity = ExternalIdentity {
            connector_id: self.id.clone(),
            link_key: None,
            subject,
            profile,
            upstream_tokens: Some(tokens),
            raw_claims,
        };
        self.preset
            .hooks
            .map_identity(stage, &mut identity, claims, callback)?;
        identity.link_key = self.settings.link_scope.as_ref().map(|scope| LinkKey {
            scope: scope.clone(),
            key: identity.subject.clone(),
        });
        Ok(identity)
    }

    fn client<'a>(
        &'a self,
        stage: Stage,
        ready: &'a Ready,
        now: i64,
    ) -> Result<token::Client<'a>, ConnectorError> {
        let provided_secret = match self.settings.credentials {
            config::Credentials::Provided(_) => Some(self.preset.hooks.client_secret(stage, now)?),
            _ => None,
        };
        Ok(token::Client {
            http: &self.http,
            client_id: &self.settings.client_id,
            credentials: &self.settings.credentials,
            token_endpoint: &ready.discovery.token_endpoint,
            now,
            provided_secret,
        })
    }

    fn upstream_tokens(t: &token::Tokens, now: i64, old_refresh: Option<&str>) -> UpstreamTokens {
        UpstreamTokens {
            access_token: Some(t.access_token.clone()),
            refresh_token: t
                .refresh_token
                .clone()
                .or_else(|| old_refresh.map(str::to_owned)),
            access_expires_at: t.expires_in.map(|s| now.saturating_add(s)),
            refresh_expires_at: t.refresh_expires_in.map(|s| now.saturating_add(s)),
            scope: t.scope.clone(),
        }
    }

    fn authorization_url(
        &self,
        discovery: &Discovery,
        request: &BeginRequest,
        secrets: &FlowSecrets,
    ) -> Result<String, ConnectorError> {
        let mut url = url::Url::parse(&discovery.authorization_endpoint).map_err(|_| {
            ConnectorError::new(Stage::Begin, ErrorKind::Misconfigured)
                .fix("the provider's authorization_endpoint is not a URL")
        })?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code");
            q.append_pair("client_id", &self.settings.client_id);
            q.append_pair("redirect_uri", &request.callback_url);
            q.append_pair("scope", &self.settings.scopes.join(" "));
            q.append_pair("state", &request.state);
            if let Some(nonce) = &secrets.nonce {
                q.append_pair("nonce", nonce);
            }
            if let Some(challenge) = secrets.code_challenge() {
                q.append_pair("code_challenge", &challenge);
                q.append_pair("code_challenge_method", "S256");
            }
            if self.settings.form_post {
                q.append_pair("response_mode", "form_post");
            }
            if !request.prompt.is_empty() {
                let prompt: Vec<&str> = request.prompt.iter().map(|p| p.as_str()).collect();
                q.append_pair("prompt", &prompt.join(" "));
            }
            if let Some(max_age) = request.max_age {
                q.append_pair("max_age", &max_age.to_string());
            }
            if let Some(hint) = request.login_hint.as_deref().filter(|h| !h.is_empty()) {
                q.append_pair("login_hint", hint);
            }
            if let Some(locales) = request.ui_locales.as_deref().filter(|l| !l.is_empty()) {
                q.append_pair("ui_locales", locales);
            }
            for (k, v) in self.preset.hooks.authorization_params() {
                q.append_pair(&k, &v);
            }
        }
        Ok(url.to_string())
    }
}

#[async_trait]
impl Connector for OidcConnector {
    fn id(&self) -> &ConnectorId {
        &self.id
    }

    fn kind(&self) -> &'static str {
        self.preset.kind
    }

    fn display_name(&self) -> &str {
        &self.name
    }

    fn vouches_for_email(&self) -> bool {
        self.preset.hooks.vouches_for_email()
    }

    async fn prepare(&self, now: i64) -> Result<(), ConnectorError> {
        let ready = self.load(Stage::Setup, now).await?;
        tracing::info!(connector = %self.id, issuer = %ready.discovery.issuer, kids = ?ready.keys.kids(), algorithms = ?ready.discovery.algorithms, "loaded the provider's discovery document and keys");
        self.store(ready);
        Ok(())
    }

    async fn begin(
        &self,
        _ctx: &RequestContext,
        request: &BeginRequest,
    ) -> Result<Started, ConnectorError> {
        let ready = self.ready(Stage::Begin)?;
        let secrets = FlowSecrets::generate();
        let url = self.authorization_url(&ready.discovery, request, &secrets)?;
        let mut flow_data = secrets.to_flow_data();
        if let (Some(max_age), Value::Object(m)) = (request.max_age, &mut flow_data) {
            m.insert("max_age".into(), Value::from(max_age));
        }
        Ok(Started {
            begin: idbridge_core::Begin::Redirect(url),
            flow_data,
        })
    }

    async fn complete(
        &self,
        ctx: &RequestContext,
        callback: &CallbackRequest,
    ) -> Result<ExternalIdentity, ConnectorError> {
        let ready = self.fresh(Stage::Callback, ctx.now).await?;
        // RFC 9207: checked on errors too (a mix-up attacker's error is still his).
        match (callback.param("iss"), ready.discovery.iss_parameter) {
            (Some(iss), _) if !self.settings.issuer_rule.accepts_response_iss(iss) => {
                return Err(ConnectorError::new(Stage::Callback, ErrorKind::InvalidRequest)
                    .upstream("iss", iss.chars().take(200).collect::<String>())
                    .fix(format!(
                        "the authorization response says it comes from {iss:?}, not {:?} (RFC 9207): a mix-up between providers, or a forged callback",
                        self.settings.issuer_rule.discovery_issuer()
                    )));
            }
            (None, true) => {
                return Err(ConnectorError::new(Stage::Callback, ErrorKind::InvalidRequest).fix(
                    "the authorization response has no iss although the provider advertises authorization_response_iss_parameter_supported (RFC 9207): a forged callback, or a proxy dropped the parameter",
                ));
            }
            _ => {}
        }
        if let Some(code) = callback.param("error") {
            let description = clean_description(callback.param("error_description").unwrap_or(""));
            return Err(self
                .preset
                .hooks
                .upstream_error(authorization_error(code, &description)));
        }
        let flow = FlowSecrets::from_callback(callback)?;
        let Some(code) = callback.param("code") else {
            return Err(
                ConnectorError::new(Stage::Callback, ErrorKind::InvalidRequest)
                    .fix("the provider's callback has neither code nor error"),
            );
        };
        let verifier = flow.require_pkce_verifier()?;
        let nonce = flow.require_nonce()?;
        let max_age = callback.flow_data.get("max_age").and_then(Value::as_u64);
        let tokens = self
            .client(Stage::TokenExchange, &ready, ctx.now)?
            .exchange_code(code, &callback.callback_url, verifier)
            .await
            .map_err(|e| self.preset.hooks.upstream_error(e))?;
        let Some(id_token) = tokens.id_token.as_deref() else {
            return Err(ConnectorError::new(Stage::TokenExchange, ErrorKind::BadResponse)
                .fix("the token endpoint issued no id_token: the provider must treat this client as OpenID Connect (scope openid)"));
        };
        let id_claims = self
            .verify_id_token(
                Stage::TokenExchange,
                id_token,
                ctx.now,
                Some(nonce),
                Some(&tokens.access_token),
                max_age,
            )
            .await?;
        let ready = self.ready(Stage::Callback)?;
        let claims = self
            .claims(Stage::Callback, &ready, id_claims, &tokens.access_token)
            .await?;
        self.identity(
            Stage::Callback,
            &claims,
            Self::upstream_tokens(&tokens, ctx.now, None),
            Some(callback),
        )
    }

    fn supports_refresh(&self) -> bool {
        true
    }

    async fn refresh(
        &self,
        ctx: &RequestContext,
        subject: &str,
        tokens: &UpstreamTokens,
    ) -> Result<ExternalIdentity, ConnectorError> {
        let Some(refresh_token) = tokens.refresh_token.as_deref() else {
            return Err(ConnectorError::new(Stage::Refresh, ErrorKind::Misconfigured).fix(
                "the provider issued no refresh token at sign-in, so the person cannot be re-checked: add offline_access to scopes (and allow the refresh_token grant for the client at the provider), or turn recheck_on_refresh off",
            ));
        };
        let ready = self.fresh(Stage::Refresh, ctx.now).await?;
        let fresh = self
            .client(Stage::Refresh, &ready, ctx.now)?
            .refresh(refresh_token)
            .await
            .map_err(|e| self.preset.hooks.upstream_error(e))?;
        let mut claims = Map::new();
        if let Some(id_token) = fresh.id_token.as_deref() {
            claims = self
                .verify_id_token(
                    Stage::Refresh,
                    id_token,
                    ctx.now,
                    None,
                    Some(&fresh.access_token),
                    None,
                )
                .await?;
        }
        let ready = self.ready(Stage::Refresh)?;
        if self.settings.claims_source == ClaimsSource::Userinfo || !claims.is_empty() {
            claims = self
                .claims(Stage::Refresh, &ready, claims, &fresh.access_token)
                .await?;
        }
        let upstream = Self::upstream_tokens(&fresh, ctx.now, Some(refresh_token));
        if claims.is_empty() {
            // No new ID token and no userinfo: the grant itself is the re-check.
            return Ok(ExternalIdentity {
                connector_id: self.id.clone(),
                subject: subject.to_owned(),
                link_key: self.settings.link_scope.as_ref().map(|scope| LinkKey {
                    scope: scope.clone(),
                    key: subject.to_owned(),
                }),
                profile: Profile::default(),
                upstream_tokens: Some(upstream),
                raw_claims: Value::Null,
            });
        }
        let identity = self.identity(Stage::Refresh, &claims, upstream, None)?;
        if identity.subject != subject {
            return Err(
                ConnectorError::new(Stage::Refresh, ErrorKind::TokenVerificationFailed).fix(
                    "the provider's refreshed ID token names another person than the sign-in did",
                ),
            );
        }
        Ok(identity)
    }
}
