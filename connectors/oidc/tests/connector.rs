//! The `oidc` connector against a real, independent OpenID provider (node's
//! oidc-provider on 127.0.0.1, see tests/provider/server.mjs), driven over HTTP
//! by a cookie-keeping client that plays the browser. Skipped with a NOTE when
//! node is absent.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use idbridge_connector_kit::conformance::{self, BrowserFlow, Expect, Fixture, Upstream};
use idbridge_connector_kit::testing;
use idbridge_connector_oidc::test_provider::{
    self, Options, TestProvider, CLIENT_ID, CLIENT_ID_JWT, CLIENT_ID_POST, REFUSE_HINT,
};
use idbridge_connector_oidc::{OidcConnector, OidcFactory};
use idbridge_core::{
    Begin, BeginRequest, CallbackRequest, Connector, ErrorKind, Locale, Prompt, RequestContext,
    Stage, Started,
};
use std::collections::BTreeMap;

const ID: &str = "oidc";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn ctx() -> RequestContext {
    testing::request(testing::BROWSER_UA, Locale::En, now())
}

fn provider() -> Option<TestProvider> {
    TestProvider::start(&Options {
        redirect_uris: vec![testing::callback_url(ID)],
        ..Options::default()
    })
    .unwrap()
}

async fn connector(options: serde_json::Value) -> OidcConnector {
    let c = OidcConnector::new(&testing::settings(ID, "oidc", options)).unwrap();
    c.prepare(now()).await.unwrap();
    c
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn unescape(s: &str) -> String {
    s.replace("&#x2F;", "/")
        .replace("&#47;", "/")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The hidden inputs of a form_post page.
fn form_inputs(html: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for input in html.split("<input").skip(1) {
        let attr = |name: &str| {
            let start = input.find(&format!("{name}=\""))? + name.len() + 2;
            let end = input.get(start..)?.find('"')? + start;
            input.get(start..end).map(unescape)
        };
        if let (Some(n), Some(v)) = (attr("name"), attr("value")) {
            out.insert(n, v);
        }
    }
    out
}

/// Play the browser from `url` until the provider sends it to the callback:
/// the callback's parameters (query, or the form_post form's fields).
async fn drive(browser: &reqwest::Client, url: &str) -> Result<BTreeMap<String, String>, String> {
    let callback = testing::callback_url(ID);
    let mut url = url::Url::parse(url).map_err(|e| e.to_string())?;
    for _ in 0..12 {
        let r = browser
            .get(url.clone())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = r.status();
        if status.is_redirection() {
            let location = r
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .ok_or("a redirect without Location")?;
            let next = url.join(location).map_err(|e| e.to_string())?;
            if next.as_str().starts_with(&callback) {
                return Ok(next.query_pairs().into_owned().collect());
            }
            url = next;
            continue;
        }
        let body = r.text().await.unwrap_or_default();
        if status.is_success() && body.contains(&format!("action=\"{callback}\"")) {
            return Ok(form_inputs(&body));
        }
        return Err(format!(
            "the provider stopped at {url} with {status}: {body}"
        ));
    }
    Err("too many redirects".into())
}

fn redirect_of(started: &Started) -> &str {
    match &started.begin {
        Begin::Redirect(u) => u,
        other => panic!("not a redirect: {other:?}"),
    }
}

/// begin → provider → the callback request `complete` gets.
async fn sign_in(c: &OidcConnector, request: BeginRequest) -> (CallbackRequest, Started) {
    let started = c.begin(&ctx(), &request).await.unwrap();
    let params = drive(&browser(), redirect_of(&started)).await.unwrap();
    (
        CallbackRequest::new(params, testing::callback_url(ID), started.flow_data.clone()),
        started,
    )
}

fn begin_request(state: &str) -> BeginRequest {
    testing::begin_request(ID, state)
}

#[tokio::test]
async fn a_full_sign_in_maps_the_upstream_claims() {
    let Some(p) = provider() else { return };
    let c = connector(testing::merged(
        &p.config(CLIENT_ID),
        serde_json::json!({"scopes": ["openid", "profile", "email", "phone", "groups"]}),
    ))
    .await;
    let request = begin_request("State0123456789")
        .with_prompt([Prompt::Login])
        .with_max_age(Some(300))
        .with_login_hint(Some("alice".into()))
        .with_ui_locales(Some("zh-CN en".into()));
    let (callback, started) = sign_in(&c, request).await;
    let sent = testing::query_params(redirect_of(&started));
    assert_eq!(sent["state"], "State0123456789");
    assert_eq!(sent["response_type"], "code");
    assert_eq!(sent["client_id"], CLIENT_ID);
    assert_eq!(sent["redirect_uri"], testing::callback_url(ID));
    assert_eq!(sent["code_challenge_method"], "S256");
    assert_eq!(sent["prompt"], "login");
    assert_eq!(sent["max_age"], "300");
    assert_eq!(sent["login_hint"], "alice");
    assert_eq!(sent["ui_locales"], "zh-CN en");
    assert!(sent["nonce"].len() >= 43);
    assert!(!started.flow_data.to_string().contains("secret"));
    assert_eq!(callback.params["state"], "State0123456789");
    assert_eq!(callback.params["iss"], p.issuer, "RFC 9207 iss");

    let identity = c.complete(&ctx(), &callback).await.unwrap();
    assert_eq!(identity.subject, "alice");
    assert_eq!(identity.link_key, None);
    let profile = &identity.profile;
    assert_eq!(profile.name.as_deref(), Some("Alice Liddell"));
    assert_eq!(profile.given_name.as_deref(), Some("Alice"));
    assert_eq!(profile.family_name.as_deref(), Some("Liddell"));
    assert_eq!(profile.preferred_username.as_deref(), Some("alice"));
    assert_eq!(
        profile.picture.as_deref(),
        Some("https://pictures.example.test/alice.png")
    );
    assert_eq!(profile.email.as_deref(), Some("alice@example.test"));
    assert_eq!(profile.email_verified, Some(true));
    assert_eq!(profile.phone_number.as_deref(), Some("+8613800138000"));
    assert_eq!(profile.phone_number_verified, Some(false));
    assert_eq!(
        identity.raw_claims["groups"],
        serde_json::json!(["staff", "admins"])
    );
    assert!(identity.raw_claims.get("nonce").is_none());
    let tokens = identity.upstream_tokens.clone().unwrap();
    assert!(tokens.access_token.is_some() && tokens.refresh_token.is_some());
    assert!(tokens.access_expires_at.unwrap() > now());
    identity.screened(Stage::Callback).unwrap();
}

#[tokio::test]
async fn userinfo_claims_with_client_secret_post_and_a_mapped_claim() {
    let Some(p) = provider() else { return };
    let c = connector(testing::merged(
        &p.config(CLIENT_ID_POST),
        serde_json::json!({
            "claims_source": "userinfo",
            "scopes": ["openid", "profile", "email", "groups"],
            "claims": {"name": "preferred_username"},
            "link_scope": "corp-sso",
        }),
    ))
    .await;
    let (callback, _) = sign_in(
        &c,
        begin_request("StateBob").with_login_hint(Some("bob".into())),
    )
    .await;
    let identity = c.complete(&ctx(), &callback).await.unwrap();
    assert_eq!(identity.subject, "bob");
    assert_eq!(identity.profile.name.as_deref(), Some("bob"));
    assert_eq!(identity.profile.email_verified, Some(false));
    assert_eq!(
        identity.raw_claims["groups"],
        serde_json::json!(["builders"])
    );
    let link = identity.link_key.unwrap();
    assert_eq!(
        (link.scope.as_str(), link.key.as_str()),
        ("corp-sso", "bob")
    );
}

#[tokio::test]
async fn private_key_jwt_and_form_post() {
    let Some(p) = provider() else { return };
    let c = connector(testing::merged(
        &p.config(CLIENT_ID_JWT),
        serde_json::json!({"response_mode": "form_post"}),
    ))
    .await;
    let (callback, started) = sign_in(&c, begin_request("StateJwt")).await;
    assert_eq!(
        testing::query_params(redirect_of(&started))["response_mode"],
        "form_post"
    );
    assert!(
        callback.params.contains_key("code"),
        "{:?}",
        callback.params
    );
    let identity = c.complete(&ctx(), &callback).await.unwrap();
    assert_eq!(identity.subject, "alice");
}

#[tokio::test]
async fn a_refusal_a_replayed_code_and_a_wrong_secret() {
    let Some(p) = provider() else { return };
    let c = connector(p.config(CLIENT_ID)).await;

    let (refused, _) = sign_in(
        &c,
        begin_request("StateNo").with_login_hint(Some(REFUSE_HINT.into())),
    )
    .await;
    let e = c.complete(&ctx(), &refused).await.unwrap_err();
    assert_eq!(
        (e.stage, e.kind),
        (Stage::Callback, ErrorKind::UserCancelled)
    );
    assert_eq!(e.upstream_code.as_deref(), Some("access_denied"));

    let (callback, _) = sign_in(&c, begin_request("StateReplay")).await;
    c.complete(&ctx(), &callback).await.unwrap();
    let e = c.complete(&ctx(), &callback).await.unwrap_err();
    assert_eq!(
        (e.stage, e.kind),
        (Stage::TokenExchange, ErrorKind::InvalidCode),
        "{e}"
    );
    assert_eq!(e.upstream_code.as_deref(), Some("invalid_grant"));

    let wrong = connector(testing::merged(
        &p.config(CLIENT_ID),
        serde_json::json!({"client_secret": "not-the-secret-at-all"}),
    ))
    .await;
    let (callback, _) = sign_in(&wrong, begin_request("StateSecret")).await;
    let e = wrong.complete(&ctx(), &callback).await.unwrap_err();
    assert_eq!(
        (e.stage, e.kind),
        (Stage::TokenExchange, ErrorKind::BadCredentials),
        "{e}"
    );
    assert_eq!(e.upstream_code.as_deref(), Some("invalid_client"));
    let fix = e.fix.clone().unwrap();
    assert!(
        fix.contains("client_secret") && fix.contains("\"idbridge\""),
        "{fix}"
    );
    assert!(!format!("{e:?}").contains("not-the-secret-at-all"));
}

#[tokio::test]
async fn the_nonce_and_the_iss_parameter_are_checked() {
    let Some(p) = provider() else { return };
    let c = connector(p.config(CLIENT_ID)).await;
    let (mut callback, _) = sign_in(&c, begin_request("StateNonce")).await;
    let mut flow = callback.flow_data.clone();
    flow["nonce"] = serde_json::json!("another-sign-in-s-nonce-aaaaaaaaaaaaaaaaaaaa");
    callback.flow_data = flow;
    let e = c.complete(&ctx(), &callback).await.unwrap_err();
    assert_eq!(
        (e.stage, e.kind),
        (Stage::TokenExchange, ErrorKind::TokenVerificationFailed),
        "{e}"
    );
    assert!(e.fix.unwrap().contains("nonce"));

    let (mut callback, _) = sign_in(&c, begin_request("StateIss")).await;
    callback
        .params
        .insert("iss".into(), "https://attacker.example".into());
    let e = c.complete(&ctx(), &callback).await.unwrap_err();
    assert_eq!(
        (e.stage, e.kind),
        (Stage::Callback, ErrorKind::InvalidRequest)
    );
    assert!(e.fix.unwrap().contains("RFC 9207"));
    callback.params.remove("iss");
    let e = c.complete(&ctx(), &callback).await.unwrap_err();
    assert_eq!(
        (e.stage, e.kind),
        (Stage::Callback, ErrorKind::InvalidRequest)
    );

    // A token from "the future" of another clock: the time passed in decides.
    let (callback, _) = sign_in(&c, begin_request("StateClock")).await;
    let late = testing::request(testing::BROWSER_UA, Locale::En, now() + 7200);
    let e = c.complete(&late, &callback).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::TokenVerificationFailed, "{e}");
    assert!(e.fix.unwrap().contains("expired"));
}

#[tokio::test]
async fn refresh_keeps_the_subject_and_a_disabled_person_ends_the_grant() {
    let Some(p) = provider() else { return };
    let c = connector(p.config(CLIENT_ID)).await;
    assert!(c.supports_refresh());
    let (callback, _) = sign_in(
        &c,
        begin_request("StateRefresh").with_login_hint(Some("bob".into())),
    )
    .await;
    let first = c.complete(&ctx(), &callback).await.unwrap();
    let tokens = first.upstream_tokens.clone().unwrap();
    let again = c.refresh(&ctx(), "bob", &tokens).await.unwrap();
    assert_eq!(again.subject, "bob");
    let fresh = again.upstream_tokens.unwrap();
    assert!(fresh.refresh_token.is_some());
    assert_ne!(fresh.access_token, tokens.access_token);

    let e = c.refresh(&ctx(), "alice", &fresh).await.unwrap_err();
    assert_eq!(
        e.kind,
        ErrorKind::TokenVerificationFailed,
        "another subject: {e}"
    );

    reqwest::Client::new()
        .post(format!("{}/test/disable/bob", p.issuer))
        .send()
        .await
        .unwrap();
    let (_, rt) = (0, fresh.clone());
    let e = c.refresh(&ctx(), "bob", &rt).await.unwrap_err();
    assert_eq!(
        (e.stage, e.kind),
        (Stage::Refresh, ErrorKind::InvalidCode),
        "{e}"
    );

    let none = idbridge_core::UpstreamTokens::default();
    let e = c.refresh(&ctx(), "bob", &none).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Misconfigured);
}

