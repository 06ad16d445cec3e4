//! Refresh tokens only with `offline_access` (OpenID Connect Core §11), and
//! grants made before that rule keep refreshing.

use crate::both_backends;
use crate::harness::*;

/// A code for the test app with `scope=openid profile` (no offline_access).
async fn code_without_offline_access(base: &str) -> (String, String) {
    let (url, verifier) = authorize_url(base, &[]);
    let url = url.replace(
        "scope=openid+profile+offline_access",
        "scope=openid+profile",
    );
    assert!(url.contains("scope=openid+profile&"), "{url}");
    let back = sign_in(&browser(), base, &url, "alice").await;
    (query_param(&back, "code").expect("code"), verifier)
}

async fn refresh_token_only_with_offline_access(db_url: &str) {
    let broker = start(db_url, None, |_| {}).await;
    let discovery: serde_json::Value = get_json(
        &http(),
        format!("{}/.well-known/openid-configuration", broker.base),
    )
    .await;
    assert!(
        discovery["scopes_supported"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "offline_access"),
        "{discovery}"
    );

    // Without offline_access: access and ID token, no refresh token.
    let (code, verifier) = code_without_offline_access(&broker.base).await;
    let resp = redeem(&broker.base, &code, &verifier).await;
    assert_eq!(resp.status(), 200);
    let t: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(t["scope"], "openid profile");
    assert!(t["access_token"].is_string(), "{t}");
    assert!(t["id_token"].is_string(), "{t}");
    assert!(t.get("refresh_token").is_none(), "{t}");
    // The access token works as usual.
    let userinfo = http()
        .get(format!("{}/userinfo", broker.base))
        .bearer_auth(t["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(userinfo.status(), 200);

    // With it: a refresh token, which refreshes.
    let t = tokens_for(&broker.base, "alice").await;
    assert_eq!(t["scope"], "openid profile offline_access");
    let rt = t["refresh_token"].as_str().expect("refresh token");
    let r = refresh(&broker.base, rt).await;
    assert_eq!(r.status(), 200);
    let r: serde_json::Value = r.json().await.unwrap();
    assert!(r["refresh_token"].is_string(), "{r}");
}
both_backends!(refresh_token_only_with_offline_access);

/// A grant an older broker made without offline_access (it handed out a
/// refresh token anyway): that refresh token keeps working after the upgrade.
async fn grants_from_before_the_rule_keep_refreshing(db_url: &str) {
    let broker = start(db_url, None, |_| {}).await;
    let (code, _) = code_without_offline_access(&broker.base).await;
    // Redeem the code the way the old broker did: a family with the granted
    // scope and a first refresh token.
    let state = &broker.state;
    let now = state.now();
    let (rt, rt_hash) = {
        let t = idbridge_tokens::random_token(32).unwrap();
        let h = idbridge_tokens::hash_token(&t);
        (t, h)
    };
    let family = idbridge_store::FamilyRow {
        id: idbridge_tokens::random_token(16).unwrap(),
        client_id: APP_ID.into(),
        user_id: String::new(),
        scope: "openid profile".into(),
        sso_session_id: None,
        payload: serde_json::json!({"auth_time": now, "connector_id": "dev"}),
        created_at: now,
        last_used_at: now,
        absolute_expires_at: now + 86_400,
        revoked_at: None,
        revoked_reason: None,
    };
    let code_hash = idbridge_tokens::hash_token(&code);
    let user_id = state
        .store
        .get_code(&code_hash)
        .await
        .unwrap()
        .expect("code row")
        .user_id;
    let family = idbridge_store::FamilyRow { user_id, ..family };
    let redeemed = state
        .store
        .redeem_code(&code_hash, family, Some(rt_hash), now)
        .await
        .unwrap();
    assert!(matches!(redeemed, idbridge_store::Redeem::Won(_)));

    let r = refresh(&broker.base, &rt).await;
    assert_eq!(r.status(), 200);
    let r: serde_json::Value = r.json().await.unwrap();
    assert_eq!(r["scope"], "openid profile");
    assert!(r["id_token"].is_string(), "{r}");
    let next = r["refresh_token"].as_str().expect("successor");
    assert_ne!(next, rt);
    // And its successor too.
    let again = refresh(&broker.base, next).await;
    assert_eq!(again.status(), 200);
    let again: serde_json::Value = again.json().await.unwrap();
    assert!(again["refresh_token"].is_string(), "{again}");
}
both_backends!(grants_from_before_the_rule_keep_refreshing);

/// The documented deviation: a client registered with
/// `refresh_without_offline_access` gets a refresh token without asking.
async fn a_client_may_be_registered_for_refresh_without_offline_access(db_url: &str) {
    let broker = start(db_url, None, |s| {
        for c in s.clients.iter_mut().filter(|c| c.id == APP_ID) {
            c.refresh_without_offline_access = true;
        }
    })
    .await;
    let (code, verifier) = code_without_offline_access(&broker.base).await;
    let t: serde_json::Value = redeem(&broker.base, &code, &verifier)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(t["scope"], "openid profile");
    let rt = t["refresh_token"].as_str().expect("refresh token");
    let r = refresh(&broker.base, rt).await;
    assert_eq!(r.status(), 200);
    let r: serde_json::Value = r.json().await.unwrap();
    assert_eq!(r["scope"], "openid profile");
    assert!(r["refresh_token"].is_string(), "{r}");
}
both_backends!(a_client_may_be_registered_for_refresh_without_offline_access);
