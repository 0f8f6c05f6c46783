//! `egressd test`: policy test cases (`config/tests/*.yaml`) evaluated against the compiled
//! policy, exactly as the proxy would decide (identity included for `client:` cases). An
//! `https://` URL is a CONNECT to its port (443 by default; its path is invisible), an `http://`
//! URL a plain request.

use std::path::{Path, PathBuf};

use chrono::Utc;

use crate::config::{self, Expect, TestCase};
use crate::identity::IdentityTable;
use crate::policy::{Outcome, Policy, Verdict};
use crate::proxy::target;

/// Exit code: 0 when every case passed, 1 otherwise (or when nothing could be loaded).
pub fn run_tests(config_path: &Path, files: &[PathBuf]) -> i32 {
    let loaded = match config::load(config_path) {
        Ok(l) => l,
        Err(diags) => {
            for d in &diags {
                println!("{d}");
            }
            return 1;
        }
    };
    let files = if files.is_empty() {
        match yaml_files(&loaded.settings.tests_dir) {
            Ok(f) => f,
            Err(e) => {
                println!("{}: {e}", loaded.settings.tests_dir.display());
                return 1;
            }
        }
    } else {
        files.to_vec()
    };
    let policy = Policy::compile(&loaded.policy);
    let identity = IdentityTable::build(
        &loaded.settings.identity.sources,
        loaded.settings.identity.default_ministry.as_deref(),
        &policy,
    );
    let (mut passed, mut failed) = (0usize, 0usize);
    for file in &files {
        let cases = match config::load_test_cases(file) {
            Ok(c) => c,
            Err(diags) => {
                for d in &diags {
                    println!("{d}");
                }
                failed += 1;
                continue;
            }
        };
        for case in &cases {
            match run_case(&policy, &identity, case) {
                Ok(()) => passed += 1,
                Err(msg) => {
                    failed += 1;
                    println!("{}:{}: {}: {msg}", file.display(), case.line, case.url);
                }
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    i32::from(failed > 0)
}

fn yaml_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            !name.starts_with('.') && (name.ends_with(".yaml") || name.ends_with(".yml"))
        })
        .collect();
    files.sort();
    Ok(files)
}

fn run_case(policy: &Policy, identity: &IdentityTable, case: &TestCase) -> Result<(), String> {
    let (t, path, tunnel) = target::parse_cli(&case.url).map_err(|e| format!("bad url: {e}"))?;
    let ministry = match (&case.ministry, case.client) {
        (Some(name), _) => Some(
            policy
                .ministry_id(name)
                .ok_or_else(|| format!("no ministry named `{name}`"))?,
        ),
        (None, Some(ip)) => identity.identify(ip).ministry,
        (None, None) => return Err("case names neither ministry nor client".into()),
    };
    let now = case.at.unwrap_or_else(Utc::now);
    let path = if tunnel { None } else { path.as_deref() };
    let got: Verdict = match ministry {
        Some(m) => policy.decide(m, &t.host, t.port, path, now),
        None => policy.unknown_verdict(),
    };
    let want = match case.expect {
        Expect::Allow => Outcome::Allow,
        Expect::Block => Outcome::Block,
        Expect::Report => Outcome::Report,
    };
    let got_rule = policy.rule(got.rule).name.as_ref();
    let rule_ok = case.rule.as_deref().is_none_or(|r| r == got_rule);
    if got.outcome == want && rule_ok {
        return Ok(());
    }
    let expected = match &case.rule {
        Some(r) => format!("{} by {r}", want.as_str()),
        None => want.as_str().to_string(),
    };
    Err(format!(
        "expected {expected}, got {} by {got_rule}",
        got.outcome.as_str()
    ))
}
