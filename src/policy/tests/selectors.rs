//! Every selector: label boundaries, exact hosts and IP literals, categories, `urls:` on HTTP
//! and CONNECT, ports, `destinations:` and `check_resolved`.

use std::net::IpAddr;

use super::*;
use crate::policy::model::Action::{Allow, Block};
use crate::policy::model::Mode::{Enforce, Report};
use crate::policy::Outcome::{self, Allow as A, Block as B, Report as R};

fn now() -> DateTime<Utc> {
    at("2026-05-01T12:00:00Z")
}

/// One enforcing ministry `m` with these rules and an allow default.
fn single(rules: Vec<Rule>, cats: Vec<Category>) -> Policy {
    let m = ministry("m", Enforce, None, rules);
    Policy::compile(&set(org(vec![], vec![], Allow), vec![m], cats))
}

fn run(p: &Policy, cases: &[(&str, Outcome, &str)]) {
    let cases: Vec<_> = cases.iter().map(|(t, o, r)| ("m", *t, *o, *r)).collect();
    table(p, now(), &cases);
}

const DEFAULT: &str = "_organization/_default";

#[test]
fn domains_match_on_label_boundaries() {
    let p = single(
        vec![rule("m", "fb", Block, domains(&["facebook.com"]))],
        vec![],
    );
    run(
        &p,
        &[
            ("https://facebook.com", B, "m/fb"),
            ("https://www.facebook.com", B, "m/fb"),
            ("https://a.b.FACEBOOK.com.", B, "m/fb"),
            ("https://notfacebook.com", A, DEFAULT),
            ("https://facebook.com.evil.example", A, DEFAULT),
            ("https://com", A, DEFAULT),
        ],
    );
}

#[test]
fn hosts_are_exact_and_ip_hosts_match_every_spelling() {
    let p = single(
        vec![
            rule("m", "api", Block, hosts(&["api.example"])),
            rule("m", "ip", Block, hosts(&["192.0.2.7", "2001:db8::7"])),
            rule("m", "named", Block, domains(&["192.0.2.8"])),
        ],
        vec![],
    );
    run(
        &p,
        &[
            ("https://api.example", B, "m/api"),
            ("https://www.api.example", A, DEFAULT),
            ("https://192.0.2.7", B, "m/ip"),
            ("https://3221225991", B, "m/ip"),
            ("https://[::ffff:192.0.2.7]", B, "m/ip"),
            ("https://[2001:DB8:0::7]", B, "m/ip"),
            ("https://192.0.2.9", A, DEFAULT),
            // `domains:` applies to names only.
            ("https://192.0.2.8", A, DEFAULT),
        ],
    );
}

#[test]
fn categories_cover_subdomains_and_are_shared() {
    let social = category("social", &["facebook.com", "fbcdn.net", "x.com"]);
    let unused = category("unused", &["unused.example"]);
    let p = single(
        vec![
            rule("m", "allow-x", Allow, hosts(&["x.com"])),
            rule("m", "social", Block, categories(&["social"])),
            rule("m", "social-again", Allow, categories(&["social"])),
            rule("m", "unused", Block, domains(&["y.example"])),
        ],
        vec![social, unused],
    );
    run(
        &p,
        &[
            ("https://static.xx.fbcdn.net", B, "m/social"),
            ("https://facebook.com", B, "m/social"),
            ("https://notfbcdn.net", A, DEFAULT),
            ("https://x.com", A, "m/allow-x"),
            ("https://api.x.com", B, "m/social"),
            ("https://unused.example", A, DEFAULT),
        ],
    );
}

#[test]
fn urls_on_plain_http_and_on_connect() {
    let p = single(
        vec![
            rule("m", "watch", Block, urls(&["www.youtube.com/watch"])),
            rule("m", "public", Allow, urls(&["docs.example/public"])),
            rule("m", "open", Allow, urls(&["open.example/"])),
            rule(
                "m",
                "docs",
                Block,
                domains(&["docs.example", "open.example"]),
            ),
        ],
        vec![],
    );
    run(
        &p,
        &[
            ("http://www.youtube.com/watch?v=x", B, "m/watch"),
            ("http://www.youtube.com/watchlist", B, "m/watch"),
            ("http://www.youtube.com/./watch", B, "m/watch"),
            ("http://www.youtube.com/%77atch", B, "m/watch"),
            ("http://www.youtube.com/a/../watch", B, "m/watch"),
            ("http://www.youtube.com/about", A, DEFAULT),
            ("http://www.youtube.com", A, DEFAULT),
            ("http://youtube.com/watch", A, DEFAULT),
            // CONNECT: a block entry matches on its host (fail closed)…
            ("https://www.youtube.com", B, "m/watch"),
            ("www.youtube.com:8443", B, "m/watch"),
            // …an allow entry only when its prefix is `/`.
            ("http://docs.example/public/a", A, "m/public"),
            ("http://docs.example/private", B, "m/docs"),
            ("https://docs.example", B, "m/docs"),
            ("https://open.example", A, "m/open"),
            ("http://open.example/anything", A, "m/open"),
        ],
    );
    // A target that is not a path (`OPTIONS *`) is treated like a tunnel.
    let m = p.ministry_id("m").unwrap();
    let v = p.decide(m, &host("www.youtube.com"), 80, Some("*"), now());
    assert_eq!(&*p.rule(v.rule).name, "m/watch");
}

