//! A real HTTP/1.1 origin on 127.0.0.1 (hyper), recording what reaches it, and origins that
//! misbehave: one that never answers ([`silent`]), one that resets mid-body ([`resetting`]), an
//! address where nothing listens ([`closed_port`]), and DNS servers that answer NXDOMAIN
//! ([`dns_nxdomain`]) or nothing ([`dns_silent`]).
//!
//! Paths: `/headers` echoes the request line and headers as text; `/bytes/N` streams N bytes of
//! a fixed pattern; `/upload` answers the length and FNV-1a hash of the request body;
//! `/sleep/MS` answers after MS milliseconds; `/drip/N/MS` answers at once, then sends its
//! body as N lines `line I`, one every MS milliseconds. Anything else: 200 "hello".

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

pub struct Origin {
    pub addr: SocketAddr,
    /// Connections accepted so far (keep-alive and pooling show up as fewer connections).
    pub connections: Arc<AtomicUsize>,
    /// Request lines seen, e.g. "GET /headers".
    pub requests: Arc<Mutex<Vec<String>>>,
}

pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

pub fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x100000001b3)
    })
}

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

pub async fn start() -> Origin {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let (c, r) = (connections.clone(), requests.clone());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            c.fetch_add(1, Ordering::SeqCst);
            let r = r.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| handle(req, r.clone()));
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    Origin {
        addr,
        connections,
        requests,
    }
}

async fn handle(
    req: Request<Incoming>,
    seen: Arc<Mutex<Vec<String>>>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    seen.lock()
        .unwrap()
        .push(format!("{} {}", req.method(), req.uri()));
    let full = |s: Vec<u8>| Full::new(Bytes::from(s)).boxed();
    let resp = if path == "/headers" {
        let mut s = format!("{} {}\n", req.method(), req.uri());
        for (k, v) in req.headers() {
            s.push_str(&format!("{}: {}\n", k, v.to_str().unwrap_or("?")));
        }
        Response::new(full(s.into_bytes()))
    } else if let Some(n) = path.strip_prefix("/bytes/") {
        let n: usize = n.parse().unwrap();
        let data = pattern(n);
        // Stream in 64 KiB frames with no Content-Length: chunked through the proxy.
        let frames: Vec<Result<Frame<Bytes>, Infallible>> = data
            .chunks(64 * 1024)
            .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        Response::new(StreamBody::new(futures_stream(frames)).boxed())
    } else if path == "/upload" {
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Response::new(full(
            format!("{} {:016x}", body.len(), fnv1a(&body)).into_bytes(),
        ))
    } else if let Some(spec) = path.strip_prefix("/drip/") {
        let (n, ms) = spec.split_once('/').unwrap();
        let (n, ms): (usize, u64) = (n.parse().unwrap(), ms.parse().unwrap());
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            for i in 0..n {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                let line = Bytes::from(format!("line {i}\n"));
                if tx.send(Ok(Frame::data(line))).await.is_err() {
                    return;
                }
            }
        });
        Response::new(StreamBody::new(Recv(rx)).boxed())
    } else if let Some(ms) = path.strip_prefix("/sleep/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap())).await;
        Response::new(full(b"slept".to_vec()))
    } else {
        let mut r = Response::new(full(b"hello".to_vec()));
        r.headers_mut()
            .insert("connection", "keep-alive, x-origin-hop".parse().unwrap());
        r.headers_mut()
            .insert("x-origin-hop", "secret".parse().unwrap());
        r.headers_mut()
            .insert("keep-alive", "timeout=5".parse().unwrap());
        r
    };
    Ok(resp)
}

fn futures_stream(
    frames: Vec<Result<Frame<Bytes>, Infallible>>,
) -> impl futures_core::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send + Sync + 'static {
    Iter(frames.into_iter())
}

struct Iter<I>(I);

