//! Entry points for the cargo-fuzz targets in `fuzz/`, and for the test that replays their
//! corpus (`tests/fuzz_corpus.rs`); nothing else should use this module, which is hidden from
//! the docs and not part of egressd's API. Each function takes the fuzzer's raw bytes, drives the
//! real code and panics when an invariant breaks, so a fuzz target is one call and a crash found
//! by the fuzzer is replayed by `cargo test` on stable Rust.
//!
//! - [`target_authority`]: request targets, CONNECT authorities and hosts
//!   ([`crate::proxy::target`], [`crate::policy::host`]);
//! - [`policy_yaml`]: configuration loading and validation from memory
//!   ([`crate::config::load_from_strings`]), then policy compilation and a few decisions;
//! - [`client_hello`]: ClientHello/SNI classification ([`crate::proxy::sni`]);
//! - [`RequestPath`]: the whole request path, the real server state serving one in-memory
//!   connection per input.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use http::uri::{Authority, Uri};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::audit::{AuditLog, Sink};
use crate::cache::DecisionCache;
use crate::config;
use crate::metrics::Metrics;
use crate::policy::host::{normalize_host, Host};
use crate::policy::Policy;
use crate::proxy::dial::Resolver;
use crate::proxy::service::Shared;
use crate::proxy::{listener, sni, target};
use crate::snapshot::Snapshot;

/// The fixed "now" of every fuzzed decision, so that an input always takes the same path.
fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_225_600, 0).expect("2026-01-01T00:00:00Z")
}

/// A normalised host re-normalises to itself from its printed form, and the printed form is
/// what a DNS name may be (lower-case, no trailing dot, within the length limits).
fn check_host(host: &Host) {
    let printed = host.to_string();
    assert_eq!(
        normalize_host(&printed).as_ref(),
        Ok(host),
        "{printed:?} does not re-normalise to itself"
    );
    if let Host::Name(n) = host {
        assert!(
            !n.is_empty() && n.len() <= 253 && !n.ends_with('.'),
            "{n:?}"
        );
        assert!(!n.bytes().any(|b| b.is_ascii_uppercase()), "{n:?}");
        assert!(n.is_ascii(), "{n:?}");
    }
}

/// A target printed as a CONNECT authority parses back to itself.
fn check_target(t: &target::Target) {
    check_host(&t.host);
    assert_ne!(t.port, 0);
    let authority = format!("{}:{}", t.host, t.port);
    let uri: Uri = authority
        .parse()
        .unwrap_or_else(|e| panic!("{authority:?} is not a URI: {e}"));
    assert_eq!(target::parse_connect(&uri).as_ref(), Ok(t), "{authority:?}");
    let host_header = t.host_header(80);
    assert!(host_header.parse::<Authority>().is_ok(), "{host_header:?}");
}

/// Fuzz target `target_authority`: the bytes as a request target (absolute-form and CONNECT),
/// as an authority, as an `egressd explain` argument and as a host.
pub fn target_authority(data: &[u8]) {
    if let Ok(uri) = Uri::try_from(data) {
        if let Ok(t) = target::parse_absolute(&uri) {
            check_target(&t);
        }
        if let Ok(t) = target::parse_connect(&uri) {
            check_target(&t);
        }
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok((t, _, _)) = target::parse_cli(text) {
        check_target(&t);
    }
    if let Ok(host) = normalize_host(text) {
        check_host(&host);
    }
}

/// Splits a `policy_yaml` input into files: text before the first `#% PATH` line is
/// `egressd.yaml`, each `#% PATH` line starts the file PATH (relative to the config folder).
pub fn split_tree(text: &str) -> Vec<(&str, &str)> {
    let mut files = Vec::new();
    let mut path = "egressd.yaml";
    let mut start = 0;
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        if let Some(next) = line.strip_prefix("#% ") {
            files.push((path, &text[start..at]));
            path = next.trim();
            start = at + line.len();
        }
        at += line.len();
    }
    files.push((path, &text[start..]));
    files
}

