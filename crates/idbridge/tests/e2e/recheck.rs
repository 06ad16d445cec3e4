//! `recheck_on_refresh` end to end: a WeChat website login through the
//! simulator, then the app refreshes. With the option the broker re-checks the
//! person at WeChat first (`sns/oauth2/refresh_token`, then `sns/auth`); a person
//! who withdrew the app's authorization in WeChat loses the broker grant, with an
//! audit event and a log line naming the stage and WeChat's errcode. Without it,
//! a refresh never calls WeChat. On SQLite and Postgres.

use crate::harness::*;
use wechat_sim::{dev, Endpoint, Fault, FaultKind, SimConfig, Simulator};

struct World {
    sim: Simulator,
    broker: Broker,
}

async fn world(db_url: &str, id: &str, recheck: bool) -> World {
    let sim = Simulator::start(SimConfig::dev_default("127.0.0.1"))
        .await
        .unwrap();
    let base = sim.base_url();
    let id = id.to_owned();
    let broker = start(db_url, None, move |s| {
        let mut c = serde_json::json!({
            "id": id, "type": "wechat-web", "name": "WeChat",
            "appid": dev::WEB_APPID, "appsecret": dev::WEB_SECRET,
            "open_platform_id": dev::OPEN_PLATFORM_ID,
            "api_base_url": base, "open_base_url": base,
            "timeout_secs": 1.0,
        });
        if recheck {
            c["recheck_on_refresh"] = serde_json::json!(true);
        }
        s.connectors = vec![c];
        s.telemetry.enabled = true;
        s.telemetry.bind = "127.0.0.1:0".into();
    })
    .await;
    World { sim, broker }
}

impl World {
    /// A whole WeChat login as `user`: the app's token response.
    async fn login(&self, user: &str) -> serde_json::Value {
        let id = &self.broker.state.connectors[0].0;
        let b = browser();
        let (url, verifier) = authorize_url(&self.broker.base, &[]);
        let url = url.replace("connector=dev", &format!("connector={id}"));
        let wechat = location(&b.get(&url).send().await.unwrap());
        let callbacks = self.sim.scan(&wechat, user).unwrap();
        let resp = b.get(&callbacks[0]).send().await.unwrap();
        assert_eq!(resp.status(), 302);
        let code = query_param(&location(&resp), "code").expect("code for the app");
        redeem(&self.broker.base, &code, &verifier)
            .await
            .json()
            .await
            .unwrap()
    }
}

async fn refresh_token_of(t: &serde_json::Value) -> String {
    t["refresh_token"]
        .as_str()
        .expect("a refresh token (offline_access)")
        .to_owned()
}

async fn a_person_who_withdrew_wechats_authorization_loses_the_grant(db_url: &str) {
    let w = world(db_url, "wx-recheck", true).await;
    let t = w.login(dev::USER_XIAOMING).await;
    let rt = refresh_token_of(&t).await;
    let before = w.sim.counters();

    // Still authorized: the refresh is re-checked at WeChat, and works.
    let resp = refresh(&w.broker.base, &rt).await;
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    let rt = body["refresh_token"].as_str().unwrap().to_owned();
    let after = w.sim.counters();
    assert_eq!(after.refresh_calls, before.refresh_calls + 1);
    assert_eq!(after.auth_calls, before.auth_calls + 1);

    // The person withdraws the app's authorization in WeChat.
    assert_eq!(
        w.sim
            .revoke_authorization(dev::WEB_APPID, dev::USER_XIAOMING),
        1
    );
    let resp = refresh(&w.broker.base, &rt).await;
    assert_eq!(resp.status(), 400);
    let err: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(err["error"], "invalid_grant");
    let description = err["error_description"].as_str().unwrap();
    assert!(description.contains("40030"), "{description}");
    assert!(description.contains("sign them in again"), "{description}");

    // The grant is gone: the same token is refused without asking WeChat again,
    // and introspection says inactive.
    let calls = w.sim.counters().refresh_calls;
    let again = refresh(&w.broker.base, &rt).await;
    assert_eq!(again.status(), 400);
    assert_eq!(w.sim.counters().refresh_calls, calls);
    assert_eq!(introspect(&w.broker.base, &rt).await["active"], false);

    let events = audit_events(&w.broker, "upstream_recheck_failed").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event.connector_id.as_deref(), Some("wx-recheck"));
    assert_eq!(events[0].event.detail["error"]["upstream_code"], "40030");
    assert!(
        !log_lines(&[
            "upstream_recheck_failed",
            "connector=wx-recheck",
            "stage=\"refresh\"",
            "upstream_code=\"40030\"",
            "fix=",
        ])
        .is_empty(),
        "the log names the stage, WeChat's errcode and the fix"
    );
    // Both re-checks counted, by connector and outcome (each backend's run has
    // its own broker; the process shares one recorder, so at least these).
    let addr = w.broker.state.telemetry.local_addr().unwrap();
    let metrics = get_text(&http(), format!("http://{addr}/metrics")).await;
    for outcome in ["passed", "refused"] {
        let line = format!(
            "idbridge_refresh_rechecks_total{{connector=\"wx-recheck\",outcome=\"{outcome}\"}}"
        );
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
    w.sim.stop().await;
    w.broker.stop().await;
}
crate::both_backends!(a_person_who_withdrew_wechats_authorization_loses_the_grant);

