//! Consent: before an app gets its first code for an account, the person is
//! shown what it gets and allows it (or not). What they allowed is remembered
//! per account and app (the union of the scopes), so a later request for the
//! same or fewer scopes asks nothing; the account page lists it and revokes it.
//! A first-party app (`skip_consent`) is never asked about unless it sends
//! `prompt=consent`; an app registered through RFC 7591 is always asked.
//!
//! | file | holds |
//! |---|---|
//! | `mod` | the scopes the page names (whether a request needs it: [`crate::login::consent_step`]) |
//! | `page` | GET/POST /login/{request}/consent: Allow (the code) or Deny (`access_denied`) |
//! | `apps` | the account page's "Apps you have allowed" and POST /account/consents/revoke |

pub mod apps;
pub mod page;

/// The scopes the broker can describe, in the order the page lists them, with
/// the text key of each line.
const DESCRIBED: &[(&str, &str)] = &[
    ("openid", "scope_openid"),
    ("profile", "scope_profile"),
    ("email", "scope_email"),
    ("phone", "scope_phone"),
    ("offline_access", "scope_offline_access"),
];

/// The text keys of the lines for `scope` (space-separated), in the page's
/// order; a scope the broker does not know gets no line (it grants nothing).
pub fn lines(scope: &str) -> Vec<&'static str> {
    DESCRIBED
        .iter()
        .filter(|(s, _)| scope.split_ascii_whitespace().any(|asked| asked == *s))
        .map(|(_, key)| *key)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_scopes_get_a_line_each_in_a_fixed_order() {
        assert_eq!(
            lines("offline_access email openid custom"),
            ["scope_openid", "scope_email", "scope_offline_access"]
        );
        assert!(lines("").is_empty());
    }
}
