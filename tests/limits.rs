//! Limits against the real proxy on loopback: request head size, header count and request
//! line length (431/414 with `Proxy-Status` naming the limit, and hyper's own bare 431 beyond
//! its bound), a client dribbling its head, connection caps (`Retry-After`, slots freed on
//! close, tunnels holding their slot) and the tunnel idle time; and the settings' validation.
//! The keep-alive idle time, a stalled head and the basic caps are in `upstream_errors.rs`.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::obs;
use common::origin::{self, Origin};
use common::{Proxy, RawResponse};
use egressd::config::{self, Severity};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A GET to the origin with `headers` (each `Name: value`), exactly as written.
fn request(o: &Origin, path: &str, headers: &[String]) -> String {
    let mut r = format!(
        "GET http://allowed.test:{}{path} HTTP/1.1\r\n",
        o.addr.port()
    );
    for h in headers {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    r
}

/// Sends `req` on a new connection; returns the response and whether the proxy then closed.
async fn send(p: &Proxy, req: &str) -> (RawResponse, bool) {
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let r = common::read_response(&mut s).await;
    let mut buf = [0u8; 64];
    let closed = matches!(
        tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    );
    (r, closed)
}

/// A request on a connection kept open across the test: the proxy keeps serving it.
async fn still_served(s: &mut TcpStream, o: &Origin) {
    s.write_all(request(o, "/", &["Host: allowed.test".into()]).as_bytes())
        .await
        .unwrap();
    let r = common::read_response(s).await;
    assert_eq!((r.status, r.text().as_str()), (200, "hello"));
}

fn refused_by(r: &RawResponse, status: u16, limit: &str) {
    assert_eq!(r.status, status, "{r:?}");
    let want = format!("egressd; error=http_request_error; details=\"{limit}\"");
    assert_eq!(r.header("proxy-status"), Some(want.as_str()));
    assert_eq!(r.header("connection"), Some("close"));
}

#[tokio::test]
async fn request_head_size() {
    let o = origin::start().await;
    let p = common::start(common::standard_tree("limits: {max_header_bytes: 4096}")).await;
    let mut other = TcpStream::connect(p.addr).await.unwrap();
    still_served(&mut other, &o).await;
    let head = |size: usize| {
        let base = request(&o, "/", &["Host: allowed.test".into(), "X-Pad: ".into()]).len();
        let pad = "p".repeat(size - base);
        request(
            &o,
            "/",
            &["Host: allowed.test".into(), format!("X-Pad: {pad}")],
        )
    };
    assert_eq!(head(4096).len(), 4096);
    let (r, _) = send(&p, &head(4096)).await;
    assert_eq!(r.status, 200, "a head of exactly the limit passes");
    let (r, closed) = send(&p, &head(4097)).await;
    refused_by(&r, 431, "limits.max_header_bytes");
    assert!(closed, "the connection is closed after a 431");
    // Far over the limit, hyper's parser refuses the head while it is still arriving.
    let (r, closed) = send(&p, &head(20_000)).await;
    assert_eq!(r.status, 431);
    assert!(closed);
    still_served(&mut other, &o).await;
    // The refusal egressd answered is audited as a client error (hyper's own is not).
    let recs = obs::audit_records(&p, &[p.audit_path()], 3).await;
    let refused: Vec<_> = recs.iter().filter(|r| r["status"] == 431).collect();
    assert_eq!(refused.len(), 1, "{recs:?}");
    assert_eq!(refused[0]["error"], "http_request_error");
}

#[tokio::test]
async fn header_count() {
    let o = origin::start().await;
    let p = common::start(common::standard_tree("limits: {max_headers: 20}")).await;
    let mut other = TcpStream::connect(p.addr).await.unwrap();
    let head = |n: usize| {
        let mut h = vec!["Host: allowed.test".to_owned()];
        h.extend((1..n).map(|i| format!("X-H{i}: {i}")));
        request(&o, "/", &h)
    };
    let (r, _) = send(&p, &head(20)).await;
    assert_eq!(r.status, 200);
    let (r, closed) = send(&p, &head(21)).await;
    refused_by(&r, 431, "limits.max_headers");
    assert!(closed);
    // Beyond hyper's bound (an eighth over): its own 431.
    let (r, _) = send(&p, &head(200)).await;
    assert_eq!(r.status, 431);
    assert_eq!(r.header("proxy-status"), None);
    still_served(&mut other, &o).await;
}

#[tokio::test]
async fn request_line_length() {
    let o = origin::start().await;
    let p = common::start(common::standard_tree("limits: {max_request_line: 1024}")).await;
    let line = |len: usize| {
        let base = request(&o, "/", &[]).find("\r\n").unwrap();
        let path = format!("/{}", "a".repeat(len - base));
        request(&o, &path, &["Host: allowed.test".into()])
    };
    assert_eq!(line(1024).find("\r\n"), Some(1024));
    let (r, _) = send(&p, &line(1024)).await;
    assert_eq!(r.status, 200);
    let (r, closed) = send(&p, &line(1025)).await;
    refused_by(&r, 414, "limits.max_request_line");
    assert!(closed);
    // Through CONNECT too (authority-form).
    let long = format!("{}.test:443", "a".repeat(1010));
    let req = format!("CONNECT {long} HTTP/1.1\r\nHost: {long}\r\n\r\n");
    let (r, _) = send(&p, &req).await;
    refused_by(&r, 414, "limits.max_request_line");
}

#[tokio::test]
async fn dribbling_head_is_cut_while_others_are_served() {
    let o = origin::start().await;
    let p = common::start(common::standard_tree("timeouts: {request_header: 2s}")).await;
    let mut slow = TcpStream::connect(p.addr).await.unwrap();
    let started = Instant::now();
    let head = b"GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nX-Slow: 1\r\n\r\n";
    let mut sent = 0;
    let mut healthy_done = false;
    // One byte a second: every byte is activity, but the head has `request_header` in all.
    let cut = loop {
        if slow.write_all(&head[sent..sent + 1]).await.is_err() {
            break true;
        }
        sent += 1;
        if !healthy_done {
            still_served(&mut TcpStream::connect(p.addr).await.unwrap(), &o).await;
            healthy_done = true;
        }
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_secs(1), slow.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(_)) => panic!("an answer to an unfinished head"),
            Err(_) if sent == head.len() => break false,
            Err(_) => {}
        }
    };
    assert!(cut, "the dribbling client finished its head uncut");
    assert!(sent < 6, "cut after {sent} bytes");
    assert!(started.elapsed() < Duration::from_secs(8));
}

