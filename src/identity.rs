//! Who is asking: a connection's source address (and, with later listeners, its certificate or
//! credentials) mapped to a ministry of the current policy.
//!
//! `identity.sources` is compiled into one hash map per prefix length, probed from the most
//! specific length down, so the most specific CIDR wins in a handful of lookups however many
//! ranges there are.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::policy::host::canonical_ip;
use crate::policy::{MinistryId, Policy};

/// How a client was identified (the audit log's `identity` field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Source,
    Default,
    None,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Source => "source",
            Method::Default => "default",
            Method::None => "none",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identified {
    /// `None`: nothing identified the client and there is no default ministry (blocked).
    pub ministry: Option<MinistryId>,
    pub method: Method,
}

/// Source-CIDR table of one policy snapshot.
#[derive(Debug, Default)]
pub struct IdentityTable {
    /// (prefix length, masked network address -> ministry), longest prefix first.
    by_len: Vec<(u8, HashMap<IpAddr, MinistryId>)>,
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
            default: default.and_then(|d| policy.ministry_id(d)),
        }
    }

    pub fn identify(&self, peer: IpAddr) -> Identified {
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
                return Identified {
                    ministry: Some(*id),
                    method: Method::Source,
                };
            }
        }
        match self.default {
            Some(id) => Identified {
                ministry: Some(id),
                method: Method::Default,
            },
            None => Identified {
                ministry: None,
                method: Method::None,
            },
        }
    }
}
