//! Composition root: load the configuration, build the first snapshot, start the audit writer,
//! bind the proxy and admin listeners, start the reload task, and drain on shutdown. The binary
//! calls [`Server::start`] and [`Server::shutdown`]; integration tests start the same server
//! in-process on ephemeral ports.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::admin::{self, AdminCtx};
use crate::audit::{self, AuditLog, Sink};
use crate::config::{self, Diagnostic};
use crate::metrics::Metrics;
use crate::proxy::dial::Resolver;
use crate::proxy::listener::{self, Transport};
use crate::proxy::service::Shared;
use crate::proxy::upstream::Pool;
use crate::reload::{self, Reloader, Trigger};
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
    /// Serve the plain proxy listeners on this many threads of their own, each a single-thread
    /// runtime with its own `SO_REUSEPORT` socket and origin pool; 0: on the caller's runtime.
    pub per_core: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            audit_queue: audit::DEFAULT_QUEUE,
            per_core: 0,
        }
    }
}

/// A running proxy. Dropping it stops the listeners (open connections finish on their own).
pub struct Server {
    pub shared: Arc<Shared>,
    pub reloader: Arc<Reloader>,
    proxy_addrs: Vec<SocketAddr>,
    proxy_tls_addr: Option<SocketAddr>,
    admin_addr: Option<SocketAddr>,
    config_path: PathBuf,
    /// The proxy listeners (plain and TLS).
    listeners: Vec<JoinHandle<()>>,
    reload_task: JoinHandle<()>,
    /// The admin listener and the audit reopen signal: kept apart so the proxy listeners can
    /// stop (drain) while `/readyz` still answers 503.
    admin_tasks: Vec<JoinHandle<()>>,
}

