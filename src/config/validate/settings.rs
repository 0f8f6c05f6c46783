//! `egressd.yaml` → [`Settings`]: listeners, folders, egress, DNS, timeouts, limits, audit and
//! PAC (identity is in [`super::identity`]). A bad section is reported and replaced by its
//! defaults, so the policies are still checked in the same run.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::files::resolve;
use super::identity::{identity, MinistryRef};
use super::listen::listen;
use super::report::{Report, Src};
use super::values;
use crate::config::error::Problem;
use crate::config::raw::{
    RawAudit, RawDns, RawEgress, RawLimits, RawPac, RawSettings, RawTimeouts, Text,
};
use crate::config::settings::*;
use crate::config::yaml::{self, Seg};
use crate::policy::host::Host;

/// The validated settings and what can only be checked once the policies are loaded.
pub struct SettingsOut {
    pub settings: Settings,
    /// Ministry names used by `identity:`, checked against the policy files.
    pub ministry_refs: Vec<MinistryRef>,
    /// `policies:` / `categories:` were written (a missing folder is then an error).
    pub policies_explicit: bool,
    pub categories_explicit: bool,
}

/// Validates `egressd.yaml` (`src`); relative paths are resolved against `base`. Files it
/// references (TLS material) are recorded in `files` for the reload watcher.
pub fn settings(
    report: &mut Report,
    src: &Src<'_>,
    base: &Path,
    files: &mut Vec<PathBuf>,
) -> SettingsOut {
    let raw = raw_settings(report, src);
    let mut refs = Vec::new();
    let dir = |raw: &Option<Text>, default: &str| resolve(base, raw.as_deref().unwrap_or(default));
    let section = |key: &str| src.child(&[Seg::key(key)]);
    let cache = raw.cache.max_entries.map(to_usize);
    let settings = Settings {
        policies_dir: dir(&raw.policies, "policies/"),
        categories_dir: dir(&raw.categories, "categories/"),
        tests_dir: dir(&raw.tests, "tests/"),
        listen: listen(report, &section("listen"), raw.listen, base, files),
        identity: identity(report, &section("identity"), raw.identity, base, &mut refs),
        egress: egress(report, &section("egress"), raw.egress),
        tunnel: Tunnel {
            allow_non_tls: raw.tunnel.allow_non_tls,
            splice: raw.tunnel.splice.unwrap_or(true),
        },
        dns: dns(report, &section("dns"), raw.dns),
        forwarding: Forwarding {
            x_forwarded_for: raw.forwarding.x_forwarded_for,
            fast_path: raw.forwarding.fast_path.unwrap_or(true),
        },
        timeouts: timeouts(report, &section("timeouts"), raw.timeouts),
        limits: limits(report, &section("limits"), raw.limits),
        cache: CacheSettings {
            max_entries: cache.unwrap_or(CacheSettings::default().max_entries),
        },
        audit: audit(raw.audit, base),
        pac: raw.pac.map(|p| pac(report, &section("pac"), p)),
    };
    SettingsOut {
        settings,
        ministry_refs: refs,
        policies_explicit: raw.policies.is_some(),
        categories_explicit: raw.categories.is_some(),
    }
}

/// The raw file; what is broken is reported and replaced by defaults.
fn raw_settings(report: &mut Report, src: &Src<'_>) -> RawSettings {
    match yaml::parse_value(src.doc) {
        Ok(value) => {
            let (raw, errors) = yaml::collect::<RawSettings>(src.doc, &[], &value);
            report.yaml(src, errors);
            raw.unwrap_or_default()
        }
        Err(e) => {
            report.yaml(src, vec![e]);
            RawSettings::default()
        }
    }
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Validates each entry of a list, reporting bad ones at `key[i]`.
pub(super) fn each<T>(
    report: &mut Report,
    src: &Src<'_>,
    key: &str,
    list: &[impl AsRef<str>],
    f: impl Fn(&str) -> Result<T, Problem>,
) -> Vec<T> {
    let mut out = Vec::with_capacity(list.len());
    for (i, entry) in list.iter().enumerate() {
        match f(entry.as_ref()) {
            Ok(v) => out.push(v),
            Err(p) => report.error(src, &[Seg::key(key), Seg::Index(i)], p),
        }
    }
    out
}

/// Validates an optional scalar, falling back to `default` when absent or bad.
pub(super) fn one<T>(
    report: &mut Report,
    src: &Src<'_>,
    key: &str,
    raw: Option<&str>,
    default: T,
    f: impl Fn(&str) -> Result<T, Problem>,
) -> T {
    match raw.map(f) {
        None => default,
        Some(Ok(v)) => v,
        Some(Err(p)) => {
            report.error(src, &[Seg::key(key)], p);
            default
        }
    }
}

fn egress(report: &mut Report, src: &Src<'_>, raw: RawEgress) -> Egress {
    let cidrs = raw.allow_private_cidrs.unwrap_or_default();
    let allow_private_cidrs = each(report, src, "allow_private_cidrs", &cidrs, |c| {
        values::cidr(c).map(|(net, _)| net)
    });
    let connect_ports = match raw.connect_ports {
        None => Egress::default().connect_ports,
        Some(ports) => ports
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                values::port(*p)
                    .map_err(|e| report.error(src, &[Seg::key("connect_ports"), Seg::Index(i)], e))
                    .ok()
            })
            .collect(),
    };
    Egress {
        allow_private_cidrs,
        connect_ports,
    }
}

