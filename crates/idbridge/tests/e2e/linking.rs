//! Linking by email across connectors (issue 13, item 4; docs/accounts.md,
//! "Linking by email"), end to end on SQLite and Postgres, driven like a
//! browser and like a native app: a new sign-in links silently to the account
//! holding its address only when its connector has `trust_email` and the
//! upstream verified the address; an untrusted connector's verified address
//! leads to the bind page (or a separate account); an unverified one never
//! links and tells the person nothing.
//!
//! The browser connectors are the development connector (Alice: verified
//! alice@example.com; Bob: unverified bob@example.com; "robert": Bob's address
//! verified; "mallory": Alice's address unverified). The token exchange uses
//! the test's own connector type, `sdk-mail`, whose subject token is
//! `subject|email|verified` (as a native SDK's token would carry them).

use crate::accounts::{dev_callback, field, sub_of};
use crate::harness::*;
use async_trait::async_trait;
use idbridge_core::{
    BeginRequest, BuildContext, CallbackRequest, ConfigError, Connector, ConnectorError,
    ConnectorFactory, ConnectorId, ConnectorSettings, ErrorKind, ExternalIdentity, Profile,
    RequestContext, Stage, Started,
};
use std::sync::Arc;

const GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const MAIL_TOKEN: &str = "urn:test:params:oauth:token-type:sdk-mail";

/// `dev` and `dev2` are trusted to link by email, `dev3` is not; all create
/// accounts. `sdk` (trusted) and `sdk-untrusted` exchange native tokens.
async fn linking_broker(db_url: &str) -> Broker {
    let registry = idbridge::registry().with(MailSdkFactory);
    start_with_registry(db_url, None, registry, |s| {
        s.connectors = vec![
            serde_json::json!({"id": "dev", "type": "dev", "name": "Dev", "trust_email": true}),
            serde_json::json!({"id": "dev2", "type": "dev", "name": "Dev two", "trust_email": true}),
            serde_json::json!({"id": "dev3", "type": "dev", "name": "Dev three"}),
            serde_json::json!({"id": "sdk", "type": "sdk-mail", "trust_email": true}),
            serde_json::json!({"id": "sdk-untrusted", "type": "sdk-mail"}),
        ];
    })
    .await
}

/// The authorization URL for the test app through `connector`.
fn authorize_through(base: &str, connector: &str) -> (String, String) {
    let (url, verifier) = authorize_url(base, &[]);
    (
        url.replace("connector=dev", &format!("connector={connector}")),
        verifier,
    )
}

/// Sign in through `connector` as `user`, straight back to the app: the `sub`.
async fn sub_through(base: &str, connector: &str, user: &str) -> String {
    let (url, verifier) = authorize_through(base, connector);
    let cb = dev_callback(&browser(), base, &url, user).await;
    assert_eq!(cb.status(), 302, "{connector}/{user}");
    let back = location(&cb);
    assert!(
        back.starts_with(APP_REDIRECT),
        "{connector}/{user} went to {back}, not back to the app"
    );
    sub_of(base, &back, &verifier).await
}

async fn user_count(broker: &Broker) -> usize {
    broker.state.store.find_users("", 100).await.unwrap().len()
}

async fn a_trusted_verified_email_links_with_an_audit_event(db_url: &str) {
    let broker = linking_broker(db_url).await;
    let base = broker.base.clone();
    let alice = sub_through(&base, "dev", "alice").await;
    // Another trusted connector, a new identity, the same verified address: the same account.
    assert_eq!(sub_through(&base, "dev2", "alice").await, alice);
    assert_eq!(user_count(&broker).await, 1);
    let identity = broker
        .state
        .store
        .get_identity("dev2", "alice")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(identity.user_id, alice);
    let linked = audit_events(&broker, "identity_linked").await;
    assert_eq!(linked.len(), 1, "{linked:?}");
    let e = &linked[0].event;
    assert_eq!(e.user_id.as_deref(), Some(alice.as_str()));
    assert_eq!(e.connector_id.as_deref(), Some("dev2"));
    assert_eq!(e.client_id.as_deref(), Some(APP_ID));
    assert_eq!(
        e.detail,
        serde_json::json!({
            "by": "email", "reason": "trusted_verified_email",
            "email": "alice@example.com", "via": "browser"
        })
    );
    assert!(!log_lines(&["linked_by_email", "dev2", &alice, "INFO"]).is_empty());
    // A returning sign-in is simply known.
    assert_eq!(sub_through(&base, "dev2", "alice").await, alice);
    assert_eq!(audit_events(&broker, "identity_linked").await.len(), 1);
    // The account page shows the address that links, and both methods.
    let b = browser();
    let (url, _) = authorize_through(&base, "dev2");
    dev_callback(&b, &base, &url, "alice").await;
    let page = get_text(&b, format!("{base}/account")).await;
    assert!(page.contains("Verified email"), "{page}");
    assert!(page.contains("alice@example.com"), "{page}");
    assert!(
        page.contains("Dev two") && page.contains("<strong>Dev</strong>"),
        "{page}"
    );
}
crate::both_backends!(a_trusted_verified_email_links_with_an_audit_event);

