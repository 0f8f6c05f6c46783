//! One rule: raw YAML value → [`Rule`], reporting every bad field and selector entry with its
//! position, plus the warnings `egressd check` owes (expired or expiring rules, `urls:` block
//! rules that block whole hosts on tunnels).

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use ipnet::IpNet;

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
    if value.is_null() {
        return report_none(report, src, &[], Problem::EmptyRule);
    }
    let (raw, structural) = yaml::collect::<RawRule>(src.doc, &src.base, value);
    let complete = structural.is_empty();
    report.yaml(src, structural);
    let raw = raw?;
    let (id, action) = id_and_action(report, src, &raw, complete);
    let selectors = selectors(report, src, &raw, cx.categories);
    let has_selector = has_selector(&raw);
    if complete && !has_selector {
        report.error(src, &[], Problem::NoSelector);
    }
    let activity = activity(report, src, &raw, cx);
    let (id, action, selectors, activity) = (id?, action?, selectors?, activity?);
    if !complete || !has_selector {
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

/// `id` and `action`, both required. Their absence is only reported for a rule without
/// structural errors: after `acton: allow`, "missing `action`" would repeat the typo.
fn id_and_action<'r>(
    report: &mut Report,
    src: &Src<'_>,
    raw: &'r RawRule,
    complete: bool,
) -> (Option<&'r str>, Option<Action>) {
    let id = match raw.id.as_deref() {
        Some(id) => values::rule_id(id)
            .map(|()| id)
            .map_err(|p| report.error(src, &[Seg::key("id")], p))
            .ok(),
        None if complete => report_none(
            report,
            src,
            &[],
            missing("id", "; every rule needs an `id:`"),
        ),
        None => None,
    };
    let action = match raw.action.as_deref().map(values::action) {
        Some(Ok(a)) => Some(a),
        Some(Err(p)) => report_none(report, src, &[Seg::key("action")], p),
        None if complete => {
            report_none(report, src, &[], missing("action", ": `allow` or `block`"))
        }
        None => None,
    };
    (id, action)
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
    known: &BTreeSet<String>,
) -> Option<Selectors> {
    let domains = list(report, src, "domains", &raw.domains, |e| values::domain(e));
    let hosts = list(report, src, "hosts", &raw.hosts, |e| {
        values::host(e, "host")
    });
    let urls = list(report, src, "urls", &raw.urls, |e| values::url_prefix(e));
    let categories = list(
        report,
        src,
        "categories",
        &raw.categories,
        |e| match known.contains(&**e) {
            true => Ok(Box::from(&**e)),
            false => Err(unknown_category(e, known)),
        },
    );
    let destinations = destinations(report, src, &raw.destinations);
    let ports = list(report, src, "ports", &raw.ports, |p| values::port(*p));
    Some(Selectors {
        domains: domains?,
        hosts: hosts?,
        categories: categories?,
        urls: urls?,
        destinations: destinations?,
        ports: ports?,
    })
}

/// Every entry of the list at `key` through `f`; `None` when any is bad (each reported).
fn list<I, T>(
    report: &mut Report,
    src: &Src<'_>,
    key: &str,
    list: &Option<Vec<I>>,
    f: impl Fn(&I) -> Result<T, Problem>,
) -> Option<Vec<T>> {
    let mut out = Some(Vec::new());
    for (i, entry) in list.iter().flatten().enumerate() {
        match (f(entry), out.as_mut()) {
            (Ok(v), Some(out)) => out.push(v),
            (Ok(_), None) => {}
            (Err(p), _) => {
                report.error(src, &[Seg::key(key), Seg::Index(i)], p);
                out = None;
            }
        }
    }
    out
}

/// `destinations:`, warning about entries with host bits set (`10.0.0.1/8`).
fn destinations(report: &mut Report, src: &Src<'_>, raw: &Option<Vec<Text>>) -> Option<Vec<IpNet>> {
    let nets = list(report, src, "destinations", raw, |e| values::cidr(e))?;
    for (i, ((net, host_bits), value)) in nets.iter().zip(raw.iter().flatten()).enumerate() {
        if *host_bits {
            let problem = Problem::HostBitsSet {
                value: value.to_string(),
                net: net.to_string(),
            };
            report.warn(src, &[Seg::key("destinations"), Seg::Index(i)], problem);
        }
    }
    Some(nets.into_iter().map(|(net, _)| net).collect())
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
    let expires = raw
        .expires
        .as_deref()
        .map(|e| time::expires(e, cx.timezone).map(Some));
    let expires = optional(report, src, "expires", expires, None);
    let schedule = match &raw.schedule {
        None => Some(None),
        Some(s) => schedule(report, &src.child(&[Seg::key("schedule")]), s, cx.timezone).map(Some),
    };
    Some(Activity {
        expires: expires?,
        schedule: schedule?,
    })
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
    let hours = raw.hours.as_deref().map(time::hours);
    let hours = optional(report, src, "hours", hours, (0, 0));
    let timezone = raw.timezone.as_deref().map(time::timezone);
    let timezone = optional(report, src, "timezone", timezone, default_tz);
    let ((start_minute, end_minute), timezone) = (hours?, timezone?);
    ok.then_some(Schedule {
        days,
        start_minute,
        end_minute,
        timezone,
    })
}

/// An optional field: `default` when absent, `None` (reported) when invalid.
fn optional<T>(
    report: &mut Report,
    src: &Src<'_>,
    key: &str,
    value: Option<Result<T, Problem>>,
    default: T,
) -> Option<T> {
    match value {
        None => Some(default),
        Some(Ok(v)) => Some(v),
        Some(Err(p)) => report_none(report, src, &[Seg::key(key)], p),
    }
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
        // Whole days, rounded up: "expires in 1 day(s)" until the last second.
        let days = (left.num_seconds() + 86_399) / 86_400;
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
