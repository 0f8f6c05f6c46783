//! Test harness: a real origin server on 127.0.0.1, a config tree written to a temp dir, the
//! real egressd server started in-process on an ephemeral port, and raw-TCP / hyper clients.
#![allow(dead_code)]

pub mod obs;
pub mod origin;
pub mod pki;
pub mod tls;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A config tree in a temp dir. `egressd_yaml` is written as is; files are (relative path, text).
pub struct ConfigTree {
    pub dir: tempfile::TempDir,
}

impl ConfigTree {
    pub fn new(egressd_yaml: &str, files: &[(&str, &str)]) -> ConfigTree {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("egressd.yaml"), egressd_yaml).unwrap();
        for sub in ["policies", "categories", "tests"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        for (rel, text) in files {
            let p = dir.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        ConfigTree { dir }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("egressd.yaml")
    }
}

/// The standard policy used by most proxy tests: social media blocked at baseline, an
/// agriculture exception for twitter, a mandatory block, a health ministry that blocks by
/// default, and `allowed.test`/`other.test` pointing at the loopback origin.
pub const ORG: &str = r#"
timezone: UTC
contact: security@gov.example
default: allow
mandatory:
  - id: malware
    action: block
    domains: [malware.test]
    reason: Known malware distribution
  - id: metadata
    action: block
    destinations: [169.254.169.254/32, 10.99.0.0/16]
    reason: Cloud metadata and the management network
baseline:
  - id: social-media
    action: block
    categories: [social-media]
    reason: Social media is not for work
"#;

pub const AGRICULTURE: &str = r#"
ministry: agriculture
contact: servicedesk@agriculture.example
default: allow
rules:
  - id: foodland-twitter
    action: allow
    domains: [twitter.com, t.co]
    reason: Foodland promotes Ontario food on Twitter
    ticket: CHG-2041
"#;

pub const HEALTH: &str = r#"
ministry: health
default: block
rules:
  - id: origin
    action: allow
    hosts: [allowed.test]
"#;

pub const SOCIAL: &str = r#"
description: Social media
domains: [facebook.com, fbcdn.net, twitter.com, t.co, xn--bcher-kva.example]
"#;

/// egressd.yaml for tests: ephemeral proxy and admin ports, loopback origin reachable, the
/// audit log in `audit.log` next to the config (unless `extra` has its own `audit:`).
pub fn egressd_yaml(extra: &str) -> String {
    let audit = if extra.contains("audit:") {
        ""
    } else {
        "audit: {file: audit.log}"
    };
    format!(
        r#"
listen:
  proxy: 127.0.0.1:0
  admin: 127.0.0.1:0
{audit}
identity:
  sources:
    127.0.0.0/8: agriculture
    127.0.0.2/32: health
egress:
  allow_private_cidrs: [127.0.0.0/8]
dns:
  static:
    allowed.test: 127.0.0.1
    other.test: 127.0.0.1
    www.facebook.com: 127.0.0.1
    twitter.com: 127.0.0.1
    metadata.test: 10.99.1.1
    intranet.test: 10.0.0.5
{extra}
"#
    )
}

pub fn standard_tree(extra: &str) -> ConfigTree {
    ConfigTree::new(
        &egressd_yaml(extra),
        &[
            ("policies/_organization.yaml", ORG),
            ("policies/agriculture.yaml", AGRICULTURE),
            ("policies/health.yaml", HEALTH),
            ("categories/social-media.yaml", SOCIAL),
        ],
    )
}

/// A running in-process egressd plus the tree it was started from.
pub struct Proxy {
    pub server: egressd::app::Server,
    pub addr: SocketAddr,
    /// The admin listener (`/metrics`, `/healthz`, `/readyz`, `/proxy.pac`).
    pub admin: SocketAddr,
    pub tree: ConfigTree,
}

impl Proxy {
    /// The audit file of trees built with [`egressd_yaml`].
    pub fn audit_path(&self) -> PathBuf {
        self.tree.dir.path().join("audit.log")
    }
}

pub async fn start(tree: ConfigTree) -> Proxy {
    start_with(tree, egressd::app::Options::default()).await
}

pub async fn start_with(tree: ConfigTree, opts: egressd::app::Options) -> Proxy {
    let server = egressd::app::Server::start_with(&tree.config_path(), opts)
        .await
        .unwrap_or_else(|e| panic!("egressd did not start: {e}"));
    let addr = server.proxy_addrs()[0];
    let admin = server.admin_addr().expect("an admin listener");
    Proxy {
        server,
        addr,
        admin,
        tree,
    }
}

/// A parsed HTTP/1.1 response read from a raw socket.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends raw bytes on a fresh connection and reads one response (up to 10 s).
pub async fn raw(addr: SocketAddr, request: &[u8]) -> RawResponse {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    read_response(&mut s).await
}

/// A connection from a chosen loopback source address (127.0.0.2 is `health` in the standard
/// tree), so identity by source CIDR is exercised for real.
pub async fn connect_from(src: &str, addr: SocketAddr) -> TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(format!("{src}:0").parse().unwrap()).unwrap();
    sock.connect(addr).await.unwrap()
}

/// A GET through the proxy from a chosen loopback source address.
pub async fn get_from(src: &str, proxy: SocketAddr, url: &str) -> RawResponse {
    let mut s = connect_from(src, proxy).await;
    s.write_all(format!("GET {url} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    read_response(&mut s).await
}

/// Reads one response from `s`: head, then a Content-Length or chunked body, or until close.
pub async fn read_response<S: AsyncRead + Unpin>(s: &mut S) -> RawResponse {
    tokio::time::timeout(Duration::from_secs(10), read_response_inner(s))
        .await
        .expect("response within 10 s")
}

async fn read_response_inner<S: AsyncRead + Unpin>(s: &mut S) -> RawResponse {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.unwrap();
        assert!(
            n > 0,
            "connection closed before a response head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_owned(), v.trim().to_owned())
        })
        .collect();
    let mut body = buf[head_end..].to_vec();
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    if status == 200 && get("content-length").is_none() && get("transfer-encoding").is_none() {
        // CONNECT 200: no body.
        return RawResponse {
            status,
            headers,
            body,
        };
    }
    if let Some(len) = get("content-length") {
        let len: usize = len.parse().unwrap();
        while body.len() < len {
            let mut chunk = vec![0u8; 65536];
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed mid-body");
            body.extend_from_slice(&chunk[..n]);
        }
        body.truncate(len);
    } else if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        // Only the tail can hold the terminator: searching it keeps large bodies linear.
        while !body.ends_with(b"0\r\n\r\n") {
            let mut chunk = vec![0u8; 65536];
            let n = s.read(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
        body = dechunk(&body);
    }
    RawResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = find(b, b"\r\n") {
        let size = usize::from_str_radix(
            std::str::from_utf8(&b[..i])
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .trim(),
            16,
        )
        .unwrap();
        if size == 0 {
            break;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + size]);
        b = &b[i + 2 + size + 2..];
    }
    out
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A GET through the proxy in absolute form.
pub async fn get(proxy: SocketAddr, url: &str, extra_headers: &str) -> RawResponse {
    let host = url.split("://").nth(1).unwrap().split('/').next().unwrap();
    let req =
        format!("GET {url} HTTP/1.1\r\nHost: {host}\r\n{extra_headers}Connection: close\r\n\r\n");
    raw(proxy, req.as_bytes()).await
}

/// Whether `curl` is on this machine (CI installs it).
pub fn have_curl() -> bool {
    std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_ok()
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}
