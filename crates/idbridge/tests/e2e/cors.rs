//! CORS for browser apps: the back-channel endpoints answer pages on registered
//! origins (a public client's redirect URI origins, any client's
//! `allowed_origins`, clients stored at run time too), discovery and JWKS anyone;
//! never the authorization endpoint or a hosted page; never with credentials.

use crate::both_backends;
use crate::harness::*;
use reqwest::header::HeaderMap;

const SPA: &str = "browser-spa";
const SPA_ORIGIN: &str = "http://localhost:5173";
const SPA_CALLBACK: &str = "http://localhost:5173/callback";
/// The confidential test app's `allowed_origins`.
const ADMIN_ORIGIN: &str = "https://admin.example.com";
/// A client stored at run time, with `allowed_origins` in its metadata.
const STORED_ORIGIN: &str = "https://stored.example.com";
/// Origins no client has: another port of the SPA's host, the loopback
/// redirect's host on another port (any-port is for native apps), a stranger.
const STRANGERS: [&str; 4] = [
    "http://localhost:5174",
    "http://127.0.0.1:5173",
    "https://evil.example.com",
    "null",
];

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn vary_origin(h: &HeaderMap) -> bool {
    h.get_all("vary")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim().eq_ignore_ascii_case("origin"))
}

/// No CORS header at all (and never credentials).
fn assert_no_cors(h: &HeaderMap, what: &str) {
    for name in [
        "access-control-allow-origin",
        "access-control-allow-methods",
        "access-control-allow-headers",
        "access-control-allow-credentials",
        "access-control-max-age",
        "access-control-expose-headers",
    ] {
        assert!(h.get(name).is_none(), "{what}: unexpected {name}: {h:?}");
    }
}

/// CORS for exactly `origin`, varying on Origin, never with credentials.
fn assert_cors_for(h: &HeaderMap, origin: &str, what: &str) {
    assert_eq!(
        header(h, "access-control-allow-origin"),
        Some(origin),
        "{what}: {h:?}"
    );
    assert!(vary_origin(h), "{what}: Vary: Origin missing: {h:?}");
    assert!(
        h.get("access-control-allow-credentials").is_none(),
        "{what}: {h:?}"
    );
}

