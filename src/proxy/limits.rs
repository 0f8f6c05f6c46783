//! The limits a client runs into before anything is decided for it.
//!
//! - Connection caps: a total (`limits.max_connections`) and one per client address
//!   (`limits.max_connections_per_client`). A connection holds a [`ConnPermit`] for its life;
//!   the per-client counters live in a dashmap whose guards never outlive the call that takes
//!   them. Both caps are atomics, so a reload changes them for new connections without a
//!   restart.
//! - Request heads: `limits.max_request_line` (414), `limits.max_headers` and
//!   `limits.max_header_bytes` (431), checked by [`check_head`] on the head hyper parsed, so
//!   the answer comes from `respond` with its `Proxy-Status` naming the limit. hyper's parser
//!   is configured an eighth above each limit ([`parser_bound`]): that bounds what one
//!   connection can make egressd buffer, and a head beyond it is refused by hyper itself
//!   (a bare 431, no `Proxy-Status`) before it is read whole. hyper has no request-line
//!   setting of its own; the head bound covers it.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use http::{Request, StatusCode, Uri};

use crate::config::settings::Limits;
use crate::metrics::ConnectionGuard;

#[derive(Debug)]
pub struct ConnLimiter {
    total: AtomicUsize,
    max_total: AtomicUsize,
    max_per_client: AtomicUsize,
    per_client: DashMap<IpAddr, usize>,
    /// Refused connections being answered and closed (see [`ConnLimiter::try_linger`]).
    lingering: AtomicUsize,
}

/// The most refused connections answered at once; beyond, they are closed without an answer,
/// so a flood of connections over the caps cannot hold more sockets than this.
pub const MAX_LINGERING: usize = 256;

/// Why a connection was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The proxy is full: 503.
    Total,
    /// This client holds too many connections: 429.
    PerClient,
}

impl ConnLimiter {
    pub fn new(max_total: usize, max_per_client: usize) -> Arc<Self> {
        Arc::new(ConnLimiter {
            total: AtomicUsize::new(0),
            max_total: AtomicUsize::new(max_total),
            max_per_client: AtomicUsize::new(max_per_client),
            per_client: DashMap::new(),
            lingering: AtomicUsize::new(0),
        })
    }

    /// A place to answer one refused connection, unless [`MAX_LINGERING`] are being answered.
    pub fn try_linger(self: &Arc<Self>) -> Option<Lingering> {
        if self.lingering.fetch_add(1, Ordering::AcqRel) >= MAX_LINGERING {
            self.lingering.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Lingering(self.clone()))
    }

    /// New caps from a reloaded configuration; connections already open keep their slots.
    pub fn set_limits(&self, max_total: usize, max_per_client: usize) {
        self.max_total.store(max_total, Ordering::Relaxed);
        self.max_per_client.store(max_per_client, Ordering::Relaxed);
    }

    pub fn active(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    pub fn try_acquire(self: &Arc<Self>, client: IpAddr) -> Result<ConnPermit, Refusal> {
        if self.total.fetch_add(1, Ordering::AcqRel) >= self.max_total.load(Ordering::Relaxed) {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::Total);
        }
        {
            let mut n = self.per_client.entry(client).or_insert(0);
            if *n >= self.max_per_client.load(Ordering::Relaxed) {
                drop(n);
                self.total.fetch_sub(1, Ordering::AcqRel);
                return Err(Refusal::PerClient);
            }
            *n += 1;
        }
        Ok(ConnPermit {
            limiter: self.clone(),
            client,
        })
    }
}

/// Held while a refused connection is answered; see [`ConnLimiter::try_linger`].
#[derive(Debug)]
pub struct Lingering(Arc<ConnLimiter>);

impl Drop for Lingering {
    fn drop(&mut self) {
        self.0.lingering.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What an open client connection holds: its [`ConnPermit`] and its count in
/// `egressd_connections_active`. It lives in the connection's I/O object
/// ([`super::activity::TrackedIo::holding`]), so it is released when the socket is, and a
/// connection upgraded to a tunnel keeps its slot until the tunnel closes.
pub struct ConnSlot {
    permit: ConnPermit,
    _active: ConnectionGuard,
}

impl ConnSlot {
    pub fn new(permit: ConnPermit, active: ConnectionGuard) -> ConnSlot {
        ConnSlot {
            permit,
            _active: active,
        }
    }
}

impl std::fmt::Debug for ConnSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnSlot")
            .field("client", &self.permit.client)
            .finish()
    }
}

/// Held by a connection; releases its slots when dropped.
#[derive(Debug)]
pub struct ConnPermit {
    limiter: Arc<ConnLimiter>,
    client: IpAddr,
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        self.limiter.total.fetch_sub(1, Ordering::AcqRel);
        // Remove the entry at zero so the map does not grow with every client ever seen.
        self.limiter.per_client.remove_if_mut(&self.client, |_, n| {
            *n -= 1;
            *n == 0
        });
    }
}

/// Which head limit a request broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadRefusal {
    RequestLine,
    HeaderCount,
    HeaderBytes,
}

impl HeadRefusal {
    pub fn status(self) -> StatusCode {
        match self {
            HeadRefusal::RequestLine => StatusCode::URI_TOO_LONG,
            HeadRefusal::HeaderCount | HeadRefusal::HeaderBytes => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
        }
    }

