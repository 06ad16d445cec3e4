//! The `idbridge` command as an operator runs it: dev mode, doctor, migrate, keys,
//! and start-up refusing a broken config with a message that names the key.

use crate::harness::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_idbridge"))
}

pub(crate) fn temp_dir(label: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "idbridge-cli-{label}-{}-{}",
        std::process::id(),
        idbridge_tokens::random_alnum(8).unwrap()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `idbridge serve --dev` on `port` with its state in `dir` (simulator on any
/// free port), quiet.
pub(crate) fn dev_command(port: u16, dir: &std::path::Path) -> Command {
    let mut cmd = bin();
    cmd.args([
        "serve",
        "--dev",
        "--sim-port",
        "0",
        "--port",
        &port.to_string(),
        "--dir",
    ])
    .arg(dir)
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    cmd
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) struct Killed(pub(crate) std::process::Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn dev_mode_serves_discovery_within_seconds_and_keeps_its_keys() {
    let dir = temp_dir("dev");
    let port = free_port();
    let start = Instant::now();
    let child = dev_command(port, &dir.join(".idbridge-dev"))
        .spawn()
        .unwrap();
    let guard = Killed(child);
    let base = format!("http://127.0.0.1:{port}");
    let mut meta = None;
    while start.elapsed() < Duration::from_secs(30) {
        if let Ok(r) = http()
            .get(format!("{base}/.well-known/openid-configuration"))
            .send()
            .await
        {
            meta = r.json::<serde_json::Value>().await.ok();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = start.elapsed();
    let meta = meta.expect("discovery answered");
    assert_eq!(meta["issuer"], base.as_str());
    assert!(took < Duration::from_secs(10), "discovery took {took:?}");
    // The demo app is there and starts a real authorization request.
    let demo = http()
        .get(format!("{base}/demo/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(demo.status(), 302);
    assert!(location(&demo).starts_with(&format!("{base}/authorize?")));
    let jwks: serde_json::Value = get_json(&http(), format!("{base}/jwks")).await;
    drop(guard);
    // A restart reuses the same keys (same master key and database in the dir).
    let child = dev_command(port, &dir.join(".idbridge-dev"))
        .spawn()
        .unwrap();
    let _guard = Killed(child);
    let mut again = None;
    for _ in 0..300 {
        if let Ok(r) = http().get(format!("{base}/jwks")).send().await {
            again = r.json::<serde_json::Value>().await.ok();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(again.expect("restarted"), jwks);
    let _ = std::fs::remove_dir_all(dir);
}

/// The example config with its paths pointed at a temp dir.
pub(crate) fn example_config(dir: &std::path::Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/idbridge.example.toml"
    ))
    .unwrap();
    std::fs::write(dir.join("master.key"), MASTER_KEY).unwrap();
    std::fs::write(dir.join("shop.secret"), "shop-secret-0123456789abcdef\n").unwrap();
    let text = text
        .replace(
            "/etc/idbridge/master.key",
            &dir.join("master.key").display().to_string(),
        )
        .replace(
            "/etc/idbridge/shop.secret",
            &dir.join("shop.secret").display().to_string(),
        )
        .replace(
            "sqlite:///var/lib/idbridge/idbridge.db",
            &format!("sqlite://{}", dir.join("idbridge.db").display()),
        );
    let path = dir.join("idbridge.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn the_example_config_passes_doctor_and_migrates() {
    let dir = temp_dir("example");
    let config = example_config(&dir);
    let out = bin()
        .args(["doctor", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("0 of them stop start-up"), "{text}");
    let out = bin()
        .args(["migrate", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("applied"));
    let out = bin()
        .args(["migrate", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "database is up to date"
    );
    // With no key yet, rotate creates one that signs at once; the next rotation is
    // published ahead and does not sign yet. keys list shows both.
    for _ in 0..2 {
        let out = bin()
            .args(["keys", "rotate", "--alg", "ES256", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = bin()
        .args(["keys", "list", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(
        list.contains("signing") && list.contains("published"),
        "{list}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn doctor_prints_every_problem_at_once() {
    let dir = temp_dir("doctor");
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        r#"issuer = "http://id.example.com"
[storage]
url = "mysql://db"
[[clients]]
id = "a"
redirect_uris = ["https://a.example/cb#x"]
[verification]
sender = "log"
[[connectors]]
id = "w"
type = "wechat-nope"
[[connectors]]
id = "d"
type = "dev"
first_login = "maybe"
"#,
    )
    .unwrap();
    let out = bin()
        .args(["doctor", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    for key in [
        "issuer:",
        "signing.master_key:",
        "storage.url:",
        "clients[a].secret:",
        "clients[a].redirect_uris:",
        "connectors[w].type:",
        "connectors[d].type:",
        "connectors[d].first_login:",
        "verification.sender:",
    ] {
        assert!(text.contains(key), "doctor names {key}:\n{text}");
    }
    assert!(text.contains("development only"), "{text}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn start_up_refuses_a_wrong_key_and_names_it() {
    let dir = temp_dir("typo");
    let config = example_config(&dir);
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("[tokens]", "[tokens]\ncode_tll_secs = 30");
    std::fs::write(&config, text).unwrap();
    let out = bin()
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("code_tll_secs"), "{err}");
    // An environment override that breaks a value is named too.
    let config = example_config(&dir);
    let out = bin()
        .args(["serve", "--config"])
        .arg(&config)
        .env("IDBRIDGE__ISSUER", "not a url")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("issuer"));
    let _ = std::fs::remove_dir_all(dir);
}

pub(crate) async fn wait_for(base: &str) {
    for _ in 0..300 {
        if http().get(format!("{base}/healthz")).send().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{base} did not start");
}

fn dev_process(dir: &std::path::Path, port: u16, db_url: &str, issuer: &str) -> Killed {
    Killed(
        dev_command(port, dir)
            .env("IDBRIDGE__STORAGE__URL", db_url)
            .env("IDBRIDGE__ISSUER", issuer)
            .spawn()
            .unwrap(),
    )
}

/// Two broker processes on one Postgres database: a flow begun on one finishes on
/// the other, both serve the same keys, and a restart changes no key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_one_postgres_database() {
    let db = TestDb::new(Db::Postgres);
    let dir = temp_dir("two");
    let (pa, pb) = (free_port(), free_port());
    let issuer = format!("http://127.0.0.1:{pa}");
    let (a_base, b_base) = (issuer.clone(), format!("http://127.0.0.1:{pb}"));
    let a = dev_process(&dir, pa, &db.url(), &issuer);
    let b = dev_process(&dir, pb, &db.url(), &issuer);
    wait_for(&a_base).await;
    wait_for(&b_base).await;
    let jwks = |base: String| async move {
        http()
            .get(format!("{base}/jwks"))
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    };
    let keys_a = jwks(a_base.clone()).await;
    assert_eq!(
        keys_a,
        jwks(b_base.clone()).await,
        "both processes publish the same keys"
    );

    // The demo app's login begins on A; the person comes back through B.
    let secret = std::fs::read_to_string(dir.join("demo-client.secret")).unwrap();
    let start = http()
        .get(format!("{a_base}/demo/login?connector=dev"))
        .send()
        .await
        .unwrap();
    let demo_cookie = start
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    // The demo cookie is client.state.nonce.verifier.
    let verifier = demo_cookie.splitn(4, '.').nth(3).unwrap().to_owned();
    let page = http().get(location(&start)).send().await.unwrap();
    let browser_cookie = page
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let state = state_from_page(&page.text().await.unwrap());
    let back = http()
        .get(format!("{b_base}/callback/dev"))
        .header("cookie", browser_cookie)
        .query(&[("state", state.as_str()), ("user", "alice")])
        .send()
        .await
        .unwrap();
    assert_eq!(back.status(), 302);
    let code = query_param(&location(&back), "code").expect("a code from B for a flow begun on A");
    let tokens: serde_json::Value = http()
        .post(format!("{b_base}/token"))
        .basic_auth("demo", Some(secret.trim()))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", format!("{issuer}/demo/callback").as_str()),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(tokens["id_token"].is_string(), "{tokens}");
    let refreshed = http()
        .post(format!("{a_base}/token"))
        .basic_auth("demo", Some(secret.trim()))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), 200, "A refreshes what B issued");

    // Restart A: same keys.
    drop(a);
    let _a = dev_process(&dir, pa, &db.url(), &issuer);
    wait_for(&a_base).await;
    assert_eq!(
        jwks(a_base.clone()).await,
        keys_a,
        "a restart changes no key"
    );
    drop(b);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn doctor_catches_the_wechat_setups_that_break_most_often() {
    let dir = temp_dir("doctor-wechat");
    let config = example_config(&dir);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(
        r#"
[[connectors]]
id = "wechat"
type = "wechat-web"
appid = "wx5d1e7c0a9b3f2401"
appsecret = "8b1f3c5e7a9d0b2c4e6f8a1b3c5d7e9f"
open_platform_id = "gh_dev_platform"
callback_domain = "www.id.example.com"

[[connectors]]
id = "wechat-typo"
type = "wechat-web"
appid = "wx123"
appsecret = "short"
mode = "popup"
"#,
    );
    std::fs::write(&config, text).unwrap();
    let out = bin()
        .args(["doctor", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "connectors[wechat].callback_domain",
        "redirect_uri 参数错误",
        "\"id.example.com\"",
        "connectors[wechat-typo].appid",
        "connectors[wechat-typo].appsecret",
        "connectors[wechat-typo].mode",
    ] {
        assert!(report.contains(needle), "doctor names {needle}:\n{report}");
    }
    // Fixed: the matching domain passes.
    let text = std::fs::read_to_string(&config).unwrap();
    let head = text
        .split("[[connectors]]\nid = \"wechat-typo\"")
        .next()
        .unwrap()
        .to_owned();
    std::fs::write(
        &config,
        head.replace("www.id.example.com", "id.example.com"),
    )
    .unwrap();
    let out = bin()
        .args(["doctor", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}");
    assert!(!report.contains("callback_domain"), "{report}");
    let _ = std::fs::remove_dir_all(dir);
}

/// In dev mode a phone inside WeChat goes straight to the simulator's Official
/// Account page, and a desktop browser is offered the QR connectors.
#[tokio::test]
async fn dev_mode_routes_wechat_browsers_to_the_official_account() {
    let dir = temp_dir("dev-ua");
    let port = free_port();
    let _guard = Killed(
        dev_command(port, &dir.join(".idbridge-dev"))
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    wait_for(&base).await;
    let phone = reqwest::Client::builder()
        .user_agent("Mozilla/5.0 (iPhone) AppleWebKit MicroMessenger/8.0.40")
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let demo = phone
        .get(format!("{base}/demo/login"))
        .send()
        .await
        .unwrap();
    let authorize = phone.get(location(&demo)).send().await.unwrap();
    let upstream = location(&authorize);
    assert!(
        upstream.contains("/connect/oauth2/authorize?appid="),
        "{upstream}"
    );
    assert!(upstream.ends_with("#wechat_redirect"), "{upstream}");
    let desktop = http()
        .get(format!("{base}/demo/login"))
        .send()
        .await
        .unwrap();
    let authorize = http().get(location(&desktop)).send().await.unwrap();
    assert!(
        location(&authorize).contains("/login/"),
        "a desktop browser gets the chooser"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// The mobile-app flow in dev mode, exactly as README and docs/wechat-simulator.md
/// tell a developer to try it with curl: an SDK code from the simulator's admin
/// API, exchanged at /token by the demo app. The chooser never offers it.
#[tokio::test]
async fn dev_mode_exchanges_a_simulator_sdk_code_for_tokens() {
    let dir = temp_dir("dev-app");
    let (port, sim_port) = (free_port(), free_port());
    let home = dir.join(".idbridge-dev");
    let mut cmd = bin();
    cmd.args([
        "serve",
        "--dev",
        "--port",
        &port.to_string(),
        "--sim-port",
        &sim_port.to_string(),
        "--dir",
    ])
    .arg(&home)
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let _guard = Killed(cmd.spawn().unwrap());
    let base = format!("http://127.0.0.1:{port}");
    let sim = format!("http://127.0.0.1:{sim_port}");
    wait_for(&base).await;

    // curl -s -X POST "$SIM/__sim/codes?appid=wx5d1e7c0a9b3f2403&user=alice"
    let code: serde_json::Value = http()
        .post(format!(
            "{sim}/__sim/codes?appid={}&user=alice",
            wechat_sim::dev::MOBILE_APPID
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let code = code["code"].as_str().unwrap();
    // curl -s -u "demo:$(cat .idbridge-dev/demo-client.secret)" $BROKER/token -d ...
    let secret = std::fs::read_to_string(home.join("demo-client.secret")).unwrap();
    // Only unreserved characters: sent as is in Basic (like `curl -u`), it works.
    assert!(
        secret
            .trim()
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c)),
        "{secret:?}"
    );
    let resp = http()
        .post(format!("{base}/token"))
        .basic_auth("demo", Some(secret.trim()))
        .form(&[
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            (
                "subject_token_type",
                "urn:idbridge:params:oauth:token-type:wechat_sdk_code",
            ),
            ("subject_token", code),
            ("scope", "openid profile offline_access"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let t: serde_json::Value = resp.json().await.unwrap();
    let id = claims(t["id_token"].as_str().unwrap());
    assert_eq!(id["name"], "Alice");
    assert_eq!(id["linked_connectors"], serde_json::json!(["wechat-app"]));
    assert!(t["refresh_token"].is_string());

    // The Mini Program, as docs/wechat-simulator.md tells it: a wx.login code
    // and a getPhoneNumber code from the simulator, exchanged together; the
    // same person (one sub, by unionid) now has a verified phone.
    let sim_code = |path: String| {
        let url = format!("{sim}{path}");
        async move {
            let v: serde_json::Value = http().post(url).send().await.unwrap().json().await.unwrap();
            v["code"].as_str().unwrap().to_owned()
        }
    };
    let mini = wechat_sim::dev::MINI_PROGRAM_APPID;
    let login_code = sim_code(format!("/__sim/codes?appid={mini}&user=alice")).await;
    let phone_code = sim_code(format!(
        "/__sim/phone-codes?appid={mini}&phone=%2B8613800138000"
    ))
    .await;
    let resp = http()
        .post(format!("{base}/token"))
        .basic_auth("demo", Some(secret.trim()))
        .form(&[
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            (
                "subject_token_type",
                "urn:idbridge:params:oauth:token-type:wechat_miniprogram_code",
            ),
            ("subject_token", login_code.as_str()),
            ("wechat_phone_code", phone_code.as_str()),
            ("scope", "openid phone"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let t: serde_json::Value = resp.json().await.unwrap();
    let mini_id = claims(t["id_token"].as_str().unwrap());
    assert_eq!(
        mini_id["sub"], id["sub"],
        "the same person as the mobile app's"
    );
    assert_eq!(mini_id["phone_number"], "+8613800138000");
    assert_eq!(mini_id["phone_number_verified"], true);

    // The demo page offers only connectors with a browser flow.
    let demo = get_text(&http(), format!("{base}/demo")).await;
    assert!(demo.contains("connector=wechat-mp"), "{demo}");
    assert!(!demo.contains("connector=wechat-app"), "{demo}");
    assert!(!demo.contains("connector=wechat-mini"), "{demo}");
    let _ = std::fs::remove_dir_all(dir);
}

/// `idbridge serve` on SQLite stops gracefully on SIGTERM: the listener closes at
/// once (a new connection is refused), a request already in flight (its body
/// still arriving) is answered, and the process exits 0 within
/// `server.shutdown_timeout_secs`, logging when shutdown starts and ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_requests_in_flight_then_exits_zero() {
    stops_gracefully_on("TERM").await;
}

/// SIGINT (Ctrl-C) stops the same graceful way (actix alone would cut requests off).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_finishes_requests_in_flight_then_exits_zero() {
    stops_gracefully_on("INT").await;
}

async fn stops_gracefully_on(signal: &str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = temp_dir(&format!("sig{signal}"));
    let config = example_config(&dir);
    let port = free_port();
    let log_path = dir.join("serve.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let child = bin()
        .args(["serve", "--config"])
        .arg(&config)
        .env("IDBRIDGE__SERVER__BIND", format!("127.0.0.1:{port}"))
        .env("IDBRIDGE__SERVER__SHUTDOWN_TIMEOUT_SECS", "5")
        .env("IDBRIDGE__SERVER__REQUEST_READ_TIMEOUT_SECS", "30")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let mut guard = Killed(child);
    let base = format!("http://127.0.0.1:{port}");
    wait_for(&base).await;

    // An idle keep-alive connection, after one answered request.
    let mut idle = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    idle.write_all(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("{\"status\":\"ok\"}") {
        let mut buf = [0u8; 1024];
        let n = idle.read(&mut buf).await.unwrap();
        assert!(n > 0, "keep-alive connection closed early");
        seen.extend_from_slice(&buf[..n]);
    }

    // A token request whose body has not fully arrived yet.
    let body = "grant_type=authorization_code&code=nothing&client_id=nobody";
    let (first, rest) = body.split_at(12);
    let mut in_flight = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    in_flight
        .write_all(
            format!(
                "POST /token HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{first}",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let pid = guard.0.id().to_string();
    let signalled = Instant::now();
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status()
        .unwrap();
    assert!(status.success());
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The idle connection is closed (no waiting for its keep-alive to run out).
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(2), idle.read(&mut buf))
        .await
        .expect("the idle keep-alive connection is closed at shutdown")
        .unwrap_or(0);
    assert_eq!(n, 0, "nothing more on the idle connection");

    // Not accepting any more.
    let refused = tokio::net::TcpStream::connect(("127.0.0.1", port)).await;
    assert!(
        refused.is_err(),
        "a new connection was accepted after SIG{signal}"
    );

    // The request in flight is still answered.
    in_flight.write_all(rest.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), in_flight.read_to_end(&mut answer))
        .await
        .expect("the in-flight request is answered")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    let status_line = answer.lines().next().unwrap_or_default();
    assert!(
        status_line.starts_with("HTTP/1.1 4") && answer.contains("invalid_"),
        "{answer}"
    );

    // Then the process exits 0 within the shutdown bound.
    let code = loop {
        if let Some(code) = guard.0.try_wait().unwrap() {
            break code;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(5 + 3),
            "still running {:?} after SIG{signal}",
            signalled.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(code.success(), "exit status {code:?}");
    let log = std::fs::read_to_string(&log_path).unwrap();
    let started = log
        .lines()
        .filter(|l| l.contains("shutdown started") && l.contains(&format!("SIG{signal}")))
        .count();
    let ended = log
        .lines()
        .filter(|l| l.contains("shutdown complete"))
        .count();
    assert_eq!((started, ended), (1, 1), "{log}");
    let _ = std::fs::remove_dir_all(dir);
}

/// `idbridge backup --config FILE --to PATH` with the config's storage.url set to `db_url`.
fn backup_command(config: &std::path::Path, db_url: &str, to: &std::path::Path) -> Command {
    let mut cmd = bin();
    cmd.args(["backup", "--config"])
        .arg(config)
        .arg("--to")
        .arg(to)
        .env("IDBRIDGE__STORAGE__URL", db_url);
    cmd
}

/// A backup taken while a broker on SQLite rotates a refresh token as fast as it can
/// restores into a fresh broker (same master key): the token the chain held at the
/// snapshot still refreshes there, an idle chain too, the users keep their `sub`, and
/// the JWKS is the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sqlite_backup_taken_while_serving_restores_every_grant_and_key() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let db = TestDb::new(Db::Sqlite);
    let no_grace = |s: &mut idbridge_server::Settings| s.tokens.refresh_grace_secs = 0;
    let broker = start(&db.url(), None, no_grace).await;
    let base = broker.base.clone();
    let jwks = get_json(&http(), format!("{base}/jwks")).await;
    let busy = tokens_for(&base, "alice").await;
    let idle = tokens_for(&base, "bob").await;
    let alice_sub = claims(busy["id_token"].as_str().unwrap())["sub"].clone();
    let bob_sub = claims(idle["id_token"].as_str().unwrap())["sub"].clone();
    assert_ne!(alice_sub, bob_sub);

    // Alice's chain rotates in a task, before, during and after the backup.
    let chain = Arc::new(Mutex::new(vec![busy["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned()]));
    let stop = Arc::new(AtomicBool::new(false));
    let rotating = {
        let (chain, stop, base) = (chain.clone(), stop.clone(), base.clone());
        tokio::spawn(async move {
            for _ in 0..2000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let current = chain.lock().unwrap().last().cloned().unwrap();
                let r = refresh(&base, &current).await;
                assert_eq!(r.status(), 200, "refresh during the backup");
                let r: serde_json::Value = r.json().await.unwrap();
                let next = r["refresh_token"].as_str().unwrap().to_owned();
                chain.lock().unwrap().push(next);
            }
        })
    };
    while chain.lock().unwrap().len() < 5 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let dir = temp_dir("backup");
    let config = example_config(&dir);
    let to = dir.join("backup.db");
    let held_before = chain.lock().unwrap().len() - 1;
    let out = {
        let mut cmd = backup_command(&config, &db.url(), &to);
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap()
    };
    let held_after = chain.lock().unwrap().len() - 1;
    assert!(
        held_after > held_before,
        "no refresh happened while the backup ran"
    );
    // A few more rotations after the snapshot, which the backup must not hold.
    while chain.lock().unwrap().len() < held_after + 4 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::SeqCst);
    rotating.await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let size = std::fs::metadata(&to).unwrap().len();
    assert!(
        stdout.contains(&format!("backup written: {}", to.display())),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("size: {size} bytes")), "{stdout}");
    let newest = newest_migration();
    assert!(
        stdout.contains(&format!("newest migration: {newest}")),
        "{stdout}"
    );
    // Only the backup itself is left next to it: no temporary file.
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["backup.db", "idbridge.toml", "master.key", "shop.secret"]
    );
    broker.stop().await;

    // Restore: the file in place of a fresh database, the same master key and issuer.
    let restored_dir = temp_dir("restored");
    let restored_db = restored_dir.join("idbridge.db");
    std::fs::copy(&to, &restored_db).unwrap();
    let restored = start(
        &format!("sqlite://{}", restored_db.display()),
        Some(&base),
        no_grace,
    )
    .await;
    let rbase = restored.base.clone();
    assert_eq!(get_json(&http(), format!("{rbase}/jwks")).await, jwks);

    // Newest first: tokens rotated after the snapshot are unknown there; the first one
    // the restored broker knows is the one the chain held at the snapshot, and it works.
    let chain = chain.lock().unwrap().clone();
    let mut working = None;
    for (i, token) in chain.iter().enumerate().rev() {
        let r = refresh(&rbase, token).await;
        let status = r.status();
        let body: serde_json::Value = r.json().await.unwrap();
        if status == 200 {
            working = Some((i, body));
            break;
        }
        assert_eq!(body["error"], "invalid_grant", "token {i}: {body}");
    }
    let (i, refreshed) = working.expect("a token of the busy chain refreshes after restore");
    assert!(
        (held_before..=held_after).contains(&i),
        "the restored chain is at token {i}, the backup ran from {held_before} to {held_after}"
    );
    assert_eq!(
        claims(refreshed["id_token"].as_str().unwrap())["sub"],
        alice_sub
    );
    // And it goes on rotating there.
    let next = refreshed["refresh_token"].as_str().unwrap();
    assert_eq!(refresh(&rbase, next).await.status(), 200);

    let r = refresh(&rbase, idle["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.status(), 200);
    let r: serde_json::Value = r.json().await.unwrap();
    assert_eq!(claims(r["id_token"].as_str().unwrap())["sub"], bob_sub);
    let userinfo = http()
        .get(format!("{rbase}/userinfo"))
        .bearer_auth(r["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(userinfo.status(), 200);
    let userinfo: serde_json::Value = userinfo.json().await.unwrap();
    assert_eq!(userinfo["sub"], bob_sub);
    restored.stop().await;
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(restored_dir);
}

#[test]
fn backup_refuses_to_overwrite_a_file() {
    let dir = temp_dir("backup-exists");
    let config = example_config(&dir);
    let db_url = format!("sqlite://{}", dir.join("idbridge.db").display());
    let out = bin()
        .args(["migrate", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success());
    let to = dir.join("backup.db");
    std::fs::write(&to, "yesterday's backup").unwrap();
    let out = backup_command(&config, &db_url, &to).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{} already exists; not overwriting it",
            to.display()
        )),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&to).unwrap(), "yesterday's backup");
    // Nothing else was written next to it.
    let partial = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("partial")
        })
        .count();
    assert_eq!(partial, 0);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn backup_of_a_postgres_database_prints_the_pg_dump_command() {
    let dir = temp_dir("backup-pg");
    let config = example_config(&dir);
    let to = dir.join("idbridge.dump");
    let out = backup_command(
        &config,
        "postgres://idbridge:s3cret-pw@db.internal:5433/idbridge?sslmode=require",
        &to,
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!(
        "pg_dump --format=custom --file={} 'postgres://idbridge@db.internal:5433/idbridge?sslmode=require'",
        to.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(!stderr.contains("s3cret-pw"), "{stderr}");
    assert!(!to.exists());
    let _ = std::fs::remove_dir_all(dir);
}
