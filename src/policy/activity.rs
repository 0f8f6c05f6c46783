//! When a rule is active: `expires:` and weekly `schedule:` windows, and — for the decision
//! cache — the next instant at which a rule's activity can change.
//!
//! # Semantics
//! - `expires` is an exclusive instant: the rule is active while `now < expires`.
//! - A schedule is evaluated on the *wall clock* of its time zone: the rule is active when the
//!   local date-time of `now` lies in `[start, start + length)` of a window that opens on one of
//!   the schedule's days. `length` is `end - start`, or `end + 24h - start` when `end <= start`
//!   (the window crosses midnight and belongs to the day it starts on; `22:00-22:00` is 24 h).
//! - DST follows from the wall clock: a window `01:00-03:00` lasts one real hour on the
//!   spring-forward day and three on the fall-back day; a window opening inside a skipped hour
//!   opens at the first instant after the jump.
//!
//! # Next change
//! Activity is a step function of time whose steps can only be at a window boundary (each
//! boundary wall time maps to zero, one or two instants) or at a DST jump that skips or repeats a
//! boundary. [`Schedule::next_change`] collects those instants for the days around `now`, sorts
//! them and returns the first at which activity differs from now. It looks at most
//! [`HORIZON_DAYS`] ahead and answers the horizon when nothing changes before it: a conservative
//! re-check point, never a missed change.

use chrono::{DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset};
use chrono::{TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;

use super::model::{Activity, Schedule};

/// How far ahead [`Schedule::next_change`] looks.
pub const HORIZON_DAYS: i64 = 7;

const DAY_MINUTES: i64 = 24 * 60;

/// Whether a rule is active at an instant and when that may next change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActivityState {
    pub active: bool,
    /// The first instant after `now` at which `active` may differ; `None` when it never will.
    pub next_change: Option<DateTime<Utc>>,
}

impl ActivityState {
    pub const ALWAYS: ActivityState = ActivityState {
        active: true,
        next_change: None,
    };
}

impl Activity {
    /// True for a rule without `expires` or `schedule` (the common, cheap case).
    pub fn is_always(&self) -> bool {
        self.expires.is_none() && self.schedule.is_none()
    }

    /// Whether the rule is active at `now` (straightforward; the explain walk uses this).
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.expires.is_none_or(|e| now < e)
            && self.schedule.as_ref().is_none_or(|s| s.contains(now))
    }

    /// Activity at `now` and its next change (expiry or schedule).
    pub fn state(&self, now: DateTime<Utc>) -> ActivityState {
        if self.is_always() {
            return ActivityState::ALWAYS;
        }
        if self.expires.is_some_and(|e| now >= e) {
            // Expired is final.
            return ActivityState {
                active: false,
                next_change: None,
            };
        }
        let (active, opens_or_closes) = match &self.schedule {
            None => (true, None),
            Some(s) => (s.contains(now), s.next_change(now)),
        };
        let next_change = if active {
            min_option(self.expires, opens_or_closes)
        } else {
            // Closed now: only an opening before expiry is a change.
            opens_or_closes.filter(|t| self.expires.is_none_or(|e| *t < e))
        };
        ActivityState {
            active,
            next_change,
        }
    }
}