    /// The setting, as written in `egressd.yaml` (the `Proxy-Status` details).
    pub fn setting(self) -> &'static str {
        match self {
            HeadRefusal::RequestLine => "limits.max_request_line",
            HeadRefusal::HeaderCount => "limits.max_headers",
            HeadRefusal::HeaderBytes => "limits.max_header_bytes",
        }
    }
}

/// What hyper's parser is allowed for a `limit`: an eighth more, so every head up to the limit
/// reaches [`check_head`] (which counts a head as sent with single spaces, never more than its
/// wire size), and a head well over it is cut while it is still arriving.
pub fn parser_bound(limit: usize) -> usize {
    limit.saturating_add(limit / 8)
}

/// Checks a parsed request head against the head limits, most specific first. Sizes are those
/// of the head as a client normally writes it (`Name: value` lines, CRLF endings); extra
/// whitespace a client adds around values is not counted, and is bounded by [`parser_bound`].
pub fn check_head<B>(req: &Request<B>, limits: &Limits) -> Result<(), HeadRefusal> {
    check_head_sized(req, HeadSize::of(req.headers()), limits)
}

/// [`check_head`] with the header fields already measured (the fast path measures them from
/// the bytes it parsed, and hands the service only the fields it reads).
pub fn check_head_sized<B>(
    req: &Request<B>,
    size: HeadSize,
    limits: &Limits,
) -> Result<(), HeadRefusal> {
    // "METHOD SP target SP HTTP/1.1"
    let line = req.method().as_str().len() + 1 + target_len(req.uri()) + 1 + 8;
    if line > limits.max_request_line {
        return Err(HeadRefusal::RequestLine);
    }
    if size.fields > limits.max_headers {
        return Err(HeadRefusal::HeaderCount);
    }
    // The request line's CRLF and the empty line that ends the head.
    if line + 2 + size.bytes + 2 > limits.max_header_bytes {
        return Err(HeadRefusal::HeaderBytes);
    }
    Ok(())
}

/// A head's header fields: how many, and their bytes as `Name: value` lines with CRLF.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeadSize {
    pub fields: usize,
    pub bytes: usize,
}

impl HeadSize {
    pub fn of(headers: &http::HeaderMap) -> HeadSize {
        HeadSize {
            fields: headers.len(),
            bytes: headers
                .iter()
                .map(|(name, value)| HeadSize::line(name.as_str().len(), value.len()))
                .sum(),
        }
    }

    /// The bytes of one field line.
    pub fn line(name: usize, value: usize) -> usize {
        name + 2 + value + 2
    }
}

/// The request target's length as sent: absolute-form, authority-form (CONNECT) or
/// origin-form.
fn target_len(uri: &Uri) -> usize {
    uri.scheme_str().map_or(0, |s| s.len() + 3)
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path_and_query().map_or(0, |p| p.as_str().len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(line: usize, count: usize, bytes: usize) -> Limits {
        Limits {
            max_request_line: line,
            max_headers: count,
            max_header_bytes: bytes,
            ..Limits::default()
        }
    }

    #[test]
    fn head_sizes_are_counted_as_sent() {
        let target = "http://a.test/0123456789";
        let req = Request::get(target)
            .header("host", "a.test")
            .header("x-a", "1")
            .header("x-a", "2")
            .body(())
            .unwrap();
        // "GET http://a.test/0123456789 HTTP/1.1" is 37 bytes; the fields 14 + 8 + 8.
        let head = 37 + 2 + 14 + 8 + 8 + 2;
        assert_eq!(check_head(&req, &limits(37, 3, head)), Ok(()));
        assert_eq!(
            check_head(&req, &limits(36, 3, head)),
            Err(HeadRefusal::RequestLine)
        );
        assert_eq!(
            check_head(&req, &limits(37, 2, head)),
            Err(HeadRefusal::HeaderCount),
            "a repeated field counts each time"
        );
        assert_eq!(
            check_head(&req, &limits(37, 3, head - 1)),
            Err(HeadRefusal::HeaderBytes)
        );
        let connect = Request::connect("a.test:443").body(()).unwrap();
        // "CONNECT a.test:443 HTTP/1.1"
        assert_eq!(check_head(&connect, &limits(27, 1, 31)), Ok(()));
        assert_eq!(
            check_head(&connect, &limits(26, 1, 31)),
            Err(HeadRefusal::RequestLine)
        );
        assert_eq!(HeadRefusal::HeaderBytes.status().as_u16(), 431);
        assert_eq!(parser_bound(65_536), 73_728);
    }

    #[test]
    fn caps_and_release() {
        let l = ConnLimiter::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let p1 = l.try_acquire(a).unwrap();
        let _p2 = l.try_acquire(a).unwrap();
        assert_eq!(l.try_acquire(a).unwrap_err(), Refusal::PerClient);
        let _p3 = l.try_acquire(b).unwrap();
        assert_eq!(l.try_acquire(b).unwrap_err(), Refusal::Total);
        drop(p1);
        assert_eq!(l.active(), 2);
        let _p4 = l.try_acquire(a).unwrap();
        drop(_p4);
        drop(_p2);
        assert!(l.per_client.get(&a).is_none(), "zero counters are removed");
    }
}
