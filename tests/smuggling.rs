//! Request smuggling and request parsing, end to end: raw bytes from a TCP client, the real
//! proxy, and a raw TCP origin that frames requests itself (as a backend would) and records
//! every request head it reads. Whatever a client sends as ONE message, the origin must never
//! read two requests from it; malformed framing, header bytes and authorities are refused
//! with a 4xx (RFC 9209 `Proxy-Status` when egressd answers itself, hyper's bare 400 when
//! its parser refuses first), and the proxy keeps serving other clients afterwards.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One request as the raw origin framed it.
#[derive(Clone, Debug)]
struct Seen {
    head: String,
    body: Vec<u8>,
}

/// A raw TCP origin on 127.0.0.1: reads request heads, frames bodies with `Transfer-Encoding:
/// chunked` or `Content-Length` (chunked first, as RFC 9112 §6.3 says), answers `200 ok`, and
/// keeps the connection for the next request. Whatever it cannot frame ends the connection.
struct RawOrigin {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    connections: Arc<AtomicUsize>,
}

impl RawOrigin {
    async fn start() -> RawOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (s, c) = (seen.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(tcp, s.clone()));
            }
        });
        RawOrigin {
            addr,
            seen,
            connections,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

async fn serve(tcp: TcpStream, seen: Arc<Mutex<Vec<Seen>>>) {
    let mut r = BufReader::new(tcp);
    loop {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            match r.read_line(&mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line == "\r\n" || line == "\n" {
                break;
            }
            head.push_str(&line);
        }
        let header = |name: &str| -> Vec<String> {
            head.lines()
                .skip(1)
                .filter_map(|l| l.split_once(':'))
                .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_owned())
                .collect()
        };
        let chunked = header("transfer-encoding")
            .iter()
            .any(|v| v.to_ascii_lowercase().contains("chunked"));
        let length = header("content-length").first().map(|v| v.parse::<usize>());
        let body = if chunked {
            read_chunked(&mut r).await
        } else {
            match length {
                Some(Ok(n)) => {
                    let mut b = vec![0; n];
                    r.read_exact(&mut b).await.ok().map(|_| b)
                }
                Some(Err(_)) => None,
                None => Some(Vec::new()),
            }
        };
        let complete = body.is_some();
        seen.lock().unwrap().push(Seen {
            head: head.clone(),
            body: body.unwrap_or_default(),
        });
        if !complete {
            return;
        }
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        if r.get_mut().write_all(ok).await.is_err() {
            return;
        }
    }
}

async fn read_chunked(r: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).await.ok()?;
        let size = line.trim_end().split(';').next()?;
        let size = usize::from_str_radix(size.trim(), 16).ok()?;
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                let mut t = String::new();
                if r.read_line(&mut t).await.ok()? == 0 {
                    return None;
                }
                if t == "\r\n" {
                    return Some(body);
                }
            }
        }
        let mut chunk = vec![0; size + 2];
        r.read_exact(&mut chunk).await.ok()?;
        body.extend_from_slice(&chunk[..size]);
    }
}

/// A response as the client read it.
#[derive(Debug)]
struct Resp {
    status: u16,
    head: String,
}

impl Resp {
    fn proxy_status(&self) -> Option<&str> {
        self.head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.eq_ignore_ascii_case("proxy-status"))
            .map(|(_, v)| v.trim())
    }
}

/// Sends `msg` on a new connection and reads every response until the proxy closes the
/// connection (bounded: 10 s, after which the connection counts as left open).
async fn exchange(proxy: SocketAddr, msg: &[u8]) -> (Vec<Resp>, bool) {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(msg).await.unwrap();
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        let mut chunk = [0u8; 8192];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .is_ok();
    (parse_responses(&buf), closed)
}

/// Splits what the client read into responses (every response here has a Content-Length).
fn parse_responses(mut buf: &[u8]) -> Vec<Resp> {
    let mut out = Vec::new();
    while let Some(end) = common::find(buf, b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap();
        let len = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .map_or(0, |(_, v)| v.trim().parse::<usize>().unwrap());
        buf = &buf[(end + 4 + len).min(buf.len())..];
        out.push(Resp { status, head });
    }
    out
}

/// The standard tree (agriculture on loopback, `allowed.test` → 127.0.0.1) with CONNECT to the
/// origin's port allowed and non-TLS tunnels let through, so only parsing decides.
async fn proxy(origin_port: u16) -> common::Proxy {
    let extra = format!(
        "egress:\n  allow_private_cidrs: [127.0.0.0/8]\n  connect_ports: [443, {origin_port}]\ntunnel:\n  allow_non_tls: true\n"
    );
    let yaml = common::egressd_yaml("")
        .replace("egress:\n  allow_private_cidrs: [127.0.0.0/8]\n", "")
        + &extra;
    common::start(common::tree_with(&yaml)).await
}

