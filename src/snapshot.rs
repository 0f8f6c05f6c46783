//! One immutable view of the configuration, swapped atomically on reload. Requests load the
//! current snapshot once and finish on it; the decision cache lives inside, so a new snapshot
//! starts with an empty cache and no cached answer can outlive the policy that produced it.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;

use crate::cache::DecisionCache;
use crate::config::{Loaded, Settings};
use crate::identity::IdentityTable;
use crate::policy::Policy;
use crate::proxy::auth::Credentials;

pub struct Snapshot {
    /// Increments with every successful load (the `egressd_policy_generation` gauge).
    pub generation: u64,
    pub settings: Arc<Settings>,
    pub policy: Policy,
    pub cache: DecisionCache,
    pub identity: IdentityTable,
    /// Every file the configuration was read from (what the reload watcher follows).
    pub files: Vec<PathBuf>,
    /// Hash of those files' paths and contents: a reload that finds the same fingerprint
    /// keeps this snapshot (and its warm cache).
    pub fingerprint: u64,
    /// `identity.credentials` users and the password checks already made (`None`: not set).
    pub credentials: Option<Credentials>,
    /// The TLS listener's certificate, key and client CA (`None`: no `listen.proxy_tls`).
    /// Built by the config loader, so a reload rotates them with everything else.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Snapshot {
    /// Compiles a validated configuration. Runs on the control path (startup, reload).
    pub fn build(loaded: &Loaded, generation: u64) -> Snapshot {
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
        Snapshot {
            generation,
            cache: DecisionCache::new(settings.cache.max_entries),
            settings,
            policy,
            identity,
            files: loaded.files.clone(),
            fingerprint: fingerprint(&loaded.files),
            credentials,
            tls: loaded.tls.clone(),
        }
    }
}

/// Hash of the paths and contents of `files` (unreadable files hash as their error kind, so a
/// file that disappears still changes the fingerprint).
pub fn fingerprint(files: &[PathBuf]) -> u64 {
    let mut sorted: Vec<&PathBuf> = files.iter().collect();
    sorted.sort();
    let mut h = DefaultHasher::new();
    for f in sorted {
        f.hash(&mut h);
        match std::fs::read(f) {
            Ok(bytes) => bytes.hash(&mut h),
            Err(e) => (e.kind() as u32).hash(&mut h),
        }
    }
    h.finish()
}
