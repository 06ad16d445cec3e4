//! Hosted pages: server-rendered HTML in English and Simplified Chinese, with a
//! strict Content-Security-Policy per page. No JavaScript except what a connector's
//! embedded login needs (and then only from the origins it names).

use crate::i18n::Tr;
use actix_web::http::{header, StatusCode};
use actix_web::HttpResponse;
use askama::Template;
use idbridge_core::Locale;

pub const STYLESHEET: &str = r#"
:root { color-scheme: light; --fg:#1b1f24; --muted:#57606a; --accent:#07c160; --accent-strong:#067d3e; --bg:#f6f8fa; --card:#fff; --warn:#9a6700; }
* { box-sizing: border-box; }
body { margin:0; font: 16px/1.5 system-ui, -apple-system, "PingFang SC", "Microsoft YaHei", sans-serif; color:var(--fg); background:var(--bg); }
main { max-width: 28rem; margin: 3rem auto; background: var(--card); padding: 2rem; border-radius: 12px; box-shadow: 0 1px 3px rgba(0,0,0,.12); }
h1 { font-size: 1.4rem; margin-top: 0; }
p.detail, .muted { color: var(--muted); }
.warning { color: var(--warn); border-left: 4px solid var(--warn); padding-left: .75rem; }
ul.choices { list-style: none; padding: 0; }
ul.choices li { margin: .5rem 0; }
a.button, button { display:block; width:100%; text-align:center; padding:.75rem 1rem; border-radius:8px; border:1px solid #d0d7de; background:#fff; color:var(--fg); font-family:inherit; font-size:1rem; text-decoration:none; cursor:pointer; }
a.button:focus, button:focus, input:focus, select:focus { outline: 3px solid #0969da; outline-offset: 2px; }
/* White on WeChat green (#07c160) is 2.4:1; the darker green is 5.2:1 (WCAG AA). */
a.button.primary, button.primary, form button[type=submit] { background: var(--accent-strong); color:#fff; border-color: var(--accent-strong); }
ul.choices form button[type=submit], ul.identities form button[type=submit] { background:#fff; color:var(--fg); border-color:#d0d7de; }
label { display:block; margin-top:1rem; font-weight:600; }
input, select { width:100%; padding:.6rem; font-family:inherit; font-size:1rem; border:1px solid #8c959f; border-radius:6px; margin:.25rem 0 1rem; }
input + p.muted { margin-top: -.75rem; }
code, pre { font: 13px/1.4 ui-monospace, monospace; }
pre { white-space: pre-wrap; word-break: break-all; background: var(--bg); padding: .75rem; border-radius: 6px; }
main.wide { max-width: 60rem; }
iframe { border: 0; display: block; margin: 0 auto; }
h2 { font-size: 1.1rem; margin: 1.75rem 0 .5rem; }
form { margin: .5rem 0; }
.notice { background: #dafbe1; border-left: 4px solid var(--accent); padding: .5rem .75rem; }
ul.identities { list-style: none; padding: 0; }
ul.identities li { display: flex; justify-content: space-between; align-items: center; gap: 1rem; padding: .75rem 0; border-bottom: 1px solid #d8dee4; }
ul.identities li button { width: auto; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1rem; }
dt { font-weight: 600; }
dd { margin: 0; }
ul.scopes { padding-left: 1.25rem; }
ul.scopes li { margin: .35rem 0; }
form button.secondary { background:#fff; color:var(--fg); border-color:#d0d7de; margin-top:.5rem; }
"#;

pub use idbridge_core::escape_html as escape;

/// A page with its own CSP. `script_sources`/`frame_sources` widen it for an
/// embedded upstream login; everything else stays `'none'`.
pub struct Page<'a> {
    pub locale: Locale,
    pub title: &'a str,
    pub body_html: &'a str,
    pub status: StatusCode,
    pub script_sources: &'a [String],
    pub frame_sources: &'a [String],
    /// Where the page's forms may go besides the broker (a form_post response).
    pub form_actions: &'a [String],
    pub wide: bool,
}

impl<'a> Page<'a> {
    pub fn new(locale: Locale, title: &'a str, body_html: &'a str) -> Self {
        Self {
            locale,
            title,
            body_html,
            status: StatusCode::OK,
            script_sources: &[],
            frame_sources: &[],
            form_actions: &[],
            wide: false,
        }
    }

    pub fn status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    pub fn render(&self) -> HttpResponse {
        let scripts = if self.script_sources.is_empty() {
            "'none'".to_owned()
        } else {
            self.script_sources.join(" ")
        };
        let frames = if self.frame_sources.is_empty() {
            "'none'".to_owned()
        } else {
            self.frame_sources.join(" ")
        };
        let forms = if self.form_actions.is_empty() {
            "'self'".to_owned()
        } else {
            self.form_actions.join(" ")
        };
        let csp = format!(
            "default-src 'none'; style-src 'self'; img-src 'self' https: data:; script-src {scripts}; frame-src {frames}; frame-ancestors 'none'; base-uri 'none'; form-action {forms}"
        );
        let layout = Layout {
            t: Tr(self.locale),
            title: self.title,
            body: self.body_html,
            wide: self.wide,
        };
        let html = match layout.render() {
            Ok(html) => html,
            Err(e) => return render_failed(self.locale, &e),
        };
        HttpResponse::build(self.status)
            .insert_header((header::CONTENT_SECURITY_POLICY, csp))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .content_type("text/html; charset=utf-8")
            .body(html)
    }
}

/// The one script a form_post page runs: submit its form at once.
const FORM_POST_SCRIPT: &str = "document.forms[0].submit();";

/// The CSP source for [`FORM_POST_SCRIPT`]: `'sha256-<base64>'`.
fn form_post_script_source() -> String {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use base64::Engine;
    let hash = idbridge_tokens::hash_token(FORM_POST_SCRIPT);
    let raw = URL_SAFE_NO_PAD.decode(hash).unwrap_or_default();
    format!("'sha256-{}'", STANDARD.encode(raw))
}

#[derive(Template)]
#[template(path = "form_post.html")]
struct FormPost<'a> {
    t: Tr,
    /// Text-table key of the line above the button.
    intro: &'static str,
    action: &'a str,
    fields: &'a [(String, String)],
    script: &'static str,
}

/// The OAuth 2.0 Form Post Response Mode: a page that POSTs `fields` to `action`
/// (the app's redirect URI, whose origin is `origin`) by itself, with a visible
/// button for browsers without JavaScript. Its CSP allows exactly that script and
/// that form target.
pub fn form_post(
    locale: Locale,
    action: &str,
    origin: &str,
    fields: &[(String, String)],
) -> HttpResponse {
    self_posting_form(
        locale,
        action,
        origin,
        fields,
        ("form_post_title", "form_post_intro"),
    )
}

/// The page behind [`form_post`], with its title and intro (text-table keys):
/// a form that POSTs `fields` to `action` by itself.
pub fn self_posting_form(
    locale: Locale,
    action: &str,
    origin: &str,
    fields: &[(String, String)],
    (title, intro): (&'static str, &'static str),
) -> HttpResponse {
    let fragment = FormPost {
        t: Tr(locale),
        intro,
        action,
        fields,
        script: FORM_POST_SCRIPT,
    };
    let body = match fragment.render() {
        Ok(body) => body,
        Err(e) => return render_failed(locale, &e),
    };
    let scripts = [form_post_script_source()];
    let forms = [origin.to_owned()];
    let mut page = Page::new(locale, text(locale, title), &body);
    page.script_sources = &scripts;
    page.form_actions = &forms;
    page.render()
}

/// An error page, from text-table keys: what happened (with an optional detail
/// after it: a parameter's name, a sign-in method's id), what to do about it,
/// and optionally a connector's advice (already in the person's language), a
/// technical note for a support request, and one button. Its texts can only be
/// keys, so no page shows a sentence that is not in both languages.
#[derive(Debug, Clone)]
pub struct ErrorPage {
    pub locale: Locale,
    pub status: StatusCode,
    /// Text-table key of the title (`error_title` unless told).
    pub title: &'static str,
    /// Text-table key: what happened.
    pub what: &'static str,
    /// Shown after `what` (a name or an id, never a sentence).
    pub detail: Option<String>,
    /// Text-table key: what to do.
    pub todo: &'static str,
    /// A connector's advice for the person, in their language.
    pub advice: Option<String>,
    /// A technical line (stage and kind of a failure).
    pub note: Option<String>,
    /// A button: where it goes, and the text-table key of its label.
    pub button: Option<(String, &'static str)>,
}

impl ErrorPage {
    pub fn new(locale: Locale, status: StatusCode, what: &'static str, todo: &'static str) -> Self {
        Self {
            locale,
            status,
            title: "error_title",
            what,
            detail: None,
            todo,
            advice: None,
            note: None,
            button: None,
        }
    }

    pub fn title(mut self, key: &'static str) -> Self {
        self.title = key;
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn advice(mut self, advice: Option<String>) -> Self {
        self.advice = advice;
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }

    pub fn button(mut self, href: impl Into<String>, label: &'static str) -> Self {
        self.button = Some((href.into(), label));
        self
    }

    pub fn render(&self) -> HttpResponse {
        let locale = self.locale;
        let what = match &self.detail {
            Some(d) => format!("{} {d}", text(locale, self.what)),
            None => text(locale, self.what).to_owned(),
        };
        let mut body = format!(
            "<p role=\"alert\">{}</p><p class=\"detail\">{}</p>",
            escape(&what),
            escape(text(locale, self.todo))
        );
        if let Some(a) = &self.advice {
            body.push_str(&format!("<p class=\"detail\">{}</p>", escape(a)));
        }
        if let Some(n) = &self.note {
            body.push_str(&format!("<p class=\"muted\">{}</p>", escape(n)));
        }
        if let Some((href, label)) = &self.button {
            body.push_str(&format!(
                "<p><a class=\"button primary\" href=\"{}\">{}</a></p>",
                escape(href),
                escape(text(locale, label))
            ));
        }
        Page::new(locale, text(locale, self.title), &body)
            .status(self.status)
            .render()
    }
}

/// An error page: what happened, and what to do about it (text-table keys).
pub fn error_page(
    locale: Locale,
    status: StatusCode,
    what: &'static str,
    todo: &'static str,
) -> HttpResponse {
    ErrorPage::new(locale, status, what, todo).render()
}

/// A posted form without this browser's CSRF token for it (crate::csrf). 403.
pub fn bad_form(locale: Locale) -> HttpResponse {
    error_page(locale, StatusCode::FORBIDDEN, "bad_form", "bad_form_todo")
}

/// The page for input with a control character in it ([`crate::params::control_free`]):
/// what was wrong, where (`place`: a parameter name, "path", "cookie idb_session"),
/// and what to do. 400.
pub fn bad_input_page(locale: Locale, place: &str) -> HttpResponse {
    let todo = if place.starts_with("cookie") {
        "bad_input_cookie_todo"
    } else {
        "bad_input_todo"
    };
    ErrorPage::new(locale, StatusCode::BAD_REQUEST, "bad_input", todo)
        .detail(place)
        .render()
}

/// Two-language strings for the hosted pages (the table is in [`crate::i18n`]).
pub fn text(locale: Locale, key: &str) -> &'static str {
    crate::i18n::t(locale, key)
}

pub async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(STYLESHEET)
}

#[derive(Template)]
#[template(path = "layout.html")]
struct Layout<'a> {
    t: Tr,
    title: &'a str,
    body: &'a str,
    wide: bool,
}

fn render_failed(locale: Locale, e: &askama::Error) -> HttpResponse {
    tracing::error!(stage = "page", error = %e, "a page template failed to render");
    HttpResponse::InternalServerError()
        .content_type("text/plain; charset=utf-8")
        .body(text(locale, "page_failed"))
}

/// A page whose body is the template `fragment`.
pub fn render<T: Template>(locale: Locale, title: &str, fragment: &T) -> HttpResponse {
    render_status(locale, title, StatusCode::OK, fragment)
}

/// The CSP `form-action` of a page whose form may end in a redirect to an app
/// (`target`: its redirect URI): browsers check every redirect that follows a
/// form submission against `form-action`, so `'self'` alone would block the
/// broker's answer to an app on another origin (or a native app's scheme).
pub fn form_actions_to(target: &str) -> Vec<String> {
    let mut actions = vec!["'self'".to_owned()];
    if let Ok(url) = url::Url::parse(target) {
        match url.scheme() {
            "http" | "https" => actions.push(url.origin().ascii_serialization()),
            // A native app's own scheme (`com.example.app:/cb`) as a scheme source.
            scheme if !matches!(scheme, "javascript" | "data" | "blob" | "file") => {
                actions.push(format!("{scheme}:"))
            }
            _ => {}
        }
    }
    actions
}

/// [`render_status`] for a page of a sign-in whose form ends at the app's
/// `redirect_uri` ([`form_actions_to`]).
pub fn render_status_to_app<T: Template>(
    locale: Locale,
    title: &str,
    status: StatusCode,
    fragment: &T,
    redirect_uri: &str,
) -> HttpResponse {
    let forms = form_actions_to(redirect_uri);
    match fragment.render() {
        Ok(body) => {
            let mut page = Page::new(locale, title, &body).status(status);
            page.form_actions = &forms;
            page.render()
        }
        Err(e) => render_failed(locale, &e),
    }
}

/// [`render`] with another status (an error or a refusal shown as a page).
pub fn render_status<T: Template>(
    locale: Locale,
    title: &str,
    status: StatusCode,
    fragment: &T,
) -> HttpResponse {
    match fragment.render() {
        Ok(body) => Page::new(locale, title, &body).status(status).render(),
        Err(e) => render_failed(locale, &e),
    }
}

/// A link on a page (a button to a sign-in method, …).
pub struct Link {
    pub href: String,
    pub name: String,
}
