//! The fast path: plain-HTTP GET and HEAD requests on a kept-alive HTTP/1.1 connection, parsed
//! with httparse and answered without hyper's connection machinery, which cost more than half
//! of an allowed request's CPU (README "Performance").
//!
//! A connection starts here. Each request head is parsed from the connection's own buffer; one
//! the fast path takes is what proxies send most: `GET`/`HEAD`, HTTP/1.1, an absolute `http://`
//! target, no body (`Content-Length` and `Transfer-Encoding` absent), no `Expect`, no `Upgrade`,
//! and a head httparse accepts as it is. It then goes through the same steps as on the hyper
//! path — `service::begin` (audit admission, head limits, identification) and `service::route`
//! (target, decision, resolution, egress guard) — and out to an [`Origin`] connection, the head
//! for it written straight from the parsed fields ([`request_head`]).
//!
//! Anything else — CONNECT, a body, HTTP/1.0, a head httparse rejects or that is larger than the
//! parser bound — is **handed over to hyper** for the rest of the connection, at the message
//! boundary, with the bytes already read ([`TrackedIo::unread`]): every request the fast path
//! does not understand is judged by the same parser, smuggling checks and answers as before.
//!
//! A client connection keeps the origin connection its last request used (most keep-alive
//! clients talk to one origin), so the common request needs no pool lock; it goes back to the
//! shared [`OriginPool`] when the client connection ends or moves to another origin. It also
//! keeps its last request's route ([`RouteMemo`]), so a repeated target is neither parsed nor
//! looked up in the shared decision cache again while the snapshot and the verdict hold.
//!
//! [`TrackedIo::unread`]: super::activity::TrackedIo::unread

use std::future::Future;
use std::io::Write as _;
use std::mem::MaybeUninit;
use std::net::IpAddr;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http::header::{
    HeaderName, HeaderValue, ACCEPT, CONNECTION, CONTENT_LENGTH, EXPECT, PROXY_AUTHORIZATION,
    TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, Method, Request, Uri};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;

use super::dial::Addrs;
use super::forward;
use super::limits::HeadSize;
use super::observe::Exchange;
use super::origin::{Framing, Head, Origin, OriginError, RelayError};
use super::respond::{self, Answer, ErrorType};
use super::service::{self, Begun, ConnCtx, RouteMemo};
use super::target::Target;
use crate::snapshot::Snapshot;

/// Header fields a fast-path request head may have; more are left to hyper.
const MAX_FIELDS: usize = 64;

/// Buffers that grew past this for one large message are not kept for the next (an idle
/// connection should cost little memory).
pub const KEEP_BUFFER: usize = 16 * 1024;

/// How the fast path left a connection.
pub enum Ended {
    /// Closed (client gone, timeout, drain, or an answer that ends the connection).
    Closed,
    /// A request the fast path does not take: hyper serves the connection from here, starting
    /// with these bytes.
    Handoff(Bytes),
}

/// What to do after one request.
enum Next {
    KeepAlive,
    Close,
}

/// Serves requests on `io` until the connection ends or needs hyper. `max_head`: the parser
/// bound of `limits.max_header_bytes` (a longer head is left to hyper, which refuses it).
pub async fn serve<I>(io: &mut I, ctx: &ConnCtx, max_head: usize) -> Ended
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let mut conn = Conn {
        buf: BytesMut::new(),
        spans: Vec::new(),
        w: Writer {
            out: Vec::new(),
            held: None,
            draining: ctx.shared.draining.clone(),
            deadline: None,
            route: RouteMemo::default(),
        },
    };
    let ended = loop {
        let (head, req) = match conn.read_head(io, max_head).await {
            Read::Request(head, req) => (head, req),
            Read::Closed => break Ended::Closed,
            Read::Other => break Ended::Handoff(conn.buf.split().freeze()),
        };
        // The head is served from the bytes it was read into (a fast-path request has no
        // body, so nothing else is read meanwhile): the target's parts and the origin's head
        // come from it. Its room in the buffer is reused once the request is done.
        let fields = Fields {
            head: &head,
            spans: &conn.spans,
        };
        let next = conn.w.one(io, ctx, req, fields).await;
        drop(head);
        if conn.w.out.capacity() > KEEP_BUFFER {
            conn.w.out = Vec::new();
        }
        match next {
            Next::KeepAlive if !conn.w.draining.is_cancelled() => {}
            _ => break Ended::Closed,
        }
    };
    if let Some(o) = conn.w.held.take() {
        ctx.origins.checkin(o);
    }
    ended
}

