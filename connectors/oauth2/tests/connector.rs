//! The `oauth2` connector configured generically (explicit endpoints and a
//! claim mapping) against a JSON provider over real HTTP: the GitHub fake of
//! `provider-sim` on 127.0.0.1, which knows nothing of this connector.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use idbridge_connector_kit::conformance::{self, BrowserFlow, Expect, Fixture, Params, Upstream};
use idbridge_connector_kit::testing;
use idbridge_connector_oauth2::config::OAuth2Settings;
use idbridge_connector_oauth2::{OAuth2Connector, OAuth2Factory};
use idbridge_core::{
    Begin, Connector, ConnectorFactory, ErrorKind, Locale, RequestContext, Stage, Started,
};
use provider_sim::github::{Decision, Email, GithubSim, OAuthApp, Person};

const ID: &str = "acme";
const SECRET: &str = "s3cret-0123456789abcdef";

async fn sim(expiring: bool) -> GithubSim {
    let sim = GithubSim::start(OAuthApp {
        client_id: "Iv1.client".into(),
        client_secret: SECRET.into(),
        callback_url: testing::callback_url(ID),
        expiring_tokens: expiring,
    })
    .await
    .unwrap();
    sim.add_person(
        Person::new(583231, "octocat")
            .name("The Octocat")
            .email(Email::new("octocat@example.test", true, true)),
    );
    sim.decide(Decision::Approve(583231));
    sim
}

fn options(sim: &GithubSim) -> serde_json::Value {
    serde_json::json!({
        "authorization_url": format!("{}/login/oauth/authorize", sim.base_url()),
        "token_url": format!("{}/login/oauth/access_token", sim.base_url()),
        "userinfo_url": format!("{}/user", sim.api_url()),
        "client_id": "Iv1.client",
        "client_secret": SECRET,
        "scopes": ["read:user"],
        "claims": {
            "subject": "id", "name": "name", "preferred_username": "login",
            "picture": "avatar_url", "email": "email"
        }
    })
}

fn ctx() -> RequestContext {
    testing::request(testing::BROWSER_UA, Locale::En, 1_700_000_000)
}

fn connector(options: serde_json::Value) -> OAuth2Connector {
    OAuth2Connector::new(&testing::settings(ID, "oauth2", options)).unwrap()
}

/// The browser at the provider: where its authorize page sends it back.
async fn approve(started: Started) -> Result<Params, String> {
    let Begin::Redirect(url) = &started.begin else {
        return Err("not a redirect".into());
    };
    testing::follow_upstream_redirect(url).await
}

async fn sign_in(
    c: &OAuth2Connector,
) -> Result<idbridge_core::ExternalIdentity, idbridge_core::ConnectorError> {
    let started = c
        .begin(&ctx(), &testing::begin_request(ID, "St4te"))
        .await
        .unwrap();
    let params = approve(started.clone()).await.unwrap();
    let callback =
        idbridge_core::CallbackRequest::new(params, testing::callback_url(ID), started.flow_data);
    c.complete(&ctx(), &callback).await
}

#[tokio::test]
async fn conforms() {
    let sim = sim(true).await;
    conformance::run(
        Fixture::new(&OAuth2Factory, options(&sim))
            .id(ID)
            .secret("client_secret")
            .settings_debug(|s| format!("{:?}", OAuth2Settings::parse(s)))
            .refresh_supported(true)
            .browser(
                BrowserFlow::new(Upstream::new_async(approve))
                    .no_code(
                        Upstream::fixed(Params::new()),
                        Expect::new(Stage::Callback, ErrorKind::InvalidRequest),
                    )
                    .upstream_error(
                        Upstream::fixed(testing::params(&[("error", "access_denied")])),
                        Expect::new(Stage::Callback, ErrorKind::UserCancelled),
                    )
                    // GitHub's own `bad_verification_code` is not an RFC 6749 code:
                    // the generic connector calls it an unknown answer (the
                    // `github` preset maps it to InvalidCode).
                    .replay(Expect::new(Stage::TokenExchange, ErrorKind::BadResponse)),
            ),
    )
    .await;
}

