//! The admin listener: health, readiness (and draining), the PAC file, unknown paths, and that
//! it is not the proxy port.

mod common;

use std::process::{Command, Stdio};

use common::obs::admin_get;

const PAC: &str = "pac:
  proxies: [proxy.example.gov:3128, 10.1.1.1:3128]
  direct_domains: [intra.example, xn--bcher-kva.example]
  direct_cidrs: [10.0.0.0/8, 192.168.10.0/24, fd00::/8]
";

#[tokio::test]
async fn health_and_readiness_then_draining() {
    let p = common::start(common::standard_tree("")).await;
    assert_ne!(p.admin, p.addr);
    let h = admin_get(p.admin, "/healthz").await;
    assert_eq!((h.status, h.text().as_str()), (200, "ok\n"));
    let r = admin_get(p.admin, "/readyz").await;
    assert_eq!((r.status, r.text().as_str()), (200, "ready\n"));
    // SIGTERM's path (issue #4) calls set_draining(): the admin listener keeps answering.
    p.server.shared.health.set_draining();
    let r = admin_get(p.admin, "/readyz").await;
    assert_eq!((r.status, r.text().as_str()), (503, "draining\n"));
    assert_eq!(admin_get(p.admin, "/healthz").await.status, 200);
    assert_eq!(admin_get(p.admin, "/metrics").await.status, 200);
}

#[tokio::test]
async fn admin_stays_up_when_the_proxy_drains() {
    let p = common::start(common::standard_tree("")).await;
    // The SIGTERM path: readiness off, proxy listeners closed, the admin listener still up.
    assert!(p.server.shutdown(std::time::Duration::from_secs(2)).await);
    assert!(
        tokio::net::TcpStream::connect(p.addr).await.is_err(),
        "proxy still listening"
    );
    assert_eq!(admin_get(p.admin, "/readyz").await.status, 503);
    assert_eq!(admin_get(p.admin, "/healthz").await.status, 200);
}

#[tokio::test]
async fn an_audit_file_that_cannot_be_opened_fails_startup() {
    let tree = common::standard_tree("audit: {file: missing-dir/audit.log}");
    let err = egressd::app::Server::start(&tree.config_path())
        .await
        .err()
        .expect("must fail");
    let msg = err.to_string();
    assert!(
        msg.starts_with("cannot open the audit file") && msg.contains("missing-dir/audit.log"),
        "{msg}"
    );
}