async fn without_the_option_a_refresh_never_calls_wechat(db_url: &str) {
    let w = world(db_url, "wx-norecheck", false).await;
    let t = w.login(dev::USER_ALICE).await;
    let mut rt = refresh_token_of(&t).await;
    w.sim.revoke_authorization(dev::WEB_APPID, dev::USER_ALICE);
    let before = w.sim.counters();
    for _ in 0..3 {
        let resp = refresh(&w.broker.base, &rt).await;
        assert_eq!(resp.status(), 200);
        let body: serde_json::Value = resp.json().await.unwrap();
        rt = body["refresh_token"].as_str().unwrap().to_owned();
    }
    let after = w.sim.counters();
    assert_eq!(after.refresh_calls, before.refresh_calls);
    assert_eq!(after.auth_calls, before.auth_calls);
    w.sim.stop().await;
    w.broker.stop().await;
}
crate::both_backends!(without_the_option_a_refresh_never_calls_wechat);

/// WeChat failing is not the person's doing: the grant stays, nothing rotates,
/// the app is told to retry (503 temporarily_unavailable), and the same refresh
/// token works once WeChat answers again.
async fn wechat_down_during_a_recheck_keeps_the_grant(db_url: &str) {
    let w = world(db_url, "wx-recheck-down", true).await;
    let t = w.login(dev::USER_XIAOMING).await;
    let rt = refresh_token_of(&t).await;
    w.sim.set_fault(Fault {
        endpoint: Endpoint::RefreshToken,
        kind: FaultKind::Http5xx(503),
        times: None,
    });
    let resp = refresh(&w.broker.base, &rt).await;
    assert_eq!(resp.status(), 503);
    let err: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(err["error"], "temporarily_unavailable");
    assert!(audit_events(&w.broker, "upstream_recheck_failed")
        .await
        .is_empty());
    w.sim.clear_faults();
    let resp = refresh(&w.broker.base, &rt).await;
    assert_eq!(resp.status(), 200, "the same refresh token still works");
    w.sim.stop().await;
    w.broker.stop().await;
}
crate::both_backends!(wechat_down_during_a_recheck_keeps_the_grant);

/// `recheck_on_refresh` on a connector that cannot re-check is a config error
/// naming the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recheck_on_a_connector_without_refresh_is_refused_by_name() {
    let db = TestDb::new(Db::Sqlite);
    let mut s = base_settings("http://127.0.0.1:1", &db.url());
    s.connectors = vec![serde_json::json!({
        "id": "dev", "type": "dev", "recheck_on_refresh": true
    })];
    let config = idbridge_server::config::Config::new(s, true).expect("the entry reads");
    let errors = match idbridge_server::state::build_connectors(
        &config,
        &idbridge::registry(),
        true,
        &idbridge_core::Shared::default(),
    ) {
        Ok(_) => panic!("accepted"),
        Err(errors) => errors,
    };
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].key, "connectors[dev].recheck_on_refresh");
    assert!(errors[0].message.contains("cannot re-check"), "{errors:?}");
}
