//! idbridge storage: one async [`Store`] API over SQLite or Postgres (diesel `MultiConnection`,
//! one schema, one set of queries), the embedded migrations, and expiry GC.
//!
//! - Time is always a parameter (`now`, unix seconds); the store never reads the clock. A row
//!   with `expires_at` is live while `now < expires_at`.
//! - Every method is `async` and runs its diesel work with `tokio::task::spawn_blocking` over an
//!   r2d2 pool. On SQLite, methods that write share a one-connection writer pool (writes queue
//!   in the pool instead of failing with SQLITE_BUSY) and read-only methods use a separate
//!   reader pool (`PRAGMA query_only`), which WAL lets run beside the writer. On Postgres both
//!   are one pool.
//! - Every call is bounded: [`StoreError::Unavailable`] after `StoreOptions::connect_timeout`
//!   waiting for a connection, or `StoreOptions::query_timeout` once it has one (a stalled
//!   database). After that, calls fail at once until the database answers again; dead
//!   connections are dropped (checked before use), so the store recovers by itself.

mod accounts;
mod app_tokens;
mod call;
pub use accounts::{LinkOutcome, PhoneOutcome};
mod completion;
mod consents;
pub use app_tokens::AppTokenRow;
pub use completion::{
    CompleteExchange, CompleteLogin, ConsentCheck, LoginCompletion, VerifiedPhone,
};
pub use consents::Consent;
mod admin;
pub use admin::{AccessChange, AccessOutcome, AuditFilter, Unlink, Unlinked, UserSummary};
mod audit;
mod backup;
mod batch;
pub use backup::{sqlite_path, SqliteBackup};
mod checkpoint;
mod clients;
pub use clients::{ClientRemoved, ClientReplace};
mod emails;
pub use emails::email_key;
mod error;
mod failures;
pub use failures::FailureLimit;
pub use flows::FlowClaim;
mod flows;
mod gc;
mod keys;
mod models;
mod outage;
mod pool;
mod schema;
mod sessions;
mod statement;
mod store;
mod tokens;
mod verification;
pub use verification::{CodeCheck, CodeInsert, SendLimits, VerificationCode};

#[cfg(feature = "test-support")]
pub mod testing;

pub use error::StoreError;
pub use models::{
    AuditEvent, AuditRecord, AuthRequestRow, ClientRow, CodeRow, EmailDecision, FamilyRow,
    FirstLogin, FlowRow, GcReport, Identity, KeyRow, LoginEmail, LoginResolution, NewLogin, Redeem,
    Redeemed, RefreshTokenRow, Rotation, SessionRow, User,
};
pub use pool::Backend;
pub use store::{Store, StoreOptions};
pub use tokens::{RefreshGrant, RefreshOutcome, REPLAY_REVOKE_REASON};