#[tokio::test]
async fn a_new_kid_refetches_the_keys() {
    let Some(first) = provider() else { return };
    let port = first.port;
    let config = first.config(CLIENT_ID);
    let c = connector(config).await;
    drop(first);
    // The provider comes back on the same address with a new signing key.
    let mut second = None;
    for _ in 0..50 {
        match TestProvider::start(&Options {
            redirect_uris: vec![testing::callback_url(ID)],
            port,
            ..Options::default()
        }) {
            Ok(p) => {
                second = p;
                break;
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(100)),
        }
    }
    let _second = second.expect("the provider restarts on its port");
    let (callback, _) = sign_in(&c, begin_request("StateRotated")).await;
    let identity = c.complete(&ctx(), &callback).await.unwrap();
    assert_eq!(identity.subject, "alice");
}

#[tokio::test]
async fn discovery_problems_stop_prepare_and_doctor_names_them() {
    let Some(p) = provider() else { return };
    let mismatch = OidcConnector::new(&testing::settings(
        ID,
        "oidc",
        testing::merged(
            &p.config(CLIENT_ID),
            serde_json::json!({"issuer": format!("{}/", p.issuer)}),
        ),
    ))
    .unwrap();
    let e = mismatch.prepare(now()).await.unwrap_err();
    assert_eq!((e.stage, e.kind), (Stage::Setup, ErrorKind::Misconfigured));
    assert!(e.fix.unwrap().contains("issuer mismatch"));

    let unreachable = OidcConnector::new(&testing::settings(
        ID,
        "oidc",
        testing::merged(
            &p.config(CLIENT_ID),
            serde_json::json!({"issuer": "http://127.0.0.1:9"}),
        ),
    ))
    .unwrap();
    let e = unreachable.prepare(now()).await.unwrap_err();
    assert_eq!(
        (e.stage, e.kind),
        (Stage::Setup, ErrorKind::UpstreamUnavailable)
    );
    assert!(e.fix.unwrap().contains("unreachable"));

    let narrow = OidcConnector::new(&testing::settings(
        ID,
        "oidc",
        testing::merged(
            &p.config(CLIENT_ID),
            serde_json::json!({"allowed_algorithms": ["ES256"]}),
        ),
    ))
    .unwrap();
    let e = narrow.prepare(now()).await.unwrap_err();
    assert!(e.fix.unwrap().contains("no usable ID token algorithm"));

    // Doctor: a good setup is quiet; a callback the provider does not know is named.
    use idbridge_core::ConnectorFactory;
    let settings = testing::settings(ID, "oidc", p.config(CLIENT_ID));
    let good = OidcFactory.doctor(&settings, &testing::build_context(ID));
    assert!(good.iter().all(|p| !p.fatal), "{good:?}");
    let elsewhere = testing::build_context_at("https://broker.example", ID, false);
    let problems = OidcFactory.doctor(&settings, &elsewhere);
    assert!(
        problems
            .iter()
            .any(|p| p.fatal && p.message.contains("register it as a redirect URI")),
        "{problems:?}"
    );
    let settings = testing::settings(
        ID,
        "oidc",
        testing::merged(
            &p.config(CLIENT_ID),
            serde_json::json!({"issuer": format!("{}/", p.issuer)}),
        ),
    );
    let problems = OidcFactory.doctor(&settings, &testing::build_context(ID));
    assert!(
        problems
            .iter()
            .any(|p| p.message.contains("issuer mismatch")),
        "{problems:?}"
    );
}

