//! What one request leaves behind: its metrics and its audit record, gathered by an
//! [`Exchange`] that follows the request from its head to its end.
//!
//! - `service::handle` opens the exchange; the request path notes the target, the decision
//!   (which resolves the ministry's and the rule's metric handles from the snapshot's table) and
//!   hands over the response.
//! - At the response head ([`Exchange::respond`]): `egressd_request_duration_seconds`,
//!   `egressd_requests_total` (plain HTTP) and `egressd_upstream_errors_total`. The error type
//!   is read from the response itself (every synthetic response carries its [`ErrorType`]).
//! - Plain HTTP: the exchange rides in the response body, counting the bytes sent to the
//!   client; a [`MeteredBody`] counts the request body sent upstream. The audit record is
//!   written when hyper drops the response body: after its last byte was handed to the
//!   connection (or when the client went away), so `bytes_*` and `duration_ms` are real.
//! - CONNECT: the exchange moves into the relay task ([`Exchange::tunnel`]), which counts the
//!   request once the tunnel is up (issue #5's SNI check will decide again before that) and
//!   writes the record when the tunnel closes.
//! - A request dropped before it was answered (the client closed the connection while egressd
//!   waited for the origin) is still audited, with `status` 0, and counted.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::{Method, Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use prometheus::IntCounter;

use super::body::ProxyBody;
use super::respond::ErrorType;
use super::service::{ConnCtx, Decided, Shared, Stop};
use super::target::Target;
use crate::audit::Record;
use crate::identity::Identified;
use crate::policy::host::Host;
use crate::policy::model::Mode;
use crate::policy::{Kind, Outcome, Verdict};
use crate::snapshot::Snapshot;

/// See the module docs. Finishing happens on drop (plain HTTP) or in
/// [`Exchange::finish`] (tunnels).
pub struct Exchange {
    d: Option<Box<Data>>,
}

struct Data {
    started: Instant,
    /// Metrics and the audit queue (one reference for both).
    shared: Arc<Shared>,
    keep_query: bool,
    client: IpAddr,
    kind: Kind,
    method: Method,
    host: Option<Host>,
    port: Option<u16>,
    path: Option<String>,
    sni: Option<Arc<str>>,
    user: Option<Arc<str>>,
    who: Option<Identified>,
    verdict: Option<Verdict>,
    // Resolved from the snapshot, so the exchange never keeps a snapshot alive.
    ministry: Option<Arc<str>>,
    mode: Option<Mode>,
    rule: Option<Arc<str>>,
    requests: Option<IntCounter>,
    counted: bool,
    bytes_upstream: Option<IntCounter>,
    bytes_downstream: Option<IntCounter>,
    status: u16,
    error: Option<ErrorType>,
    /// Request body bytes forwarded (shared with the [`MeteredBody`] in the client's task).
    body_up: Option<Arc<AtomicU64>>,
    bytes_up: u64,
    bytes_down: u64,
}

impl Exchange {
    /// Opens the exchange of a request whose head just arrived.
    pub fn begin<B>(ctx: &ConnCtx, req: &Request<B>, snap: &Snapshot) -> Exchange {
        let kind = super::service::kind_of(req.method());
        Exchange {
            d: Some(Box::new(Data {
                started: Instant::now(),
                shared: Arc::clone(&ctx.shared),
                keep_query: snap.settings.audit.keep_query,
                client: ctx.peer.ip(),
                kind,
                method: req.method().clone(),
                host: None,
                port: None,
                path: None,
                sni: None,
                user: None,
                who: None,
                verdict: None,
                ministry: None,
                mode: None,
                rule: None,
                requests: None,
                counted: false,
                bytes_upstream: None,
                bytes_downstream: None,
                status: 0,
                error: None,
                body_up: None,
                bytes_up: 0,
                bytes_down: 0,
            })),
        }
    }

    /// The parsed target; `uri` gives the path of a plain request (query dropped unless
    /// `audit.keep_query`).
    pub fn target(&mut self, target: &Target, uri: Option<&http::Uri>) {
        let Some(d) = self.d.as_mut() else { return };
        d.host = Some(target.host.clone());
        d.port = Some(target.port);
        d.path = uri.map(|u| match (d.keep_query, u.query()) {
            (true, Some(q)) => format!("{}?{}", u.path(), q),
            _ => u.path().to_owned(),
        });
    }

    /// The SNI of a tunnel's ClientHello (issue #5).
    pub fn set_sni(&mut self, sni: Arc<str>) {
        if let Some(d) = self.d.as_mut() {
            d.sni = Some(sni);
        }
    }

