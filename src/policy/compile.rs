//! Compiling a validated [`PolicySet`] into an immutable [`Policy`]: rule ids, per-owner
//! matchers, the shared category index and the information logs, metrics and block pages need.
//!
//! Rule ids are assigned so that **id order is evaluation order for every ministry**:
//! `mandatory` rules first, then every ministry's rules (ministry after ministry), then
//! `baseline`, then the default pseudo-rules. A ministry only ever sees the organization's rules
//! and its own, so sorting candidates by id sorts them in its evaluation order.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::matcher::{CategoryId, CategoryIndex, Matcher, UrlEntry};
use super::model::{Action, Activity, Ministry, Mode, Origin, PolicySet, Rule, Selectors};
use super::{MinistryId, RuleId};

/// The stem of the organization file, used in rule names and metrics.
pub const ORGANIZATION: &str = "_organization";
/// The ministry label of clients that map to no ministry.
pub const UNKNOWN: &str = "_unknown";

/// A ministry as logs, metrics and block pages need it.
#[derive(Clone, Debug)]
pub struct MinistryInfo {
    pub name: Arc<str>,
    pub stem: Arc<str>,
    pub mode: Mode,
    /// The ministry's contact, else the organization's.
    pub contact: Option<Arc<str>>,
    pub rule_count: usize,
    pub file: Arc<str>,
    pub(crate) rules: Range<RuleId>,
    /// `stem/_default`, when the ministry sets `default:`.
    pub(crate) default: Option<RuleId>,
}

/// A rule (or a default pseudo-rule) as logs, metrics, block pages and `explain` need it.
#[derive(Clone, Debug)]
pub struct RuleInfo {
    /// `stem/id`, or `stem/_default`, `_organization/_default`, `_unknown/_default`.
    pub name: Arc<str>,
    pub action: Action,
    /// For defaults, a generated sentence saying which default decided.
    pub reason: Option<Arc<str>>,
    pub ticket: Option<Arc<str>>,
    /// Where the rule is written; `None` for defaults.
    pub origin: Option<Origin>,
    /// An organization `mandatory:` rule: enforced even in report mode.
    pub mandatory: bool,
    pub expires: Option<DateTime<Utc>>,
    pub(crate) selectors: Selectors,
    pub(crate) categories: Box<[CategoryId]>,
    pub(crate) activity: Activity,
}

impl RuleInfo {
    pub fn selectors(&self) -> &Selectors {
        &self.selectors
    }
    pub fn activity(&self) -> &Activity {
        &self.activity
    }
    pub fn is_default(&self) -> bool {
        self.origin.is_none()
    }
    pub(crate) fn admits_port(&self, port: u16) -> bool {
        self.selectors.ports.is_empty() || self.selectors.ports.contains(&port)
    }
}

/// A compiled, immutable policy. `Send + Sync`; share it behind an `Arc`.
#[derive(Debug)]
pub struct Policy {
    pub(crate) rules: Vec<RuleInfo>,
    pub(crate) ministries: Vec<MinistryInfo>,
    by_name: HashMap<Arc<str>, MinistryId>,
    /// Matcher of `mandatory` + `baseline`.
    pub(crate) org: Matcher,
    /// One matcher per ministry, indexed by [`MinistryId`].
    pub(crate) matchers: Vec<Matcher>,
    /// Domains of the categories some rule references (`explain` lists them from here too).
    pub(crate) categories: CategoryIndex,
    pub(crate) urls: Vec<UrlEntry>,
    pub(crate) mandatory: Range<RuleId>,
    pub(crate) baseline: Range<RuleId>,
    pub(crate) org_default: RuleId,
    pub(crate) unknown: RuleId,
    org_contact: Option<Arc<str>>,
}

/// Builds the rule table and matchers in id order.
struct Builder<'a> {
    set: &'a PolicySet,
    category_ids: HashMap<&'a str, CategoryId>,
    rules: Vec<RuleInfo>,
    urls: Vec<UrlEntry>,
}

impl<'a> Builder<'a> {
    fn next_id(&self) -> RuleId {
        self.rules.len() as RuleId
    }

    /// Adds a list of rules to `matcher`; returns their id range.
    fn add_rules(
        &mut self,
        rules: &[Rule],
        mandatory: bool,
        matcher: &mut Matcher,
    ) -> Range<RuleId> {
        let first = self.next_id();
        for rule in rules {
            let categories: Box<[CategoryId]> = (rule.selectors.categories.iter())
                .filter_map(|c| self.category_ids.get(&**c).copied())
                .collect();
            matcher.add(self.next_id(), &rule.selectors, &categories, &mut self.urls);
            self.rules.push(RuleInfo {
                name: Arc::clone(&rule.name),
                action: rule.action,
                reason: rule.reason.clone(),
                ticket: rule.ticket.clone(),
                origin: Some(rule.origin.clone()),
                mandatory,
                expires: rule.activity.expires,
                selectors: rule.selectors.clone(),
                categories,
                activity: rule.activity.clone(),
            });
        }
        first..self.next_id()
    }

    fn add_default(&mut self, stem: &str, action: Action, reason: String) -> RuleId {
        let id = self.next_id();
        self.rules.push(RuleInfo {
            name: format!("{stem}/_default").into(),
            action,
            reason: Some(reason.into()),
            ticket: None,
            origin: None,
            mandatory: false,
            expires: None,
            selectors: Selectors::default(),
            categories: Box::default(),
            activity: Activity::default(),
        });
        id
    }

