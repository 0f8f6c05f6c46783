//! Metrics and audit records after a known mix of requests against the real server and a real
//! origin: exact counter values, every contract family, no host/address/path in any label, and
//! each audit record field by field.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::obs::{self, Sample};
use common::origin;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const FINANCE: &str = r#"
ministry: finance
mode: report
default: allow
rules:
  - id: casino
    action: block
    domains: [casino.test]
    reason: No gambling
    expires: 2099-12-31
"#;

/// The families of the contract's metrics table.
const CONTRACT_FAMILIES: [&str; 14] = [
    "egressd_requests_total",
    "egressd_request_duration_seconds",
    "egressd_decision_duration_seconds",
    "egressd_decision_cache_entries",
    "egressd_decision_cache_lookups_total",
    "egressd_connections_active",
    "egressd_bytes_total",
    "egressd_upstream_errors_total",
    "egressd_policy_reloads_total",
    "egressd_policy_generation",
    "egressd_policy_rules",
    "egressd_rule_expiry_timestamp_seconds",
    "egressd_audit_records_total",
    "egressd_build_info",
];

/// The standard tree plus a report-mode `finance` (127.0.0.3), CONNECT to the origin's port.
fn tree(origin_port: u16, extra: &str) -> common::ConfigTree {
    tree_with_finance(origin_port, extra, FINANCE)
}

/// [`tree`] with `finance` as the finance ministry's policy.
fn tree_with_finance(origin_port: u16, extra: &str, finance: &str) -> common::ConfigTree {
    let yaml = common::egressd_yaml(extra)
        .replace(
            "    127.0.0.2/32: health\n",
            "    127.0.0.2/32: health\n    127.0.0.3/32: finance\n",
        )
        .replace(
            "egress:\n  allow_private_cidrs: [127.0.0.0/8]\n",
            &format!(
                "egress:\n  allow_private_cidrs: [127.0.0.0/8]\n  connect_ports: [443, {origin_port}]\ntunnel:\n  allow_non_tls: true\n"
            ),
        );
    common::ConfigTree::new(
        &yaml,
        &[
            ("policies/_organization.yaml", common::ORG),
            ("policies/agriculture.yaml", common::AGRICULTURE),
            ("policies/health.yaml", common::HEALTH),
            ("policies/finance.yaml", finance),
            ("categories/social-media.yaml", common::SOCIAL),
        ],
    )
}

/// `record` without `ts` and `duration_ms`, which are checked for shape separately.
fn stable(record: &Value) -> Value {
    let mut r = record.clone();
    let o = r.as_object_mut().unwrap();
    let ts = o.remove("ts").unwrap();
    let ts = ts.as_str().unwrap();
    // RFC 3339, UTC, milliseconds: 2026-05-01T09:30:00.123Z
    assert_eq!(ts.len(), 24, "{ts}");
    assert!(ts.ends_with('Z') && ts.as_bytes()[19] == b'.', "{ts}");
    assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "{ts}");
    let ms = o.remove("duration_ms").unwrap();
    assert!(ms.as_f64().is_some_and(|ms| ms >= 0.0), "{ms}");
    r
}

fn find<'a>(recs: &'a [Value], what: &str, pred: impl Fn(&Value) -> bool) -> &'a Value {
    let found: Vec<_> = recs.iter().filter(|r| pred(r)).collect();
    assert_eq!(found.len(), 1, "{what}: {recs:#?}");
    found[0]
}

/// A tunnel to the origin carrying one HTTP exchange; returns (bytes sent, bytes received)
/// after the 200, once the origin closed.
async fn tunnel(proxy: SocketAddr, origin_port: u16) -> (usize, usize) {
    let mut s = tokio::net::TcpStream::connect(proxy).await.unwrap();
    let target = format!("allowed.test:{origin_port}");
    s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let r = common::read_response(&mut s).await;
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    let req = b"GET /bytes/5000 HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n";
    s.write_all(req).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert!(got.starts_with(b"HTTP/1.1 200"));
    (req.len(), got.len())
}

