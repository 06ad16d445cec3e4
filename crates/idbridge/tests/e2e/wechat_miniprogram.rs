//! WeChat Mini Program login end to end: the Mini Program's `wx.login` code is
//! exchanged at the broker's token endpoint (RFC 8693, subject token type
//! `urn:idbridge:params:oauth:token-type:wechat_miniprogram_code`) for the
//! broker's tokens. The same person through the website QR and the Mini
//! Program is one account (unionid under the Open Platform account); the
//! session key never reaches the app; every failure is an OAuth error, a log
//! line naming the stage, WeChat's errcode and the fix, and no account.

use crate::both_backends;
use crate::harness::*;
use crate::wechat_app::{post_token, sub, world, Auth, World, DESKTOP_UA, GRANT};
use wechat_sim::{dev, Endpoint, Fault, FaultKind};

const MINI_CODE: &str = "urn:idbridge:params:oauth:token-type:wechat_miniprogram_code";
const ADMIN_TOKEN: &str = "t3st-Admin-Token_0123456789abcdefGHIJKL";

impl World {
    fn mini(&self) -> String {
        format!("{}-mini", self.tag)
    }

    fn login_code(&self, user: &str) -> String {
        self.sim
            .issue_login_code(dev::MINI_PROGRAM_APPID, user)
            .unwrap()
    }

    async fn mini_exchange(&self, code: &str) -> crate::wechat_app::Answer {
        let mini = self.mini();
        post_token(
            &self.broker.base,
            Auth::Basic(APP_ID, APP_SECRET),
            &[
                ("grant_type", GRANT),
                ("subject_token", code),
                ("subject_token_type", MINI_CODE),
                ("connector", mini.as_str()),
                ("scope", "openid profile offline_access"),
            ],
        )
        .await
    }
}

async fn a_mini_program_code_signs_in_the_same_person_as_the_website(db_url: &str) {
    let w = world(db_url, "mini-ok", |_, _| {}).await;
    // Discovery offers token exchange for the Mini Program's code type.
    let discovery = get_json(
        &http(),
        format!("{}/.well-known/openid-configuration", w.broker.base),
    )
    .await;
    assert!(discovery["grant_types_supported"]
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g == GRANT));

    let first = w.mini_exchange(&w.login_code(dev::USER_XIAOMING)).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.cache_control, "no-store");
    let mini_sub = sub(&first.body);
    let id_token = claims(first.body["id_token"].as_str().unwrap());
    assert_eq!(id_token["linked_connectors"], serde_json::json!([w.mini()]));
    // The session key stays with the broker: nothing of it in the answer.
    let answer = first.body.to_string();
    assert!(!answer.contains("session_key"), "{answer}");
    assert!(first.body["refresh_token"].is_string());

    // A returning person keeps the sub; the website QR is the same account.
    let again = w.mini_exchange(&w.login_code(dev::USER_XIAOMING)).await;
    assert_eq!(sub(&again.body), mini_sub);
    let web = w
        .browser_login(DESKTOP_UA, &format!("{}-web", w.tag), dev::USER_XIAOMING)
        .await;
    assert_eq!(web["sub"], mini_sub.as_str(), "linked by unionid");
    assert_eq!(w.users().await, 1);

    // The refresh token works like any other.
    let refreshed = refresh(
        &w.broker.base,
        first.body["refresh_token"].as_str().unwrap(),
    )
    .await;
    assert_eq!(refreshed.status(), 200);
    w.broker.stop().await;
}
both_backends!(a_mini_program_code_signs_in_the_same_person_as_the_website);

async fn mini_program_failures_are_oauth_errors_with_a_log_line(db_url: &str) {
    let w = world(db_url, "mini-bad", |_, _| {}).await;
    let mini = format!("connector={}", w.mini());

    // A made-up code: WeChat's 40029.
    let a = w.mini_exchange("made-up-code").await;
    let description = a.error(400, "invalid_grant").to_owned();
    assert!(!description.is_empty());
    assert!(!log_lines(&["login_failed", &mini, "40029"]).is_empty());

    // A used code: 40163.
    let code = w.login_code(dev::USER_ALICE);
    assert_eq!(w.mini_exchange(&code).await.status, 200);
    let a = w.mini_exchange(&code).await;
    a.error(400, "invalid_grant");
    assert!(!log_lines(&["login_failed", &mini, "40163"]).is_empty());

    // A high-risk user (40226): refused, and no account for them.
    let users = w.users().await;
    w.sim.set_fault(Fault {
        endpoint: Endpoint::JsCode2Session,
        kind: FaultKind::Errcode(40226, "high risk user".into()),
        times: Some(1),
    });
    let a = w.mini_exchange(&w.login_code(dev::USER_XIAOMING)).await;
    a.error(400, "invalid_grant");
    assert!(!log_lines(&["login_failed", &mini, "40226", "risk"]).is_empty());
    assert_eq!(w.users().await, users, "nothing half-written");

    // WeChat busy: temporarily unavailable, retry with a new code.
    w.sim.set_fault(Fault {
        endpoint: Endpoint::JsCode2Session,
        kind: FaultKind::Errcode(-1, "system error".into()),
        times: Some(1),
    });
    let a = w.mini_exchange(&w.login_code(dev::USER_XIAOMING)).await;
    a.error(503, "temporarily_unavailable");
    assert_eq!(w.users().await, users);
    w.broker.stop().await;
}
both_backends!(mini_program_failures_are_oauth_errors_with_a_log_line);