// Returned once per request and matched at once; a box would cost an allocation each time.
#[allow(clippy::large_enum_variant)]
enum Read {
    /// The head, split off the connection's buffer, and what the service sees of it.
    Request(Bytes, Parsed),
    Closed,
    Other,
}

/// A fast-path request: its head as the service sees it, and how the client wants the
/// connection treated.
struct Parsed {
    /// Method, target, and of the header fields only those the service reads (`Accept`,
    /// `Proxy-Authorization`): a `HeaderMap` of every field cost more than the rest of the
    /// parse, and the origin's head is written from [`Fields`] instead.
    req: Request<()>,
    /// Every header field, measured for the head limits.
    size: HeadSize,
    close: bool,
}

/// Where one header field of the head sits in the connection's buffer.
#[derive(Clone, Copy)]
struct Span {
    name: (u32, u32),
    value: (u32, u32),
    /// The whole line when it can be copied as it is (`forward::Lines::line_of`), else (0, 0).
    line: (u32, u32),
}

/// The header fields of the request being served, as the client sent them.
#[derive(Clone, Copy)]
struct Fields<'a> {
    head: &'a [u8],
    spans: &'a [Span],
}

impl<'a> Fields<'a> {
    fn iter(self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
        self.lines().map(|(name, value, _)| (name, value))
    }

    /// The fields with where their whole line is, when it can be copied as it is.
    fn lines(self) -> impl Iterator<Item = (&'a [u8], &'a [u8], Option<(usize, usize)>)> {
        let head = self.head;
        let at = move |(a, b): (u32, u32)| &head[a as usize..b as usize];
        self.spans.iter().map(move |s| {
            let line = (s.line.1 > 0).then_some((s.line.0 as usize, s.line.1 as usize));
            (at(s.name), at(s.value), line)
        })
    }
}

struct Conn {
    /// What was read from the client and not yet used (allocated at the first read, so an
    /// idle connection that never sent anything holds no buffer).
    buf: BytesMut,
    /// The fields of the head at the front of `buf`, reused from request to request.
    spans: Vec<Span>,
    w: Writer,
}

/// What serving a request writes to: apart from the read buffer, whose head it borrows.
struct Writer {
    /// The head (and small body) about to be written, reused from request to request.
    out: Vec<u8>,
    /// The origin connection of the last request.
    held: Option<Origin>,
    /// A drain answers the request in flight and says the connection ends with it: checked
    /// when an answer's head is written, which may be long after the request arrived.
    draining: CancellationToken,
    /// The origin's `timeouts.response_header`, one timer for the connection's life: moving a
    /// registered timer later is one atomic operation in tokio, while a `timeout` per request
    /// took the timer wheel's lock twice (made at the first forwarded request).
    deadline: Option<Pin<Box<Sleep>>>,
    /// The last request's route, for the next request to the same target.
    route: RouteMemo,
}

impl Conn {
    async fn read_head<I>(&mut self, io: &mut I, max_head: usize) -> Read
    where
        I: AsyncRead + Unpin,
    {
        loop {
            if !self.buf.is_empty() {
                let mut fields = [const { MaybeUninit::uninit() }; MAX_FIELDS];
                let mut req = httparse::Request::new(&mut []);
                match req.parse_with_uninit_headers(&self.buf, &mut fields) {
                    Ok(httparse::Status::Complete(len)) => {
                        let Some((mut p, target)) = parsed(&req, &self.buf, &mut self.spans) else {
                            return Read::Other;
                        };
                        // The URI's parts point into the head instead of a copy of it (a
                        // copy was two allocations per request).
                        let head = self.buf.split_to(len).freeze();
                        return match Uri::from_maybe_shared(head.slice(target)) {
                            Ok(uri) => {
                                *p.req.uri_mut() = uri;
                                Read::Request(head, p)
                            }
                            Err(_) => {
                                // Back in front of what follows, for hyper to refuse.
                                let mut all = BytesMut::with_capacity(head.len() + self.buf.len());
                                all.extend_from_slice(&head);
                                all.extend_from_slice(&self.buf);
                                self.buf = all;
                                Read::Other
                            }
                        };
                    }
                    Ok(httparse::Status::Partial) if self.buf.len() <= max_head => {}
                    _ => return Read::Other,
                }
            }
            if self.buf.capacity() - self.buf.len() < 512 {
                // Small at first: most heads are well under 1 KiB, and an idle connection
                // keeps what it has. The room of heads already served is reclaimed in place
                // (`reserve` moves the unread bytes to the front); only a head that does not
                // fit grows the buffer.
                let grow = match self.buf.capacity() {
                    0 => 2048,
                    _ if self.buf.len() < 1024 => 1024,
                    _ => 8192,
                };
                self.buf.reserve(grow);
            }
            // Between requests a drain closes the connection at once: the task that watches
            // this one ends it (`listener::serve_connection`).
            match io.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return Read::Closed,
                Ok(_) => {}
            }
        }
    }
}

