//! Inputs shared by the engine benches: synthetic policy sets of a given size, built outside
//! every timed loop.
// Each bench uses part of this module.
#![allow(dead_code)]

use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use egressd::policy::host::{normalize_host, Host};
use egressd::policy::model::{
    Action, Category, Ministry, Mode, Organization, PolicySet, Rule, Schedule, Selectors,
};

/// A weekday noon, inside the office-hours schedules of [`policy_set`].
pub fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-05-01T12:00:00Z")
        .unwrap()
        .to_utc()
}

pub fn host(s: &str) -> Host {
    normalize_host(s).unwrap()
}

fn domains(list: &[String]) -> Selectors {
    Selectors {
        domains: list.iter().map(|d| d.as_str().into()).collect(),
        ..Selectors::default()
    }
}

/// The `i`-th domain of the `social` category (`s{i}.example{i % 100}.com`): distinct names
/// under 100 shared parents, as real block lists share registrable domains.
pub fn category_domain(i: usize) -> String {
    format!("s{i}.example{}.com", i % 100)
}

/// `n` ministry rules over distinct domains (every 7th also with a host, every 50th scheduled),
/// behind a few organization rules, the last baseline rule using the `social` category of
/// `category_size` domains.
pub fn policy_set(n: usize, category_size: usize) -> PolicySet {
    let action = |i: usize| {
        if i % 2 == 0 {
            Action::Allow
        } else {
            Action::Block
        }
    };
    let rules = (0..n)
        .map(|i| {
            let mut sel = domains(&[format!("d{i}.example"), format!("d{i}.example.net")]);
            if i % 7 == 0 {
                sel.hosts.push(host(&format!("api{i}.service.example")));
            }
            let mut r = Rule::new("m", &format!("r{i}"), action(i), sel);
            if i % 50 == 0 {
                r.activity.schedule = Some(office_hours());
            }
            r
        })
        .collect();
    let org_rules = |prefix: &str| -> Vec<Rule> {
        let sel = |i| domains(&[format!("{prefix}{i}.org.example")]);
        (0..5)
            .map(|i| {
                Rule::new(
                    "_organization",
                    &format!("{prefix}{i}"),
                    Action::Block,
                    sel(i),
                )
            })
            .collect()
    };
    let mut baseline = org_rules("base");
    let social = Selectors {
        categories: vec!["social".into()],
        ..Selectors::default()
    };
    baseline.push(Rule::new("_organization", "social", Action::Block, social));
    PolicySet {
        organization: Organization {
            mandatory: org_rules("mand"),
            baseline,
            default: Action::Allow,
            contact: None,
            timezone: Tz::UTC,
            file: Arc::from("_organization.yaml"),
        },
        ministries: vec![Ministry {
            name: "m".into(),
            stem: "m".into(),
            description: None,
            mode: Mode::Enforce,
            default: None,
            contact: None,
            rules,
            file: Arc::from("m.yaml"),
        }],
        categories: vec![Category {
            name: "social".into(),
            description: None,
            domains: (0..category_size)
                .map(|i| category_domain(i).into())
                .collect(),
        }],
    }
}

fn office_hours() -> Schedule {
    Schedule {
        days: [true, true, true, true, true, false, false],
        start_minute: 8 * 60,
        end_minute: 18 * 60,
        timezone: chrono_tz::America::Toronto,
    }
}
