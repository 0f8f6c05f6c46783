//! Host normalisation: every spelling of a destination is turned into one canonical [`Host`]
//! before it is matched, so that `WWW.Facebook.COM.`, `www.facebook.com` and its IDN or
//! punycode forms hit the same rule, and `2130706433`, `0x7f.1` and `[::ffff:127.0.0.1]` are all
//! the IP `127.0.0.1`.
//!
//! The heavy lifting (IDNA/UTS-46 to punycode, the IPv4 number forms a resolver accepts:
//! decimal, octal, hex and short dotted forms) is the WHATWG host parser of the `url` crate;
//! this module adds what a proxy needs on top: percent-encoded hosts are refused (a resolver never
//! sees them, so they can only be an evasion attempt), one trailing dot is dropped, IPv6 brackets
//! and IPv4-mapped IPv6 are unwrapped, and DNS length limits are enforced.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// A normalised destination host.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Host {
    /// Lower-case ASCII (punycode) DNS name without a trailing dot. Shared: a request's host
    /// goes into its audit record and a connection's remembered route without a copy.
    Name(Arc<str>),
    /// A canonical IP address; IPv4-mapped IPv6 addresses are stored as IPv4.
    Ip(IpAddr),
}

impl Host {
    /// The name, when this host is not an IP literal.
    pub fn name(&self) -> Option<&str> {
        match self {
            Host::Name(n) => Some(n),
            Host::Ip(_) => None,
        }
    }

    /// The IP, when this host is an IP literal.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Host::Ip(ip) => Some(*ip),
            Host::Name(_) => None,
        }
    }
}

impl fmt::Display for Host {
    /// Formats the host as it appears in an authority: IPv6 in brackets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::Ip(IpAddr::V4(ip)) => f.write_str(ipv4_text(*ip, &mut [0; 15])),
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
        }
    }
}

/// Dotted-quad text of `ip` in `buf`. `Ipv4Addr`'s `Display` goes through `Formatter`
/// padding (about 1,000 instructions a call in the profile); audit lines and `Host` headers
/// write an address per request, and this takes a few dozen.
pub fn ipv4_text(ip: Ipv4Addr, buf: &mut [u8; 15]) -> &str {
    std::str::from_utf8(ipv4_bytes(ip, buf)).expect("digits and dots are ASCII")
}

/// [`ipv4_text`] as bytes, for heads and audit lines (no UTF-8 check needed).
pub fn ipv4_bytes(ip: Ipv4Addr, buf: &mut [u8; 15]) -> &[u8] {
    let mut n = 0;
    for (i, o) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            buf[n] = b'.';
            n += 1;
        }
        if o >= 100 {
            buf[n] = b'0' + o / 100;
            n += 1;
        }
        if o >= 10 {
            buf[n] = b'0' + o / 10 % 10;
            n += 1;
        }
        buf[n] = b'0' + o % 10;
        n += 1;
    }
    &buf[..n]
}

/// Why a host string is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("empty host")]
    Empty,
    #[error("percent-encoded host names are not accepted")]
    PercentEncoded,
    #[error("invalid IPv6 literal")]
    BadIpv6,
    #[error("invalid host name: {0}")]
    Invalid(String),
    #[error("host name longer than 253 characters or a label longer than 63")]
    TooLong,
}

/// Unwraps IPv4-mapped IPv6 (`::ffff:a.b.c.d`) so that it matches IPv4 rules and ranges.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// Normalises a host as written in a request target, a CONNECT authority, an SNI or a policy
/// file (without port). See the module docs for what is accepted.
pub fn normalize_host(raw: &str) -> Result<Host, HostError> {
    Ok(match normalize_with(raw, |n: &str| Arc::from(n))? {
        Ok(name) => Host::Name(name),
        Err(ip) => Host::Ip(ip),
    })
}

/// [`normalize_host`] for a policy's `domains:` entries, whose names are stored as they are:
/// the name (or the IP address it turned out to be).
pub fn normalize_name(raw: &str) -> Result<Result<Box<str>, IpAddr>, HostError> {
    normalize_with(raw, |n: &str| Box::from(n))
}

