//! `response_mode=form_post` (OAuth 2.0 Form Post Response Mode): the
//! authorization response reaches the app as a page that POSTs it to the
//! redirect URI, for success and for errors.

use crate::both_backends;
use crate::harness::*;

const NATIVE_REDIRECT: &str = "com.example.app:/cb";
const ODD_STATE: &str = "st<\"a'te&1>";

/// A form_post page, as the browser reads it: the form's action, its hidden
/// inputs (unescaped), and the response's CSP and Cache-Control.
pub struct FormPost {
    pub action: String,
    pub fields: Vec<(String, String)>,
    pub csp: String,
    pub cache_control: String,
    pub html: String,
}

impl FormPost {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// HTML character references back to text (named and numeric), as a browser reads them.
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let Some(end) = after.find(';') else {
            out.push_str(&rest[at..]);
            return out;
        };
        let entity = &after[..end];
        let ch = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        out.push(ch.unwrap_or_else(|| panic!("unknown entity &{entity};")));
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let rest = tag.split(&format!(" {name}=\"")).nth(1)?;
    Some(unescape(rest.split('"').next()?))
}

pub async fn form_post_page(resp: reqwest::Response) -> FormPost {
    assert_eq!(resp.status(), 200, "a form_post page, not a redirect");
    let header = |n: &str| {
        resp.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let csp = header("content-security-policy");
    let cache_control = header("cache-control");
    assert!(header("content-type").starts_with("text/html"));
    let html = resp.text().await.unwrap();
    let form = html
        .split("<form method=\"post\"")
        .nth(1)
        .unwrap_or_else(|| panic!("a POST form: {html}"));
    let form = form.split("</form>").next().unwrap();
    let action = attr(form.split('>').next().unwrap(), "action").expect("action");
    let fields = form
        .split("<input ")
        .skip(1)
        .map(|tag| {
            let tag = format!(" {}", tag.split('>').next().unwrap());
            assert_eq!(attr(&tag, "type").as_deref(), Some("hidden"), "{tag}");
            (attr(&tag, "name").unwrap(), attr(&tag, "value").unwrap())
        })
        .collect();
    FormPost {
        action,
        fields,
        csp,
        cache_control,
        html,
    }
}

/// The value of one CSP directive.
fn directive(csp: &str, name: &str) -> Option<String> {
    csp.split(';')
        .map(str::trim)
        .find_map(|d| d.strip_prefix(&format!("{name} ")))
        .map(str::to_owned)
}

/// `url` with its parameter `name` replaced.
fn with_param(url: &str, name: &str, value: &str) -> String {
    let mut u = url::Url::parse(url).unwrap();
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == name {
                value.into()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    u.query_pairs_mut().clear().extend_pairs(pairs);
    u.to_string()
}

/// Sign in upstream as `user`; the callback's response (the app's answer).
async fn sign_in_response(
    b: &reqwest::Client,
    base: &str,
    url: &str,
    user: &str,
) -> reqwest::Response {
    let resp = b.get(url).send().await.unwrap();
    let page = match resp.status().as_u16() {
        200 => resp.text().await.unwrap(),
        302 => {
            let loc = location(&resp);
            assert!(loc.starts_with(base), "to the broker's login page: {loc}");
            b.get(&loc).send().await.unwrap().text().await.unwrap()
        }
        s => panic!("authorize answered {s}"),
    };
    let state = state_from_page(&page);
    b.get(format!("{base}/callback/dev"))
        .query(&[("state", state.as_str()), ("user", user)])
        .send()
        .await
        .unwrap()
}

async fn form_post_sign_in_posts_the_code(db_url: &str) {
    let broker = start(db_url, None, |_| {}).await;
    let base = broker.base.as_str();
    let b = browser();

    // A sign-in: the app's code, state and iss arrive in a form posted to its redirect URI.
    let (url, verifier) = authorize_url(base, &[("response_mode", "form_post")]);
    let url = with_param(&url, "state", ODD_STATE);
    let page = form_post_page(sign_in_response(&b, base, &url, "alice").await).await;
    assert_eq!(page.action, APP_REDIRECT);
    assert_eq!(page.field("state"), Some(ODD_STATE));
    assert_eq!(page.field("iss"), Some(base));
    assert!(!page.html.contains(ODD_STATE), "the state is escaped");
    assert!(
        page.html.contains("<button type=\"submit\""),
        "a Continue button"
    );
    assert_eq!(page.cache_control, "no-store");
    // The CSP lets exactly this form go to the app's origin, and the auto-submit script run.
    assert_eq!(
        directive(&page.csp, "form-action").as_deref(),
        Some("https://app.example.com"),
        "{}",
        page.csp
    );
    let script = page
        .html
        .split("<script>")
        .nth(1)
        .and_then(|r| r.split("</script>").next())
        .expect("the auto-submit script");
    let hash = idbridge_tokens::hash_token(script); // base64url SHA-256
    let allowed = directive(&page.csp, "script-src").expect("script-src");
    let allowed = allowed
        .trim_start_matches("'sha256-")
        .trim_end_matches('\'')
        .trim_end_matches('=')
        .replace('+', "-")
        .replace('/', "_");
    assert_eq!(allowed, hash, "the CSP allows exactly the page's script");
    let code = page.field("code").expect("code").to_owned();
    let tokens = redeem(base, &code, &verifier).await;
    assert_eq!(tokens.status(), 200);
    let tokens: serde_json::Value = tokens.json().await.unwrap();
    assert!(tokens["id_token"].is_string());

    // SSO reuse: straight back to the app, by form_post too.
    let (url, _) = authorize_url(base, &[("response_mode", "form_post")]);
    let page = form_post_page(b.get(&url).send().await.unwrap()).await;
    assert_eq!(page.action, APP_REDIRECT);
    assert!(page.field("code").is_some());
    assert_eq!(page.field("state"), Some("app-state-1"));
}
both_backends!(form_post_sign_in_posts_the_code);

async fn form_post_errors(db_url: &str) {
    let broker = start(db_url, None, |_| {}).await;
    let base = broker.base.as_str();

    // prompt=none with nobody signed in: login_required, by form_post.
    let (url, _) = authorize_url(base, &[("response_mode", "form_post"), ("prompt", "none")]);
    let page = form_post_page(browser().get(&url).send().await.unwrap()).await;
    assert_eq!(page.action, APP_REDIRECT);
    assert_eq!(page.field("error"), Some("login_required"));
    assert!(page.field("error_description").is_some());
    assert_eq!(page.field("state"), Some("app-state-1"));
    assert_eq!(page.field("iss"), Some(base));
    assert!(page.field("code").is_none());

    // The chooser's "Return to the application": access_denied, by form_post.
    let (url, _) = authorize_url(base, &[("response_mode", "form_post")]);
    let url = url.replace("&connector=dev", "");
    let fresh = browser();
    let resp = fresh.get(&url).send().await.unwrap();
    let chooser = if resp.status() == 302 {
        fresh.get(location(&resp)).send().await.unwrap()
    } else {
        resp
    };
    assert_eq!(chooser.status(), 200);
    let html = chooser.text().await.unwrap();
    let cancel = html
        .split("<a href=\"")
        .skip(1)
        .filter_map(|r| r.split('"').next())
        .map(unescape)
        .find(|href| href.starts_with(&format!("{base}/return?")))
        .unwrap_or_else(|| panic!("a return link through the broker: {html}"));
    let page = form_post_page(fresh.get(&cancel).send().await.unwrap()).await;
    assert_eq!(page.action, APP_REDIRECT);
    assert_eq!(page.field("error"), Some("access_denied"));
    assert_eq!(page.field("state"), Some("app-state-1"));
    // A forged or damaged link is refused with a page, not a response to anyone.
    let forged = fresh
        .get(format!("{base}/return?r=AAAA"))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 400);
}
both_backends!(form_post_errors);

async fn a_repeated_callback_answers_by_form_post_again(db_url: &str) {
    let broker = start(db_url, None, |_| {}).await;
    let base = broker.base.as_str();
    let b = browser();
    let (url, _) = authorize_url(base, &[("response_mode", "form_post")]);
    let page = b.get(&url).send().await.unwrap();
    assert_eq!(page.status(), 200, "the dev connector's page");
    let state = state_from_page(&page.text().await.unwrap());
    let callback = || {
        b.get(format!("{base}/callback/dev"))
            .query(&[("state", state.as_str()), ("user", "alice")])
            .send()
    };
    let first = form_post_page(callback().await.unwrap()).await;
    // WeChat may call back twice: the second lands where the first did, by form_post.
    let again = form_post_page(callback().await.unwrap()).await;
    assert_eq!(again.action, APP_REDIRECT);
    assert!(first.field("code").is_some());
    assert_eq!(again.fields, first.fields);
}
both_backends!(a_repeated_callback_answers_by_form_post_again);

async fn query_mode_and_unknown_modes(db_url: &str) {
    // A custom scheme is a redirect URI only a public (native) app may register.
    let broker = start(db_url, None, |s| {
        for c in s.clients.iter_mut().filter(|c| c.id == SPA_ID) {
            c.redirect_uris.push(NATIVE_REDIRECT.into());
        }
    })
    .await;
    let base = broker.base.as_str();

    // An unknown response mode: invalid_request, by redirect with a query.
    let (url, _) = authorize_url(base, &[("response_mode", "fragment")]);
    let resp = browser().get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 302);
    let back = location(&resp);
    assert!(back.starts_with(APP_REDIRECT), "{back}");
    assert_eq!(
        query_param(&back, "error").as_deref(),
        Some("invalid_request")
    );
    assert!(query_param(&back, "error_description")
        .unwrap()
        .contains("response_mode"));
    assert_eq!(query_param(&back, "state").as_deref(), Some("app-state-1"));

    // form_post to a redirect URI a browser cannot POST to: invalid_request, by redirect.
    let (url, _) = authorize_url(base, &[("response_mode", "form_post")]);
    let url = with_param(&url, "redirect_uri", NATIVE_REDIRECT);
    let url = with_param(&url, "client_id", SPA_ID);
    let resp = browser().get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 302);
    let back = location(&resp);
    assert!(back.starts_with(NATIVE_REDIRECT), "{back}");
    assert_eq!(
        query_param(&back, "error").as_deref(),
        Some("invalid_request")
    );
    assert!(query_param(&back, "error_description")
        .unwrap()
        .contains("form_post"));

    // response_mode=query still answers with a redirect.
    let (url, verifier) = authorize_url(base, &[("response_mode", "query")]);
    let back = sign_in(&browser(), base, &url, "bob").await;
    let code = query_param(&back, "code").expect("code");
    assert_eq!(redeem(base, &code, &verifier).await.status(), 200);
}
both_backends!(query_mode_and_unknown_modes);

