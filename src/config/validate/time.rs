//! Time values: time zones, `expires:` (a date that ends at the next local midnight, or an
//! RFC 3339 instant), `schedule.days`/`schedule.hours`, and the `at:` of test cases.

use std::str::FromStr;

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::{Tz, TZ_VARIANTS};

use crate::config::error::{closest, Problem};

pub fn timezone(raw: &str) -> Result<Tz, Problem> {
    if let Ok(tz) = Tz::from_str(raw) {
        return Ok(tz);
    }
    let names = TZ_VARIANTS.iter().map(|t| t.name());
    let hint = match names.clone().find(|n| n.eq_ignore_ascii_case(raw)) {
        Some(exact) => format!("; did you mean `{exact}`?"),
        None => match closest(raw, names) {
            Some(near) => format!("; did you mean `{near}`?"),
            None => "; expected an IANA name such as `UTC` or `America/Toronto`".to_owned(),
        },
    };
    Err(Problem::UnknownTimeZone {
        value: raw.to_owned(),
        hint,
    })
}

/// `expires:` as the first instant at which the rule no longer matches. A date means the
/// rule lives through that whole day in `tz`, so it ends at the start of the next local day.
pub fn expires(raw: &str, tz: Tz) -> Result<DateTime<Utc>, Problem> {
    let bad = || Problem::BadExpires {
        value: raw.to_owned(),
    };
    if let Ok(date) = NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        let next = date.succ_opt().ok_or_else(bad)?;
        return Ok(start_of_day(next, tz));
    }
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| bad())
}

/// Local midnight of `date` in `tz`; where a DST jump skips midnight, the first instant of the
/// day that exists.
fn start_of_day(date: NaiveDate, tz: Tz) -> DateTime<Utc> {
    let midnight = date.and_time(NaiveTime::MIN);
    (0..=24 * 4)
        .map(|quarter| midnight + Duration::minutes(15 * quarter))
        .find_map(|t| tz.from_local_datetime(&t).earliest())
        .map(|t| t.with_timezone(&Utc))
        // No zone skips a whole day; fall back to reading the date as UTC.
        .unwrap_or_else(|| Utc.from_utc_datetime(&midnight))
}

/// `at:` of a test case: an RFC 3339 date-time.
pub fn instant(raw: &str) -> Result<DateTime<Utc>, Problem> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| Problem::BadInstant {
            value: raw.to_owned(),
        })
}

/// One `days:` entry, Monday = 0. Accepts `mon` … `sun` and full names, any case.
pub fn day(raw: &str) -> Result<usize, Problem> {
    const DAYS: [&str; 7] = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];
    let lower = raw.to_ascii_lowercase();
    DAYS.iter()
        .position(|d| {
            lower.len() >= 3 && d.starts_with(&lower) && (lower.len() == 3 || lower == *d)
        })
        .ok_or_else(|| Problem::BadDay {
            value: raw.to_owned(),
        })
}

/// `hours: "HH:MM-HH:MM"` as minutes after midnight. `24:00` is accepted as an end and stored
/// as `0` (an end at or before the start crosses midnight, so `18:00-24:00` ends at midnight).
pub fn hours(raw: &str) -> Result<(u16, u16), Problem> {
    let bad = || Problem::BadHours {
        value: raw.to_owned(),
    };
    let (start, end) = raw.split_once('-').ok_or_else(bad)?;
    let start = clock(start.trim(), false).ok_or_else(bad)?;
    let end = clock(end.trim(), true).ok_or_else(bad)?;
    Ok((start, end % (24 * 60)))
}

fn clock(raw: &str, allow_24: bool) -> Option<u16> {
    let (h, m) = raw.split_once(':')?;
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !(all_digits(h) && h.len() <= 2 && all_digits(m) && m.len() == 2) {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    match (h, m) {
        (24, 0) if allow_24 => Some(24 * 60),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn expires_date_ends_at_next_local_midnight() {
        let toronto = timezone("America/Toronto").unwrap();
        assert_eq!(
            expires("2027-03-31", toronto).unwrap(),
            utc("2027-04-01T00:00:00-04:00")
        );
        assert_eq!(
            expires("2027-12-31", Tz::UTC).unwrap(),
            utc("2028-01-01T00:00:00Z")
        );
        assert_eq!(
            expires("2027-03-31T18:00:00-05:00", Tz::UTC).unwrap(),
            utc("2027-03-31T23:00:00Z")
        );
        for bad in ["2027-02-30", "31/03/2027", "2027-03-31 18:00", "tomorrow"] {
            assert!(expires(bad, Tz::UTC).is_err(), "{bad}");
        }
    }

    #[test]
    fn expires_skips_a_missing_midnight() {
        // Santiago moved clocks from 00:00 to 01:00 on 2022-09-11.
        let santiago = timezone("America/Santiago").unwrap();
        assert_eq!(
            expires("2022-09-10", santiago).unwrap(),
            utc("2022-09-11T01:00:00-03:00")
        );
    }

    #[test]
    fn time_zones_with_hints() {
        assert_eq!(timezone("UTC").unwrap(), Tz::UTC);
        let e = timezone("america/toronto").unwrap_err().to_string();
        assert!(e.ends_with("did you mean `America/Toronto`?"), "{e}");
        let e = timezone("America/Toronot").unwrap_err().to_string();
        assert!(e.ends_with("did you mean `America/Toronto`?"), "{e}");
        assert!(timezone("Mars/Olympus").is_err());
    }

    #[test]
    fn schedule_days() {
        assert_eq!(day("mon"), Ok(0));
        assert_eq!(day("Sunday"), Ok(6));
        assert_eq!(day("FRI"), Ok(4));
        assert!(day("mo").is_err());
        assert!(day("mond").is_err());
        assert!(day("funday").is_err());
    }

    #[test]
    fn schedule_hours() {
        assert_eq!(hours("08:00-18:00"), Ok((480, 1080)));
        assert_eq!(hours("8:30 - 17:45"), Ok((510, 1065)));
        assert_eq!(hours("22:00-02:00"), Ok((1320, 120)));
        assert_eq!(hours("18:00-24:00"), Ok((1080, 0)));
        assert_eq!(hours("00:00-24:00"), Ok((0, 0)));
        for bad in [
            "8-18",
            "24:00-01:00",
            "08:60-09:00",
            "08:00",
            "08:00-",
            "0800-1800",
            "08:00-18:00-19:00",
        ] {
            assert!(hours(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn test_instants() {
        assert_eq!(
            instant("2026-12-01T10:00:00-05:00").unwrap(),
            utc("2026-12-01T15:00:00Z")
        );
        assert!(instant("2026-12-01").is_err());
    }
}
