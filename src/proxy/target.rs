//! The request target decides where a request goes, never the `Host` header. This module turns
//! an absolute-form URI (`GET http://host:port/path`) or a CONNECT authority (`host:port`) into a
//! normalised [`Target`], refusing anything a proxy should not guess at (origin-form,
//! percent-encoded hosts, schemes other than `http`, userinfo, ports that are not a number in
//! 1..=65535, missing CONNECT ports).

use std::net::IpAddr;

use http::uri::{Authority, Uri};
use http::HeaderValue;

use crate::policy::host::{ipv4_bytes, ipv4_text, normalize_host, Host, HostError};

/// Where a request goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub host: Host,
    pub port: u16,
}

impl Target {
    /// [`Target::host_header`] as a header value, built without `format!` (one per request).
    pub fn host_header_value(&self, default_port: u16) -> Option<HeaderValue> {
        let mut text = String::with_capacity(64);
        match &self.host {
            Host::Name(n) if self.port == default_port => return HeaderValue::from_str(n).ok(),
            Host::Name(n) => text.push_str(n),
            Host::Ip(IpAddr::V4(ip)) => text.push_str(ipv4_text(*ip, &mut [0; 15])),
            Host::Ip(IpAddr::V6(_)) => {
                return HeaderValue::from_str(&self.host_header(default_port)).ok()
            }
        }
        if self.port != default_port {
            text.push(':');
            text.push_str(itoa::Buffer::new().format(self.port));
        }
        HeaderValue::from_maybe_shared(bytes::Bytes::from(text.into_bytes())).ok()
    }

    /// [`Target::host_header`] appended to a head being written.
    pub fn write_host_header(&self, default_port: u16, out: &mut Vec<u8>) {
        match &self.host {
            Host::Name(n) => out.extend_from_slice(n.as_bytes()),
            Host::Ip(IpAddr::V4(ip)) => out.extend_from_slice(ipv4_bytes(*ip, &mut [0; 15])),
            Host::Ip(IpAddr::V6(_)) => {
                return out.extend_from_slice(self.host_header(default_port).as_bytes())
            }
        }
        if self.port != default_port {
            out.push(b':');
            out.extend_from_slice(itoa::Buffer::new().format(self.port).as_bytes());
        }
    }

    /// `host[:port]` for the upstream `Host` header, port omitted when it is the default.
    pub fn host_header(&self, default_port: u16) -> String {
        if self.port == default_port {
            self.host.to_string()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("origin-form request: egressd is a forward proxy; send absolute-form (`GET http://host/ HTTP/1.1`) or CONNECT")]
    OriginForm,
    #[error("scheme `{0}` is not proxied in plain requests; use CONNECT for https")]
    Scheme(String),
    #[error("CONNECT target must be host:port")]
    ConnectForm,
    #[error("invalid port")]
    Port,
    #[error("userinfo (`user@`) in the request target is refused (RFC 9110 §4.2.4)")]
    Userinfo,
    #[error("invalid host: {0}")]
    Host(#[from] HostError),
}

/// Target of an absolute-form request. Userinfo (`http://user@host/`) is refused: RFC 9110
/// §4.2.4 says to treat it as an error, since it only serves to make one host look like another
/// (`http://allowed.example@blocked.example/`); real clients never send it to a proxy.
pub fn parse_absolute(uri: &Uri) -> Result<Target, TargetError> {
    let Some(authority) = uri.authority() else {
        return Err(TargetError::OriginForm);
    };
    match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("http") => {}
        Some(s) => return Err(TargetError::Scheme(s.to_owned())),
        None => return Err(TargetError::OriginForm),
    }
    if authority.as_str().as_bytes().contains(&b'@') {
        return Err(TargetError::Userinfo);
    }
    target_of(authority, Some(80))
}

/// Target of a CONNECT request (authority-form; the port is required).
pub fn parse_connect(uri: &Uri) -> Result<Target, TargetError> {
    if uri.scheme().is_some() || uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
        return Err(TargetError::ConnectForm);
    }
    let authority = uri.authority().ok_or(TargetError::ConnectForm)?;
    if authority.as_str().contains('@') {
        return Err(TargetError::ConnectForm);
    }
    target_of(authority, None)
}

/// A `host[:port]` or URL typed on the command line (`egressd explain`), with the kind it implies:
/// `https://…` and bare `host:443` are tunnels, `http://…` and bare hosts are plain requests.
pub fn parse_cli(input: &str) -> Result<(Target, Option<String>, bool), TargetError> {
    if let Some(rest) = input.strip_prefix("https://") {
        let uri: Uri = format!("http://{rest}")
            .parse()
            .map_err(|_| TargetError::ConnectForm)?;
        let authority = uri.authority().ok_or(TargetError::ConnectForm)?;
        return Ok((target_of(authority, Some(443))?, None, true));
    }
    if input.contains("://") {
        let uri: Uri = input.parse().map_err(|_| TargetError::OriginForm)?;
        let t = parse_absolute(&uri)?;
        let path = uri.path_and_query().map(|p| p.as_str().to_owned());
        return Ok((t, path.or(Some("/".into())), false));
    }
    let authority: Authority = input.parse().map_err(|_| TargetError::ConnectForm)?;
    let t = target_of(&authority, Some(80))?;
    let tunnel = t.port == 443;
    Ok((t, if tunnel { None } else { Some("/".into()) }, tunnel))
}

