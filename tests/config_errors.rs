//! Table tests of `config::load` over the fixture trees in `tests/fixtures/`: one valid tree,
//! one invalid tree per error class (asserting the exact `FILE:LINE:COLUMN` and a message
//! fragment), a tree with many errors across files (all reported in one run), test-case files
//! and a Kubernetes ConfigMap layout. Long rule files are tested in `config::tests`.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use egressd::config::{self, Diagnostic, Expect, Severity};
use egressd::policy::model::{Action, Mode};

const FIXTURES: &str = "tests/fixtures";

fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .with_timezone(&Utc)
}

fn fixture(rel: &str) -> PathBuf {
    Path::new(FIXTURES).join(rel)
}

/// `FILE:LINE:COLUMN` of a diagnostic, FILE relative to `tests/fixtures/`.
fn place(d: &Diagnostic) -> String {
    let file = d.file.strip_prefix(FIXTURES).unwrap_or(&d.file);
    format!("{}:{}:{}", file.display(), d.line, d.column)
}

fn errors_of(rel: &str) -> Vec<Diagnostic> {
    match config::load_at(&fixture(rel), at("2026-03-01T00:00:00Z")) {
        Ok(_) => panic!("{rel} loaded, expected errors"),
        Err(diags) => diags
            .into_iter()
            .filter(|d| d.severity == Severity::Error)
            .collect(),
    }
}

fn valid() -> config::Loaded {
    config::load_at(&fixture("valid/egressd.yaml"), at("2026-03-01T00:00:00Z"))
        .unwrap_or_else(|d| panic!("{}", d.iter().map(|d| format!("{d}\n")).collect::<String>()))
}

#[test]
fn valid_tree_ministries_and_rule_lines() {
    let loaded = valid();
    let policy = &loaded.policy;
    let org = &policy.organization;
    assert_eq!(org.timezone, chrono_tz::America::Toronto);
    assert_eq!(org.mandatory[0].name.as_ref(), "_organization/malware");
    assert_eq!(
        org.baseline[0].selectors.categories,
        vec!["social-media".into()]
    );
    let names: Vec<_> = policy
        .ministries
        .iter()
        .map(|m| (&*m.name, &*m.stem, m.mode))
        .collect();
    assert_eq!(
        names,
        [
            ("agriculture", "agriculture", Mode::Enforce),
            ("health", "health", Mode::Report)
        ]
    );
    let agri = &policy.ministries[0];
    let rules: Vec<_> = agri
        .rules
        .iter()
        .map(|r| (&*r.name, r.origin.line))
        .collect();
    assert_eq!(
        rules,
        [
            ("agriculture/foodland-twitter", 7),
            ("agriculture/no-downloads", 20),
            ("agriculture/alt-ports", 23)
        ]
    );
    assert_eq!(
        agri.rules[0].origin.file.as_ref(),
        "tests/fixtures/valid/policies/agriculture.yaml"
    );
    let categories: Vec<_> = policy.categories.iter().map(|c| &*c.name).collect();
    assert_eq!(categories, ["social-media", "video-streaming"]);
}

#[test]
fn valid_tree_selectors_and_activity() {
    let policy = valid().policy;
    let agri = &policy.ministries[0];
    let twitter = &agri.rules[0];
    assert_eq!(
        twitter.selectors.domains[..2],
        ["twitter.com".into(), "x.com".into()]
    );
    assert_eq!(
        twitter.activity.expires,
        Some(at("2027-04-01T00:00:00-04:00"))
    );
    let schedule = twitter.activity.schedule.as_ref().unwrap();
    assert_eq!(
        (schedule.days, schedule.start_minute, schedule.end_minute),
        ([true, true, true, true, true, false, false], 480, 1080)
    );
    assert_eq!(schedule.timezone, chrono_tz::America::Vancouver);
    let urls = &agri.rules[1].selectors.urls;
    assert_eq!(
        (urls[0].host.to_string(), urls[0].path_prefix.as_str()),
        ("files.example".into(), "/private/")
    );
    assert_eq!(urls[1].host.to_string(), "xn--bcher-kva.example");
    assert!(agri.rules[2].selectors.is_host_wildcard());
    let health = &policy.ministries[1];
    assert_eq!(
        (health.default, health.rules[0].origin.line),
        (Some(Action::Block), 5)
    );
    let night = health.rules[0].activity.schedule.as_ref().unwrap();
    assert_eq!(
        (night.start_minute, night.end_minute, night.timezone),
        (1320, 120, chrono_tz::America::Toronto)
    );
}

