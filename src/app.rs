//! Composition root: load the configuration, build the first snapshot, start the audit writer,
//! bind the proxy and admin listeners and run them. The binary calls [`Server::start`] and
//! waits for a signal; integration tests start the same server in-process on ephemeral ports.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::admin::{self, AdminCtx, Health};
use crate::audit::{self, AuditLog, Sink};
use crate::config::{self, Diagnostic};
use crate::metrics::Metrics;
use crate::proxy::dial::Resolver;
use crate::proxy::forward;
use crate::proxy::limits::ConnLimiter;
use crate::proxy::listener;
use crate::proxy::service::Shared;
use crate::snapshot::Snapshot;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("invalid configuration:\n{}", render(.0))]
    Config(Vec<Diagnostic>),
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("cannot open the audit file {0}: {1}")]
    Audit(PathBuf, std::io::Error),
}

fn render(diags: &[Diagnostic]) -> String {
    diags
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Knobs that are not configuration (tests, embedding).
#[derive(Clone, Debug)]
pub struct Options {
    /// Records the audit queue holds before requests wait ([`audit::DEFAULT_QUEUE`]).
    pub audit_queue: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            audit_queue: audit::DEFAULT_QUEUE,
        }
    }
}

/// A running proxy. Dropping it stops the listeners (open connections finish on their own).
pub struct Server {
    pub shared: Arc<Shared>,
    proxy_addrs: Vec<SocketAddr>,
    admin_addr: Option<SocketAddr>,
    config_path: PathBuf,
    /// The proxy listeners.
    tasks: Vec<JoinHandle<()>>,
    /// The admin listener and the audit reopen signal: kept apart so the proxy listeners can
    /// stop (drain) while `/readyz` still answers 503.
    admin_tasks: Vec<JoinHandle<()>>,
}

impl Server {
    /// Loads and validates `config_path`, binds every proxy listener and starts serving.
    pub async fn start(config_path: &Path) -> Result<Server, AppError> {
        Self::start_with(config_path, Options::default()).await
    }

    pub async fn start_with(config_path: &Path, opts: Options) -> Result<Server, AppError> {
        let loaded = config::load(config_path).map_err(AppError::Config)?;
        for w in &loaded.warnings {
            tracing::warn!("{w}");
        }
        let metrics = Arc::new(Metrics::new());
        let snap = Snapshot::build(&loaded, 1, &metrics);
        metrics.install_snapshot(&snap);
        let s = snap.settings.clone();
        let sink = match &s.audit.file {
            Some(path) => Sink::file(path).map_err(|e| AppError::Audit(path.clone(), e))?,
            None => Sink::Stdout,
        };
        let audit = AuditLog::start(sink, opts.audit_queue, metrics.audit_counters());
        let mut admin_tasks = Vec::new();
        match audit.reopen_on_sigusr1() {
            Ok(t) => admin_tasks.push(t),
            Err(e) => {
                tracing::warn!(error = %e, "no SIGUSR1 handler: the audit file will not be reopened")
            }
        }
        let connect_timeout_ms = Arc::new(AtomicU64::new(s.timeouts.connect.as_millis() as u64));
        let shared = Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(snap),
            resolver: Resolver::from_system(),
            client: forward::client(connect_timeout_ms.clone()),
            connect_timeout_ms,
            metrics,
            audit,
            health: Health::default(),
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
        let mut admin_addr = None;
        if let Some(addr) = s.listen.admin {
            let l = TcpListener::bind(addr)
                .await
                .map_err(|e| AppError::Bind(addr, e))?;
            let local = l.local_addr().map_err(|e| AppError::Bind(addr, e))?;
            tracing::info!(address = %local, "admin listening");
            admin_addr = Some(local);
            let ctx = Arc::new(AdminCtx {
                shared: shared.clone(),
                proxy_addrs: proxy_addrs.clone(),
            });
            admin_tasks.push(tokio::spawn(admin::serve(l, ctx)));
        }
        // A valid policy is loaded and every listener is up.
        shared.health.set_ready();
        Ok(Server {
            shared,
            proxy_addrs,
            admin_addr,
            config_path: config_path.to_owned(),
            tasks,
            admin_tasks,
        })
    }

    /// The bound proxy addresses (with the real ports when the config asked for port 0).
    pub fn proxy_addrs(&self) -> &[SocketAddr] {
        &self.proxy_addrs
    }

    /// The bound admin address (the real port when the config asked for port 0).
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Closes the proxy listeners (open connections go on); the admin listener stays up so
    /// `/readyz` can answer 503 while the proxy drains. For the SIGTERM path.
    pub fn stop_accepting(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }

    /// Waits until every audit record queued so far is written (or `timeout`). Call it last
    /// on shutdown, after the proxy has drained.
    pub async fn flush_audit(&self, timeout: Duration) -> bool {
        self.shared.audit.flush(timeout).await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        for t in self.tasks.iter().chain(&self.admin_tasks) {
            t.abort();
        }
    }
}
