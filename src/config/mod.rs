//! Configuration loading: `egressd.yaml`, the policy and category folders and the files they
//! reach, turned into a validated [`Settings`] and [`PolicySet`] — or into *every* problem,
//! each printed `FILE:LINE:COLUMN: message`.
//!
//! Three layers, as in the rest of egressd: `raw` (serde types, unknown keys rejected; the
//! only YAML calls are in `yaml`), `validate` (checks, normalisation, diagnostics with
//! positions) and the validated model ([`settings`], [`crate::policy::model`]).
//!
//! Decisions where the contract is silent:
//! - `policies/_organization.yaml` is optional: without it the organization has no
//!   mandatory or baseline rules, `default: allow` and `timezone: UTC`.
//! - `listen.proxy` defaults to `127.0.0.1:3128` (never an open proxy by accident) and
//!   `listen.admin` to `127.0.0.1:9090`.
//! - A missing default `policies/` folder is a warning (every client is then `_unknown`);
//!   a missing folder that `egressd.yaml` names explicitly is an error.
//! - `ministry:` is required in a ministry file; names starting with `_` are reserved.
//! - Files that `egressd.yaml` references (TLS material, credentials) must exist.

mod error;
mod longlist;
mod outline;
mod raw;
mod seek;
pub mod settings;
mod testcases;
mod validate;
mod yaml;

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

pub use error::{Diagnostic, Problem, Severity};
pub use settings::Settings;
pub use testcases::{load_test_cases, Expect, TestCase};

use crate::policy::model::PolicySet;
use validate::files::{self, Files};
use validate::identity::{check_ministries, credentials};
use validate::policy::{categories, policies};
use validate::report::{Report, Src};
use yaml::{Doc, Pos, Seg};

/// A valid configuration.
#[derive(Debug)]
pub struct Loaded {
    pub settings: Settings,
    pub policy: PolicySet,
    /// Problems that do not stop loading (expiring rules, `urls:` block rules, …).
    pub warnings: Vec<Diagnostic>,
    /// Every file read or referenced (TLS material, credentials), for the reload watcher. The
    /// folders to watch for new files are `settings.policies_dir` and `settings.categories_dir`.
    pub files: Vec<PathBuf>,
    /// The TLS listener's rustls configuration, built from `listen.proxy_tls` (certificate
    /// chain, key, client CA) while loading, so unusable material is a located error.
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
}

/// Loads and validates everything `config_path` reaches. `Err` holds every error, followed
/// by the warnings.
pub fn load(config_path: &Path) -> Result<Loaded, Vec<Diagnostic>> {
    load_at(config_path, Utc::now())
}

/// [`load`] as if the time were `now` (which rules count as expired or expiring).
pub fn load_at(config_path: &Path, now: DateTime<Utc>) -> Result<Loaded, Vec<Diagnostic>> {
    load_from(Files::disk(), config_path, now)
}

/// [`load_at`] over files held in memory: `tree` is (path, text) pairs laid out as a config
/// folder, `egressd.yaml` first among them, then the files it reaches by relative paths
/// (`policies/health.yaml`, `categories/video.yaml`, a credentials file). Nothing is read from
/// the disk: TLS material (`listen.proxy_tls`) is only checked to exist, the same as on disk,
/// and `Loaded::tls` stays `None`. It exists for the fuzzer (`fuzz/`, target `policy_yaml`)
/// and for tests that want a configuration without a temporary folder.
pub fn load_from_strings(
    tree: &[(&str, &str)],
    now: DateTime<Utc>,
) -> Result<Loaded, Vec<Diagnostic>> {
    let files = Files::memory(tree.iter().copied());
    load_from(files, Path::new("egressd.yaml"), now)
}

