//! The compiled matcher: from a normalised host to the rules whose selectors name it, with hash
//! lookups only, so the cost of a decision does not grow with the number of rules.
//!
//! - `domains:` → a map from domain to rules, probed with each label suffix of the host
//!   (`a.b.c` probes `a.b.c`, `b.c`, `c`): label boundaries come for free.
//! - `categories:` → one shared [`CategoryIndex`] (domain → categories, built once however many
//!   rules use a category), then per matcher category → rules.
//! - `hosts:` (and `urls:` entries whose prefix is `/`, which match every path) → exact map.
//! - `urls:` → exact host map to url entries; the path is checked later (see
//!   [`RequestPath::admits`]) because the host-level part of a decision is cached without it.
//! - `destinations:` → [`CidrTable`], probed only for IP-literal hosts.
//! - rules with no host selector (only `ports:`, or nothing) → a short wildcard list.
//!
//! Ports and activity are not checked here: the caller filters the (few) candidates.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use super::cidr::{push_rule, CidrTable};
use super::host::{domain_suffixes, Host};
use super::model::{Action, Selectors};
use super::path::normalize_path;
use super::RuleId;

pub(crate) type CategoryId = u32;
pub(crate) type UrlId = u32;

/// A rule whose selectors name the host; for a `urls:` hit, the entry whose path still has to be
/// checked. Packed in a `u64` so that sorting orders by rule id (which is evaluation order) and
/// puts a rule's host-level hit before its url entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Candidate(u64);

impl Candidate {
    pub fn host(rule: RuleId) -> Self {
        Candidate(u64::from(rule) << 32)
    }
    pub fn url(rule: RuleId, url: UrlId) -> Self {
        Candidate(u64::from(rule) << 32 | (u64::from(url) + 1))
    }
    pub fn rule(self) -> RuleId {
        (self.0 >> 32) as RuleId
    }
    pub fn url_entry(self) -> Option<UrlId> {
        match self.0 as u32 {
            0 => None,
            n => Some(n - 1),
        }
    }
}

/// One `urls:` entry of a rule.
#[derive(Debug)]
pub(crate) struct UrlEntry {
    pub rule: RuleId,
    pub prefix: Box<str>,
}

/// The request path as `urls:` selectors see it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RequestPath {
    /// Normalised path of a plain-HTTP request.
    Path(String),
    /// No path to see: a CONNECT tunnel, or a request target that is not a path (`*`).
    Hidden,
}

impl RequestPath {
    pub fn new(raw: Option<&str>) -> Self {
        match raw {
            None => RequestPath::Hidden,
            // An absolute-form target without a path (`http://host`) means `/`.
            Some("") => RequestPath::Path("/".to_owned()),
            Some(p) => normalize_path(p).map_or(RequestPath::Hidden, RequestPath::Path),
        }
    }

    /// Whether a `urls:` entry with this prefix matches, its host having matched. With no path
    /// to see, a block entry matches (fail closed) and an allow entry only when it is `/`.
    pub fn admits(&self, prefix: &str, action: Action) -> bool {
        match self {
            RequestPath::Path(p) => p.starts_with(prefix),
            RequestPath::Hidden => action == Action::Block || prefix == "/",
        }
    }
}

/// Domain → categories, over every category some rule references. Shared by all matchers so a
/// 100,000-domain category is indexed once.
#[derive(Debug, Default)]
pub(crate) struct CategoryIndex {
    by_domain: HashMap<Arc<str>, Vec<CategoryId>>,
}

impl CategoryIndex {
    pub fn add(&mut self, category: CategoryId, domains: &[Arc<str>]) {
        for d in domains {
            let cats = self.by_domain.entry(Arc::clone(d)).or_default();
            if !cats.contains(&category) {
                cats.push(category);
            }
        }
    }

    fn get(&self, suffix: &str) -> &[CategoryId] {
        self.by_domain.get(suffix).map_or(&[], Vec::as_slice)
    }
}

/// The host-level candidates of an optional rule list.
fn host_hits(list: Option<&Vec<RuleId>>) -> impl Iterator<Item = Candidate> + '_ {
    list.into_iter().flatten().map(|r| Candidate::host(*r))
}

/// The matcher of one rule list owner (the organization, or one ministry).
#[derive(Debug, Default)]
pub(crate) struct Matcher {
    suffix: HashMap<Box<str>, Vec<RuleId>>,
    exact: HashMap<Host, Vec<RuleId>>,
    by_category: HashMap<CategoryId, Vec<RuleId>>,
    urls: HashMap<Host, Vec<(RuleId, UrlId)>>,
    cidr: CidrTable,
    wildcard: Vec<RuleId>,
}

impl Matcher {
    /// Indexes one rule. Rules must be added in increasing id order (keeps every list sorted).
    /// `categories` are the rule's category ids; `urls` collects the policy's url entries.
    pub fn add(
        &mut self,
        rule: RuleId,
        sel: &Selectors,
        categories: &[CategoryId],
        urls: &mut Vec<UrlEntry>,
    ) {
        if sel.is_host_wildcard() {
            self.wildcard.push(rule);
            return;
        }
        for d in &sel.domains {
            push_rule(self.suffix.entry(d.clone()).or_default(), rule);
        }
        for h in &sel.hosts {
            push_rule(self.exact.entry(h.clone()).or_default(), rule);
        }
        for c in categories {
            push_rule(self.by_category.entry(*c).or_default(), rule);
        }
        for net in &sel.destinations {
            self.cidr.insert(*net, rule);
        }
        for u in &sel.urls {
            if u.path_prefix == "/" {
                // Matches every path and every tunnel: a plain host selector.
                push_rule(self.exact.entry(u.host.clone()).or_default(), rule);
                continue;
            }
            let id = urls.len() as UrlId;
            urls.push(UrlEntry {
                rule,
                prefix: u.path_prefix.as_str().into(),
            });
            self.urls
                .entry(u.host.clone())
                .or_default()
                .push((rule, id));
        }
    }

    /// Appends every candidate for `host` (unsorted, possibly repeated).
    pub fn candidates(&self, cats: &CategoryIndex, host: &Host, out: &mut Vec<Candidate>) {
        out.extend(self.wildcard.iter().map(|r| Candidate::host(*r)));
        out.extend(host_hits(self.exact.get(host)));
        if let Some(entries) = self.urls.get(host) {
            out.extend(entries.iter().map(|(r, u)| Candidate::url(*r, *u)));
        }
        match host {
            Host::Name(name) => {
                for suffix in domain_suffixes(name) {
                    out.extend(host_hits(self.suffix.get(suffix)));
                    if self.by_category.is_empty() {
                        continue;
                    }
                    for c in cats.get(suffix) {
                        out.extend(host_hits(self.by_category.get(c)));
                    }
                }
            }
            Host::Ip(ip) => self.destinations(*ip, out),
        }
    }

    /// Appends the rules whose `destinations:` contain `ip` (canonical).
    pub fn destinations(&self, ip: IpAddr, out: &mut Vec<Candidate>) {
        self.cidr.lookup(ip, |r| out.push(Candidate::host(r)));
    }
}
