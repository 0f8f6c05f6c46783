//! What loading reports: [`Diagnostic`] (a located error or warning, printed
//! `FILE:LINE:COLUMN: message`) and [`Problem`], the typed catalogue of every message the
//! loader can produce, so wording and hints live in one place.

use std::fmt;
use std::path::PathBuf;

/// Whether a diagnostic stops the configuration from loading.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Error,
    Warning,
}

/// One located problem. `file` is the path as the user can open it (relative to the working
/// directory when the config was named relatively); `line` and `column` are 1-based.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: u32,
    pub column: u32,
    pub message: String,
    pub severity: Severity,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (file, line, column) = (self.file.display(), self.line, self.column);
        match self.severity {
            Severity::Error => write!(f, "{file}:{line}:{column}: {}", self.message),
            Severity::Warning => write!(f, "{file}:{line}:{column}: warning: {}", self.message),
        }
    }
}

impl std::error::Error for Diagnostic {}

/// Every problem the loader reports. The text is the diagnostic's message: it quotes the bad
/// value and, where one helps, ends with a hint.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("cannot read {what}: {err}")]
    Io { what: &'static str, err: String },
    #[error("unusable TLS material: {err}")]
    BadTls { err: String },
    #[error("{0}")]
    Yaml(String),
    #[error("unknown key `{key}`{hint}")]
    UnknownKey { key: String, hint: String },
    #[error("{0}; write a list, e.g. `[a, b]`")]
    NotAList(String),
    #[error("missing `{key}`{hint}")]
    Missing {
        key: &'static str,
        hint: &'static str,
    },
    #[error("invalid {what} `{value}`: expected {expected}")]
    BadChoice {
        what: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("ministry `{name}` is already defined by {first}")]
    DuplicateMinistry { name: String, first: String },
    #[error("`{file}` and `{other}` have the same name; rule names (`{stem}/ID`) would clash")]
    DuplicateStem {
        file: String,
        other: String,
        stem: String,
    },
    #[error("`{name}`: {why}")]
    BadName { name: String, why: &'static str },
    #[error("duplicate rule id `{id}` (first used {first})")]
    DuplicateRuleId { id: String, first: String },
    #[error("unknown category `{name}`; known categories: {known}")]
    UnknownCategory { name: String, known: String },
    #[error("invalid CIDR `{value}`: {err}")]
    BadCidr { value: String, err: String },
    #[error("port {value} out of range: expected 1-65535")]
    BadPort { value: i64 },
    #[error("invalid {what} `{value}`: {err}{hint}")]
    BadHost {
        what: &'static str,
        value: String,
        err: String,
        hint: String,
    },
    #[error("invalid URL `{value}`: {why}")]
    BadUrl { value: String, why: String },
    #[error("invalid duration `{value}`: {err}; write e.g. `500ms`, `10s`, `2m`")]
    BadDuration { value: String, err: String },
    #[error(
        "invalid address `{value}`: {err}; write IP:PORT, e.g. `127.0.0.1:3128` or `[::1]:3128`"
    )]
    BadSocket { value: String, err: String },
    #[error("invalid IP address `{value}`")]
    BadIp { value: String },
    #[error("`{key}` must be at least {min}, got {value}")]
    TooSmall {
        key: &'static str,
        min: u64,
        value: u64,
    },
    #[error("unknown time zone `{value}`{hint}")]
    UnknownTimeZone { value: String, hint: String },
    #[error("invalid `expires` `{value}`: expected a date (2027-03-31) or an RFC 3339 date-time (2027-03-31T18:00:00-05:00)")]
    BadExpires { value: String },
    #[error("invalid day `{value}`: expected one of mon, tue, wed, thu, fri, sat, sun")]
    BadDay { value: String },
    #[error("`days` is empty: the rule would never match")]
    EmptyDays,
    #[error("invalid `hours` `{value}`: expected HH:MM-HH:MM, e.g. `08:00-18:00`")]
    BadHours { value: String },
    #[error(
        "invalid `at` `{value}`: expected an RFC 3339 date-time, e.g. `2026-12-01T10:00:00-05:00`"
    )]
    BadInstant { value: String },
    #[error("empty list entry: a rule needs `id`, `action` and a selector")]
    EmptyRule,
    #[error("the rule has no selector; add `domains`, `hosts`, `categories`, `urls` or `destinations` (or `ports` alone to match every host on those ports)")]
    NoSelector,
    #[error("unknown ministry `{name}`: no policy file has `ministry: {name}`{hint}")]
    UnknownMinistry { name: String, hint: String },
    #[error("{what} `{path}` not found")]
    NotFound { what: &'static str, path: String },
    #[error("a test case needs exactly one of `ministry` and `client`")]
    MinistryXorClient,
    #[error("duplicate {what} `{value}` (also at line {first_line})")]
    Duplicate {
        what: &'static str,
        value: String,
        first_line: u32,
    },
    #[error("{hidden} more {what} in this file not shown")]
    TooMany { what: &'static str, hidden: usize },

    // ---- warnings ----
    #[error("a `urls:` block rule also blocks the whole host on CONNECT tunnels, where the path is not visible (fail closed)")]
    UrlBlockOnTunnel,
    #[error("{what} never applies: {why}")]
    NeverApplies {
        what: &'static str,
        why: &'static str,
    },
    #[error("rule `{id}` expired at {when}; it no longer matches")]
    Expired { id: String, when: String },
    #[error("rule `{id}` expires in {days} day(s), at {when}")]
    ExpiresSoon { id: String, days: i64, when: String },
    #[error("`{value}` has host bits set; it means `{net}`")]
    HostBitsSet { value: String, net: String },
    #[error("{what} `{path}` not found; {consequence}")]
    MissingDefaultDir {
        what: &'static str,
        path: String,
        consequence: &'static str,
    },
}

impl Problem {
    /// Turns a serde/serde_yaml message into a problem, adding hints: the closest known key for
    /// an unknown one, list syntax for a scalar where a list belongs.
    pub(crate) fn from_yaml(message: String) -> Problem {
        if let Some((key, tail)) = message
            .strip_prefix("unknown field `")
            .and_then(|rest| rest.split_once('`'))
        {
            // serde lists the expected fields in backquotes: ", expected one of `a`, `b`".
            let expected: Vec<&str> = tail.split('`').skip(1).step_by(2).collect();
            let hint = match closest(key, expected.iter().copied()) {
                Some(c) => format!("; did you mean `{c}`?"),
                None if expected.is_empty() => String::new(),
                None => {
                    let list: Vec<String> = expected.iter().map(|e| format!("`{e}`")).collect();
                    format!("; expected one of {}", list.join(", "))
                }
            };
            return Problem::UnknownKey {
                key: key.to_owned(),
                hint,
            };
        }
        if message.starts_with("deserializing from YAML containing more than one document") {
            return Problem::Yaml("more than one YAML document (`---`) in this file".to_owned());
        }
        if message.starts_with("invalid type: ") && message.ends_with("expected a sequence") {
            return Problem::NotAList(message);
        }
        Problem::Yaml(message)
    }
}

/// The candidate closest to `word` by edit distance, when close enough to be a likely typo.
pub(crate) fn closest<'a, I>(word: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let limit = (word.chars().count() / 3).clamp(1, 3);
    candidates
        .into_iter()
        .map(|c| (edit_distance(&word.to_lowercase(), &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// `"; did you mean `x`?"`, or nothing.
pub(crate) fn did_you_mean<'a, I>(word: &str, candidates: I) -> String
where
    I: IntoIterator<Item = &'a str>,
{
    closest(word, candidates)
        .map(|c| format!("; did you mean `{c}`?"))
        .unwrap_or_default()
}

/// Levenshtein distance over chars (inputs are short keys and names).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = substitute.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_has_file_line_column() {
        let mut d = Diagnostic {
            file: "config/policies/a.yaml".into(),
            line: 3,
            column: 7,
            message: "boom".into(),
            severity: Severity::Error,
        };
        assert_eq!(d.to_string(), "config/policies/a.yaml:3:7: boom");
        d.severity = Severity::Warning;
        assert_eq!(d.to_string(), "config/policies/a.yaml:3:7: warning: boom");
    }

    #[test]
    fn typo_hints() {
        let keys = ["domains", "hosts", "categories", "urls"];
        assert_eq!(closest("domain", keys), Some("domains"));
        assert_eq!(closest("Hosts", keys), Some("hosts"));
        assert_eq!(closest("zzz", keys), None);
        assert_eq!(did_you_mean("url", keys), "; did you mean `urls`?");
    }

    #[test]
    fn unknown_field_messages_get_hints() {
        let p =
            Problem::from_yaml("unknown field `domain`, expected one of `id`, `domains`".into());
        assert_eq!(
            p.to_string(),
            "unknown key `domain`; did you mean `domains`?"
        );
        let p = Problem::from_yaml("unknown field `zzz`, expected `a` or `b`".into());
        assert_eq!(p.to_string(), "unknown key `zzz`; expected one of `a`, `b`");
    }
}
