//! Origin connections of the fast path ([`super::fast`]): plain TCP sockets with their own read
//! buffer, pooled by *checked* socket address, and the response side of HTTP/1.1 as a proxy
//! relays it — the head parsed with httparse, the body framed as RFC 9112 §6.3 says and passed
//! on re-framed for the client (a length as it is; chunks, and a body that ends with the
//! connection, as chunks).
//!
//! Anything unusual about a response is an error here, never a guess: a framing the proxy would
//! have to interpret (a transfer coding other than `chunked`, conflicting lengths, `chunked` in
//! HTTP/1.0) is a `502` with `http_protocol_error`.
//!
//! A connection is kept for another request only when its response was complete, framed by
//! length or chunks, said nothing of closing, and left no byte unread. One whose origin closed
//! while it was idle is caught at checkout (see [`Origin::alive`]); a request that a reused
//! connection failed before any byte of the answer arrived is retried by the caller on a new
//! connection (fast-path requests are GET and HEAD, both idempotent).

use std::collections::HashMap;
use std::io::{self, Write as _};
use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::dial::{self, DialError};
use super::fast::http_date;
use super::forward;
use super::observe::Exchange;
use super::respond::ErrorType;

/// An idle connection older than this is closed rather than reused (origins commonly close
/// theirs after 60–120 s; a connection they closed is also caught at checkout).
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle connections kept per origin address; more are closed when they come back.
const MAX_IDLE_PER_ADDR: usize = 256;
/// Response heads (and chunk-size lines, trailers) larger than this are refused.
const MAX_HEAD: usize = 64 * 1024;
/// Header fields in a response head (hyper's client allows as many).
const MAX_FIELDS: usize = 100;
/// Read size while relaying a large body.
const BODY_READ: usize = 32 * 1024;