/// Fuzz target `policy_yaml`: a configuration tree (see [`split_tree`]) loaded and validated
/// from memory; every diagnostic prints; a valid policy compiles, and for every ministry a few
/// decisions are the same through the decision cache as without it.
pub fn policy_yaml(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let tree = split_tree(&text);
    let loaded = match config::load_from_strings(&tree, now()) {
        Ok(l) => l,
        Err(diags) => {
            assert!(!diags.is_empty(), "a failed load says why");
            for d in &diags {
                let _ = d.to_string();
            }
            return;
        }
    };
    for d in &loaded.warnings {
        let _ = d.to_string();
    }
    let policy = Policy::compile(&loaded.policy);
    let cache = DecisionCache::new(64);
    let mut hosts = vec![Host::Name("www.example.com".into())];
    for c in loaded.policy.categories.iter().take(2) {
        if let Some(d) = c.domains.first() {
            hosts.push(Host::Name(d.as_ref().into()));
        }
    }
    let ids: Vec<_> = policy.ministries().map(|(id, _)| id).collect();
    for id in ids {
        for host in &hosts {
            for port in [80, 443] {
                let direct = policy.decide(id, host, port, Some("/a"), now());
                let (cached, _) = cache.decide(&policy, id, host, port, Some("/a"), now());
                assert_eq!(direct, cached, "{host}:{port}");
            }
        }
    }
}

/// Fuzz target `client_hello`: the bytes as a tunnel's first bytes, classified in one go and
/// fed in pieces (cut where the input's own bytes say), which must agree; an SNI is a host.
pub fn client_hello(data: &[u8]) {
    let whole = sni::parse(data);
    let mut parser = sni::HelloParser::default();
    let mut rest = data;
    let mut fed = 0;
    let mut piecewise = sni::Parse::NeedMore;
    while !rest.is_empty() {
        // A cut derived from the bytes themselves: deterministic, and varied across inputs.
        let cut = 1 + usize::from(rest[0]) % rest.len().min(97);
        let (piece, tail) = rest.split_at(cut.min(rest.len()));
        piecewise = parser.feed(piece);
        fed += piece.len();
        rest = tail;
        if piecewise != sni::Parse::NeedMore {
            break;
        }
    }
    // Bytes after a complete classification cannot change it.
    let prefix = sni::parse(&data[..fed]);
    let same = |a: &sni::Parse, b: &sni::Parse| match (a, b) {
        (sni::Parse::Invalid(_), sni::Parse::Invalid(_)) => true,
        _ => a == b,
    };
    assert!(
        same(&piecewise, &prefix),
        "{piecewise:?} fed in pieces, {prefix:?} at once"
    );
    if piecewise != sni::Parse::NeedMore {
        assert!(
            same(&piecewise, &whole),
            "{piecewise:?} on a prefix, {whole:?} on all"
        );
    }
    if let sni::Parse::Hello(Some(name)) = whole {
        if let Ok(host) = normalize_host(&name) {
            check_host(&host);
        }
    }
}

