//! The person's email address and phone number as apps get them (OpenID
//! Connect Core §5.1, §5.4): `email` and `email_verified` under the `email`
//! scope, `phone_number` and `phone_number_verified` under `phone`.
//!
//! A phone number the broker verified itself (a one-time code) comes first and
//! is verified. Otherwise both come from what the person's upstream identities
//! said at their last sign-in (`Profile::email`, `phone_number` and their
//! `*_verified` flags, screened when they arrived): a verified one before an
//! unverified one, then the most recently used identity. The broker never turns
//! an upstream's unverified address into a verified one.

use crate::error::OAuthError;
use crate::params::has_scope;
use crate::state::AppState;
use idbridge_core::Profile;
use idbridge_store::{Identity, User};
use serde_json::{Map, Value};

/// An address and whether it is verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub value: String,
    pub verified: bool,
}

/// What the `email` and `phone` scopes release, once looked up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contact {
    pub email: Option<Address>,
    pub phone: Option<Address>,
}

impl Contact {
    /// The claims `scope` allows, into `obj`.
    pub fn claims(&self, scope: &str, obj: &mut Map<String, Value>) {
        if has_scope(scope, "email") {
            if let Some(e) = &self.email {
                obj.insert("email".into(), e.value.clone().into());
                obj.insert("email_verified".into(), e.verified.into());
            }
        }
        if has_scope(scope, "phone") {
            if let Some(p) = &self.phone {
                obj.insert("phone_number".into(), p.value.clone().into());
                obj.insert("phone_number_verified".into(), p.verified.into());
            }
        }
    }
}

/// The contact of `user` as far as `scope` needs it: no lookup at all without
/// `email` or `phone`, and none for the phone when the broker verified one.
pub async fn lookup(state: &AppState, user: &User, scope: &str) -> Result<Contact, OAuthError> {
    let wants_email = has_scope(scope, "email");
    let wants_upstream_phone = has_scope(scope, "phone") && broker_phone(user).is_none();
    if !wants_email && !wants_upstream_phone {
        return Ok(of(user, &[]));
    }
    let identities = state
        .store
        .list_identities(&user.id)
        .await
        .map_err(OAuthError::store)?;
    Ok(of(user, &identities))
}

/// The contact of `user` from identities already loaded (`user`'s).
pub fn of(user: &User, identities: &[Identity]) -> Contact {
    let upstream = from_identities(identities);
    Contact {
        email: upstream.email,
        phone: broker_phone(user).or(upstream.phone),
    }
}

/// A phone number the broker verified itself.
fn broker_phone(user: &User) -> Option<Address> {
    match (&user.phone_number, user.phone_verified_at) {
        (Some(phone), Some(_)) => Some(Address {
            value: phone.clone(),
            verified: true,
        }),
        _ => None,
    }
}

/// The best email and phone the identities' profiles hold.
fn from_identities(identities: &[Identity]) -> Contact {
    let mut profiles: Vec<(i64, Profile)> = identities
        .iter()
        .filter_map(|i| {
            serde_json::from_value::<Profile>(i.profile.clone())
                .ok()
                .map(|p| (i.last_login_at, p))
        })
        .collect();
    // Most recently used first.
    profiles.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
    let best = |pick: &dyn Fn(&Profile) -> Option<(String, bool)>| {
        let found: Vec<(String, bool)> = profiles.iter().filter_map(|(_, p)| pick(p)).collect();
        found
            .iter()
            .find(|(_, verified)| *verified)
            .or_else(|| found.first())
            .map(|(value, verified)| Address {
                value: value.clone(),
                verified: *verified,
            })
    };
    Contact {
        email: best(&|p: &Profile| {
            let email = Profile::safe_email(p.email.as_deref()?).ok()?;
            Some((email, p.email_verified == Some(true)))
        }),
        phone: best(&|p: &Profile| {
            let phone = Profile::safe_phone(p.phone_number.as_deref()?).ok()?;
            Some((phone, p.phone_number_verified == Some(true)))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn identity(connector: &str, last_login_at: i64, profile: Value) -> Identity {
        Identity {
            connector_id: connector.into(),
            subject: format!("{connector}-sub"),
            user_id: "u1".into(),
            link_scope: None,
            link_key: None,
            profile,
            upstream_tokens: None,
            created_at: 0,
            last_login_at,
        }
    }

    #[test]
    fn a_verified_address_beats_a_more_recent_unverified_one() {
        let c = from_identities(&[
            identity(
                "old",
                10,
                json!({"email": "a@corp.example", "email_verified": true}),
            ),
            identity(
                "new",
                20,
                json!({"email": "a@home.example", "email_verified": false}),
            ),
        ]);
        assert_eq!(
            c.email,
            Some(Address {
                value: "a@corp.example".into(),
                verified: true
            })
        );
    }

    #[test]
    fn among_equals_the_most_recent_identity_wins_and_unverified_stays_unverified() {
        let c = from_identities(&[
            identity("old", 10, json!({"email": "old@example.com"})),
            identity(
                "new",
                20,
                json!({"email": "new@example.com", "phone_number": "+8613800138000"}),
            ),
            identity("none", 30, json!({"name": "Alice"})),
        ]);
        assert_eq!(
            c.email,
            Some(Address {
                value: "new@example.com".into(),
                verified: false
            })
        );
        assert_eq!(
            c.phone,
            Some(Address {
                value: "+8613800138000".into(),
                verified: false
            })
        );
    }

    #[test]
    fn an_implausible_stored_address_is_never_released() {
        let c = from_identities(&[identity(
            "x",
            1,
            json!({"email": "not an address", "email_verified": true}),
        )]);
        assert_eq!(c.email, None);
    }

    #[test]
    fn claims_follow_the_scope() {
        let c = Contact {
            email: Some(Address {
                value: "a@example.com".into(),
                verified: true,
            }),
            phone: Some(Address {
                value: "+8613800138000".into(),
                verified: false,
            }),
        };
        let mut obj = Map::new();
        c.claims("openid profile", &mut obj);
        assert!(obj.is_empty());
        c.claims("openid email", &mut obj);
        assert_eq!(
            Value::Object(obj.clone()),
            json!({"email": "a@example.com", "email_verified": true})
        );
        let mut obj = Map::new();
        c.claims("openid phone", &mut obj);
        assert_eq!(
            Value::Object(obj),
            json!({"phone_number": "+8613800138000", "phone_number_verified": false})
        );
    }
}
