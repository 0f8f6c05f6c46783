//! Property tests (proptest) through the path the proxy serves from: a generated policy is
//! written as YAML files, loaded and validated by `config::load_at`, and built into a
//! [`Snapshot`] (compiled policy + decision cache).
//!
//! - The cached decision (`snapshot.cache`) equals the uncached one (`snapshot.policy.decide`,
//!   and the naive `explain` walk) for every generated request, on a controlled clock that
//!   steps across expiries and schedule boundaries, with repeats (which must be cache hits) and
//!   caches small enough to evict.
//! - `proxy::service::decide`, the call the proxy makes (wall clock), agrees with the policy.
//! - A blocked name or range stays blocked through the proxy's own target parsing: request
//!   targets are parsed as hyper does (`http::Uri`), then by `proxy::target` (absolute-form and
//!   CONNECT), then decided by `proxy::service::decide`. What the URI parser or the target
//!   parser refuses is a 400 (fail closed); the ASCII spellings generated here must be accepted.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use egressd::identity::{Identified, Method};
use egressd::metrics::Metrics;
use egressd::policy::host::normalize_host;
use egressd::policy::{Outcome, Verdict};
use egressd::proxy::service::{self, Stop};
use egressd::proxy::target::{parse_absolute, parse_connect, Target};
use egressd::snapshot::Snapshot;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::FileFailurePersistence;

/// 256 cases each (proptest's default, written out so the CI cost stays visible); a failing
/// case is saved for the next run under `tests/proptest-regressions/`.
fn config() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/proptest-regressions/properties.txt",
        ))),
        ..ProptestConfig::with_cases(256)
    }
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

/// YAML scalar: a JSON string is a valid double-quoted YAML scalar.
fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

fn list(items: &[String]) -> String {
    format!("[{}]", items.join(", "))
}

/// Loads a tree (`egressd.yaml` + files) at `now` and builds the snapshot the proxy would serve.
fn snapshot(
    egressd_yaml: &str,
    files: &[(String, String)],
    now: DateTime<Utc>,
    metrics: &Metrics,
) -> Result<Snapshot, TestCaseError> {
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    let tree = common::ConfigTree::new(egressd_yaml, &files);
    let loaded = egressd::config::load_at(&tree.config_path(), now).map_err(|errs| {
        let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        TestCaseError::fail(format!("generated config refused:\n{}", text.join("\n")))
    })?;
    Ok(Snapshot::build(&loaded, 1, metrics))
}

// ---------------------------------------------------------------------------------------------
// Generated policies
// ---------------------------------------------------------------------------------------------

const NAMES: [&str; 10] = [
    "a.example",
    "www.a.example",
    "x.www.a.example",
    "nota.example",
    "b.example",
    "cdn.b.example",
    "c.test",
    "d.c.test",
    "example",
    "xn--bcher-kva.example",
];
/// Other spellings the config accepts for some of the names (normalised when loaded).
const NAME_SPELLINGS: [(&str, &str); 3] = [
    ("a.example", "A.Example."),
    ("xn--bcher-kva.example", "bücher.example"),
    ("cdn.b.example", "CDN.B.EXAMPLE"),
];
const IPS: [&str; 5] = [
    "192.0.2.1",
    "192.0.2.200",
    "198.51.100.7",
    "2001:db8::1",
    "2001:db8:1::5",
];
const NETS: [&str; 6] = [
    "192.0.2.0/24",
    "192.0.2.1/32",
    "0.0.0.0/0",
    "2001:db8::/32",
    "198.51.100.0/25",
    "::ffff:192.0.2.0/120",
];
const PORTS: [u16; 3] = [80, 443, 8080];
const PREFIXES: [&str; 4] = ["/", "/a", "/a/b", "/b"];
const PATHS: [Option<&str>; 8] = [
    None,
    Some("/"),
    Some("/a"),
    Some("/a/b/c"),
    Some("/b?x=1"),
    Some("/./a"),
    Some("/ab"),
    Some("/%61"),
];
/// Hosts requested: every name and IP above plus some that no rule names.
const QUERY_HOSTS: [&str; 18] = [
    "a.example",
    "www.a.example",
    "x.www.a.example",
    "nota.example",
    "b.example",
    "cdn.b.example",
    "c.test",
    "d.c.test",
    "example",
    "xn--bcher-kva.example",
    "z.example",
    "192.0.2.1",
    "192.0.2.200",
    "198.51.100.7",
    "2001:db8::1",
    "2001:db8:1::5",
    "203.0.113.9",
    "::ffff:192.0.2.9",
];
/// Around DST changes (Toronto spring and fall) and a summer day.
const ANCHORS: [&str; 3] = [
    "2026-03-08T07:00:00Z",
    "2026-11-01T06:00:00Z",
    "2026-06-15T12:00:00Z",
];
const ZONES: [&str; 3] = ["America/Toronto", "UTC", "Australia/Lord_Howe"];
const HOURS: [&str; 6] = ["00:00", "01:30", "02:30", "08:00", "18:00", "22:00"];
const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    (select(ANCHORS.to_vec()), -2 * 86_400i64..2 * 86_400)
        .prop_map(|(a, s)| at(a) + TimeDelta::seconds(s))
}

