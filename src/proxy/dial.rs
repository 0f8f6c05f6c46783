//! Resolve once, check, connect to the checked address.
//!
//! A destination name is resolved exactly once per request ([`Resolver`]: `dns.static` first,
//! then hickory's caching resolver); every address is put through the egress guard; then the
//! connection goes to one of those checked addresses, never to the name again, so a DNS answer
//! that changes between check and connect (rebinding) cannot reach a refused range.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;
use ipnet::IpNet;
use tokio::net::TcpStream;

use super::guard;
use super::respond::ErrorType;
use crate::policy::host::{canonical_ip, Host};

/// The addresses of a destination. Most have one or two: held inline, so an address target
/// (and a connection's remembered route) costs no allocation per request.
pub type Addrs = smallvec::SmallVec<[IpAddr; 2]>;

/// Why a destination could not be reached. Each maps to one RFC 9209 error type.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("DNS lookup of {0} timed out")]
    DnsTimeout(String),
    #[error("DNS lookup of {0} failed: {1}")]
    Dns(String, String),
    #[error("destination address {0} is prohibited")]
    Prohibited(IpAddr),
    #[error("connection to {0} refused")]
    Refused(SocketAddr),
    #[error("connection to {0} timed out")]
    Timeout(SocketAddr),
    #[error("{0} is unreachable: {1}")]
    Unreachable(SocketAddr, io::Error),
    #[error("connection to {0} failed: {1}")]
    Io(SocketAddr, io::Error),
}

impl DialError {
    pub fn error_type(&self) -> ErrorType {
        match self {
            DialError::DnsTimeout(_) => ErrorType::DnsTimeout,
            DialError::Dns(..) => ErrorType::DnsError,
            DialError::Prohibited(_) => ErrorType::DestinationIpProhibited,
            DialError::Refused(_) => ErrorType::ConnectionRefused,
            DialError::Timeout(_) => ErrorType::ConnectionTimeout,
            DialError::Unreachable(..) => ErrorType::DestinationIpUnroutable,
            DialError::Io(..) => ErrorType::ConnectionTerminated,
        }
    }
}

/// The process-wide resolver. Lookups are cached by hickory (TTL-respecting); `dns.static` and
/// the egress settings come from the current snapshot with every call, so they reload.
pub struct Resolver {
    system: Option<TokioResolver>,
}

impl Resolver {
    /// `dns.servers` when given (asked over UDP, TCP for truncated answers), otherwise the
    /// system configuration ([`Resolver::from_system`]).
    pub fn new(servers: &[SocketAddr]) -> Resolver {
        if servers.is_empty() {
            return Self::from_system();
        }
        let name_servers = servers
            .iter()
            .map(|a| {
                let mut udp = ConnectionConfig::udp();
                udp.port = a.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = a.port();
                NameServerConfig::new(a.ip(), true, vec![udp, tcp])
            })
            .collect();
        let config = ResolverConfig::from_name_servers(name_servers);
        let built = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
        match built.build() {
            Ok(r) => Resolver { system: Some(r) },
            Err(e) => {
                tracing::warn!(error = %e, "dns.servers unusable; only dns.static names resolve");
                Resolver { system: None }
            }
        }
    }

    /// Reads the system configuration (`/etc/resolv.conf`, `/etc/hosts`). When that fails the
    /// resolver answers from `dns.static` only, and every other name is a `dns_error`: failing
    /// closed beats falling back to some public resolver.
    pub fn from_system() -> Resolver {
        let system = match TokioResolver::builder_tokio().and_then(|b| b.build()) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(error = %e, "no system DNS configuration; only dns.static names resolve");
                None
            }
        };
        Resolver { system }
    }

    /// Answers from `dns.static` only; every other name is a `dns_error`. The fuzzer's request
    /// path uses it so that no input can make egressd send a query.
    pub fn static_only() -> Resolver {
        Resolver { system: None }
    }

    /// Addresses of `host`. IP literals are returned as they are; names under `.invalid` fail
    /// without a lookup (RFC 6761).
    pub async fn resolve(
        &self,
        host: &Host,
        statics: &HashMap<String, Vec<IpAddr>>,
        timeout: Duration,
    ) -> Result<Addrs, DialError> {
        let name = match host {
            Host::Ip(ip) => return Ok(Addrs::from_slice(&[*ip])),
            Host::Name(n) => n.as_ref(),
        };
        if name == "invalid" || name.ends_with(".invalid") {
            return Err(DialError::Dns(
                name.into(),
                "reserved name (RFC 6761)".into(),
            ));
        }
        if let Some(addrs) = statics.get(name) {
            return Ok(Addrs::from_slice(addrs));
        }
        let Some(system) = &self.system else {
            return Err(DialError::Dns(name.into(), "no resolver configured".into()));
        };
        // A trailing dot keeps the system search domains out of a proxy's lookups.
        let fqdn = format!("{name}.");
        match tokio::time::timeout(timeout, system.lookup_ip(fqdn.as_str())).await {
            Err(_) => Err(DialError::DnsTimeout(name.into())),
            Ok(Err(e)) => Err(DialError::Dns(name.into(), e.to_string())),
            Ok(Ok(lookup)) => {
                let addrs: Addrs = lookup.iter().map(canonical_ip).collect();
                if addrs.is_empty() {
                    Err(DialError::Dns(name.into(), "no addresses".into()))
                } else {
                    Ok(addrs)
                }
            }
        }
    }
}

