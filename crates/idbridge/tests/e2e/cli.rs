//! The `idbridge` command as an operator runs it: dev mode, doctor, migrate, keys,
//! and start-up refusing a broken config with a message that names the key.

use crate::harness::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_idbridge"))
}

fn temp_dir(label: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "idbridge-cli-{label}-{}-{}",
        std::process::id(),
        idbridge_tokens::random_alnum(8).unwrap()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Killed(std::process::Child);
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
    let child = bin()
        .args(["serve", "--dev", "--port", &port.to_string(), "--dir"])
        .arg(dir.join(".idbridge-dev"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
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
    let jwks: serde_json::Value = http()
        .get(format!("{base}/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    drop(guard);
    // A restart reuses the same keys (same master key and database in the dir).
    let child = bin()
        .args(["serve", "--dev", "--port", &port.to_string(), "--dir"])
        .arg(dir.join(".idbridge-dev"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
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
fn example_config(dir: &std::path::Path) -> std::path::PathBuf {
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
[[connectors]]
id = "w"
type = "wechat-nope"
[[connectors]]
id = "d"
type = "dev"
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