/// A sign-in through the untrusted `dev3` as Alice: the bind page (URL, HTML).
async fn held_for_binding(b: &reqwest::Client, base: &str) -> (String, String, String) {
    let (url, verifier) = authorize_through(base, "dev3");
    let cb = dev_callback(b, base, &url, "alice").await;
    assert_eq!(cb.status(), 302);
    let bind_url = location(&cb);
    assert!(bind_url.ends_with("/bind"), "{bind_url}");
    let page = b.get(&bind_url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    (bind_url, page.text().await.unwrap(), verifier)
}

async fn an_untrusted_connector_goes_through_bind(db_url: &str) {
    let broker = linking_broker(db_url).await;
    let base = broker.base.clone();
    let alice = sub_through(&base, "dev", "alice").await;
    let b = browser();
    let (bind_url, page, verifier) = held_for_binding(&b, &base).await;
    assert!(
        page.contains("An account already exists for your email address"),
        "{page}"
    );
    assert!(page.contains("alice@example.com"), "{page}");
    assert!(page.contains("Create a separate account"), "{page}");
    assert!(page.contains("connector=dev\""), "{page}");
    // The same page in Chinese, for another browser of the person's.
    let zh = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(
            [(
                reqwest::header::ACCEPT_LANGUAGE,
                reqwest::header::HeaderValue::from_static("zh-CN"),
            )]
            .into_iter()
            .collect(),
        )
        .build()
        .unwrap();
    let (_, zh_page, _) = held_for_binding(&zh, &base).await;
    assert!(zh_page.contains("你的邮箱地址已有账号"), "{zh_page}");
    assert!(zh_page.contains("创建独立账号"), "{zh_page}");
    // Nothing written for the waiting identity.
    assert!(broker
        .state
        .store
        .get_identity("dev3", "alice")
        .await
        .unwrap()
        .is_none());
    assert_eq!(user_count(&broker).await, 1);
    assert!(audit_events(&broker, "identity_linked").await.is_empty());
    let held = audit_events(&broker, "email_not_linked").await;
    assert_eq!(held.len(), 2, "{held:?}");
    for e in &held {
        assert_eq!(e.event.user_id.as_deref(), Some(alice.as_str()));
        assert_eq!(e.event.connector_id.as_deref(), Some("dev3"));
        assert_eq!(e.event.detail["reason"], "untrusted_connector");
        assert_eq!(e.event.detail["outcome"], "bind_offered");
    }
    assert!(!log_lines(&["email_not_linked", "untrusted_connector", &alice]).is_empty());
    // Proving the account through dev links the waiting identity to it.
    let other = format!("{}?connector=dev", bind_url.trim_end_matches("/bind"));
    let cb = dev_callback(&b, &base, &other, "alice").await;
    let back = location(&cb);
    assert!(back.starts_with(APP_REDIRECT), "{back}");
    assert_eq!(sub_of(&base, &back, &verifier).await, alice);
    assert_eq!(sub_through(&base, "dev3", "alice").await, alice);
}
crate::both_backends!(an_untrusted_connector_goes_through_bind);

async fn the_person_may_keep_a_separate_account(db_url: &str) {
    let broker = linking_broker(db_url).await;
    let base = broker.base.clone();
    let alice = sub_through(&base, "dev", "alice").await;
    let b = browser();
    let (bind_url, page, verifier) = held_for_binding(&b, &base).await;
    // Without the form's token: refused, nothing written.
    let forged = b
        .post(format!("{bind_url}/separate"))
        .form(&[("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert_eq!(user_count(&broker).await, 1);
    let resp = b
        .post(format!("{bind_url}/separate"))
        .form(&[("csrf", field(&page, "csrf").as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    let back = location(&resp);
    assert!(back.starts_with(APP_REDIRECT), "{back}");
    let separate = sub_of(&base, &back, &verifier).await;
    assert_ne!(separate, alice);
    assert_eq!(user_count(&broker).await, 2);
    // The address stays Alice's link target only.
    let store = &broker.state.store;
    assert!(store
        .list_account_emails(&separate)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.list_account_emails(&alice).await.unwrap(),
        ["alice@example.com"]
    );
    let events = audit_events(&broker, "email_not_linked").await;
    assert!(
        events
            .iter()
            .any(|e| e.event.detail["outcome"] == "separate_account"
                && e.event.user_id.as_deref() == Some(alice.as_str())),
        "{events:?}"
    );
    // dev3 signs this person in to their own account from now on.
    assert_eq!(sub_through(&base, "dev3", "alice").await, separate);
}
crate::both_backends!(the_person_may_keep_a_separate_account);

async fn an_unverified_email_never_links(db_url: &str) {
    let broker = linking_broker(db_url).await;
    let base = broker.base.clone();
    let alice = sub_through(&base, "dev", "alice").await;
    // Alice's address, unverified (as the Microsoft preset reports every
    // email): even through a trusted connector, a new account of its own, and
    // no bind page that would tell an anonymous person the address has one.
    let m2 = sub_through(&base, "dev2", "mallory").await;
    assert_ne!(m2, alice);
    let m3 = sub_through(&base, "dev3", "mallory").await;
    assert_ne!(m3, alice);
    assert!(audit_events(&broker, "identity_linked").await.is_empty());
    let ignored = audit_events(&broker, "email_not_linked").await;
    assert_eq!(ignored.len(), 2, "{ignored:?}");
    for e in &ignored {
        assert_eq!(e.event.user_id.as_deref(), Some(alice.as_str()));
        assert_eq!(e.event.detail["reason"], "email_unverified");
        assert_eq!(e.event.detail["outcome"], "first_login_policy");
    }
    // Neither became a link target.
    let store = &broker.state.store;
    assert!(store.list_account_emails(&m2).await.unwrap().is_empty());
    assert!(store.list_account_emails(&m3).await.unwrap().is_empty());
}
crate::both_backends!(an_unverified_email_never_links);

async fn an_account_whose_email_is_unverified_is_no_link_target(db_url: &str) {
    let broker = linking_broker(db_url).await;
    let base = broker.base.clone();
    // Bob's account holds bob@example.com unverified; robert's trusted sign-in
    // with it verified does not land in Bob's account.
    let bob = sub_through(&base, "dev", "bob").await;
    let robert = sub_through(&base, "dev2", "robert").await;
    assert_ne!(robert, bob);
    // Pre-account takeover: mallory registers first with Alice's address
    // (unverified, through the untrusted connector); Alice's trusted, verified
    // sign-in later gets an account of her own, not mallory's.
    let mallory = sub_through(&base, "dev3", "mallory").await;
    let alice = sub_through(&base, "dev", "alice").await;
    assert_ne!(alice, mallory);
    assert!(audit_events(&broker, "identity_linked").await.is_empty());
    assert!(audit_events(&broker, "email_not_linked").await.is_empty());
    let store = &broker.state.store;
    assert_eq!(
        store.list_account_emails(&robert).await.unwrap(),
        ["bob@example.com"]
    );
    assert!(store.list_account_emails(&bob).await.unwrap().is_empty());
    assert!(store
        .list_account_emails(&mallory)
        .await
        .unwrap()
        .is_empty());
}
crate::both_backends!(an_account_whose_email_is_unverified_is_no_link_target);

/// The token endpoint's answer to an exchange of `token` through `connector`.
async fn exchange(base: &str, connector: &str, token: &str) -> (u16, serde_json::Value) {
    let resp = http()
        .post(format!("{base}/token"))
        .basic_auth(APP_ID, Some(APP_SECRET))
        .form(&[
            ("grant_type", GRANT),
            ("subject_token", token),
            ("subject_token_type", MAIL_TOKEN),
            ("connector", connector),
        ])
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

fn sub_of_tokens(tokens: &serde_json::Value) -> String {
    claims(tokens["id_token"].as_str().unwrap())["sub"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn a_token_exchange_links_only_a_trusted_verified_email(db_url: &str) {
    let broker = linking_broker(db_url).await;
    let base = broker.base.clone();
    let alice = sub_through(&base, "dev", "alice").await;
    // Untrusted connector, verified address: refused, nothing written.
    let (status, body) = exchange(&base, "sdk-untrusted", "a1|alice@example.com|true").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_grant");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("not trusted to link accounts by email"),
        "{body}"
    );
    assert!(broker
        .state
        .store
        .get_identity("sdk-untrusted", "a1")
        .await
        .unwrap()
        .is_none());
    assert_eq!(user_count(&broker).await, 1);
    let refused = audit_events(&broker, "email_not_linked").await;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].event.detail["outcome"], "refused");
    assert_eq!(refused[0].event.detail["via"], "token_exchange");
    // Trusted, unverified: an account of its own.
    let (status, body) = exchange(&base, "sdk", "a2|ALICE@example.com|false").await;
    assert_eq!(status, 200, "{body}");
    assert_ne!(sub_of_tokens(&body), alice);
    // Trusted and verified (letter case aside): Alice's account, audited.
    let (status, body) = exchange(&base, "sdk", "a3|Alice@Example.com|true").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(sub_of_tokens(&body), alice);
    let linked = audit_events(&broker, "identity_linked").await;
    assert_eq!(linked.len(), 1, "{linked:?}");
    assert_eq!(linked[0].event.connector_id.as_deref(), Some("sdk"));
    assert_eq!(linked[0].event.detail["via"], "token_exchange");
    assert_eq!(linked[0].event.user_id.as_deref(), Some(alice.as_str()));
}
crate::both_backends!(a_token_exchange_links_only_a_trusted_verified_email);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trust_email_on_a_connector_that_cannot_vouch_for_one_is_a_config_error() {
    let db = TestDb::new(Db::Sqlite);
    let mut settings = base_settings("http://127.0.0.1:1", &db.url());
    settings.connectors = vec![serde_json::json!({
        "id": "mute", "type": "sdk-mail", "vouches": false, "trust_email": true
    })];
    let options = idbridge_server::Options {
        dev_mode: true,
        demo_secret: None,
        clock: Arc::new(idbridge_server::Clock::default()),
    };
    let registry = idbridge::registry().with(MailSdkFactory);
    let Err(errors) = idbridge_server::build_state(settings, &registry, &options).await else {
        panic!("the broker started with trust_email on a connector that cannot vouch for email");
    };
    let text = format!("{errors:?}");
    assert!(text.contains("connectors[mute].trust_email"), "{text}");
    assert!(
        text.contains("never reports an email address it verified"),
        "{text}"
    );
}

/// Entra ID's `email` is never evidence of a mailbox (the "nOAuth" takeover):
/// the Microsoft preset cannot be given `trust_email` at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trust_email_on_a_microsoft_connector_is_a_config_error() {
    let db = TestDb::new(Db::Sqlite);
    let mut settings = base_settings("http://127.0.0.1:1", &db.url());
    settings.connectors = vec![serde_json::json!({
        "id": "entra", "type": "microsoft", "tenant": "organizations",
        "client_id": "00000000-0000-0000-0000-000000000001",
        "client_secret": "entra-test-secret", "trust_email": true
    })];
    let options = idbridge_server::Options {
        dev_mode: true,
        demo_secret: None,
        clock: Arc::new(idbridge_server::Clock::default()),
    };
    let Err(errors) = idbridge_server::build_state(settings, &idbridge::registry(), &options).await
    else {
        panic!("the broker started with trust_email on a microsoft connector");
    };
    let text = format!("{errors:?}");
    assert!(text.contains("connectors[entra].trust_email"), "{text}");
}

/// The test's native-SDK connector: the subject token names the person.
struct MailSdk {
    id: ConnectorId,
    vouches: bool,
}

#[async_trait]
impl Connector for MailSdk {
    fn id(&self) -> &ConnectorId {
        &self.id
    }
    fn kind(&self) -> &'static str {
        "sdk-mail"
    }
    fn display_name(&self) -> &str {
        "Mail SDK"
    }
    fn has_browser_flow(&self) -> bool {
        false
    }
    fn subject_token_types(&self) -> &[&str] {
        &[MAIL_TOKEN]
    }
    fn vouches_for_email(&self) -> bool {
        self.vouches
    }
    async fn begin(
        &self,
        _ctx: &RequestContext,
        _request: &BeginRequest,
    ) -> Result<Started, ConnectorError> {
        Err(ConnectorError::new(Stage::Begin, ErrorKind::Unsupported))
    }
    async fn complete(
        &self,
        _ctx: &RequestContext,
        _callback: &CallbackRequest,
    ) -> Result<ExternalIdentity, ConnectorError> {
        Err(ConnectorError::new(Stage::Callback, ErrorKind::Unsupported))
    }
    async fn exchange(
        &self,
        _ctx: &RequestContext,
        request: &idbridge_core::ExchangeRequest,
    ) -> Result<ExternalIdentity, ConnectorError> {
        let mut parts = request.subject_token.split('|');
        let (Some(subject), Some(email), Some(verified)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(ConnectorError::new(Stage::Exchange, ErrorKind::InvalidCode));
        };
        Ok(ExternalIdentity {
            connector_id: self.id.clone(),
            subject: subject.to_owned(),
            link_key: None,
            profile: Profile {
                email: Some(email.to_owned()),
                email_verified: Some(verified == "true"),
                ..Profile::default()
            },
            upstream_tokens: None,
            raw_claims: serde_json::Value::Null,
        })
    }
}

struct MailSdkFactory;

impl ConnectorFactory for MailSdkFactory {
    fn kind(&self) -> &'static str {
        "sdk-mail"
    }
    fn build(
        &self,
        settings: &ConnectorSettings,
        _ctx: &BuildContext,
    ) -> Result<Arc<dyn Connector>, Vec<ConfigError>> {
        Ok(Arc::new(MailSdk {
            id: settings.id.clone(),
            vouches: settings.options["vouches"].as_bool().unwrap_or(true),
        }))
    }
}