#[tokio::test]
async fn connection_caps_retry_after_and_slots_freed_on_close() {
    let o = origin::start().await;
    let p = common::start(common::standard_tree(
        "limits: {max_connections: 3, max_connections_per_client: 2}",
    ))
    .await;
    let get = request(&o, "/", &["Host: allowed.test".into()]);
    let a = common::connect_from("127.0.0.1", p.addr).await;
    let _b = common::connect_from("127.0.0.1", p.addr).await;
    let mut c = None;
    for (src, status, limit) in [
        ("127.0.0.1", 429, "limits.max_connections_per_client"),
        ("127.0.0.4", 503, "limits.max_connections"),
    ] {
        if status == 503 {
            c = Some(common::connect_from("127.0.0.3", p.addr).await);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        // A client that sends its request at once, as real ones do: it still reads the answer,
        // then an orderly close (not a reset that could destroy the answer).
        let mut s = common::connect_from(src, p.addr).await;
        s.write_all(get.as_bytes()).await.unwrap();
        let r = common::read_response(&mut s).await;
        assert_eq!(r.status, status);
        assert_eq!(r.header("retry-after"), Some("1"));
        let ps = format!("egressd; error=proxy_internal_error; details=\"{limit}\"");
        assert_eq!(r.header("proxy-status"), Some(ps.as_str()));
        let mut buf = [0u8; 16];
        let end = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
        assert!(matches!(end, Ok(Ok(0))), "{end:?}");
        // No reset followed: on some client systems it discards an answer not yet read.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            s.take_error().unwrap().is_none(),
            "the refused connection was reset"
        );
    }
    // Closing frees the slots: per client, then in total.
    drop(a);
    assert_eq!(get_from_eventually(&p, "127.0.0.1", &get).await, 200);
    drop(c);
    assert_eq!(get_from_eventually(&p, "127.0.0.4", &get).await, 200);
}