/// A well-formed request on a new connection still goes through, and reaches the origin once.
async fn still_serves(p: &common::Proxy, o: &RawOrigin) {
    let before = o.count();
    let url = format!("http://allowed.test:{}/after", o.addr.port());
    let r = common::get(p.addr, &url, "").await;
    assert_eq!(r.status, 200, "a good request after a bad one");
    assert_eq!(o.count(), before + 1);
}

/// Sends one malformed message and checks that egressd answered it alone with `status` (and
/// `Proxy-Status` error type `ps` when egressd, not hyper's parser, answers), closed the
/// connection, and that nothing reached the origin, not even a connection.
async fn refused(p: &common::Proxy, o: &RawOrigin, msg: &str, status: u16, ps: Option<&str>) {
    let (seen, conns) = (o.count(), o.connections.load(Ordering::SeqCst));
    let (resps, closed) = exchange(p.addr, msg.as_bytes()).await;
    assert_eq!(resps.len(), 1, "one answer to {msg:?}: {resps:?}");
    assert_eq!(resps[0].status, status, "{msg:?}: {resps:?}");
    if let Some(ps) = ps {
        let got = resps[0].proxy_status().unwrap_or_default();
        assert!(got.contains(&format!("error={ps}")), "{msg:?}: {got}");
    }
    assert!(closed, "the connection is closed after {msg:?}");
    assert_eq!(o.count(), seen, "nothing reached the origin for {msg:?}");
    assert_eq!(o.connections.load(Ordering::SeqCst), conns, "{msg:?}");
}

/// Sends one message that is accepted (it asks `Connection: close`) and returns what the origin
/// read because of it, after checking that the client got exactly one `200`.
async fn accepted(p: &common::Proxy, o: &RawOrigin, msg: &str) -> Vec<Seen> {
    let before = o.count();
    let (resps, closed) = exchange(p.addr, msg.as_bytes()).await;
    assert_eq!(resps.len(), 1, "one answer to {msg:?}: {resps:?}");
    assert_eq!(resps[0].status, 200, "{msg:?}: {resps:?}");
    assert!(closed, "{msg:?}");
    o.seen()[before..].to_vec()
}

fn header_lines(head: &str, name: &str) -> usize {
    head.lines()
        .filter(|l| {
            l.split_once(':')
                .is_some_and(|(k, _)| k.eq_ignore_ascii_case(name))
        })
        .count()
}

/// CL.TE and TE.CL: a chunked body that ends early, followed by a second request. hyper frames
/// by the coding, drops the length and closes the connection after the answer, so the origin
/// reads exactly one request, chunked, without a Content-Length, and never the smuggled one.
#[tokio::test]
async fn content_length_with_transfer_encoding_never_smuggles() {
    let o = RawOrigin::start().await;
    let p = proxy(o.addr.port()).await;
    let h = format!("allowed.test:{}", o.addr.port());
    let smuggled = format!("GET http://{h}/smuggled HTTP/1.1\r\nHost: {h}\r\n\r\n");
    for framing in [
        "Content-Length: 4\r\nTransfer-Encoding: chunked",
        "Transfer-Encoding: chunked\r\nContent-Length: 48",
        "Content-Length: 0\r\nTransfer-Encoding: chunked\r\nContent-Length: 0",
    ] {
        let msg = format!(
            "POST http://{h}/first HTTP/1.1\r\nHost: {h}\r\n{framing}\r\n\r\n0\r\n\r\n{smuggled}"
        );
        let before = o.count();
        let (resps, closed) = exchange(p.addr, msg.as_bytes()).await;
        let statuses: Vec<u16> = resps.iter().map(|r| r.status).collect();
        assert_eq!(statuses, [200], "{framing:?}");
        assert!(closed, "{framing:?}: the connection must not be reused");
        let seen = &o.seen()[before..];
        assert_eq!(seen.len(), 1, "{framing:?}: {seen:?}");
        assert!(seen[0].head.starts_with("POST /first "), "{seen:?}");
        assert_eq!(header_lines(&seen[0].head, "content-length"), 0);
        assert_eq!(header_lines(&seen[0].head, "transfer-encoding"), 1);
        assert!(seen[0].body.is_empty());
    }
    assert!(o.seen().iter().all(|s| !s.head.contains("smuggled")));
    still_serves(&p, &o).await;
}