/// The configuration of [`RequestPath`]: loopback only, every decision but the origin's port
/// blocked, so no input can make egressd connect anywhere else (names resolve from
/// `dns.static` only, see [`Resolver::static_only`]).
fn request_path_tree(origin_port: u16) -> [(&'static str, String); 4] {
    let egressd = format!(
        "listen: {{proxy: 127.0.0.1:0, admin: 127.0.0.1:0}}
identity:
  sources: {{127.0.0.0/8: agriculture}}
egress:
  allow_private_cidrs: [127.0.0.0/8]
  connect_ports: [443, {origin_port}]
dns:
  static: {{allowed.test: 127.0.0.1, www.facebook.com: 127.0.0.1, intranet.test: 10.0.0.5}}
forwarding: {{x_forwarded_for: true}}
tunnel: {{allow_non_tls: true}}
timeouts: {{request_header: 2s, idle: 2s, connect: 1s, response_header: 2s}}
limits: {{max_header_bytes: 8192}}
"
    );
    let org = "default: block
mandatory:
  - {id: malware, action: block, domains: [malware.test]}
  - {id: management, action: block, destinations: [10.0.0.0/8]}
baseline:
  - {id: social, action: block, categories: [social-media]}
"
    .to_owned();
    let agriculture = format!(
        "ministry: agriculture
default: block
rules:
  - {{id: origin, action: allow, hosts: [allowed.test, 127.0.0.1], ports: [{origin_port}]}}
  - {{id: reports, action: block, urls: ['http://allowed.test/private/'], ports: [{origin_port}]}}
"
    );
    let social = "domains: [facebook.com, xn--bcher-kva.example]\n".to_owned();
    [
        ("egressd.yaml", egressd),
        ("policies/_organization.yaml", org),
        ("policies/agriculture.yaml", agriculture),
        ("categories/social-media.yaml", social),
    ]
}

/// What one input did to the request path.
#[derive(Debug)]
pub struct Served {
    /// Every byte egressd wrote to the client.
    pub output: Vec<u8>,
}

/// The whole request path in-process: the real [`Shared`] state (snapshot, identity, policy,
/// decision cache, limiter, metrics, audit log to nowhere) and the real `serve_connection`, on
/// an in-memory stream (a tokio duplex) whose client side writes the input. A small origin on
/// 127.0.0.1 answers what is allowed, so forwarding and tunnels run too; its port is ephemeral,
/// so `:8080` in an input stands for it ([`RequestPath::ORIGIN_PORT_IN_INPUTS`]).
///
/// Run it on a current-thread runtime with paused time (`start_paused(true)`): the connection
/// then ends on egressd's own idle timeout as soon as nothing is left to do, without waiting
/// in real time, and the per-input bound ([`RequestPath::BOUND`]) is virtual time too.
pub struct RequestPath {
    shared: Arc<Shared>,
    origin_port: u16,
}

impl RequestPath {
    /// What inputs write for the origin's port (`GET http://allowed.test:8080/`); every
    /// `:8080` is replaced before the bytes are served.
    pub const ORIGIN_PORT_IN_INPUTS: &'static [u8] = b":8080";

    /// The longest an input may keep a connection busy (virtual time): above every timeout of
    /// the configuration, so reaching it means something waits on nothing.
    pub const BOUND: Duration = Duration::from_secs(60);

    /// Binds the origin and builds the server state (inside the runtime).
    pub async fn start() -> RequestPath {
        let origin = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("binding the fuzz origin on 127.0.0.1");
        let port = origin.local_addr().expect("origin address").port();
        tokio::spawn(serve_origin(origin));
        let tree = request_path_tree(port);
        let files: Vec<(&str, &str)> = tree.iter().map(|(p, t)| (*p, t.as_str())).collect();
        let loaded = config::load_from_strings(&files, Utc::now())
            .unwrap_or_else(|d| panic!("the fuzz configuration is invalid: {d:?}"));
        let metrics = Arc::new(Metrics::new());
        let snap = Snapshot::build(&loaded, 1, &metrics);
        metrics.install_snapshot(&snap);
        let audit = AuditLog::start(
            Sink::Writer(Box::new(std::io::sink())),
            1024,
            metrics.audit_counters(),
        );
        let shared = Arc::new(Shared::new(snap, Resolver::static_only(), metrics, audit));
        RequestPath {
            shared,
            origin_port: port,
        }
    }

    /// Serves `input` as everything one client sends on one connection, and reads what egressd
    /// answers until it closes the connection. Panics when that takes longer than
    /// [`Self::BOUND`], leaves the connection's slot taken, or the answer does not start with a
    /// status line.
    pub async fn serve(&self, input: &[u8]) -> Served {
        let peer = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 40000);
        let permit = (self.shared.limiter)
            .try_acquire(peer.ip())
            .expect("a free connection slot");
        let (client, server) = tokio::io::duplex(64 * 1024);
        let (mut from_proxy, mut to_proxy) = tokio::io::split(client);
        let input = with_origin_port(input, self.origin_port);
        let conn = listener::serve_connection(server, peer, self.shared.clone(), permit, None);
        // The client never closes its side: egressd must end the connection by itself
        // (answers with `Connection: close`, errors, or its idle timeout).
        let write = async move {
            let _ = to_proxy.write_all(&input).await;
            to_proxy
        };
        let read = async move {
            let mut output = Vec::new();
            let _ = from_proxy.read_to_end(&mut output).await;
            output
        };
        let all = async { tokio::join!(conn, write, read) };
        let (_, _held_open, output) = tokio::time::timeout(Self::BOUND, all)
            .await
            .unwrap_or_else(|_| panic!("the connection was still open after {:?}", Self::BOUND));
        // Tunnels run in their own tasks; give them the same bound to end.
        self.shared.tasks.close();
        let tunnels = tokio::time::timeout(Self::BOUND, self.shared.tasks.wait()).await;
        self.shared.tasks.reopen();
        assert!(tunnels.is_ok(), "a tunnel outlived {:?}", Self::BOUND);
        assert_eq!(self.shared.limiter.active(), 0, "a connection slot leaked");
        assert!(
            output.is_empty()
                || output.starts_with(b"HTTP/1.1 ")
                || output.starts_with(b"HTTP/1.0 "),
            "egressd wrote something other than a response: {:?}",
            String::from_utf8_lossy(&output[..output.len().min(200)])
        );
        Served { output }
    }
}

