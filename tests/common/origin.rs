//! A real HTTP/1.1 origin on 127.0.0.1 (hyper), recording what reaches it.
//!
//! Paths: `/headers` echoes the request line and headers as text; `/bytes/N` streams N bytes of
//! a fixed pattern; `/upload` answers the length and FNV-1a hash of the request body;
//! `/sleep/MS` answers after MS milliseconds. Anything else: 200 "hello".

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