/// The normalisation itself; a name is handed to `make` as its lower-case text.
fn normalize_with<T>(
    raw: &str,
    make: impl FnOnce(&str) -> T,
) -> Result<Result<T, IpAddr>, HostError> {
    // The common case first: `is_plain_name` accepts only names that every check below passes.
    let plain = raw.strip_suffix('.').unwrap_or(raw);
    if is_plain_name(plain) {
        // Lower-cased on the stack: the name is allocated once, in its final form.
        let mut buf = [0u8; 253];
        let lower = &mut buf[..plain.len()];
        lower.copy_from_slice(plain.as_bytes());
        lower.make_ascii_lowercase();
        let text = std::str::from_utf8(lower).expect("a plain name is ASCII");
        return Ok(Ok(make(text)));
    }
    match normalize_other(raw)? {
        Other::Ip(ip) => Ok(Err(ip)),
        Other::Name(d) => Ok(Ok(make(&d))),
    }
}

/// What the slow path found: an address, or a name from the WHATWG parser.
enum Other {
    Ip(IpAddr),
    Name(String),
}

fn normalize_other(raw: &str) -> Result<Other, HostError> {
    if raw.is_empty() {
        return Err(HostError::Empty);
    }
    if raw.contains('%') {
        return Err(HostError::PercentEncoded);
    }
    if let Some(inner) = raw.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or(HostError::BadIpv6)?;
        let ip: Ipv6Addr = inner.parse().map_err(|_| HostError::BadIpv6)?;
        return Ok(Other::Ip(canonical_ip(IpAddr::V6(ip))));
    }
    if raw.contains(':') {
        // Bare IPv6 (policy files, SNI never has one); anything else with ':' is not a host.
        let ip: Ipv6Addr = raw.parse().map_err(|_| HostError::BadIpv6)?;
        return Ok(Other::Ip(canonical_ip(IpAddr::V6(ip))));
    }
    let trimmed = raw.strip_suffix('.').unwrap_or(raw);
    if trimmed.is_empty() || trimmed.ends_with('.') {
        return Err(HostError::Invalid(raw.to_owned()));
    }
    // Strict dotted decimal (what std parses) means the same address to the WHATWG parser.
    if let Ok(ip) = trimmed.parse::<std::net::Ipv4Addr>() {
        return Ok(Other::Ip(IpAddr::V4(ip)));
    }
    parse_whatwg(raw, trimmed)
}

/// The common case without the WHATWG parser: a name of ASCII letters, digits, hyphens and
/// dots, within DNS lengths, whose last label starts with a letter (so it cannot be an IPv4
/// number form) and with no `xn--` label (punycode is left to IDNA to validate). UTS-46 maps
/// such a name to its lower case and nothing else, so the result is the parser's.
fn is_plain_name(name: &str) -> bool {
    // One pass over the bytes: this runs for nearly every request.
    let b = name.as_bytes();
    if b.len() > 253 {
        return false;
    }
    let label_ok = |l: &[u8]| {
        !l.is_empty()
            && l.len() <= 63
            && !l.get(..4).is_some_and(|p| p.eq_ignore_ascii_case(b"xn--"))
    };
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        if c == b'.' {
            if !label_ok(&b[start..i]) {
                return false;
            }
            start = i + 1;
        } else if !(c.is_ascii_alphanumeric() || c == b'-') {
            return false;
        }
    }
    let last = &b[start..];
    label_ok(last) && last[0].is_ascii_alphabetic()
}

fn parse_whatwg(raw: &str, trimmed: &str) -> Result<Other, HostError> {
    match url::Host::parse(trimmed) {
        Ok(url::Host::Domain(d)) => {
            check_dns_lengths(&d)?;
            Ok(Other::Name(d))
        }
        Ok(url::Host::Ipv4(ip)) => Ok(Other::Ip(IpAddr::V4(ip))),
        Ok(url::Host::Ipv6(ip)) => Ok(Other::Ip(canonical_ip(IpAddr::V6(ip)))),
        Err(e) => Err(HostError::Invalid(format!("{raw}: {e}"))),
    }
}

fn check_dns_lengths(name: &str) -> Result<(), HostError> {
    if name.len() > 253 || name.split('.').any(|l| l.is_empty() || l.len() > 63) {
        return Err(HostError::TooLong);
    }
    Ok(())
}

