//! Two `idbridge serve` processes on one Postgres database behind a real HAProxy
//! (Debian's package) on loopback, round-robin: sign-ins and refresh chains run
//! through it while one instance is killed with SIGKILL, and every flow finishes
//! on the other with no grant lost.

use crate::cli::{bin, temp_dir, wait_for, Killed};
use crate::harness::*;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The HAProxy configuration the test runs (and docs/operations.md shows):
/// round-robin, `X-Forwarded-For` added, `/readyz` checked every 200 ms (two
/// failures take a server out; a check may take 2 s, so a busy machine's slow
/// answer does not take the survivor out too), and a request that found a dead server (the
/// connection refused, or closed before any answer) retried on the other. Not
/// retried on a slow answer (a request still being worked on is not sent twice),
/// and `timeout server` above the broker's longest wait (10 s for a repeated
/// callback, below).
fn haproxy_config(front: u16, a: u16, b: u16) -> String {
    format!(
        "global
    maxconn 512
    log stderr format raw local0 info
defaults
    mode http
    log global
    option httplog
    timeout connect 1s
    timeout client 10s
    timeout server 15s
    option forwardfor
    option redispatch 1
    retries 3
    retry-on conn-failure empty-response
frontend public
    bind 127.0.0.1:{front}
    default_backend brokers
backend brokers
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    http-response set-header X-Served-By %s
    http-response set-header X-Retries %rc
    timeout check 2s
    default-server check inter 200ms fall 2 rise 2
    server a 127.0.0.1:{a}
    server b 127.0.0.1:{b}
"
    )
}