    /// Adds the ministry's default pseudo-rule (if it sets one) and describes it.
    fn ministry_info(&mut self, m: &Ministry, rules: Range<RuleId>) -> MinistryInfo {
        let default = m.default.map(|a| {
            let why = format!(
                "no rule matched; the default of {} is {}",
                m.name,
                a.as_str()
            );
            self.add_default(&m.stem, a, why)
        });
        MinistryInfo {
            name: Arc::clone(&m.name),
            stem: Arc::clone(&m.stem),
            mode: m.mode,
            contact: (m.contact.clone()).or_else(|| self.set.organization.contact.clone()),
            rule_count: m.rules.len(),
            file: Arc::clone(&m.file),
            rules,
            default,
        }
    }

    /// The category index, over the categories some rule references.
    fn categories(&self) -> CategoryIndex {
        let all_rules = (self.set.organization.mandatory.iter())
            .chain(&self.set.organization.baseline)
            .chain(self.set.ministries.iter().flat_map(|m| &m.rules));
        let mut referenced = vec![false; self.set.categories.len()];
        for c in all_rules.flat_map(|r| &r.selectors.categories) {
            if let Some(id) = self.category_ids.get(&**c) {
                referenced[*id as usize] = true;
            }
        }
        let lists: Vec<(CategoryId, &[Box<str>])> = (self.set.categories.iter().enumerate())
            .filter(|(id, _)| referenced[*id])
            .map(|(id, cat)| (id as CategoryId, cat.domains.as_slice()))
            .collect();
        CategoryIndex::build(&lists)
    }
}

impl Policy {
    /// Compiles a validated policy set. Cannot fail: the loader has checked everything.
    pub fn compile(set: &PolicySet) -> Policy {
        let org = &set.organization;
        let mut b = Builder {
            set,
            category_ids: (set.categories.iter().enumerate())
                .map(|(i, c)| (&*c.name, i as CategoryId))
                .collect(),
            rules: Vec::new(),
            urls: Vec::new(),
        };
        let categories = b.categories();
        let mut org_matcher = Matcher::default();
        let mandatory = b.add_rules(&org.mandatory, true, &mut org_matcher);
        let mut matchers = Vec::with_capacity(set.ministries.len());
        let mut ranges = Vec::with_capacity(set.ministries.len());
        for m in &set.ministries {
            let mut matcher = Matcher::default();
            ranges.push(b.add_rules(&m.rules, false, &mut matcher));
            matchers.push(matcher);
        }
        let baseline = b.add_rules(&org.baseline, false, &mut org_matcher);
        let ministries: Vec<_> = (set.ministries.iter().zip(ranges))
            .map(|(m, rules)| b.ministry_info(m, rules))
            .collect();
        let why = format!(
            "no rule matched; the organization default is {}",
            org.default.as_str()
        );
        let org_default = b.add_default(ORGANIZATION, org.default, why);
        let why = "the client maps to no ministry".to_owned();
        let unknown = b.add_default(UNKNOWN, Action::Block, why);
        Policy {
            by_name: (ministries.iter().enumerate())
                .map(|(i, m)| (Arc::clone(&m.name), i as MinistryId))
                .collect(),
            rules: b.rules,
            ministries,
            org: org_matcher,
            matchers,
            categories,
            urls: b.urls,
            mandatory,
            baseline,
            org_default,
            unknown,
            org_contact: org.contact.clone(),
        }
    }

    /// The organization's `contact:`, shown on block pages of clients no ministry claims.
    pub fn organization_contact(&self) -> Option<&str> {
        self.org_contact.as_deref()
    }

    pub fn ministry_id(&self, name: &str) -> Option<MinistryId> {
        self.by_name.get(name).copied()
    }

    /// Panics on an id this policy did not hand out.
    pub fn ministry(&self, id: MinistryId) -> &MinistryInfo {
        &self.ministries[id as usize]
    }

    pub fn ministries(&self) -> impl Iterator<Item = (MinistryId, &MinistryInfo)> {
        (0..).zip(&self.ministries)
    }

    /// Panics on an id this policy did not hand out.
    pub fn rule(&self, id: RuleId) -> &RuleInfo {
        &self.rules[id as usize]
    }

    /// Rules of each policy file, for `egressd_policy_rules`: (file stem, count), the
    /// organization (`mandatory` + `baseline`) first. Defaults are not counted.
    pub fn rule_counts(&self) -> Vec<(Arc<str>, usize)> {
        let org = self.mandatory.len() + self.baseline.len();
        std::iter::once((Arc::from(ORGANIZATION), org))
            .chain(
                self.ministries
                    .iter()
                    .map(|m| (Arc::clone(&m.stem), m.rule_count)),
            )
            .collect()
    }

    /// Every rule with an `expires`, for the expiry gauge:
    /// (ministry name or `_organization`, rule name, expiry).
    pub fn expiring_rules(&self) -> Vec<(Arc<str>, Arc<str>, DateTime<Utc>)> {
        let org: Arc<str> = Arc::from(ORGANIZATION);
        let owners = std::iter::once((&org, self.mandatory.clone()))
            .chain(self.ministries.iter().map(|m| (&m.name, m.rules.clone())))
            .chain(std::iter::once((&org, self.baseline.clone())));
        let mut out = Vec::new();
        for (owner, ids) in owners {
            for rule in &self.rules[ids.start as usize..ids.end as usize] {
                if let Some(at) = rule.expires {
                    out.push((Arc::clone(owner), Arc::clone(&rule.name), at));
                }
            }
        }
        out
    }
}
