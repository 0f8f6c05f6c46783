//! Unit tests of the policy engine, one file per concern; fixture builders here.
//!
//! Every table test goes through [`decide`], which also asserts that the compiled matcher, the
//! naive explain walk and the host-level verdict agree, so each case doubles as an oracle check.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::host::{normalize_host, Host};
use super::model::{
    Action, Category, Ministry, Mode, Organization, PolicySet, Rule, Selectors, UrlPrefix,
};
use super::path::normalize_path;
use super::{MinistryId, Outcome, Policy};

mod activity;
mod order;
mod properties;
pub(crate) mod random;
mod selectors;

pub(crate) fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .to_utc()
}

pub(crate) fn host(s: &str) -> Host {
    normalize_host(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn boxed(list: &[&str]) -> Vec<Box<str>> {
    list.iter().map(|s| Box::from(*s)).collect()
}

pub(crate) fn domains(list: &[&str]) -> Selectors {
    Selectors {
        domains: boxed(list),
        ..Selectors::default()
    }
}

pub(crate) fn hosts(list: &[&str]) -> Selectors {
    Selectors {
        hosts: list.iter().map(|h| host(h)).collect(),
        ..Selectors::default()
    }
}

pub(crate) fn categories(list: &[&str]) -> Selectors {
    Selectors {
        categories: boxed(list),
        ..Selectors::default()
    }
}

/// `host/path-prefix` entries.
pub(crate) fn urls(list: &[&str]) -> Selectors {
    let parse = |u: &&str| {
        let (h, p) = u.split_at(u.find('/').unwrap_or(u.len()));
        UrlPrefix {
            host: host(h),
            path_prefix: normalize_path(if p.is_empty() { "/" } else { p }).unwrap(),
        }
    };
    Selectors {
        urls: list.iter().map(parse).collect(),
        ..Selectors::default()
    }
}

pub(crate) fn destinations(list: &[&str]) -> Selectors {
    Selectors {
        destinations: list.iter().map(|n| n.parse().unwrap()).collect(),
        ..Selectors::default()
    }
}

pub(crate) fn ports(mut sel: Selectors, ports: &[u16]) -> Selectors {
    sel.ports = ports.to_vec();
    sel
}

pub(crate) fn rule(stem: &str, id: &str, action: Action, sel: Selectors) -> Rule {
    Rule::new(stem, id, action, sel)
}

pub(crate) fn org(mandatory: Vec<Rule>, baseline: Vec<Rule>, default: Action) -> Organization {
    Organization {
        mandatory,
        baseline,
        default,
        contact: Some("it@gov.example".into()),
        timezone: Tz::UTC,
        file: "policies/_organization.yaml".into(),
    }
}

pub(crate) fn ministry(
    name: &str,
    mode: Mode,
    default: Option<Action>,
    rules: Vec<Rule>,
) -> Ministry {
    Ministry {
        name: name.into(),
        stem: name.into(),
        description: None,
        mode,
        default,
        contact: None,
        rules,
        file: format!("policies/{name}.yaml").into(),
    }
}

pub(crate) fn category(name: &str, list: &[&str]) -> Category {
    Category {
        name: name.into(),
        description: None,
        domains: boxed(list),
    }
}

pub(crate) fn set(
    organization: Organization,
    ministries: Vec<Ministry>,
    cats: Vec<Category>,
) -> PolicySet {
    PolicySet {
        organization,
        ministries,
        categories: cats,
    }
}

/// A request as `egressd test` writes it: `http://host[:port]/path` is plain HTTP,
/// `https://host[:port]/…` and `host:port` are CONNECT (no path).
pub(crate) fn request(target: &str) -> (Host, u16, Option<String>) {
    let (rest, default_port, http) = match target.split_once("://") {
        Some(("http", rest)) => (rest, 80, true),
        Some(("https", rest)) => (rest, 443, false),
        Some((scheme, _)) => panic!("scheme {scheme}"),
        None => (target, 443, false),
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (h, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') && (!h.contains(':') || h.ends_with(']')) => {
            (h, p.parse().unwrap())
        }
        _ => (authority, default_port),
    };
    (host(h), port, http.then(|| path.to_owned()))
}

/// Decides through every path (compiled, host-level + finish, naive walk), asserts they
/// agree, and returns the outcome and the deciding rule's name.
pub(crate) fn decide(
    p: &Policy,
    ministry: &str,
    target: &str,
    now: DateTime<Utc>,
) -> (Outcome, Arc<str>) {
    let m: MinistryId = p
        .ministry_id(ministry)
        .unwrap_or_else(|| panic!("{ministry}"));
    let (h, port, path) = request(target);
    let v = p.decide(m, &h, port, path.as_deref(), now);
    let hv = p.decide_host(m, &h, port, now);
    assert_eq!(
        hv.finish(p, path.as_deref()),
        v,
        "host verdict {ministry} {target}"
    );
    let e = p.explain(m, &h, port, path.as_deref(), now);
    assert_eq!(e.verdict, v, "explain {ministry} {target}: {e:?}");
    (v.outcome, p.rule(v.rule).name.clone())
}

/// Runs a table of `(ministry, target, outcome, rule name)` at `now`.
pub(crate) fn table(p: &Policy, now: DateTime<Utc>, cases: &[(&str, &str, Outcome, &str)]) {
    for (ministry, target, outcome, rule) in cases {
        let got = decide(p, ministry, target, now);
        assert_eq!((got.0, &*got.1), (*outcome, *rule), "{ministry} {target}");
    }
}