/// `dns:` (`src` is its mapping): `static` names (not IPs) to one or more addresses, and the
/// `servers` to ask instead of the system's.
fn dns(report: &mut Report, dns: &Src<'_>, raw: RawDns) -> Dns {
    let servers = raw.servers.unwrap_or_default();
    let mut out = Dns {
        servers: each(report, dns, "servers", &servers, dns_server),
        ..Dns::default()
    };
    let src = &dns.child(&[Seg::key("static")]);
    for (name, addrs) in raw.static_hosts.0 {
        let key = [Seg::KeyNode(name.clone())];
        let host = match values::host(&name, "DNS name") {
            Ok(Host::Name(n)) => n,
            Ok(Host::Ip(_)) => {
                report.error(
                    src,
                    &key,
                    Problem::BadHost {
                        what: "DNS name",
                        value: name,
                        err: "an IP address needs no lookup".into(),
                        hint: String::new(),
                    },
                );
                continue;
            }
            Err(p) => {
                report.error(src, &key, p);
                continue;
            }
        };
        if addrs.0.is_empty() {
            report.error(
                src,
                &[Seg::key(&name)],
                Problem::Missing {
                    key: "address",
                    hint: ": give at least one",
                },
            );
        }
        out.static_hosts.insert(
            host.to_string(),
            each(report, src, &name, &addrs.0, values::ip),
        );
    }
    out
}

/// A `dns.servers` entry: `IP` (port 53) or `IP:PORT` (`[v6]:PORT`).
fn dns_server(raw: &str) -> Result<SocketAddr, Problem> {
    match values::ip(raw) {
        Ok(ip) => Ok(SocketAddr::new(ip, 53)),
        Err(_) => {
            let addr = values::socket(raw)?;
            values::port(i64::from(addr.port()))?;
            Ok(addr)
        }
    }
}

fn timeouts(report: &mut Report, src: &Src<'_>, raw: RawTimeouts) -> Timeouts {
    let d = Timeouts::default();
    // Zero would fail every request; only the shutdown drain may be skipped.
    let positive = |s: &str| {
        values::duration(s).and_then(|v| match v.is_zero() {
            true => Err(Problem::BadDuration {
                value: s.to_owned(),
                err: "must be greater than zero".into(),
            }),
            false => Ok(v),
        })
    };
    let mut t = |key, raw: Option<Text>, default: Duration| {
        one(report, src, key, raw.as_deref(), default, positive)
    };
    let idle = t("idle", raw.idle, d.idle);
    Timeouts {
        request_header: t("request_header", raw.request_header, d.request_header),
        connect: t("connect", raw.connect, d.connect),
        response_header: t("response_header", raw.response_header, d.response_header),
        idle,
        // Unset, a tunnel is idle like a keep-alive connection; set, it can be longer (long
        // polls, SSH over 443) without keeping idle browsers' connections open.
        tunnel_idle: t("tunnel_idle", raw.tunnel_idle, idle),
        shutdown_grace: one(
            report,
            src,
            "shutdown_grace",
            raw.shutdown_grace.as_deref(),
            d.shutdown_grace,
            values::duration,
        ),
    }
}

fn limits(report: &mut Report, src: &Src<'_>, raw: RawLimits) -> Limits {
    let d = Limits::default();
    let mut at_least = |key: &'static str, raw: Option<u64>, min: u64, default: usize| match raw {
        None => default,
        Some(v) if v >= min => to_usize(v),
        Some(value) => {
            report.error(src, &[Seg::key(key)], Problem::TooSmall { key, min, value });
            default
        }
    };
    Limits {
        max_connections: at_least("max_connections", raw.max_connections, 1, d.max_connections),
        max_connections_per_client: at_least(
            "max_connections_per_client",
            raw.max_connections_per_client,
            1,
            d.max_connections_per_client,
        ),
        // The request line alone needs room; below this every real browser request fails.
        max_header_bytes: at_least(
            "max_header_bytes",
            raw.max_header_bytes,
            1024,
            d.max_header_bytes,
        ),
        // `Host` alone is one; browsers send 10 to 20.
        max_headers: at_least("max_headers", raw.max_headers, 8, d.max_headers),
        // Shorter than this, ordinary URLs (with a query string) fail.
        max_request_line: at_least(
            "max_request_line",
            raw.max_request_line,
            256,
            d.max_request_line,
        ),
    }
}

fn audit(raw: RawAudit, base: &Path) -> Audit {
    Audit {
        file: raw.file.map(|f| resolve(base, &f)),
        keep_query: raw.keep_query,
    }
}

fn pac(report: &mut Report, src: &Src<'_>, raw: RawPac) -> Pac {
    Pac {
        proxies: each(
            report,
            src,
            "proxies",
            &raw.proxies.unwrap_or_default(),
            pac_proxy,
        ),
        direct_domains: each(
            report,
            src,
            "direct_domains",
            &raw.direct_domains.unwrap_or_default(),
            |d| values::domain(d).map(String::from),
        ),
        direct_cidrs: each(
            report,
            src,
            "direct_cidrs",
            &raw.direct_cidrs.unwrap_or_default(),
            |c| values::cidr(c).map(|(n, _)| n),
        ),
    }
}

/// A PAC `PROXY host:port` target, normalised.
fn pac_proxy(raw: &str) -> Result<String, Problem> {
    let bad = |err: &str| Problem::BadHost {
        what: "proxy",
        value: raw.to_owned(),
        err: err.to_owned(),
        hint: "; write HOST:PORT, e.g. `proxy.example.gov:3128`".to_owned(),
    };
    let (host, port) = raw.rsplit_once(':').ok_or_else(|| bad("missing port"))?;
    let port = port.parse::<i64>().map_err(|_| bad("invalid port"))?;
    let port = values::port(port)?;
    let host = values::host(host, "proxy")?;
    Ok(format!("{host}:{port}"))
}
