//! Faults against the real proxy on loopback: an origin that refuses, never answers, answers
//! slowly, or resets mid-body; a name that does not resolve; a DNS server that never answers.
//! Each gets the right status and RFC 9209 `Proxy-Status` error type, is counted in
//! `egressd_upstream_errors_total` and audited with its error, while a healthy request on
//! another connection is served at the same time.
//!
//! A panic while serving one connection is shown not to take the listener down by
//! `proxy::listener::tests::a_panicking_connection_leaves_the_listener_serving` (it needs a
//! connection whose I/O panics, which only an in-crate test can hand to the listener);
//! [`release_builds_unwind`] keeps that true for the shipped binary.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::obs::{self, Sample};
use common::origin::{self, Framing, Origin};
use common::{error_type, Proxy, RawResponse};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn upstream_errors(m: &[Sample], error: &str) -> f64 {
    obs::value(m, "egressd_upstream_errors_total", &[("error", error)]).unwrap_or(0.0)
}

/// A request to the healthy origin, on its own connection.
async fn healthy(p: &Proxy, o: &Origin) {
    let url = format!("http://allowed.test:{}/healthy", o.addr.port());
    let r = common::get(p.addr, &url, "").await;
    assert_eq!((r.status, r.text().as_str()), (200, "hello"));
}

/// The audit record of the request to `path` (waits for `want` records in all).
async fn audited(p: &Proxy, want: usize, path: &str) -> serde_json::Value {
    let recs = obs::audit_records(p, &[p.audit_path()], want).await;
    recs.into_iter()
        .find(|r| r["path"] == path)
        .unwrap_or_else(|| panic!("no audit record for {path}"))
}

/// The fault's answer, metric and audit record; the healthy request's record is there too.
async fn assert_fault(p: &Proxy, before: &[Sample], r: &RawResponse, status: u16, error: &str) {
    assert_eq!((r.status, error_type(r).as_str()), (status, error), "{r:?}");
    let after = obs::scrape(p).await;
    assert_eq!(
        upstream_errors(&after, error) - upstream_errors(before, error),
        1.0,
        "egressd_upstream_errors_total{{error=\"{error}\"}}"
    );
    let rec = audited(p, 2, "/fault").await;
    assert_eq!(rec["status"], status);
    assert_eq!(rec["error"], error);
    let ok = audited(p, 2, "/healthy").await;
    assert_eq!(ok["status"], 200);
    assert!(ok.get("error").is_none_or(|e| e.is_null()), "{ok}");
}

/// Starts the faulty request, shows a healthy request is answered while it is still pending,
/// then returns the faulty request's answer.
async fn pending_while_healthy(p: &Proxy, o: &Origin, url: String) -> RawResponse {
    let addr = p.addr;
    let fault = tokio::spawn(async move { common::get(addr, &url, "").await });
    // Let the faulty request reach its wait (connect, DNS or response head) first.
    tokio::time::sleep(Duration::from_millis(200)).await;
    healthy(p, o).await;
    assert!(
        !fault.is_finished(),
        "the fault should still be pending while the healthy request is served"
    );
    fault.await.unwrap()
}

#[tokio::test]
async fn origin_refuses() {
    let o = origin::start().await;
    let p = common::start(common::standard_tree("")).await;
    let before = obs::scrape(&p).await;
    let url = format!("http://allowed.test:{}/fault", origin::closed_port().port());
    let (r, ()) = tokio::join!(common::get(p.addr, &url, ""), healthy(&p, &o));
    assert_fault(&p, &before, &r, 502, "connection_refused").await;
}

/// A name whose first address refuses connections is served from the next one, on both plain
/// paths: a GET (the fast path, twice on one connection) and a POST (hyper). 127.0.0.2 is
/// routed on loopback but the origin listens on 127.0.0.1 only.
#[tokio::test]
async fn a_refusing_first_address_falls_back_to_the_next() {
    let o = origin::start().await;
    let yaml = common::egressd_yaml("").replace(
        "dns:\n  static:\n",
        "dns:\n  static:\n    multi.test: [127.0.0.2, 127.0.0.1]\n",
    );
    let p = common::start(common::tree_with(&yaml)).await;
    let url = format!("http://multi.test:{}", o.addr.port());
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    for _ in 0..2 {
        let head = format!("GET {url}/healthy HTTP/1.1\r\nHost: multi.test\r\n\r\n");
        s.write_all(head.as_bytes()).await.unwrap();
        let r = common::read_response(&mut s).await;
        assert_eq!((r.status, r.text().as_str()), (200, "hello"), "{r:?}");
    }
    let post = format!(
        "POST {url}/upload HTTP/1.1\r\nHost: multi.test\r\nContent-Length: 2\r\n\
         Connection: close\r\n\r\nhi"
    );
    let r = common::raw(p.addr, post.as_bytes()).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.text().starts_with("2 "), "{r:?}");
}

