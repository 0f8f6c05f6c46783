//! `egressd explain`: the decision for one destination, the rule that made it (id and
//! `FILE:LINE`), its reason, and the walk through the evaluation order, including the rules that
//! matched but were not reached.

use std::path::Path;

use chrono::Utc;
use serde_json::json;

use super::ExplainArgs;
use crate::config;
use crate::identity::IdentityTable;
use crate::policy::{Explanation, MinistryId, Policy, RuleId};
use crate::proxy::target;

/// Exit code: 0 when a decision could be made (it is in the output), 1 on bad input.
pub fn explain(config_path: &Path, args: &ExplainArgs) -> i32 {
    let loaded = match config::load(config_path) {
        Ok(l) => l,
        Err(diags) => {
            for d in &diags {
                eprintln!("{d}");
            }
            return 1;
        }
    };
    let (t, path, tunnel) = match target::parse_cli(&args.target) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("egressd explain: {}: {e}", args.target);
            return 1;
        }
    };
    let policy = Policy::compile(&loaded.policy);
    let ministry = match resolve_ministry(&policy, &loaded.settings, args) {
        Ok(m) => m,
        Err(msg) => {
            eprintln!("egressd explain: {msg}");
            return 1;
        }
    };
    let now = args
        .at
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(Utc::now);
    let path = if tunnel { None } else { path.as_deref() };
    let ex = match ministry {
        Some(m) => policy.explain(m, &t.host, t.port, path, now),
        None => Explanation {
            verdict: policy.unknown_verdict(),
            walk: Vec::new(),
        },
    };
    let ministry_name = ministry
        .map(|m| policy.ministry(m).name.to_string())
        .unwrap_or_else(|| "_unknown".into());
    let kind = if tunnel { "connect" } else { "http" };
    if args.json {
        let out = json_output(
            &policy,
            &ministry_name,
            kind,
            &t.host.to_string(),
            t.port,
            &ex,
        );
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        print_text(&policy, &ministry_name, kind, &t, &ex);
    }
    0
}

fn resolve_ministry(
    policy: &Policy,
    settings: &config::Settings,
    args: &ExplainArgs,
) -> Result<Option<MinistryId>, String> {
    if let Some(name) = &args.ministry {
        return policy
            .ministry_id(name)
            .map(Some)
            .ok_or_else(|| format!("no ministry named `{name}`"));
    }
    let ip = args.client.ok_or("give --ministry or --client")?;
    let table = IdentityTable::build(
        &settings.identity.sources,
        settings.identity.default_ministry.as_deref(),
        policy,
    );
    Ok(table.identify(ip).ministry)
}

fn location(policy: &Policy, rule: RuleId) -> (Option<String>, Option<u32>) {
    match &policy.rule(rule).origin {
        Some(o) => (Some(o.file.to_string()), Some(o.line)),
        None => (None, None),
    }
}

fn where_text(policy: &Policy, rule: RuleId) -> String {
    match location(policy, rule) {
        (Some(f), Some(l)) => format!("{f}:{l}"),
        _ => "default".into(),
    }
}

fn print_text(policy: &Policy, ministry: &str, kind: &str, t: &target::Target, ex: &Explanation) {
    let rule = policy.rule(ex.verdict.rule);
    println!(
        "{} {}:{} ({kind}) for {ministry}",
        ex.verdict.outcome.as_str().to_uppercase(),
        t.host,
        t.port
    );
    println!(
        "  rule:   {} ({})",
        rule.name,
        where_text(policy, ex.verdict.rule)
    );
    if let Some(r) = &rule.reason {
        println!("  reason: {r}");
    }
    if let Some(tk) = &rule.ticket {
        println!("  ticket: {tk}");
    }
    println!("  walk ({} rules considered):", ex.walk.len());
    for step in ex.walk.iter().filter(|s| s.matched || s.decided) {
        let r = policy.rule(step.rule);
        let state = match (step.decided, step.active) {
            (true, _) => "DECIDED",
            (false, false) => "matched, inactive (expired or outside its schedule)",
            (false, true) => "matched, not reached",
        };
        println!(
            "    {:<20} {:<40} {:<6} {} ({})",
            step.stage.as_str(),
            r.name,
            r.action.as_str(),
            state,
            where_text(policy, step.rule)
        );
    }
}

fn json_output(
    policy: &Policy,
    ministry: &str,
    kind: &str,
    host: &str,
    port: u16,
    ex: &Explanation,
) -> serde_json::Value {
    let rule = policy.rule(ex.verdict.rule);
    let (file, line) = location(policy, ex.verdict.rule);
    let walk: Vec<_> = ex
        .walk
        .iter()
        .map(|s| {
            let r = policy.rule(s.rule);
            let (file, line) = location(policy, s.rule);
            json!({
                "rule": r.name.as_ref(),
                "stage": s.stage.as_str(),
                "action": r.action.as_str(),
                "matched": s.matched,
                "active": s.active,
                "decided": s.decided,
                "file": file,
                "line": line,
            })
        })
        .collect();
    json!({
        "ministry": ministry,
        "kind": kind,
        "host": host,
        "port": port,
        "action": ex.verdict.outcome.as_str(),
        "rule": rule.name.as_ref(),
        "file": file,
        "line": line,
        "reason": rule.reason.as_deref(),
        "ticket": rule.ticket.as_deref(),
        "walk": walk,
    })
}
