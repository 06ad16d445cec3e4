//! Independent relying-party libraries, used unmodified as apps use them, sign
//! in through the broker (issue 12's matrix, beside the `openidconnect` crate in
//! `oidc_client.rs` and oidc-client-ts in the browser scenarios):
//!
//! - node **openid-client** 6 (`tests/rp/openid-client/rp.mjs`): discovery,
//!   PKCE, state, nonce, RFC 9207 `iss`, ID token validation, userinfo,
//!   refresh, introspection, revocation, an error response, a pushed
//!   authorization request (RFC 9126), the end-session URL;
//! - Python **Authlib**'s Flask client (`tests/rp/authlib/app.py`), a real
//!   Flask app on 127.0.0.1: the same steps, and logout back to the app, whose
//!   `state` check passes.
//!
//! The test plays the browser; the libraries do everything else. Each is
//! installed from its pinned versions on first use (`npm ci`, a venv with pip);
//! without node or python3 the test says NOTE and skips.

use crate::both_backends;
use crate::harness::*;
use idbridge_connector_kit::testing::{install_once, node};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

fn rp_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/rp")
        .join(name)
}

/// The next line of a peer's stdout, within 30 s.
async fn next_line(lines: &mut Lines<BufReader<ChildStdout>>, peer: &str) -> String {
    tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("{peer} said nothing for 30 s"))
        .expect("read peer")
        .unwrap_or_else(|| panic!("{peer} exited early (its stderr is above)"))
}

fn spawn(mut command: Command) -> (Child, Lines<BufReader<ChildStdout>>) {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start the relying party");
    let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    (child, lines)
}

/// Only the development connector, so the apps' plain requests (no
/// broker-specific `connector` parameter) go straight to its page.
fn one_sign_in_method(s: &mut idbridge_server::Settings) {
    s.connectors.retain(|c| c["id"] == "dev");
}

async fn openid_client(db_url: &str) {
    let dir = rp_dir("openid-client");
    if !node::present() {
        eprintln!("NOTE: openid-client test skipped: it needs node and npm");
        return;
    }
    let install = dir.clone();
    tokio::task::spawn_blocking(move || node::npm_ci(&install, "openid-client"))
        .await
        .unwrap()
        .expect("npm ci");
    let broker = start(db_url, None, one_sign_in_method).await;
    let config = serde_json::json!({
        "issuer": broker.base,
        "client_id": APP_ID,
        "client_secret": APP_SECRET,
        "redirect_uri": APP_REDIRECT,
        "post_logout_redirect_uri": APP_LOGOUT,
    });
    let mut command = Command::new("node");
    command
        .arg("rp.mjs")
        .current_dir(&dir)
        .env("RP_CONFIG", config.to_string());
    let (mut child, mut lines) = spawn(command);
    let mut stdin = child.stdin.take().expect("stdin");
    let signed_in = browser();
    let result: Value = loop {
        let line = next_line(&mut lines, "openid-client").await;
        if let Some(json) = line.strip_prefix("RESULT ") {
            break serde_json::from_str(json).expect("result JSON");
        }
        let Some(json) = line.strip_prefix("AUTHORIZE ") else {
            panic!("unexpected line from openid-client: {line}");
        };
        let ask: Value = serde_json::from_str(json).expect("authorize JSON");
        let url = ask["url"].as_str().unwrap();
        let back = match ask["purpose"].as_str().unwrap() {
            "sign_in" | "pushed_sign_in" => {
                sign_in(&signed_in, &broker.base, url, "zhangwei").await
            }
            // A browser without an SSO session.
            _ => location(&browser().get(url).send().await.unwrap()),
        };
        assert!(back.starts_with(APP_REDIRECT), "{back}");
        stdin
            .write_all(format!("CALLBACK {back}\n").as_bytes())
            .await
            .unwrap();
    };
    assert_eq!(child.wait().await.unwrap().code(), Some(0));

    assert_eq!(result["issuer"], broker.base.as_str());
    let sub = result["id_token"]["sub"].as_str().unwrap().to_owned();
    assert_eq!(result["id_token"]["name"], "张伟");
    assert_eq!(result["id_token"]["aud"], APP_ID);
    assert_eq!(
        result["token_type"]
            .as_str()
            .map(str::to_lowercase)
            .as_deref(),
        Some("bearer")
    );
    assert!(
        result["scope"].as_str().unwrap().contains("offline_access"),
        "{result}"
    );
    assert_eq!(result["has_refresh_token"], true);
    assert_eq!(result["userinfo"]["sub"], sub.as_str());
    assert_eq!(result["refresh"]["rotated"], true);
    assert_eq!(result["refresh"]["sub"], sub.as_str());
    assert_eq!(result["introspection_before"], true);
    assert_eq!(
        result["introspection_after"], false,
        "revocation ends the grant"
    );
    assert_eq!(result["refresh_after_revoke"]["refused"], true);
    assert_eq!(
        result["refresh_after_revoke"]["error"], "invalid_grant",
        "{result}"
    );
    // The library checked state and iss of the error response, then reported it.
    assert_eq!(result["silent"]["refused"], true);
    assert_eq!(result["silent"]["error"], "login_required", "{result}");

    // The pushed request: the browser carried only client_id and request_uri,
    // and the SSO session answered it for the same person.
    assert_eq!(
        result["par_browser_params"],
        serde_json::json!(["client_id", "request_uri"])
    );
    assert_eq!(result["par_sub"], sub.as_str());

    // The end-session URL the library built signs the person out and returns to the app.
    let end_session = result["end_session_url"].as_str().unwrap();
    let resp = signed_in.get(end_session).send().await.unwrap();
    assert_eq!(resp.status(), 302);
    assert_eq!(location(&resp), format!("{APP_LOGOUT}?state=rp-bye"));
    broker.stop().await;
}
both_backends!(openid_client);

