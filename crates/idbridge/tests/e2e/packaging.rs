//! The .deb and its systemd unit: built from this run's binary, checked with
//! dpkg-deb and systemd-analyze, installed with dpkg into a Debian 12 root made
//! with debootstrap, and started there the way the unit starts it (its user, its
//! paths, its environment and credential), answering /readyz and exiting 0 on
//! SIGTERM; then purged. A missing tool is a NOTE and the test is skipped.

use crate::cli::free_port;
use crate::harness::*;
use crate::packaging_support::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A shipped config through the broker's own loader (secrets it cannot read are
/// errors the callers here do not care about: they read the other settings).
pub(crate) fn shipped_settings(path: &Path) -> idbridge_server::Settings {
    idbridge_server::config::load_with_problems(Some(path), &[])
        .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()))
        .settings
}

pub(crate) fn port_of(bind: &str) -> u16 {
    bind.rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn the_deb_holds_the_binary_unit_config_and_maintainer_scripts() {
    if !have("dpkg-deb", &["--version"]) {
        eprintln!("NOTE: dpkg-deb is not installed; skipping the .deb contents check");
        return;
    }
    let dir = Scratch::new("deb");
    let deb = build_deb(dir.path());
    let info = run_ok(
        Command::new("dpkg-deb").arg("--info").arg(&deb),
        Duration::from_secs(30),
    );
    assert!(info.contains(" Package: idbridge\n"), "{info}");
    assert!(
        info.contains(&format!(" Version: {}\n", env!("CARGO_PKG_VERSION"))),
        "{info}"
    );
    let depends = info
        .lines()
        .find_map(|l| l.trim().strip_prefix("Depends: "))
        .unwrap_or_else(|| panic!("no Depends: {info}"));
    for dep in ["libc6", "libpq5", "libsqlite3-0", "passwd"] {
        assert!(depends.contains(dep), "Depends: {depends}");
    }

    let contents = run_ok(
        Command::new("dpkg-deb").arg("--contents").arg(&deb),
        Duration::from_secs(30),
    );
    let entry = |path: &str| {
        contents
            .lines()
            .find(|l| l.ends_with(&format!(" ./{path}")))
            .unwrap_or_else(|| panic!("{path} is not in the package:\n{contents}"))
            .to_owned()
    };
    assert!(entry("usr/bin/idbridge").starts_with("-rwxr-xr-x root/root"));
    for file in [
        "lib/systemd/system/idbridge.service",
        "etc/idbridge/idbridge.toml",
        "usr/share/doc/idbridge/examples/idbridge.example.toml",
        "usr/share/doc/idbridge/operations.md",
        "usr/share/doc/idbridge/deploying.md",
        "usr/share/doc/idbridge/copyright",
    ] {
        assert!(entry(file).starts_with("-rw-r--r-- root/root"), "{file}");
    }
    // No secret is shipped: the master key is made on the machine at install.
    assert!(!contents.contains("master.key"), "{contents}");

    let control = dir.path().join("control");
    run_ok(
        Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control),
        Duration::from_secs(30),
    );
    assert_eq!(
        std::fs::read_to_string(control.join("conffiles")).unwrap(),
        "/etc/idbridge/idbridge.toml\n"
    );
    for script in ["postinst", "prerm", "postrm"] {
        let path = control.join(script);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755, "{script}");
        run_ok(
            Command::new("sh").arg("-n").arg(&path),
            Duration::from_secs(10),
        );
    }

    // The packaged binary is this build's and runs.
    let files = dir.path().join("files");
    run_ok(
        Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&files),
        Duration::from_secs(60),
    );
    let version = run_ok(
        Command::new(files.join("usr/bin/idbridge")).arg("--version"),
        Duration::from_secs(10),
    );
    assert_eq!(
        version.trim(),
        format!("idbridge {}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        std::fs::metadata(files.join("usr/bin/idbridge"))
            .unwrap()
            .len(),
        std::fs::metadata(binary()).unwrap().len()
    );
}

