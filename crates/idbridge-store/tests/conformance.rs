//! The storage conformance suite: every scenario is written once against the public `Store`
//! API and runs on both SQLite and PostgreSQL (`sqlite::<scenario>` / `postgres::<scenario>`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use idbridge_store::testing::TempDatabase;
use idbridge_store::{
    AccessChange, AuditEvent, AuditFilter, AuthRequestRow, Backend, ClientRemoved, ClientReplace,
    ClientRow, CodeCheck, CodeInsert, CodeRow, CompleteExchange, CompleteLogin, FailureLimit,
    FamilyRow, FirstLogin, FlowClaim, FlowRow, GcReport, KeyRow, LinkOutcome, LoginCompletion,
    LoginResolution, NewLogin, PhoneOutcome, Redeem, RefreshOutcome, Rotation, SendLimits,
    SessionRow, Store, StoreError, StoreOptions, Unlink, User, VerificationCode,
};
use serde_json::json;

/// Linking by email: its scenarios, in the list below.
#[path = "conformance/emails.rs"]
mod emails;
use emails::*;
/// Consent remembered per account and app: its scenarios, in the list below.
#[path = "conformance/consents.rs"]
mod consents;
use consents::*;

const NOW: i64 = 1_700_000_000;
const DAY: i64 = 86_400;

async fn open(db: &TempDatabase) -> Store {
    Store::connect(db.url(), StoreOptions::default())
        .await
        .unwrap()
}

/// Instantiates each scenario as a test on SQLite and on Postgres. `fresh` scenarios get a
/// store whose schema is not migrated yet; `migrated` ones get a migrated, empty store.
macro_rules! conformance {
    (fresh: [$($fresh:ident),* $(,)?], migrated: [$($name:ident),* $(,)?] $(,)?) => {
        conformance!(@backend sqlite, TempDatabase::sqlite, [$($fresh),*], [$($name),*]);
        conformance!(@backend postgres, TempDatabase::postgres, [$($fresh),*], [$($name),*]);
    };
    (@backend $backend:ident, $make:path, [$($fresh:ident),*], [$($name:ident),*]) => {
        mod $backend {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $fresh() {
                    let db = $make();
                    super::$fresh(open(&db).await).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let db = $make();
                    let store = open(&db).await;
                    store.migrate().await.unwrap();
                    super::$name(store).await;
                }
            )*
        }
    };
}

conformance!(
    fresh: [
        migrate_is_idempotent,
        concurrent_migrations_both_succeed,
        pending_migrations_lists_what_migrate_would_apply,
    ],
    migrated: [
        first_login_creates_user_then_later_logins_find_it,
        new_connector_with_known_link_key_links_to_same_user,
        refuse_policy_writes_nothing,
        link_key_appearing_later_attaches_to_existing_user,
        link_key_owned_by_another_user_moves_nothing,
        concurrent_first_logins_with_one_link_key_make_one_user,
        concurrent_first_logins_of_one_identity_make_one_user,
        users_can_be_found_disabled_and_unlinked,
        upstream_tokens_are_replaced_only_for_the_identity_owner,
        clients_insert_get_list_delete,
        consent_is_the_union_of_grants_listed_per_account,
        revoking_consent_ends_that_apps_grants_only_with_its_audit_event,
        removing_a_client_removes_its_consents,
        sign_in_needing_consent_opens_the_session_but_issues_no_code,
        token_exchange_needing_consent_writes_no_grant,
        client_changes_are_written_with_their_audit_event_or_not_at_all,
        expired_auth_requests_are_hidden,
        auth_request_is_taken_once,
        flow_is_claimed_once_and_never_when_expired,
        parallel_redemptions_of_one_code_have_one_winner,
        checked_redemption_writes_nothing_when_the_check_refuses,
        refresh_token_rotates_and_replay_revokes_family,
        refresh_family_expires_when_idle_or_past_absolute_lifetime,
        reuse_within_grace_gets_the_same_successor_and_stores_nothing,
        parallel_rotations_within_grace_share_one_successor,
        parallel_rotations_asking_for_different_successors_fork_nothing,
        reuse_within_grace_after_the_successor_was_used_revokes_the_family,
        refreshable_says_what_a_refresh_grant_would_do,
        refresh_grant_checks_client_scope_and_user_before_rotating,
        repeat_logins_change_only_what_they_bring_and_grants_name_each_connector_once,
        revocations_by_user_and_session,
        concurrent_key_inserts_have_one_winner,
        sessions_touch_and_end,
        audit_lists_newest_first_with_filter_and_paging,
        garbage_collection_removes_exactly_expired_rows,
        app_token_lease_has_one_holder_and_put_releases_it,
        link_to_policy_and_proof_login_link_a_waiting_identity,
        proof_login_whose_waiting_identity_belongs_to_another_user_writes_nothing,
        phone_step_opens_the_session_but_issues_no_code,
        account_page_links_and_never_unlinks_the_last_identity,
        a_verified_phone_number_belongs_to_one_user,
        verification_codes_are_throttled_single_use_and_die_after_wrong_attempts,
        auth_request_payload_can_be_replaced_while_live,
        token_exchange_writes_account_grant_and_audit_at_once_or_nothing,
        search_finds_users_by_id_name_subject_and_link_key_with_counts,
        live_sessions_and_grants_of_a_user_exclude_ended_expired_and_revoked,
        disabling_ends_access_in_one_transaction_with_its_audit_row,
        enabling_and_ending_access_touch_only_what_they_say,
        unlinking_refuses_the_last_identity_unless_allowed,
        unlinking_removes_a_link_key_no_other_identity_carries,
        audit_filters_by_event_time_and_user,
        failure_counters_count_cap_refill_and_are_collected,
        concurrent_failures_are_all_counted,
        concurrent_code_attempts_are_each_counted_and_a_code_verifies_once,
        concurrent_sends_to_one_destination_store_one_code,
        the_hourly_send_cap_survives_expiry_collection,
        a_trusted_verified_email_links_a_new_identity_with_its_audit_row,
        an_untrusted_connector_s_verified_email_is_held_and_writes_nothing,
        an_unverified_email_never_links_nor_becomes_a_link_target,
        a_pre_registered_unverified_address_is_no_target_for_the_real_owner,
        concurrent_first_sign_ins_with_one_trusted_email_make_one_account,
        an_address_from_a_connector_no_longer_trusted_links_no_one,
        a_link_target_follows_its_identity_and_goes_when_it_is_unlinked,
        a_token_exchange_follows_the_same_email_rule,
    ],
);

// ---------------------------------------------------------------- fixtures

fn login(connector: &str, subject: &str, link: Option<&str>) -> NewLogin {
    NewLogin {
        connector_id: connector.into(),
        subject: subject.into(),
        link: link.map(|k| ("open-platform-1".to_owned(), k.to_owned())),
        name: Some(format!("Name of {subject}")),
        picture: None,
        locale: Some("zh_CN".into()),
        profile: json!({ "nickname": subject }),
        upstream_tokens: Some(vec![1, 2, 3]),
        email: None,
    }
}

async fn user_count(store: &Store) -> usize {
    store.find_users("", 1000).await.unwrap().len()
}

fn user_of(r: &LoginResolution) -> &User {
    match r {
        LoginResolution::Existing(u)
        | LoginResolution::Linked(u)
        | LoginResolution::LinkedByEmail(u)
        | LoginResolution::Created(u) => u,
        other => panic!("expected a user, got {other:?}"),
    }
}

fn family(id: &str, user_id: &str, session: Option<&str>, now: i64) -> FamilyRow {
    FamilyRow {
        id: id.into(),
        client_id: "app".into(),
        user_id: user_id.into(),
        scope: "openid profile".into(),
        sso_session_id: session.map(str::to_owned),
        payload: json!({ "auth_time": now }),
        created_at: now,
        last_used_at: now,
        absolute_expires_at: now + 30 * DAY,
        revoked_at: None,
        revoked_reason: None,
    }
}

fn code(hash: &str, now: i64) -> CodeRow {
    CodeRow {
        code_hash: hash.into(),
        client_id: "app".into(),
        user_id: "u1".into(),
        payload: json!({ "redirect_uri": "https://app.example/cb", "nonce": "n" }),
        created_at: now,
        expires_at: now + 60,
        used_at: None,
        family_id: None,
    }
}

/// A family `id` with first refresh token `token`, issued through a redeemed code.
async fn issue_family(store: &Store, id: &str, token: &str, f: FamilyRow) {
    let code_hash = format!("code-for-{id}");
    store
        .insert_code(code(&code_hash, f.created_at), None)
        .await
        .unwrap();
    let r = store
        .redeem_code(&code_hash, f.clone(), Some(token.into()), f.created_at)
        .await
        .unwrap();
    assert!(matches!(r, Redeem::Won(_)), "{r:?}");
}

fn session(id: &str, user_id: &str, now: i64) -> SessionRow {
    SessionRow {
        id: id.into(),
        user_id: user_id.into(),
        connector_id: "wechat-web".into(),
        auth_time: now,
        created_at: now,
        last_seen_at: now,
        expires_at: now + DAY,
        ended_at: None,
    }
}