#[tokio::test]
async fn unknown_paths_methods_and_the_proxy_port() {
    let p = common::start(common::standard_tree("")).await;
    assert_eq!(admin_get(p.admin, "/").await.status, 404);
    assert_eq!(admin_get(p.admin, "/metrics/extra").await.status, 404);
    let r = common::raw(
        p.admin,
        b"POST /metrics HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));
    let m = admin_get(p.admin, "/metrics").await;
    assert_eq!(
        m.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    // The proxy port does not serve admin paths: an origin-form request there is a 400.
    assert_eq!(admin_get(p.addr, "/metrics").await.status, 400);
}

#[tokio::test]
async fn pac_from_settings() {
    let p = common::start(common::standard_tree(PAC)).await;
    let r = admin_get(p.admin, "/proxy.pac").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("application/x-ns-proxy-autoconfig")
    );
    let pac = r.text();
    assert!(pac.contains("function FindProxyForURL(url, host)"), "{pac}");
    assert!(
        pac.contains(r#"return "PROXY proxy.example.gov:3128; PROXY 10.1.1.1:3128";"#),
        "{pac}"
    );
    assert!(
        pac.contains(r#"isInNet(host, "192.168.10.0", "255.255.255.0")"#),
        "{pac}"
    );
    assert!(
        !pac.contains("dnsResolve") && !pac.contains("DIRECT\";\n}"),
        "{pac}"
    );
    let cases = [
        ("http://intra.example/", "intra.example", "DIRECT"),
        ("http://a.b.intra.example/", "a.b.intra.example", "DIRECT"),
        ("http://WWW.Intra.Example./", "WWW.Intra.Example.", "DIRECT"),
        (
            "http://xintra.example/",
            "xintra.example",
            "PROXY proxy.example.gov:3128; PROXY 10.1.1.1:3128",
        ),
        (
            "http://intra.example.evil.test/",
            "intra.example.evil.test",
            "PROXY proxy.example.gov:3128; PROXY 10.1.1.1:3128",
        ),
        (
            "http://xn--bcher-kva.example/",
            "xn--bcher-kva.example",
            "DIRECT",
        ),
        ("http://10.20.30.40/", "10.20.30.40", "DIRECT"),
        ("http://192.168.10.7/", "192.168.10.7", "DIRECT"),
        (
            "http://192.168.11.7/",
            "192.168.11.7",
            "PROXY proxy.example.gov:3128; PROXY 10.1.1.1:3128",
        ),
        // A name is never resolved, even when it would resolve into a direct range.
        (
            "http://intranet.test/",
            "intranet.test",
            "PROXY proxy.example.gov:3128; PROXY 10.1.1.1:3128",
        ),
        ("http://[fd12::1]/", "[fd12::1]", "DIRECT"),
        (
            "http://[2001:db8::1]/",
            "2001:db8::1",
            "PROXY proxy.example.gov:3128; PROXY 10.1.1.1:3128",
        ),
    ];
    evaluate_pac(&pac, &cases);
}

#[tokio::test]
async fn pac_without_settings_names_the_proxy_listener() {
    let p = common::start(common::standard_tree("")).await;
    let r = admin_get(p.admin, "/proxy.pac").await;
    assert_eq!(r.status, 200);
    let want = format!("PROXY {}", p.addr);
    assert!(
        r.text().contains(&format!("return \"{want}\";")),
        "{}",
        r.text()
    );
    evaluate_pac(&r.text(), &[("http://example.com/", "example.com", &want)]);
}

/// Runs the PAC file in node with the browser's PAC helpers (`isInNet` on an IP literal,
/// `dnsDomainIs`, Chrome's `isInNetEx`) and no DNS: `dnsResolve`, and `isInNet` on a name,
/// throw. Skipped when node is not installed (CI installs it).
fn evaluate_pac(pac: &str, cases: &[(&str, &str, &str)]) {
    if Command::new("node").arg("--version").output().is_err() {
        eprintln!("node not found: the PAC file is checked by text only");
        return;
    }
    let helpers = r#"
function ip4(s) { var p = s.split("."); if (p.length != 4) throw new Error("not an IPv4 literal: " + s);
  return p.reduce(function (a, x) { return a * 256 + Number(x); }, 0); }
function isInNet(host, pattern, mask) { var m = ip4(mask);
  return (ip4(host) & m) >>> 0 === (ip4(pattern) & m) >>> 0; }
function dnsDomainIs(host, domain) { return host.length >= domain.length && host.substring(host.length - domain.length) == domain; }
function dnsResolve(host) { throw new Error("the PAC file must not resolve " + host); }
function ip6(s) { var halves = s.split("::"), head = halves[0] ? halves[0].split(":") : [],
  tail = halves.length > 1 && halves[1] ? halves[1].split(":") : [];
  var fill = new Array(8 - head.length - tail.length).fill("0");
  return head.concat(halves.length > 1 ? fill : [], tail).map(function (x) { return parseInt(x, 16); }); }
function isInNetEx(host, prefix) { var p = prefix.split("/"), a = ip6(host), b = ip6(p[0]), bits = Number(p[1]);
  for (var i = 0; i < 8; i++) { var n = Math.max(0, Math.min(16, bits - 16 * i)); var mask = n == 0 ? 0 : (0xffff << (16 - n)) & 0xffff;
    if ((a[i] & mask) != (b[i] & mask)) return false; } return true; }
"#;
    let mut script = String::from(helpers);
    script.push_str(pac);
    script.push_str("var cases = ");
    script.push_str(&serde_json::to_string(cases).unwrap());
    script.push_str(
        ";\nvar bad = 0;\ncases.forEach(function (c) { var got = FindProxyForURL(c[0], c[1]);\n  if (got !== c[2]) { bad++; console.log(c[0] + ': got ' + JSON.stringify(got) + ', want ' + JSON.stringify(c[2])); } });\nprocess.exit(bad ? 1 : 0);\n",
    );
    let out = Command::new("node")
        .arg("-e")
        .arg(&script)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}\n{pac}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