impl<I: Iterator + Unpin> futures_core::Stream for Iter<I> {
    type Item = I::Item;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<I::Item>> {
        std::task::Poll::Ready(self.0.next())
    }
}

/// A stream of the frames a task sends.
struct Recv(tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, Infallible>>);

impl futures_core::Stream for Recv {
    type Item = Result<Frame<Bytes>, Infallible>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

/// How [`resetting`] frames the body it breaks off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    ContentLength,
    Chunked,
}

/// Reads from `tcp` until a request head is complete (`\r\n\r\n`); `false` when the client
/// closed or failed first. For raw test origins that answer without looking at the request.
pub async fn read_head(tcp: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    true
}

/// The body [`resetting`] declares (Content-Length) and the part of it sent before the reset.
pub const RESET_DECLARED: usize = 100_000;
pub const RESET_SENT: usize = 1000;

/// An origin that reads a request head, answers 200 with a body of [`RESET_DECLARED`] bytes,
/// sends [`RESET_SENT`] of them, and resets the connection (`SO_LINGER` 0: a TCP RST, not a
/// FIN). Returns its address and the number of connections it broke.
pub async fn resetting(framing: Framing) -> (SocketAddr, Arc<AtomicUsize>) {
    use tokio::io::AsyncWriteExt;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let broken = Arc::new(AtomicUsize::new(0));
    let b = broken.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let b = b.clone();
            tokio::spawn(async move {
                if !read_head(&mut tcp).await {
                    return;
                }
                let part = pattern(RESET_SENT);
                let mut out = match framing {
                    Framing::ContentLength => {
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {RESET_DECLARED}\r\n\r\n")
                            .into_bytes()
                    }
                    Framing::Chunked => {
                        let mut h =
                            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
                        h.extend_from_slice(format!("{RESET_DECLARED:x}\r\n").as_bytes());
                        h
                    }
                };
                out.extend_from_slice(&part);
                if tcp.write_all(&out).await.is_err() {
                    return;
                }
                // Let the bytes reach the proxy before the reset (a reset can discard data
                // still in flight).
                tokio::time::sleep(Duration::from_millis(100)).await;
                tcp.set_zero_linger().unwrap();
                b.fetch_add(1, Ordering::SeqCst);
                drop(tcp);
            });
        }
    });
    (addr, broken)
}

/// A DNS server on UDP that answers every query `NXDOMAIN` (the name does not exist).
/// Returns its address and the number of queries it answered.
pub async fn dns_nxdomain() -> (SocketAddr, Arc<AtomicUsize>) {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let answered = Arc::new(AtomicUsize::new(0));
    let a = answered.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            if let Some(answer) = nxdomain(&buf[..n]) {
                a.fetch_add(1, Ordering::SeqCst);
                let _ = sock.send_to(&answer, from).await;
            }
        }
    });
    (addr, answered)
}

/// The `NXDOMAIN` answer to a query: its id and question, no records (RFC 1035 §4.1).
fn nxdomain(query: &[u8]) -> Option<Vec<u8>> {
    let mut end = 12;
    loop {
        let len = *query.get(end)? as usize;
        end += 1 + len;
        if len == 0 {
            break;
        }
    }
    end += 4; // QTYPE, QCLASS
    let question = query.get(12..end)?;
    let mut out = Vec::with_capacity(end);
    out.extend_from_slice(&query[..2]); // id
    out.push(0x80 | (query[2] & 0x79)); // QR, the query's opcode and RD
    out.push(0x80 | 3); // RA, RCODE 3: NXDOMAIN
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // one question, no records
    out.extend_from_slice(question);
    Some(out)
}

/// A DNS server address on UDP that receives queries and never answers (DNS timeouts).
pub async fn dns_silent() -> SocketAddr {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while sock.recv_from(&mut buf).await.is_ok() {}
    });
    addr
}

/// A TCP server that accepts and never answers (response-header timeouts).
pub async fn silent() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    addr
}

/// An address where nothing listens (connection refused).
pub fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    a
}
