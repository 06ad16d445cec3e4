//! Brokers whose upstreams are the `apple` and `microsoft` presets, on
//! provider-sim's fakes of Sign in with Apple and Entra ID (127.0.0.1): an app
//! signs a person in through /authorize, the browser goes through the fake and
//! back (for Apple, the cross-site form_post the broker posts again from its
//! own origin), and the app's ID token carries the upstream's person; a
//! returning person keeps one `sub`; a failure leaves no account, shows a page
//! and logs the stage and the fix; an Entra account whose (unverified) email
//! is another account's gets an account of its own.

use crate::both_backends;
use crate::form_post::form_post_page;
use crate::harness::*;
use provider_sim::apple::{self, AppleKey};
use provider_sim::microsoft::{self, CONSUMERS_TENANT};
use provider_sim::oidc::{follow, Sim};

const SERVICES_ID: &str = "com.example.broker";
const ADA: &str = "001234.0f1e2d3c4b5a69788796a5b4c3d2e1f0.1234";
const RELAY: &str = "k3j5h7g9f1@privaterelay.appleid.com";
const MS_CLIENT: &str = "2f1d6a0c-7e0b-4d39-9d7e-1c2b3a4d5e6f";
const MS_SECRET: &str = "entra-secret-value-for-the-e2e-test";
const TENANT_A: &str = "aaaaaaaa-1111-4000-8000-00000000000a";
const TENANT_B: &str = "bbbbbbbb-2222-4000-8000-00000000000b";

pub(crate) async fn users(broker: &Broker) -> usize {
    broker.state.store.find_users("", 1000).await.unwrap().len()
}

/// The app's authorization URL for connector `id` (with the email scope).
pub(crate) fn app_url(base: &str, id: &str) -> (String, String) {
    let (url, verifier) = authorize_url(base, &[]);
    let url = url
        .replace("connector=dev", &format!("connector={id}"))
        .replace(
            "scope=openid+profile+offline_access",
            "scope=openid+profile+email+offline_access",
        );
    (url, verifier)
}

