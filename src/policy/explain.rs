//! `egressd explain` / `egressd test`: the whole evaluation walk, rule by rule.
//!
//! Deliberately naive: a linear pass over every rule in evaluation order, each selector checked
//! straight from its definition (string suffix with a label boundary, equality, `contains`).
//! It shares no lookup structure with the compiled matcher, so it doubles as its test oracle:
//! `explain(..).verdict == decide(..)` always.

use chrono::{DateTime, Utc};

use super::compile::RuleInfo;
use super::host::Host;
use super::matcher::RequestPath;
use super::model::{canonical_net, nat64_target, Mode};
use super::{MinistryId, Policy, RuleId, Verdict};

/// Which list of the evaluation order a rule belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    Mandatory,
    Ministry,
    Baseline,
    MinistryDefault,
    OrganizationDefault,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Mandatory => "mandatory",
            Stage::Ministry => "ministry",
            Stage::Baseline => "baseline",
            Stage::MinistryDefault => "ministry_default",
            Stage::OrganizationDefault => "organization_default",
        }
    }
}

/// One rule of the walk. A default always matches and is always active.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalkStep {
    pub rule: RuleId,
    pub stage: Stage,
    /// Its selectors (and ports) match the request.
    pub matched: bool,
    /// It is active at the instant asked about (not expired, inside its schedule).
    pub active: bool,
    /// It made the decision (the first step that matched while active).
    pub decided: bool,
}

/// The decision and every rule considered, in evaluation order, including those after the
/// deciding one (so "matched but not reached" can be shown).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    pub verdict: Verdict,
    pub walk: Vec<WalkStep>,
}

impl Explanation {
    /// Rules that matched and were active but came after the deciding rule.
    pub fn not_reached(&self) -> impl Iterator<Item = &WalkStep> {
        let decided_at = self.walk.iter().position(|s| s.decided).unwrap_or(0);
        self.walk[decided_at + 1..]
            .iter()
            .filter(|s| s.matched && s.active)
    }
}

/// `name` is `domain` or a subdomain of it (label boundary).
fn within(name: &str, domain: &str) -> bool {
    name.strip_suffix(domain)
        .is_some_and(|rest| rest.is_empty() || rest.ends_with('.'))
}

impl Policy {
    /// Whether `rule`'s selectors and ports match, ignoring activity: the definition, literally.
    fn naive_matches(&self, rule: &RuleInfo, host: &Host, port: u16, path: &RequestPath) -> bool {
        let sel = &rule.selectors;
        if !rule.admits_port(port) {
            return false;
        }
        if sel.is_host_wildcard() {
            return true;
        }
        let name = host.name().unwrap_or_default();
        let is_name = host.name().is_some();
        let in_category =
            |c: &u32| is_name && self.categories.domains_of(*c).any(|d| within(name, d));
        (is_name && sel.domains.iter().any(|d| within(name, d)))
            || sel.hosts.iter().any(|h| h == host)
            || rule.categories.iter().any(in_category)
            || (sel.urls.iter())
                .any(|u| u.host == *host && path.admits(&u.path_prefix, rule.action))
            || sel.destinations.iter().any(|n| {
                let n = canonical_net(*n);
                host.ip().is_some_and(|ip| {
                    n.contains(&ip) || nat64_target(ip).is_some_and(|v4| n.contains(&v4))
                })
            })
    }

    /// Every rule in `ministry`'s evaluation order with its stage.
    fn evaluation_order(&self, ministry: MinistryId) -> Vec<(RuleId, Stage)> {
        let m = self.ministry(ministry);
        let stage = |ids: std::ops::Range<RuleId>, s: Stage| ids.map(move |id| (id, s));
        stage(self.mandatory.clone(), Stage::Mandatory)
            .chain(stage(m.rules.clone(), Stage::Ministry))
            .chain(stage(self.baseline.clone(), Stage::Baseline))
            .chain(m.default.map(|id| (id, Stage::MinistryDefault)))
            .chain([(self.org_default, Stage::OrganizationDefault)])
            .collect()
    }

    /// The full walk for `egressd explain` / `egressd test` (see the module docs).
    pub fn explain(
        &self,
        ministry: MinistryId,
        host: &Host,
        port: u16,
        path: Option<&str>,
        now: DateTime<Utc>,
    ) -> Explanation {
        let report = self.ministry(ministry).mode == Mode::Report;
        let path = RequestPath::new(path);
        let mut verdict = None;
        let mut walk = Vec::new();
        for (id, stage) in self.evaluation_order(ministry) {
            let rule = self.rule(id);
            let (matched, active) = match rule.is_default() {
                true => (true, true),
                false => (
                    self.naive_matches(rule, host, port, &path),
                    rule.activity.is_active(now),
                ),
            };
            let decided = matched && active && verdict.is_none();
            if decided {
                verdict = Some(self.verdict_for(id, report));
            }
            walk.push(WalkStep {
                rule: id,
                stage,
                matched,
                active,
                decided,
            });
        }
        // The organization default always matches, so a verdict exists.
        let verdict = verdict.unwrap_or_else(|| self.verdict_for(self.org_default, report));
        Explanation { verdict, walk }
    }
}