#[tokio::test]
async fn content_length_conflicts_are_refused_and_duplicates_merged() {
    let o = RawOrigin::start().await;
    let p = proxy(o.addr.port()).await;
    let h = format!("allowed.test:{}", o.addr.port());
    for cl in [
        "Content-Length: 3\r\nContent-Length: 4",
        "Content-Length: 4, 4",
        "Content-Length: +4",
        "Content-Length: -4",
        "Content-Length: 0x4",
        "Content-Length: 4 4",
        "Content-Length: 18446744073709551616",
    ] {
        let msg = format!("POST http://{h}/ HTTP/1.1\r\nHost: {h}\r\n{cl}\r\n\r\nabcd");
        refused(&p, &o, &msg, 400, None).await;
    }
    // Identical duplicates are one length (RFC 9110 §8.6), forwarded once.
    let msg = format!("POST http://{h}/dup HTTP/1.1\r\nHost: {h}\r\nContent-Length: 4\r\nContent-Length: 4\r\nConnection: close\r\n\r\nabcd");
    let seen = accepted(&p, &o, &msg).await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(header_lines(&seen[0].head, "content-length"), 1);
    assert_eq!(seen[0].body, b"abcd");
    still_serves(&p, &o).await;
}

#[tokio::test]
async fn transfer_codings_other_than_one_chunked_are_refused() {
    let o = RawOrigin::start().await;
    let p = proxy(o.addr.port()).await;
    let h = format!("allowed.test:{}", o.addr.port());
    let body = "4\r\nabcd\r\n0\r\n\r\n";
    let post = |version: &str, te: &str| {
        format!("POST http://{h}/ HTTP/{version}\r\nHost: {h}\r\n{te}\r\n\r\n{body}")
    };
    let cases = [
        // Understood framing, unknown coding: egressd answers 501 (RFC 9112 §6.1).
        (
            "1.1",
            "Transfer-Encoding: gzip, chunked",
            501,
            Some("http_request_error"),
        ),
        (
            "1.1",
            "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked",
            501,
            Some("http_request_error"),
        ),
        // Chunked twice: 400 from egressd.
        (
            "1.1",
            "Transfer-Encoding: chunked, chunked",
            400,
            Some("http_request_error"),
        ),
        (
            "1.1",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
            400,
            Some("http_request_error"),
        ),
        // Chunked not last, or obfuscated: hyper's parser refuses.
        ("1.1", "Transfer-Encoding: chunked, identity", 400, None),
        ("1.1", "Transfer-Encoding: xchunked", 400, None),
        (
            "1.1",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity",
            400,
            None,
        ),
        ("1.1", "Transfer-Encoding : chunked", 400, None),
        ("1.1", "Transfer-Encoding: \"chunked\"", 400, None),
        ("1.1", " Transfer-Encoding: chunked", 400, None),
        ("1.0", "Transfer-Encoding: chunked", 400, None),
    ];
    for (version, te, status, ps) in cases {
        refused(&p, &o, &post(version, te), status, ps).await;
    }
    // Whitespace around the value is optional whitespace (a tab included): plain chunked.
    let te = "Transfer-Encoding:\tChunked \r\nConnection: close";
    let seen = accepted(&p, &o, &post("1.1", te)).await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].body, b"abcd");
    still_serves(&p, &o).await;
}

#[tokio::test]
async fn obs_fold_and_invalid_header_bytes_are_refused() {
    let o = RawOrigin::start().await;
    let p = proxy(o.addr.port()).await;
    let h = format!("allowed.test:{}", o.addr.port());
    for header in [
        "X-A: a\r\n b",
        "X-A: a\r\n\tb",
        "X-A: a\0b",
        "X-A: a\rb",
        "X-A: a\r",
        "X A: b",
        "X(A): b",
        "X@A: b",
        "X\x7fA: b",
        ": empty-name",
        "X-A b",
    ] {
        let msg = format!("GET http://{h}/ HTTP/1.1\r\nHost: {h}\r\n{header}\r\n\r\n");
        refused(&p, &o, &msg, 400, None).await;
    }
    for line in [
        format!("GET  http://{h}/ HTTP/1.1"),
        format!("GET http://{h}/ HTTP/1.1 "),
        format!("GET http://{h}/\0 HTTP/1.1"),
        format!("GET http://{h}/ HTTP/1.1\rX"),
        format!("G\x01T http://{h}/ HTTP/1.1"),
    ] {
        let msg = format!("{line}\r\nHost: {h}\r\n\r\n");
        refused(&p, &o, &msg, 400, None).await;
    }
    // A bare LF ends a line (RFC 9112 §2.2 lets a recipient accept it); the request that reaches
    // the origin is rebuilt with CRLF, so the origin cannot read it differently.
    let msg = format!("GET http://{h}/lf HTTP/1.1\nHost: {h}\nX-A: b\nConnection: close\n\n");
    let seen = accepted(&p, &o, &msg).await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].head.starts_with("GET /lf HTTP/1.1\r\n"), "{seen:?}");
    // Field names keep the client's case on the fast path, and are lower-cased by hyper.
    let head = seen[0].head.to_ascii_lowercase();
    assert!(head.contains("\r\nx-a: b\r\n"), "{seen:?}");
    still_serves(&p, &o).await;
}

