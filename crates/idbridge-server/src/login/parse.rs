//! The authorization request, read: one pure function from the request's
//! parameters and the client's registration to typed values, or to the refusal
//! the broker gives — a page when the redirect URI cannot be trusted (nothing may
//! be sent to it), otherwise an OAuth error for the app. What needs the broker's
//! state (the connector asked for, `id_token_hint`, the SSO session) is checked by
//! the handler after this ([`super::authorize`]).

use super::request::{AuthRequest, Prompt, PromptValue};
use super::response::web_origin;
use crate::clients::Client;
use crate::params::{granted_scope, parse_first, Rejected};
use std::collections::BTreeMap;

/// An authorization request that passed every check that needs no state.
#[derive(Debug, Clone)]
pub struct Authorization {
    pub client_id: String,
    /// Registered for the client.
    pub redirect_uri: String,
    pub response_mode: ResponseMode,
    /// The granted scope: `openid` and what else the broker supports.
    pub scope: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub prompt: Prompt,
    pub max_age: Option<i64>,
    pub code_challenge: Option<CodeChallenge>,
    pub login_hint: Option<String>,
    pub ui_locales: Option<String>,
    /// `connector=`: the sign-in method the app picked (not yet checked).
    pub connector: Option<String>,
    /// `id_token_hint`, not yet verified.
    pub id_token_hint: Option<String>,
}

/// How the response reaches the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseMode {
    /// A 302 to the redirect URI with the parameters in its query.
    Query,
    /// A page that POSTs the parameters to the (http or https) redirect URI.
    FormPost,
}

/// A PKCE challenge: the base64url SHA-256 of the verifier (S256; plain is refused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeChallenge(String);