#[tokio::test]
async fn origin_never_answers() {
    let o = origin::start().await;
    let silent = origin::silent().await;
    let p = common::start(common::standard_tree("timeouts: {response_header: 2s}")).await;
    let before = obs::scrape(&p).await;
    let url = format!("http://allowed.test:{}/fault", silent.port());
    let r = pending_while_healthy(&p, &o, url).await;
    assert_fault(&p, &before, &r, 504, "http_response_timeout").await;
}

/// `response_header` runs from each request's start on a kept-alive connection (the fast path
/// keeps one timer per connection and moves it for every request): a request that starts
/// late in the first request's window gets its whole window, and a silent origin still gets
/// a 504 after the timer already went off once while the connection was idle.
#[tokio::test]
async fn the_response_timeout_restarts_with_each_request_on_a_connection() {
    let o = origin::start().await;
    let silent = origin::silent().await;
    let p = common::start(common::standard_tree("timeouts: {response_header: 2s}")).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    let get = async |s: &mut TcpStream, port: u16, path: &str| {
        let head = format!("GET http://allowed.test:{port}{path} HTTP/1.1\r\nHost: x\r\n\r\n");
        s.write_all(head.as_bytes()).await.unwrap();
        let started = std::time::Instant::now();
        let r = common::read_response(s).await;
        (r, started.elapsed())
    };
    let (r, _) = get(&mut s, o.addr.port(), "/healthy").await;
    assert_eq!(r.status, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (r, _) = get(&mut s, o.addr.port(), "/sleep/1000").await;
    assert_eq!((r.status, r.text().as_str()), (200, "slept"), "{r:?}");
    // Idle past the timer's last deadline, then an origin that never answers.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (r, took) = get(&mut s, silent.port(), "/fault").await;
    assert_eq!(
        (r.status, error_type(&r).as_str()),
        (504, "http_response_timeout")
    );
    assert!(
        took >= Duration::from_millis(1900),
        "answered after {took:?}"
    );
}

#[tokio::test]
async fn slow_origin_within_the_timeouts_is_served_whole() {
    let o = origin::start().await;
    let p = common::start(common::standard_tree("timeouts: {response_header: 3s}")).await;
    let before = obs::scrape(&p).await;
    // A slow head, within `response_header`.
    let url = format!("http://allowed.test:{}/sleep/1000", o.addr.port());
    let r = pending_while_healthy(&p, &o, url).await;
    assert_eq!((r.status, r.text().as_str()), (200, "slept"));
    // A slow body: taking longer in all than `response_header`, which bounds only the head.
    let p2 = common::start(common::standard_tree("timeouts: {response_header: 1s}")).await;
    let url = format!("http://allowed.test:{}/drip/6/300", o.addr.port());
    let r = common::get(p2.addr, &url, "").await;
    assert_eq!(r.status, 200);
    let want: String = (0..6).map(|i| format!("line {i}\n")).collect();
    assert_eq!(r.text(), want);
    let after = obs::scrape(&p).await;
    assert_eq!(
        obs::sum(&after, "egressd_upstream_errors_total", &[]),
        obs::sum(&before, "egressd_upstream_errors_total", &[])
    );
    let rec = audited(&p, 2, "/sleep/1000").await;
    assert_eq!(rec["status"], 200);
    assert!(rec.get("error").is_none_or(|e| e.is_null()));
}

/// Reads until the proxy ends the connection: (head, body bytes, whether it ended in a reset).
async fn read_until_closed(s: &mut TcpStream) -> (String, Vec<u8>, bool) {
    let mut all = Vec::new();
    let mut buf = vec![0u8; 65536];
    let reset = loop {
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
            Err(_) => panic!("the proxy kept a broken response open: {} bytes", all.len()),
            Ok(Ok(0)) => break false,
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
            Ok(Err(_)) => break true,
        }
    };
    let end = common::find(&all, b"\r\n\r\n").expect("a response head") + 4;
    let head = String::from_utf8_lossy(&all[..end]).to_lowercase();
    (head, all[end..].to_vec(), reset)
}

