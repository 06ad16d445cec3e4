//! The deployment files under deploy/ agree with each other and with the broker:
//! every shipped config passes `idbridge doctor`; the Dockerfile's user, ports
//! and health check match its config; the Kubernetes base renders (kubectl
//! kustomize) with probes on the right paths and ports and no secret inline; the
//! compose stack's secrets, proxy and scrape targets line up, and HAProxy and
//! promtool accept their configs.

use crate::packaging::{port_of, shipped_settings};
use crate::packaging_support::*;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Every config deploy/ ships.
const SHIPPED: [&str; 4] = [
    "deploy/debian/idbridge.toml",
    "deploy/container/idbridge.toml",
    "deploy/compose/idbridge.toml",
    "deploy/kubernetes/base/idbridge.toml",
];

/// `(key, path)` for each `*_file = "PATH"` line of a TOML text.
fn file_keys(toml: &str) -> Vec<(String, String)> {
    toml.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.trim().ends_with("_file"))
        .map(|(k, v)| {
            let v = v.split('#').next().unwrap().trim().trim_matches('"');
            (k.trim().to_owned(), v.to_owned())
        })
        .collect()
}

#[test]
fn every_config_deploy_ships_passes_doctor() {
    for shipped in SHIPPED {
        let dir = Scratch::new("doctor");
        let mut text = std::fs::read_to_string(repo().join(shipped)).unwrap();
        // Each secret file it names, made in the scratch directory.
        for (i, (key, path)) in file_keys(&text).into_iter().enumerate() {
            let value = match key.as_str() {
                "master_key_file" => crate::harness::MASTER_KEY.to_owned(),
                "url_file" => format!("sqlite://{}", dir.path().join("db.sqlite").display()),
                "appsecret_file" => "0123456789abcdef0123456789abcdef".to_owned(),
                _ => "secret-0123456789abcdef0123456789".to_owned(),
            };
            let file = dir.path().join(format!("secret-{i}"));
            std::fs::write(&file, value).unwrap();
            text = text.replace(&format!("\"{path}\""), &format!("\"{}\"", file.display()));
        }
        text = text.replace(
            "sqlite:///var/lib/idbridge/idbridge.db",
            &format!("sqlite://{}", dir.path().join("db.sqlite").display()),
        );
        let config = dir.path().join("idbridge.toml");
        std::fs::write(&config, text).unwrap();
        let out = run(
            Command::new(binary())
                .arg("doctor")
                .arg("--config")
                .arg(&config),
            Duration::from_secs(60),
        );
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{shipped}: {printed}");
        assert!(!printed.contains("error "), "{shipped}: {printed}");
    }
}

/// The Dockerfile's instructions, continuation lines joined, comments dropped.
fn dockerfile() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo().join("deploy/Dockerfile")).unwrap();
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && pending.is_empty()) {
            continue;
        }
        if let Some(part) = line.strip_suffix('\\') {
            pending.push_str(part);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        let full = std::mem::take(&mut pending);
        if let Some((op, rest)) = full.split_once(' ') {
            out.push((op.to_uppercase(), rest.trim().to_owned()));
        }
    }
    out
}

