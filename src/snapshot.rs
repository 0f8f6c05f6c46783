//! One immutable view of the configuration, swapped atomically on reload. Requests load the
//! current snapshot once and finish on it; the decision cache lives inside, so a new snapshot
//! starts with an empty cache and no cached answer can outlive the policy that produced it.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::cache::DecisionCache;
use crate::config::{Loaded, Settings};
use crate::identity::IdentityTable;
use crate::metrics::{Metrics, PolicyMetrics};
use crate::policy::Policy;
use crate::proxy::auth::Credentials;

pub struct Snapshot {
    /// Increments with every successful load (the `egressd_policy_generation` gauge).
    pub generation: u64,
    /// Unique to this snapshot within the process (generations can repeat, e.g. between the
    /// servers of a test): what per-connection memories of its decisions are checked against.
    pub serial: u64,
    pub settings: Arc<Settings>,
    pub policy: Policy,
    pub cache: DecisionCache,
    pub identity: IdentityTable,
    /// Every file the configuration was read from (what the reload watcher follows).
    pub files: Vec<PathBuf>,
    /// [`fingerprint`] of the configuration this snapshot was loaded from, taken *before* it
    /// was read (see `reload`): a reload that finds the same fingerprint keeps this snapshot
    /// (and its warm cache) without parsing anything.
    pub fingerprint: u64,
    /// `identity.credentials` users and the password checks already made (`None`: not set).
    pub credentials: Option<Credentials>,
    /// The TLS listener's certificate, key and client CA (`None`: no `listen.proxy_tls`).
    /// Built by the config loader, so a reload rotates them with everything else.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Per-ministry and per-rule metric handles of this policy, resolved here so requests
    /// never format labels.
    pub metrics: PolicyMetrics,
}

impl Snapshot {
    /// Compiles a validated configuration and resolves its metric handles in `metrics`. Runs
    /// on the control path (startup, reload); call [`Metrics::install_snapshot`] when the
    /// snapshot is swapped in.
    pub fn build(loaded: &Loaded, generation: u64, metrics: &Metrics) -> Snapshot {
        let policy = Policy::compile(&loaded.policy);
        let settings = Arc::new(loaded.settings.clone());
        let identity = IdentityTable::build(
            &settings.identity.sources,
            settings.identity.default_ministry.as_deref(),
            &policy,
        )
        .with_certificates(&settings.identity.certificates, &policy);
        let credentials = (settings.identity.credentials.as_ref())
            .map(|_| Credentials::build(&settings.identity.users, &policy));
        static SERIAL: AtomicU64 = AtomicU64::new(1);
        Snapshot {
            generation,
            serial: SERIAL.fetch_add(1, Ordering::Relaxed),
            cache: DecisionCache::new(settings.cache.max_entries),
            metrics: PolicyMetrics::build(metrics, &policy),
            settings,
            policy,
            identity,
            files: loaded.files.clone(),
            fingerprint: fingerprint(&loaded.files, &watched_dirs(&loaded.settings)),
            credentials,
            tls: loaded.tls.clone(),
        }
    }
}

/// The folders whose listings are part of the fingerprint (a new policy or category file
/// changes it before anything reads that file).
pub fn watched_dirs(settings: &Settings) -> [PathBuf; 2] {
    [
        settings.policies_dir.clone(),
        settings.categories_dir.clone(),
    ]
}

/// Hash of the paths and contents of `files` and of the names in `dirs` (unreadable files and
/// folders hash as their error kind, so one that disappears still changes the fingerprint).
pub fn fingerprint(files: &[PathBuf], dirs: &[PathBuf]) -> u64 {
    let mut sorted: Vec<&PathBuf> = files.iter().collect();
    sorted.sort();
    let mut h = DefaultHasher::new();
    for f in sorted {
        f.hash(&mut h);
        // Streamed: a block list can be tens of megabytes, read while a snapshot is built.
        let mut sink = HashWriter(&mut h);
        match std::fs::File::open(f).and_then(|mut file| std::io::copy(&mut file, &mut sink)) {
            Ok(len) => len.hash(&mut h),
            Err(e) => (e.kind() as u32).hash(&mut h),
        }
    }
    for d in dirs {
        d.hash(&mut h);
        match std::fs::read_dir(d) {
            Ok(entries) => {
                let mut names: Vec<_> = entries
                    .filter_map(|e| e.ok().map(|e| e.file_name()))
                    .collect();
                names.sort();
                names.hash(&mut h);
            }
            Err(e) => (e.kind() as u32).hash(&mut h),
        }
    }
    h.finish()
}

/// Feeds what is written into a hasher.
struct HashWriter<'a>(&'a mut DefaultHasher);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
