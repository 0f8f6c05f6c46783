//! Connections to origins for plain-HTTP forwarding: a pool of idle HTTP/1.1 connections keyed
//! by the *checked* socket address, and the [`Upstream`] a request holds while it uses one.
//!
//! Why not hyper-util's pooled client: it runs every origin connection in a task of its own, so
//! each request crossed tasks (and often threads) three times — request in, response head out,
//! every body chunk out — and its checkout raced a speculative new connection against the pool.
//! Here the request's own task drives the origin connection: [`Upstream::request`] polls it
//! beside the response future, and the response body ([`super::body::ProxyBody`]) polls it while
//! hyper writes the body to the client. An idle connection sits in the pool un-polled; checkout
//! polls it once to see whether the origin closed it meanwhile, and a request that a stale
//! connection refused before a byte was written is retried once on a new connection.
//!
//! The pool only ever holds connections to addresses that passed the egress guard (the caller
//! dials the address it checked), so reuse never bypasses the guard.

use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::dial::{self, DialError};
use super::observe::MeteredBody;
use super::respond::ErrorType;

type Sender = http1::SendRequest<MeteredBody>;
type Connection = http1::Connection<TokioIo<TcpStream>, MeteredBody>;

/// An idle connection older than this is closed rather than reused (origins commonly close
/// theirs after 60–120 s; a connection they closed is also caught at checkout).
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle connections kept per origin address; more are closed when they come back.
const MAX_IDLE_PER_ADDR: usize = 256;

