//! Accounts end to end: first-login policies (create, bind, deny), binding a new
//! sign-in method by signing in another way or with a one-time code, the phone
//! step for apps that need a verified number, and the account page (link, unlink,
//! never the last). Real brokers on SQLite and Postgres, driven like a browser.

use crate::harness::*;

pub const PHONE_APP: &str = "phoneapp";
pub const PHONE_APP_REDIRECT: &str = "https://phone.example.com/cb";
const NUMBER: &str = "+8613800138000";

/// A broker whose `dev` connector creates accounts and whose `dev2` connector
/// binds (a new person must prove an existing account first); codes go to the
/// development outbox; `phoneapp` needs a verified phone number.
pub async fn accounts_broker(db_url: &str) -> Broker {
    start(db_url, None, |s| {
        s.connectors = vec![
            serde_json::json!({"id": "dev", "type": "dev", "name": "Dev"}),
            serde_json::json!({"id": "dev2", "type": "dev", "name": "Dev two", "first_login": "bind"}),
        ];
        s.verification.sender = "log".into();
        let mut phone_app = s.clients[0].clone();
        phone_app.id = PHONE_APP.into();
        phone_app.redirect_uris = vec![PHONE_APP_REDIRECT.into()];
        phone_app.require_phone = true;
        s.clients.push(phone_app);
    })
    .await
}

/// The value of a hidden form field on a page.
pub fn field(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("field {name} on the page:\n{html}"))
        + marker.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].to_owned()
}

