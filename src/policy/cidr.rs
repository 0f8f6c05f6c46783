//! The `destinations:` table: rule ids by CIDR, looked up with one hash probe per distinct prefix
//! length (at most 33 for IPv4, 129 for IPv6, in practice a handful), whatever the number of
//! rules or ranges.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use super::model::{canonical_net, nat64_target};
use super::RuleId;

/// Rules by network, one map per distinct prefix length, keyed by the masked address.
#[derive(Debug, Default)]
pub(crate) struct CidrTable {
    v4: Vec<(u8, HashMap<u32, Vec<RuleId>>)>,
    v6: Vec<(u8, HashMap<u128, Vec<RuleId>>)>,
}

fn mask_v4(addr: u32, len: u8) -> u32 {
    addr & u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

fn mask_v6(addr: u128, len: u8) -> u128 {
    addr & u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

/// Appends `rule` unless it is already the last entry: rules are added in id order, so a rule
/// naming the same key twice can only repeat the last element, and the lists stay sorted.
pub(crate) fn push_rule(list: &mut Vec<RuleId>, rule: RuleId) {
    if list.last() != Some(&rule) {
        list.push(rule);
    }
}

fn slot<K: Eq + std::hash::Hash>(
    tables: &mut Vec<(u8, HashMap<K, Vec<RuleId>>)>,
    len: u8,
) -> &mut HashMap<K, Vec<RuleId>> {
    let i = match tables.iter().position(|(l, _)| *l == len) {
        Some(i) => i,
        None => {
            tables.push((len, HashMap::new()));
            tables.len() - 1
        }
    };
    &mut tables[i].1
}

impl CidrTable {
    pub fn insert(&mut self, net: IpNet, rule: RuleId) {
        match canonical_net(net) {
            IpNet::V4(n) => {
                let len = n.prefix_len();
                let key = mask_v4(n.addr().to_bits(), len);
                push_rule(slot(&mut self.v4, len).entry(key).or_default(), rule);
            }
            IpNet::V6(n) => {
                let len = n.prefix_len();
                let key = mask_v6(n.addr().to_bits(), len);
                push_rule(slot(&mut self.v6, len).entry(key).or_default(), rule);
            }
        }
    }

    /// Calls `found` with every rule whose network contains `ip` (canonical: IPv4-mapped IPv6
    /// already unwrapped), in no particular order; for a NAT64 address also every rule whose
    /// network contains the IPv4 it embeds (a rule may then be reported twice).
    pub fn lookup(&self, ip: IpAddr, mut found: impl FnMut(RuleId)) {
        self.lookup_one(ip, &mut found);
        if let Some(v4) = nat64_target(ip) {
            self.lookup_one(v4, &mut found);
        }
    }

    fn lookup_one(&self, ip: IpAddr, found: &mut impl FnMut(RuleId)) {
        match ip {
            IpAddr::V4(ip) => {
                let bits = ip.to_bits();
                for (len, map) in &self.v4 {
                    map.get(&mask_v4(bits, *len))
                        .into_iter()
                        .flatten()
                        .for_each(|r| found(*r));
                }
            }
            IpAddr::V6(ip) => {
                let bits = ip.to_bits();
                for (len, map) in &self.v6 {
                    map.get(&mask_v6(bits, *len))
                        .into_iter()
                        .flatten()
                        .for_each(|r| found(*r));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nat64_addresses_are_also_judged_by_their_ipv4() {
        let mut t = CidrTable::default();
        t.insert("192.0.2.0/24".parse().unwrap(), 7);
        let hits = |ip: &str| {
            let mut v = Vec::new();
            t.lookup(ip.parse().unwrap(), |r| v.push(r));
            v
        };
        assert_eq!(hits("64:ff9b::192.0.2.1"), [7]);
        assert_eq!(hits("64:ff9b::c000:201"), [7]);
        assert!(hits("64:ff9b::198.51.100.1").is_empty());
        assert!(hits("64:ff9c::192.0.2.1").is_empty());
        assert!(hits("2001:db8::192.0.2.1").is_empty());
    }

    #[test]
    fn probes_each_prefix_length() {
        let mut t = CidrTable::default();
        for (i, net) in [
            "10.0.0.0/8",
            "10.1.0.0/16",
            "0.0.0.0/0",
            "10.1.2.3/32",
            "2001:db8::/32",
        ]
        .iter()
        .enumerate()
        {
            t.insert(net.parse().unwrap(), i as RuleId);
        }
        let hits = |ip: &str| {
            let mut v = Vec::new();
            t.lookup(ip.parse().unwrap(), |r| v.push(r));
            v.sort_unstable();
            v
        };
        assert_eq!(hits("10.1.2.3"), [0, 1, 2, 3]);
        assert_eq!(hits("10.2.0.1"), [0, 2]);
        assert_eq!(hits("192.0.2.1"), [2]);
        assert_eq!(hits("2001:db8::1"), [4]);
        assert_eq!(hits("2001:db9::1"), Vec::<RuleId>::new());
    }

    #[test]
    fn mapped_ipv6_ranges_are_ipv4() {
        let mut t = CidrTable::default();
        t.insert("::ffff:192.0.2.0/120".parse().unwrap(), 7);
        let mut v = Vec::new();
        t.lookup("192.0.2.9".parse().unwrap(), |r| v.push(r));
        assert_eq!(v, [7]);
    }
}
