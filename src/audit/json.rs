//! One audit record as one JSON object, fields in [`super::field::ALL`] order. The field names
//! are fixed ASCII identifiers, joined with their punctuation at compile time; strings that
//! need no escaping are copied, integers written with itoa (as serde_json does) and durations
//! with their three decimals, every other value goes through serde_json, so the output is
//! serde_json's (tests compare them). Formatting the record this way instead of through a
//! generic `Serialize` map skips escaping nineteen constant keys per record, and the timestamp
//! reuses its formatted second, which most records of a batch share.

use std::io::Write;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};

use super::Record;
use crate::policy::host::{ipv4_bytes, Host};
use crate::policy::model::Mode;
use crate::policy::Outcome;
use crate::proxy::respond::ErrorType;

/// Writes records; remembers the last formatted second.
#[derive(Default)]
pub(super) struct LineWriter {
    /// Seconds since the Unix epoch.
    second: u64,
    /// `"2026-11-26T14:58:03` for `second` (empty before the first record).
    prefix: String,
}

impl LineWriter {
    /// Appends `r` as one JSON object (without the newline).
    pub(super) fn write(&mut self, r: &Record, out: &mut Vec<u8>) -> serde_json::Result<()> {
        // `{"ts":`, then `,"name":` before every other value: the names of `field::ALL`, joined
        // at compile time (the tests hold them to `field::ALL`, in order).
        macro_rules! key {
            (first $name:literal) => {
                out.extend_from_slice(concat!("{\"", $name, "\":").as_bytes())
            };
            ($name:literal) => {
                out.extend_from_slice(concat!(",\"", $name, "\":").as_bytes())
            };
        }
        out.reserve(384);
        key!(first "ts");
        self.ts(r.ts, out);
        key!("client");
        ip(out, r.client);
        key!("ministry");
        text(out, &r.ministry);
        key!("identity");
        word(out, r.identity);
        key!("user");
        opt_text(out, r.user.as_deref());
        key!("kind");
        word(out, r.kind.as_str());
        key!("method");
        text(out, r.method.as_str());
        key!("host");
        match &r.host {
            Some(Host::Name(n)) => text(out, n),
            Some(Host::Ip(a)) => ip(out, *a),
            None => out.extend_from_slice(b"null"),
        }
        key!("port");
        match r.port {
            Some(p) => int(out, u64::from(p)),
            None => out.extend_from_slice(b"null"),
        }
        key!("sni");
        opt_text(out, r.sni.as_deref());
        key!("path");
        opt_text(out, r.path.as_deref());
        key!("action");
        opt_word(out, r.action.map(Outcome::as_str));
        key!("mode");
        opt_word(out, r.mode.map(Mode::as_str));
        key!("rule");
        opt_text(out, r.rule.as_deref());
        key!("status");
        int(out, u64::from(r.status));
        key!("error");
        opt_word(out, r.error.map(ErrorType::as_str));
        key!("bytes_up");
        int(out, r.bytes_up);
        key!("bytes_down");
        int(out, r.bytes_down);
        key!("duration_ms");
        millis(out, r.duration.as_micros())?;
        out.push(b'}');
        Ok(())
    }

    /// RFC 3339, UTC, milliseconds: `"2026-11-26T14:58:03.123Z"`. The record carries the
    /// clock's `SystemTime`: the calendar is worked out here, once per second, instead of on
    /// the worker for every record.
    fn ts(&mut self, ts: SystemTime, out: &mut Vec<u8>) {
        let Ok(since) = ts.duration_since(SystemTime::UNIX_EPOCH) else {
            // A clock set before 1970: written in full, nothing cached.
            let t = DateTime::<Utc>::from(ts);
            let _ = write!(out, "\"{}\"", t.format("%Y-%m-%dT%H:%M:%S%.3fZ"));
            return;
        };
        let second = since.as_secs();
        if self.prefix.is_empty() || second != self.second {
            self.second = second;
            let t = DateTime::<Utc>::from(SystemTime::UNIX_EPOCH + Duration::from_secs(second));
            self.prefix = t.format("\"%Y-%m-%dT%H:%M:%S").to_string();
        }
        out.extend_from_slice(self.prefix.as_bytes());
        let millis = since.subsec_millis();
        out.extend_from_slice(&[
            b'.',
            b'0' + (millis / 100) as u8,
            b'0' + (millis / 10 % 10) as u8,
            b'0' + (millis % 10) as u8,
            b'Z',
            b'"',
        ]);
    }
}

