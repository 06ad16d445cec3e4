//! `idbridge serve --dev --config FILE`: dev mode with the file's connectors and
//! clients added (an upstream or an app to try beside the simulators), and a
//! broken file refused at start-up naming the key.

use crate::cli::{bin, dev_command, free_port, temp_dir, Killed};
use crate::harness::*;
use std::process::Stdio;
use std::time::{Duration, Instant};

const EXTRA: &str = r#"
[[connectors]]
id = "second-dev"
type = "dev"
name = "Second development login"

[[connectors]]
id = "third-dev"
type = "dev"
name = "Third development login"

[[clients]]
id = "tryout"
name = "An app to try"
secret = "tryout-secret-0123456789abcdef0123"
redirect_uris = ["http://127.0.0.1:9/cb"]
connectors = ["second-dev", "third-dev"]
"#;

#[tokio::test]
async fn dev_mode_adds_the_connectors_and_clients_of_a_config_file() {
    let dir = temp_dir("dev-config");
    let file = dir.join("extra.toml");
    std::fs::write(&file, EXTRA).unwrap();
    let port = free_port();
    let mut cmd = dev_command(port, &dir.join(".idbridge-dev"));
    cmd.arg("--config").arg(&file);
    let _guard = Killed(cmd.spawn().unwrap());
    let base = format!("http://127.0.0.1:{port}");
    let start = Instant::now();
    while http().get(format!("{base}/healthz")).send().await.is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "dev mode did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The file's app is known, and its chooser offers the file's connectors
    // (the ones its client names), not dev mode's own.
    let url = format!(
        "{base}/authorize?response_type=code&client_id=tryout&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb&scope=openid&state=s&nonce=n&code_challenge={}&code_challenge_method=S256",
        idbridge_tokens::pkce_s256("verifier-0123456789-0123456789-0123456789-abcdef")
    );
    let resp = http().get(&url).send().await.unwrap();
    assert_eq!(
        resp.status(),
        302,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    let chooser = url::Url::parse(&base)
        .unwrap()
        .join(&location(&resp))
        .unwrap();
    let page = http()
        .get(chooser)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("An app to try"), "{page}");
    assert!(page.contains("Second development login"), "{page}");
    assert!(page.contains("Third development login"), "{page}");
    assert!(
        !page.contains("Dev OpenID provider"),
        "only the client's connectors: {page}"
    );
    // Dev mode's own sign-ins and demo app are still there.
    let demo_login = http()
        .get(format!("{base}/demo/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(demo_login.status(), 302);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn dev_mode_refuses_a_config_file_with_a_wrong_key_naming_it() {
    let dir = temp_dir("dev-config-bad");
    let file = dir.join("extra.toml");
    std::fs::write(
        &file,
        "[[clients]]\nid = \"x\"\nsecret = \"x-secret-0123456789abcdef0123\"\nredirect_uris = [\"http://127.0.0.1:9/cb\"]\nredirect_uri = \"typo\"\n",
    )
    .unwrap();
    let out = bin()
        .args(["serve", "--dev", "--sim-port", "0", "--port"])
        .arg(free_port().to_string())
        .arg("--dir")
        .arg(dir.join(".idbridge-dev"))
        .arg("--config")
        .arg(&file)
        .stdout(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("redirect_uri"), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}