#[tokio::test]
async fn config_mistakes_name_their_keys() {
    let base = serde_json::json!({"issuer": "https://sso.example.com", "client_id": "idbridge", "client_secret": "s3cr3t-s3cr3t"});
    assert!(testing::build(&OidcFactory, ID, base.clone()).is_ok());
    let cases = [
        (
            serde_json::json!({"client_secret": null}),
            "connectors[oidc].client_secret",
        ),
        (
            serde_json::json!({"scopes": ["profile"]}),
            "connectors[oidc].scopes",
        ),
        (
            serde_json::json!({"allowed_algorithms": ["HS256"]}),
            "connectors[oidc].allowed_algorithms",
        ),
        (
            serde_json::json!({"allowed_algorithms": ["none"]}),
            "connectors[oidc].allowed_algorithms",
        ),
        (
            serde_json::json!({"token_endpoint_auth": "client_secret_jwt"}),
            "connectors[oidc].token_endpoint_auth",
        ),
        (
            serde_json::json!({"claims_source": "both"}),
            "connectors[oidc].claims_source",
        ),
        (
            serde_json::json!({"claims": {"subjet": "oid"}}),
            "connectors[oidc].claims.subjet",
        ),
        (
            serde_json::json!({"issuer": "sso.example.com"}),
            "connectors[oidc].issuer",
        ),
        (
            serde_json::json!({"response_mode": "fragment"}),
            "connectors[oidc].response_mode",
        ),
        (
            serde_json::json!({"token_endpoint_auth": "private_key_jwt", "client_secret": null}),
            "connectors[oidc].private_key",
        ),
        (
            serde_json::json!({"token_endpoint_auth": "private_key_jwt", "client_secret": null, "private_key": "not a pem key"}),
            "connectors[oidc].private_key",
        ),
    ];
    for (extra, key) in cases {
        let e = testing::build(&OidcFactory, ID, testing::merged(&base, extra.clone()))
            .err()
            .unwrap_or_else(|| panic!("{extra} builds"));
        assert!(e.contains(key), "{extra}: {e}");
    }
}