/// `input` with every [`RequestPath::ORIGIN_PORT_IN_INPUTS`] replaced by `:port`.
fn with_origin_port(input: &[u8], port: u16) -> Vec<u8> {
    let from = RequestPath::ORIGIN_PORT_IN_INPUTS;
    let to = format!(":{port}");
    let mut out = Vec::with_capacity(input.len() + 16);
    let mut rest = input;
    while let Some(i) = rest.windows(from.len()).position(|w| w == from) {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(to.as_bytes());
        rest = &rest[i + from.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// The origin of [`RequestPath`]: answers every request `200 ok` with hyper, keep-alive, and
/// whatever a tunnel sends it the same way (a tunnel's bytes are HTTP or garbage).
async fn serve_origin(listener: TcpListener) {
    use http_body_util::Full;
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    while let Ok((tcp, _)) = listener.accept().await {
        tokio::spawn(async move {
            let svc = service_fn(|_req| async {
                Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                    bytes::Bytes::from_static(b"ok"),
                )))
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trees_split_on_path_lines() {
        let t = split_tree("listen: {}\n#% policies/a.yaml\nministry: a\n#% categories/c.yml\n");
        assert_eq!(
            t,
            [
                ("egressd.yaml", "listen: {}\n"),
                ("policies/a.yaml", "ministry: a\n"),
                ("categories/c.yml", ""),
            ]
        );
        assert_eq!(split_tree(""), [("egressd.yaml", "")]);
    }

    #[test]
    fn inputs_name_the_origin_port_8080() {
        let out = with_origin_port(b"CONNECT a:8080 HTTP/1.1\r\nHost: a:8080\r\n", 41234);
        assert_eq!(out, b"CONNECT a:41234 HTTP/1.1\r\nHost: a:41234\r\n");
    }

    #[test]
    fn the_request_path_configuration_is_valid() {
        let tree = request_path_tree(8080);
        let files: Vec<(&str, &str)> = tree.iter().map(|(p, t)| (*p, t.as_str())).collect();
        let loaded = config::load_from_strings(&files, now()).unwrap();
        // Only the `urls:` block rule's warning; never a report-mode ministry, which would let
        // any destination through to the dialer.
        assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
        assert!((loaded.policy.ministries.iter())
            .all(|m| m.mode == crate::policy::model::Mode::Enforce));
    }
}
