//! Every metric family of the contract, and the few egressd adds to it
//! (`egressd_tls_handshake_failures_total`), declared here once and registered into a
//! [`prometheus::Registry`] the app owns (never the crate's global registry).
//!
//! # Hot path
//! Handles are resolved before requests need them, so counting a request is an index into a
//! table and an atomic add: no label formatting, no map lookups.
//! - Families with fixed labels (`cache`, `result`, `listener`, `error`) are resolved in
//!   [`Metrics::new`].
//! - Per-ministry and per-rule handles live in a [`PolicyMetrics`] table that
//!   [`Snapshot::build`](crate::snapshot::Snapshot::build) creates with the policy, indexed by
//!   (ministry, rule slot, kind, action). For a given ministry a rule can only ever produce one
//!   action (allow rules `allow`; block rules `block`, or `report` for a non-mandatory rule of a
//!   ministry in report mode), so only that series is created, at zero, up front: dashboards see
//!   every reachable rule, and `rate()` sees a series' first increment. Past
//!   [`EAGER_SERIES`] the cells are filled on first use instead (one label lookup per cell).
//! - Policy gauges (`egressd_policy_generation`, `egressd_policy_rules`,
//!   `egressd_rule_expiry_timestamp_seconds`) are (re)set by [`Metrics::install_snapshot`],
//!   which removes the label sets an older policy had and the new one has not. Counters of a
//!   rule that disappeared stay exported until restart, so `rate()` never sees a reset; their
//!   number is bounded by the rules ever loaded.
//!
//! # Labels
//! Only bounded values: ministry names (plus `_unknown`, `_organization`), rule names, kinds,
//! actions, RFC 9209 error types, listener names. Never a host, a client address or a path.
//!
//! # Buckets
//! - [`DECISION_BUCKETS`]: 100 ns … 10 ms. A cache hit takes ~100 ns and a miss well under
//!   1 µs (`cargo bench --bench decide`); the upper buckets only fill when a thread was
//!   descheduled mid-decision.
//! - [`REQUEST_BUCKETS`]: 1 ms … 5 min. `egressd_request_duration_seconds` is the time from a
//!   complete request head to the response head (time to first byte as the client sees it):
//!   blocks land in the first buckets, forwarded requests add DNS, connect and the origin's
//!   think time (bounded by `timeouts.response_header`, 30 s by default). Body transfer time and
//!   tunnel lifetimes are not latency; they are in the audit log's `duration_ms`.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::policy::model::{Action, Mode};
use crate::policy::{Kind, MinistryId, Outcome, Policy, RuleId, Verdict, ORGANIZATION, UNKNOWN};
use crate::proxy::respond::ErrorType;
use crate::snapshot::Snapshot;

/// Content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Decision time buckets, in seconds (see the module docs).
pub const DECISION_BUCKETS: &[f64] = &[
    1e-7, 2.5e-7, 5e-7, 1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 1e-2,
];

/// Request (time to response head) buckets, in seconds (see the module docs).
pub const REQUEST_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0,
];

/// Above this many reachable (ministry, rule, kind) series, request counters are created on
/// first use rather than up front.
pub const EAGER_SERIES: usize = 20_000;

/// Error types counted in `egressd_upstream_errors_total`: failures to resolve, pass the egress
/// guard, connect to or hear back from an origin. Client errors (`http_request_error`) and
/// policy denials (`http_request_denied`) are not upstream errors.
pub const UPSTREAM_ERRORS: [ErrorType; 12] = [
    ErrorType::DnsTimeout,
    ErrorType::DnsError,
    ErrorType::DestinationNotFound,
    ErrorType::DestinationIpProhibited,
    ErrorType::DestinationIpUnroutable,
    ErrorType::ConnectionRefused,
    ErrorType::ConnectionTerminated,
    ErrorType::ConnectionTimeout,
    ErrorType::ConnectionReadTimeout,
    ErrorType::HttpResponseIncomplete,
    ErrorType::HttpProtocolError,
    ErrorType::HttpResponseTimeout,
];

/// The listeners of `egressd_connections_active`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    Proxy = 0,
    ProxyTls = 1,
    Admin = 2,
}

impl Listener {
    pub const ALL: [Listener; 3] = [Listener::Proxy, Listener::ProxyTls, Listener::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Listener::Proxy => "proxy",
            Listener::ProxyTls => "proxy_tls",
            Listener::Admin => "admin",
        }
    }
}