fn key(kid: &str, generation: i64, now: i64) -> KeyRow {
    KeyRow {
        kid: kid.into(),
        alg: "RS256".into(),
        generation,
        private_key: vec![0xde, 0xad, 0xbe, 0xef, 0x00, 0xff],
        public_jwk: format!(r#"{{"kty":"RSA","kid":"{kid}"}}"#),
        created_at: now,
        activates_at: now,
        retires_at: None,
        expires_at: None,
    }
}

fn flow(state: &str, now: i64, ttl: i64) -> FlowRow {
    FlowRow {
        state: state.into(),
        connector_id: "wechat-web".into(),
        auth_request_id: "ar1".into(),
        browser_hash: "bh".into(),
        data: json!({ "pkce": "v" }),
        created_at: now,
        expires_at: now + ttl,
        used_at: None,
        outcome: None,
    }
}

fn auth_request(id: &str, now: i64, ttl: i64) -> AuthRequestRow {
    AuthRequestRow {
        id: id.into(),
        client_id: "app".into(),
        payload: json!({ "scope": "openid", "state": "s" }),
        created_at: now,
        expires_at: now + ttl,
    }
}

fn audit(at: i64, event: &str, user: Option<&str>) -> AuditEvent {
    AuditEvent {
        at,
        event: event.into(),
        user_id: user.map(str::to_owned),
        client_id: Some("app".into()),
        connector_id: None,
        ip: Some("127.0.0.1".into()),
        detail: json!({ "n": at }),
    }
}

// ---------------------------------------------------------------- migrations

/// The migrations in the repository, in order (both backends have the same names).
fn migration_names() -> Vec<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations/sqlite");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

async fn migrate_is_idempotent(store: Store) {
    let first = store.migrate().await.unwrap();
    assert_eq!(first, migration_names());
    assert!(first[0].ends_with("_init"), "{first:?}");
    assert_eq!(store.migrate().await.unwrap(), Vec::<String>::new());
    store.ping().await.unwrap();
    assert_eq!(user_count(&store).await, 0);
}

async fn pending_migrations_lists_what_migrate_would_apply(store: Store) {
    assert_eq!(store.pending_migrations().await.unwrap(), migration_names());
    store.migrate().await.unwrap();
    assert_eq!(
        store.pending_migrations().await.unwrap(),
        Vec::<String>::new()
    );
}

async fn concurrent_migrations_both_succeed(store: Store) {
    let (a, b) = tokio::join!(
        tokio::spawn({
            let s = store.clone();
            async move { s.migrate().await }
        }),
        tokio::spawn({
            let s = store.clone();
            async move { s.migrate().await }
        }),
    );
    let (a, b) = (a.unwrap().unwrap(), b.unwrap().unwrap());
    assert!(
        (a == migration_names() && b.is_empty()) || (b == migration_names() && a.is_empty()),
        "exactly one call applies the migrations: {a:?} {b:?}"
    );
    assert!(store.migrate().await.unwrap().is_empty());
    assert_eq!(user_count(&store).await, 0);
}

// ---------------------------------------------------------------- logins and users

async fn first_login_creates_user_then_later_logins_find_it(store: Store) {
    let created = store
        .resolve_login(
            login("wechat-web", "o1", None),
            FirstLogin::Create,
            "u1".into(),
            NOW,
        )
        .await
        .unwrap();
    let LoginResolution::Created(user) = created else {
        panic!("{created:?}")
    };
    assert_eq!(user.id, "u1");
    assert_eq!(user.name.as_deref(), Some("Name of o1"));
    assert_eq!(user.created_at, NOW);
    assert_eq!(store.get_user("u1").await.unwrap(), Some(user));

    // Later login: profile refreshed, null fields do not erase, no tokens keeps the old ones.
    let mut again = login("wechat-web", "o1", None);
    again.name = Some("New name".into());
    again.locale = None;
    again.picture = Some("https://img/p.png".into());
    again.profile = json!({ "nickname": "New name" });
    again.upstream_tokens = None;
    let r = store
        .resolve_login(again, FirstLogin::Refuse, "unused".into(), NOW + 10)
        .await
        .unwrap();
    let LoginResolution::Existing(user) = r else {
        panic!("{r:?}")
    };
    assert_eq!(user.id, "u1");
    assert_eq!(user.name.as_deref(), Some("New name"));
    assert_eq!(user.locale.as_deref(), Some("zh_CN"));
    assert_eq!(user.picture.as_deref(), Some("https://img/p.png"));
    assert_eq!((user.created_at, user.updated_at), (NOW, NOW + 10));
    let identity = store
        .get_identity("wechat-web", "o1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(identity.profile, json!({ "nickname": "New name" }));
    assert_eq!(identity.upstream_tokens, Some(vec![1, 2, 3]));
    assert_eq!(
        (identity.created_at, identity.last_login_at),
        (NOW, NOW + 10)
    );
    assert_eq!(user_count(&store).await, 1);

    // A disabled user is returned as it is; the caller decides.
    assert!(store.set_user_disabled("u1", Some(NOW + 20)).await.unwrap());
    let r = store
        .resolve_login(
            login("wechat-web", "o1", None),
            FirstLogin::Create,
            "u2".into(),
            NOW + 30,
        )
        .await
        .unwrap();
    assert!(
        matches!(&r, LoginResolution::Existing(u) if u.id == "u1" && u.disabled_at == Some(NOW + 20)),
        "{r:?}"
    );
}

async fn new_connector_with_known_link_key_links_to_same_user(store: Store) {
    let a = store
        .resolve_login(
            login("wechat-web", "oA", Some("union1")),
            FirstLogin::Create,
            "u1".into(),
            NOW,
        )
        .await
        .unwrap();
    assert!(matches!(a, LoginResolution::Created(_)), "{a:?}");
    // Linking works even when the second connector's policy refuses new accounts.
    let b = store
        .resolve_login(
            login("wechat-mp", "oB", Some("union1")),
            FirstLogin::Refuse,
            "u2".into(),
            NOW + 1,
        )
        .await
        .unwrap();
    let LoginResolution::Linked(user) = b else {
        panic!("{b:?}")
    };
    assert_eq!(user.id, "u1");
    let ids = store.list_identities("u1").await.unwrap();
    let keys: Vec<_> = ids
        .iter()
        .map(|i| (i.connector_id.as_str(), i.subject.as_str()))
        .collect();
    assert_eq!(keys, [("wechat-web", "oA"), ("wechat-mp", "oB")]);
    assert!(ids.iter().all(|i| i.link_key.as_deref() == Some("union1")
        && i.link_scope.as_deref() == Some("open-platform-1")));
    assert_eq!(user_count(&store).await, 1);
    // Same key in another scope is another person.
    let mut other_scope = login("wechat-app", "oC", Some("union1"));
    other_scope.link = Some(("open-platform-2".into(), "union1".into()));
    let c = store
        .resolve_login(other_scope, FirstLogin::Create, "u3".into(), NOW + 2)
        .await
        .unwrap();
    assert!(
        matches!(&c, LoginResolution::Created(u) if u.id == "u3"),
        "{c:?}"
    );
}

async fn refuse_policy_writes_nothing(store: Store) {
    store
        .resolve_login(
            login("wechat-web", "o1", Some("union1")),
            FirstLogin::Create,
            "u1".into(),
            NOW,
        )
        .await
        .unwrap();
    let before = user_count(&store).await;
    let r = store
        .resolve_login(
            login("wechat-mp", "o2", Some("union2")),
            FirstLogin::Refuse,
            "u2".into(),
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(r, LoginResolution::NotLinked);
    assert_eq!(user_count(&store).await, before);
    assert_eq!(store.get_user("u2").await.unwrap(), None);
    assert_eq!(store.get_identity("wechat-mp", "o2").await.unwrap(), None);
    // and union2 was not recorded: a later Create with it still creates a new user
    let r = store
        .resolve_login(
            login("wechat-app", "o3", Some("union2")),
            FirstLogin::Create,
            "u3".into(),
            NOW,
        )
        .await
        .unwrap();
    assert!(
        matches!(&r, LoginResolution::Created(u) if u.id == "u3"),
        "{r:?}"
    );
}

async fn link_key_appearing_later_attaches_to_existing_user(store: Store) {
    // First seen without a unionid (e.g. app not yet bound to the Open Platform).
    let r = store
        .resolve_login(
            login("wechat-web", "oA", None),
            FirstLogin::Create,
            "u1".into(),
            NOW,
        )
        .await
        .unwrap();
    assert!(matches!(r, LoginResolution::Created(_)));
    // Now the same identity arrives with a link key: recorded, same user.
    let r = store
        .resolve_login(
            login("wechat-web", "oA", Some("union1")),
            FirstLogin::Create,
            "u2".into(),
            NOW + 1,
        )
        .await
        .unwrap();
    assert!(
        matches!(&r, LoginResolution::Existing(u) if u.id == "u1"),
        "{r:?}"
    );
    let ident = store
        .get_identity("wechat-web", "oA")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ident.link_key.as_deref(), Some("union1"));
    // A second connector with that link key links to the same user, no fork.
    let r = store
        .resolve_login(
            login("wechat-mp", "oB", Some("union1")),
            FirstLogin::Create,
            "u3".into(),
            NOW + 2,
        )
        .await
        .unwrap();
    assert!(
        matches!(&r, LoginResolution::Linked(u) if u.id == "u1"),
        "{r:?}"
    );
    assert_eq!(user_count(&store).await, 1);
    assert_eq!(store.list_identities("u1").await.unwrap().len(), 2);
}

async fn link_key_owned_by_another_user_moves_nothing(store: Store) {
    store
        .resolve_login(
            login("wechat-web", "oA", None),
            FirstLogin::Create,
            "u1".into(),
            NOW,
        )
        .await
        .unwrap();
    store
        .resolve_login(
            login("wechat-mp", "oB", Some("union1")),
            FirstLogin::Create,
            "u2".into(),
            NOW,
        )
        .await
        .unwrap();
    // oA (user u1) now reports union1, which already belongs to u2: keep everything in place.
    let r = store
        .resolve_login(
            login("wechat-web", "oA", Some("union1")),
            FirstLogin::Create,
            "u3".into(),
            NOW + 1,
        )
        .await
        .unwrap();
    assert!(
        matches!(&r, LoginResolution::Existing(u) if u.id == "u1"),
        "{r:?}"
    );
    assert_eq!(store.list_identities("u1").await.unwrap().len(), 1);
    assert_eq!(store.list_identities("u2").await.unwrap().len(), 1);
    let r = store
        .resolve_login(
            login("wechat-app", "oC", Some("union1")),
            FirstLogin::Create,
            "u4".into(),
            NOW + 2,
        )
        .await
        .unwrap();
    assert!(
        matches!(&r, LoginResolution::Linked(u) if u.id == "u2"),
        "{r:?}"
    );
    assert_eq!(user_count(&store).await, 2);
}

/// Runs `n` logins at once (behind a barrier) and returns their results in task order.
async fn race_logins(store: &Store, logins: Vec<(NewLogin, String)>) -> Vec<LoginResolution> {
    let barrier = Arc::new(tokio::sync::Barrier::new(logins.len()));
    let tasks: Vec<_> = logins
        .into_iter()
        .map(|(l, new_user_id)| {
            let s = store.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                s.resolve_login(l, FirstLogin::Create, new_user_id, NOW)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    results
}

async fn concurrent_first_logins_with_one_link_key_make_one_user(store: Store) {
    // Several rounds: later ones run on warm pool connections and race harder.
    for round in 0..4 {
        let logins = (0..8)
            .map(|i| {
                let link = format!("union-{round}");
                let l = login(
                    &format!("connector-{i}"),
                    &format!("r{round}o{i}"),
                    Some(&link),
                );
                (l, format!("r{round}u{i}"))
            })
            .collect();
        let results = race_logins(&store, logins).await;
        let created = results
            .iter()
            .filter(|r| matches!(r, LoginResolution::Created(_)))
            .count();
        let linked = results
            .iter()
            .filter(|r| matches!(r, LoginResolution::Linked(_)))
            .count();
        assert_eq!((created, linked), (1, 7), "{results:?}");
        let ids: HashSet<_> = results.iter().map(|r| user_of(r).id.clone()).collect();
        assert_eq!(ids.len(), 1, "{ids:?}");
        let user = ids.into_iter().next().unwrap();
        assert_eq!(store.list_identities(&user).await.unwrap().len(), 8);
    }
    assert_eq!(user_count(&store).await, 4);
}

async fn concurrent_first_logins_of_one_identity_make_one_user(store: Store) {
    for round in 0..4 {
        let link = format!("union-{round}");
        let logins = (0..6)
            .map(|i| {
                let l = login("wechat-web", &format!("r{round}"), Some(&link));
                (l, format!("r{round}u{i}"))
            })
            .collect();
        let results = race_logins(&store, logins).await;
        let created = results
            .iter()
            .filter(|r| matches!(r, LoginResolution::Created(_)))
            .count();
        let existing = results
            .iter()
            .filter(|r| matches!(r, LoginResolution::Existing(_)))
            .count();
        assert_eq!((created, existing), (1, 5), "{results:?}");
        let ids: HashSet<_> = results.iter().map(|r| user_of(r).id.clone()).collect();
        assert_eq!(ids.len(), 1);
    }
    assert_eq!(user_count(&store).await, 4);
}

async fn upstream_tokens_are_replaced_only_for_the_identity_owner(store: Store) {
    let r = store
        .resolve_login(
            login("wechat", "o1", None),
            FirstLogin::Create,
            "u1".into(),
            NOW,
        )
        .await
        .unwrap();
    let owner = user_of(&r).id.clone();
    assert!(store
        .set_upstream_tokens("wechat", "o1", &owner, vec![9, 9])
        .await
        .unwrap());
    let stored = store.get_identity("wechat", "o1").await.unwrap().unwrap();
    assert_eq!(stored.upstream_tokens, Some(vec![9, 9]));
    // Someone else's grant, or an identity that is gone, changes nothing.
    assert!(!store
        .set_upstream_tokens("wechat", "o1", "someone-else", vec![7])
        .await
        .unwrap());
    assert!(!store
        .set_upstream_tokens("wechat", "missing", &owner, vec![7])
        .await
        .unwrap());
    let stored = store.get_identity("wechat", "o1").await.unwrap().unwrap();
    assert_eq!(stored.upstream_tokens, Some(vec![9, 9]));
}

async fn users_can_be_found_disabled_and_unlinked(store: Store) {
    for (subject, uid, name) in [
        ("o1", "u1", "Alice Zhang"),
        ("o2", "u2", "Bob 50%_off"),
        ("o3", "u3", "alicia"),
    ] {
        let mut l = login("wechat-web", subject, None);
        l.name = Some(name.into());
        store
            .resolve_login(l, FirstLogin::Create, uid.into(), NOW)
            .await
            .unwrap();
    }
    let mut nameless = login("wechat-web", "o4", None);
    nameless.name = None;
    store
        .resolve_login(nameless, FirstLogin::Create, "u4".into(), NOW)
        .await
        .unwrap();

    let ids = |v: Vec<User>| v.into_iter().map(|u| u.id).collect::<Vec<_>>();
    assert_eq!(ids(store.find_users("u2", 10).await.unwrap()), ["u2"]);
    assert_eq!(
        ids(store.find_users("ALI", 10).await.unwrap()),
        ["u1", "u3"]
    );
    assert_eq!(ids(store.find_users("ali", 1).await.unwrap()), ["u1"]);
    assert_eq!(ids(store.find_users("50%_", 10).await.unwrap()), ["u2"]);
    assert_eq!(ids(store.find_users("0%", 10).await.unwrap()), ["u2"]);
    // Wildcards are literal: only the name containing "%" / "_" matches.
    assert_eq!(ids(store.find_users("%", 10).await.unwrap()), ["u2"]);
    assert_eq!(ids(store.find_users("_", 10).await.unwrap()), ["u2"]);
    assert!(store.find_users("nobody", 10).await.unwrap().is_empty());
    assert_eq!(
        ids(store.find_users("", 10).await.unwrap()),
        ["u1", "u2", "u3", "u4"]
    );
    assert_eq!(store.get_user("nobody").await.unwrap(), None);

    assert!(store.set_user_disabled("u1", Some(NOW + 5)).await.unwrap());
    assert_eq!(
        store.get_user("u1").await.unwrap().unwrap().disabled_at,
        Some(NOW + 5)
    );
    assert!(store.set_user_disabled("u1", None).await.unwrap());
    assert_eq!(
        store.get_user("u1").await.unwrap().unwrap().disabled_at,
        None
    );
    assert!(!store.set_user_disabled("nobody", Some(NOW)).await.unwrap());

    let ident = store
        .get_identity("wechat-web", "o1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ident.user_id, "u1");
    assert_eq!(ident.profile, json!({ "nickname": "o1" }));
    assert!(store.delete_identity("wechat-web", "o1").await.unwrap());
    assert!(!store.delete_identity("wechat-web", "o1").await.unwrap());
    assert_eq!(store.get_identity("wechat-web", "o1").await.unwrap(), None);
    assert!(store.list_identities("u1").await.unwrap().is_empty());
    assert!(store.get_user("u1").await.unwrap().is_some());
}

// ---------------------------------------------------------------- clients, requests, flows

async fn clients_insert_get_list_delete(store: Store) {
    let a = ClientRow {
        id: "b-app".into(),
        secret_hash: Some("$argon2id$...".into()),
        metadata: json!({ "redirect_uris": ["https://b.example/cb"] }),
        created_at: NOW,
        previous_secret_hash: None,
        previous_secret_expires_at: None,
        updated_at: NOW,
    };
    let b = ClientRow {
        id: "a-app".into(),
        secret_hash: None,
        metadata: json!({}),
        created_at: NOW,
        previous_secret_hash: Some("old".into()),
        previous_secret_expires_at: Some(NOW + 60),
        updated_at: NOW + 1,
    };
    store.insert_client(a.clone()).await.unwrap();
    store.insert_client(b.clone()).await.unwrap();
    let dup = store.insert_client(a.clone()).await.unwrap_err();
    assert!(matches!(dup, StoreError::Conflict(_)), "{dup:?}");
    assert_eq!(store.get_client("b-app").await.unwrap(), Some(a.clone()));
    assert_eq!(store.get_client("nope").await.unwrap(), None);
    assert_eq!(store.list_clients().await.unwrap(), [b.clone(), a]);
    assert!(store.delete_client("b-app").await.unwrap());
    assert!(!store.delete_client("b-app").await.unwrap());
    assert_eq!(store.list_clients().await.unwrap(), [b]);
}

/// Creating, replacing and removing a client each write their audit event in
/// the same transaction; a refused change writes neither.
async fn client_changes_are_written_with_their_audit_event_or_not_at_all(store: Store) {
    let events = |name: &'static str| {
        let store = store.clone();
        async move {
            store
                .find_audit(AuditFilter {
                    events: vec![name.into()],
                    limit: 50,
                    ..Default::default()
                })
                .await
                .unwrap()
                .len()
        }
    };
    let row = ClientRow {
        id: "app".into(),
        secret_hash: Some("hash-1".into()),
        metadata: json!({ "redirect_uris": ["https://app.example/cb"] }),
        created_at: NOW,
        previous_secret_hash: None,
        previous_secret_expires_at: None,
        updated_at: NOW,
    };
    store
        .create_client(row.clone(), audit(NOW, "admin_client_create", None))
        .await
        .unwrap();
    let dup = store
        .create_client(row.clone(), audit(NOW, "admin_client_create", None))
        .await
        .unwrap_err();
    assert!(dup.is_conflict(), "{dup:?}");
    assert_eq!(events("admin_client_create").await, 1);

    let mut rotated = row.clone();
    rotated.secret_hash = Some("hash-2".into());
    rotated.previous_secret_hash = Some("hash-1".into());
    rotated.previous_secret_expires_at = Some(NOW + 60);
    rotated.updated_at = NOW + 1;
    assert_eq!(
        store
            .replace_client(
                rotated.clone(),
                NOW,
                audit(NOW, "admin_client_update", None)
            )
            .await
            .unwrap(),
        ClientReplace::Replaced
    );
    assert_eq!(
        store.get_client("app").await.unwrap(),
        Some(rotated.clone())
    );
    // Written from a stale read: refused, nothing written.
    let mut stale = row.clone();
    stale.metadata = json!({});
    stale.updated_at = NOW + 2;
    assert_eq!(
        store
            .replace_client(stale, NOW, audit(NOW, "admin_client_update", None))
            .await
            .unwrap(),
        ClientReplace::ChangedMeanwhile
    );
    assert_eq!(
        store.get_client("app").await.unwrap(),
        Some(rotated.clone())
    );
    assert_eq!(events("admin_client_update").await, 1);

    // Removing it revokes its grants and drops its codes; another app's stay.
    issue_family(&store, "f1", "rt1", family("f1", "u1", None, NOW)).await;
    let mut other = family("f2", "u1", None, NOW);
    other.client_id = "other".into();
    issue_family(&store, "f2", "rt2", other).await;
    store.insert_code(code("c-live", NOW), None).await.unwrap();
    let removed = store
        .remove_client("app", "client_deleted", NOW + 5, |r: &ClientRemoved| {
            let mut e = audit(NOW + 5, "admin_client_delete", None);
            e.detail = json!({ "grants_revoked": r.grants_revoked });
            e
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(removed.grants_revoked, 1);
    // Every code the helpers made names "app" (even the one f2 came from).
    assert_eq!(
        removed.codes_removed, 3,
        "the redeemed ones and the live one"
    );
    let f1 = store.get_family("f1").await.unwrap().unwrap();
    assert_eq!(f1.revoked_at, Some(NOW + 5));
    assert_eq!(f1.revoked_reason.as_deref(), Some("client_deleted"));
    assert_eq!(
        store.get_family("f2").await.unwrap().unwrap().revoked_at,
        None
    );
    assert_eq!(store.get_code("c-live").await.unwrap(), None);
    assert_eq!(store.get_client("app").await.unwrap(), None);
    assert_eq!(events("admin_client_delete").await, 1);
    // Gone: nothing more is written.
    assert!(store
        .remove_client("app", "client_deleted", NOW + 6, |_| audit(
            NOW,
            "admin_client_delete",
            None
        ))
        .await
        .unwrap()
        .is_none());
    rotated.updated_at = NOW + 9;
    assert_eq!(
        store
            .replace_client(rotated, NOW + 1, audit(NOW, "admin_client_update", None))
            .await
            .unwrap(),
        ClientReplace::Gone
    );
    assert_eq!(events("admin_client_delete").await, 1);
    assert_eq!(events("admin_client_update").await, 1);
}

async fn expired_auth_requests_are_hidden(store: Store) {
    let r = auth_request("ar1", NOW, 600);
    store.insert_auth_request(r.clone()).await.unwrap();
    assert!(store
        .insert_auth_request(r.clone())
        .await
        .unwrap_err()
        .is_conflict());
    assert_eq!(
        store.get_auth_request("ar1", NOW).await.unwrap(),
        Some(r.clone())
    );
    assert_eq!(
        store.get_auth_request("ar1", NOW + 599).await.unwrap(),
        Some(r)
    );
    assert_eq!(
        store.get_auth_request("ar1", NOW + 600).await.unwrap(),
        None
    );
    assert_eq!(store.get_auth_request("nope", NOW).await.unwrap(), None);
    store.delete_auth_request("ar1").await.unwrap();
    store.delete_auth_request("ar1").await.unwrap();
    assert_eq!(store.get_auth_request("ar1", NOW).await.unwrap(), None);
}

async fn auth_request_is_taken_once(store: Store) {
    let r = auth_request("par1", NOW, 60);
    store.insert_auth_request(r.clone()).await.unwrap();
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let s = store.clone();
            tokio::spawn(async move { s.take_auth_request("par1", NOW + 5).await.unwrap() })
        })
        .collect();
    let mut taken = Vec::new();
    for t in tasks {
        taken.extend(t.await.unwrap());
    }
    assert_eq!(taken, [r], "exactly one caller gets the request");
    assert_eq!(store.get_auth_request("par1", NOW + 5).await.unwrap(), None);
    // An expired request is not handed out (and stays for the collector).
    store
        .insert_auth_request(auth_request("par2", NOW, 60))
        .await
        .unwrap();
    assert_eq!(
        store.take_auth_request("par2", NOW + 60).await.unwrap(),
        None
    );
    assert_eq!(store.take_auth_request("nope", NOW).await.unwrap(), None);
}

async fn flow_is_claimed_once_and_never_when_expired(store: Store) {
    store
        .insert_auth_request_and_flow(auth_request("ar1", NOW, 600), flow("s1", NOW, 600))
        .await
        .unwrap();
    // The caller's check sees the flow first; a refusal writes nothing.
    let refused = store
        .claim_flow("s1", NOW + 5, |f| f.browser_hash == "another browser")
        .await
        .unwrap();
    assert!(
        matches!(&refused, FlowClaim::Refused(f) if f.used_at.is_none()),
        "{refused:?}"
    );
    assert_eq!(store.get_flow("s1").await.unwrap().unwrap().used_at, None);
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let s = store.clone();
            tokio::spawn(async move {
                s.claim_flow("s1", NOW + 5, |f| f.browser_hash == "bh")
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut claimed = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            FlowClaim::Claimed { flow, request } => claimed.push((flow, request)),
            FlowClaim::Spent(f) => assert_eq!(f.state, "s1"),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(claimed.len(), 1, "exactly one caller claims the flow");
    let (f, request) = &claimed[0];
    assert_eq!(f.used_at, Some(NOW + 5));
    assert_eq!(request.as_ref(), Some(&auth_request("ar1", NOW, 600)));
    let f = store.get_flow("s1").await.unwrap().unwrap();
    assert_eq!(f.used_at, Some(NOW + 5));
    assert_eq!(f.outcome, None);
    store
        .set_flow_outcome("s1", json!({ "error": "user_cancelled" }))
        .await
        .unwrap();
    assert_eq!(
        store.get_flow("s1").await.unwrap().unwrap().outcome,
        Some(json!({ "error": "user_cancelled" }))
    );

    // Expired: not claimed, not marked. A live flow whose request expired is
    // claimed without it.
    store
        .insert_auth_request_and_flow(
            auth_request("ar2", NOW, 60),
            FlowRow {
                auth_request_id: "ar2".into(),
                ..flow("s2", NOW, 600)
            },
        )
        .await
        .unwrap();
    assert!(
        matches!(
            store.claim_flow("s2", NOW + 600, |_| true).await.unwrap(),
            FlowClaim::Spent(_)
        ),
        "expired flow claimed"
    );
    assert_eq!(store.get_flow("s2").await.unwrap().unwrap().used_at, None);
    let late = store.claim_flow("s2", NOW + 60, |_| true).await.unwrap();
    assert!(
        matches!(&late, FlowClaim::Claimed { request: None, flow } if flow.used_at == Some(NOW + 60)),
        "{late:?}"
    );
    assert_eq!(
        store.claim_flow("nope", NOW, |_| true).await.unwrap(),
        FlowClaim::Unknown
    );
    assert_eq!(store.get_flow("nope").await.unwrap(), None);
}

// ---------------------------------------------------------------- codes and refresh tokens

async fn parallel_redemptions_of_one_code_have_one_winner(store: Store) {
    store.insert_code(code("c1", NOW), None).await.unwrap();
    assert!(store
        .insert_code(code("c1", NOW), None)
        .await
        .unwrap_err()
        .is_conflict());
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let s = store.clone();
            tokio::spawn(async move {
                s.redeem_code(
                    "c1",
                    family(&format!("fam{i}"), "u1", None, NOW + 1),
                    Some(format!("rt{i}")),
                    NOW + 1,
                )
                .await
                .unwrap()
            })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    let winners: Vec<_> = results
        .iter()
        .filter_map(|r| match r {
            Redeem::Won(w) => Some(w.code.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    let won = &winners[0];
    let fam = won.family_id.clone().unwrap();
    assert_eq!(won.used_at, Some(NOW + 1));
    for r in &results {
        match r {
            Redeem::Won(_) => {}
            Redeem::AlreadyUsed(c) => assert_eq!(c.family_id.as_deref(), Some(fam.as_str())),
            Redeem::Unknown => panic!("code vanished"),
        }
    }
    // Exactly one family exists, with the winner's first refresh token.
    let mut families = 0;
    for i in 0..10 {
        if let Some(f) = store.get_family(&format!("fam{i}")).await.unwrap() {
            families += 1;
            assert_eq!(f.id, fam);
            let rt = store
                .find_refresh_token(&format!("rt{i}"))
                .await
                .unwrap()
                .unwrap();
            assert_eq!((rt.family_id.as_str(), rt.used_at), (fam.as_str(), None));
        } else {
            assert_eq!(
                store.find_refresh_token(&format!("rt{i}")).await.unwrap(),
                None
            );
        }
    }
    assert_eq!(families, 1);
    assert_eq!(store.get_code("c1").await.unwrap().unwrap(), *won);
    let again = store
        .redeem_code("c1", family("famX", "u1", None, NOW), None, NOW + 2)
        .await
        .unwrap();
    assert!(
        matches!(&again, Redeem::AlreadyUsed(c) if c.family_id.as_deref() == Some(fam.as_str()))
    );
    assert_eq!(
        store
            .redeem_code("nope", family("famY", "u1", None, NOW), None, NOW)
            .await
            .unwrap(),
        Redeem::Unknown
    );
    assert_eq!(store.get_family("famY").await.unwrap(), None);
}

async fn checked_redemption_writes_nothing_when_the_check_refuses(store: Store) {
    store.insert_code(code("c1", NOW), None).await.unwrap();
    // The check sees the stored code; its refusal comes back and writes nothing.
    let refused = store
        .redeem_code_checked("c1", NOW + 1, |c| {
            Err::<(FamilyRow, Option<String>, ()), _>(format!("refused {}", c.client_id))
        })
        .await
        .unwrap();
    assert_eq!(refused, Err("refused app".to_owned()));
    assert_eq!(
        store.get_code("c1").await.unwrap().unwrap(),
        code("c1", NOW)
    );
    // Accepted: redeemed with the family the check made, as redeem_code does.
    let won = store
        .redeem_code_checked("c1", NOW + 2, |c| {
            Ok::<_, String>((
                family("fam1", &c.user_id, None, NOW + 2),
                Some("rt1".into()),
                "accepted with",
            ))
        })
        .await
        .unwrap();
    let Ok(Some((Redeem::Won(won), "accepted with"))) = won else {
        panic!("{won:?}")
    };
    // The code as the winner sees it is the code as stored now.
    assert_eq!(store.get_code("c1").await.unwrap().unwrap(), won.code);
    assert_eq!(
        (won.code.used_at, won.code.family_id.as_deref()),
        (Some(NOW + 2), Some("fam1"))
    );
    assert_eq!(won.user, None, "no user u1 in this store");
    assert_eq!(
        store
            .find_refresh_token("rt1")
            .await
            .unwrap()
            .unwrap()
            .family_id,
        "fam1"
    );
    // A used code is handed to the check as used; accepted anyway, it is not won.
    let again = store
        .redeem_code_checked("c1", NOW + 3, |c| {
            assert_eq!(c.used_at, Some(NOW + 2));
            Ok::<_, String>((family("fam2", "u1", None, NOW + 3), None, ()))
        })
        .await
        .unwrap();
    assert!(
        matches!(&again, Ok(Some((Redeem::AlreadyUsed(c), ()))) if c.family_id.as_deref() == Some("fam1"))
    );
    assert_eq!(store.get_family("fam2").await.unwrap(), None);
    // A missing code is not checked.
    assert_eq!(
        store
            .redeem_code_checked(
                "nope",
                NOW,
                |_| -> Result<(FamilyRow, Option<String>, ()), String> {
                    panic!("checked a missing code")
                }
            )
            .await
            .unwrap(),
        Ok(None)
    );
}

async fn refresh_token_rotates_and_replay_revokes_family(store: Store) {
    let grace = 30;
    let idle = 7 * DAY;
    issue_family(&store, "f1", "rt1", family("f1", "u1", None, NOW)).await;

    let r = store
        .rotate_refresh_token("rt1", "rt2", grace, idle, NOW + 100)
        .await
        .unwrap();
    let Rotation::Rotated(f) = r else {
        panic!("{r:?}")
    };
    assert_eq!(
        (f.id.as_str(), f.last_used_at, f.revoked_at),
        ("f1", NOW + 100, None)
    );
    assert_eq!(
        store
            .find_refresh_token("rt1")
            .await
            .unwrap()
            .unwrap()
            .used_at,
        Some(NOW + 100)
    );
    let rt2 = store.find_refresh_token("rt2").await.unwrap().unwrap();
    assert_eq!(
        (rt2.family_id.as_str(), rt2.created_at, rt2.used_at),
        ("f1", NOW + 100, None)
    );

    // The response was lost; the client retries rt1 within the grace window and
    // gets the same successor.
    let r = store
        .rotate_refresh_token("rt1", "rt2", grace, idle, NOW + 100 + grace)
        .await
        .unwrap();
    assert!(matches!(r, Rotation::Rotated(_)), "{r:?}");

    // rt1 comes back after the grace window: replay, the whole family is revoked.
    let r = store
        .rotate_refresh_token("rt1", "rt3", grace, idle, NOW + 100 + grace + 1)
        .await
        .unwrap();
    let Rotation::Replayed(f) = r else {
        panic!("{r:?}")
    };
    assert_eq!(f.revoked_at, Some(NOW + 100 + grace + 1));
    assert_eq!(f.revoked_reason.as_deref(), Some("refresh_token_replayed"));
    assert_eq!(store.find_refresh_token("rt3").await.unwrap(), None);
    // The children are dead too.
    let r = store
        .rotate_refresh_token("rt2", "rt4", grace, idle, NOW + 200)
        .await
        .unwrap();
    assert!(matches!(&r, Rotation::Revoked(f) if f.id == "f1"), "{r:?}");
    assert_eq!(store.find_refresh_token("rt4").await.unwrap(), None);
    assert_eq!(
        store
            .find_refresh_token("rt2")
            .await
            .unwrap()
            .unwrap()
            .used_at,
        None
    );

    assert_eq!(
        store
            .rotate_refresh_token("nope", "rt5", grace, idle, NOW)
            .await
            .unwrap(),
        Rotation::Unknown
    );
}

async fn refresh_family_expires_when_idle_or_past_absolute_lifetime(store: Store) {
    let idle = DAY;
    issue_family(&store, "idle", "rtI", family("idle", "u1", None, NOW)).await;
    // Exactly at the idle limit still rotates ...
    let r = store
        .rotate_refresh_token("rtI", "rtI2", 0, idle, NOW + idle)
        .await
        .unwrap();
    assert!(matches!(r, Rotation::Rotated(_)), "{r:?}");
    // ... one second past it does not, and nothing is written.
    let r = store
        .rotate_refresh_token("rtI2", "rtI3", 0, idle, NOW + 2 * idle + 1)
        .await
        .unwrap();
    assert!(
        matches!(&r, Rotation::Expired(f) if f.id == "idle" && f.revoked_at.is_none()),
        "{r:?}"
    );
    assert_eq!(store.find_refresh_token("rtI3").await.unwrap(), None);

    let mut short = family("abs", "u1", None, NOW);
    short.absolute_expires_at = NOW + 1000;
    issue_family(&store, "abs", "rtA", short).await;
    let r = store
        .rotate_refresh_token("rtA", "rtA2", 0, idle, NOW + 999)
        .await
        .unwrap();
    assert!(matches!(r, Rotation::Rotated(_)), "{r:?}");
    let r = store
        .rotate_refresh_token("rtA2", "rtA3", 0, idle, NOW + 1000)
        .await
        .unwrap();
    assert!(matches!(&r, Rotation::Expired(f) if f.id == "abs"), "{r:?}");
    assert_eq!(
        store
            .find_refresh_token("rtA2")
            .await
            .unwrap()
            .unwrap()
            .used_at,
        None
    );
}

/// Creates user `id` (signed in once through the dev connector), for refresh grants.
async fn make_user(store: &Store, id: &str) {
    store
        .resolve_login(
            login("dev", &format!("o-{id}"), None),
            FirstLogin::Create,
            id.into(),
            NOW,
        )
        .await
        .unwrap();
}

/// How many refresh-token rows family `id` (the only family expiring then) has:
/// garbage collection after its absolute lifetime deletes and counts them.
async fn token_rows_at_expiry(store: &Store, f: &FamilyRow) -> u64 {
    let report = store
        .collect_garbage(f.absolute_expires_at, 365 * DAY)
        .await
        .unwrap();
    assert_eq!(report.families, 1, "{report:?}");
    report.refresh_tokens
}

async fn reuse_within_grace_gets_the_same_successor_and_stores_nothing(store: Store) {
    make_user(&store, "u1").await;
    let f = family("f1", "u1", None, NOW);
    issue_family(&store, "f1", "rt1", f.clone()).await;
    let r = store
        .rotate_refresh_token("rt1", "rt2", 10, DAY, NOW + 1)
        .await
        .unwrap();
    assert!(matches!(r, Rotation::Rotated(_)), "{r:?}");
    let rt1 = store.find_refresh_token("rt1").await.unwrap().unwrap();
    assert_eq!(
        (rt1.used_at, rt1.successor_hash.as_deref()),
        (Some(NOW + 1), Some("rt2"))
    );
    // A lost response: the same token again, at the edge of the window, by the
    // store API and by the grant the server uses. The same successor stands.
    let r = store
        .rotate_refresh_token("rt1", "rt2", 10, DAY, NOW + 11)
        .await
        .unwrap();
    assert!(
        matches!(&r, Rotation::Rotated(f) if f.last_used_at == NOW + 11 && f.revoked_at.is_none()),
        "{r:?}"
    );
    let r = store
        .refresh_grant("rt1", "rt2", "app", None, 10, DAY, NOW + 11)
        .await
        .unwrap();
    assert!(matches!(r, RefreshOutcome::Rotated(_)), "{r:?}");
    let rt2 = store.find_refresh_token("rt2").await.unwrap().unwrap();
    assert_eq!((rt2.created_at, rt2.used_at), (NOW + 1, None));
    // Asking for any other successor gets nothing, and stores nothing.
    let r = store
        .rotate_refresh_token("rt1", "rt2b", 10, DAY, NOW + 11)
        .await
        .unwrap();
    assert!(
        matches!(&r, Rotation::OtherSuccessor(f) if f.id == "f1"),
        "{r:?}"
    );
    let r = store
        .refresh_grant("rt1", "rt2c", "app", None, 10, DAY, NOW + 11)
        .await
        .unwrap();
    assert!(matches!(r, RefreshOutcome::OtherSuccessor(_)), "{r:?}");
    assert_eq!(store.find_refresh_token("rt2b").await.unwrap(), None);
    assert_eq!(store.find_refresh_token("rt2c").await.unwrap(), None);
    // The successor refreshes normally.
    let r = store
        .refresh_grant("rt2", "rt3", "app", None, 10, DAY, NOW + 12)
        .await
        .unwrap();
    assert!(matches!(r, RefreshOutcome::Rotated(_)), "{r:?}");
    // After the window the first token is a replay: the family is revoked, and
    // its newest token dies with it.
    let r = store
        .rotate_refresh_token("rt1", "rt2", 10, DAY, NOW + 12)
        .await
        .unwrap();
    assert!(
        matches!(&r, Rotation::Replayed(f) if f.revoked_reason.as_deref() == Some("refresh_token_replayed")),
        "{r:?}"
    );
    let r = store
        .refresh_grant("rt3", "rt4", "app", None, 10, DAY, NOW + 13)
        .await
        .unwrap();
    assert!(matches!(r, RefreshOutcome::Revoked(_)), "{r:?}");
    // One chain, rt1 → rt2 → rt3: three rows, nothing else.
    assert_eq!(token_rows_at_expiry(&store, &f).await, 3);
}

/// Runs `n` copies of `task` at once, each with its own handle on the store and
/// its index, and returns their results in index order.
async fn at_once<T, Fut>(store: &Store, n: usize, task: impl Fn(Store, usize) -> Fut) -> Vec<T>
where
    T: Send + 'static,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let tasks: Vec<_> = (0..n)
        .map(|i| tokio::spawn(task(store.clone(), i)))
        .collect();
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

async fn parallel_rotations_within_grace_share_one_successor(store: Store) {
    make_user(&store, "u1").await;
    let f = family("f1", "u1", None, NOW);
    issue_family(&store, "f1", "rt0", f.clone()).await;
    // Twenty refreshes of one token at once; the server derives the successor
    // from the token, so all ask for the same one. Half go through the grant the
    // server uses, half through the plain rotation.
    let families = at_once(&store, 20, |s, i| async move {
        if i % 2 == 0 {
            match s
                .refresh_grant("rt0", "rt1", "app", None, 10, DAY, NOW + 10)
                .await
                .unwrap()
            {
                RefreshOutcome::Rotated(g) => g.family,
                other => panic!("{other:?}"),
            }
        } else {
            match s
                .rotate_refresh_token("rt0", "rt1", 10, DAY, NOW + 10)
                .await
                .unwrap()
            {
                Rotation::Rotated(f) => f,
                other => panic!("{other:?}"),
            }
        }
    })
    .await;
    for f in families {
        assert_eq!((f.id.as_str(), f.revoked_at), ("f1", None));
    }
    let rt0 = store.find_refresh_token("rt0").await.unwrap().unwrap();
    assert_eq!(rt0.successor_hash.as_deref(), Some("rt1"));
    let rt1 = store.find_refresh_token("rt1").await.unwrap().unwrap();
    assert_eq!((rt1.family_id.as_str(), rt1.used_at), ("f1", None));
    // The successor then refreshes normally; the chain is rt0 → rt1 → rt2.
    let r = store
        .refresh_grant("rt1", "rt2", "app", None, 10, DAY, NOW + 11)
        .await
        .unwrap();
    assert!(matches!(r, RefreshOutcome::Rotated(_)), "{r:?}");
    assert_eq!(token_rows_at_expiry(&store, &f).await, 3);
}

async fn parallel_rotations_asking_for_different_successors_fork_nothing(store: Store) {
    let f = family("f1", "u1", None, NOW);
    issue_family(&store, "f1", "rt0", f.clone()).await;
    // Whatever callers ask (say, after a master key change), one parent gets one
    // successor: the first rotation's. The others are refused and store nothing.
    let answers = at_once(&store, 20, |s, i| async move {
        let asked = format!("new{i}");
        let r = s
            .rotate_refresh_token("rt0", &asked, 10, DAY, NOW + 10)
            .await
            .unwrap();
        (asked, r)
    })
    .await;
    let mut rotated = Vec::new();
    for (asked, r) in answers {
        match r {
            Rotation::Rotated(_) => rotated.push(asked),
            Rotation::OtherSuccessor(f) => assert_eq!(f.revoked_at, None),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(rotated.len(), 1, "{rotated:?}");
    let rt0 = store.find_refresh_token("rt0").await.unwrap().unwrap();
    assert_eq!(rt0.successor_hash.as_ref(), rotated.first());
    for i in 0..20 {
        let asked = format!("new{i}");
        let stored = store.find_refresh_token(&asked).await.unwrap();
        assert_eq!(stored.is_some(), rotated.contains(&asked), "{asked}");
    }
    assert_eq!(token_rows_at_expiry(&store, &f).await, 2);
}

async fn reuse_within_grace_after_the_successor_was_used_revokes_the_family(store: Store) {
    make_user(&store, "u1").await;
    issue_family(&store, "f1", "rt1", family("f1", "u1", None, NOW)).await;
    for (from, to, at) in [("rt1", "rt2", NOW + 1), ("rt2", "rt3", NOW + 2)] {
        let r = store
            .refresh_grant(from, to, "app", None, 10, DAY, at)
            .await
            .unwrap();
        assert!(matches!(r, RefreshOutcome::Rotated(_)), "{r:?}");
    }
    // rt1 again, still inside its window, but the chain has moved on past rt2:
    // two parties hold this grant. It ends, and rt1 gets nothing.
    let r = store
        .refresh_grant("rt1", "rt2", "app", None, 10, DAY, NOW + 3)
        .await
        .unwrap();
    let RefreshOutcome::Replayed(f) = r else {
        panic!("{r:?}")
    };
    assert_eq!(
        (f.revoked_at, f.revoked_reason.as_deref()),
        (Some(NOW + 3), Some("refresh_token_replayed"))
    );
    for (token, next) in [("rt3", "rt4"), ("rt2", "rt3")] {
        let r = store
            .refresh_grant(token, next, "app", None, 10, DAY, NOW + 4)
            .await
            .unwrap();
        assert!(matches!(r, RefreshOutcome::Revoked(_)), "{token}: {r:?}");
    }
    assert_eq!(store.find_refresh_token("rt4").await.unwrap(), None);
}

async fn refreshable_says_what_a_refresh_grant_would_do(store: Store) {
    make_user(&store, "u-rf").await;
    issue_family(&store, "f1", "rt1", family("f1", "u-rf", None, NOW)).await;
    let active = |store: Store, token: &'static str, next: &'static str, client, at| async move {
        store
            .refreshable(token, next, client, 10, DAY, at)
            .await
            .unwrap()
            .map(|(rt, f)| (rt.token_hash, f.id))
    };
    let yes = |t: &str| Some((t.to_owned(), "f1".to_owned()));
    assert_eq!(
        active(store.clone(), "rt1", "rt2", "app", NOW).await,
        yes("rt1")
    );
    assert_eq!(
        active(store.clone(), "rt1", "rt2", "other-app", NOW).await,
        None
    );
    assert_eq!(active(store.clone(), "nope", "x", "app", NOW).await, None);
    // Asking changes nothing.
    assert_eq!(
        store
            .find_refresh_token("rt1")
            .await
            .unwrap()
            .unwrap()
            .used_at,
        None
    );
    store
        .refresh_grant("rt1", "rt2", "app", None, 10, DAY, NOW + 1)
        .await
        .unwrap();
    // Inside the window, for its own successor only; not after it.
    assert_eq!(
        active(store.clone(), "rt1", "rt2", "app", NOW + 11).await,
        yes("rt1")
    );
    assert_eq!(
        active(store.clone(), "rt1", "rt2x", "app", NOW + 11).await,
        None
    );
    assert_eq!(
        active(store.clone(), "rt1", "rt2", "app", NOW + 12).await,
        None
    );
    assert_eq!(
        active(store.clone(), "rt2", "rt3", "app", NOW + 12).await,
        yes("rt2")
    );
    // A disabled user's tokens are refused at /token, so inactive here.
    store
        .set_user_disabled("u-rf", Some(NOW + 2))
        .await
        .unwrap();
    assert_eq!(
        active(store.clone(), "rt2", "rt3", "app", NOW + 2).await,
        None
    );
    store.set_user_disabled("u-rf", None).await.unwrap();
    // Idle: exactly at the limit still refreshes, one second later not.
    assert_eq!(
        active(store.clone(), "rt2", "rt3", "app", NOW + 1 + DAY).await,
        yes("rt2")
    );
    assert_eq!(
        active(store.clone(), "rt2", "rt3", "app", NOW + 2 + DAY).await,
        None
    );
    // Once the successor is used, the first token is inactive even inside its window.
    store
        .refresh_grant("rt2", "rt3", "app", None, 10, DAY, NOW + 3)
        .await
        .unwrap();
    assert_eq!(
        active(store.clone(), "rt1", "rt2", "app", NOW + 4).await,
        None
    );
    // Revoked: nothing of the family is active.
    store.revoke_family("f1", "admin", NOW + 5).await.unwrap();
    assert_eq!(
        active(store.clone(), "rt3", "rt4", "app", NOW + 5).await,
        None
    );
}

async fn revocations_by_user_and_session(store: Store) {
    issue_family(&store, "a", "rta", family("a", "u1", Some("s1"), NOW)).await;
    issue_family(&store, "b", "rtb", family("b", "u1", Some("s2"), NOW)).await;
    issue_family(&store, "c", "rtc", family("c", "u2", Some("s1"), NOW)).await;
    issue_family(&store, "d", "rtd", family("d", "u2", None, NOW)).await;

    assert_eq!(
        store
            .revoke_families_for_session("s1", "logout", NOW + 1)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        store
            .revoke_families_for_session("s1", "logout", NOW + 2)
            .await
            .unwrap(),
        0
    );
    let a = store.get_family("a").await.unwrap().unwrap();
    assert_eq!(
        (a.revoked_at, a.revoked_reason.as_deref()),
        (Some(NOW + 1), Some("logout"))
    );

    assert_eq!(
        store
            .revoke_families_for_user("u1", "user_disabled", NOW + 3)
            .await
            .unwrap(),
        1
    );
    let b = store.get_family("b").await.unwrap().unwrap();
    assert_eq!(b.revoked_reason.as_deref(), Some("user_disabled"));
    // An already revoked family keeps its first reason.
    assert_eq!(
        store
            .get_family("a")
            .await
            .unwrap()
            .unwrap()
            .revoked_reason
            .as_deref(),
        Some("logout")
    );

    assert!(store.revoke_family("d", "admin", NOW + 4).await.unwrap());
    assert!(!store.revoke_family("d", "admin", NOW + 5).await.unwrap());
    assert!(!store.revoke_family("nope", "admin", NOW + 5).await.unwrap());
    let r = store
        .rotate_refresh_token("rtd", "rtd2", 60, DAY, NOW + 6)
        .await
        .unwrap();
    assert!(matches!(r, Rotation::Revoked(_)), "{r:?}");
}

// ---------------------------------------------------------------- keys, sessions, audit

async fn concurrent_key_inserts_have_one_winner(store: Store) {
    let (a, b) = tokio::join!(
        tokio::spawn({
            let s = store.clone();
            async move { s.insert_key(key("kid-a", 1, NOW)).await.unwrap() }
        }),
        tokio::spawn({
            let s = store.clone();
            async move { s.insert_key(key("kid-b", 1, NOW)).await.unwrap() }
        }),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a ^ b, "exactly one insert wins: {a} {b}");
    let keys = store.list_keys().await.unwrap();
    assert_eq!(keys.len(), 1);
    let winner = if a { "kid-a" } else { "kid-b" };
    assert_eq!(keys[0], key(winner, 1, NOW));

    // A kid clash on another generation is a real conflict, not a lost race.
    let clash = store.insert_key(key(winner, 2, NOW)).await.unwrap_err();
    assert!(clash.is_conflict(), "{clash:?}");
    assert!(store.insert_key(key("kid-2", 2, NOW)).await.unwrap());
    store
        .set_key_schedule(winner, Some(NOW + 10), Some(NOW + 20))
        .await
        .unwrap();
    let keys = store.list_keys().await.unwrap();
    assert_eq!(
        keys.iter().map(|k| k.generation).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(
        (keys[0].retires_at, keys[0].expires_at),
        (Some(NOW + 10), Some(NOW + 20))
    );
    store.delete_key(winner).await.unwrap();
    store.delete_key(winner).await.unwrap();
    assert_eq!(store.list_keys().await.unwrap(), [key("kid-2", 2, NOW)]);
}

async fn sessions_touch_and_end(store: Store) {
    store
        .insert_session(session("s1", "u1", NOW))
        .await
        .unwrap();
    store
        .insert_session(session("s2", "u1", NOW))
        .await
        .unwrap();
    store
        .insert_session(session("s3", "u1", NOW))
        .await
        .unwrap();
    store
        .insert_session(session("s4", "u2", NOW))
        .await
        .unwrap();
    assert!(store
        .insert_session(session("s1", "u1", NOW))
        .await
        .unwrap_err()
        .is_conflict());

    store.touch_session("s1", NOW + 50).await.unwrap();
    assert_eq!(
        store.get_session("s1").await.unwrap().unwrap().last_seen_at,
        NOW + 50
    );
    assert!(store.end_session("s1", NOW + 60).await.unwrap());
    assert!(!store.end_session("s1", NOW + 70).await.unwrap());
    store.touch_session("s1", NOW + 80).await.unwrap();
    let s1 = store.get_session("s1").await.unwrap().unwrap();
    assert_eq!((s1.ended_at, s1.last_seen_at), (Some(NOW + 60), NOW + 50));

    assert_eq!(
        store.end_sessions_for_user("u1", NOW + 90).await.unwrap(),
        2
    );
    assert_eq!(
        store.end_sessions_for_user("u1", NOW + 91).await.unwrap(),
        0
    );
    assert_eq!(
        store.get_session("s2").await.unwrap().unwrap().ended_at,
        Some(NOW + 90)
    );
    assert_eq!(
        store.get_session("s4").await.unwrap().unwrap().ended_at,
        None
    );
    assert_eq!(store.get_session("nope").await.unwrap(), None);

    // With its account in one read: none while the account does not exist.
    assert_eq!(store.get_session_and_user("s4").await.unwrap(), None);
    make_user(&store, "u2").await;
    let (s4, u2) = store.get_session_and_user("s4").await.unwrap().unwrap();
    assert_eq!((s4, u2.id.as_str()), (session("s4", "u2", NOW), "u2"));
    assert_eq!(store.get_session_and_user("nope").await.unwrap(), None);
}

async fn audit_lists_newest_first_with_filter_and_paging(store: Store) {
    for (i, user) in [Some("u1"), Some("u2"), None, Some("u1"), Some("u1")]
        .into_iter()
        .enumerate()
    {
        store
            .append_audit(audit(NOW + i as i64, &format!("e{i}"), user))
            .await
            .unwrap();
    }
    let all = store.list_audit(None, 100, None).await.unwrap();
    let names = |v: &[idbridge_store::AuditRecord]| {
        v.iter().map(|r| r.event.event.clone()).collect::<Vec<_>>()
    };
    assert_eq!(names(&all), ["e4", "e3", "e2", "e1", "e0"]);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id));
    assert_eq!(all[4].event, audit(NOW, "e0", Some("u1")));

    let u1 = store.list_audit(Some("u1"), 2, None).await.unwrap();
    assert_eq!(names(&u1), ["e4", "e3"]);
    let next = store
        .list_audit(Some("u1"), 2, Some(u1[1].id))
        .await
        .unwrap();
    assert_eq!(names(&next), ["e0"]);
    let page = store.list_audit(None, 2, Some(all[1].id)).await.unwrap();
    assert_eq!(names(&page), ["e2", "e1"]);
    assert!(store
        .list_audit(Some("nobody"), 10, None)
        .await
        .unwrap()
        .is_empty());
}

// ---------------------------------------------------------------- garbage collection

async fn garbage_collection_removes_exactly_expired_rows(store: Store) {
    let now = NOW + 10 * DAY;
    // auth requests / flows: dead once expires_at <= now
    store
        .insert_auth_request(auth_request("ar-dead", now - 600, 600))
        .await
        .unwrap();
    store
        .insert_auth_request(auth_request("ar-live", now - 600, 601))
        .await
        .unwrap();
    store
        .insert_flow(flow("fl-dead", now - 600, 600))
        .await
        .unwrap();
    store
        .insert_flow(flow("fl-live", now - 600, 601))
        .await
        .unwrap();
    // codes: kept one day past expiry
    store
        .insert_code(code("code-dead", now - DAY - 61), None)
        .await
        .unwrap(); // expired now-DAY-1
    store
        .insert_code(code("code-kept", now - DAY - 60), None)
        .await
        .unwrap(); // expired exactly now-DAY
                   // families (and their tokens): dead once absolute_expires_at <= now
    let mut dead = family("fam-dead", "u1", None, now - 30 * DAY);
    dead.absolute_expires_at = now;
    issue_family(&store, "fam-dead", "rt-dead", dead).await;
    store
        .rotate_refresh_token("rt-dead", "rt-dead2", 0, 365 * DAY, now - 1)
        .await
        .unwrap();
    let mut live = family("fam-live", "u1", None, now - DAY);
    live.absolute_expires_at = now + 1;
    issue_family(&store, "fam-live", "rt-live", live).await;
    // sessions: expired, or ended more than a day ago
    let mut s = session("ses-expired", "u1", now - DAY);
    s.expires_at = now;
    store.insert_session(s).await.unwrap();
    let mut s = session("ses-ended-long-ago", "u1", now - 2 * DAY);
    s.expires_at = now + DAY;
    store.insert_session(s).await.unwrap();
    store
        .end_session("ses-ended-long-ago", now - DAY - 1)
        .await
        .unwrap();
    let mut s = session("ses-ended-recently", "u1", now - 2 * DAY);
    s.expires_at = now + DAY;
    store.insert_session(s).await.unwrap();
    store
        .end_session("ses-ended-recently", now - DAY)
        .await
        .unwrap();
    store
        .insert_session(session("ses-live", "u1", now))
        .await
        .unwrap();
    // keys: dead once expires_at < now; no expiry means keep
    let mut k = key("key-dead", 1, now - 100 * DAY);
    k.expires_at = Some(now - 1);
    store.insert_key(k).await.unwrap();
    let mut k = key("key-edge", 2, now - 100 * DAY);
    k.expires_at = Some(now);
    store.insert_key(k).await.unwrap();
    store.insert_key(key("key-forever", 3, now)).await.unwrap();
    // audit: older than the retention goes
    let retention = 90 * DAY;
    store
        .append_audit(audit(now - retention - 1, "old", None))
        .await
        .unwrap();
    store
        .append_audit(audit(now - retention, "kept", None))
        .await
        .unwrap();

    let report = store.collect_garbage(now, retention).await.unwrap();
    assert_eq!(
        report,
        GcReport {
            auth_requests: 1,
            flows: 1,
            // code-dead, and the code issue_family redeemed 30 days ago for fam-dead
            codes: 2,
            families: 1,
            refresh_tokens: 2,
            sessions: 2,
            keys: 1,
            audit: 1,
            verification_codes: 0,
            failure_counters: 0,
        }
    );
    assert!(store
        .get_auth_request("ar-live", now)
        .await
        .unwrap()
        .is_some());
    assert!(store.get_flow("fl-dead").await.unwrap().is_none());
    assert!(store.get_flow("fl-live").await.unwrap().is_some());
    assert!(store.get_code("code-dead").await.unwrap().is_none());
    assert!(store.get_code("code-kept").await.unwrap().is_some());
    assert!(store.get_code("code-for-fam-dead").await.unwrap().is_none());
    assert!(store.get_code("code-for-fam-live").await.unwrap().is_some());
    assert!(store.get_family("fam-dead").await.unwrap().is_none());
    assert!(store
        .find_refresh_token("rt-dead2")
        .await
        .unwrap()
        .is_none());
    assert!(store.get_family("fam-live").await.unwrap().is_some());
    assert!(store.find_refresh_token("rt-live").await.unwrap().is_some());
    assert!(store.get_session("ses-expired").await.unwrap().is_none());
    assert!(store
        .get_session("ses-ended-long-ago")
        .await
        .unwrap()
        .is_none());
    assert!(store
        .get_session("ses-ended-recently")
        .await
        .unwrap()
        .is_some());
    assert!(store.get_session("ses-live").await.unwrap().is_some());
    let kids: Vec<_> = store
        .list_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.kid)
        .collect();
    assert_eq!(kids, ["key-edge", "key-forever"]);
    let events: Vec<_> = store
        .list_audit(None, 10, None)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.event.event)
        .collect();
    assert_eq!(events, ["kept"]);
    // A second pass finds nothing more.
    assert_eq!(
        store.collect_garbage(now, retention).await.unwrap(),
        GcReport::default()
    );
}

// ---------------------------------------------------------------- backend-specific plumbing

#[tokio::test]
async fn unsupported_urls_are_config_errors_naming_the_accepted_forms() {
    for url in ["mysql://root@localhost/idb", "idb.db", "sqlite::memory:"] {
        let err = Store::connect(url, StoreOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Config(_)), "{url}: {err:?}");
        assert!(
            err.to_string().contains("sqlite:///absolute/path.db"),
            "{err}"
        );
        assert!(err.to_string().contains("postgres://"), "{err}");
    }
}

#[tokio::test]
async fn unreachable_postgres_is_unavailable_within_the_timeout() {
    let opts = StoreOptions {
        max_connections: 2,
        connect_timeout: Duration::from_millis(500),
        ..StoreOptions::default()
    };
    let started = std::time::Instant::now();
    // Port 1 on loopback: connection refused.
    let err = Store::connect("postgres://postgres@127.0.0.1:1/test", opts)
        .await
        .unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_fails_cleanly_and_store_recovers_by_itself() {
    let db = TempDatabase::postgres();
    let opts = StoreOptions {
        max_connections: 4,
        connect_timeout: Duration::from_millis(500),
        ..StoreOptions::default()
    };
    let store = Store::connect(db.url(), opts).await.unwrap();
    assert_eq!(store.backend(), Backend::Postgres);
    store.migrate().await.unwrap();
    store
        .insert_session(session("s1", "u1", NOW))
        .await
        .unwrap();
    // Warm several pooled connections so the outage leaves dead ones in the pool.
    let warm: Vec<_> = (0..4)
        .map(|_| {
            let s = store.clone();
            tokio::spawn(async move { s.get_session("s1").await.unwrap() })
        })
        .collect();
    for t in warm {
        t.await.unwrap();
    }

    db.set_postgres_down(true);
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let read = store.get_session("s1").await.unwrap_err();
        assert!(read.is_unavailable(), "{read:?}");
        let write = store.end_session("s1", NOW + 1).await.unwrap_err();
        assert!(write.is_unavailable(), "{write:?}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }
    assert!(store.ping().await.unwrap_err().is_unavailable());

    db.set_postgres_down(false);
    // Back without a restart of the broker; what was committed before is still there and
    // the failed write did not happen.
    store.ping().await.unwrap();
    let s1 = store.get_session("s1").await.unwrap().unwrap();
    assert_eq!(s1.ended_at, None);
    assert!(store.end_session("s1", NOW + 2).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_creates_missing_directories_and_uses_wal() {
    let db = TempDatabase::sqlite();
    let url = db.url().replace("idbridge.db", "nested/deeper/idbridge.db");
    let store = Store::connect(&url, StoreOptions::default()).await.unwrap();
    assert_eq!(store.backend(), Backend::Sqlite);
    store.migrate().await.unwrap();
    store
        .insert_session(session("s1", "u1", NOW))
        .await
        .unwrap();
    let path = url.strip_prefix("sqlite://").unwrap();
    assert!(std::path::Path::new(path).is_file());
    assert!(
        std::path::Path::new(&format!("{path}-wal")).exists(),
        "no WAL file next to {path}"
    );
    // A second store on the same file (another process, say) sees the data.
    let other = Store::connect(&url, StoreOptions::default()).await.unwrap();
    assert!(other.migrate().await.unwrap().is_empty());
    assert!(other.get_session("s1").await.unwrap().is_some());
}

async fn repeat_logins_change_only_what_they_bring_and_grants_name_each_connector_once(
    store: Store,
) {
    let first = store
        .resolve_login(
            login("wechat-web", "o-1", Some("K")),
            FirstLogin::Create,
            "u-rl".into(),
            NOW,
        )
        .await
        .unwrap();
    let user = user_of(&first).clone();
    // Two more identities on the same link key: one on another connector, one more
    // on the first connector.
    for (connector, subject) in [("wechat-mp", "o-2"), ("wechat-web", "o-3")] {
        let r = store
            .resolve_login(
                login(connector, subject, Some("K")),
                FirstLogin::Create,
                "unused".into(),
                NOW,
            )
            .await
            .unwrap();
        assert_eq!(user_of(&r).id, user.id, "{connector} {subject}");
    }

    // A repeat login that brings no name, picture, locale or upstream tokens leaves
    // them as they were; what it does bring (profile, time) is written.
    let bare = NewLogin {
        name: None,
        picture: None,
        locale: None,
        upstream_tokens: None,
        profile: json!({ "nickname": "again" }),
        ..login("wechat-web", "o-1", None)
    };
    let again = store
        .resolve_login(bare, FirstLogin::Create, "unused".into(), NOW + 5)
        .await
        .unwrap();
    let after = user_of(&again).clone();
    assert_eq!(after.id, user.id);
    assert_eq!(after.name.as_deref(), Some("Name of o-1"));
    assert_eq!(after.locale.as_deref(), Some("zh_CN"));
    assert_eq!(after.updated_at, NOW + 5);
    let identity = store
        .get_identity("wechat-web", "o-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(identity.upstream_tokens, Some(vec![1, 2, 3]));
    assert_eq!(identity.profile, json!({ "nickname": "again" }));
    assert_eq!(identity.last_login_at, NOW + 5);
    assert_eq!(identity.link_key.as_deref(), Some("K"));

    // One that brings a picture and new tokens changes those, and only those.
    let pictured = NewLogin {
        name: None,
        picture: Some("https://img.example/p.png".into()),
        upstream_tokens: Some(vec![9]),
        ..login("wechat-web", "o-1", None)
    };
    let r = store
        .resolve_login(pictured, FirstLogin::Create, "unused".into(), NOW + 6)
        .await
        .unwrap();
    let after = user_of(&r).clone();
    assert_eq!(after.name.as_deref(), Some("Name of o-1"));
    assert_eq!(after.picture.as_deref(), Some("https://img.example/p.png"));
    let identity = store
        .get_identity("wechat-web", "o-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(identity.upstream_tokens, Some(vec![9]));
    let other = store
        .get_identity("wechat-mp", "o-2")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        other.upstream_tokens,
        Some(vec![1, 2, 3]),
        "other identities untouched"
    );

    // A refresh grant names each connector the user has identities with, once, sorted.
    issue_family(&store, "f-rl", "rl1", family("f-rl", &user.id, None, NOW)).await;
    let r = store
        .refresh_grant("rl1", "rl2", "app", None, 10, DAY, NOW + 7)
        .await
        .unwrap();
    let RefreshOutcome::Rotated(grant) = r else {
        panic!("{r:?}")
    };
    assert_eq!(grant.linked_connectors, ["wechat-mp", "wechat-web"]);
    assert_eq!(
        grant.user.picture.as_deref(),
        Some("https://img.example/p.png")
    );
}

async fn refresh_grant_checks_client_scope_and_user_before_rotating(store: Store) {
    let created = store
        .resolve_login(
            login("wechat-web", "o-rg", None),
            FirstLogin::Create,
            "u-rg".into(),
            NOW,
        )
        .await
        .unwrap();
    let user = user_of(&created).clone();
    store
        .resolve_login(
            login("dev", "rg", None),
            FirstLogin::Create,
            "unused".into(),
            NOW,
        )
        .await
        .unwrap();
    issue_family(&store, "f-rg", "rt1", family("f-rg", &user.id, None, NOW)).await;
    let unused = |store: Store, t: &'static str| async move {
        store
            .find_refresh_token(t)
            .await
            .unwrap()
            .unwrap()
            .used_at
            .is_none()
    };

    let r = store
        .refresh_grant("rt1", "rt2", "other-app", None, 10, DAY, NOW + 1)
        .await
        .unwrap();
    assert_eq!(r, RefreshOutcome::WrongClient);
    assert!(
        unused(store.clone(), "rt1").await,
        "another client's attempt changes nothing"
    );

    let wider = Some(vec!["openid".to_owned(), "email".to_owned()]);
    let r = store
        .refresh_grant("rt1", "rt2", "app", wider, 10, DAY, NOW + 1)
        .await
        .unwrap();
    assert_eq!(r, RefreshOutcome::ScopeWidened("email".into()));
    assert!(
        unused(store.clone(), "rt1").await,
        "a widening attempt changes nothing"
    );

    let narrow = Some(vec!["openid".to_owned()]);
    let r = store
        .refresh_grant("rt1", "rt2", "app", narrow, 10, DAY, NOW + 2)
        .await
        .unwrap();
    let RefreshOutcome::Rotated(grant) = r else {
        panic!("{r:?}")
    };
    assert_eq!(grant.family.id, "f-rg");
    assert_eq!(grant.family.last_used_at, NOW + 2);
    assert_eq!(grant.user.id, user.id);
    assert_eq!(grant.linked_connectors, vec!["wechat-web".to_owned()]);
    assert!(!unused(store.clone(), "rt1").await);
    assert!(unused(store.clone(), "rt2").await);

    store
        .set_user_disabled(&user.id, Some(NOW + 3))
        .await
        .unwrap();
    let r = store
        .refresh_grant("rt2", "rt3", "app", None, 10, DAY, NOW + 4)
        .await
        .unwrap();
    assert_eq!(r, RefreshOutcome::UserDisabled);
    assert!(
        unused(store.clone(), "rt2").await,
        "a disabled user's token is left as it was"
    );
    store.set_user_disabled(&user.id, None).await.unwrap();

    let r = store
        .refresh_grant("rt1", "rt9", "app", None, 10, DAY, NOW + 100)
        .await
        .unwrap();
    assert!(matches!(r, RefreshOutcome::Replayed(_)), "{r:?}");
    let r = store
        .refresh_grant("rt2", "rt3", "app", None, 10, DAY, NOW + 101)
        .await
        .unwrap();
    assert!(matches!(r, RefreshOutcome::Revoked(_)), "{r:?}");
    let r = store
        .refresh_grant("nope", "x", "app", None, 10, DAY, NOW + 101)
        .await
        .unwrap();
    assert_eq!(r, RefreshOutcome::Unknown);
}

async fn app_token_lease_has_one_holder_and_put_releases_it(store: Store) {
    let key = "wechat:app_token:wx0000000000000001";
    assert_eq!(store.get_app_token(key, NOW).await.unwrap(), None);
    // Ten instances race for the lease on a key nobody has stored yet: one wins.
    let mut tasks = Vec::new();
    for i in 0..10 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .lease_app_token(key, &format!("instance-{i}"), NOW, NOW + 30)
                .await
                .unwrap()
        }));
    }
    let mut winners = 0;
    for t in tasks {
        if t.await.unwrap() {
            winners += 1;
        }
    }
    assert_eq!(winners, 1, "exactly one instance holds the lease");
    // Nothing usable is stored while the lease runs.
    assert_eq!(store.get_app_token(key, NOW).await.unwrap(), None);
    // The lease runs out: another instance may take it.
    assert!(!store
        .lease_app_token(key, "late", NOW + 29, NOW + 59)
        .await
        .unwrap());
    assert!(store
        .lease_app_token(key, "late", NOW + 30, NOW + 60)
        .await
        .unwrap());
    // The holder stores the token; the lease is released with it.
    store
        .put_app_token(key, "late", b"sealed-1".to_vec(), NOW + 7200, NOW + 31)
        .await
        .unwrap();
    let got = store.get_app_token(key, NOW + 32).await.unwrap().unwrap();
    assert_eq!(got.token, b"sealed-1".to_vec());
    assert_eq!(got.expires_at, NOW + 7200);
    assert!(store
        .lease_app_token(key, "other", NOW + 33, NOW + 63)
        .await
        .unwrap());
    store.release_app_token_lease(key, "other").await.unwrap();
    assert!(store
        .lease_app_token(key, "third", NOW + 34, NOW + 64)
        .await
        .unwrap());
    // Expired tokens are not returned.
    assert_eq!(store.get_app_token(key, NOW + 7200).await.unwrap(), None);
    // Invalidation only drops the token the caller saw rejected.
    assert!(!store
        .invalidate_app_token(key, b"some-other".to_vec())
        .await
        .unwrap());
    assert!(store.get_app_token(key, NOW + 40).await.unwrap().is_some());
    assert!(store
        .invalidate_app_token(key, b"sealed-1".to_vec())
        .await
        .unwrap());
    assert_eq!(store.get_app_token(key, NOW + 40).await.unwrap(), None);
}

// ---------------------------------------------------------------- accounts (binding, phone)

/// Everything a sign-in writes, for `complete_login`, answering `ar1` / flow `st1`.
fn completion(login: NewLogin, policy: FirstLogin, new_user: &str, now: i64) -> CompleteLogin {
    CompleteLogin {
        login,
        policy,
        new_user_id: new_user.into(),
        session: session(&format!("sess-{new_user}-{now}"), "", now),
        code: code(&format!("code-{new_user}-{now}"), now),
        audit: audit(now, "login", None),
        auth_request_id: "ar1".into(),
        flow_state: "st1".into(),
        flow_outcome: json!({"redirect": "app"}),
        also_link: None,
        require_phone: false,
        phone_outcome: json!({"redirect": "phone"}),
        email_link_audit: None,
        consent: None,
        consent_outcome: json!({"redirect": "consent"}),
    }
}

async fn link_to_policy_and_proof_login_link_a_waiting_identity(store: Store) {
    let alice = store
        .resolve_login(
            login("dev", "alice", None),
            FirstLogin::Create,
            "u-alice".into(),
            NOW,
        )
        .await
        .unwrap();
    let alice = user_of(&alice).clone();
    // LinkTo attaches a new identity (and its link key) to the given user.
    let r = store
        .resolve_login(
            login("wechat-web", "o-web", Some("union-a")),
            FirstLogin::LinkTo(alice.id.clone()),
            "unused".into(),
            NOW + 1,
        )
        .await
        .unwrap();
    assert_eq!(user_of(&r).id, alice.id);
    assert!(matches!(r, LoginResolution::Linked(_)));
    // The link key now reaches Alice from another app of the same platform.
    let r = store
        .resolve_login(
            login("wechat-mp", "o-mp", Some("union-a")),
            FirstLogin::Refuse,
            "unused".into(),
            NOW + 2,
        )
        .await
        .unwrap();
    assert_eq!(user_of(&r).id, alice.id);

    // A proof login (Alice through dev) links a waiting identity in the same transaction.
    store
        .insert_auth_request(auth_request("ar1", NOW, 600))
        .await
        .unwrap();
    store.insert_flow(flow("st1", NOW, 600)).await.unwrap();
    let mut done = completion(
        login("dev", "alice", None),
        FirstLogin::Refuse,
        "unused",
        NOW + 3,
    );
    done.also_link = Some(login("wechat-unbound", "o-unbound", None));
    match store.complete_login(done, NOW + 3).await.unwrap() {
        LoginCompletion::SignedIn {
            user, needs_phone, ..
        } => {
            assert_eq!(user.id, alice.id);
            assert!(!needs_phone);
        }
        other => panic!("{other:?}"),
    }
    let linked = store
        .get_identity("wechat-unbound", "o-unbound")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(linked.user_id, alice.id);
    assert!(
        store
            .get_auth_request("ar1", NOW + 4)
            .await
            .unwrap()
            .is_none(),
        "used up"
    );
    // LinkTo an account that does not exist writes nothing.
    let err = store
        .resolve_login(
            login("x", "y", None),
            FirstLogin::LinkTo("nobody".into()),
            "unused".into(),
            NOW,
        )
        .await;
    assert!(err.is_err());
    assert!(store.get_identity("x", "y").await.unwrap().is_none());
}

async fn proof_login_whose_waiting_identity_belongs_to_another_user_writes_nothing(store: Store) {
    let alice = store
        .resolve_login(
            login("dev", "alice", None),
            FirstLogin::Create,
            "u-alice".into(),
            NOW,
        )
        .await
        .unwrap();
    let bob = store
        .resolve_login(
            login("wechat-unbound", "o-bob", None),
            FirstLogin::Create,
            "u-bob".into(),
            NOW,
        )
        .await
        .unwrap();
    store
        .insert_auth_request(auth_request("ar1", NOW, 600))
        .await
        .unwrap();
    store.insert_flow(flow("st1", NOW, 600)).await.unwrap();
    // Bob's identity was waiting for a proof, and meanwhile got linked to Bob.
    let mut done = completion(
        login("dev", "alice", None),
        FirstLogin::Refuse,
        "unused",
        NOW + 5,
    );
    done.also_link = Some(login("wechat-unbound", "o-bob", None));
    let r = store.complete_login(done, NOW + 5).await.unwrap();
    assert_eq!(
        r,
        LoginCompletion::LinkConflict {
            owner: user_of(&bob).id.clone()
        }
    );
    // Nothing was written: the request is still there, no session, no code, no profile touch.
    assert!(store
        .get_auth_request("ar1", NOW + 6)
        .await
        .unwrap()
        .is_some());
    let sid = format!("sess-unused-{}", NOW + 5);
    assert!(store.get_session(&sid).await.unwrap().is_none());
    let a = store.get_user(&user_of(&alice).id).await.unwrap().unwrap();
    assert_eq!(a.updated_at, NOW, "profile refresh rolled back");
}

async fn phone_step_opens_the_session_but_issues_no_code(store: Store) {
    store
        .insert_auth_request(auth_request("ar1", NOW, 600))
        .await
        .unwrap();
    store.insert_flow(flow("st1", NOW, 600)).await.unwrap();
    let mut done = completion(
        login("dev", "carol", None),
        FirstLogin::Create,
        "u-carol",
        NOW,
    );
    done.require_phone = true;
    let sid = done.session.id.clone();
    let code_hash = done.code.code_hash.clone();
    let r = store.complete_login(done, NOW).await.unwrap();
    let LoginCompletion::SignedIn {
        user, needs_phone, ..
    } = r
    else {
        panic!("{r:?}")
    };
    assert!(needs_phone);
    assert_eq!(
        store.get_session(&sid).await.unwrap().unwrap().user_id,
        user.id
    );
    assert!(
        store.get_code(&code_hash).await.unwrap().is_none(),
        "no code before the phone step"
    );
    assert!(
        store
            .get_auth_request("ar1", NOW + 1)
            .await
            .unwrap()
            .is_some(),
        "request kept"
    );
    let flow = store.get_flow("st1").await.unwrap().unwrap();
    assert_eq!(flow.outcome, Some(json!({"redirect": "phone"})));
    // With a verified number, the same app gets its code at once.
    store
        .set_user_phone(&user.id, "+8613800138000", NOW + 1)
        .await
        .unwrap();
    let mut done = completion(
        login("dev", "carol", None),
        FirstLogin::Create,
        "unused",
        NOW + 2,
    );
    done.require_phone = true;
    let code_hash = done.code.code_hash.clone();
    let r = store.complete_login(done, NOW + 2).await.unwrap();
    assert!(
        matches!(
            r,
            LoginCompletion::SignedIn {
                needs_phone: false,
                needs_consent: false,
                ..
            }
        ),
        "{r:?}"
    );
    assert!(store.get_code(&code_hash).await.unwrap().is_some());
}

async fn account_page_links_and_never_unlinks_the_last_identity(store: Store) {
    let alice = store
        .resolve_login(
            login("dev", "alice", None),
            FirstLogin::Create,
            "u-alice".into(),
            NOW,
        )
        .await
        .unwrap();
    let alice = user_of(&alice).id.clone();
    let bob = store
        .resolve_login(
            login("dev", "bob", Some("union-b")),
            FirstLogin::Create,
            "u-bob".into(),
            NOW,
        )
        .await
        .unwrap();
    let bob = user_of(&bob).id.clone();
    let unlink = |user: String, connector: &'static str, subject: &'static str| {
        let store = store.clone();
        async move {
            store
                .unlink_identity(&user, connector, subject, false, |_| {
                    audit(NOW, "identity_unlinked", None)
                })
                .await
                .unwrap()
        }
    };
    assert_eq!(
        unlink(alice.clone(), "dev", "alice").await,
        idbridge_store::Unlink::LastIdentity
    );
    let web = login("wechat-web", "o-alice", Some("union-a"));
    assert_eq!(
        store
            .link_identity(web.clone(), &alice, NOW + 1)
            .await
            .unwrap(),
        LinkOutcome::Linked
    );
    assert_eq!(
        store.link_identity(web, &alice, NOW + 2).await.unwrap(),
        LinkOutcome::AlreadyLinked
    );
    // Bob's identity, or an identity carrying Bob's link key, never moves to Alice.
    assert_eq!(
        store
            .link_identity(login("dev", "bob", None), &alice, NOW + 3)
            .await
            .unwrap(),
        LinkOutcome::OtherUser(bob.clone())
    );
    assert_eq!(
        store
            .link_identity(
                login("wechat-mp", "o-bob-mp", Some("union-b")),
                &alice,
                NOW + 3
            )
            .await
            .unwrap(),
        LinkOutcome::OtherUser(bob.clone())
    );
    assert!(store
        .get_identity("wechat-mp", "o-bob-mp")
        .await
        .unwrap()
        .is_none());
    // The new link key reaches Alice.
    let r = store
        .resolve_login(
            login("wechat-mp", "o-alice-mp", Some("union-a")),
            FirstLogin::Refuse,
            "x".into(),
            NOW + 4,
        )
        .await
        .unwrap();
    assert_eq!(user_of(&r).id, alice);
    assert!(matches!(
        unlink(alice.clone(), "dev", "alice").await,
        idbridge_store::Unlink::Unlinked(_)
    ));
    assert_eq!(
        unlink(alice.clone(), "dev", "bob").await,
        idbridge_store::Unlink::NoIdentity
    );
    assert_eq!(store.list_identities(&alice).await.unwrap().len(), 2);
}

async fn a_verified_phone_number_belongs_to_one_user(store: Store) {
    let a = store
        .resolve_login(
            login("dev", "alice", None),
            FirstLogin::Create,
            "u-alice".into(),
            NOW,
        )
        .await
        .unwrap();
    let b = store
        .resolve_login(
            login("dev", "bob", None),
            FirstLogin::Create,
            "u-bob".into(),
            NOW,
        )
        .await
        .unwrap();
    let (a, b) = (user_of(&a).id.clone(), user_of(&b).id.clone());
    assert!(store
        .find_user_by_phone("+8613800138000")
        .await
        .unwrap()
        .is_none());
    let PhoneOutcome::Set(user) = store
        .set_user_phone(&a, "+8613800138000", NOW + 1)
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(user.phone_number.as_deref(), Some("+8613800138000"));
    assert_eq!(user.phone_verified_at, Some(NOW + 1));
    assert_eq!(
        store
            .find_user_by_phone("+8613800138000")
            .await
            .unwrap()
            .unwrap()
            .id,
        a
    );
    assert_eq!(
        store
            .set_user_phone(&b, "+8613800138000", NOW + 2)
            .await
            .unwrap(),
        PhoneOutcome::TakenBy(a.clone())
    );
    assert_eq!(
        store
            .set_user_phone("nobody", "+8613900000000", NOW + 2)
            .await
            .unwrap(),
        PhoneOutcome::NoSuchUser
    );
    // Verifying it again on the same account is fine.
    assert!(matches!(
        store
            .set_user_phone(&a, "+8613800138000", NOW + 3)
            .await
            .unwrap(),
        PhoneOutcome::Set(_)
    ));
}

fn vcode(id: &str, dest: &str, now: i64) -> VerificationCode {
    VerificationCode {
        id: id.into(),
        purpose: "bind".into(),
        channel: "sms".into(),
        destination: dest.into(),
        user_id: Some("u1".into()),
        browser_hash: "browser-1".into(),
        code_hash: format!("hash-of-{id}"),
        attempts: 0,
        created_at: now,
        expires_at: now + 300,
        used_at: None,
    }
}

async fn verification_codes_are_throttled_single_use_and_die_after_wrong_attempts(store: Store) {
    let limits = SendLimits {
        min_interval_secs: 60,
        per_hour: 3,
    };
    let dest = "+8613800138000";
    assert_eq!(
        store
            .insert_verification_code(vcode("c1", dest, NOW), limits)
            .await
            .unwrap(),
        CodeInsert::Stored
    );
    assert_eq!(
        store
            .insert_verification_code(vcode("c2", dest, NOW + 10), limits)
            .await
            .unwrap(),
        CodeInsert::Throttled { retry_after: 50 }
    );
    assert!(store.get_verification_code("c2").await.unwrap().is_none());
    // Another destination is not throttled by this one.
    assert_eq!(
        store
            .insert_verification_code(vcode("d1", "+8613900000000", NOW + 10), limits)
            .await
            .unwrap(),
        CodeInsert::Stored
    );
    assert_eq!(
        store
            .insert_verification_code(vcode("c3", dest, NOW + 60), limits)
            .await
            .unwrap(),
        CodeInsert::Stored
    );
    assert_eq!(
        store
            .insert_verification_code(vcode("c4", dest, NOW + 120), limits)
            .await
            .unwrap(),
        CodeInsert::Stored
    );
    assert_eq!(
        store
            .insert_verification_code(vcode("c5", dest, NOW + 180), limits)
            .await
            .unwrap(),
        CodeInsert::Throttled {
            retry_after: 3600 - 180
        }
    );

    let right = |id: &'static str| move |h: &str| h == format!("hash-of-{id}");
    let wrong = |h: &str| h == "nope";
    // Another browser cannot use it.
    let other = store
        .check_verification_code("c1", "browser-2", NOW + 1, 3, right("c1"))
        .await
        .unwrap();
    assert_eq!(other, CodeCheck::Unknown);
    // Wrong, wrong, then dead even with the right code.
    assert_eq!(
        store
            .check_verification_code("c1", "browser-1", NOW + 1, 3, wrong)
            .await
            .unwrap(),
        CodeCheck::Wrong { attempts_left: 2 }
    );
    assert_eq!(
        store
            .check_verification_code("c1", "browser-1", NOW + 2, 3, wrong)
            .await
            .unwrap(),
        CodeCheck::Wrong { attempts_left: 1 }
    );
    assert_eq!(
        store
            .check_verification_code("c1", "browser-1", NOW + 3, 3, wrong)
            .await
            .unwrap(),
        CodeCheck::TooManyAttempts
    );
    assert_eq!(
        store
            .check_verification_code("c1", "browser-1", NOW + 4, 3, right("c1"))
            .await
            .unwrap(),
        CodeCheck::TooManyAttempts
    );
    // Right code: verified once, then unknown.
    let ok = store
        .check_verification_code("c3", "browser-1", NOW + 61, 3, right("c3"))
        .await
        .unwrap();
    let CodeCheck::Verified(row) = ok else {
        panic!("{ok:?}")
    };
    assert_eq!(row.user_id.as_deref(), Some("u1"));
    assert_eq!(row.used_at, Some(NOW + 61));
    assert_eq!(
        store
            .check_verification_code("c3", "browser-1", NOW + 62, 3, right("c3"))
            .await
            .unwrap(),
        CodeCheck::Unknown
    );
    // Expired.
    assert_eq!(
        store
            .check_verification_code("c4", "browser-1", NOW + 420, 3, right("c4"))
            .await
            .unwrap(),
        CodeCheck::Expired
    );
    assert_eq!(
        store
            .check_verification_code("zz", "browser-1", NOW, 3, wrong)
            .await
            .unwrap(),
        CodeCheck::Unknown
    );
    // Expired codes are collected once they no longer count towards the
    // hourly cap (an hour after they were sent).
    let report = store.collect_garbage(NOW + 500, 90 * DAY).await.unwrap();
    assert_eq!(report.verification_codes, 0);
    let report = store
        .collect_garbage(NOW + 3600 + 180, 90 * DAY)
        .await
        .unwrap();
    assert_eq!(report.verification_codes, 4);
    assert!(store.get_verification_code("c4").await.unwrap().is_none());
}

async fn auth_request_payload_can_be_replaced_while_live(store: Store) {
    store
        .insert_auth_request(auth_request("ar1", NOW, 60))
        .await
        .unwrap();
    assert!(store
        .update_auth_request("ar1", json!({"step": "bind"}), NOW + 1)
        .await
        .unwrap());
    let row = store
        .get_auth_request("ar1", NOW + 2)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.payload, json!({"step": "bind"}));
    assert!(
        !store
            .update_auth_request("ar1", json!({}), NOW + 60)
            .await
            .unwrap(),
        "expired"
    );
    assert!(!store
        .update_auth_request("missing", json!({}), NOW)
        .await
        .unwrap());
}

// ---------------------------------------------------------------- token exchange

fn exchange(
    subject: &str,
    link: Option<&str>,
    policy: FirstLogin,
    new_user: &str,
    family_id: &str,
    refresh: Option<&str>,
) -> CompleteExchange {
    CompleteExchange {
        login: login("wechat-app", subject, link),
        policy,
        new_user_id: new_user.into(),
        family: family(family_id, "", None, NOW),
        refresh_token_hash: refresh.map(str::to_owned),
        audit: audit(NOW, "login", None),
        require_phone: false,
        email_link_audit: None,
        verified_phone: None,
        consent: None,
    }
}

async fn token_exchange_writes_account_grant_and_audit_at_once_or_nothing(store: Store) {
    // A person known through another app of the platform: linked, and the grant is theirs.
    store
        .resolve_login(
            login("wechat-web", "web-o1", Some("union1")),
            FirstLogin::Create,
            "u1".into(),
            NOW,
        )
        .await
        .unwrap();
    let done = store
        .complete_exchange(
            exchange(
                "app-o1",
                Some("union1"),
                FirstLogin::Refuse,
                "unused",
                "f1",
                Some("rt1"),
            ),
            NOW,
        )
        .await
        .unwrap();
    match &done {
        LoginCompletion::SignedIn {
            user, resolution, ..
        } => {
            assert_eq!(user.id, "u1");
            assert!(
                matches!(resolution, LoginResolution::Linked(_)),
                "{resolution:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    let f1 = store.get_family("f1").await.unwrap().unwrap();
    assert_eq!(f1.user_id, "u1");
    assert_eq!(f1.sso_session_id, None, "an exchange opens no SSO session");
    assert_eq!(
        store
            .find_refresh_token("rt1")
            .await
            .unwrap()
            .unwrap()
            .family_id,
        "f1"
    );
    let events = store.list_audit(Some("u1"), 10, None).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event.event, "login");
    assert_eq!(
        store
            .get_identity("wechat-app", "app-o1")
            .await
            .unwrap()
            .unwrap()
            .user_id,
        "u1"
    );

    // A new person under Create: a new account; no refresh token asked for, none stored.
    let done = store
        .complete_exchange(
            exchange("app-o2", None, FirstLogin::Create, "u2", "f2", None),
            NOW,
        )
        .await
        .unwrap();
    assert!(
        matches!(&done, LoginCompletion::SignedIn { user, resolution: LoginResolution::Created(_), .. } if user.id == "u2"),
        "{done:?}"
    );
    assert_eq!(store.get_family("f2").await.unwrap().unwrap().user_id, "u2");

    // Refused: nothing at all is written.
    let users = user_count(&store).await;
    let done = store
        .complete_exchange(
            exchange(
                "app-o3",
                Some("union3"),
                FirstLogin::Refuse,
                "u3",
                "f3",
                Some("rt3"),
            ),
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(done, LoginCompletion::NotLinked);
    assert_eq!(user_count(&store).await, users);
    assert_eq!(
        store.get_identity("wechat-app", "app-o3").await.unwrap(),
        None
    );
    assert_eq!(store.get_family("f3").await.unwrap(), None);
    assert_eq!(store.find_refresh_token("rt3").await.unwrap(), None);

    // Disabled: no grant, no token, no audit event for the login.
    store.set_user_disabled("u1", Some(NOW)).await.unwrap();
    let done = store
        .complete_exchange(
            exchange(
                "app-o1",
                Some("union1"),
                FirstLogin::Create,
                "u4",
                "f4",
                Some("rt4"),
            ),
            NOW + 1,
        )
        .await
        .unwrap();
    assert!(
        matches!(&done, LoginCompletion::Disabled(u) if u.id == "u1"),
        "{done:?}"
    );
    assert_eq!(store.get_family("f4").await.unwrap(), None);
    assert_eq!(store.find_refresh_token("rt4").await.unwrap(), None);
    assert_eq!(
        store.list_audit(Some("u1"), 10, None).await.unwrap().len(),
        1
    );
    assert_eq!(store.get_user("u4").await.unwrap(), None);

    // A family id that is taken fails the whole transaction: no half-created account.
    let users = user_count(&store).await;
    let err = store
        .complete_exchange(
            exchange("app-o5", None, FirstLogin::Create, "u5", "f2", Some("rt5")),
            NOW,
        )
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err:?}");
    assert_eq!(user_count(&store).await, users);
    assert_eq!(
        store.get_identity("wechat-app", "app-o5").await.unwrap(),
        None
    );
}
// ---------------------------------------------------------------- operator queries and changes

async fn create(store: &Store, l: NewLogin, uid: &str, at: i64) {
    let r = store
        .resolve_login(l, FirstLogin::Create, uid.into(), at)
        .await
        .unwrap();
    assert_eq!(user_of(&r).id, uid);
}

fn admin_event(event: &str, user: &str, detail: serde_json::Value) -> AuditEvent {
    AuditEvent {
        at: NOW,
        event: event.into(),
        user_id: Some(user.into()),
        client_id: None,
        connector_id: None,
        ip: None,
        detail,
    }
}

async fn search_finds_users_by_id_name_subject_and_link_key_with_counts(store: Store) {
    create(
        &store,
        login("wechat-web", "oA", Some("union-a")),
        "u1",
        NOW,
    )
    .await;
    create(
        &store,
        login("wechat-mp", "oA2", Some("union-a")),
        "u1",
        NOW,
    )
    .await;
    let mut bob = login("wechat-web", "oB", None);
    bob.name = Some("Bob 50%".into());
    create(&store, bob, "u2", NOW + 1).await;
    let mut nameless = login("wechat-web", "oC", None);
    nameless.name = None;
    create(&store, nameless, "u3", NOW + 2).await;

    let found = |q: &'static str, limit: i64| {
        let store = store.clone();
        async move {
            store
                .search_users(q, limit)
                .await
                .unwrap()
                .into_iter()
                .map(|s| (s.user.id, s.identities))
                .collect::<Vec<_>>()
        }
    };
    let all = vec![("u1".into(), 2), ("u2".into(), 1), ("u3".into(), 1)];
    assert_eq!(found("", 10).await, all);
    assert_eq!(found("", 2).await, all[..2].to_vec());
    assert_eq!(found("u2", 10).await, [("u2".into(), 1)]);
    assert_eq!(found("NAME OF oa", 10).await, [("u1".into(), 2)]);
    assert_eq!(found("50%", 10).await, [("u2".into(), 1)]);
    assert_eq!(
        found("%", 10).await,
        [("u2".into(), 1)],
        "LIKE wildcards are literal"
    );
    // An upstream subject (openid) or link key (unionid) finds its user, exactly.
    assert_eq!(found("oA2", 10).await, [("u1".into(), 2)]);
    assert_eq!(found("oC", 10).await, [("u3".into(), 1)]);
    assert_eq!(found("union-a", 10).await, [("u1".into(), 2)]);
    assert!(found("union", 10).await.is_empty());
    assert!(found("nobody", 10).await.is_empty());
    // A user without identities counts zero.
    assert!(store.delete_identity("wechat-web", "oC").await.unwrap());
    assert_eq!(found("u3", 10).await, [("u3".into(), 0)]);
}

async fn live_sessions_and_grants_of_a_user_exclude_ended_expired_and_revoked(store: Store) {
    store
        .insert_session(session("s1", "u1", NOW))
        .await
        .unwrap();
    store
        .insert_session(session("s2", "u1", NOW + 1))
        .await
        .unwrap();
    let mut old = session("s3", "u1", NOW - 2 * DAY);
    old.expires_at = NOW - DAY;
    store.insert_session(old).await.unwrap();
    store
        .insert_session(session("s4", "u2", NOW))
        .await
        .unwrap();
    store.end_session("s1", NOW + 2).await.unwrap();
    let ids = |v: Vec<SessionRow>| v.into_iter().map(|s| s.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.live_sessions_for_user("u1", NOW + 3).await.unwrap()),
        ["s2"]
    );
    assert!(store
        .live_sessions_for_user("u1", NOW + 1 + DAY)
        .await
        .unwrap()
        .is_empty());

    issue_family(&store, "a", "rta", family("a", "u1", Some("s2"), NOW)).await;
    issue_family(&store, "b", "rtb", family("b", "u1", None, NOW + 1)).await;
    issue_family(&store, "c", "rtc", family("c", "u1", None, NOW)).await;
    issue_family(&store, "d", "rtd", family("d", "u2", None, NOW)).await;
    store.revoke_family("c", "logout", NOW + 2).await.unwrap();
    let live = store.live_families_for_user("u1", NOW + 3).await.unwrap();
    assert_eq!(
        live.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(),
        ["b", "a"],
        "newest first"
    );
    assert_eq!(live[1], family("a", "u1", Some("s2"), NOW));
    assert!(store
        .live_families_for_user("u1", NOW + 30 * DAY + 1)
        .await
        .unwrap()
        .is_empty());
}

async fn disabling_ends_access_in_one_transaction_with_its_audit_row(store: Store) {
    create(&store, login("wechat-web", "oA", None), "u1", NOW).await;
    create(&store, login("wechat-web", "oB", None), "u2", NOW).await;
    store
        .insert_session(session("s1", "u1", NOW))
        .await
        .unwrap();
    store
        .insert_session(session("s2", "u1", NOW))
        .await
        .unwrap();
    store
        .insert_session(session("s3", "u2", NOW))
        .await
        .unwrap();
    store.end_session("s2", NOW + 1).await.unwrap();
    issue_family(&store, "a", "rta", family("a", "u1", Some("s1"), NOW)).await;
    issue_family(&store, "b", "rtb", family("b", "u1", None, NOW)).await;
    issue_family(&store, "c", "rtc", family("c", "u2", None, NOW)).await;
    store.revoke_family("b", "logout", NOW + 1).await.unwrap();

    let out = store
        .change_user_access("u1", AccessChange::Disable, "user_disabled", NOW + 10, |o| {
            admin_event(
                "admin_disable",
                &o.user.id,
                json!({ "sessions_ended": o.sessions_ended, "grants_revoked": o.grants_revoked }),
            )
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.user.disabled_at, Some(NOW + 10));
    assert!(!out.was_disabled);
    assert_eq!((out.sessions_ended, out.grants_revoked), (1, 1));
    assert_eq!(
        store.get_user("u1").await.unwrap().unwrap().disabled_at,
        Some(NOW + 10)
    );
    assert_eq!(
        store.get_session("s1").await.unwrap().unwrap().ended_at,
        Some(NOW + 10)
    );
    assert_eq!(
        store.get_session("s2").await.unwrap().unwrap().ended_at,
        Some(NOW + 1),
        "an ended session keeps its end"
    );
    let a = store.get_family("a").await.unwrap().unwrap();
    assert_eq!(
        (a.revoked_at, a.revoked_reason.as_deref()),
        (Some(NOW + 10), Some("user_disabled"))
    );
    assert_eq!(
        store
            .get_family("b")
            .await
            .unwrap()
            .unwrap()
            .revoked_reason
            .as_deref(),
        Some("logout"),
        "a revoked grant keeps its first reason"
    );
    // The other user is untouched.
    assert_eq!(
        store.get_session("s3").await.unwrap().unwrap().ended_at,
        None
    );
    assert_eq!(
        store.get_family("c").await.unwrap().unwrap().revoked_at,
        None
    );
    assert_eq!(
        store.get_user("u2").await.unwrap().unwrap().disabled_at,
        None
    );
    // The refresh grant now refuses the user.
    let r = store
        .refresh_grant("rta", "rta2", "app", None, 60, DAY, NOW + 11)
        .await
        .unwrap();
    assert!(matches!(r, RefreshOutcome::UserDisabled), "{r:?}");

    // The audit row was written with the outcome.
    let audit = store.list_audit(Some("u1"), 10, None).await.unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].event.event, "admin_disable");
    assert_eq!(
        audit[0].event.detail,
        json!({ "sessions_ended": 1, "grants_revoked": 1 })
    );

    // Disabling again keeps the first time and ends nothing more.
    let again = store
        .change_user_access(
            "u1",
            AccessChange::Disable,
            "user_disabled",
            NOW + 20,
            |o| admin_event("admin_disable", &o.user.id, json!({})),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(again.was_disabled);
    assert_eq!(again.user.disabled_at, Some(NOW + 10));
    assert_eq!((again.sessions_ended, again.grants_revoked), (0, 0));

    // No such user: nothing written, not even the audit row.
    let none = store
        .change_user_access(
            "nobody",
            AccessChange::Disable,
            "user_disabled",
            NOW,
            |_| admin_event("admin_disable", "nobody", json!({})),
        )
        .await
        .unwrap();
    assert_eq!(none, None);
    assert!(store
        .list_audit(Some("nobody"), 10, None)
        .await
        .unwrap()
        .is_empty());
}

async fn enabling_and_ending_access_touch_only_what_they_say(store: Store) {
    create(&store, login("wechat-web", "oA", None), "u1", NOW).await;
    store
        .insert_session(session("s1", "u1", NOW))
        .await
        .unwrap();
    issue_family(&store, "a", "rta", family("a", "u1", Some("s1"), NOW)).await;
    // Enabling an enabled user changes nothing but is audited.
    let out = store
        .change_user_access("u1", AccessChange::Enable, "unused", NOW + 1, |o| {
            admin_event("admin_enable", &o.user.id, json!({}))
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (out.was_disabled, out.sessions_ended, out.grants_revoked),
        (false, 0, 0)
    );
    assert_eq!(
        store.get_session("s1").await.unwrap().unwrap().ended_at,
        None
    );

    // Ending access: sessions and grants end, the user stays enabled.
    let out = store
        .change_user_access(
            "u1",
            AccessChange::EndAccess,
            "revoked_by_admin",
            NOW + 2,
            |o| admin_event("admin_revoke", &o.user.id, json!({})),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!((out.sessions_ended, out.grants_revoked), (1, 1));
    assert_eq!(out.user.disabled_at, None);
    assert_eq!(
        store
            .get_family("a")
            .await
            .unwrap()
            .unwrap()
            .revoked_reason
            .as_deref(),
        Some("revoked_by_admin")
    );
    let r = store
        .rotate_refresh_token("rta", "rta2", 60, DAY, NOW + 3)
        .await
        .unwrap();
    assert!(matches!(r, Rotation::Revoked(_)), "{r:?}");

    // Disable, then enable: the user may sign in again; what ended stays ended.
    store
        .change_user_access("u1", AccessChange::Disable, "user_disabled", NOW + 4, |o| {
            admin_event("admin_disable", &o.user.id, json!({}))
        })
        .await
        .unwrap()
        .unwrap();
    let out = store
        .change_user_access("u1", AccessChange::Enable, "unused", NOW + 5, |o| {
            admin_event("admin_enable", &o.user.id, json!({}))
        })
        .await
        .unwrap()
        .unwrap();
    assert!(out.was_disabled);
    assert_eq!(out.user.disabled_at, None);
    assert_eq!(out.user.updated_at, NOW + 5);
    assert!(store
        .live_families_for_user("u1", NOW + 6)
        .await
        .unwrap()
        .is_empty());
    let events: Vec<String> = store
        .list_audit(Some("u1"), 10, None)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.event.event)
        .collect();
    assert_eq!(
        events,
        [
            "admin_enable",
            "admin_disable",
            "admin_revoke",
            "admin_enable"
        ]
    );
}

async fn unlinking_refuses_the_last_identity_unless_allowed(store: Store) {
    create(&store, login("wechat-web", "oA", None), "u1", NOW).await;
    create(&store, login("dev", "alice", None), "u2", NOW).await;
    let unlink = |uid: &'static str, conn: &'static str, sub: &'static str, last: bool| {
        let store = store.clone();
        async move {
            store
                .unlink_identity(uid, conn, sub, last, |u| {
                    admin_event(
                        "admin_unlink",
                        &u.identity.user_id,
                        json!({ "left": u.identities_left }),
                    )
                })
                .await
                .unwrap()
        }
    };
    assert_eq!(
        unlink("nobody", "wechat-web", "oA", false).await,
        Unlink::NoUser
    );
    assert_eq!(
        unlink("u2", "wechat-web", "oA", false).await,
        Unlink::NoIdentity,
        "another user's identity is not this user's to unlink"
    );
    assert_eq!(
        unlink("u1", "wechat-web", "nope", false).await,
        Unlink::NoIdentity
    );
    assert_eq!(
        unlink("u1", "wechat-web", "oA", false).await,
        Unlink::LastIdentity
    );
    assert!(store
        .get_identity("wechat-web", "oA")
        .await
        .unwrap()
        .is_some());
    assert!(store.list_audit(None, 10, None).await.unwrap().is_empty());

    let Unlink::Unlinked(u) = unlink("u1", "wechat-web", "oA", true).await else {
        panic!("forced unlink of the last identity")
    };
    assert_eq!((u.identities_left, u.link_key_removed), (0, false));
    assert_eq!(u.identity.subject, "oA");
    assert!(store
        .get_identity("wechat-web", "oA")
        .await
        .unwrap()
        .is_none());
    assert!(
        store.get_user("u1").await.unwrap().is_some(),
        "the user stays"
    );
    let audit = store.list_audit(Some("u1"), 10, None).await.unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].event.detail, json!({ "left": 0 }));
    // The next sign-in of that upstream identity is a new person to the broker.
    let r = store
        .resolve_login(
            login("wechat-web", "oA", None),
            FirstLogin::Create,
            "u3".into(),
            NOW + 1,
        )
        .await
        .unwrap();
    assert!(
        matches!(&r, LoginResolution::Created(u) if u.id == "u3"),
        "{r:?}"
    );
}

async fn unlinking_removes_a_link_key_no_other_identity_carries(store: Store) {
    create(
        &store,
        login("wechat-web", "oA", Some("union-a")),
        "u1",
        NOW,
    )
    .await;
    create(
        &store,
        login("wechat-mp", "oA2", Some("union-a")),
        "u1",
        NOW,
    )
    .await;
    create(&store, login("dev", "alice", None), "u1x", NOW).await;
    let audit =
        |u: &idbridge_store::Unlinked| admin_event("admin_unlink", &u.identity.user_id, json!({}));

    // The web identity goes; the Official Account identity carries the same
    // unionid, so the link key stays and a later web sign-in comes back to u1.
    let Unlink::Unlinked(u) = store
        .unlink_identity("u1", "wechat-web", "oA", false, audit)
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!((u.identities_left, u.link_key_removed), (1, false));
    let r = store
        .resolve_login(
            login("wechat-web", "oA", Some("union-a")),
            FirstLogin::Create,
            "u2".into(),
            NOW + 1,
        )
        .await
        .unwrap();
    assert!(
        matches!(&r, LoginResolution::Linked(u) if u.id == "u1"),
        "{r:?}"
    );

    // Now the Official Account identity goes, then the web one (forced): the
    // link key goes with the last identity that carried it, and the unionid no
    // longer finds u1.
    let Unlink::Unlinked(u) = store
        .unlink_identity("u1", "wechat-mp", "oA2", false, audit)
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!((u.identities_left, u.link_key_removed), (1, false));
    let Unlink::Unlinked(u) = store
        .unlink_identity("u1", "wechat-web", "oA", true, audit)
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!((u.identities_left, u.link_key_removed), (0, true));
    let r = store
        .resolve_login(
            login("wechat-mp", "oA2", Some("union-a")),
            FirstLogin::Create,
            "u4".into(),
            NOW + 2,
        )
        .await
        .unwrap();
    assert!(
        matches!(&r, LoginResolution::Created(u) if u.id == "u4"),
        "{r:?}"
    );
}

async fn audit_filters_by_event_time_and_user(store: Store) {
    for (i, (event, user)) in [
        ("login", Some("u1")),
        ("login", Some("u2")),
        ("login_denied", None),
        ("admin_disable", Some("u1")),
        ("login", Some("u1")),
        ("admin_enable", Some("u1")),
    ]
    .into_iter()
    .enumerate()
    {
        store
            .append_audit(audit(NOW + 10 * i as i64, event, user))
            .await
            .unwrap();
    }
    let find = |f: AuditFilter| {
        let store = store.clone();
        async move {
            store
                .find_audit(f)
                .await
                .unwrap()
                .into_iter()
                .map(|r| (r.event.event, r.event.at - NOW))
                .collect::<Vec<_>>()
        }
    };
    let all = AuditFilter {
        limit: 100,
        ..AuditFilter::default()
    };
    assert_eq!(find(all.clone()).await.len(), 6);
    assert_eq!(
        find(AuditFilter {
            events: vec!["admin_disable".into(), "admin_enable".into()],
            ..all.clone()
        })
        .await,
        [("admin_enable".into(), 50), ("admin_disable".into(), 30)]
    );
    assert_eq!(
        find(AuditFilter {
            since: Some(NOW + 10),
            until: Some(NOW + 40),
            ..all.clone()
        })
        .await,
        [
            ("admin_disable".to_owned(), 30),
            ("login_denied".to_owned(), 20),
            ("login".to_owned(), 10),
        ],
        "since is inclusive, until exclusive"
    );
    let u1_logins = AuditFilter {
        user_id: Some("u1".into()),
        events: vec!["login".into()],
        limit: 1,
        ..AuditFilter::default()
    };
    let page = store.find_audit(u1_logins.clone()).await.unwrap();
    assert_eq!((page.len(), page[0].event.at), (1, NOW + 40));
    let next = store
        .find_audit(AuditFilter {
            before_id: Some(page[0].id),
            ..u1_logins.clone()
        })
        .await
        .unwrap();
    assert_eq!((next.len(), next[0].event.at), (1, NOW));
    assert!(store
        .find_audit(AuditFilter {
            before_id: Some(next[0].id),
            ..u1_logins
        })
        .await
        .unwrap()
        .is_empty());
    assert!(find(AuditFilter {
        events: vec!["nothing".into()],
        ..all
    })
    .await
    .is_empty());
}

// ---------------------------------------------------------------- SQLite checkpoints

#[derive(diesel::QueryableByName)]
struct WalState {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    log: i64,
}

/// On SQLite the log (WAL) is copied into the database file by a background
/// thread, not inside commits. Writes that begin with a read (every lookup-then-
/// insert sign-in) keep succeeding while it runs; the database file gets the
/// data without anyone closing the store; and under steady writes the log keeps
/// restarting from the top instead of growing with every page ever written.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_checkpoints_run_beside_the_writer_and_the_log_restarts() {
    use diesel::{Connection, RunQueryDsl};
    let db = TempDatabase::sqlite();
    let store = open(&db).await;
    store.migrate().await.unwrap();
    let file = std::path::PathBuf::from(db.url().trim_start_matches("sqlite://"));
    let before = std::fs::metadata(&file).unwrap().len();

    // Two seconds of steady sign-ins with large profiles (each reads the
    // identity, then writes a user and an identity), from 8 tasks at once.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    let big = "x".repeat(12_000);
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let s = store.clone();
            let big = big.clone();
            tokio::spawn(async move {
                let mut n = 0;
                while std::time::Instant::now() < deadline {
                    let mut l = login("wechat", &format!("openid-{t}-{n}"), None);
                    l.profile = json!({ "padding": big });
                    let r = s
                        .resolve_login(l, FirstLogin::Create, format!("u-{t}-{n}"), NOW)
                        .await;
                    assert!(matches!(r, Ok(LoginResolution::Created(_))), "{r:?}");
                    n += 1;
                }
                n
            })
        })
        .collect();
    // Meanwhile, the log's length, ten times a second.
    let mut probe = diesel::SqliteConnection::establish(&file.to_string_lossy()).unwrap();
    let mut lengths = Vec::new();
    while std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let wal: WalState = diesel::sql_query("PRAGMA wal_checkpoint(PASSIVE)")
            .get_result(&mut probe)
            .unwrap();
        // -1: another checkpoint was running; no reading this time.
        if wal.log >= 0 {
            lengths.push(wal.log);
        }
    }
    let mut written = 0;
    for t in tasks {
        written += t.await.unwrap();
    }
    assert!(written > 100, "only {written} sign-ins in two seconds");
    // The log went back to the top at least once while the writes went on.
    assert!(
        lengths.windows(2).any(|w| w[1] < w[0]),
        "the log only grew: {lengths:?}"
    );

    // The store is still open: only the checkpoint thread can have moved the
    // pages into the database file.
    let mut grown = 0;
    for _ in 0..50 {
        grown = std::fs::metadata(&file).unwrap().len();
        if grown > before + 4_000_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        grown > before + 4_000_000,
        "database file grew from {before} to only {grown} bytes"
    );
}

