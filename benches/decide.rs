//! Decision cost: `Policy::decide` (a cache miss) and `DecisionCache::decide` (a hit) with 10,
//! 1,000 and 10,000 rules and with a 100,000-domain category; compiling that category.
//! Policies, hosts and caches are built outside the timed loops.
//!
//! `cargo bench --bench decide -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

use egressd::cache::DecisionCache;
use egressd::policy::host::{normalize_host, Host};
use egressd::policy::model::{
    Action, Category, Ministry, Mode, Organization, PolicySet, Rule, Schedule, Selectors,
};
use egressd::policy::{MinistryId, Policy};

const CATEGORY_SIZE: usize = 100_000;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-05-01T12:00:00Z")
        .unwrap()
        .to_utc()
}

fn host(s: &str) -> Host {
    normalize_host(s).unwrap()
}

fn domains(list: &[String]) -> Selectors {
    Selectors {
        domains: list.iter().map(|d| d.as_str().into()).collect(),
        ..Selectors::default()
    }
}

/// `n` ministry rules over distinct domains (every 7th also with a host, every 50th scheduled),
/// behind a few organization rules, the last baseline rule using the `social` category.
fn policy_set(n: usize, category_size: usize) -> PolicySet {
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
                .map(|i| format!("s{i}.example{}.com", i % 100).into())
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

/// (label, policy, a host its middle rule decides, a host nothing matches)
fn cases() -> Vec<(String, Policy, Host, Host)> {
    let mut out: Vec<_> = [10, 1_000, 10_000]
        .into_iter()
        .map(|n| {
            let hit = host(&format!("www.d{}.example", n / 2 + 1));
            (
                format!("{n}_rules"),
                Policy::compile(&policy_set(n, 10)),
                hit,
                host("nomatch.other.example"),
            )
        })
        .collect();
    let big = Policy::compile(&policy_set(1_000, CATEGORY_SIZE));
    out.push((
        "category_100k".into(),
        big,
        host("www.s54321.example21.com"),
        host("s54321.example22.com"),
    ));
    out
}

fn decide(c: &mut Criterion) {
    let (m, t): (MinistryId, _) = (0, now());
    let cases = cases();
    let mut miss = c.benchmark_group("decide_miss");
    for (label, p, matched, unmatched) in &cases {
        for (kind, h) in [("matched", matched), ("unmatched", unmatched)] {
            miss.bench_with_input(BenchmarkId::new(kind, label), h, |b, h| {
                b.iter(|| p.decide(m, black_box(h), 443, None, t))
            });
        }
    }
    miss.finish();
    let mut hit = c.benchmark_group("decide_hit");
    for (label, p, matched, _) in &cases {
        let cache = DecisionCache::new(100_000);
        cache.decide(p, m, matched, 443, None, t);
        hit.bench_with_input(BenchmarkId::new("matched", label), matched, |b, h| {
            b.iter(|| {
                let (v, was_hit) = cache.decide(p, m, black_box(h), 443, Some("/index.html"), t);
                assert!(was_hit);
                v
            })
        });
    }
    hit.finish();
}

fn compile(c: &mut Criterion) {
    let set = policy_set(1_000, CATEGORY_SIZE);
    let mut g = c.benchmark_group("compile");
    g.sample_size(10);
    g.bench_function("category_100k", |b| {
        b.iter(|| Policy::compile(black_box(&set)))
    });
    let set = policy_set(10_000, 10);
    g.bench_function("10000_rules", |b| {
        b.iter(|| Policy::compile(black_box(&set)))
    });
    g.finish();
}

criterion_group!(benches, decide, compile);
criterion_main!(benches);