/// Why an exchange with an origin failed before its response head was complete.
#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    #[error(transparent)]
    Dial(#[from] DialError),
    /// The connection failed before any byte of the answer: a reused connection the origin
    /// had closed. Safe to retry on a new one.
    #[error("origin closed the connection before answering")]
    Stale,
    #[error("origin answer ended before its head was complete")]
    Incomplete,
    #[error("origin answer is not valid HTTP/1.1: {0}")]
    Protocol(&'static str),
    #[error("origin connection failed: {0}")]
    Io(#[from] io::Error),
}

impl OriginError {
    /// The RFC 9209 error type for the client (the same as the hyper path reports).
    pub fn error_type(&self) -> ErrorType {
        match self {
            OriginError::Dial(d) => d.error_type(),
            OriginError::Incomplete => ErrorType::HttpResponseIncomplete,
            OriginError::Protocol(_) => ErrorType::HttpProtocolError,
            OriginError::Stale | OriginError::Io(_) => ErrorType::ConnectionTerminated,
        }
    }
}

/// How a response body is delimited on the origin connection (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// HEAD, 1xx, 204, 304: no body whatever the header fields say.
    Empty,
    Length(u64),
    Chunked,
    /// Neither length nor chunks: the body ends when the origin closes.
    UntilClose,
}

/// What the fast path needs of a response head (the head itself is already written for the
/// client, see [`parse_head`]).
#[derive(Debug)]
pub struct Head {
    pub status: StatusCode,
    pub framing: Framing,
    /// The connection may carry another request once this body is read.
    pub reusable: bool,
}

/// A body relay that ended early.
#[derive(Debug)]
pub enum RelayError {
    /// The origin broke off, or sent a body that is not valid framing.
    Origin,
    /// The client went away.
    Client,
}

/// One connection to an origin, with what was read from it and not yet used.
pub struct Origin {
    pub addr: SocketAddr,
    tcp: TcpStream,
    buf: BytesMut,
    since: Instant,
}

impl Origin {
    /// A new connection to the first of the checked addresses that answers.
    pub async fn connect_any(
        addrs: &[IpAddr],
        port: u16,
        timeout: Duration,
    ) -> Result<Origin, OriginError> {
        let (tcp, addr) = dial::connect_any(addrs, port, timeout).await?;
        Ok(Origin {
            addr,
            tcp,
            buf: BytesMut::with_capacity(8 * 1024),
            since: Instant::now(),
        })
    }

    /// Whether an idle connection can be reused: not too old, and the origin neither closed
    /// it nor sent anything unasked. Costs no system call while the socket has not been
    /// readable since its last read returned `EWOULDBLOCK`.
    pub fn alive(&mut self) -> bool {
        if self.since.elapsed() >= IDLE_TIMEOUT || !self.buf.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(Waker::noop());
        if self.tcp.poll_read_ready(&mut cx).is_pending() {
            return true;
        }
        let mut probe = [0u8; 1];
        matches!(self.tcp.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Writes the request head in `out` and reads the response head, skipping interim (1xx)
    /// answers; `out` then holds the head for the client ([`parse_head`]). `head_request`: the
    /// request was HEAD, so the answer has no body.
    pub async fn exchange(
        &mut self,
        out: &mut Vec<u8>,
        head_request: bool,
    ) -> Result<Head, OriginError> {
        if self.tcp.write_all(out).await.is_err() {
            return Err(OriginError::Stale);
        }
        let mut answered = false;
        loop {
            if !self.buf.is_empty() {
                answered = true;
                if let Some((len, head)) = parse_head(&self.buf, head_request, out)? {
                    self.buf.advance(len);
                    if head.status.is_informational() {
                        continue;
                    }
                    return Ok(head);
                }
                if self.buf.len() > MAX_HEAD {
                    return Err(OriginError::Protocol("response head too large"));
                }
            }
            self.buf.reserve(4096);
            match self.tcp.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) if !answered => return Err(OriginError::Stale),
                Ok(0) => return Err(OriginError::Incomplete),
                Ok(_) => {}
                Err(e) => return Err(OriginError::Io(e)),
            }
        }
    }

    /// Relays the body of the response whose head is in `out` (not yet written) to `client`,
    /// counting body bytes in `ex`. On `Ok` the body was read to its end.
    pub async fn relay_body<W: AsyncWrite + Unpin>(
        &mut self,
        framing: Framing,
        out: &mut Vec<u8>,
        client: &mut W,
        ex: &mut Exchange,
    ) -> Result<(), RelayError> {
        match framing {
            Framing::Empty => flush(client, out).await,
            Framing::Length(n) => {
                self.copy(n, out, client, ex).await?;
                flush(client, out).await
            }
            Framing::Chunked => self.relay_chunks(out, client, ex).await,
            Framing::UntilClose => self.relay_until_close(out, client, ex).await,
        }
    }

    /// Copies `n` body bytes, first from the buffer (behind what `out` holds), then straight
    /// from the socket.
    async fn copy<W: AsyncWrite + Unpin>(
        &mut self,
        mut n: u64,
        out: &mut Vec<u8>,
        client: &mut W,
        ex: &mut Exchange,
    ) -> Result<(), RelayError> {
        loop {
            let take = (self.buf.len() as u64).min(n) as usize;
            if out.is_empty() && take > 0 {
                // The head went out already: the rest goes straight from the read buffer.
                let r = client.write_all(&self.buf[..take]).await;
                r.map_err(|_| RelayError::Client)?;
            } else {
                out.extend_from_slice(&self.buf[..take]);
            }
            self.buf.advance(take);
            ex.sent_down(take);
            n -= take as u64;
            if n == 0 {
                return Ok(());
            }
            flush(client, out).await?;
            self.fill(n.min(BODY_READ as u64) as usize).await?;
        }
    }

    /// Reads more of the origin's answer; its end here is an error.
    async fn fill(&mut self, want: usize) -> Result<(), RelayError> {
        self.buf.reserve(want.max(4096));
        match self.tcp.read_buf(&mut self.buf).await {
            Ok(0) | Err(_) => Err(RelayError::Origin),
            Ok(_) => Ok(()),
        }
    }

    async fn relay_chunks<W: AsyncWrite + Unpin>(
        &mut self,
        out: &mut Vec<u8>,
        client: &mut W,
        ex: &mut Exchange,
    ) -> Result<(), RelayError> {
        loop {
            let (used, size) = loop {
                match httparse::parse_chunk_size(&self.buf) {
                    Ok(httparse::Status::Complete(c)) => break c,
                    Ok(httparse::Status::Partial) if self.buf.len() < MAX_HEAD => {
                        flush(client, out).await?;
                        self.fill(4096).await?;
                    }
                    _ => return Err(RelayError::Origin),
                }
            };
            self.buf.advance(used);
            if size == 0 {
                self.skip_trailers(out, client).await?;
                out.extend_from_slice(b"0\r\n\r\n");
                return flush(client, out).await;
            }
            let _ = write!(out, "{size:x}\r\n");
            self.copy(size, out, client, ex).await?;
            while self.buf.len() < 2 {
                flush(client, out).await?;
                self.fill(2).await?;
            }
            if &self.buf[..2] != b"\r\n" {
                return Err(RelayError::Origin);
            }
            self.buf.advance(2);
            out.extend_from_slice(b"\r\n");
        }
    }

    /// Trailer fields are not passed on (the hyper path drops them too); they are read to
    /// their end so the connection stays usable.
    async fn skip_trailers<W: AsyncWrite + Unpin>(
        &mut self,
        out: &mut Vec<u8>,
        client: &mut W,
    ) -> Result<(), RelayError> {
        loop {
            match trailers_end(&self.buf) {
                Ok(httparse::Status::Complete(n)) => {
                    self.buf.advance(n);
                    return Ok(());
                }
                Ok(httparse::Status::Partial) if self.buf.len() < MAX_HEAD => {
                    flush(client, out).await?;
                    self.fill(1024).await?;
                }
                _ => return Err(RelayError::Origin),
            }
        }
    }

    async fn relay_until_close<W: AsyncWrite + Unpin>(
        &mut self,
        out: &mut Vec<u8>,
        client: &mut W,
        ex: &mut Exchange,
    ) -> Result<(), RelayError> {
        loop {
            if !self.buf.is_empty() {
                let _ = write!(out, "{:x}\r\n", self.buf.len());
                out.extend_from_slice(&self.buf);
                out.extend_from_slice(b"\r\n");
                ex.sent_down(self.buf.len());
                self.buf.clear();
            }
            flush(client, out).await?;
            self.buf.reserve(BODY_READ);
            match self.tcp.read_buf(&mut self.buf).await {
                Ok(0) => {
                    out.extend_from_slice(b"0\r\n\r\n");
                    return flush(client, out).await;
                }
                Ok(_) => {}
                Err(_) => return Err(RelayError::Origin),
            }
        }
    }
}

/// Where the trailer section at the front of `buf` ends. Not inline in `skip_trailers`: its
/// field array (3 KiB) would then be held across that function's awaits, in the state of every
/// fast-path connection's task.
fn trailers_end(buf: &[u8]) -> Result<httparse::Status<usize>, httparse::Error> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    Ok(match httparse::parse_headers(buf, &mut fields)? {
        httparse::Status::Complete((n, _)) => httparse::Status::Complete(n),
        httparse::Status::Partial => httparse::Status::Partial,
    })
}

