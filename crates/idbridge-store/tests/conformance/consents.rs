//! Consent remembered per account and app (docs/openid-provider.md, "Consent"),
//! on both backends: the union of what a person allowed, revoked together with
//! that app's grants, gone with the app; a sign-in or exchange that needs it
//! writes no code and no grant.

use super::*;
use idbridge_store::ConsentCheck;

async fn person(store: &Store, subject: &str) -> User {
    let r = store
        .resolve_login(
            login("dev", subject, None),
            FirstLogin::Create,
            format!("u-{subject}"),
            NOW,
        )
        .await
        .unwrap();
    user_of(&r).clone()
}

async fn audit_count(store: &Store, event: &str) -> usize {
    store
        .find_audit(AuditFilter {
            events: vec![event.into()],
            limit: 100,
            ..AuditFilter::default()
        })
        .await
        .unwrap()
        .len()
}

pub async fn consent_is_the_union_of_grants_listed_per_account(store: Store) {
    let alice = person(&store, "alice").await;
    let bob = person(&store, "bob").await;
    assert_eq!(store.get_consent(&alice.id, "app").await.unwrap(), None);
    let first = store
        .grant_consent(
            &alice.id,
            "app",
            "profile openid",
            NOW,
            audit(NOW, "consent_granted", Some(&alice.id)),
        )
        .await
        .unwrap();
    assert_eq!(first.scope, "openid profile");
    assert_eq!((first.granted_at, first.updated_at), (NOW, NOW));
    // A later grant adds to it; the first grant's time stays.
    let second = store
        .grant_consent(
            &alice.id,
            "app",
            "openid email",
            NOW + 10,
            audit(NOW + 10, "consent_granted", Some(&alice.id)),
        )
        .await
        .unwrap();
    assert_eq!(second.scope, "email openid profile");
    assert_eq!((second.granted_at, second.updated_at), (NOW, NOW + 10));
    assert!(second.covers("openid email") && !second.covers("openid phone"));
    assert_eq!(
        store.get_consent(&alice.id, "app").await.unwrap(),
        Some(second.clone())
    );
    store
        .grant_consent(
            &alice.id,
            "another",
            "openid",
            NOW + 20,
            audit(NOW + 20, "consent_granted", Some(&alice.id)),
        )
        .await
        .unwrap();
    let listed = store.list_consents(&alice.id).await.unwrap();
    let apps: Vec<&str> = listed.iter().map(|c| c.client_id.as_str()).collect();
    assert_eq!(apps, ["another", "app"]);
    assert!(store.list_consents(&bob.id).await.unwrap().is_empty());
    assert_eq!(store.get_consent(&bob.id, "app").await.unwrap(), None);
    assert_eq!(audit_count(&store, "consent_granted").await, 3);
}

pub async fn revoking_consent_ends_that_apps_grants_only_with_its_audit_event(store: Store) {
    let alice = person(&store, "alice").await;
    let bob = person(&store, "bob").await;
    for user in [&alice, &bob] {
        store
            .grant_consent(
                &user.id,
                "app",
                "openid",
                NOW,
                audit(NOW, "consent_granted", Some(&user.id)),
            )
            .await
            .unwrap();
    }
    // Alice's grant to this app, her grant to another app, Bob's grant to this app.
    issue_family(&store, "f-a", "rt-a", family("f-a", &alice.id, None, NOW)).await;
    let mut other_app = family("f-o", &alice.id, None, NOW);
    other_app.client_id = "other".into();
    issue_family(&store, "f-o", "rt-o", other_app).await;
    issue_family(&store, "f-b", "rt-b", family("f-b", &bob.id, None, NOW)).await;

    let ended = store
        .revoke_consent(&alice.id, "app", "consent_revoked", NOW + 5, {
            let alice = alice.id.clone();
            move |n| {
                let mut e = audit(NOW + 5, "consent_revoked", Some(&alice));
                e.detail = json!({ "grants_revoked": n });
                e
            }
        })
        .await
        .unwrap();
    assert_eq!(ended, Some(1));
    assert_eq!(store.get_consent(&alice.id, "app").await.unwrap(), None);
    let revoked = store.get_family("f-a").await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(NOW + 5));
    assert_eq!(revoked.revoked_reason.as_deref(), Some("consent_revoked"));
    for untouched in ["f-o", "f-b"] {
        let f = store.get_family(untouched).await.unwrap().unwrap();
        assert_eq!(f.revoked_at, None, "{untouched}");
    }
    assert!(store.get_consent(&bob.id, "app").await.unwrap().is_some());
    let events = store
        .find_audit(AuditFilter {
            events: vec!["consent_revoked".into()],
            limit: 10,
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event.detail, json!({ "grants_revoked": 1 }));

    // Nothing to revoke: nothing written, no audit event.
    let again = store
        .revoke_consent(&alice.id, "app", "consent_revoked", NOW + 6, |_| {
            audit(NOW + 6, "consent_revoked", None)
        })
        .await
        .unwrap();
    assert_eq!(again, None);
    assert_eq!(audit_count(&store, "consent_revoked").await, 1);
}