/// `tests/rp/authlib/.venv` with the pinned requirements (made once; a
/// directory made with `create_dir` is the lock), or `None` without python3.
fn authlib_python() -> Option<PathBuf> {
    let dir = rp_dir("authlib");
    let python = dir.join(".venv/bin/python");
    let ready = dir.join(".venv/installed");
    let has_python = ready.exists()
        || std::process::Command::new("python3")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    if !has_python {
        return None;
    }
    let run = |program: &std::path::Path, args: &[&str]| -> Result<(), String> {
        let status = std::process::Command::new(program)
            .args(args)
            .current_dir(&dir)
            .status()
            .map_err(|e| format!("{program:?}: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("{program:?} {args:?}: {status}"))
        }
    };
    install_once(
        &dir.join(".venv.lock"),
        Duration::from_secs(300),
        || ready.exists(),
        || {
            run("python3".as_ref(), &["-m", "venv", ".venv"])?;
            run(
                &python,
                &[
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    "--disable-pip-version-check",
                    "-r",
                    "requirements.txt",
                ],
            )?;
            std::fs::write(&ready, "").map_err(|e| format!("{ready:?}: {e}"))
        },
    )
    .expect("the Authlib venv");
    Some(python)
}

async fn authlib_flask(db_url: &str) {
    let Some(python) = tokio::task::spawn_blocking(authlib_python).await.unwrap() else {
        eprintln!("NOTE: Authlib test skipped: it needs python3 (with venv and pip)");
        return;
    };
    let mut command = Command::new(python);
    command.arg("app.py").current_dir(rp_dir("authlib"));
    let (mut app, mut lines) = spawn(command);
    let port = next_line(&mut lines, "the Flask app")
        .await
        .strip_prefix("LISTENING ")
        .expect("LISTENING port")
        .to_owned();
    let app_base = format!("http://127.0.0.1:{port}");
    let (callback, signed_out) = (
        format!("{app_base}/callback"),
        format!("{app_base}/signed-out"),
    );
    let broker = start(db_url, None, move |s| {
        one_sign_in_method(s);
        s.clients.push(idbridge_server::config::ClientSettings {
            post_logout_redirect_uris: vec![signed_out],
            ..client("flask-app", Some(APP_SECRET), &callback)
        });
    })
    .await;
    let config = serde_json::json!({
        "issuer": broker.base,
        "client_id": "flask-app",
        "client_secret": APP_SECRET,
    });
    let mut stdin = app.stdin.take().expect("stdin");
    stdin
        .write_all(format!("{config}\n").as_bytes())
        .await
        .unwrap();

    // Sign in: the app redirects to the broker, the person signs in, the
    // broker returns to the app, and the app does the rest.
    let b = browser();
    let to_broker = location(&b.get(format!("{app_base}/login")).send().await.unwrap());
    assert!(
        to_broker.starts_with(&format!("{}/authorize?", broker.base)),
        "{to_broker}"
    );
    let back = sign_in(&b, &broker.base, &to_broker, "zhangwei").await;
    assert!(back.starts_with(&format!("{app_base}/callback?")), "{back}");
    let resp = b.get(&back).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let result: Value = resp.json().await.unwrap();
    assert_eq!(result["refused"], false, "{result}");
    assert_eq!(result["iss_param"], broker.base.as_str(), "RFC 9207 iss");
    let sub = result["id_token"]["sub"].as_str().unwrap().to_owned();
    assert_eq!(result["id_token"]["name"], "张伟");
    assert_eq!(result["id_token"]["aud"], "flask-app");
    assert_eq!(result["has_refresh_token"], true);
    assert_eq!(result["userinfo"]["sub"], sub.as_str());
    assert_eq!(result["userinfo"]["name"], "张伟");
    assert_eq!(result["refresh"]["rotated"], true);
    assert_eq!(result["refresh"]["sub"], sub.as_str());
    assert_eq!(result["introspection_before"], true);
    assert_eq!(result["introspection_after"], false);
    assert_eq!(result["refresh_after_revoke"]["refused"], true);
    assert_eq!(result["refresh_after_revoke"]["error"], "invalid_grant");

    // A silent request from a browser without a session: the app gets the error.
    let fresh = browser();
    let silent = location(
        &fresh
            .get(format!("{app_base}/login?prompt=none"))
            .send()
            .await
            .unwrap(),
    );
    let error_back = location(&fresh.get(&silent).send().await.unwrap());
    assert!(
        error_back.starts_with(&format!("{app_base}/callback?")),
        "{error_back}"
    );
    let refused: Value = fresh
        .get(&error_back)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        refused,
        serde_json::json!({"refused": true, "error": "login_required"})
    );

    // Logout through Authlib's logout_redirect: back at the app with its state.
    let end_session = location(&b.get(format!("{app_base}/logout")).send().await.unwrap());
    assert!(end_session.starts_with(&broker.base), "{end_session}");
    let to_app = location(&b.get(&end_session).send().await.unwrap());
    assert!(
        to_app.starts_with(&format!("{app_base}/signed-out?state=")),
        "{to_app}"
    );
    let done: Value = b.get(&to_app).send().await.unwrap().json().await.unwrap();
    assert_eq!(done, serde_json::json!({"signed_out": true}));
    // The SSO session is gone: a silent request now needs a sign-in.
    let after = location(
        &b.get(format!("{app_base}/login?prompt=none"))
            .send()
            .await
            .unwrap(),
    );
    let after_back = location(&b.get(&after).send().await.unwrap());
    assert_eq!(
        query_param(&after_back, "error").as_deref(),
        Some("login_required")
    );

    drop(stdin);
    let _ = app.kill().await;
    broker.stop().await;
}
both_backends!(authlib_flask);
