//! TLS on both sides of the proxy in tests: a rustls client for the TLS listener (HTTP proxy
//! requests inside TLS) and for origins behind a tunnel, and a rustls origin on 127.0.0.1 that
//! counts every byte it receives before TLS (so a test can prove nothing reached it).

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Response;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::pki::Issued;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// A client configuration trusting `ca`, optionally presenting a client certificate.
pub fn client_config(ca: &Path, client: Option<&Issued>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for c in certs(ca) {
        roots.add(c).unwrap();
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some(id) => builder
            .with_client_auth_cert(
                certs(&id.cert),
                PrivateKeyDer::from_pem_file(&id.key).unwrap(),
            )
            .unwrap(),
    };
    Arc::new(config)
}

/// A TLS client handshake over `io` for `name` (a DNS name gives an SNI, an IP none).
pub async fn handshake<IO>(
    io: IO,
    config: Arc<ClientConfig>,
    name: &str,
) -> io::Result<TlsStream<IO>>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let server = ServerName::try_from(name.to_owned()).unwrap();
    TlsConnector::from(config).connect(server, io).await
}

/// TLS to the proxy's TLS listener from a chosen loopback source address.
pub async fn to_proxy(
    src: &str,
    proxy: SocketAddr,
    config: Arc<ClientConfig>,
) -> io::Result<TlsStream<TcpStream>> {
    let tcp = super::connect_from(src, proxy).await;
    handshake(tcp, config, "localhost").await
}

/// A rustls HTTPS origin on 127.0.0.1 answering every request with `hello over tls`.
pub struct TlsOrigin {
    pub addr: SocketAddr,
    /// TCP connections accepted.
    pub connections: Arc<AtomicUsize>,
    /// Bytes received on all connections, counted below TLS (a ClientHello counts).
    pub bytes_received: Arc<AtomicUsize>,
    /// Handshakes completed.
    pub handshakes: Arc<AtomicUsize>,
}

impl TlsOrigin {
    pub fn received(&self) -> usize {
        self.bytes_received.load(Ordering::SeqCst)
    }
}

pub async fn origin(id: &Issued) -> TlsOrigin {
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            certs(&id.cert),
            PrivateKeyDer::from_pem_file(&id.key).unwrap(),
        )
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let o = TlsOrigin {
        addr: listener.local_addr().unwrap(),
        connections: Arc::default(),
        bytes_received: Arc::default(),
        handshakes: Arc::default(),
    };
    let (conns, bytes, hs) = (
        o.connections.clone(),
        o.bytes_received.clone(),
        o.handshakes.clone(),
    );
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            conns.fetch_add(1, Ordering::SeqCst);
            let (acceptor, bytes, hs) = (acceptor.clone(), bytes.clone(), hs.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(Counting { inner: tcp, bytes }).await else {
                    return;
                };
                hs.fetch_add(1, Ordering::SeqCst);
                let svc = service_fn(|_req| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                        b"hello over tls",
                    ))))
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    o
}

/// Counts bytes read from the inner stream.
struct Counting {
    inner: TcpStream,
    bytes: Arc<AtomicUsize>,
}

impl AsyncRead for Counting {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.bytes.fetch_add(n, Ordering::SeqCst);
        r
    }
}

impl AsyncWrite for Counting {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
