//! The one response body type of the proxy: either a streamed upstream body or a small body
//! egressd made up itself. It carries the connection's [`RequestGuard`], so the request counts
//! as in flight until hyper has written (or dropped) the whole body, and the request's
//! [`Exchange`], which counts the bytes sent and writes the audit record when the body is
//! dropped. A made-up answer also carries its RFC 9209 error type, for the audit record and
//! metrics (in the body rather than the response's `Extensions`, whose map costs three
//! allocations per answer).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use super::activity::RequestGuard;
use super::observe::Exchange;
use super::respond::ErrorType;
use super::upstream::Lease;

pub struct ProxyBody {
    inner: Inner,
    _guard: Option<RequestGuard>,
    exchange: Option<Exchange>,
    error: Option<ErrorType>,
}

enum Inner {
    Upstream(UpstreamBody),
    Local(Full<Bytes>),
    Empty,
}

impl ProxyBody {
    /// An origin's response body, read from the connection `lease` holds.
    pub fn upstream(body: Incoming, lease: Lease, guard: Option<RequestGuard>) -> Self {
        ProxyBody {
            inner: Inner::Upstream(UpstreamBody {
                body,
                lease,
                ended: false,
            }),
            _guard: guard,
            exchange: None,
            error: None,
        }
    }

    /// A response egressd made up itself ([`super::respond`]), with the error type it reports
    /// (`None` for a success or a challenge that is not a failure).
    pub fn answer(body: Full<Bytes>, error: Option<ErrorType>) -> Self {
        ProxyBody {
            inner: Inner::Local(body),
            _guard: None,
            exchange: None,
            error,
        }
    }

    /// The error type of a made-up answer.
    pub fn error(&self) -> Option<ErrorType> {
        self.error
    }

    /// Makes the request count as in flight until this body is done.
    pub fn with_guard(mut self, guard: RequestGuard) -> Self {
        self._guard = Some(guard);
        self
    }

    /// Attaches the request's exchange (metrics and audit record).
    pub fn with_exchange(mut self, exchange: Exchange) -> Self {
        self.exchange = Some(exchange);
        self
    }

    pub fn empty(guard: Option<RequestGuard>) -> Self {
        ProxyBody {
            inner: Inner::Empty,
            _guard: guard,
            exchange: None,
            error: None,
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let r = match &mut self.inner {
            Inner::Upstream(b) => b.poll_frame(cx),
            Inner::Local(b) => Pin::new(b).poll_frame(cx).map_err(|never| match never {}),
            Inner::Empty => Poll::Ready(None),
        };
        if let (Poll::Ready(Some(frame)), Some(ex)) = (&r, &mut self.exchange) {
            match frame {
                Ok(f) => ex.sent_down(f.data_ref().map_or(0, |d| d.len())),
                Err(_) => ex.body_failed(),
            }
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Upstream(b) => b.body.is_end_stream(),
            Inner::Local(b) => b.is_end_stream(),
            Inner::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Upstream(b) => b.body.size_hint(),
            Inner::Local(b) => b.size_hint(),
            Inner::Empty => SizeHint::with_exact(0),
        }
    }
}

/// A streamed origin body and the connection it arrives on. Polling the body polls the
/// connection first, in the client connection's task: that is what reads the origin socket.
struct UpstreamBody {
    body: Incoming,
    lease: Lease,
    ended: bool,
}

impl UpstreamBody {
    fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        // The body first: a small response arrives with its head, and hyper has already queued
        // all of it; the connection is polled only when the body waits for it.
        let mut r = Pin::new(&mut self.body).poll_frame(cx);
        if r.is_pending() {
            self.lease.drive(cx);
            r = Pin::new(&mut self.body).poll_frame(cx);
        }
        if let Poll::Ready(None) = r {
            self.ended = true;
            self.lease.release();
        }
        r
    }
}

impl Drop for UpstreamBody {
    /// A body hyper never had to poll (204, HEAD, `Content-Length: 0`) still frees its
    /// connection; one abandoned midway closes it (unread bytes would corrupt the next reply).
    fn drop(&mut self) {
        if !self.ended && self.body.is_end_stream() {
            self.lease.release();
        }
    }
}
