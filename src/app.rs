//! Composition root: load the configuration, build the first snapshot, bind the listeners and
//! run them. The binary calls [`Server::start`] and waits for a signal; integration tests start
//! the same server in-process on ephemeral ports.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::{self, Diagnostic};
use crate::proxy::dial::Resolver;
use crate::proxy::forward;
use crate::proxy::limits::ConnLimiter;
use crate::proxy::listener;
use crate::proxy::service::Shared;
use crate::proxy::tls;
use crate::snapshot::Snapshot;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("invalid configuration:\n{}", render(.0))]
    Config(Vec<Diagnostic>),
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
}

fn render(diags: &[Diagnostic]) -> String {
    diags
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// A running proxy. Dropping it stops the listeners (open connections finish on their own).
pub struct Server {
    pub shared: Arc<Shared>,
    proxy_addrs: Vec<SocketAddr>,
    proxy_tls_addr: Option<SocketAddr>,
    config_path: PathBuf,
    tasks: Vec<JoinHandle<()>>,
}

impl Server {
    /// Loads and validates `config_path`, binds every proxy listener and starts serving.
    pub async fn start(config_path: &Path) -> Result<Server, AppError> {
        let loaded = config::load(config_path).map_err(AppError::Config)?;
        for w in &loaded.warnings {
            tracing::warn!("{w}");
        }
        let snap = Snapshot::build(&loaded, 1);
        let s = snap.settings.clone();
        let connect_timeout_ms = Arc::new(AtomicU64::new(s.timeouts.connect.as_millis() as u64));
        let shared = Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(snap),
            resolver: Resolver::from_system(),
            client: forward::client(connect_timeout_ms.clone()),
            connect_timeout_ms,
            tls_handshake_failures: AtomicU64::new(0),
        });
        let limiter = ConnLimiter::new(
            s.limits.max_connections,
            s.limits.max_connections_per_client,
        );
        let mut proxy_addrs = Vec::new();
        let mut tasks = Vec::new();
        for addr in &s.listen.proxy {
            let l = TcpListener::bind(addr)
                .await
                .map_err(|e| AppError::Bind(*addr, e))?;
            let local = l.local_addr().map_err(|e| AppError::Bind(*addr, e))?;
            tracing::info!(address = %local, "proxy listening");
            proxy_addrs.push(local);
            tasks.push(tokio::spawn(listener::serve(
                l,
                shared.clone(),
                limiter.clone(),
            )));
        }
        let mut proxy_tls_addr = None;
        if let Some(t) = &s.listen.proxy_tls {
            let l = TcpListener::bind(t.address)
                .await
                .map_err(|e| AppError::Bind(t.address, e))?;
            let local = l.local_addr().map_err(|e| AppError::Bind(t.address, e))?;
            tracing::info!(address = %local, "TLS proxy listening");
            proxy_tls_addr = Some(local);
            tasks.push(tokio::spawn(tls::serve(l, shared.clone(), limiter.clone())));
        }
        Ok(Server {
            shared,
            proxy_addrs,
            proxy_tls_addr,
            config_path: config_path.to_owned(),
            tasks,
        })
    }

    /// The bound proxy addresses (with the real ports when the config asked for port 0).
    pub fn proxy_addrs(&self) -> &[SocketAddr] {
        &self.proxy_addrs
    }

    /// The bound TLS proxy address (`listen.proxy_tls`), with the real port for port 0.
    pub fn proxy_tls_addr(&self) -> Option<SocketAddr> {
        self.proxy_tls_addr
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
