//! One immutable view of the configuration, swapped atomically on reload. Requests load the
//! current snapshot once and finish on it; the decision cache lives inside, so a new snapshot
//! starts with an empty cache and no cached answer can outlive the policy that produced it.

use std::sync::Arc;

use crate::cache::DecisionCache;
use crate::config::{Loaded, Settings};
use crate::identity::IdentityTable;
use crate::metrics::{Metrics, PolicyMetrics};
use crate::policy::Policy;

pub struct Snapshot {
    /// Increments with every successful load (the `egressd_policy_generation` gauge).
    pub generation: u64,
    pub settings: Arc<Settings>,
    pub policy: Policy,
    pub cache: DecisionCache,
    pub identity: IdentityTable,
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
        );
        Snapshot {
            generation,
            cache: DecisionCache::new(settings.cache.max_entries),
            metrics: PolicyMetrics::build(metrics, &policy),
            settings,
            policy,
            identity,
        }
    }
}
