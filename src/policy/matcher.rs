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
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;

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
/// category is indexed once however many rules use it.
///
/// Built for block lists of a million domains: the distinct domains are concatenated into one
/// text arena, and an open-addressing table (linear probing, at most half full, never resized
/// after [`CategoryIndex::build`]) holds each domain's index with 32 bits of its hash, so a miss
/// rarely touches the arena. About 45 bytes per domain in five allocations, where a
/// `HashMap<Arc<str>, Vec<_>>` took ~160 bytes and three allocations per domain (and as long
/// to free). Most domains are in one category; the sets of categories are interned.
#[derive(Default)]
pub(crate) struct CategoryIndex {
    hasher: RandomState,
    /// Every distinct domain, concatenated; domain `i` ends at `ends[i]`.
    text: String,
    ends: Vec<usize>,
    /// Domain `i` is in the categories `sets[set_of[i]]`.
    set_of: Vec<u32>,
    sets: Vec<Box<[CategoryId]>>,
    /// `0`: empty; else the hash's high 32 bits above `domain index + 1`.
    slots: Vec<u64>,
}

impl fmt::Debug for CategoryIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CategoryIndex")
            .field("domains", &self.ends.len())
            .field("sets", &self.sets.len())
            .finish()
    }
}

impl CategoryIndex {
    /// Indexes `(category, its domains)` pairs.
    pub fn build(categories: &[(CategoryId, &[Box<str>])]) -> Self {
        let total: usize = categories.iter().map(|(_, d)| d.len()).sum();
        let bytes: usize = (categories.iter())
            .flat_map(|(_, d)| d.iter().map(|d| d.len()))
            .sum();
        let mut index = CategoryIndex {
            hasher: RandomState::new(),
            text: String::with_capacity(bytes),
            ends: Vec::with_capacity(total),
            set_of: Vec::with_capacity(total),
            sets: Vec::new(),
            slots: vec![0; (total * 2).next_power_of_two().max(2)],
        };
        let mut sets = SetInterner::default();
        for &(category, domains) in categories {
            let single = sets.intern(&mut index.sets, Box::new([category]));
            for d in domains {
                let hash = index.hasher.hash_one(&**d);
                match index.lookup(d, hash) {
                    Ok(i) => {
                        let from = index.set_of[i];
                        index.set_of[i] = sets.with(&mut index.sets, from, category);
                    }
                    Err(slot) => index.insert(slot, hash, d, single),
                }
            }
        }
        index
    }

    fn domain(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.text[start..self.ends[i]]
    }

    /// `Ok(index of domain)`, or `Err(the empty slot where it belongs)`; `hash` is the
    /// domain's hash by `self.hasher`.
    fn lookup(&self, domain: &str, hash: u64) -> Result<usize, usize> {
        let tag = hash & !0xffff_ffff;
        let mask = self.slots.len() - 1;
        let mut at = hash as usize & mask;
        loop {
            let slot = self.slots[at];
            if slot == 0 {
                return Err(at);
            }
            let i = (slot & 0xffff_ffff) as usize - 1;
            if slot & !0xffff_ffff == tag && self.domain(i) == domain {
                return Ok(i);
            }
            at = (at + 1) & mask;
        }
    }

    /// Adds a domain at the slot `lookup` returned. The table is sized in `build` to stay at
    /// most half full, so probing always ends.
    fn insert(&mut self, slot: usize, hash: u64, domain: &str, set: u32) {
        let i = self.ends.len();
        self.text.push_str(domain);
        self.ends.push(self.text.len());
        self.set_of.push(set);
        self.slots[slot] = (hash & !0xffff_ffff) | (i as u64 + 1);
    }

    /// The categories `suffix` is listed in (as a domain of its own).
    fn get(&self, suffix: &str) -> &[CategoryId] {
        if self.ends.is_empty() {
            return &[];
        }
        match self.lookup(suffix, self.hasher.hash_one(suffix)) {
            Ok(i) => &self.sets[self.set_of[i] as usize],
            Err(_) => &[],
        }
    }

    /// Every domain of `category`, for the naive walk of `explain` (a scan of the whole index).
    pub fn domains_of(&self, category: CategoryId) -> impl Iterator<Item = &str> {
        (0..self.ends.len())
            .filter(move |i| self.sets[self.set_of[*i] as usize].contains(&category))
            .map(|i| self.domain(i))
    }
}

/// Interns the sets of categories while a [`CategoryIndex`] is built.
#[derive(Default)]
struct SetInterner {
    ids: HashMap<Box<[CategoryId]>, u32>,
    /// (set, category added) -> resulting set.
    grown: HashMap<(u32, CategoryId), u32>,
}

impl SetInterner {
    fn intern(&mut self, sets: &mut Vec<Box<[CategoryId]>>, set: Box<[CategoryId]>) -> u32 {
        if let Some(id) = self.ids.get(&set) {
            return *id;
        }
        let id = sets.len() as u32;
        sets.push(set.clone());
        self.ids.insert(set, id);
        id
    }

    /// The set `from` plus `category`.
    fn with(&mut self, sets: &mut Vec<Box<[CategoryId]>>, from: u32, category: CategoryId) -> u32 {
        if sets[from as usize].contains(&category) {
            return from;
        }
        if let Some(to) = self.grown.get(&(from, category)) {
            return *to;
        }
        let mut set = sets[from as usize].to_vec();
        set.push(category);
        let to = self.intern(sets, set.into());
        self.grown.insert((from, category), to);
        to
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
