//! Validated `egressd.yaml`: what the rest of the program reads. Produced by
//! [`crate::config::load`]; every path is already resolved relative to the config file and
//! every value checked, so consumers never re-validate.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub listen: Listen,
    /// Folder of ministry files and `_organization.yaml`.
    pub policies_dir: PathBuf,
    pub categories_dir: PathBuf,
    /// What `egressd test` runs when given no files.
    pub tests_dir: PathBuf,
    pub identity: Identity,
    pub egress: Egress,
    pub tunnel: Tunnel,
    pub dns: Dns,
    pub forwarding: Forwarding,
    pub timeouts: Timeouts,
    pub limits: Limits,
    pub cache: CacheSettings,
    pub audit: Audit,
    pub pac: Option<Pac>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Listen {
    /// Plain proxy listeners (at least one).
    pub proxy: Vec<SocketAddr>,
    pub proxy_tls: Option<TlsListen>,
    /// Admin listener (`/metrics`, `/healthz`, …); default `127.0.0.1:9090`.
    pub admin: Option<SocketAddr>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TlsListen {
    pub address: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Identity {
    /// Source CIDR -> ministry name; the most specific CIDR wins.
    pub sources: Vec<(IpNet, String)>,
    /// Certificate name pattern (`*.x` or exact) -> ministry name, in file order.
    pub certificates: Vec<(String, String)>,
    pub credentials: Option<PathBuf>,
    /// The users of the `credentials` file, validated (every ministry exists).
    pub users: Vec<User>,
    pub allow_basic_over_plaintext: bool,
    /// Ministry for clients nothing identifies; `None` blocks them.
    pub default_ministry: Option<String>,
}

/// One `Proxy-Authorization` (Basic) user of `identity.credentials`.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    /// An argon2 or bcrypt PHC string (`$argon2id$…`, `$2b$…`).
    pub password_hash: String,
    pub ministry: String,
}

/// Hashes stay out of logs and panics.
impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("password_hash", &"<redacted>")
            .field("ministry", &self.ministry)
            .finish()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Egress {
    /// Otherwise refused ranges (private, loopback, …) that may be reached anyway.
    pub allow_private_cidrs: Vec<IpNet>,
    /// Ports CONNECT may open (default `[443]`).
    pub connect_ports: Vec<u16>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Tunnel {
    pub allow_non_tls: bool,
    /// Relay plain-listener tunnels with `splice(2)` (default); `false` copies through user
    /// space, as tunnels do anyway once the pipe quota is used up.
    pub splice: bool,
}

impl Default for Tunnel {
    fn default() -> Self {
        Tunnel {
            allow_non_tls: false,
            splice: true,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Dns {
    /// Normalised name -> addresses, answered without a lookup.
    pub static_hosts: HashMap<String, Vec<IpAddr>>,
    /// Name servers to ask instead of the system's (`/etc/resolv.conf`); empty: the system's.
    /// Read once at start (the resolver and its cache live for the process).
    pub servers: Vec<SocketAddr>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Forwarding {
    pub x_forwarded_for: bool,
    /// Plain GET/HEAD requests on egressd's own HTTP/1.1 path (`proxy::fast`); `false` serves
    /// every request through hyper. Read when a connection is accepted.
    pub fast_path: bool,
}

impl Default for Forwarding {
    fn default() -> Self {
        Forwarding {
            x_forwarded_for: false,
            fast_path: true,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Timeouts {
    pub request_header: Duration,
    pub connect: Duration,
    pub response_header: Duration,
    pub idle: Duration,
    /// An established CONNECT tunnel with no byte in either direction; `idle` when not set.
    pub tunnel_idle: Duration,
    pub shutdown_grace: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    pub max_connections: usize,
    pub max_connections_per_client: usize,
    /// Request line + header fields, in bytes (431).
    pub max_header_bytes: usize,
    /// Header fields in a request head, each repeated field counted (431).
    pub max_headers: usize,
    /// The request line (method, target, version), in bytes (414).
    pub max_request_line: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CacheSettings {
    pub max_entries: usize,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Audit {
    /// `None`: stdout.
    pub file: Option<PathBuf>,
    pub keep_query: bool,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Pac {
    pub proxies: Vec<String>,
    pub direct_domains: Vec<String>,
    pub direct_cidrs: Vec<IpNet>,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            request_header: Duration::from_secs(10),
            connect: Duration::from_secs(5),
            response_header: Duration::from_secs(30),
            idle: Duration::from_secs(60),
            tunnel_idle: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            max_connections_per_client: 512,
            max_header_bytes: 65_536,
            max_headers: 100,
            max_request_line: 8192,
        }
    }
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            max_entries: 100_000,
        }
    }
}

impl Default for Egress {
    fn default() -> Self {
        Egress {
            allow_private_cidrs: Vec::new(),
            connect_ports: vec![443],
        }
    }
}
