//! The policy folder and the categories folder → [`PolicySet`]: the organization file, one
//! file per ministry (unique `ministry:` names, unique file stems), category files, and the
//! rule lists inside them (unique ids per file, each rule located for `egressd explain`).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::de::DeserializeOwned;

use super::files::{stem, Files};
use super::report::{Report, Src};
use super::rule::{rule, RuleCx};
use super::values;
use crate::config::error::Problem;
use crate::config::longlist;
use crate::config::outline::item_docs;
use crate::config::raw::{RawCategory, RawMinistry, RawOrganization};
use crate::config::yaml::{self, Pos, Seg, Value};
use crate::policy::model::{Action, Category, Ministry, Organization, PolicySet, Rule};

/// Stem of the organization file.
pub const ORGANIZATION: &str = "_organization";

/// When rules cannot be cut into slices (see [`crate::config::outline`]), each rule's line
/// costs a parse of the whole file; past this many rules lines are left unknown (0) and
/// `config::locate_rule` finds one on demand.
const MAX_WHOLE_FILE_PROBES: usize = 500;

/// Parses a whole file into its raw type, reporting what fails. An empty file is all
/// defaults (an empty `_organization.yaml` is a valid organization).
fn raw_file<T: DeserializeOwned + Default>(report: &mut Report, src: &Src<'_>) -> Option<T> {
    let value = yaml::parse_value(src.doc)
        .map_err(|e| report.yaml(src, vec![e]))
        .ok()?;
    if value.is_null() {
        return Some(T::default());
    }
    let (raw, errors) = yaml::collect::<T>(src.doc, &[], &value);
    report.yaml(src, errors);
    raw
}

/// Every category file among `paths` (name = file stem).
pub fn categories(report: &mut Report, files: &mut Files, paths: &[PathBuf]) -> Vec<Category> {
    let mut out: Vec<Category> = Vec::new();
    for path in paths {
        let name = stem(path);
        if out.iter().any(|c| *c.name == name) {
            report.error_at(path, Pos::START, duplicate_stem(path, paths, &name));
            continue;
        }
        // A category whose file is broken still exists (empty), so rules naming it do not
        // add "unknown category" to the real error.
        let (description, domains) = match files.read(report, path, "category file") {
            Some(text) => category(report, &Src::whole(path, &text)),
            None => (None, Vec::new()),
        };
        let name = name.into();
        out.push(Category {
            name,
            description,
            domains,
        });
    }
    out
}

/// A category file's description and normalised domains.
fn category(report: &mut Report, src: &Src<'_>) -> (Option<String>, Vec<Box<str>>) {
    if let Some(split) = longlist::split(src.doc.text, "domains") {
        return category_split(report, src.file, split);
    }
    let raw = raw_file::<RawCategory>(report, src).unwrap_or_default();
    let mut domains = Vec::new();
    for (i, d) in raw.domains.iter().flatten().enumerate() {
        match values::domain(d) {
            Ok(d) => domains.push(d),
            Err(p) => report.error(src, &[Seg::key("domains"), Seg::Index(i)], p),
        }
    }
    (raw.description.map(String::from), domains)
}

/// [`category`] for a file whose `domains:` list was read by [`longlist::split`]: the rest
/// of the file is checked as usual; each domain is reported at the position the split found.
fn category_split(
    report: &mut Report,
    file: &Path,
    split: longlist::Split<'_>,
) -> (Option<String>, Vec<Box<str>>) {
    let rest = Src::whole(file, &split.rest);
    let (raw, errors) = yaml::collect::<RawCategory>(rest.doc, &[], &split.value);
    report.yaml(&rest, errors);
    let mut domains = Vec::with_capacity(split.items.len());
    for (d, pos) in split.items {
        match values::domain(d) {
            Ok(d) => domains.push(d),
            Err(p) => report.error_at(file, pos, p),
        }
    }
    (raw.and_then(|r| r.description).map(String::from), domains)
}

fn duplicate_stem(path: &Path, all: &[PathBuf], stem_name: &str) -> Problem {
    let other = all.iter().find(|p| stem(p) == stem_name && *p != path);
    Problem::DuplicateStem {
        file: path.display().to_string(),
        other: other.map(|p| p.display().to_string()).unwrap_or_default(),
        stem: stem_name.to_owned(),
    }
}

/// Everything the policy files share while being validated.
struct PolicyCx<'a> {
    pub categories: &'a [Category],
    pub now: DateTime<Utc>,
}

