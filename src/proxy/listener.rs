//! Accept loop and per-connection serving: connection caps, the hyper HTTP/1.1 connection with
//! upgrades (CONNECT) and its head limits, and the activity watchdog that enforces idle and
//! request-header timeouts.
//!
//! Each connection runs in its own task; its fast path (`fast`) in a second one, which the
//! first watches for the idle and header timeouts and the drain, so that no request polls a
//! timer or the drain's notification. A panic while serving one is caught by tokio at that
//! task's boundary (release builds unwind; nothing sets `panic = "abort"`): the task's state is
//! dropped, which releases its connection slot, and the listener and every other connection
//! carry on. `tests::a_panicking_connection_leaves_the_listener_serving` shows it.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::activity::{Activity, Expired, TrackedIo};
use super::fast::{self, Ended};
use super::limits::{self, ConnPermit, ConnSlot, Lingering, Refusal};
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

/// Sets what every accepted connection needs on the listening socket instead: Linux copies
/// `TCP_NODELAY` to accepted sockets, which saves a `setsockopt` per connection
/// (`tests::accepted_connections_inherit_nodelay` holds the kernel to it).
pub fn prepare(listener: &impl std::os::fd::AsFd) -> std::io::Result<()> {
    // Responses are written whole; Nagle would only delay the last segment of each.
    socket2::SockRef::from(listener).set_tcp_nodelay(true)
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
            Ok(permit) => match transport {
                Transport::Plain => {
                    spawn_plain(&shared, tcp, peer, permit);
                }
                Transport::Tls => {
                    let shared2 = shared.clone();
                    (shared.tasks).spawn(tls::handshake_and_serve(tcp, peer, shared2, permit));
                }
            },
            // Over the caps: a plain client gets a 503/429 it can read; a TLS client could
            // not read one before its handshake, so its connection is just closed.
            Err(why) if transport == Transport::Plain => match shared.limiter.try_linger() {
                Some(lingering) => {
                    tokio::spawn(refuse(tcp, why, lingering));
                }
                None => tracing::debug!(%peer, ?why, "over the connection caps; closed"),
            },
            Err(why) => tracing::debug!(%peer, ?why, "TLS client over the connection caps closed"),
        }
    }
}

/// Serves one accepted plain-listener connection in its own task, tracked for the drain.
pub(crate) fn spawn_plain<I>(
    shared: &Arc<Shared>,
    io: I,
    peer: SocketAddr,
    permit: ConnPermit,
) -> JoinHandle<()>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let task = serve_connection(io, peer, shared.clone(), permit, None);
    shared.tasks.spawn(task)
}