#[test]
fn the_dockerfile_runs_as_non_root_with_a_health_check_on_its_configured_port() {
    let all = dockerfile();
    // Stages by name: `runtime-base` holds what both image targets share; the
    // default (last) target `runtime` adds the builder's binary, `runtime-prebuilt`
    // one from BINARY_IMAGE, at the same place.
    let mut stages: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for (op, arg) in all {
        if op == "FROM" {
            stages.push((arg, Vec::new()));
        } else if let Some((_, body)) = stages.last_mut() {
            body.push((op, arg));
        }
    }
    let stage = |from: &str| {
        stages
            .iter()
            .find(|(f, _)| f == from)
            .unwrap_or_else(|| panic!("no stage FROM {from}: {stages:?}"))
            .1
            .clone()
    };
    assert_eq!(stages.last().unwrap().0, "runtime-base AS runtime");
    let base = stage("${RUNTIME_IMAGE} AS runtime-base");
    let stage: Vec<(String, String)> = base
        .iter()
        .chain(stage("runtime-base AS runtime").iter())
        .cloned()
        .collect();
    let prebuilt = &stages
        .iter()
        .find(|(f, _)| f == "runtime-base AS runtime-prebuilt")
        .unwrap()
        .1;
    let one = |op: &str| {
        let found: Vec<&String> = stage
            .iter()
            .filter(|(o, _)| o == op)
            .map(|(_, v)| v)
            .collect();
        assert_eq!(found.len(), 1, "{op}: {found:?}");
        found[0].clone()
    };
    let exec_form = |v: &str| -> Vec<String> {
        serde_json::from_str(v).unwrap_or_else(|e| panic!("not exec form: {v}: {e}"))
    };
    // A numeric non-root user (Kubernetes' runAsNonRoot can check it).
    let user = one("USER");
    let (uid, gid) = user.split_once(':').unwrap();
    assert!(uid.parse::<u32>().unwrap() > 0 && gid.parse::<u32>().unwrap() > 0);
    // The binary and the config where the entrypoint and command look for them.
    let copies: Vec<Vec<&str>> = stage
        .iter()
        .filter(|(o, _)| o == "COPY")
        .map(|(_, v)| v.split_whitespace().collect())
        .collect();
    let dest_of = |src: &str| {
        copies
            .iter()
            .find(|c| c.contains(&src))
            .and_then(|c| c.last().copied())
            .unwrap_or_else(|| panic!("nothing copies {src}"))
            .to_owned()
    };
    let binary_path = dest_of("/out/idbridge");
    assert!(copies.iter().any(|c| c[0] == "--from=builder"));
    assert_eq!(
        prebuilt,
        &vec![(
            "COPY".to_owned(),
            format!("--from=prebuilt /out/idbridge {binary_path}")
        )]
    );
    let config_path = dest_of("deploy/container/idbridge.toml");
    let entrypoint = exec_form(&one("ENTRYPOINT"));
    assert_eq!(entrypoint[0], binary_path);
    let command = exec_form(&one("CMD"));
    assert_eq!(command, ["serve", "--config", config_path.as_str()]);

    let config = shipped_settings(&repo().join("deploy/container/idbridge.toml"));
    let http_port = port_of(&config.server.bind);
    let metrics_port = port_of(&config.telemetry.bind);
    assert!(config.telemetry.enabled);
    let exposed: BTreeSet<u16> = one("EXPOSE")
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(exposed, BTreeSet::from([http_port, metrics_port]));
    // HEALTHCHECK: `idbridge probe` (no shell, no curl) on the broker's /readyz.
    let health = one("HEALTHCHECK");
    let (_, cmd) = health.split_once("CMD ").unwrap();
    let probe = exec_form(cmd);
    assert_eq!(probe[0], binary_path);
    assert_eq!(probe[1], "probe");
    assert_eq!(
        probe.last().unwrap(),
        &format!("http://127.0.0.1:{http_port}/readyz")
    );
    // State: the volume is the SQLite file's directory; secrets come as files.
    let volume = exec_form(&one("VOLUME"));
    let db_dir = Path::new(config.storage.url.trim_start_matches("sqlite://"))
        .parent()
        .unwrap()
        .display()
        .to_string();
    assert_eq!(volume, [db_dir]);
    assert!(config
        .signing
        .master_key_file
        .unwrap()
        .starts_with("/run/secrets/"));
    assert_eq!(one("STOPSIGNAL"), "SIGTERM");
    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).unwrap();
    for never in ["target/", ".git/", "deploy/compose/secrets/"] {
        assert!(ignore.lines().any(|l| l == never), "{never}");
    }
}

fn kustomize(dir: &str) -> Vec<serde_json::Value> {
    let rendered = run_ok(
        Command::new("kubectl")
            .arg("kustomize")
            .arg(repo().join(dir)),
        Duration::from_secs(60),
    );
    yaml_documents(&rendered).unwrap()
}

fn of_kind<'a>(docs: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

