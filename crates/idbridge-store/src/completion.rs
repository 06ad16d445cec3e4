//! Finishing an upstream sign-in or a token exchange in one transaction: the
//! account resolved as [`crate::Store::resolve_login`] does (with the email rule
//! of [`crate::emails`]), then what the sign-in writes with it (session, code,
//! audit, the used-up request; or the grant's family and refresh token).

use diesel::prelude::*;

use crate::accounts::{resolve_once, retry_once_on_conflict, AsConflict};
use crate::error::{to_json_text, StoreError};
use crate::models::{EmailDecision, FirstLogin, LoginResolution, NewLogin, User};
use crate::pool::AnyConnection;
use crate::store::Store;

/// The account a login signs in to, or why it signs in to none (no account and
/// the policy refuses; a disabled account). Shared by browser sign-ins and token
/// exchanges.
#[allow(clippy::type_complexity)]
fn resolve_account(
    c: &mut AnyConnection,
    login: &NewLogin,
    profile: &str,
    policy: &FirstLogin,
    new_user_id: &str,
    now: i64,
) -> Result<Result<(User, LoginResolution, Option<EmailDecision>), LoginCompletion>, StoreError> {
    let (resolution, email) = resolve_once(c, login, profile, policy, new_user_id, now)?;
    let user = match &resolution {
        LoginResolution::NotLinked => return Ok(Err(LoginCompletion::NotLinked)),
        LoginResolution::EmailHeld { owner } => {
            return Ok(Err(LoginCompletion::EmailHeld {
                owner: owner.clone(),
            }))
        }
        LoginResolution::Existing(u)
        | LoginResolution::Linked(u)
        | LoginResolution::LinkedByEmail(u)
        | LoginResolution::Created(u) => u.clone(),
    };
    if user.disabled_at.is_some() {
        return Ok(Err(LoginCompletion::Disabled(user)));
    }
    Ok(Ok((user, resolution, email)))
}

/// Whether `check` asks the person, given what `user_id` allowed `client_id`.
fn consent_needed(
    c: &mut AnyConnection,
    check: Option<&ConsentCheck>,
    user_id: &str,
    client_id: &str,
) -> Result<bool, StoreError> {
    let Some(check) = check else {
        return Ok(false);
    };
    let given = crate::consents::find(c, user_id, client_id)?;
    Ok(check.needed(given.as_ref()))
}

/// [`Store::complete_login`]'s transaction ends either in a store error or because
/// the identity to link belongs to another user (the transaction is rolled back).
enum CompleteError {
    Store(StoreError),
    LinkConflict(String),
}

impl From<StoreError> for CompleteError {
    fn from(e: StoreError) -> Self {
        CompleteError::Store(e)
    }
}

impl From<diesel::result::Error> for CompleteError {
    fn from(e: diesel::result::Error) -> Self {
        CompleteError::Store(e.into())
    }
}

impl AsConflict for CompleteError {
    fn as_conflict(&self) -> Option<&str> {
        match self {
            CompleteError::Store(e) => e.as_conflict(),
            CompleteError::LinkConflict(_) => None,
        }
    }
}

/// The audit row of a link by email, in the transaction that links.
fn audit_email_link(
    c: &mut AnyConnection,
    row: Option<&crate::models::AuditEvent>,
    decision: Option<&EmailDecision>,
    user: &User,
) -> Result<(), StoreError> {
    if let (Some(row), Some(EmailDecision::Linked { .. })) = (row, decision) {
        let mut row = row.clone();
        row.user_id = Some(user.id.clone());
        diesel::insert_into(crate::schema::audit_log::table)
            .values(crate::models::NewAuditRecord::from_api(row)?)
            .execute(c)?;
    }
    Ok(())
}