fn name_entry() -> impl Strategy<Value = String> {
    (select(NAMES.to_vec()), any::<bool>()).prop_map(|(n, respell)| {
        match NAME_SPELLINGS.iter().find(|(c, _)| *c == n) {
            Some((_, other)) if respell => other.to_string(),
            _ => n.to_owned(),
        }
    })
}

fn some<T: Strategy>(s: T, max: usize) -> impl Strategy<Value = Vec<T::Value>> {
    prop::collection::vec(s, 1..=max)
}

/// One rule's YAML (a list item indented under `rules:`, `mandatory:` or `baseline:`).
fn rule() -> impl Strategy<Value = Vec<String>> {
    let selectors = (
        proptest::option::weighted(0.35, some(name_entry(), 2)),
        proptest::option::weighted(
            0.25,
            some(
                prop_oneof![name_entry(), select(IPS.to_vec()).prop_map(String::from)],
                2,
            ),
        ),
        proptest::option::weighted(0.25, some(select(vec!["c0", "c1", "c2"]), 2)),
        proptest::option::weighted(
            0.2,
            some((select(NAMES.to_vec()), select(PREFIXES.to_vec())), 2),
        ),
        proptest::option::weighted(0.2, some(select(NETS.to_vec()), 2)),
        proptest::option::weighted(0.25, some(select(PORTS.to_vec()), 2)),
    );
    let activity = (
        proptest::option::weighted(0.25, (instant(), any::<bool>())),
        proptest::option::weighted(
            0.3,
            (
                proptest::option::of(prop::collection::vec(any::<bool>(), 7)),
                select(HOURS.to_vec()),
                prop_oneof![select(HOURS.to_vec()), Just("24:00")],
                proptest::option::of(select(ZONES.to_vec())),
            ),
        ),
    );
    (any::<bool>(), selectors, activity, name_entry()).prop_map(
        |(allow, s, (expires, schedule), fallback)| {
            let (mut domains, hosts, cats, urls, dests, ports) = s;
            if (domains.is_none() && hosts.is_none() && cats.is_none())
                && (urls.is_none() && dests.is_none() && ports.is_none())
            {
                // `check` refuses a rule without a selector.
                domains = Some(vec![fallback]);
            }
            let mut lines = vec![format!("action: {}", if allow { "allow" } else { "block" })];
            let mut add = |key: &str, v: Option<Vec<String>>| {
                if let Some(v) = v {
                    lines.push(format!("{key}: {}", list(&v)));
                }
            };
            add("domains", domains.map(|v| v.iter().map(|d| q(d)).collect()));
            add("hosts", hosts.map(|v| v.iter().map(|h| q(h)).collect()));
            add("categories", cats.map(|v| v.iter().map(|c| q(c)).collect()));
            add(
                "urls",
                urls.map(|v| {
                    v.iter()
                        .map(|(h, p)| q(&format!("http://{h}{p}")))
                        .collect()
                }),
            );
            add(
                "destinations",
                dests.map(|v| v.iter().map(|n| q(n)).collect()),
            );
            add(
                "ports",
                ports.map(|v| v.iter().map(u16::to_string).collect()),
            );
            if let Some((t, as_date)) = expires {
                // A date ends at the next local midnight in the organization's timezone.
                let v = if as_date {
                    t.format("%Y-%m-%d").to_string()
                } else {
                    t.to_rfc3339()
                };
                lines.push(format!("expires: {}", q(&v)));
            }
            if let Some((days, start, end, tz)) = schedule {
                lines.push("schedule:".into());
                if let Some(days) = days {
                    let mut on: Vec<String> = (0..7)
                        .filter(|i| days[*i])
                        .map(|i| DAYS[i].into())
                        .collect();
                    if on.is_empty() {
                        on.push("wed".into());
                    }
                    lines.push(format!("  days: {}", list(&on)));
                }
                lines.push(format!("  hours: {}", q(&format!("{start}-{end}"))));
                if let Some(tz) = tz {
                    lines.push(format!("  timezone: {tz}"));
                }
            }
            lines
        },
    )
}