/// Why an upstream exchange failed before the response head arrived.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error(transparent)]
    Dial(#[from] DialError),
    #[error("origin exchange failed: {0}")]
    Http(#[from] hyper::Error),
}

impl UpstreamError {
    /// The RFC 9209 error type for the client.
    pub fn error_type(&self) -> ErrorType {
        match self {
            UpstreamError::Dial(d) => d.error_type(),
            UpstreamError::Http(h) if h.is_parse() || h.is_parse_status() => {
                ErrorType::HttpProtocolError
            }
            UpstreamError::Http(h) if h.is_incomplete_message() => {
                ErrorType::HttpResponseIncomplete
            }
            UpstreamError::Http(h) if h.is_timeout() => ErrorType::HttpResponseTimeout,
            UpstreamError::Http(_) => ErrorType::ConnectionTerminated,
        }
    }
}

/// One HTTP/1.1 connection to an origin, driven by whoever holds it.
pub struct Upstream {
    addr: SocketAddr,
    send: Sender,
    conn: Pin<Box<Connection>>,
    /// The connection future finished (origin closed, error, or `Connection: close`).
    done: bool,
}

impl Upstream {
    /// Polls the connection: reads and writes on the origin socket happen here.
    pub fn drive(&mut self, cx: &mut Context<'_>) {
        if !self.done && self.conn.as_mut().poll(cx).is_ready() {
            self.done = true;
        }
    }

    /// Sends `req` and drives the connection until the response head arrives. On a connection
    /// that turned out closed before the request was written, the request comes back in
    /// `Err(Some(req))` so it can be sent elsewhere.
    async fn request(
        &mut self,
        req: Request<MeteredBody>,
    ) -> Result<Response<Incoming>, (hyper::Error, Option<Request<MeteredBody>>)> {
        // A pooled connection was polled at checkout and is ready; only a new one needs the
        // connection polled before it takes a request.
        let ready = poll_fn(|cx| match self.send.poll_ready(cx) {
            Poll::Ready(r) => Poll::Ready(r),
            Poll::Pending => {
                self.drive(cx);
                self.send.poll_ready(cx)
            }
        })
        .await;
        if let Err(e) = ready {
            return Err((e, Some(req)));
        }
        let resp = self.send.try_send_request(req);
        tokio::pin!(resp);
        poll_fn(|cx| {
            self.drive(cx);
            resp.as_mut().poll(cx)
        })
        .await
        .map_err(|mut e| {
            let req = e.take_message();
            (e.into_error(), req)
        })
    }

    /// Whether the connection is still usable, after polling it once without a waker (this is
    /// how an origin's close of an idle connection is noticed).
    fn alive(&mut self) -> bool {
        self.drive(&mut Context::from_waker(Waker::noop()));
        !self.done && !self.send.is_closed()
    }
}

thread_local! {
    /// The pool of a per-core runtime thread ([`set_thread_pool`]).
    static THREAD_POOL: std::cell::RefCell<Option<Arc<Pool>>> = const { std::cell::RefCell::new(None) };
}

/// Makes `pool` the one connections accepted on this thread use: a per-core runtime keeps its
/// origin connections to itself, so their I/O never wakes another thread.
pub fn set_thread_pool(pool: Arc<Pool>) {
    THREAD_POOL.with(|p| *p.borrow_mut() = Some(pool));
}

/// This thread's pool, when it has one.
pub fn thread_pool() -> Option<Arc<Pool>> {
    THREAD_POOL.with(|p| p.borrow().clone())
}

/// Idle origin connections, shared by all client connections (of a per-core thread).
pub struct Pool {
    idle: Mutex<HashMap<SocketAddr, Vec<(Upstream, Instant)>>>,
    /// `timeouts.connect` in milliseconds; a reload changes it.
    connect_timeout_ms: Arc<AtomicU64>,
}

impl Pool {
    pub fn new(connect_timeout_ms: Arc<AtomicU64>) -> Arc<Self> {
        Arc::new(Pool {
            idle: Mutex::new(HashMap::new()),
            connect_timeout_ms,
        })
    }

    /// Sends `req` to the first of the checked addresses `addrs` (port `port`) that has an idle
    /// connection or answers a new one, and returns the response head with the connection the
    /// body still needs.
    pub async fn send(
        self: &Arc<Self>,
        addrs: &[IpAddr],
        port: u16,
        mut req: Request<MeteredBody>,
    ) -> Result<(Response<Incoming>, Lease), UpstreamError> {
        let mut pooled = true;
        loop {
            let reused = pooled
                .then(|| {
                    let mut idle = addrs.iter().map(|ip| SocketAddr::new(*ip, port));
                    idle.find_map(|addr| self.checkout(addr))
                })
                .flatten();
            let fresh = reused.is_none();
            let mut up = match reused {
                Some(up) => up,
                None => self.connect(addrs, port).await?,
            };
            match up.request(req).await {
                Ok(resp) => {
                    let lease = Lease {
                        up: Some(up),
                        pool: self.clone(),
                    };
                    return Ok((resp, lease));
                }
                // A pooled connection the origin had closed: the request was not written, so
                // it goes out on a new connection (once; a new connection failing is an answer).
                Err((_, Some(back))) if !fresh => {
                    req = back;
                    pooled = false;
                }
                Err((e, _)) => return Err(UpstreamError::Http(e)),
            }
        }
    }

    async fn connect(&self, addrs: &[IpAddr], port: u16) -> Result<Upstream, UpstreamError> {
        let timeout = Duration::from_millis(self.connect_timeout_ms.load(Relaxed));
        let (tcp, addr) = dial::connect_any(addrs, port, timeout).await?;
        let (send, conn) = http1::Builder::new()
            .handshake(TokioIo::new(tcp))
            .await
            .map_err(UpstreamError::Http)?;
        Ok(Upstream {
            addr,
            send,
            conn: Box::pin(conn),
            done: false,
        })
    }

    /// The most recently used live idle connection to `addr` (warm in every cache).
    fn checkout(&self, addr: SocketAddr) -> Option<Upstream> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(&addr)?;
        while let Some((mut up, since)) = list.pop() {
            if since.elapsed() < IDLE_TIMEOUT && up.alive() {
                return Some(up);
            }
        }
        None
    }

    /// Not polled here: checkout polls it anyway (that is where an origin's close is seen),
    /// and a connection whose response said `Connection: close` is noticed there or by the
    /// sweep. Polling on both ends cost a pass through hyper's dispatcher per request.
    fn checkin(&self, up: Upstream) {
        if up.done || up.send.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.entry(up.addr).or_default();
        if list.len() < MAX_IDLE_PER_ADDR {
            list.push((up, Instant::now()));
        }
    }

    /// Closes idle connections that expired or that their origin closed, so sockets in
    /// CLOSE_WAIT do not pile up between requests. Called periodically by the app.
    pub fn sweep(&self) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.retain(|_, list| {
            list.retain_mut(|(up, since)| since.elapsed() < IDLE_TIMEOUT && up.alive());
            !list.is_empty()
        });
    }

    /// Idle connections held, for tests and diagnostics.
    pub fn idle_count(&self) -> usize {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.values().map(Vec::len).sum()
    }
}

/// The origin connection a response body is still being read from. The body drives it; once
/// the body has been read to its end the connection goes back to the pool, otherwise (client
/// gone mid-body, origin error) it is closed.
pub struct Lease {
    up: Option<Upstream>,
    pool: Arc<Pool>,
}

impl Lease {
    pub fn drive(&mut self, cx: &mut Context<'_>) {
        if let Some(up) = &mut self.up {
            up.drive(cx);
        }
    }

    /// The body was read to its end: the connection can serve another request.
    pub fn release(&mut self) {
        if let Some(up) = self.up.take() {
            self.pool.checkin(up);
        }
    }
}
