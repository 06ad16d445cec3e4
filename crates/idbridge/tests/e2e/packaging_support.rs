//! What the packaging tests share: the repository's paths, commands run with a
//! time bound, the `.deb` built from this test binary, and a Debian 12 root file
//! system (debootstrap from the Debian mirror, cached under the target directory)
//! to install it into. Nothing here changes the machine outside temporary
//! directories and that cache.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The broker binary this test run built (the debug build).
pub(crate) fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_idbridge"))
}

/// Whether `tool` runs (`tool ARGS` exits 0).
pub(crate) fn have(tool: &str, args: &[&str]) -> bool {
    Command::new(tool)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub(crate) fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// Run `cmd` to its end within `within` (killed and a panic after), its output.
pub(crate) fn run(cmd: &mut Command, within: Duration) -> Output {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    // Drain the pipes on threads, so a chatty command cannot block on a full pipe.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut out, &mut v);
        v
    });
    let err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut err, &mut v);
        v
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > within {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} still running after {within:?}; stderr: {}",
                String::from_utf8_lossy(&err.join().unwrap_or_default())
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// Run `cmd` within `within` and insist on exit 0; its stdout.
pub(crate) fn run_ok(cmd: &mut Command, within: Duration) -> String {
    let what = format!("{cmd:?}");
    let out = run(cmd, within);
    assert!(
        out.status.success(),
        "{what} failed ({:?})\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A temporary directory removed (with everything in it) when dropped.
pub(crate) struct Scratch(pub(crate) PathBuf);

impl Scratch {
    pub(crate) fn new(label: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "idbridge-pkg-{label}-{}-{}",
            std::process::id(),
            idbridge_tokens::random_alnum(8).unwrap()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `deploy/debian/build-deb` over this run's binary, into `out`: the .deb's path.
/// Uncompressed (`BUILD_DEB_COMPRESSION=none`): xz over a 100 MB debug binary
/// takes minutes; what is packaged is the same.
pub(crate) fn build_deb(out: &Path) -> PathBuf {
    let printed = run_ok(
        Command::new(repo().join("deploy/debian/build-deb"))
            .arg(binary())
            .arg(out)
            .env("BUILD_DEB_COMPRESSION", "none"),
        Duration::from_secs(120),
    );
    let deb = PathBuf::from(printed.trim());
    assert!(deb.is_file(), "build-deb printed {printed:?}");
    deb
}

/// Packages the Debian root holds beyond `minbase`: what the .deb depends on,
/// CA certificates (as the image's runtime stage installs), and systemd (to boot
/// the installed unit in a container).
const DEBIAN_ROOT_PACKAGES: &str = "libpq5,libsqlite3-0,ca-certificates,systemd,systemd-sysv,dbus";

static DEBIAN_ROOT: Mutex<()> = Mutex::new(());

/// A tarball of a Debian 12 (bookworm) root file system: `debootstrap
/// --variant=minbase` from the Debian mirror (IDBRIDGE_TEST_DEBIAN_MIRROR, default
/// deb.debian.org) with [`DEBIAN_ROOT_PACKAGES`], made once (2-3 minutes) and kept
/// in the target directory (`target/tmp/packaging/`). `Err` says why there is none
/// (not root, no debootstrap, the mirror unreachable): the caller prints a NOTE.
pub(crate) fn debian_root_tarball() -> Result<PathBuf, String> {
    let _one_at_a_time = DEBIAN_ROOT.lock().unwrap_or_else(|e| e.into_inner());
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("packaging");
    let tarball = cache.join("debian-bookworm-root.tar");
    if tarball.is_file() {
        return Ok(tarball);
    }
    if !is_root() {
        return Err("making a Debian root needs root (debootstrap, chroot)".into());
    }
    if !have("debootstrap", &["--version"]) {
        return Err("debootstrap is not installed (apt-get install debootstrap)".into());
    }
    std::fs::create_dir_all(&cache).unwrap();
    let work = Scratch::new("debootstrap");
    let root = work.path().join("root");
    let mirror = std::env::var("IDBRIDGE_TEST_DEBIAN_MIRROR")
        .unwrap_or_else(|_| "http://deb.debian.org/debian".into());
    let started = Instant::now();
    let out = run(
        Command::new("debootstrap")
            .arg("--variant=minbase")
            .arg(format!("--include={DEBIAN_ROOT_PACKAGES}"))
            .arg("bookworm")
            .arg(&root)
            .arg(&mirror),
        Duration::from_secs(600),
    );
    if !out.status.success() {
        let log =
            std::fs::read_to_string(root.join("debootstrap/debootstrap.log")).unwrap_or_default();
        return Err(format!(
            "debootstrap from {mirror} failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            log.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
        ));
    }
    eprintln!(
        "made a Debian 12 root with debootstrap in {:?} (cached in {})",
        started.elapsed(),
        tarball.display()
    );
    let partial = cache.join(format!("debian-bookworm-root.tar.{}", std::process::id()));
    run_ok(
        Command::new("tar")
            .arg("-C")
            .arg(&root)
            .args(["--numeric-owner", "-cf"])
            .arg(&partial)
            .arg("."),
        Duration::from_secs(300),
    );
    std::fs::rename(&partial, &tarball).unwrap();
    Ok(tarball)
}

/// A fresh copy of the Debian root under `dir/root`, from the cached tarball.
pub(crate) fn unpack_debian_root(tarball: &Path, dir: &Path) -> PathBuf {
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    run_ok(
        Command::new("tar")
            .arg("-C")
            .arg(&root)
            .args(["--numeric-owner", "-xf"])
            .arg(tarball),
        Duration::from_secs(300),
    );
    root
}

/// The unit's settings as systemd reads them (the `[Service]` keys, each value
/// in order; later `Environment=` lines add to earlier ones).
pub(crate) fn unit_values(unit: &str, key: &str) -> Vec<String> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with(';'))
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().to_owned())
        .collect()
}

/// The single value of a unit key; panics when it is missing.
pub(crate) fn unit_value(unit: &str, key: &str) -> String {
    unit_values(unit, key)
        .pop()
        .unwrap_or_else(|| panic!("the unit has no {key}="))
}

/// `key: value` lines of a `/proc/PID/status` text.
pub(crate) fn proc_status_field(status: &str, field: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| panic!("no {field} in {status}"))
}

/// YAML (one or more documents) as JSON values, through Python's yaml module
/// (Debian's python3-yaml); `None` without it.
pub(crate) fn yaml_documents(text: &str) -> Option<Vec<serde_json::Value>> {
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import sys, json, yaml; json.dump([d for d in yaml.safe_load_all(sys.stdin) if d is not None], sys.stdout)",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().ok()?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("No module named 'yaml'") {
            return None;
        }
        panic!("not valid YAML: {err}");
    }
    Some(serde_json::from_slice(&out.stdout).unwrap())
}