pub async fn removing_a_client_removes_its_consents(store: Store) {
    let alice = person(&store, "alice").await;
    for (id, created) in [("app", NOW), ("gone", NOW + 1), ("kept", NOW + 2)] {
        store
            .insert_client(ClientRow {
                id: id.into(),
                secret_hash: None,
                metadata: json!({}),
                created_at: created,
                previous_secret_hash: None,
                previous_secret_expires_at: None,
                updated_at: created,
            })
            .await
            .unwrap();
        store
            .grant_consent(
                &alice.id,
                id,
                "openid",
                NOW,
                audit(NOW, "consent_granted", Some(&alice.id)),
            )
            .await
            .unwrap();
    }
    store
        .remove_client("app", "client_deleted", NOW + 5, |_| {
            audit(NOW + 5, "admin_client_delete", None)
        })
        .await
        .unwrap()
        .unwrap();
    assert!(store.delete_client("gone").await.unwrap());
    let left: Vec<String> = store
        .list_consents(&alice.id)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.client_id)
        .collect();
    assert_eq!(left, ["kept"]);
}

pub async fn sign_in_needing_consent_opens_the_session_but_issues_no_code(store: Store) {
    let carol = person(&store, "carol").await;
    store
        .insert_auth_request(auth_request("ar1", NOW, 600))
        .await
        .unwrap();
    store.insert_flow(flow("st1", NOW, 600)).await.unwrap();
    let ask = |always| ConsentCheck {
        scope: "openid email".into(),
        always,
    };
    let mut done = completion(login("dev", "carol", None), FirstLogin::Create, "x", NOW);
    done.consent = Some(ask(false));
    let (sid, code_hash) = (done.session.id.clone(), done.code.code_hash.clone());
    let r = store.complete_login(done, NOW).await.unwrap();
    let LoginCompletion::SignedIn {
        user,
        needs_consent,
        needs_phone,
        ..
    } = r
    else {
        panic!("{r:?}")
    };
    assert!(needs_consent && !needs_phone);
    assert_eq!(user.id, carol.id);
    assert_eq!(
        store.get_session(&sid).await.unwrap().unwrap().user_id,
        carol.id
    );
    assert!(store.get_code(&code_hash).await.unwrap().is_none());
    assert!(
        store.get_auth_request("ar1", NOW).await.unwrap().is_some(),
        "the request waits for the consent page"
    );
    let f = store.get_flow("st1").await.unwrap().unwrap();
    assert_eq!(f.outcome, Some(json!({"redirect": "consent"})));

    // Allowed a superset: the next sign-in issues the code at once…
    store
        .grant_consent(
            &carol.id,
            "app",
            "openid email profile",
            NOW,
            audit(NOW, "consent_granted", Some(&carol.id)),
        )
        .await
        .unwrap();
    let mut done = completion(
        login("dev", "carol", None),
        FirstLogin::Create,
        "x",
        NOW + 1,
    );
    done.consent = Some(ask(false));
    let code_hash = done.code.code_hash.clone();
    let r = store.complete_login(done, NOW + 1).await.unwrap();
    assert!(
        matches!(
            r,
            LoginCompletion::SignedIn {
                needs_consent: false,
                ..
            }
        ),
        "{r:?}"
    );
    assert!(store.get_code(&code_hash).await.unwrap().is_some());
    // …unless the app asks again (prompt=consent).
    store
        .insert_auth_request(auth_request("ar1", NOW + 2, 600))
        .await
        .unwrap();
    let mut done = completion(
        login("dev", "carol", None),
        FirstLogin::Create,
        "x",
        NOW + 2,
    );
    done.consent = Some(ask(true));
    let code_hash = done.code.code_hash.clone();
    let r = store.complete_login(done, NOW + 2).await.unwrap();
    assert!(
        matches!(
            r,
            LoginCompletion::SignedIn {
                needs_consent: true,
                ..
            }
        ),
        "{r:?}"
    );
    assert!(store.get_code(&code_hash).await.unwrap().is_none());
}

pub async fn token_exchange_needing_consent_writes_no_grant(store: Store) {
    let mut done = exchange("o-1", None, FirstLogin::Create, "u-ex", "f-ex", Some("rt"));
    done.consent = Some(ConsentCheck {
        scope: "openid".into(),
        always: false,
    });
    let r = store.complete_exchange(done.clone(), NOW).await.unwrap();
    let LoginCompletion::SignedIn {
        user,
        needs_consent: true,
        ..
    } = r
    else {
        panic!("{r:?}")
    };
    assert!(store.get_family("f-ex").await.unwrap().is_none());
    store
        .grant_consent(
            &user.id,
            "app",
            "openid",
            NOW,
            audit(NOW, "consent_granted", Some(&user.id)),
        )
        .await
        .unwrap();
    let r = store.complete_exchange(done, NOW + 1).await.unwrap();
    assert!(
        matches!(
            r,
            LoginCompletion::SignedIn {
                needs_consent: false,
                ..
            }
        ),
        "{r:?}"
    );
    assert!(store.get_family("f-ex").await.unwrap().is_some());
}