#[test]
fn ports_restrict_and_port_only_rules_apply_to_every_host() {
    let p = single(
        vec![
            rule("m", "smtp", Block, ports(Selectors::default(), &[25, 465])),
            rule("m", "plain", Block, ports(domains(&["example.org"]), &[80])),
            rule("m", "alt", Allow, ports(hosts(&["198.51.100.1"]), &[8443])),
            rule("m", "rest", Block, hosts(&["198.51.100.1"])),
        ],
        vec![],
    );
    run(
        &p,
        &[
            ("mail.example:25", B, "m/smtp"),
            ("192.0.2.1:465", B, "m/smtp"),
            ("mail.example:587", A, DEFAULT),
            ("http://www.example.org/", B, "m/plain"),
            ("https://www.example.org", A, DEFAULT),
            ("198.51.100.1:8443", A, "m/alt"),
            ("198.51.100.1:443", B, "m/rest"),
        ],
    );
}

#[test]
fn destinations_match_ip_literals_only() {
    let p = single(
        vec![
            rule("m", "v4", Block, destinations(&["203.0.113.0/24"])),
            rule(
                "m",
                "v6",
                Block,
                ports(destinations(&["2001:db8::/32"]), &[443]),
            ),
        ],
        vec![],
    );
    run(
        &p,
        &[
            ("https://203.0.113.9", B, "m/v4"),
            ("https://[::ffff:203.0.113.9]", B, "m/v4"),
            ("https://0xcb007109", B, "m/v4"),
            ("https://203.0.114.1", A, DEFAULT),
            ("https://[2001:db8::1]", B, "m/v6"),
            ("http://[2001:db8::1]/", A, DEFAULT),
            // A name is checked against destinations only once resolved.
            ("https://resolves-there.example", A, DEFAULT),
        ],
    );
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

#[test]
fn check_resolved_finds_the_first_active_block_range() {
    let mut expired = rule(
        "_organization",
        "expired",
        Block,
        destinations(&["192.0.2.0/24"]),
    );
    expired.activity.expires = Some(at("2026-01-01T00:00:00Z"));
    let o = org(
        vec![
            expired,
            rule(
                "_organization",
                "meta",
                Block,
                destinations(&["169.254.169.254/32"]),
            ),
        ],
        vec![rule(
            "_organization",
            "lab",
            Block,
            destinations(&["192.0.2.0/25"]),
        )],
        Allow,
    );
    let rules = |stem: &str| {
        vec![
            rule(stem, "ok", Allow, destinations(&["192.0.2.0/24"])),
            rule(
                stem,
                "web",
                Block,
                ports(destinations(&["198.51.100.0/24"]), &[80]),
            ),
            rule(
                stem,
                "mapped",
                Block,
                destinations(&["::ffff:203.0.113.0/120"]),
            ),
        ]
    };
    let ms = vec![
        ministry("e", Enforce, None, rules("e")),
        ministry("r", Report, None, rules("r")),
    ];
    let p = Policy::compile(&set(o, ms, vec![]));
    let check = |m: &str, addrs: &[&str], port| {
        let v = p.check_resolved(p.ministry_id(m).unwrap(), &ips(addrs), port, now());
        v.map(|v| (v.outcome, p.rule(v.rule).name.to_string()))
    };
    let some = |o, r: &str| Some((o, r.to_owned()));
    assert_eq!(
        check("e", &["192.0.2.1"], 443),
        some(B, "_organization/lab"),
        "allow rules don't apply"
    );
    assert_eq!(check("e", &["192.0.2.200"], 443), None);
    assert_eq!(
        check("e", &["8.8.8.8", "169.254.169.254"], 443),
        some(B, "_organization/meta")
    );
    assert_eq!(
        check("r", &["169.254.169.254"], 443),
        some(B, "_organization/meta"),
        "mandatory"
    );
    assert_eq!(check("e", &["198.51.100.5"], 80), some(B, "e/web"));
    assert_eq!(
        check("r", &["198.51.100.5"], 80),
        some(R, "r/web"),
        "report mode"
    );
    assert_eq!(check("e", &["198.51.100.5"], 443), None, "ports");
    assert_eq!(
        check("e", &["::ffff:203.0.113.4"], 443),
        some(B, "e/mapped")
    );
    assert_eq!(
        check("e", &["203.0.113.4", "192.0.2.1"], 443),
        some(B, "e/mapped"),
        "order"
    );
    assert_eq!(check("e", &[], 443), None);
}
