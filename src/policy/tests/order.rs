//! Evaluation order across the five stages, first match wins, report mode, `_unknown`, names
//! and the information accessors.

use chrono::{DateTime, Utc};

use super::*;
use crate::policy::model::Action::{Allow, Block};
use crate::policy::model::Mode::{Enforce, Report};
use crate::policy::Outcome;
use crate::policy::Stage;

fn now() -> DateTime<Utc> {
    at("2026-05-01T12:00:00Z")
}

/// An organization with a mandatory block, a social-media baseline and an allow default; an
/// enforcing ministry with an exception, a report-mode one with a block default, and one whose
/// own rules show first-match-wins.
fn fixture() -> Policy {
    let org_rules = |id, action, sel| rule("_organization", id, action, sel);
    let o = org(
        vec![
            org_rules("malware", Block, domains(&["malware.example"])),
            org_rules("gov", Allow, domains(&["gov.example"])),
        ],
        vec![
            org_rules("social-media", Block, categories(&["social"])),
            org_rules("games", Block, domains(&["games.example"])),
        ],
        Allow,
    );
    let agri = ministry(
        "agriculture",
        Enforce,
        None,
        vec![
            rule("agriculture", "twitter", Allow, domains(&["twitter.com"])),
            rule(
                "agriculture",
                "no-malware-exception",
                Allow,
                domains(&["malware.example"]),
            ),
            rule("agriculture", "news", Block, domains(&["news.example"])),
        ],
    );
    let health = ministry(
        "health",
        Report,
        Some(Block),
        vec![rule(
            "health",
            "portal",
            Allow,
            domains(&["health.example"]),
        )],
    );
    let finance = ministry(
        "finance",
        Enforce,
        Some(Block),
        vec![
            rule("finance", "one", Allow, domains(&["a.first.example"])),
            rule("finance", "two", Block, domains(&["first.example"])),
            rule("finance", "three", Block, domains(&["b.second.example"])),
            rule("finance", "four", Allow, domains(&["second.example"])),
        ],
    );
    let social = category("social", &["twitter.com", "facebook.com"]);
    Policy::compile(&set(o, vec![agri, health, finance], vec![social]))
}

#[test]
fn five_stages_in_order() {
    use Outcome::*;
    table(
        &fixture(),
        now(),
        &[
            // 1. mandatory beats the ministry's own exception, and report mode.
            (
                "agriculture",
                "https://malware.example",
                Block,
                "_organization/malware",
            ),
            (
                "health",
                "https://www.malware.example",
                Block,
                "_organization/malware",
            ),
            ("finance", "https://gov.example", Allow, "_organization/gov"),
            // 2. the ministry's rules beat the baseline.
            (
                "agriculture",
                "https://twitter.com",
                Allow,
                "agriculture/twitter",
            ),
            (
                "agriculture",
                "http://news.example/",
                Block,
                "agriculture/news",
            ),
            // 3. baseline.
            (
                "agriculture",
                "https://facebook.com",
                Block,
                "_organization/social-media",
            ),
            (
                "finance",
                "https://twitter.com",
                Block,
                "_organization/social-media",
            ),
            (
                "health",
                "https://twitter.com",
                Report,
                "_organization/social-media",
            ),
            // 4. the ministry default, 5. the organization default.
            (
                "finance",
                "https://other.example",
                Block,
                "finance/_default",
            ),
            ("health", "https://other.example", Report, "health/_default"),
            ("health", "https://health.example", Allow, "health/portal"),
            (
                "agriculture",
                "https://other.example",
                Allow,
                "_organization/_default",
            ),
        ],
    );
}

#[test]
fn first_match_wins_within_a_list() {
    use Outcome::*;
    table(
        &fixture(),
        now(),
        &[
            ("finance", "https://a.first.example", Allow, "finance/one"),
            ("finance", "https://first.example", Block, "finance/two"),
            ("finance", "https://z.first.example", Block, "finance/two"),
            (
                "finance",
                "https://b.second.example",
                Block,
                "finance/three",
            ),
            ("finance", "https://c.second.example", Allow, "finance/four"),
        ],
    );
}

#[test]
fn report_mode_with_an_organization_block_default() {
    let o = org(
        vec![rule("_organization", "m", Block, domains(&["m.example"]))],
        vec![],
        Block,
    );
    let p = Policy::compile(&set(
        o,
        vec![ministry("labs", Report, None, vec![])],
        vec![],
    ));
    table(
        &p,
        now(),
        &[
            (
                "labs",
                "https://x.example",
                Outcome::Report,
                "_organization/_default",
            ),
            (
                "labs",
                "https://m.example",
                Outcome::Block,
                "_organization/m",
            ),
        ],
    );
}