/// Wait until the connector's background prepare has loaded discovery: the
/// broker then redirects to the fake.
pub(crate) async fn wait_ready(url: &str, upstream: &str) {
    for _ in 0..100 {
        let resp = http().get(url).send().await.unwrap();
        if resp.status() == 302 && location(&resp).starts_with(upstream) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the connector did not get ready");
}

/// The browser starts at the app's URL and signs in at the fake as `user`:
/// the broker's answer to the callback.
pub(crate) async fn through_apple(b: &reqwest::Client, url: &str, user: &str) -> reqwest::Response {
    let resp = b.get(url).send().await.unwrap();
    assert_eq!(resp.status(), 302);
    let at_apple = location(&resp);
    let callback = follow(&http(), &format!("{at_apple}&sim_user={user}"))
        .await
        .unwrap();
    assert!(callback.post, "Apple POSTs the callback");
    // Apple's page POSTs cross-site: the browser sends no SameSite=Lax cookie.
    let fields: Vec<(String, String)> = callback.params.into_iter().collect();
    let cross_site = http()
        .post(&callback.url)
        .form(&fields)
        .send()
        .await
        .unwrap();
    let again = form_post_page(cross_site).await;
    assert_eq!(again.field("idb_resubmitted"), Some("1"));
    // The broker's own page posts it again, same-site: the cookie comes along.
    b.post(&again.action)
        .form(&again.fields)
        .send()
        .await
        .unwrap()
}

async fn an_app_signs_in_through_sign_in_with_apple(db_url: &str) {
    let key = AppleKey::generate("TEAMAB1234", "KEYAB12345").unwrap();
    let sim = Sim::start(apple::config(
        vec![apple::client(SERVICES_ID, &key, "http://127.0.0.1:*")],
        vec![
            apple::user(ADA, RELAY, true, "Ada", "Lovelace"),
            apple::user("002002.bo", "bo@example.com", false, "Bo", "Li"),
        ],
    ))
    .await
    .unwrap();
    let db = db_url.to_owned();
    let (issuer, pem) = (sim.issuer(), key.pem.clone());
    let broker = start(&db, None, move |s| {
        s.connectors = vec![serde_json::json!({
            "id": "apple", "type": "apple", "name": "Sign in with Apple",
            "client_id": SERVICES_ID, "team_id": "TEAMAB1234", "key_id": "KEYAB12345",
            "private_key": pem, "issuer": issuer,
        })];
    })
    .await;
    let base = broker.base.clone();
    let (url, verifier) = app_url(&base, "apple");
    wait_ready(&url, &sim.issuer()).await;

    let mut subs = Vec::new();
    for round in 0..2 {
        let done = through_apple(&browser(), &url, ADA).await;
        assert_eq!(
            done.status(),
            302,
            "{}",
            done.text().await.unwrap_or_default()
        );
        let back = location(&done);
        assert!(back.starts_with(APP_REDIRECT), "{back}");
        let code = query_param(&back, "code").expect("a code for the app");
        let tokens: serde_json::Value = redeem(&base, &code, &verifier).await.json().await.unwrap();
        let c = claims(tokens["id_token"].as_str().expect("an ID token"));
        assert_eq!(c["email"], RELAY, "{c}");
        // The first sign-in's user field; Apple never sends it again, and the
        // returning person keeps the name.
        assert_eq!(c["name"], "Ada Lovelace", "round {round}: {c}");
        assert_ne!(c["sub"], ADA, "the broker's own subject");
        subs.push(c["sub"].as_str().unwrap().to_owned());
    }
    assert_eq!(subs[0], subs[1], "a returning person keeps one sub");
    assert_eq!(users(&broker).await, 1);

    // A tampered ID token: a page, a log line with stage and fix, no account.
    sim.tamper_next_id_token();
    let failed = through_apple(&browser(), &url, "002002.bo").await;
    assert!(failed.status().is_client_error() || failed.status().is_server_error());
    let page = failed.text().await.unwrap();
    assert!(page.contains("<html"), "{page}");
    assert!(
        !log_lines(&[
            "login_failed",
            "connector=apple",
            "token_exchange",
            "token_verification_failed",
            "signature",
            "fix="
        ])
        .is_empty(),
        "no log line for the refused ID token: {:?}",
        log_lines(&["connector=apple"])
    );
    assert_eq!(users(&broker).await, 1, "nothing half-written");
    broker.stop().await;
}
both_backends!(an_app_signs_in_through_sign_in_with_apple);

/// Through a fake whose callback is a query redirect (Entra ID, Google): the URL the fake sends the
/// browser to, then the broker's answer.
async fn through_query_callback(b: &reqwest::Client, url: &str, user: &str) -> reqwest::Response {
    let resp = b.get(url).send().await.unwrap();
    assert_eq!(resp.status(), 302);
    let at_entra = location(&resp);
    let callback = follow(&http(), &format!("{at_entra}&sim_user={user}"))
        .await
        .unwrap();
    assert!(!callback.post);
    b.get(&callback.url).send().await.unwrap()
}

pub(crate) async fn sub_of(
    base: &str,
    done: reqwest::Response,
    verifier: &str,
) -> serde_json::Value {
    assert_eq!(
        done.status(),
        302,
        "{}",
        done.text().await.unwrap_or_default()
    );
    let back = location(&done);
    let code = query_param(&back, "code").expect("a code for the app");
    let tokens: serde_json::Value = redeem(base, &code, verifier).await.json().await.unwrap();
    claims(tokens["id_token"].as_str().expect("an ID token"))
}

async fn an_app_signs_in_through_entra_id(db_url: &str) {
    let sim = Sim::start(microsoft::config(
        vec![microsoft::client(
            MS_CLIENT,
            MS_SECRET,
            "http://127.0.0.1:*",
        )],
        vec![
            microsoft::user(
                "alice",
                TENANT_A,
                "0a0a0a0a-a11c-e000",
                "Alice",
                "alice@a.example",
            ),
            // Another tenant's admin set Alice's address on Mallory's account.
            microsoft::user(
                "mallory",
                TENANT_B,
                "0b0b0b0b-ma11-0000",
                "Mallory",
                "alice@a.example",
            ),
            microsoft::user(
                "carol",
                CONSUMERS_TENANT,
                "0c0c0c0c-ca01-0000",
                "Carol",
                "carol@outlook.example",
            ),
        ],
    ))
    .await
    .unwrap();
    let (db, authority) = (db_url.to_owned(), sim.base_url());
    let broker = start(&db, None, move |s| {
        s.connectors = vec![serde_json::json!({
            "id": "entra", "type": "microsoft", "name": "Microsoft",
            "client_id": MS_CLIENT, "client_secret": MS_SECRET,
            "tenant": "common", "allowed_tenants": [TENANT_A, TENANT_B],
            "authority_url": authority,
        })];
    })
    .await;
    let base = broker.base.clone();
    let (url, verifier) = app_url(&base, "entra");
    wait_ready(&url, &sim.base_url()).await;

    let first = sub_of(
        &base,
        through_query_callback(&browser(), &url, "alice").await,
        &verifier,
    )
    .await;
    let again = sub_of(
        &base,
        through_query_callback(&browser(), &url, "alice").await,
        &verifier,
    )
    .await;
    assert_eq!(
        first["sub"], again["sub"],
        "a returning person keeps one sub"
    );
    assert_eq!(first["name"], "Alice");
    // Mallory's token carries Alice's email: never verified, never linked.
    let mallory = sub_of(
        &base,
        through_query_callback(&browser(), &url, "mallory").await,
        &verifier,
    )
    .await;
    assert_ne!(
        mallory["sub"], first["sub"],
        "an unverified Entra email links nobody"
    );
    assert_eq!(users(&broker).await, 2);

    // A personal account's tenant is not in allowed_tenants: refused.
    let refused = through_query_callback(&browser(), &url, "carol").await;
    let status = refused.status();
    let page = refused.text().await.unwrap();
    assert!(
        status.is_client_error() || status.is_redirection(),
        "{status}: {page}"
    );
    assert!(
        !log_lines(&[
            "login_failed",
            "connector=entra",
            "not_allowed",
            "allowed_tenants"
        ])
        .is_empty(),
        "no log line for the refused tenant"
    );
    assert_eq!(users(&broker).await, 2, "nothing half-written");
    broker.stop().await;
}
both_backends!(an_app_signs_in_through_entra_id);

/// `serve --dev` offers "Dev OpenID provider": a person clicks it, picks a
/// user on the fake's page, and the demo app shows them signed in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_offers_a_dev_openid_provider_sign_in() {
    use crate::cli::{dev_command, free_port, temp_dir, wait_for, Killed};
    let dir = temp_dir("dev-oidc");
    let port = free_port();
    let _guard = Killed(
        dev_command(port, &dir.join(".idbridge-dev"))
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    wait_for(&base).await;
    let b = browser();
    let demo = b.get(format!("{base}/demo/login")).send().await.unwrap();
    let authorize = url::Url::parse(&base)
        .unwrap()
        .join(&location(&demo))
        .unwrap()
        .to_string();
    let mut chooser = b.get(&authorize).send().await.unwrap();
    if chooser.status() == 302 {
        let login = url::Url::parse(&base)
            .unwrap()
            .join(&location(&chooser))
            .unwrap();
        chooser = b.get(login).send().await.unwrap();
    }
    let chooser = chooser.text().await.unwrap();
    assert!(chooser.contains("Dev OpenID provider"), "{chooser}");
    // Pick it (as the chooser's link does); the fake's page once discovery is loaded.
    let mut at_op = None;
    for _ in 0..100 {
        let r = b
            .get(format!("{authorize}&connector=dev-oidc"))
            .send()
            .await
            .unwrap();
        if r.status() == 302 && !location(&r).starts_with(&base) && !location(&r).starts_with('/') {
            at_op = Some(location(&r));
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let at_op = at_op.expect("the dev-oidc connector redirects to the fake");
    let page = b.get(&at_op).send().await.unwrap().text().await.unwrap();
    let href = page
        .split("id=\"as-ada\" href=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a link per test user")
        .replace("&amp;", "&");
    let href = url::Url::parse(&at_op).unwrap().join(&href).unwrap();
    let to_broker = b.get(href).send().await.unwrap();
    assert_eq!(to_broker.status(), 302);
    let to_app = b.get(location(&to_broker)).send().await.unwrap();
    assert_eq!(
        to_app.status(),
        302,
        "{}",
        to_app.text().await.unwrap_or_default()
    );
    let app = url::Url::parse(&base)
        .unwrap()
        .join(&location(&to_app))
        .unwrap();
    let shown = b.get(app).send().await.unwrap().text().await.unwrap();
    assert!(shown.contains("Ada Lovelace"), "{shown}");
    let _ = std::fs::remove_dir_all(dir);
}

/// Through Google (the `google` preset on provider-sim's generic OpenID fake,
/// as Google's `hd` claim shapes it): a Workspace person of the hosted domain
/// signs in and keeps one `sub`; a person of another domain, whose `hd` the
/// browser cannot change because it is in the signed ID token, is refused with
/// a page and a log line, and no account is made.
async fn an_app_signs_in_through_google_with_a_hosted_domain(db_url: &str) {
    use provider_sim::oidc::{ClientSecret, SimClient, SimConfig, SimUser};
    const CLIENT: &str = "1234567890-e2e.apps.googleusercontent.com";
    const SECRET: &str = "GOCSPX-e2e-google-client-secret";
    let sim = Sim::start(SimConfig::generic(
        vec![SimClient {
            id: CLIENT.into(),
            secret: ClientSecret::Plain(SECRET.into()),
            redirect_uris: vec!["http://127.0.0.1:*".into()],
        }],
        vec![
            SimUser::new(
                "ann",
                serde_json::json!({"name": "Ann", "email": "ann@example.com", "email_verified": true, "hd": "example.com"}),
            ),
            SimUser::new(
                "zed",
                serde_json::json!({"name": "Zed", "email": "zed@other.example", "email_verified": true, "hd": "other.example"}),
            ),
        ],
    ))
    .await
    .unwrap();
    let (db, issuer) = (db_url.to_owned(), sim.issuer());
    let broker = start(&db, None, move |s| {
        s.connectors = vec![serde_json::json!({
            "id": "google", "type": "google", "name": "Google",
            "client_id": CLIENT, "client_secret": SECRET,
            "hosted_domain": "example.com", "issuer": issuer,
        })];
    })
    .await;
    let base = broker.base.clone();
    let (url, verifier) = app_url(&base, "google");
    wait_ready(&url, &sim.base_url()).await;
    // The hosted domain is asked for upstream.
    let to_google = location(&http().get(&url).send().await.unwrap());
    assert_eq!(
        query_param(&to_google, "hd").as_deref(),
        Some("example.com")
    );

    let first = sub_of(
        &base,
        through_query_callback(&browser(), &url, "ann").await,
        &verifier,
    )
    .await;
    let again = sub_of(
        &base,
        through_query_callback(&browser(), &url, "ann").await,
        &verifier,
    )
    .await;
    assert_eq!(
        first["sub"], again["sub"],
        "a returning person keeps one sub"
    );
    assert_eq!(first["name"], "Ann");
    assert_eq!(first["email"], "ann@example.com");
    assert_eq!(first["email_verified"], true);
    assert_eq!(users(&broker).await, 1);

    // Another domain's account: refused on the signed hd claim.
    let refused = through_query_callback(&browser(), &url, "zed").await;
    assert_eq!(refused.status(), 403, "a page that says why");
    assert!(
        !log_lines(&[
            "login_failed",
            "connector=google",
            "not_allowed",
            "hosted_domain"
        ])
        .is_empty(),
        "a log line with the stage and the fix"
    );
    assert_eq!(users(&broker).await, 1, "nothing half-written");
    broker.stop().await;
}
both_backends!(an_app_signs_in_through_google_with_a_hosted_domain);
