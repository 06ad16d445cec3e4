//! Authorization requests (what an app asked for) and upstream flow state (keyed by the
//! `state` sent upstream), both short-lived and shared by every broker instance.

use diesel::prelude::*;

use crate::error::{to_json_text, StoreError};
use crate::models::{AuthRequestRecord, AuthRequestRow, FlowRecord, FlowRow};
use crate::schema::{auth_requests, upstream_flows};
use crate::store::Store;

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

    /// Marks the flow used if it is unused and unexpired; true only for the one caller that
    /// did so.
    pub async fn claim_flow(&self, state: &str, now: i64) -> Result<bool, StoreError> {
        let state = state.to_owned();
        self.write(move |c| {
            let n = diesel::update(
                upstream_flows::table
                    .find(&state)
                    .filter(upstream_flows::used_at.is_null())
                    .filter(upstream_flows::expires_at.gt(now)),
            )
            .set(upstream_flows::used_at.eq(now))
            .execute(c)?;
            Ok(n == 1)
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
        self.write(move |c| {
            diesel::update(upstream_flows::table.find(&state))
                .set(upstream_flows::outcome.eq(Some(outcome)))
                .execute(c)?;
            Ok(())
        })
        .await
    }
}