fn rules_yaml(key: &str, rules: &[Vec<String>]) -> String {
    if rules.is_empty() {
        return String::new();
    }
    let mut out = format!("{key}:\n");
    for (i, lines) in rules.iter().enumerate() {
        out.push_str(&format!("  - id: {key}-{i}\n"));
        for l in lines {
            out.push_str(&format!("    {l}\n"));
        }
    }
    out
}

/// A generated configuration: the policy files, how many ministries, the cache size.
#[derive(Debug, Clone)]
struct Generated {
    files: Vec<(String, String)>,
    ministries: usize,
    cache: usize,
}

fn generated() -> impl Strategy<Value = Generated> {
    let org = (
        any::<bool>(),
        select(ZONES.to_vec()),
        prop::collection::vec(rule(), 0..=2),
        prop::collection::vec(rule(), 0..=2),
    );
    let ministry = (
        any::<bool>(),
        select(vec![None, Some("allow"), Some("block")]),
        prop::collection::vec(rule(), 0..=4),
    );
    let cats = prop::collection::vec(some(name_entry(), 2), 3);
    (
        org,
        prop::collection::vec(ministry, 1..=3),
        cats,
        select(vec![0usize, 4, 32, 100_000]),
    )
        .prop_map(
            |((allow, tz, mandatory, baseline), ministries, cats, cache)| {
                let mut files = vec![(
                    "policies/_organization.yaml".to_owned(),
                    format!(
                        "timezone: {tz}\ndefault: {}\n{}{}",
                        if allow { "allow" } else { "block" },
                        rules_yaml("mandatory", &mandatory),
                        rules_yaml("baseline", &baseline)
                    ),
                )];
                for (i, (report, default, rules)) in ministries.iter().enumerate() {
                    let mut text = format!(
                        "ministry: m{i}\nmode: {}\n",
                        if *report { "report" } else { "enforce" }
                    );
                    if let Some(d) = default {
                        text.push_str(&format!("default: {d}\n"));
                    }
                    text.push_str(&rules_yaml("rules", rules));
                    files.push((format!("policies/m{i}.yaml"), text));
                }
                for (i, domains) in cats.iter().enumerate() {
                    let list: Vec<String> = domains.iter().map(|d| q(d)).collect();
                    files.push((
                        format!("categories/c{i}.yaml"),
                        format!("description: generated\ndomains: {}\n", self::list(&list)),
                    ));
                }
                Generated {
                    files,
                    ministries: ministries.len(),
                    cache,
                }
            },
        )
}

/// One request and how the clock moves before it.
#[derive(Debug, Clone)]
struct Query {
    ministry: usize,
    host: &'static str,
    port: u16,
    path: Option<&'static str>,
    step: Step,
}

#[derive(Debug, Clone)]
enum Step {
    /// Forward by this many seconds (0: same instant).
    Forward(i64),
    /// Anywhere (a big jump, backwards too: a stepped clock).
    Jump(DateTime<Utc>),
    /// The previous request again, at the same instant.
    Repeat,
}

fn query() -> impl Strategy<Value = Query> {
    let step = prop_oneof![
        10 => (0i64..90 * 60).prop_map(Step::Forward),
        3 => Just(Step::Repeat),
        1 => instant().prop_map(Step::Jump),
    ];
    (
        0usize..3,
        select(QUERY_HOSTS.to_vec()),
        select(PORTS.to_vec()),
        select(PATHS.to_vec()),
        step,
    )
        .prop_map(|(ministry, host, port, path, step)| Query {
            ministry,
            host,
            port,
            path,
            step,
        })
}

