//! Linking by email (docs/accounts.md, "Linking by email"), on both backends: a
//! new identity links silently to the account holding its address only when its
//! connector is trusted and the upstream verified the address; the account's
//! side counts only addresses that such a sign-in recorded.

use super::*;
use idbridge_store::{email_key, EmailDecision, LoginEmail};

/// The connectors trusted in these scenarios.
const TRUSTED: &[&str] = &["google", "corp"];

fn with_email(connector: &str, subject: &str, address: &str, verified: bool) -> NewLogin {
    let mut l = login(connector, subject, None);
    l.email = Some(LoginEmail {
        address: email_key(address),
        verified,
        trusted: TRUSTED.contains(&connector),
        trusted_sources: TRUSTED.iter().map(|s| (*s).to_owned()).collect(),
    });
    l
}

fn link_audit(now: i64) -> AuditEvent {
    let mut row = audit(now, "identity_linked", None);
    row.detail = json!({ "by": "email", "reason": "trusted_verified_email" });
    row
}

async fn created(store: &Store, l: NewLogin, uid: &str) -> User {
    let r = store
        .resolve_login(l, FirstLogin::Create, uid.into(), NOW)
        .await
        .unwrap();
    assert!(
        matches!(&r, LoginResolution::Created(u) if u.id == uid),
        "{r:?}"
    );
    user_of(&r).clone()
}

