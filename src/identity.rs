//! Who is asking: a connection's verified client certificate, its `Proxy-Authorization`
//! credentials or its source address, mapped to a ministry of the current policy.
//!
//! This module holds the synchronous lookups of one snapshot: certificate name patterns, source
//! CIDRs and the default ministry. The walk that applies them in the contract's order, with the
//! credentials step between certificate and source (password checks are slow and run off the
//! executor), is [`crate::proxy::auth::identify`].
//!
//! `identity.sources` is compiled into one hash map per prefix length, probed from the most
//! specific length down, so the most specific CIDR wins in a handful of lookups however many
//! ranges there are. `identity.certificates` patterns are tried in file order, the first
//! pattern that matches any of the certificate's names wins.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use crate::policy::host::canonical_ip;
use crate::policy::{MinistryId, Policy};

/// How a client was identified (the audit log's `identity` field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// A verified client certificate on the TLS listener matched `identity.certificates`.
    Certificate,
    /// `Proxy-Authorization: Basic` credentials of `identity.credentials`.
    Credentials,
    Source,
    Default,
    None,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Certificate => "certificate",
            Method::Credentials => "credentials",
            Method::Source => "source",
            Method::Default => "default",
            Method::None => "none",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identified {
    /// `None`: nothing identified the client and there is no default ministry (blocked).
    pub ministry: Option<MinistryId>,
    pub method: Method,
    /// The audit log's `user`: the user name for [`Method::Credentials`], the certificate name
    /// that matched for [`Method::Certificate`], otherwise `None`.
    pub user: Option<Arc<str>>,
}

impl Identified {
    fn new(ministry: Option<MinistryId>, method: Method) -> Self {
        Identified {
            ministry,
            method,
            user: None,
        }
    }
}

/// A compiled `identity.certificates` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum CertPattern {
    Exact(Box<str>),
    /// `*.x`: stored as `.x`; matches any name that ends with it (any depth, not `x` itself).
    Suffix(Box<str>),
}

impl CertPattern {
    fn parse(p: &str) -> CertPattern {
        let p = p.to_ascii_lowercase();
        match p.strip_prefix('*') {
            Some(rest) if rest.starts_with('.') => CertPattern::Suffix(rest.into()),
            _ => CertPattern::Exact(p.into()),
        }
    }

    fn matches(&self, name: &str) -> bool {
        match self {
            CertPattern::Exact(e) => **e == *name,
            CertPattern::Suffix(s) => name.len() > s.len() && name.ends_with(&**s),
        }
    }
}

/// Identity tables of one policy snapshot.
#[derive(Debug, Default)]
pub struct IdentityTable {
    /// (prefix length, masked network address -> ministry), longest prefix first.
    by_len: Vec<(u8, HashMap<IpAddr, MinistryId>)>,
    /// `identity.certificates` in file order.
    certificates: Vec<(CertPattern, MinistryId)>,
    default: Option<MinistryId>,
}

impl IdentityTable {
    /// Builds the table; ministries are resolved to ids of `policy` (names were validated by
    /// the config loader, so an unknown one cannot occur; it would be skipped).
    pub fn build(sources: &[(IpNet, String)], default: Option<&str>, policy: &Policy) -> Self {
        let mut lens: HashMap<u8, HashMap<IpAddr, MinistryId>> = HashMap::new();
        for (net, name) in sources {
            let Some(id) = policy.ministry_id(name) else {
                continue;
            };
            let net = crate::policy::model::canonical_net(*net);
            // Distinguish v4 and v6 lengths: v6 lengths are stored + 128 so they never collide.
            let key = match net {
                IpNet::V4(n) => n.prefix_len(),
                IpNet::V6(n) => n.prefix_len() + 128,
            };
            lens.entry(key)
                .or_default()
                .entry(net.network())
                .or_insert(id);
        }
        let mut by_len: Vec<_> = lens.into_iter().collect();
        by_len.sort_by_key(|e| std::cmp::Reverse(e.0));
        IdentityTable {
            by_len,
            certificates: Vec::new(),
            default: default.and_then(|d| policy.ministry_id(d)),
        }
    }

    /// Adds the `identity.certificates` patterns (`*.x` or exact names, as validated by the
    /// config loader); ministries unknown to `policy` cannot occur and would be skipped.
    pub fn with_certificates(mut self, patterns: &[(String, String)], policy: &Policy) -> Self {
        self.certificates = (patterns.iter())
            .filter_map(|(p, m)| Some((CertPattern::parse(p), policy.ministry_id(m)?)))
            .collect();
        self
    }

    /// The ministry of a verified client certificate with these names (see
    /// [`crate::proxy::tls::cert_names`]): the first pattern, in file order, that matches any
    /// name. `None`: no pattern matches, the next identity method applies.
    pub fn by_certificate(&self, names: &[Box<str>]) -> Option<Identified> {
        self.certificates.iter().find_map(|(pattern, id)| {
            let name = names.iter().find(|n| pattern.matches(n))?;
            Some(Identified {
                ministry: Some(*id),
                method: Method::Certificate,
                user: Some(Arc::from(&**name)),
            })
        })
    }

    /// Source CIDR, else the default ministry, else nobody (for clients no certificate or
    /// credentials identified; also what `egressd explain --client` and policy tests use).
    pub fn identify(&self, peer: IpAddr) -> Identified {
        self.by_source(peer).unwrap_or_else(|| self.fallback())
    }

    /// The ministry of the most specific `identity.sources` CIDR containing `peer`.
    pub fn by_source(&self, peer: IpAddr) -> Option<Identified> {
        let ip = canonical_ip(peer);
        for (key, map) in &self.by_len {
            let masked = match ip {
                IpAddr::V4(v4) if *key <= 32 => {
                    IpNet::new(IpAddr::V4(v4), *key).map(|n| n.network())
                }
                IpAddr::V6(v6) if *key > 128 => {
                    IpNet::new(IpAddr::V6(v6), *key - 128).map(|n| n.network())
                }
                _ => continue,
            };
            if let Some(id) = masked.ok().and_then(|m| map.get(&m)) {
                return Some(Identified::new(Some(*id), Method::Source));
            }
        }
        None
    }

    /// `identity.default_ministry`, or nobody (blocked as `_unknown`).
    pub fn fallback(&self) -> Identified {
        match self.default {
            Some(id) => Identified::new(Some(id), Method::Default),
            None => Identified::new(None, Method::None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_patterns() {
        let wild = CertPattern::parse("*.Agriculture.example");
        assert!(wild.matches("host1.agriculture.example"));
        assert!(wild.matches("a.b.agriculture.example"), "any depth");
        assert!(!wild.matches("agriculture.example"), "not the bare suffix");
        assert!(!wild.matches("evilagriculture.example"), "label boundary");
        let exact = CertPattern::parse("gw.health.example");
        assert!(exact.matches("gw.health.example"));
        assert!(!exact.matches("x.gw.health.example"));
    }
}