/// Everything a successful upstream sign-in writes, for [`Store::complete_login`].
/// The `user_id` fields of `session`, `code` and `audit` are filled in with the
/// resolved account.
#[derive(Debug, Clone)]
pub struct CompleteLogin {
    pub login: NewLogin,
    pub policy: FirstLogin,
    pub new_user_id: String,
    pub session: crate::models::SessionRow,
    pub code: crate::models::CodeRow,
    pub audit: crate::models::AuditEvent,
    /// The authorization request this sign-in answers (deleted: it is used up).
    pub auth_request_id: String,
    /// The upstream flow, and what a repeated callback for it should do.
    pub flow_state: String,
    pub flow_outcome: serde_json::Value,
    /// An identity that was waiting for its owner to prove an existing account
    /// (first_login = "bind"): this login is the proof, so it is linked to the same
    /// account.
    pub also_link: Option<NewLogin>,
    /// The app needs a verified phone number: when the account has none, the
    /// session is opened but no code is issued, the request is kept, and the flow's
    /// outcome is `phone_outcome` (the phone step).
    pub require_phone: bool,
    pub phone_outcome: serde_json::Value,
    /// Written (with the account's id) when the identity was linked by its
    /// trusted, verified email ([`EmailDecision::Linked`]).
    pub email_link_audit: Option<crate::models::AuditEvent>,
    /// The app asks the person's consent (it is not `skip_consent`): when the
    /// account has not allowed it these scopes (or `always`), the session is
    /// opened but no code is issued, the request is kept, and the flow's
    /// outcome is `consent_outcome` (the consent page). After the phone step.
    pub consent: Option<ConsentCheck>,
    pub consent_outcome: serde_json::Value,
}

/// What an app's consent needs, for [`CompleteLogin::consent`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentCheck {
    /// The scopes asked for (space-separated).
    pub scope: String,
    /// Ask even when they are all allowed already (`prompt=consent`).
    pub always: bool,
}

impl ConsentCheck {
    /// Whether the person must be asked, given what they allowed the app.
    pub fn needed(&self, given: Option<&crate::consents::Consent>) -> bool {
        self.always || !given.is_some_and(|c| c.covers(&self.scope))
    }
}

/// Everything a successful token exchange writes (a native app's upstream token,
/// e.g. a WeChat SDK code, traded at the token endpoint), for
/// [`Store::complete_exchange`]. The `user_id` fields of `family` and `audit` are
/// filled in with the resolved account.
#[derive(Debug, Clone)]
pub struct CompleteExchange {
    pub login: NewLogin,
    pub policy: FirstLogin,
    pub new_user_id: String,
    /// The grant the issued tokens belong to (an exchange opens no SSO session).
    pub family: crate::models::FamilyRow,
    /// The family's first refresh token, when one is issued.
    pub refresh_token_hash: Option<String>,
    pub audit: crate::models::AuditEvent,
    /// The app needs a verified phone number: without one, nothing but the
    /// account is written and the answer is `SignedIn { needs_phone: true }`.
    pub require_phone: bool,
    /// As [`CompleteLogin::email_link_audit`].
    pub email_link_audit: Option<crate::models::AuditEvent>,
    /// A number the upstream verified: recorded as the account's verified
    /// phone before `require_phone` is decided, unless another account has it
    /// (the returned user then keeps its own).
    pub verified_phone: Option<VerifiedPhone>,
    /// The app asks consent: without it for these scopes, nothing but the
    /// account is written and the answer is `SignedIn { needs_consent: true }`
    /// (an exchange has no page to ask on).
    pub consent: Option<ConsentCheck>,
}

/// A phone number an upstream verified ([`CompleteExchange::verified_phone`]).
#[derive(Debug, Clone)]
pub struct VerifiedPhone {
    /// E.164.
    pub number: String,
    /// Written (with the account's id) when the number is recorded; nothing
    /// is written for the number the account already has.
    pub audit: crate::models::AuditEvent,
}