#[test]
fn the_unit_passes_systemd_analyze_verify_and_its_security_review() {
    if !have("systemd-analyze", &["--version"]) || !have("dpkg-deb", &["--version"]) {
        eprintln!("NOTE: systemd-analyze or dpkg-deb is not installed (apt-get install systemd dpkg); skipping the unit check");
        return;
    }
    let dir = Scratch::new("unit");
    let deb = build_deb(dir.path());
    // The package unpacked into a throwaway root: verify resolves ExecStart there.
    let root = dir.path().join("root");
    run_ok(
        Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root),
        Duration::from_secs(60),
    );
    let verify = |unit: &str| {
        run(
            Command::new("systemd-analyze")
                .args(["verify", "--recursive-errors=no", "--man=no"])
                .arg(format!("--root={}", root.display()))
                .arg(unit),
            Duration::from_secs(60),
        )
    };
    let out = verify("idbridge.service");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {stderr}"
    );
    // The check can fail: the same unit with a misspelt key and a missing binary.
    let unit_dir = root.join("lib/systemd/system");
    let unit = std::fs::read_to_string(unit_dir.join("idbridge.service")).unwrap();
    std::fs::write(
        unit_dir.join("idbridge-broken.service"),
        unit.replace("ProtectHome=yes", "ProtectHomes=yes")
            .replace("/usr/bin/idbridge ", "/usr/bin/idbridge-missing "),
    )
    .unwrap();
    let out = verify("idbridge-broken.service");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a broken unit passed verify");
    assert!(
        stderr.contains("ProtectHomes") && stderr.contains("idbridge-missing"),
        "{stderr}"
    );

    // systemd's own exposure score, offline: 0 is a locked-down unit, 10 none.
    let out = run(
        Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--no-pager"])
            .arg(format!("--root={}", root.display()))
            .arg("idbridge.service"),
        Duration::from_secs(60),
    );
    let report = String::from_utf8_lossy(&out.stdout);
    let score: f64 = report
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for idbridge.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no exposure level in: {report}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    eprintln!("systemd-analyze security: idbridge.service exposure {score}");
    assert!(score <= 2.0, "exposure {score}:\n{report}");

    // What the unit promises matches the packaged config and the broker.
    let config = shipped_settings(&repo().join("deploy/debian/idbridge.toml"));
    let stop: u64 = unit_value(&unit, "TimeoutStopSec")
        .trim_end_matches('s')
        .parse()
        .unwrap();
    assert!(stop > config.server.shutdown_timeout_secs);
    assert_eq!(unit_value(&unit, "Restart"), "on-failure");
    assert_eq!(unit_value(&unit, "StateDirectory"), "idbridge");
    assert!(
        unit_values(&unit, "ExecReload").is_empty(),
        "the broker has no reload"
    );
    assert!(unit_value(&unit, "ExecStart").ends_with("--config /etc/idbridge/idbridge.toml"));
    assert_eq!(
        unit_value(&unit, "LoadCredential"),
        format!("master.key:{}", config.signing.master_key_file.unwrap())
    );
    assert!(unit_values(&unit, "Environment")
        .contains(&"IDBRIDGE__SIGNING__MASTER_KEY_FILE=%d/master.key".to_owned()));
    assert!(config
        .storage
        .url
        .starts_with("sqlite:///var/lib/idbridge/"));
}