/// Open `url` (an authorize URL or a `/login/…?connector=` link leading to a
/// development connector page) and sign in there as `user`; the callback's answer.
pub async fn dev_callback(
    b: &reqwest::Client,
    base: &str,
    url: &str,
    user: &str,
) -> reqwest::Response {
    let mut resp = b.get(url).send().await.unwrap();
    while resp.status() == 302 && location(&resp).starts_with(base) {
        let next = location(&resp);
        resp = b.get(&next).send().await.unwrap();
    }
    assert_eq!(resp.status(), 200, "a development sign-in page for {url}");
    let page = resp.text().await.unwrap();
    let state = state_from_page(&page);
    let action = page
        .split("<form method=\"get\" action=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    b.get(&action)
        .query(&[("state", state.as_str()), ("user", user)])
        .send()
        .await
        .unwrap()
}

fn authorize_with(base: &str, connector: &str, client: &str, redirect: &str) -> (String, String) {
    let (url, verifier) = authorize_url(base, &[]);
    let url = url
        .replace(
            "scope=openid+profile+offline_access",
            "scope=openid+profile+phone+offline_access",
        )
        .replace("connector=dev", &format!("connector={connector}"))
        .replace(
            &format!("client_id={APP_ID}"),
            &format!("client_id={client}"),
        )
        .replace(
            &url::form_urlencoded::byte_serialize(APP_REDIRECT.as_bytes()).collect::<String>(),
            &url::form_urlencoded::byte_serialize(redirect.as_bytes()).collect::<String>(),
        );
    (url, verifier)
}

/// The `sub` of a code redeemed by the test app.
pub async fn sub_of(base: &str, back: &str, verifier: &str) -> String {
    let code = query_param(back, "code").unwrap_or_else(|| panic!("a code in {back}"));
    let t: serde_json::Value = redeem(base, &code, verifier).await.json().await.unwrap();
    claims(t["id_token"].as_str().unwrap())["sub"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Alice has an account through `dev`; returns her `sub`.
async fn alice(base: &str) -> String {
    let (url, verifier) = authorize_url(base, &[]);
    let back = sign_in(&browser(), base, &url, "alice").await;
    sub_of(base, &back, &verifier).await
}

/// A sign-in through the binding connector `dev2` as `user`: the browser lands on
/// the bind page; returns (bind page URL, its HTML, PKCE verifier).
async fn reach_bind_page(b: &reqwest::Client, base: &str, user: &str) -> (String, String, String) {
    let (url, verifier) = authorize_url(base, &[]);
    let url = url.replace("connector=dev", "connector=dev2");
    let cb = dev_callback(b, base, &url, user).await;
    assert_eq!(cb.status(), 302);
    let bind_url = location(&cb);
    assert!(bind_url.ends_with("/bind"), "{bind_url}");
    let page = b.get(&bind_url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    (bind_url, page.text().await.unwrap(), verifier)
}

async fn first_login_bind_links_after_signing_in_another_way(db_url: &str) {
    let broker = accounts_broker(db_url).await;
    let base = broker.base.clone();
    let alice_sub = alice(&base).await;
    let b = browser();
    let (bind_url, page, verifier) = reach_bind_page(&b, &base, "alice-second").await;
    assert!(page.contains("Link to your account"), "{page}");
    // Offered: the other method (dev), not the one waiting (dev2).
    assert!(page.contains("connector=dev\""), "{page}");
    assert!(!page.contains("connector=dev2"), "{page}");
    // Nothing was created for the waiting identity.
    assert!(broker
        .state
        .store
        .get_identity("dev2", "alice-second")
        .await
        .unwrap()
        .is_none());
    // Prove Alice's account by signing in through dev.
    let other = format!("{}?connector=dev", bind_url.trim_end_matches("/bind"));
    let cb = dev_callback(&b, &base, &other, "alice").await;
    assert_eq!(cb.status(), 302);
    let back = location(&cb);
    assert!(back.starts_with(APP_REDIRECT), "{back}");
    assert_eq!(sub_of(&base, &back, &verifier).await, alice_sub);
    // From now on dev2 signs Alice straight in.
    let (url, verifier) = authorize_url(&base, &[]);
    let url = url.replace("connector=dev", "connector=dev2");
    let back = sign_in(&browser(), &base, &url, "alice-second").await;
    assert_eq!(sub_of(&base, &back, &verifier).await, alice_sub);
    let audit = broker
        .state
        .store
        .list_audit(Some(&alice_sub), 50, None)
        .await
        .unwrap();
    assert!(
        audit.iter().any(|e| e.event.event == "login_linked"),
        "{audit:?}"
    );
    assert!(!log_lines(&["bind_required", "dev2"]).is_empty());
}
crate::both_backends!(first_login_bind_links_after_signing_in_another_way);

async fn a_proof_that_is_not_linked_either_links_nothing(db_url: &str) {
    let broker = accounts_broker(db_url).await;
    let base = broker.base.clone();
    let b = browser();
    let (bind_url, _, _) = reach_bind_page(&b, &base, "stranger").await;
    let other = format!("{}?connector=dev", bind_url.trim_end_matches("/bind"));
    let cb = dev_callback(&b, &base, &other, "nobody-known").await;
    assert_eq!(cb.status(), 400);
    let page = cb.text().await.unwrap();
    assert!(page.contains("not linked to an account either"), "{page}");
    assert!(
        page.contains("/bind"),
        "a way back to the bind page: {page}"
    );
    assert!(broker
        .state
        .store
        .find_users("", 10)
        .await
        .unwrap()
        .is_empty());
    // The bind page still works afterwards.
    assert_eq!(b.get(&bind_url).send().await.unwrap().status(), 200);
}
crate::both_backends!(a_proof_that_is_not_linked_either_links_nothing);

async fn the_bind_page_belongs_to_the_browser_that_signed_in(db_url: &str) {
    let broker = accounts_broker(db_url).await;
    let base = broker.base.clone();
    alice(&base).await;
    let b = browser();
    let (bind_url, _, _) = reach_bind_page(&b, &base, "victim").await;
    // Another browser that learned the URL can neither see it nor prove an
    // account for the waiting identity.
    let attacker = browser();
    let resp = attacker.get(&bind_url).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("not started in this browser"));
    let other = format!("{}?connector=dev", bind_url.trim_end_matches("/bind"));
    let cb = dev_callback(&attacker, &base, &other, "alice").await;
    assert_eq!(cb.status(), 400);
    assert!(broker
        .state
        .store
        .get_identity("dev2", "victim")
        .await
        .unwrap()
        .is_none());
}
crate::both_backends!(the_bind_page_belongs_to_the_browser_that_signed_in);

/// Alice with a verified phone number.
async fn alice_with_phone(broker: &Broker) -> String {
    let sub = alice(&broker.base).await;
    broker
        .state
        .store
        .set_user_phone(&sub, NUMBER, broker.clock().now())
        .await
        .unwrap();
    sub
}

/// Ask for a code on the bind page; returns (code page URL, its HTML).
pub async fn ask_bind_code(
    b: &reqwest::Client,
    bind_url: &str,
    page: &str,
    phone: &str,
) -> reqwest::Response {
    b.post(format!("{bind_url}/send"))
        .form(&[("csrf", field(page, "csrf").as_str()), ("phone", phone)])
        .send()
        .await
        .unwrap()
}

fn latest_code(broker: &Broker) -> String {
    broker
        .state
        .verifier
        .outbox
        .list()
        .first()
        .expect("a code in the outbox")
        .code
        .clone()
}

pub async fn enter_code(b: &reqwest::Client, code_page_url: &str, code: &str) -> reqwest::Response {
    let page = get_text(b, code_page_url).await;
    let action = code_page_url.split('?').next().unwrap().to_owned();
    b.post(action)
        .form(&[
            ("csrf", field(&page, "csrf").as_str()),
            ("c", field(&page, "c").as_str()),
            ("code", code),
        ])
        .send()
        .await
        .unwrap()
}

async fn binding_by_a_one_time_code_to_the_accounts_phone(db_url: &str) {
    let broker = accounts_broker(db_url).await;
    let base = broker.base.clone();
    let alice_sub = alice_with_phone(&broker).await;
    let b = browser();
    let (bind_url, page, verifier) = reach_bind_page(&b, &base, "alice-phone-login").await;
    assert!(page.contains("one-time code"), "{page}");
    let sent = ask_bind_code(&b, &bind_url, &page, "138 0013 8000").await;
    assert_eq!(sent.status(), 303);
    let code_url = format!("{base}{}", location(&sent));
    let code_page = b.get(&code_url).send().await.unwrap().text().await.unwrap();
    // The page does not say whether the number has an account.
    assert!(
        code_page.contains("If this number belongs to an account"),
        "{code_page}"
    );
    let code = latest_code(&broker);
    assert_eq!(broker.state.verifier.outbox.list()[0].to, NUMBER);
    // A wrong code first: told how many attempts are left.
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let resp = enter_code(&b, &code_url, wrong).await;
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("Attempts left: 4"));
    let resp = enter_code(&b, &code_url, &code).await;
    assert_eq!(resp.status(), 302);
    let back = location(&resp);
    assert_eq!(sub_of(&base, &back, &verifier).await, alice_sub);
    let linked = broker
        .state
        .store
        .get_identity("dev2", "alice-phone-login")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(linked.user_id, alice_sub);
    // The request is used up: the code page is gone with it.
    let resp = b.get(&code_url).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("expired or was already used"));
}
crate::both_backends!(binding_by_a_one_time_code_to_the_accounts_phone);

async fn codes_die_after_five_wrong_attempts_expire_and_are_throttled(db_url: &str) {
    let broker = accounts_broker(db_url).await;
    let base = broker.base.clone();
    alice_with_phone(&broker).await;
    let b = browser();
    let (bind_url, page, _) = reach_bind_page(&b, &base, "guesser").await;
    let sent = ask_bind_code(&b, &bind_url, &page, NUMBER).await;
    let code_url = format!("{base}{}", location(&sent));
    let code = latest_code(&broker);
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for left in [4, 3, 2, 1] {
        let resp = enter_code(&b, &code_url, wrong).await;
        assert!(resp
            .text()
            .await
            .unwrap()
            .contains(&format!("Attempts left: {left}")));
    }
    let resp = enter_code(&b, &code_url, wrong).await;
    assert!(resp.text().await.unwrap().contains("Too many wrong codes"));
    // Even the right code is refused now.
    let resp = enter_code(&b, &code_url, &code).await;
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("Too many wrong codes"));
    assert!(broker
        .state
        .store
        .get_identity("dev2", "guesser")
        .await
        .unwrap()
        .is_none());
    // Asking again at once is throttled, and says for how long.
    let resp = ask_bind_code(&b, &bind_url, &page, NUMBER).await;
    assert_eq!(resp.status(), 400);
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("Seconds until you can ask again"));
    // A minute later a new code works, but not after it expires.
    broker.clock().advance(61);
    let sent = ask_bind_code(&b, &bind_url, &page, NUMBER).await;
    assert_eq!(sent.status(), 303);
    let code_url = format!("{base}{}", location(&sent));
    let code = latest_code(&broker);
    broker.clock().advance(301);
    let resp = enter_code(&b, &code_url, &code).await;
    assert!(resp.text().await.unwrap().contains("The code has expired"));
    assert!(broker
        .state
        .store
        .get_identity("dev2", "guesser")
        .await
        .unwrap()
        .is_none());
}
crate::both_backends!(codes_die_after_five_wrong_attempts_expire_and_are_throttled);

