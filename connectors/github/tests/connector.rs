//! The `github` connector against the GitHub fake of `provider-sim` over real
//! HTTP on 127.0.0.1, configured as for a GitHub Enterprise Server
//! (`base_url` and `api_url` pointing at the fake).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use idbridge_connector_github::config::GithubSettings;
use idbridge_connector_github::{GithubConnector, GithubFactory};
use idbridge_connector_kit::conformance::{self, BrowserFlow, Expect, Fixture, Params, Upstream};
use idbridge_connector_kit::testing;
use idbridge_core::{
    Begin, CallbackRequest, Connector, ConnectorError, ConnectorFactory, ErrorKind,
    ExternalIdentity, Locale, RequestContext, Stage, Started,
};
use provider_sim::github::{Decision, Email, GithubSim, OAuthApp, Person};

const ID: &str = "github";
const SECRET: &str = "0123456789abcdef0123456789abcdef01234567";
const OCTOCAT: u64 = 583231;

async fn sim(expiring: bool) -> GithubSim {
    let sim = GithubSim::start(OAuthApp {
        client_id: "Ov23liExample".into(),
        client_secret: SECRET.into(),
        callback_url: testing::callback_url(ID),
        expiring_tokens: expiring,
    })
    .await
    .unwrap();
    sim.add_person(
        Person::new(OCTOCAT, "octocat")
            .name("The Octocat")
            .email(Email::new("old@example.test", true, false))
            .email(Email::new("octocat@example.test", true, true))
            .org("Acme-Corp"),
    );
    sim.decide(Decision::Approve(OCTOCAT));
    sim
}

fn options(sim: &GithubSim) -> serde_json::Value {
    serde_json::json!({
        "client_id": "Ov23liExample",
        "client_secret": SECRET,
        "base_url": sim.base_url(),
        "api_url": sim.api_url(),
    })
}

fn ctx(locale: Locale) -> RequestContext {
    testing::request(testing::BROWSER_UA, locale, 1_700_000_000)
}

fn connector(options: serde_json::Value) -> GithubConnector {
    GithubConnector::new(&testing::settings(ID, "github", options)).unwrap()
}

async fn approve(started: Started) -> Result<Params, String> {
    let Begin::Redirect(url) = &started.begin else {
        return Err("not a redirect".into());
    };
    testing::follow_upstream_redirect(url).await
}

async fn sign_in_as(
    c: &GithubConnector,
    locale: Locale,
) -> Result<ExternalIdentity, ConnectorError> {
    let started = c
        .begin(&ctx(locale), &testing::begin_request(ID, "St4te"))
        .await
        .unwrap();
    let params = approve(started.clone()).await.unwrap();
    let callback = CallbackRequest::new(params, testing::callback_url(ID), started.flow_data);
    c.complete(&ctx(locale), &callback).await
}

async fn sign_in(c: &GithubConnector) -> Result<ExternalIdentity, ConnectorError> {
    sign_in_as(c, Locale::En).await
}

#[tokio::test]
async fn conforms() {
    let sim = sim(true).await;
    conformance::run(
        Fixture::new(&GithubFactory, options(&sim))
            .id(ID)
            .secret("client_secret")
            .settings_debug(|s| format!("{:?}", GithubSettings::parse(s)))
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
                    .replay(Expect::new(Stage::TokenExchange, ErrorKind::InvalidCode)),
            ),
    )
    .await;
}