/// Writes and empties `out`.
async fn flush<W: AsyncWrite + Unpin>(client: &mut W, out: &mut Vec<u8>) -> Result<(), RelayError> {
    if out.is_empty() {
        return Ok(());
    }
    let r = client.write_all(out).await;
    out.clear();
    r.map_err(|_| RelayError::Client)
}

/// Parses a response head; `Ok(None)` while it is incomplete. On success `out` holds the head
/// for the client up to its framing (the caller adds `Connection: close`, `Transfer-Encoding`
/// and the empty line): the status line, the origin's fields less the hop-by-hop ones
/// (`forward::is_hop_by_hop`, and those its `Connection` names), `Via`, and a `Date` when the
/// origin sent none (RFC 9110 §6.6.1). The fields are copied as httparse checked them (names
/// are tokens; values hold no CR, LF or other control byte), never through a `HeaderMap`.
fn parse_head(
    buf: &[u8],
    head_request: bool,
    out: &mut Vec<u8>,
) -> Result<Option<(usize, Head)>, OriginError> {
    // Uninitialised: filling 100 empty headers would cost more than parsing the head.
    let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
    let mut resp = httparse::Response::new(&mut []);
    let config = httparse::ParserConfig::default();
    let len = match config.parse_response_with_uninit_headers(&mut resp, buf, &mut fields) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(OriginError::Protocol("too many header fields"))
        }
        Err(_) => return Err(OriginError::Protocol("malformed response head")),
    };
    let status = resp
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or(OriginError::Protocol("invalid status code"))?;
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return Err(OriginError::Protocol(
            "101 to a request that asked no upgrade",
        ));
    }
    let http11 = resp.version == Some(1);
    let mut length: Option<u64> = None;
    let mut codings = 0u32;
    let mut chunked_last = false;
    let mut close = !http11;
    let mut named = false; // `Connection` names something other than close/keep-alive
    let mut date = false;
    for f in resp.headers.iter() {
        let name = f.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = parse_length(f.value).ok_or(OriginError::Protocol("invalid Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(OriginError::Protocol("conflicting Content-Length values"));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            for coding in tokens(f.value) {
                codings += 1;
                chunked_last = coding.eq_ignore_ascii_case(b"chunked");
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            for t in tokens(f.value) {
                if t.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if !t.eq_ignore_ascii_case(b"keep-alive") {
                    named = true;
                }
            }
        } else if name.eq_ignore_ascii_case(b"date") {
            date = true;
        }
    }
    let no_body = head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let framing = if codings > 0 {
        if !http11 {
            return Err(OriginError::Protocol(
                "Transfer-Encoding in an HTTP/1.0 response",
            ));
        }
        if codings != 1 || !chunked_last {
            return Err(OriginError::Protocol("transfer coding other than chunked"));
        }
        // §6.3 ¶3: the coding wins (a length beside it is not passed on), and a connection
        // that sent both is not trusted with another request.
        close |= length.is_some();
        Framing::Chunked
    } else {
        length.map_or(Framing::UntilClose, Framing::Length)
    };
    let framing = if no_body { Framing::Empty } else { framing };
    if status.is_informational() {
        return Ok(Some((
            len,
            Head {
                status,
                framing,
                reusable: false,
            },
        )));
    }
    out.clear();
    // With room for a small body too: a new connection's buffer is empty, and growing it
    // by doubling cost more than the rest of writing the head.
    out.reserve(len + 512);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    let reason = resp.reason.unwrap_or("");
    out.extend_from_slice(if reason.is_empty() {
        status.canonical_reason().unwrap_or("").as_bytes()
    } else {
        reason.as_bytes()
    });
    out.extend_from_slice(b"\r\n");
    let connection = resp
        .headers
        .iter()
        .filter(|f| f.name.eq_ignore_ascii_case("connection"));
    let mut lines = forward::Lines::default();
    for f in resp.headers.iter() {
        let name = f.name.as_bytes();
        if forward::is_hop_by_hop(name)
            || (codings > 0 && name.eq_ignore_ascii_case(b"content-length"))
            || (named
                && connection
                    .clone()
                    .any(|c| tokens(c.value).any(|t| t.eq_ignore_ascii_case(name))))
        {
            continue;
        }
        let line = forward::Lines::line_of(buf, name, f.value);
        lines.keep(buf, out, line, name, f.value);
    }
    lines.flush(buf, out);
    out.extend_from_slice(b"via: 1.1 egressd\r\n");
    if !date {
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(&http_date());
        out.extend_from_slice(b"\r\n");
    }
    let reusable = !close && framing != Framing::UntilClose;
    Ok(Some((
        len,
        Head {
            status,
            framing,
            reusable,
        },
    )))
}

