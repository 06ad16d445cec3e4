//! A real relying-party library (the `openidconnect` crate) signs in through the
//! broker: discovery, PKCE + nonce, code exchange, ID-token validation against the
//! JWKS, userinfo, refresh, introspection, revocation and logout.

use crate::both_backends;
use crate::harness::*;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreProviderMetadata, CoreUserInfoClaims,
};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IntrospectionUrl,
    IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, RedirectUrl, Scope,
    TokenIntrospectionResponse, TokenResponse,
};

async fn full_flow(db_url: &str) {
    let broker = start(db_url, None, |_| {}).await;
    let http = http();
    let metadata =
        CoreProviderMetadata::discover_async(IssuerUrl::new(broker.base.clone()).unwrap(), &http)
            .await
            .expect("discovery and JWKS");
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(APP_ID.into()),
        Some(ClientSecret::new(APP_SECRET.into())),
    )
    .set_redirect_uri(RedirectUrl::new(APP_REDIRECT.into()).unwrap())
    .set_introspection_url(IntrospectionUrl::new(format!("{}/introspect", broker.base)).unwrap());

    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, csrf, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("offline_access".into()))
        .add_extra_param("connector", "dev")
        .set_pkce_challenge(challenge)
        .url();

    let back = sign_in(&browser(), &broker.base, auth_url.as_str(), "zhangwei").await;
    assert!(back.starts_with(APP_REDIRECT), "{back}");
    assert_eq!(
        query_param(&back, "state").as_deref(),
        Some(csrf.secret().as_str())
    );
    assert_eq!(
        query_param(&back, "iss").as_deref(),
        Some(broker.base.as_str()),
        "RFC 9207 iss"
    );
    let code = query_param(&back, "code").unwrap();

    let tokens = client
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("code exchange");
    let id_token = tokens.id_token().expect("id_token");
    let verifier = client.id_token_verifier();
    let id_claims = id_token
        .claims(&verifier, &nonce)
        .expect("ID token verifies against the JWKS");
    let expected_hash = AccessTokenHash::from_token(
        tokens.access_token(),
        id_token.signing_alg().unwrap(),
        id_token.signing_key(&verifier).unwrap(),
    )
    .unwrap();
    assert_eq!(id_claims.access_token_hash(), Some(&expected_hash));
    assert_eq!(
        id_claims
            .name()
            .and_then(|n| n.get(None))
            .map(|n| n.as_str()),
        Some("张伟")
    );
    let sub = id_claims.subject().as_str().to_owned();
    let raw = claims(&id_token.to_string());
    assert_eq!(raw["linked_connectors"], serde_json::json!(["dev"]));
    let at = claims(tokens.access_token().secret());
    assert_eq!(at["client_id"], APP_ID);
    assert_eq!(at["sub"], sub.as_str());

    let userinfo: CoreUserInfoClaims = client
        .user_info(tokens.access_token().clone(), None)
        .unwrap()
        .request_async(&http)
        .await
        .expect("userinfo");
    assert_eq!(userinfo.subject().as_str(), sub);

    // A returning person is the same account.
    let again = tokens_for(&broker.base, "zhangwei").await;
    assert_eq!(
        claims(again["id_token"].as_str().unwrap())["sub"],
        sub.as_str()
    );

    // Refresh: new tokens, old refresh token rotated.
    let refresh_token = tokens.refresh_token().expect("refresh token").clone();
    let refreshed = client
        .exchange_refresh_token(&refresh_token)
        .unwrap()
        .request_async(&http)
        .await
        .expect("refresh");
    assert_ne!(
        refreshed.refresh_token().unwrap().secret(),
        refresh_token.secret()
    );
    let new_id = refreshed.id_token().expect("id_token on refresh");
    let refreshed_claims = new_id
        .claims(&client.id_token_verifier(), |_: Option<&Nonce>| Ok(()))
        .expect("refreshed ID token verifies");
    assert_eq!(refreshed_claims.subject().as_str(), sub);

    // Introspection says the access token is active, then revocation kills the grant.
    let active = client
        .introspect(refreshed.access_token())
        .request_async(&http)
        .await
        .expect("introspect");
    assert!(active.active());
    // (The library refuses a plain-http revocation URL, so revoke like RFC 7009 says, by hand.)
    let revoked = http
        .post(format!("{}/revoke", broker.base))
        .basic_auth(APP_ID, Some(APP_SECRET))
        .form(&[
            (
                "token",
                refreshed.refresh_token().unwrap().secret().as_str(),
            ),
            ("token_type_hint", "refresh_token"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    let after = client
        .introspect(refreshed.access_token())
        .request_async(&http)
        .await
        .expect("introspect");
    assert!(
        !after.active(),
        "revoking the refresh token revokes its grant's access tokens"
    );
    let refused = client
        .exchange_refresh_token(refreshed.refresh_token().unwrap())
        .unwrap()
        .request_async(&http)
        .await;
    assert!(refused.is_err(), "revoked refresh token must not work");

    // Logout with the ID token as hint: back to the registered URI, session ended.
    let b = browser();
    let (url, _) = authorize_url(&broker.base, &[]);
    let back = sign_in(&b, &broker.base, &url, "alice").await;
    let code = query_param(&back, "code").unwrap();
    let (_, verifier) = authorize_url(&broker.base, &[]);
    let t: serde_json::Value = redeem(&broker.base, &code, &verifier)
        .await
        .json()
        .await
        .unwrap();
    let logout = b
        .get(format!("{}/logout", broker.base))
        .query(&[
            ("id_token_hint", t["id_token"].as_str().unwrap()),
            ("post_logout_redirect_uri", APP_LOGOUT),
            ("state", "bye"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 302);
    assert_eq!(location(&logout), format!("{APP_LOGOUT}?state=bye"));
    let (silent, _) = authorize_url(&broker.base, &[("prompt", "none")]);
    let resp = b.get(&silent).send().await.unwrap();
    assert_eq!(
        query_param(&location(&resp), "error").as_deref(),
        Some("login_required")
    );
    assert_eq!(
        introspect(&broker.base, t["access_token"].as_str().unwrap()).await["active"],
        false
    );
    broker.stop().await;
}
both_backends!(full_flow);

/// ES256 and EdDSA ID tokens (per client) verify in a stock OpenID Connect library.
#[tokio::test]
async fn id_tokens_in_every_supported_algorithm_verify_in_a_relying_party_library() {
    use openidconnect::core::CoreJwsSigningAlgorithm;
    for (alg, expected) in [
        ("RS256", CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256),
        ("ES256", CoreJwsSigningAlgorithm::EcdsaP256Sha256),
        ("EdDSA", CoreJwsSigningAlgorithm::EdDsa),
    ] {
        let db = TestDb::new(Db::Sqlite);
        let broker = start(&db.url(), None, move |s| {
            s.clients[0].id_token_signed_response_alg = Some(alg.into());
        })
        .await;
        let http = http();
        let metadata = CoreProviderMetadata::discover_async(
            IssuerUrl::new(broker.base.clone()).unwrap(),
            &http,
        )
        .await
        .unwrap();
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(APP_ID.into()),
            Some(ClientSecret::new(APP_SECRET.into())),
        )
        .set_redirect_uri(RedirectUrl::new(APP_REDIRECT.into()).unwrap());
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (auth_url, _, nonce) = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_extra_param("connector", "dev")
            .set_pkce_challenge(challenge)
            .url();
        let back = sign_in(&browser(), &broker.base, auth_url.as_str(), "alice").await;
        let code = query_param(&back, "code").unwrap();
        let tokens = client
            .exchange_code(AuthorizationCode::new(code))
            .unwrap()
            .set_pkce_verifier(verifier)
            .request_async(&http)
            .await
            .unwrap();
        let id_token = tokens.id_token().unwrap();
        let verifier = client
            .id_token_verifier()
            .set_allowed_algs(vec![expected.clone()]);
        id_token
            .claims(&verifier, &nonce)
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(id_token.signing_alg().unwrap(), &expected);
        broker.stop().await;
    }
}