const PHONE_APP: &str = "phone-app";
const PHONE_APP_SECRET: &str = "phone-app-secret-0123456789abcdef";

/// `{tag}-mini` takes getPhoneNumber codes; `{tag}-nophone`, the same Mini
/// Program without `phone_number`, does not; the client `phone-app` has
/// `require_phone`.
async fn phone_world(db_url: &str, tag: &str) -> World {
    let t = tag.to_owned();
    world(db_url, tag, move |_, s| {
        let mini = format!("{t}-mini");
        let mut no_phone = None;
        for c in s.connectors.iter_mut() {
            if c["id"] == mini.as_str() {
                let mut copy = c.clone();
                copy["id"] = format!("{t}-nophone").into();
                no_phone = Some(copy);
                c["phone_number"] = true.into();
            }
        }
        s.connectors.extend(no_phone);
        let mut app = crate::wechat_app::client_settings(
            PHONE_APP,
            Some(PHONE_APP_SECRET),
            vec![mini, format!("{t}-nophone")],
        );
        app.require_phone = true;
        s.clients.push(app);
        // require_phone needs a sender for the browser sign-ins' phone step;
        // the Mini Program's verified number needs none (nothing listens here).
        s.verification.sender = "webhook".into();
        s.verification.webhook_url = Some("http://127.0.0.1:9/sms".into());
        s.verification.webhook_secret = Some("webhook-secret-0123456789".into());
    })
    .await
}

impl World {
    fn phone_code(&self, phone: &str) -> String {
        self.sim
            .issue_phone_code(dev::MINI_PROGRAM_APPID, phone)
            .unwrap()
    }

    /// The phone app's exchange through `connector`, with a phone code when given.
    async fn phone_exchange(
        &self,
        connector: &str,
        code: &str,
        phone_code: Option<&str>,
    ) -> crate::wechat_app::Answer {
        let mut form = vec![
            ("grant_type", GRANT),
            ("subject_token", code),
            ("subject_token_type", MINI_CODE),
            ("connector", connector),
            ("scope", "openid phone"),
        ];
        if let Some(p) = phone_code {
            form.push(("wechat_phone_code", p));
        }
        post_token(
            &self.broker.base,
            Auth::Basic(PHONE_APP, PHONE_APP_SECRET),
            &form,
        )
        .await
    }
}

