//! Decision cost: `Policy::decide` (a cache miss), `Policy::decide_host` (its host-level part:
//! the matchers and the walk over candidates, without the path) and `DecisionCache::decide` (a
//! hit) with 10, 1,000 and 10,000 rules, and with 10,000 rules plus a 100,000-domain category
//! (the issue-6 targets: a miss under 2 µs, a hit under 100 ns). Policies, hosts and caches
//! are built outside the timed loops; compile and normalisation costs are in `engine`.
//!
//! `cargo bench --bench decide -- --warm-up-time 1 --measurement-time 3`

mod common;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

use common::{category_domain, host, now, policy_set};
use egressd::cache::DecisionCache;
use egressd::policy::host::Host;
use egressd::policy::{MinistryId, Policy};

const CATEGORY_SIZE: usize = 100_000;

/// (label, policy, a host a rule in the middle decides, a host nothing matches)
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
    // The category decides the matched host; the unmatched one probes every suffix of a
    // name that shares its parent with 1,000 category domains.
    let big = Policy::compile(&policy_set(10_000, CATEGORY_SIZE));
    out.push((
        "10000_rules_category_100k".into(),
        big,
        host(&format!("www.{}", category_domain(54_321))),
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
                b.iter(|| p.decide(m, black_box(h), 443, Some("/index.html"), t))
            });
        }
    }
    miss.finish();
    let mut host_level = c.benchmark_group("decide_host");
    for (label, p, matched, _) in &cases {
        host_level.bench_with_input(BenchmarkId::new("matched", label), matched, |b, h| {
            b.iter(|| p.decide_host(m, black_box(h), 443, t))
        });
    }
    host_level.finish();
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

criterion_group!(benches, decide);
criterion_main!(benches);
