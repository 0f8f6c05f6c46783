//! `deploy/kubernetes/`, `deploy/systemd/`: the manifests agree with the files they mirror and
//! with each other. The PrometheusRule carries exactly `deploy/prometheus/alerts.yaml`; the
//! policy ConfigMaps carry exactly `config/policies/` and `config/categories/`; the Kubernetes
//! `egressd.yaml`, laid out as the Deployment mounts it, passes `egressd check --strict` and sets
//! every key the shipped `config/egressd.yaml` sets; probes, grace periods, Services, the
//! ServiceMonitor and the NetworkPolicy fit together. Schema validation of the built-in kinds is
//! `kubernetes-validate` in `.ci/run`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde::Deserialize;
use serde_yaml::Value;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Every document of a manifest file.
fn docs(rel: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(&read(rel))
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{rel}: {e}")))
        .collect()
}

fn one(rel: &str, kind: &str, name: &str) -> Value {
    docs(rel)
        .into_iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{rel}: no {kind} {name}"))
}

fn configmap_data(doc: &Value) -> BTreeMap<String, String> {
    serde_yaml::from_value(doc["data"].clone()).unwrap()
}

fn folder_files(rel: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(repo(rel)).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            out.insert(name, std::fs::read_to_string(&path).unwrap());
        }
    }
    out
}

fn secs(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("not a number of seconds: {v:?}"))
}

fn k8s_egressd_yaml() -> String {
    let cm = one(
        "deploy/kubernetes/configmap.yaml",
        "ConfigMap",
        "egressd-config",
    );
    configmap_data(&cm).remove("egressd.yaml").unwrap()
}

#[test]
fn prometheus_rule_carries_exactly_the_alert_rules() {
    let alerts: Value = serde_yaml::from_str(&read("deploy/prometheus/alerts.yaml")).unwrap();
    let rule = one(
        "deploy/kubernetes/prometheusrule.yaml",
        "PrometheusRule",
        "egressd",
    );
    assert_eq!(
        rule["spec"]["groups"], alerts["groups"],
        "prometheusrule.yaml is stale: python3 deploy/kubernetes/generate.py"
    );
}

#[test]
fn policy_configmaps_carry_exactly_the_shipped_folders() {
    let rel = "deploy/kubernetes/configmap-policies.yaml";
    for (name, folder) in [
        ("egressd-policies", "config/policies"),
        ("egressd-categories", "config/categories"),
    ] {
        assert_eq!(
            configmap_data(&one(rel, "ConfigMap", name)),
            folder_files(folder),
            "{name} is stale: python3 deploy/kubernetes/generate.py"
        );
    }
}

