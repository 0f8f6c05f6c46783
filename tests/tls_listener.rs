//! The TLS proxy listener with real clients (a rustls client, and curl `--proxy https://…` when
//! present), and the identity order: client certificate, credentials (argon2 and bcrypt), source
//! CIDR, default ministry; 407s; Basic over plain text; handshake failures and their metric;
//! certificate reload.
//!
//! Identities are told apart by what `GET http://other.test/` gets: `agriculture` is allowed
//! (200), `health` and `guest` are blocked by their own `_default` (the rule is in the 403's
//! `Proxy-Status`).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use common::obs;
use common::pki::{Issued, Pki};
use common::{origin, tls, ConfigTree, RawResponse};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const GUEST: &str = "ministry: guest\ndefault: block\n";
const ALICE_PW: &str = "correct horse";
const BOB_PW: &str = "battery staple";

struct Setup {
    proxy: common::Proxy,
    tls_addr: SocketAddr,
    origin: origin::Origin,
    servers: Pki,
    clients: Pki,
}

impl Setup {
    fn url(&self) -> String {
        format!("http://other.test:{}/", self.origin.addr.port())
    }

    fn trust(&self, client: Option<&Issued>) -> std::sync::Arc<rustls::ClientConfig> {
        tls::client_config(&self.servers.ca_path(), client)
    }