/// The app's metrics: the registry and every family's fixed-label handles.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    request_duration: HistogramVec,
    bytes: IntCounterVec,
    decision: [Histogram; 2],
    lookups: [IntCounter; 2],
    cache_entries: IntGauge,
    connections: [IntGauge; 3],
    upstream_errors: [IntCounter; UPSTREAM_ERRORS.len()],
    reloads: [IntCounter; 2],
    generation: IntGauge,
    policy_rules: IntGaugeVec,
    rule_expiry: GaugeVec,
    audit_written: IntCounter,
    audit_failed: IntCounter,
    tls_handshake_failures: IntCounter,
    /// Label sets of the installed policy gauges, to remove stale ones on the next install.
    installed: Mutex<Installed>,
}

#[derive(Default)]
struct Installed {
    rules: HashSet<String>,
    expiry: HashSet<(String, String)>,
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help)
}

fn reg<C: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: C) -> C {
    r.register(Box::new(c.clone()))
        .expect("metric families are registered once, with distinct names");
    c
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every family (plus `process_*` on Linux).
    pub fn new() -> Metrics {
        let r = Registry::new();
        let requests = reg(
            &r,
            IntCounterVec::new(
                opts(
                    "egressd_requests_total",
                    "Requests by client ministry, kind, action and deciding rule.",
                ),
                &["ministry", "kind", "action", "rule"],
            )
            .unwrap(),
        );
        let request_duration = reg(
            &r,
            HistogramVec::new(
                HistogramOpts::new(
                    "egressd_request_duration_seconds",
                    "Complete request head to response head (time to first byte).",
                )
                .buckets(REQUEST_BUCKETS.to_vec()),
                &["ministry", "kind"],
            )
            .unwrap(),
        );
        let decision_vec = reg(
            &r,
            HistogramVec::new(
                HistogramOpts::new(
                    "egressd_decision_duration_seconds",
                    "Time to decide a request, by decision cache outcome.",
                )
                .buckets(DECISION_BUCKETS.to_vec()),
                &["cache"],
            )
            .unwrap(),
        );
        let lookups_vec = reg(
            &r,
            IntCounterVec::new(
                opts(
                    "egressd_decision_cache_lookups_total",
                    "Decision cache lookups by result.",
                ),
                &["result"],
            )
            .unwrap(),
        );
        let cache_entries = reg(
            &r,
            IntGauge::with_opts(opts(
                "egressd_decision_cache_entries",
                "Entries in the decision cache of the current policy.",
            ))
            .unwrap(),
        );
        let conn_vec = reg(
            &r,
            IntGaugeVec::new(
                opts(
                    "egressd_connections_active",
                    "Open client connections by listener.",
                ),
                &["listener"],
            )
            .unwrap(),
        );
        let bytes = reg(
            &r,
            IntCounterVec::new(
                opts(
                    "egressd_bytes_total",
                    "Body and tunnel bytes by client ministry; upstream = sent to origins, \
                     downstream = sent to clients.",
                ),
                &["ministry", "direction"],
            )
            .unwrap(),
        );
        let upstream_vec = reg(
            &r,
            IntCounterVec::new(
                opts(
                    "egressd_upstream_errors_total",
                    "Failures to reach or hear from an origin, by RFC 9209 error type.",
                ),
                &["error"],
            )
            .unwrap(),
        );
        let reload_vec = reg(
            &r,
            IntCounterVec::new(
                opts(
                    "egressd_policy_reloads_total",
                    "Configuration reloads by result.",
                ),
                &["result"],
            )
            .unwrap(),
        );
        let generation = reg(
            &r,
            IntGauge::with_opts(opts(
                "egressd_policy_generation",
                "Generation of the serving configuration; increments with every successful load.",
            ))
            .unwrap(),
        );
        let policy_rules = reg(
            &r,
            IntGaugeVec::new(
                opts(
                    "egressd_policy_rules",
                    "Rules of each policy file (_organization: mandatory + baseline).",
                ),
                &["ministry"],
            )
            .unwrap(),
        );
        let rule_expiry = reg(
            &r,
            GaugeVec::new(
                opts(
                    "egressd_rule_expiry_timestamp_seconds",
                    "Unix time at which a rule with `expires:` stops matching.",
                ),
                &["ministry", "rule"],
            )
            .unwrap(),
        );
        let audit_vec = reg(
            &r,
            IntCounterVec::new(
                opts(
                    "egressd_audit_records_total",
                    "Audit records by result (written, failed).",
                ),
                &["result"],
            )
            .unwrap(),
        );
        let tls_handshake_failures = reg(
            &r,
            IntCounter::with_opts(opts(
                "egressd_tls_handshake_failures_total",
                "TLS listener handshakes that failed or did not finish within \
                 timeouts.request_header.",
            ))
            .unwrap(),
        );
        let build_info = reg(
            &r,
            IntGaugeVec::new(
                opts("egressd_build_info", "Always 1; the version of this build."),
                &["version"],
            )
            .unwrap(),
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        #[cfg(target_os = "linux")]
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .expect("process collector registered once");
        Metrics {
            decision: ["hit", "miss"].map(|c| decision_vec.with_label_values(&[c])),
            lookups: ["hit", "miss"].map(|c| lookups_vec.with_label_values(&[c])),
            connections: Listener::ALL.map(|l| conn_vec.with_label_values(&[l.as_str()])),
            upstream_errors: UPSTREAM_ERRORS.map(|e| upstream_vec.with_label_values(&[e.as_str()])),
            reloads: ["success", "failure"].map(|x| reload_vec.with_label_values(&[x])),
            audit_written: audit_vec.with_label_values(&["written"]),
            audit_failed: audit_vec.with_label_values(&["failed"]),
            tls_handshake_failures,
            registry: r,
            requests,
            request_duration,
            bytes,
            cache_entries,
            generation,
            policy_rules,
            rule_expiry,
            installed: Mutex::new(Installed::default()),
        }
    }

    /// One decision: its duration (measured around the cache/policy call only) and whether the
    /// cache answered.
    #[inline]
    pub fn decision(&self, cache_hit: bool, took: Duration) {
        let i = usize::from(!cache_hit);
        self.decision[i].observe(took.as_secs_f64());
        self.lookups[i].inc();
    }

    /// Counts an error response; only [`UPSTREAM_ERRORS`] are counted.
    pub fn upstream_error(&self, error: ErrorType) {
        if let Some(i) = UPSTREAM_ERRORS.iter().position(|e| *e == error) {
            self.upstream_errors[i].inc();
        }
    }

    /// A configuration reload attempt (for the reload task).
    pub fn reload(&self, success: bool) {
        self.reloads[usize::from(!success)].inc();
    }

    /// Counts an open connection until the guard is dropped.
    pub fn connection(&self, listener: Listener) -> ConnectionGuard {
        let g = self.connections[listener as usize].clone();
        g.inc();
        ConnectionGuard(g)
    }

    /// The audit writer's counters: (written, failed).
    pub fn audit_counters(&self) -> (IntCounter, IntCounter) {
        (self.audit_written.clone(), self.audit_failed.clone())
    }

    /// The TLS listener's failed-handshake counter (for [`Shared`](crate::proxy::service::Shared)).
    pub fn tls_handshake_failures(&self) -> IntCounter {
        self.tls_handshake_failures.clone()
    }

    /// Sets the policy gauges from a snapshot about to serve, removing label sets of the
    /// previous policy. Called at startup and by every successful reload.
    pub fn install_snapshot(&self, snap: &Snapshot) {
        // Held throughout, so two installs can never interleave their removals.
        let mut installed = self.installed.lock().unwrap_or_else(|e| e.into_inner());
        self.generation.set(snap.generation as i64);
        let policy = &snap.policy;
        let names: HashMap<&str, &str> = policy
            .ministries()
            .map(|(_, m)| (&*m.stem, &*m.name))
            .collect();
        let mut now = Installed::default();
        for (stem, n) in policy.rule_counts() {
            let label = match &*stem {
                ORGANIZATION => ORGANIZATION,
                s => names.get(s).copied().unwrap_or(s),
            };
            self.policy_rules.with_label_values(&[label]).set(n as i64);
            now.rules.insert(label.to_owned());
        }
        for (ministry, rule, at) in policy.expiring_rules() {
            let secs = at.timestamp_millis() as f64 / 1000.0;
            self.rule_expiry
                .with_label_values(&[&*ministry, &*rule])
                .set(secs);
            now.expiry.insert((ministry.to_string(), rule.to_string()));
        }
        for gone in installed.rules.difference(&now.rules) {
            let _ = self.policy_rules.remove_label_values(&[gone]);
        }
        for (m, r) in installed.expiry.difference(&now.expiry) {
            let _ = self.rule_expiry.remove_label_values(&[m, r]);
        }
        *installed = now;
    }

    /// The text exposition of every family; `cache_entries` is the current cache size.
    pub fn render(&self, cache_entries: usize) -> String {
        self.cache_entries.set(cache_entries as i64);
        let mut buf = Vec::with_capacity(16 * 1024);
        let families = self.registry.gather();
        if let Err(e) = TextEncoder::new().encode(&families, &mut buf) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        String::from_utf8(buf).unwrap_or_default()
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

/// Decrements `egressd_connections_active` when dropped.
pub struct ConnectionGuard(IntGauge);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Handles of one ministry (or of `_unknown`), resolved when the snapshot is built.
pub struct MinistryMetrics {
    pub name: Arc<str>,
    /// `None` for `_unknown`.
    pub mode: Option<Mode>,
    /// Request duration by kind (`http`, `connect`).
    pub duration: [Histogram; 2],
    pub bytes_upstream: IntCounter,
    pub bytes_downstream: IntCounter,
    /// The ministry's own rules and default (its slots after the organization's).
    own: Range<RuleId>,
    default: Option<RuleId>,
    /// `egressd_requests_total` cells, see [`PolicyMetrics::cell`].
    requests: Box<[OnceLock<IntCounter>]>,
}

/// The per-policy table of request handles (see the module docs). Lives in the snapshot.
pub struct PolicyMetrics {
    vec: IntCounterVec,
    mandatory: Range<RuleId>,
    baseline: Range<RuleId>,
    org_default: RuleId,
    org_slots: usize,
    ministries: Box<[MinistryMetrics]>,
    unknown: MinistryMetrics,
}

const KINDS: [Kind; 2] = [Kind::Http, Kind::Connect];

fn kind_index(k: Kind) -> usize {
    match k {
        Kind::Http => 0,
        Kind::Connect => 1,
    }
}

fn outcome_index(o: Outcome) -> usize {
    match o {
        Outcome::Allow => 0,
        Outcome::Block => 1,
        Outcome::Report => 2,
    }
}

impl PolicyMetrics {
    /// Resolves the handles of every ministry of `policy` (control path: startup, reload).
    pub fn build(metrics: &Metrics, policy: &Policy) -> PolicyMetrics {
        let org_slots = policy.mandatory.len() + policy.baseline.len();
        let ministry = |name: &Arc<str>, mode, own: Range<RuleId>, default| {
            let slots = org_slots + own.len() + 2;
            let m: &str = name;
            MinistryMetrics {
                name: Arc::clone(name),
                mode,
                duration: KINDS
                    .map(|k| (metrics.request_duration).with_label_values(&[m, k.as_str()])),
                bytes_upstream: metrics.bytes.with_label_values(&[m, "upstream"]),
                bytes_downstream: metrics.bytes.with_label_values(&[m, "downstream"]),
                own,
                default,
                requests: (0..slots * 6).map(|_| OnceLock::new()).collect(),
            }
        };
        let ministries: Box<[MinistryMetrics]> = policy
            .ministries()
            .map(|(_, m)| ministry(&m.name, Some(m.mode), m.rules.clone(), m.default))
            .collect();
        let unknown_name: Arc<str> = Arc::from(UNKNOWN);
        let pm = PolicyMetrics {
            vec: metrics.requests.clone(),
            mandatory: policy.mandatory.clone(),
            baseline: policy.baseline.clone(),
            org_default: policy.org_default,
            org_slots,
            unknown: ministry(&unknown_name, None, 0..0, Some(policy.unknown)),
            ministries,
        };
        pm.create_reachable(policy);
        pm
    }

    /// Creates, at zero, the one series each (ministry, reachable rule, kind) can produce,
    /// unless there are more than [`EAGER_SERIES`].
    fn create_reachable(&self, policy: &Policy) {
        let org = self.mandatory.clone().chain(self.baseline.clone());
        let total: usize = (self.ministries.iter())
            .map(|m| (self.org_slots + m.own.len() + 2) * 2)
            .sum();
        if total > EAGER_SERIES {
            tracing::info!(
                series = total,
                "large policy: request counters are created on first use"
            );
            return;
        }
        for (id, m) in policy.ministries() {
            let reachable = (org.clone())
                .chain(m.rules.clone())
                .chain(m.default)
                .chain(std::iter::once(self.org_default));
            for rule in reachable {
                let outcome = reachable_outcome(policy, m.mode, rule);
                for kind in KINDS {
                    self.counter(policy, Some(id), kind, Verdict { outcome, rule });
                }
            }
        }
        let v = policy.unknown_verdict();
        for kind in KINDS {
            self.counter(policy, None, kind, v);
        }
    }

    /// The handles of a ministry (`None`: `_unknown`).
    #[inline]
    pub fn ministry(&self, id: Option<MinistryId>) -> &MinistryMetrics {
        match id.and_then(|i| self.ministries.get(i as usize)) {
            Some(m) => m,
            None => &self.unknown,
        }
    }

    /// The table slot of `rule` for ministry `m`: the organization's rules first, then the
    /// ministry's, its default, the organization default.
    fn slot(&self, m: &MinistryMetrics, rule: RuleId) -> Option<usize> {
        let n_mand = self.mandatory.len();
        if self.mandatory.contains(&rule) {
            Some((rule - self.mandatory.start) as usize)
        } else if self.baseline.contains(&rule) {
            Some(n_mand + (rule - self.baseline.start) as usize)
        } else if m.own.contains(&rule) {
            Some(self.org_slots + (rule - m.own.start) as usize)
        } else if m.default == Some(rule) {
            Some(self.org_slots + m.own.len())
        } else if rule == self.org_default {
            Some(self.org_slots + m.own.len() + 1)
        } else {
            None
        }
    }

    /// The `egressd_requests_total` counter of one decision. `policy` must be the policy this
    /// table was built from (it names the rule when a cell is filled).
    pub fn counter(
        &self,
        policy: &Policy,
        ministry: Option<MinistryId>,
        kind: Kind,
        v: Verdict,
    ) -> IntCounter {
        let m = self.ministry(ministry);
        let labels = || {
            let rule = &policy.rule(v.rule).name;
            self.vec
                .with_label_values(&[&*m.name, kind.as_str(), v.outcome.as_str(), &**rule])
        };
        match self.slot(m, v.rule) {
            Some(slot) => {
                let cell = (slot * 2 + kind_index(kind)) * 3 + outcome_index(v.outcome);
                m.requests[cell].get_or_init(labels).clone()
            }
            None => labels(),
        }
    }
}

/// The one action `rule` can produce for a ministry in `mode` (see the module docs).
fn reachable_outcome(policy: &Policy, mode: Mode, rule: RuleId) -> Outcome {
    let info = policy.rule(rule);
    match info.action {
        Action::Allow => Outcome::Allow,
        Action::Block if mode == Mode::Report && !info.mandatory => Outcome::Report,
        Action::Block => Outcome::Block,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::model::Action::{Allow, Block};
    use crate::policy::tests::{domains, host, ministry, org, rule, set};

    fn scrape_lines(m: &Metrics, prefix: &str) -> Vec<String> {
        m.render(0)
            .lines()
            .filter(|l| l.starts_with(prefix))
            .map(String::from)
            .collect()
    }

    #[test]
    fn reachable_series_exist_at_zero_with_their_one_action() {
        let o = org(
            vec![rule(
                "_organization",
                "malware",
                Block,
                domains(&["m.example"]),
            )],
            vec![rule(
                "_organization",
                "social",
                Block,
                domains(&["f.example"]),
            )],
            Allow,
        );
        let a = ministry(
            "agri",
            Mode::Enforce,
            None,
            vec![rule("agri", "tw", Allow, domains(&["t.example"]))],
        );
        let f = ministry("fin", Mode::Report, Some(Block), vec![]);
        let p = Policy::compile(&set(o, vec![a, f], vec![]));
        let metrics = Metrics::new();
        let pm = PolicyMetrics::build(&metrics, &p);
        let lines = scrape_lines(&metrics, "egressd_requests_total{");
        // agri: malware, social, tw, org default; fin: malware, social, fin default, org
        // default; _unknown: its default. Two kinds each.
        assert_eq!(lines.len(), (4 + 4 + 1) * 2, "{lines:#?}");
        let has = |s: &str| lines.iter().any(|l| l.contains(s));
        assert!(has(
            r#"action="report",kind="http",ministry="fin",rule="_organization/social"} 0"#
        ));
        assert!(has(
            r#"action="block",kind="http",ministry="fin",rule="_organization/malware"} 0"#
        ));
        assert!(has(
            r#"action="report",kind="connect",ministry="fin",rule="fin/_default"} 0"#
        ));
        assert!(has(
            r#"action="allow",kind="http",ministry="agri",rule="agri/tw"} 0"#
        ));
        assert!(has(
            r#"action="block",kind="http",ministry="_unknown",rule="_unknown/_default"} 0"#
        ));
        // Counting goes to the same series; an unexpected action still gets its own series.
        let agri = p.ministry_id("agri");
        let v = p.decide(
            agri.unwrap(),
            &host("www.t.example"),
            443,
            None,
            chrono::Utc::now(),
        );
        pm.counter(&p, agri, Kind::Connect, v).inc();
        let odd = Verdict {
            outcome: Outcome::Report,
            rule: v.rule,
        };
        pm.counter(&p, agri, Kind::Connect, odd).inc();
        let lines = scrape_lines(&metrics, "egressd_requests_total{");
        assert!(lines.contains(
            &r#"egressd_requests_total{action="allow",kind="connect",ministry="agri",rule="agri/tw"} 1"#
                .to_string()
        ));
        assert!(lines.contains(
            &r#"egressd_requests_total{action="report",kind="connect",ministry="agri",rule="agri/tw"} 1"#
                .to_string()
        ));
    }

    #[test]
    fn large_policies_create_request_series_on_first_use() {
        let many: Vec<_> = (0..EAGER_SERIES / 2)
            .map(|i| {
                rule(
                    "_organization",
                    &format!("r{i}"),
                    Block,
                    domains(&[&format!("d{i}.example")]),
                )
            })
            .collect();
        let m = ministry("agri", Mode::Enforce, None, vec![]);
        let p = Policy::compile(&set(org(vec![], many, Allow), vec![m], vec![]));
        let metrics = Metrics::new();
        let pm = PolicyMetrics::build(&metrics, &p);
        assert!(scrape_lines(&metrics, "egressd_requests_total{").is_empty());
        let agri = p.ministry_id("agri");
        let v = p.decide(
            agri.unwrap(),
            &host("d7.example"),
            80,
            None,
            chrono::Utc::now(),
        );
        pm.counter(&p, agri, Kind::Http, v).inc();
        pm.counter(&p, agri, Kind::Http, v).inc();
        assert_eq!(
            scrape_lines(&metrics, "egressd_requests_total{"),
            [
                r#"egressd_requests_total{action="block",kind="http",ministry="agri",rule="_organization/r7"} 2"#
            ]
        );
    }

    #[test]
    fn fixed_families_and_helpers() {
        let m = Metrics::new();
        m.decision(true, Duration::from_nanos(120));
        m.decision(false, Duration::from_micros(3));
        m.upstream_error(ErrorType::DnsError);
        m.upstream_error(ErrorType::HttpRequestDenied); // not an upstream error
        m.reload(false);
        m.tls_handshake_failures().inc();
        let c = m.connection(Listener::Admin);
        let text = m.render(7);
        assert!(text.contains("egressd_decision_cache_lookups_total{result=\"hit\"} 1"));
        assert!(text.contains(
            "egressd_decision_duration_seconds_bucket{cache=\"hit\",le=\"0.00000025\"} 1"
        ));
        assert!(text.contains("egressd_upstream_errors_total{error=\"dns_error\"} 1"));
        assert!(!text.contains("http_request_denied"));
        assert!(text.contains("egressd_policy_reloads_total{result=\"failure\"} 1"));
        assert!(text.contains("egressd_policy_reloads_total{result=\"success\"} 0"));
        assert!(text.contains("egressd_connections_active{listener=\"admin\"} 1"));
        assert!(text.contains("egressd_decision_cache_entries 7"));
        assert!(text.contains("egressd_tls_handshake_failures_total 1"));
        assert!(text.contains(&format!(
            "egressd_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )));
        drop(c);
        assert!(m
            .render(0)
            .contains("egressd_connections_active{listener=\"admin\"} 0"));
    }
}