/// The organization file (if any) and every ministry file among `paths`, with `categories`
/// (moved in, not copied: a block list can hold a million domains).
pub fn policies(
    report: &mut Report,
    files: &mut Files,
    dir: &Path,
    paths: &[PathBuf],
    categories: Vec<Category>,
    now: DateTime<Utc>,
) -> PolicySet {
    let cx = &PolicyCx {
        categories: &categories,
        now,
    };
    let names: BTreeSet<String> = cx.categories.iter().map(|c| c.name.to_string()).collect();
    let (org_paths, ministry_paths): (Vec<&PathBuf>, Vec<&PathBuf>) =
        paths.iter().partition(|p| stem(p) == ORGANIZATION);
    for extra in org_paths.iter().skip(1) {
        report.error_at(
            extra,
            Pos::START,
            duplicate_stem(extra, paths, ORGANIZATION),
        );
    }
    let organization = match org_paths.first() {
        Some(path) => organization(report, files, path, &names, cx),
        None => empty_organization(dir),
    };
    let ministries = ministries(
        report,
        files,
        paths,
        &ministry_paths,
        &organization,
        &names,
        cx,
    );
    PolicySet {
        organization,
        ministries,
        categories,
    }
}

/// Every ministry file, in name order; `all` is every policy file (for clash messages).
fn ministries(
    report: &mut Report,
    files: &mut Files,
    all: &[PathBuf],
    paths: &[&PathBuf],
    org: &Organization,
    names: &BTreeSet<String>,
    cx: &PolicyCx<'_>,
) -> Vec<Ministry> {
    let mut out = Vec::new();
    // Ministry name -> (file, text) of its first definition, to point duplicates at it.
    let mut defined: HashMap<Arc<str>, (&Path, String)> = HashMap::new();
    let mut stems = HashSet::new();
    for path in paths {
        let Some(file_stem) = ministry_stem(report, path, all, &mut stems) else {
            continue;
        };
        let Some(text) = files.read(report, path, "ministry file") else {
            continue;
        };
        let (stem, file, timezone, now) = (&*file_stem, display(path), org.timezone, cx.now);
        let rcx = RuleCx {
            stem,
            file,
            timezone,
            categories: names,
            now,
        };
        let src = Src::whole(path, &text);
        let Some(m) = ministry(report, &src, &rcx) else {
            continue;
        };
        if let Some((first, first_text)) = defined.get(&m.name) {
            let at = Src::whole(first, first_text).pos(&[Seg::key("ministry")]);
            let first = format!("{}:{}", first.display(), at.line);
            let problem = Problem::DuplicateMinistry {
                name: m.name.to_string(),
                first,
            };
            report.error(&src, &[Seg::key("ministry")], problem);
            continue;
        }
        defined.insert(m.name.clone(), (path, text));
        out.push(m);
    }
    out
}

/// The stem of a ministry file, unless it clashes with another file's or is reserved.
fn ministry_stem(
    report: &mut Report,
    path: &Path,
    all: &[PathBuf],
    seen: &mut HashSet<String>,
) -> Option<String> {
    let file_stem = stem(path);
    if !seen.insert(file_stem.clone()) {
        report.error_at(path, Pos::START, duplicate_stem(path, all, &file_stem));
        return None;
    }
    if let Err(p) = values::ministry_name(&file_stem) {
        report.error_at(path, Pos::START, reserved_file(p, &file_stem));
        return None;
    }
    Some(file_stem)
}

fn reserved_file(p: Problem, file_stem: &str) -> Problem {
    match file_stem.starts_with('_') {
        true => Problem::BadName {
            name: format!("{file_stem}.yaml"),
            why: "policy file names starting with `_` are reserved; the organization file is `_organization.yaml`",
        },
        false => p,
    }
}

fn display(path: &Path) -> Arc<str> {
    path.display().to_string().into()
}

/// No organization file: no mandatory or baseline rules, default allow, UTC.
fn empty_organization(dir: &Path) -> Organization {
    Organization {
        mandatory: Vec::new(),
        baseline: Vec::new(),
        default: Action::Allow,
        contact: None,
        timezone: Tz::UTC,
        file: display(&dir.join(format!("{ORGANIZATION}.yaml"))),
    }
}