async fn an_unknown_number_looks_the_same_and_binds_nothing(db_url: &str) {
    let broker = accounts_broker(db_url).await;
    let base = broker.base.clone();
    alice_with_phone(&broker).await;
    let before = broker.state.verifier.outbox.list().len();
    let b = browser();
    let (bind_url, page, _) = reach_bind_page(&b, &base, "who").await;
    let sent = ask_bind_code(&b, &bind_url, &page, "13900139000").await;
    assert_eq!(sent.status(), 303, "same answer as for a known number");
    let code_url = format!("{base}{}", location(&sent));
    let code_page = b.get(&code_url).send().await.unwrap().text().await.unwrap();
    assert!(code_page.contains("If this number belongs to an account"));
    assert_eq!(
        broker.state.verifier.outbox.list().len(),
        before,
        "nothing sent"
    );
    let resp = enter_code(&b, &code_url, "123456").await;
    assert_eq!(resp.status(), 400);
    assert!(broker
        .state
        .store
        .get_identity("dev2", "who")
        .await
        .unwrap()
        .is_none());
    // Not a phone number at all: a clear message on the bind page.
    let resp = ask_bind_code(&b, &bind_url, &page, "call me").await;
    assert_eq!(resp.status(), 400);
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("does not look like a phone number"));
    // A form without its CSRF token is refused.
    let resp = b
        .post(format!("{bind_url}/send"))
        .form(&[("phone", NUMBER)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
}
crate::both_backends!(an_unknown_number_looks_the_same_and_binds_nothing);

async fn binding_to_a_disabled_account_is_refused(db_url: &str) {
    let broker = accounts_broker(db_url).await;
    let base = broker.base.clone();
    let alice_sub = alice_with_phone(&broker).await;
    let b = browser();
    let (bind_url, page, _) = reach_bind_page(&b, &base, "late-alice").await;
    broker
        .state
        .store
        .set_user_disabled(&alice_sub, Some(broker.clock().now()))
        .await
        .unwrap();
    // By code…
    let sent = ask_bind_code(&b, &bind_url, &page, NUMBER).await;
    let code_url = format!("{base}{}", location(&sent));
    let resp = enter_code(&b, &code_url, &latest_code(&broker)).await;
    assert_eq!(resp.status(), 403);
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("This account is disabled"));
    assert!(broker
        .state
        .store
        .get_identity("dev2", "late-alice")
        .await
        .unwrap()
        .is_none());
    // …and by signing in another way.
    let other = format!("{}?connector=dev", bind_url.trim_end_matches("/bind"));
    let cb = dev_callback(&b, &base, &other, "alice").await;
    assert_eq!(cb.status(), 403);
    assert!(broker
        .state
        .store
        .get_identity("dev2", "late-alice")
        .await
        .unwrap()
        .is_none());
}
crate::both_backends!(binding_to_a_disabled_account_is_refused);

