//! Accept loop and per-connection serving: connection caps, the hyper HTTP/1.1 connection with
//! upgrades (CONNECT), and the activity watchdog that enforces idle and request-header timeouts.
//! Each connection runs in its own task, so a panic in one never reaches another or the
//! listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::activity::{Activity, TrackedIo};
use super::limits::{ConnPermit, Refusal};
use super::service::{self, ConnCtx, Shared};
use super::tls::{self, TlsPeer};
use crate::metrics::Listener;

/// What a proxy listener speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Plain,
    /// `listen.proxy_tls`: a TLS handshake, then the same HTTP service.
    Tls,
}

/// Serves one listener until the drain starts (or the task is dropped); then the listening
/// socket is closed at once, so new connections are refused while open ones finish.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, transport: Transport) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shared.draining.cancelled() => return,
        };
        let (tcp, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning; the listener stays up.
                tracing::warn!(error = %e, ?transport, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        match shared.limiter.try_acquire(peer.ip()) {
            Ok(permit) => {
                let _ = tcp.set_nodelay(true);
                let shared2 = shared.clone();
                match transport {
                    Transport::Plain => {
                        (shared.tasks).spawn(serve_connection(tcp, peer, shared2, permit, None));
                    }
                    Transport::Tls => {
                        (shared.tasks).spawn(tls::handshake_and_serve(tcp, peer, shared2, permit));
                    }
                }
            }
            // Over the caps: a plain client gets a 503/429 it can read; a TLS client could
            // not read one before its handshake, so its connection is just closed.
            Err(why) if transport == Transport::Plain => {
                tokio::spawn(refuse(tcp, why));
            }
            Err(why) => tracing::debug!(%peer, ?why, "TLS client over the connection caps closed"),
        }
    }
}

/// Serves HTTP/1.1 on one accepted client connection: plain TCP, or a TLS stream of the TLS
/// listener (`tls` is then what its handshake established).
pub(crate) async fn serve_connection<I>(
    io: I,
    peer: SocketAddr,
    shared: Arc<Shared>,
    _permit: ConnPermit,
    tls: Option<TlsPeer>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let listener = if tls.is_some() {
        Listener::ProxyTls
    } else {
        Listener::Proxy
    };
    let _active = shared.metrics.connection(listener);
    let (idle, header, max_header) = {
        let snap = shared.snapshot.load();
        let s = &snap.settings;
        (
            s.timeouts.idle,
            s.timeouts.request_header,
            s.limits.max_header_bytes,
        )
    };
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(TrackedIo::new(io, activity.clone()));
    let draining = shared.draining.clone();
    let ctx = Arc::new(ConnCtx {
        peer,
        activity: activity.clone(),
        shared,
        tls,
    });
    let svc = service_fn(move |req| service::handle(req, ctx.clone()));
    let conn = http1::Builder::new()
        .keep_alive(true)
        .header_read_timeout(None)
        .max_header_size(max_header)
        .max_buf_size(max_header.max(8192) + 8192)
        .serve_connection(io, svc)
        .with_upgrades();
    tokio::pin!(conn);
    let watchdog = activity.watch_connection(idle, header);
    tokio::pin!(watchdog);
    let mut drain_started = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "client connection ended with an error");
                }
                return;
            }
            why = watchdog.as_mut() => {
                tracing::debug!(%peer, ?why, "closing client connection on timeout");
                return;
            }
            // Drain: finish the request in flight (if any), then close instead of keeping alive.
            _ = draining.cancelled(), if !drain_started => {
                drain_started = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Answers a connection over the caps with 503 (proxy full) or 429 (this client has too many)
/// and closes it; a client can tell the difference and back off.
async fn refuse(mut tcp: TcpStream, why: Refusal) {
    let msg: &[u8] = match why {
        Refusal::Total => b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nProxy-Status: egressd; error=proxy_internal_error; details=\"limits.max_connections\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        Refusal::PerClient => b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nProxy-Status: egressd; error=proxy_internal_error; details=\"limits.max_connections_per_client\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), tcp.write_all(msg)).await;
    let _ = tcp.shutdown().await;
}
