//! A broker whose upstream is a real, independent OpenID provider (node's
//! oidc-provider on 127.0.0.1, connectors/oidc/tests/provider): an app signs a
//! person in through /authorize, the browser goes through the provider and back,
//! and the app's ID token carries the upstream's claims; a returning person
//! keeps one `sub`. Skipped with a NOTE when node is absent.

use crate::harness::*;
use idbridge_connector_oidc::test_provider::{Options, TestProvider, CLIENT_ID, CLIENT_SECRET};

/// A browser's trip from the broker's /authorize through the provider and back
/// to the broker's callback, to where the broker finally sends it (the app).
async fn through_the_provider(
    browser: &reqwest::Client,
    base: &str,
    issuer: &str,
    url: &str,
) -> String {
    let mut url = url::Url::parse(url).unwrap();
    for _ in 0..15 {
        let resp = browser.get(url.clone()).send().await.unwrap();
        let status = resp.status();
        assert!(
            status.is_redirection(),
            "{url} answered {status}: {}",
            resp.text().await.unwrap_or_default()
        );
        let next = url.join(&location(&resp)).unwrap();
        let s = next.as_str();
        if !s.starts_with(base) && !s.starts_with(issuer) {
            return s.to_owned();
        }
        url = next;
    }
    panic!("too many redirects");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_app_signs_in_through_an_upstream_openid_provider() {
    // The provider's port first, so the broker can be configured with it and the
    // provider with the broker's callback.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let issuer = format!("http://127.0.0.1:{port}");
    let db = TestDb::new(Db::Sqlite);
    let upstream = issuer.clone();
    let broker = start(&db.url(), None, move |s| {
        s.connectors = vec![serde_json::json!({
            "id": "corp", "type": "oidc", "name": "Corporate SSO",
            "issuer": upstream, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
        })];
    })
    .await;
    let base = broker.base.clone();
    let Some(_provider) = TestProvider::start(&Options {
        redirect_uris: vec![format!("{base}/callback/corp")],
        port,
        ..Options::default()
    })
    .unwrap() else {
        return;
    };

    let (url, verifier) = authorize_url(&base, &[]);
    let url = url.replace("connector=dev", "connector=corp").replace(
        "scope=openid+profile+offline_access",
        "scope=openid+profile+email+offline_access",
    );
    // The connector gets ready once its background prepare reaches the provider.
    let mut ready = false;
    for _ in 0..100 {
        let resp = http().get(&url).send().await.unwrap();
        if resp.status() == 302 && location(&resp).starts_with(&issuer) {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ready, "the oidc connector did not get ready");

    let mut subs = Vec::new();
    for _ in 0..2 {
        let back = through_the_provider(&browser(), &base, &issuer, &url).await;
        assert!(back.starts_with(APP_REDIRECT), "{back}");
        let code = query_param(&back, "code").expect("a code for the app");
        let tokens: serde_json::Value = redeem(&base, &code, &verifier).await.json().await.unwrap();
        let id_token = tokens["id_token"].as_str().expect("an ID token");
        let c = claims(id_token);
        assert_eq!(c["iss"], base);
        assert_eq!(c["name"], "Alice Liddell", "{c}");
        assert_eq!(c["email"], "alice@example.test", "{c}");
        assert_eq!(c["email_verified"], true, "{c}");
        assert_ne!(
            c["sub"], "alice",
            "the broker's own subject, not the upstream's"
        );
        subs.push(c["sub"].as_str().unwrap().to_owned());
    }
    assert_eq!(subs[0], subs[1], "a returning person keeps one sub");
    broker.stop().await;
}
