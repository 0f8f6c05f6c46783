//! Randomised oracle checks over generated policies: the compiled `decide` agrees with the
//! naive `explain` walk, `check_resolved` with a naive scan, and a [`HostVerdict`] stays
//! exactly right until its `valid_until`. The generator is shared with the cache tests.

use std::net::IpAddr;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;

use super::*;
use crate::policy::model::{Activity, Schedule};
use crate::policy::{HostVerdict, MinistryId, RuleId};

/// SplitMix64: small, seeded, good enough to generate test cases.
pub(crate) struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 > 1.0 - p
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    fn some<T: Copy>(&mut self, items: &[T], max: u64) -> Vec<T> {
        (0..=self.below(max)).map(|_| *self.pick(items)).collect()
    }
}

pub(crate) const NAMES: [&str; 9] = [
    "a.example",
    "www.a.example",
    "x.www.a.example",
    "nota.example",
    "b.example",
    "cdn.b.example",
    "c.test",
    "d.c.test",
    "example",
];
pub(crate) const IPS: [&str; 5] = [
    "192.0.2.1",
    "192.0.2.200",
    "198.51.100.7",
    "2001:db8::1",
    "2001:db8:1::5",
];
pub(crate) const PORTS: [u16; 3] = [80, 443, 8080];
pub(crate) const PATHS: [Option<&str>; 9] = [
    None,
    Some("/"),
    Some("/a"),
    Some("/a/b/c"),
    Some("/b?x=1"),
    Some("/./a"),
    Some("*"),
    Some(""),
    Some("/ab"),
];
const NETS: [&str; 6] = [
    "192.0.2.0/24",
    "192.0.2.1/32",
    "0.0.0.0/0",
    "2001:db8::/32",
    "198.51.100.0/25",
    "::ffff:192.0.2.0/120",
];
const PREFIXES: [&str; 4] = ["/", "/a", "/a/b", "/b"];
const ANCHORS: [&str; 3] = [
    "2026-03-08T07:00:00Z",
    "2026-11-01T06:00:00Z",
    "2026-06-15T12:00:00Z",
];
const ZONES: [Tz; 3] = [
    chrono_tz::America::Toronto,
    Tz::UTC,
    chrono_tz::Australia::Lord_Howe,
];
const MINUTES: [u16; 6] = [0, 90, 150, 8 * 60, 18 * 60, 22 * 60];

/// An instant within two days of a DST change (or of a summer day).
pub(crate) fn instant(rng: &mut Rng) -> DateTime<Utc> {
    at(rng.pick::<&str>(&ANCHORS)) + TimeDelta::seconds(rng.below(4 * 86_400) as i64 - 2 * 86_400)
}

fn selectors(rng: &mut Rng) -> Selectors {
    let mut s = Selectors::default();
    for _ in 0..=rng.below(2) {
        match rng.below(7) {
            0 => s.domains = rng.some(&NAMES, 2).into_iter().map(Box::from).collect(),
            1 => {
                s.hosts = rng
                    .some(&NAMES, 2)
                    .iter()
                    .chain(&rng.some(&IPS, 1))
                    .map(|h| host(h))
                    .collect()
            }
            2 => {
                s.categories = rng
                    .some(&["c0", "c1", "c2"], 1)
                    .into_iter()
                    .map(Box::from)
                    .collect()
            }
            3 => {
                let entries: Vec<String> = (0..=rng.below(2))
                    .map(|_| format!("{}{}", rng.pick(&NAMES), rng.pick(&PREFIXES)))
                    .collect();
                s.urls = urls(&entries.iter().map(String::as_str).collect::<Vec<_>>()).urls;
            }
            4 => s.destinations = destinations(&rng.some(&NETS, 1)).destinations,
            5 => s.ports = rng.some(&PORTS, 1),
            _ => {}
        }
    }
    s
}

fn activity(rng: &mut Rng) -> Activity {
    let mut a = Activity::default();
    if rng.chance(0.25) {
        a.expires = Some(instant(rng));
    }
    if rng.chance(0.3) {
        let mut days = [false; 7];
        days.iter_mut().for_each(|d| *d = rng.chance(0.6));
        a.schedule = Some(Schedule {
            days,
            start_minute: *rng.pick(&MINUTES),
            end_minute: *rng.pick(&MINUTES),
            timezone: *rng.pick(&ZONES),
        });
    }
    a
}

fn rules(rng: &mut Rng, stem: &str, max: u64) -> Vec<Rule> {
    (0..rng.below(max + 1))
        .map(|i| {
            let action = *rng.pick(&[Action::Allow, Action::Block]);
            let mut r = rule(stem, &format!("r{i}"), action, selectors(rng));
            r.activity = activity(rng);
            r
        })
        .collect()
}