#[tokio::test]
async fn the_subject_is_the_numeric_id_and_survives_a_login_rename() {
    let sim = sim(false).await;
    let c = connector(options(&sim));
    let first = sign_in(&c).await.unwrap();
    assert_eq!(first.subject, OCTOCAT.to_string());
    assert_eq!(first.profile.preferred_username.as_deref(), Some("octocat"));
    assert_eq!(first.profile.name.as_deref(), Some("The Octocat"));
    sim.rename(OCTOCAT, "octo-renamed");
    let again = sign_in(&c).await.unwrap();
    assert_eq!(
        again.subject, first.subject,
        "a renamed login is the same person"
    );
    assert_eq!(
        again.profile.preferred_username.as_deref(),
        Some("octo-renamed")
    );
    // GitHub's token request: JSON asked for, the secret in the form.
    let form = sim.last_token_request().unwrap();
    assert!(
        form.contains(&("client_secret".to_owned(), SECRET.to_owned())),
        "{form:?}"
    );
    // Tokens that do not expire: no refresh token, refresh is Unsupported.
    let e = c
        .refresh(
            &ctx(Locale::En),
            &again.subject,
            again.upstream_tokens.as_ref().unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!((e.stage, e.kind), (Stage::Refresh, ErrorKind::Unsupported));
}

#[tokio::test]
async fn only_the_primary_verified_email_is_an_email_claim() {
    let sim = sim(false).await;
    let c = connector(options(&sim));
    let me = sign_in(&c).await.unwrap();
    assert_eq!(
        me.profile.email.as_deref(),
        Some("octocat@example.test"),
        "the primary one, not the other verified one"
    );
    assert_eq!(me.profile.email_verified, Some(true));
    // The primary address unverified, another verified: no email at all.
    sim.set_emails(
        OCTOCAT,
        vec![
            Email::new("new@example.test", false, true),
            Email::new("old@example.test", true, false),
        ],
    );
    let me = sign_in(&c).await.unwrap();
    assert_eq!((me.profile.email, me.profile.email_verified), (None, None));
    // Without scope user:email GitHub hides the list: no email, the sign-in works.
    sim.set_emails(
        OCTOCAT,
        vec![Email::new("octocat@example.test", true, true)],
    );
    let c = connector(testing::merged(
        &options(&sim),
        serde_json::json!({"scopes": ["read:user"]}),
    ));
    let me = sign_in(&c).await.unwrap();
    assert_eq!(me.profile.email, None);
}

#[tokio::test]
async fn allowed_orgs_admit_members_and_refuse_others_with_advice() {
    let sim = sim(false).await;
    let member = connector(testing::merged(
        &options(&sim),
        serde_json::json!({"allowed_orgs": ["acme-corp", "other"]}),
    ));
    let me = sign_in(&member).await.unwrap();
    assert_eq!(
        me.raw_claims["allowed_orgs"],
        serde_json::json!(["acme-corp"]),
        "logins compare case-insensitively"
    );
    let outsider = connector(testing::merged(
        &options(&sim),
        serde_json::json!({"allowed_orgs": ["initech"]}),
    ));
    let e = sign_in_as(&outsider, Locale::ZhCn).await.unwrap_err();
    assert_eq!((e.stage, e.kind), (Stage::Userinfo, ErrorKind::NotAllowed));
    assert!(
        e.fix.as_deref().unwrap().contains("allowed_orgs (initech)"),
        "{e:?}"
    );
    assert!(e.advice.as_deref().unwrap().contains("仅允许"), "{e:?}");
    // read:org was asked for on its own.
    let started = outsider
        .begin(&ctx(Locale::En), &testing::begin_request(ID, "S"))
        .await
        .unwrap();
    let Begin::Redirect(url) = &started.begin else {
        panic!()
    };
    assert_eq!(
        testing::query_params(url)["scope"],
        "read:user user:email read:org"
    );
}

#[tokio::test]
async fn githubs_own_errors_are_mapped_with_fixes() {
    let sim = sim(false).await;
    let c = connector(options(&sim));
    // A wrong secret: HTTP 200 with incorrect_client_credentials.
    sim.set_client_secret("rotated-at-github");
    let e = sign_in(&c).await.unwrap_err();
    assert_eq!(
        (e.stage, e.kind, e.upstream_code.as_deref()),
        (
            Stage::TokenExchange,
            ErrorKind::BadCredentials,
            Some("incorrect_client_credentials")
        )
    );
    assert!(e.fix.as_deref().unwrap().contains("client_secret"));
    assert!(!e.to_string().contains(SECRET));
    sim.set_client_secret(SECRET);
    // A used-up API rate limit (403, x-ratelimit-remaining: 0).
    sim.set_rate_limited(true);
    let e = sign_in(&c).await.unwrap_err();
    assert_eq!(
        (e.stage, e.kind),
        (Stage::Userinfo, ErrorKind::RateLimited),
        "{e}"
    );
    assert_eq!(
        e.upstream_message.as_deref(),
        Some("API rate limit exceeded for user ID 1.")
    );
    sim.set_rate_limited(false);
    // The person cancels.
    sim.decide(Decision::Deny);
    let e = sign_in(&c).await.unwrap_err();
    assert_eq!(
        (e.stage, e.kind),
        (Stage::Callback, ErrorKind::UserCancelled)
    );
}

#[tokio::test]
async fn expiring_tokens_refresh_and_a_revoked_app_ends_the_grant() {
    let sim = sim(true).await;
    let c = connector(options(&sim));
    let me = sign_in(&c).await.unwrap();
    let tokens = me.upstream_tokens.clone().unwrap();
    assert!(
        tokens.refresh_token.is_some() && tokens.access_expires_at == Some(1_700_000_000 + 28800)
    );
    sim.rename(OCTOCAT, "still-me");
    let again = c
        .refresh(&ctx(Locale::En), &me.subject, &tokens)
        .await
        .unwrap();
    assert_eq!(again.subject, me.subject);
    assert_eq!(
        again.profile.preferred_username.as_deref(),
        Some("still-me")
    );
    sim.revoke(OCTOCAT);
    let e = c
        .refresh(
            &ctx(Locale::En),
            &me.subject,
            again.upstream_tokens.as_ref().unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        (e.stage, e.kind, e.upstream_code.as_deref()),
        (
            Stage::Refresh,
            ErrorKind::InvalidCode,
            Some("bad_refresh_token")
        )
    );
}

#[test]
fn github_and_enterprise_server_urls() {
    let parse = |o| GithubSettings::parse(&testing::settings(ID, "github", o)).unwrap();
    let s = parse(serde_json::json!({"client_id": "c", "client_secret": SECRET}));
    assert_eq!(
        s.client.authorization_url,
        "https://github.com/login/oauth/authorize"
    );
    assert_eq!(
        s.client.token_url,
        "https://github.com/login/oauth/access_token"
    );
    assert_eq!(s.api_url, "https://api.github.com");
    let s = parse(
        serde_json::json!({"client_id": "c", "client_secret": SECRET, "base_url": "https://git.example.com/"}),
    );
    assert_eq!(s.api_url, "https://git.example.com/api/v3");
    let err = testing::build(&GithubFactory, ID, serde_json::json!({"client_id": "c", "allowed_orgs": ["a b"], "base_url": "git.example.com"})).err().unwrap();
    for key in ["client_secret", "allowed_orgs", "base_url"] {
        assert!(
            err.contains(&format!("connectors[github].{key}")),
            "{key}: {err}"
        );
    }
}

#[test]
fn doctor_refuses_plain_http_to_a_remote_host() {
    let settings = testing::settings(
        ID,
        "github",
        serde_json::json!({"client_id": "c", "client_secret": SECRET, "base_url": "http://git.example.com"}),
    );
    let problems = GithubFactory.doctor(&settings, &testing::build_context(ID));
    assert!(
        problems
            .iter()
            .any(|p| p.key == "connectors[github].base_url" && p.fatal),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.key == "connectors[github].api_url" && p.fatal),
        "{problems:?}"
    );
}
