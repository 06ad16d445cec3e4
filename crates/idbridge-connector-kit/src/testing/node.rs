//! Independent peers written for node (an upstream provider, a relying-party
//! library), installed from their pinned `package-lock.json` and run by tests.
//!
//! A test that needs node calls [`present`] first and skips with a `NOTE:` line
//! without it; [`npm_ci`] installs a package directory once, however many test
//! processes ask at the same time ([`super::install_once`]).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Does `node --version` run?
pub fn present() -> bool {
    Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `npm ci` in `dir`, unless `node_modules/{package}` is already installed;
/// once, however many test processes ask ([`super::install_once`]).
pub fn npm_ci(dir: &Path, package: &str) -> Result<(), String> {
    let marker = dir.join("node_modules").join(package).join("package.json");
    super::install_once(
        &dir.join(".npm-ci.lock"),
        Duration::from_secs(180),
        || marker.exists(),
        || {
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--silent"])
                .current_dir(dir)
                .status()
                .map_err(|e| format!("cannot run npm: {e}"))
                .and_then(|s| {
                    if s.success() {
                        Ok(())
                    } else {
                        Err(format!("npm ci in {} failed: {s}", dir.display()))
                    }
                })
        },
    )
}