#[tokio::test]
async fn the_connector_conforms_against_a_real_provider() {
    let Some(p) = provider() else { return };
    let approve = Upstream::new_async(|started: Started| async move {
        drive(&browser(), redirect_of(&started)).await
    });
    let refuse = Upstream::new_async(|started: Started| async move {
        let url = format!("{}&login_hint={REFUSE_HINT}", redirect_of(&started));
        drive(&browser(), &url).await
    });
    let issuer = p.issuer.clone();
    let no_code =
        Upstream::new(move |_started: Started| Ok(testing::params(&[("iss", issuer.as_str())])));
    let flow = BrowserFlow::new(approve)
        .no_code(
            no_code,
            Expect::new(Stage::Callback, ErrorKind::InvalidRequest),
        )
        .upstream_error(
            refuse,
            Expect::new(Stage::Callback, ErrorKind::UserCancelled),
        )
        .replay(Expect::new(Stage::TokenExchange, ErrorKind::InvalidCode));
    conformance::run(
        Fixture::new(&OidcFactory, p.config(CLIENT_ID))
            .secret("client_secret")
            .settings_debug(|s| {
                format!(
                    "{:?}",
                    idbridge_connector_oidc::config::OidcSettings::parse(s)
                )
            })
            .browser(flow)
            .refresh_supported(true),
    )
    .await;
    let _ = test_provider::CLIENT_SECRET;
}
