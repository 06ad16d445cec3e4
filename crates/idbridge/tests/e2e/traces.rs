//! OpenTelemetry tracing end to end: the real binary (`idbridge serve --config`)
//! with `[telemetry.tracing] otlp_endpoint` pointing at an OTLP/HTTP receiver in
//! this test (protobuf `ExportTraceServiceRequest`s decoded with
//! `opentelemetry-proto`), one full sign-in through `provider-sim`'s generic
//! OpenID provider with a W3C `traceparent` sent by the "app", then SIGTERM: the
//! spans still buffered must arrive on the graceful stop.
//!
//! Asserted: every server span of the sign-in is a child of the app's span in the
//! app's trace, named by route template with `http.route` and status; store and
//! upstream spans are children of request spans; the upstream's token request
//! carried a `traceparent` of the same trace whose parent is the exported
//! upstream span; and no attribute or name anywhere holds the app's or the
//! upstream's client secret, a code, a token, the upstream state or a
//! `secret=`/`code=` query.

use crate::both_backends;
use crate::harness::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use provider_sim::oidc::{follow, ClientSecret, Sim, SimClient, SimConfig, SimUser};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const UP_CLIENT: &str = "broker-at-sim";
const UP_SECRET: &str = "sim-client-secret-for-tracing-0123456789";

/// Spans as received, with the service name of their resource.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(String, Span)>>>);

impl Received {
    fn spans(&self) -> Vec<(String, Span)> {
        self.0.lock().unwrap().clone()
    }
}

