//! Authorization requests (what an app asked for) and upstream flow state (keyed by the
//! `state` sent upstream), both short-lived and shared by every broker instance.

use diesel::prelude::*;

use crate::error::{to_json_text, StoreError};
use crate::models::{AuthRequestRecord, AuthRequestRow, FlowRecord, FlowRow};
use crate::pool::AnyConnection;
use crate::schema::{auth_requests, upstream_flows};
use crate::store::Store;

/// How [`Store::claim_flow`] ended.
#[derive(Debug, Clone, PartialEq)]
pub enum FlowClaim {
    /// No flow has this state (never, or collected).
    Unknown,
    /// The caller's check refused the flow; nothing was written.
    Refused(FlowRow),
    /// Used before, or expired; not claimed.
    Spent(FlowRow),
    /// This caller claimed the flow; `request` is the app's request while it is
    /// live (`None` once it expired or was used up).
    Claimed {
        flow: FlowRow,
        request: Option<AuthRequestRow>,
    },
}

impl Store {
    /// `Conflict` when the id is taken.
    pub async fn insert_auth_request(&self, r: AuthRequestRow) -> Result<(), StoreError> {
        let rec = AuthRequestRecord::from_api(r)?;
        self.write(move |c| {
            diesel::insert_into(auth_requests::table)
                .values(rec)
                .execute(c)?;
            Ok(())
        })
        .await
    }

    /// The request, or `None` when absent or expired (`expires_at <= now`).
    pub async fn get_auth_request(
        &self,
        id: &str,
        now: i64,
    ) -> Result<Option<AuthRequestRow>, StoreError> {
        let id = id.to_owned();
        self.read(move |c| {
            auth_requests::table
                .find(&id)
                .filter(auth_requests::expires_at.gt(now))
                .select(AuthRequestRecord::as_select())
                .first(c)
                .optional()?
                .map(AuthRequestRecord::into_api)
                .transpose()
        })
        .await
    }

    /// Replaces a live request's payload (a sign-in that waits for a next step);
    /// false when it is gone or expired.
    pub async fn update_auth_request(
        &self,
        id: &str,
        payload: serde_json::Value,
        now: i64,
    ) -> Result<bool, StoreError> {
        let id = id.to_owned();
        let payload = to_json_text(&payload)?;
        self.write(move |c| {
            let n = diesel::update(
                auth_requests::table
                    .find(&id)
                    .filter(auth_requests::expires_at.gt(now)),
            )
            .set(auth_requests::payload.eq(payload))
            .execute(c)?;
            Ok(n == 1)
        })
        .await
    }

    /// Reads and deletes a live request in one step: the one caller that gets
    /// `Some` is the only one (a pushed authorization request is used once).
    pub async fn take_auth_request(
        &self,
        id: &str,
        now: i64,
    ) -> Result<Option<AuthRequestRow>, StoreError> {
        let id = id.to_owned();
        self.write(move |c| {
            crate::call::transaction(c, |c| {
                let found = auth_requests::table
                    .find(&id)
                    .filter(auth_requests::expires_at.gt(now))
                    .select(AuthRequestRecord::as_select())
                    .first(c)
                    .optional()?;
                let Some(found) = found else {
                    return Ok(None);
                };
                let taken = diesel::delete(
                    auth_requests::table
                        .find(&id)
                        .filter(auth_requests::expires_at.gt(now)),
                )
                .execute(c)?;
                if taken == 1 {
                    found.into_api().map(Some)
                } else {
                    Ok(None)
                }
            })
        })
        .await
    }

    /// Deleting a missing request is not an error.
    pub async fn delete_auth_request(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.write(move |c| {
            diesel::delete(auth_requests::table.find(&id)).execute(c)?;
            Ok(())
        })
        .await
    }

    /// `Conflict` when the state is taken.
    pub async fn insert_flow(&self, f: FlowRow) -> Result<(), StoreError> {
        let rec = FlowRecord::from_api(f)?;
        self.write(move |c| {
            diesel::insert_into(upstream_flows::table)
                .values(rec)
                .execute(c)?;
            Ok(())
        })
        .await
    }

