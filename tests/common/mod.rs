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
    tree_with(&egressd_yaml(extra))
}

/// The standard policies and categories under an `egressd.yaml` of the caller's.
pub fn tree_with(egressd_yaml: &str) -> ConfigTree {
    ConfigTree::new(
        egressd_yaml,
        &[
            ("policies/_organization.yaml", ORG),
            ("policies/agriculture.yaml", AGRICULTURE),
            ("policies/health.yaml", HEALTH),
            ("categories/social-media.yaml", SOCIAL),
        ],
    )
}

/// The standard tree with CONNECT allowed to `port` (and 443) and tunnels that are not TLS
/// relayed: the test origins speak plain HTTP inside tunnels. `tunnel_extra` goes into the
/// `tunnel:` section (e.g. `"  splice: false\n"`); `extra` at the end, as in [`egressd_yaml`].
pub fn connect_tree(port: u16, tunnel_extra: &str, extra: &str) -> ConfigTree {
    let yaml = egressd_yaml("").replace("egress:\n  allow_private_cidrs: [127.0.0.0/8]\n", "")
        + &format!(
            "egress:\n  allow_private_cidrs: [127.0.0.0/8]\n  connect_ports: [443, {port}]\n\
             tunnel:\n  allow_non_tls: true\n{tunnel_extra}{extra}"
        );
    tree_with(&yaml)
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

/// Reads one response from `s`: the head, then exactly its body (Content-Length, chunked, or
/// until close when neither is given; none for a CONNECT 200, 1xx, 204 and 304). Never reads
/// a byte past the response, so what follows it on the connection (a tunnel's first bytes after
/// a CONNECT 200, a pipelined response) is left for the caller.
pub async fn read_response<S: AsyncRead + Unpin>(s: &mut S) -> RawResponse {
    tokio::time::timeout(Duration::from_secs(10), read_response_inner(s))
        .await
        .expect("response within 10 s")
}

async fn read_response_inner<S: AsyncRead + Unpin>(s: &mut S) -> RawResponse {
    // Byte by byte: any read past the blank line could take bytes that are not the head's.
    let mut buf = Vec::new();
    while !buf.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let n = s.read(&mut byte).await.unwrap();
        assert!(
            n > 0,
            "connection closed before a response head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
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
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    let length = get("content-length").map(|v| v.parse::<usize>().unwrap());
    let chunked = get("transfer-encoding").is_some_and(|v| v.contains("chunked"));
    let no_body = status < 200 || status == 204 || status == 304
        // A CONNECT 200: tunnel bytes, not a body, follow its head.
        || (status == 200 && length.is_none() && !chunked);
    let body = if no_body {
        Vec::new()
    } else if chunked {
        read_chunked(s).await
    } else if let Some(len) = length {
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).await.expect("closed mid-body");
        body
    } else {
        read_until_close(s).await
    };
    RawResponse {
        status,
        headers,
        body,
    }
}

/// A chunked body up to and including its last chunk and trailer section, decoded. A body cut
/// short by the peer is returned as far as it got.
async fn read_chunked<S: AsyncRead + Unpin>(s: &mut S) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let Some(line) = read_line(s).await else {
            return body;
        };
        let size = line.split(';').next().unwrap().trim();
        let size =
            usize::from_str_radix(size, 16).unwrap_or_else(|_| panic!("chunk size {line:?}"));
        if size == 0 {
            // Trailer fields, then the blank line that ends the message.
            while read_line(s).await.is_some_and(|l| !l.is_empty()) {}
            return body;
        }
        let start = body.len();
        body.resize(start + size + 2, 0);
        if s.read_exact(&mut body[start..]).await.is_err() {
            body.truncate(start);
            return body;
        }
        assert_eq!(&body[start + size..], b"\r\n", "chunk data ends with CRLF");
        body.truncate(start + size);
    }
}

/// One CRLF-terminated line, without the CRLF; `None` at end of stream or on an error.
async fn read_line<S: AsyncRead + Unpin>(s: &mut S) -> Option<String> {
    let mut line = Vec::new();
    while !line.ends_with(b"\r\n") {
        let mut byte = [0u8; 1];
        match s.read(&mut byte).await {
            Ok(1) => line.push(byte[0]),
            _ => return None,
        }
    }
    line.truncate(line.len() - 2);
    Some(String::from_utf8_lossy(&line).into_owned())
}

/// Everything until the peer closes (or resets) the connection.
async fn read_until_close<S: AsyncRead + Unpin>(s: &mut S) -> Vec<u8> {
    let mut body = Vec::new();
    let mut chunk = vec![0u8; 65536];
    while let Ok(n @ 1..) = s.read(&mut chunk).await {
        body.extend_from_slice(&chunk[..n]);
    }
    body
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The RFC 9209 error type in a response's `Proxy-Status` (its `error=` parameter), or `""`.
pub fn error_type(r: &RawResponse) -> String {
    let ps = r.header("proxy-status").unwrap_or_default();
    ps.split("error=")
        .nth(1)
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .to_owned()
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