/// Serves HTTP/1.1 on one accepted client connection: plain TCP, or a TLS stream of the TLS
/// listener (`tls` is then what its handshake established).
pub(crate) async fn serve_connection<I>(
    io: I,
    peer: SocketAddr,
    shared: Arc<Shared>,
    permit: ConnPermit,
    tls: Option<TlsPeer>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let listener = if tls.is_some() {
        Listener::ProxyTls
    } else {
        Listener::Proxy
    };
    let slot = ConnSlot::new(permit, shared.metrics.connection(listener));
    let (fast_path, idle, header, max_headers, max_head) = {
        let snap = shared.snapshot.load();
        let s = &snap.settings;
        (
            s.forwarding.fast_path,
            s.timeouts.idle,
            s.timeouts.request_header,
            limits::parser_bound(s.limits.max_headers),
            limits::parser_bound(s.limits.max_header_bytes),
        )
    };
    let activity = Arc::new(Activity::new());
    let io = TrackedIo::new(io, activity.clone()).holding(slot);
    let draining = shared.draining.clone();
    let ctx = Arc::new(ConnCtx {
        peer,
        upstreams: super::upstream::thread_pool().unwrap_or_else(|| shared.upstreams.clone()),
        origins: super::origin::thread_pool().unwrap_or_else(|| shared.origins.clone()),
        activity: activity.clone(),
        shared,
        tls,
    });
    let watchdog = activity.watch_connection(idle, header);
    tokio::pin!(watchdog);
    let io = if fast_path {
        let mut io = io;
        // The fast path runs in a task of its own, watched from this one. Polled together in
        // one task, every wake-up of a request also polled the watchdog's timer and the
        // drain's notification, whose waiter list is one mutex shared by every connection.
        let fast_ctx = ctx.clone();
        let mut fast = ctx.shared.tasks.spawn(async move {
            let ended = fast::serve(&mut io, &fast_ctx, max_head).await;
            (io, ended)
        });
        let mut drain_seen = false;
        let handed = loop {
            tokio::select! {
                served = &mut fast => match served {
                    Ok((mut io, Ended::Handoff(pending))) => {
                        io.unread(pending);
                        break Some(io);
                    }
                    Ok((_, Ended::Closed)) => return,
                    // A panic stays this connection's: on to the task that tokio catches
                    // it in, as when one task served the connection.
                    Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                    Err(_) => return,
                },
                why = watchdog.as_mut() => {
                    tracing::debug!(%peer, ?why, "closing client connection on timeout");
                    break None;
                }
                // Drain: an idle connection closes now; one with a request under way gets
                // its answer with `Connection: close` (the fast path checks the drain).
                _ = draining.cancelled(), if !drain_seen => {
                    drain_seen = true;
                    if activity.between_requests() {
                        break None;
                    }
                }
            }
        };
        match handed {
            Some(io) => io,
            None => {
                fast.abort();
                // The socket closes when the task's state is dropped: wait for that, so the
                // drain does not see this connection gone while its socket is still open.
                let _ = fast.await;
                return;
            }
        }
    } else {
        io
    };
    // Boxed: hyper's connection state is several KiB, and inline it would be part of every
    // connection task's state, copied when the task is spawned and again when it ends, while
    // most connections never leave the fast path.
    let hyper = serve_hyper(io, ctx, max_headers, max_head, watchdog, draining);
    Box::pin(hyper).await;
}

