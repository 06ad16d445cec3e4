//! The one error type every store method returns, and how diesel and r2d2 errors map onto it.

use diesel::result::{DatabaseErrorKind, Error as DieselError};

/// What went wrong in the store, grouped by what the caller should do about it.
#[derive(thiserror::Error, Debug, Clone)]
pub enum StoreError {
    /// The database cannot be reached right now (pool checkout timed out, connection lost).
    /// Fail the request cleanly; the pool reconnects by itself when the database is back.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A row with the same key already exists.
    #[error("conflict: {0}")]
    Conflict(String),
    /// Any other database error.
    #[error("database error: {0}")]
    Database(String),
    /// A stored value could not be decoded (bad JSON in a TEXT column, unexpected NULL...).
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// The store was configured wrongly (unsupported URL, unusable SQLite path...).
    #[error("storage configuration error: {0}")]
    Config(String),
}

impl StoreError {
    /// True for a unique-key violation.
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict(_))
    }

    /// True when the database could not be reached; worth retrying later.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

impl From<DieselError> for StoreError {
    fn from(e: DieselError) -> Self {
        match e {
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
                StoreError::Conflict(info.message().to_owned())
            }
            DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, info) => {
                StoreError::Unavailable(info.message().to_owned())
            }
            DieselError::BrokenTransactionManager => {
                StoreError::Unavailable("connection left in a broken transaction state".into())
            }
            // Postgres cancelled the statement at the connection's statement_timeout, or
            // ended the session for idling in a transaction (crate::pool::PgSession): the
            // database did not answer in time, like a call that overran its deadline.
            DieselError::DatabaseError(_, info)
                if info.message().contains("statement timeout")
                    || info.message().contains("idle-in-transaction timeout") =>
            {
                StoreError::Unavailable(info.message().to_owned())
            }
            DieselError::DeserializationError(e) => StoreError::Corrupt(e.to_string()),
            other => StoreError::Database(other.to_string()),
        }
    }
}

impl From<diesel::r2d2::PoolError> for StoreError {
    fn from(e: diesel::r2d2::PoolError) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

/// Encodes a JSON value for a TEXT column.
pub(crate) fn to_json_text(v: &serde_json::Value) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Database(format!("encoding JSON: {e}")))
}

/// Decodes a TEXT column holding JSON; `what` names the column for the error message.
pub(crate) fn from_json_text(s: &str, what: &str) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("{what}: invalid JSON: {e}")))
}