#[tokio::test]
async fn origin_resets_mid_body() {
    let o = origin::start().await;
    for framing in [Framing::ContentLength, Framing::Chunked] {
        let (addr, broken) = origin::resetting(framing).await;
        let p = common::start(common::standard_tree("")).await;
        let before = obs::scrape(&p).await;
        let mut s = TcpStream::connect(p.addr).await.unwrap();
        let req = format!(
            "GET http://allowed.test:{}/fault HTTP/1.1\r\nHost: allowed.test\r\n\r\n",
            addr.port()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let ((head, body, _), ()) = tokio::join!(read_until_closed(&mut s), healthy(&p, &o));
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert_eq!(broken.load(Ordering::SeqCst), 1);
        // The client can tell the body is cut: the connection ends before the declared length
        // (Content-Length) or without the last chunk (chunked), never as a complete message.
        match framing {
            Framing::ContentLength => {
                let declared = format!("content-length: {}", origin::RESET_DECLARED);
                assert!(head.contains(&declared), "{head}");
                assert!(body.len() < origin::RESET_DECLARED, "{}", body.len());
            }
            Framing::Chunked => {
                assert!(head.contains("transfer-encoding: chunked"), "{head}");
                assert!(!body.ends_with(b"0\r\n\r\n"), "a clean end of a cut body");
            }
        }
        let after = obs::scrape(&p).await;
        let error = "http_response_incomplete";
        assert_eq!(
            upstream_errors(&after, error) - upstream_errors(&before, error),
            1.0,
            "{framing:?}"
        );
        let rec = audited(&p, 2, "/fault").await;
        assert_eq!(
            (rec["status"].as_u64(), rec["error"].as_str()),
            (Some(200), Some(error))
        );
    }
}

#[tokio::test]
async fn name_that_does_not_resolve() {
    let o = origin::start().await;
    // `.invalid` fails without a lookup (RFC 6761).
    let p = common::start(common::standard_tree("")).await;
    let before = obs::scrape(&p).await;
    let url = "http://nowhere.invalid/fault";
    let (r, ()) = tokio::join!(common::get(p.addr, url, ""), healthy(&p, &o));
    assert_fault(&p, &before, &r, 502, "dns_error").await;

    // A real lookup answered NXDOMAIN by the configured name server.
    let (dns, answered) = origin::dns_nxdomain().await;
    let p = common::start(with_dns_servers(&format!("[{dns}]"), "")).await;
    let before = obs::scrape(&p).await;
    let url = "http://no-such-name.example/fault";
    let (r, ()) = tokio::join!(common::get(p.addr, url, ""), healthy(&p, &o));
    assert!(
        answered.load(Ordering::SeqCst) >= 1,
        "dns.servers was not asked"
    );
    assert_fault(&p, &before, &r, 502, "dns_error").await;
}

#[tokio::test]
async fn dns_server_never_answers() {
    let o = origin::start().await;
    let dns = origin::dns_silent().await;
    // DNS lookups are bounded by `timeouts.connect`.
    let p = common::start(with_dns_servers(
        &format!("[{dns}]"),
        "timeouts: {connect: 2s}",
    ))
    .await;
    let before = obs::scrape(&p).await;
    let r = pending_while_healthy(&p, &o, "http://slow-dns.example/fault".into()).await;
    assert_fault(&p, &before, &r, 504, "dns_timeout").await;
}

/// The standard tree with `dns.servers` set (the static names still answer first).
fn with_dns_servers(servers: &str, extra: &str) -> common::ConfigTree {
    let yaml = common::egressd_yaml(extra).replace(
        "dns:\n  static:\n",
        &format!("dns:\n  servers: {servers}\n  static:\n"),
    );
    assert!(yaml.contains("servers:"));
    common::tree_with(&yaml)
}

/// A panic in a connection task is contained only if panics unwind: no profile may abort.
#[test]
fn release_builds_unwind() {
    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .expect("Cargo.toml");
    let aborts = manifest
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").replace(' ', ""))
        .any(|l| l.starts_with("panic=") && l.contains("abort"));
    assert!(!aborts, "a profile sets panic = \"abort\"");
}
