//! Parsers for the scalar values of every file: ports, CIDRs, hosts, domains, `urls:` entries,
//! socket addresses, durations, actions and names. Each returns the validated value or the
//! [`Problem`] to report; the caller knows where the value was written.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;

use crate::config::error::Problem;
use crate::policy::host::{canonical_ip, normalize_host, normalize_name, Host};
use crate::policy::model::{canonical_net, Action, Mode, UrlPrefix};
use crate::policy::path::normalize_path;

pub fn port(value: i64) -> Result<u16, Problem> {
    u16::try_from(value)
        .ok()
        .filter(|p| *p != 0)
        .ok_or(Problem::BadPort { value })
}

/// A CIDR or a bare address (a /32 or /128), canonicalised. The flag is true when the
/// address had host bits set (`10.0.0.1/8`): accepted, but worth a warning.
pub fn cidr(raw: &str) -> Result<(IpNet, bool), Problem> {
    let bad = |err: String| Problem::BadCidr {
        value: raw.to_owned(),
        err,
    };
    let (addr, prefix) = match raw.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (raw, None),
    };
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| bad(format!("`{addr}` is not an IP address")))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match prefix {
        None => max,
        Some(p) => p
            .parse::<u8>()
            .ok()
            .filter(|l| *l <= max)
            .ok_or_else(|| bad(format!("prefix length `{p}` must be 0-{max}")))?,
    };
    let net = IpNet::new(ip, len).map_err(|e| bad(e.to_string()))?;
    Ok((canonical_net(net), net.trunc() != net))
}

pub fn ip(raw: &str) -> Result<IpAddr, Problem> {
    let bare = raw
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(raw);
    bare.parse().map(canonical_ip).map_err(|_| Problem::BadIp {
        value: raw.to_owned(),
    })
}

/// What a user probably meant when a host field holds a URL or a path.
fn host_hint(raw: &str) -> String {
    if raw.contains("://") || raw.contains('/') {
        "; write only the host name (use `urls:` for paths)".to_owned()
    } else {
        String::new()
    }
}

/// A `hosts:` entry (or any exact host): a name or an IP literal.
pub fn host(raw: &str, what: &'static str) -> Result<Host, Problem> {
    normalize_host(raw).map_err(|e| Problem::BadHost {
        what,
        value: raw.to_owned(),
        err: e.to_string(),
        hint: host_hint(raw),
    })
}

/// A `domains:` entry: a name (never an IP), matching itself and its subdomains.
pub fn domain(raw: &str) -> Result<Box<str>, Problem> {
    let bad = |err: String, hint: String| Problem::BadHost {
        what: "domain",
        value: raw.to_owned(),
        err,
        hint,
    };
    if let Some(rest) = raw.strip_prefix("*.").or_else(|| raw.strip_prefix('.')) {
        let hint = format!("; a domain already matches its subdomains: write `{rest}`");
        return Err(bad("wildcards are not needed".to_owned(), hint));
    }
    match normalize_name(raw) {
        Ok(Ok(name)) => Ok(name),
        Ok(Err(ip)) => Err(bad(
            format!("{ip} is an IP address"),
            "; use `hosts:` or `destinations:` for addresses".to_owned(),
        )),
        Err(e) => Err(bad(e.to_string(), host_hint(raw))),
    }
}

/// A `urls:` entry: `http://host/path-prefix` or `https://…`, no port, no user info.
pub fn url_prefix(raw: &str) -> Result<UrlPrefix, Problem> {
    let bad = |why: String| Problem::BadUrl {
        value: raw.to_owned(),
        why,
    };
    let rest = strip_prefix_ci(raw, "http://")
        .or_else(|| strip_prefix_ci(raw, "https://"))
        .ok_or_else(|| bad("expected `http://HOST/PATH` or `https://HOST/PATH`".to_owned()))?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.contains('@') {
        return Err(bad("user info (`user@`) is not allowed".to_owned()));
    }
    let has_port = match authority.rfind(']') {
        Some(close) => authority[close..].contains(':'),
        None => authority.contains(':') && !authority.starts_with('['),
    };
    if has_port {
        return Err(bad(
            "a port is not allowed here; restrict the rule with `ports:`".to_owned(),
        ));
    }
    let host = normalize_host(authority).map_err(|e| bad(format!("host: {e}")))?;
    let path = if path.starts_with('/') { path } else { "/" };
    let path_prefix = normalize_path(path).ok_or_else(|| bad("invalid path".to_owned()))?;
    Ok(UrlPrefix { host, path_prefix })
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

pub fn socket(raw: &str) -> Result<SocketAddr, Problem> {
    raw.parse()
        .map_err(|e: std::net::AddrParseError| Problem::BadSocket {
            value: raw.to_owned(),
            err: e.to_string(),
        })
}

pub fn duration(raw: &str) -> Result<Duration, Problem> {
    humantime::parse_duration(raw).map_err(|e| Problem::BadDuration {
        value: raw.to_owned(),
        err: e.to_string(),
    })
}

pub fn action(raw: &str) -> Result<Action, Problem> {
    match raw {
        "allow" => Ok(Action::Allow),
        "block" => Ok(Action::Block),
        _ => Err(Problem::BadChoice {
            what: "action",
            value: raw.to_owned(),
            expected: "`allow` or `block`",
        }),
    }
}

pub fn mode(raw: &str) -> Result<Mode, Problem> {
    match raw {
        "enforce" => Ok(Mode::Enforce),
        "report" => Ok(Mode::Report),
        _ => Err(Problem::BadChoice {
            what: "mode",
            value: raw.to_owned(),
            expected: "`enforce` or `report`",
        }),
    }
}

/// Ministry names label metrics and logs; a leading `_` is reserved (`_unknown`,
/// `_organization`).
pub fn ministry_name(raw: &str) -> Result<(), Problem> {
    let why = if raw.is_empty() {
        "a ministry name cannot be empty"
    } else if raw.starts_with('_') {
        "names starting with `_` are reserved (`_unknown`, `_organization`)"
    } else if raw
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '/')
    {
        "a ministry name cannot contain spaces or `/`"
    } else {
        return Ok(());
    };
    Err(Problem::BadName {
        name: raw.to_owned(),
        why,
    })
}