/// An OTLP/HTTP receiver on 127.0.0.1: `POST /v1/traces`, protobuf.
async fn receiver() -> (String, Received, actix_web::dev::ServerHandle) {
    use actix_web::{web, App, HttpResponse, HttpServer};
    let received = Received::default();
    let sink = received.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = HttpServer::new(move || {
        let sink = sink.clone();
        App::new()
            .app_data(web::PayloadConfig::new(16 * 1024 * 1024))
            .route(
                "/v1/traces",
                web::post().to(move |body: web::Bytes| {
                    let sink = sink.clone();
                    async move {
                        let Ok(request) = ExportTraceServiceRequest::decode(body) else {
                            return HttpResponse::BadRequest().finish();
                        };
                        let mut spans = sink.0.lock().unwrap();
                        for rs in request.resource_spans {
                            let service = rs
                                .resource
                                .as_ref()
                                .and_then(|r| attr(&r.attributes, "service.name"))
                                .unwrap_or_default();
                            for ss in rs.scope_spans {
                                for span in ss.spans {
                                    spans.push((service.clone(), span));
                                }
                            }
                        }
                        HttpResponse::Ok()
                            .content_type("application/x-protobuf")
                            .finish()
                    }
                }),
            )
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    (format!("http://{addr}"), received, handle)
}

fn text(v: &AnyValue) -> String {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .map(text)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn random_hex(len: usize) -> String {
    idbridge_tokens::random_alnum(64)
        .unwrap()
        .bytes()
        .map(|b| format!("{:x}", b % 16))
        .take(len)
        .collect()
}

async fn one_sign_in_is_one_trace_of_the_apps(db_url: &str) {
    let (otlp, received, otlp_handle) = receiver().await;
    let sim = Sim::start(SimConfig::generic(
        vec![SimClient {
            id: UP_CLIENT.into(),
            secret: ClientSecret::Plain(UP_SECRET.into()),
            redirect_uris: vec!["http://127.0.0.1:*".into()],
        }],
        vec![SimUser::new(
            "tess",
            serde_json::json!({"name": "Tess", "email": "tess@example.com", "email_verified": true}),
        )],
    ))
    .await
    .unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let dir = crate::cli::temp_dir("tracing");
    let config = dir.join("idbridge.toml");
    std::fs::write(
        &config,
        format!(
            r#"issuer = "{base}"
[server]
bind = "127.0.0.1:{port}"
[storage]
url = "{db_url}"
[signing]
master_key = "{MASTER_KEY}"
algorithms = ["RS256"]
[telemetry.tracing]
otlp_endpoint = "{otlp}"
service_name = "idbridge-e2e"
[[clients]]
id = "{APP_ID}"
secret = "{APP_SECRET}"
redirect_uris = ["{APP_REDIRECT}"]
skip_consent = true
[[connectors]]
id = "sim"
type = "oidc"
name = "Sim"
issuer = "{issuer}"
client_id = "{UP_CLIENT}"
client_secret = "{UP_SECRET}"
"#,
            issuer = sim.issuer()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("stderr.log")).unwrap();
    let mut child = crate::cli::bin()
        .args(["serve", "--log-format", "json", "--config"])
        .arg(&config)
        .env_remove("OTEL_SDK_DISABLED")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env_remove("OTEL_TRACES_SAMPLER")
        .env("IDBRIDGE_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let stderr = || std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();

    // The connector is ready once /authorize sends the browser to the fake.
    let (url, verifier) = authorize_url(&base, &[]);
    let url = url.replace("connector=dev", "connector=sim");
    let mut ready = false;
    for _ in 0..300 {
        if let Ok(r) = http().get(&url).send().await {
            if r.status() == 302 && location(&r).starts_with(&sim.base_url()) {
                ready = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !ready {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the broker did not get ready: {}", stderr());
    }
    let seen_before = sim.requests_seen().len();

    // The app's trace: every request of the sign-in carries its traceparent.
    let trace_id = random_hex(32);
    let app_span = random_hex(16);
    let traceparent = format!("00-{trace_id}-{app_span}-01");
    let b = browser();
    let resp = b
        .get(&url)
        .header("traceparent", &traceparent)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    let at_sim = location(&resp);
    let upstream_state = query_param(&at_sim, "state").unwrap();
    let callback = follow(&http(), &format!("{at_sim}&sim_user=tess"))
        .await
        .unwrap();
    let upstream_code = callback.params["code"].clone();
    let done = b
        .get(&callback.url)
        .header("traceparent", &traceparent)
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 302, "{}", stderr());
    let code = query_param(&location(&done), "code").unwrap();
    let tokens: serde_json::Value = http()
        .post(format!("{base}/token"))
        .header("traceparent", &traceparent)
        .basic_auth(APP_ID, Some(APP_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", APP_REDIRECT),
            ("code_verifier", &verifier),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let id_token = tokens["id_token"].as_str().unwrap().to_owned();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();

    // SIGTERM: a graceful stop flushes what the batch exporter still holds.
    let stopped = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let mut exit = None;
    for _ in 0..200 {
        if let Some(status) = child.try_wait().unwrap() {
            exit = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let Some(exit) = exit else {
        let _ = child.kill();
        panic!("no exit within 10 s of SIGTERM: {}", stderr());
    };
    assert!(exit.success(), "exit 0 after SIGTERM: {}", stderr());
    let logs = stderr();
    assert!(
        logs.contains("traces exported over OTLP/HTTP"),
        "start-up says where traces go: {logs}"
    );

    // JSON log lines inside the sign-in's requests name its trace.
    assert!(
        logs.lines()
            .any(|l| l.starts_with(&format!("{{\"trace_id\":\"{trace_id}\",\"span_id\":\""))),
        "a log line with the trace id: {logs}"
    );

    let all = received.spans();
    let ours: Vec<&Span> = all
        .iter()
        .filter(|(_, s)| hex(&s.trace_id) == trace_id)
        .map(|(_, s)| s)
        .collect();
    assert!(
        all.iter().all(|(service, _)| service == "idbridge-e2e"),
        "service.name from the file"
    );

    // The server spans: children of the app's span, one per request.
    let servers: Vec<&Span> = ours
        .iter()
        .copied()
        .filter(|s| attr(&s.attributes, "http.route").is_some())
        .collect();
    let names: Vec<&str> = servers.iter().map(|s| s.name.as_str()).collect();
    for expected in ["GET /authorize", "GET /callback/{connector}", "POST /token"] {
        assert!(
            names.contains(&expected),
            "{expected} in {names:?} ({} spans received)",
            all.len()
        );
    }
    for s in &servers {
        assert_eq!(
            hex(&s.parent_span_id),
            app_span,
            "{} is the app's child",
            s.name
        );
        assert_eq!(s.kind, 2, "{}: a server span", s.name);
        assert!(attr(&s.attributes, "http.response.status_code").is_some());
        assert!(attr(&s.attributes, "http.request.method").is_some());
    }
    let by_name = |n: &str| servers.iter().find(|s| s.name == n).copied().unwrap();
    let callback_span = by_name("GET /callback/{connector}");
    assert_eq!(
        attr(&callback_span.attributes, "connector").as_deref(),
        Some("sim")
    );
    assert_eq!(
        attr(&callback_span.attributes, "client_id").as_deref(),
        Some(APP_ID)
    );
    assert_eq!(
        attr(&by_name("POST /token").attributes, "client_id").as_deref(),
        Some(APP_ID)
    );
    assert_eq!(
        attr(
            &by_name("GET /authorize").attributes,
            "http.response.status_code"
        )
        .as_deref(),
        Some("302")
    );

    // Store and upstream spans hang below request spans.
    let server_ids: Vec<Vec<u8>> = servers.iter().map(|s| s.span_id.clone()).collect();
    let stores: Vec<&Span> = ours
        .iter()
        .copied()
        .filter(|s| attr(&s.attributes, "db.operation").is_some())
        .collect();
    assert!(!stores.is_empty(), "store spans");
    for s in &stores {
        assert!(
            server_ids.contains(&s.parent_span_id),
            "{} under a request",
            s.name
        );
        assert_eq!(s.kind, 3, "{}: a client span", s.name);
        let system = attr(&s.attributes, "db.system").unwrap();
        assert!(system == "sqlite" || system == "postgresql", "{system}");
    }
    let upstreams: Vec<&Span> = ours
        .iter()
        .copied()
        .filter(|s| attr(&s.attributes, "upstream.endpoint").is_some())
        .collect();
    let token_call = upstreams
        .iter()
        .find(|s| attr(&s.attributes, "upstream.endpoint").as_deref() == Some("token"))
        .copied()
        .unwrap_or_else(|| panic!("an upstream token span among {upstreams:?}"));
    assert_eq!(token_call.parent_span_id, callback_span.span_id);
    assert_eq!(
        attr(&token_call.attributes, "connector").as_deref(),
        Some("sim")
    );
    assert_eq!(
        attr(&token_call.attributes, "server.address").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(
        attr(&token_call.attributes, "http.response.status_code").as_deref(),
        Some("200")
    );

    // The upstream saw the trace: its token request's parent is that span.
    let passed: Vec<(String, Option<String>)> = sim.requests_seen()[seen_before..]
        .iter()
        .filter(|(path, _)| path == "/token")
        .cloned()
        .collect();
    assert_eq!(passed.len(), 1, "{passed:?}");
    let header = passed[0]
        .1
        .clone()
        .expect("a traceparent on the token request");
    assert_eq!(
        header,
        format!("00-{trace_id}-{}-01", hex(&token_call.span_id)),
        "the upstream call's own span is the parent upstream"
    );

    // No secret, code or token anywhere in what was exported.
    let forbidden = [
        APP_SECRET,
        UP_SECRET,
        code.as_str(),
        upstream_code.as_str(),
        upstream_state.as_str(),
        access.as_str(),
        id_token.as_str(),
        refresh.as_str(),
        "secret=",
        "code=",
        "state=",
    ];
    for (_, s) in &all {
        let mut values: Vec<String> = vec![s.name.clone()];
        values.extend(
            s.attributes
                .iter()
                .filter_map(|kv| kv.value.as_ref())
                .map(text),
        );
        for e in &s.events {
            values.push(e.name.clone());
            values.extend(
                e.attributes
                    .iter()
                    .filter_map(|kv| kv.value.as_ref())
                    .map(text),
            );
        }
        for v in &values {
            for f in forbidden {
                assert!(!v.contains(f), "span {:?} holds {f:?} in {v:?}", s.name);
            }
        }
    }
    otlp_handle.stop(false).await;
    let _ = std::fs::remove_dir_all(dir);
}
both_backends!(one_sign_in_is_one_trace_of_the_apps);