fn target_of(authority: &Authority, default_port: Option<u16>) -> Result<Target, TargetError> {
    let port = match (written_port(authority)?, default_port) {
        (Some(p), _) => p,
        (None, Some(d)) => d,
        (None, None) => return Err(TargetError::ConnectForm),
    };
    let host = normalize_host(authority.host())?;
    Ok(Target { host, port })
}

/// The port written after the host: `None` when there is none or it is empty (`host:` means the
/// scheme's default, RFC 3986 §3.2.3), an error unless it is digits naming 1..=65535.
/// `Authority::port` cannot be used: it reads `host:99999` as "no port", which would send the
/// request to the default port instead of refusing it.
fn written_port(authority: &Authority) -> Result<Option<u16>, TargetError> {
    // Byte scans: `str` pattern searches cost more than the rest of the target's parsing.
    let s = authority.as_str().as_bytes();
    let Some(colon) = s.iter().rposition(|&b| b == b':') else {
        return Ok(None);
    };
    let digits = &s[colon + 1..];
    if s[colon..].iter().any(|&b| b == b']' || b == b'@') {
        // The last colon is inside an IPv6 literal or the userinfo: no port written.
        return Ok(None);
    }
    if digits.is_empty() {
        return Ok(None);
    }
    let mut port = 0u32;
    for &d in digits {
        if !d.is_ascii_digit() {
            return Err(TargetError::Port);
        }
        port = port * 10 + u32::from(d - b'0');
        if port > u32::from(u16::MAX) {
            return Err(TargetError::Port);
        }
    }
    match u16::try_from(port) {
        Ok(0) | Err(_) => Err(TargetError::Port),
        Ok(p) => Ok(Some(p)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header value equals the formatted `host_header` for every kind of host and port.
    #[test]
    fn host_header_value_equals_host_header() {
        for (host, port) in [
            ("example.com", 80),
            ("example.com", 8080),
            ("127.0.0.1", 80),
            ("10.200.3.4", 18080),
            ("[2001:db8::1]", 80),
            ("[2001:db8::1]", 65535),
            ("xn--bcher-kva.example", 1),
        ] {
            let t = Target {
                host: normalize_host(host).unwrap(),
                port,
            };
            let v = t.host_header_value(80).unwrap();
            assert_eq!(v.to_str().unwrap(), t.host_header(80), "{host}:{port}");
        }
    }

    fn abs(s: &str) -> Result<Target, TargetError> {
        parse_absolute(&s.parse::<Uri>().unwrap())
    }

    #[test]
    fn absolute_form() {
        let t = abs("http://WWW.Example.COM./a?b").unwrap();
        assert_eq!(t.host, Host::Name("www.example.com".into()));
        assert_eq!(t.port, 80);
        assert_eq!(abs("http://example.com:8080/").unwrap().port, 8080);
        assert_eq!(
            abs("http://[::1]:81/").unwrap().host,
            Host::Ip("::1".parse().unwrap())
        );
        assert_eq!(abs("http://example.com:/").unwrap().port, 80);
        assert_eq!(abs("http://example.com:065535/").unwrap().port, 65535);
    }

    #[test]
    fn refused_targets() {
        assert_eq!(
            parse_absolute(&"/index.html".parse().unwrap()),
            Err(TargetError::OriginForm)
        );
        assert!(matches!(
            abs("https://example.com/"),
            Err(TargetError::Scheme(_))
        ));
        assert!(matches!(
            abs("ftp://example.com/"),
            Err(TargetError::Scheme(_))
        ));
        // `http://%66acebook.com/` never gets here: the http crate refuses `%` in an authority.
        assert!("http://%66acebook.com/".parse::<Uri>().is_err());
        assert_eq!(abs("http://example.com:0/"), Err(TargetError::Port));
        // `Authority::port` reads an out-of-range port as none: it must not become port 80.
        for bad in [
            "http://example.com:99999/",
            "http://example.com:65536/",
            "http://[::1]:70000/",
        ] {
            assert_eq!(abs(bad), Err(TargetError::Port), "{bad}");
        }
        assert_eq!(
            abs("http://www.google.com@www.facebook.com/"),
            Err(TargetError::Userinfo)
        );
        assert_eq!(
            abs("http://user:pw@example.com/"),
            Err(TargetError::Userinfo)
        );
    }

    #[test]
    fn connect_form() {
        let c = |s: &str| parse_connect(&s.parse::<Uri>().unwrap());
        assert_eq!(c("example.com:443").unwrap().port, 443);
        assert_eq!(
            c("[2001:db8::1]:443").unwrap().host,
            Host::Ip("2001:db8::1".parse().unwrap())
        );
        assert_eq!(c("example.com"), Err(TargetError::ConnectForm));
        assert_eq!(c("example.com:"), Err(TargetError::ConnectForm));
        assert_eq!(c("example.com:99999"), Err(TargetError::Port));
        assert_eq!(c("[::1]:0"), Err(TargetError::Port));
        assert!(c("user@example.com:443").is_err());
    }

    #[test]
    fn cli_forms() {
        let (t, p, tunnel) = parse_cli("https://twitter.com/foodland").unwrap();
        assert_eq!((t.port, p, tunnel), (443, None, true));
        let (t, p, tunnel) = parse_cli("http://youtube.com/watch?v=1").unwrap();
        assert_eq!(
            (t.port, p.as_deref(), tunnel),
            (80, Some("/watch?v=1"), false)
        );
        let (t, _, tunnel) = parse_cli("example.com:443").unwrap();
        assert_eq!((t.port, tunnel), (443, true));
    }
}
