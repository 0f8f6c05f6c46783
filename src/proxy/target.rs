//! The request target decides where a request goes, never the `Host` header. This module turns
//! an absolute-form URI (`GET http://host:port/path`) or a CONNECT authority (`host:port`) into a
//! normalised [`Target`], refusing anything a proxy should not guess at (origin-form,
//! percent-encoded hosts, schemes other than `http`, missing CONNECT ports).

use http::uri::{Authority, Uri};
use http::HeaderValue;

use crate::policy::host::{normalize_host, Host, HostError};

/// Where a request goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub host: Host,
    pub port: u16,
}

impl Target {
    /// [`Target::host_header`] as a header value, built without formatting for a name on the
    /// default port (the common case).
    pub fn host_header_value(&self, default_port: u16) -> Option<HeaderValue> {
        match (&self.host, self.port == default_port) {
            (Host::Name(n), true) => HeaderValue::from_str(n).ok(),
            _ => HeaderValue::from_str(&self.host_header(default_port)).ok(),
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
    #[error("invalid host: {0}")]
    Host(#[from] HostError),
}

/// Target of an absolute-form request. Userinfo (`http://user@host/`) is ignored: the host after
/// `@` is the destination, and the request sent upstream is origin-form, so userinfo never leaves.
pub fn parse_absolute(uri: &Uri) -> Result<Target, TargetError> {
    let Some(authority) = uri.authority() else {
        return Err(TargetError::OriginForm);
    };
    match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("http") => {}
        Some(s) => return Err(TargetError::Scheme(s.to_owned())),
        None => return Err(TargetError::OriginForm),
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
    let port = match (authority.port(), default_port) {
        (Some(p), _) => p.as_str().parse::<u16>().map_err(|_| TargetError::Port)?,
        (None, Some(d)) => d,
        (None, None) => return Err(TargetError::ConnectForm),
    };
    if port == 0 {
        return Err(TargetError::Port);
    }
    let host = normalize_host(authority.host())?;
    Ok(Target { host, port })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let t = abs("http://www.google.com@www.facebook.com/").unwrap();
        assert_eq!(t.host, Host::Name("www.facebook.com".into()));
        assert_eq!(t.host_header(80), "www.facebook.com");
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
