//! Expiry, schedules across midnight and DST, and the next-change computation (checked against
//! a minute-by-minute scan). Fixed instants only.

use chrono::{TimeDelta, Timelike};
use chrono_tz::Tz;

use super::random::Rng;
use super::*;
use crate::policy::model::Action::{Allow, Block};
use crate::policy::model::{Activity, Schedule};
use crate::policy::{ActivityState, HORIZON_DAYS};

const TORONTO: Tz = chrono_tz::America::Toronto;

/// `days` like "mon,tue" ("" = every day), `hours` like "22:00-02:00".
fn sched(days: &str, hours: &str, tz: Tz) -> Schedule {
    const NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let mut set = [days.is_empty(); 7];
    for d in days.split(',').filter(|d| !d.is_empty()) {
        set[NAMES.iter().position(|n| *n == d).unwrap()] = true;
    }
    let minute = |hm: &str| {
        let (h, m) = hm.split_once(':').unwrap();
        h.parse::<u16>().unwrap() * 60 + m.parse::<u16>().unwrap()
    };
    let (start, end) = hours.split_once('-').unwrap();
    Schedule {
        days: set,
        start_minute: minute(start),
        end_minute: minute(end),
        timezone: tz,
    }
}

#[test]
fn expiry_is_an_exclusive_instant() {
    let a = Activity {
        expires: Some(at("2026-06-01T00:00:00Z")),
        schedule: None,
    };
    assert!(a.is_active(at("2026-05-31T23:59:59.999Z")));
    assert!(!a.is_active(at("2026-06-01T00:00:00Z")));
    let state = a.state(at("2026-05-01T00:00:00Z"));
    assert_eq!(state.next_change, Some(at("2026-06-01T00:00:00Z")));
    let gone = a.state(at("2026-06-01T00:00:00Z"));
    assert_eq!(
        gone,
        ActivityState {
            active: false,
            next_change: None
        }
    );
    // End to end: an expired exception no longer matches.
    let mut r = rule("m", "temp", Allow, domains(&["x.example"]));
    r.activity = a;
    let p = Policy::compile(&set(
        org(vec![], vec![], Block),
        vec![ministry("m", Default::default(), None, vec![r])],
        vec![],
    ));
    assert_eq!(
        &*decide(&p, "m", "https://x.example", at("2026-05-31T23:59:59Z")).1,
        "m/temp"
    );
    assert_eq!(
        &*decide(&p, "m", "https://x.example", at("2026-06-01T00:00:00Z")).1,
        "_organization/_default"
    );
}

/// (schedule, instant, inside?, next change from that instant)
type Case<'a> = (&'a Schedule, &'a str, bool, &'a str);

fn run(cases: &[Case]) {
    for (s, now, inside, next) in cases {
        let now = at(now);
        assert_eq!(s.contains(now), *inside, "contains {now} {s:?}");
        assert_eq!(
            s.next_change(now),
            Some(at(next)),
            "next change {now} {s:?}"
        );
    }
}

#[test]
fn windows_cross_midnight_and_belong_to_their_start_day() {
    // 2026-05-01 is a Friday; Toronto is UTC-4 in May.
    let fri = sched("fri", "22:00-02:00", TORONTO);
    run(&[
        (
            &fri,
            "2026-05-01T21:59:00-04:00",
            false,
            "2026-05-01T22:00:00-04:00",
        ),
        (
            &fri,
            "2026-05-01T22:00:00-04:00",
            true,
            "2026-05-02T02:00:00-04:00",
        ),
        (
            &fri,
            "2026-05-02T01:00:00-04:00",
            true,
            "2026-05-02T02:00:00-04:00",
        ),
        (
            &fri,
            "2026-05-02T02:00:00-04:00",
            false,
            "2026-05-08T22:00:00-04:00",
        ),
        (
            &fri,
            "2026-05-02T03:00:00-04:00",
            false,
            "2026-05-08T22:00:00-04:00",
        ),
        (
            &fri,
            "2026-05-02T22:30:00-04:00",
            false,
            "2026-05-08T22:00:00-04:00",
        ),
    ]);
    let office = sched("mon,tue,wed,thu,fri", "08:00-18:00", TORONTO);
    run(&[
        (
            &office,
            "2026-05-01T17:00:00-04:00",
            true,
            "2026-05-01T18:00:00-04:00",
        ),
        (
            &office,
            "2026-05-01T18:00:00-04:00",
            false,
            "2026-05-04T08:00:00-04:00",
        ),
    ]);
}

#[test]
fn spring_forward_in_toronto() {
    // 2026-03-08: 02:00 EST (07:00Z) jumps to 03:00 EDT.
    let night = sched("sun", "01:00-03:00", TORONTO);
    let in_gap = sched("sun", "02:30-04:00", TORONTO);
    let daily = sched("", "08:00-18:00", TORONTO);
    run(&[
        (
            &night,
            "2026-03-08T05:00:00Z",
            false,
            "2026-03-08T06:00:00Z",
        ),
        (&night, "2026-03-08T06:30:00Z", true, "2026-03-08T07:00:00Z"),
        (&night, "2026-03-08T06:59:59Z", true, "2026-03-08T07:00:00Z"),
        // A window opening inside the skipped hour opens at the jump.
        (
            &in_gap,
            "2026-03-08T06:00:00Z",
            false,
            "2026-03-08T07:00:00Z",
        ),
        (
            &in_gap,
            "2026-03-08T07:00:00Z",
            true,
            "2026-03-08T08:00:00Z",
        ),
        (
            &daily,
            "2026-03-07T23:00:00Z",
            false,
            "2026-03-08T12:00:00Z",
        ),
        (&daily, "2026-03-08T12:00:00Z", true, "2026-03-08T22:00:00Z"),
    ]);
}

