//! CONTROL PATH: configuration reload. Triggers (a file watch on every folder the configuration
//! reads, and `SIGHUP`) feed one task, which loads and validates the new configuration off the
//! hot path, compiles a new [`Snapshot`] and swaps it in atomically. Requests in flight finish
//! on the snapshot they loaded. An invalid configuration never replaces a valid one: the errors
//! are logged as `FILE:LINE:COLUMN: message` and the old snapshot keeps serving.
//!
//! The watch covers the folder of `egressd.yaml` (where a Kubernetes ConfigMap mount swaps its
//! `..data` symlink), the policy and category folders, and the folders of referenced files
//! (certificates, credentials). Watches are re-armed after every reload, because a ConfigMap
//! swap replaces the directories a watch was attached to. Bursts of events (an editor's
//! write-then-rename, a `git checkout`) are debounced into one reload.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::config::{self, Diagnostic, Settings, Severity};
use crate::proxy::service::Shared;
use crate::snapshot::{self, Snapshot};

/// Quiet time after the last file event before reloading.
const DEBOUNCE: Duration = Duration::from_millis(200);
/// A reload happens at most this long after the first event, even if events keep coming.
const DEBOUNCE_MAX: Duration = Duration::from_secs(1);

/// What asked for a reload (for the log line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Files,
    Signal,
    Api,
}

/// The result of one reload attempt.
#[derive(Debug)]
pub enum Outcome {
    /// A new snapshot is serving.
    Applied { generation: u64 },
    /// The configuration is valid and identical to the one serving; nothing was swapped (the
    /// decision cache stays warm).
    Unchanged,
    /// Invalid: the old snapshot keeps serving.
    Rejected(Vec<Diagnostic>),
}

/// Owns the reload logic; shared by the reload task and `Server::reload`.
pub struct Reloader {
    shared: Arc<Shared>,
    config_path: PathBuf,
    generation: AtomicU64,
    /// Guards against two reloads interleaving (signal and files at once).
    lock: tokio::sync::Mutex<()>,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
}

impl Reloader {
    pub fn new(shared: Arc<Shared>, config_path: PathBuf, generation: u64) -> Arc<Reloader> {
        Arc::new(Reloader {
            shared,
            config_path,
            generation: AtomicU64::new(generation),
            lock: tokio::sync::Mutex::new(()),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
        })
    }