#[tokio::test]
async fn the_claim_mapping_reads_the_userinfo_answer() {
    let sim = sim(false).await;
    let c = connector(options(&sim));
    let me = sign_in(&c).await.unwrap();
    assert_eq!(
        me.subject, "583231",
        "a numeric id becomes its decimal string"
    );
    assert_eq!(me.profile.name.as_deref(), Some("The Octocat"));
    assert_eq!(me.profile.preferred_username.as_deref(), Some("octocat"));
    assert_eq!(
        me.profile.picture.as_deref(),
        Some("https://avatars.githubusercontent.com/u/583231?v=4")
    );
    // `/user`'s public email is null: no email, and no verification claimed.
    assert_eq!(
        (me.profile.email.as_deref(), me.profile.email_verified),
        (None, None)
    );
    assert!(me.upstream_tokens.as_ref().unwrap().access_token.is_some());
    // client_secret_basic by default: the secret is not in the form.
    let form = sim.last_token_request().unwrap();
    assert!(form.iter().all(|(k, _)| k != "client_secret"), "{form:?}");
    assert!(
        form.iter()
            .any(|(k, v)| k == "code_verifier" && v.len() >= 43),
        "PKCE on by default: {form:?}"
    );
    // Without a refresh token at sign-in: refresh says Unsupported.
    let e = c
        .refresh(&ctx(), &me.subject, me.upstream_tokens.as_ref().unwrap())
        .await
        .unwrap_err();
    assert_eq!((e.stage, e.kind), (Stage::Refresh, ErrorKind::Unsupported));
}

#[tokio::test]
async fn client_secret_post_and_no_pkce_are_what_the_provider_receives() {
    let sim = sim(false).await;
    let c = connector(testing::merged(
        &options(&sim),
        serde_json::json!({"client_auth": "client_secret_post", "pkce": false}),
    ));
    let started = c
        .begin(&ctx(), &testing::begin_request(ID, "St4te"))
        .await
        .unwrap();
    let Begin::Redirect(url) = &started.begin else {
        panic!()
    };
    let q = testing::query_params(url);
    assert_eq!(
        q.get("state").map(String::as_str),
        Some("St4te"),
        "the broker's state as it is"
    );
    assert!(!q.contains_key("code_challenge"), "{q:?}");
    let callback = idbridge_core::CallbackRequest::new(
        approve(started.clone()).await.unwrap(),
        testing::callback_url(ID),
        started.flow_data,
    );
    c.complete(&ctx(), &callback).await.unwrap();
    let form = sim.last_token_request().unwrap();
    assert!(
        form.contains(&("client_secret".to_owned(), SECRET.to_owned())),
        "{form:?}"
    );
    assert!(form.iter().all(|(k, _)| k != "code_verifier"), "{form:?}");
}

#[tokio::test]
async fn nested_paths_and_verified_flags_map_and_a_missing_subject_is_named() {
    let sim = sim(false).await;
    // `login` as the email and `site_admin` as its flag: any JSON member works.
    let c = connector(testing::merged(
        &options(&sim),
        serde_json::json!({"claims": {"subject": "id", "email": "login", "email_verified": "site_admin"}}),
    ));
    let me = sign_in(&c).await.unwrap();
    assert_eq!(
        (me.profile.email.as_deref(), me.profile.email_verified),
        (Some("octocat"), Some(false))
    );
    let c = connector(testing::merged(
        &options(&sim),
        serde_json::json!({"claims": {"subject": "owner.id"}}),
    ));
    let e = sign_in(&c).await.unwrap_err();
    assert_eq!((e.stage, e.kind), (Stage::Userinfo, ErrorKind::BadResponse));
    assert!(e.fix.unwrap().contains("claims.subject = \"owner.id\""));
}