impl CodeChallenge {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why the request is refused.
#[derive(Debug)]
pub enum Refusal {
    /// The redirect URI is missing, repeated or not registered for the client: the
    /// person gets a page, the app nothing.
    BadRedirect,
    /// An OAuth error for the app, sent to its redirect URI in its response mode.
    ToApp(Box<AppError>),
}

/// An OAuth error for the app, and where it goes.
#[derive(Debug)]
pub struct AppError {
    /// Where and how the error goes (redirect URI, state, response mode).
    pub reply: AuthRequest,
    pub error: &'static str,
    pub description: String,
    /// A parameter was repeated: refused before the app's turn at local work
    /// (crate::fair), like every refusal that comes before reading the request.
    pub repeated: bool,
}

/// The request's parameters from its raw query or form, and the name of a
/// parameter given twice (then the first value of each counts, so the refusal
/// can still reach the app). `Err` for a control character.
pub fn read(raw: &str) -> Result<(BTreeMap<String, String>, Option<String>), Rejected> {
    match crate::params::parse(raw) {
        Ok(p) => Ok((p, None)),
        Err(Rejected::Repeated(name)) => parse_first(raw.as_bytes()).map(|p| (p, Some(name))),
        Err(control) => Err(control),
    }
}

/// Whether the repeated parameter makes the client or redirect URI uncertain
/// (refused with a page, before the client is even looked up).
pub fn repeats_target(repeated: Option<&str>) -> bool {
    matches!(repeated, Some("client_id") | Some("redirect_uri"))
}

/// Check an authorization request of `client` (the one its `client_id` names).
pub fn parse(
    params: &BTreeMap<String, String>,
    repeated: Option<&str>,
    client: &Client,
) -> Result<Authorization, Refusal> {
    let get = |name: &str| params.get(name).map(String::as_str);
    if repeats_target(repeated) {
        return Err(Refusal::BadRedirect);
    }
    let redirect_uri = match get("redirect_uri") {
        Some(uri) if client.redirect_uri_allowed(uri) => uri.to_owned(),
        _ => return Err(Refusal::BadRedirect),
    };
    let form_post =
        get("response_mode") == Some("form_post") && web_origin(&redirect_uri).is_some();
    let owned = |name: &str| params.get(name).cloned();
    // Errors from here on already follow the asked-for mode; a form_post the
    // redirect URI cannot take is refused below, in query mode.
    let reply = AuthRequest {
        client_id: client.id.clone(),
        redirect_uri: redirect_uri.clone(),
        scope: String::new(),
        state: owned("state"),
        nonce: owned("nonce"),
        code_challenge: None,
        prompt: Prompt::default(),
        max_age: None,
        login_hint: owned("login_hint"),
        ui_locales: owned("ui_locales"),
        pending: None,
        link_to: None,
        form_post,
    };
    let refuse = |error: &'static str, description: &str| {
        Err(Refusal::ToApp(Box::new(AppError {
            reply: reply.clone(),
            error,
            description: description.to_owned(),
            repeated: false,
        })))
    };
    if let Some(name) = repeated {
        return Err(Refusal::ToApp(Box::new(AppError {
            reply: reply.clone(),
            error: "invalid_request",
            description: format!("parameter {name} was given more than once"),
            repeated: true,
        })));
    }
    match get("response_type") {
        Some("code") => {}
        None => return refuse("invalid_request", "response_type is required"),
        Some(_) => {
            return refuse(
                "unsupported_response_type",
                "only response_type=code is supported",
            )
        }
    }
    let response_mode = match get("response_mode") {
        None | Some("query") => ResponseMode::Query,
        Some("form_post") if form_post => ResponseMode::FormPost,
        Some("form_post") => {
            return refuse(
                "invalid_request",
                "response_mode=form_post needs an http or https redirect_uri",
            )
        }
        Some(_) => {
            return refuse(
                "invalid_request",
                "response_mode must be query or form_post",
            )
        }
    };
    if params.contains_key("request") {
        return refuse("request_not_supported", "request objects are not supported");
    }
    if params.contains_key("request_uri") {
        return refuse("request_uri_not_supported", "request_uri is not supported");
    }
    let Some(scope) = granted_scope(get("scope").unwrap_or("")) else {
        return refuse("invalid_scope", "the openid scope is required");
    };
    let prompt = match get("prompt") {
        None => Prompt::default(),
        Some(raw) => {
            let values: Option<Vec<PromptValue>> = raw
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(PromptValue::parse)
                .collect();
            let Some(values) = values else {
                return refuse(
                    "invalid_request",
                    "prompt must be none, login, consent or select_account",
                );
            };
            if values.contains(&PromptValue::None) && values.len() > 1 {
                return refuse(
                    "invalid_request",
                    "prompt=none cannot be combined with other values",
                );
            }
            Prompt::from(values)
        }
    };
    let max_age = match get("max_age").map(str::parse::<i64>) {
        None => None,
        Some(Ok(v)) if v >= 0 => Some(v),
        Some(_) => return refuse("invalid_request", "max_age must be a non-negative integer"),
    };
    let code_challenge =
        match (get("code_challenge"), get("code_challenge_method")) {
            (Some(_), Some(m)) if m != "S256" => {
                return refuse(
                    "invalid_request",
                    "code_challenge_method must be S256 (plain is not allowed)",
                )
            }
            (Some(_), None) => return refuse(
                "invalid_request",
                "code_challenge_method=S256 is required with code_challenge (plain is not allowed)",
            ),
            (Some(c), Some(_)) => {
                let ok = c.len() == 43
                    && c.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if !ok {
                    return refuse(
                    "invalid_request",
                    "code_challenge must be the base64url SHA-256 of the verifier (43 characters)",
                );
                }
                Some(CodeChallenge(c.to_owned()))
            }
            (None, Some(_)) => {
                return refuse(
                    "invalid_request",
                    "code_challenge_method without code_challenge",
                )
            }
            (None, None) if client.require_pkce => {
                return refuse(
                    "invalid_request",
                    "PKCE is required: send code_challenge and code_challenge_method=S256",
                )
            }
            (None, None) => None,
        };
    Ok(Authorization {
        client_id: reply.client_id,
        redirect_uri,
        response_mode,
        scope,
        state: reply.state,
        nonce: reply.nonce,
        prompt,
        max_age,
        code_challenge,
        login_hint: reply.login_hint,
        ui_locales: reply.ui_locales,
        connector: owned("connector"),
        id_token_hint: owned("id_token_hint"),
    })
}