#[test]
fn explain_walks_every_rule_and_shows_matched_but_not_reached() {
    let p = fixture();
    let m = p.ministry_id("agriculture").unwrap();
    let e = p.explain(m, &host("twitter.com"), 443, None, now());
    let names: Vec<_> = e
        .walk
        .iter()
        .map(|s| (&*p.rule(s.rule).name, s.stage))
        .collect();
    assert_eq!(
        names,
        [
            ("_organization/malware", Stage::Mandatory),
            ("_organization/gov", Stage::Mandatory),
            ("agriculture/twitter", Stage::Ministry),
            ("agriculture/no-malware-exception", Stage::Ministry),
            ("agriculture/news", Stage::Ministry),
            ("_organization/social-media", Stage::Baseline),
            ("_organization/games", Stage::Baseline),
            ("_organization/_default", Stage::OrganizationDefault),
        ]
    );
    let flags: Vec<_> = e.walk.iter().map(|s| (s.matched, s.decided)).collect();
    let (t, f) = (true, false);
    assert_eq!(
        flags,
        [
            (f, f),
            (f, f),
            (t, t),
            (f, f),
            (f, f),
            (t, f),
            (f, f),
            (t, f)
        ]
    );
    let not_reached: Vec<_> = e.not_reached().map(|s| &*p.rule(s.rule).name).collect();
    assert_eq!(
        not_reached,
        ["_organization/social-media", "_organization/_default"]
    );
    // A ministry default appears before the organization's.
    let f = p.explain(
        p.ministry_id("finance").unwrap(),
        &host("x.example"),
        443,
        None,
        now(),
    );
    let stages: Vec<_> = f
        .walk
        .iter()
        .rev()
        .take(2)
        .map(|s| s.stage.as_str())
        .collect();
    assert_eq!(stages, ["organization_default", "ministry_default"]);
    assert_eq!(&*p.rule(f.verdict.rule).name, "finance/_default");
}

#[test]
fn unknown_clients_are_blocked() {
    let p = fixture();
    let v = p.unknown_verdict();
    assert_eq!(v.outcome, Outcome::Block);
    let r = p.rule(v.rule);
    assert_eq!(&*r.name, "_unknown/_default");
    assert!(r.reason.is_some() && r.origin.is_none());
}

#[test]
fn information_for_logs_metrics_and_block_pages() {
    let p = fixture();
    let m = p.ministry_id("health").unwrap();
    let info = p.ministry(m);
    assert_eq!(
        (&*info.name, info.mode, info.rule_count),
        ("health", Report, 1)
    );
    assert_eq!(
        info.contact.as_deref(),
        Some("it@gov.example"),
        "falls back to the organization"
    );
    assert_eq!(p.ministry_id("nope"), None);
    assert_eq!(
        p.ministries().map(|(id, _)| id).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    let counts: Vec<_> = p
        .rule_counts()
        .into_iter()
        .map(|(s, n)| (s.to_string(), n))
        .collect();
    let want = [
        ("_organization", 4),
        ("agriculture", 3),
        ("health", 1),
        ("finance", 4),
    ];
    assert_eq!(counts, want.map(|(s, n)| (s.to_owned(), n)));
    let v = p.decide(m, &host("malware.example"), 443, None, now());
    let r = p.rule(v.rule);
    assert!(r.mandatory && r.origin.is_some() && !r.is_default());
    let d = p.rule(p.decide(m, &host("x.example"), 443, None, now()).rule);
    assert!(d.is_default() && !d.mandatory && d.reason.is_some());
}

#[test]
fn expiring_rules_name_their_owner() {
    let mut exception = rule("agriculture", "temp", Allow, domains(&["temp.example"]));
    exception.activity.expires = Some(at("2027-03-31T00:00:00Z"));
    let mut base = rule("_organization", "old", Block, domains(&["old.example"]));
    base.activity.expires = Some(at("2026-12-31T00:00:00Z"));
    let o = org(vec![], vec![base], Allow);
    let p = Policy::compile(&set(
        o,
        vec![ministry("agriculture", Enforce, None, vec![exception])],
        vec![],
    ));
    let got: Vec<_> = (p.expiring_rules().into_iter())
        .map(|(m, r, t)| (m.to_string(), r.to_string(), t))
        .collect();
    assert_eq!(
        got,
        [
            (
                "agriculture".into(),
                "agriculture/temp".into(),
                at("2027-03-31T00:00:00Z")
            ),
            (
                "_organization".into(),
                "_organization/old".into(),
                at("2026-12-31T00:00:00Z")
            ),
        ]
    );
}