#[tokio::test]
async fn upstream_failures_have_their_stage_and_kind() {
    let sim = sim(false).await;
    let c = connector(options(&sim));
    // The person cancels at the provider.
    sim.decide(Decision::Deny);
    let e = sign_in(&c).await.unwrap_err();
    assert_eq!(
        (e.stage, e.kind, e.upstream_code.as_deref()),
        (
            Stage::Callback,
            ErrorKind::UserCancelled,
            Some("access_denied")
        )
    );
    sim.decide(Decision::Approve(583231));
    // The API's rate limit is used up (403 with x-ratelimit-remaining: 0).
    sim.set_rate_limited(true);
    let e = sign_in(&c).await.unwrap_err();
    assert_eq!(
        (e.stage, e.kind),
        (Stage::Userinfo, ErrorKind::RateLimited),
        "{e}"
    );
    sim.set_rate_limited(false);
    // A token URL that is not a token endpoint (the API's 404 JSON).
    let c2 = connector(testing::merged(
        &options(&sim),
        serde_json::json!({"token_url": format!("{}/nope", sim.api_url())}),
    ));
    let e = sign_in(&c2).await.unwrap_err();
    assert_eq!(
        (e.stage, e.kind),
        (Stage::TokenExchange, ErrorKind::BadResponse),
        "{e}"
    );
    // The provider is gone.
    let url = sim.base_url();
    sim.stop().await;
    let gone = connector(serde_json::json!({
        "authorization_url": format!("{url}/login/oauth/authorize"),
        "token_url": format!("{url}/login/oauth/access_token"),
        "userinfo_url": format!("{url}/api/v3/user"),
        "client_id": "Iv1.client", "client_secret": SECRET, "claims": {"subject": "id"},
    }));
    let callback = testing::callback(ID, &[("code", "abc"), ("state", "s")]);
    let callback = idbridge_core::CallbackRequest::new(
        callback.params,
        callback.callback_url,
        serde_json::json!({"pkce_verifier": "v".repeat(43)}),
    );
    let e = gone.complete(&ctx(), &callback).await.unwrap_err();
    assert_eq!(
        (e.stage, e.kind),
        (Stage::TokenExchange, ErrorKind::UpstreamUnavailable),
        "{e}"
    );
    assert!(e.fix.unwrap().contains("could not connect"));
}

#[test]
fn every_config_mistake_is_named() {
    let err = testing::build(
        &OAuth2Factory,
        ID,
        serde_json::json!({
            "authorization_url": "ftp://x", "token_url": "https://p.example/token",
            "userinfo_url": "https://p.example/me", "client_id": " ",
            "client_auth": "private_key_jwt", "claims": {"subject": "a..b"},
        }),
    )
    .err()
    .unwrap();
    assert!(err.contains("connectors[acme].claims.subject"), "{err}");
    let err = testing::build(
        &OAuth2Factory,
        ID,
        serde_json::json!({
            "authorization_url": "ftp://x", "token_url": "https://p.example/token",
            "userinfo_url": "https://p.example/me", "client_id": " ",
            "client_auth": "private_key_jwt", "claims": {"subject": "id"},
        }),
    )
    .err()
    .unwrap();
    for key in [
        "authorization_url",
        "client_id",
        "client_auth",
        "client_secret",
    ] {
        assert!(
            err.contains(&format!("connectors[acme].{key}")),
            "{key}: {err}"
        );
    }
}

#[test]
fn doctor_wants_https_except_on_loopback() {
    let settings = testing::settings(
        ID,
        "oauth2",
        serde_json::json!({
            "authorization_url": "http://127.0.0.1:9/authorize",
            "token_url": "http://provider.example/token",
            "userinfo_url": "https://provider.example/me",
            "client_id": "c", "client_secret": SECRET, "claims": {"subject": "id"},
        }),
    );
    let problems = OAuth2Factory.doctor(&settings, &testing::build_context(ID));
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert!(
        problems
            .iter()
            .any(|p| p.key == "connectors[acme].token_url"
                && p.fatal
                && p.message.contains("https")),
        "{problems:?}"
    );
    assert!(
        !keys.contains(&"connectors[acme].userinfo_url"),
        "{problems:?}"
    );
    // Nothing listens on 127.0.0.1:9: the authorization URL does not answer.
    assert!(
        problems
            .iter()
            .any(|p| p.key == "connectors[acme].authorization_url"
                && p.message.contains("does not answer")),
        "{problems:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_is_quiet_about_a_provider_that_answers() {
    let sim = sim(false).await;
    let settings = testing::settings(ID, "oauth2", options(&sim));
    let problems = OAuth2Factory.doctor(&settings, &testing::build_context(ID));
    let serious: Vec<_> = problems
        .iter()
        .filter(|p| !p.key.ends_with("client_id"))
        .collect();
    assert!(serious.is_empty(), "{problems:?}");
}
