//! The rest of the decision engine: host normalisation (every request's target and every
//! SNI goes through it before the cache), compiling a policy (1,000 and 10,000 rules; a
//! 100,000- and a 1,000,000-domain category) and loading one from YAML (parse + validate, a
//! 100,000-domain category file). The matcher itself is crate-private; its cost with the walk
//! over candidates is `decide_host` in the `decide` bench. Inputs are built outside the timed
//! loops; compiled policies are dropped outside them too.
//!
//! `cargo bench --bench engine -- --warm-up-time 1 --measurement-time 3`

mod common;

use std::hint::black_box;
use std::io::Write;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

use common::{category_domain, policy_set};
use egressd::policy::host::normalize_host;
use egressd::policy::Policy;

fn normalize(c: &mut Criterion) {
    let inputs = [
        ("plain", "www.example.com"),
        ("mixed_case_trailing_dot", "WWW.Example.COM."),
        ("idn", "www.bücher.example"),
        ("ipv4", "192.0.2.10"),
        ("ipv4_decimal", "3221225994"),
        ("ipv6_bracketed", "[2001:db8::1]"),
    ];
    let mut g = c.benchmark_group("normalize_host");
    for (label, raw) in inputs {
        assert!(normalize_host(raw).is_ok(), "{raw}");
        g.bench_with_input(BenchmarkId::from_parameter(label), raw, |b, raw| {
            b.iter(|| normalize_host(black_box(raw)))
        });
    }
    g.finish();
}

fn compile(c: &mut Criterion) {
    let mut g = c.benchmark_group("compile");
    g.sample_size(10);
    let sets = [
        ("1000_rules", policy_set(1_000, 10)),
        ("10000_rules", policy_set(10_000, 10)),
        ("category_100k", policy_set(10, 100_000)),
    ];
    for (label, set) in &sets {
        g.bench_function(*label, |b| {
            b.iter_with_large_drop(|| Policy::compile(black_box(set)))
        });
    }
    drop(sets);
    let set = policy_set(10, 1_000_000);
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("category_1m", |b| {
        b.iter_with_large_drop(|| Policy::compile(black_box(&set)))
    });
    g.finish();
}

/// `config::load` of a tree whose category file lists `n` domains (parse + validate; no
/// compile), the part of a reload before [`compile`].
fn load(c: &mut Criterion) {
    let n = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("policies")).unwrap();
    std::fs::create_dir_all(root.join("categories")).unwrap();
    std::fs::write(root.join("egressd.yaml"), "listen: {proxy: 127.0.0.1:0}\n").unwrap();
    std::fs::write(
        root.join("policies/_organization.yaml"),
        "baseline:\n  - {id: big, action: block, categories: [big]}\n",
    )
    .unwrap();
    let file = std::fs::File::create(root.join("categories/big.yaml")).unwrap();
    let mut out = std::io::BufWriter::new(file);
    writeln!(out, "domains:").unwrap();
    for i in 0..n {
        writeln!(out, "  - {}", category_domain(i)).unwrap();
    }
    out.flush().unwrap();
    let config = root.join("egressd.yaml");
    assert_eq!(
        egressd::config::load(&config).unwrap().policy.categories[0]
            .domains
            .len(),
        n
    );
    let mut g = c.benchmark_group("load");
    g.sample_size(10);
    g.bench_function("category_100k", |b| {
        b.iter_with_large_drop(|| egressd::config::load(black_box(&config)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, normalize, compile, load);
criterion_main!(benches);
