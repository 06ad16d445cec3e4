//! Upstream latency of the connectors built on the kit's HTTP client: one
//! sign-in through `provider-sim`'s generic OpenID provider with an `oidc`
//! connector, then `idbridge_upstream_request_duration_seconds` by connector and
//! endpoint (`discovery`, `jwks`, `token`) on `/metrics`, and the same queried
//! from a real Prometheus (Debian's package) when it is installed.

use crate::harness::*;
use crate::metrics::{prometheus_binary, sample, value, Prometheus};
use provider_sim::oidc::{follow, ClientSecret, Sim, SimClient, SimConfig, SimUser};
use std::time::Duration;

const CLIENT: &str = "broker-metrics";
const SECRET: &str = "sim-secret-for-the-metrics-test-0123456789";

async fn oidc_sign_in(connector: &str) -> (Sim, Broker, TestDb) {
    let sim = Sim::start(SimConfig::generic(
        vec![SimClient {
            id: CLIENT.into(),
            secret: ClientSecret::Plain(SECRET.into()),
            redirect_uris: vec!["http://127.0.0.1:*".into()],
        }],
        vec![SimUser::new(
            "mo",
            serde_json::json!({"name": "Mo", "email": "mo@example.com", "email_verified": true}),
        )],
    ))
    .await
    .unwrap();
    let (issuer, id) = (sim.issuer(), connector.to_owned());
    let db = TestDb::new(Db::Sqlite);
    let broker = start(&db.url(), None, move |s| {
        s.connectors = vec![serde_json::json!({
            "id": id, "type": "oidc", "name": "Sim",
            "issuer": issuer, "client_id": CLIENT, "client_secret": SECRET,
        })];
        s.telemetry.enabled = true;
        s.telemetry.bind = "127.0.0.1:0".into();
    })
    .await;
    let (url, verifier) = authorize_url(&broker.base, &[]);
    let url = url.replace("connector=dev", &format!("connector={connector}"));
    let b = browser();
    let mut at_sim = None;
    for _ in 0..100 {
        let resp = b.get(&url).send().await.unwrap();
        if resp.status() == 302 && location(&resp).starts_with(&sim.base_url()) {
            at_sim = Some(location(&resp));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let at_sim = at_sim.expect("the connector got ready");
    let callback = follow(&http(), &format!("{at_sim}&sim_user=mo"))
        .await
        .unwrap();
    let done = b.get(&callback.url).send().await.unwrap();
    assert_eq!(done.status(), 302);
    let code = query_param(&location(&done), "code").expect("a code for the app");
    assert_eq!(redeem(&broker.base, &code, &verifier).await.status(), 200);
    (sim, broker, db)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_oidc_sign_in_records_upstream_latency_by_endpoint() {
    let c = "oidc-metrics";
    let (sim, broker, _db) = oidc_sign_in(c).await;
    let addr = broker.state.telemetry.local_addr().unwrap();
    let text = http()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for endpoint in ["discovery", "jwks", "token"] {
        let ok = [("connector", c), ("endpoint", endpoint), ("outcome", "ok")];
        assert!(
            sample(
                &text,
                "idbridge_upstream_request_duration_seconds_count",
                &ok
            ) >= Some(1.0),
            "{endpoint}: {text}"
        );
    }
    assert_eq!(
        sample(
            &text,
            "idbridge_upstream_request_duration_seconds_count",
            &[("connector", c), ("endpoint", "token"), ("outcome", "ok")]
        ),
        Some(1.0),
        "one code exchange"
    );
    assert!(
        !text.contains(&sim.base_url()) && !text.contains("/.well-known"),
        "no URL became a label"
    );
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_real_prometheus_has_the_oidc_upstream_series() {
    let Some(binary) = prometheus_binary() else {
        eprintln!("NOTE: prometheus is not installed (apt-get install prometheus); skipping");
        return;
    };
    let (_sim, broker, _db) = oidc_sign_in("oidc-prom").await;
    let target = broker.state.telemetry.local_addr().unwrap().to_string();
    let prom = Prometheus::start(binary, &target);
    let q = r#"sum by (endpoint) (idbridge_upstream_request_duration_seconds_count{connector="oidc-prom",outcome="ok"})"#;
    let series = prom.wait_for(q, Duration::from_secs(30)).await;
    let endpoints: Vec<&str> = series
        .iter()
        .filter_map(|s| s["metric"]["endpoint"].as_str())
        .collect();
    for e in ["discovery", "jwks", "token"] {
        assert!(endpoints.contains(&e), "{e} in {series:?}: {}", prom.log());
    }
    let token = series
        .iter()
        .find(|s| s["metric"]["endpoint"] == "token")
        .map(value);
    assert_eq!(token, Some(1.0), "{series:?}");
    drop(prom);
    broker.stop().await;
}
