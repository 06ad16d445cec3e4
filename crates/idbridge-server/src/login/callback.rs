//! GET or POST /callback/{connector}: the upstream sends the person back. The
//! flow's state must be known, belong to this connector and to this browser, and
//! be claimed once (a repeated callback follows the first one's outcome); then
//! the connector completes the sign-in and [`super::finish`] resolves the account.

use super::failure::connector_failure;
use super::finish::{finish_link, finish_sign_in, SignIn};
use super::page_error::{PageError, PageResult};
use super::request::AuthRequest;
use super::response::{open_text, remember_outcome, AppResponse};
use crate::http::{fallback_locale, found, query_then_form, request_context, BROWSER_COOKIE};
use crate::state::AppState;
use crate::upstream::new_login;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use idbridge_core::{CallbackRequest, Locale};
use idbridge_store::{FirstLogin, FlowClaim, FlowRow};
use idbridge_tokens::hash_token;

/// The field the broker adds when it posts a form_post callback again from its
/// own origin; the connector never sees it.
const RESUBMITTED: &str = "idb_resubmitted";

/// GET or POST /callback/{connector}: the upstream sends the person back here.
pub async fn callback(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: Option<web::Bytes>,
) -> PageResult {
    let connector_id = path.into_inner();
    let locale = fallback_locale(&req);
    // The query first; a POSTed form (response_mode=form_post) adds what it lacks.
    let mut params = query_then_form(&req, body.as_deref())
        .map_err(|r| crate::screen::page_refusal(&req, &r, locale))?;
    let ip = state.proxies.of(&req);
    let checked = state.failures.check(ip, state.now_ms()).await;
    if let Err(crate::limits::Refused::Store(e)) = &checked {
        tracing::error!(stage = "rate_limit", error = %e, "cannot read the failure counter");
        return Err(PageError::db_down(locale));
    }
    if checked.is_err() {
        tracing::warn!(stage = "rate_limit", ip = ?ip, connector = %connector_id, "too many rejected callbacks from this address");
        return Err(PageError::page(
            locale,
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_sign_ins",
            "too_many_sign_ins_todo",
        ));
    }
    // Every rejection below counts against the address (state guessing).
    let expired = || async {
        state.failures.failed(ip, state.now_ms()).await;
        Err(PageError::expired(locale))
    };
    let Some(upstream_state) = params.get("state").filter(|s| !s.is_empty()).cloned() else {
        tracing::warn!(event = "login_failed", stage = "callback", connector = %connector_id, reason = "missing_state", "callback without state; cannot tell which sign-in it belongs to");
        return expired().await;
    };
    // Which flow this callback may claim: this connector's, started in this
    // browser. The check runs inside the claiming transaction, and again below
    // to say why a flow was refused.
    let caller = Caller {
        connector_id: connector_id.clone(),
        browser_hash: req.cookie(BROWSER_COOKIE).map(|c| hash_token(c.value())),
        // A provider answering with response_mode=form_post POSTs the callback
        // from its own site: a cross-site POST, with which browsers send no
        // SameSite=Lax cookie, so the browser secret is missing. The same fields
        // are posted again from a page of the broker's own origin (same-site: the
        // cookie comes along); the marker keeps it to one round.
        resubmit: req.method() == actix_web::http::Method::POST
            && !params.contains_key(RESUBMITTED),
    };
    let now = state.now();
    let check = caller.clone();
    let claim = state
        .store
        .claim_flow(&upstream_state, now, move |f| {
            check.verdict(f) == Verdict::Accepted
        })
        .await;
    let (flow, request) = match claim {
        Ok(FlowClaim::Claimed { flow, request }) => (flow, request),
        Ok(FlowClaim::Unknown) => {
            tracing::warn!(event = "login_failed", stage = "callback", connector = %connector_id, reason = "unknown_state", "callback state is unknown or was collected; the person must start again");
            return expired().await;
        }
        Ok(FlowClaim::Spent(_)) => {
            return repeated_callback(&state, &upstream_state, &connector_id, locale).await
        }
        Ok(FlowClaim::Refused(flow)) => match caller.verdict(&flow) {
            Verdict::OtherConnector => {
                tracing::warn!(event = "login_failed", stage = "callback", connector = %connector_id, flow_connector = %flow.connector_id, reason = "connector_mismatch", "callback arrived at another connector's path (mix-up); rejected before any upstream call");
                return expired().await;
            }
            Verdict::Resubmit => {
                let mut fields: Vec<(String, String)> =
                    params.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                fields.push((RESUBMITTED.to_owned(), "1".to_owned()));
                let action = state.endpoint(&format!("/callback/{connector_id}"));
                let origin = super::response::web_origin(&action).unwrap_or_default();
                tracing::debug!(stage = "callback", connector = %connector_id, "cross-site form_post callback without the browser cookie; posting it again from the broker's origin");
                return Ok(crate::pages::self_posting_form(
                    locale,
                    &action,
                    &origin,
                    &fields,
                    ("finishing_title", "finishing_intro"),
                ));
            }
            Verdict::OtherBrowser | Verdict::Accepted => {
                tracing::warn!(event = "login_failed", stage = "callback", connector = %connector_id, reason = "browser_mismatch", "callback came from a browser that did not start this sign-in; rejected");
                state.failures.failed(ip, state.now_ms()).await;
                return Err(PageError::page(
                    locale,
                    StatusCode::BAD_REQUEST,
                    "sign_in_wrong_browser",
                    "expired_todo",
                ));
            }
        },
        Err(e) => {
            tracing::error!(stage = "callback", error = %e, "cannot claim the flow");
            return Err(PageError::db_down(locale));
        }
    };
    let Some(ar) = request.and_then(|row| serde_json::from_value::<AuthRequest>(row.payload).ok())
    else {
        return expired().await;
    };
    let locale = ar.locale(&req);
    let Some(entry) = state.connector(&connector_id) else {
        return expired().await;
    };
    crate::telemetry::spans::connector(&connector_id);
    crate::telemetry::spans::client_id(&ar.client_id);
    let ctx = request_context(&state, &req, locale);
    params.remove(RESUBMITTED);
    let callback = CallbackRequest::new(
        params,
        state.endpoint(&format!("/callback/{connector_id}")),
        flow.data.clone(),
    );
    let completed = entry.connector.complete(&ctx, &callback).await;
    // Every connector's answer passes the same check (idbridge_core::ExternalIdentity::screened).
    let identity = match completed.and_then(|i| i.screened(idbridge_core::Stage::Callback)) {
        Ok(i) => i,
        Err(e) => {
            remember_outcome(&state, &upstream_state, None).await;
            return Err(connector_failure(&state, &ar, &connector_id, &e, locale).await);
        }
    };
    state.upstream.succeeded(&connector_id);
    // The app's turn at local work, now that the upstream has answered (crate::fair).
    let Ok(_turn) = state.fair.enter(&ar.client_id).await else {
        remember_outcome(&state, &upstream_state, None).await;
        return Err(PageError::page(
            locale,
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "busy_todo",
        ));
    };
    let login = new_login(&state, &connector_id, &identity);
    if let Some(user_id) = ar.link_to.clone() {
        return finish_link(
            &state,
            &flow.auth_request_id,
            &upstream_state,
            login,
            &user_id,
            locale,
        )
        .await;
    }
    if ar
        .pending
        .as_ref()
        .is_some_and(|p| p.browser_hash != flow.browser_hash)
    {
        // Someone else's waiting identity must never be linked to this account.
        tracing::warn!(event = "login_failed", stage = "account", connector = %connector_id, reason = "bind_wrong_browser", "a proof of account came from another browser than the sign-in that waits for it; rejected");
        remember_outcome(&state, &upstream_state, None).await;
        return Err(PageError::page(
            locale,
            StatusCode::BAD_REQUEST,
            "wrong_browser",
            "expired_todo",
        ));
    }
    let (policy, also_link) = match &ar.pending {
        // This sign-in proves an existing account for the identity that waits.
        Some(p) => (FirstLogin::Refuse, Some(p.login.clone())),
        None => (entry.first_login.store_policy(), None),
    };
    let signing_in = SignIn {
        request_id: &flow.auth_request_id,
        flow_state: &upstream_state,
        connector_id: &connector_id,
        login,
        policy,
        also_link,
        browser_hash: &flow.browser_hash,
        ip,
    };
    finish_sign_in(&state, &ar, signing_in, locale).await
}

