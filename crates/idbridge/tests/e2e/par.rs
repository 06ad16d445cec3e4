//! Pushed authorization requests (RFC 9126), as an app uses them over HTTP:
//! push, send the browser with the `request_uri`, redeem the code; and every
//! refusal (bad client, bad request, reuse, expiry, another client's URI, a
//! client that must push).

use crate::both_backends;
use crate::harness::*;
use serde_json::Value;

/// The query of `harness::authorize_url`, as a pushed request's form.
fn pushed_form(extra: &[(&str, &str)]) -> (Vec<(String, String)>, String) {
    let (url, verifier) = authorize_url("http://unused", extra);
    let pairs = url::Url::parse(&url)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    (pairs, verifier)
}

async fn push(
    base: &str,
    id: &str,
    secret: Option<&str>,
    form: &[(String, String)],
) -> reqwest::Response {
    let mut req = http().post(format!("{base}/par")).form(form);
    if let Some(secret) = secret {
        req = req.basic_auth(id, Some(secret));
    }
    req.send().await.unwrap()
}

fn authorize_with(base: &str, client_id: &str, request_uri: &str) -> String {
    let mut u = url::Url::parse(&format!("{base}/authorize")).unwrap();
    u.query_pairs_mut()
        .append_pair("client_id", client_id)
        .append_pair("request_uri", request_uri);
    u.to_string()
}

async fn pushed_request_signs_in_once(db_url: &str) {
    let broker = start(db_url, None, |s| {
        s.clients[0].require_pushed_authorization_requests = true;
    })
    .await;
    let base = &broker.base;
    let discovery = get_json(&http(), format!("{base}/.well-known/openid-configuration")).await;
    assert_eq!(
        discovery["pushed_authorization_request_endpoint"],
        format!("{base}/par")
    );

    // A client that must push cannot send a plain request.
    let (plain, _) = authorize_url(base, &[]);
    let refused = browser().get(&plain).send().await.unwrap();
    assert_eq!(refused.status(), 302);
    let to_app = location(&refused);
    assert!(to_app.starts_with(APP_REDIRECT), "{to_app}");
    assert_eq!(
        query_param(&to_app, "error").as_deref(),
        Some("invalid_request")
    );
    assert!(query_param(&to_app, "error_description")
        .unwrap()
        .contains("pushed"));

    // Push, then sign in with only client_id and request_uri in the browser.
    let (form, verifier) = pushed_form(&[]);
    let resp = push(base, APP_ID, Some(APP_SECRET), &form).await;
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let pushed: Value = resp.json().await.unwrap();
    let request_uri = pushed["request_uri"].as_str().unwrap().to_owned();
    assert!(
        request_uri.starts_with("urn:ietf:params:oauth:request_uri:"),
        "{request_uri}"
    );
    assert_eq!(pushed["expires_in"], 60);
    let url = authorize_with(base, APP_ID, &request_uri);
    let back = sign_in(&browser(), base, &url, "zhangwei").await;
    assert!(back.starts_with(APP_REDIRECT), "{back}");
    assert_eq!(
        query_param(&back, "state").as_deref(),
        Some("app-state-1"),
        "the pushed state"
    );
    let code = query_param(&back, "code").unwrap();
    let tokens: Value = redeem(base, &code, &verifier).await.json().await.unwrap();
    let id_token = claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(id_token["nonce"], "nonce-1", "the pushed nonce");
    assert_eq!(id_token["aud"], APP_ID);

    // Used once: the same request_uri again is a page that says to start again.
    let again = browser().get(&url).send().await.unwrap();
    assert_eq!(again.status(), 400);
    let page = again.text().await.unwrap();
    assert!(page.contains("expired or was already used"), "{page}");

    // Expired after 60 s.
    let (form, _) = pushed_form(&[]);
    let pushed: Value = push(base, APP_ID, Some(APP_SECRET), &form)
        .await
        .json()
        .await
        .unwrap();
    broker.clock().advance(61);
    let late = browser()
        .get(authorize_with(
            base,
            APP_ID,
            pushed["request_uri"].as_str().unwrap(),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(late.status(), 400);
    broker.stop().await;
}
both_backends!(pushed_request_signs_in_once);

async fn bad_pushes_are_refused_in_json(db_url: &str) {
    let broker = start(db_url, None, |_| {}).await;
    let base = &broker.base;
    let (form, _) = pushed_form(&[]);
    let error = |resp: Value| resp["error"].as_str().unwrap_or_default().to_owned();

    // Wrong secret: 401 invalid_client, as at /token.
    let resp = push(base, APP_ID, Some("wrong"), &form).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(error(resp.json().await.unwrap()), "invalid_client");

    // An unregistered redirect URI, an unsupported response type, a nested
    // request_uri and a request object: 400 with the authorization error.
    let with = |name: &str, value: &str| {
        let mut f: Vec<(String, String)> =
            form.iter().filter(|(k, _)| k != name).cloned().collect();
        f.push((name.into(), value.into()));
        f
    };
    for (form, expected) in [
        (
            with("redirect_uri", "https://evil.example.com/cb"),
            "invalid_request",
        ),
        (with("response_type", "token"), "unsupported_response_type"),
        (
            with("request_uri", "urn:ietf:params:oauth:request_uri:x"),
            "invalid_request",
        ),
        (
            with("request", "eyJhbGciOiJub25lIn0.e30."),
            "request_not_supported",
        ),
    ] {
        let resp = push(base, APP_ID, Some(APP_SECRET), &form).await;
        assert_eq!(resp.status(), 400, "{form:?}");
        assert_eq!(error(resp.json().await.unwrap()), expected, "{form:?}");
    }

    // Another client's request_uri is not usable, and is spent by the try.
    let pushed: Value = push(base, APP_ID, Some(APP_SECRET), &form)
        .await
        .json()
        .await
        .unwrap();
    let uri = pushed["request_uri"].as_str().unwrap();
    let other = browser()
        .get(authorize_with(base, OTHER_ID, uri))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 400);
    let mine = browser()
        .get(authorize_with(base, APP_ID, uri))
        .send()
        .await
        .unwrap();
    assert_eq!(mine.status(), 400);
    // A made-up one.
    let made_up = browser()
        .get(authorize_with(
            base,
            APP_ID,
            "urn:ietf:params:oauth:request_uri:nope",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(made_up.status(), 400);
    assert!(!log_lines(&["stage=\"authorize\"", "request_uri is unknown"]).is_empty());
    broker.stop().await;
}
both_backends!(bad_pushes_are_refused_in_json);
