//! The real `egressd` binary: `check`, `explain`, `test` on the shipped configuration and on
//! broken trees, and `run` serving a block page.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn egressd(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_egressd"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn shipped_config_checks_and_its_tests_pass() {
    let (code, out, err) = egressd(&["check", "--config", "config/egressd.yaml"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = egressd(&["test", "--config", "config/egressd.yaml"]);
    assert_eq!(code, 0, "{out}{err}");
    let last = out.lines().last().unwrap();
    assert!(last.ends_with("passed, 0 failed"), "{last}");
    let passed: usize = last.split(' ').next().unwrap().parse().unwrap();
    assert!(passed >= 20, "{last}");
}

#[test]
fn check_reports_every_error_with_location() {
    let tree = common::ConfigTree::new(
        "listen: {proxy: 127.0.0.1:0}\nidentity:\n  sources:\n    10.0.0.0/33: agriculture\n",
        &[
            ("policies/_organization.yaml", "default: allow\nbaseline:\n  - id: x\n    action: block\n    categories: [nope]\n"),
            ("policies/agriculture.yaml", "ministry: agriculture\nrules:\n  - id: a\n    action: allow\n    domian: [x.com]\n"),
        ],
    );
    let cfg = tree.config_path();
    let (code, out, _) = egressd(&["check", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.len() >= 3, "all errors in one run: {out}");
    for l in &lines {
        let mut parts = l.splitn(4, ':');
        let (file, line, col) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        assert!(file.ends_with(".yaml"), "{l}");
        assert!(
            line.parse::<u32>().is_ok() && col.trim().parse::<u32>().is_ok(),
            "{l}"
        );
    }
    assert!(out.contains("egressd.yaml:4:"), "bad CIDR located: {out}");
    assert!(
        out.contains("_organization.yaml:5:"),
        "unknown category located: {out}"
    );
    assert!(
        out.contains("agriculture.yaml:5:"),
        "unknown key located: {out}"
    );
}

#[test]
fn explain_names_rule_file_line_and_walk() {
    let (code, out, err) = egressd(&[
        "explain",
        "--config",
        "config/egressd.yaml",
        "--ministry",
        "health",
        "http://www.facebook.com/",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("BLOCK"), "{out}");
    assert!(out.contains("_organization/social-media"), "{out}");
    assert!(out.contains("_organization.yaml:"), "{out}");
    let (code, out, err) = egressd(&[
        "explain",
        "--config",
        "config/egressd.yaml",
        "--json",
        "--client",
        "10.20.3.4",
        "https://www.youtube.com/",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ministry"], "agriculture");
    assert_eq!(v["action"], "block");
    assert_eq!(v["rule"], "_organization/video-streaming");
    assert!(v["file"].as_str().unwrap().ends_with("_organization.yaml"));
    assert!(v["line"].as_u64().unwrap() > 0);
    assert!(v["reason"].is_string());
    let walk = v["walk"].as_array().unwrap();
    assert!(walk
        .iter()
        .any(|s| s["decided"] == true && s["rule"] == "_organization/video-streaming"));
    let (code, _, err) = egressd(&[
        "explain",
        "--config",
        "config/egressd.yaml",
        "--ministry",
        "nope",
        "x.com",
    ]);
    assert_eq!(code, 1, "{err}");
}

#[test]
fn failing_policy_test_is_reported() {
    let tree = common::ConfigTree::new(
        "listen: {proxy: 127.0.0.1:0}\n",
        &[
            ("policies/_organization.yaml", "default: allow\nbaseline:\n  - id: social\n    action: block\n    domains: [facebook.com]\n"),
            ("policies/agriculture.yaml", "ministry: agriculture\n"),
            ("tests/t.yaml", "- ministry: agriculture\n  url: http://facebook.com/\n  expect: block\n  rule: _organization/social\n- ministry: agriculture\n  url: https://www.facebook.com/\n  expect: allow\n"),
        ],
    );
    let cfg = tree.config_path();
    let (code, out, _) = egressd(&["test", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("t.yaml:5:"),
        "failing case named with its line: {out}"
    );
    assert_eq!(out.lines().last().unwrap(), "1 passed, 1 failed");
}

#[test]
fn run_serves_the_block_page_and_rejects_bad_config() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tree = common::ConfigTree::new(
        &format!("listen: {{proxy: 127.0.0.1:{port}, admin: 127.0.0.1:0}}\n"),
        &[("policies/_organization.yaml", "default: allow\nbaseline:\n  - id: social\n    action: block\n    domains: [facebook.com]\n    reason: not for work\n")],
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_egressd"))
        .args(["run", "--config", tree.config_path().to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stream = loop {
        match std::net::TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("egressd did not listen: {e}"),
        }
    };
    use std::io::{Read, Write};
    stream.write_all(b"GET http://www.facebook.com/ HTTP/1.1\r\nHost: www.facebook.com\r\nConnection: close\r\n\r\n").unwrap();
    let mut resp = String::new();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.read_to_string(&mut resp).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    assert!(
        resp.contains("_unknown/_default") || resp.contains("_organization/social"),
        "{resp}"
    );
    // An invalid configuration: non-zero exit with the located error.
    let bad = common::ConfigTree::new(
        "listen: {proxy: 127.0.0.1:0}\nlimits: {max_conections: 3}\n",
        &[],
    );
    let (code, _, err) = egressd(&["run", "--config", bad.config_path().to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("egressd.yaml:2:"), "{err}");
}

#[test]
fn expired_and_expiring_rules_warn_and_strict_fails() {
    let soon = (chrono::Utc::now() + chrono::Duration::days(5)).format("%Y-%m-%d");
    let org = format!(
        "default: allow\nbaseline:\n  - id: old\n    action: allow\n    domains: [a.example]\n    expires: 2020-01-01\n  - id: soon\n    action: allow\n    domains: [b.example]\n    expires: {soon}\n"
    );
    let tree = common::ConfigTree::new(
        "listen: {proxy: 127.0.0.1:0}\n",
        &[("policies/_organization.yaml", &org)],
    );
    let cfg = tree.config_path();
    let (code, out, _) = egressd(&["check", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "warnings alone do not fail: {out}");
    assert!(
        out.contains("_organization.yaml:6:") && out.contains("warning"),
        "{out}"
    );
    assert!(
        out.contains("_organization.yaml:10:"),
        "expiring soon warned: {out}"
    );
    let (code, out, _) = egressd(&["check", "--strict", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 1, "--strict fails on warnings: {out}");
}