fn load_from(
    mut files: Files,
    config_path: &Path,
    now: DateTime<Utc>,
) -> Result<Loaded, Vec<Diagnostic>> {
    let mut report = Report::default();
    let Some(text) = files.read(&mut report, config_path, "config file") else {
        return Err(report.finish());
    };
    let base = config_path.parent().unwrap_or(Path::new(""));
    let config = Src::whole(config_path, &text);
    let mut out = validate::settings::settings(&mut report, &config, base, &mut files.read);
    let s = &out.settings;
    let category_paths = folder(
        &mut report,
        &files,
        &config,
        &s.categories_dir,
        out.categories_explicit,
        "categories",
    );
    let categories = categories(&mut report, &mut files, &category_paths);
    let policy_paths = folder(
        &mut report,
        &files,
        &config,
        &s.policies_dir,
        out.policies_explicit,
        "policies",
    );
    let policy = policies(
        &mut report,
        &mut files,
        &s.policies_dir,
        &policy_paths,
        categories,
        now,
    );
    check_ministries(&mut report, &config, &out.ministry_refs, &policy);
    if let Some(path) = out.settings.identity.credentials.clone() {
        out.settings.identity.users = users(&mut report, &mut files, &config, &path, &policy);
    }
    let tls = tls_config(&mut report, &config, &out.settings, files.in_memory());
    if report.has_errors() {
        return Err(report.finish());
    }
    Ok(Loaded {
        settings: out.settings,
        policy,
        warnings: report.finish(),
        files: files.read,
        tls,
    })
}

/// Builds the TLS listener's configuration (not `in_memory`: its files are on disk); a problem
/// is reported at the `listen.proxy_tls` key it comes from.
fn tls_config(
    report: &mut Report,
    config: &Src<'_>,
    settings: &Settings,
    in_memory: bool,
) -> Option<std::sync::Arc<rustls::ServerConfig>> {
    let id = &settings.identity;
    let tls = settings.listen.proxy_tls.as_ref();
    if !id.certificates.is_empty() && tls.is_none_or(|t| t.client_ca.is_none()) {
        let why = "client certificates are requested only on `listen.proxy_tls` with `client_ca`";
        let p = Problem::NeverApplies {
            what: "identity.certificates",
            why,
        };
        report.warn(config, &[Seg::key("identity"), Seg::key("certificates")], p);
    }
    if id.credentials.is_some() && tls.is_none() && !id.allow_basic_over_plaintext {
        let why = "Basic credentials are accepted only on `listen.proxy_tls` unless \
                   `identity.allow_basic_over_plaintext: true`";
        let p = Problem::NeverApplies {
            what: "identity.credentials",
            why,
        };
        report.warn(config, &[Seg::key("identity"), Seg::key("credentials")], p);
    }
    if in_memory {
        return None;
    }
    crate::proxy::tls::server_config(tls?)
        .map_err(|e| {
            let at = [Seg::key("listen"), Seg::key("proxy_tls"), Seg::key(e.key)];
            report.error(config, &at, Problem::BadTls { err: e.message });
        })
        .ok()
}

/// The users of `identity.credentials` (`path`), whose ministries must have policy files.
fn users(
    report: &mut Report,
    files: &mut Files,
    config: &Src<'_>,
    path: &Path,
    policy: &PolicySet,
) -> Vec<settings::User> {
    if !files.is_file(path) {
        let p = Problem::NotFound {
            what: "credentials file",
            path: path.display().to_string(),
        };
        report.error(config, &[Seg::key("identity"), Seg::key("credentials")], p);
        return Vec::new();
    }
    let mut refs = Vec::new();
    let Some((text, users)) = credentials(report, files, path, &mut refs) else {
        return Vec::new();
    };
    check_ministries(report, &Src::whole(path, &text), &refs, policy);
    users
}

/// The YAML files of a folder named by `key` in `egressd.yaml`.
fn folder(
    report: &mut Report,
    files: &Files,
    config: &Src<'_>,
    dir: &Path,
    explicit: bool,
    key: &'static str,
) -> Vec<PathBuf> {
    let err = match files.list_yaml(dir) {
        Ok(paths) => return paths,
        Err(e) => e,
    };
    let path = dir.display().to_string();
    if err.kind() != std::io::ErrorKind::NotFound {
        report.error(
            config,
            &[Seg::key(key)],
            Problem::Io {
                what: "folder",
                err: format!("{path}: {err}"),
            },
        );
    } else if explicit {
        report.error(
            config,
            &[Seg::key(key)],
            Problem::NotFound {
                what: "folder",
                path,
            },
        );
    } else if key == "policies" {
        let consequence = "no ministry is defined, so every client is blocked as `_unknown`";
        report.warn_at(
            config.file,
            Pos::START,
            Problem::MissingDefaultDir {
                what: "policies folder",
                path,
                consequence,
            },
        );
    }
    Vec::new()
}