/// What [`Store::complete_login`] or [`Store::complete_exchange`] decided.
// One per sign-in, returned once: boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum LoginCompletion {
    /// Signed in: everything the completion carried is written (session, code,
    /// audit event and flow outcome; or the family, its refresh token and the
    /// audit event). With `needs_phone` (sign-in only), no code: the person must
    /// verify a phone number first; with `needs_consent`, no code (no grant):
    /// the person must allow the app first.
    SignedIn {
        user: User,
        resolution: LoginResolution,
        needs_phone: bool,
        needs_consent: bool,
        /// What the email rule decided, when the login's address is an
        /// account's link target.
        email: Option<EmailDecision>,
    },
    /// No account and the policy refused to create one: nothing written.
    NotLinked,
    /// The login's upstream-verified address is account `owner`'s link target,
    /// but its connector is not trusted to link by email: nothing written (the
    /// person may prove that account: bind).
    EmailHeld { owner: String },
    /// The identity waiting to be linked (`also_link`) meanwhile belongs to another
    /// account: nothing written.
    LinkConflict { owner: String },
    /// The account is disabled: only the identity's profile refresh is written.
    Disabled(User),
}

impl Store {
    /// Finish an upstream sign-in in one transaction: resolve the account (as
    /// [`Store::resolve_login`]), then open the SSO session, store the app's code,
    /// append the audit event, use up the authorization request and record the
    /// flow's outcome. One trip to the (single, on SQLite) writer instead of six.
    pub async fn complete_login(
        &self,
        done: CompleteLogin,
        now: i64,
    ) -> Result<LoginCompletion, StoreError> {
        let profile = to_json_text(&done.login.profile)?;
        let also_profile = match &done.also_link {
            Some(l) => Some(to_json_text(&l.profile)?),
            None => None,
        };
        let outcome = to_json_text(&done.flow_outcome)?;
        let phone_outcome = to_json_text(&done.phone_outcome)?;
        let consent_outcome = to_json_text(&done.consent_outcome)?;
        self.write(move |conn| {
            let attempt = || {
                crate::call::transaction(conn, |c| {
                    let (user, resolution, email) = match resolve_account(
                        c,
                        &done.login,
                        &profile,
                        &done.policy,
                        &done.new_user_id,
                        now,
                    )? {
                        Ok(found) => found,
                        Err(refused) => return Ok(refused),
                    };
                    audit_email_link(c, done.email_link_audit.as_ref(), email.as_ref(), &user)?;
                    if let (Some(pending), Some(pending_profile)) = (&done.also_link, &also_profile)
                    {
                        let linked = resolve_once(
                            c,
                            pending,
                            pending_profile,
                            &FirstLogin::LinkTo(user.id.clone()),
                            "",
                            now,
                        )?
                        .0;
                        match linked {
                            LoginResolution::Existing(other) | LoginResolution::Linked(other)
                                if other.id != user.id =>
                            {
                                // Roll back (the profile refresh too): nothing is written.
                                return Err(CompleteError::LinkConflict(other.id));
                            }
                            _ => {}
                        }
                    }
                    let mut session = done.session.clone();
                    session.user_id = user.id.clone();
                    diesel::insert_into(crate::schema::sso_sessions::table)
                        .values(session)
                        .execute(c)?;
                    if done.require_phone && user.phone_verified_at.is_none() {
                        crate::flows::write_outcome(c, &done.flow_state, &phone_outcome)?;
                        return Ok(LoginCompletion::SignedIn {
                            user,
                            resolution,
                            needs_phone: true,
                            needs_consent: false,
                            email,
                        });
                    }
                    if consent_needed(c, done.consent.as_ref(), &user.id, &done.code.client_id)? {
                        crate::flows::write_outcome(c, &done.flow_state, &consent_outcome)?;
                        return Ok(LoginCompletion::SignedIn {
                            user,
                            resolution,
                            needs_phone: false,
                            needs_consent: true,
                            email,
                        });
                    }
                    let mut code = done.code.clone();
                    code.user_id = user.id.clone();
                    diesel::insert_into(crate::schema::authorization_codes::table)
                        .values(crate::models::CodeRecord::from_api(code)?)
                        .execute(c)?;
                    let mut audit = done.audit.clone();
                    audit.user_id = Some(user.id.clone());
                    diesel::insert_into(crate::schema::audit_log::table)
                        .values(crate::models::NewAuditRecord::from_api(audit)?)
                        .execute(c)?;
                    diesel::delete(crate::schema::auth_requests::table.find(&done.auth_request_id))
                        .execute(c)?;
                    crate::flows::write_outcome(c, &done.flow_state, &outcome)?;
                    Ok(LoginCompletion::SignedIn {
                        user,
                        resolution,
                        needs_phone: false,
                        needs_consent: false,
                        email,
                    })
                })
            };
            match retry_once_on_conflict(attempt) {
                Ok(done) => Ok(done),
                Err(CompleteError::LinkConflict(owner)) => {
                    Ok(LoginCompletion::LinkConflict { owner })
                }
                Err(CompleteError::Store(e)) => Err(e),
            }
        })
        .await
    }
}

