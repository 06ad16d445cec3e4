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
