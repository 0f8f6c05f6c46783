//! The one response body type of the proxy: either a streamed upstream body or a small body
//! egressd made up itself. It carries the connection's [`RequestGuard`], so the request counts
//! as in flight until hyper has written (or dropped) the whole body, and the request's
//! [`Exchange`], which counts the bytes sent and writes the audit record when the body is
//! dropped.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use super::activity::RequestGuard;
use super::observe::Exchange;

pub struct ProxyBody {
    inner: Inner,
    _guard: Option<RequestGuard>,
    exchange: Option<Exchange>,
}

enum Inner {
    Upstream(Incoming),
    Local(Full<Bytes>),
    Empty,
}

impl ProxyBody {
    pub fn upstream(body: Incoming, guard: Option<RequestGuard>) -> Self {
        ProxyBody {
            inner: Inner::Upstream(body),
            _guard: guard,
            exchange: None,
        }
    }

    pub fn local(body: Full<Bytes>, guard: Option<RequestGuard>) -> Self {
        ProxyBody {
            inner: Inner::Local(body),
            _guard: guard,
            exchange: None,
        }
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
            Inner::Upstream(b) => Pin::new(b).poll_frame(cx),
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
            Inner::Upstream(b) => b.is_end_stream(),
            Inner::Local(b) => b.is_end_stream(),
            Inner::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Upstream(b) => b.size_hint(),
            Inner::Local(b) => b.size_hint(),
            Inner::Empty => SizeHint::with_exact(0),
        }
    }
}
