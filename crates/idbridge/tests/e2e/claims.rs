//! The `email` and `phone` scopes end to end: what an upstream said about a
//! person's email address reaches the app's ID token and userinfo under
//! `email`, with the upstream's verified flag, and nothing of it without the
//! scope. The development connector's Alice has a verified address, Bob an
//! unverified one, 张伟 none.

use crate::harness::*;

/// Sign `user` in asking for `scope`; the token response.
async fn tokens_with_scope(base: &str, user: &str, scope: &str) -> serde_json::Value {
    let (url, verifier) = authorize_url(base, &[]);
    let url = url.replace(
        "scope=openid+profile+offline_access",
        &format!("scope={}", scope.replace(' ', "+")),
    );
    let back = sign_in(&browser(), base, &url, user).await;
    let code = query_param(&back, "code").expect("code");
    redeem(base, &code, &verifier).await.json().await.unwrap()
}

async fn userinfo(base: &str, access_token: &str) -> serde_json::Value {
    http()
        .get(format!("{base}/userinfo"))
        .bearer_auth(access_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn the_email_scope_releases_the_upstreams_address(db_url: &str) {
    let broker = start(db_url, None, |_| {}).await;
    let base = &broker.base;

    let discovery = get_json(&http(), format!("{base}/.well-known/openid-configuration")).await;
    assert!(discovery["scopes_supported"]
        .as_array()
        .unwrap()
        .contains(&"email".into()));
    assert!(discovery["claims_supported"]
        .as_array()
        .unwrap()
        .contains(&"email_verified".into()));

    let t = tokens_with_scope(base, "alice", "openid email").await;
    assert_eq!(t["scope"], "openid email");
    let id = claims(t["id_token"].as_str().unwrap());
    assert_eq!(id["email"], "alice@example.com");
    assert_eq!(id["email_verified"], true);
    let info = userinfo(base, t["access_token"].as_str().unwrap()).await;
    assert_eq!(info["email"], "alice@example.com");
    assert_eq!(info["email_verified"], true);
    assert!(
        info.get("name").is_none(),
        "no profile claims without profile"
    );

    // An unverified address is released as unverified.
    let t = tokens_with_scope(base, "bob", "openid profile email").await;
    let id = claims(t["id_token"].as_str().unwrap());
    assert_eq!(id["email"], "bob@example.com");
    assert_eq!(id["email_verified"], false);
    assert_eq!(id["name"], "Bob");

    // Nobody's address without the scope; no address, no claim.
    let t = tokens_with_scope(base, "alice", "openid profile").await;
    let id = claims(t["id_token"].as_str().unwrap());
    assert!(id.get("email").is_none(), "{id}");
    let info = userinfo(base, t["access_token"].as_str().unwrap()).await;
    assert!(info.get("email").is_none(), "{info}");
    let t = tokens_with_scope(base, "zhangwei", "openid email").await;
    let id = claims(t["id_token"].as_str().unwrap());
    assert!(id.get("email").is_none() && id.get("email_verified").is_none());

    // A refresh keeps releasing it; narrowing the scope drops it.
    let t = tokens_with_scope(base, "alice", "openid email offline_access").await;
    let rt = t["refresh_token"].as_str().unwrap();
    let r: serde_json::Value = refresh(base, rt).await.json().await.unwrap();
    assert_eq!(
        claims(r["id_token"].as_str().unwrap())["email"],
        "alice@example.com"
    );
    let narrowed: serde_json::Value = http()
        .post(format!("{base}/token"))
        .basic_auth(APP_ID, Some(APP_SECRET))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", r["refresh_token"].as_str().unwrap()),
            ("scope", "openid"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(claims(narrowed["id_token"].as_str().unwrap())
        .get("email")
        .is_none());
    broker.stop().await;
}
crate::both_backends!(the_email_scope_releases_the_upstreams_address);