fn who(ministry: u32) -> Identified {
    Identified {
        ministry: Some(ministry),
        method: Method::Source,
        user: None,
    }
}

/// The verdict `proxy::service::decide` reached (a block is `Err(Stop::Blocked)`).
fn proxy_verdict(
    metrics: &Metrics,
    snap: &Snapshot,
    m: u32,
    t: &Target,
    path: Option<&str>,
) -> Verdict {
    match service::decide(metrics, snap, who(m), t, path) {
        Ok(d) => d.verdict,
        Err(Stop::Blocked(d)) => d.verdict,
        Err(Stop::Failed(e)) => panic!("decide never dials: {e:?}"),
    }
}

proptest! {
    #![proptest_config(config())]

    /// The snapshot's cache answers exactly what the policy answers, on a clock that walks
    /// across activity changes and jumps back; a repeat at the same instant is a hit.
    #[test]
    fn cached_decisions_equal_uncached_ones(
        g in generated(),
        start in instant(),
        queries in prop::collection::vec(query(), 1..60),
    ) {
        let metrics = Metrics::new();
        let yaml = format!(
            "listen: {{proxy: 127.0.0.1:0, admin: 127.0.0.1:0}}\ncache: {{max_entries: {}}}\n",
            g.cache
        );
        let snap = snapshot(&yaml, &g.files, start, &metrics)?;
        let p = &snap.policy;
        let mut now = start;
        let mut last: Option<Query> = None;
        for q in queries {
            let q = match (&q.step, &last) {
                (Step::Repeat, Some(prev)) => prev.clone(),
                (Step::Forward(s), _) => {
                    now += TimeDelta::seconds(*s);
                    q
                }
                (Step::Jump(t), _) => {
                    now = *t;
                    q
                }
                (Step::Repeat, None) => q,
            };
            let m = p.ministry_id(&format!("m{}", q.ministry % g.ministries)).unwrap();
            let h = normalize_host(q.host).unwrap();
            let (cached, hit) = snap.cache.decide(p, m, &h, q.port, q.path, now);
            let fresh = p.decide(m, &h, q.port, q.path, now);
            prop_assert_eq!(cached, fresh, "{}:{} {:?} at {}", h, q.port, q.path, now);
            prop_assert_eq!(p.explain(m, &h, q.port, q.path, now).verdict, fresh);
            // Asked again at the same instant: served from the cache, same answer.
            let (again, hit_again) = snap.cache.decide(p, m, &h, q.port, q.path, now);
            prop_assert_eq!(again, fresh);
            prop_assert_eq!(hit_again, g.cache > 0, "first lookup hit: {}", hit);
            prop_assert!(snap.cache.len() <= g.cache);
            last = Some(q);
        }
        // The proxy's own entry point (wall clock): equal to the policy whenever the policy
        // gave the same answer just before and just after it.
        for host in QUERY_HOSTS {
            for m in 0..g.ministries as u32 {
                let t = Target { host: normalize_host(host).unwrap(), port: 443 };
                let before = p.decide(m, &t.host, 443, Some("/a"), Utc::now());
                let got = proxy_verdict(&metrics, &snap, m, &t, Some("/a"));
                let after = p.decide(m, &t.host, 443, Some("/a"), Utc::now());
                if before == after {
                    prop_assert_eq!(got, before, "{}", host);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Spellings through the proxy's target parsing
// ---------------------------------------------------------------------------------------------

/// A blocked domain: ASCII labels, maybe an IDN label, an alphabetic top-level label.
#[derive(Debug, Clone)]
struct Domain {
    labels: Vec<String>,
    idn: bool,
}

impl Domain {
    /// As the policy writes it: the IDN label as U-label or A-label, any case, maybe a dot.
    fn policy_spelling(&self, u_label: bool, upper: u64, dot: bool) -> String {
        let idn = if u_label { "BÜcher" } else { "xn--bcher-kva" };
        let mut labels = self.labels.clone();
        if self.idn {
            labels.insert(0, idn.to_owned());
        }
        respell(&labels.join("."), upper, dot)
    }

    fn canonical(&self) -> String {
        self.policy_spelling(false, 0, false)
    }
}

/// Upper-cases ASCII character i where bit i is set; appends a trailing dot.
fn respell(s: &str, upper: u64, dot: bool) -> String {
    let mut out: String = s
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if upper >> (i % 64) & 1 == 1 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect();
    if dot {
        out.push('.');
    }
    out
}

fn domain() -> impl Strategy<Value = Domain> {
    (
        prop::collection::vec("[a-z0-9]{1,6}(-[a-z0-9]{1,3})?", 0..=2),
        "[a-z]{2,5}",
        any::<bool>(),
    )
        .prop_map(|(mut labels, tld, idn)| {
            labels.push(tld);
            Domain { labels, idn }
        })
}

/// The IPv4 literal forms a request target can carry (WHATWG / inet_aton numbers, mapped).
fn v4_spellings(ip: Ipv4Addr) -> Vec<String> {
    let [a, b, c, d] = ip.octets();
    let n = u32::from(ip);
    vec![
        ip.to_string(),
        format!("{ip}."),
        n.to_string(),
        format!("0x{n:x}"),
        format!("0X{n:08X}"),
        format!("0{n:o}"),
        format!("0{a:o}.0x{b:x}.{c}.0{d:o}"),
        format!("{a}.{b}.{}", n & 0xffff),
        format!("0x{a:x}.0{:o}", n & 0xff_ffff),
        format!("[::ffff:{ip}]"),
        format!("[::FFFF:{:x}:{:x}]", n >> 16, n & 0xffff),
        format!("[0:0:0:0:0:ffff:{ip}]"),
    ]
}

fn v6_spellings(ip: std::net::Ipv6Addr) -> Vec<String> {
    let full: Vec<String> = ip.segments().iter().map(|g| format!("{g:04X}")).collect();
    vec![
        format!("[{ip}]"),
        format!("[{}]", ip.to_string().to_uppercase()),
        format!("[{}]", full.join(":")),
    ]
}

/// Request targets for `host`: absolute-form with and without a port, and CONNECT.
fn targets(host: &str, port: u16) -> Vec<(String, bool)> {
    let mut out = vec![
        (format!("http://{host}:{port}/a?b"), false),
        (format!("{host}:{port}"), true),
    ];
    if port == 80 {
        out.push((format!("http://{host}/"), false));
    }
    out
}

/// Parses a request target as hyper does, then as the proxy does.
fn parse(target: &str, connect: bool) -> Result<(Target, Option<String>), String> {
    let uri: http::Uri = target.parse().map_err(|e| format!("uri: {e}"))?;
    let path = (!connect).then(|| uri.path_and_query().map_or("/", |p| p.as_str()).to_owned());
    let t = if connect {
        parse_connect(&uri)
    } else {
        parse_absolute(&uri)
    };
    t.map(|t| (t, path)).map_err(|e| format!("target: {e}"))
}

proptest! {
    #![proptest_config(config())]

    /// A domain blocked in the policy (written in one spelling) and a range blocked by
    /// `destinations:` are blocked for every ASCII spelling of a request target: case, trailing
    /// dot, A-label, subdomains, every IPv4 number form, IPv4-mapped and bracketed IPv6, in
    /// absolute-form and CONNECT, decided by `proxy::service::decide` on the loaded snapshot.
    #[test]
    fn blocked_names_and_ranges_stay_blocked_through_target_parsing(
        d in domain(),
        policy_form in (any::<bool>(), any::<u64>(), any::<bool>()),
        request_form in (any::<u64>(), any::<bool>()),
        sub in prop::collection::vec("[a-z0-9]{1,5}", 0..=2),
        v4 in (any::<u32>(), 8u8..=32, any::<u32>()),
        v6 in (any::<u128>(), 16u8..=128, any::<u128>()),
        port in prop_oneof![Just(80u16), Just(443), 1u16..],
        report_elsewhere in any::<bool>(),
    ) {
        let (v4_addr, v4_net) = inside_v4(v4);
        let (v6_addr, v6_net) = inside_v6(v6);
        let entry = d.policy_spelling(policy_form.0, policy_form.1, policy_form.2);
        let org = format!(
            "default: allow\nmandatory:\n  - id: ranges\n    action: block\n    destinations: [{}, {}]\n",
            q(&v4_net), q(&v6_net)
        );
        let m = format!(
            "ministry: m\ndefault: allow\nrules:\n  - id: other\n    action: allow\n    domains: [other.example]\n  - id: name\n    action: block\n    domains: [{}]\n",
            q(&entry)
        );
        // Another ministry in report mode must not change m's answers.
        let r = format!("ministry: r\nmode: {}\n", if report_elsewhere { "report" } else { "enforce" });
        let files = vec![
            ("policies/_organization.yaml".to_owned(), org),
            ("policies/m.yaml".to_owned(), m),
            ("policies/r.yaml".to_owned(), r),
        ];
        let metrics = Metrics::new();
        let yaml = "listen: {proxy: 127.0.0.1:0, admin: 127.0.0.1:0}\n";
        let snap = snapshot(yaml, &files, Utc::now(), &metrics)?;
        let mid = snap.policy.ministry_id("m").unwrap();

        let mut name = sub.join(".");
        if !name.is_empty() {
            name.push('.');
        }
        name.push_str(&d.canonical());
        let mut cases: Vec<(String, &str, String)> = Vec::new();
        let spelled = respell(&name, request_form.0, request_form.1);
        cases.push((spelled, "m/name", name.clone()));
        for s in v4_spellings(v4_addr) {
            cases.push((s, "_organization/ranges", v4_addr.to_string()));
        }
        for s in v6_spellings(v6_addr) {
            cases.push((s, "_organization/ranges", v6_addr.to_string()));
        }
        for (host, rule, canonical) in cases {
            for (target, connect) in targets(&host, port) {
                let (t, path) = parse(&target, connect)
                    .map_err(|e| TestCaseError::fail(format!("{target:?} refused: {e}")))?;
                let shown = match &t.host {
                    egressd::policy::host::Host::Ip(ip) => ip.to_string(),
                    h => h.to_string(),
                };
                prop_assert_eq!(&shown, &canonical, "{:?}", target);
                prop_assert_eq!(t.port, port);
                let v = proxy_verdict(&metrics, &snap, mid, &t, path.as_deref());
                prop_assert_eq!(v.outcome, Outcome::Block, "{:?}", target);
                prop_assert_eq!(snap.policy.rule(v.rule).name.clone(), Arc::<str>::from(rule), "{:?}", target);
            }
        }
        // Control: a name that only shares a suffix string, and `other.example`, are allowed.
        for host in [format!("x{}", d.canonical()), "other.example".to_owned()] {
            if let Ok((t, path)) = parse(&format!("http://{host}:{port}/"), false) {
                let v = proxy_verdict(&metrics, &snap, mid, &t, path.as_deref());
                prop_assert_eq!(v.outcome, Outcome::Allow, "{}", host);
            }
        }
    }
}

fn inside_v4((a, len, host): (u32, u8, u32)) -> (Ipv4Addr, String) {
    let mask = u32::MAX << (32 - len);
    let addr = Ipv4Addr::from((a & mask) | (host & !mask));
    (addr, format!("{}/{len}", Ipv4Addr::from(a & mask)))
}

/// A range outside `::/16`, so no address in it is IPv4-mapped or IPv4-compatible.
fn inside_v6((a, len, host): (u128, u8, u128)) -> (std::net::Ipv6Addr, String) {
    let a = a | (1 << 127);
    let mask = u128::MAX << (128 - len);
    let addr = std::net::Ipv6Addr::from((a & mask) | (host & !mask));
    (
        addr,
        format!("{}/{len}", std::net::Ipv6Addr::from(a & mask)),
    )
}

/// The IPv4 spelling table is what it claims: every entry is the same address to the
/// normaliser (an entry spelling another address would make the property above vacuous).
#[test]
fn ip_spellings_are_what_they_claim() {
    let ip: Ipv4Addr = "127.0.0.1".parse().unwrap();
    for s in v4_spellings(ip) {
        assert_eq!(
            normalize_host(&s).unwrap().ip(),
            Some(IpAddr::V4(ip)),
            "{s}"
        );
    }
}