impl Writer {
    /// One request, from its parsed head to the end of its answer.
    async fn one<I>(&mut self, io: &mut I, ctx: &ConnCtx, p: Parsed, fields: Fields<'_>) -> Next
    where
        I: AsyncWrite + Unpin,
    {
        let Parsed { req, size, close } = p;
        let head_request = req.method() == Method::HEAD;
        let (begun, who) = service::begin(&req, size, ctx).await;
        let Begun {
            guard,
            snap,
            mut ex,
        } = begun;
        let routed = match who {
            Ok(who) => service::route(&req, ctx, &snap, who, &mut ex, Some(&mut self.route)).await,
            Err(resp) => Err(resp),
        };
        let next = match routed {
            Err(resp) => {
                self.answer(io, &snap, resp, &mut ex, head_request, close)
                    .await
            }
            Ok(routed) => {
                let xff = service::forwarded_for(ctx, &snap);
                request_head(&req, fields, &routed.1, xff, &mut self.out);
                self.forward(io, ctx, &snap, routed, &mut ex, head_request, close)
                    .await
            }
        };
        drop(ex);
        drop(guard);
        next
    }

    /// Writes an answer egressd made up (block page, error) straight from its parts.
    async fn answer<I>(
        &mut self,
        io: &mut I,
        snap: &Snapshot,
        a: Answer,
        ex: &mut Exchange,
        head_request: bool,
        close: bool,
    ) -> Next
    where
        I: AsyncWrite + Unpin,
    {
        let status = a.status();
        ex.responded(snap, status.as_u16(), a.reported());
        let close = close || a.closes() || self.draining.is_cancelled();
        let out = &mut self.out;
        out.clear();
        // Sized once, as in `request_head`.
        out.reserve(a.body().len() + 512);
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
        out.extend_from_slice(b"\r\n");
        a.write_fields(out);
        // RFC 9110 §6.6.1: a recipient with a clock adds the `Date` a response lacks.
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(&http_date());
        out.extend_from_slice(b"\r\n");
        if close && !a.closes() {
            out.extend_from_slice(b"connection: close\r\n");
        }
        let body = a.body();
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        if !head_request {
            out.extend_from_slice(body);
            ex.sent_down(body.len());
        }
        match flush(io, &mut self.out).await {
            Ok(()) if !close => Next::KeepAlive,
            _ => Next::Close,
        }
    }

    /// Sends the request head in `out` to the first of the checked addresses that takes it
    /// and relays the answer.
    #[allow(clippy::too_many_arguments)]
    async fn forward<I>(
        &mut self,
        io: &mut I,
        ctx: &ConnCtx,
        snap: &Snapshot,
        (addrs, target): (Addrs, Target),
        ex: &mut Exchange,
        head_request: bool,
        close: bool,
    ) -> Next
    where
        I: AsyncWrite + Unpin,
    {
        let timeout = snap.settings.timeouts.response_header;
        let connect = Duration::from_millis(
            ctx.shared
                .connect_timeout_ms
                .load(std::sync::atomic::Ordering::Relaxed),
        );
        let port = target.port;
        let mut kept = self.reuse(ctx, &addrs, port);
        let exchanged = {
            let out = &mut self.out;
            let work = async {
                loop {
                    let reused = kept.is_some();
                    let mut origin = match kept.take() {
                        Some(o) => o,
                        None => Origin::connect_any(&addrs, port, connect).await?,
                    };
                    match origin.exchange(out, head_request).await {
                        Ok(head) => return Ok((origin, head)),
                        // A kept connection the origin had closed: once more on a new one.
                        Err(OriginError::Stale) if reused => {}
                        Err(e) => return Err(e),
                    }
                }
            };
            let until = tokio::time::Instant::now() + timeout;
            let deadline = match &mut self.deadline {
                Some(d) => {
                    d.as_mut().reset(until);
                    d
                }
                None => self
                    .deadline
                    .insert(Box::pin(tokio::time::sleep_until(until))),
            };
            tokio::pin!(work);
            std::future::poll_fn(|cx| match work.as_mut().poll(cx) {
                Poll::Ready(r) => Poll::Ready(Ok(r)),
                Poll::Pending => deadline.as_mut().poll(cx).map(Err),
            })
            .await
        };
        let (mut origin, head) = match exchanged {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, host = %target.host, "origin request failed");
                let resp = respond::error(e.error_type(), &target.host.to_string());
                return self.answer(io, snap, resp, ex, head_request, close).await;
            }
            Err(_) => {
                let resp = respond::error(ErrorType::HttpResponseTimeout, &target.host.to_string());
                return self.answer(io, snap, resp, ex, head_request, close).await;
            }
        };
        let Head {
            status,
            framing,
            reusable,
        } = head;
        ex.responded(snap, status.as_u16(), None);
        let close = close || self.draining.is_cancelled();
        if close {
            self.out.extend_from_slice(b"connection: close\r\n");
        }
        if matches!(framing, Framing::Chunked | Framing::UntilClose) {
            self.out
                .extend_from_slice(b"transfer-encoding: chunked\r\n");
        }
        self.out.extend_from_slice(b"\r\n");
        match origin.relay_body(framing, &mut self.out, io, ex).await {
            Ok(()) => {
                if reusable {
                    origin.touch();
                    self.held = Some(origin);
                }
                if close {
                    Next::Close
                } else {
                    Next::KeepAlive
                }
            }
            Err(RelayError::Origin) => {
                ex.body_failed();
                Next::Close
            }
            Err(RelayError::Client) => Next::Close,
        }
    }

    /// The held connection if it goes to one of `addrs` and is still good, else one from the
    /// pool (to the first address that has one).
    fn reuse(&mut self, ctx: &ConnCtx, addrs: &[IpAddr], port: u16) -> Option<Origin> {
        if let Some(mut o) = self.held.take() {
            let to = o.addr;
            if to.port() == port && addrs.contains(&to.ip()) && o.alive() {
                return Some(o);
            }
            if o.alive() {
                ctx.origins.checkin(o);
            }
        }
        let mut idle = addrs.iter().map(|ip| std::net::SocketAddr::new(*ip, port));
        idle.find_map(|addr| ctx.origins.checkout(addr))
    }
}