    /// `GET other.test` over the TLS listener from `src`, with extra header lines.
    async fn get_tls(&self, src: &str, client: Option<&Issued>, headers: &str) -> RawResponse {
        let mut s = tls::to_proxy(src, self.tls_addr, self.trust(client))
            .await
            .expect("TLS handshake with the proxy");
        let req = format!(
            "GET {} HTTP/1.1\r\nHost: other.test\r\n{headers}Connection: close\r\n\r\n",
            self.url()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        common::read_response(&mut s).await
    }

    /// The same over the plain listener.
    async fn get_plain(&self, src: &str, headers: &str) -> RawResponse {
        let mut s = common::connect_from(src, self.proxy.addr).await;
        let req = format!(
            "GET {} HTTP/1.1\r\nHost: other.test\r\n{headers}Connection: close\r\n\r\n",
            self.url()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        common::read_response(&mut s).await
    }
}

fn basic(user: &str, pw: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"));
    format!("Proxy-Authorization: Basic {token}\r\n")
}

fn users_yaml() -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(b"egressd-test-salt").unwrap();
    let argon = argon2::Argon2::default()
        .hash_password(ALICE_PW.as_bytes(), &salt)
        .unwrap()
        .to_string();
    let bc = bcrypt::hash(BOB_PW, 4).unwrap();
    format!(
        "alice: {{password_hash: \"{argon}\", ministry: health}}\nbob: {{password_hash: \"{bc}\", ministry: agriculture}}\n"
    )
}

/// `127.0.0.1` is `agriculture` by source; `127.0.0.3` matches no source.
fn yaml(plaintext_basic: bool, request_header: &str) -> String {
    format!(
        r#"
listen:
  proxy: 127.0.0.1:0
  admin: 127.0.0.1:0
  proxy_tls:
    address: 127.0.0.1:0
    cert: pki/proxy.crt
    key: pki/proxy.key
    client_ca: pki/clients.crt
identity:
  sources:
    127.0.0.1/32: agriculture
  certificates:
    "*.health.example": health
    ops.agriculture.example: agriculture
  credentials: users.yaml
  allow_basic_over_plaintext: {plaintext_basic}
  default_ministry: guest
egress:
  allow_private_cidrs: [127.0.0.0/8]
dns:
  static:
    other.test: 127.0.0.1
timeouts:
  request_header: {request_header}
"#
    )
}

async fn setup(plaintext_basic: bool, request_header: &str) -> Setup {
    let tree = ConfigTree::new(
        &yaml(plaintext_basic, request_header),
        &[
            ("policies/_organization.yaml", common::ORG),
            ("policies/agriculture.yaml", common::AGRICULTURE),
            ("policies/health.yaml", common::HEALTH),
            ("policies/guest.yaml", GUEST),
            ("categories/social-media.yaml", common::SOCIAL),
            ("users.yaml", &users_yaml()),
        ],
    );
    let pki_dir = tree.dir.path().join("pki");
    let servers = Pki::new(&pki_dir, "servers");
    servers.server("proxy", &["localhost", "127.0.0.1"]);
    let clients = Pki::new(&pki_dir, "clients");
    let origin = origin::start().await;
    let proxy = common::start(tree).await;
    let tls_addr = proxy.server.proxy_tls_addr().expect("TLS listener bound");
    Setup {
        proxy,
        tls_addr,
        origin,
        servers,
        clients,
    }
}

fn rule(r: &RawResponse) -> &str {
    r.header("proxy-status").unwrap_or("")
}

fn assert_blocked_by(r: &RawResponse, rule_name: &str) {
    assert_eq!(r.status, 403, "{r:?}");
    assert!(
        rule(r).contains(&format!("details=\"{rule_name}\"")),
        "{r:?}"
    );
}

fn assert_challenge(r: &RawResponse) {
    assert_eq!(r.status, 407, "{r:?}");
    assert_eq!(
        r.header("proxy-authenticate"),
        Some(r#"Basic realm="egressd", charset="UTF-8""#)
    );
}

#[tokio::test]
async fn certificate_identifies_before_credentials_and_source() {
    let s = setup(false, "5s").await;
    // SAN match: health, although the source says agriculture.
    let health = s.clients.client("h1", &["host1.health.example"], None);
    assert_blocked_by(
        &s.get_tls("127.0.0.1", Some(&health), "").await,
        "health/_default",
    );
    // The certificate wins over credentials too.
    let r = s
        .get_tls("127.0.0.3", Some(&health), &basic("bob", BOB_PW))
        .await;
    assert_blocked_by(&r, "health/_default");
    // No SAN: the CN decides.
    let ops = s
        .clients
        .client("ops", &[], Some("ops.agriculture.example"));
    assert_eq!(s.get_tls("127.0.0.3", Some(&ops), "").await.status, 200);
    // A verified certificate that matches no pattern falls through: to the source here…
    let other = s
        .clients
        .client("laptop", &["laptop.elsewhere.example"], None);
    assert_eq!(s.get_tls("127.0.0.1", Some(&other), "").await.status, 200);
    // …and to the credentials challenge where no source matches.
    assert_challenge(&s.get_tls("127.0.0.3", Some(&other), "").await);
    // No certificate at all: other methods apply.
    assert_eq!(s.get_tls("127.0.0.1", None, "").await.status, 200);
}

#[tokio::test]
async fn credentials_argon2_and_bcrypt_then_407s() {
    let s = setup(false, "5s").await;
    // alice (argon2) is health, bob (bcrypt) agriculture; 127.0.0.3 has no source.
    let r = s
        .get_tls("127.0.0.3", None, &basic("alice", ALICE_PW))
        .await;
    assert_blocked_by(&r, "health/_default");
    for _ in 0..3 {
        // Repeats are served from the remembered check.
        let r = s.get_tls("127.0.0.3", None, &basic("bob", BOB_PW)).await;
        assert_eq!(r.status, 200, "{r:?}");
    }
    // Credentials beat the source: alice from 127.0.0.1 is still health.
    let r = s
        .get_tls("127.0.0.1", None, &basic("alice", ALICE_PW))
        .await;
    assert_blocked_by(&r, "health/_default");
    // A wrong password is a 407 even where the source would identify the client.
    assert_challenge(&s.get_tls("127.0.0.1", None, &basic("bob", "wrong")).await);
    assert_challenge(&s.get_tls("127.0.0.1", None, &basic("mallory", "x")).await);
    assert_challenge(
        &s.get_tls("127.0.0.1", None, "Proxy-Authorization: Bearer abc\r\n")
            .await,
    );
    // Missing credentials: a challenge where nothing else identifies the client…
    assert_challenge(&s.get_tls("127.0.0.3", None, "").await);
    // …the source otherwise.
    assert_eq!(s.get_tls("127.0.0.1", None, "").await.status, 200);
    // The credentials are not forwarded to the origin.
    let mut c = tls::to_proxy("127.0.0.3", s.tls_addr, s.trust(None))
        .await
        .unwrap();
    let req = format!(
        "GET {}headers HTTP/1.1\r\nHost: x\r\n{}Connection: close\r\n\r\n",
        s.url(),
        basic("bob", BOB_PW)
    );
    c.write_all(req.as_bytes()).await.unwrap();
    let r = common::read_response(&mut c).await;
    assert_eq!(r.status, 200);
    assert!(
        !r.text().to_lowercase().contains("proxy-authorization"),
        "{}",
        r.text()
    );
}

#[tokio::test]
async fn credentials_on_connect_over_tls() {
    let s = setup(false, "5s").await;
    let mut c = tls::to_proxy("127.0.0.3", s.tls_addr, s.trust(None))
        .await
        .unwrap();
    c.write_all(b"CONNECT other.test:443 HTTP/1.1\r\nHost: other.test:443\r\n\r\n")
        .await
        .unwrap();
    assert_challenge(&common::read_response(&mut c).await);
}

#[tokio::test]
async fn basic_over_plaintext_is_refused_unless_allowed() {
    let s = setup(false, "5s").await;
    let r = s.get_plain("127.0.0.1", &basic("bob", BOB_PW)).await;
    assert_eq!(r.status, 403, "{r:?}");
    assert!(rule(&r).contains("allow_basic_over_plaintext"), "{r:?}");
    // Without credentials on the plain listener, Basic is not usable: no challenge, the
    // source or the default ministry applies.
    assert_eq!(s.get_plain("127.0.0.1", "").await.status, 200);
    assert_blocked_by(&s.get_plain("127.0.0.3", "").await, "guest/_default");

    let s = setup(true, "5s").await;
    assert_eq!(
        s.get_plain("127.0.0.3", &basic("bob", BOB_PW)).await.status,
        200
    );
    assert_challenge(&s.get_plain("127.0.0.3", &basic("bob", "nope")).await);
    assert_challenge(&s.get_plain("127.0.0.3", "").await);
}

/// Reads until EOF or error (a refused TLS connection), bounded.
async fn wait_closed<S: tokio::io::AsyncRead + Unpin>(s: &mut S) {
    let mut buf = [0u8; 1024];
    let r = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(r.is_ok(), "connection closed within 5 s");
}

#[tokio::test]
async fn failed_handshakes_are_counted_and_harm_no_one() {
    let s = setup(false, "2s").await;
    let failures = &s.proxy.server.shared.tls_handshake_failures;
    // Plain HTTP to the TLS port.
    let mut plain = common::connect_from("127.0.0.1", s.tls_addr).await;
    plain
        .write_all(b"GET http://other.test/ HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // A silent client: cut at `timeouts.request_header`.
    let mut silent = common::connect_from("127.0.0.1", s.tls_addr).await;
    // A certificate from a CA the proxy does not trust.
    let rogue = Pki::new(&s.clients.dir.join("rogue"), "rogue");
    let intruder = rogue.client("intruder", &["x.health.example"], None);
    let refused = async {
        match tls::to_proxy("127.0.0.1", s.tls_addr, s.trust(Some(&intruder))).await {
            Err(_) => {}
            // TLS 1.3: the client learns of the refusal on its first read.
            Ok(mut c) => {
                let _ = c.write_all(b"GET / HTTP/1.1\r\n\r\n").await;
                let mut buf = [0u8; 64];
                let n = c.read(&mut buf).await.unwrap_or(0);
                assert_eq!(n, 0, "an untrusted client certificate is refused");
            }
        }
    };
    // Meanwhile a good client is served.
    let (_, good) = tokio::join!(refused, s.get_tls("127.0.0.1", None, ""));
    assert_eq!(good.status, 200);
    wait_closed(&mut plain).await;
    wait_closed(&mut silent).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while failures.get() < 3 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(failures.get(), 3);
    assert_eq!(s.get_tls("127.0.0.1", None, "").await.status, 200);
}

/// `egressd_tls_handshake_failures_total` as `/metrics` on the admin listener shows it.
async fn scraped_handshake_failures(p: &common::Proxy) -> f64 {
    let m = obs::scrape(p).await;
    obs::value(&m, "egressd_tls_handshake_failures_total", &[]).expect("the counter is exported")
}

#[tokio::test]
async fn handshake_failures_are_exported_on_metrics() {
    let s = setup(false, "5s").await;
    let before = scraped_handshake_failures(&s.proxy).await;
    // Bytes that are not a TLS record.
    let mut garbage = common::connect_from("127.0.0.1", s.tls_addr).await;
    garbage
        .write_all(b"\x00\x01 these bytes are not a TLS record\r\n\r\n")
        .await
        .unwrap();
    wait_closed(&mut garbage).await;
    // A real ClientHello, then gone once the proxy has answered with its first flight.
    let mut hello = Vec::new();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    rustls::ClientConnection::new(s.trust(None), name)
        .unwrap()
        .write_tls(&mut hello)
        .unwrap();
    let mut quitter = common::connect_from("127.0.0.1", s.tls_addr).await;
    quitter.write_all(&hello).await.unwrap();
    let mut flight = [0u8; 5];
    quitter.read_exact(&mut flight).await.unwrap();
    assert_eq!(flight[0], 0x16, "the proxy answers with a handshake record");
    drop(quitter);
    // A complete handshake is not a failure.
    assert_eq!(s.get_tls("127.0.0.1", None, "").await.status, 200);
    // The proxy counts the quitter when it reads the close, after the scrape may have run.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut after = scraped_handshake_failures(&s.proxy).await;
    while after < before + 2.0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        after = scraped_handshake_failures(&s.proxy).await;
    }
    assert_eq!(after - before, 2.0);
}

#[tokio::test]
async fn a_new_snapshot_rotates_the_certificate() {
    let s = setup(false, "5s").await;
    // Rotate: a certificate from a new CA in the same files, then reload (the file watch may
    // have done it already; then this reload finds nothing changed).
    let next = Pki::new(&s.servers.dir, "servers-next");
    next.server("proxy", &["localhost", "127.0.0.1"]);
    let outcome = s.proxy.server.reload().await;
    assert!(
        !matches!(outcome, egressd::reload::Outcome::Rejected(_)),
        "{outcome:?}"
    );
    let old = tls::to_proxy("127.0.0.1", s.tls_addr, s.trust(None)).await;
    assert!(old.is_err(), "the old CA no longer verifies the proxy");
    let cfg = tls::client_config(&next.ca_path(), None);
    let mut c = tls::to_proxy("127.0.0.1", s.tls_addr, cfg).await.unwrap();
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        s.url()
    );
    c.write_all(req.as_bytes()).await.unwrap();
    assert_eq!(common::read_response(&mut c).await.status, 200);
}

/// curl through the TLS listener; returns the HTTP status it printed.
async fn curl(s: &Setup, args: &[&str]) -> String {
    let proxy = format!("https://127.0.0.1:{}", s.tls_addr.port());
    let ca = s.servers.ca_path();
    let url = s.url();
    let mut cmd = tokio::process::Command::new("curl");
    cmd.args([
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--max-time",
        "15",
    ])
    .args(["--proxy", &proxy, "--proxy-cacert", common::path_str(&ca)])
    .args(args)
    .arg(&url)
    .env_remove("http_proxy")
    .env_remove("HTTPS_PROXY")
    .env_remove("https_proxy")
    .env_remove("ALL_PROXY")
    .env_remove("NO_PROXY")
    .env_remove("no_proxy")
    .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(20), cmd.output())
        .await
        .expect("curl finished within 20 s")
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn curl_https_proxy_with_certificate_and_credentials() {
    if !common::have_curl() {
        eprintln!("curl not found: skipping the curl --proxy https:// test (CI installs curl)");
        return;
    }
    let s = setup(false, "5s").await;
    assert_eq!(curl(&s, &[]).await, "200", "by source");
    let health = s.clients.client("h2", &["ws7.health.example"], None);
    let (cert, key) = (
        common::path_str(&health.cert),
        common::path_str(&health.key),
    );
    assert_eq!(
        curl(&s, &["--proxy-cert", cert, "--proxy-key", key]).await,
        "403",
        "by certificate: health"
    );
    let alice = format!("alice:{ALICE_PW}");
    assert_eq!(
        curl(&s, &["--proxy-user", &alice]).await,
        "403",
        "alice is health"
    );
    let bob = format!("bob:{BOB_PW}");
    assert_eq!(
        curl(&s, &["--proxy-user", &bob]).await,
        "200",
        "bob is agriculture"
    );
    assert_eq!(curl(&s, &["--proxy-user", "bob:wrong"]).await, "407");
}
