//! Several broker processes on one Postgres database: shared flows, shared keys,
//! keys that survive restarts.

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_share_flows_and_keys() {
    let db = TestDb::new(Db::Postgres);
    // Start both at once on an empty database: they race to create the keys.
    let url = db.url();
    let (a, b) = tokio::join!(start(&url, None, |_| {}), start(&url, None, |_| {}));
    // Both must present the same issuer to apps; make B answer for A's issuer.
    let issuer = a.base.clone();
    b.stop().await;
    let b = start(&db.url(), Some(&issuer), |_| {}).await;
    let jwks_a: serde_json::Value = get_json(&http(), format!("{}/jwks", a.base)).await;
    let jwks_b: serde_json::Value = get_json(&http(), format!("{}/jwks", b.base)).await;
    assert_eq!(jwks_a, jwks_b, "the same keys on both instances");
    assert_eq!(
        jwks_a["keys"].as_array().unwrap().len(),
        3,
        "one key per algorithm"
    );

    // Begin on A, finish the upstream callback on B, redeem on B, refresh on A.
    // (A load balancer sends the browser to either; cookies go with it.)
    let (url, verifier) = authorize_url(&a.base, &[]);
    let resp = http().get(&url).send().await.unwrap();
    let cookie = resp
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap()
        .to_owned();
    let state = state_from_page(&resp.text().await.unwrap());
    let cb = http()
        .get(format!("{}/callback/dev", b.base))
        .header("cookie", cookie)
        .query(&[("state", state.as_str()), ("user", "alice")])
        .send()
        .await
        .unwrap();
    assert_eq!(cb.status(), 302, "{}", cb.text().await.unwrap_or_default());
    let code = query_param(&location(&cb), "code").unwrap();
    let t: serde_json::Value = redeem(&b.base, &code, &verifier)
        .await
        .json()
        .await
        .unwrap();
    assert!(t["access_token"].is_string(), "{t}");
    let r = refresh(&a.base, t["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.status(), 200);

    // Restart A: nothing about the keys changes.
    a.stop().await;
    let a2 = start(&db.url(), Some(&issuer), |_| {}).await;
    let jwks_a2: serde_json::Value = get_json(&http(), format!("{}/jwks", a2.base)).await;
    assert_eq!(jwks_a, jwks_a2, "a restart changes no key");
    a2.stop().await;
    b.stop().await;
}
