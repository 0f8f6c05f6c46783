//! What a reload costs for a policy with a huge category: load + validate
//! (`config::load`) and compile (`Snapshot::build`), timed separately, then the process's
//! peak resident memory (`VmHWM`, read before anything else happens, so that, like
//! `/usr/bin/time -v`'s "Maximum resident set size", it is the memory a build needs). Then the
//! snapshot's decision cache is filled to `cache.max_entries` and the snapshot dropped, timed:
//! what the thread that releases the last reference after a reload pays.
//!
//! ```sh
//! cargo build --release --example policy_build
//! target/release/examples/policy_build generate /tmp/p1m 1000000   # writes the tree
//! /usr/bin/time -v target/release/examples/policy_build build /tmp/p1m/egressd.yaml
//! ```
//!
//! The generated tree: `egressd.yaml` (loopback listeners), an organization file whose
//! baseline blocks the category `big`, one ministry with a few rules, and
//! `categories/big.yaml` with N distinct domains (`s{i}.example{i % 100}.com`).

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use egressd::metrics::Metrics;
use egressd::policy::host::normalize_host;
use egressd::snapshot::Snapshot;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let code = match args.get(1).map(String::as_str) {
        Some("generate") if args.len() == 4 => match args[3].parse() {
            Ok(n) => generate(Path::new(&args[2]), n),
            Err(_) => usage(),
        },
        Some("build") if args.len() == 3 => build(Path::new(&args[2])),
        _ => usage(),
    };
    std::process::exit(code);
}

fn usage() -> i32 {
    eprintln!("usage: policy_build generate DIR DOMAINS | policy_build build CONFIG");
    2
}

/// Writes the config tree into `dir` (created).
fn generate(dir: &Path, domains: usize) -> i32 {
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(dir.join("policies"))?;
        std::fs::create_dir_all(dir.join("categories"))?;
        std::fs::write(
            dir.join("egressd.yaml"),
            "listen: {proxy: 127.0.0.1:0, admin: 127.0.0.1:0}\nidentity:\n  default_ministry: m\n",
        )?;
        std::fs::write(
            dir.join("policies/_organization.yaml"),
            "default: allow\nbaseline:\n  - {id: big, action: block, categories: [big]}\n",
        )?;
        std::fs::write(
            dir.join("policies/m.yaml"),
            "ministry: m\nrules:\n  - {id: a, action: allow, domains: [allowed.example]}\n  - {id: b, action: block, domains: [blocked.example]}\n",
        )?;
        let file = std::fs::File::create(dir.join("categories/big.yaml"))?;
        let mut out = std::io::BufWriter::new(file);
        writeln!(out, "description: generated, {domains} domains\ndomains:")?;
        for i in 0..domains {
            writeln!(out, "  - s{i}.example{}.com", i % 100)?;
        }
        out.flush()
    };
    match write() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{}: {e}", dir.display());
            1
        }
    }
}

/// Loads and compiles `config` once, printing the phases and the peak memory.
fn build(config: &Path) -> i32 {
    let start = Instant::now();
    let loaded = match egressd::config::load(config) {
        Ok(l) => l,
        Err(diags) => {
            for d in diags.iter().take(20) {
                eprintln!("{d}");
            }
            return 1;
        }
    };
    let load = start.elapsed();
    let domains: usize = loaded
        .policy
        .categories
        .iter()
        .map(|c| c.domains.len())
        .sum();
    let metrics = Metrics::new();
    let t = Instant::now();
    let snap = Snapshot::build(&loaded, 1, &metrics);
    let compile = t.elapsed();
    let t = Instant::now();
    drop(loaded);
    let drop_loaded = t.elapsed();
    let total = start.elapsed();
    let hwm = peak_rss_kib();
    // The worst case for whichever thread drops the last reference after a reload: a full
    // decision cache.
    let ministry = snap.policy.ministries().next().map_or(0, |(id, _)| id);
    let now = chrono::Utc::now();
    let entries = snap.settings.cache.max_entries;
    for i in 0..entries {
        let host = normalize_host(&format!("h{i}.example")).expect("a valid name");
        snap.cache
            .decide(&snap.policy, ministry, &host, 443, None, now);
    }
    let t = Instant::now();
    drop(snap);
    println!(
        "{domains} category domains: load+validate {:.0} ms, compile {:.0} ms, total {:.0} ms; \
         peak RSS {} MiB; dropping the validated set {:.1} ms, the snapshot with {} cached \
         decisions {:.1} ms",
        load.as_secs_f64() * 1e3,
        compile.as_secs_f64() * 1e3,
        total.as_secs_f64() * 1e3,
        hwm / 1024,
        drop_loaded.as_secs_f64() * 1e3,
        entries,
        t.elapsed().as_secs_f64() * 1e3,
    );
    0
}

/// `VmHWM` of this process, in KiB (0 when /proc is not there).
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