impl Server {
    /// Loads and validates `config_path`, binds every proxy listener and starts serving and
    /// watching the configuration.
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
        let resolver = Resolver::new(&s.dns.servers);
        let shared = Arc::new(Shared::new(snap, resolver, metrics, audit));
        let mut proxy_addrs = Vec::new();
        let mut listeners = Vec::new();
        for addr in s.listen.proxy.iter().filter(|_| opts.per_core > 0) {
            let local =
                per_core(*addr, opts.per_core, &shared).map_err(|e| AppError::Bind(*addr, e))?;
            tracing::info!(address = %local, threads = opts.per_core, "proxy listening");
            proxy_addrs.push(local);
        }
        for addr in s.listen.proxy.iter().filter(|_| opts.per_core == 0) {
            let l = TcpListener::bind(addr)
                .await
                .map_err(|e| AppError::Bind(*addr, e))?;
            listener::prepare(&l).map_err(|e| AppError::Bind(*addr, e))?;
            let local = l.local_addr().map_err(|e| AppError::Bind(*addr, e))?;
            tracing::info!(address = %local, "proxy listening");
            proxy_addrs.push(local);
            listeners.push(tokio::spawn(listener::serve(
                l,
                shared.clone(),
                Transport::Plain,
            )));
        }
        let sh = shared.clone();
        admin_tasks.push(tokio::spawn(sweep_upstreams(move || {
            sh.upstreams.sweep();
            sh.origins.sweep();
        })));
        let reloader = Reloader::new(shared.clone(), config_path.to_owned(), 1);
        let reload_task = reload::start(reloader.clone());
        let mut proxy_tls_addr = None;
        if let Some(t) = &s.listen.proxy_tls {
            let l = TcpListener::bind(t.address)
                .await
                .map_err(|e| AppError::Bind(t.address, e))?;
            listener::prepare(&l).map_err(|e| AppError::Bind(t.address, e))?;
            let local = l.local_addr().map_err(|e| AppError::Bind(t.address, e))?;
            tracing::info!(address = %local, "TLS proxy listening");
            proxy_tls_addr = Some(local);
            listeners.push(tokio::spawn(listener::serve(
                l,
                shared.clone(),
                Transport::Tls,
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
            reloader,
            proxy_addrs,
            proxy_tls_addr,
            admin_addr,
            config_path: config_path.to_owned(),
            listeners,
            reload_task,
            admin_tasks,
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

    /// The bound admin address (the real port when the config asked for port 0).
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Reloads now (what `SIGHUP` does).
    pub async fn reload(&self) -> reload::Outcome {
        self.reloader.reload(Trigger::Api).await
    }

    /// Graceful drain: the proxy listeners close at once (new connections are refused), idle
    /// keep-alive connections close, requests and tunnels in flight get `grace` to finish.
    /// Returns whether everything finished within `grace`.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        self.reload_task.abort();
        // `/readyz` answers 503 from now on; the admin listener stays up through the drain.
        self.shared.health.set_draining();
        self.shared.draining.cancel();
        for l in &self.listeners {
            l.abort();
        }
        self.shared.tasks.close();
        let open = self.shared.tasks.len();
        tracing::info!(open, ?grace, "draining");
        let done = tokio::time::timeout(grace, self.shared.tasks.wait())
            .await
            .is_ok();
        if !done {
            tracing::warn!(
                open = self.shared.tasks.len(),
                "drain grace expired; closing what is left"
            );
        }
        done
    }

    /// `timeouts.shutdown_grace` of the configuration serving now.
    pub fn shutdown_grace(&self) -> Duration {
        self.shared.snapshot.load().settings.timeouts.shutdown_grace
    }

    /// Waits until every audit record queued so far is written (or `timeout`). Call it last
    /// on shutdown, after the proxy has drained.
    pub async fn flush_audit(&self, timeout: Duration) -> bool {
        self.shared.audit.flush(timeout).await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Per-core listener threads stop accepting on the drain signal and end with their
        // last connection.
        self.shared.draining.cancel();
        self.shared.tasks.close();
        self.reload_task.abort();
        for t in self.listeners.iter().chain(&self.admin_tasks) {
            t.abort();
        }
    }
}

/// Binds `threads` sockets to `addr` with `SO_REUSEPORT` (the kernel spreads new connections
/// over them) and serves each on a thread of its own: a single-thread runtime whose
/// connections, origin pool and timers never leave it. After the drain starts each thread keeps
/// running until every tracked task is done (the process exit ends what the grace leaves).
fn per_core(addr: SocketAddr, threads: usize, shared: &Arc<Shared>) -> std::io::Result<SocketAddr> {
    use socket2::{Domain, Socket, Type};
    // `SO_REUSEPORT` would let another process of the same user share the address: a second
    // egressd started by mistake would take part of the connections instead of failing. A
    // probe socket without it fails where anything listens, as the shared runtime's
    // listener does (`SO_REUSEADDR`, set by std, keeps a restart clear of TIME_WAIT).
    if addr.port() != 0 {
        drop(std::net::TcpListener::bind(addr)?);
    }
    let mut bind_to = addr;
    for i in 0..threads {
        let sock = Socket::new(Domain::for_address(bind_to), Type::STREAM, None)?;
        sock.set_reuse_address(true)?;
        sock.set_reuse_port(true)?;
        sock.set_nonblocking(true)?;
        sock.bind(&bind_to.into())?;
        sock.listen(1024)?;
        // Port 0: the first socket picks the port, the others join it.
        bind_to = sock.local_addr()?.as_socket().unwrap_or(bind_to);
        let std_listener: std::net::TcpListener = sock.into();
        listener::prepare(&std_listener)?;
        let shared = shared.clone();
        let timeout = shared.connect_timeout_ms.clone();
        std::thread::Builder::new()
            .name(format!("egressd-core-{i}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a single-thread runtime");
                rt.block_on(async move {
                    let pool = Pool::new(timeout);
                    crate::proxy::upstream::set_thread_pool(pool.clone());
                    let origins = Arc::new(crate::proxy::origin::OriginPool::default());
                    crate::proxy::origin::set_thread_pool(origins.clone());
                    let sweeper = tokio::spawn(sweep_upstreams(move || {
                        pool.sweep();
                        origins.sweep();
                    }));
                    match TcpListener::from_std(std_listener) {
                        Ok(l) => listener::serve(l, shared.clone(), Transport::Plain).await,
                        Err(e) => tracing::error!(error = %e, "per-core listener"),
                    }
                    shared.tasks.wait().await;
                    sweeper.abort();
                });
            })?;
    }
    Ok(bind_to)
}

/// Closes idle origin connections that expired or were closed by their origin, every few
/// seconds, so their sockets do not linger between requests.
async fn sweep_upstreams(sweep: impl Fn()) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        sweep();
    }
}