/// The service's view of a head the fast path takes (its URI still to be set) and where its
/// target is in `buf`, or `None` to leave it to hyper. `buf` is what `req` was parsed from;
/// `spans` gets where its fields are.
fn parsed(
    req: &httparse::Request<'_, '_>,
    buf: &[u8],
    spans: &mut Vec<Span>,
) -> Option<(Parsed, std::ops::Range<usize>)> {
    if req.version != Some(1) {
        return None;
    }
    let method = match req.method? {
        "GET" => Method::GET,
        "HEAD" => Method::HEAD,
        _ => return None,
    };
    let target = req.path?;
    if target.len() < 8 || !target.as_bytes()[..7].eq_ignore_ascii_case(b"http://") {
        return None;
    }
    let at = target.as_ptr() as usize - buf.as_ptr() as usize;
    // httparse has checked every name is a token and every value field content, as hyper
    // relies on too; the fields the service reads are validated again as `HeaderValue`s.
    let mut headers = HeaderMap::new();
    let mut size = HeadSize::default();
    let mut close = false;
    let base = buf.as_ptr() as usize;
    let span = |s: &[u8]| {
        if s.is_empty() {
            // An empty value need not point into `buf` (httparse could give any `&[]`).
            return (0, 0);
        }
        let a = (s.as_ptr() as usize - base) as u32;
        (a, a + s.len() as u32)
    };
    spans.clear();
    for f in req.headers.iter() {
        let (name, value) = (f.name.as_bytes(), f.value);
        let is = |n: &HeaderName| name.eq_ignore_ascii_case(n.as_str().as_bytes());
        if is(&CONTENT_LENGTH) || is(&TRANSFER_ENCODING) || is(&EXPECT) || is(&UPGRADE) {
            return None;
        }
        if is(&CONNECTION) {
            close |= super::origin::tokens(value).any(|t| t.eq_ignore_ascii_case(b"close"));
        } else if is(&ACCEPT) || is(&PROXY_AUTHORIZATION) {
            let name = HeaderName::from_bytes(name).ok()?;
            headers.append(name, HeaderValue::from_bytes(value).ok()?);
        }
        size.fields += 1;
        size.bytes += HeadSize::line(name.len(), value.len());
        let line =
            forward::Lines::line_of(buf, name, value).map_or((0, 0), |(a, b)| (a as u32, b as u32));
        spans.push(Span {
            name: span(name),
            value: span(value),
            line,
        });
    }
    let mut r = Request::new(());
    *r.method_mut() = method;
    *r.headers_mut() = headers;
    let parsed = Parsed {
        req: r,
        size,
        close,
    };
    Some((parsed, at..at + target.len()))
}

