//! A real OpenID provider for tests (feature `test-support`): node's
//! `oidc-provider` (pinned in `tests/provider/package-lock.json`, installed
//! with `npm ci` on first use) started on 127.0.0.1 by [`TestProvider::start`]
//! and stopped when dropped. Its clients, accounts and self-approving
//! interactions are described in `tests/provider/server.mjs`.
//!
//! Without node, [`TestProvider::start`] prints a `NOTE:` line and answers
//! `Ok(None)`: the caller skips its test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support

use idbridge_connector_kit::testing::node;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// `client_secret_basic`.
pub const CLIENT_ID: &str = "idbridge";
/// `client_secret_post`.
pub const CLIENT_ID_POST: &str = "idbridge-post";
/// `private_key_jwt` (its key: [`TestProvider::client_key_pem`]).
pub const CLIENT_ID_JWT: &str = "idbridge-jwt";
/// The `kid` of the `private_key_jwt` client's key.
pub const CLIENT_KEY_ID: &str = "idbridge-client-key";
pub const CLIENT_SECRET: &str = "oidc-test-client-secret-0123456789";
/// `login_hint` that makes the provider answer `access_denied`.
pub const REFUSE_HINT: &str = "refuse";

/// The directory of `package.json` and `server.mjs`.
pub fn provider_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/provider")
}

/// What to start.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The clients' registered redirect URIs.
    pub redirect_uris: Vec<String>,
    /// 0: any free port.
    pub port: u16,
    /// The ID token algorithm: `RS256` (default), `ES256` or `EdDSA`.
    pub alg: Option<String>,
}

pub struct TestProvider {
    child: Child,
    pub issuer: String,
    pub port: u16,
    /// The PKCS#8 PEM private key of the `private_key_jwt` client.
    pub client_key_pem: String,
}

impl Drop for TestProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TestProvider {
    /// Start the provider; `Ok(None)` (with a NOTE line) when node is absent.
    pub fn start(options: &Options) -> Result<Option<TestProvider>, String> {
        if !node::present() {
            eprintln!("NOTE: oidc provider tests skipped: they need node and npm (the oidc-provider package), and `node` is not on PATH");
            return Ok(None);
        }
        node::npm_ci(&provider_dir(), "oidc-provider")?;
        let config = serde_json::json!({
            "port": options.port,
            "redirect_uris": options.redirect_uris,
            "client_secret": CLIENT_SECRET,
            "alg": options.alg.clone().unwrap_or_else(|| "RS256".into()),
        });
        let mut child = Command::new("node")
            .arg("server.mjs")
            .current_dir(provider_dir())
            .env("OIDC_TEST_CONFIG", config.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start node: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        let read = BufReader::new(stdout).read_line(&mut line);
        let ready: serde_json::Value = match read {
            Ok(n) if n > 0 => serde_json::from_str(&line)
                .map_err(|e| format!("the provider's first line {line:?} is not JSON: {e}"))?,
            _ => {
                let _ = child.kill();
                return Err("the provider exited before it listened (see its stderr above)".into());
            }
        };
        let issuer = ready["issuer"].as_str().unwrap_or_default().to_owned();
        let port = issuer
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        Ok(Some(TestProvider {
            child,
            issuer,
            port,
            client_key_pem: ready["client_key_pem"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        }))
    }

    /// The connector config for client `client_id` (secret or key as needed).
    pub fn config(&self, client_id: &str) -> serde_json::Value {
        match client_id {
            CLIENT_ID_JWT => serde_json::json!({
                "issuer": self.issuer,
                "client_id": client_id,
                "token_endpoint_auth": "private_key_jwt",
                "private_key": self.client_key_pem,
                "private_key_id": CLIENT_KEY_ID,
            }),
            CLIENT_ID_POST => serde_json::json!({
                "issuer": self.issuer,
                "client_id": client_id,
                "client_secret": CLIENT_SECRET,
                "token_endpoint_auth": "client_secret_post",
            }),
            _ => serde_json::json!({
                "issuer": self.issuer,
                "client_id": client_id,
                "client_secret": CLIENT_SECRET,
            }),
        }
    }
}