/// A JSON string, as serde_json writes it. Most values (names, methods, paths) contain
/// nothing JSON escapes (`"`, `\\`, control characters), so they are copied as they are;
/// anything else goes through serde_json.
fn text(out: &mut Vec<u8>, s: &str) {
    // Values are short (a method, a ministry, a rule id): a plain loop that stops at the first
    // byte to escape beats a vectorised fold's set-up.
    let escape = s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\');
    if !escape {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Writing a `str` into a `Vec` cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// A JSON string of egressd's own vocabulary (kinds, identity methods, actions, modes, error
/// types): `'static` lower-case identifiers that never need escaping, so they are not scanned.
fn word(out: &mut Vec<u8>, s: &'static str) {
    debug_assert!(s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

fn opt_word(out: &mut Vec<u8>, s: Option<&'static str>) {
    match s {
        Some(s) => word(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

fn opt_text(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => text(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// An integer, as serde_json writes it (itoa, without the serializer around it).
fn int(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Milliseconds with microsecond resolution, as serde_json writes the `f64` `micros / 1000`:
/// the shortest decimal that reads back as it, which below 10^12 µs (11 days) is the exact
/// quotient with its trailing zeros dropped (one kept: `12.0`). Longer durations go through
/// serde_json itself.
fn millis(out: &mut Vec<u8>, micros: u128) -> serde_json::Result<()> {
    if micros >= 1_000_000_000_000 {
        return serde_json::to_writer(&mut *out, &(micros as f64 / 1000.0));
    }
    let (whole, frac) = ((micros / 1000) as u64, (micros % 1000) as u16);
    int(out, whole);
    let digits = [
        b'0' + (frac / 100) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ];
    let keep = match frac {
        0 => 1,
        f if f % 100 == 0 => 1,
        f if f % 10 == 0 => 2,
        _ => 3,
    };
    out.push(b'.');
    out.extend_from_slice(&digits[..keep]);
    Ok(())
}

/// An address as a JSON string (its text never needs escaping).
fn ip(out: &mut Vec<u8>, a: IpAddr) {
    match a {
        IpAddr::V4(v4) => {
            out.push(b'"');
            out.extend_from_slice(ipv4_bytes(v4, &mut [0; 15]));
            out.push(b'"');
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "\"{v6}\"");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use http::Method;

    use super::*;
    use crate::audit::field;
    use crate::policy::Kind;

    fn record() -> Record {
        Record {
            ts: DateTime::parse_from_rfc3339("2026-11-26T14:58:03.045678Z")
                .unwrap()
                .into(),
            client: "10.20.1.2".parse().unwrap(),
            ministry: Arc::from("agri\"culture"),
            identity: "source",
            user: None,
            kind: Kind::Http,
            method: Method::GET,
            host: Some(Host::Ip("2001:db8::1".parse().unwrap())),
            port: Some(80),
            sni: Some(Arc::from("tab\there")),
            path: Some("/a?b=\u{7}".into()),
            action: Some(Outcome::Block),
            mode: Some(Mode::Enforce),
            rule: Some(Arc::from("_organization/social-media")),
            status: 403,
            error: Some(ErrorType::HttpRequestDenied),
            bytes_up: 0,
            bytes_down: 12345,
            duration: Duration::from_micros(1500),
        }
    }

    /// Every word written unscanned (`word`) is one JSON needs no escape for, and serde_json
    /// writes it the same.
    #[test]
    fn vocabulary_needs_no_escaping() {
        use crate::identity::Method as Id;
        let errors = crate::metrics::UPSTREAM_ERRORS.into_iter().chain([
            ErrorType::HttpRequestError,
            ErrorType::HttpRequestDenied,
            ErrorType::ProxyInternalError,
        ]);
        let words: Vec<&'static str> = [Kind::Http.as_str(), Kind::Connect.as_str()]
            .into_iter()
            .chain([Outcome::Allow, Outcome::Block, Outcome::Report].map(Outcome::as_str))
            .chain([Mode::Enforce, Mode::Report].map(Mode::as_str))
            .chain(
                [
                    Id::Certificate,
                    Id::Credentials,
                    Id::Source,
                    Id::Default,
                    Id::None,
                ]
                .map(Id::as_str),
            )
            .chain(errors.map(ErrorType::as_str))
            .collect();
        assert_eq!(words.len(), 27);
        for w in words {
            let mut out = Vec::new();
            word(&mut out, w);
            assert_eq!(out, serde_json::to_vec(w).unwrap(), "{w}");
        }
    }

    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        for s in [
            "",
            "plain",
            "/a?b=c&d=%20",
            "qu\"ote",
            "back\\slash",
            "tab\there",
            "nl\n",
            "\u{1f}",
            "\u{7f}del",
            "caf\u{e9} \u{1f600}",
            "\u{2028}",
        ] {
            let mut out = Vec::new();
            text(&mut out, s);
            assert_eq!(out, serde_json::to_vec(s).unwrap(), "{s:?}");
        }
        let mut out = Vec::new();
        opt_text(&mut out, None);
        assert_eq!(out, b"null");
    }

    /// `millis` writes what serde_json writes for the `f64` milliseconds, on both sides of
    /// every digit boundary and of the cut-over to serde_json itself.
    #[test]
    fn durations_are_written_as_serde_json_writes_them() {
        let mut micros: Vec<u128> = (0..=2_000).collect();
        for p in 1..=15 {
            let b = 10u128.pow(p);
            micros.extend([b - 1, b, b + 1, b + 10, b + 100, 7 * b + 123, 999 * b / 7]);
        }
        // A spread of ordinary values (an LCG, so the test is the same every run).
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..100_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            micros.push(u128::from(x >> (x % 40 + 20)));
        }
        for m in micros {
            let mut out = Vec::new();
            millis(&mut out, m).unwrap();
            let want = serde_json::to_vec(&(m as f64 / 1000.0)).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&want),
                "{m} µs"
            );
        }
        for n in [0, 1, 9, 10, 65535, u64::MAX] {
            let mut out = Vec::new();
            int(&mut out, n);
            assert_eq!(out, serde_json::to_vec(&n).unwrap());
        }
    }

    #[test]
    fn keys_need_no_escaping() {
        for k in field::ALL {
            assert!(
                k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{k}"
            );
        }
    }

    #[test]
    fn a_record_is_one_valid_object_with_every_field_in_order() {
        let mut w = LineWriter::default();
        let mut out = Vec::new();
        w.write(&record(), &mut out).unwrap();
        let text = String::from_utf8(out.clone()).unwrap();
        let at: Vec<usize> = field::ALL
            .iter()
            .map(|k| {
                text.find(&format!("\"{k}\":"))
                    .unwrap_or_else(|| panic!("{k}"))
            })
            .collect();
        assert!(
            at.windows(2).all(|w| w[0] < w[1]),
            "fields out of order: {text}"
        );
        let v: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&out).unwrap();
        assert_eq!(v.len(), field::ALL.len());
        assert_eq!(v["ts"], "2026-11-26T14:58:03.045Z");
        assert_eq!(v["client"], "10.20.1.2");
        assert_eq!(v["ministry"], "agri\"culture");
        assert_eq!(v["host"], "2001:db8::1");
        assert_eq!(v["sni"], "tab\there");
        assert_eq!(v["path"], "/a?b=\u{7}");
        assert_eq!(v["user"], serde_json::Value::Null);
        assert_eq!(v["action"], "block");
        assert_eq!(v["status"], 403);
        assert_eq!(v["error"], "http_request_denied");
        assert_eq!(v["bytes_down"], 12345);
        assert_eq!(v["duration_ms"], 1.5);
    }

    #[test]
    fn the_cached_second_follows_the_clock() {
        let mut w = LineWriter::default();
        let mut r = record();
        for (ts, want) in [
            ("2026-11-26T14:58:03.999Z", "2026-11-26T14:58:03.999Z"),
            ("2026-11-26T14:58:04.000Z", "2026-11-26T14:58:04.000Z"),
            ("2026-11-26T14:58:03.500Z", "2026-11-26T14:58:03.500Z"),
        ] {
            r.ts = DateTime::parse_from_rfc3339(ts).unwrap().into();
            let mut out = Vec::new();
            w.write(&r, &mut out).unwrap();
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(v["ts"], want);
        }
    }

    #[test]
    fn a_clock_before_1970_is_written_in_full() {
        let mut w = LineWriter::default();
        let mut r = record();
        r.ts = SystemTime::UNIX_EPOCH - Duration::from_millis(1500);
        let mut out = Vec::new();
        w.write(&r, &mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["ts"], "1969-12-31T23:59:58.500Z");
    }
}