async fn first_login_deny_and_create(db_url: &str) {
    let broker = start(db_url, None, |s| {
        s.connectors = vec![
            serde_json::json!({"id": "dev", "type": "dev", "name": "Dev", "first_login": "deny"}),
            serde_json::json!({"id": "dev2", "type": "dev", "name": "Dev two", "first_login": "create"}),
        ];
    })
    .await;
    let base = broker.base.clone();
    let (url, _) = authorize_url(&base, &[]);
    let back = sign_in(&browser(), &base, &url, "newcomer").await;
    assert!(back.starts_with(APP_REDIRECT));
    assert_eq!(
        query_param(&back, "error").as_deref(),
        Some("access_denied")
    );
    assert!(broker
        .state
        .store
        .find_users("", 10)
        .await
        .unwrap()
        .is_empty());
    let (url, verifier) = authorize_url(&base, &[]);
    let url = url.replace("connector=dev", "connector=dev2");
    let back = sign_in(&browser(), &base, &url, "newcomer").await;
    assert!(!sub_of(&base, &back, &verifier).await.is_empty());
    assert_eq!(
        broker.state.store.find_users("", 10).await.unwrap().len(),
        1
    );
}
crate::both_backends!(first_login_deny_and_create);

/// Sign in to the phone app through `dev` as `user`; where the callback sent the
/// browser, and the PKCE verifier.
async fn phone_app_sign_in(b: &reqwest::Client, base: &str, user: &str) -> (String, String) {
    let (url, verifier) = authorize_with(base, "dev", PHONE_APP, PHONE_APP_REDIRECT);
    let cb = dev_callback(b, base, &url, user).await;
    assert_eq!(cb.status(), 302);
    (location(&cb), verifier)
}