/// The rest of a connection on hyper: from its first request when the fast path is off, or
/// from the request the fast path handed over.
async fn serve_hyper<I>(
    io: TrackedIo<I>,
    ctx: Arc<ConnCtx>,
    max_headers: usize,
    max_head: usize,
    mut watchdog: Pin<&mut impl Future<Output = Expired>>,
    draining: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = ctx.peer;
    let io = TokioIo::new(io);
    let svc = service_fn(move |req| service::handle(req, ctx.clone()));
    let conn = http1::Builder::new()
        .keep_alive(true)
        .header_read_timeout(None)
        // The head limits themselves are checked in the service (`limits::check_head`), so
        // the answer carries a Proxy-Status; these only bound the parser (see `limits`).
        .max_headers(max_headers)
        .max_header_size(max_head)
        .max_buf_size(max_head.max(8192) + 8192)
        .serve_connection(io, svc)
        .with_upgrades();
    tokio::pin!(conn);
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
///
/// The client has usually sent its request already. Closing a socket with unread input makes
/// the kernel send a reset, which can destroy the answer before the client reads it; so after
/// the answer egressd half-closes and discards what the client sends, briefly and up to a few
/// KiB (a lingering close). `_lingering` bounds how many refusals do this at once.
async fn refuse(mut tcp: TcpStream, why: Refusal, _lingering: Lingering) {
    let msg: &[u8] = match why {
        Refusal::Total => b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nProxy-Status: egressd; error=proxy_internal_error; details=\"limits.max_connections\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        Refusal::PerClient => b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nProxy-Status: egressd; error=proxy_internal_error; details=\"limits.max_connections_per_client\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    };
    let linger = async {
        tcp.write_all(msg).await?;
        tcp.shutdown().await?;
        let mut sink = [0u8; 1024];
        let mut left = LINGER_BYTES;
        while left > 0 {
            match tcp.read(&mut sink).await? {
                0 => break,
                n => left = left.saturating_sub(n),
            }
        }
        Ok::<_, std::io::Error>(())
    };
    let _ = tokio::time::timeout(LINGER_TIME, linger).await;
}

/// How long, and how many bytes, a refused connection's input is discarded before it closes.
const LINGER_TIME: Duration = Duration::from_millis(500);
const LINGER_BYTES: usize = 8 * 1024;

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use tokio::io::{DuplexStream, ReadBuf};

    use super::*;
    use crate::app::Server;

    #[tokio::test]
    async fn accepted_connections_inherit_nodelay() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        prepare(&l).unwrap();
        let _c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (a, _) = l.accept().await.unwrap();
        assert!(
            a.nodelay().unwrap(),
            "the kernel did not copy TCP_NODELAY to the accepted socket"
        );
    }

    /// A client connection whose read panics: a stand-in for any bug hit while serving one
    /// connection, driven through the same `spawn_plain` → `serve_connection` path as the
    /// accept loop.
    struct PanicOnRead(DuplexStream);

    impl AsyncRead for PanicOnRead {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            panic!("deliberate panic while reading a request (test)");
        }
    }

    impl AsyncWrite for PanicOnRead {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            Pin::new(&mut self.0).poll_write(cx, buf)
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.0).poll_flush(cx)
        }
        fn poll_shutdown(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.0).poll_shutdown(cx)
        }
    }

    fn active_gauge(shared: &Shared) -> i64 {
        let families = shared.metrics.registry().gather();
        let family = families
            .iter()
            .find(|f| f.name() == "egressd_connections_active")
            .expect("egressd_connections_active exported");
        family
            .get_metric()
            .iter()
            .find(|m| m.get_label().iter().any(|l| l.value() == "proxy"))
            .map(|m| m.get_gauge().get_value() as i64)
            .expect("the proxy listener's series")
    }

    /// One request on a kept-alive connection; returns the status line.
    async fn status_line(tcp: &mut TcpStream) -> String {
        tcp.write_all(b"GET http://example.test/ HTTP/1.1\r\nHost: example.test\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf))
            .await
            .expect("an answer within 10 s")
            .unwrap();
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        text.lines().next().unwrap_or_default().to_owned()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_connection_leaves_the_listener_serving() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("egressd.yaml");
        // No ministry: every client is `_unknown`, blocked with a 403: enough to show the
        // service ran.
        std::fs::write(
            &config,
            "listen: {proxy: 127.0.0.1:0, admin: 127.0.0.1:0}\naudit: {file: audit.log}\n",
        )
        .unwrap();
        let server = Server::start(&config).await.unwrap();
        let shared = server.shared.clone();
        let addr = server.proxy_addrs()[0];

        // A real connection, open across the panic.
        let mut before = TcpStream::connect(addr).await.unwrap();
        assert!(status_line(&mut before).await.starts_with("HTTP/1.1 403"));
        assert_eq!(shared.limiter.active(), 1);

        let peer: SocketAddr = "127.0.0.9:40000".parse().unwrap();
        let permit = shared.limiter.try_acquire(peer.ip()).unwrap();
        let (mut client, io) = tokio::io::duplex(4096);
        client
            .write_all(b"GET http://example.test/ HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        let task = spawn_plain(&shared, PanicOnRead(io), peer, permit);
        let err = task.await.expect_err("the connection task panicked");
        assert!(err.is_panic());

        // Its slot and its count were released with the task's state...
        assert_eq!(
            shared.limiter.active(),
            1,
            "only the real connection is left"
        );
        assert_eq!(active_gauge(&shared), 1);
        // ...and everyone else is served: the open connection, and a new one.
        assert!(status_line(&mut before).await.starts_with("HTTP/1.1 403"));
        let mut after = TcpStream::connect(addr).await.unwrap();
        assert!(status_line(&mut after).await.starts_with("HTTP/1.1 403"));
        drop((before, after));
    }
}