#[test]
fn the_kubernetes_base_renders_with_probes_resources_and_no_inline_secrets() {
    if !have("kubectl", &["version", "--client"]) || yaml_documents("a: 1").is_none() {
        eprintln!("NOTE: kubectl or python3-yaml is not installed (apt-get install kubernetes-client python3-yaml); skipping the Kubernetes render");
        return;
    }
    let docs = kustomize("deploy/kubernetes/base");
    let kinds: BTreeSet<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        BTreeSet::from([
            "ConfigMap",
            "Deployment",
            "PodDisruptionBudget",
            "Service",
            "ServiceAccount"
        ])
    );
    // The ConfigMap is the TOML, by a content-hashed name the pods mount.
    let cm = of_kind(&docs, "ConfigMap")[0];
    let toml = cm["data"]["idbridge.toml"].as_str().unwrap();
    assert_eq!(
        toml,
        std::fs::read_to_string(repo().join("deploy/kubernetes/base/idbridge.toml")).unwrap()
    );
    let cm_name = cm["metadata"]["name"].as_str().unwrap();
    assert!(cm_name.starts_with("idbridge-config-"), "{cm_name}");
    let config = shipped_settings(&repo().join("deploy/kubernetes/base/idbridge.toml"));

    let deploy = of_kind(&docs, "Deployment")[0];
    let pod = &deploy["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let port_named = |name: &str| {
        c["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no container port {name}"))["containerPort"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(port_named("http"), u64::from(port_of(&config.server.bind)));
    assert_eq!(
        port_named("metrics"),
        u64::from(port_of(&config.telemetry.bind))
    );
    for (probe, path) in [
        ("livenessProbe", "/livez"),
        ("readinessProbe", "/readyz"),
        ("startupProbe", "/livez"),
    ] {
        assert_eq!(c[probe]["httpGet"]["path"], path, "{probe}");
        assert_eq!(c[probe]["httpGet"]["port"], "http", "{probe}");
    }
    assert!(c["readinessProbe"]["timeoutSeconds"].as_u64().unwrap() >= 2);
    assert!(c["resources"]["requests"]["cpu"].is_string());
    assert!(c["resources"]["requests"]["memory"].is_string());
    assert!(c["resources"]["limits"]["memory"].is_string());
    assert!(
        pod["terminationGracePeriodSeconds"].as_u64().unwrap()
            > config.server.shutdown_timeout_secs
    );
    // Non-root (the image's uid), read-only root, nothing to escalate with.
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 10001);
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(
        c["securityContext"]["capabilities"]["drop"],
        serde_json::json!(["ALL"])
    );
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(
        c["args"],
        serde_json::json!(["serve", "--config", "/etc/idbridge/idbridge.toml"])
    );

    // Mounts: the config where args read it; every secret file the TOML names
    // comes from a Secret item; no Secret object and no env value carries one.
    let volumes = pod["volumes"].as_array().unwrap();
    let mount_of = |volume: &str| {
        c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == volume)
            .unwrap_or_else(|| panic!("{volume} not mounted"))["mountPath"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let config_volume = volumes.iter().find(|v| v["configMap"].is_object()).unwrap();
    assert_eq!(config_volume["configMap"]["name"], cm_name);
    assert_eq!(
        mount_of(config_volume["name"].as_str().unwrap()),
        "/etc/idbridge"
    );
    let secrets_volume = volumes.iter().find(|v| v["projected"].is_object()).unwrap();
    let root = mount_of(secrets_volume["name"].as_str().unwrap());
    let mut provided = BTreeSet::new();
    for source in secrets_volume["projected"]["sources"].as_array().unwrap() {
        let secret = &source["secret"];
        assert!(secret["name"].as_str().unwrap().starts_with("idbridge-"));
        for item in secret["items"].as_array().unwrap() {
            provided.insert(format!("{root}/{}", item["path"].as_str().unwrap()));
        }
    }
    let wanted: BTreeSet<String> = file_keys(toml).into_iter().map(|(_, p)| p).collect();
    assert_eq!(wanted, provided);
    assert!(of_kind(&docs, "Secret").is_empty());
    for env in c["env"].as_array().into_iter().flatten() {
        let name = env["name"].as_str().unwrap().to_uppercase();
        assert!(
            !["KEY", "SECRET", "PASSWORD", "TOKEN", "URL"]
                .iter()
                .any(|w| name.contains(w))
                || env["value"].is_null(),
            "secret-like env {env}"
        );
    }
    for line in toml.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let key = line.split('=').next().unwrap().trim();
        assert!(
            !["master_key", "secret", "appsecret", "url", "tokens"].contains(&key),
            "inline secret in the ConfigMap: {line}"
        );
    }

    // The Service and the disruption budget select exactly these pods.
    let labels = &deploy["spec"]["template"]["metadata"]["labels"];
    let service = of_kind(&docs, "Service")[0];
    let pdb = of_kind(&docs, "PodDisruptionBudget")[0];
    for (k, v) in service["spec"]["selector"].as_object().unwrap() {
        assert_eq!(&labels[k], v);
    }
    for (k, v) in pdb["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&labels[k], v);
    }
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    let service_ports: Vec<&str> = service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["targetPort"].as_str().unwrap())
        .collect();
    assert_eq!(service_ports, ["http", "metrics"]);

    // The overlay adds a ServiceMonitor on the Service's metrics port.
    let with_monitor = kustomize("deploy/kubernetes/overlays/prometheus-operator");
    assert_eq!(with_monitor.len(), docs.len() + 1);
    let monitor = of_kind(&with_monitor, "ServiceMonitor")[0];
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    for (k, v) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(&service["metadata"]["labels"][k], v);
    }
}