/// The pod's file tree: the config ConfigMap at conf/, the policy ConfigMaps beside it.
#[test]
fn kubernetes_config_as_mounted_passes_check_strict() {
    let dir = tempfile::tempdir().unwrap();
    let rel = "deploy/kubernetes/configmap-policies.yaml";
    let mounts = [
        (
            "conf",
            one(
                "deploy/kubernetes/configmap.yaml",
                "ConfigMap",
                "egressd-config",
            ),
        ),
        ("policies", one(rel, "ConfigMap", "egressd-policies")),
        ("categories", one(rel, "ConfigMap", "egressd-categories")),
    ];
    for (sub, cm) in &mounts {
        std::fs::create_dir(dir.path().join(sub)).unwrap();
        for (key, text) in configmap_data(cm) {
            std::fs::write(dir.path().join(sub).join(key), text).unwrap();
        }
    }
    let config = dir.path().join("conf/egressd.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_egressd"))
        .args(["check", "--strict", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "egressd check --strict on the Kubernetes config:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The Deployment's volume mounts are this layout.
    let deploy = one("deploy/kubernetes/deployment.yaml", "Deployment", "egressd");
    let c = &deploy["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<String> = serde_yaml::from_value(c["args"].clone()).unwrap();
    assert_eq!(args, ["run", "--config", "/etc/egressd/conf/egressd.yaml"]);
    let mounted: Vec<&str> = c["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|m| m["mountPath"].as_str().unwrap())
        .collect();
    for (sub, _) in &mounts {
        assert!(
            mounted.contains(&format!("/etc/egressd/{sub}").as_str()),
            "{sub} not mounted"
        );
    }
}

/// The settings (sections and their keys, not data such as `identity.sources` entries) a
/// configuration file sets.
fn setting_keys(cfg: &Value) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for (section, v) in cfg.as_mapping().unwrap() {
        let section = section.as_str().unwrap();
        keys.insert(section.to_owned());
        if matches!(section, "listen" | "identity" | "egress" | "tunnel" | "dns")
            || matches!(
                section,
                "forwarding" | "timeouts" | "limits" | "cache" | "audit" | "pac"
            )
        {
            for k in v.as_mapping().unwrap().keys() {
                keys.insert(format!("{section}.{}", k.as_str().unwrap()));
            }
        }
    }
    keys
}

/// The Kubernetes `egressd.yaml` shows every setting the shipped example does (so a new key
/// reaches both), except `tests:`: policy tests run in the policy repository's CI, not the pod.
#[test]
fn kubernetes_config_sets_every_key_the_shipped_config_sets() {
    let k8s: Value = serde_yaml::from_str(&k8s_egressd_yaml()).unwrap();
    let shipped: Value = serde_yaml::from_str(&read("config/egressd.yaml")).unwrap();
    let k8s = setting_keys(&k8s);
    let missing: Vec<_> = (setting_keys(&shipped).difference(&k8s))
        .filter(|k| *k != "tests")
        .cloned()
        .collect();
    assert!(
        missing.is_empty(),
        "deploy/kubernetes/configmap.yaml lacks {missing:?}"
    );
}

#[test]
fn deployment_probes_and_grace_period_fit_the_drain() {
    let cfg: Value = serde_yaml::from_str(&k8s_egressd_yaml()).unwrap();
    assert_eq!(
        cfg["listen"]["admin"], "0.0.0.0:9090",
        "probes need the admin port on the pod IP"
    );
    assert_eq!(cfg["listen"]["proxy"], "0.0.0.0:3128");
    let grace = humantime::parse_duration(cfg["timeouts"]["shutdown_grace"].as_str().unwrap())
        .unwrap()
        .as_secs();

    let deploy = one("deploy/kubernetes/deployment.yaml", "Deployment", "egressd");
    let pod = &deploy["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], "admin");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["livenessProbe"]["httpGet"]["port"], "admin");
    let ports: BTreeMap<String, u64> = c["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                secs(&p["containerPort"]),
            )
        })
        .collect();
    assert_eq!(ports["admin"], 9090);
    assert_eq!(ports["proxy"], 3128);
    let pre_stop = secs(&c["lifecycle"]["preStop"]["sleep"]["seconds"]);
    let termination = secs(&pod["terminationGracePeriodSeconds"]);
    assert!(
        termination > pre_stop + grace,
        "terminationGracePeriodSeconds {termination} must exceed preStop {pre_stop} + shutdown_grace {grace}"
    );
}

#[test]
fn services_servicemonitor_and_networkpolicy_fit_together() {
    let svc = "deploy/kubernetes/service.yaml";
    let proxy = one(svc, "Service", "egressd");
    assert_eq!(proxy["spec"]["ports"][0]["targetPort"], "proxy");
    assert_eq!(
        proxy["spec"]["externalTrafficPolicy"], "Local",
        "identity.sources needs the client's own address"
    );
    let metrics = one(svc, "Service", "egressd-metrics");
    assert_eq!(metrics["spec"]["ports"][0]["targetPort"], "admin");

    let sm = one(
        "deploy/kubernetes/servicemonitor.yaml",
        "ServiceMonitor",
        "egressd",
    );
    let wanted: BTreeMap<String, String> =
        serde_yaml::from_value(sm["spec"]["selector"]["matchLabels"].clone()).unwrap();
    let labels: BTreeMap<String, String> =
        serde_yaml::from_value(metrics["metadata"]["labels"].clone()).unwrap();
    assert!(wanted.iter().all(|(k, v)| labels.get(k) == Some(v)));
    let proxy_labels: BTreeMap<String, String> =
        serde_yaml::from_value(proxy["metadata"]["labels"].clone()).unwrap();
    assert!(
        !wanted.iter().all(|(k, v)| proxy_labels.get(k) == Some(v)),
        "the ServiceMonitor must not scrape the proxy Service"
    );
    assert_eq!(
        sm["spec"]["endpoints"][0]["port"],
        metrics["spec"]["ports"][0]["name"]
    );
    // The alert rules select job="egressd": jobLabel names a label whose value is that.
    let job_label = sm["spec"]["jobLabel"].as_str().unwrap();
    assert_eq!(labels[job_label], "egressd");

    // Every client range egressd identifies may reach the proxy port.
    let cfg: Value = serde_yaml::from_str(&k8s_egressd_yaml()).unwrap();
    let np = one(
        "deploy/kubernetes/networkpolicy.yaml",
        "NetworkPolicy",
        "egressd",
    );
    let blocks: Vec<ipnet::IpNet> = np["spec"]["ingress"][0]["from"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|f| f["ipBlock"]["cidr"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(np["spec"]["ingress"][0]["ports"][0]["port"], "proxy");
    assert_eq!(np["spec"]["ingress"][1]["ports"][0]["port"], "admin");
    for (cidr, _) in cfg["identity"]["sources"].as_mapping().unwrap() {
        let net: ipnet::IpNet = cidr.as_str().unwrap().parse().unwrap();
        assert!(
            blocks.iter().any(|b| b.contains(&net)),
            "{net} is in identity.sources but the NetworkPolicy does not admit it"
        );
    }
}

/// systemd must not SIGKILL a drain that is still within shutdown_grace.
#[test]
fn systemd_stop_timeout_exceeds_the_shipped_shutdown_grace() {
    let unit = read("deploy/systemd/egressd.service");
    let value = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key} missing"))
            .to_owned()
    };
    let stop = humantime::parse_duration(&value("TimeoutStopSec")).unwrap();
    let cfg: Value = serde_yaml::from_str(&read("config/egressd.yaml")).unwrap();
    let grace =
        humantime::parse_duration(cfg["timeouts"]["shutdown_grace"].as_str().unwrap()).unwrap();
    assert!(
        stop >= grace + Duration::from_secs(10),
        "{stop:?} vs {grace:?}"
    );
    assert_eq!(
        value("ExecStart"),
        "/usr/bin/egressd run --config /etc/egressd/egressd.yaml"
    );
    assert_eq!(value("CapabilityBoundingSet"), "CAP_NET_BIND_SERVICE");
    assert_eq!(value("ProtectSystem"), "strict");
    assert_eq!(value("NoNewPrivileges"), "yes");
    assert!(value("LimitNOFILE").parse::<u64>().unwrap() >= 20_000);
    assert!(unit.contains("ExecReload=/bin/kill -HUP $MAINPID"));
}
