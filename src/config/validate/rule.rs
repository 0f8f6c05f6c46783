//! One rule: raw YAML value → [`Rule`], reporting every bad field and selector entry with its
//! position, plus the warnings `egressd check` owes (expired or expiring rules, `urls:` block
//! rules that block whole hosts on tunnels).

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::report::{Report, Src};
use super::{time, values};
use crate::config::error::Problem;
use crate::config::raw::{RawRule, RawSchedule, Text};
use crate::config::yaml::{self, Seg, Value};
use crate::policy::model::{Action, Activity, Origin, Rule, Schedule, Selectors};

/// Rules expiring sooner than this are warned about.
const EXPIRY_WARNING_DAYS: i64 = 14;

/// What every rule of one file shares.
pub(crate) struct RuleCx<'a> {
    /// File stem: rule names are `stem/id`.
    pub stem: &'a str,
    /// The file as displayed, shared by every [`Origin`].
    pub file: Arc<str>,
    /// The organization's time zone: default for schedules, meaning of `expires:` dates.
    pub timezone: Tz,
    pub categories: &'a BTreeSet<String>,
    pub now: DateTime<Utc>,
}

/// Validates one rule at `src` (its mapping) whose first key is on `line` (0: unknown).
/// Returns `None` when anything is wrong; everything wrong has been reported.
pub(crate) fn rule(
    report: &mut Report,
    src: &Src<'_>,
    value: &Value,
    line: u32,
    cx: &RuleCx<'_>,
) -> Option<Rule> {
    let (raw, structural) = yaml::collect::<RawRule>(src.doc, &src.base, value);
    let complete = structural.is_empty();
    report.yaml(src, structural);
    let raw = raw?;
    let mut ok = complete;
    let id = raw.id.as_deref();
    match id.map(values::rule_id) {
        Some(Err(p)) => ok = report_false(report, src, &[Seg::key("id")], p),
        None if complete => {
            ok = report_false(
                report,
                src,
                &[],
                missing("id", "; every rule needs an `id:`"),
            )
        }
        _ => {}
    }
    let action = match raw.action.as_deref().map(values::action) {
        Some(Ok(a)) => Some(a),
        Some(Err(p)) => report_none(report, src, &[Seg::key("action")], p),
        None if complete => {
            report_none(report, src, &[], missing("action", ": `allow` or `block`"))
        }
        None => None,
    };
    let selectors = selectors(report, src, &raw, cx.categories);
    if complete && !has_selector(&raw) {
        report.error(src, &[], Problem::NoSelector);
        ok = false;
    }
    let activity = activity(report, src, &raw, cx);
    let (id, action, selectors, activity) = (id?, action?, selectors?, activity?);
    if !ok {
        return None;
    }
    if action == Action::Block && !selectors.urls.is_empty() {
        report.warn(src, &[Seg::key("urls")], Problem::UrlBlockOnTunnel);
    }
    expiry_warnings(report, src, id, &activity, cx.now);
    Some(Rule {
        id: id.into(),
        name: format!("{}/{id}", cx.stem).into(),
        action,
        selectors,
        reason: raw.reason.map(Into::into),
        ticket: raw.ticket.map(Into::into),
        activity,
        origin: Origin {
            file: cx.file.clone(),
            line,
        },
    })
}

fn missing(key: &'static str, hint: &'static str) -> Problem {
    Problem::Missing { key, hint }
}

/// Any selector written, even one whose entries are all invalid (those are reported already).
/// `ports:` alone counts: it means every host on those ports.
fn has_selector(raw: &RawRule) -> bool {
    let written = |list: &Option<Vec<Text>>| list.as_ref().is_some_and(|l| !l.is_empty());
    [
        &raw.domains,
        &raw.hosts,
        &raw.categories,
        &raw.urls,
        &raw.destinations,
    ]
    .into_iter()
    .any(written)
        || raw.ports.as_ref().is_some_and(|p| !p.is_empty())
}

