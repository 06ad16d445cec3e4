//! Containers, with Debian's podman (and runc: crun refuses this machine's hybrid
//! cgroups), as root, everything in a temporary storage: the image built from
//! deploy/Dockerfile over a local Debian 12 base (no registry is reachable) with
//! this run's binary, run as its non-root user with a passing HEALTHCHECK, state
//! kept in its volume across a restart, and exit 0 on `podman stop`; and the .deb
//! installed into a Debian root that boots real systemd in a container, where the
//! packaged unit starts with its sandbox, restarts after a crash and stops
//! cleanly. A missing tool is a NOTE and the test is skipped.

use crate::packaging_support::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One container test at a time: they share /var/lib/containers/cache (podman
/// writes its blob cache there whatever its storage root), which the last one
/// removes when no test had it before.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// podman with its storage, run and temporary directories, and its containers'
/// cgroups, all the test's own; dropped: containers, images and every directory
/// it made are removed.
struct Podman {
    dir: Scratch,
    cgroup_parent: String,
    had_cache: bool,
    _turn: std::sync::MutexGuard<'static, ()>,
}

/// This machine's limits: podman's defaults (nofile 1048576, nproc 32768) are
/// above what the container may set without CAP_SYS_RESOURCE.
const ULIMITS: [&str; 4] = [
    "--ulimit",
    "nofile=20000:20000",
    "--ulimit",
    "nproc=4096:4096",
];

impl Podman {
    /// `Err` says why podman cannot run containers here.
    fn new(label: &str) -> Result<Podman, String> {
        if !is_root() {
            return Err("not root".into());
        }
        if !have("podman", &["--version"]) || !have("runc", &["--version"]) {
            return Err("podman or runc is not installed (apt-get install podman runc)".into());
        }
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let had_cache = Path::new("/var/lib/containers").exists();
        let podman = Podman {
            dir: Scratch::new(label),
            cgroup_parent: format!(
                "/idbridge-test-{}-{}",
                std::process::id(),
                idbridge_tokens::random_alnum(6).unwrap()
            ),
            had_cache,
            _turn: turn,
        };
        let out = run(podman.cmd().arg("info"), Duration::from_secs(60));
        if !out.status.success() {
            return Err(format!(
                "podman info failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(podman)
    }

    fn cmd(&self) -> Command {
        let d = self.dir.path();
        let mut cmd = Command::new("podman");
        cmd.arg("--root")
            .arg(d.join("storage"))
            .arg("--runroot")
            .arg(d.join("run"))
            .arg("--tmpdir")
            .arg(d.join("tmp"))
            .args([
                "--storage-driver",
                "overlay",
                "--runtime",
                "runc",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "none",
            ]);
        cmd
    }

    fn ok(&self, args: &[&str], within: Duration) -> String {
        run_ok(self.cmd().args(args), within)
    }

    /// `podman import` of a directory tree as image `name`, with `changes`.
    fn import(&self, tree: &Path, name: &str, changes: &[&str]) {
        let tar = self.dir.path().join("import.tar");
        run_ok(
            Command::new("tar")
                .arg("-C")
                .arg(tree)
                .args(["--numeric-owner", "-cf"])
                .arg(&tar)
                .arg("."),
            Duration::from_secs(300),
        );
        let mut cmd = self.cmd();
        cmd.arg("import");
        for c in changes {
            cmd.args(["--change", c]);
        }
        run_ok(cmd.arg(&tar).arg(name), Duration::from_secs(300));
        std::fs::remove_file(tar).unwrap();
    }

    /// `podman run -d` with the machine's limits, no network, the test's cgroup.
    fn start(&self, args: &[&str]) -> String {
        let mut cmd = self.cmd();
        cmd.args(["run", "-d", "--network", "none", "--cgroup-parent"])
            .arg(&self.cgroup_parent)
            .args(ULIMITS)
            .args(args);
        run_ok(&mut cmd, Duration::from_secs(120)).trim().to_owned()
    }

    /// `podman exec`: its exit status and stdout.
    fn exec(&self, container: &str, args: &[&str]) -> (bool, String) {
        let out = run(
            self.cmd().arg("exec").arg(container).args(args),
            Duration::from_secs(60),
        );
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    /// Poll `check` every 200 ms until it holds, for at most `within`.
    fn wait(&self, within: Duration, what: &str, mut check: impl FnMut() -> bool) {
        let started = Instant::now();
        while !check() {
            assert!(started.elapsed() < within, "{what} within {within:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = run(
            self.cmd().args(["rm", "--all", "--force", "--time", "0"]),
            Duration::from_secs(120),
        );
        // Not `podman system reset`: it would also delete the machine's podman
        // network definitions.
        for args in [
            &["volume", "rm", "--all", "--force"][..],
            &["rmi", "--all", "--force"][..],
        ] {
            let _ = run(self.cmd().args(args), Duration::from_secs(120));
        }
        // Nothing of the storage may stay mounted when its directory is removed.
        let dir = self.dir.path().display().to_string();
        if let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") {
            let mut inside: Vec<&str> = mounts
                .lines()
                .filter_map(|l| l.split_whitespace().nth(1))
                .filter(|m| m.starts_with(&dir))
                .collect();
            inside.sort_by_key(|m| std::cmp::Reverse(m.len()));
            for m in inside {
                let _ = run(
                    Command::new("umount").args(["-l", m]),
                    Duration::from_secs(30),
                );
            }
        }
        // The containers' cgroups (podman leaves the parent directories).
        if let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") {
            for c in controllers.flatten() {
                remove_empty_dirs(&c.path().join(self.cgroup_parent.trim_start_matches('/')));
            }
        }
        if !self.had_cache {
            let _ = std::fs::remove_dir_all("/var/lib/containers");
        }
    }
}

fn remove_empty_dirs(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_empty_dirs(&e.path());
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
}

fn setup(label: &str) -> Option<(Podman, PathBuf)> {
    let podman = match Podman::new(label) {
        Ok(p) => p,
        Err(why) => {
            eprintln!("NOTE: podman cannot run containers here ({why}); skipping {label}");
            return None;
        }
    };
    match debian_root_tarball() {
        Ok(t) => Some((podman, t)),
        Err(why) => {
            eprintln!("NOTE: no Debian base for the containers ({why}); skipping {label}");
            None
        }
    }
}

#[test]
fn the_image_builds_and_serves_as_its_user_with_a_passing_health_check() {
    let Some((podman, tarball)) = setup("image") else {
        return;
    };
    let started = Instant::now();
    // The base images: the Debian root as bookworm-slim stands in for Docker
    // Hub's, and an image holding only this run's binary at /out/idbridge.
    let work = podman.dir.path().join("work");
    let base = unpack_debian_root(&tarball, &work);
    podman.import(&base, "localhost/idbridge-test/debian:bookworm", &[]);
    std::fs::remove_dir_all(&work).unwrap();
    let bin_tree = podman.dir.path().join("binary");
    std::fs::create_dir_all(bin_tree.join("out")).unwrap();
    std::fs::copy(binary(), bin_tree.join("out/idbridge")).unwrap();
    podman.import(&bin_tree, "localhost/idbridge-test/binary:latest", &[]);
    let build = run(
        podman
            .cmd()
            .current_dir(repo())
            .args(["build", "--format", "docker", "--network", "host"])
            .arg("--cgroup-parent")
            .arg(&podman.cgroup_parent)
            .args(ULIMITS)
            .args([
                "--build-arg",
                "RUST_IMAGE=localhost/idbridge-test/debian:bookworm",
                "--build-arg",
                "RUNTIME_IMAGE=localhost/idbridge-test/debian:bookworm",
                "--build-arg",
                "BINARY_IMAGE=localhost/idbridge-test/binary:latest",
                "--target",
                "runtime-prebuilt",
                "-f",
                "deploy/Dockerfile",
                "-t",
                "localhost/idbridge-test/idbridge:test",
                ".",
            ]),
        Duration::from_secs(600),
    );
    let build_log = String::from_utf8_lossy(&build.stdout);
    assert!(
        build.status.success(),
        "podman build: {build_log}{}",
        String::from_utf8_lossy(&build.stderr)
    );
    // The builder stage was not run (the binary came from BINARY_IMAGE).
    assert!(!build_log.contains("cargo build"), "{build_log}");
    eprintln!(
        "image built in {:?} (base import included)",
        started.elapsed()
    );

    let image = "localhost/idbridge-test/idbridge:test";
    let inspect = |format: &str| {
        podman
            .ok(
                &["image", "inspect", "--format", format, image],
                Duration::from_secs(30),
            )
            .trim()
            .to_owned()
    };
    assert_eq!(inspect("{{.Config.User}}"), "10001:10001");
    assert_eq!(
        inspect("{{json .Config.Entrypoint}}"),
        r#"["/usr/local/bin/idbridge","--log-format","json"]"#
    );
    assert!(inspect("{{json .Config.Healthcheck}}").contains("/readyz"));

    let key = podman.dir.path().join("master-key");
    std::fs::write(&key, format!("{}\n", crate::harness::MASTER_KEY)).unwrap();
    let mount = format!("{}:/run/secrets/master-key:ro", key.display());
    let serve = |name: &str| {
        podman.start(&[
            "--name",
            name,
            "-v",
            &mount,
            "-v",
            "idbridge-test-state:/var/lib/idbridge",
            image,
        ])
    };
    let container = serve("idbridge-a");
    let probe = |c: &str, path: &str| {
        podman.exec(
            c,
            &[
                "/usr/local/bin/idbridge",
                "probe",
                &format!("http://127.0.0.1:8080{path}"),
            ],
        )
    };
    podman.wait(Duration::from_secs(30), "/readyz answers 200", || {
        probe(&container, "/readyz").0
    });
    // The HEALTHCHECK itself, as the engine runs it.
    let health = run(
        podman.cmd().args(["healthcheck", "run", &container]),
        Duration::from_secs(30),
    );
    assert!(
        health.status.success(),
        "healthcheck: {}",
        String::from_utf8_lossy(&health.stdout)
    );
    assert_eq!(
        probe(&container, "/livez").1.trim(),
        "HTTP/1.1 200 OK",
        "livez"
    );
    // Its process is the image's user, not root; its database is in the volume.
    let (_, status) = podman.exec(&container, &["cat", "/proc/1/status"]);
    assert!(
        proc_status_field(&status, "Uid").starts_with("10001\t"),
        "{status}"
    );
    let keys = |c: &str| {
        podman.exec(
            c,
            &[
                "/usr/local/bin/idbridge",
                "keys",
                "list",
                "--config",
                "/etc/idbridge/idbridge.toml",
            ],
        )
    };
    let (listed, before) = keys(&container);
    assert!(listed && before.contains("signing"), "{before}");

    // podman stop: SIGTERM, then exit 0 after "shutdown complete".
    podman.ok(
        &["stop", "--time", "15", &container],
        Duration::from_secs(30),
    );
    let code = podman.ok(
        &["inspect", "--format", "{{.State.ExitCode}}", &container],
        Duration::from_secs(30),
    );
    let logs = String::from_utf8_lossy(
        &run(
            podman.cmd().args(["logs", &container]),
            Duration::from_secs(30),
        )
        .stderr,
    )
    .into_owned();
    assert_eq!(code.trim(), "0", "{logs}");
    assert!(logs.contains("shutdown complete"), "{logs}");

    // A new container on the same volume has the same signing keys.
    let again = serve("idbridge-b");
    podman.wait(Duration::from_secs(30), "restarted /readyz", || {
        probe(&again, "/readyz").0
    });
    assert_eq!(keys(&again).1, before);
    eprintln!(
        "image size: {}",
        inspect("{{.Size}}").parse::<u64>().unwrap_or(0) / 1_000_000
    );
}

#[test]
fn the_packaged_unit_runs_under_real_systemd_in_a_container() {
    let Some((podman, tarball)) = setup("systemd") else {
        return;
    };
    // The .deb installed into a Debian root with systemd, booted as a container.
    let work = podman.dir.path().join("work");
    let root = unpack_debian_root(&tarball, &work);
    let deb = build_deb(&work);
    run_ok(
        Command::new("dpkg")
            .arg(format!("--root={}", root.display()))
            .arg("-i")
            .arg(&deb),
        Duration::from_secs(120),
    );
    podman.import(
        &root,
        "localhost/idbridge-test/systemd:latest",
        &[r#"CMD ["/lib/systemd/systemd"]"#],
    );
    std::fs::remove_dir_all(&work).unwrap();
    let c = podman.start(&[
        "--systemd=always",
        "--name",
        "idbridge-systemd",
        "localhost/idbridge-test/systemd:latest",
    ]);
    let systemctl = |args: &[&str]| {
        let mut all = vec!["systemctl"];
        all.extend_from_slice(args);
        podman.exec(&c, &all)
    };
    // postinst enabled the unit: systemd starts it at boot.
    podman.wait(Duration::from_secs(60), "idbridge.service active", || {
        systemctl(&["is-active", "idbridge.service"]).1.trim() == "active"
    });
    let probe = || {
        podman
            .exec(
                &c,
                &["/usr/bin/idbridge", "probe", "http://127.0.0.1:8080/readyz"],
            )
            .0
    };
    podman.wait(Duration::from_secs(30), "/readyz answers 200", probe);
    let show = |prop: &str| {
        systemctl(&["show", "idbridge.service", "--value", "-p", prop])
            .1
            .trim()
            .to_owned()
    };
    let pid = show("MainPID");
    let (_, status) = podman.exec(&c, &["cat", &format!("/proc/{pid}/status")]);
    let (_, passwd) = podman.exec(&c, &["getent", "passwd", "idbridge"]);
    let uid = passwd.split(':').nth(2).unwrap().to_owned();
    // The sandbox as the kernel sees it: its user, no capabilities, no new
    // privileges, a seccomp filter (SystemCallFilter=).
    assert!(
        proc_status_field(&status, "Uid").starts_with(&format!("{uid}\t")),
        "{status}"
    );
    assert_eq!(proc_status_field(&status, "CapEff"), "0000000000000000");
    assert_eq!(proc_status_field(&status, "CapBnd"), "0000000000000000");
    assert_eq!(proc_status_field(&status, "NoNewPrivs"), "1");
    assert_eq!(proc_status_field(&status, "Seccomp"), "2");
    // The master key came as a credential, readable by the service only.
    let (has_cred, _) = podman.exec(
        &c,
        &["test", "-s", "/run/credentials/idbridge.service/master.key"],
    );
    assert!(has_cred);
    let (_, owner) = podman.exec(
        &c,
        &["stat", "-c", "%U %a", "/var/lib/idbridge/idbridge.db"],
    );
    assert_eq!(owner.trim(), "idbridge 600");

    // A crash (SIGKILL): Restart=on-failure brings it back with a new process.
    let (killed, _) = systemctl(&[
        "kill",
        "--kill-whom=main",
        "--signal=SIGKILL",
        "idbridge.service",
    ]);
    assert!(killed);
    podman.wait(Duration::from_secs(30), "restarted after SIGKILL", || {
        let now = show("MainPID");
        now != pid && now != "0" && probe()
    });
    assert_eq!(show("NRestarts"), "1");

    // systemctl stop: SIGTERM, the broker exits 0 ("shutdown complete").
    let (stopped, _) = systemctl(&["stop", "idbridge.service"]);
    assert!(stopped);
    assert_eq!(show("ExecMainStatus"), "0");
    assert_eq!(show("Result"), "success");
    let (_, journal) = podman.exec(
        &c,
        &[
            "journalctl",
            "-u",
            "idbridge.service",
            "--no-pager",
            "-o",
            "cat",
        ],
    );
    assert!(journal.contains("shutdown complete"), "{journal}");
}