fn min_option(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Schedule {
    /// Window length in minutes: 1..=1440.
    fn length_minutes(&self) -> i64 {
        match (i64::from(self.end_minute) - i64::from(self.start_minute)).rem_euclid(DAY_MINUTES) {
            0 => DAY_MINUTES,
            len => len,
        }
    }

    fn opens_on(&self, day: NaiveDate) -> bool {
        self.days[day.weekday().num_days_from_monday() as usize]
    }

    fn start_on(&self, day: NaiveDate) -> NaiveDateTime {
        day.and_time(NaiveTime::MIN) + TimeDelta::minutes(i64::from(self.start_minute))
    }

    /// Wall-clock membership: is the local date-time `t` inside a window?
    pub fn contains_local(&self, t: NaiveDateTime) -> bool {
        let len = TimeDelta::minutes(self.length_minutes());
        // A window is at most 24 h long, so only today's and yesterday's can cover `t`.
        [Some(t.date()), t.date().pred_opt()]
            .into_iter()
            .flatten()
            .filter(|d| self.opens_on(*d))
            .map(|d| self.start_on(d))
            .any(|start| start <= t && t < start + len)
    }

    /// Whether `now` is inside a window, on the schedule's wall clock.
    pub fn contains(&self, now: DateTime<Utc>) -> bool {
        self.contains_local(now.with_timezone(&self.timezone).naive_local())
    }

    /// True when the schedule is never or always open, whatever the time.
    fn is_constant(&self) -> bool {
        !self.days.contains(&true)
            || (!self.days.contains(&false) && self.length_minutes() == DAY_MINUTES)
    }

    /// The first instant after `now` at which [`Schedule::contains`] differs from its value at
    /// `now`; `None` when it never changes; at most `now + HORIZON_DAYS` (see module docs).
    pub fn next_change(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.is_constant() {
            return None;
        }
        let current = self.contains(now);
        let horizon = now + TimeDelta::days(HORIZON_DAYS);
        let mut candidates = self.boundary_instants(now);
        candidates.retain(|t| *t > now && *t < horizon);
        candidates.sort_unstable();
        let change = candidates
            .into_iter()
            .find(|t| self.contains(*t) != current);
        Some(change.unwrap_or(horizon))
    }

    /// Every instant at which a window boundary near `now` is crossed on the wall clock.
    fn boundary_instants(&self, now: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let today = now.with_timezone(&self.timezone).date_naive();
        let len = TimeDelta::minutes(self.length_minutes());
        let mut out = Vec::with_capacity(32);
        // Two days back (a window from the day before yesterday can end today around a DST
        // fold), and far enough ahead that every boundary before the horizon is seen.
        for offset in -2..=HORIZON_DAYS + 1 {
            let day = today + TimeDelta::days(offset);
            if self.opens_on(day) {
                let start = self.start_on(day);
                push_crossings(self.timezone, start, &mut out);
                push_crossings(self.timezone, start + len, &mut out);
            }
        }
        out
    }
}

/// The instants at which the wall clock of `tz` reaches or jumps over `wall`.
fn push_crossings(tz: Tz, wall: NaiveDateTime, out: &mut Vec<DateTime<Utc>>) {
    match tz.from_local_datetime(&wall) {
        LocalResult::Single(t) => out.push(t.to_utc()),
        LocalResult::Ambiguous(a, b) => {
            // A fold: the wall clock passes `wall` twice and jumps back in between.
            let (a, b) = (a.to_utc(), b.to_utc());
            out.extend([a, b, fold_instant(tz, a, b)]);
        }
        // A gap: the wall clock jumps over `wall`; the crossing is the jump.
        LocalResult::None => out.push(first_at_or_after(tz, wall)),
    }
}

fn offset_at(tz: Tz, t: DateTime<Utc>) -> i32 {
    tz.offset_from_utc_datetime(&t.naive_utc())
        .fix()
        .local_minus_utc()
}

/// The instant in `(a, b]` at which the offset changes to `b`'s (the clock jumps back).
fn fold_instant(tz: Tz, a: DateTime<Utc>, b: DateTime<Utc>) -> DateTime<Utc> {
    let target = offset_at(tz, b);
    first_second(a.timestamp(), b.timestamp(), |s| offset_at(tz, s) == target)
}

/// The first instant whose wall time is at or after `wall` (the end of the gap it falls in).
fn first_at_or_after(tz: Tz, wall: NaiveDateTime) -> DateTime<Utc> {
    // Real offsets are within ±26 h, so these bracket the answer.
    let guess = wall.and_utc().timestamp();
    let day = 26 * 3600;
    first_second(guess - day, guess + day, |s| {
        s.with_timezone(&tz).naive_local() >= wall
    })
}

/// Binary search over whole seconds in `(lo, hi]` for the first `s` with `pred(s)`, where
/// `pred` is false at `lo`, true at `hi` and monotone in between.
fn first_second(mut lo: i64, mut hi: i64, pred: impl Fn(DateTime<Utc>) -> bool) -> DateTime<Utc> {
    let at = |s: i64| DateTime::from_timestamp(s, 0).unwrap_or(DateTime::<Utc>::MAX_UTC);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if pred(at(mid)) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    at(hi)
}
