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
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use super::activity::{Activity, TrackedIo};
use super::limits::{ConnLimiter, ConnPermit, Refusal};
use super::service::{self, ConnCtx, Shared};
use crate::metrics::Listener;

/// Serves one listener until the task is dropped.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, limiter: Arc<ConnLimiter>) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning; the listener stays up.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        match limiter.try_acquire(peer.ip()) {
            Ok(permit) => {
                tokio::spawn(serve_connection(tcp, peer, shared.clone(), permit));
            }
            Err(why) => {
                tokio::spawn(refuse(tcp, why));
            }
        }
    }
}

async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    _permit: ConnPermit,
) {
    let _active = shared.metrics.connection(Listener::Proxy);
    let _ = tcp.set_nodelay(true);
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
    let io = TokioIo::new(TrackedIo::new(tcp, activity.clone()));
    let ctx = Arc::new(ConnCtx {
        peer,
        activity: activity.clone(),
        shared,
    });
    let svc = service_fn(move |req| service::handle(req, ctx.clone()));
    let conn = http1::Builder::new()
        .keep_alive(true)
        .header_read_timeout(None)
        .max_header_size(max_header)
        .max_buf_size(max_header.max(8192) + 8192)
        .serve_connection(io, svc)
        .with_upgrades();
    tokio::select! {
        r = conn => {
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "client connection ended with an error");
            }
        }
        why = activity.watch_connection(idle, header) => {
            tracing::debug!(%peer, ?why, "closing client connection on timeout");
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
