//! `deploy/`: the Grafana dashboard names only metrics a live egressd exports and its PromQL
//! parses; the alert rules and their unit tests pass promtool; a live scrape passes
//! `promtool check metrics`. promtool comes with Debian's `prometheus` package (CI installs
//! it); without it the promtool checks are skipped with a message.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::obs;
use common::origin;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn have_promtool() -> bool {
    let ok = Command::new("promtool").arg("--version").output().is_ok();
    if !ok {
        eprintln!("promtool not found (apt-get install prometheus): skipping the promtool check");
    }
    ok
}

fn promtool(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// `health` with a temporary exception, so `egressd_rule_expiry_timestamp_seconds` has a
/// series (a labelled family without series is not exposed at all).
const HEALTH: &str = r#"
ministry: health
default: block
rules:
  - id: origin
    action: allow
    hosts: [allowed.test]
  - id: pilot
    action: allow
    domains: [pilot.test]
    ticket: CHG-1
    expires: 2099-01-31
"#;

/// A scrape after some traffic, so every histogram and labelled family has samples.
async fn live_scrape() -> String {
    let o = origin::start().await;
    let tree = common::ConfigTree::new(
        &common::egressd_yaml(""),
        &[
            ("policies/_organization.yaml", common::ORG),
            ("policies/agriculture.yaml", common::AGRICULTURE),
            ("policies/health.yaml", HEALTH),
            ("categories/social-media.yaml", common::SOCIAL),
        ],
    );
    let p = common::start(tree).await;
    let port = o.addr.port();
    assert_eq!(
        common::get(p.addr, &format!("http://allowed.test:{port}/"), "")
            .await
            .status,
        200
    );
    assert_eq!(
        common::get(p.addr, "http://www.facebook.com/", "")
            .await
            .status,
        403
    );
    let closed = origin::closed_port().port();
    assert_eq!(
        common::get(p.addr, &format!("http://allowed.test:{closed}/"), "")
            .await
            .status,
        502
    );
    obs::audit_records(&p, &[p.audit_path()], 3).await;
    let r = obs::admin_get(p.admin, "/metrics").await;
    assert_eq!(r.status, 200);
    r.text()
}

/// Family name -> type, from the `# TYPE` lines.
fn families(scrape: &str) -> BTreeMap<String, String> {
    scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let (name, kind) = l.split_once(' ').unwrap();
            (name.to_owned(), kind.to_owned())
        })
        .collect()
}

#[tokio::test]
async fn live_scrape_passes_promtool_check_metrics() {
    let scrape = live_scrape().await;
    if !have_promtool() {
        return;
    }
    let (ok, out) = promtool(&["check", "metrics"], Some(&scrape));
    assert!(ok, "promtool check metrics:\n{out}\n{scrape}");
}

#[test]
fn alert_rules_pass_promtool_check_and_unit_tests() {
    if !have_promtool() {
        return;
    }
    let rules = repo("deploy/prometheus/alerts.yaml");
    let (ok, out) = promtool(&["check", "rules", rules.to_str().unwrap()], None);
    assert!(ok, "{out}");
    let tests = repo("deploy/prometheus/alerts_test.yaml");
    let (ok, out) = promtool(&["test", "rules", tests.to_str().unwrap()], None);
    assert!(ok, "{out}");
}

/// Metric names a PromQL expression reads: identifiers outside strings, label matchers, range
/// selectors and grouping clauses, that are not functions, aggregations or keywords.
fn metric_names(expr: &str) -> BTreeSet<String> {
    // 1. Drop strings, `{…}` and `[…]`.
    let mut bare = String::new();
    let (mut in_str, mut brace, mut bracket) = (false, 0, 0);
    let mut prev = ' ';
    for c in expr.chars() {
        if in_str {
            if c == '"' && prev != '\\' {
                in_str = false;
            }
        } else {
            match c {
                '"' => in_str = true,
                '{' => brace += 1,
                '}' => brace -= 1,
                '[' => bracket += 1,
                ']' => bracket -= 1,
                _ if brace == 0 && bracket == 0 => bare.push(c),
                _ => {}
            }
            if matches!(c, '{' | '}' | '[' | ']') {
                bare.push(' ');
            }
        }
        prev = c;
    }
    // 2. Tokens: identifiers, numbers, punctuation.
    let chars: Vec<char> = bare.chars().collect();
    let mut tokens: Vec<String> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            tokens.push(chars[start..i].iter().collect());
        } else if c.is_ascii_digit() || c == '.' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            tokens.push("0".into());
        } else {
            if !c.is_whitespace() {
                tokens.push(c.to_string());
            }
            i += 1;
        }
    }
    // 3. Skip grouping clauses, calls and keywords.
    const GROUPING: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    const KEYWORDS: [&str; 7] = [
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "group_left",
        "group_right",
    ];
    // Aggregations may put their grouping clause first: `sum by (x) (…)`.
    const AGGREGATIONS: [&str; 12] = [
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    ];
    let mut names = BTreeSet::new();
    let mut t = 0;
    while t < tokens.len() {
        let tok = &tokens[t];
        let next = tokens.get(t + 1).map(String::as_str);
        let next_is_paren = next == Some("(");
        let grouped_aggregation =
            AGGREGATIONS.contains(&tok.as_str()) && matches!(next, Some("by") | Some("without"));
        if GROUPING.contains(&tok.as_str()) && next_is_paren {
            while t < tokens.len() && tokens[t] != ")" {
                t += 1;
            }
        } else if tok.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && !next_is_paren
            && !grouped_aggregation
            && !KEYWORDS.contains(&tok.as_str())
        {
            names.insert(tok.clone());
        }
        t += 1;
    }
    names
}