/// Rule ids become `FILE-STEM/ID` in logs and metrics; `_default` names the default decision.
pub fn rule_id(raw: &str) -> Result<(), Problem> {
    let why = if raw.is_empty() {
        "a rule id cannot be empty"
    } else if raw == "_default" {
        "`_default` is reserved for the file's default decision"
    } else if raw
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '/')
    {
        "a rule id cannot contain spaces or `/`"
    } else {
        return Ok(());
    };
    Err(Problem::BadName {
        name: raw.to_owned(),
        why,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        assert_eq!(port(443), Ok(443));
        assert_eq!(port(65535), Ok(65535));
        assert!(port(0).is_err());
        assert!(port(65536).is_err());
        assert!(port(-1).is_err());
    }

    #[test]
    fn cidrs() {
        assert_eq!(
            cidr("10.0.0.0/8").unwrap(),
            ("10.0.0.0/8".parse().unwrap(), false)
        );
        assert_eq!(
            cidr("10.0.0.1/8").unwrap(),
            ("10.0.0.0/8".parse().unwrap(), true)
        );
        assert_eq!(
            cidr("192.0.2.7").unwrap(),
            ("192.0.2.7/32".parse().unwrap(), false)
        );
        assert_eq!(
            cidr("::ffff:10.0.0.0/104").unwrap().0,
            "10.0.0.0/8".parse().unwrap()
        );
        let e = cidr("10.0.0.0/33").unwrap_err().to_string();
        assert!(e.contains("prefix length `33` must be 0-32"), "{e}");
        assert!(cidr("10.0.0/8").is_err());
    }

    #[test]
    fn domains_and_hosts() {
        assert_eq!(&*domain("WWW.Example.COM.").unwrap(), "www.example.com");
        assert!(domain("*.example.com")
            .unwrap_err()
            .to_string()
            .contains("write `example.com`"));
        assert!(domain("10.0.0.1")
            .unwrap_err()
            .to_string()
            .contains("use `hosts:`"));
        assert!(domain("%65xample.com")
            .unwrap_err()
            .to_string()
            .contains("percent-encoded"));
        assert!(domain("https://x.com/a")
            .unwrap_err()
            .to_string()
            .contains("use `urls:`"));
        assert_eq!(
            host("[::1]", "host").unwrap(),
            Host::Ip("::1".parse().unwrap())
        );
    }

    #[test]
    fn urls() {
        let u = url_prefix("HTTP://Example.com/a/./b?x=1").unwrap();
        assert_eq!(
            (u.host.to_string(), u.path_prefix.as_str()),
            ("example.com".to_owned(), "/a/b")
        );
        assert_eq!(url_prefix("https://example.com").unwrap().path_prefix, "/");
        assert_eq!(
            url_prefix("http://[2001:db8::1]/x").unwrap().path_prefix,
            "/x"
        );
        for bad in [
            "example.com/a",
            "ftp://x.com/",
            "http://x.com:8080/",
            "http://u@x.com/",
            "http:///a",
            "http://%78.com/",
        ] {
            assert!(url_prefix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_and_choices() {
        assert!(action("deny")
            .unwrap_err()
            .to_string()
            .contains("`allow` or `block`"));
        assert_eq!(mode("report"), Ok(Mode::Report));
        assert!(ministry_name("_unknown").is_err());
        assert!(ministry_name("health").is_ok());
        assert!(rule_id("_default").is_err());
        assert!(rule_id("a b").is_err());
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert!(duration("10").is_err());
        assert!(socket("127.0.0.1:3128").is_ok());
        assert!(socket(":3128").is_err());
    }
}