/// A GET from `src`, retried while the proxy still counts a connection that was just closed.
async fn get_from_eventually(p: &Proxy, src: &str, get: &str) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut s = common::connect_from(src, p.addr).await;
        s.write_all(get.as_bytes()).await.unwrap();
        let r = common::read_response(&mut s).await;
        if !matches!(r.status, 429 | 503) || Instant::now() > deadline {
            return r.status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The standard tree with CONNECT to the origin's port allowed and plain HTTP inside tunnels.
fn tunnel_tree(o: &Origin, extra: &str) -> common::ConfigTree {
    let yaml = common::egressd_yaml(extra).replace(
        "egress:\n  allow_private_cidrs: [127.0.0.0/8]\n",
        &format!(
            "egress:\n  allow_private_cidrs: [127.0.0.0/8]\n  connect_ports: [{}]\ntunnel:\n  allow_non_tls: true\n",
            o.addr.port()
        ),
    );
    common::tree_with(&yaml)
}

/// An open tunnel to the origin, checked by one request through it.
async fn tunnel(proxy: SocketAddr, o: &Origin) -> TcpStream {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    let target = format!("allowed.test:{}", o.addr.port());
    s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    assert_eq!(common::read_response(&mut s).await.status, 200);
    through(&mut s).await;
    s
}

/// One request to the origin inside a tunnel.
async fn through(s: &mut TcpStream) {
    s.write_all(b"GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
        .await
        .unwrap();
    let r = common::read_response(s).await;
    assert_eq!((r.status, r.text().as_str()), (200, "hello"));
}

#[tokio::test]
async fn tunnels_hold_their_connection_slot() {
    let o = origin::start().await;
    let p = common::start(tunnel_tree(&o, "limits: {max_connections_per_client: 2}")).await;
    let first = tunnel(p.addr, &o).await;
    let mut second = tunnel(p.addr, &o).await;
    let m = obs::scrape(&p).await;
    let active = obs::value(&m, "egressd_connections_active", &[("listener", "proxy")]);
    assert_eq!(active, Some(2.0), "open tunnels are open connections");
    let get = request(&o, "/", &["Host: allowed.test".into()]);
    let (r, _) = send(&p, &get).await;
    assert_eq!(
        r.status, 429,
        "two tunnels are this client's two connections"
    );
    drop(first);
    assert_eq!(get_from_eventually(&p, "127.0.0.1", &get).await, 200);
    through(&mut second).await;
}

#[tokio::test]
async fn tunnel_idle_time() {
    let o = origin::start().await;
    // `tunnel_idle` shorter than `idle`: a silent tunnel is cut after it...
    let p = common::start(tunnel_tree(&o, "timeouts: {idle: 30s, tunnel_idle: 1s}")).await;
    let mut busy = tunnel(p.addr, &o).await;
    let mut quiet = tunnel(p.addr, &o).await;
    // ...but not one that keeps moving bytes, for longer than that in all.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        through(&mut busy).await;
    }
    let mut buf = [0u8; 16];
    let end = tokio::time::timeout(Duration::from_secs(5), quiet.read(&mut buf)).await;
    assert!(
        matches!(end, Ok(Ok(0)) | Ok(Err(_))),
        "idle tunnel not closed: {end:?}"
    );
    // Its record is written when it closes.
    let recs = obs::audit_records(&p, &[p.audit_path()], 2).await;
    assert!(recs.iter().any(|r| r["method"] == "CONNECT"), "{recs:?}");

    // `tunnel_idle` longer than `idle`: a tunnel outlives the keep-alive idle time.
    let p = common::start(tunnel_tree(&o, "timeouts: {idle: 1s, tunnel_idle: 30s}")).await;
    let mut s = tunnel(p.addr, &o).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    through(&mut s).await;
}

#[test]
fn limit_settings_are_validated_with_locations() {
    let tree = common::ConfigTree::new(
        "listen: {proxy: 127.0.0.1:0, admin: 127.0.0.1:0}\n\
         timeouts:\n  tunnel_idle: 0s\n\
         limits:\n  max_headers: 2\n  max_request_line: 100\n\
         dns:\n  servers: [10.0.0.53, \"[::1]:5353\", ns.example, \"127.0.0.1:0\"]\n",
        &[],
    );
    let errors: Vec<String> = match config::load(&tree.config_path()) {
        Ok(_) => panic!("loaded"),
        Err(d) => d
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(|d| format!("{}:{}: {}", d.line, d.column, d.message))
            .collect(),
    };
    let want = [
        "3:16: invalid duration `0s`: must be greater than zero",
        "5:16: `max_headers` must be at least 8, got 2",
        "6:21: `max_request_line` must be at least 256, got 100",
        "8:38: invalid address `ns.example`",
        "8:50: port 0 out of range",
    ];
    for w in want {
        assert!(
            errors.iter().any(|e| e.starts_with(w)),
            "missing {w:?} in {errors:#?}"
        );
    }
    assert_eq!(errors.len(), want.len(), "{errors:#?}");
}

#[test]
fn limit_settings_defaults_and_values() {
    let tree = common::ConfigTree::new(
        "listen: {proxy: 127.0.0.1:0, admin: 127.0.0.1:0}\ntimeouts: {idle: 7s}\n",
        &[],
    );
    let s = config::load(&tree.config_path()).unwrap().settings;
    assert_eq!(
        s.timeouts.tunnel_idle,
        Duration::from_secs(7),
        "defaults to idle"
    );
    assert_eq!(
        (s.limits.max_headers, s.limits.max_request_line),
        (100, 8192)
    );
    assert!(s.dns.servers.is_empty());
    let tree = common::ConfigTree::new(
        "listen: {proxy: 127.0.0.1:0}\ntimeouts: {tunnel_idle: 10m}\n\
         dns: {servers: [10.0.0.53, \"[::1]:5353\"]}\n",
        &[],
    );
    let s = config::load(&tree.config_path()).unwrap().settings;
    assert_eq!(s.timeouts.tunnel_idle, Duration::from_secs(600));
    let servers: Vec<SocketAddr> = vec![
        "10.0.0.53:53".parse().unwrap(),
        "[::1]:5353".parse().unwrap(),
    ];
    assert_eq!(s.dns.servers, servers);
}
