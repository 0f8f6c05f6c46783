//! `egressd test` files: a YAML list of cases (`ministry` or `client`, `url`, `expect`,
//! optional `rule` and `at`), each validated and located like rules are. Whether the named
//! ministry or rule exists is the test runner's business: it has the loaded policy.

use std::net::IpAddr;
use std::path::Path;

use chrono::{DateTime, Utc};

use super::error::{Diagnostic, Problem};
use super::outline::item_docs;
use super::raw::RawTestCase;
use super::validate::files::read;
use super::validate::report::{Report, Src};
use super::validate::{time, values};
use super::yaml::{self, Seg, Value};

/// What a case expects the decision to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Expect {
    Allow,
    Block,
    /// Allowed only because the ministry is in report mode (a would-block).
    Report,
}

/// One case. Exactly one of `ministry` and `client` is set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestCase {
    pub ministry: Option<String>,
    pub client: Option<IpAddr>,
    /// As written: `https://…` is a CONNECT to the host (port 443 unless given), `http://…` a
    /// plain request.
    pub url: String,
    pub expect: Expect,
    /// `FILE-STEM/ID` of the rule that must decide.
    pub rule: Option<String>,
    pub at: Option<DateTime<Utc>>,
    /// 1-based line of the case's first key.
    pub line: u32,
}

/// Loads one test file; `Err` holds every problem of the file.
pub fn load_test_cases(path: &Path) -> Result<Vec<TestCase>, Vec<Diagnostic>> {
    let mut report = Report::default();
    let cases = read(&mut report, &mut Vec::new(), path, "test file")
        .and_then(|text| cases(&mut report, &Src::whole(path, &text)));
    match cases {
        Some(cases) if !report.has_errors() => Ok(cases),
        _ => Err(report.finish()),
    }
}

fn cases(report: &mut Report, src: &Src<'_>) -> Option<Vec<TestCase>> {
    let items = match yaml::parse_value(src.doc) {
        Ok(Value::Sequence(items)) => items,
        Ok(Value::Null) => Vec::new(),
        Ok(_) => {
            report.error(
                src,
                &[],
                Problem::Yaml("a test file is a list of cases (`- url: …`)".into()),
            );
            return None;
        }
        Err(e) => {
            report.yaml(src, vec![e]);
            return None;
        }
    };
    let slices = item_docs(src.doc, &[], &items);
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let case_src = match &slices {
            Some(docs) => Src {
                file: src.file,
                doc: docs[i],
                base: vec![Seg::Index(0)],
            },
            None => src.child(&[Seg::Index(i)]),
        };
        out.extend(case(report, &case_src, item));
    }
    Some(out)
}

fn case(report: &mut Report, src: &Src<'_>, value: &Value) -> Option<TestCase> {
    let (raw, errors) = yaml::collect::<RawTestCase>(src.doc, &src.base, value);
    // After a structural error (a misspelt key), "missing …" would only repeat it.
    let complete = errors.is_empty();
    let mut ok = complete;
    report.yaml(src, errors);
    let raw = raw?;
    let mut field = |key: &str, problem: Problem| {
        report.error(src, &[Seg::key(key)], problem);
        ok = false;
    };
    if complete && raw.ministry.is_some() == raw.client.is_some() {
        field("client", Problem::MinistryXorClient);
    }
    let client = check(&mut field, "client", raw.client.as_deref().map(values::ip));
    let at = check(&mut field, "at", raw.at.as_deref().map(time::instant));
    let written_expect = raw.expect.as_deref().map(expect);
    let expect = check(
        &mut field,
        "expect",
        written_expect.or_else(|| complete.then(missing_expect)),
    );
    let written_url = raw.url.map(String::from).map(check_url);
    let url = check(
        &mut field,
        "url",
        written_url.or_else(|| complete.then(|| Err(missing_url()))),
    );
    if !ok {
        return None;
    }
    let (expect, url, line) = (expect?, url?, src.pos(&[]).line);
    Some(TestCase {
        ministry: raw.ministry.map(String::from),
        client,
        url,
        expect,
        rule: raw.rule.map(String::from),
        at,
        line,
    })
}

/// The value of an optional field, reporting it through `field` when it is bad.
fn check<T>(
    field: &mut impl FnMut(&str, Problem),
    key: &str,
    r: Option<Result<T, Problem>>,
) -> Option<T> {
    r?.map_err(|p| field(key, p)).ok()
}

fn expect(raw: &str) -> Result<Expect, Problem> {
    match raw {
        "allow" => Ok(Expect::Allow),
        "block" => Ok(Expect::Block),
        "report" => Ok(Expect::Report),
        _ => Err(Problem::BadChoice {
            what: "expect",
            value: raw.into(),
            expected: "`allow`, `block` or `report`",
        }),
    }
}

fn missing_expect() -> Result<Expect, Problem> {
    Err(Problem::Missing {
        key: "expect",
        hint: ": `allow`, `block` or `report`",
    })
}

fn missing_url() -> Problem {
    Problem::Missing {
        key: "url",
        hint: ", e.g. `url: https://example.com/`",
    }
}

/// `http://` or `https://` and a non-empty authority. The host is deliberately not normalised
/// here: a case may test that a malformed host is refused.
fn check_url(url: String) -> Result<String, Problem> {
    let lower = url.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"));
    match rest {
        Some(rest) if !rest.starts_with(['/', '?', '#']) && !rest.is_empty() => Ok(url),
        _ => Err(Problem::BadUrl {
            value: url,
            why: "expected `http://HOST/…` or `https://HOST/…`".into(),
        }),
    }
}