pub async fn a_trusted_verified_email_links_a_new_identity_with_its_audit_row(store: Store) {
    created(
        &store,
        with_email("google", "g-alice", "alice@example.com", true),
        "u1",
    )
    .await;
    assert_eq!(
        store.list_account_emails("u1").await.unwrap(),
        ["alice@example.com"]
    );
    // Another trusted connector, the same address in other letter case.
    let mut done = completion(
        with_email("corp", "c-alice", "Alice@EXAMPLE.com", true),
        FirstLogin::Create,
        "unused",
        NOW + 1,
    );
    done.email_link_audit = Some(link_audit(NOW + 1));
    let code_hash = done.code.code_hash.clone();
    match store.complete_login(done, NOW + 1).await.unwrap() {
        LoginCompletion::SignedIn {
            user,
            resolution: LoginResolution::LinkedByEmail(_),
            email: Some(EmailDecision::Linked { owner }),
            ..
        } => {
            assert_eq!((user.id.as_str(), owner.as_str()), ("u1", "u1"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(user_count(&store).await, 1);
    let identity = store
        .get_identity("corp", "c-alice")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(identity.user_id, "u1");
    assert_eq!(
        store.get_code(&code_hash).await.unwrap().unwrap().user_id,
        "u1"
    );
    let events: Vec<(String, Option<String>, serde_json::Value)> = store
        .list_audit(Some("u1"), 10, None)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.event.event, r.event.user_id, r.event.detail))
        .collect();
    assert!(
        events.contains(&(
            "identity_linked".into(),
            Some("u1".into()),
            json!({ "by": "email", "reason": "trusted_verified_email" })
        )),
        "{events:?}"
    );
    assert!(events.iter().any(|e| e.0 == "login"), "{events:?}");
}

pub async fn an_untrusted_connector_s_verified_email_is_held_and_writes_nothing(store: Store) {
    created(
        &store,
        with_email("google", "g-alice", "alice@example.com", true),
        "u1",
    )
    .await;
    let mut done = completion(
        with_email("github", "gh-alice", "alice@example.com", true),
        FirstLogin::Create,
        "u2",
        NOW + 1,
    );
    done.email_link_audit = Some(link_audit(NOW + 1));
    let (sid, code_hash) = (done.session.id.clone(), done.code.code_hash.clone());
    let r = store.complete_login(done, NOW + 1).await.unwrap();
    assert_eq!(r, LoginCompletion::EmailHeld { owner: "u1".into() });
    assert_eq!(user_count(&store).await, 1);
    assert!(store
        .get_identity("github", "gh-alice")
        .await
        .unwrap()
        .is_none());
    assert!(store.get_session(&sid).await.unwrap().is_none());
    assert!(store.get_code(&code_hash).await.unwrap().is_none());
    assert!(store.list_audit(None, 10, None).await.unwrap().is_empty());
    // The person chose a separate account: without the email, a new account,
    // and the address stays u1's only.
    let mut separate = with_email("github", "gh-alice", "alice@example.com", true);
    separate.email = None;
    created(&store, separate, "u2").await;
    assert!(store.list_account_emails("u2").await.unwrap().is_empty());
    assert_eq!(
        store.list_account_emails("u1").await.unwrap(),
        ["alice@example.com"]
    );
}

pub async fn an_unverified_email_never_links_nor_becomes_a_link_target(store: Store) {
    created(
        &store,
        with_email("google", "g-alice", "alice@example.com", true),
        "u1",
    )
    .await;
    // Trusted connector, unverified address (what Entra ID's mutable email is
    // reported as): the policy applies as for anyone new.
    let done = completion(
        with_email("corp", "c-mallory", "alice@example.com", false),
        FirstLogin::Create,
        "u2",
        NOW + 1,
    );
    match store.complete_login(done, NOW + 1).await.unwrap() {
        LoginCompletion::SignedIn {
            user,
            resolution: LoginResolution::Created(_),
            email: Some(EmailDecision::Unverified { owner }),
            ..
        } => assert_eq!((user.id.as_str(), owner.as_str()), ("u2", "u1")),
        other => panic!("{other:?}"),
    }
    // With a refusing policy: refused like anyone new, nothing written.
    let r = store
        .resolve_login(
            with_email("corp", "c-other", "alice@example.com", false),
            FirstLogin::Refuse,
            "u3".into(),
            NOW + 2,
        )
        .await
        .unwrap();
    assert_eq!(r, LoginResolution::NotLinked);
    assert!(store
        .get_identity("corp", "c-other")
        .await
        .unwrap()
        .is_none());
    assert!(store.list_account_emails("u2").await.unwrap().is_empty());
    assert_eq!(user_count(&store).await, 2);
}

pub async fn a_pre_registered_unverified_address_is_no_target_for_the_real_owner(store: Store) {
    // The attacker registers first, with the victim's address: through an
    // untrusted connector (verified there or not), and through a trusted one
    // that did not verify it.
    created(
        &store,
        with_email("github", "gh-mallory", "victim@example.com", true),
        "mallory1",
    )
    .await;
    created(
        &store,
        with_email("corp", "c-mallory", "victim@example.com", false),
        "mallory2",
    )
    .await;
    assert!(store
        .list_account_emails("mallory1")
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .list_account_emails("mallory2")
        .await
        .unwrap()
        .is_empty());
    // The victim's trusted, verified sign-in gets an account of its own.
    created(
        &store,
        with_email("google", "g-victim", "victim@example.com", true),
        "victim",
    )
    .await;
    assert_eq!(
        store.list_account_emails("victim").await.unwrap(),
        ["victim@example.com"]
    );
    // The attacker's identity signing in again with a verified address does
    // not take it over either: the address stays the victim's.
    store
        .resolve_login(
            with_email("corp", "c-mallory", "victim@example.com", true),
            FirstLogin::Create,
            "unused".into(),
            NOW + 5,
        )
        .await
        .unwrap();
    assert_eq!(
        store.list_account_emails("victim").await.unwrap(),
        ["victim@example.com"]
    );
    assert!(store
        .list_account_emails("mallory2")
        .await
        .unwrap()
        .is_empty());
}

pub async fn concurrent_first_sign_ins_with_one_trusted_email_make_one_account(store: Store) {
    for round in 0..5 {
        let address = format!("racer{round}@example.com");
        let results = race_logins(
            &store,
            vec![
                (
                    with_email("google", &format!("g{round}"), &address, true),
                    format!("ga{round}"),
                ),
                (
                    with_email("corp", &format!("c{round}"), &address, true),
                    format!("cb{round}"),
                ),
            ],
        )
        .await;
        let ids: HashSet<&str> = results.iter().map(|r| user_of(r).id.as_str()).collect();
        assert_eq!(ids.len(), 1, "round {round}: {results:?}");
        let owner = *ids.iter().next().unwrap();
        assert!(
            results
                .iter()
                .any(|r| matches!(r, LoginResolution::LinkedByEmail(_))),
            "{results:?}"
        );
        assert_eq!(store.list_account_emails(owner).await.unwrap(), [address]);
    }
    assert_eq!(user_count(&store).await, 5);
}

pub async fn an_address_from_a_connector_no_longer_trusted_links_no_one(store: Store) {
    created(
        &store,
        with_email("google", "g-alice", "alice@example.com", true),
        "u1",
    )
    .await;
    // The operator stopped trusting google: only corp's addresses link now.
    let mut l = with_email("corp", "c-someone", "alice@example.com", true);
    if let Some(e) = l.email.as_mut() {
        e.trusted_sources = vec!["corp".into()];
    }
    created(&store, l, "u2").await;
    assert!(store.list_account_emails("u1").await.unwrap().is_empty());
    assert_eq!(
        store.list_account_emails("u2").await.unwrap(),
        ["alice@example.com"]
    );
}

pub async fn a_link_target_follows_its_identity_and_goes_when_it_is_unlinked(store: Store) {
    created(
        &store,
        with_email("google", "g-alice", "alice@example.com", true),
        "u1",
    )
    .await;
    store
        .resolve_login(
            login("dev", "alice-dev", None),
            FirstLogin::LinkTo("u1".into()),
            "unused".into(),
            NOW,
        )
        .await
        .unwrap();
    // The upstream now reports another address: the old one links no more.
    let again = |address: &str, verified: bool| {
        store.resolve_login(
            with_email("google", "g-alice", address, verified),
            FirstLogin::Create,
            "unused".into(),
            NOW + 1,
        )
    };
    again("alice@new.example", true).await.unwrap();
    assert_eq!(
        store.list_account_emails("u1").await.unwrap(),
        ["alice@new.example"]
    );
    // Reported unverified now: no link target at all.
    again("alice@new.example", false).await.unwrap();
    assert!(store.list_account_emails("u1").await.unwrap().is_empty());
    again("alice@new.example", true).await.unwrap();
    assert_eq!(store.list_account_emails("u1").await.unwrap().len(), 1);
    // Unlinked: its address goes with it, and a new sign-in with it makes a new account.
    let r = store
        .unlink_identity("u1", "google", "g-alice", false, |_| {
            audit(NOW + 2, "identity_unlinked", Some("u1"))
        })
        .await
        .unwrap();
    assert!(matches!(r, Unlink::Unlinked(_)), "{r:?}");
    assert!(store.list_account_emails("u1").await.unwrap().is_empty());
    created(
        &store,
        with_email("corp", "c-new", "alice@new.example", true),
        "u2",
    )
    .await;
    assert!(store.delete_identity("corp", "c-new").await.unwrap());
    assert!(store.list_account_emails("u2").await.unwrap().is_empty());
}

pub async fn a_token_exchange_follows_the_same_email_rule(store: Store) {
    created(
        &store,
        with_email("google", "g-alice", "alice@example.com", true),
        "u1",
    )
    .await;
    // Untrusted: held, no grant, nothing written.
    let mut held = exchange("app-o1", None, FirstLogin::Create, "u2", "f1", Some("rt1"));
    held.login = with_email("github", "app-o1", "alice@example.com", true);
    held.email_link_audit = Some(link_audit(NOW));
    let r = store.complete_exchange(held, NOW).await.unwrap();
    assert_eq!(r, LoginCompletion::EmailHeld { owner: "u1".into() });
    assert!(store.get_family("f1").await.unwrap().is_none());
    assert!(store
        .get_identity("github", "app-o1")
        .await
        .unwrap()
        .is_none());
    assert!(store.list_audit(None, 10, None).await.unwrap().is_empty());
    assert_eq!(user_count(&store).await, 1);
    // Trusted and verified: linked, the grant is u1's, with the audit row.
    let mut linked = exchange("app-o2", None, FirstLogin::Create, "u3", "f2", Some("rt2"));
    linked.login = with_email("corp", "app-o2", "alice@example.com", true);
    linked.email_link_audit = Some(link_audit(NOW));
    match store.complete_exchange(linked, NOW).await.unwrap() {
        LoginCompletion::SignedIn {
            user,
            email: Some(EmailDecision::Linked { .. }),
            ..
        } => assert_eq!(user.id, "u1"),
        other => panic!("{other:?}"),
    }
    assert_eq!(store.get_family("f2").await.unwrap().unwrap().user_id, "u1");
    let events = store.list_audit(Some("u1"), 10, None).await.unwrap();
    assert!(
        events.iter().any(|e| e.event.event == "identity_linked"),
        "{events:?}"
    );
}