fn haproxy_installed() -> bool {
    Command::new("haproxy")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// One answer as the client saw it: when, which request, status, which instance.
#[derive(Debug, Clone)]
struct Seen {
    /// When the request was sent.
    sent: Instant,
    /// When its answer arrived.
    at: Instant,
    what: &'static str,
    status: u16,
    server: String,
    /// How many times HAProxy retried the request (`%rc`).
    retries: u32,
}

type Log = Arc<Mutex<Vec<Seen>>>;

fn note(log: &Log, sent: Instant, what: &'static str, resp: &reqwest::Response) {
    let server = resp
        .headers()
        .get("x-served-by")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let retries = resp
        .headers()
        .get("x-retries")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    log.lock().unwrap().push(Seen {
        sent,
        at: Instant::now(),
        what,
        status: resp.status().as_u16(),
        server,
        retries,
    });
}

/// A sign-in through the proxy with the dev connector and the demo app, and the
/// code redeemed: the refresh token, or what went wrong.
async fn sign_in_through(
    lb: &str,
    secret: &str,
    user: &str,
    ip: &str,
    log: &Log,
) -> Result<String, String> {
    let verifier = idbridge_tokens::random_alnum(48).map_err(|e| e.to_string())?;
    // The person's browser, as a proxy in front of HAProxy would name it.
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        "x-forwarded-for",
        ip.parse()
            .map_err(|e: reqwest::header::InvalidHeaderValue| e.to_string())?,
    );
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(headers)
        .build()
        .map_err(|e| e.to_string())?;
    let redirect_uri = format!("{lb}/demo/callback");
    let challenge = idbridge_tokens::pkce_s256(&verifier);
    let sent = Instant::now();
    let resp = browser
        .get(format!("{lb}/authorize"))
        .query(&[
            ("response_type", "code"),
            ("client_id", "demo"),
            ("redirect_uri", redirect_uri.as_str()),
            ("scope", "openid offline_access"),
            ("state", "s"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("connector", "dev"),
        ])
        .send()
        .await
        .map_err(|e| e.to_string())?;
    note(log, sent, "authorize", &resp);
    let page = match resp.status().as_u16() {
        200 => resp.text().await.map_err(|e| e.to_string())?,
        302 => {
            let sent = Instant::now();
            let page = browser
                .get(location(&resp))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            note(log, sent, "login page", &page);
            if page.status() != 200 {
                return Err(format!("login page: {}", page.status()));
            }
            page.text().await.map_err(|e| e.to_string())?
        }
        s => return Err(format!("authorize: {s}")),
    };
    let state = state_from_page(&page);
    let sent = Instant::now();
    let cb = browser
        .get(format!("{lb}/callback/dev"))
        .query(&[("state", state.as_str()), ("user", user)])
        .send()
        .await
        .map_err(|e| e.to_string())?;
    note(log, sent, "callback", &cb);
    if cb.status() == 400 && cb.headers().get("x-retries").is_some_and(|v| v != "0") {
        return Err(format!("{RETRIED_CALLBACK} {}", cb.status()));
    }
    let back = location(&cb);
    let code = query_param(&back, "code").ok_or_else(|| format!("callback: {back}"))?;
    let sent = Instant::now();
    let t = http()
        .post(format!("{lb}/token"))
        .basic_auth("demo", Some(secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect_uri.as_str()),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await
        .map_err(|e| e.to_string())?;
    note(log, sent, "code", &t);
    let status = t.status();
    let retried = t.headers().get("x-retries").is_some_and(|v| v != "0");
    let body: serde_json::Value = t.json().await.map_err(|e| e.to_string())?;
    match body["refresh_token"].as_str() {
        Some(r) if status == 200 => Ok(r.to_owned()),
        _ if retried && body["error"] == "invalid_grant" => Err(format!("{RETRIED_CODE} {body}")),
        _ => Err(format!("code redemption: {status} {body}")),
    }
}

/// A code redemption that A had committed when it died, retried by HAProxy on B:
/// codes are single-use, so B refuses it; the app starts the sign-in over.
const RETRIED_CODE: &str = "code redeemed on the dead instance, retried by the proxy:";

/// A callback A had claimed when it died, retried by HAProxy on B: B waits 10 s
/// for A's outcome (a repeated callback is normally a double click), none comes,
/// and B says the sign-in expired; the person starts it over.
const RETRIED_CALLBACK: &str = "callback claimed by the dead instance, retried by the proxy:";

/// Refresh `token` through the proxy: its successor, or what went wrong.
async fn refresh_through(lb: &str, secret: &str, token: &str, log: &Log) -> Result<String, String> {
    let sent = Instant::now();
    let resp = http()
        .post(format!("{lb}/token"))
        .basic_auth("demo", Some(secret))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", token)])
        .send()
        .await
        .map_err(|e| e.to_string())?;
    note(log, sent, "refresh", &resp);
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.map_err(|e| e.to_string())?;
    match body["refresh_token"].as_str() {
        Some(r) if status == 200 => Ok(r.to_owned()),
        _ => Err(format!("refresh: {status} {body}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_behind_haproxy_survive_one_killed() {
    if !haproxy_installed() {
        eprintln!(
            "NOTE: haproxy is not installed (apt-get install haproxy); \
             skipping the two-instances-behind-a-load-balancer test"
        );
        return;
    }
    let db = TestDb::new(Db::Postgres);
    let dir = temp_dir("lb");
    // The proxy's port stays bound here until HAProxy takes it: the instances'
    // simulators bind any free port (`--sim-port 0`), and the kernel readily
    // hands out a port just released (seen: HAProxy "cannot bind socket", and a
    // simulator answering at the proxy's address).
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let front = reserved.local_addr().unwrap().port();
    let (ra, rb) = (
        std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
        std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
    );
    let (pa, pb) = (
        ra.local_addr().unwrap().port(),
        rb.local_addr().unwrap().port(),
    );
    let lb = format!("http://127.0.0.1:{front}");
    // Both instances: one database, one master key (the shared dev directory),
    // the proxy's address as issuer, the proxy trusted for X-Forwarded-For.
    let instance = |port: u16, name: &str| {
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
        Killed(
            bin()
                .args(["serve", "--dev", "--sim-port", "0", "--port"])
                .arg(port.to_string())
                .arg("--dir")
                .arg(&dir)
                .env("IDBRIDGE__STORAGE__URL", db.url())
                .env("IDBRIDGE__ISSUER", &lb)
                .env("IDBRIDGE__SERVER__TRUSTED_PROXIES", "127.0.0.1")
                .stdout(Stdio::null())
                .stderr(Stdio::from(log))
                .spawn()
                .unwrap(),
        )
    };
    // Each port is let go just before its instance binds it; B starts once A's
    // simulators hold their ports.
    drop(ra);
    let mut a = instance(pa, "a");
    wait_for(&format!("http://127.0.0.1:{pa}")).await;
    drop(rb);
    let _b = instance(pb, "b");
    wait_for(&format!("http://127.0.0.1:{pb}")).await;

    let cfg = dir.join("haproxy.cfg");
    std::fs::write(&cfg, haproxy_config(front, pa, pb)).unwrap();
    let proxy_log = std::fs::File::create(dir.join("haproxy.log")).unwrap();
    drop(reserved);
    // `-db`: stay in the foreground, so the guard's kill stops it.
    let _proxy = Killed(
        Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::from(proxy_log))
            .spawn()
            .unwrap(),
    );
    wait_for(&lb).await;
    // Both servers up in HAProxy (it starts them up; a first check confirms).
    let mut served = std::collections::HashSet::new();
    for _ in 0..50 {
        if let Ok(r) = http().get(format!("{lb}/readyz")).send().await {
            if r.status() == 200 {
                if let Some(s) = r.headers().get("x-served-by") {
                    served.insert(s.to_str().unwrap_or("").to_owned());
                }
            }
        }
        if served.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(served.len(), 2, "HAProxy sends to both instances");
    let secret = std::fs::read_to_string(dir.join("demo-client.secret"))
        .unwrap()
        .trim()
        .to_owned();

    // Eight apps at once: each signs a person in and refreshes their chain, then
    // signs the next one in, until the traffic stops. A dies in the middle.
    let log: Log = Arc::new(Mutex::new(Vec::new()));
    let begun = Instant::now();
    let stop_at = begun + Duration::from_secs(4);
    let mut workers = Vec::new();
    for w in 0..8 {
        let (lb, secret, log) = (lb.clone(), secret.clone(), log.clone());
        workers.push(tokio::spawn(async move {
            let mut chains: Vec<String> = Vec::new();
            let mut errors: Vec<String> = Vec::new();
            let mut restarted: Vec<Instant> = Vec::new();
            let mut n = 0;
            while Instant::now() < stop_at {
                n += 1;
                let user = format!("user-{w}-{n}");
                let started = Instant::now();
                let ip = format!("203.0.113.{}", w + 1);
                let mut result = sign_in_through(&lb, &secret, &user, &ip, &log).await;
                if matches!(&result, Err(e) if e.starts_with(RETRIED_CODE) || e.starts_with(RETRIED_CALLBACK))
                {
                    restarted.push(started);
                    result = sign_in_through(&lb, &secret, &user, &ip, &log).await;
                }
                let mut token = match result {
                    Ok(t) => t,
                    Err(e) => {
                        errors.push(format!("{user}: {e}"));
                        continue;
                    }
                };
                for _ in 0..3 {
                    match refresh_through(&lb, &secret, &token, &log).await {
                        Ok(t) => token = t,
                        Err(e) => errors.push(format!("{user}: {e}")),
                    }
                }
                chains.push(token);
            }
            (chains, errors, restarted)
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // SIGKILL: no shutdown, requests in flight on A are cut off.
    let status = Command::new("kill")
        .args(["-9", &a.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let _ = a.0.wait();
    let killed_at = Instant::now();

    let mut chains = Vec::new();
    let mut errors = Vec::new();
    let mut restarted = Vec::new();
    for w in workers {
        let (c, e, r) = w.await.unwrap();
        chains.extend(c);
        errors.extend(e);
        restarted.extend(r);
    }
    let seen = log.lock().unwrap().clone();
    let before: Vec<&Seen> = seen.iter().filter(|s| s.at < killed_at).collect();
    let after: Vec<&Seen> = seen.iter().filter(|s| s.sent >= killed_at).collect();
    assert!(
        before.iter().any(|s| s.server == "a") && before.iter().any(|s| s.server == "b"),
        "round-robin: both instances served before the kill"
    );
    assert!(
        after.len() > 50,
        "traffic went on after the kill: {}",
        after.len()
    );
    // A request sent once A is dead is answered by B, every one: a refused
    // connection is redispatched to B, and within 400 ms the `/readyz` checks
    // take A out of the rotation.
    let on_a: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.sent >= killed_at && s.server != "b")
        .collect();
    assert!(
        on_a.is_empty(),
        "sent after the kill, not answered by B: {on_a:?}"
    );
    for step in ["authorize", "callback", "code", "refresh"] {
        assert!(
            after.iter().any(|s| s.what == step && s.server == "b"),
            "B answered {step} requests after the kill"
        );
    }
    // No 5xx at all: a request that met the dead instance (refused connection or
    // one closed without an answer) is retried on B by HAProxy; a refresh that A
    // had committed before dying is answered by B with the same successor
    // (`tokens.refresh_grace_secs`), so the retry is safe.
    let server_errors: Vec<&Seen> = seen.iter().filter(|s| s.status >= 500).collect();
    assert!(
        server_errors.is_empty(),
        "5xx reached clients: {server_errors:?}"
    );
    assert!(errors.is_empty(), "every flow finished: {errors:#?}");
    // What a retry cannot make safe: a step A had committed when it died, its
    // answer lost: a code it redeemed (codes are single-use) or a callback it
    // claimed (B cannot know whether A is slow or gone). Only sign-ins begun
    // before the kill, each started over and then finished on B.
    assert!(
        restarted.iter().all(|at| *at < killed_at),
        "only sign-ins in flight at the kill started over"
    );
    assert!(chains.len() >= 16, "enough sign-ins: {}", chains.len());

    // No grant lost: every chain's newest refresh token still refreshes (on B).
    let check: Log = Arc::new(Mutex::new(Vec::new()));
    for token in &chains {
        refresh_through(&lb, &secret, token, &check)
            .await
            .expect("the newest refresh token of every chain refreshes");
    }
    assert!(check.lock().unwrap().iter().all(|s| s.server == "b"));

    // X-Forwarded-For went through HAProxy (which appends 127.0.0.1, trusted):
    // the audit log records each browser's own address, never the proxy's.
    let store = idbridge_store::Store::connect(&db.url(), Default::default())
        .await
        .unwrap();
    let logins = store
        .find_audit(idbridge_store::AuditFilter {
            events: vec!["login".into()],
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!logins.is_empty());
    for l in &logins {
        let ip = l.event.ip.as_deref().unwrap_or("");
        assert!(ip.starts_with("203.0.113."), "login audited at {ip:?}");
    }
    eprintln!(
        "balanced: {} answers ({} after the kill, {} retried by HAProxy), {} sign-ins \
         ({} started over), every chain refreshed, {:?}",
        seen.len(),
        after.len(),
        seen.iter().filter(|s| s.retries > 0).count(),
        chains.len(),
        restarted.len(),
        begun.elapsed()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