async fn redeem_for(base: &str, back: &str, verifier: &str) -> serde_json::Value {
    let code = query_param(back, "code").unwrap_or_else(|| panic!("a code in {back}"));
    http()
        .post(format!("{base}/token"))
        .basic_auth(PHONE_APP, Some(APP_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", PHONE_APP_REDIRECT),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

pub(crate) async fn verify_number(
    b: &reqwest::Client,
    broker: &Broker,
    phone_url: &str,
    number: &str,
) -> reqwest::Response {
    let page = b.get(phone_url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(page.contains("Add your phone number"), "{page}");
    let sent = b
        .post(format!("{phone_url}/send"))
        .form(&[("csrf", field(&page, "csrf").as_str()), ("phone", number)])
        .send()
        .await
        .unwrap();
    assert_eq!(
        sent.status(),
        303,
        "{}",
        sent.text().await.unwrap_or_default()
    );
    let code_url = format!("{}{}", broker.base, location(&sent));
    let code_page = b.get(&code_url).send().await.unwrap().text().await.unwrap();
    assert!(code_page.contains("+86 138****8000"), "{code_page}");
    enter_code(b, &code_url, &latest_code(broker)).await
}

async fn an_app_that_needs_a_phone_number_gets_one_verified(db_url: &str) {
    let broker = accounts_broker(db_url).await;
    let base = broker.base.clone();
    let b = browser();
    let (next, verifier) = phone_app_sign_in(&b, &base, "carol").await;
    assert!(
        next.ends_with("/phone"),
        "the phone step, not the app: {next}"
    );
    assert!(query_param(&next, "code").is_none());
    let resp = verify_number(&b, &broker, &next, "13800138000").await;
    assert_eq!(resp.status(), 302);
    let back = location(&resp);
    assert!(back.starts_with(PHONE_APP_REDIRECT), "{back}");
    let tokens = redeem_for(&base, &back, &verifier).await;
    let id = claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(id["phone_number"], NUMBER);
    assert_eq!(id["phone_number_verified"], true);
    let info: serde_json::Value = http()
        .get(format!("{base}/userinfo"))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["phone_number"], NUMBER);
    // Asked once: the next visit (SSO) goes straight to the app.
    let (url, verifier) = authorize_with(&base, "dev", PHONE_APP, PHONE_APP_REDIRECT);
    let resp = b.get(&url).send().await.unwrap();
    let back = location(&resp);
    assert!(back.starts_with(PHONE_APP_REDIRECT), "{back}");
    assert_eq!(
        claims(
            redeem_for(&base, &back, &verifier).await["id_token"]
                .as_str()
                .unwrap()
        )["sub"],
        id["sub"]
    );
    // Another person cannot verify the same number for their account.
    let other = browser();
    let (next, _) = phone_app_sign_in(&other, &base, "dave").await;
    broker.clock().advance(61); // past the resend interval for this number
    let resp = verify_number(&other, &broker, &next, NUMBER).await;
    assert_eq!(resp.status(), 409);
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("already verified on another account"));
}
crate::both_backends!(an_app_that_needs_a_phone_number_gets_one_verified);

async fn the_phone_step_answers_a_form_post_app_by_form_post(db_url: &str) {
    let broker = accounts_broker(db_url).await;
    let base = broker.base.clone();
    let b = browser();
    let (url, verifier) = authorize_with(&base, "dev", PHONE_APP, PHONE_APP_REDIRECT);
    let url = format!("{url}&response_mode=form_post");
    let cb = dev_callback(&b, &base, &url, "carol").await;
    assert_eq!(cb.status(), 302);
    let next = location(&cb);
    assert!(next.ends_with("/phone"), "the phone step first: {next}");
    let done =
        crate::form_post::form_post_page(verify_number(&b, &broker, &next, "13800138000").await)
            .await;
    assert_eq!(done.action, PHONE_APP_REDIRECT);
    assert_eq!(done.field("state"), Some("app-state-1"));
    let back = format!(
        "{PHONE_APP_REDIRECT}?code={}",
        done.field("code").expect("code")
    );
    let tokens = redeem_for(&base, &back, &verifier).await;
    assert_eq!(
        claims(tokens["id_token"].as_str().unwrap())["phone_number"],
        NUMBER
    );
}
crate::both_backends!(the_phone_step_answers_a_form_post_app_by_form_post);

async fn the_phone_step_on_an_sso_visit_and_with_prompt_none(db_url: &str) {
    let broker = accounts_broker(db_url).await;
    let base = broker.base.clone();
    let b = browser();
    // Signed in at the broker through another app first.
    let (url, _) = authorize_url(&base, &[]);
    sign_in(&b, &base, &url, "erin").await;
    // prompt=none cannot ask for a number.
    let (url, _) = authorize_with(&base, "dev", PHONE_APP, PHONE_APP_REDIRECT);
    let resp = b.get(format!("{url}&prompt=none")).send().await.unwrap();
    let back = location(&resp);
    assert_eq!(
        query_param(&back, "error").as_deref(),
        Some("interaction_required"),
        "{back}"
    );
    // Without it: the phone step, then the app.
    let (url, verifier) = authorize_with(&base, "dev", PHONE_APP, PHONE_APP_REDIRECT);
    let resp = b.get(&url).send().await.unwrap();
    let next = location(&resp);
    assert!(next.ends_with("/phone"), "{next}");
    let resp = verify_number(&b, &broker, &next, NUMBER).await;
    let back = location(&resp);
    let tokens = redeem_for(&base, &back, &verifier).await;
    assert_eq!(
        claims(tokens["id_token"].as_str().unwrap())["phone_number"],
        NUMBER
    );
    // The phone step needs the signed-in browser.
    let resp = browser().get(&next).send().await.unwrap();
    assert_eq!(resp.status(), 400);
}
crate::both_backends!(the_phone_step_on_an_sso_visit_and_with_prompt_none);

async fn account_page(b: &reqwest::Client, base: &str) -> String {
    let resp = b.get(format!("{base}/account")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap()
}

async fn account_post(
    b: &reqwest::Client,
    base: &str,
    path: &str,
    page: &str,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let csrf = field(page, "csrf");
    let mut form = vec![("csrf", csrf.as_str())];
    form.extend_from_slice(extra);
    b.post(format!("{base}{path}"))
        .form(&form)
        .send()
        .await
        .unwrap()
}

async fn the_account_page_links_and_unlinks_but_never_the_last(db_url: &str) {
    let broker = accounts_broker(db_url).await;
    let base = broker.base.clone();
    let b = browser();
    // Not signed in: the account page signs the person in first.
    let resp = b.get(format!("{base}/account")).send().await.unwrap();
    assert_eq!(resp.status(), 302);
    let chooser = location(&resp);
    assert!(chooser.contains("/login/"), "{chooser}");
    let cb = dev_callback(&b, &base, &format!("{chooser}?connector=dev"), "frank").await;
    assert_eq!(cb.status(), 302);
    assert_eq!(
        location(&cb).split('?').next().unwrap(),
        format!("{base}/account/done")
    );
    let page = account_page(&b, &base).await;
    assert!(page.contains("Your account"), "{page}");
    assert!(
        page.contains("Your only sign-in method cannot be removed"),
        "{page}"
    );
    let user = broker
        .state
        .store
        .get_identity("dev", "frank")
        .await
        .unwrap()
        .unwrap()
        .user_id;
    // Unlinking the only method is refused even when posted by hand.
    let resp = account_post(
        &b,
        &base,
        "/account/unlink",
        &page,
        &[("connector", "dev"), ("subject", "frank")],
    )
    .await;
    assert_eq!(location(&resp), "/account?done=last");
    // Link dev2.
    let resp = account_post(&b, &base, "/account/link", &page, &[("connector", "dev2")]).await;
    assert_eq!(resp.status(), 200, "the dev2 sign-in page");
    let dev_page = resp.text().await.unwrap();
    let state = state_from_page(&dev_page);
    let cb = b
        .get(format!("{base}/callback/dev2"))
        .query(&[("state", state.as_str()), ("user", "frank-two")])
        .send()
        .await
        .unwrap();
    assert_eq!(location(&cb), format!("{base}/account?done=linked"));
    let page = get_text(&b, location(&cb)).await;
    assert!(
        page.contains("Linked. You can now sign in this way too."),
        "{page}"
    );
    assert_eq!(
        broker
            .state
            .store
            .list_identities(&user)
            .await
            .unwrap()
            .len(),
        2
    );
    // An identity that belongs to someone else is never moved here.
    let (url, _) = authorize_url(&base, &[]);
    sign_in(&browser(), &base, &url, "grace").await;
    let resp = account_post(&b, &base, "/account/link", &page, &[("connector", "dev")]).await;
    let state = state_from_page(&resp.text().await.unwrap());
    let cb = b
        .get(format!("{base}/callback/dev"))
        .query(&[("state", state.as_str()), ("user", "grace")])
        .send()
        .await
        .unwrap();
    assert_eq!(location(&cb), format!("{base}/account?done=other_account"));
    assert_ne!(
        broker
            .state
            .store
            .get_identity("dev", "grace")
            .await
            .unwrap()
            .unwrap()
            .user_id,
        user
    );
    // Unlink dev: dev2 remains; then dev2 is the last.
    let page = account_page(&b, &base).await;
    let resp = account_post(
        &b,
        &base,
        "/account/unlink",
        &page,
        &[("connector", "dev"), ("subject", "frank")],
    )
    .await;
    assert_eq!(location(&resp), "/account?done=unlinked");
    let resp = account_post(
        &b,
        &base,
        "/account/unlink",
        &page,
        &[("connector", "dev2"), ("subject", "frank-two")],
    )
    .await;
    assert_eq!(location(&resp), "/account?done=last");
    let ids = broker.state.store.list_identities(&user).await.unwrap();
    assert_eq!(ids.len(), 1);
    assert_eq!(ids[0].connector_id, "dev2");
    // Forms without the CSRF token, or from another browser, do nothing.
    let resp = b
        .post(format!("{base}/account/unlink"))
        .form(&[("connector", "dev2"), ("subject", "frank-two")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let resp = account_post(
        &browser(),
        &base,
        "/account/link",
        &page,
        &[("connector", "dev")],
    )
    .await;
    assert_eq!(resp.status(), 403);
    let audit = broker
        .state
        .store
        .list_audit(Some(&user), 50, None)
        .await
        .unwrap();
    assert!(audit.iter().any(|e| e.event.event == "identity_linked"));
    assert!(audit.iter().any(|e| e.event.event == "identity_unlinked"));
}
crate::both_backends!(the_account_page_links_and_unlinks_but_never_the_last);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pages_speak_chinese_when_asked() {
    let db = TestDb::new(Db::Sqlite);
    let broker = accounts_broker(&db.url()).await;
    let base = broker.base.clone();
    alice(&base).await;
    let b = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .default_headers({
            let mut h = reqwest::header::HeaderMap::new();
            h.insert("accept-language", "zh-CN,zh;q=0.9".parse().unwrap());
            h
        })
        .build()
        .unwrap();
    let (_, page, _) = reach_bind_page(&b, &base, "zh-user").await;
    assert!(page.contains("关联已有账号"), "{page}");
    assert!(page.contains("lang=\"zh-CN\""));
}

/// Sign in to the account page as `user` through `dev`; the browser.
async fn on_account_page(base: &str, user: &str) -> reqwest::Client {
    let b = browser();
    let resp = b.get(format!("{base}/account")).send().await.unwrap();
    let chooser = location(&resp);
    let cb = dev_callback(&b, base, &format!("{chooser}?connector=dev"), user).await;
    assert_eq!(cb.status(), 302);
    b
}

async fn changing_sign_in_methods_needs_a_recent_sign_in(db_url: &str) {
    let broker = accounts_broker(db_url).await;
    let base = broker.base.clone();
    let b = on_account_page(&base, "henry").await;
    let page = account_page(&b, &base).await;
    // Eleven minutes later the session is too old to change sign-in methods.
    broker.clock().advance(660);
    let resp = account_post(&b, &base, "/account/link", &page, &[("connector", "dev2")]).await;
    assert_eq!(resp.status(), 200);
    let confirm = resp.text().await.unwrap();
    assert!(
        confirm.contains("Changing your sign-in methods needs a recent sign-in"),
        "{confirm}"
    );
    // No phone and no WeChat chat: only signing in again is offered.
    assert!(!confirm.contains("/account/confirm/send"), "{confirm}");
    let user = broker
        .state
        .store
        .get_identity("dev", "henry")
        .await
        .unwrap()
        .unwrap()
        .user_id;
    assert_eq!(
        broker
            .state
            .store
            .list_identities(&user)
            .await
            .unwrap()
            .len(),
        1,
        "nothing linked"
    );
    // Sign in again: the new session is recent and linking works.
    let resp = account_post(&b, &base, "/account/confirm/signin", &confirm, &[]).await;
    assert_eq!(resp.status(), 303);
    let chooser = location(&resp);
    let cb = dev_callback(&b, &base, &format!("{chooser}?connector=dev"), "henry").await;
    assert_eq!(cb.status(), 302);
    let page = account_page(&b, &base).await;
    let resp = account_post(&b, &base, "/account/link", &page, &[("connector", "dev2")]).await;
    let state = state_from_page(&resp.text().await.unwrap());
    let cb = b
        .get(format!("{base}/callback/dev2"))
        .query(&[("state", state.as_str()), ("user", "henry-two")])
        .send()
        .await
        .unwrap();
    assert_eq!(location(&cb), format!("{base}/account?done=linked"));

    // With a verified number, a one-time code confirms instead.
    broker
        .state
        .store
        .set_user_phone(&user, NUMBER, broker.clock().now())
        .await
        .unwrap();
    broker.clock().advance(660);
    let page = account_page(&b, &base).await;
    let resp = account_post(
        &b,
        &base,
        "/account/unlink",
        &page,
        &[("connector", "dev2"), ("subject", "henry-two")],
    )
    .await;
    let confirm = resp.text().await.unwrap();
    assert!(confirm.contains("/account/confirm/send"), "{confirm}");
    let sent = account_post(&b, &base, "/account/confirm/send", &confirm, &[]).await;
    assert_eq!(sent.status(), 303);
    let code_url = format!("{base}{}", location(&sent));
    let code = latest_code(&broker);
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let resp = enter_code(&b, &code_url, wrong).await;
    assert!(resp.text().await.unwrap().contains("Attempts left: 4"));
    let resp = enter_code(&b, &code_url, &code).await;
    assert_eq!(location(&resp), "/account?done=confirmed");
    let resp = account_post(
        &b,
        &base,
        "/account/unlink",
        &page,
        &[("connector", "dev2"), ("subject", "henry-two")],
    )
    .await;
    assert_eq!(location(&resp), "/account?done=unlinked");
    let audit = broker
        .state
        .store
        .list_audit(Some(&user), 50, None)
        .await
        .unwrap();
    assert!(
        audit.iter().any(|e| e.event.event == "step_up"),
        "{audit:?}"
    );
}
crate::both_backends!(changing_sign_in_methods_needs_a_recent_sign_in);
