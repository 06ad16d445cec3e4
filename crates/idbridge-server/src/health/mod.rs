//! Health: `/healthz` (the combined view: database and each connector's
//! upstream), `/livez` (the process serves) and `/readyz` (this instance can take
//! traffic). What the instance remembers between probes is in [`status`].

pub mod status;

use crate::state::AppState;
use actix_web::http::header;
use actix_web::{web, HttpResponse};

/// The most `/healthz` waits for the database: a stalled database shows as
/// unavailable within this bound instead of hanging the health check.
const HEALTH_PING_BOUND: std::time::Duration = std::time::Duration::from_millis(1500);

/// GET /healthz, the combined view: the database and each connector's upstream. 503 only when the
/// database does not answer within [`HEALTH_PING_BOUND`] (this instance cannot
/// serve); a failing upstream makes the broker "degraded" but it still serves
/// every other connector.
pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    let now = state.now();
    let mut connectors = serde_json::Map::new();
    let mut degraded = false;
    for (id, entry) in &state.connectors {
        let value = if let Some(e) = entry.setup.last_error() {
            serde_json::json!({
                "status": "not_ready",
                "stage": e.stage.as_str(),
                "kind": e.kind.as_str(),
                "upstream_code": e.upstream_code,
            })
        } else if !entry.setup.is_ready() {
            "not_ready".into()
        } else if state.upstream.degraded(id, now) {
            "degraded".into()
        } else {
            "ok".into()
        };
        degraded |= value != "ok";
        connectors.insert(id.clone(), value);
    }
    match state.store.ping_within(HEALTH_PING_BOUND).await {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({
            "status": if degraded { "degraded" } else { "ok" },
            "database": "ok",
            "connectors": connectors,
        })),
        Err(e) => {
            tracing::warn!(stage = "health", error = %e, "database unavailable");
            HttpResponse::ServiceUnavailable().json(serde_json::json!({
                "status": "degraded",
                "database": "unavailable",
                "connectors": connectors,
            }))
        }
    }
}

/// GET /livez: the process is up and its HTTP workers answer. Touches nothing else
/// (no database, no lock), so it never blocks: a liveness probe that fails means
/// the process should be restarted, which a database outage never warrants.
pub async fn live() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({ "status": "ok" }))
}

/// GET /readyz: this instance can take traffic. The database answers (within
/// [`HEALTH_PING_BOUND`]), the signing key set can sign with every configured
/// algorithm, and the database has every migration this build embeds. 200 with
/// each check's result, else 503 naming the checks that failed in `not_ready`.
/// Upstream (connector) health is deliberately left out: one provider down must
/// not take the broker out of its load balancer; `/healthz` reports it.
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let started = std::time::Instant::now();
    let mut checks = serde_json::Map::new();
    let mut not_ready = Vec::new();
    let mut fail =
        |checks: &mut serde_json::Map<String, serde_json::Value>, name: &str, value: &str| {
            checks.insert(name.into(), value.into());
            not_ready.push(name.to_owned());
        };

    let database = state.store.ping_within(HEALTH_PING_BOUND).await;
    match &database {
        Ok(()) => {
            checks.insert("database".into(), "ok".into());
        }
        Err(e) => {
            tracing::warn!(stage = "readiness", error = %e, "database unavailable");
            fail(&mut checks, "database", "unavailable");
        }
    }

    let set = state.keys.set();
    let missing: Vec<&str> = state
        .keys
        .algorithms
        .iter()
        .filter(|alg| !set.can_sign(**alg))
        .map(|alg| alg.as_str())
        .collect();
    if missing.is_empty() {
        checks.insert("signing_keys".into(), "ok".into());
    } else {
        tracing::warn!(stage = "readiness", missing = %missing.join(","), "no signing key for a configured algorithm");
        fail(&mut checks, "signing_keys", "missing");
        checks.insert("signing_keys_missing".into(), missing.into());
    }

    // Once every migration was seen applied it stays so (nothing un-applies them),
    // so later probes skip the query.
    if state.readiness.migrations_current() {
        checks.insert("migrations".into(), "ok".into());
    } else if database.is_err() {
        fail(&mut checks, "migrations", "unknown");
    } else {
        let left = HEALTH_PING_BOUND.saturating_sub(started.elapsed());
        match actix_web::rt::time::timeout(left, state.store.pending_migrations()).await {
            Ok(Ok(pending)) if pending.is_empty() => {
                state.readiness.set_migrations_current();
                checks.insert("migrations".into(), "ok".into());
            }
            Ok(Ok(pending)) => {
                tracing::warn!(stage = "readiness", pending = %pending.join(","), "database migrations not applied (idbridge migrate)");
                fail(&mut checks, "migrations", "pending");
                checks.insert("migrations_pending".into(), pending.into());
            }
            Ok(Err(e)) => {
                tracing::warn!(stage = "readiness", error = %e, "cannot read the applied migrations");
                fail(&mut checks, "migrations", "unknown");
            }
            Err(_) => {
                tracing::warn!(
                    stage = "readiness",
                    "reading the applied migrations took too long"
                );
                fail(&mut checks, "migrations", "unknown");
            }
        }
    }

    let ready = not_ready.is_empty();
    let body = serde_json::json!({
        "status": if ready { "ready" } else { "not_ready" },
        "checks": checks,
        "not_ready": not_ready,
    });
    let mut response = if ready {
        HttpResponse::Ok()
    } else {
        HttpResponse::ServiceUnavailable()
    };
    response
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body)
}