/// Whether a flow may be claimed by this callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Accepted,
    /// The flow is another connector's (a mix-up).
    OtherConnector,
    /// A cross-site form_post without the browser cookie: post it again first.
    Resubmit,
    /// Another browser started this sign-in.
    OtherBrowser,
}

/// The callback as the flow check sees it.
#[derive(Debug, Clone)]
struct Caller {
    connector_id: String,
    /// The hash of the browser cookie, when the browser sent one.
    browser_hash: Option<String>,
    /// A POST that was not posted again yet.
    resubmit: bool,
}

impl Caller {
    fn verdict(&self, flow: &FlowRow) -> Verdict {
        if flow.connector_id != self.connector_id {
            return Verdict::OtherConnector;
        }
        match &self.browser_hash {
            None if self.resubmit => Verdict::Resubmit,
            Some(hash)
                if idbridge_tokens::constant_time_eq(
                    hash.as_bytes(),
                    flow.browser_hash.as_bytes(),
                ) =>
            {
                Verdict::Accepted
            }
            _ => Verdict::OtherBrowser,
        }
    }
}

/// A second callback for a state already used: follow the first one's outcome.
async fn repeated_callback(
    state: &AppState,
    upstream_state: &str,
    connector_id: &str,
    locale: Locale,
) -> PageResult {
    // The first callback may still be talking to the upstream; wait for it briefly.
    for _ in 0..50 {
        if let Ok(Some(flow)) = state.store.get_flow(upstream_state).await {
            if let Some(outcome) = flow.outcome {
                let opened = |key: &str| {
                    outcome
                        .get(key)
                        .and_then(|v| v.as_str())
                        .and_then(|s| open_text(state, s, upstream_state.as_bytes()))
                };
                if let Some(app) = opened("app")
                    .and_then(|clear| serde_json::from_slice::<AppResponse>(&clear).ok())
                {
                    tracing::info!(event = "repeated_callback", connector = connector_id, "repeated callback for a completed sign-in; answering the app as the first one did");
                    return Ok(app.respond());
                }
                if let Some(url) =
                    opened("redirect").and_then(|clear| String::from_utf8(clear).ok())
                {
                    tracing::info!(event = "repeated_callback", connector = connector_id, "repeated callback for a completed sign-in; sending the browser where the first one went");
                    return Ok(found(&url));
                }
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    tracing::warn!(
        event = "login_failed",
        stage = "callback",
        connector = connector_id,
        reason = "state_reused",
        "callback state was already used"
    );
    Err(PageError::expired(locale))
}