    /// An authorization request and the upstream flow that answers it, in one
    /// transaction (the app picked the connector: one trip to the writer).
    pub async fn insert_auth_request_and_flow(
        &self,
        r: AuthRequestRow,
        f: FlowRow,
    ) -> Result<(), StoreError> {
        let request = AuthRequestRecord::from_api(r)?;
        let flow = FlowRecord::from_api(f)?;
        self.write(move |c| {
            crate::call::transaction(c, |c| {
                diesel::insert_into(auth_requests::table)
                    .values(request)
                    .execute(c)?;
                diesel::insert_into(upstream_flows::table)
                    .values(flow)
                    .execute(c)?;
                Ok(())
            })
        })
        .await
    }

    /// The flow as stored, expired or not (the caller compares `expires_at`).
    pub async fn get_flow(&self, state: &str) -> Result<Option<FlowRow>, StoreError> {
        let state = state.to_owned();
        self.read(move |c| {
            upstream_flows::table
                .find(&state)
                .select(FlowRecord::as_select())
                .first(c)
                .optional()?
                .map(FlowRecord::into_api)
                .transpose()
        })
        .await
    }

    /// The callback's one store call: in one transaction, reads the flow, lets
    /// `accept` look at it (right connector, right browser), and if it accepts,
    /// marks the flow used when it is unused and unexpired — for exactly one
    /// caller — and reads the app's request with it while that is live.
    pub async fn claim_flow<F>(
        &self,
        state: &str,
        now: i64,
        accept: F,
    ) -> Result<FlowClaim, StoreError>
    where
        F: FnOnce(&FlowRow) -> bool + Send + 'static,
    {
        let state = state.to_owned();
        self.write(move |c| {
            crate::call::transaction(c, |c| {
                let Some(flow) = upstream_flows::table
                    .find(&state)
                    .select(FlowRecord::as_select())
                    .first(c)
                    .optional()?
                else {
                    return Ok(FlowClaim::Unknown);
                };
                let mut flow = flow.into_api()?;
                if !accept(&flow) {
                    return Ok(FlowClaim::Refused(flow));
                }
                if flow.used_at.is_some() || flow.expires_at <= now {
                    return Ok(FlowClaim::Spent(flow));
                }
                let n = crate::statement::statement(
                    "UPDATE upstream_flows SET used_at = ? WHERE state = ? AND used_at IS NULL",
                )
                .bind::<diesel::sql_types::BigInt, _>(now)
                .bind::<diesel::sql_types::Text, _>(&state)
                .execute(c)?;
                if n != 1 {
                    // Another instance claimed it between the read and the update.
                    return Ok(FlowClaim::Spent(flow));
                }
                flow.used_at = Some(now);
                let request = auth_requests::table
                    .find(&flow.auth_request_id)
                    .filter(auth_requests::expires_at.gt(now))
                    .select(AuthRequestRecord::as_select())
                    .first(c)
                    .optional()?
                    .map(AuthRequestRecord::into_api)
                    .transpose()?;
                Ok(FlowClaim::Claimed { flow, request })
            })
        })
        .await
    }

    /// Records how the upstream step ended (for the page the browser lands on next).
    /// A missing flow is not an error.
    pub async fn set_flow_outcome(
        &self,
        state: &str,
        outcome: serde_json::Value,
    ) -> Result<(), StoreError> {
        let state = state.to_owned();
        let outcome = to_json_text(&outcome)?;
        self.write(move |c| write_outcome(c, &state, &outcome))
            .await
    }
}

/// Records `outcome` (JSON text) on the flow `state`; a missing flow is not an error.
pub(crate) fn write_outcome(
    c: &mut AnyConnection,
    state: &str,
    outcome: &str,
) -> Result<(), StoreError> {
    crate::statement::statement("UPDATE upstream_flows SET outcome = ? WHERE state = ?")
        .bind::<diesel::sql_types::Text, _>(outcome)
        .bind::<diesel::sql_types::Text, _>(state)
        .execute(c)?;
    Ok(())
}
