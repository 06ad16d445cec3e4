//! `id_token_hint` at the authorization endpoint (OpenID Connect Core §3.1.2.1):
//! the broker answers for the person the app names, or asks for a fresh sign-in.

use crate::both_backends;
use crate::harness::*;

/// Sign in with `b` as `user` through the test app and redeem the code: the ID token.
async fn id_token_in(b: &reqwest::Client, base: &str, user: &str) -> String {
    let (url, verifier) = authorize_url(base, &[]);
    let back = sign_in(b, base, &url, user).await;
    let code = query_param(&back, "code").expect("code");
    let tokens: serde_json::Value = redeem(base, &code, &verifier).await.json().await.unwrap();
    tokens["id_token"].as_str().expect("id_token").to_owned()
}

/// Redeem the code the app got at `back` (an APP_REDIRECT URL): whose it is.
async fn sub_of_code(base: &str, back: &str, verifier: &str) -> String {
    assert!(back.starts_with(APP_REDIRECT), "back to the app: {back}");
    let code = query_param(back, "code").unwrap_or_else(|| panic!("a code: {back}"));
    let tokens: serde_json::Value = redeem(base, &code, verifier).await.json().await.unwrap();
    claims(tokens["id_token"].as_str().expect("id_token"))["sub"]
        .as_str()
        .expect("sub")
        .to_owned()
}

/// The OAuth error the app got at `back`, checked to carry state and iss.
fn app_error(base: &str, back: &str) -> (String, String) {
    assert!(back.starts_with(APP_REDIRECT), "back to the app: {back}");
    assert!(query_param(back, "code").is_none(), "no code: {back}");
    assert_eq!(query_param(back, "state").as_deref(), Some("app-state-1"));
    assert_eq!(query_param(back, "iss").as_deref(), Some(base));
    (
        query_param(back, "error").expect("error"),
        query_param(back, "error_description").unwrap_or_default(),
    )
}

async fn silent_sign_in_follows_the_hinted_person(db_url: &str) {
    let broker = start(db_url, None, |_| {}).await;
    let base = broker.base.as_str();
    let bob_token = id_token_in(&browser(), base, "bob").await;
    let bob = claims(&bob_token)["sub"].as_str().unwrap().to_owned();
    let alice_browser = browser();
    let alice_token = id_token_in(&alice_browser, base, "alice").await;
    let alice = claims(&alice_token)["sub"].as_str().unwrap().to_owned();
    assert_ne!(alice, bob);

    // Alice's own hint: her code, silently.
    let (url, verifier) =
        authorize_url(base, &[("prompt", "none"), ("id_token_hint", &alice_token)]);
    let resp = alice_browser.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 302);
    assert_eq!(sub_of_code(base, &location(&resp), &verifier).await, alice);

    // Bob's hint while Alice is signed in: login_required, not Alice's code.
    let (url, _) = authorize_url(base, &[("prompt", "none"), ("id_token_hint", &bob_token)]);
    let resp = alice_browser.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 302);
    let (error, description) = app_error(base, &location(&resp));
    assert_eq!(error, "login_required", "{description}");
    assert!(description.contains("id_token_hint"), "{description}");

    // Bob's hint in a browser where nobody is signed in: login_required too.
    let resp = browser().get(&url).send().await.unwrap();
    assert_eq!(app_error(base, &location(&resp)).0, "login_required");

    // An expired ID token of Alice's is still a fine hint.
    broker.clock().advance(2 * 3600);
    let (url, verifier) =
        authorize_url(base, &[("prompt", "none"), ("id_token_hint", &alice_token)]);
    let resp = alice_browser.get(&url).send().await.unwrap();
    assert_eq!(sub_of_code(base, &location(&resp), &verifier).await, alice);
}
both_backends!(silent_sign_in_follows_the_hinted_person);

