//! Expiry garbage collection: deletes rows nobody can use any more.

use diesel::prelude::*;

use crate::error::StoreError;
use crate::models::GcReport;
use crate::schema::{
    audit_log, auth_requests, authorization_codes, failure_counters, refresh_token_families,
    refresh_tokens, signing_keys, sso_sessions, upstream_flows, verification_codes,
};
use crate::store::Store;

/// How long used or expired codes and ended sessions are kept, for replay detection and
/// support questions.
const KEEP_AFTER_END_SECS: i64 = 86_400;

impl Store {
    /// Deletes: auth requests and flows with `expires_at <= now`; codes with
    /// `expires_at < now - 86400`; families with `absolute_expires_at <= now` and their refresh
    /// tokens; sessions with `expires_at <= now` or `ended_at < now - 86400`; keys with
    /// `expires_at < now`; verification codes with `expires_at <= now` sent an hour or more ago
    /// (they count towards the hourly send cap until then); failure counters full again
    /// (`full_at_ms <= now * 1000`); audit rows with `at < now - audit_retention_secs`.
    pub async fn collect_garbage(
        &self,
        now: i64,
        audit_retention_secs: i64,
    ) -> Result<GcReport, StoreError> {
        self.write_gc(move |c| {
            let count = |n: usize| n as u64;
            let mut report = GcReport {
                auth_requests: count(
                    diesel::delete(auth_requests::table.filter(auth_requests::expires_at.le(now)))
                        .execute(c)?,
                ),
                flows: count(
                    diesel::delete(
                        upstream_flows::table.filter(upstream_flows::expires_at.le(now)),
                    )
                    .execute(c)?,
                ),
                codes: count(
                    diesel::delete(
                        authorization_codes::table
                            .filter(authorization_codes::expires_at.lt(now - KEEP_AFTER_END_SECS)),
                    )
                    .execute(c)?,
                ),
                ..GcReport::default()
            };
            (report.refresh_tokens, report.families) = crate::call::transaction(c, |c| {
                let expired = refresh_token_families::table
                    .filter(refresh_token_families::absolute_expires_at.le(now))
                    .select(refresh_token_families::id);
                let tokens = diesel::delete(
                    refresh_tokens::table.filter(refresh_tokens::family_id.eq_any(expired)),
                )
                .execute(c)?;
                let families = diesel::delete(
                    refresh_token_families::table
                        .filter(refresh_token_families::absolute_expires_at.le(now)),
                )
                .execute(c)?;
                Ok::<_, StoreError>((count(tokens), count(families)))
            })?;
            report.sessions = count(
                diesel::delete(
                    sso_sessions::table.filter(
                        sso_sessions::expires_at
                            .le(now)
                            .or(sso_sessions::ended_at.lt(now - KEEP_AFTER_END_SECS)),
                    ),
                )
                .execute(c)?,
            );
            report.keys = count(
                diesel::delete(signing_keys::table.filter(signing_keys::expires_at.lt(now)))
                    .execute(c)?,
            );
            report.verification_codes = count(
                diesel::delete(
                    verification_codes::table
                        .filter(verification_codes::expires_at.le(now))
                        .filter(
                            verification_codes::created_at
                                .le(now - crate::verification::SEND_WINDOW_SECS),
                        ),
                )
                .execute(c)?,
            );
            report.failure_counters = count(
                diesel::delete(
                    failure_counters::table.filter(failure_counters::full_at_ms.le(now * 1000)),
                )
                .execute(c)?,
            );
            report.audit = count(
                diesel::delete(
                    audit_log::table.filter(audit_log::at.lt(now - audit_retention_secs)),
                )
                .execute(c)?,
            );
            Ok(report)
        })
        .await
    }
}