async fn a_getphonenumber_code_gives_the_account_its_verified_phone(db_url: &str) {
    // Each backend's run has its own connector ids, so its log lines are its own.
    let tag = if db_url.starts_with("postgres") {
        "mini-phone-pg"
    } else {
        "mini-phone"
    };
    let w = phone_world(db_url, tag).await;
    let mini = w.mini();
    let mini_field = format!("connector={mini}");
    // Without a phone code, an app that needs a verified number is refused.
    let a = w
        .phone_exchange(&mini, &w.login_code(dev::USER_XIAOMING), None)
        .await;
    assert!(a.error(400, "invalid_grant").contains("phone"));

    // With one, WeChat's verified number is the account's: the app gets it
    // under the phone scope, verified, with no SMS step.
    let phone_code = w.phone_code("+8613912340777");
    let a = w
        .phone_exchange(&mini, &w.login_code(dev::USER_XIAOMING), Some(&phone_code))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let id_token = claims(a.body["id_token"].as_str().unwrap());
    assert_eq!(id_token["phone_number"], "+8613912340777");
    assert_eq!(id_token["phone_number_verified"], true);
    let user = w
        .broker
        .state
        .store
        .get_user(id_token["sub"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.phone_number.as_deref(), Some("+8613912340777"));
    assert!(user.phone_verified_at.is_some());
    // Neither the number nor the codes are in the log.
    assert!(log_lines(&["+8613912340777"]).is_empty());
    assert!(log_lines(&[phone_code.as_str()]).is_empty());
    // The returning person needs no phone code any more.
    let again = w
        .phone_exchange(&mini, &w.login_code(dev::USER_XIAOMING), None)
        .await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(sub(&again.body), id_token["sub"].as_str().unwrap());

    // A spent phone code: WeChat's 40029, explained; the sign-in is refused
    // and nothing is written for the new person.
    let users = w.users().await;
    let a = w
        .phone_exchange(&mini, &w.login_code(dev::USER_ALICE), Some(&phone_code))
        .await;
    a.error(400, "invalid_grant");
    assert!(!log_lines(&["login_failed", &mini_field, "40029", "getPhoneNumber"]).is_empty());
    assert_eq!(w.users().await, users, "nothing half-written");

    // The same number for another person is not moved to their account.
    let a = w
        .phone_exchange(
            &mini,
            &w.login_code(dev::USER_ALICE),
            Some(&w.phone_code("+8613912340777")),
        )
        .await;
    assert!(a.error(400, "invalid_grant").contains("phone"));
    assert!(!log_lines(&["phone_not_recorded", "phone_taken", &mini_field]).is_empty());
    let owner = w
        .broker
        .state
        .store
        .find_user_by_phone("+8613912340777")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(owner.id, id_token["sub"].as_str().unwrap());

    // A connector without phone_number refuses a phone code, saying which key.
    let a = w
        .phone_exchange(
            &format!("{}-nophone", w.tag),
            &w.login_code(dev::USER_ALICE2),
            Some(&w.phone_code("+8613900139000")),
        )
        .await;
    a.error(400, "invalid_grant");
    let no_phone = format!("connector={}-nophone", w.tag);
    assert!(!log_lines(&["login_failed", "phone_number_off", &no_phone]).is_empty());
    w.broker.stop().await;
}
both_backends!(a_getphonenumber_code_gives_the_account_its_verified_phone);

/// An app that needs a verified phone number and signs in only through a Mini
/// Program with `phone_number = true` needs no way to send codes: the
/// getPhoneNumber code brings the number. Without one, the app is told to send it.
async fn a_mini_program_only_app_requires_a_phone_without_a_code_sender(db_url: &str) {
    let tag = if db_url.starts_with("postgres") {
        "mini-nosend-pg"
    } else {
        "mini-nosend"
    };
    let t = tag.to_owned();
    let w = world(db_url, tag, move |_, s| {
        let mini = format!("{t}-mini");
        for c in s.connectors.iter_mut() {
            if c["id"] == mini.as_str() {
                c["phone_number"] = true.into();
            }
        }
        let mut app =
            crate::wechat_app::client_settings(PHONE_APP, Some(PHONE_APP_SECRET), vec![mini]);
        app.require_phone = true;
        s.clients.push(app);
        s.verification.sender = "none".into();
        s.admin.tokens = vec![ADMIN_TOKEN.into()];
    })
    .await;
    let mini = w.mini();

    // The admin API holds clients it creates to the same rule, knowing the
    // running connectors: the Mini Program alone is fine, the website is not.
    let create = |id: &str, connectors: Vec<String>| {
        http()
            .post(format!("{}/admin/v1/clients", w.broker.base))
            .bearer_auth(ADMIN_TOKEN)
            .json(&serde_json::json!({
                "id": id, "redirect_uris": ["https://shop.example/cb"],
                "connectors": connectors, "require_phone": true,
            }))
            .send()
    };
    let ok = create("mini-only", vec![mini.clone()]).await.unwrap();
    assert_eq!(ok.status(), 201);
    let refused = create("web-too", vec![mini.clone(), format!("{}-web", w.tag)])
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let refused: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(refused["field"], "require_phone", "{refused}");
    assert!(
        refused["error_description"]
            .as_str()
            .unwrap()
            .contains("verification.sender"),
        "{refused}"
    );

    let a = w
        .phone_exchange(&mini, &w.login_code(dev::USER_XIAOMING), None)
        .await;
    assert!(
        a.error(400, "invalid_grant").contains("wechat_phone_code"),
        "{}",
        a.body
    );
    let a = w
        .phone_exchange(
            &mini,
            &w.login_code(dev::USER_XIAOMING),
            Some(&w.phone_code("+8613912340888")),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let id_token = claims(a.body["id_token"].as_str().unwrap());
    assert_eq!(id_token["phone_number"], "+8613912340888");
    assert_eq!(id_token["phone_number_verified"], true);
    w.broker.stop().await;
}
both_backends!(a_mini_program_only_app_requires_a_phone_without_a_code_sender);

/// Without a code sender, `require_phone` on an app that may use a connector
/// that does not verify numbers itself is refused: by the config check when the
/// app may use every connector, at start (once the connectors are built) when
/// it names them.
async fn require_phone_without_a_sender_is_refused_for_other_connectors(db_url: &str) {
    for connectors in [Vec::new(), vec!["dev".to_owned()]] {
        let mut s = base_settings("http://127.0.0.1:9", db_url);
        for c in s.clients.iter_mut().filter(|c| c.id == APP_ID) {
            c.require_phone = true;
            c.connectors = connectors.clone();
        }
        let options = idbridge_server::Options {
            dev_mode: true,
            demo_secret: None,
            clock: std::sync::Arc::new(idbridge_server::Clock::default()),
        };
        let Err(e) = idbridge_server::build_state(s, &idbridge::registry(), &options).await else {
            panic!("a broker started with require_phone and no sender ({connectors:?})");
        };
        let e = e.to_string();
        assert!(
            e.contains(&format!("clients[{APP_ID}].require_phone")),
            "{e}"
        );
        assert!(e.contains("verification.sender"), "{e}");
        assert!(e.contains("phone_number = true"), "{e}");
    }
}
both_backends!(require_phone_without_a_sender_is_refused_for_other_connectors);
