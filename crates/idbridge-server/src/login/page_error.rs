//! The error of a hosted page's handler: what the browser gets instead of the
//! page it asked for. A handler returns [`PageResult`] and stops at the first
//! failure with `?`; the error is either an error page (status and text-table
//! keys, in the person's language: [`crate::pages::ErrorPage`]) or an OAuth
//! error sent to the app in its response mode (a 302 with a query, or the
//! form_post page, with `iss` and the app's `state`: [`AppResponse`]).
//! Responses built elsewhere (a refused form's page, a redirect to start over)
//! pass through unchanged.

use super::request::AuthRequest;
use super::response::AppResponse;
use crate::pages::ErrorPage;
use crate::state::AppState;
use actix_web::error::InternalError;
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use idbridge_core::Locale;
use std::fmt;

/// What a hosted page's handler answers.
pub type PageResult = Result<HttpResponse, PageError>;

/// Why a hosted page's handler stopped, and what the browser gets instead.
#[derive(Debug)]
pub enum PageError {
    /// An error page: what happened and what to do, in the person's language.
    /// (Boxed, like `Response`: a handler's `Result` stays small.)
    Page(Box<ErrorPage>),
    /// An OAuth error response to the app (`error`, `error_description`,
    /// `iss`, `state`), in the app's response mode.
    App(AppResponse),
    /// A response already built: a refused form's page, a redirect, a page
    /// that asks the person to confirm it is them.
    Response(Box<HttpResponse>),
}

impl PageError {
    /// An error page from text-table keys.
    pub fn page(
        locale: Locale,
        status: StatusCode,
        what: &'static str,
        todo: &'static str,
    ) -> Self {
        Self::Page(Box::new(ErrorPage::new(locale, status, what, todo)))
    }

    /// 400: the sign-in request expired, was used, or is not this browser's.
    pub fn expired(locale: Locale) -> Self {
        Self::page(locale, StatusCode::BAD_REQUEST, "expired", "expired_todo")
    }

    /// 503: the broker's database is unavailable (the caller logs why).
    pub fn db_down(locale: Locale) -> Self {
        Self::page(
            locale,
            StatusCode::SERVICE_UNAVAILABLE,
            "db_down",
            "db_down_todo",
        )
    }

    /// 500: the broker failed inside (no random bytes, a value that does not
    /// serialize).
    pub fn internal(locale: Locale) -> Self {
        Self::page(
            locale,
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal_error_todo",
        )
    }

    /// 400: the request names an app this broker does not know.
    pub fn unknown_client(locale: Locale) -> Self {
        Self::page(
            locale,
            StatusCode::BAD_REQUEST,
            "unknown_client",
            "unknown_client_todo",
        )
    }

    /// The OAuth error `error` for the app of `ar`, with `iss` and its `state`.
    pub fn to_app(state: &AppState, ar: &AuthRequest, error: &str, description: &str) -> Self {
        Self::App(AppResponse::error(state, ar, error, description))
    }

    /// The response the browser gets.
    pub fn into_response(self) -> HttpResponse {
        match self {
            PageError::Page(page) => page.render(),
            PageError::App(app) => app.respond(),
            PageError::Response(resp) => *resp,
        }
    }
}

impl From<ErrorPage> for PageError {
    fn from(page: ErrorPage) -> Self {
        Self::Page(Box::new(page))
    }
}

impl From<HttpResponse> for PageError {
    fn from(resp: HttpResponse) -> Self {
        Self::Response(Box::new(resp))
    }
}

impl fmt::Display for PageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PageError::Page(page) => write!(f, "error page {} ({})", page.status, page.what),
            PageError::App(app) => write!(f, "error response to {}", app.redirect_uri),
            PageError::Response(resp) => write!(f, "response {}", resp.status()),
        }
    }
}

/// A handler's `Err` is answered with exactly its response (actix-web's
/// `InternalError::from_response`: no other status, body or header).
impl From<PageError> for actix_web::Error {
    fn from(e: PageError) -> Self {
        let reason = e.to_string();
        InternalError::from_response(reason, e.into_response()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody;

    fn body(resp: HttpResponse) -> String {
        let bytes = resp.into_body().try_into_bytes().unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[test]
    fn an_error_page_is_in_the_persons_language_with_its_status() {
        let resp = PageError::expired(Locale::ZhCn).into_response();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        let html = body(resp);
        assert!(
            html.contains(crate::i18n::t(Locale::ZhCn, "expired")),
            "{html}"
        );
        assert!(html.contains("lang=\"zh-CN\""), "{html}");
        let resp = PageError::db_down(Locale::En).into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(body(resp).contains("database is unavailable"));
    }

    #[test]
    fn an_error_for_the_app_is_its_response_and_a_built_response_passes_through() {
        let app = AppResponse {
            redirect_uri: "https://app.example/cb".into(),
            params: vec![
                ("error".into(), "access_denied".into()),
                ("iss".into(), "https://idp.example".into()),
                ("state".into(), "s".into()),
            ],
            form_post: false,
            ui_locales: None,
        };
        let resp = PageError::App(app).into_response();
        assert_eq!(resp.status(), StatusCode::FOUND);
        let location = resp
            .headers()
            .get(actix_web::http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(location.starts_with("https://app.example/cb?error=access_denied"));
        assert!(location.contains("state=s") && location.contains("iss="));
        let teapot = PageError::from(HttpResponse::ImATeapot().finish());
        assert_eq!(teapot.into_response().status(), StatusCode::IM_A_TEAPOT);
    }

    #[test]
    fn actix_answers_an_err_with_exactly_its_response() {
        let e: actix_web::Error = PageError::internal(Locale::En).into();
        let resp = e.error_response();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(body(resp).contains(crate::i18n::t(Locale::En, "internal_error")));
    }
}
