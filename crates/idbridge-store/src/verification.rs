//! One-time verification codes (a phone number, or a WeChat chat): stored by hash,
//! bound to the browser that asked, short-lived, single use, with a cap on wrong
//! attempts and on how often one destination is sent codes.

use diesel::prelude::*;

use crate::error::StoreError;
use crate::pool::AnyConnection;
use crate::schema::verification_codes;
use crate::store::Store;

/// The window of the hourly send cap; expiry collection keeps codes this long
/// after they were sent, so that expired ones still count.
pub(crate) const SEND_WINDOW_SECS: i64 = 3600;

/// Makes transactions about the same `what` take turns, on every instance:
/// on Postgres an advisory lock held until the transaction ends (read
/// committed would let two of them read the same count and both act on it);
/// on SQLite transactions already run one at a time on the one writer.
fn one_at_a_time(c: &mut AnyConnection, what: &str) -> Result<(), StoreError> {
    if let AnyConnection::Postgresql(pg) = c {
        diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind::<diesel::sql_types::Text, _>(what)
            .execute(pg)?;
    }
    Ok(())
}

/// A code as stored (never the code itself).
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = verification_codes)]
pub struct VerificationCode {
    pub id: String,
    /// What it proves: `bind`, `phone`, ...
    pub purpose: String,
    /// How it was sent: `sms`, `wechat`, ...
    pub channel: String,
    /// Where it was sent: an E.164 number, or `connector:subject`.
    pub destination: String,
    /// The account it proves ownership of, if any.
    pub user_id: Option<String>,
    pub browser_hash: String,
    pub code_hash: String,
    pub attempts: i64,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

/// How often one destination may be sent codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendLimits {
    /// At most one code per this many seconds.
    pub min_interval_secs: i64,
    /// At most this many codes per hour.
    pub per_hour: i64,
}

/// What [`Store::insert_verification_code`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeInsert {
    Stored,
    /// The destination was sent codes too recently: retry after this many seconds.
    Throttled {
        retry_after: i64,
    },
}

/// What [`Store::check_verification_code`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeCheck {
    /// Right code: it is now used up.
    Verified(VerificationCode),
    /// Wrong code; this many attempts are left.
    Wrong {
        attempts_left: i64,
    },
    /// Too many wrong attempts: the code is dead.
    TooManyAttempts,
    Expired,
    /// No such code for this browser, or already used.
    Unknown,
}

impl Store {
    /// Stores a new code unless its destination was sent one too recently. One
    /// transaction per destination at a time, so simultaneous requests (at any
    /// instance) cannot both slip under the limit.
    pub async fn insert_verification_code(
        &self,
        row: VerificationCode,
        limits: SendLimits,
    ) -> Result<CodeInsert, StoreError> {
        self.write(move |c| {
            crate::call::transaction(c, |c| {
                one_at_a_time(c, &format!("verification-send:{}", row.destination))?;
                let now = row.created_at;
                let recent: Vec<i64> = verification_codes::table
                    .filter(verification_codes::destination.eq(&row.destination))
                    .filter(verification_codes::created_at.gt(now - SEND_WINDOW_SECS))
                    .select(verification_codes::created_at)
                    .order(verification_codes::created_at.desc())
                    .load(c)?;
                if let Some(last) = recent.first() {
                    let wait = last + limits.min_interval_secs - now;
                    if wait > 0 {
                        return Ok(CodeInsert::Throttled { retry_after: wait });
                    }
                }
                if recent.len() as i64 >= limits.per_hour {
                    let oldest = recent.last().copied().unwrap_or(now);
                    return Ok(CodeInsert::Throttled {
                        retry_after: (oldest + SEND_WINDOW_SECS - now).max(1),
                    });
                }
                diesel::insert_into(verification_codes::table)
                    .values(&row)
                    .execute(c)?;
                Ok(CodeInsert::Stored)
            })
        })
        .await
    }

    /// Checks a code attempt for the browser that asked for it, in one transaction
    /// (attempts at one code take turns, on every instance): a right code is used
    /// up, once; a wrong one counts; past `max_attempts` the code is dead.
    /// `matches` compares the stored hash with the attempt (in constant time).
    pub async fn check_verification_code(
        &self,
        id: &str,
        browser_hash: &str,
        now: i64,
        max_attempts: i64,
        matches: impl FnOnce(&str) -> bool + Send + 'static,
    ) -> Result<CodeCheck, StoreError> {
        let (id, browser_hash) = (id.to_owned(), browser_hash.to_owned());
        self.write(move |c| {
            crate::call::transaction(c, |c| {
                one_at_a_time(c, &format!("verification-check:{id}"))?;
                let Some(code) = verification_codes::table
                    .find(&id)
                    .select(VerificationCode::as_select())
                    .first(c)
                    .optional()?
                else {
                    return Ok(CodeCheck::Unknown);
                };
                if code.browser_hash != browser_hash || code.used_at.is_some() {
                    return Ok(CodeCheck::Unknown);
                }
                if code.attempts >= max_attempts {
                    return Ok(CodeCheck::TooManyAttempts);
                }
                if code.expires_at <= now {
                    return Ok(CodeCheck::Expired);
                }
                if matches(&code.code_hash) {
                    diesel::update(verification_codes::table.find(&id))
                        .set(verification_codes::used_at.eq(Some(now)))
                        .execute(c)?;
                    return Ok(CodeCheck::Verified(VerificationCode {
                        used_at: Some(now),
                        ..code
                    }));
                }
                let attempts = code.attempts + 1;
                diesel::update(verification_codes::table.find(&id))
                    .set(verification_codes::attempts.eq(attempts))
                    .execute(c)?;
                if attempts >= max_attempts {
                    Ok(CodeCheck::TooManyAttempts)
                } else {
                    Ok(CodeCheck::Wrong {
                        attempts_left: max_attempts - attempts,
                    })
                }
            })
        })
        .await
    }

    /// A code by id (for the page that asks for it), used or not.
    pub async fn get_verification_code(
        &self,
        id: &str,
    ) -> Result<Option<VerificationCode>, StoreError> {
        let id = id.to_owned();
        self.read(move |c| {
            Ok(verification_codes::table
                .find(&id)
                .select(VerificationCode::as_select())
                .first(c)
                .optional()?)
        })
        .await
    }

    /// Forgets a code (one that could not be delivered).
    pub async fn delete_verification_code(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.write(move |c| {
            diesel::delete(verification_codes::table.find(&id)).execute(c)?;
            Ok(())
        })
        .await
    }

    /// Records how a code actually went out (e.g. SMS after WeChat refused).
    pub async fn set_verification_code_channel(
        &self,
        id: &str,
        channel: &str,
    ) -> Result<(), StoreError> {
        let (id, channel) = (id.to_owned(), channel.to_owned());
        self.write(move |c| {
            diesel::update(verification_codes::table.find(&id))
                .set(verification_codes::channel.eq(channel))
                .execute(c)?;
            Ok(())
        })
        .await
    }
}