    /// Successful and failed reloads so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.reloads_ok.load(Ordering::Relaxed),
            self.reloads_failed.load(Ordering::Relaxed),
        )
    }

    /// Loads, validates and (when valid and different) installs the configuration.
    pub async fn reload(&self, trigger: Trigger) -> Outcome {
        let _one_at_a_time = self.lock.lock().await;
        let started = std::time::Instant::now();
        let path = self.config_path.clone();
        let current = self.shared.snapshot.load_full();
        let next_gen = self.generation.load(Ordering::Relaxed) + 1;
        let metrics = self.shared.metrics.clone();
        // Parsing and compiling a large policy takes real CPU time: keep it off the executor.
        let built = tokio::task::spawn_blocking(move || {
            // Fingerprint *before* reading: a file changed while it is being read then differs
            // from the stored fingerprint at the next reload (its event is on the way), so a
            // change can never be mistaken for "unchanged". Taken after reading, it could.
            let dirs = snapshot::watched_dirs(&current.settings);
            let before = snapshot::fingerprint(&current.files, &dirs);
            if before == current.fingerprint {
                return Ok(None);
            }
            let loaded = config::load(&path)?;
            let mut snap = Snapshot::build(&loaded, next_gen, &metrics);
            snap.fingerprint = before;
            Ok(Some((snap, loaded.warnings)))
        })
        .await;
        let outcome = match built {
            Err(join) => Outcome::Rejected(vec![Diagnostic {
                file: self.config_path.clone(),
                line: 0,
                column: 0,
                message: format!("reload task failed: {join}"),
                severity: Severity::Error,
            }]),
            Ok(Err(diags)) => Outcome::Rejected(diags),
            Ok(Ok(None)) => Outcome::Unchanged,
            Ok(Ok(Some((snap, warnings)))) => {
                for w in &warnings {
                    tracing::warn!("{w}");
                }
                self.install(snap, next_gen);
                Outcome::Applied {
                    generation: next_gen,
                }
            }
        };
        // Load, validate, compile and swap (or the fingerprint alone, when unchanged).
        let duration_ms = started.elapsed().as_millis() as u64;
        match &outcome {
            Outcome::Applied { generation } => {
                self.shared.metrics.reload(true);
                self.reloads_ok.fetch_add(1, Ordering::Relaxed);
                tracing::info!(?trigger, generation, duration_ms, "configuration reloaded");
            }
            Outcome::Unchanged => {
                self.shared.metrics.reload(true);
                self.reloads_ok.fetch_add(1, Ordering::Relaxed);
                tracing::info!(?trigger, duration_ms, "configuration unchanged");
            }
            Outcome::Rejected(diags) => {
                self.shared.metrics.reload(false);
                self.reloads_failed.fetch_add(1, Ordering::Relaxed);
                for d in diags {
                    tracing::error!("{d}");
                }
                tracing::error!(
                    ?trigger,
                    errors = diags.len(),
                    duration_ms,
                    "configuration rejected; the previous one keeps serving"
                );
            }
        }
        outcome
    }

    fn install(&self, snap: Snapshot, generation: u64) {
        let old = self.shared.snapshot.load();
        report_restart_only(&old.settings, &snap.settings);
        let s = &snap.settings;
        (self.shared.connect_timeout_ms)
            .store(s.timeouts.connect.as_millis() as u64, Ordering::Relaxed);
        (self.shared.limiter).set_limits(
            s.limits.max_connections,
            s.limits.max_connections_per_client,
        );
        self.generation.store(generation, Ordering::Relaxed);
        // Gauges first: a scrape between the two lines sees the new policy's gauges with the
        // old policy serving for a moment, never the reverse.
        self.shared.metrics.install_snapshot(&snap);
        self.shared.snapshot.store(Arc::new(snap));
    }
}

/// Settings bound at startup cannot change under a running process; say so instead of
/// silently ignoring them.
fn report_restart_only(old: &Settings, new: &Settings) {
    if old.listen.proxy != new.listen.proxy {
        tracing::warn!(old = ?old.listen.proxy, new = ?new.listen.proxy, "listen.proxy changed: takes effect after a restart");
    }
    if old.listen.admin != new.listen.admin {
        tracing::warn!(old = ?old.listen.admin, new = ?new.listen.admin, "listen.admin changed: takes effect after a restart");
    }
    if old.dns.servers != new.dns.servers {
        tracing::warn!(old = ?old.dns.servers, new = ?new.dns.servers, "dns.servers changed: takes effect after a restart");
    }
    let tls_addr = |s: &Settings| s.listen.proxy_tls.as_ref().map(|t| t.address);
    if tls_addr(old) != tls_addr(new) {
        tracing::warn!("listen.proxy_tls.address changed: takes effect after a restart");
    }
}

/// Starts watching and listening for `SIGHUP` before returning (so no change made right after
/// startup is missed), then runs the reload loop in a task.
pub fn start(reloader: Arc<Reloader>) -> tokio::task::JoinHandle<()> {
    let (tx, rx) = mpsc::unbounded_channel::<Trigger>();
    spawn_sighup(tx.clone());
    let watcher = arm_watcher(&reloader, tx.clone());
    tokio::spawn(run(reloader, tx, rx, watcher))
}

