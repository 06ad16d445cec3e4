//! What the broker makes of a connector's failure: one row per
//! [`ErrorKind`], read by every place that answers one (the sign-in's error
//! page and error redirect, token exchange, the re-check on refresh, upstream
//! health). The person's texts are keys of the text table, so both languages
//! come from one place.

use actix_web::http::StatusCode;
use idbridge_core::ErrorKind;

/// How a failure of one kind is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// The OAuth error code an app gets in the authorization response.
    pub authorize_error: &'static str,
    /// The OAuth error code an app gets at the token endpoint (token exchange,
    /// a refresh re-checked upstream).
    pub token_error: &'static str,
    /// The HTTP status of the page the person sees: 502 when the upstream or
    /// the broker's setup failed, 403 when a policy refused this identity, 400
    /// when the request itself is at fault.
    pub page_status: StatusCode,
    /// Text-table key: what happened, for the person.
    pub what: &'static str,
    /// Text-table key: what the person can do.
    pub todo: &'static str,
    /// Whether it says the upstream is failing: it counts against the
    /// connector's health (`/healthz` shows it degraded).
    pub outage: bool,
    /// Whether, when re-checking a person upstream on refresh, it means the
    /// upstream no longer accepts them (tokens revoked or expired, person
    /// removed or disabled, a signed token no longer verifies): the grant ends.
    /// Other failures leave the grant alone.
    pub ends_grant: bool,
}

const fn answer(
    authorize_error: &'static str,
    token_error: &'static str,
    page_status: StatusCode,
    text: (&'static str, &'static str),
    outage: bool,
    ends_grant: bool,
) -> Answer {
    Answer {
        authorize_error,
        token_error,
        page_status,
        what: text.0,
        todo: text.1,
        outage,
        ends_grant,
    }
}

const EXPIRED: (&str, &str) = ("upstream_code_expired", "upstream_code_expired_todo");
const DOWN: (&str, &str) = ("upstream_down", "upstream_down_todo");
const SETUP: (&str, &str) = ("upstream_setup", "upstream_setup_todo");

/// The table.
pub fn answer_for(kind: ErrorKind) -> Answer {
    use ErrorKind as K;
    const BAD_GATEWAY: StatusCode = StatusCode::BAD_GATEWAY;
    match kind {
        K::UserCancelled => answer(
            "access_denied",
            "invalid_grant",
            StatusCode::FORBIDDEN,
            ("upstream_cancelled", "upstream_cancelled_todo"),
            false,
            true,
        ),
        K::InvalidCode | K::CodeReused => answer(
            "server_error",
            "invalid_grant",
            BAD_GATEWAY,
            EXPIRED,
            false,
            true,
        ),
        K::InvalidRequest => answer(
            "server_error",
            "invalid_grant",
            StatusCode::BAD_REQUEST,
            ("upstream_incomplete", "upstream_incomplete_todo"),
            false,
            false,
        ),
        K::TokenVerificationFailed => answer(
            "server_error",
            "invalid_grant",
            BAD_GATEWAY,
            ("upstream_unverified", "upstream_unverified_todo"),
            false,
            true,
        ),
        K::NotAllowed => answer(
            "access_denied",
            "invalid_grant",
            StatusCode::FORBIDDEN,
            ("upstream_not_allowed", "upstream_not_allowed_todo"),
            false,
            true,
        ),
        K::UpstreamUnavailable | K::Timeout | K::RateLimited | K::BadResponse => answer(
            "temporarily_unavailable",
            "temporarily_unavailable",
            BAD_GATEWAY,
            DOWN,
            true,
            false,
        ),
        K::BadCredentials | K::Misconfigured | K::Unsupported => answer(
            "server_error",
            "server_error",
            BAD_GATEWAY,
            SETUP,
            false,
            false,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use idbridge_core::Locale;

    #[test]
    fn every_kind_has_texts_in_both_languages() {
        for kind in ErrorKind::ALL {
            let a = answer_for(kind);
            for key in [a.what, a.todo] {
                for locale in [Locale::En, Locale::ZhCn] {
                    assert!(
                        !crate::i18n::t(locale, key).is_empty(),
                        "{kind:?}: no {locale:?} text for {key}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_codes_are_oauth_codes_for_their_endpoint() {
        // RFC 6749 4.1.2.1 for the authorization response, 5.2 (and the
        // temporarily_unavailable the broker uses for upstream outages) for /token.
        let authorize = ["access_denied", "server_error", "temporarily_unavailable"];
        let token = ["invalid_grant", "server_error", "temporarily_unavailable"];
        for kind in ErrorKind::ALL {
            let a = answer_for(kind);
            assert!(authorize.contains(&a.authorize_error), "{kind:?}");
            assert!(token.contains(&a.token_error), "{kind:?}");
        }
    }

    /// Outages are the upstream's failures, and only they: the upstream being
    /// down, slow, throttling or answering garbage, never the person's doing
    /// or the broker's setup.
    #[test]
    fn outages_are_exactly_the_upstreams_failures() {
        let outages: Vec<ErrorKind> = ErrorKind::ALL
            .into_iter()
            .filter(|k| answer_for(*k).outage)
            .collect();
        assert_eq!(
            outages,
            [
                ErrorKind::UpstreamUnavailable,
                ErrorKind::Timeout,
                ErrorKind::BadResponse,
                ErrorKind::RateLimited,
            ]
        );
        for k in outages {
            assert_eq!(answer_for(k).authorize_error, "temporarily_unavailable");
            assert_eq!(answer_for(k).token_error, "temporarily_unavailable");
        }
    }

    /// A re-check ends a grant only on the upstream's word about the person,
    /// never because the upstream or the broker's setup failed.
    #[test]
    fn only_the_upstreams_refusal_ends_a_grant() {
        for kind in ErrorKind::ALL {
            let a = answer_for(kind);
            assert!(!(a.ends_grant && a.outage), "{kind:?}");
            if a.ends_grant {
                assert_eq!(a.token_error, "invalid_grant", "{kind:?}");
            }
        }
        assert!(!answer_for(ErrorKind::Misconfigured).ends_grant);
        assert!(!answer_for(ErrorKind::BadCredentials).ends_grant);
        assert!(answer_for(ErrorKind::InvalidCode).ends_grant);
    }

    #[test]
    fn a_policy_refusal_is_forbidden_not_a_gateway_failure() {
        assert_eq!(
            answer_for(ErrorKind::NotAllowed).page_status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            answer_for(ErrorKind::NotAllowed).authorize_error,
            "access_denied"
        );
    }
}