impl Store {
    /// Finish a token exchange in one transaction: resolve the account (as
    /// [`Store::resolve_login`]), then store the grant's family and its first
    /// refresh token, and append the audit event. A refused or disabled account
    /// gets none of them.
    pub async fn complete_exchange(
        &self,
        done: CompleteExchange,
        now: i64,
    ) -> Result<LoginCompletion, StoreError> {
        let profile = to_json_text(&done.login.profile)?;
        self.write(move |conn| {
            let attempt = || {
                crate::call::transaction(conn, |c| {
                    let (user, resolution, email) = match resolve_account(
                        c,
                        &done.login,
                        &profile,
                        &done.policy,
                        &done.new_user_id,
                        now,
                    )? {
                        Ok(found) => found,
                        Err(refused) => return Ok(refused),
                    };
                    audit_email_link(c, done.email_link_audit.as_ref(), email.as_ref(), &user)?;
                    let user = match &done.verified_phone {
                        Some(phone)
                            if user.phone_number.as_deref() != Some(phone.number.as_str())
                                || user.phone_verified_at.is_none() =>
                        {
                            match crate::accounts::set_phone(c, &user.id, &phone.number, now)? {
                                crate::PhoneOutcome::Set(updated) => {
                                    let mut audit = phone.audit.clone();
                                    audit.user_id = Some(updated.id.clone());
                                    diesel::insert_into(crate::schema::audit_log::table)
                                        .values(crate::models::NewAuditRecord::from_api(audit)?)
                                        .execute(c)?;
                                    updated
                                }
                                crate::PhoneOutcome::TakenBy(_)
                                | crate::PhoneOutcome::NoSuchUser => user,
                            }
                        }
                        _ => user,
                    };
                    if done.require_phone && user.phone_verified_at.is_none() {
                        return Ok(LoginCompletion::SignedIn {
                            user,
                            resolution,
                            needs_phone: true,
                            needs_consent: false,
                            email,
                        });
                    }
                    if consent_needed(c, done.consent.as_ref(), &user.id, &done.family.client_id)? {
                        return Ok(LoginCompletion::SignedIn {
                            user,
                            resolution,
                            needs_phone: false,
                            needs_consent: true,
                            email,
                        });
                    }
                    let mut family = done.family.clone();
                    family.user_id = user.id.clone();
                    let family = crate::models::FamilyRecord::from_api(family)?;
                    diesel::insert_into(crate::schema::refresh_token_families::table)
                        .values(&family)
                        .execute(c)?;
                    if let Some(hash) = &done.refresh_token_hash {
                        crate::tokens::insert_token(c, hash.clone(), &family.id, now)?;
                    }
                    let mut audit = done.audit.clone();
                    audit.user_id = Some(user.id.clone());
                    diesel::insert_into(crate::schema::audit_log::table)
                        .values(crate::models::NewAuditRecord::from_api(audit)?)
                        .execute(c)?;
                    Ok(LoginCompletion::SignedIn {
                        user,
                        resolution,
                        needs_phone: false,
                        needs_consent: false,
                        email,
                    })
                })
            };
            retry_once_on_conflict(attempt)
        })
        .await
    }
}
