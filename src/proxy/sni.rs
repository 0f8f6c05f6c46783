//! The first bytes of a CONNECT tunnel: read them (bounded in size and time), and when they are a
//! TLS ClientHello take its server name (SNI), so the policy can be applied to where the
//! tunnel really goes.
//!
//! Parsing is rustls's ([`rustls::server::Acceptor`]), not a hand-written TLS parser. The
//! classification is deliberately fail-closed:
//! - first byte not `0x16` (a TLS handshake record): **not TLS** (`tunnel.allow_non_tls`
//!   decides);
//! - looks like TLS but rustls refuses it, it is larger than [`MAX_HELLO_BYTES`], it stalls
//!   past the deadline or the client closes mid-hello: **malformed**, always closed (an origin's
//!   TLS stack might accept what egressd could not read, so it must not pass uninspected);
//! - a ClientHello without SNI, or with an IP literal in it (RFC 6066 forbids that; rustls
//!   treats it as absent): **no SNI**, the CONNECT target alone decides;
//! - with Encrypted Client Hello the readable SNI is the outer one (the ECH provider's public
//!   name), and that is what egressd decides on; the inner name cannot be seen without
//!   terminating TLS, which egressd never does.
//!
//! rustls also refuses ClientHellos without the `signature_algorithms` extension or without
//! null compression, i.e. pre-TLS 1.2 clients; those tunnels are closed (malformed).

use std::time::Duration;

use rustls::server::Acceptor;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::policy::host::{normalize_host, Host};

/// The most bytes read while waiting for a complete ClientHello. Real ones are 200 bytes to
/// about 2 KiB (post-quantum key shares included); 16 KiB is one full TLS record.
pub const MAX_HELLO_BYTES: usize = 16 * 1024;

/// What a buffer of first bytes is, as far as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse {
    /// A prefix of something that may still become a ClientHello.
    NeedMore,
    /// A complete ClientHello; its SNI as sent (lower case), if it has a DNS name.
    Hello(Option<String>),
    NotTls,
    Invalid(String),
}

/// Classifies `buf`, the first bytes a client sent into a tunnel, in one go. Pure, so it can be
/// fuzzed; the tunnel feeds bytes as they arrive through a [`HelloParser`] instead.
pub fn parse(buf: &[u8]) -> Parse {
    HelloParser::default().feed(buf)
}

/// Incremental classification: each call gives only the new bytes, so a client that trickles
/// its hello byte by byte costs linear work, not a re-parse per byte.
#[derive(Default)]
pub struct HelloParser {
    acceptor: Acceptor,
    started: bool,
}

impl HelloParser {
    /// Feeds the next bytes; once a result other than `NeedMore` is returned, stop feeding.
    pub fn feed(&mut self, bytes: &[u8]) -> Parse {
        if !self.started {
            match bytes.first() {
                None => return Parse::NeedMore,
                Some(0x16) => self.started = true,
                Some(_) => return Parse::NotTls,
            }
        }
        let mut rest = bytes;
        while !rest.is_empty() {
            match self.acceptor.read_tls(&mut rest) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return Parse::Invalid(e.to_string()),
            }
        }
        match self.acceptor.accept() {
            Ok(None) => Parse::NeedMore,
            Ok(Some(accepted)) => {
                Parse::Hello(accepted.client_hello().server_name().map(str::to_owned))
            }
            Err((e, _alert)) => Parse::Invalid(e.to_string()),
        }
    }
}

/// What the client sent first, as the tunnel acts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirstBytes {
    /// A TLS ClientHello; its normalised SNI (`None`: no usable SNI).
    Tls(Option<Host>),
    /// Something other than TLS.
    NotTls,
    /// Nothing arrived before the deadline (a server-speaks-first protocol, or an idle client).
    Silent,
    /// The client closed (or reset) the connection before sending a byte.
    Closed,
    /// TLS-looking bytes egressd cannot read as a ClientHello (see the module docs).
    Malformed(String),
}

/// Reads from `client` until its first bytes are classified, at most `max` bytes and until
/// `timeout`. Returns the bytes read (to be forwarded if the tunnel proceeds) and what they are.
pub async fn read_first_bytes<R>(
    client: &mut R,
    max: usize,
    timeout: Duration,
) -> (Vec<u8>, FirstBytes)
where
    R: AsyncRead + Unpin,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = vec![0u8; 4096];
    let mut parser = HelloParser::default();
    let mut fed = 0;
    loop {
        let parsed = parser.feed(&buf[fed..]);
        fed = buf.len();
        match parsed {
            Parse::NeedMore => {}
            Parse::NotTls => return (buf, FirstBytes::NotTls),
            Parse::Invalid(why) => return (buf, FirstBytes::Malformed(why)),
            Parse::Hello(None) => return (buf, FirstBytes::Tls(None)),
            Parse::Hello(Some(name)) => {
                let first = match normalize_host(&name) {
                    Ok(host) => FirstBytes::Tls(Some(host)),
                    Err(e) => FirstBytes::Malformed(format!("SNI {name:?}: {e}")),
                };
                return (buf, first);
            }
        }
        if buf.len() >= max {
            let why = format!("no complete ClientHello in the first {max} bytes");
            return (buf, FirstBytes::Malformed(why));
        }
        let room = (max - buf.len()).min(chunk.len());
        match tokio::time::timeout_at(deadline, client.read(&mut chunk[..room])).await {
            Err(_) if buf.is_empty() => return (buf, FirstBytes::Silent),
            Err(_) => {
                let why = "incomplete ClientHello at the deadline".to_owned();
                return (buf, FirstBytes::Malformed(why));
            }
            Ok(Ok(0)) if buf.is_empty() => return (buf, FirstBytes::Closed),
            Ok(Ok(0)) => {
                let why = "client closed in the middle of a ClientHello".to_owned();
                return (buf, FirstBytes::Malformed(why));
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            // A reset before any byte is a client that went away, not a malformed hello.
            Ok(Err(_)) if buf.is_empty() => return (buf, FirstBytes::Closed),
            Ok(Err(e)) => return (buf, FirstBytes::Malformed(format!("read error: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests;