/// The suffixes of a name that a `domains:` entry could be, longest first:
/// `a.b.c` yields `a.b.c`, `b.c`, `c`.
pub fn domain_suffixes(name: &str) -> impl Iterator<Item = &str> {
    std::iter::once(name).chain(name.match_indices('.').map(move |(i, _)| &name[i + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Host {
        normalize_host(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn names_are_lowercased_and_trailing_dot_dropped() {
        assert_eq!(
            n("WWW.FaceBook.COM."),
            Host::Name("www.facebook.com".into())
        );
        assert!(normalize_host("facebook.com..").is_err());
        assert!(normalize_host(".").is_err());
    }

    #[test]
    fn idn_becomes_punycode() {
        assert_eq!(
            n("bücher.example"),
            Host::Name("xn--bcher-kva.example".into())
        );
        assert_eq!(
            n("XN--BCHER-KVA.example"),
            Host::Name("xn--bcher-kva.example".into())
        );
        // Full-width letters fold to ASCII under UTS-46.
        assert_eq!(n("ｆａｃｅｂｏｏｋ.com"), Host::Name("facebook.com".into()));
    }

    #[test]
    fn every_ipv4_form_is_canonical() {
        let want = Host::Ip("127.0.0.1".parse().unwrap());
        for s in [
            "127.0.0.1",
            "2130706433",
            "0x7f000001",
            "0177.0.0.1",
            "0x7f.0.0.1",
            "127.1",
            "127.0.1",
            "[::ffff:127.0.0.1]",
            "[::ffff:7f00:1]",
            "127.0.0.1.",
        ] {
            assert_eq!(n(s), want, "{s}");
        }
    }

    #[test]
    fn ipv6_brackets_removed() {
        assert_eq!(n("[2001:DB8::1]"), Host::Ip("2001:db8::1".parse().unwrap()));
        assert_eq!(n("2001:db8::1"), Host::Ip("2001:db8::1".parse().unwrap()));
        assert!(normalize_host("[2001:db8::1").is_err());
        assert!(normalize_host("[nothex]").is_err());
    }

    #[test]
    fn refused_spellings() {
        assert_eq!(
            normalize_host("%66acebook.com"),
            Err(HostError::PercentEncoded)
        );
        assert_eq!(normalize_host(""), Err(HostError::Empty));
        assert!(normalize_host("a b.com").is_err());
        assert!(normalize_host("host:80").is_err());
        assert!(normalize_host(&format!("{}.com", "a".repeat(64))).is_err());
        // A last label that is a number must be a valid IPv4 (WHATWG), not a name.
        assert!(normalize_host("foo.123").is_err());
    }

    /// The shortcut for plain names agrees with the WHATWG parser on every name it takes.
    #[test]
    fn plain_names_shortcut_matches_the_parser() {
        let labels = [
            "a",
            "Z",
            "www",
            "WWW",
            "face-book",
            "-lead",
            "trail-",
            "ab--cd",
            "XN--BCHER-KVA",
            "xn--",
            "0",
            "0x7f",
            "9",
            "123",
            "x1",
            "1x",
            "ss",
            "a1b2",
            &"b".repeat(63),
        ];
        let mut checked = 0;
        for a in labels {
            for b in labels {
                for name in [format!("{a}.{b}"), format!("{a}.{b}.com"), a.to_owned()] {
                    if !is_plain_name(&name) {
                        continue;
                    }
                    checked += 1;
                    let whatwg = match parse_whatwg(&name, &name) {
                        Ok(Other::Name(d)) => Host::Name(d.into()),
                        Ok(Other::Ip(ip)) => Host::Ip(ip),
                        Err(e) => panic!("{name}: {e}"),
                    };
                    assert_eq!(normalize_host(&name), Ok(whatwg), "{name}");
                    assert_eq!(
                        normalize_name(&name).unwrap().unwrap().as_ref(),
                        name.to_ascii_lowercase()
                    );
                }
            }
        }
        assert!(checked > 300, "{checked}");
        assert!(!is_plain_name(&format!("{}.com", "a".repeat(64))));
        assert!(!is_plain_name("foo.123"));
        assert!(!is_plain_name("xn--bcher-kva.example"));
    }

    /// Every octet value in every position, against the standard library's text.
    #[test]
    fn ipv4_text_equals_display() {
        let mut buf = [0; 15];
        for o in 0..=255u8 {
            for ip in [
                Ipv4Addr::new(o, 0, 0, 0),
                Ipv4Addr::new(1, o, 10, 100),
                Ipv4Addr::new(255, 99, o, 9),
                Ipv4Addr::new(o, o, o, o),
            ] {
                assert_eq!(ipv4_text(ip, &mut buf), ip.to_string());
                assert_eq!(Host::Ip(ip.into()).to_string(), ip.to_string());
            }
        }
    }

    #[test]
    fn suffixes() {
        let v: Vec<_> = domain_suffixes("a.b.c").collect();
        assert_eq!(v, ["a.b.c", "b.c", "c"]);
    }
}
