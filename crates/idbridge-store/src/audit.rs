//! The append-only audit log (sign-ins, revocations, admin actions).

use diesel::prelude::*;

use crate::admin::AuditFilter;
use crate::error::StoreError;
use crate::models::{AuditEvent, AuditRecord, NewAuditRecord};
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
    /// (pass the last id of a page to get the next page). [`Store::find_audit`] filters more.
    pub async fn list_audit(
        &self,
        user_id: Option<&str>,
        limit: i64,
        before_id: Option<i64>,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        self.find_audit(AuditFilter {
            user_id: user_id.map(str::to_owned),
            before_id,
            limit,
            ..AuditFilter::default()
        })
        .await
    }
}