// ---------------------------------------------------------------- failure counters

async fn failure_counters_count_cap_refill_and_are_collected(store: Store) {
    let t = NOW * 1000;
    let limit = FailureLimit::per_minute(3); // one failure refills every 20 s
    assert_eq!(store.failure_counter("ip:a").await.unwrap(), None);
    for (n, expect) in [(1, t + 20_000), (2, t + 40_000), (3, t + 60_000)] {
        let full_at = store.count_failure("ip:a", t, limit).await.unwrap();
        assert_eq!(full_at, expect, "failure {n}");
        assert_eq!(limit.left(full_at, t), 3 - n);
    }
    assert_eq!(
        store.failure_counter("ip:a").await.unwrap(),
        Some(t + 60_000)
    );
    // Past the limit the bucket owes no more than a full refill.
    assert_eq!(
        store.count_failure("ip:a", t, limit).await.unwrap(),
        t + 60_000
    );
    assert_eq!(
        store.failure_counter("ip:b").await.unwrap(),
        None,
        "keys are apart"
    );
    // Half a minute on, one and a half failures have refilled: one more counts.
    let full_at = store
        .count_failure("ip:a", t + 30_000, limit)
        .await
        .unwrap();
    assert_eq!(full_at, t + 80_000);
    assert_eq!(limit.left(full_at, t + 30_000), 0);
    assert_eq!(limit.left(full_at, t + 40_000), 1);
    // A counter that has refilled completely starts over.
    store
        .count_failure("ip:b", t - 100_000, limit)
        .await
        .unwrap();
    assert_eq!(
        store.count_failure("ip:b", t, limit).await.unwrap(),
        t + 20_000
    );
    // Expiry collection: counters full again are deleted, the others kept.
    store
        .count_failure("ip:old", t - 100_000, limit)
        .await
        .unwrap();
    store
        .count_failure("ip:edge", t - 20_000, limit)
        .await
        .unwrap(); // full at t
    let report = store.collect_garbage(NOW, 90 * DAY).await.unwrap();
    assert_eq!(
        report,
        GcReport {
            failure_counters: 2,
            ..GcReport::default()
        }
    );
    assert_eq!(store.failure_counter("ip:old").await.unwrap(), None);
    assert_eq!(store.failure_counter("ip:edge").await.unwrap(), None);
    assert_eq!(
        store.failure_counter("ip:a").await.unwrap(),
        Some(t + 80_000)
    );
    assert_eq!(
        store.failure_counter("ip:b").await.unwrap(),
        Some(t + 20_000)
    );
}

