//! The hot path: [`Policy::decide_host`] (the cacheable, host-level part of a decision),
//! [`HostVerdict::finish`] (applies `urls:` to a path), [`Policy::decide`] (both) and
//! [`Policy::check_resolved`] (`destinations:` against resolved addresses).
//!
//! # How a decision is made
//! The organization matcher and the ministry's matcher return the candidates (rules whose
//! selectors name the host); sorted by rule id they are in evaluation order (see `compile`).
//! Walking them, a rule on another port or inactive at `now` is skipped; the first active
//! host-level candidate decides; active `urls:` candidates met before it are kept, in order, for
//! [`HostVerdict::finish`], where the first whose path prefix matches decides instead. No
//! candidate: the ministry's default, else the organization's.
//!
//! # Cache invariant
//! A [`HostVerdict`] computed at `now` is valid on `[valid_from, valid_until)`: `valid_until` is
//! the earliest next activity change of any candidate walked (those before the decider, and the
//! decider). Candidates after the decider cannot matter while the decider stays active, and the
//! set of candidates does not depend on time, so inside that interval
//! `hv.finish(p, path) == p.decide(m, host, port, path, t)` for every path.

use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::host::{canonical_ip, Host};
use super::matcher::{Candidate, RequestPath, UrlId};
use super::model::{Action, Mode};
use super::{MinistryId, Outcome, Policy, RuleId, Verdict};

/// The host-level part of a decision, cheap to clone (no allocation: the rare `urls:`
/// candidates are shared) and to keep in a cache. Only meaningful with the [`Policy`] that
/// produced it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostVerdict {
    /// What decides when no `urls:` candidate matches the path.
    verdict: Verdict,
    /// The ministry is in report mode (applies to a `urls:` block too).
    report: bool,
    /// Active `urls:` entries ordered before the deciding rule, in evaluation order.
    urls: Option<Arc<[UrlId]>>,
    valid_from: DateTime<Utc>,
    valid_until: DateTime<Utc>,
}

impl HostVerdict {
    /// The verdict for a request with this raw path (`None`: a CONNECT tunnel).
    pub fn finish(&self, policy: &Policy, path: Option<&str>) -> Verdict {
        let Some(urls) = &self.urls else {
            return self.verdict;
        };
        let path = RequestPath::new(path);
        for &u in urls.iter() {
            let entry = &policy.urls[u as usize];
            if path.admits(&entry.prefix, policy.rule(entry.rule).action) {
                return policy.verdict_for(entry.rule, self.report);
            }
        }
        self.verdict
    }

    /// The instant (exclusive) until which this verdict stays what `decide` would answer;
    /// `DateTime::<Utc>::MAX_UTC` when no walked rule ever changes.
    pub fn valid_until(&self) -> DateTime<Utc> {
        self.valid_until
    }

    /// The `now` it was computed for; earlier instants are not covered (clock stepped back).
    pub fn valid_from(&self) -> DateTime<Utc> {
        self.valid_from
    }

    /// Whether it may be used at `now` (see the cache invariant in the module docs).
    pub fn is_valid_at(&self, now: DateTime<Utc>) -> bool {
        self.valid_from <= now && now < self.valid_until
    }
}

impl Policy {
    /// Blocks a client that maps to no ministry (`_unknown/_default`).
    pub fn unknown_verdict(&self) -> Verdict {
        Verdict {
            outcome: Outcome::Block,
            rule: self.unknown,
        }
    }

    /// The verdict of `rule` deciding, with report mode applied to non-mandatory blocks.
    pub(crate) fn verdict_for(&self, rule: RuleId, report: bool) -> Verdict {
        let info = self.rule(rule);
        let outcome = match info.action {
            Action::Allow => Outcome::Allow,
            Action::Block if report && !info.mandatory => Outcome::Report,
            Action::Block => Outcome::Block,
        };
        Verdict { outcome, rule }
    }

    /// The default that decides when no rule does: the ministry's, else the organization's.
    pub(crate) fn default_rule(&self, ministry: MinistryId) -> RuleId {
        self.ministry(ministry).default.unwrap_or(self.org_default)
    }

    fn is_report(&self, ministry: MinistryId) -> bool {
        self.ministry(ministry).mode == Mode::Report
    }

    /// Candidates for `host` in `ministry`'s evaluation order, without repeats.
    fn candidates(&self, ministry: MinistryId, host: &Host) -> Vec<Candidate> {
        let mut out = Vec::new();
        self.org.candidates(&self.categories, host, &mut out);
        self.matchers[ministry as usize].candidates(&self.categories, host, &mut out);
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The host-level, cacheable part of a decision (see the module docs).
    pub fn decide_host(
        &self,
        ministry: MinistryId,
        host: &Host,
        port: u16,
        now: DateTime<Utc>,
    ) -> HostVerdict {
        let mut valid_until = DateTime::<Utc>::MAX_UTC;
        let mut urls = Vec::new();
        let mut decider = None;
        // Activity of the last rule seen: a rule can come with several url entries.
        let mut last: Option<(RuleId, bool)> = None;
        for c in self.candidates(ministry, host) {
            let rule = c.rule();
            let info = self.rule(rule);
            if !info.admits_port(port) {
                continue;
            }
            let active = match last {
                Some((r, active)) if r == rule => active,
                _ => {
                    let state = info.activity.state(now);
                    valid_until = state
                        .next_change
                        .map_or(valid_until, |t| t.min(valid_until));
                    last = Some((rule, state.active));
                    state.active
                }
            };
            match (active, c.url_entry()) {
                (false, _) => {}
                (true, Some(u)) => urls.push(u),
                (true, None) => {
                    decider = Some(rule);
                    break;
                }
            }
        }
        let report = self.is_report(ministry);
        let rule = decider.unwrap_or_else(|| self.default_rule(ministry));
        HostVerdict {
            verdict: self.verdict_for(rule, report),
            report,
            urls: (!urls.is_empty()).then(|| urls.into()),
            valid_from: now,
            valid_until,
        }
    }

    /// The full decision; `path` is the raw origin-form path (query allowed) of a plain-HTTP
    /// request, `None` for a CONNECT tunnel.
    pub fn decide(
        &self,
        ministry: MinistryId,
        host: &Host,
        port: u16,
        path: Option<&str>,
        now: DateTime<Utc>,
    ) -> Verdict {
        self.decide_host(ministry, host, port, now)
            .finish(self, path)
    }

    /// After a name resolved to `addrs`: the first active block rule, in `ministry`'s evaluation
    /// order, whose `destinations:` contain any address and whose `ports:` admit `port`.
    pub fn check_resolved(
        &self,
        ministry: MinistryId,
        addrs: &[IpAddr],
        port: u16,
        now: DateTime<Utc>,
    ) -> Option<Verdict> {
        let mut found = Vec::new();
        for ip in addrs.iter().map(|a| canonical_ip(*a)) {
            self.org.destinations(ip, &mut found);
            self.matchers[ministry as usize].destinations(ip, &mut found);
        }
        found.sort_unstable();
        found.dedup();
        let rule = found.into_iter().map(Candidate::rule).find(|r| {
            let info = self.rule(*r);
            info.action == Action::Block && info.admits_port(port) && info.activity.is_active(now)
        })?;
        Some(self.verdict_for(rule, self.is_report(ministry)))
    }
}
