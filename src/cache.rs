//! The bounded decision cache: `(ministry, host, port)` → [`HostVerdict`], shared by every
//! connection. One cache belongs to one compiled [`Policy`] (it lives in the same snapshot), so
//! a reload starts a new, empty cache by construction.
//!
//! - **Correctness.** An entry is used only while [`HostVerdict::is_valid_at`] holds; the policy
//!   computes `valid_until` so that a cached verdict is exactly what `Policy::decide` would
//!   answer (see `policy::decide`). An entry past its validity is recomputed and replaced.
//! - **Concurrency.** A `DashMap` guard is held only for the lookup itself: on a hit the entry is
//!   cloned (no allocation: plain data plus, rarely, an `Arc` bump) and the guard dropped before
//!   the path is applied. Misses compute outside any guard. The lookup key is borrowed, so a hit
//!   does not clone the host.
//! - **Bound.** `DashMap` never evicts. When an insert finds the cache full, one thread (the
//!   others skip caching meanwhile) runs a single `retain` pass that drops expired entries and
//!   every other live entry until half the capacity is free: O(n) once per ~n/2 inserts, so
//!   amortised O(1) per insert. Which live entries go is arbitrary (shard order); a hot entry
//!   dropped comes back on its next miss. `max_entries == 0` disables caching.
//! - **Size.** `len()` reads an atomic counter (dashmap's `len` locks every shard).

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};

use chrono::{DateTime, Utc};
use dashmap::DashMap;

use crate::policy::host::Host;
use crate::policy::{HostVerdict, MinistryId, Policy, Verdict};

/// The owned key stored in the map.
struct Key {
    ministry: MinistryId,
    host: Host,
    port: u16,
}

/// A view of a key, so a lookup can use a borrowed host (`(MinistryId, &Host, u16)`).
trait KeyView {
    fn view(&self) -> (MinistryId, &Host, u16);
}

impl KeyView for Key {
    fn view(&self) -> (MinistryId, &Host, u16) {
        (self.ministry, &self.host, self.port)
    }
}

impl KeyView for (MinistryId, &Host, u16) {
    fn view(&self) -> (MinistryId, &Host, u16) {
        *self
    }
}

impl<'a> Borrow<dyn KeyView + 'a> for Key {
    fn borrow(&self) -> &(dyn KeyView + 'a) {
        self
    }
}

// `Key` and `dyn KeyView` must hash and compare identically: both go through `view()`.
impl Hash for dyn KeyView + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.view().hash(state);
    }
}

impl PartialEq for dyn KeyView + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.view() == other.view()
    }
}

impl Eq for dyn KeyView + '_ {}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.view().hash(state);
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.view() == other.view()
    }
}

impl Eq for Key {}

/// See the module docs.
pub struct DecisionCache {
    map: DashMap<Key, HostVerdict>,
    /// Entries in `map`. Signed: an entry can be evicted before its insert is counted.
    len: AtomicIsize,
    max_entries: usize,
    /// Set while one thread evicts, so concurrent misses do not all sweep the map.
    evicting: AtomicBool,
}

impl DecisionCache {
    pub fn new(max_entries: usize) -> Self {
        DecisionCache {
            map: DashMap::new(),
            len: AtomicIsize::new(0),
            max_entries,
            evicting: AtomicBool::new(false),
        }
    }

    /// The verdict for this request and whether it came from the cache. `policy` must be the
    /// policy this cache belongs to.
    pub fn decide(
        &self,
        policy: &Policy,
        ministry: MinistryId,
        host: &Host,
        port: u16,
        path: Option<&str>,
        now: DateTime<Utc>,
    ) -> (Verdict, bool) {
        let (host_verdict, hit) = self.host_verdict(policy, ministry, host, port, now);
        (host_verdict.finish(policy, path), hit)
    }

    /// The verdict for the host before the path is applied ([`HostVerdict::finish`]), and
    /// whether it came from the cache: for a caller that keeps it while it stays valid.
    pub fn host_verdict(
        &self,
        policy: &Policy,
        ministry: MinistryId,
        host: &Host,
        port: u16,
        now: DateTime<Utc>,
    ) -> (HostVerdict, bool) {
        if let Some(hit) = self.lookup(ministry, host, port, now) {
            return (hit, true);
        }
        let computed = policy.decide_host(ministry, host, port, now);
        let key = Key {
            ministry,
            host: host.clone(),
            port,
        };
        self.store(key, computed.clone(), now);
        (computed, false)
    }

