//! `identity:` (source CIDRs, certificate name patterns, the credentials file, the default
//! ministry) and the check that every ministry it names has a policy file.

use std::collections::HashMap;
use std::path::Path;

use ipnet::IpNet;

use super::files::{resolve, Files};
use super::report::{Report, Src};
use super::values;
use crate::config::error::{did_you_mean, Problem};
use crate::config::raw::{Pairs, RawIdentity, RawUser, Text};
use crate::config::settings::{Identity, User};
use crate::config::yaml::{self, Seg};
use crate::policy::host::Host;
use crate::policy::model::PolicySet;

/// A place that names a ministry, checked once every policy file is loaded.
#[derive(Clone, Debug)]
pub struct MinistryRef {
    /// Path from the root of the file that holds the reference.
    pub path: Vec<Seg>,
    pub name: String,
}

/// Validates `identity:` (`src` is that node).
pub fn identity(
    report: &mut Report,
    src: &Src<'_>,
    raw: RawIdentity,
    base: &Path,
    refs: &mut Vec<MinistryRef>,
) -> Identity {
    let mut refer = |key: &str, sub: Option<&str>, name: &str| {
        let mut path = src.base.clone();
        path.push(Seg::key(key));
        path.extend(sub.map(Seg::key));
        refs.push(MinistryRef {
            path,
            name: name.to_owned(),
        });
    };
    if let Some(d) = &raw.default_ministry {
        refer("default_ministry", None, d);
    }
    for (cidr, ministry) in &raw.sources.0 {
        refer("sources", Some(cidr), ministry);
    }
    for (pattern, ministry) in &raw.certificates.0 {
        refer("certificates", Some(pattern), ministry);
    }
    Identity {
        sources: sources(report, &src.child(&[Seg::key("sources")]), &raw.sources),
        certificates: certificates(
            report,
            &src.child(&[Seg::key("certificates")]),
            &raw.certificates,
        ),
        credentials: raw.credentials.map(|c| resolve(base, &c)),
        users: Vec::new(),
        allow_basic_over_plaintext: raw.allow_basic_over_plaintext,
        default_ministry: raw.default_ministry.map(String::from),
    }
}

/// Source CIDRs; two spellings of one network are an error (which ministry would win?).
fn sources(report: &mut Report, src: &Src<'_>, raw: &Pairs<Text>) -> Vec<(IpNet, String)> {
    let mut out: Vec<(IpNet, String)> = Vec::new();
    let mut first: HashMap<IpNet, &str> = HashMap::new();
    for (cidr, ministry) in &raw.0 {
        let at = [Seg::KeyNode(cidr.clone())];
        match values::cidr(cidr) {
            Err(p) => report.error(src, &at, p),
            Ok((net, _)) if first.contains_key(&net) => {
                let first_line = src.pos(&[Seg::KeyNode(first[&net].to_owned())]).line;
                report.error(
                    src,
                    &at,
                    Problem::Duplicate {
                        what: "source network",
                        value: cidr.clone(),
                        first_line,
                    },
                );
            }
            Ok((net, host_bits)) => {
                if host_bits {
                    report.warn(
                        src,
                        &at,
                        Problem::HostBitsSet {
                            value: cidr.clone(),
                            net: net.to_string(),
                        },
                    );
                }
                first.insert(net, cidr);
                out.push((net, ministry.to_string()));
            }
        }
    }
    out
}

/// Certificate name patterns: an exact DNS name or `*.suffix`, lower-cased.
fn certificates(report: &mut Report, src: &Src<'_>, raw: &Pairs<Text>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (pattern, ministry) in &raw.0 {
        let (wild, name) = match pattern.strip_prefix("*.") {
            Some(rest) => ("*.", rest),
            None => ("", pattern.as_str()),
        };
        match values::host(name, "certificate name") {
            Ok(Host::Name(n)) => out.push((format!("{wild}{n}"), ministry.to_string())),
            Ok(Host::Ip(_)) => report.error(
                src,
                &[Seg::KeyNode(pattern.clone())],
                Problem::BadHost {
                    what: "certificate name",
                    value: pattern.clone(),
                    err: "certificates are matched by DNS name (SAN, else CN)".into(),
                    hint: String::new(),
                },
            ),
            Err(p) => report.error(src, &[Seg::KeyNode(pattern.clone())], p),
        }
    }
    out
}