#[test]
fn fall_back_in_toronto() {
    // 2026-11-01: 02:00 EDT (06:00Z) falls back to 01:00 EST; 01:00-02:00 happens twice.
    let night = sched("sun", "01:00-03:00", TORONTO);
    let folded = sched("sun", "00:00-01:30", TORONTO);
    let saturday = sched("sat", "22:00-02:00", TORONTO);
    run(&[
        (&night, "2026-11-01T05:30:00Z", true, "2026-11-01T08:00:00Z"),
        (&night, "2026-11-01T06:30:00Z", true, "2026-11-01T08:00:00Z"),
        // The wall clock passes 01:30 twice: the window closes, reopens at the fold, closes.
        (
            &folded,
            "2026-11-01T04:00:00Z",
            true,
            "2026-11-01T05:30:00Z",
        ),
        (
            &folded,
            "2026-11-01T05:45:00Z",
            false,
            "2026-11-01T06:00:00Z",
        ),
        (
            &folded,
            "2026-11-01T06:00:00Z",
            true,
            "2026-11-01T06:30:00Z",
        ),
        (
            &saturday,
            "2026-11-01T02:00:00Z",
            true,
            "2026-11-01T07:00:00Z",
        ),
    ]);
}

#[test]
fn expiry_and_schedule_combine() {
    let office = sched("", "08:00-18:00", Tz::UTC);
    let both = |expires| Activity {
        expires: Some(at(expires)),
        schedule: Some(office.clone()),
    };
    let s = both("2026-05-01T15:00:00Z").state(at("2026-05-01T12:00:00Z"));
    assert_eq!(
        s,
        ActivityState {
            active: true,
            next_change: Some(at("2026-05-01T15:00:00Z"))
        }
    );
    // Closed now and expired before the next opening: never active again.
    let s = both("2026-05-01T07:30:00Z").state(at("2026-05-01T07:00:00Z"));
    assert_eq!(
        s,
        ActivityState {
            active: false,
            next_change: None
        }
    );
    let s = both("2026-05-02T00:00:00Z").state(at("2026-05-01T07:00:00Z"));
    assert_eq!(
        s,
        ActivityState {
            active: false,
            next_change: Some(at("2026-05-01T08:00:00Z"))
        }
    );
}

#[test]
fn constant_schedules_never_change() {
    let now = at("2026-11-01T05:30:00Z");
    let always = sched("", "07:00-07:00", TORONTO);
    assert!(always.contains(now));
    assert_eq!(always.next_change(now), None);
    let never = Schedule {
        days: [false; 7],
        ..always
    };
    assert!(!never.contains(now));
    assert_eq!(never.next_change(now), None);
}

/// Activity is constant on `[now, next)` (sampled each minute) and differs at `next`; returns
/// `next`.
fn check_against_scan(s: &Schedule, now: DateTime<Utc>) -> DateTime<Utc> {
    let current = s.contains(now);
    let horizon = now + TimeDelta::days(HORIZON_DAYS);
    let next = s.next_change(now).unwrap_or(horizon);
    assert!(next > now && next <= horizon);
    let mut t = now.with_second(0).unwrap().with_nanosecond(0).unwrap() + TimeDelta::minutes(1);
    while t < next {
        assert_eq!(
            s.contains(t),
            current,
            "changed at {t} before {next}, from {now}: {s:?}"
        );
        t += TimeDelta::minutes(1);
    }
    if next < horizon {
        assert_ne!(
            s.contains(next),
            current,
            "no change at {next} from {now}: {s:?}"
        );
    }
    next
}

#[test]
fn next_change_agrees_with_a_minute_scan() {
    use chrono_tz::{Asia::Kolkata, Australia::Lord_Howe, Europe::London};
    // Each zone with the instants of its 2026 DST changes (Lord Howe moves by 30 minutes).
    let changes = [
        (TORONTO, "2026-03-08T07:00:00Z"),
        (TORONTO, "2026-11-01T06:00:00Z"),
        (Lord_Howe, "2026-04-04T15:00:00Z"),
        (Lord_Howe, "2026-10-03T15:30:00Z"),
        (London, "2026-03-29T01:00:00Z"),
        (London, "2026-10-25T01:00:00Z"),
        (Kolkata, "2026-03-08T07:00:00Z"),
        (Tz::UTC, "2026-11-01T06:00:00Z"),
    ];
    // Boundaries inside and around the skipped or repeated hours, and ordinary ones.
    let minutes = [
        0,
        45,
        60,
        75,
        90,
        105,
        120,
        135,
        150,
        165,
        180,
        8 * 60,
        22 * 60,
    ];
    let mut rng = Rng::new(7);
    for _ in 0..600 {
        let (timezone, change) = *rng.pick(&changes);
        let mut days = [false; 7];
        days.iter_mut().for_each(|d| *d = rng.chance(0.6));
        let s = Schedule {
            days,
            start_minute: *rng.pick(&minutes),
            end_minute: *rng.pick(&minutes),
            timezone,
        };
        // Follow the changes across a day each side of the DST change.
        let mut t = at(change) - TimeDelta::seconds(86_400 + rng.below(3600) as i64);
        while t < at(change) + TimeDelta::days(1) {
            t = check_against_scan(&s, t);
        }
    }
}