/// The broker started the way the installed unit starts it, in `root` (a chroot):
/// its User and Group (setpriv, no new privileges, no capabilities), UMask,
/// WorkingDirectory, a clean environment with the unit's Environment= lines and
/// its LoadCredential= files in /run/credentials/idbridge.service (as systemd
/// makes them: owned by the user, read-only), and ExecStart. `extra` are the
/// test's own environment overrides (ports).
fn start_like_the_unit(root: &Path, extra: &[(&str, String)], log: &Path) -> std::process::Child {
    let unit = std::fs::read_to_string(root.join("lib/systemd/system/idbridge.service")).unwrap();
    let user = unit_value(&unit, "User");
    let group = unit_value(&unit, "Group");
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    let uid: u32 = passwd
        .lines()
        .find(|l| l.starts_with(&format!("{user}:")))
        .and_then(|l| l.split(':').nth(2))
        .and_then(|u| u.parse().ok())
        .unwrap_or_else(|| panic!("no user {user} in the root's /etc/passwd"));
    let creds_rel = "run/credentials/idbridge.service";
    let creds = root.join(creds_rel);
    std::fs::create_dir_all(&creds).unwrap();
    for cred in unit_values(&unit, "LoadCredential") {
        let (name, source) = cred.split_once(':').unwrap();
        let target = creds.join(name);
        std::fs::copy(root.join(source.trim_start_matches('/')), &target).unwrap();
        std::os::unix::fs::chown(&target, Some(uid), None).unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o400)).unwrap();
    }
    std::os::unix::fs::chown(&creds, Some(uid), None).unwrap();
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o500)).unwrap();

    let mut cmd = Command::new("chroot");
    cmd.env_clear()
        // systemd's PATH for services.
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("CREDENTIALS_DIRECTORY", format!("/{creds_rel}"));
    for line in unit_values(&unit, "Environment") {
        let (k, v) = line.split_once('=').unwrap();
        cmd.env(k, v.replace("%d", &format!("/{creds_rel}")));
    }
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let script = format!(
        "umask {} && cd {} && exec setpriv --reuid={user} --regid={group} --init-groups \
         --no-new-privs --bounding-set=-all --inh-caps=-all -- {}",
        unit_value(&unit, "UMask"),
        unit_value(&unit, "WorkingDirectory"),
        unit_value(&unit, "ExecStart"),
    );
    cmd.arg(root)
        .args(["/bin/sh", "-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(log).unwrap()))
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deb_installs_into_a_debian_root_and_serves_as_its_unit_would() {
    if !have("dpkg", &["--version"]) || !have("setpriv", &["--version"]) {
        eprintln!("NOTE: dpkg or setpriv is missing; skipping the .deb install test");
        return;
    }
    let tarball = match tokio::task::spawn_blocking(debian_root_tarball)
        .await
        .unwrap()
    {
        Ok(t) => t,
        Err(why) => {
            eprintln!(
                "NOTE: no Debian root to install the .deb into ({why}); skipping the install test"
            );
            return;
        }
    };
    let dir = Scratch::new("install");
    let root = unpack_debian_root(&tarball, dir.path());
    let deb = build_deb(dir.path());
    // dpkg with the root's own database; the maintainer scripts run chrooted in it.
    let installed = run_ok(
        Command::new("dpkg")
            .arg(format!("--root={}", root.display()))
            .arg("-i")
            .arg(&deb),
        Duration::from_secs(120),
    );
    assert!(installed.contains("Setting up idbridge"), "{installed}");
    let status = run_ok(
        Command::new("dpkg")
            .arg(format!("--root={}", root.display()))
            .args(["-s", "idbridge"]),
        Duration::from_secs(30),
    );
    assert!(status.contains("Status: install ok installed"), "{status}");
    assert!(status.contains("/etc/idbridge/idbridge.toml"), "{status}");

    // postinst: the system user, its state directory, a master key, the unit enabled.
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    let line = passwd
        .lines()
        .find(|l| l.starts_with("idbridge:"))
        .unwrap_or_else(|| panic!("no idbridge user: {passwd}"));
    let fields: Vec<&str> = line.split(':').collect();
    let uid: u32 = fields[2].parse().unwrap();
    let gid: u32 = fields[3].parse().unwrap();
    assert!(uid < 1000, "a system user: {line}");
    assert_eq!(
        (fields[5], fields[6]),
        ("/var/lib/idbridge", "/usr/sbin/nologin")
    );
    let meta = |p: &str| std::fs::metadata(root.join(p)).unwrap();
    let state = meta("var/lib/idbridge");
    assert_eq!((state.uid(), state.mode() & 0o7777), (uid, 0o750));
    let etc = meta("etc/idbridge");
    assert_eq!((etc.uid(), etc.gid(), etc.mode() & 0o7777), (0, gid, 0o750));
    let key = meta("etc/idbridge/master.key");
    assert_eq!((key.uid(), key.gid(), key.mode() & 0o777), (0, gid, 0o640));
    let key_text = std::fs::read_to_string(root.join("etc/idbridge/master.key")).unwrap();
    assert!(
        idbridge_tokens::MasterKey::parse(key_text.trim()).is_ok(),
        "{key_text:?}"
    );
    assert!(root
        .join("etc/systemd/system/multi-user.target.wants/idbridge.service")
        .is_symlink());

    // Start it as the unit would, with the packaged config (only the ports moved).
    let port = free_port();
    let metrics_port = free_port();
    let log = dir.path().join("serve.log");
    let child = start_like_the_unit(
        &root,
        &[
            ("IDBRIDGE__SERVER__BIND", format!("127.0.0.1:{port}")),
            (
                "IDBRIDGE__TELEMETRY__BIND",
                format!("127.0.0.1:{metrics_port}"),
            ),
        ],
        &log,
    );
    let mut guard = crate::cli::Killed(child);
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    let ready = loop {
        if let Ok(r) = http().get(format!("{base}/readyz")).send().await {
            break r;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no answer: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "ready", "{body}");
    let metrics = http()
        .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("idbridge_build_info{"), "{metrics}");

    // The process: the idbridge user, no privileges; its database is its own.
    let status = std::fs::read_to_string(format!("/proc/{}/status", guard.0.id())).unwrap();
    assert_eq!(proc_status_field(&status, "Name"), "idbridge");
    assert!(proc_status_field(&status, "Uid").starts_with(&format!("{uid}\t")));
    assert_eq!(proc_status_field(&status, "NoNewPrivs"), "1");
    assert_eq!(proc_status_field(&status, "CapBnd"), "0000000000000000");
    let db = meta("var/lib/idbridge/idbridge.db");
    assert_eq!((db.uid(), db.mode() & 0o777), (uid, 0o600));

    // SIGTERM: exit 0 within shutdown_timeout_secs.
    let signalled = Instant::now();
    run_ok(
        Command::new("kill").args(["-TERM", &guard.0.id().to_string()]),
        Duration::from_secs(5),
    );
    let code = loop {
        if let Some(code) = guard.0.try_wait().unwrap() {
            break code;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(13),
            "still running"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(code.success(), "exit {code:?}: {log_text}");
    assert!(log_text.contains("shutdown complete"), "{log_text}");

    // Installed again (as an upgrade runs): the operator's edited config, the
    // master key and the database stay as they were.
    let conffile = root.join("etc/idbridge/idbridge.toml");
    let edited = format!(
        "{}\n# edited by the operator\n",
        std::fs::read_to_string(&conffile).unwrap()
    );
    std::fs::write(&conffile, &edited).unwrap();
    let db_before = std::fs::read(root.join("var/lib/idbridge/idbridge.db")).unwrap();
    let again = run_ok(
        Command::new("dpkg")
            .arg(format!("--root={}", root.display()))
            .arg("-i")
            .arg(&deb),
        Duration::from_secs(120),
    );
    assert!(!again.contains("wrote a new master key"), "{again}");
    assert_eq!(std::fs::read_to_string(&conffile).unwrap(), edited);
    assert_eq!(
        std::fs::read_to_string(root.join("etc/idbridge/master.key")).unwrap(),
        key_text
    );
    assert_eq!(
        std::fs::read(root.join("var/lib/idbridge/idbridge.db")).unwrap(),
        db_before
    );

    // Purge: the binary, unit, config, key and state go (the user stays, as Debian keeps users).
    let purged = run_ok(
        Command::new("dpkg")
            .arg(format!("--root={}", root.display()))
            .args(["--purge", "idbridge"]),
        Duration::from_secs(60),
    );
    assert!(
        purged.contains("Purging configuration files for idbridge"),
        "{purged}"
    );
    for gone in [
        "usr/bin/idbridge",
        "lib/systemd/system/idbridge.service",
        "etc/idbridge",
        "var/lib/idbridge",
        "etc/systemd/system/multi-user.target.wants/idbridge.service",
    ] {
        assert!(!root.join(gone).exists(), "{gone} is left after purge");
    }
}
