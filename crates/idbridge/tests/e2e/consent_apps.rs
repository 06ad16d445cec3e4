//! Consent for apps registered at run time (RFC 7591 registration, the admin
//! API), for token exchange (no page to ask on) and after the phone step, on
//! both backends.

use crate::consent::{
    admin_consents, authorize, broker, code_of, first_visit, follow, ADMIN_TOKEN,
    REGISTRATION_TOKEN,
};
use crate::harness::*;
use serde_json::{json, Value};

async fn a_registered_app_cannot_skip_consent(db_url: &str) {
    let broker = broker(db_url).await;
    let base = broker.base.as_str();
    let resp = http()
        .post(format!("{base}/register"))
        .bearer_auth(REGISTRATION_TOKEN)
        .json(&json!({
            "redirect_uris": ["https://self.example.com/cb"],
            "client_name": "Self-made",
            "skip_consent": true,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let reg: Value = resp.json().await.unwrap();
    let id = reg["client_id"].as_str().unwrap();
    let b = browser();
    let url = authorize(
        base,
        id,
        "https://self.example.com/cb",
        &[("scope", "openid")],
    );
    let asked = sign_in(&b, base, &url, "erin").await;
    assert!(is_consent_page(base, &asked), "{asked}");
    let html = follow(&b, &asked).await.text().await.unwrap();
    assert!(html.contains("Self-made"), "{html}");
    broker.stop().await;
}
crate::both_backends!(a_registered_app_cannot_skip_consent);

async fn a_token_exchange_needs_consent_given_in_a_browser_first(db_url: &str) {
    use crate::wechat_app::{post_token, world, Auth, GRANT};
    use wechat_sim::dev;
    // The harness's `app`, made an app that asks consent.
    let w = world(db_url, "cx", |_, s| {
        for c in &mut s.clients {
            if c.id == APP_ID {
                c.skip_consent = false;
            }
        }
    })
    .await;
    let base = w.broker.base.as_str();
    let exchange = |code: String| async move {
        post_token(
            base,
            Auth::Basic(APP_ID, APP_SECRET),
            &[
                ("grant_type", GRANT),
                ("subject_token", &code),
                (
                    "subject_token_type",
                    "urn:idbridge:params:oauth:token-type:wechat_sdk_code",
                ),
                ("connector", "cx-app"),
                ("scope", "openid profile"),
            ],
        )
        .await
    };
    let code = w
        .sim
        .issue_code(dev::MOBILE_APPID, dev::USER_XIAOMING, "snsapi_userinfo")
        .unwrap();
    let refused = exchange(code).await;
    let why = refused.error(400, "invalid_grant");
    assert!(why.contains("allow it"), "{why}");
    assert!(!log_lines(&["token_exchange", "consent_required", "skip_consent"]).is_empty());
    // No grant was written; the account was (as for the phone step).
    let users = w.broker.state.store.find_users("", 10).await.unwrap();
    assert_eq!(users.len(), 1);
    let user = &users[0].id;
    assert!(w
        .broker
        .state
        .store
        .live_families_for_user(user, w.broker.clock().now())
        .await
        .unwrap()
        .is_empty());

    // Once the person allowed the app those scopes (in a browser), it works.
    let now = w.broker.clock().now();
    let row = idbridge_store::AuditEvent {
        at: now,
        event: "consent_granted".into(),
        user_id: Some(user.clone()),
        client_id: Some(APP_ID.into()),
        connector_id: None,
        ip: None,
        detail: json!({}),
    };
    w.broker
        .state
        .store
        .grant_consent(user, APP_ID, "openid profile", now, row)
        .await
        .unwrap();
    let code = w
        .sim
        .issue_code(dev::MOBILE_APPID, dev::USER_XIAOMING, "snsapi_userinfo")
        .unwrap();
    let ok = exchange(code).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    w.broker.stop().await;
}
crate::both_backends!(a_token_exchange_needs_consent_given_in_a_browser_first);

async fn admin_post(base: &str, path: &str, body: Value) -> (u16, Value) {
    let resp = http()
        .post(format!("{base}/admin/v1{path}"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

async fn a_runtime_client_asks_by_default_and_takes_its_consents_when_deleted(db_url: &str) {
    let broker = broker(db_url).await;
    let base = broker.base.as_str();
    const SHOP_CB: &str = "https://shop.example.com/cb";
    let (status, created) = admin_post(
        base,
        "/clients",
        json!({ "id": "shop", "name": "The shop", "redirect_uris": [SHOP_CB] }),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["skip_consent"], false, "the default: {created}");
    let b = browser();
    let url = authorize(base, "shop", SHOP_CB, &[("scope", "openid")]);
    let asked = sign_in(&b, base, &url, "frank").await;
    assert!(is_consent_page(base, &asked), "{asked}");
    let html = follow(&b, &asked).await.text().await.unwrap();
    assert!(html.contains("The shop"), "{html}");
    code_of(base, &allow_consent(&b, &asked).await, SHOP_CB);
    let users = broker.state.store.find_users("frank", 10).await.unwrap();
    let frank = users[0].id.clone();
    assert_eq!(admin_consents(base, &frank).await[0]["client_id"], "shop");

    // Marked first-party: no page, even for a new scope.
    let (status, updated) = admin_post(
        base,
        "/clients/shop/update",
        json!({ "skip_consent": true }),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["changed"], json!(["skip_consent"]), "{updated}");
    let url = authorize(base, "shop", SHOP_CB, &[("scope", "openid profile")]);
    code_of(base, &first_visit(&b, &url).await, SHOP_CB);

    // Deleted: what people allowed it goes with it.
    let (status, deleted) = admin_post(base, "/clients/shop/delete", json!({})).await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(admin_consents(base, &frank).await, json!([]));
    broker.stop().await;
}
crate::both_backends!(a_runtime_client_asks_by_default_and_takes_its_consents_when_deleted);

async fn the_phone_step_comes_first_then_the_consent_page(db_url: &str) {
    const PHONE_CB: &str = "https://phone-third.example.com/cb";
    let broker = start(db_url, None, |s| {
        s.verification.sender = "log".into();
        let mut app = client(
            "phone-third",
            Some("phone-third-secret-0123456789"),
            PHONE_CB,
        );
        app.require_phone = true;
        app.skip_consent = false;
        s.clients.push(app);
    })
    .await;
    let base = broker.base.as_str();
    let b = browser();
    let url = authorize(base, "phone-third", PHONE_CB, &[("scope", "openid phone")]);
    let next = sign_in(&b, base, &url, "gina").await;
    assert!(next.ends_with("/phone"), "the phone step first: {next}");
    // Its consent URL cannot skip the phone step: it sends the person back there.
    let early = follow(&b, &next.replace("/phone", "/consent")).await;
    assert_eq!(early.status(), 302);
    assert!(location(&early).ends_with("/phone"), "{}", location(&early));
    let verified = crate::accounts::verify_number(&b, &broker, &next, "13800138000").await;
    assert_eq!(verified.status(), 302);
    let asked = location(&verified);
    assert!(
        is_consent_page(base, &asked),
        "then the consent page: {asked}"
    );
    let html = follow(&b, &asked).await.text().await.unwrap();
    assert!(html.contains("Your phone number"), "{html}");
    code_of(base, &allow_consent(&b, &asked).await, PHONE_CB);
    broker.stop().await;
}
crate::both_backends!(the_phone_step_comes_first_then_the_consent_page);
