//! The append-only audit log (sign-ins, revocations, admin actions).

use diesel::prelude::*;

use crate::error::StoreError;
use crate::models::{AuditEvent, AuditRecord, AuditRecordRow, NewAuditRecord};
use crate::schema::audit_log;
use crate::store::Store;

impl Store {
    pub async fn append_audit(&self, e: AuditEvent) -> Result<(), StoreError> {
        let rec = NewAuditRecord::from_api(e)?;
        self.write(move |c| {
            diesel::insert_into(audit_log::table)
                .values(rec)
                .execute(c)?;
            Ok(())
        })
        .await
    }

    /// Newest first; optionally one user's events only, and only ids below `before_id`
    /// (pass the last id of a page to get the next page).
    pub async fn list_audit(
        &self,
        user_id: Option<&str>,
        limit: i64,
        before_id: Option<i64>,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let user_id = user_id.map(str::to_owned);
        let limit = limit.max(0);
        self.read(move |c| {
            let mut q = audit_log::table
                .select(AuditRecordRow::as_select())
                .order(audit_log::id.desc())
                .limit(limit)
                .into_boxed();
            if let Some(u) = user_id {
                q = q.filter(audit_log::user_id.eq(u));
            }
            if let Some(b) = before_id {
                q = q.filter(audit_log::id.lt(b));
            }
            q.load(c)?
                .into_iter()
                .map(AuditRecordRow::into_api)
                .collect()
        })
        .await
    }
}
