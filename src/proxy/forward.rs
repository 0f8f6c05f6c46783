//! Plain-HTTP forwarding: the request is rewritten for the origin (origin-form target sent to
//! the checked address, hop-by-hop headers removed, `Host` from the absolute URI, `Via` added)
//! and sent over hyper-util's pooled client, so keep-alive to origins is reused across clients.
//!
//! The pool is keyed by the *checked IP address* (the URI handed to the client carries it), so
//! a pooled connection is only ever reused for an address that passed the egress guard.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use super::dial::{self, DialError};
use super::observe::MeteredBody;
use super::respond::ErrorType;
use super::target::Target;

/// The `Via` value egressd adds (RFC 9110 §7.6.3).
pub const VIA: HeaderValue = HeaderValue::from_static("1.1 egressd");

/// Request bodies are metered on their way upstream (`egressd_bytes_total`).
pub type UpstreamClient = Client<Connector, MeteredBody>;

/// Connects to the IP:port in the URI it is given; the URI only ever carries a checked address.
#[derive(Clone)]
pub struct Connector {
    /// `timeouts.connect` in milliseconds, shared so a reload changes it for the pool too.
    pub connect_timeout_ms: Arc<AtomicU64>,
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<TcpStream>;
    type Error = DialError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, DialError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), DialError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let timeout = Duration::from_millis(self.connect_timeout_ms.load(Relaxed));
        Box::pin(async move {
            let addr = uri_addr(&uri)?;
            dial::connect(addr, timeout).await.map(TokioIo::new)
        })
    }
}

fn uri_addr(uri: &Uri) -> Result<SocketAddr, DialError> {
    let bad = || DialError::Dns(uri.to_string(), "not an address".into());
    let host = uri.host().ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = host.parse().map_err(|_| bad())?;
    Ok(SocketAddr::new(ip, uri.port_u16().unwrap_or(80)))
}

pub fn client(connect_timeout_ms: Arc<AtomicU64>) -> UpstreamClient {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .set_host(false)
        .build(Connector { connect_timeout_ms })
}

/// Headers that describe one hop, never forwarded (RFC 9110 §7.6.1), plus the proxy-only ones.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers, including every header the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}

/// Rewrites a client request for the origin at `addr` (a checked address of `target`).
pub fn prepare_request(
    req: &mut Request<Incoming>,
    target: &Target,
    addr: SocketAddr,
    client: Option<IpAddr>,
) -> Result<(), ErrorType> {
    let pq = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    *req.uri_mut() = Uri::builder()
        .scheme("http")
        .authority(addr.to_string())
        .path_and_query(pq)
        .build()
        .map_err(|_| ErrorType::HttpRequestError)?;
    let headers = req.headers_mut();
    strip_hop_by_hop(headers);
    let host =
        HeaderValue::from_str(&target.host_header(80)).map_err(|_| ErrorType::HttpRequestError)?;
    headers.insert(header::HOST, host);
    headers.append(header::VIA, VIA);
    if let Some(ip) = client {
        let v =
            HeaderValue::from_str(&ip.to_string()).map_err(|_| ErrorType::ProxyInternalError)?;
        headers.append(HeaderName::from_static("x-forwarded-for"), v);
    }
    Ok(())
}

/// Cleans an origin response for the client.
pub fn prepare_response(headers: &mut HeaderMap) {
    strip_hop_by_hop(headers);
    headers.append(header::VIA, VIA);
}

/// The RFC 9209 error type for a failed upstream exchange.
pub fn classify(err: &hyper_util::client::legacy::Error) -> ErrorType {
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        if let Some(d) = e.downcast_ref::<DialError>() {
            return d.error_type();
        }
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            if h.is_parse() || h.is_parse_status() {
                return ErrorType::HttpProtocolError;
            }
            if h.is_incomplete_message() {
                return ErrorType::HttpResponseIncomplete;
            }
            if h.is_timeout() {
                return ErrorType::HttpResponseTimeout;
            }
        }
        source = e.source();
    }
    ErrorType::ConnectionTerminated
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_tokens_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        h.insert(
            header::PROXY_AUTHORIZATION,
            HeaderValue::from_static("Basic eA=="),
        );
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        let names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-kept"]);
    }

    #[test]
    fn uri_addr_parses_checked_addresses() {
        let u: Uri = "http://[::1]:8080/".parse().unwrap();
        assert_eq!(uri_addr(&u).unwrap(), "[::1]:8080".parse().unwrap());
        let u: Uri = "http://example.com/".parse().unwrap();
        assert!(uri_addr(&u).is_err());
    }
}