async fn another_persons_hint_asks_for_a_fresh_sign_in(db_url: &str) {
    let broker = start(db_url, None, |_| {}).await;
    let base = broker.base.as_str();
    let bob_token = id_token_in(&browser(), base, "bob").await;
    let bob = claims(&bob_token)["sub"].as_str().unwrap().to_owned();
    let alice_browser = browser();
    id_token_in(&alice_browser, base, "alice").await;

    // Without prompt=none: the sign-in page, not Alice's SSO session.
    let (url, verifier) = authorize_url(base, &[("id_token_hint", &bob_token)]);
    let resp = alice_browser.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200, "the sign-in page: {}", location(&resp));
    let page = resp.text().await.unwrap();
    assert!(page.contains("name=\"state\""), "{page}");
    // Signing in as Bob there gives the app Bob's code.
    let back = sign_in(&alice_browser, base, &url, "bob").await;
    assert_eq!(sub_of_code(base, &back, &verifier).await, bob);
    // The browser now holds Bob's session: his hint works silently.
    let (url, verifier) = authorize_url(base, &[("prompt", "none"), ("id_token_hint", &bob_token)]);
    let resp = alice_browser.get(&url).send().await.unwrap();
    assert_eq!(sub_of_code(base, &location(&resp), &verifier).await, bob);
}
both_backends!(another_persons_hint_asks_for_a_fresh_sign_in);

async fn a_hint_that_is_not_this_apps_id_token_is_invalid_request(db_url: &str) {
    let broker = start(db_url, None, |_| {}).await;
    let base = broker.base.as_str();
    let b = browser();
    let alice_token = id_token_in(&b, base, "alice").await;

    // Tampered: Alice's token with its payload changed, the signature kept.
    let parts: Vec<&str> = alice_token.split('.').collect();
    let mut payload = claims(&alice_token);
    payload["sub"] = "someone-else".into();
    use base64::Engine;
    let forged_payload =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload.to_string());
    let tampered = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
    // An access token is signed by the broker too, but is no ID token.
    let (url, verifier) = authorize_url(base, &[]);
    let back = sign_in(&b, base, &url, "alice").await;
    let code = query_param(&back, "code").unwrap();
    let tokens: serde_json::Value = redeem(base, &code, &verifier).await.json().await.unwrap();
    let access_token = tokens["access_token"].as_str().unwrap().to_owned();

    for (hint, prompt) in [
        ("not-a-jwt", "none"),
        (tampered.as_str(), "none"),
        (tampered.as_str(), "login"),
        (access_token.as_str(), "none"),
    ] {
        let (url, _) = authorize_url(base, &[("prompt", prompt), ("id_token_hint", hint)]);
        let resp = b.get(&url).send().await.unwrap();
        assert_eq!(resp.status(), 302);
        let (error, description) = app_error(base, &location(&resp));
        assert_eq!(error, "invalid_request", "{hint}: {description}");
        assert!(description.contains("id_token_hint"), "{description}");
    }

    // Alice's ID token for the test app is not a hint for another app.
    let mut u = url::Url::parse(&format!("{base}/authorize")).unwrap();
    u.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", OTHER_ID)
        .append_pair("redirect_uri", "https://other.example.com/cb")
        .append_pair("scope", "openid")
        .append_pair("state", "s-2")
        .append_pair("prompt", "none")
        .append_pair("id_token_hint", &alice_token);
    let resp = b.get(u.as_str()).send().await.unwrap();
    assert_eq!(resp.status(), 302);
    let back = location(&resp);
    assert!(back.starts_with("https://other.example.com/cb"), "{back}");
    assert_eq!(
        query_param(&back, "error").as_deref(),
        Some("invalid_request")
    );
    assert_eq!(query_param(&back, "state").as_deref(), Some("s-2"));
    assert_eq!(query_param(&back, "iss").as_deref(), Some(base));
    assert!(query_param(&back, "code").is_none());
}
both_backends!(a_hint_that_is_not_this_apps_id_token_is_invalid_request);
