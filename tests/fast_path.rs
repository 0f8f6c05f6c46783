//! The fast path (plain GET/HEAD on egressd's own HTTP/1.1 code, `proxy::fast`) against the
//! real server: every origin framing reaches the client correctly re-framed — the same as
//! through hyper (`forwarding.fast_path: false`) — and requests it leaves to hyper carry on
//! over the same client connection.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::origin;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A raw origin: answers each request with the canned bytes of its path (below), keeps the
/// connection unless the answer ends with the connection. Returns its address and the
/// connections it accepted.
async fn scripted_origin() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let a = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            a.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    while common::find(&buf, b"\r\n\r\n").is_none() {
                        let mut chunk = [0u8; 4096];
                        match tcp.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let end = common::find(&buf, b"\r\n\r\n").unwrap() + 4;
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    buf.drain(..end);
                    let path = head.split(' ').nth(1).unwrap_or("").to_owned();
                    let (answer, close) = script(&path);
                    if tcp.write_all(answer.as_bytes()).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

const DATE: &str = "Date: Thu, 01 Jan 2026 00:00:00 GMT\r\n";

/// The answer for a path, and whether the origin closes after it.
fn script(path: &str) -> (String, bool) {
    match path {
        "/chunked" => (
            format!("HTTP/1.1 200 OK\r\n{DATE}Transfer-Encoding: chunked\r\n\r\n4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nX-Trailer: t\r\n\r\n"),
            false,
        ),
        "/interim" => (
            format!("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\n{DATE}Content-Length: 2\r\n\r\nok"),
            false,
        ),
        "/both" => (
            format!("HTTP/1.1 200 OK\r\n{DATE}Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
            false,
        ),
        "/nodate" => ("HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nnodate".into(), false),
        "/close" => (format!("HTTP/1.1 200 OK\r\n{DATE}\r\nuntil close"), true),
        "/head" => (format!("HTTP/1.1 200 OK\r\n{DATE}Content-Length: 5\r\n\r\n"), false),
        "/gzip" => (
            format!("HTTP/1.1 200 OK\r\n{DATE}Transfer-Encoding: gzip\r\n\r\nxyz"),
            true,
        ),
        _ => ("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".into(), false),
    }
}

async fn get(s: &mut TcpStream, port: u16, path: &str) -> common::RawResponse {
    let req =
        format!("GET http://allowed.test:{port}{path} HTTP/1.1\r\nHost: allowed.test\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    common::read_response(s).await
}

/// Reads a response head only (the answer to a HEAD request has no body whatever its length).
async fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(s.read(&mut byte).await.unwrap(), 1, "connection closed");
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap().to_lowercase()
}

#[tokio::test]
async fn origin_framings_reach_the_client_re_framed_on_both_paths() {
    for extra in ["", "forwarding: {fast_path: false}"] {
        let (origin, accepted) = scripted_origin().await;
        let p = common::start(common::standard_tree(extra)).await;
        let port = origin.port();
        let mut s = TcpStream::connect(p.addr).await.unwrap();

        // Chunks (extension and trailer dropped) arrive as chunks; the connection is kept.
        let r = get(&mut s, port, "/chunked").await;
        assert_eq!((r.status, r.text().as_str()), (200, "Wikipedia"), "{extra}");
        assert_eq!(r.header("transfer-encoding"), Some("chunked"), "{extra}");
        assert!(r.header("x-trailer").is_none(), "{extra}");
        // An interim 103 is not passed on; the final answer is.
        let r = get(&mut s, port, "/interim").await;
        assert_eq!((r.status, r.text().as_str()), (200, "ok"), "{extra}");
        // No Date from the origin: the proxy adds one.
        let r = get(&mut s, port, "/nodate").await;
        assert_eq!(r.text(), "nodate", "{extra}");
        assert!(r.header("date").is_some(), "{extra}: {:?}", r.headers);
        if extra.is_empty() {
            // (hyper's client opens a second one here.)
            assert_eq!(
                accepted.load(Ordering::SeqCst),
                1,
                "one origin connection so far"
            );
        }
        // Both framings: the chunks win and the length is not passed on (RFC 9112 §6.3).
        let r = get(&mut s, port, "/both").await;
        assert_eq!(r.text(), "abc", "{extra}");
        assert!(r.header("content-length").is_none(), "{extra}");
        // A body that ends with the origin's connection reaches the client in chunks, and the
        // client's connection carries on.
        let r = get(&mut s, port, "/close").await;
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, "until close"),
            "{extra}"
        );
        assert_eq!(r.header("transfer-encoding"), Some("chunked"), "{extra}");
        // HEAD: the length as the origin gave it, no body.
        let req = format!("HEAD http://allowed.test:{port}/head HTTP/1.1\r\nHost: a\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let head = read_head(&mut s).await;
        assert!(head.starts_with("http/1.1 200"), "{extra}: {head}");
        assert!(head.contains("content-length: 5\r\n"), "{extra}: {head}");
        let r = get(&mut s, port, "/chunked").await;
        assert_eq!(
            r.text(),
            "Wikipedia",
            "{extra}: the HEAD answer had no body"
        );
    }
}

#[tokio::test]
async fn a_transfer_coding_other_than_chunked_is_a_502() {
    let (origin, _) = scripted_origin().await;
    let p = common::start(common::standard_tree("")).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    let r = get(&mut s, origin.port(), "/gzip").await;
    assert_eq!(r.status, 502);
    assert_eq!(common::error_type(&r), "http_protocol_error");
    // The client's connection is still good.
    let r = get(&mut s, origin.port(), "/nodate").await;
    assert_eq!(r.text(), "nodate");
}

/// GETs on the fast path, then a POST with a body (handed to hyper, with the bytes the fast
/// path had already read), then more on hyper, then a CONNECT tunnel: one client connection.
#[tokio::test]
async fn requests_left_to_hyper_carry_on_over_the_same_connection() {
    let o = origin::start().await;
    let port = o.addr.port();
    let tree = common::connect_tree(port, "", "");
    let p = common::start(tree).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    let url = format!("http://allowed.test:{port}");
    // A GET and a POST pipelined in one write: the POST's bytes are in the fast path's buffer
    // when it hands the connection over.
    let body = origin::pattern(100_000);
    let mut both = format!(
        "GET {url}/headers HTTP/1.1\r\nHost: a\r\n\r\nPOST {url}/upload HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    both.extend_from_slice(&body);
    s.write_all(&both).await.unwrap();
    let r = common::read_response(&mut s).await;
    assert!(r.text().starts_with("GET /headers\n"), "{}", r.text());
    let r = common::read_response(&mut s).await;
    assert_eq!(
        r.text(),
        format!("{} {:016x}", body.len(), origin::fnv1a(&body))
    );
    // hyper serves the rest: another GET, then a tunnel.
    s.write_all(format!("GET {url}/headers HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let r = common::read_response(&mut s).await;
    assert_eq!(r.status, 200);
    let target = format!("allowed.test:{port}");
    s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let r = common::read_response(&mut s).await;
    assert_eq!(r.status, 200);
    s.write_all(b"GET /bytes/70000 HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let r = common::read_response(&mut s).await;
    assert!(r.body == origin::pattern(70000), "tunnelled body differs");
}

/// A CONNECT whose first tunnel bytes arrive with the head, right after a fast-path GET: the
/// bytes read before the hand-over reach the origin in order.
#[tokio::test]
async fn tunnel_bytes_sent_with_the_connect_head_are_not_lost() {
    let o = origin::start().await;
    let port = o.addr.port();
    let tree = common::connect_tree(port, "", "");
    let p = common::start(tree).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    let target = format!("allowed.test:{port}");
    let first = format!(
        "GET http://{target}/headers HTTP/1.1\r\nHost: a\r\n\r\nCONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\nGET /bytes/5000 HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n"
    );
    s.write_all(first.as_bytes()).await.unwrap();
    let r = common::read_response(&mut s).await;
    assert!(r.text().starts_with("GET /headers\n"), "{}", r.text());
    let r = common::read_response(&mut s).await;
    assert_eq!(r.status, 200, "CONNECT");
    let r = tokio::time::timeout(Duration::from_secs(10), common::read_response(&mut s))
        .await
        .unwrap();
    assert!(r.body == origin::pattern(5000), "tunnelled body differs");
}

/// A drain lets the request in flight on a kept-alive connection finish, says in its answer
/// that the connection ends, and then closes it.
#[tokio::test]
async fn a_drain_finishes_the_request_in_flight_and_closes_the_connection() {
    for extra in ["", "forwarding: {fast_path: false}"] {
        let o = origin::start().await;
        let p = common::start(common::standard_tree(extra)).await;
        let mut s = TcpStream::connect(p.addr).await.unwrap();
        let url = format!("http://allowed.test:{}", o.addr.port());
        let r = get_url(&mut s, &format!("{url}/")).await;
        assert_eq!(r.status, 200, "{extra}");
        s.write_all(format!("GET {url}/sleep/400 HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (drained, r) = tokio::join!(
            p.server.shutdown(Duration::from_secs(5)),
            common::read_response(&mut s)
        );
        assert!(drained, "{extra}: the drain finished");
        assert_eq!((r.status, r.text().as_str()), (200, "slept"), "{extra}");
        assert_eq!(r.header("connection"), Some("close"), "{extra}");
        assert_closed(&mut s, extra).await;
    }
}

/// The proxy closed `s` (EOF or a reset within 5 s, no further byte).
async fn assert_closed(s: &mut TcpStream, extra: &str) {
    let mut rest = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut rest))
        .await
        .expect("closed within 5 s")
        .unwrap_or(0);
    assert_eq!(n, 0, "{extra}: the connection was closed");
}

async fn get_url(s: &mut TcpStream, url: &str) -> common::RawResponse {
    s.write_all(format!("GET {url} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes())
        .await
        .unwrap();
    common::read_response(s).await
}

/// A drain closes a kept-alive connection that waits for its next request at once (the
/// shutdown finishes, well within its grace), and the client reads the close.
#[tokio::test]
async fn a_drain_closes_an_idle_kept_alive_connection() {
    for extra in ["", "forwarding: {fast_path: false}"] {
        let o = origin::start().await;
        let p = common::start(common::standard_tree(extra)).await;
        let mut s = TcpStream::connect(p.addr).await.unwrap();
        let url = format!("http://allowed.test:{}/", o.addr.port());
        assert_eq!(get_url(&mut s, &url).await.status, 200, "{extra}");
        let drained = p.server.shutdown(Duration::from_secs(5)).await;
        assert!(drained, "{extra}: the idle connection held the drain up");
        assert_closed(&mut s, extra).await;
    }
}

/// A target httparse accepts but `http::Uri` refuses, after fast-path requests on the same
/// connection and pipelined with them: hyper gets it with every byte (its 400), and the
/// requests before it were answered.
#[tokio::test]
async fn a_target_the_uri_parser_refuses_mid_connection_goes_to_hyper_whole() {
    let o = origin::start().await;
    let port = o.addr.port();
    let p = common::start(common::standard_tree("")).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    for _ in 0..3 {
        assert_eq!(get(&mut s, port, "/").await.status, 200);
    }
    let good = format!("GET http://allowed.test:{port}/ HTTP/1.1\r\nHost: a\r\n\r\n");
    let pipelined = format!("{good}GET http://[::1:80/ HTTP/1.1\r\nHost: a\r\n\r\n");
    s.write_all(pipelined.as_bytes()).await.unwrap();
    assert_eq!(common::read_response(&mut s).await.status, 200);
    let r = common::read_response(&mut s).await;
    assert_eq!(r.status, 400, "{}", r.text());
}