#[test]
fn metric_names_are_parsed_out_of_promql() {
    let e = r#"histogram_quantile(0.99, sum by (le, cache) (rate(egressd_decision_duration_seconds_bucket{instance=~"$instance", x="a}b"}[$__rate_interval]))) / on (instance) group_left up > bool 0.5 and topk(15, foo:bar)"#;
    let got: Vec<_> = metric_names(e).into_iter().collect();
    assert_eq!(
        got,
        ["egressd_decision_duration_seconds_bucket", "foo:bar", "up"]
    );
}

/// Every `expr` of the dashboard (panels, rows' panels) and the metric of every
/// `label_values(metric, label)` variable.
fn dashboard_queries(dash: &serde_json::Value) -> (Vec<String>, Vec<String>) {
    fn walk(v: &serde_json::Value, exprs: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(o) => {
                if let Some(serde_json::Value::String(e)) = o.get("expr") {
                    exprs.push(e.clone());
                }
                o.values().for_each(|x| walk(x, exprs));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, exprs)),
            _ => {}
        }
    }
    let mut exprs = Vec::new();
    walk(&dash["panels"], &mut exprs);
    let mut var_metrics = Vec::new();
    for var in dash["templating"]["list"].as_array().unwrap() {
        if let Some(def) = var["definition"].as_str() {
            let inner = def
                .strip_prefix("label_values(")
                .and_then(|d| d.strip_suffix(')'))
                .unwrap_or_else(|| panic!("unexpected variable query {def}"));
            var_metrics.push(inner.split(',').next().unwrap().trim().to_owned());
        }
    }
    (exprs, var_metrics)
}

#[tokio::test]
async fn dashboard_names_only_exported_metrics_and_parses() {
    let text = std::fs::read_to_string(repo("deploy/grafana/egressd.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let (exprs, var_metrics) = dashboard_queries(&dash);
    assert!(exprs.len() >= 15, "{exprs:?}");
    let exported = families(&live_scrape().await);
    let exists = |name: &str| {
        exported.contains_key(name)
            || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
                name.strip_suffix(suffix)
                    .is_some_and(|base| exported.get(base).is_some_and(|t| t == "histogram"))
            })
    };
    let mut used = BTreeSet::new();
    for e in &exprs {
        let names = metric_names(e);
        assert!(!names.is_empty(), "no metric in {e}");
        for n in names {
            assert!(exists(&n), "{n} (in `{e}`) is not exported");
            used.insert(n);
        }
    }
    for m in &var_metrics {
        assert!(exists(m), "variable metric {m} is not exported");
    }
    // The panels the issue asks for.
    let titles: Vec<&str> = (dash["panels"].as_array().unwrap().iter())
        .filter_map(|p| p["title"].as_str())
        .collect();
    for want in [
        "Requests by ministry and action",
        "Blocks by ministry",
        "Top deciding rules",
        "Report-mode would-blocks",
        "Decision latency",
        "Request latency (time to response head)",
        "Decision cache hit ratio",
        "Upstream errors by type",
        "Active connections",
        "Reloads",
        "Rules expiring within 30 days",
    ] {
        assert!(titles.contains(&want), "{want} missing: {titles:?}");
    }
    // Every family of the contract is on the dashboard.
    for family in exported.keys().filter(|f| f.starts_with("egressd_")) {
        assert!(
            used.iter()
                .any(|u| u == family || u.starts_with(&format!("{family}_"))),
            "{family} is not on the dashboard"
        );
    }
    // The PromQL parses: promtool checks each expression as a recording rule, with Grafana's
    // variables given values.
    if !have_promtool() {
        return;
    }
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        let e = e
            .replace("$__rate_interval", "5m")
            .replace("$__range", "1h")
            .replace("$instance", ".*")
            .replace("$ministry", ".*");
        rules.push_str(&format!(
            "      - record: dashboard:expr{i}\n        expr: {}\n",
            serde_json::to_string(&e).unwrap()
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dashboard_rules.yaml");
    std::fs::write(&path, &rules).unwrap();
    let (ok, out) = promtool(&["check", "rules", path.to_str().unwrap()], None);
    assert!(ok, "{out}\n{rules}");
}