#[tokio::test]
async fn metrics_and_audit_after_a_known_mix() {
    let o = origin::start().await;
    let port = o.addr.port();
    let p = common::start(tree(port, "")).await;
    let closed = origin::closed_port().port();

    // 1. agriculture, allowed by its default, 1000 body bytes.
    let r1 = common::get(
        p.addr,
        &format!("http://allowed.test:{port}/bytes/1000"),
        "",
    )
    .await;
    assert_eq!((r1.status, r1.body.len()), (200, 1000));
    // 2. agriculture, blocked by the baseline.
    let r2 = common::get(p.addr, &format!("http://www.facebook.com:{port}/"), "").await;
    assert_eq!(r2.status, 403);
    // 3. finance (report mode): would be blocked, allowed; the query stays out of the log.
    let r3 = common::get_from(
        "127.0.0.3",
        p.addr,
        &format!("http://www.facebook.com:{port}/x?secret=1"),
    )
    .await;
    assert_eq!((r3.status, r3.text().as_str()), (200, "hello"));
    // 4. agriculture, upstream refuses.
    let r4 = common::get(p.addr, &format!("http://allowed.test:{closed}/"), "").await;
    assert_eq!(r4.status, 502);
    // 5. agriculture, a tunnel (same cache key as 1: a hit).
    let (t_up, t_down) = tunnel(p.addr, port).await;
    // 6. health, allowed by its own rule.
    let r6 = common::get_from("127.0.0.2", p.addr, &format!("http://allowed.test:{port}/")).await;
    assert_eq!(r6.status, 200);
    // 7. a malformed (origin-form) request: 400, no decision.
    let r7 = common::raw(
        p.addr,
        b"GET /relative HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r7.status, 400);
    // 8. finance, mandatory block: enforced even in report mode.
    let r8 = common::get_from("127.0.0.3", p.addr, "http://malware.test/").await;
    assert_eq!(r8.status, 403);
    // 9. agriculture, a body upstream (cache hit again).
    let body = vec![b'x'; 3000];
    let mut req = format!(
        "POST http://allowed.test:{port}/upload HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    let r9 = common::raw(p.addr, &req).await;
    assert_eq!(r9.status, 200);

    let recs = obs::audit_records(&p, &[p.audit_path()], 9).await;
    assert_eq!(recs.len(), 9, "{recs:#?}");
    check_audit(
        &recs,
        port,
        closed,
        [&r2, &r4, &r7, &r8, &r9],
        (t_up, t_down),
    );

    // Connections close asynchronously; wait for the proxy gauge to settle.
    let mut m = obs::scrape(&p).await;
    for _ in 0..100 {
        if obs::value(&m, "egressd_connections_active", &[("listener", "proxy")]) == Some(0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        m = obs::scrape(&p).await;
    }
    check_metrics(&m, &recs);
    check_labels(&m);
}

fn check_audit(
    recs: &[Value],
    port: u16,
    closed: u16,
    [r2, r4, r7, r8, r9]: [&common::RawResponse; 5],
    (t_up, t_down): (usize, usize),
) {
    let by = |method: &str, host: &str, p: u16, client: &str| {
        let (method, host, client) = (method.to_owned(), host.to_owned(), client.to_owned());
        move |r: &Value| {
            r["method"] == method.as_str()
                && r["host"] == host.as_str()
                && r["port"] == p
                && r["client"] == client.as_str()
        }
    };
    let base = |ministry: &str, client: &str, kind: &str, method: &str| {
        json!({
            "client": client, "ministry": ministry, "identity": "source", "user": null,
            "kind": kind, "method": method, "sni": null,
            "mode": if ministry == "finance" { "report" } else { "enforce" },
            "error": null, "bytes_up": 0,
        })
    };
    let with = |mut b: Value, extra: Value| {
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let allowed = find(recs, "allowed", |r| {
        by("GET", "allowed.test", port, "127.0.0.1")(r) && r["path"] == "/bytes/1000"
    });
    assert_eq!(
        stable(allowed),
        with(
            base("agriculture", "127.0.0.1", "http", "GET"),
            json!({"host": "allowed.test", "port": port, "path": "/bytes/1000", "action": "allow",
                   "rule": "agriculture/_default", "status": 200, "bytes_down": 1000})
        )
    );
    let blocked = find(
        recs,
        "blocked",
        by("GET", "www.facebook.com", port, "127.0.0.1"),
    );
    assert_eq!(
        stable(blocked),
        with(
            base("agriculture", "127.0.0.1", "http", "GET"),
            json!({"host": "www.facebook.com", "port": port, "path": "/", "action": "block",
                   "rule": "_organization/social-media", "status": 403,
                   "error": "http_request_denied", "bytes_down": r2.body.len()})
        )
    );
    let report = find(
        recs,
        "report",
        by("GET", "www.facebook.com", port, "127.0.0.3"),
    );
    assert_eq!(
        stable(report),
        with(
            base("finance", "127.0.0.3", "http", "GET"),
            json!({"host": "www.facebook.com", "port": port, "path": "/x", "action": "report",
                   "rule": "_organization/social-media", "status": 200, "bytes_down": 5})
        )
    );
    let failed = find(
        recs,
        "upstream error",
        by("GET", "allowed.test", closed, "127.0.0.1"),
    );
    assert_eq!(
        stable(failed),
        with(
            base("agriculture", "127.0.0.1", "http", "GET"),
            json!({"host": "allowed.test", "port": closed, "path": "/", "action": "allow",
                   "rule": "agriculture/_default", "status": 502,
                   "error": "connection_refused", "bytes_down": r4.body.len()})
        )
    );
    let tunnel = find(
        recs,
        "tunnel",
        by("CONNECT", "allowed.test", port, "127.0.0.1"),
    );
    assert_eq!(
        stable(tunnel),
        with(
            base("agriculture", "127.0.0.1", "connect", "CONNECT"),
            json!({"host": "allowed.test", "port": port, "path": null, "action": "allow",
                   "rule": "agriculture/_default", "status": 200,
                   "bytes_up": t_up, "bytes_down": t_down})
        )
    );
    let health = find(recs, "health", by("GET", "allowed.test", port, "127.0.0.2"));
    assert_eq!(
        stable(health),
        with(
            base("health", "127.0.0.2", "http", "GET"),
            json!({"host": "allowed.test", "port": port, "path": "/", "action": "allow",
                   "rule": "health/origin", "status": 200, "bytes_down": 5})
        )
    );
    let bad = find(recs, "400", |r| r["status"] == 400);
    assert_eq!(
        stable(bad),
        with(
            base("agriculture", "127.0.0.1", "http", "GET"),
            json!({"host": null, "port": null, "path": null, "action": null, "rule": null,
                   "status": 400, "error": "http_request_error", "bytes_down": r7.body.len()})
        )
    );
    let mandatory = find(
        recs,
        "mandatory",
        by("GET", "malware.test", 80, "127.0.0.3"),
    );
    assert_eq!(
        stable(mandatory),
        with(
            base("finance", "127.0.0.3", "http", "GET"),
            json!({"host": "malware.test", "port": 80, "path": "/", "action": "block",
                   "rule": "_organization/malware", "status": 403,
                   "error": "http_request_denied", "bytes_down": r8.body.len()})
        )
    );
    let upload = find(
        recs,
        "upload",
        by("POST", "allowed.test", port, "127.0.0.1"),
    );
    assert_eq!(
        stable(upload),
        with(
            base("agriculture", "127.0.0.1", "http", "POST"),
            json!({"host": "allowed.test", "port": port, "path": "/upload", "action": "allow",
                   "rule": "agriculture/_default", "status": 200, "bytes_up": 3000,
                   "bytes_down": r9.body.len()})
        )
    );
    assert!(r9.text().starts_with("3000 "), "{}", r9.text());
}

fn check_metrics(m: &[Sample], recs: &[Value]) {
    for family in CONTRACT_FAMILIES {
        assert!(
            m.iter()
                .any(|s| s.name == family || s.name == format!("{family}_count")),
            "{family} missing"
        );
    }
    assert!(m.iter().any(|s| s.name == "process_resident_memory_bytes"));
    let req = |ministry, kind, action, rule| {
        obs::value(
            m,
            "egressd_requests_total",
            &[
                ("action", action),
                ("kind", kind),
                ("ministry", ministry),
                ("rule", rule),
            ],
        )
    };
    assert_eq!(
        req("agriculture", "http", "allow", "agriculture/_default"),
        Some(3.0)
    );
    assert_eq!(
        req("agriculture", "connect", "allow", "agriculture/_default"),
        Some(1.0)
    );
    assert_eq!(
        req("agriculture", "http", "block", "_organization/social-media"),
        Some(1.0)
    );
    assert_eq!(
        req("finance", "http", "report", "_organization/social-media"),
        Some(1.0)
    );
    assert_eq!(
        req("finance", "http", "block", "_organization/malware"),
        Some(1.0)
    );
    assert_eq!(req("health", "http", "allow", "health/origin"), Some(1.0));
    // Reachable series exist at zero; impossible ones do not.
    assert_eq!(
        req("finance", "connect", "report", "finance/casino"),
        Some(0.0)
    );
    assert_eq!(req("health", "http", "block", "health/_default"), Some(0.0));
    assert_eq!(
        req(
            "agriculture",
            "http",
            "report",
            "_organization/social-media"
        ),
        None
    );
    assert_eq!(
        obs::sum(m, "egressd_requests_total", &[]),
        8.0,
        "the 400 is not a decision"
    );
    // Eight decisions: 5 and 9 hit the entry 1 made.
    let lookups = |r| obs::value(m, "egressd_decision_cache_lookups_total", &[("result", r)]);
    assert_eq!((lookups("hit"), lookups("miss")), (Some(2.0), Some(6.0)));
    let decisions = |c| {
        obs::value(
            m,
            "egressd_decision_duration_seconds_count",
            &[("cache", c)],
        )
    };
    assert_eq!(
        (decisions("hit"), decisions("miss")),
        (Some(2.0), Some(6.0))
    );
    assert_eq!(
        obs::value(m, "egressd_decision_cache_entries", &[]),
        Some(6.0)
    );
    let dur = |ministry, kind| {
        obs::value(
            m,
            "egressd_request_duration_seconds_count",
            &[("kind", kind), ("ministry", ministry)],
        )
    };
    assert_eq!(dur("agriculture", "http"), Some(5.0));
    assert_eq!(dur("agriculture", "connect"), Some(1.0));
    assert_eq!(dur("finance", "http"), Some(2.0));
    assert_eq!(dur("health", "http"), Some(1.0));
    let err = |e| obs::value(m, "egressd_upstream_errors_total", &[("error", e)]);
    assert_eq!(err("connection_refused"), Some(1.0));
    assert_eq!(obs::sum(m, "egressd_upstream_errors_total", &[]), 1.0);
    // Bytes per ministry and direction equal the audit records' sums.
    for ministry in ["agriculture", "finance", "health"] {
        for (dir, field) in [("upstream", "bytes_up"), ("downstream", "bytes_down")] {
            let audited: u64 = (recs.iter())
                .filter(|r| r["ministry"] == ministry)
                .map(|r| r[field].as_u64().unwrap())
                .sum();
            let metric = obs::value(
                m,
                "egressd_bytes_total",
                &[("direction", dir), ("ministry", ministry)],
            );
            assert_eq!(metric, Some(audited as f64), "{ministry} {dir}");
        }
    }
    let conns = |l| obs::value(m, "egressd_connections_active", &[("listener", l)]);
    assert_eq!(
        (conns("proxy"), conns("proxy_tls"), conns("admin")),
        (Some(0.0), Some(0.0), Some(1.0))
    );
    assert_eq!(obs::value(m, "egressd_policy_generation", &[]), Some(1.0));
    let rules = |n| obs::value(m, "egressd_policy_rules", &[("ministry", n)]);
    assert_eq!(
        (
            rules("_organization"),
            rules("agriculture"),
            rules("health"),
            rules("finance")
        ),
        (Some(3.0), Some(1.0), Some(1.0), Some(1.0))
    );
    let expiry = obs::value(
        m,
        "egressd_rule_expiry_timestamp_seconds",
        &[("ministry", "finance"), ("rule", "finance/casino")],
    );
    // The rule ends after 2099-12-31 in the organization's time zone (UTC).
    assert_eq!(expiry, Some(4102444800.0));
    assert_eq!(
        obs::sum(m, "egressd_rule_expiry_timestamp_seconds", &[]),
        4102444800.0
    );
    let audit = |r| obs::value(m, "egressd_audit_records_total", &[("result", r)]);
    assert_eq!((audit("written"), audit("failed")), (Some(9.0), Some(0.0)));
    let reloads = |r| obs::value(m, "egressd_policy_reloads_total", &[("result", r)]);
    assert_eq!(
        (reloads("success"), reloads("failure")),
        (Some(0.0), Some(0.0))
    );
    assert_eq!(
        obs::value(
            m,
            "egressd_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
}

/// No label value is a host, an address, a port or a path: outside `le` (bucket bounds) and
/// `version`, no value has a `.`, a `:` or a leading `/`, and none is a host we used.
fn check_labels(m: &[Sample]) {
    let hosts = ["allowed.test", "facebook", "malware.test", "127.0.0"];
    for s in m {
        for (k, v) in &s.labels {
            if k == "le" || k == "version" {
                continue;
            }
            assert!(
                !v.contains('.') && !v.contains(':') && !v.starts_with('/'),
                "{}: label {k}={v:?}",
                s.name
            );
            assert!(
                !hosts.iter().any(|h| v.contains(h)),
                "{}: {k}={v:?}",
                s.name
            );
        }
    }
}

/// A `destinations:` rule that only the resolved address meets changes the verdict after the
/// decision: in a report-mode ministry the request goes through, and its record and counter
/// name that rule, not the decision's.
#[tokio::test]
async fn a_destination_rule_met_after_resolution_names_the_record() {
    let o = origin::start().await;
    let port = o.addr.port();
    let finance = format!(
        "{FINANCE}  - id: loopback\n    action: block\n    destinations: [127.0.0.1/32]\n    \
         reason: Not the loopback\n"
    );
    let p = common::start(tree_with_finance(port, "", &finance)).await;
    let url = format!("http://allowed.test:{port}/");
    let r = common::get_from("127.0.0.3", p.addr, &url).await;
    assert_eq!((r.status, r.text().as_str()), (200, "hello"));
    let recs = obs::audit_records(&p, &[p.audit_path()], 1).await;
    assert_eq!(
        (&recs[0]["rule"], &recs[0]["action"]),
        (&json!("finance/loopback"), &json!("report"))
    );
    let m = obs::scrape(&p).await;
    let labels = [
        ("ministry", "finance"),
        ("kind", "http"),
        ("action", "report"),
        ("rule", "finance/loopback"),
    ];
    assert_eq!(obs::value(&m, "egressd_requests_total", &labels), Some(1.0));
}

#[tokio::test]
async fn keep_query_keeps_the_query() {
    let o = origin::start().await;
    let p = common::start(tree(
        o.addr.port(),
        "audit: {file: audit.log, keep_query: true}",
    ))
    .await;
    let url = format!(
        "http://allowed.test:{}/search?q=egress&page=2",
        o.addr.port()
    );
    assert_eq!(common::get(p.addr, &url, "").await.status, 200);
    let recs = obs::audit_records(&p, &[p.audit_path()], 1).await;
    assert_eq!(recs[0]["path"], "/search?q=egress&page=2");
}

#[tokio::test]
async fn unidentified_client_is_audited_as_none_and_unknown() {
    let o = origin::start().await;
    // Only 127.0.0.1 is identified; 127.0.0.9 is nobody's and there is no default ministry.
    let yaml = common::egressd_yaml("").replace(
        "    127.0.0.0/8: agriculture\n",
        "    127.0.0.1/32: agriculture\n",
    );
    let tree = common::tree_with(&yaml);
    let p = common::start(tree).await;
    let url = format!("http://allowed.test:{}/", o.addr.port());
    assert_eq!(
        common::get_from("127.0.0.9", p.addr, &url).await.status,
        403
    );
    let recs = obs::audit_records(&p, &[p.audit_path()], 1).await;
    let r = &recs[0];
    assert_eq!(
        (
            &r["ministry"],
            &r["identity"],
            &r["mode"],
            &r["action"],
            &r["rule"]
        ),
        (
            &json!("_unknown"),
            &json!("none"),
            &json!(null),
            &json!("block"),
            &json!("_unknown/_default")
        )
    );
    let m = obs::scrape(&p).await;
    let v = obs::value(
        &m,
        "egressd_requests_total",
        &[
            ("action", "block"),
            ("kind", "http"),
            ("ministry", "_unknown"),
            ("rule", "_unknown/_default"),
        ],
    );
    assert_eq!(v, Some(1.0));
}

/// What the reload path (issue #4) does: build a snapshot from a new configuration and install
/// it. Policy gauges follow the new policy; label sets of removed files and rules disappear.
#[test]
fn install_snapshot_replaces_policy_gauges() {
    use egressd::metrics::Metrics;
    use egressd::snapshot::Snapshot;
    let first = common::ConfigTree::new(
        &common::egressd_yaml(""),
        &[
            ("policies/_organization.yaml", common::ORG),
            ("policies/agriculture.yaml", common::AGRICULTURE),
            ("policies/health.yaml", common::HEALTH),
            ("policies/finance.yaml", FINANCE),
            ("categories/social-media.yaml", common::SOCIAL),
        ],
    );
    let second = common::tree_with(&common::egressd_yaml(""));
    let metrics = Metrics::new();
    let load = |t: &common::ConfigTree| egressd::config::load(&t.config_path()).unwrap();
    let snap = Snapshot::build(&load(&first), 1, &metrics);
    metrics.install_snapshot(&snap);
    let m = obs::parse(&metrics.render(0));
    assert_eq!(
        obs::value(&m, "egressd_policy_rules", &[("ministry", "finance")]),
        Some(1.0)
    );
    assert!(obs::sum(&m, "egressd_rule_expiry_timestamp_seconds", &[]) > 0.0);
    let snap = Snapshot::build(&load(&second), 2, &metrics);
    metrics.install_snapshot(&snap);
    metrics.reload(true);
    let m = obs::parse(&metrics.render(0));
    assert_eq!(obs::value(&m, "egressd_policy_generation", &[]), Some(2.0));
    assert_eq!(
        obs::value(&m, "egressd_policy_rules", &[("ministry", "finance")]),
        None
    );
    assert_eq!(
        obs::value(&m, "egressd_policy_rules", &[("ministry", "agriculture")]),
        Some(1.0)
    );
    assert!(!m
        .iter()
        .any(|s| s.name == "egressd_rule_expiry_timestamp_seconds"));
    assert_eq!(
        obs::value(&m, "egressd_policy_reloads_total", &[("result", "success")]),
        Some(1.0)
    );
}
