//! CSRF protection for the hosted forms: every form carries a token derived from
//! the browser's secret cookie (`idb_browser`, HttpOnly, SameSite=Lax) and the
//! form's purpose; a POST without the matching token is refused. Another site can
//! neither read the cookie nor compute the token.

use crate::http::{cookie, BROWSER_COOKIE};
use crate::state::AppState;
use actix_web::cookie::Cookie;
use actix_web::{HttpRequest, HttpResponse};
use idbridge_core::Locale;
use idbridge_tokens::{constant_time_eq, hash_token, random_token};
use std::collections::BTreeMap;

/// The browser's secret, and the cookie to set when the browser had none yet.
pub struct Browser {
    pub secret: String,
    pub new_cookie: Option<Cookie<'static>>,
}

impl Browser {
    /// The browser's secret from its cookie, or a new one (with a cookie to set).
    pub fn of(state: &AppState, req: &HttpRequest) -> Option<Self> {
        if let Some(c) = req.cookie(BROWSER_COOKIE) {
            return Some(Self {
                secret: c.value().to_owned(),
                new_cookie: None,
            });
        }
        let secret = random_token(32).ok()?;
        Some(Self {
            new_cookie: Some(cookie(state, BROWSER_COOKIE, secret.clone()).into_owned()),
            secret,
        })
    }

    /// The hash the store keeps for this browser (flows, codes, pending links).
    pub fn hash(&self) -> String {
        hash_token(&self.secret)
    }

    /// The token a form for `purpose` carries.
    pub fn csrf(&self, purpose: &str) -> String {
        token(&self.secret, purpose)
    }
}

fn token(secret: &str, purpose: &str) -> String {
    hash_token(&format!("csrf:{purpose}:{secret}"))
}

/// The hash of the browser cookie, if the request has one.
pub fn browser_hash(req: &HttpRequest) -> Option<String> {
    req.cookie(BROWSER_COOKIE).map(|c| hash_token(c.value()))
}

/// Whether a POSTed `csrf` value is the one this browser's form for `purpose` had.
pub fn valid(req: &HttpRequest, purpose: &str, sent: Option<&str>) -> bool {
    match (req.cookie(BROWSER_COOKIE), sent) {
        (Some(c), Some(sent)) => {
            constant_time_eq(token(c.value(), purpose).as_bytes(), sent.as_bytes())
        }
        _ => false,
    }
}

/// Why a posted form was refused.
#[derive(Debug)]
pub enum FormRefused {
    /// Its `csrf` field is missing or not this browser's for this form.
    Forged,
    /// A field holds a control character.
    Input(crate::params::Rejected),
}

impl FormRefused {
    /// The page that says so, in `locale`.
    pub fn page(&self, req: &HttpRequest, locale: Locale) -> HttpResponse {
        match self {
            FormRefused::Forged => crate::pages::bad_form(locale),
            FormRefused::Input(r) => crate::screen::page_refusal(req, r, locale),
        }
    }
}

/// A posted form's fields, when its `csrf` field is the one this browser's form
/// for `purpose` carried and no field holds a control character.
pub fn checked_form(
    req: &HttpRequest,
    body: &[u8],
    purpose: &str,
) -> Result<BTreeMap<String, String>, FormRefused> {
    let fields = crate::params::parse_first(body).map_err(FormRefused::Input)?;
    if valid(req, purpose, fields.get("csrf").map(String::as_str)) {
        Ok(fields)
    } else {
        Err(FormRefused::Forged)
    }
}