    /// The authenticated user name (issue #5).
    pub fn set_user(&mut self, user: Arc<str>) {
        if let Some(d) = self.d.as_mut() {
            d.user = Some(user);
        }
    }

    /// The decision (again after `destinations:` or an SNI check changed it).
    pub fn decided(&mut self, snap: &Snapshot, decided: &Decided) {
        let Some(d) = self.d.as_mut() else { return };
        d.identified(snap, decided.who.clone());
        let v = decided.verdict;
        d.verdict = Some(v);
        d.rule = Some(Arc::clone(&snap.policy.rule(v.rule).name));
        let m = decided.who.ministry;
        d.requests = Some(snap.metrics.counter(&snap.policy, m, d.kind, v));
    }

    /// A request that went no further: a block carries its decision.
    pub fn stopped(&mut self, snap: &Snapshot, stop: &Stop) {
        if let Stop::Blocked(decided) = stop {
            self.decided(snap, decided);
        }
    }

    /// Wraps a request body that is about to be forwarded, to count its bytes.
    pub fn meter_request(&mut self, body: Incoming) -> MeteredBody {
        let meter = self.d.as_mut().and_then(|d| {
            if body.is_end_stream() {
                return None;
            }
            let total = Arc::new(AtomicU64::new(0));
            d.body_up = Some(Arc::clone(&total));
            Some((d.bytes_upstream.clone()?, total))
        });
        MeteredBody { inner: body, meter }
    }

    /// Records the response head and attaches the exchange to the response body, which
    /// finishes it when hyper is done with it.
    pub fn respond(mut self, snap: &Snapshot, resp: Response<ProxyBody>) -> Response<ProxyBody> {
        if self.d.is_none() {
            return resp; // a tunnel: its relay owns the exchange
        }
        let error = resp.body().error();
        self.head(snap, resp.status().as_u16(), error);
        if let Some(d) = self.d.as_mut() {
            d.count();
        }
        resp.map(|b| b.with_exchange(self))
    }

    /// Records the response head of a request whose answer the fast path writes itself; the
    /// exchange stays with the caller, which counts the body ([`Exchange::sent_down`]) and
    /// drops it when the answer is done.
    pub fn responded(&mut self, snap: &Snapshot, status: u16, error: Option<ErrorType>) {
        self.head(snap, status, error);
        self.count();
    }

    /// For a tunnel that is up: records the `200` head and moves the exchange out, for the
    /// relay task to count and finish.
    pub fn tunnel(&mut self, snap: &Snapshot, status: u16) -> Exchange {
        self.head(snap, status, None);
        Exchange { d: self.d.take() }
    }

    fn head(&mut self, snap: &Snapshot, status: u16, error: Option<ErrorType>) {
        let Some(d) = self.d.as_mut() else { return };
        if d.who.is_none() {
            let who = snap.identity.identify(d.client);
            d.identified(snap, who);
        }
        let mm = snap
            .metrics
            .ministry(d.who.as_ref().and_then(|w| w.ministry));
        let k = usize::from(d.kind == Kind::Connect);
        mm.duration[k].observe(d.started.elapsed().as_secs_f64());
        d.status = status;
        d.error = error;
        if let Some(e) = error {
            d.shared.metrics.upstream_error(e);
        }
    }

    /// Counts the request in `egressd_requests_total` (once; tunnels call this when the
    /// tunnel is up and its decision final).
    pub fn count(&mut self) {
        if let Some(d) = self.d.as_mut() {
            d.count();
        }
    }

    /// Counters for a tunnel's upstream socket: (bytes written = upstream, bytes read =
    /// downstream).
    pub fn tunnel_meter(&self) -> Option<Meter> {
        let d = self.d.as_ref()?;
        Some(Meter {
            on_write: d.bytes_upstream.clone()?,
            on_read: d.bytes_downstream.clone()?,
            written: 0,
            read: 0,
        })
    }

    /// A tunnel's totals, from its [`Meter`].
    pub fn tunnel_bytes(&mut self, up: u64, down: u64) {
        if let Some(d) = self.d.as_mut() {
            d.bytes_up += up;
            d.bytes_down += down;
        }
    }

    /// Response body bytes handed to the client.
    #[inline]
    pub fn sent_down(&mut self, n: usize) {
        if let Some(d) = self.d.as_mut() {
            d.bytes_down += n as u64;
            if let Some(c) = &d.bytes_downstream {
                c.inc_by(n as u64);
            }
        }
    }

