//! Observability helpers: admin requests, metric scrapes parsed into samples, audit records.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{raw, Proxy, RawResponse};

/// A GET on the admin listener.
pub async fn admin_get(admin: SocketAddr, path: &str) -> RawResponse {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n");
    raw(admin, req.as_bytes()).await
}

/// One sample of a text exposition: name, labels, value.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses the text format's samples (comments skipped). Label values in our exposition never
/// contain `,` `"` or `}`, which the checks below rely on anyway.
pub fn parse(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample line");
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let labels = labels
            .split("\",")
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').expect("label");
                (k.to_owned(), v.trim_matches('"').to_owned())
            })
            .collect();
        out.push(Sample {
            name: name.to_owned(),
            labels,
            value: value.parse().expect("numeric value"),
        });
    }
    out
}

/// Scrapes `/metrics`.
pub async fn scrape(p: &Proxy) -> Vec<Sample> {
    let r = admin_get(p.admin, "/metrics").await;
    assert_eq!(r.status, 200);
    parse(&r.text())
}

/// The value of the sample `name{labels}` (exact label set), if exported.
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    samples
        .iter()
        .find(|s| s.name == name && s.labels == want)
        .map(|s| s.value)
}

/// Sum of `name` over the samples whose labels include `labels`.
pub fn sum(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

/// Reads audit records from `files` (JSON lines) until there are at least `want`, flushing the
/// writer between reads; panics after 10 s.
pub async fn audit_records(
    p: &Proxy,
    files: &[std::path::PathBuf],
    want: usize,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        p.server.flush_audit(Duration::from_secs(5)).await;
        let mut recs = Vec::new();
        for f in files {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            for line in text.lines() {
                recs.push(serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")));
            }
        }
        if recs.len() >= want || Instant::now() > deadline {
            return recs;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