/// Failures counted at once from many tasks (on Postgres over many
/// connections, as several instances would) are each counted exactly once,
/// including the key's first failure, which inserts its row.
async fn concurrent_failures_are_all_counted(store: Store) {
    let t = NOW * 1000;
    let limit = FailureLimit::per_minute(1000); // 60 ms a failure, never capped here
    for key in ["ip:new", "ip:known"] {
        if key == "ip:known" {
            store.count_failure(key, t, limit).await.unwrap();
        }
        let answers = at_once(&store, 40, |s, _| async move {
            s.count_failure(key, t, limit).await
        })
        .await;
        for full_at in answers {
            let full_at = full_at.unwrap();
            assert!(full_at > t && full_at <= t + 41 * 60, "{key}: {full_at}");
        }
        let expected = if key == "ip:known" { 41 } else { 40 };
        assert_eq!(
            store.failure_counter(key).await.unwrap(),
            Some(t + expected * 60),
            "{key}: every failure counted once"
        );
    }
}

// ---------------------------------------------------------------- code throttles under concurrency

/// Wrong attempts at one code from many requests at once (several instances,
/// or one with many connections) each use up one attempt: exactly
/// `max_attempts`, never more; and a right code sent twice at once verifies once.
async fn concurrent_code_attempts_are_each_counted_and_a_code_verifies_once(store: Store) {
    let limits = SendLimits {
        min_interval_secs: 0,
        per_hour: 100,
    };
    store
        .insert_verification_code(vcode("cw", "+8613800138001", NOW), limits)
        .await
        .unwrap();
    let checks = at_once(&store, 20, |s, _| async move {
        s.check_verification_code("cw", "browser-1", NOW + 1, 5, |_| false)
            .await
    })
    .await;
    let mut left = Vec::new();
    for check in checks {
        match check.unwrap() {
            CodeCheck::Wrong { attempts_left } => left.push(attempts_left),
            CodeCheck::TooManyAttempts => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    left.sort_unstable();
    assert_eq!(left, [1, 2, 3, 4], "each wrong attempt used up one attempt");
    let row = store.get_verification_code("cw").await.unwrap().unwrap();
    assert_eq!(row.attempts, 5);

    store
        .insert_verification_code(vcode("cr", "+8613800138002", NOW), limits)
        .await
        .unwrap();
    let checks = at_once(&store, 10, |s, _| async move {
        s.check_verification_code("cr", "browser-1", NOW + 1, 5, |_| true)
            .await
    })
    .await;
    let mut verified = 0;
    for check in checks {
        match check.unwrap() {
            CodeCheck::Verified(_) => verified += 1,
            CodeCheck::Unknown => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(verified, 1, "a code is used once");
}

/// Sends to one destination at once (say, two instances each asked for a
/// code): one code is stored, the rest are throttled.
async fn concurrent_sends_to_one_destination_store_one_code(store: Store) {
    let limits = SendLimits {
        min_interval_secs: 60,
        per_hour: 5,
    };
    for round in 0..10 {
        let dest = format!("+86138001390{round:02}");
        let inserts = at_once(&store, 16, |s, i| {
            let code = vcode(&format!("cs{round}-{i}"), &dest, NOW);
            async move { s.insert_verification_code(code, limits).await }
        })
        .await;
        let stored = inserts
            .into_iter()
            .filter(|r| *r.as_ref().unwrap() == CodeInsert::Stored)
            .count();
        assert_eq!(stored, 1, "round {round}: one code per destination");
    }
}

/// The hourly cap counts the codes sent in the last hour, including those
/// that expired meanwhile: expiry collection keeps them until they are an
/// hour old.
async fn the_hourly_send_cap_survives_expiry_collection(store: Store) {
    let limits = SendLimits {
        min_interval_secs: 60,
        per_hour: 3,
    };
    let dest = "+8613800138004";
    for (i, at) in [NOW, NOW + 600, NOW + 1200].into_iter().enumerate() {
        assert_eq!(
            store
                .insert_verification_code(vcode(&format!("ch{i}"), dest, at), limits)
                .await
                .unwrap(),
            CodeInsert::Stored
        );
    }
    // The first two have expired (300 s each); collection runs.
    store.collect_garbage(NOW + 1800, 90 * DAY).await.unwrap();
    assert_eq!(
        store
            .insert_verification_code(vcode("ch3", dest, NOW + 1800), limits)
            .await
            .unwrap(),
        CodeInsert::Throttled { retry_after: 1800 },
        "three codes in the last hour"
    );
    // An hour after the first, it no longer counts, and collection may take it.
    let report = store.collect_garbage(NOW + 3600, 90 * DAY).await.unwrap();
    assert_eq!(report.verification_codes, 1);
    assert_eq!(
        store
            .insert_verification_code(vcode("ch4", dest, NOW + 3600), limits)
            .await
            .unwrap(),
        CodeInsert::Stored
    );
}