    /// The upstream body broke off mid-stream.
    pub fn body_failed(&mut self) {
        if let Some(d) = self.d.as_mut() {
            if d.error.is_none() {
                d.error = Some(ErrorType::HttpResponseIncomplete);
                d.shared
                    .metrics
                    .upstream_error(ErrorType::HttpResponseIncomplete);
            }
        }
    }

    /// A tunnel closed because its first bytes were refused (not TLS, unreadable, or none):
    /// audited as a block by no rule (`error: http_request_denied`) and not counted in
    /// `egressd_requests_total`, whose series always name a rule.
    pub fn refused_first_bytes(&mut self) {
        if let Some(d) = self.d.as_mut() {
            d.verdict = None;
            d.rule = None;
            d.requests = None;
            d.error = Some(ErrorType::HttpRequestDenied);
        }
    }

    /// Writes the record, waiting while the audit queue is full (tunnels).
    pub async fn finish(mut self) {
        if let Some(d) = self.d.take() {
            let (shared, record) = d.into_record();
            shared.audit.send(record).await;
        }
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        if let Some(d) = self.d.take() {
            let (shared, record) = d.into_record();
            shared.audit.submit(record);
        }
    }
}

impl Data {
    fn identified(&mut self, snap: &Snapshot, who: Identified) {
        let mm = snap.metrics.ministry(who.ministry);
        self.who = Some(who);
        self.ministry = Some(Arc::clone(&mm.name));
        self.mode = mm.mode;
        self.bytes_upstream = Some(mm.bytes_upstream.clone());
        self.bytes_downstream = Some(mm.bytes_downstream.clone());
    }

    fn count(&mut self) {
        if let (false, Some(c)) = (self.counted, &self.requests) {
            c.inc();
            self.counted = true;
        }
    }

    fn into_record(mut self: Box<Self>) -> (Arc<Shared>, Record) {
        self.count(); // a request dropped before its head was still decided
        let action = match (self.verdict, self.error) {
            (Some(v), _) => Some(v.outcome),
            // Refused before any rule applied (`egress.connect_ports`).
            (None, Some(ErrorType::HttpRequestDenied)) => Some(Outcome::Block),
            (None, _) => None,
        };
        let body_up = self.body_up.as_ref().map_or(0, |t| t.load(Relaxed));
        let d = *self;
        let record = Record {
            ts: SystemTime::now(),
            client: d.client,
            ministry: d
                .ministry
                .unwrap_or_else(|| Arc::from(crate::policy::UNKNOWN)),
            identity: d.who.map_or("none", |w| w.method.as_str()),
            user: d.user,
            kind: d.kind,
            method: d.method,
            host: d.host,
            port: d.port,
            sni: d.sni,
            path: d.path,
            action,
            mode: d.mode,
            rule: d.rule,
            status: d.status,
            error: d.error,
            bytes_up: d.bytes_up + body_up,
            bytes_down: d.bytes_down,
            duration: d.started.elapsed(),
        };
        (d.shared, record)
    }
}

/// Byte counters of a tunnel's upstream socket, kept by [`super::activity::TrackedIo`]:
/// exported live (so long tunnels show up while they run) and totalled for the audit record.
#[derive(Debug)]
pub struct Meter {
    on_write: IntCounter,
    on_read: IntCounter,
    pub written: u64,
    pub read: u64,
}

impl Meter {
    #[inline]
    pub fn wrote(&mut self, n: usize) {
        self.written += n as u64;
        self.on_write.inc_by(n as u64);
    }

    #[inline]
    pub fn read(&mut self, n: usize) {
        self.read += n as u64;
        self.on_read.inc_by(n as u64);
    }

    /// The counters bytes written and read are added to, for a relay that counts on its own.
    pub fn counters(&self) -> (&IntCounter, &IntCounter) {
        (&self.on_write, &self.on_read)
    }

    /// Totals of a relay that already added them to [`Meter::counters`].
    pub fn add_totals(&mut self, written: u64, read: u64) {
        self.written += written;
        self.read += read;
    }
}

/// A request body on its way upstream, counting its bytes (`None`: no body to count).
pub struct MeteredBody {
    inner: Incoming,
    meter: Option<(IntCounter, Arc<AtomicU64>)>,
}

impl Body for MeteredBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if let (Poll::Ready(Some(Ok(frame))), Some((counter, total))) = (&r, &self.meter) {
            if let Some(data) = frame.data_ref() {
                counter.inc_by(data.len() as u64);
                total.fetch_add(data.len() as u64, Relaxed);
            }
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
