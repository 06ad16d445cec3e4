//! The addresses that may link a new sign-in to an account (`account_emails`):
//! how an address is normalised, who holds it, and how the rows follow the
//! identities that vouched for them. The rule itself (when a login links, is
//! held for binding or is ignored) is applied in the login transaction
//! ([`crate::accounts`]); docs/accounts.md, "Linking by email", explains it.

use diesel::prelude::*;

use crate::error::StoreError;
use crate::models::NewLogin;
use crate::pool::AnyConnection;
use crate::schema::account_emails;

/// The form in which addresses are compared and stored: ASCII letters folded to
/// lower case, in the domain and in the local part; nothing else changes. Dots
/// and `+tags` are kept (whether `a.b+x@` reaches `ab@` is the mail host's
/// business, and guessing wrong would merge two people), and non-ASCII letters
/// are kept as they are: Unicode case folding maps distinct characters onto
/// one (the Kelvin sign `K` folds to `k`), which would let one address pass
/// for another.
pub fn email_key(address: &str) -> String {
    address.to_ascii_lowercase()
}

#[derive(Insertable, Queryable, Selectable, AsChangeset)]
#[diesel(table_name = account_emails)]
struct EmailRow {
    email: String,
    user_id: String,
    connector_id: String,
    subject: String,
    verified_at: i64,
}

/// The account that holds the login's address as a link target: recorded by a
/// connector that is trusted now.
pub(crate) fn owner(c: &mut AnyConnection, login: &NewLogin) -> Result<Option<String>, StoreError> {
    let Some(email) = &login.email else {
        return Ok(None);
    };
    Ok(account_emails::table
        .find(&email.address)
        .filter(account_emails::connector_id.eq_any(&email.trusted_sources))
        .select(account_emails::user_id)
        .first(c)
        .optional()?)
}

/// After a login of `user_id`'s identity: its address becomes (or stays) a link
/// target when it links (trusted and verified), and a row it vouched for before
/// goes when it no longer does (another address, unverified now, or none).
/// An address another account holds stays that account's — except for an
/// account this transaction just `created` because no one held it: then a
/// concurrent login recorded it meanwhile, and [`StoreError::Conflict`] makes
/// the caller's transaction run again and link to that account. (A concurrent
/// insert of the same address fails with a conflict by itself, on the primary
/// key; this covers the one that committed between our look-up and here.)
pub(crate) fn follow(
    c: &mut AnyConnection,
    login: &NewLogin,
    user_id: &str,
    created: bool,
    now: i64,
) -> Result<(), StoreError> {
    let linking = login.email.as_ref().filter(|e| e.links());
    let mut stale = account_emails::table
        .filter(account_emails::connector_id.eq(&login.connector_id))
        .filter(account_emails::subject.eq(&login.subject))
        .into_boxed();
    if let Some(email) = linking {
        stale = stale.filter(account_emails::email.ne(&email.address));
    }
    let stale: Vec<String> = stale.select(account_emails::email).load(c)?;
    if !stale.is_empty() {
        diesel::delete(account_emails::table.filter(account_emails::email.eq_any(&stale)))
            .execute(c)?;
    }
    let Some(email) = linking else {
        return Ok(());
    };
    let row = EmailRow {
        email: email.address.clone(),
        user_id: user_id.to_owned(),
        connector_id: login.connector_id.clone(),
        subject: login.subject.clone(),
        verified_at: now,
    };
    let held: Option<EmailRow> = account_emails::table
        .find(&email.address)
        .select(EmailRow::as_select())
        .first(c)
        .optional()?;
    match held {
        None => {
            diesel::insert_into(account_emails::table)
                .values(&row)
                .execute(c)?;
        }
        // Recorded by a connector that is no longer trusted: not a link target,
        // so the account that now proves it takes it over.
        Some(old) if !email.trusted_sources.contains(&old.connector_id) => {
            diesel::update(account_emails::table.find(&email.address))
                .set(&row)
                .execute(c)?;
        }
        Some(old) if old.connector_id == row.connector_id && old.subject == row.subject => {
            diesel::update(account_emails::table.find(&email.address))
                .set(account_emails::verified_at.eq(now))
                .execute(c)?;
        }
        Some(old) if old.user_id != user_id && created => {
            return Err(StoreError::Conflict(
                "account_emails: a concurrent sign-in recorded this address".into(),
            ))
        }
        Some(old) if old.user_id != user_id => tracing::warn!(
            connector_id = %login.connector_id,
            user_id = %user_id,
            email_owner = %old.user_id,
            "the verified email of this identity is another account's link target; it stays that account's"
        ),
        Some(_) => {}
    }
    Ok(())
}

/// An identity is unlinked: the addresses it vouched for are no link targets.
pub(crate) fn forget_identity(
    c: &mut AnyConnection,
    connector_id: &str,
    subject: &str,
) -> Result<(), StoreError> {
    diesel::delete(
        account_emails::table
            .filter(account_emails::connector_id.eq(connector_id))
            .filter(account_emails::subject.eq(subject)),
    )
    .execute(c)?;
    Ok(())
}

impl crate::store::Store {
    /// A user's link-target addresses (normalised), in order: what the account
    /// page shows as "emails that link new sign-ins".
    pub async fn list_account_emails(&self, user_id: &str) -> Result<Vec<String>, StoreError> {
        let user_id = user_id.to_owned();
        self.read(move |c| {
            Ok(account_emails::table
                .filter(account_emails::user_id.eq(&user_id))
                .order(account_emails::email.asc())
                .select(account_emails::email)
                .load(c)?)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::email_key;

    #[test]
    fn only_ascii_letters_fold() {
        assert_eq!(
            email_key("Alice.B+Tag@Example.COM"),
            "alice.b+tag@example.com"
        );
        // The Kelvin sign is not a K: no fold onto "kate@".
        assert_eq!(email_key("\u{212A}ate@x.org"), "\u{212A}ate@x.org");
        assert_eq!(email_key("ÄBC@bücher.de"), "Äbc@bücher.de");
    }
}