/// Reads and validates the credentials file: user name → `{password_hash, ministry}`.
pub fn credentials(
    report: &mut Report,
    files: &mut Files,
    path: &Path,
    refs: &mut Vec<MinistryRef>,
) -> Option<(String, Vec<User>)> {
    let text = files.read(report, path, "credentials file")?;
    let src = Src::whole(path, &text);
    let value = yaml::parse_value(src.doc)
        .map_err(|e| report.yaml(&src, vec![e]))
        .ok()?;
    let (users, errors) = yaml::collect::<Pairs<yaml::Value>>(src.doc, &[], &value);
    report.yaml(&src, errors);
    let users = users?.0.into_iter();
    let out = users.filter_map(|(name, value)| user(report, &src, name, &value, refs));
    let out = out.collect();
    Some((text, out))
}

/// PHC string prefixes of the hash algorithms the proxy verifies.
const HASH_PREFIXES: [&str; 6] = [
    "$argon2id$",
    "$argon2i$",
    "$argon2d$",
    "$2a$",
    "$2b$",
    "$2y$",
];

/// One user of the credentials file; records its ministry in `refs`.
fn user(
    report: &mut Report,
    src: &Src<'_>,
    name: String,
    value: &yaml::Value,
    refs: &mut Vec<MinistryRef>,
) -> Option<User> {
    let src = src.child(&[Seg::key(&name)]);
    let (raw, errors) = yaml::collect::<RawUser>(src.doc, &src.base, value);
    report.yaml(&src, errors);
    let raw = raw?;
    let missing = |key| Problem::Missing {
        key,
        hint: " for this user",
    };
    // The ministry first: it is checked against the policies even when the hash is bad.
    let ministry = raw.ministry.map(String::from);
    match &ministry {
        Some(m) => {
            let path = vec![Seg::key(&name), Seg::key("ministry")];
            refs.push(MinistryRef {
                path,
                name: m.clone(),
            });
        }
        None => report.error(&src, &[], missing("ministry")),
    }
    let hash = match raw.password_hash {
        None => return report_none(report, &src, &[], missing("password_hash")),
        Some(h) if HASH_PREFIXES.iter().any(|p| h.starts_with(p)) => h,
        Some(_) => {
            let p = Problem::BadChoice {
                what: "password_hash",
                value: "(hidden)".into(),
                expected: "an argon2 or bcrypt PHC string (`$argon2id$…`, `$2b$…`)",
            };
            return report_none(report, &src, &[Seg::key("password_hash")], p);
        }
    };
    Some(User {
        name,
        password_hash: hash.into(),
        ministry: ministry?,
    })
}

fn report_none<T>(report: &mut Report, src: &Src<'_>, rel: &[Seg], p: Problem) -> Option<T> {
    report.error(src, rel, p);
    None
}

/// Reports every reference in `refs` (made in `src`'s file) to a ministry no file defines.
pub fn check_ministries(
    report: &mut Report,
    src: &Src<'_>,
    refs: &[MinistryRef],
    policy: &PolicySet,
) {
    let known: Vec<&str> = policy.ministries.iter().map(|m| &*m.name).collect();
    for r in refs.iter().filter(|r| !known.contains(&r.name.as_str())) {
        let hint = did_you_mean(&r.name, known.iter().copied());
        report.error(
            src,
            &r.path,
            Problem::UnknownMinistry {
                name: r.name.clone(),
                hint,
            },
        );
    }
}
