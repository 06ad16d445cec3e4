//! Consent (docs/openid-provider.md, "Consent"), on both backends: an app that
//! is not first-party shows the person what it gets before its first code; what
//! they allow is remembered per account and app (a subset asks nothing, a new
//! scope asks again); Deny is `access_denied`; `prompt=none` that would need the
//! page is `consent_required`; revoking on the account page ends the app's
//! grants. Apps registered at run time, token exchange and the phone step:
//! `consent_apps.rs`.

use crate::harness::*;
use serde_json::{json, Value};

pub(crate) const THIRD: &str = "third";
pub(crate) const THIRD_SECRET: &str = "third-secret-0123456789abcdef";
pub(crate) const THIRD_CB: &str = "https://third.example.com/cb";
const VERIFIER: &str = "verifier-0123456789-0123456789-0123456789-abcdef";
pub(crate) const REGISTRATION_TOKEN: &str = "registration-token-0123456789abcdef";
pub(crate) const ADMIN_TOKEN: &str = "consent-admin-token-0123456789abcdef";

/// A broker whose apps are the harness's first-party ones and `third`, which
/// asks consent (the default for a configured client).
pub(crate) async fn broker(db_url: &str) -> Broker {
    start(db_url, None, |s| {
        let mut third = client(THIRD, Some(THIRD_SECRET), THIRD_CB);
        third.skip_consent = false;
        s.clients.push(third);
        s.admin.registration_tokens = vec![REGISTRATION_TOKEN.into()];
        s.admin.tokens = vec![ADMIN_TOKEN.into()];
    })
    .await
}

/// An authorization URL of `client_id` (dev connector, PKCE).
pub(crate) fn authorize(
    base: &str,
    client_id: &str,
    redirect: &str,
    extra: &[(&str, &str)],
) -> String {
    let mut u = url::Url::parse(&format!("{base}/authorize")).unwrap();
    {
        let mut q = u.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", redirect)
            .append_pair("state", "st-1")
            .append_pair("code_challenge", &idbridge_tokens::pkce_s256(VERIFIER))
            .append_pair("code_challenge_method", "S256")
            .append_pair("connector", "dev");
        for (k, v) in extra {
            q.append_pair(k, v);
        }
    }
    u.to_string()
}

pub(crate) fn third(base: &str, scope: &str, extra: &[(&str, &str)]) -> String {
    let mut all = vec![("scope", scope)];
    all.extend_from_slice(extra);
    authorize(base, THIRD, THIRD_CB, &all)
}

/// The app's code from where the broker sent the browser, checking `state` and `iss`.
pub(crate) fn code_of(base: &str, back: &str, redirect: &str) -> String {
    assert!(back.starts_with(redirect), "{back}");
    assert_eq!(
        query_param(back, "state").as_deref(),
        Some("st-1"),
        "{back}"
    );
    assert_eq!(query_param(back, "iss").as_deref(), Some(base), "{back}");
    query_param(back, "code").unwrap_or_else(|| panic!("no code: {back}"))
}

