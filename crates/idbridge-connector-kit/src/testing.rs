//! Fixture builders for connector tests: what the broker would hand a connector
//! (settings, build context, request context, begin and callback requests),
//! built in one line each, so a connector's tests say only what matters.
//!
//! They are for tests: a malformed id or URL given to them panics.
#![allow(clippy::panic)] // test helpers: a bad fixture is the test's own bug

use idbridge_core::{
    BeginRequest, BuildContext, CallbackRequest, Connector, ConnectorFactory, ConnectorId,
    ConnectorSettings, Locale, RequestContext, Shared,
};
pub mod node;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The issuer test connectors are built for (nothing listens there).
pub const ISSUER: &str = "http://127.0.0.1:9";

/// A plain desktop browser.
pub const BROWSER_UA: &str = "Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0";

/// `{ISSUER}/callback/{id}`.
pub fn callback_url(id: &str) -> String {
    format!("{ISSUER}/callback/{id}")
}

/// One `[[connectors]]` entry: `id`, `type = kind`, no name, `options`.
pub fn settings(id: &str, kind: &str, options: serde_json::Value) -> ConnectorSettings {
    let id = ConnectorId::parse(id).unwrap_or_else(|e| panic!("{e}"));
    ConnectorSettings {
        id,
        kind: kind.to_owned(),
        name: None,
        options,
    }
}

/// A build context for connector `id` at [`ISSUER`], dev mode on (so
/// development-only factories build too), a process-local shared cache.
pub fn build_context(id: &str) -> BuildContext {
    BuildContext::new(ISSUER, callback_url(id), true)
}

/// A build context for connector `id` at `issuer` (e.g. to test a doctor check
/// of the callback domain).
pub fn build_context_at(issuer: &str, id: &str, dev_mode: bool) -> BuildContext {
    BuildContext::new(issuer, format!("{issuer}/callback/{id}"), dev_mode)
}

/// A build context whose shared cache is `shared` (two connectors built with
/// the same one stand for two broker instances).
pub fn build_context_sharing(id: &str, shared: &Shared) -> BuildContext {
    BuildContext {
        shared: shared.clone(),
        ..build_context(id)
    }
}

/// Build connector `id` from `options` with `factory` at [`ISSUER`]; the errors,
/// if any, as one `Debug` string (`connectors[ID].key` in it for each).
pub fn build(
    factory: &dyn ConnectorFactory,
    id: &str,
    options: serde_json::Value,
) -> Result<Arc<dyn Connector>, String> {
    factory
        .build(&settings(id, factory.kind(), options), &build_context(id))
        .map_err(|e| format!("{e:?}"))
}

/// `base` with the keys of `extra` set (a `null` value sets `null`, which a
/// connector reads as the key left out for `Option` keys).
pub fn merged(base: &serde_json::Value, extra: serde_json::Value) -> serde_json::Value {
    let mut out = base.clone();
    if let (Some(out), Some(extra)) = (out.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

/// The request of a browser with `user_agent`, speaking `locale`, at `now`.
pub fn request(user_agent: &str, locale: Locale, now: i64) -> RequestContext {
    RequestContext::new(user_agent, locale, now)
}

/// `BeginRequest::new(state, callback_url(id))`; add the app's scopes, prompt…
/// with the `with_` methods.
pub fn begin_request(id: &str, state: &str) -> BeginRequest {
    BeginRequest::new(state, callback_url(id))
}

/// Parameters from pairs.
pub fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The query parameters of `url` (where an upstream sent the browser back).
pub fn query_params(url: &str) -> BTreeMap<String, String> {
    url::Url::parse(url)
        .unwrap_or_else(|e| panic!("{url:?} is not a URL: {e}"))
        .query_pairs()
        .into_owned()
        .collect()
}

/// The callback to connector `id` with `params`, no flow data.
pub fn callback(id: &str, pairs: &[(&str, &str)]) -> CallbackRequest {
    CallbackRequest::new(params(pairs), callback_url(id), serde_json::Value::Null)
}

/// The callback the broker hands `complete` when the upstream sent the browser
/// to `url`: its query parameters, with what `begin` kept.
pub fn callback_from_url(id: &str, url: &str, flow_data: serde_json::Value) -> CallbackRequest {
    CallbackRequest::new(query_params(url), callback_url(id), flow_data)
}

/// The browser at an upstream that answers `url` (an authorization URL) with
/// a redirect back at once (a simulator whose person approves or refuses): the
/// parameters of the redirect's target, i.e. the callback's. `Err` when the
/// upstream answers anything else.
pub async fn follow_upstream_redirect(url: &str) -> Result<BTreeMap<String, String>, String> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())?;
    let answer = client.get(url).send().await.map_err(|e| e.to_string())?;
    let status = answer.status();
    let location = answer
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|l| l.to_str().ok())
        .map(str::to_owned);
    match location {
        Some(l) if status.is_redirection() => Ok(query_params(&l)),
        _ => Err(format!(
            "the upstream answered {status} without a redirect: {}",
            answer
                .text()
                .await
                .unwrap_or_default()
                .chars()
                .take(200)
                .collect::<String>()
        )),
    }
}

/// Install a test peer once, however many test processes ask at the same
/// time: `install` runs only while holding `lock` (a directory made with
/// `create_dir`, waited for up to `wait`), and only if `installed` still says
/// no. The lock is removed whatever `install` returns.
pub fn install_once(
    lock: &Path,
    wait: Duration,
    installed: impl Fn() -> bool,
    install: impl FnOnce() -> Result<(), String>,
) -> Result<(), String> {
    if installed() {
        return Ok(());
    }
    let started = Instant::now();
    while std::fs::create_dir(lock).is_err() {
        if started.elapsed() > wait {
            return Err(format!("{} stayed locked for {wait:?}", lock.display()));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let result = if installed() { Ok(()) } else { install() };
    let _ = std::fs::remove_dir(lock);
    result
}