/// Validates every entry of every selector list; `None` if any entry is bad.
fn selectors(
    report: &mut Report,
    src: &Src<'_>,
    raw: &RawRule,
    categories: &BTreeSet<String>,
) -> Option<Selectors> {
    let mut ok = true;
    let mut each = |key: &'static str,
                    list: &Option<Vec<Text>>,
                    report: &mut Report,
                    f: &mut dyn FnMut(&str) -> Result<(), Problem>| {
        for (i, entry) in list.iter().flatten().enumerate() {
            if let Err(p) = f(entry) {
                report.error(src, &[Seg::key(key), Seg::Index(i)], p);
                ok = false;
            }
        }
    };
    let mut s = Selectors::default();
    each("domains", &raw.domains, report, &mut |e| {
        values::domain(e).map(|d| s.domains.push(d))
    });
    each("hosts", &raw.hosts, report, &mut |e| {
        values::host(e, "host").map(|h| s.hosts.push(h))
    });
    each("urls", &raw.urls, report, &mut |e| {
        values::url_prefix(e).map(|u| s.urls.push(u))
    });
    each("categories", &raw.categories, report, &mut |e| {
        if !categories.contains(e) {
            return Err(unknown_category(e, categories));
        }
        s.categories.push(e.into());
        Ok(())
    });
    let mut host_bits = Vec::new();
    each("destinations", &raw.destinations, report, &mut |e| {
        let (net, has_host_bits) = values::cidr(e)?;
        if has_host_bits {
            host_bits.push((s.destinations.len(), e.to_owned(), net));
        }
        s.destinations.push(net);
        Ok(())
    });
    for (i, value, net) in host_bits {
        report.warn(
            src,
            &[Seg::key("destinations"), Seg::Index(i)],
            Problem::HostBitsSet {
                value,
                net: net.to_string(),
            },
        );
    }
    for (i, p) in raw.ports.iter().flatten().enumerate() {
        match values::port(*p) {
            Ok(p) => s.ports.push(p),
            Err(e) => {
                report.error(src, &[Seg::key("ports"), Seg::Index(i)], e);
                ok = false;
            }
        }
    }
    ok.then_some(s)
}

fn unknown_category(name: &str, known: &BTreeSet<String>) -> Problem {
    let known = match known.is_empty() {
        true => "none (the categories folder has no .yaml files)".to_owned(),
        false => known
            .iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", "),
    };
    Problem::UnknownCategory {
        name: name.to_owned(),
        known,
    }
}

fn activity(
    report: &mut Report,
    src: &Src<'_>,
    raw: &RawRule,
    cx: &RuleCx<'_>,
) -> Option<Activity> {
    let expires = match raw
        .expires
        .as_deref()
        .map(|e| time::expires(e, cx.timezone))
    {
        None => None,
        Some(Ok(t)) => Some(t),
        Some(Err(p)) => return report_none(report, src, &[Seg::key("expires")], p),
    };
    let schedule = match &raw.schedule {
        None => None,
        Some(s) => Some(schedule(
            report,
            &src.child(&[Seg::key("schedule")]),
            s,
            cx.timezone,
        )?),
    };
    Some(Activity { expires, schedule })
}

fn schedule(
    report: &mut Report,
    src: &Src<'_>,
    raw: &RawSchedule,
    default_tz: Tz,
) -> Option<Schedule> {
    let mut days = [raw.days.is_none(); 7];
    let mut ok = true;
    for (i, d) in raw.days.iter().flatten().enumerate() {
        match time::day(d) {
            Ok(n) => days[n] = true,
            Err(p) => {
                report.error(src, &[Seg::key("days"), Seg::Index(i)], p);
                ok = false;
            }
        }
    }
    if raw.days.as_ref().is_some_and(Vec::is_empty) {
        report.error(src, &[Seg::key("days")], Problem::EmptyDays);
        ok = false;
    }
    let (start_minute, end_minute) = match raw.hours.as_deref().map(time::hours) {
        None => (0, 0),
        Some(Ok(h)) => h,
        Some(Err(p)) => return report_none(report, src, &[Seg::key("hours")], p),
    };
    let timezone = match raw.timezone.as_deref().map(time::timezone) {
        None => default_tz,
        Some(Ok(tz)) => tz,
        Some(Err(p)) => return report_none(report, src, &[Seg::key("timezone")], p),
    };
    ok.then_some(Schedule {
        days,
        start_minute,
        end_minute,
        timezone,
    })
}

fn report_false(report: &mut Report, src: &Src<'_>, rel: &[Seg], p: Problem) -> bool {
    report.error(src, rel, p);
    false
}

fn report_none<T>(report: &mut Report, src: &Src<'_>, rel: &[Seg], p: Problem) -> Option<T> {
    report.error(src, rel, p);
    None
}

fn expiry_warnings(
    report: &mut Report,
    src: &Src<'_>,
    id: &str,
    activity: &Activity,
    now: DateTime<Utc>,
) {
    let Some(expires) = activity.expires else {
        return;
    };
    let when = expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let left = expires - now;
    let at = [Seg::key("expires")];
    if left <= chrono::Duration::zero() {
        report.warn(
            src,
            &at,
            Problem::Expired {
                id: id.to_owned(),
                when,
            },
        );
    } else if left < chrono::Duration::days(EXPIRY_WARNING_DAYS) {
        let days = left.num_days() + 1;
        report.warn(
            src,
            &at,
            Problem::ExpiresSoon {
                id: id.to_owned(),
                days,
                when,
            },
        );
    }
}
