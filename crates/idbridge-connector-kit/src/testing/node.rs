//! Independent peers written for node (an upstream provider, a relying-party
//! library), installed from their pinned `package-lock.json` and run by tests.
//!
//! A test that needs node calls [`present`] first and skips with a `NOTE:` line
//! without it; [`npm_ci`] installs a package directory once, however many test
//! processes ask at the same time.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Does `node --version` run?
pub fn present() -> bool {
    Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `npm ci` in `dir`, unless `node_modules/{package}` is already installed.
/// Several test processes may get here at once: a directory made with
/// `create_dir` is the lock (waited for up to 3 minutes).
pub fn npm_ci(dir: &Path, package: &str) -> Result<(), String> {
    let installed = || {
        dir.join("node_modules")
            .join(package)
            .join("package.json")
            .exists()
    };
    if installed() {
        return Ok(());
    }
    let lock = dir.join(".npm-ci.lock");
    let started = Instant::now();
    while std::fs::create_dir(&lock).is_err() {
        if started.elapsed() > Duration::from_secs(180) {
            return Err(format!("{} stayed locked for 3 minutes", lock.display()));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let result = if installed() {
        Ok(())
    } else {
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
    };
    let _ = std::fs::remove_dir(&lock);
    result
}
