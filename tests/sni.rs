//! SNI inspection of CONNECT tunnels with real ClientHellos (a rustls client, and
//! `openssl s_client -proxy` when present) against a local rustls origin: an allowed name goes
//! through end to end, a blocked SNI is cut before the origin receives a byte (and logged with
//! its rule), an IP-literal CONNECT is decided on its SNI, garbage is refused unless
//! `tunnel.allow_non_tls`.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::pki::Pki;
use common::tls::{self, TlsOrigin};
use common::ConfigTree;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Setup {
    proxy: common::Proxy,
    origin: TlsOrigin,
    servers: Pki,
    /// Holds the origin's CA and certificate files.
    _pki_dir: tempfile::TempDir,
}

fn yaml(origin_port: u16, extra: &str) -> String {
    format!(
        r#"
listen:
  proxy: 127.0.0.1:0
  admin: 127.0.0.1:0
  proxy_tls:
    address: 127.0.0.1:0
    cert: pki/proxy.crt
    key: pki/proxy.key
identity:
  sources:
    127.0.0.0/8: agriculture
egress:
  allow_private_cidrs: [127.0.0.0/8]
  connect_ports: [443, {origin_port}]
dns:
  static:
    allowed.test: 127.0.0.1
    www.facebook.com: 127.0.0.1
    twitter.com: 127.0.0.1
timeouts:
  request_header: 2s
{extra}
"#
    )
}

async fn setup(extra: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let servers = Pki::new(&dir.path().join("pki"), "servers");
    let origin_id = servers.server(
        "origin",
        &[
            "allowed.test",
            "www.facebook.com",
            "twitter.com",
            "127.0.0.1",
        ],
    );
    let origin = tls::origin(&origin_id).await;
    let tree = ConfigTree::new(
        &yaml(origin.addr.port(), extra),
        &[
            ("policies/_organization.yaml", common::ORG),
            ("policies/agriculture.yaml", common::AGRICULTURE),
            ("categories/social-media.yaml", common::SOCIAL),
        ],
    );
    let pki = Pki::new(&tree.dir.path().join("pki"), "proxy-ca");
    pki.server("proxy", &["localhost", "127.0.0.1"]);
    Setup {
        proxy: common::start(tree).await,
        origin,
        servers,
        _pki_dir: dir,
    }
}

impl Setup {
    /// CONNECT `target` on the plain listener; asserts the 200.
    async fn connect(&self, target: &str) -> TcpStream {
        let mut s = TcpStream::connect(self.proxy.addr).await.unwrap();
        let req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let r = common::read_response(&mut s).await;
        assert_eq!(r.status, 200, "CONNECT {target}: {r:?}");
        s
    }

    fn target(&self, host: &str) -> String {
        format!("{host}:{}", self.origin.addr.port())
    }

    /// CONNECT `host`, TLS with `sni` inside, `GET /`: the body, or the error.
    async fn fetch(&self, host: &str, sni: &str) -> Result<String, std::io::Error> {
        let tunnel = self.connect(&self.target(host)).await;
        let config = tls::client_config(&self.servers.ca_path(), None);
        let fut = async {
            let mut t = tls::handshake(tunnel, config, sni).await?;
            t.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await?;
            let r = common::read_response(&mut t).await;
            Ok(r.text())
        };
        tokio::time::timeout(Duration::from_secs(10), fut)
            .await
            .expect("tunnel answered or closed within 10 s")
    }

    /// Gives the proxy a moment, then returns the bytes the origin received so far.
    async fn origin_received(&self) -> usize {
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.origin.received()
    }
}

/// Captures this thread's log lines (tests run on a current-thread runtime, so the proxy's
/// tasks log here).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let writer = logs.clone();
        let sub = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        (logs.clone(), tracing::subscriber::set_default(sub))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn allowed_connect_and_allowed_sni_work_end_to_end() {
    let s = setup("").await;
    assert_eq!(
        s.fetch("allowed.test", "allowed.test").await.unwrap(),
        "hello over tls"
    );
    // A social-media name that agriculture's ticketed exception allows.
    assert_eq!(
        s.fetch("twitter.com", "twitter.com").await.unwrap(),
        "hello over tls"
    );
    assert!(s.origin.received() > 0);
}

#[tokio::test]
async fn blocked_sni_is_cut_before_the_origin_sees_a_byte() {
    let (logs, _guard) = Logs::capture();
    let s = setup("").await;
    let r = s.fetch("allowed.test", "www.facebook.com").await;
    assert!(r.is_err(), "the handshake must fail: {r:?}");
    assert_eq!(
        s.origin_received().await,
        0,
        "not a byte reached the origin"
    );
    assert_eq!(
        s.origin
            .connections
            .load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the origin was dialled before the 200 (so upstream errors stay 502/504)"
    );
    let log = logs.text();
    assert!(log.contains("tunnel closed: its SNI is blocked"), "{log}");
    assert!(log.contains("rule=_organization/social-media"), "{log}");
    assert!(log.contains("sni=www.facebook.com"), "{log}");
}

