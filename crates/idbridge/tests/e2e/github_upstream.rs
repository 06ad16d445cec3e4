//! A broker with GitHub upstreams on the GitHub fake (`provider-sim`, as a
//! GitHub Enterprise Server: `base_url`/`api_url` point at it): an app signs a
//! person in through /authorize, the browser goes through GitHub's authorize
//! page and back. A returning person keeps one `sub` across a login rename;
//! only a verified primary email becomes the email claim; an organisation
//! refusal and a wrong client secret end in a page, a log line with stage and
//! fix, and no account. The generic `oauth2` connector signs in through the
//! same fake with an explicit claim mapping.

use crate::harness::*;
use provider_sim::github::{Decision, Email, GithubSim, OAuthApp, Person};

const SECRET: &str = "0123456789abcdef0123456789abcdef01234567";
const OCTOCAT: u64 = 583231;
const MONA: u64 = 1_000_002;

struct World {
    broker: Broker,
    sim: GithubSim,
}

async fn world(db_url: &str) -> World {
    let sim = GithubSim::start(OAuthApp {
        client_id: "Ov23liExample".into(),
        client_secret: SECRET.into(),
        callback_url: String::new(),
        expiring_tokens: false,
    })
    .await
    .unwrap();
    sim.add_person(
        Person::new(OCTOCAT, "octocat")
            .name("The Octocat")
            .email(Email::new("octocat@example.test", true, true))
            .org("acme"),
    );
    sim.add_person(Person::new(MONA, "mona").name("Mona").email(Email::new(
        "mona@example.test",
        false,
        true,
    )));
    let (web, api) = (sim.base_url(), sim.api_url());
    let broker = start(db_url, None, move |s| {
        let github = |id: &str, extra: serde_json::Value| {
            let mut c = serde_json::json!({
                "id": id, "type": "github", "name": "GitHub",
                "client_id": "Ov23liExample", "client_secret": SECRET,
                "base_url": web, "api_url": api,
            });
            if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
                c.extend(extra.clone());
            }
            c
        };
        s.connectors = vec![
            github("github", serde_json::json!({})),
            github(
                "gh-initech",
                serde_json::json!({"allowed_orgs": ["initech"]}),
            ),
            serde_json::json!({
                "id": "acme", "type": "oauth2", "name": "Acme",
                "authorization_url": format!("{web}/login/oauth/authorize"),
                "token_url": format!("{web}/login/oauth/access_token"),
                "userinfo_url": format!("{api}/user"),
                "client_id": "Ov23liExample", "client_secret": SECRET,
                "scopes": ["read:user"],
                "claims": {"subject": "id", "name": "name", "preferred_username": "login"},
            }),
        ];
    })
    .await;
    sim.set_callback_url(&format!("{}/callback/", broker.base));
    World { broker, sim }
}

impl World {
    /// The app's authorize URL through `connector`, with its PKCE verifier.
    fn authorize(&self, connector: &str) -> (String, String) {
        let (url, verifier) = authorize_url(&self.broker.base, &[]);
        let url = url
            .replace("connector=dev", &format!("connector={connector}"))
            .replace(
                "scope=openid+profile+offline_access",
                "scope=openid+profile+email",
            );
        (url, verifier)
    }

    /// Follow the browser from `url` through the broker and the fake until it
    /// leaves both (the app's redirect), or stops at a page: (status, where
    /// or the page's text).
    async fn browse(&self, b: &reqwest::Client, url: &str) -> (u16, String) {
        let mut url = url::Url::parse(url).unwrap();
        for _ in 0..10 {
            let resp = b.get(url.clone()).send().await.unwrap();
            let status = resp.status().as_u16();
            if !resp.status().is_redirection() {
                return (status, resp.text().await.unwrap_or_default());
            }
            let next = url.join(&location(&resp)).unwrap();
            if !next.as_str().starts_with(&self.broker.base)
                && !next.as_str().starts_with(&self.sim.base_url())
            {
                return (status, next.to_string());
            }
            url = next;
        }
        panic!("too many redirects");
    }

    /// A whole sign-in through `connector`: the app's ID token claims.
    async fn sign_in(&self, connector: &str) -> serde_json::Value {
        let (url, verifier) = self.authorize(connector);
        let (_, back) = self.browse(&browser(), &url).await;
        assert!(back.starts_with(APP_REDIRECT), "{back}");
        let code = query_param(&back, "code").expect("a code for the app");
        let tokens: serde_json::Value = redeem(&self.broker.base, &code, &verifier)
            .await
            .json()
            .await
            .unwrap();
        claims(tokens["id_token"].as_str().expect("an ID token"))
    }