fn organization(
    report: &mut Report,
    files: &mut Files,
    path: &Path,
    names: &BTreeSet<String>,
    cx: &PolicyCx<'_>,
) -> Organization {
    let mut org = empty_organization(path.parent().unwrap_or(Path::new(".")));
    org.file = display(path);
    let Some(text) = files.read(report, path, "organization file") else {
        return org;
    };
    let src = Src::whole(path, &text);
    let Some(raw) = raw_file::<RawOrganization>(report, &src) else {
        return org;
    };
    if let Some(tz) = raw.timezone.as_deref() {
        match super::time::timezone(tz) {
            Ok(tz) => org.timezone = tz,
            Err(p) => report.error(&src, &[Seg::key("timezone")], p),
        }
    }
    if let Some(d) = raw.default.as_deref() {
        match values::action(d) {
            Ok(a) => org.default = a,
            Err(p) => report.error(&src, &[Seg::key("default")], p),
        }
    }
    org.contact = raw.contact.map(Into::into);
    let rcx = RuleCx {
        stem: ORGANIZATION,
        file: org.file.clone(),
        timezone: org.timezone,
        categories: names,
        now: cx.now,
    };
    let mut seen = HashMap::new();
    org.mandatory = rule_list(
        report,
        &src,
        "mandatory",
        raw.mandatory.as_deref().unwrap_or_default(),
        &rcx,
        &mut seen,
    );
    org.baseline = rule_list(
        report,
        &src,
        "baseline",
        raw.baseline.as_deref().unwrap_or_default(),
        &rcx,
        &mut seen,
    );
    org
}

fn ministry(report: &mut Report, src: &Src<'_>, rcx: &RuleCx<'_>) -> Option<Ministry> {
    let raw = raw_file::<RawMinistry>(report, src)?;
    let name = match raw.ministry.as_deref() {
        Some(n) => values::ministry_name(n)
            .map_err(|p| report.error(src, &[Seg::key("ministry")], p))
            .ok()
            .map(|()| n),
        None => {
            let hint = "; name the ministry, e.g. `ministry: agriculture` (used in metrics, logs and `identity:`)";
            report.error(
                src,
                &[],
                Problem::Missing {
                    key: "ministry",
                    hint,
                },
            );
            None
        }
    };
    let mode = match raw.mode.as_deref().map(values::mode).transpose() {
        Ok(m) => m.unwrap_or_default(),
        Err(p) => {
            report.error(src, &[Seg::key("mode")], p);
            Default::default()
        }
    };
    let default = raw.default.as_deref().map(values::action).transpose();
    let default = default
        .map_err(|p| report.error(src, &[Seg::key("default")], p))
        .ok()
        .flatten();
    let rules = rule_list(
        report,
        src,
        "rules",
        raw.rules.as_deref().unwrap_or_default(),
        rcx,
        &mut HashMap::new(),
    );
    Some(Ministry {
        name: name?.into(),
        stem: rcx.stem.into(),
        description: raw.description.map(String::from),
        mode,
        default,
        contact: raw.contact.map(Into::into),
        rules,
        file: rcx.file.clone(),
    })
}

/// The rules of one section. `seen` maps ids to the line of their first use, shared by the
/// sections of one file.
fn rule_list(
    report: &mut Report,
    src: &Src<'_>,
    section: &str,
    values: &[Value],
    rcx: &RuleCx<'_>,
    seen: &mut HashMap<String, u32>,
) -> Vec<Rule> {
    let slices = item_docs(src.doc, &[Seg::key(section)], values);
    let mut rules = Vec::with_capacity(values.len());
    for (i, value) in values.iter().enumerate() {
        let (rule_src, line) = match &slices {
            Some(docs) => {
                let s = Src {
                    file: src.file,
                    doc: docs[i],
                    base: vec![Seg::Index(0)],
                };
                let line = s.pos(&[]).line;
                (s, line)
            }
            None => {
                let s = src.child(&[Seg::key(section), Seg::Index(i)]);
                let line = if values.len() <= MAX_WHOLE_FILE_PROBES {
                    s.pos(&[]).line
                } else {
                    0
                };
                (s, line)
            }
        };
        let built = rule(report, &rule_src, value, line, rcx);
        if let Some(id) = yaml::scalar_at(value, "id") {
            if let Some(first) = seen.get(&id) {
                let first = if *first == 0 {
                    "earlier in this file".to_owned()
                } else {
                    format!("at line {first}")
                };
                report.error(
                    &rule_src,
                    &[Seg::key("id")],
                    Problem::DuplicateRuleId {
                        id: id.clone(),
                        first,
                    },
                );
                continue;
            }
            seen.insert(id, line);
        }
        rules.extend(built);
    }
    rules
}