impl Authorization {
    /// The request as the sign-in keeps it (and answers it).
    pub fn to_request(&self) -> AuthRequest {
        AuthRequest {
            client_id: self.client_id.clone(),
            redirect_uri: self.redirect_uri.clone(),
            scope: self.scope.clone(),
            state: self.state.clone(),
            nonce: self.nonce.clone(),
            code_challenge: self.code_challenge.as_ref().map(|c| c.0.clone()),
            prompt: self.prompt.clone(),
            max_age: self.max_age,
            login_hint: self.login_hint.clone(),
            ui_locales: self.ui_locales.clone(),
            pending: None,
            link_to: None,
            form_post: self.response_mode == ResponseMode::FormPost,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PromptValue as P;

    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn client(require_pkce: bool) -> Client {
        Client {
            id: "app".into(),
            name: "App".into(),
            secret_hash: Some("hash".into()),
            redirect_uris: vec!["https://app.example/cb".into(), "com.app:/cb".into()],
            post_logout_redirect_uris: Vec::new(),
            require_pkce,
            id_token_alg: None,
            connectors: Vec::new(),
            require_phone: false,
            skip_consent: false,
            refresh_without_offline_access: false,
            id_token_on_refresh: true,
            require_pushed_authorization_requests: false,
            previous_secret: None,
            token_auth_method: None,
        }
    }

    /// What a row expects.
    #[derive(Debug)]
    enum Want {
        Scope(&'static str),
        Prompt(&'static [PromptValue]),
        MaxAge(Option<i64>),
        Mode(ResponseMode),
        Challenge(Option<&'static str>),
        Picked(Option<&'static str>, Option<&'static str>),
        /// The OAuth error and description the app gets.
        Error(&'static str, &'static str),
        /// An error page; nothing goes to the redirect URI.
        Page,
    }

    /// `raw` completes a valid request unless it names the parameter itself.
    fn run(raw: &str, require_pkce: bool) -> Result<Authorization, Refusal> {
        let base = [
            ("client_id", "app"),
            ("redirect_uri", "https%3A%2F%2Fapp.example%2Fcb"),
            ("response_type", "code"),
            ("scope", "openid"),
        ];
        let mut query = raw.to_owned();
        for (name, value) in base {
            if !raw.split('&').any(|p| p.split('=').next() == Some(name)) {
                query.push_str(&format!("&{name}={value}"));
            }
        }
        let (params, repeated) = match read(&query) {
            Ok(p) => p,
            Err(e) => panic!("{raw}: {e}"),
        };
        parse(&params, repeated.as_deref(), &client(require_pkce))
    }

    #[test]
    fn authorization_requests_read_as_typed_values_or_the_exact_refusal() {
        use ResponseMode::*;
        use Want::*;
        let rows: &[(&str, bool, Want)] = &[
            // The redirect URI first: nothing goes to one that is not registered.
            ("redirect_uri=https%3A%2F%2Fevil.example%2Fcb", false, Page),
            ("redirect_uri=https%3A%2F%2Fapp.example%2Fcb%2F", false, Page),
            ("client_id=app&client_id=other", false, Page),
            ("redirect_uri=https%3A%2F%2Fapp.example%2Fcb&redirect_uri=https%3A%2F%2Fapp.example%2Fcb", false, Page),
            ("state=a&state=b", false, Error("invalid_request", "parameter state was given more than once")),
            // response_type
            ("response_type=token", false, Error("unsupported_response_type", "only response_type=code is supported")),
            ("response_type=code%20id_token", false, Error("unsupported_response_type", "only response_type=code is supported")),
            // response_mode
            ("response_mode=query", false, Mode(Query)),
            ("response_mode=form_post", false, Mode(FormPost)),
            ("response_mode=form_post&redirect_uri=com.app%3A%2Fcb", false, Error("invalid_request", "response_mode=form_post needs an http or https redirect_uri")),
            ("response_mode=fragment", false, Error("invalid_request", "response_mode must be query or form_post")),
            ("", false, Mode(Query)),
            // request objects
            ("request=eyJ", false, Error("request_not_supported", "request objects are not supported")),
            ("request_uri=https%3A%2F%2Fapp.example%2Fr", false, Error("request_uri_not_supported", "request_uri is not supported")),
            // scope
            ("scope=profile", false, Error("invalid_scope", "the openid scope is required")),
            ("scope=openid", false, Scope("openid")),
            ("scope=offline_access%20email%20openid%20profile", false, Scope("openid profile email offline_access")),
            ("scope=openid%20address%20phone", false, Scope("openid phone")),
            ("scope=openid%20%20phone", false, Scope("openid phone")),
            // prompt
            ("", false, Prompt(&[])),
            ("prompt=login", false, Prompt(&[P::Login])),
            ("prompt=consent%20select_account", false, Prompt(&[P::Consent, P::SelectAccount])),
            ("prompt=none", false, Prompt(&[P::None])),
            ("prompt=none%20login", false, Error("invalid_request", "prompt=none cannot be combined with other values")),
            ("prompt=signup", false, Error("invalid_request", "prompt must be none, login, consent or select_account")),
            // max_age
            ("max_age=0", false, MaxAge(Some(0))),
            ("max_age=3600", false, MaxAge(Some(3600))),
            ("", false, MaxAge(None)),
            ("max_age=-1", false, Error("invalid_request", "max_age must be a non-negative integer")),
            ("max_age=1h", false, Error("invalid_request", "max_age must be a non-negative integer")),
            // PKCE
            ("", false, Challenge(None)),
            ("", true, Error("invalid_request", "PKCE is required: send code_challenge and code_challenge_method=S256")),
            ("code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256", true, Challenge(Some(CHALLENGE))),
            ("code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=plain", false, Error("invalid_request", "code_challenge_method must be S256 (plain is not allowed)")),
            ("code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", false, Error("invalid_request", "code_challenge_method=S256 is required with code_challenge (plain is not allowed)")),
            ("code_challenge=short&code_challenge_method=S256", false, Error("invalid_request", "code_challenge must be the base64url SHA-256 of the verifier (43 characters)")),
            ("code_challenge_method=S256", false, Error("invalid_request", "code_challenge_method without code_challenge")),
            // Checked later, against the broker's state.
            ("connector=wx&id_token_hint=eyJ", false, Picked(Some("wx"), Some("eyJ"))),
            ("", false, Picked(None, None)),
            // The first failing check answers.
            ("response_type=token&scope=profile", false, Error("unsupported_response_type", "only response_type=code is supported")),
            ("scope=profile&prompt=bogus", false, Error("invalid_scope", "the openid scope is required")),
            ("response_type=token&state=a&state=b", false, Error("invalid_request", "parameter state was given more than once")),
        ];
        for (raw, require_pkce, want) in rows {
            let got = run(raw, *require_pkce);
            let ok = match (&got, want) {
                (Ok(a), Scope(s)) => a.scope == *s,
                (Ok(a), Prompt(p)) => a.prompt.iter().eq(p.iter().copied()),
                (Ok(a), MaxAge(m)) => a.max_age == *m,
                (Ok(a), Mode(m)) => a.response_mode == *m,
                (Ok(a), Challenge(c)) => a.code_challenge.as_ref().map(CodeChallenge::as_str) == *c,
                (Ok(a), Picked(c, h)) => {
                    a.connector.as_deref() == *c && a.id_token_hint.as_deref() == *h
                }
                (Err(Refusal::ToApp(e)), Error(error, description)) => {
                    e.error == *error && e.description == *description
                }
                (Err(Refusal::BadRedirect), Page) => true,
                _ => false,
            };
            assert!(
                ok,
                "{raw:?} (require_pkce = {require_pkce}): want {want:?}, got {got:?}"
            );
        }
    }

    #[test]
    fn refusals_go_where_the_app_asked_for_them() {
        let Err(Refusal::ToApp(e)) = run("response_mode=form_post&state=xyz&prompt=bogus", false)
        else {
            panic!("refused to the app");
        };
        assert!(e.reply.form_post);
        assert_eq!(e.reply.state.as_deref(), Some("xyz"));
        assert_eq!(e.reply.redirect_uri, "https://app.example/cb");
        assert!(!e.repeated);
        // A form_post the redirect URI cannot take is refused in query mode.
        let Err(Refusal::ToApp(e)) = run(
            "response_mode=form_post&redirect_uri=com.app%3A%2Fcb",
            false,
        ) else {
            panic!("refused to the app");
        };
        assert!(!e.reply.form_post);
    }

    #[test]
    fn a_valid_request_is_kept_as_it_always_was() {
        let Ok(a) = run(
            "state=s&nonce=n&login_hint=hi&ui_locales=zh-CN&prompt=login&max_age=5&response_mode=form_post",
            false,
        ) else {
            panic!("valid");
        };
        let ar = a.to_request();
        assert_eq!(ar.client_id, "app");
        assert_eq!(ar.scope, "openid");
        assert_eq!(ar.state.as_deref(), Some("s"));
        assert_eq!(ar.nonce.as_deref(), Some("n"));
        assert_eq!(ar.login_hint.as_deref(), Some("hi"));
        assert_eq!(ar.ui_locales.as_deref(), Some("zh-CN"));
        assert!(ar.prompt.has(PromptValue::Login));
        assert_eq!(ar.max_age, Some(5));
        assert!(ar.form_post);
    }
}
