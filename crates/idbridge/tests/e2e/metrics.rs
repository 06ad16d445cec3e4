//! Prometheus metrics end to end: a scripted WeChat website login through the
//! simulator, a refresh and a refresh-token replay, a failed sign-in; then
//! `/metrics` scraped over HTTP on the telemetry listener (and absent from the
//! public port), and the same scraped by a real Prometheus (Debian's package)
//! whose query API must return the series.
//!
//! The recorder is the process's (the `metrics` facade has one), shared by every
//! broker of this test binary: each test uses a connector id of its own and asserts
//! on the series labelled with it; unlabelled families are asserted as `>= 1`.

use crate::harness::*;
use std::time::{Duration, Instant};
use wechat_sim::{dev, Endpoint, Fault, FaultKind, SimConfig, Simulator};

struct World {
    sim: Simulator,
    broker: Broker,
    _db: TestDb,
    connector: String,
}

async fn world(connector: &str) -> World {
    let sim = Simulator::start(SimConfig::dev_default("127.0.0.1"))
        .await
        .unwrap();
    let db = TestDb::new(Db::Sqlite);
    let base = sim.base_url();
    let id = connector.to_owned();
    let broker = start(&db.url(), None, move |s| {
        s.connectors = vec![serde_json::json!({
            "id": id, "type": "wechat-web", "name": "WeChat",
            "appid": dev::WEB_APPID, "appsecret": dev::WEB_SECRET,
            "open_platform_id": dev::OPEN_PLATFORM_ID,
            "api_base_url": base, "open_base_url": base,
            "timeout_secs": 1.0,
        })];
        s.telemetry.enabled = true;
        s.telemetry.bind = "127.0.0.1:0".into();
    })
    .await;
    World {
        sim,
        broker,
        _db: db,
        connector: connector.to_owned(),
    }
}

impl World {
    fn metrics_url(&self) -> String {
        let addr = self
            .broker
            .state
            .telemetry
            .local_addr()
            .expect("the telemetry listener is bound");
        format!("http://{addr}/metrics")
    }

    async fn begin(&self) -> (reqwest::Client, String, String) {
        let b = browser();
        let (url, verifier) = authorize_url(&self.broker.base, &[]);
        let url = url.replace("connector=dev", &format!("connector={}", self.connector));
        let resp = b.get(&url).send().await.unwrap();
        assert_eq!(resp.status(), 302);
        (b, location(&resp), verifier)
    }

    /// A whole login: the app's token response.
    async fn login(&self, user: &str) -> serde_json::Value {
        let (b, wechat, verifier) = self.begin().await;
        let callbacks = self.sim.scan(&wechat, user).unwrap();
        let resp = b.get(&callbacks[0]).send().await.unwrap();
        assert_eq!(
            resp.status(),
            302,
            "{}",
            resp.text().await.unwrap_or_default()
        );
        let code = query_param(&location(&resp), "code").expect("code for the app");
        redeem(&self.broker.base, &code, &verifier)
            .await
            .json()
            .await
            .unwrap()
    }

    /// One login, a refresh, the old refresh token replayed, and a sign-in WeChat
    /// refuses with errcode 40029 at the code exchange.
    async fn script(&self) {
        let t = self.login(dev::USER_XIAOMING).await;
        let old = t["refresh_token"]
            .as_str()
            .expect("a refresh token")
            .to_owned();
        let resp = refresh(&self.broker.base, &old).await;
        assert_eq!(resp.status(), 200);
        // Past the grace window (tokens.refresh_grace_secs), a reuse is a replay.
        self.broker.clock().advance(11);
        let replay = refresh(&self.broker.base, &old).await;
        assert_eq!(replay.status(), 400, "a replayed refresh token is refused");
        self.sim.set_fault(Fault {
            endpoint: Endpoint::AccessToken,
            kind: FaultKind::Errcode(40029, "invalid code".into()),
            times: Some(1),
        });
        let (b, wechat, _) = self.begin().await;
        let callback = self.sim.scan(&wechat, dev::USER_ALICE).unwrap().remove(0);
        let resp = b.get(&callback).send().await.unwrap();
        assert_eq!(resp.status(), 502, "a failure page");
    }
}