    /// Entries currently cached (O(1)).
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed).max(0) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A valid entry, cloned; the guard does not outlive this function.
    fn lookup(
        &self,
        ministry: MinistryId,
        host: &Host,
        port: u16,
        now: DateTime<Utc>,
    ) -> Option<HostVerdict> {
        let probe = (ministry, host, port);
        let entry = self.map.get(&probe as &dyn KeyView)?;
        entry.is_valid_at(now).then(|| entry.clone())
    }

    fn store(&self, key: Key, verdict: HostVerdict, now: DateTime<Utc>) {
        if self.len() >= self.max_entries {
            // Full (or disabled): make room, or skip caching this one.
            if self.max_entries == 0 || !self.evict(now) || self.len() >= self.max_entries {
                return;
            }
        }
        if self.map.insert(key, verdict).is_none() {
            self.len.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Frees at least half the capacity (see the module docs). False when another thread is
    /// already evicting.
    fn evict(&self, now: DateTime<Utc>) -> bool {
        if self.evicting.swap(true, Ordering::Acquire) {
            return false;
        }
        let need = self.len().saturating_sub(self.max_entries / 2);
        let (mut removed, mut seen) = (0usize, 0usize);
        self.map.retain(|_, v| {
            seen += 1;
            let drop = !v.is_valid_at(now) || (removed < need && seen % 2 == 1);
            removed += usize::from(drop);
            !drop
        });
        self.len.fetch_sub(removed as isize, Ordering::Relaxed);
        self.evicting.store(false, Ordering::Release);
        true
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;
    use crate::policy::model::Action::{Allow, Block};
    use crate::policy::model::{Mode, Schedule};
    use crate::policy::tests::random::{self, Rng};
    use crate::policy::tests::{at, domains, host, ministry, org, rule, set};

    /// `m` allows `office.example` during office hours (UTC), blocks everything else.
    fn office_policy() -> Policy {
        let mut office = rule("m", "office", Allow, domains(&["office.example"]));
        office.activity.schedule = Some(Schedule {
            days: [true; 7],
            start_minute: 8 * 60,
            end_minute: 18 * 60,
            timezone: chrono_tz::Tz::UTC,
        });
        let m = ministry("m", Mode::Enforce, None, vec![office]);
        Policy::compile(&set(org(vec![], vec![], Block), vec![m], vec![]))
    }

    #[test]
    fn shareable_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<DecisionCache>();
        send_sync::<Policy>();
        send_sync::<HostVerdict>();
    }

    #[test]
    fn hits_misses_and_valid_until() {
        let p = office_policy();
        let cache = DecisionCache::new(100);
        let h = host("www.office.example");
        let name = |v: Verdict| p.rule(v.rule).name.to_string();
        let ask = |t: &str| {
            let (v, hit) = cache.decide(&p, 0, &h, 443, None, at(t));
            (name(v), hit)
        };
        assert_eq!(ask("2026-05-01T09:00:00Z"), ("m/office".into(), false));
        assert_eq!(ask("2026-05-01T17:59:59Z"), ("m/office".into(), true));
        // The window closes at 18:00: the entry expires and is replaced.
        assert_eq!(
            ask("2026-05-01T18:00:00Z"),
            ("_organization/_default".into(), false)
        );
        assert_eq!(
            ask("2026-05-02T07:59:00Z"),
            ("_organization/_default".into(), true)
        );
        assert_eq!(ask("2026-05-02T08:00:00Z"), ("m/office".into(), false));
        // A clock stepped back is not served from an entry computed later.
        assert_eq!(
            ask("2026-05-01T19:00:00Z"),
            ("_organization/_default".into(), false)
        );
        assert_eq!(cache.len(), 1);
        // Other ports and hosts are other entries.
        assert!(
            !cache
                .decide(&p, 0, &h, 80, None, at("2026-05-01T19:00:00Z"))
                .1
        );
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn size_is_bounded() {
        let p = office_policy();
        let cache = DecisionCache::new(64);
        let now = at("2026-05-01T09:00:00Z");
        for i in 0..1000 {
            cache.decide(&p, 0, &host(&format!("h{i}.example")), 443, None, now);
            assert!(cache.len() <= 64, "{}", cache.len());
            assert_eq!(cache.len(), cache.map.len());
        }
        // Recently inserted entries are served.
        assert!(cache.decide(&p, 0, &host("h999.example"), 443, None, now).1);
        let off = DecisionCache::new(0);
        assert!(!off.decide(&p, 0, &host("x.example"), 443, None, now).1);
        assert!(off.is_empty());
    }

    #[test]
    fn cached_decide_equals_decide_and_explain() {
        let mut rng = Rng::new(2026);
        for _ in 0..150 {
            let p = random::policy(&mut rng);
            let cache = DecisionCache::new(32);
            let mut now = random::instant(&mut rng);
            for _ in 0..200 {
                // Mostly forward, sometimes a big jump either way.
                now += TimeDelta::minutes(rng.below(90) as i64);
                if rng.chance(0.05) {
                    now = random::instant(&mut rng);
                }
                let (m, h, port, path) = random::query(&mut rng, &p);
                let (cached, _) = cache.decide(&p, m, &h, port, path, now);
                assert_eq!(
                    cached,
                    p.decide(m, &h, port, path, now),
                    "{h}:{port} {path:?} {now}"
                );
                assert_eq!(cached, p.explain(m, &h, port, path, now).verdict);
            }
        }
    }
}