async fn preflight(base: &str, path: &str, origin: &str, method: &str) -> reqwest::Response {
    http()
        .request(reqwest::Method::OPTIONS, format!("{base}{path}"))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", method)
        .header(
            "Access-Control-Request-Headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap()
}

/// Sign in at the SPA (public client, PKCE) and redeem the code from its page.
async fn spa_tokens(base: &str) -> (HeaderMap, serde_json::Value) {
    let verifier = "spa-verifier-0123456789-0123456789-0123456789";
    let challenge = idbridge_tokens::pkce_s256(verifier);
    let mut u = url::Url::parse(&format!("{base}/authorize")).unwrap();
    u.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", SPA)
        .append_pair("redirect_uri", SPA_CALLBACK)
        .append_pair("scope", "openid profile email offline_access")
        .append_pair("state", "s")
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("connector", "dev");
    let back = sign_in(&browser(), base, u.as_str(), "alice").await;
    assert!(back.starts_with(SPA_CALLBACK), "{back}");
    let code = query_param(&back, "code").unwrap();
    let resp = http()
        .post(format!("{base}/token"))
        .header("Origin", SPA_ORIGIN)
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", SPA),
            ("code", &code),
            ("redirect_uri", SPA_CALLBACK),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .unwrap();
    let headers = resp.headers().clone();
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    (headers, body)
}

async fn browser_apps_get_cors_on_the_back_channel_only(db_url: &str) {
    let broker = start(db_url, None, |s| {
        s.clients[0].allowed_origins = vec![format!("{ADMIN_ORIGIN}/")];
        let mut spa = s.clients[2].clone();
        spa.id = SPA.into();
        spa.redirect_uris = vec![SPA_CALLBACK.into()];
        s.clients.push(spa);
    })
    .await;
    let base = broker.base.clone();
    broker
        .state
        .store
        .insert_client(idbridge_store::ClientRow {
            id: "stored-spa".into(),
            secret_hash: None,
            metadata: serde_json::json!({
                "redirect_uris": ["com.example.stored:/cb"],
                "allowed_origins": [STORED_ORIGIN],
            }),
            created_at: 0,
            previous_secret_hash: None,
            previous_secret_expires_at: None,
            updated_at: 0,
        })
        .await
        .unwrap();

    // Preflights from registered origins: 204, that origin, the methods and
    // headers, a max age, Vary: Origin, no credentials.
    for (path, method, methods) in [
        ("/token", "POST", "POST"),
        ("/userinfo", "GET", "GET, POST"),
        ("/revoke", "POST", "POST"),
        ("/introspect", "POST", "POST"),
    ] {
        for origin in [SPA_ORIGIN, ADMIN_ORIGIN, STORED_ORIGIN] {
            let r = preflight(&base, path, origin, method).await;
            let what = format!("OPTIONS {path} from {origin}");
            assert_eq!(r.status(), 204, "{what}");
            let h = r.headers();
            assert_cors_for(h, origin, &what);
            assert_eq!(
                header(h, "access-control-allow-methods"),
                Some(methods),
                "{what}"
            );
            let allowed = header(h, "access-control-allow-headers").unwrap_or_default();
            assert!(
                allowed.contains("authorization") && allowed.contains("content-type"),
                "{what}: {h:?}"
            );
            assert_eq!(header(h, "access-control-max-age"), Some("600"), "{what}");
        }
        // Unregistered origins: an answer, but nothing that lets a page in.
        for origin in STRANGERS {
            let r = preflight(&base, path, origin, method).await;
            let what = format!("OPTIONS {path} from {origin}");
            assert_eq!(r.status(), 204, "{what}");
            assert_no_cors(r.headers(), &what);
            assert!(vary_origin(r.headers()), "{what}");
        }
    }

    // The code flow of the SPA: the token answer names its origin.
    let (token_headers, tokens) = spa_tokens(&base).await;
    assert_cors_for(&token_headers, SPA_ORIGIN, "POST /token");
    let exposed = header(&token_headers, "access-control-expose-headers").unwrap();
    assert!(exposed.contains("www-authenticate"), "{exposed}");
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh_token = tokens["refresh_token"].as_str().unwrap().to_owned();

    // Userinfo, GET and POST, from the SPA's origin; from a stranger the answer
    // is the same but carries no CORS header (the browser hides it).
    for post in [false, true] {
        let req = if post {
            http().post(format!("{base}/userinfo"))
        } else {
            http().get(format!("{base}/userinfo"))
        };
        let r = req
            .header("Origin", SPA_ORIGIN)
            .bearer_auth(&access)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_cors_for(r.headers(), SPA_ORIGIN, "userinfo");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["email"], "alice@example.com", "{body}");
    }
    let r = http()
        .get(format!("{base}/userinfo"))
        .header("Origin", "https://evil.example.com")
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_no_cors(r.headers(), "userinfo from a stranger");
    // A refusal is readable too: the page learns its token is bad.
    let r = http()
        .get(format!("{base}/userinfo"))
        .header("Origin", SPA_ORIGIN)
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_cors_for(r.headers(), SPA_ORIGIN, "userinfo 401");
    assert!(r.headers().get("www-authenticate").is_some());

    // Refresh, introspection (the confidential app, from its allowed origin) and
    // revocation.
    let r = http()
        .post(format!("{base}/token"))
        .header("Origin", SPA_ORIGIN)
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", SPA),
            ("refresh_token", &refresh_token),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_cors_for(r.headers(), SPA_ORIGIN, "refresh");
    let refreshed: serde_json::Value = r.json().await.unwrap();
    let new_refresh = refreshed["refresh_token"].as_str().unwrap().to_owned();
    let r = http()
        .post(format!("{base}/introspect"))
        .header("Origin", ADMIN_ORIGIN)
        .basic_auth(APP_ID, Some(APP_SECRET))
        .form(&[("token", refreshed["access_token"].as_str().unwrap())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_cors_for(r.headers(), ADMIN_ORIGIN, "introspect");
    let r = http()
        .post(format!("{base}/revoke"))
        .header("Origin", SPA_ORIGIN)
        .form(&[("client_id", SPA), ("token", new_refresh.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_cors_for(r.headers(), SPA_ORIGIN, "revoke");
    // An error at /token (the refresh token is revoked now) is readable.
    let r = http()
        .post(format!("{base}/token"))
        .header("Origin", SPA_ORIGIN)
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", SPA),
            ("refresh_token", &new_refresh),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_cors_for(r.headers(), SPA_ORIGIN, "refused refresh");

    // Non-browser clients send no Origin: served as before, no CORS headers.
    let r = http()
        .post(format!("{base}/introspect"))
        .basic_auth(APP_ID, Some(APP_SECRET))
        .form(&[("token", access.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_no_cors(r.headers(), "introspect without Origin");
    assert!(vary_origin(r.headers()));
    let r = http()
        .post(format!("{base}/token"))
        .header("Origin", "https://evil.example.com")
        .basic_auth(APP_ID, Some(APP_SECRET))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "a stranger's request is still answered");
    assert_no_cors(r.headers(), "token from a stranger");

    // Discovery and JWKS: public documents, readable from anywhere.
    for path in ["/.well-known/openid-configuration", "/jwks"] {
        for origin in [Some(SPA_ORIGIN), Some("https://evil.example.com"), None] {
            let mut req = http().get(format!("{base}{path}"));
            if let Some(o) = origin {
                req = req.header("Origin", o);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 200);
            assert_eq!(
                header(r.headers(), "access-control-allow-origin"),
                Some("*"),
                "{path} from {origin:?}"
            );
            assert!(r
                .headers()
                .get("access-control-allow-credentials")
                .is_none());
        }
        let r = preflight(&base, path, "https://evil.example.com", "GET").await;
        assert_eq!(r.status(), 204);
        assert_eq!(
            header(r.headers(), "access-control-allow-origin"),
            Some("*")
        );
    }

    // The authorization endpoint and the hosted pages: never, even for the
    // SPA's own origin; no preflight either.
    let (authorize, _) = authorize_url(&base, &[]);
    let login = browser()
        .get(&authorize)
        .header("Origin", SPA_ORIGIN)
        .send()
        .await
        .unwrap();
    assert_no_cors(login.headers(), "/authorize");
    for url in [
        authorize.clone(),
        location(&login),
        format!("{base}/logout"),
        format!("{base}/account"),
        format!("{base}/demo"),
        format!("{base}/assets/idbridge.css"),
    ] {
        if url.is_empty() {
            continue;
        }
        let url = if url.starts_with('/') {
            format!("{base}{url}")
        } else {
            url
        };
        let r = browser()
            .get(&url)
            .header("Origin", SPA_ORIGIN)
            .send()
            .await
            .unwrap();
        assert_no_cors(r.headers(), &url);
        let r = http()
            .request(reqwest::Method::OPTIONS, &url)
            .header("Origin", SPA_ORIGIN)
            .header("Access-Control-Request-Method", "GET")
            .send()
            .await
            .unwrap();
        assert_no_cors(r.headers(), &format!("OPTIONS {url}"));
    }
    let r = http()
        .post(format!("{base}/authorize"))
        .header("Origin", SPA_ORIGIN)
        .form(&[("client_id", SPA)])
        .send()
        .await
        .unwrap();
    assert_no_cors(r.headers(), "POST /authorize");
    broker.stop().await;
}
both_backends!(browser_apps_get_cors_on_the_back_channel_only);

/// A page whose form ends, through the broker, at the app lets that redirect
/// through its CSP: browsers check every redirect of a form submission against
/// `form-action`, so `'self'` alone blocks an app on another origin (the
/// development sign-in's form, whose callback answers the app). Other pages
/// keep `form-action 'self'`.
async fn forms_that_end_at_the_app_allow_its_origin(db_url: &str) {
    let broker = start(db_url, None, |_| {}).await;
    let b = browser();
    let (url, _) = authorize_url(&broker.base, &[]);
    let resp = b.get(&url).send().await.unwrap();
    let resp = if resp.status() == 302 {
        b.get(location(&resp)).send().await.unwrap()
    } else {
        resp
    };
    let csp = resp.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.ends_with("form-action 'self' https://app.example.com"),
        "{csp}"
    );
    // An error page has no such form.
    let page = b
        .get(format!("{}/login/unknown-request", broker.base))
        .send()
        .await
        .unwrap();
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.ends_with("form-action 'self'"), "{csp}");
    broker.stop().await;
}
crate::both_backends!(forms_that_end_at_the_app_allow_its_origin);