/// The line of rule `index` (0-based) of `section` (`rules`, `mandatory` or `baseline`) in a
/// policy file, for the rare rules whose [`crate::policy::model::Origin::line`] is 0 (very
/// long files written in flow style). Costs one parse of the file.
pub fn locate_rule(file: &Path, section: &str, index: usize) -> Option<u32> {
    let text = std::fs::read_to_string(file).ok()?;
    yaml::locate(Doc::whole(&text), &[Seg::key(section), Seg::Index(index)]).map(|p| p.line)
}

/// The test files of a folder (`settings.tests_dir`): `*.yaml`/`*.yml`, sorted, no dotfiles.
pub fn test_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    files::list_yaml(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// Loads a config tree of `(relative path, text)` files; returns the printed diagnostics.
    fn messages(tree: &[(&str, &str)]) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("policies")).unwrap();
        for (path, text) in tree {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let diags = match load(&dir.path().join("egressd.yaml")) {
            Ok(loaded) => loaded.warnings,
            Err(diags) => diags,
        };
        let root = format!("{}/", dir.path().display());
        diags
            .iter()
            .map(|d| d.to_string().replace(&root, ""))
            .collect()
    }

    #[test]
    fn edge_cases_of_policy_files() {
        let m = messages(&[
            ("egressd.yaml", ""),
            ("policies/_organization.yaml", ""),
            ("policies/a.yaml", "ministry: a\nrules:\n- {id: 42, action: allow, hosts: [a.x]}\n- {id: 42, action: allow, hosts: [b.x]}\n-\n"),
            ("policies/b.yaml", "ministry: b\n---\nministry: c\n"),
            ("policies/c.yaml", "ministry: c\nrules:\n- {id: x, action: allow, hosts: [a.x], schedule: {hours: 25:00-26:00, timezone: Nowhere}}\n"),
            ("policies/_organisation.yaml", "default: block\n"),
        ]);
        assert_eq!(m, [
            "policies/_organisation.yaml:1:1: `_organisation.yaml`: policy file names starting with `_` are reserved; the organization file is `_organization.yaml`",
            "policies/a.yaml:4:8: duplicate rule id `42` (first used at line 3)",
            "policies/a.yaml:5:2: empty list entry: a rule needs `id`, `action` and a selector",
            "policies/b.yaml:1:1: more than one YAML document (`---`) in this file",
            "policies/c.yaml:3:58: invalid `hours` `25:00-26:00`: expected HH:MM-HH:MM, e.g. `08:00-18:00`",
            "policies/c.yaml:3:81: unknown time zone `Nowhere`; expected an IANA name such as `UTC` or `America/Toronto`",
        ]);
    }

    #[test]
    fn in_memory_trees_load_like_folders() {
        let tree = [
            ("egressd.yaml", "categories: cats/\n"),
            ("policies/_organization.yaml", "baseline:\n- {id: s, action: block, categories: [social]}\n"),
            ("policies/a.yaml", "ministry: a\nrules:\n- {id: 42, action: allow, hosts: [a.x]}\n- {id: 42, action: allow, hosts: [b.x]}\n"),
            ("policies/b.yaml", "ministry: a\n"),
            ("cats/social.yaml", "domains: [Facebook.COM., '%66b.com']\n"),
        ];
        let disk = messages(&tree);
        let memory: Vec<String> = match load_from_strings(&tree, Utc::now()) {
            Ok(loaded) => loaded.warnings,
            Err(diags) => diags,
        }
        .iter()
        .map(|d| d.to_string())
        .collect();
        assert_eq!(memory, disk);
        assert_eq!(memory.len(), 3, "{memory:?}");

        // The shipped configuration, read into memory, loads as it does from its folder.
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let mut texts = Vec::new();
        for dir in ["", "policies", "categories"] {
            for path in files::list_yaml(&root.join(dir)).unwrap() {
                let rel = path
                    .strip_prefix(&root)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_owned();
                texts.push((rel, std::fs::read_to_string(&path).unwrap()));
            }
        }
        let tree: Vec<(&str, &str)> = texts
            .iter()
            .map(|(p, t)| (p.as_str(), t.as_str()))
            .collect();
        let memory = load_from_strings(&tree, Utc::now()).unwrap();
        let disk = load(&root.join("egressd.yaml")).unwrap();
        let names = |l: &Loaded| -> Vec<(String, usize)> {
            (l.policy.ministries.iter())
                .map(|m| (m.name.to_string(), m.rules.len()))
                .collect()
        };
        assert_eq!(names(&memory), names(&disk));
        assert_eq!(memory.policy.categories.len(), disk.policy.categories.len());
        assert_eq!(
            memory.settings.identity.sources,
            disk.settings.identity.sources
        );
        assert_eq!(memory.files.len(), disk.files.len());
    }

    /// A block-style category list goes through `longlist`; its diagnostics are those of the
    /// ordinary path (taken by the same list with one entry spelled with an escape, `\x2e`
    /// for `.`, which `longlist` refuses).
    #[test]
    fn category_lists_report_alike_on_both_paths() {
        let fast = "descripton: typo\ndomains:\n  # Meta\n  - facebook.com\n  - 10.0.0.1\n  - a..b.com   # empty label\n  - fine.example\n";
        let slow = fast.replace("- fine.example", "- \"fine\\x2eexample\"");
        assert!(longlist::split(fast, "domains").is_some());
        assert!(longlist::split(&slow, "domains").is_none());
        let m = messages(&[
            ("egressd.yaml", ""),
            ("categories/fast.yaml", fast),
            ("categories/slow.yaml", &slow),
        ]);
        let (a, b): (Vec<_>, Vec<_>) = m.iter().partition(|d| d.starts_with("categories/fast"));
        assert_eq!(a.len(), 3, "{m:?}");
        for (a, b) in a.iter().zip(&b) {
            assert_eq!(a.replace("fast.yaml", "slow.yaml"), **b);
        }
        assert!(
            a[0].starts_with("categories/fast.yaml:1:1: unknown key `descripton`"),
            "{}",
            a[0]
        );
        assert!(a[1].starts_with("categories/fast.yaml:5:5: "), "{}", a[1]);
        assert!(a[2].starts_with("categories/fast.yaml:6:5: "), "{}", a[2]);
    }

    /// Writes a ministry file of `n` rules, block style or flow style.
    fn big_tree(n: usize, flow: bool) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("policies")).unwrap();
        std::fs::write(
            dir.path().join("egressd.yaml"),
            "listen: {proxy: 127.0.0.1:3128}\n",
        )
        .unwrap();
        let mut text = String::from("ministry: big\nrules:\n");
        for i in 0..n {
            text += &if flow {
                format!(
                    "  - {{id: r{i}, action: block, domains: [d{i}.example], ports: [80, 443]}}\n"
                )
            } else {
                format!("  - id: r{i}\n    action: block\n    domains: [d{i}.example, e{i}.example]\n    destinations: [10.{}.{}.0/24]\n    reason: rule {i}\n", i / 256 % 256, i % 256)
            };
        }
        std::fs::write(dir.path().join("policies/big.yaml"), text).unwrap();
        dir
    }

    #[test]
    fn rule_lines_in_long_files_and_locate_rule() {
        for flow in [false, true] {
            let dir = big_tree(300, flow);
            let loaded = load(&dir.path().join("egressd.yaml")).unwrap();
            let rules = &loaded.policy.ministries[0].rules;
            let per_rule = if flow { 1 } else { 5 };
            for (i, r) in rules.iter().enumerate() {
                assert_eq!(
                    r.origin.line as usize,
                    3 + i * per_rule,
                    "flow={flow} {}",
                    r.name
                );
            }
            let file = dir.path().join("policies/big.yaml");
            assert_eq!(
                locate_rule(&file, "rules", 299),
                Some(3 + 299 * per_rule as u32)
            );
        }
    }

    /// `cargo test --release --lib ten_thousand -- --ignored --nocapture`
    #[test]
    #[ignore = "timing: run in release"]
    fn ten_thousand_rules_load_time() {
        for flow in [false, true] {
            let dir = big_tree(10_000, flow);
            let start = Instant::now();
            let loaded = load(&dir.path().join("egressd.yaml")).unwrap();
            let rules = &loaded.policy.ministries[0].rules;
            println!(
                "10,000 rules (flow style: {flow}): loaded in {:?}; last rule at line {}",
                start.elapsed(),
                rules[9_999].origin.line
            );
        }
    }
}