/// The value of the sample `name{labels…}` (all of `labels`, maybe more) in a
/// Prometheus text exposition.
pub(crate) fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            (n == name).then_some((rest, value))
        })
        .find(|(rest, _)| {
            labels
                .iter()
                .all(|(k, v)| rest.split(',').any(|p| p == format!("{k}=\"{v}\"")))
        })
        .and_then(|(_, v)| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_are_scraped_on_the_telemetry_listener_only() {
    let w = world("wx-metrics").await;
    w.script().await;
    let c = w.connector.as_str();

    let resp = http().get(w.metrics_url()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain; version=0.0.4")));
    let text = resp.text().await.unwrap();

    // Sign-ins, by connector, way in, stage and upstream errcode.
    let started = [("connector", c), ("via", "browser")];
    assert_eq!(
        sample(&text, "idbridge_sign_ins_started_total", &started),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "idbridge_sign_ins_completed_total", &started),
        Some(1.0),
        "{text}"
    );
    let failed = [
        ("connector", c),
        ("via", "browser"),
        ("stage", "token_exchange"),
        ("kind", "invalid_code"),
        ("upstream_code", "40029"),
    ];
    assert_eq!(
        sample(&text, "idbridge_sign_ins_failed_total", &failed),
        Some(1.0),
        "{text}"
    );
    assert!(text.contains("# TYPE idbridge_sign_ins_failed_total counter"));

    // Upstream latency, by connector and endpoint.
    for endpoint in ["/sns/oauth2/access_token", "/sns/userinfo"] {
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
    let refused = [
        ("connector", c),
        ("endpoint", "/sns/oauth2/access_token"),
        ("outcome", "invalid_code"),
    ];
    assert_eq!(
        sample(
            &text,
            "idbridge_upstream_request_duration_seconds_count",
            &refused
        ),
        Some(1.0),
        "{text}"
    );
    assert!(text.contains("# TYPE idbridge_upstream_request_duration_seconds histogram"));

    // Token grants and the refresh reuse (other tests' brokers count here too).
    for (grant, outcome) in [
        ("authorization_code", "issued"),
        ("refresh_token", "issued"),
        ("refresh_token", "invalid_grant"),
    ] {
        let labels = [("grant_type", grant), ("outcome", outcome)];
        assert!(
            sample(&text, "idbridge_token_grants_total", &labels) >= Some(1.0),
            "{grant} {outcome}: {text}"
        );
    }
    assert!(
        sample(&text, "idbridge_refresh_token_reuse_detected_total", &[]) >= Some(1.0),
        "{text}"
    );

    // HTTP by route template, never the raw path.
    let callback = [
        ("method", "GET"),
        ("route", "/callback/{connector}"),
        ("status", "302"),
    ];
    assert!(
        sample(&text, "idbridge_http_requests_total", &callback) >= Some(1.0),
        "{text}"
    );
    let token = [("method", "POST"), ("route", "/token"), ("status", "200")];
    assert!(
        sample(&text, "idbridge_http_requests_total", &token) >= Some(1.0),
        "{text}"
    );
    assert!(
        !text.contains(&format!("route=\"/callback/{c}\"")),
        "a raw path became a label"
    );
    assert!(!text.contains(dev::USER_XIAOMING), "a user became a label");

    // The store and the signing keys.
    assert!(
        sample(
            &text,
            "idbridge_store_call_duration_seconds_count",
            &[("pool", "writer"), ("outcome", "ok")]
        ) >= Some(1.0),
        "{text}"
    );
    // (Gauges are per process, and other tests' brokers share this one: presence only.)
    for state in ["in_use", "idle"] {
        assert!(
            sample(
                &text,
                "idbridge_store_pool_connections",
                &[("pool", "reader"), ("state", state)]
            ) >= Some(0.0),
            "{text}"
        );
    }
    assert!(
        sample(
            &text,
            "idbridge_store_pool_max_connections",
            &[("pool", "writer")]
        ) >= Some(1.0),
        "{text}"
    );
    // This broker is on SQLite: its checkpoint thread reports the log every 200 ms.
    assert!(
        sample(&text, "idbridge_sqlite_wal_uncheckpointed_pages", &[]) >= Some(0.0),
        "{text}"
    );
    assert!(
        sample(
            &text,
            "idbridge_signing_key_age_seconds",
            &[("alg", "RS256")]
        )
        .is_some(),
        "{text}"
    );
    assert!(
        sample(
            &text,
            "idbridge_signing_key_next_rotation_timestamp_seconds",
            &[("alg", "RS256")]
        ) > Some(0.0),
        "{text}"
    );

    // Not on the public port; nothing but /metrics on the telemetry one.
    let public = http()
        .get(format!("{}/metrics", w.broker.base))
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), 404);
    let other = http()
        .get(
            w.metrics_url()
                .replace("/metrics", "/.well-known/openid-configuration"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
    w.broker.stop().await;
}

/// Debian's `prometheus`, if installed.
pub(crate) fn prometheus_binary() -> Option<&'static str> {
    ["/usr/bin/prometheus"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
}

/// A Prometheus of the test's own: its config, its data in a temporary directory,
/// a free port; killed (and waited for) on drop.
pub(crate) struct Prometheus {
    child: std::process::Child,
    base: String,
    dir: std::path::PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Prometheus {
    pub(crate) fn start(binary: &str, target: &str) -> Prometheus {
        let dir = std::env::temp_dir().join(format!(
            "idbridge-prometheus-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: idbridge\n    static_configs:\n      - targets: ['{target}']\n"
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = std::process::Command::new(binary)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("prometheus starts");
        Prometheus {
            child,
            base: format!("http://127.0.0.1:{port}"),
            dir,
        }
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// The result vector of an instant query (empty until a scrape has it).
    pub(crate) async fn query(&self, q: &str) -> Vec<serde_json::Value> {
        let Ok(resp) = http()
            .get(format!("{}/api/v1/query", self.base))
            .query(&[("query", q)])
            .send()
            .await
        else {
            return Vec::new();
        };
        let Ok(body) = resp.json::<serde_json::Value>().await else {
            return Vec::new();
        };
        body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Polls `q` until it returns something, for at most `within`.
    pub(crate) async fn wait_for(&self, q: &str, within: Duration) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + within;
        loop {
            let r = self.query(q).await;
            if !r.is_empty() || Instant::now() > deadline {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

pub(crate) fn value(series: &serde_json::Value) -> f64 {
    series["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_real_prometheus_scrapes_the_sign_in_grant_and_upstream_series() {
    let Some(binary) = prometheus_binary() else {
        eprintln!(
            "NOTE: prometheus is not installed (apt-get install prometheus); \
             skipping the real-Prometheus scrape test"
        );
        return;
    };
    let w = world("wx-prom").await;
    w.script().await;
    let target = w.broker.state.telemetry.local_addr().unwrap().to_string();
    let prom = Prometheus::start(binary, &target);

    // The first scrape after start-up (1 s interval), bounded.
    let up = prom
        .wait_for(r#"up{job="idbridge"} == 1"#, Duration::from_secs(30))
        .await;
    assert_eq!(
        up.len(),
        1,
        "Prometheus never scraped the broker: {}",
        prom.log()
    );

    let started = prom
        .wait_for(
            r#"idbridge_sign_ins_started_total{connector="wx-prom"}"#,
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(started.len(), 1, "{started:?}");
    assert_eq!(started[0]["metric"]["via"], "browser");
    assert_eq!(value(&started[0]), 2.0);

    let completed = prom
        .query(r#"idbridge_sign_ins_completed_total{connector="wx-prom",via="browser"}"#)
        .await;
    assert_eq!(completed.len(), 1, "{completed:?}");
    assert_eq!(value(&completed[0]), 1.0);

    let failed = prom
        .query(r#"idbridge_sign_ins_failed_total{connector="wx-prom"}"#)
        .await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    let m = &failed[0]["metric"];
    assert_eq!(m["stage"], "token_exchange", "{m}");
    assert_eq!(m["kind"], "invalid_code", "{m}");
    assert_eq!(m["upstream_code"], "40029", "{m}");
    assert_eq!(value(&failed[0]), 1.0);

    let grants = prom
        .query(r#"sum by (grant_type, outcome) (idbridge_token_grants_total{outcome="issued"})"#)
        .await;
    let kinds: Vec<&str> = grants
        .iter()
        .filter_map(|g| g["metric"]["grant_type"].as_str())
        .collect();
    assert!(
        kinds.contains(&"authorization_code") && kinds.contains(&"refresh_token"),
        "{grants:?}"
    );

    let upstream = prom
        .query(r#"sum by (endpoint) (idbridge_upstream_request_duration_seconds_count{connector="wx-prom"})"#)
        .await;
    let endpoints: Vec<&str> = upstream
        .iter()
        .filter_map(|g| g["metric"]["endpoint"].as_str())
        .collect();
    assert!(
        endpoints.contains(&"/sns/oauth2/access_token") && endpoints.contains(&"/sns/userinfo"),
        "{upstream:?}"
    );

    // A histogram Prometheus can compute with.
    let p99 = prom
        .query(r#"histogram_quantile(0.99, sum by (le) (idbridge_upstream_request_duration_seconds_bucket{connector="wx-prom"}))"#)
        .await;
    assert_eq!(p99.len(), 1, "{p99:?}");
    assert!(value(&p99[0]).is_finite(), "{p99:?}");

    drop(prom);
    w.broker.stop().await;
}

/// The example alert rules (deploy/prometheus/alerts.yml) pass `promtool check rules`.
#[test]
fn the_example_alert_rules_are_valid() {
    let promtool = "/usr/bin/promtool";
    if !std::path::Path::new(promtool).exists() {
        eprintln!("NOTE: promtool is not installed (apt-get install prometheus); skipping the alert rules check");
        return;
    }
    let rules = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/prometheus/alerts.yml"
    );
    let out = std::process::Command::new(promtool)
        .args(["check", "rules", rules])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The Grafana dashboard (deploy/grafana/idbridge.json) is JSON and every panel
/// queries an idbridge family.
#[test]
fn the_grafana_dashboard_is_valid_json() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/grafana/idbridge.json"
    );
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let panels = dash["panels"].as_array().expect("panels");
    assert!(panels.len() >= 6);
    for p in panels.iter().filter(|p| p["type"] != "row") {
        let targets = p["targets"].as_array().expect("targets");
        assert!(
            targets
                .iter()
                .all(|t| t["expr"].as_str().is_some_and(|e| e.contains("idbridge_"))),
            "{p}"
        );
    }
}
