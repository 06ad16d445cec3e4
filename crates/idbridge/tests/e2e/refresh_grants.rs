//! Refresh grants as apps see them: the ID token on refresh (OpenID Connect Core
//! §12.2) and the per-client `id_token_on_refresh = false`; refresh grants that
//! arrive together are written in batches (group commit), and each app still gets
//! its own answer, with rotation and reuse rules unchanged.

use crate::both_backends;
use crate::harness::*;

/// A signed-in app's first token response (with a refresh token).
async fn first_tokens(base: &str) -> serde_json::Value {
    let (url, verifier) = authorize_url(base, &[]);
    let back = sign_in(&browser(), base, &url, "alice").await;
    let code = query_param(&back, "code").expect("code");
    let t = redeem(base, &code, &verifier).await;
    assert_eq!(t.status(), 200);
    t.json().await.unwrap()
}

/// By default a refresh brings a new ID token: the same person and authentication
/// time as the first, issued now, without the nonce.
async fn a_refresh_brings_a_new_id_token(db_url: &str) {
    let broker = start(db_url, None, |_| {}).await;
    let first = first_tokens(&broker.base).await;
    let first_id = claims(first["id_token"].as_str().unwrap());
    let r = refresh(&broker.base, first["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.status(), 200);
    let r: serde_json::Value = r.json().await.unwrap();
    let id = claims(r["id_token"].as_str().expect("an ID token on refresh"));
    assert_eq!(id["sub"], first_id["sub"]);
    assert_eq!(id["aud"], first_id["aud"]);
    assert_eq!(id["auth_time"], first_id["auth_time"]);
    assert!(id.get("nonce").is_none(), "{id}");
    assert!(id["at_hash"].is_string(), "{id}");
}
both_backends!(a_refresh_brings_a_new_id_token);

/// `id_token_on_refresh = false`: the code still brings an ID token, a refresh
/// does not; its access token works and its refresh token rotates.
async fn a_client_may_go_without_id_tokens_on_refresh(db_url: &str) {
    let broker = start(db_url, None, |s| {
        for c in s.clients.iter_mut().filter(|c| c.id == APP_ID) {
            c.id_token_on_refresh = false;
        }
    })
    .await;
    let first = first_tokens(&broker.base).await;
    assert!(first["id_token"].is_string(), "{first}");
    let rt = first["refresh_token"].as_str().unwrap();
    let r = refresh(&broker.base, rt).await;
    assert_eq!(r.status(), 200);
    let r: serde_json::Value = r.json().await.unwrap();
    assert!(r.get("id_token").is_none(), "{r}");
    let next = r["refresh_token"].as_str().expect("a successor");
    assert_ne!(next, rt);
    let info = http()
        .get(format!("{}/userinfo", broker.base))
        .bearer_auth(r["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(info.status(), 200);
    let info: serde_json::Value = info.json().await.unwrap();
    assert_eq!(
        info["sub"],
        claims(first["id_token"].as_str().unwrap())["sub"]
    );
}
both_backends!(a_client_may_go_without_id_tokens_on_refresh);

/// Many grants at once (they share batches): every chain gets its own successor,
/// and the old tokens are spent. The same token sent twice at once gets one
/// successor for both (the reuse grace window), and once that successor has been
/// used, the old token is a replay that ends the grant.
async fn refresh_grants_at_once_each_get_their_own_answer(db_url: &str) {
    let broker = start(db_url, None, |_| {}).await;
    let mut tokens = Vec::new();
    for _ in 0..6 {
        tokens.push(
            first_tokens(&broker.base).await["refresh_token"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    // Six chains, ten rounds, all chains at once each round.
    for _ in 0..10 {
        let answers =
            futures_util::future::join_all(tokens.iter().map(|t| refresh(&broker.base, t))).await;
        let mut next = Vec::new();
        for a in answers {
            assert_eq!(a.status(), 200);
            let a: serde_json::Value = a.json().await.unwrap();
            next.push(a["refresh_token"].as_str().unwrap().to_owned());
        }
        let mut distinct = next.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), next.len(), "one successor per chain");
        tokens = next;
    }

    let t = tokens[0].clone();
    let (a, b) = futures_util::join!(refresh(&broker.base, &t), refresh(&broker.base, &t));
    assert_eq!(a.status(), 200);
    assert_eq!(b.status(), 200);
    let a: serde_json::Value = a.json().await.unwrap();
    let b: serde_json::Value = b.json().await.unwrap();
    assert_eq!(
        a["refresh_token"], b["refresh_token"],
        "one successor for both"
    );
    let successor = a["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(refresh(&broker.base, &successor).await.status(), 200);
    // The first token again, now that its successor moved on: a replay.
    let replay = refresh(&broker.base, &t).await;
    assert_eq!(replay.status(), 400);
    let replay: serde_json::Value = replay.json().await.unwrap();
    assert_eq!(replay["error"], "invalid_grant");
    // The other chains are untouched.
    for other in &tokens[1..] {
        assert_eq!(refresh(&broker.base, other).await.status(), 200);
    }
}
both_backends!(refresh_grants_at_once_each_get_their_own_answer);