#[test]
fn valid_tree_settings_and_files() {
    let loaded = valid();
    let s = &loaded.settings;
    assert_eq!(s.listen.proxy.len(), 2);
    assert_eq!(
        s.listen.proxy_tls.as_ref().unwrap().cert,
        fixture("valid/tls/proxy.crt")
    );
    assert_eq!(s.policies_dir, fixture("valid/policies"));
    assert_eq!(
        s.identity.sources[0],
        ("10.20.0.0/16".parse().unwrap(), "agriculture".into())
    );
    assert_eq!(s.identity.users[0].ministry, "agriculture");
    assert_eq!(
        s.dns.static_hosts["intranet.example"],
        ["10.0.0.5".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!(
        s.dns.static_hosts["mirror.example"][1],
        "10.0.0.7".parse::<std::net::IpAddr>().unwrap()
    );
    assert_eq!(
        s.timeouts.request_header,
        std::time::Duration::from_millis(500)
    );
    assert_eq!(s.timeouts.shutdown_grace, std::time::Duration::ZERO);
    assert_eq!(s.egress.connect_ports, [443, 8443]);
    assert_eq!(s.audit.file, Some(fixture("valid/audit.log")));
    assert_eq!(s.pac.as_ref().unwrap().proxies, ["proxy.example.gov:3128"]);
    let files: Vec<_> = loaded
        .files
        .iter()
        .map(|f| {
            f.strip_prefix(fixture("valid"))
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    for f in [
        "egressd.yaml",
        "tls/proxy.crt",
        "policies/_organization.yaml",
        "policies/health.yml",
        "categories/video-streaming.yml",
        "credentials.yaml",
    ] {
        assert!(files.contains(&f.to_owned()), "{f} not in {files:?}");
    }
    assert!(
        !files
            .iter()
            .any(|f| f.contains(".editor-backup") || f.contains("README")),
        "{files:?}"
    );
}

#[test]
fn warnings_for_expired_expiring_and_url_block_rules() {
    let warnings = |now| {
        let loaded = config::load_at(&fixture("valid/egressd.yaml"), at(now)).unwrap();
        loaded
            .warnings
            .iter()
            .map(|w| format!("{} {}", place(w), w.message))
            .collect::<Vec<_>>()
    };
    let w = warnings("2026-03-01T00:00:00Z");
    assert_eq!(w.len(), 2, "{w:#?}");
    assert!(w[0].starts_with("valid/policies/_organization.yaml:17:14 rule `old-intranet` expired at 2026-01-16T05:00:00Z"), "{w:#?}");
    assert!(
        w[1].starts_with("valid/policies/agriculture.yaml:22:11 a `urls:` block rule"),
        "{w:#?}"
    );
    let w = warnings("2027-03-25T12:00:00Z");
    assert!(
        w.iter().any(|w| w.starts_with(
            "valid/policies/agriculture.yaml:12:14 rule `foodland-twitter` expires in 7 day(s)"
        )),
        "{w:#?}"
    );
}

/// (fixture, FILE:LINE:COLUMN relative to tests/fixtures, message fragment)
const INVALID: &[(&str, &str, &str)] = &[
    ("yaml-syntax", "policies/health.yaml:5:4", "did not find expected '-' indicator"),
    ("unknown-key", "policies/health.yaml:5:5", "unknown key `domain`; did you mean `domains`?"),
    ("wrong-type", "policies/health.yaml:5:14", "expected a sequence; write a list"),
    ("duplicate-ministry", "policies/sante.yaml:2:11", "ministry `health` is already defined by tests/fixtures/invalid/duplicate-ministry/policies/health.yaml:1"),
    ("duplicate-rule-id", "policies/health.yaml:6:9", "duplicate rule id `a` (first used at line 3)"),
    ("duplicate-rule-id-org", "policies/_organization.yaml:6:9", "duplicate rule id `social` (first used at line 2)"),
    ("unknown-category", "policies/health.yaml:5:32", "unknown category `gambling`; known categories: `social-media`, `video`"),
    ("bad-cidr", "policies/health.yaml:5:32", "invalid CIDR `10.1.0.0/33`: prefix length `33` must be 0-32"),
    ("bad-port", "policies/health.yaml:5:17", "port 0 out of range: expected 1-65535"),
    ("settings-bad-port", "egressd.yaml:3:24", "port 70000 out of range"),
    ("bad-host", "policies/health.yaml:5:27", "invalid domain `%66acebook.com`: percent-encoded"),
    ("bad-duration", "egressd.yaml:3:9", "invalid duration `10`"),
    ("bad-url", "policies/health.yaml:5:12", "invalid URL `ftp://files.example/pub/`"),
    ("bad-action", "policies/health.yaml:4:13", "invalid action `deny`: expected `allow` or `block`"),
    ("bad-mode", "policies/health.yaml:2:7", "invalid mode `audit`: expected `enforce` or `report`"),
    ("unknown-timezone", "policies/_organization.yaml:1:11", "unknown time zone `Europe/Pariss`; did you mean `Europe/Paris`?"),
    ("bad-expires", "policies/health.yaml:6:14", "invalid `expires` `2027-02-30`"),
    ("bad-schedule", "policies/health.yaml:7:19", "invalid day `funday`"),
    ("identity-unknown-ministry", "egressd.yaml:4:19", "unknown ministry `agricultur`: no policy file has `ministry: agricultur`; did you mean `agriculture`?"),
    ("no-selector", "policies/health.yaml:3:5", "the rule has no selector"),
    ("reserved-name", "policies/health.yaml:1:11", "`_unknown`: names starting with `_` are reserved"),
    ("missing-ministry", "policies/health.yaml:1:1", "missing `ministry`"),
    ("settings-unknown-key", "egressd.yaml:3:3", "unknown key `admn`; did you mean `admin`?"),
    ("bad-listen", "egressd.yaml:2:27", "invalid address `localhost:3128`"),
    ("missing-tls-file", "egressd.yaml:5:11", "file `tests/fixtures/invalid/missing-tls-file/tls/missing.crt` not found"),
    ("bad-tls-material", "egressd.yaml:5:11", "unusable TLS material: no CERTIFICATE block in PEM file"),
    ("bad-credentials", "users.yaml:3:13", "unknown ministry `nowhere`"),
    ("bad-credentials", "users.yaml:2:18", "invalid password_hash `(hidden)`: expected an argon2 or bcrypt PHC string"),
    ("explicit-missing-folder", "egressd.yaml:2:11", "folder `tests/fixtures/invalid/explicit-missing-folder/polices` not found"),
];

#[test]
fn each_invalid_fixture_reports_its_error_at_its_place() {
    let mut failures = Vec::new();
    for (dir, want_place, fragment) in INVALID {
        let errors = errors_of(&format!("invalid/{dir}/egressd.yaml"));
        let want_place = format!("invalid/{dir}/{want_place}");
        let found = errors
            .iter()
            .any(|e| place(e) == want_place && e.message.contains(fragment));
        if !found {
            let got: Vec<_> = errors
                .iter()
                .map(|e| format!("{} {}", place(e), e.message))
                .collect();
            failures.push(format!("{want_place} `{fragment}`, got {got:#?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn diagnostics_print_as_file_line_column() {
    let e = &errors_of("invalid/bad-action/egressd.yaml")[0];
    assert_eq!(
        e.to_string(),
        "tests/fixtures/invalid/bad-action/policies/health.yaml:4:13: invalid action `deny`: expected `allow` or `block`"
    );
}

#[test]
fn every_error_across_files_is_reported_in_one_run() {
    let got: Vec<_> = errors_of("many/egressd.yaml").iter().map(place).collect();
    let want = [
        "many/categories/social-media.yaml:1:1", // unknown key `descripton`
        "many/categories/social-media.yaml:2:25", // `*.instagram.com`
        "many/egressd.yaml:3:3",                 // unknown key `admn`
        "many/egressd.yaml:5:21",                // default_ministry `guest`
        "many/egressd.yaml:7:9",                 // duration `soon`
        "many/policies/_organization.yaml:1:11", // time zone
        "many/policies/_organization.yaml:2:10", // default `deny`
        "many/policies/agriculture.yaml:11:5",   // rule 3: `host`
        "many/policies/agriculture.yaml:22:5",   // rule 7: `acton`
        "many/policies/agriculture.yaml:24:5",   // rule 7: `reasn`
        "many/policies/agriculture.yaml:27:20",  // rule 8: CIDR
        "many/policies/health.yaml:6:18",        // category `gambling`
        "many/policies/health.yaml:7:14",        // expires `someday`
    ];
    assert_eq!(got, want);
}

#[test]
fn minimal_and_empty_configs_use_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("egressd.yaml");
    for text in ["listen: {proxy: 127.0.0.1:3128}\n", ""] {
        std::fs::write(&cfg, text).unwrap();
        let loaded = config::load(&cfg).unwrap();
        assert_eq!(
            loaded.settings.listen.proxy,
            ["127.0.0.1:3128".parse().unwrap()]
        );
        assert_eq!(
            loaded.settings.listen.admin,
            Some("127.0.0.1:9090".parse().unwrap())
        );
        assert_eq!(loaded.settings.egress.connect_ports, [443]);
        assert_eq!(loaded.policy.organization.default, Action::Allow);
        assert!(loaded.policy.ministries.is_empty());
        // No policies folder: loadable, but worth a warning (everyone is `_unknown`).
        assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    }
}

#[test]
fn kubernetes_configmap_layout() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let policies = root.join("policies");
    let data = policies.join("..2026_03_01_10_00_00.123456789");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        data.join("health.yaml"),
        "ministry: health\nrules:\n  - {id: a, action: allow, hosts: [a.example]}\n",
    )
    .unwrap();
    std::os::unix::fs::symlink("..2026_03_01_10_00_00.123456789", policies.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/health.yaml", policies.join("health.yaml")).unwrap();
    std::fs::write(
        root.join("egressd.yaml"),
        "listen: {proxy: 127.0.0.1:3128}\n",
    )
    .unwrap();
    let loaded = config::load(&root.join("egressd.yaml")).unwrap();
    assert_eq!(loaded.policy.ministries.len(), 1);
    assert_eq!(loaded.policy.ministries[0].rules[0].origin.line, 3);
    assert!(loaded.files.contains(&policies.join("health.yaml")));
}

#[test]
fn same_stem_twice_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir(root.join("policies")).unwrap();
    std::fs::write(root.join("policies/health.yaml"), "ministry: health\n").unwrap();
    std::fs::write(root.join("policies/health.yml"), "ministry: health2\n").unwrap();
    std::fs::write(root.join("egressd.yaml"), "").unwrap();
    let errors = config::load(&root.join("egressd.yaml")).unwrap_err();
    assert!(
        errors[0].message.contains("have the same name"),
        "{errors:?}"
    );
}

#[test]
fn policy_test_files() {
    let cases = config::load_test_cases(&fixture("valid/tests/agriculture.yaml")).unwrap();
    assert_eq!(cases.len(), 2);
    assert_eq!(
        (cases[0].ministry.as_deref(), cases[0].expect, cases[0].line),
        (Some("agriculture"), Expect::Allow, 2)
    );
    assert_eq!(cases[0].at, Some(at("2026-12-01T15:00:00Z")));
    assert_eq!(
        (cases[1].client, cases[1].line),
        (Some("10.20.3.4".parse().unwrap()), 6)
    );
    assert_eq!(cases[1].rule.as_deref(), Some("_organization/social-media"));

    let errors = config::load_test_cases(&fixture("invalid-tests/cases.yaml")).unwrap_err();
    let got: Vec<_> = errors
        .iter()
        .map(|e| format!("{} {}", place(e), e.message))
        .collect();
    let want = [
        "invalid-tests/cases.yaml:3:11 invalid expect `allowed`: expected `allow`, `block` or `report`",
        "invalid-tests/cases.yaml:4:3 a test case needs exactly one of `ministry` and `client`",
        "invalid-tests/cases.yaml:7:3 unknown key `urll`; did you mean `url`?",
        "invalid-tests/cases.yaml:9:11 invalid IP address `10.20.3`",
        "invalid-tests/cases.yaml:10:8 invalid URL `www.example.com`: expected `http://HOST/…` or `https://HOST/…`",
        "invalid-tests/cases.yaml:12:7 invalid `at` `tomorrow`: expected an RFC 3339 date-time, e.g. `2026-12-01T10:00:00-05:00`",
    ];
    assert_eq!(got, want);
}

#[test]
fn identity_methods_that_can_never_apply_are_warned() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::create_dir(p.join("policies")).unwrap();
    std::fs::write(p.join("policies/health.yaml"), "ministry: health\n").unwrap();
    std::fs::write(
        p.join("users.yaml"),
        "alice: {password_hash: \"$2b$04$abcdefghijklmnopqrstuu\", ministry: health}\n",
    )
    .unwrap();
    let yaml =
        "identity:\n  certificates: {\"*.health.example\": health}\n  credentials: users.yaml\n";
    std::fs::write(p.join("egressd.yaml"), yaml).unwrap();
    let loaded = config::load(&p.join("egressd.yaml")).unwrap();
    let warnings: Vec<String> = loaded.warnings.iter().map(|d| d.to_string()).collect();
    let has = |frag: &str| warnings.iter().any(|w| w.contains(frag));
    assert!(
        has("egressd.yaml:2:17: warning: identity.certificates never applies"),
        "{warnings:#?}"
    );
    assert!(
        has("egressd.yaml:3:16: warning: identity.credentials never applies"),
        "{warnings:#?}"
    );
}