#[tokio::test]
async fn a_tunnel_cut_for_its_sni_is_audited_and_counted_as_a_block() {
    let s = setup("audit: {file: audit.log}").await;
    assert!(s.fetch("allowed.test", "www.facebook.com").await.is_err());
    let path = s.proxy.tree.dir.path().join("audit.log");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let record = loop {
        s.proxy.server.flush_audit(Duration::from_secs(1)).await;
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if let Some(line) = text
            .lines()
            .find(|l| l.contains("\"sni\":\"www.facebook.com\""))
        {
            break serde_json::from_str::<serde_json::Value>(line).unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no tunnel record: {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(record["kind"], "connect");
    assert_eq!(record["host"], "allowed.test");
    assert_eq!(record["action"], "block");
    assert_eq!(record["rule"], "_organization/social-media");
    assert_eq!(record["status"], 200, "what the client was sent");
    assert_eq!(
        record["bytes_up"], 0,
        "nothing reached the origin: {record}"
    );
    let metrics = common::obs::admin_get(s.proxy.admin, "/metrics")
        .await
        .text();
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("egressd_requests_total{")
                && l.contains("kind=\"connect\"")
                && l.contains("action=\"block\"")
                && l.contains("rule=\"_organization/social-media\"")
        })
        .unwrap_or_else(|| panic!("no block series: {metrics}"));
    assert!(line.ends_with(" 1"), "{line}");
}

#[tokio::test]
async fn ip_literal_connect_is_decided_on_its_sni() {
    let s = setup("").await;
    let r = s.fetch("127.0.0.1", "www.facebook.com").await;
    assert!(r.is_err(), "{r:?}");
    assert_eq!(s.origin_received().await, 0);
    assert_eq!(
        s.fetch("127.0.0.1", "allowed.test").await.unwrap(),
        "hello over tls"
    );
    // No SNI (the client names an IP): the CONNECT target alone decides.
    assert_eq!(
        s.fetch("127.0.0.1", "127.0.0.1").await.unwrap(),
        "hello over tls"
    );
}

/// Reads until the proxy closes the tunnel (bounded).
async fn assert_closed(t: &mut TcpStream) {
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(5), t.read(&mut buf))
        .await
        .expect("closed within 5 s")
        .unwrap_or(0);
    assert_eq!(n, 0, "tunnel closed without an answer");
}

#[tokio::test]
async fn garbage_or_truncated_first_bytes_are_refused() {
    let s = setup("").await;
    let mut t = s.connect(&s.target("allowed.test")).await;
    t.write_all(b"GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
        .await
        .unwrap();
    assert_closed(&mut t).await;
    // A TLS record header that never completes: cut at `timeouts.request_header`.
    let mut t = s.connect(&s.target("allowed.test")).await;
    t.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();
    assert_closed(&mut t).await;
    assert_eq!(s.origin_received().await, 0);
}

#[tokio::test]
async fn non_tls_is_relayed_when_allowed() {
    let s = setup("tunnel:\n  allow_non_tls: true").await;
    let mut t = s.connect(&s.target("allowed.test")).await;
    t.write_all(b"not tls at all\r\n").await.unwrap();
    // The origin (a TLS server) receives the bytes, then gives up on them.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while s.origin.received() == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(s.origin.received(), b"not tls at all\r\n".len());
    // A blocked SNI is still cut.
    assert!(s.fetch("allowed.test", "www.facebook.com").await.is_err());
}

/// `openssl s_client -proxy` with `-servername`: true when the handshake completed.
async fn s_client(s: &Setup, host: &str, sni: &str) -> bool {
    let proxy = s.proxy.addr.to_string();
    let ca = s.servers.ca_path();
    let mut cmd = tokio::process::Command::new("openssl");
    cmd.args(["s_client", "-brief", "-verify_return_error"])
        .args(["-proxy", &proxy, "-connect", &s.target(host)])
        .args(["-servername", sni, "-CAfile", common::path_str(&ca)])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(20), cmd.output())
        .await
        .expect("openssl finished within 20 s")
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    out.status.success() && text.contains("CONNECTION ESTABLISHED")
}

#[tokio::test]
async fn openssl_s_client_through_the_proxy() {
    let have = std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_ok();
    if !have {
        eprintln!("openssl not found: skipping the s_client test (CI installs openssl)");
        return;
    }
    let s = setup("").await;
    assert!(s_client(&s, "allowed.test", "allowed.test").await);
    let before = s.origin.received();
    assert!(!s_client(&s, "allowed.test", "www.facebook.com").await);
    assert_eq!(
        s.origin_received().await,
        before,
        "the blocked hello never arrived"
    );
}

#[tokio::test]
async fn curl_tls_inside_the_tls_listener() {
    if !common::have_curl() {
        eprintln!("curl not found: skipping (CI installs curl)");
        return;
    }
    let s = setup("").await;
    let tls_addr: SocketAddr = s.proxy.server.proxy_tls_addr().unwrap();
    let proxy = format!("https://127.0.0.1:{}", tls_addr.port());
    let proxy_ca = s.proxy.tree.dir.path().join("pki/proxy-ca.crt");
    let url = format!("https://{}/", s.target("allowed.test"));
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::new("curl")
            .args(["-sS", "--max-time", "15", "--proxy", &proxy])
            .args(["--proxy-cacert", common::path_str(&proxy_ca)])
            .args(["--cacert", common::path_str(&s.servers.ca_path()), &url])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("curl finished within 20 s")
    .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello over tls",
        "{out:?}"
    );
}