/// Refuses the whole answer when any address is in a prohibited range: a name that mixes public
/// and internal addresses is a rebinding attempt or a misconfiguration, and either way failing
/// closed is right. Open ranges with `egress.allow_private_cidrs`.
pub fn check_guard(addrs: &[IpAddr], allowed: &[IpNet]) -> Result<(), DialError> {
    match addrs.iter().find(|ip| guard::is_prohibited(**ip, allowed)) {
        Some(ip) => Err(DialError::Prohibited(*ip)),
        None => Ok(()),
    }
}

/// TCP connect with a timeout; `TCP_NODELAY` on, since a proxy relays already-formed messages.
pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, DialError> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => Err(DialError::Timeout(addr)),
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        Ok(Err(e)) => Err(classify(addr, e)),
    }
}

/// Tries the checked addresses in order until one answers (a name with an unreachable first
/// address, such as an AAAA record without an IPv6 route, still works); the last error is
/// returned. `Ok` has the address that answered.
pub async fn connect_any(
    addrs: &[IpAddr],
    port: u16,
    timeout: Duration,
) -> Result<(TcpStream, SocketAddr), DialError> {
    let mut last = None;
    for ip in addrs {
        let addr = SocketAddr::new(*ip, port);
        match connect(addr, timeout).await {
            Ok(s) => return Ok((s, addr)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| DialError::Dns(String::new(), "no addresses".into())))
}

fn classify(addr: SocketAddr, e: io::Error) -> DialError {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => DialError::Refused(addr),
        io::ErrorKind::TimedOut => DialError::Timeout(addr),
        io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => {
            DialError::Unreachable(addr, e)
        }
        _ => DialError::Io(addr, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn static_and_reserved_names() {
        let r = Resolver { system: None };
        let mut statics = HashMap::new();
        statics.insert(
            "intranet.example".to_string(),
            vec!["10.0.0.5".parse().unwrap()],
        );
        let t = Duration::from_secs(1);
        let got = r
            .resolve(&Host::Name("intranet.example".into()), &statics, t)
            .await
            .unwrap();
        assert_eq!(got.as_slice(), ["10.0.0.5".parse::<IpAddr>().unwrap()]);
        let e = r
            .resolve(&Host::Name("x.invalid".into()), &statics, t)
            .await
            .unwrap_err();
        assert_eq!(e.error_type(), ErrorType::DnsError);
        let ip = Host::Ip("192.0.2.1".parse().unwrap());
        assert_eq!(r.resolve(&ip, &statics, t).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn refused_connection_is_classified() {
        // Bind then drop: the port is very likely closed right after.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let e = connect(addr, Duration::from_secs(2)).await.unwrap_err();
        assert_eq!(e.error_type(), ErrorType::ConnectionRefused);
    }

    #[test]
    fn guard_refuses_mixed_answers() {
        let addrs: Vec<IpAddr> = vec![
            "93.184.216.34".parse().unwrap(),
            "10.0.0.1".parse().unwrap(),
        ];
        assert!(matches!(
            check_guard(&addrs, &[]),
            Err(DialError::Prohibited(_))
        ));
        assert!(check_guard(&addrs[..1], &[]).is_ok());
    }
}