async fn discovery_lists_form_post(db_url: &str) {
    let broker = start(db_url, None, |_| {}).await;
    let doc = get_json(
        &http(),
        format!("{}/.well-known/openid-configuration", broker.base),
    )
    .await;
    assert_eq!(
        doc["response_modes_supported"],
        serde_json::json!(["query", "form_post"])
    );
}
both_backends!(discovery_lists_form_post);

/// A provider answering with `response_mode=form_post` POSTs the callback from
/// its own site. Browsers send no SameSite=Lax cookie with such a cross-site
/// POST, so the broker posts the same fields again from a page of its own
/// origin, where the cookie comes along; the round happens once, and the
/// connector never sees the marker. (Loopback ports are one site, so the test
/// leaves the cookie out the way a browser would across sites.)
async fn a_cross_site_form_post_callback_is_posted_again_from_the_brokers_origin(db_url: &str) {
    let broker = start(db_url, None, |_| {}).await;
    let base = &broker.base;
    let b = browser();
    let (url, verifier) = authorize_url(base, &[]);
    let resp = b.get(&url).send().await.unwrap();
    let page = if resp.status() == 302 {
        b.get(location(&resp)).send().await.unwrap()
    } else {
        resp
    };
    let upstream_state = state_from_page(&page.text().await.unwrap());
    let callback = format!("{base}/callback/dev");
    let fields = [("state", upstream_state.as_str()), ("user", "alice")];

    // The provider's cross-site POST: no cookie.
    let cross_site = http().post(&callback).form(&fields).send().await.unwrap();
    let again = form_post_page(cross_site).await;
    assert_eq!(again.action, callback);
    assert_eq!(again.field("state"), Some(upstream_state.as_str()));
    assert_eq!(again.field("user"), Some("alice"));
    assert_eq!(again.field("idb_resubmitted"), Some("1"));
    assert!(
        again.csp.contains(&format!("form-action {base}")),
        "{}",
        again.csp
    );
    assert!(
        again.html.contains("Finishing your sign-in"),
        "{}",
        again.html
    );

    // A second round without the cookie is refused: no loop.
    let no_cookie = http()
        .post(&callback)
        .form(&again.fields)
        .send()
        .await
        .unwrap();
    assert_eq!(no_cookie.status(), 400);

    // The browser submits the page (same-site: its cookie comes along).
    let done = b.post(&callback).form(&again.fields).send().await.unwrap();
    assert_eq!(done.status(), 302);
    let back = location(&done);
    let code = query_param(&back, "code").expect("a code for the app");
    let tokens: serde_json::Value = redeem(base, &code, &verifier).await.json().await.unwrap();
    assert_eq!(
        claims(tokens["id_token"].as_str().unwrap())["name"],
        "Alice"
    );
    broker.stop().await;
}
both_backends!(a_cross_site_form_post_callback_is_posted_again_from_the_brokers_origin);