/// A `Content-Length` value: digits only (RFC 9110 §8.6), at most 19 of them.
fn parse_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // 19 digits stay below `u64::MAX`; `str::parse` cost ten times this loop.
    Some(v.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

/// The comma-separated tokens of a list-valued field, trimmed, empty ones skipped.
pub fn tokens(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',')
        .map(|t| t.trim_ascii())
        .filter(|t| !t.is_empty())
}

thread_local! {
    static THREAD_POOL: std::cell::RefCell<Option<Arc<OriginPool>>> =
        const { std::cell::RefCell::new(None) };
}

/// Makes `pool` the one fast-path connections accepted on this thread use (a per-core runtime:
/// a socket stays with the runtime that registered it, like `upstream::set_thread_pool`).
pub fn set_thread_pool(pool: Arc<OriginPool>) {
    THREAD_POOL.with(|p| *p.borrow_mut() = Some(pool));
}

/// This thread's pool, when it has one.
pub fn thread_pool() -> Option<Arc<OriginPool>> {
    THREAD_POOL.with(|p| p.borrow().clone())
}

/// Idle fast-path origin connections, shared by all client connections (of a per-core thread).
#[derive(Default)]
pub struct OriginPool {
    idle: Mutex<HashMap<SocketAddr, Vec<Origin>>>,
}

