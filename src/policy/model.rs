//! The validated policy model: what `config` produces after every file has been parsed and
//! checked, and what [`crate::policy::Policy::compile`] turns into matchers.
//!
//! Everything here is already normalised (hosts in canonical form, categories known to exist,
//! time zones resolved), so compiling cannot fail and matching never re-validates.

use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use ipnet::IpNet;

use super::host::Host;

/// What a rule or a default does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Allow,
    Block,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Block => "block",
        }
    }
}

/// A ministry's enforcement mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    #[default]
    Enforce,
    /// Would-block decisions are logged and counted, then allowed (mandatory rules excepted).
    Report,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Report => "report",
        }
    }
}

/// Where a rule was written, for `egressd explain` and error messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The file as the user named it (relative to the working directory or absolute).
    pub file: Arc<str>,
    /// 1-based line of the rule's first key; 0 when unknown (a very long file written in flow
    /// style, see `config::locate_rule`).
    pub line: u32,
}

/// `urls:` entry: an exact host plus a normalised path prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlPrefix {
    pub host: Host,
    /// Normalised path prefix, always starting with `/`. `/` matches every path of the host.
    pub path_prefix: String,
}

/// The selectors of a rule; a rule matches when any non-empty selector matches
/// (and the port is in `ports`, when `ports` is not empty).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selectors {
    /// Normalised domain names; each matches itself and every subdomain.
    pub domains: Vec<Box<str>>,
    /// Exact normalised hosts (names or IP literals).
    pub hosts: Vec<Host>,
    /// Names of categories that exist in [`PolicySet::categories`].
    pub categories: Vec<Box<str>>,
    pub urls: Vec<UrlPrefix>,
    pub destinations: Vec<IpNet>,
    /// Restriction to these destination ports; empty means any port.
    pub ports: Vec<u16>,
}

impl Selectors {
    /// True when the rule names no host, category, URL or destination, only (maybe) ports:
    /// such a rule applies to every host on its ports.
    pub fn is_host_wildcard(&self) -> bool {
        self.domains.is_empty()
            && self.hosts.is_empty()
            && self.categories.is_empty()
            && self.urls.is_empty()
            && self.destinations.is_empty()
    }
}

/// Weekly windows in a time zone. `start_minute..end_minute` in minutes after midnight; an end
/// at or before the start crosses midnight and belongs to the day it starts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// Monday first, as `chrono::Weekday::num_days_from_monday`.
    pub days: [bool; 7],
    pub start_minute: u16,
    pub end_minute: u16,
    pub timezone: Tz,
}

/// When a rule is active. A rule with neither part is always active.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Activity {
    /// The instant from which the rule no longer matches (exclusive end).
    pub expires: Option<DateTime<Utc>>,
    pub schedule: Option<Schedule>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// The id as written in the file.
    pub id: Box<str>,
    /// `FILE-STEM/ID`, the name used in logs, metrics and tests.
    pub name: Arc<str>,
    pub action: Action,
    pub selectors: Selectors,
    pub reason: Option<Arc<str>>,
    pub ticket: Option<Arc<str>>,
    pub activity: Activity,
    pub origin: Origin,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ministry {
    /// The `ministry:` value, unique across files.
    pub name: Arc<str>,
    /// The file stem, used in rule names (`stem/id`, `stem/_default`).
    pub stem: Arc<str>,
    pub description: Option<String>,
    pub mode: Mode,
    /// `None` falls back to the organization's default.
    pub default: Option<Action>,
    pub contact: Option<Arc<str>>,
    pub rules: Vec<Rule>,
    pub file: Arc<str>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Organization {
    pub mandatory: Vec<Rule>,
    pub baseline: Vec<Rule>,
    pub default: Action,
    pub contact: Option<Arc<str>>,
    pub timezone: Tz,
    pub file: Arc<str>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Category {
    pub name: Box<str>,
    pub description: Option<String>,
    /// Normalised domains (each with its subdomains).
    pub domains: Vec<Box<str>>,
}

/// Everything the policy engine needs, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicySet {
    pub organization: Organization,
    pub ministries: Vec<Ministry>,
    pub categories: Vec<Category>,
}

/// A convenience for tests and tools: an always-active rule.
impl Rule {
    pub fn new(stem: &str, id: &str, action: Action, selectors: Selectors) -> Rule {
        Rule {
            id: id.into(),
            name: format!("{stem}/{id}").into(),
            action,
            selectors,
            reason: None,
            ticket: None,
            activity: Activity::default(),
            origin: Origin {
                file: Arc::from(format!("{stem}.yaml")),
                line: 0,
            },
        }
    }
}

/// The IPv4 address behind a NAT64 address of the well-known prefix `64:ff9b::/96`
/// (RFC 6052): a NAT64 gateway delivers it there, so `destinations:` judge such an address by
/// both itself and the IPv4 it embeds (the egress guard does the same).
pub fn nat64_target(ip: IpAddr) -> Option<IpAddr> {
    match ip {
        IpAddr::V6(v6) if v6.to_bits() >> 32 == 0x0064_ff9b_u128 << 64 => Some(IpAddr::V4(
            std::net::Ipv4Addr::from_bits(v6.to_bits() as u32),
        )),
        _ => None,
    }
}

/// Canonical IP used in `destinations:` tables (IPv4-mapped IPv6 unwrapped).
pub fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96)
                .map(|n| n.trunc())
                .unwrap_or(net),
            None => net.trunc(),
        },
        other => other.trunc(),
    }
}
