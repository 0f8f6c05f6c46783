//! `egressd check`: load everything the configuration reaches and print every problem.

use std::path::Path;

use crate::config;

/// Exit code: 0 valid, 1 invalid (or, with `strict`, any warning).
pub fn check(config_path: &Path, strict: bool) -> i32 {
    match config::load(config_path) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                println!("{w}");
            }
            let ministries = loaded.policy.ministries.len();
            let rules: usize = loaded
                .policy
                .ministries
                .iter()
                .map(|m| m.rules.len())
                .sum::<usize>()
                + loaded.policy.organization.mandatory.len()
                + loaded.policy.organization.baseline.len();
            if strict && !loaded.warnings.is_empty() {
                println!(
                    "{}: {} warning(s) with --strict",
                    config_path.display(),
                    loaded.warnings.len()
                );
                return 1;
            }
            println!(
                "{}: OK ({ministries} ministries, {rules} rules, {} categories, {} files)",
                config_path.display(),
                loaded.policy.categories.len(),
                loaded.files.len()
            );
            0
        }
        Err(diags) => {
            for d in &diags {
                println!("{d}");
            }
            1
        }
    }
}
