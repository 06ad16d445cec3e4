//! A second idbridge as the upstream of an `oidc` connector (issue 13): the
//! broker an app talks to ("downstream") signs people in at another idbridge
//! ("upstream", itself signing in with its development connector), the way a
//! company chains a regional broker to a central one. Both are real brokers on
//! 127.0.0.1 with their own databases; the downstream one knows the upstream only
//! through discovery, its JWKS, `/token` with `client_secret_basic` and the ID
//! token it verifies. A returning person keeps one `sub`, and with
//! `recheck_on_refresh` a person disabled upstream loses the downstream grant.

use crate::both_backends;
use crate::harness::*;
use serde_json::Value;

const DOWNSTREAM_CLIENT: &str = "downstream-broker";
const DOWNSTREAM_SECRET: &str = "downstream-secret-0123456789abcdef";

/// The browser's trip: downstream /authorize → upstream /authorize → the
/// upstream's development sign-in → the downstream callback → the app.
async fn sign_in_through_both(
    b: &reqwest::Client,
    downstream: &str,
    upstream: &str,
    url: &str,
) -> String {
    let resp = b.get(url).send().await.unwrap();
    assert_eq!(
        resp.status(),
        302,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    let at_upstream = location(&resp);
    assert!(
        at_upstream.starts_with(&format!("{upstream}/authorize?")),
        "{at_upstream}"
    );
    assert_eq!(
        query_param(&at_upstream, "client_id").as_deref(),
        Some(DOWNSTREAM_CLIENT)
    );
    assert!(
        query_param(&at_upstream, "code_challenge").is_some(),
        "PKCE upstream"
    );
    assert!(
        query_param(&at_upstream, "nonce").is_some(),
        "a nonce upstream"
    );
    let back = sign_in(b, upstream, &at_upstream, "zhangwei").await;
    assert!(
        back.starts_with(&format!("{downstream}/callback/central?")),
        "{back}"
    );
    let resp = b.get(&back).send().await.unwrap();
    assert_eq!(
        resp.status(),
        302,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    location(&resp)
}

async fn an_idbridge_signs_in_at_another_idbridge(db_url: &str) {
    // The upstream's database is a second one of the same backend.
    let kind = if db_url.starts_with("postgres") {
        Db::Postgres
    } else {
        Db::Sqlite
    };
    let upstream_db = TestDb::new(kind);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let downstream_base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let callback = format!("{downstream_base}/callback/central");
    let upstream = start(&upstream_db.url(), None, move |s| {
        s.connectors.retain(|c| c["id"] == "dev");
        s.clients.push(client(
            DOWNSTREAM_CLIENT,
            Some(DOWNSTREAM_SECRET),
            &callback,
        ));
    })
    .await;
    let issuer = upstream.base.clone();
    let downstream = start_on(listener, db_url, None, idbridge::registry(), move |s| {
        s.connectors = vec![serde_json::json!({
            "id": "central", "type": "oidc", "name": "Central idbridge",
            "issuer": issuer, "client_id": DOWNSTREAM_CLIENT, "client_secret": DOWNSTREAM_SECRET,
            "scopes": ["openid", "profile", "offline_access"],
            "recheck_on_refresh": true,
        })];
    })
    .await;
    let (base, up) = (downstream.base.clone(), upstream.base.clone());

    let (url, verifier) = authorize_url(&base, &[]);
    let url = url.replace("connector=dev", "connector=central");
    // The connector is ready once its background prepare has read the upstream's discovery.
    let mut ready = false;
    for _ in 0..100 {
        let resp = http().get(&url).send().await.unwrap();
        if resp.status() == 302 && location(&resp).starts_with(&up) {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        ready,
        "the oidc connector did not get ready on the upstream idbridge"
    );

    let mut subs = Vec::new();
    let mut last_tokens = Value::Null;
    for _ in 0..2 {
        let back = sign_in_through_both(&browser(), &base, &up, &url).await;
        assert!(back.starts_with(APP_REDIRECT), "{back}");
        let code = query_param(&back, "code").expect("a code for the app");
        let tokens: Value = redeem(&base, &code, &verifier).await.json().await.unwrap();
        let c = claims(tokens["id_token"].as_str().expect("an ID token"));
        assert_eq!(c["iss"], base.as_str(), "the downstream broker's own token");
        assert_eq!(c["name"], "张伟", "the upstream's profile, mapped: {c}");
        assert_eq!(c["linked_connectors"], serde_json::json!(["central"]));
        subs.push(c["sub"].as_str().unwrap().to_owned());
        last_tokens = tokens;
    }
    assert_eq!(subs[0], subs[1], "a returning person keeps one sub");

    // The upstream's refresh token is kept sealed downstream and used by the re-check.
    let rt = last_tokens["refresh_token"].as_str().unwrap();
    let refreshed = refresh(&base, rt).await;
    assert_eq!(
        refreshed.status(),
        200,
        "re-checked at the upstream idbridge"
    );
    let refreshed: Value = refreshed.json().await.unwrap();

    // The person is disabled at the upstream: the next refresh downstream ends the grant.
    let people = upstream.state.store.find_users("张伟", 10).await.unwrap();
    assert_eq!(people.len(), 1);
    assert!(upstream
        .state
        .store
        .set_user_disabled(&people[0].id, Some(upstream.state.now()))
        .await
        .unwrap());
    let refused = refresh(&base, refreshed["refresh_token"].as_str().unwrap()).await;
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant", "{body}");
    // The operator's line: the re-check, the connector, the upstream's own error code.
    assert!(
        !log_lines(&[
            "upstream_recheck_failed",
            "connector=central",
            "invalid_grant"
        ])
        .is_empty(),
        "a WARN line names the re-check, the connector and the upstream's error"
    );
    downstream.stop().await;
    upstream.stop().await;
}
both_backends!(an_idbridge_signs_in_at_another_idbridge);