impl OriginPool {
    /// The most recently used live idle connection to `addr`.
    pub fn checkout(&self, addr: SocketAddr) -> Option<Origin> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(&addr)?;
        while let Some(mut o) = list.pop() {
            if o.alive() {
                return Some(o);
            }
        }
        None
    }

    /// Keeps a connection whose last answer was read to its end.
    pub fn checkin(&self, mut o: Origin) {
        o.touch();
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.entry(o.addr).or_default();
        if list.len() < MAX_IDLE_PER_ADDR {
            list.push(o);
        }
    }

    /// Closes idle connections that expired or that their origin closed. Called periodically.
    pub fn sweep(&self) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.retain(|_, list| {
            list.retain_mut(Origin::alive);
            !list.is_empty()
        });
    }

    /// Idle connections held, for tests and diagnostics.
    pub fn idle_count(&self) -> usize {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.values().map(Vec::len).sum()
    }
}

impl Origin {
    /// Marks the connection as used now (it is idle from here).
    pub fn touch(&mut self) {
        self.since = Instant::now();
        if self.buf.capacity() > super::fast::KEEP_BUFFER && self.buf.is_empty() {
            self.buf = BytesMut::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Result<Option<(usize, Head)>, OriginError> {
        parse_head(raw.as_bytes(), false, &mut Vec::new())
    }

    /// The head written for the client, lower-cased, without the `date` line.
    fn client_head(raw: &str) -> String {
        let mut out = Vec::new();
        parse_head(raw.as_bytes(), false, &mut out)
            .unwrap()
            .unwrap();
        String::from_utf8(out)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with("date: "))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The digit loop reads what `str::parse` reads, and refuses what RFC 9110 §8.6 refuses.
    #[test]
    fn content_length_values() {
        for v in [
            "0",
            "7",
            "0012",
            "18446744073709551615",
            "9999999999999999999",
        ] {
            let want = (v.len() <= 19).then(|| v.parse::<u64>().unwrap());
            assert_eq!(parse_length(v.as_bytes()), want, "{v}");
        }
        for v in [
            "",
            "+5",
            "-1",
            " 5",
            "5 ",
            "1,2",
            "0x10",
            "12345678901234567890",
        ] {
            assert_eq!(parse_length(v.as_bytes()), None, "{v:?}");
        }
    }

    #[test]
    fn framing_follows_rfc9112() {
        let h = |raw: &str| head(raw).unwrap().unwrap().1;
        let r = h("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n");
        assert_eq!((r.framing, r.reusable), (Framing::Length(5), true));
        let r = h("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(r.framing, Framing::Length(5));
        let r = h("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!((r.framing, r.reusable), (Framing::Chunked, true));
        let r = h("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n");
        assert_eq!((r.framing, r.reusable), (Framing::Chunked, false));
        let r = h("HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!((r.framing, r.reusable), (Framing::UntilClose, false));
        let r = h("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(r.framing, Framing::Empty);
        let r = h("HTTP/1.1 304 Not Modified\r\n\r\n");
        assert_eq!((r.framing, r.reusable), (Framing::Empty, true));
        let r = h("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n");
        assert_eq!((r.framing, r.reusable), (Framing::Length(1), false));
        let r = h("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive, Close\r\n\r\n");
        assert!(!r.reusable);
        let r = parse_head(
            b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n",
            true,
            &mut Vec::new(),
        );
        assert_eq!(r.unwrap().unwrap().1.framing, Framing::Empty);
        assert!(head("HTTP/1.1 200 OK\r\nContent-Le").unwrap().is_none());
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        for raw in [
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 101 Switching Protocols\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n",
        ] {
            assert!(
                matches!(head(raw), Err(OriginError::Protocol(_))),
                "{raw:?} was accepted"
            );
        }
    }

    /// Lines that end in CRLF right after their value are copied as the origin wrote them
    /// (spacing included), in runs broken by dropped fields; the others are written anew.
    #[test]
    fn field_lines_are_copied_verbatim_or_rewritten() {
        assert_eq!(
            client_head(
                "HTTP/1.1 200 OK\r\nA: 1\r\nB:2\r\nKeep-Alive: x\r\nC: 3  \r\nD:\r\n\
                 E:\t5\nF:  6\r\nG: 7\r\nContent-Length: 0\r\n\r\n"
            ),
            "HTTP/1.1 200 OK\nA: 1\nB:2\nC: 3\nD: \nE: 5\nF:  6\nG: 7\nContent-Length: 0\n\
             via: 1.1 egressd"
        );
        let mut out = Vec::new();
        parse_head(b"HTTP/1.1 200 OK\r\nA: 1\nB: 2\r\n\n", false, &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(out.starts_with("HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nvia: 1.1 egressd\r\n"));
        assert!(!out.replace("\r\n", "").contains('\n'), "{out:?}");
    }

    #[test]
    fn the_client_head_drops_hop_by_hop_fields_and_adds_via_and_date() {
        assert_eq!(
            client_head("HTTP/1.1 200 Fine\r\nServer: o\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: timeout=5\r\nX-Hop: 1\r\nProxy-Authenticate: Basic\r\nTrailer: x\r\nUpgrade: h2c\r\nX-Kept: 2\r\nContent-Length: 0\r\n\r\n"),
            "HTTP/1.1 200 Fine\nServer: o\nX-Kept: 2\nContent-Length: 0\nvia: 1.1 egressd"
        );
        // A length beside chunks is not passed on; nor is the coding (the caller frames).
        assert_eq!(
            client_head("HTTP/1.1 404 \r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"),
            "HTTP/1.1 404 Not Found\nvia: 1.1 egressd"
        );
        let mut out = Vec::new();
        parse_head(b"HTTP/1.1 200 OK\r\n\r\n", false, &mut out).unwrap();
        assert!(String::from_utf8(out).unwrap().contains("\r\ndate: "));
        let mut out = Vec::new();
        parse_head(b"HTTP/1.1 200 OK\r\nDate: x\r\n\r\n", false, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap().matches("ate: ").count(), 1);
    }
}