/// A random policy over a small universe of names, IPs, categories, ports and times.
pub(crate) fn policy(rng: &mut Rng) -> Policy {
    let actions = [Action::Allow, Action::Block];
    let o = org(
        rules(rng, "_organization", 3),
        rules(rng, "_organization", 3),
        *rng.pick(&actions),
    );
    let ministries = (0..=rng.below(2))
        .map(|i| {
            let mode = *rng.pick(&[Mode::Enforce, Mode::Report]);
            let default = *rng.pick(&[None, Some(Action::Allow), Some(Action::Block)]);
            ministry(
                &format!("m{i}"),
                mode,
                default,
                rules(rng, &format!("m{i}"), 5),
            )
        })
        .collect();
    let cats = (0..3)
        .map(|i| category(&format!("c{i}"), &rng.some(&NAMES, 2)))
        .collect();
    Policy::compile(&set(o, ministries, cats))
}

/// A random request against `p`.
pub(crate) fn query(rng: &mut Rng, p: &Policy) -> (MinistryId, Host, u16, Option<&'static str>) {
    let m = rng.below(p.ministries().count() as u64) as MinistryId;
    let h = if rng.chance(0.7) {
        host(rng.pick::<&str>(&NAMES))
    } else {
        host(rng.pick::<&str>(&IPS))
    };
    (m, h, *rng.pick(&PORTS), *rng.pick(&PATHS))
}

#[test]
fn decide_agrees_with_the_naive_walk() {
    let mut rng = Rng::new(42);
    for _ in 0..300 {
        let p = policy(&mut rng);
        for _ in 0..40 {
            let (m, h, port, path) = query(&mut rng, &p);
            let now = instant(&mut rng);
            let v = p.decide(m, &h, port, path, now);
            let e = p.explain(m, &h, port, path, now);
            assert_eq!(v, e.verdict, "{h} {port} {path:?} {now}: {e:#?}");
            assert_eq!(e.walk.iter().filter(|s| s.decided).count(), 1);
        }
    }
}

#[test]
fn host_verdicts_hold_until_valid_until() {
    let mut rng = Rng::new(4242);
    for _ in 0..200 {
        let p = policy(&mut rng);
        for _ in 0..20 {
            let (m, h, port, _) = query(&mut rng, &p);
            let now = instant(&mut rng);
            let hv: HostVerdict = p.decide_host(m, &h, port, now);
            let span = (hv.valid_until() - now)
                .min(TimeDelta::days(8))
                .num_seconds()
                .max(1);
            for _ in 0..8 {
                let t = now + TimeDelta::seconds(rng.below(span as u64) as i64);
                for path in PATHS {
                    let want = p.decide(m, &h, port, path, t);
                    assert_eq!(
                        hv.finish(&p, path),
                        want,
                        "{h}:{port} {path:?} at {t}, from {now}"
                    );
                }
            }
        }
    }
}

/// `check_resolved`, by definition: the first rule in evaluation order that is an active block
/// with a destination containing an address and admitting the port.
fn naive_check_resolved(
    p: &Policy,
    m: MinistryId,
    addrs: &[IpAddr],
    port: u16,
    now: DateTime<Utc>,
) -> Option<RuleId> {
    let walk = p.explain(m, &host("unused.invalid"), port, None, now).walk;
    walk.iter().map(|s| s.rule).find(|id| {
        let r = p.rule(*id);
        let nets = &r.selectors().destinations;
        r.action == Action::Block
            && r.activity().is_active(now)
            && (r.selectors().ports.is_empty() || r.selectors().ports.contains(&port))
            && addrs.iter().any(|a| {
                nets.iter().any(|n| {
                    crate::policy::model::canonical_net(*n)
                        .contains(&crate::policy::host::canonical_ip(*a))
                })
            })
    })
}

#[test]
fn check_resolved_agrees_with_a_naive_scan() {
    let mut rng = Rng::new(99);
    let addrs: Vec<IpAddr> = IPS
        .iter()
        .chain(&["::ffff:192.0.2.9", "203.0.113.1"])
        .map(|a| a.parse().unwrap())
        .collect();
    for _ in 0..300 {
        let p = policy(&mut rng);
        for _ in 0..20 {
            let m = rng.below(p.ministries().count() as u64) as MinistryId;
            let resolved = rng.some(&addrs, 2);
            let (port, now) = (*rng.pick(&PORTS), instant(&mut rng));
            let got = p.check_resolved(m, &resolved, port, now).map(|v| v.rule);
            assert_eq!(
                got,
                naive_check_resolved(&p, m, &resolved, port, now),
                "{resolved:?}:{port} {now}"
            );
        }
    }
}