/// The reload loop: file events (debounced) and SIGHUP, one reload at a time.
async fn run(
    reloader: Arc<Reloader>,
    tx: mpsc::UnboundedSender<Trigger>,
    mut rx: mpsc::UnboundedReceiver<Trigger>,
    mut watcher: Option<RecommendedWatcher>,
) {
    while let Some(first) = rx.recv().await {
        let mut trigger = first;
        if trigger == Trigger::Files {
            // Debounce: wait until the events stop for DEBOUNCE (at most DEBOUNCE_MAX).
            let deadline = tokio::time::Instant::now() + DEBOUNCE_MAX;
            loop {
                let quiet = (tokio::time::Instant::now() + DEBOUNCE).min(deadline);
                match tokio::time::timeout_at(quiet, rx.recv()).await {
                    Ok(Some(t)) => {
                        if t == Trigger::Signal {
                            trigger = t;
                        }
                    }
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
        }
        reloader.reload(trigger).await;
        // A ConfigMap swap (or a folder replaced by `git checkout`) detaches old watches. The
        // new watcher is armed before the old one goes, so no event falls between them;
        // duplicates are harmless (debounced, and an unchanged fingerprint swaps nothing).
        let rearmed = arm_watcher(&reloader, tx.clone());
        drop(std::mem::replace(&mut watcher, rearmed));
    }
}

fn spawn_sighup(tx: mpsc::UnboundedSender<Trigger>) {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::hangup()) {
        Ok(mut hup) => {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    tracing::info!("reload requested (SIGHUP)");
                    if tx.send(Trigger::Signal).is_err() {
                        return;
                    }
                }
            });
        }
        Err(e) => tracing::warn!(error = %e, "no SIGHUP handler; reload on file changes only"),
    }
}

/// Watches every folder the configuration reads. Failing to watch is logged, never fatal:
/// `SIGHUP` still reloads.
fn arm_watcher(
    reloader: &Reloader,
    tx: mpsc::UnboundedSender<Trigger>,
) -> Option<RecommendedWatcher> {
    let snap = reloader.shared.snapshot.load();
    let folders = watched_folders(&reloader.config_path, &snap.settings, &snap.files);
    let files: HashSet<PathBuf> = (snap.files.iter())
        .flat_map(|f| [Some(f.clone()), f.canonicalize().ok()])
        .flatten()
        .collect();
    let handler = move |event: notify::Result<notify::Event>| {
        if let Ok(e) = event {
            let relevant = e.paths.iter().any(|p| is_config_path(p, &files));
            if relevant && !matches!(e.kind, notify::EventKind::Access(_)) {
                let _ = tx.send(Trigger::Files);
            }
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the configuration; reload with SIGHUP");
            return None;
        }
    };
    for dir in folders {
        if let Err(e) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
            tracing::debug!(dir = %dir.display(), error = %e, "not watched");
        }
    }
    Some(watcher)
}

/// Whether a file event can concern the configuration: a file it read (certificates and
/// credentials included), any YAML file (a new policy or category), or a Kubernetes ConfigMap's
/// `..data` swap. Everything else in the watched folders (an audit log written next to the
/// configuration, say) is ignored: a busy neighbour must not keep the debounce from settling.
fn is_config_path(path: &Path, files: &HashSet<PathBuf>) -> bool {
    if files.contains(path) {
        return true;
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.starts_with("..") || name.ends_with(".yaml") || name.ends_with(".yml")
}

fn watched_folders(
    config_path: &Path,
    settings: &Settings,
    files: &[PathBuf],
) -> BTreeSet<PathBuf> {
    let mut dirs = BTreeSet::new();
    let parent = |p: &Path| match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    dirs.insert(parent(config_path));
    dirs.insert(settings.policies_dir.clone());
    dirs.insert(settings.categories_dir.clone());
    for f in files {
        dirs.insert(parent(f));
    }
    // Also watch where symlinks point now (a ConfigMap's `..data/…`): writes land there.
    let resolved: Vec<PathBuf> = dirs.iter().filter_map(|d| d.canonicalize().ok()).collect();
    dirs.extend(resolved);
    dirs
}