async fn redeem_third(base: &str, code: &str) -> (u16, Value) {
    let resp = http()
        .post(format!("{base}/token"))
        .basic_auth(THIRD, Some(THIRD_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", THIRD_CB),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// GET after a redirect that stays at the broker, as a browser would.
pub(crate) async fn follow(b: &reqwest::Client, url: &str) -> reqwest::Response {
    b.get(url).send().await.unwrap()
}

pub(crate) async fn first_visit(b: &reqwest::Client, url: &str) -> String {
    let resp = follow(b, url).await;
    assert_eq!(resp.status(), 302);
    location(&resp)
}

async fn consent_scope(broker: &Broker, user: &str, client: &str) -> Option<String> {
    broker
        .state
        .store
        .get_consent(user, client)
        .await
        .unwrap()
        .map(|c| c.scope)
}

async fn sub_of(base: &str, code: &str) -> String {
    let (status, t) = redeem_third(base, code).await;
    assert_eq!(status, 200, "{t}");
    claims(t["id_token"].as_str().unwrap())["sub"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn consent_is_asked_once_and_remembered_per_scope(db_url: &str) {
    let broker = broker(db_url).await;
    let base = broker.base.as_str();
    let b = browser();

    // First sign-in: after the account is resolved, the consent page.
    let asked = sign_in(&b, base, &third(base, "openid profile", &[]), "alice").await;
    assert!(is_consent_page(base, &asked), "{asked}");
    let page = follow(&b, &asked).await;
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("https://third.example.com"), "{csp}");
    let html = page.text().await.unwrap();
    assert!(html.contains("third app"), "{html}");
    assert!(
        html.contains("Your account ID at this sign-in service"),
        "{html}"
    );
    assert!(html.contains("Your name, picture and other profile details"));
    assert!(!html.contains("Your email address"), "only what is asked");
    assert!(html.contains("Allow") && html.contains("Deny"));
    let back = allow_consent(&b, &asked).await;
    let sub = sub_of(base, &code_of(base, &back, THIRD_CB)).await;
    assert_eq!(
        consent_scope(&broker, &sub, THIRD).await.as_deref(),
        Some("openid profile")
    );
    let granted = audit_events(&broker, "consent_granted").await;
    assert_eq!(granted.len(), 1);
    assert_eq!(granted[0].event.detail["scope"], "openid profile");
    assert_eq!(granted[0].event.user_id.as_deref(), Some(sub.as_str()));

    // The SSO session with a subset: straight back with a code.
    let back = first_visit(&b, &third(base, "openid", &[])).await;
    assert_eq!(sub_of(base, &code_of(base, &back, THIRD_CB)).await, sub);
    // Another browser, the same person, the same scopes: nothing asked either.
    let back = sign_in(
        &browser(),
        base,
        &third(base, "profile openid", &[]),
        "alice",
    )
    .await;
    assert_eq!(sub_of(base, &code_of(base, &back, THIRD_CB)).await, sub);

    // prompt=none with what is allowed: a code; with a new scope: consent_required.
    let back = first_visit(&b, &third(base, "openid", &[("prompt", "none")])).await;
    code_of(base, &back, THIRD_CB);
    let back = first_visit(&b, &third(base, "openid email", &[("prompt", "none")])).await;
    assert!(back.starts_with(THIRD_CB), "{back}");
    assert_eq!(
        query_param(&back, "error").as_deref(),
        Some("consent_required")
    );
    assert_eq!(query_param(&back, "state").as_deref(), Some("st-1"));
    assert_eq!(query_param(&back, "iss").as_deref(), Some(base));

    // A new scope asks again, naming it; allowed, the union is remembered.
    let asked = first_visit(&b, &third(base, "openid email", &[])).await;
    assert!(is_consent_page(base, &asked), "SSO asks too: {asked}");
    let html = follow(&b, &asked).await.text().await.unwrap();
    assert!(html.contains("Your email address"), "{html}");
    let back = allow_consent(&b, &asked).await;
    code_of(base, &back, THIRD_CB);
    assert_eq!(
        consent_scope(&broker, &sub, THIRD).await.as_deref(),
        Some("email openid profile")
    );

    // prompt=consent: the page again, although everything is allowed.
    let asked = first_visit(&b, &third(base, "openid", &[("prompt", "consent")])).await;
    assert!(is_consent_page(base, &asked), "{asked}");
    code_of(base, &allow_consent(&b, &asked).await, THIRD_CB);

    // A request that wants a fresh sign-in (prompt=login) waits at the chooser:
    // its consent URL, typed by hand, does not answer it with the old session.
    // (A second later than the session's sign-in: times are whole seconds.)
    broker.clock().advance(1);
    let url = third(base, "openid", &[("prompt", "login")]).replace("&connector=dev", "");
    let chooser = first_visit(&b, &url).await;
    assert!(chooser.starts_with(&format!("{base}/login/")), "{chooser}");
    let typed = follow(&b, &format!("{chooser}/consent")).await;
    assert_eq!(typed.status(), 400);
    assert!(typed
        .text()
        .await
        .unwrap()
        .contains("expired or was already used"));
    broker.stop().await;
}
crate::both_backends!(consent_is_asked_once_and_remembered_per_scope);

async fn deny_and_forged_forms_grant_nothing(db_url: &str) {
    let broker = broker(db_url).await;
    let base = broker.base.as_str();
    let b = browser();
    let asked = sign_in(&b, base, &third(base, "openid profile", &[]), "bob").await;
    assert!(is_consent_page(base, &asked), "{asked}");

    // A forged or missing CSRF token: a page saying so, nothing granted.
    for form in [
        vec![("csrf", "forged"), ("decision", "allow")],
        vec![("decision", "allow")],
    ] {
        let resp = b.post(&asked).form(&form).send().await.unwrap();
        assert_eq!(resp.status(), 403);
        let html = resp.text().await.unwrap();
        assert!(
            html.contains("The form expired or was sent from another page."),
            "{html}"
        );
    }
    assert!(audit_events(&broker, "consent_granted").await.is_empty());
    assert!(!log_lines(&["consent_refused", "csrf", "same browser"]).is_empty());

    // Deny: access_denied to the app with its state and iss; nothing remembered.
    let resp = decide_consent(&b, &asked, "deny").await;
    assert_eq!(resp.status(), 302);
    let back = location(&resp);
    assert!(back.starts_with(THIRD_CB), "{back}");
    assert_eq!(
        query_param(&back, "error").as_deref(),
        Some("access_denied")
    );
    assert_eq!(query_param(&back, "state").as_deref(), Some("st-1"));
    assert_eq!(query_param(&back, "iss").as_deref(), Some(base));
    assert!(query_param(&back, "code").is_none());
    assert!(audit_events(&broker, "consent_granted").await.is_empty());
    // The request is used up: its page is gone.
    assert_eq!(follow(&b, &asked).await.status(), 400);

    // The next request asks again; Deny in form_post mode posts the error.
    let asked = first_visit(
        &b,
        &third(base, "openid", &[("response_mode", "form_post")]),
    )
    .await;
    assert!(
        is_consent_page(base, &asked),
        "nothing was remembered: {asked}"
    );
    let resp = decide_consent(&b, &asked, "deny").await;
    assert_eq!(resp.status(), 200);
    let html = resp.text().await.unwrap();
    assert!(html.contains(&format!("action=\"{THIRD_CB}\"")), "{html}");
    assert!(html.contains("value=\"access_denied\""), "{html}");
    let users = broker.state.store.find_users("", 10).await.unwrap();
    for u in users {
        assert!(broker
            .state
            .store
            .list_consents(&u.id)
            .await
            .unwrap()
            .is_empty());
    }
    broker.stop().await;
}
crate::both_backends!(deny_and_forged_forms_grant_nothing);

async fn a_first_party_app_is_asked_only_with_prompt_consent(db_url: &str) {
    let broker = broker(db_url).await;
    let base = broker.base.as_str();
    let b = browser();
    let app = |extra: &[(&str, &str)]| {
        let mut all = vec![("scope", "openid profile email")];
        all.extend_from_slice(extra);
        authorize(base, APP_ID, APP_REDIRECT, &all)
    };
    let back = sign_in(&b, base, &app(&[]), "carol").await;
    code_of(base, &back, APP_REDIRECT);
    let back = first_visit(&b, &app(&[("prompt", "none")])).await;
    code_of(base, &back, APP_REDIRECT);
    // The app asked for the page: it is shown, as for any app.
    let asked = first_visit(&b, &app(&[("prompt", "consent")])).await;
    assert!(is_consent_page(base, &asked), "{asked}");
    code_of(base, &allow_consent(&b, &asked).await, APP_REDIRECT);
    broker.stop().await;
}
crate::both_backends!(a_first_party_app_is_asked_only_with_prompt_consent);

/// The value of a hidden field of the form whose hidden `client_id` is `client`.
fn revoke_csrf(html: &str, client: &str) -> String {
    let form = html
        .split("<form method=\"post\" action=\"/account/consents/revoke\">")
        .find(|f| f.contains(&format!("name=\"client_id\" value=\"{client}\"")))
        .unwrap_or_else(|| panic!("no revoke form for {client}:\n{html}"));
    let marker = "name=\"csrf\" value=\"";
    let start = form.find(marker).unwrap() + marker.len();
    form[start..start + form[start..].find('"').unwrap()].to_owned()
}

/// The admin API's view of a user's consents.
pub(crate) async fn admin_consents(base: &str, user: &str) -> Value {
    let shown: Value = http()
        .get(format!("{base}/admin/v1/users/{user}"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    shown["consents"].clone()
}

async fn revoking_on_the_account_page_ends_the_apps_grants(db_url: &str) {
    let broker = broker(db_url).await;
    let base = broker.base.as_str();
    let b = browser();
    let asked = sign_in(&b, base, &third(base, "openid offline_access", &[]), "dave").await;
    let back = allow_consent(&b, &asked).await;
    let (status, t) = redeem_third(base, &code_of(base, &back, THIRD_CB)).await;
    assert_eq!(status, 200, "{t}");
    let refresh_token = t["refresh_token"].as_str().unwrap().to_owned();
    let sub = claims(t["id_token"].as_str().unwrap())["sub"]
        .as_str()
        .unwrap()
        .to_owned();

    let account = follow(&b, &format!("{base}/account")).await;
    assert_eq!(account.status(), 200);
    let html = account.text().await.unwrap();
    assert!(html.contains("Apps you have allowed"), "{html}");
    assert!(html.contains("third app"), "{html}");
    assert!(html.contains("Access while you are away"), "{html}");
    let csrf = revoke_csrf(&html, THIRD);
    let listed = admin_consents(base, &sub).await;
    assert_eq!(listed[0]["client_id"], THIRD, "{listed}");
    assert_eq!(listed[0]["scope"], "offline_access openid", "{listed}");

    // A forged token revokes nothing.
    let forged = b
        .post(format!("{base}/account/consents/revoke"))
        .form(&[("csrf", "forged"), ("client_id", THIRD)])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert!(consent_scope(&broker, &sub, THIRD).await.is_some());

    let revoked = b
        .post(format!("{base}/account/consents/revoke"))
        .form(&[("csrf", csrf.as_str()), ("client_id", THIRD)])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 303);
    assert_eq!(location(&revoked), "/account?done=revoked#apps");
    let html = follow(&b, &format!("{base}/account?done=revoked"))
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("Access revoked"), "{html}");
    assert!(html.contains("You have not allowed any application yet."));
    assert_eq!(consent_scope(&broker, &sub, THIRD).await, None);
    assert_eq!(admin_consents(base, &sub).await, json!([]));
    let events = audit_events(&broker, "consent_revoked").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event.detail["grants_revoked"], 1);

    // The app's refresh token fails; its next sign-in asks again.
    let resp = http()
        .post(format!("{base}/token"))
        .basic_auth(THIRD, Some(THIRD_SECRET))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh_token),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"], "invalid_grant", "{err}");
    let asked = first_visit(&b, &third(base, "openid", &[])).await;
    assert!(is_consent_page(base, &asked), "{asked}");
    broker.stop().await;
}
crate::both_backends!(revoking_on_the_account_page_ends_the_apps_grants);