#[tokio::test]
async fn bad_absolute_form_authorities_are_refused() {
    let o = RawOrigin::start().await;
    let p = proxy(o.addr.port()).await;
    let port = o.addr.port();
    let e = Some("http_request_error");
    let cases: Vec<(String, Option<&str>)> = vec![
        (format!("http://a@allowed.test:{port}/"), e),
        (
            format!("http://allowed.test:{port}@allowed.test:{port}/"),
            e,
        ),
        (format!("http://user:pw@allowed.test:{port}/"), e),
        ("http://:80/".into(), e),
        ("http:///x".into(), None),
        ("http://allowed.test:99999/".into(), e),
        ("http://allowed.test:65536/".into(), e),
        ("http://allowed.test:+80/".into(), e),
        (format!("http://allowed.test:{port}:{port}/"), None),
        ("http://[::1:80/".into(), None),
        ("http://allowed%2etest/".into(), None),
        ("http://allowed .test/".into(), None),
        ("http://allowed\\.test/".into(), None),
        ("http://allowed.test\u{0}/".into(), None),
    ];
    for (url, ps) in cases {
        let msg = format!("GET {url} HTTP/1.1\r\nHost: x\r\n\r\n");
        refused(&p, &o, &msg, 400, ps).await;
    }
    still_serves(&p, &o).await;
}

#[tokio::test]
async fn bad_connect_authorities_and_connect_content_are_refused() {
    let o = RawOrigin::start().await;
    let p = proxy(o.addr.port()).await;
    let h = format!("allowed.test:{}", o.addr.port());
    let e = Some("http_request_error");
    let cases: Vec<(String, Option<&str>)> = vec![
        ("allowed.test".into(), e),
        ("allowed.test:".into(), e),
        ("allowed.test:0".into(), e),
        ("allowed.test:99999".into(), e),
        (":443".into(), e),
        ("/x".into(), e),
        (format!("http://{h}/"), e),
        (format!("a@{h}"), e),
        (format!("{h}/x"), None),
        ("[::1:443".into(), None),
        ("allowed%2etest:443".into(), None),
    ];
    for (target, ps) in cases {
        let msg = format!("CONNECT {target} HTTP/1.1\r\nHost: x\r\n\r\n");
        refused(&p, &o, &msg, 400, ps).await;
    }
    // A CONNECT has no content: its bytes must not reach the tunnel as if sent after the 200.
    for content in [
        "Content-Length: 5\r\n\r\nhello".to_owned(),
        "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_owned(),
    ] {
        let msg = format!("CONNECT {h} HTTP/1.1\r\nHost: {h}\r\n{content}");
        refused(&p, &o, &msg, 400, e).await;
    }
    still_serves(&p, &o).await;
}

/// A body that holds a complete request is a body: the origin reads one request with those
/// bytes as its content, and the next request on the connection (really pipelined) is the
/// second and last one.
#[tokio::test]
async fn a_request_inside_a_body_stays_a_body() {
    let o = RawOrigin::start().await;
    let p = proxy(o.addr.port()).await;
    let h = format!("allowed.test:{}", o.addr.port());
    let inner =
        format!("GET http://{h}/smuggled HTTP/1.1\r\nHost: {h}\r\nContent-Length: 0\r\n\r\n");
    let chunked = format!("{:x}\r\n{inner}\r\n0\r\n\r\n", inner.len());
    let last = format!("GET http://{h}/last HTTP/1.1\r\nHost: {h}\r\nConnection: close\r\n\r\n");
    for (framing, body) in [
        (format!("Content-Length: {}", inner.len()), inner.clone()),
        ("Transfer-Encoding: chunked".to_owned(), chunked),
    ] {
        let before = o.count();
        let msg = format!(
            "POST http://{h}/upload HTTP/1.1\r\nHost: {h}\r\n{framing}\r\n\r\n{body}{last}"
        );
        let (resps, closed) = exchange(p.addr, msg.as_bytes()).await;
        let statuses: Vec<u16> = resps.iter().map(|r| r.status).collect();
        assert_eq!(statuses, [200, 200], "{framing}");
        assert!(closed);
        let seen = &o.seen()[before..];
        let lines: Vec<&str> = seen
            .iter()
            .map(|s| s.head.lines().next().unwrap())
            .collect();
        assert_eq!(
            lines,
            ["POST /upload HTTP/1.1", "GET /last HTTP/1.1"],
            "{framing}"
        );
        assert_eq!(seen[0].body, inner.as_bytes(), "{framing}");
    }
    assert!(o.seen().iter().all(|s| !s.head.contains("smuggled")));
}
