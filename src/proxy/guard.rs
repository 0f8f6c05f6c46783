//! The egress guard: address ranges a proxy at the edge must never reach on a client's behalf
//! (its own host, the internal network, link-local and cloud metadata services, multicast, …),
//! unless the operator opens a range with `egress.allow_private_cidrs`.
//!
//! The check runs on the address egressd is about to connect to, after resolution, so a DNS name
//! pointing at `127.0.0.1` or `169.254.169.254` is refused like the literal would be.

use std::net::IpAddr;
use std::sync::LazyLock;

use ipnet::IpNet;

use crate::policy::host::canonical_ip;

/// Ranges refused by default, with why each one is dangerous.
const PROHIBITED: &[&str] = &[
    "0.0.0.0/8",      // "this network"; 0.0.0.0 reaches the local host on Linux
    "10.0.0.0/8",     // RFC 1918 private
    "100.64.0.0/10",  // CGNAT shared space (also Alibaba's metadata 100.100.100.200)
    "127.0.0.0/8",    // loopback: the proxy host's own services
    "169.254.0.0/16", // link-local, incl. cloud metadata 169.254.169.254
    "172.16.0.0/12",  // RFC 1918 private
    "192.0.0.0/24",   // IETF protocol assignments
    "192.168.0.0/16", // RFC 1918 private
    "198.18.0.0/15",  // benchmarking
    "224.0.0.0/4",    // multicast
    "240.0.0.0/4",    // reserved, incl. broadcast 255.255.255.255
    "::/128",         // unspecified
    "::1/128",        // loopback
    "64:ff9b:1::/48", // local-use NAT64
    "100::/64",       // discard-only
    "fc00::/7",       // unique local, incl. AWS metadata fd00:ec2::254
    "fe80::/10",      // link-local
    "ff00::/8",       // multicast
];

static PROHIBITED_NETS: LazyLock<Vec<IpNet>> = LazyLock::new(|| {
    PROHIBITED
        .iter()
        .map(|s| s.parse().expect("static CIDR"))
        .collect()
});

/// True when `ip` may not be reached: it is in a prohibited range and in no allowed one.
/// IPv4-mapped and NAT64 (`64:ff9b::/96`) IPv6 addresses are judged by the IPv4 they embed.
pub fn is_prohibited(ip: IpAddr, allowed: &[IpNet]) -> bool {
    let ip = embedded_v4(canonical_ip(ip));
    if allowed.iter().any(|n| n.contains(&ip)) {
        return false;
    }
    PROHIBITED_NETS.iter().any(|n| n.contains(&ip))
}

fn embedded_v4(ip: IpAddr) -> IpAddr {
    if let IpAddr::V6(v6) = ip {
        let s = v6.segments();
        if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
            let o = v6.octets();
            return IpAddr::from([o[12], o[13], o[14], o[15]]);
        }
    }
    ip
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> bool {
        is_prohibited(s.parse().unwrap(), &[])
    }

    #[test]
    fn default_ranges() {
        for s in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "ff02::1",
            "::ffff:127.0.0.1",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(p(s), "{s} should be prohibited");
        }
        for s in [
            "93.184.216.34",
            "2606:4700::1111",
            "172.32.0.1",
            "100.128.0.1",
        ] {
            assert!(!p(s), "{s} should be allowed");
        }
    }

    #[test]
    fn allowed_ranges_open_the_guard() {
        let allow: Vec<IpNet> = vec!["127.0.0.0/8".parse().unwrap()];
        assert!(!is_prohibited("127.0.0.1".parse().unwrap(), &allow));
        assert!(!is_prohibited("::ffff:127.0.0.1".parse().unwrap(), &allow));
        assert!(is_prohibited("10.0.0.1".parse().unwrap(), &allow));
    }
}