#[test]
fn the_compose_stack_is_wired_to_its_configs_secrets_proxy_and_scraper() {
    let text = std::fs::read_to_string(repo().join("deploy/compose.yaml")).unwrap();
    let Some(docs) = yaml_documents(&text) else {
        eprintln!("NOTE: python3-yaml is not installed; skipping the compose check");
        return;
    };
    let compose = &docs[0];
    let services = compose["services"].as_object().unwrap();
    let names: BTreeSet<&str> = services.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        BTreeSet::from(["broker-a", "broker-b", "postgres", "prometheus", "proxy"])
    );
    let config = shipped_settings(&repo().join("deploy/compose/idbridge.toml"));
    let toml = std::fs::read_to_string(repo().join("deploy/compose/idbridge.toml")).unwrap();
    let declared = compose["secrets"].as_object().unwrap();
    for (name, secret) in declared {
        let file = secret["file"].as_str().unwrap();
        assert_eq!(file, format!("./compose/secrets/{name}"));
    }
    for broker in ["broker-a", "broker-b"] {
        let b = &services[broker];
        assert_eq!(b["image"], services["broker-a"]["image"]);
        assert_eq!(b["read_only"], true);
        assert!(b["volumes"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(
                "./compose/idbridge.toml:/etc/idbridge/idbridge.toml:ro"
            )));
        // Every file the config reads is a secret this service mounts.
        let mounted: BTreeSet<String> = b["secrets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| format!("/run/secrets/{}", s.as_str().unwrap()))
            .collect();
        let wanted: BTreeSet<String> = file_keys(&toml).into_iter().map(|(_, p)| p).collect();
        assert_eq!(wanted, mounted, "{broker}");
        for s in b["secrets"].as_array().unwrap() {
            assert!(declared.contains_key(s.as_str().unwrap()));
        }
        assert_eq!(b["depends_on"]["postgres"]["condition"], "service_healthy");
    }
    for broker in ["broker-a", "broker-b"] {
        assert_eq!(services[broker]["build"]["dockerfile"], "deploy/Dockerfile");
        assert_eq!(services[broker]["build"]["context"], "..");
    }
    // No secret value in any environment: only *_FILE pointers.
    for (name, service) in services {
        for (k, v) in service["environment"].as_object().into_iter().flatten() {
            let upper = k.to_uppercase();
            if ["PASSWORD", "SECRET", "KEY", "TOKEN"]
                .iter()
                .any(|w| upper.contains(w))
            {
                assert!(
                    upper.ends_with("_FILE") && v.as_str().unwrap().starts_with("/run/secrets/"),
                    "{name}: {k}={v}"
                );
            }
        }
    }

    // HAProxy balances both brokers on the port they listen on, checking /readyz.
    let http_port = port_of(&config.server.bind);
    let haproxy = std::fs::read_to_string(repo().join("deploy/haproxy/haproxy.cfg")).unwrap();
    for broker in ["broker-a", "broker-b"] {
        assert!(
            haproxy.contains(&format!("server {broker} {broker}:{http_port}")),
            "{broker}"
        );
    }
    assert!(haproxy.contains("option httpchk GET /readyz"));
    assert!(services["proxy"]["volumes"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!(
            "./haproxy/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro"
        )));
    if have("haproxy", &["-v"]) {
        let out = run(
            Command::new("haproxy")
                .args(["-c", "-f"])
                .arg(repo().join("deploy/haproxy/haproxy.cfg")),
            Duration::from_secs(30),
        );
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && said.contains("Configuration file is valid"),
            "{said}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        eprintln!("NOTE: haproxy is not installed; its config was not checked by haproxy -c");
    }

    // Prometheus scrapes both telemetry listeners, with the example alerts.
    let metrics_port = port_of(&config.telemetry.bind);
    let prom_text =
        std::fs::read_to_string(repo().join("deploy/prometheus/prometheus.yml")).unwrap();
    let prom = &yaml_documents(&prom_text).unwrap()[0];
    assert_eq!(
        prom["scrape_configs"][0]["static_configs"][0]["targets"],
        serde_json::json!([
            format!("broker-a:{metrics_port}"),
            format!("broker-b:{metrics_port}")
        ])
    );
    if have("promtool", &["--version"]) {
        run_ok(
            Command::new("promtool")
                .args(["check", "config"])
                .arg(repo().join("deploy/prometheus/prometheus.yml")),
            Duration::from_secs(30),
        );
    } else {
        eprintln!("NOTE: promtool is not installed; the compose scrape config was not checked");
    }

    // make-secrets writes each declared secret once, and keeps them on a second run.
    let dir = Scratch::new("compose-secrets");
    let script = dir.path().join("make-secrets");
    std::fs::copy(repo().join("deploy/compose/make-secrets"), &script).unwrap();
    let first = run_ok(&mut Command::new(&script), Duration::from_secs(30));
    assert_eq!(first.matches("written ").count(), declared.len(), "{first}");
    for name in declared.keys() {
        assert!(dir.path().join("secrets").join(name).is_file(), "{name}");
    }
    let read = |n: &str| std::fs::read_to_string(dir.path().join("secrets").join(n)).unwrap();
    assert!(idbridge_tokens::MasterKey::parse(read("master-key").trim()).is_ok());
    assert!(read("storage-url").contains(read("postgres-password").trim()));
    let second = run_ok(&mut Command::new(&script), Duration::from_secs(30));
    assert_eq!(second.matches("kept ").count(), declared.len(), "{second}");
}
