//! The provider checklist of SECURITY.md, one scenario per promise, observed over
//! HTTP the way an app or a browser observes it.

use crate::both_backends;
use crate::harness::*;
use futures_util::future::join_all;

async fn sqlite_broker() -> (TestDb, Broker) {
    let db = TestDb::new(Db::Sqlite);
    let broker = start(&db.url(), None, |_| {}).await;
    (db, broker)
}

#[tokio::test]
async fn redirect_uri_near_misses_never_redirect() {
    let (_db, broker) = sqlite_broker().await;
    let near_misses = [
        "https://app.example.com/callback/",
        "https://app.example.com/callback?x=1",
        "https://app.example.com/callbackx",
        "https://app.example.com/",
        "https://app.example.com:8443/callback",
        "http://app.example.com/callback",
        "https://APP.example.com.evil.com/callback",
        "https://app.example.com/callback#frag",
    ];
    for uri in near_misses {
        let resp = browser()
            .get(format!("{}/authorize", broker.base))
            .query(&[
                ("response_type", "code"),
                ("client_id", APP_ID),
                ("redirect_uri", uri),
                ("scope", "openid"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{uri}");
        assert!(
            resp.headers().get("location").is_none(),
            "{uri} must not redirect"
        );
        let page = resp.text().await.unwrap();
        assert!(
            page.contains("redirect_uri"),
            "the page names the problem: {page}"
        );
    }
    // Unknown client: an error page too.
    let resp = browser()
        .get(format!("{}/authorize?client_id=nobody&redirect_uri={APP_REDIRECT}&response_type=code&scope=openid", broker.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.headers().get("location").is_none());
}

#[tokio::test]
async fn loopback_native_clients_may_use_any_port() {
    let (_db, broker) = sqlite_broker().await;
    let challenge = idbridge_tokens::pkce_s256("verifier-0123456789-0123456789-0123456789-abcdef");
    let resp = browser()
        .get(format!("{}/authorize", broker.base))
        .query(&[
            ("response_type", "code"),
            ("client_id", SPA_ID),
            ("redirect_uri", "http://127.0.0.1:53123/spa/callback"),
            ("scope", "openid"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("connector", "dev"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "the dev login page is shown");
}

#[tokio::test]
async fn authorization_errors_redirect_with_iss_and_state() {
    let (_db, broker) = sqlite_broker().await;
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("response_type", "token")], "unsupported_response_type"),
        (&[("scope", "profile")], "invalid_scope"),
        (&[("code_challenge_method", "plain")], "invalid_request"),
        (&[("prompt", "none login")], "invalid_request"),
        (&[("max_age", "-1")], "invalid_request"),
        (&[("request", "eyJ")], "request_not_supported"),
    ];
    for (overrides, expected) in cases {
        let mut params: Vec<(&str, String)> = vec![
            ("response_type", "code".into()),
            ("client_id", APP_ID.into()),
            ("redirect_uri", APP_REDIRECT.into()),
            ("scope", "openid".into()),
            ("state", "s-1".into()),
            (
                "code_challenge",
                idbridge_tokens::pkce_s256("verifier-0123456789-0123456789-0123456789-abcdef"),
            ),
            ("code_challenge_method", "S256".into()),
        ];
        for (k, v) in overrides.iter() {
            params.retain(|(pk, _)| pk != k);
            params.push((k, (*v).to_owned()));
        }
        let resp = browser()
            .get(format!("{}/authorize", broker.base))
            .query(&params)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 302, "{overrides:?}");
        let loc = location(&resp);
        assert!(loc.starts_with(APP_REDIRECT), "{loc}");
        assert_eq!(
            query_param(&loc, "error").as_deref(),
            Some(*expected),
            "{overrides:?} → {loc}"
        );
        assert_eq!(
            query_param(&loc, "iss").as_deref(),
            Some(broker.base.as_str())
        );
        assert_eq!(query_param(&loc, "state").as_deref(), Some("s-1"));
    }
    // A repeated parameter is an error too.
    let (url, _) = authorize_url(&broker.base, &[("scope", "openid")]);
    let resp = browser().get(&url).send().await.unwrap();
    assert_eq!(
        query_param(&location(&resp), "error").as_deref(),
        Some("invalid_request")
    );
}

#[tokio::test]
async fn pkce_is_enforced() {
    let (_db, broker) = sqlite_broker().await;
    // Public client without PKCE: refused.
    let resp = browser()
        .get(format!("{}/authorize", broker.base))
        .query(&[
            ("response_type", "code"),
            ("client_id", SPA_ID),
            ("redirect_uri", SPA_REDIRECT),
            ("scope", "openid"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        query_param(&location(&resp), "error").as_deref(),
        Some("invalid_request")
    );

    // Wrong verifier, then missing verifier: invalid_grant, and the code still fails after.
    let (url, verifier) = authorize_url(&broker.base, &[]);
    let code = query_param(
        &sign_in(&browser(), &broker.base, &url, "alice").await,
        "code",
    )
    .unwrap();
    let wrong = redeem(
        &broker.base,
        &code,
        "wrong-verifier-0123456789-0123456789-0123456789",
    )
    .await;
    assert_eq!(wrong.status(), 400);
    assert_eq!(
        wrong.json::<serde_json::Value>().await.unwrap()["error"],
        "invalid_grant"
    );
    let missing = http()
        .post(format!("{}/token", broker.base))
        .basic_auth(APP_ID, Some(APP_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", APP_REDIRECT),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        missing.json::<serde_json::Value>().await.unwrap()["error"],
        "invalid_grant"
    );
    assert_eq!(
        redeem(&broker.base, &code, &verifier).await.status(),
        200,
        "the right verifier still works"
    );

    // Downgrade: a verifier for a code issued without a challenge.
    let mut u = url::Url::parse(&format!("{}/authorize", broker.base)).unwrap();
    u.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", OTHER_ID)
        .append_pair("redirect_uri", "https://other.example.com/cb")
        .append_pair("scope", "openid")
        .append_pair("connector", "dev");
    let back = sign_in(&browser(), &broker.base, u.as_str(), "alice").await;
    let code = query_param(&back, "code")
        .expect("confidential client without PKCE gets a code when configured so");
    let resp = http()
        .post(format!("{}/token", broker.base))
        .basic_auth(OTHER_ID, Some(OTHER_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", "https://other.example.com/cb"),
            (
                "code_verifier",
                "verifier-0123456789-0123456789-0123456789-abcdef",
            ),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.json::<serde_json::Value>().await.unwrap()["error"],
        "invalid_grant"
    );
}

async fn parallel_redemptions(db_url: &str) {
    let broker = start(db_url, None, |_| {}).await;
    let (url, verifier) = authorize_url(&broker.base, &[]);
    let code = query_param(
        &sign_in(&browser(), &broker.base, &url, "bob").await,
        "code",
    )
    .unwrap();
    let results = join_all((0..10).map(|_| {
        let (base, code, verifier) = (broker.base.clone(), code.clone(), verifier.clone());
        tokio::spawn(async move {
            let r = redeem(&base, &code, &verifier).await;
            (
                r.status().as_u16(),
                r.json::<serde_json::Value>().await.unwrap(),
            )
        })
    }))
    .await;
    let results: Vec<_> = results.into_iter().map(|r| r.unwrap()).collect();
    let wins: Vec<_> = results.iter().filter(|(s, _)| *s == 200).collect();
    assert_eq!(
        wins.len(),
        1,
        "exactly one redemption succeeds: {results:?}"
    );
    for (s, body) in results.iter().filter(|(s, _)| *s != 200) {
        assert_eq!(*s, 400);
        assert_eq!(body["error"], "invalid_grant");
    }
    // The replays revoked what the winner got.
    let winner = &wins[0].1;
    assert_eq!(
        introspect(&broker.base, winner["access_token"].as_str().unwrap()).await["active"],
        false
    );
    let r = refresh(&broker.base, winner["refresh_token"].as_str().unwrap()).await;
    assert_eq!(
        r.status(),
        400,
        "the refresh token from a replayed code is revoked"
    );
    // The audit log says whose code came back, and which app's.
    let sub = claims(winner["id_token"].as_str().unwrap())["sub"].clone();
    let replays = audit_events(&broker, "code_replayed").await;
    let replay = replays.first().expect("a code_replayed event");
    assert_eq!(replay.event.user_id.as_deref(), sub.as_str());
    assert_eq!(replay.event.client_id.as_deref(), Some(APP_ID));
    broker.stop().await;
}
both_backends!(parallel_redemptions);

#[tokio::test]
async fn a_second_redemption_revokes_the_first_tokens() {
    let (_db, broker) = sqlite_broker().await;
    let (url, verifier) = authorize_url(&broker.base, &[]);
    let code = query_param(
        &sign_in(&browser(), &broker.base, &url, "bob").await,
        "code",
    )
    .unwrap();
    let first: serde_json::Value = redeem(&broker.base, &code, &verifier)
        .await
        .json()
        .await
        .unwrap();
    let at = first["access_token"].as_str().unwrap();
    assert_eq!(introspect(&broker.base, at).await["active"], true);
    let userinfo = http()
        .get(format!("{}/userinfo", broker.base))
        .bearer_auth(at)
        .send()
        .await
        .unwrap();
    assert_eq!(userinfo.status(), 200);
    let second = redeem(&broker.base, &code, &verifier).await;
    assert_eq!(second.status(), 400);
    assert_eq!(introspect(&broker.base, at).await["active"], false);
    let userinfo = http()
        .get(format!("{}/userinfo", broker.base))
        .bearer_auth(at)
        .send()
        .await
        .unwrap();
    assert_eq!(userinfo.status(), 401);
    assert!(userinfo
        .headers()
        .get("www-authenticate")
        .unwrap()
        .to_str()
        .unwrap()
        .contains("invalid_token"));
}

#[tokio::test]
async fn codes_are_short_lived_and_bound_to_their_client() {
    let (_db, broker) = sqlite_broker().await;
    let (url, verifier) = authorize_url(&broker.base, &[]);
    let code = query_param(
        &sign_in(&browser(), &broker.base, &url, "alice").await,
        "code",
    )
    .unwrap();
    assert!(code.len() >= 43, "at least 256 bits, base64url");
    let stolen = http()
        .post(format!("{}/token", broker.base))
        .basic_auth(OTHER_ID, Some(OTHER_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", APP_REDIRECT),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        stolen.json::<serde_json::Value>().await.unwrap()["error"],
        "invalid_grant"
    );
    // redirect_uri must be repeated exactly.
    let wrong_uri = http()
        .post(format!("{}/token", broker.base))
        .basic_auth(APP_ID, Some(APP_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", "https://app.example.com/callback/"),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        wrong_uri.json::<serde_json::Value>().await.unwrap()["error"],
        "invalid_grant"
    );
    broker.clock().advance(61);
    let late = redeem(&broker.base, &code, &verifier).await;
    assert_eq!(late.status(), 400, "a code is good for 60 seconds");
}

#[tokio::test]
async fn token_responses_are_not_cached_and_clients_must_authenticate() {
    let (_db, broker) = sqlite_broker().await;
    let (url, verifier) = authorize_url(&broker.base, &[]);
    let code = query_param(
        &sign_in(&browser(), &broker.base, &url, "alice").await,
        "code",
    )
    .unwrap();
    let resp = redeem(&broker.base, &code, &verifier).await;
    assert_eq!(resp.headers().get("cache-control").unwrap(), "no-store");
    let bad = http()
        .post(format!("{}/token", broker.base))
        .basic_auth(APP_ID, Some("not-the-secret"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    assert!(bad.headers().get("www-authenticate").is_some());
    assert_eq!(bad.headers().get("cache-control").unwrap(), "no-store");
    assert_eq!(
        bad.json::<serde_json::Value>().await.unwrap()["error"],
        "invalid_client"
    );
    let post = http()
        .post(format!("{}/token", broker.base))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", "x"),
            ("client_id", APP_ID),
            ("client_secret", APP_SECRET),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        post.json::<serde_json::Value>().await.unwrap()["error"],
        "invalid_grant",
        "client_secret_post authenticates"
    );
    let unsupported = http()
        .post(format!("{}/token", broker.base))
        .basic_auth(APP_ID, Some(APP_SECRET))
        .form(&[
            ("grant_type", "password"),
            ("username", "a"),
            ("password", "b"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        unsupported.json::<serde_json::Value>().await.unwrap()["error"],
        "unsupported_grant_type"
    );
}

async fn refresh_rotation_and_replay(db_url: &str) {
    let broker = start(db_url, None, |_| {}).await;
    let t = tokens_for(&broker.base, "alice").await;
    let rt0 = t["refresh_token"].as_str().unwrap().to_owned();
    // A lost response: the same token again within the grace window still works.
    let r1: serde_json::Value = refresh(&broker.base, &rt0).await.json().await.unwrap();
    let retry: serde_json::Value = refresh(&broker.base, &rt0).await.json().await.unwrap();
    assert!(
        retry["access_token"].is_string(),
        "retry within grace works: {retry}"
    );
    // Parallel refreshes with one token do not log the user out.
    let rt1 = r1["refresh_token"].as_str().unwrap().to_owned();
    let parallel = join_all((0..5).map(|_| {
        let (base, rt) = (broker.base.clone(), rt1.clone());
        tokio::spawn(async move { refresh(&base, &rt).await.status().as_u16() })
    }))
    .await;
    assert!(
        parallel.iter().all(|s| *s.as_ref().unwrap() == 200),
        "{parallel:?}"
    );
    // Scope never widens; narrowing works.
    let wider = http()
        .post(format!("{}/token", broker.base))
        .basic_auth(APP_ID, Some(APP_SECRET))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", retry["refresh_token"].as_str().unwrap()),
            ("scope", "openid profile email"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        wider.json::<serde_json::Value>().await.unwrap()["error"],
        "invalid_scope"
    );
    let narrow: serde_json::Value = http()
        .post(format!("{}/token", broker.base))
        .basic_auth(APP_ID, Some(APP_SECRET))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", retry["refresh_token"].as_str().unwrap()),
            ("scope", "openid"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(narrow["scope"], "openid");
    // Another client cannot use it.
    let other = http()
        .post(format!("{}/token", broker.base))
        .basic_auth(OTHER_ID, Some(OTHER_SECRET))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", narrow["refresh_token"].as_str().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 400);
    // Past the grace window, replaying the rotated token revokes the whole family.
    broker.clock().advance(11);
    let replay = refresh(&broker.base, &rt0).await;
    assert_eq!(replay.status(), 400);
    let latest = refresh(&broker.base, narrow["refresh_token"].as_str().unwrap()).await;
    assert_eq!(
        latest.status(),
        400,
        "the newest token of a replayed family is dead too"
    );
    assert_eq!(
        introspect(&broker.base, narrow["access_token"].as_str().unwrap()).await["active"],
        false
    );
    broker.stop().await;
}
both_backends!(refresh_rotation_and_replay);

/// The grant (family) id an access token belongs to: its `jti` is `<family>.<random>`.
fn family_of(access_token: &str) -> String {
    let jti = claims(access_token)["jti"].as_str().unwrap().to_owned();
    jti.split('.').next().unwrap().to_owned()
}

async fn refresh_grace_gives_one_successor(db_url: &str) {
    let broker = start(db_url, None, |_| {}).await;
    let t = tokens_for(&broker.base, "alice").await;
    let rt0 = t["refresh_token"].as_str().unwrap().to_owned();
    // Twenty refreshes of one token at once (an app with several threads, or a
    // thief racing it): all succeed, all get the same successor.
    let answers = join_all((0..20).map(|_| {
        let (base, rt) = (broker.base.clone(), rt0.clone());
        tokio::spawn(async move {
            let r = refresh(&base, &rt).await;
            (
                r.status().as_u16(),
                r.json::<serde_json::Value>().await.unwrap(),
            )
        })
    }))
    .await;
    let mut successors = std::collections::BTreeSet::new();
    for a in answers {
        let (status, body) = a.unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(body["access_token"].is_string(), "{body}");
        successors.insert(body["refresh_token"].as_str().unwrap().to_owned());
    }
    assert_eq!(successors.len(), 1, "one successor, not {successors:?}");
    let rt1 = successors.into_iter().next().unwrap();
    assert_ne!(rt1, rt0);
    // Inside the window introspection agrees with /token: both are active, and
    // the rotated one only until its window ends.
    let now = broker.state.now();
    let i0 = introspect(&broker.base, &rt0).await;
    assert_eq!(i0["active"], true, "{i0}");
    assert!(i0["exp"].as_i64().unwrap() <= now + 10, "{i0}");
    assert_eq!(introspect(&broker.base, &rt1).await["active"], true);
    // The successor refreshes normally.
    let r2: serde_json::Value = refresh(&broker.base, &rt1).await.json().await.unwrap();
    let rt2 = r2["refresh_token"].as_str().unwrap().to_owned();
    let family = family_of(r2["access_token"].as_str().unwrap());
    // Past the window the first token is a replay: the whole grant ends, the
    // newest token included, and the audit log says so.
    broker.clock().advance(11);
    assert_eq!(introspect(&broker.base, &rt0).await["active"], false);
    let replay = refresh(&broker.base, &rt0).await;
    assert_eq!(replay.status(), 400);
    assert_eq!(
        replay.json::<serde_json::Value>().await.unwrap()["error"],
        "invalid_grant"
    );
    let latest = refresh(&broker.base, &rt2).await;
    assert_eq!(
        latest.status(),
        400,
        "the newest token of a replayed grant is dead"
    );
    assert_eq!(introspect(&broker.base, &rt2).await["active"], false);
    let events = audit_events(&broker, "refresh_token_replayed").await;
    assert!(
        events
            .iter()
            .any(|e| e.event.detail["family"] == family.as_str()),
        "{events:?}"
    );
    broker.stop().await;
}
both_backends!(refresh_grace_gives_one_successor);

async fn refresh_reuse_after_the_chain_moved_on_ends_the_grant(db_url: &str) {
    let broker = start(db_url, None, |_| {}).await;
    let t = tokens_for(&broker.base, "alice").await;
    let rt0 = t["refresh_token"].as_str().unwrap().to_owned();
    let r1: serde_json::Value = refresh(&broker.base, &rt0).await.json().await.unwrap();
    let rt1 = r1["refresh_token"].as_str().unwrap().to_owned();
    let r2: serde_json::Value = refresh(&broker.base, &rt1).await.json().await.unwrap();
    let rt2 = r2["refresh_token"].as_str().unwrap().to_owned();
    let family = family_of(r2["access_token"].as_str().unwrap());
    // rt0 again, still inside its grace window, but its successor has been used:
    // whoever holds rt0 is not the one holding the chain. Introspection says
    // inactive; /token issues nothing and ends the grant.
    assert_eq!(introspect(&broker.base, &rt0).await["active"], false);
    let again = refresh(&broker.base, &rt0).await;
    assert_eq!(again.status(), 400);
    let body: serde_json::Value = again.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant", "{body}");
    assert!(body.get("refresh_token").is_none(), "{body}");
    for token in [&rt2, &rt1] {
        assert_eq!(refresh(&broker.base, token).await.status(), 400);
    }
    assert_eq!(
        introspect(&broker.base, r2["access_token"].as_str().unwrap()).await["active"],
        false
    );
    let events = audit_events(&broker, "refresh_token_replayed").await;
    assert!(
        events
            .iter()
            .any(|e| e.event.detail["family"] == family.as_str()),
        "{events:?}"
    );
    broker.stop().await;
}
both_backends!(refresh_reuse_after_the_chain_moved_on_ends_the_grant);

#[tokio::test]
async fn refresh_tokens_expire_when_idle() {
    let (_db, broker) = sqlite_broker().await;
    let t = tokens_for(&broker.base, "alice").await;
    broker.clock().advance(30 * 86400 + 1);
    let r = refresh(&broker.base, t["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn forged_and_misused_tokens_are_refused() {
    use base64::Engine;
    let (_db, broker) = sqlite_broker().await;
    let t = tokens_for(&broker.base, "alice").await;
    let at = t["access_token"].as_str().unwrap();
    let id = t["id_token"].as_str().unwrap();
    let b64 = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let payload = at.split('.').nth(1).unwrap();
    let none = format!(
        "{}.{payload}.",
        b64(serde_json::json!({"alg": "none", "typ": "at+jwt"}))
    );
    let mut tampered_claims = claims(at);
    tampered_claims["sub"] = "someone-else".into();
    let parts: Vec<&str> = at.split('.').collect();
    let tampered = format!("{}.{}.{}", parts[0], b64(tampered_claims), parts[2]);
    for (label, token) in [
        ("alg none", none.as_str()),
        ("tampered", tampered.as_str()),
        ("id token as access token", id),
    ] {
        let r = http()
            .get(format!("{}/userinfo", broker.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{label}");
    }
    let header: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[0])
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "RS256");
    let c = claims(at);
    for k in ["iss", "aud", "exp", "iat", "sub", "client_id", "jti"] {
        assert!(c.get(k).is_some(), "access token has {k}");
    }
    // userinfo by POST body works too.
    let r = http()
        .post(format!("{}/userinfo", broker.base))
        .form(&[("access_token", at)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn hosted_pages_send_security_headers_and_safe_cookies() {
    let (_db, broker) = sqlite_broker().await;
    let (url, _) = authorize_url(&broker.base, &[]);
    let resp = browser().get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers();
    let csp = h.get("content-security-policy").unwrap().to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(csp.contains("script-src 'none'"), "{csp}");
    assert_eq!(h.get("x-frame-options").unwrap(), "DENY");
    assert_eq!(h.get("referrer-policy").unwrap(), "no-referrer");
    assert_eq!(h.get("x-content-type-options").unwrap(), "nosniff");
    let cookie = h.get("set-cookie").unwrap().to_str().unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    // Forwarded headers never change the issuer.
    let meta: serde_json::Value = http()
        .get(format!("{}/.well-known/openid-configuration", broker.base))
        .header("X-Forwarded-Host", "evil.example")
        .header("X-Forwarded-Proto", "https")
        .header("Forwarded", "host=evil.example;proto=https")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["issuer"], broker.base.as_str());
    assert_eq!(meta["token_endpoint"], format!("{}/token", broker.base));
    assert_eq!(
        meta["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(meta["authorization_response_iss_parameter_supported"], true);
}

#[tokio::test]
async fn sso_session_signs_in_a_second_app_without_a_second_login() {
    let (_db, broker) = sqlite_broker().await;
    let b = browser();
    let (url, _) = authorize_url(&broker.base, &[]);
    let first = sign_in(&b, &broker.base, &url, "alice").await;
    assert!(query_param(&first, "code").is_some());
    // Second app, same browser: straight back with a code.
    let mut u = url::Url::parse(&format!("{}/authorize", broker.base)).unwrap();
    u.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", OTHER_ID)
        .append_pair("redirect_uri", "https://other.example.com/cb")
        .append_pair("scope", "openid")
        .append_pair("prompt", "none");
    let resp = b.get(u.as_str()).send().await.unwrap();
    assert_eq!(resp.status(), 302);
    assert!(
        query_param(&location(&resp), "code").is_some(),
        "{}",
        location(&resp)
    );
    // Both sign-ins are in the audit log; the second says it came through SSO.
    let logins = audit_events(&broker, "login").await;
    let apps: Vec<_> = logins
        .iter()
        .map(|l| {
            (
                l.event.client_id.as_deref(),
                l.event.detail["sso"].as_bool(),
            )
        })
        .collect();
    assert_eq!(apps, [(Some(OTHER_ID), Some(true)), (Some(APP_ID), None)]);
    assert_eq!(logins[0].event.user_id, logins[1].event.user_id);
    assert_eq!(logins[0].event.ip.as_deref(), Some("127.0.0.1"));
    // prompt=login forces the upstream login again.
    let (forced, _) = authorize_url(&broker.base, &[("prompt", "login")]);
    assert_eq!(b.get(&forced).send().await.unwrap().status(), 200);
    // max_age: an old login is not enough.
    broker.clock().advance(120);
    let (aged, _) = authorize_url(&broker.base, &[("max_age", "60")]);
    assert_eq!(
        b.get(&aged).send().await.unwrap().status(),
        200,
        "max_age=60 after 120 s asks again"
    );
    let (fresh, _) = authorize_url(&broker.base, &[("max_age", "600")]);
    assert_eq!(b.get(&fresh).send().await.unwrap().status(), 302);
}

#[tokio::test]
async fn upstream_state_is_single_use_and_bound_to_browser_and_connector() {
    let (_db, broker) = sqlite_broker().await;
    let b = browser();
    let (url, _) = authorize_url(&broker.base, &[]);
    let page = b.get(&url).send().await.unwrap().text().await.unwrap();
    let state = state_from_page(&page);
    // Another connector's path: rejected (mix-up), and the flow is still usable.
    let mixed = b
        .get(format!("{}/callback/dev2", broker.base))
        .query(&[("state", state.as_str()), ("user", "alice")])
        .send()
        .await
        .unwrap();
    assert_eq!(mixed.status(), 400);
    // Another browser: rejected.
    let stranger = browser()
        .get(format!("{}/callback/dev", broker.base))
        .query(&[("state", state.as_str()), ("user", "mallory")])
        .send()
        .await
        .unwrap();
    assert_eq!(stranger.status(), 400);
    // The right browser at the right path: signed in.
    let ok = b
        .get(format!("{}/callback/dev", broker.base))
        .query(&[("state", state.as_str()), ("user", "alice")])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 302);
    let first = location(&ok);
    assert!(query_param(&first, "code").is_some());
    // A repeated callback (WeChat may call twice) lands where the first one did.
    let again = b
        .get(format!("{}/callback/dev", broker.base))
        .query(&[("state", state.as_str()), ("user", "alice")])
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 302);
    assert_eq!(location(&again), first);
    // A made-up state: a page, not a redirect.
    let bogus = b
        .get(format!(
            "{}/callback/dev?state=nope&user=alice",
            broker.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(bogus.status(), 400);
}

#[tokio::test]
async fn refusal_upstream_returns_access_denied_to_the_app() {
    let (_db, broker) = sqlite_broker().await;
    let b = browser();
    let (url, _) = authorize_url(&broker.base, &[]);
    let page = b.get(&url).send().await.unwrap().text().await.unwrap();
    let state = state_from_page(&page);
    let resp = b
        .get(format!("{}/callback/dev", broker.base))
        .query(&[("state", state.as_str()), ("error", "access_denied")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    let loc = location(&resp);
    assert!(loc.starts_with(APP_REDIRECT));
    assert_eq!(query_param(&loc, "error").as_deref(), Some("access_denied"));
    assert_eq!(query_param(&loc, "state").as_deref(), Some("app-state-1"));
    assert_eq!(
        query_param(&loc, "iss").as_deref(),
        Some(broker.base.as_str())
    );
}

#[tokio::test]
async fn chooser_lists_connectors_when_the_app_does_not_pick_one() {
    let (_db, broker) = sqlite_broker().await;
    let b = browser();
    let (url, _) = authorize_url(&broker.base, &[]);
    let url = url.replace("&connector=dev", "");
    let resp = b.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 302);
    let chooser = get_text(&b, location(&resp)).await;
    assert!(
        chooser.contains("Dev two") && chooser.contains("?connector=dev2"),
        "{chooser}"
    );
    let zh = b
        .get(format!("{}&ui_locales=zh-CN", url))
        .send()
        .await
        .unwrap();
    let chooser = get_text(&b, location(&zh)).await;
    assert!(chooser.contains("选择登录方式"), "{chooser}");
}

#[tokio::test]
async fn logout_without_a_hint_asks_first_and_unregistered_targets_are_refused() {
    let (_db, broker) = sqlite_broker().await;
    let b = browser();
    let (url, _) = authorize_url(&broker.base, &[]);
    sign_in(&b, &broker.base, &url, "alice").await;
    let resp = b
        .get(format!("{}/logout", broker.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let page = resp.text().await.unwrap();
    assert!(
        page.contains("name=\"csrf\""),
        "a confirmation form: {page}"
    );
    // Still signed in: a cross-site GET did not sign the person out.
    let (silent, _) = authorize_url(&broker.base, &[("prompt", "none")]);
    assert!(query_param(&location(&b.get(&silent).send().await.unwrap()), "code").is_some());
    // Forged confirmation without the CSRF token: still asks.
    let forged = b
        .post(format!("{}/logout", broker.base))
        .form(&[("csrf", "guess")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 200);
    assert!(query_param(&location(&b.get(&silent).send().await.unwrap()), "code").is_some());
    let bad = b
        .get(format!("{}/logout", broker.base))
        .query(&[
            ("client_id", APP_ID),
            ("post_logout_redirect_uri", "https://evil.example/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.headers().get("location").is_none());
}

#[tokio::test]
async fn health_reports_the_database() {
    let (_db, broker) = sqlite_broker().await;
    let r: serde_json::Value = get_json(&http(), format!("{}/healthz", broker.base)).await;
    assert_eq!(r["status"], "ok");
}

#[tokio::test]
async fn cookies_are_secure_when_the_issuer_is_https() {
    // Behind a TLS-terminating proxy: the broker listens on plain HTTP but its
    // issuer is https, so its cookies must be Secure.
    let db = TestDb::new(Db::Sqlite);
    let broker = start(&db.url(), Some("https://id.example.test"), |_| {}).await;
    let (url, _) = authorize_url(&broker.base, &[]);
    let resp = browser().get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let cookie = resp
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cookie.contains("Secure") && cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let page = resp.text().await.unwrap();
    assert!(
        page.contains("action=\"https://id.example.test/callback/dev\""),
        "callbacks use the issuer, not the Host header"
    );
}

fn rs256_kids(jwks: &serde_json::Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["alg"] == "RS256")
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

fn kid_of(jwt: &str) -> String {
    use base64::Engine;
    let header = jwt.split('.').next().unwrap();
    let header: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap(),
    )
    .unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn keys_rotate_on_schedule_published_before_use_and_kept_until_their_tokens_expire() {
    let db = TestDb::new(Db::Sqlite);
    let broker = start(&db.url(), None, |s| {
        s.signing.rotate_every_days = 1;
        s.signing.publish_ahead_hours = 1;
    })
    .await;
    let st = &broker.state;
    let jwks = || async {
        http()
            .get(format!("{}/jwks", broker.base))
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    };
    let sync = || async {
        st.keys
            .sync(&st.store, &st.master_key, st.now())
            .await
            .unwrap()
    };
    let first = tokens_for(&broker.base, "alice").await;
    let old_kid = kid_of(first["access_token"].as_str().unwrap());
    assert_eq!(rs256_kids(&jwks().await), vec![old_kid.clone()]);

    // A day later the rotation creates the next key: published, not yet signing.
    broker.clock().advance(86400 + 5);
    sync().await;
    let kids = rs256_kids(&jwks().await);
    assert_eq!(
        kids.len(),
        2,
        "the new key is published before it signs: {kids:?}"
    );
    let new_kid = kids.iter().find(|k| **k != old_kid).unwrap().clone();
    let t = tokens_for(&broker.base, "alice").await;
    assert_eq!(
        kid_of(t["id_token"].as_str().unwrap()),
        old_kid,
        "still signing with the old key"
    );

    // After publish_ahead the new key signs; the old one stays for its tokens.
    broker.clock().advance(3600 + 5);
    sync().await;
    let t = tokens_for(&broker.base, "bob").await;
    assert_eq!(kid_of(t["access_token"].as_str().unwrap()), new_kid);
    assert_eq!(kid_of(t["id_token"].as_str().unwrap()), new_kid);
    assert!(
        rs256_kids(&jwks().await).contains(&old_kid),
        "the old key verifies what it signed"
    );

    // Once everything the old key signed has expired, it leaves the JWKS.
    broker.clock().advance(3600 + 60);
    sync().await;
    assert_eq!(rs256_kids(&jwks().await), vec![new_kid]);
}

#[tokio::test]
async fn first_login_deny_and_disabled_accounts_are_refused_without_writing_an_account() {
    let db = TestDb::new(Db::Sqlite);
    let broker = start(&db.url(), None, |s| {
        s.connectors[1]["first_login"] = "deny".into();
    })
    .await;
    let store = &broker.state.store;
    // dev2 denies people it has never seen.
    let (url, _) = authorize_url(&broker.base, &[]);
    let url = url.replace("connector=dev", "connector=dev2");
    let back = sign_in(&browser(), &broker.base, &url, "stranger").await;
    assert_eq!(
        query_param(&back, "error").as_deref(),
        Some("access_denied")
    );
    assert!(
        store.find_users("", 10).await.unwrap().is_empty(),
        "nothing written"
    );
    assert!(!log_lines(&["reason=\"first_login_denied\""]).is_empty());

    // A disabled account cannot sign in, and gets no code, session or tokens.
    let t = tokens_for(&broker.base, "alice").await;
    let sub = claims(t["id_token"].as_str().unwrap())["sub"]
        .as_str()
        .unwrap()
        .to_owned();
    store
        .set_user_disabled(&sub, Some(broker.state.now()))
        .await
        .unwrap();
    let (url, _) = authorize_url(&broker.base, &[]);
    let back = sign_in(&browser(), &broker.base, &url, "alice").await;
    assert_eq!(
        query_param(&back, "error").as_deref(),
        Some("access_denied")
    );
    assert!(query_param(&back, "code").is_none());
    let refused = refresh(&broker.base, t["refresh_token"].as_str().unwrap()).await;
    assert_eq!(
        refused.status(),
        400,
        "a disabled account's refresh tokens stop working"
    );
    let audit = store.list_audit(Some(&sub), 10, None).await.unwrap();
    assert!(
        audit.iter().any(|r| r.event.event == "login_denied"),
        "{audit:?}"
    );
}

/// `signing.access_token_algorithm` signs access tokens with another algorithm
/// than ID tokens; both verify where apps check them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn access_tokens_may_use_their_own_algorithm() {
    let db = TestDb::new(Db::Sqlite);
    let broker = start(&db.url(), None, |s| {
        s.signing.access_token_algorithm = Some("ES256".into());
    })
    .await;
    let tokens = tokens_for(&broker.base, "alice").await;
    let header = |jwt: &str| {
        use base64::Engine;
        let h = jwt.split('.').next().unwrap();
        serde_json::from_slice::<serde_json::Value>(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(h)
                .unwrap(),
        )
        .unwrap()
    };
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(header(access)["alg"], "ES256");
    assert_eq!(header(access)["typ"], "at+jwt");
    assert_eq!(header(tokens["id_token"].as_str().unwrap())["alg"], "RS256");
    let info = http()
        .get(format!("{}/userinfo", broker.base))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(info.status(), 200);
    assert_eq!(introspect(&broker.base, access).await["active"], true);
}