    async fn users(&self) -> usize {
        self.broker
            .state
            .store
            .find_users("", 1000)
            .await
            .unwrap()
            .len()
    }

    /// A sign-in through `connector` that must fail: the page's status and
    /// text, with no account created.
    async fn refused(&self, connector: &str) -> (u16, String) {
        let before = self.users().await;
        let (url, _) = self.authorize(connector);
        let (status, page) = self.browse(&browser(), &url).await;
        assert_eq!(self.users().await, before, "no account was created");
        (status, page)
    }
}

async fn a_github_person_keeps_one_sub_and_only_a_verified_email(db_url: &str) {
    let w = world(db_url).await;
    w.sim.decide(Decision::Approve(OCTOCAT));
    let first = w.sign_in("github").await;
    assert_eq!(first["name"], "The Octocat", "{first}");
    assert_eq!(first["email"], "octocat@example.test", "{first}");
    assert_eq!(first["email_verified"], true, "{first}");
    let sub = first["sub"].as_str().unwrap().to_owned();
    let identities = w.broker.state.store.list_identities(&sub).await.unwrap();
    assert_eq!(identities.len(), 1);
    assert_eq!(
        identities[0].subject,
        OCTOCAT.to_string(),
        "GitHub's numeric id, not the login"
    );

    w.sim.rename(OCTOCAT, "octo-renamed");
    let again = w.sign_in("github").await;
    assert_eq!(again["sub"], sub.as_str(), "a renamed login keeps one sub");

    // Mona's only email is unverified: no email claim at all.
    w.sim.decide(Decision::Approve(MONA));
    let mona = w.sign_in("github").await;
    assert_ne!(mona["sub"], sub.as_str());
    assert!(
        mona.get("email").is_none() && mona.get("email_verified").is_none(),
        "{mona}"
    );
    w.broker.stop().await;
}
crate::both_backends!(a_github_person_keeps_one_sub_and_only_a_verified_email);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_outsider_of_allowed_orgs_gets_a_403_page_and_the_operator_a_fix() {
    let db = TestDb::new(Db::Sqlite);
    let w = world(&db.url()).await;
    w.sim.decide(Decision::Approve(OCTOCAT));
    let (status, page) = w.refused("gh-initech").await;
    assert_eq!(status, 403, "{page}");
    assert!(
        page.contains("Only members of these GitHub organisations may sign in here: initech"),
        "{page}"
    );
    let needles = [
        "login_failed",
        "connector=gh-initech",
        "stage=\"userinfo\"",
        "kind=\"not_allowed\"",
        "fix=",
        "allowed_orgs (initech)",
    ];
    assert!(
        !log_lines(&needles).is_empty(),
        "no log line with {needles:?}"
    );
    w.broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_client_secret_shows_a_page_and_names_the_fix() {
    let db = TestDb::new(Db::Sqlite);
    let w = world(&db.url()).await;
    w.sim.decide(Decision::Approve(OCTOCAT));
    w.sim.set_client_secret("rotated-at-github");
    let (status, page) = w.refused("github").await;
    assert!(status >= 500, "{status}: {page}");
    assert!(page.contains("kind=bad_credentials"), "{page}");
    assert!(!page.contains(SECRET), "the secret never shows");
    let needles = [
        "login_failed",
        "connector=github",
        "stage=\"token_exchange\"",
        "upstream_code=\"incorrect_client_credentials\"",
        "fix=",
        "generate a new client secret",
    ];
    assert!(
        !log_lines(&needles).is_empty(),
        "no log line with {needles:?}"
    );
    w.broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_generic_oauth2_connector_signs_in_through_a_json_provider() {
    let db = TestDb::new(Db::Sqlite);
    let w = world(&db.url()).await;
    w.sim.decide(Decision::Approve(OCTOCAT));
    let me = w.sign_in("acme").await;
    assert_eq!(me["name"], "The Octocat", "{me}");
    assert!(me.get("email").is_none(), "no email mapped: {me}");
    let identities = w
        .broker
        .state
        .store
        .list_identities(me["sub"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(identities[0].subject, OCTOCAT.to_string());
    // The person cancels at the provider: the app gets access_denied.
    w.sim.decide(Decision::Deny);
    let (url, _) = w.authorize("acme");
    let (_, back) = w.browse(&browser(), &url).await;
    assert!(back.starts_with(APP_REDIRECT), "{back}");
    assert_eq!(
        query_param(&back, "error").as_deref(),
        Some("access_denied"),
        "{back}"
    );
    w.broker.stop().await;
}

/// `serve --dev` offers "GitHub (simulator)": the fake's page asks who signs
/// in, and the demo app gets the person back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dev_mode_offers_github_through_its_simulator() {
    use crate::cli::{dev_command, free_port, temp_dir, wait_for, Killed};
    let dir = temp_dir("dev-github");
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
        .unwrap();
    let chooser = b.get(authorize).send().await.unwrap();
    let chooser = url::Url::parse(&base)
        .unwrap()
        .join(&location(&chooser))
        .unwrap()
        .to_string();
    let page = get_text(&b, &chooser).await;
    assert!(page.contains("GitHub (simulator)"), "{page}");
    let to_github = b
        .get(format!("{chooser}?connector=github"))
        .send()
        .await
        .unwrap();
    let github = location(&to_github);
    assert!(github.contains("/login/oauth/authorize?"), "{github}");
    let ask = get_text(&b, &github).await;
    let pick = ask
        .split("<a href=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .replace("&amp;", "&");
    assert!(ask.contains("Authorize as octocat"), "{ask}");
    let origin = url::Url::parse(&github)
        .unwrap()
        .origin()
        .ascii_serialization();
    let back = b.get(format!("{origin}{pick}")).send().await.unwrap();
    let callback = url::Url::parse(&base)
        .unwrap()
        .join(&location(&back))
        .unwrap()
        .to_string();
    assert!(
        callback.starts_with(&format!("{base}/callback/github?")),
        "{callback}"
    );
    let to_app = b.get(&callback).send().await.unwrap();
    let app = url::Url::parse(&base)
        .unwrap()
        .join(&location(&to_app))
        .unwrap()
        .to_string();
    assert!(
        app.starts_with(&format!("{base}/demo/callback?code=")),
        "{app}"
    );
    let shown = get_text(&b, &app).await;
    assert!(shown.contains("The Octocat"), "{shown}");
    let _ = std::fs::remove_dir_all(dir);
}

/// `idbridge doctor` on a `github` connector with a plain-http remote
/// `base_url` and an `oauth2` connector on the running fake: the first is named
/// with the fix, the second passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_refuses_plain_http_and_passes_a_provider_that_answers() {
    use crate::cli::{bin, example_config, temp_dir};
    let sim = GithubSim::start(OAuthApp {
        client_id: "Ov23liExample".into(),
        client_secret: SECRET.into(),
        callback_url: "https://id.example.com/callback/".into(),
        expiring_tokens: false,
    })
    .await
    .unwrap();
    let dir = temp_dir("doctor-github");
    let config = example_config(&dir);
    std::fs::write(dir.join("gh.secret"), format!("{SECRET}\n")).unwrap();
    let secret_file = dir.join("gh.secret");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        r#"
[[connectors]]
id = "ghes"
type = "github"
client_id = "Ov23liExample"
client_secret_file = "{secret}"
base_url = "http://git.example.com"

[[connectors]]
id = "acme"
type = "oauth2"
authorization_url = "{web}/login/oauth/authorize"
token_url = "{web}/login/oauth/access_token"
userinfo_url = "{api}/user"
client_id = "Ov23liExample"
client_secret_file = "{secret}"
[connectors.claims]
subject = "id"
"#,
        secret = secret_file.display(),
        web = sim.base_url(),
        api = sim.api_url(),
    ));
    std::fs::write(&config, text).unwrap();
    let out = tokio::task::spawn_blocking(move || {
        bin()
            .args(["doctor", "--config"])
            .arg(&config)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(report.contains("connectors[ghes].base_url"), "{report}");
    assert!(
        report.contains("plain http to a host that is not loopback"),
        "{report}"
    );
    assert!(report.contains("connectors[ghes].api_url"), "{report}");
    assert!(!report.contains("connectors[acme]"), "{report}");
    assert!(
        sim.counters().authorizations >= 1,
        "doctor asked the fake's authorization URL"
    );
    let _ = std::fs::remove_dir_all(dir);
}