/// The request head for the origin, written straight from the client's (RFC 9110 §7.6): the
/// origin-form target, `Host` from the target (never the client's), the client's fields less
/// the hop-by-hop ones and those its `Connection` names, `Via`, and `X-Forwarded-For` when
/// configured. The same rewrite as `forward::prepare_request`, without the `HeaderMap` edits.
fn request_head(
    req: &Request<()>,
    fields: Fields<'_>,
    target: &Target,
    xff: Option<IpAddr>,
    out: &mut Vec<u8>,
) {
    out.clear();
    // One allocation for a new connection's first head instead of the doubling from empty
    // (five reallocations); a kept-alive connection's buffer has the room already.
    out.reserve(fields.head.len() + 256);
    out.extend_from_slice(req.method().as_str().as_bytes());
    out.push(b' ');
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    target.write_host_header(80, out);
    out.extend_from_slice(b"\r\n");
    let is_connection = |name: &[u8]| name.eq_ignore_ascii_case(b"connection");
    let any_named = fields.iter().any(|(name, _)| is_connection(name));
    let named = |name: &[u8]| {
        fields
            .iter()
            .filter(|(n, _)| is_connection(n))
            .any(|(_, v)| super::origin::tokens(v).any(|t| t.eq_ignore_ascii_case(name)))
    };
    let mut lines = forward::Lines::default();
    for (name, value, line) in fields.lines() {
        if name.eq_ignore_ascii_case(b"host")
            || forward::is_hop_by_hop(name)
            || (any_named && named(name))
        {
            continue;
        }
        lines.keep(fields.head, out, line, name, value);
    }
    lines.flush(fields.head, out);
    out.extend_from_slice(b"via: 1.1 egressd\r\n");
    if let Some(ip) = xff {
        let _ = write!(out, "x-forwarded-for: {ip}\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

async fn flush<W: AsyncWrite + Unpin>(io: &mut W, out: &mut Vec<u8>) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let r = io.write_all(out).await;
    out.clear();
    r
}

/// The current time as an HTTP date, formatted once per second per thread.
pub fn http_date() -> [u8; 29] {
    use std::cell::Cell;
    thread_local! {
        static CACHED: Cell<(u64, [u8; 29])> = const { Cell::new((u64::MAX, [0; 29])) };
    }
    let now = SystemTime::now();
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    CACHED.with(|c| {
        let (at, date) = c.get();
        if at == secs {
            return date;
        }
        let mut fresh = [0u8; 29];
        fresh.copy_from_slice(httpdate::fmt_http_date(now).as_bytes());
        c.set((secs, fresh));
        fresh
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(head: &str) -> Option<Parsed> {
        take_with(head, &mut Vec::new())
    }

    fn take_with(head: &str, spans: &mut Vec<Span>) -> Option<Parsed> {
        let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
        let mut req = httparse::Request::new(&mut fields);
        match req.parse(head.as_bytes()) {
            Ok(httparse::Status::Complete(_)) => {
                let (mut p, target) = parsed(&req, head.as_bytes(), spans)?;
                *p.req.uri_mut() = Uri::try_from(&head[target]).ok()?;
                Some(p)
            }
            _ => None,
        }
    }

    /// `head` parsed by the fast path and the head it writes for the origin `a.test:port`.
    fn origin_head(head: &str, port: u16, spans: &mut Vec<Span>) -> (Parsed, String) {
        let p = take_with(head, spans).unwrap();
        let fields = Fields {
            head: head.as_bytes(),
            spans,
        };
        let target = Target {
            host: crate::policy::host::normalize_host("a.test").unwrap(),
            port,
        };
        let mut out = Vec::new();
        request_head(&p.req, fields, &target, None, &mut out);
        (p, String::from_utf8(out).unwrap())
    }

    /// The origin's head is the client's less `Host` (written from the target), the hop-by-hop
    /// fields and those `Connection` names, in any case; the service sees only the fields it
    /// reads, and the head limits count all of them, as hyper's `HeaderMap` would.
    #[test]
    fn the_origin_head_and_the_services_fields() {
        let head = "GET http://a.test:8080/p?q HTTP/1.1\r\nHOST: evil.test\r\n\
            User-Agent: t/1\r\nCONNECTION: Keep-Alive, X-Secret\r\nx-secret: 1\r\n\
            Keep-Alive: 5\r\nAccept: text/html\r\nProxy-Authorization: Basic eDp5\r\n\
            Proxy-Connection: keep-alive\r\nTE: trailers\r\nX-Other: a, b\r\n\r\n";
        let mut spans = Vec::new();
        let (p, written) = origin_head(head, 8080, &mut spans);
        let fields = Fields {
            head: head.as_bytes(),
            spans: &spans,
        };
        assert_eq!(
            written,
            "GET /p?q HTTP/1.1\r\nhost: a.test:8080\r\nUser-Agent: t/1\r\n\
             Accept: text/html\r\nX-Other: a, b\r\nvia: 1.1 egressd\r\n\r\n"
        );
        let names: Vec<_> = p.req.headers().keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["accept", "proxy-authorization"]);
        let mut all = HeaderMap::new();
        for (name, value) in fields.iter() {
            all.append(
                HeaderName::from_bytes(name).unwrap(),
                HeaderValue::from_bytes(value).unwrap(),
            );
        }
        assert_eq!(p.size, HeadSize::of(&all));
        assert_eq!(p.size.fields, 10);
    }

    /// Empty values (which httparse may hand out as a slice outside the buffer) are kept, and
    /// never turned into an offset into it.
    #[test]
    fn empty_field_values_are_passed_on() {
        let head = "GET http://a.test/ HTTP/1.1\r\nX-Empty:\r\nX-Blank:   \r\nX-Tight:y\r\n\
            X-Last: z\r\n\r\n";
        let (_, written) = origin_head(head, 80, &mut Vec::new());
        assert_eq!(
            written,
            "GET / HTTP/1.1\r\nhost: a.test\r\nX-Empty: \r\nX-Blank: \r\nX-Tight:y\r\n\
             X-Last: z\r\nvia: 1.1 egressd\r\n\r\n"
        );
    }

    #[test]
    fn only_plain_bodiless_requests_take_the_fast_path() {
        let p = take("GET http://a.test/x?y HTTP/1.1\r\nHost: a.test\r\n\r\n").unwrap();
        assert_eq!(p.req.uri(), "http://a.test/x?y");
        assert!(!p.close);
        let p = take("HEAD HTTP://a.test/ HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n");
        assert!(p.unwrap().close);
        for hyper in [
            "POST http://a.test/ HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            "GET http://a.test/ HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            "GET http://a.test/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET http://a.test/ HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            "GET http://a.test/ HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
            "GET http://a.test/ HTTP/1.0\r\n\r\n",
            "GET /origin-form HTTP/1.1\r\nHost: a.test\r\n\r\n",
            "GET https://a.test/ HTTP/1.1\r\n\r\n",
            "GET http:// HTTP/1.1\r\n\r\n",
            "CONNECT a.test:443 HTTP/1.1\r\n\r\n",
            "OPTIONS * HTTP/1.1\r\n\r\n",
            "GET http://a.test/ HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
            "GET http://a.test/ HTTP/1.1\r\nHost : a\r\n\r\n",
        ] {
            assert!(take(hyper).is_none(), "{hyper:?} took the fast path");
        }
    }
}
