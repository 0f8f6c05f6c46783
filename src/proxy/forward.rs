//! Plain-HTTP forwarding rewrites: the request for the origin (origin-form target, hop-by-hop
//! headers removed, `Host` from the absolute URI, `Via` added) and the response for the client.
//! The connections themselves are [`super::upstream`]'s.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use hyper::{Request, Version};

use super::respond::ErrorType;
use super::target::Target;

/// The `Via` value egressd adds (RFC 9110 §7.6.3).
pub const VIA: HeaderValue = HeaderValue::from_static("1.1 egressd");

/// Headers that describe one hop, never forwarded (RFC 9110 §7.6.1), plus the proxy-only ones.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Whether a field name is one of [`HOP_BY_HOP`], in any case (for heads copied without a
/// `HeaderMap`). By length first: most names are ruled out without a comparison.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    let candidates: &[&[u8]] = match name.len() {
        2 => &[b"te"],
        7 => &[b"trailer", b"upgrade"],
        10 => &[b"connection", b"keep-alive"],
        16 => &[b"proxy-connection"],
        17 => &[b"transfer-encoding"],
        18 => &[b"proxy-authenticate"],
        19 => &[b"proxy-authorization"],
        _ => return false,
    };
    candidates.iter().any(|c| c.eq_ignore_ascii_case(name))
}

/// Copies the kept field lines of a parsed head into the head being written, as runs of
/// consecutive whole lines: a head with no field dropped in the middle goes out in one copy
/// instead of four per field. A line is copied verbatim only when it ends right after its value
/// with CRLF (httparse has checked the rest of it: a token name, `:`, optional whitespace, field
/// content); any other line (trailing whitespace, a bare LF) is written as `name: value` CRLF.
#[derive(Default)]
pub struct Lines {
    /// The pending run of whole lines, `start..end` in the head.
    start: usize,
    end: usize,
}

impl Lines {
    /// Where the field line of `name` and `value` sits in `head`, when it can be copied as it is.
    /// `name` and `value` are httparse's slices of `head`; anything else (an empty value, which
    /// need not point into `head`, or slices of another buffer) gives `None`, so the line is
    /// written from the slices instead of copying bytes the parser did not check.
    pub fn line_of(head: &[u8], name: &[u8], value: &[u8]) -> Option<(usize, usize)> {
        if value.is_empty() {
            return None;
        }
        let base = head.as_ptr() as usize;
        let start = (name.as_ptr() as usize).checked_sub(base)?;
        let value_start = (value.as_ptr() as usize).checked_sub(base)?;
        let end = value_start + value.len();
        if value_start <= start + name.len() || end + 2 > head.len() {
            return None;
        }
        (head[end..end + 2] == *b"\r\n").then_some((start, end + 2))
    }

    /// Adds one kept field; `line` is [`Lines::line_of`] (or the same from stored offsets).
    pub fn keep(
        &mut self,
        head: &[u8],
        out: &mut Vec<u8>,
        line: Option<(usize, usize)>,
        name: &[u8],
        value: &[u8],
    ) {
        match line {
            Some((start, end)) if start == self.end && self.end > self.start => self.end = end,
            Some((start, end)) => {
                self.flush(head, out);
                (self.start, self.end) = (start, end);
            }
            None => {
                self.flush(head, out);
                out.extend_from_slice(name);
                out.extend_from_slice(b": ");
                out.extend_from_slice(value);
                out.extend_from_slice(b"\r\n");
            }
        }
    }

    /// Writes the pending run (call before writing anything else, and at the end).
    pub fn flush(&mut self, head: &[u8], out: &mut Vec<u8>) {
        if self.end > self.start {
            out.extend_from_slice(&head[self.start..self.end]);
        }
        (self.start, self.end) = (0, 0);
    }
}

/// Removes hop-by-hop headers, including every header the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none of them, and most of the rest only `Connection`: one pass over
    // the names (standard names compare as small integers) notes which are present, so only
    // those are looked up again.
    let mut present = 0u16;
    for k in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| h == k) {
            present |= 1 << i;
        }
    }
    if present == 0 {
        return;
    }
    if present & 1 != 0 {
        // `HOP_BY_HOP[0]` is `Connection`. Its values are cheap clones (shared bytes), so the
        // headers they name can be removed by &str lookups without building a HeaderName for
        // each token; tokens that are hop-by-hop names anyway are removed below.
        let mut values = headers.get_all(header::CONNECTION).iter();
        let first = values.next().cloned();
        let rest: Vec<HeaderValue> = values.cloned().collect();
        for value in first.iter().chain(&rest) {
            let Ok(value) = value.to_str() else { continue };
            for token in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                if !HOP_BY_HOP
                    .iter()
                    .any(|h| h.as_str().eq_ignore_ascii_case(token))
                {
                    headers.remove(token);
                }
            }
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
}

/// Rewrites a client request for `target`'s origin.
pub fn prepare_request<B>(
    req: &mut Request<B>,
    target: &Target,
    client: Option<IpAddr>,
) -> Result<(), ErrorType> {
    // Origin-form on the wire (RFC 9112 §3.2.1): the connection already goes to the checked
    // address, and `Host` below names the origin.
    let pq = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    *req.uri_mut() = Uri::from(pq);
    // A proxy sends its own HTTP version (RFC 9110 §6.2): an HTTP/1.0 client's request still
    // goes out as HTTP/1.1, so the origin connection can be kept alive and pooled.
    *req.version_mut() = Version::HTTP_11;
    let headers = req.headers_mut();
    strip_hop_by_hop(headers);
    let host = target
        .host_header_value(80)
        .ok_or(ErrorType::HttpRequestError)?;
    headers.insert(header::HOST, host);
    headers.append(header::VIA, VIA);
    if let Some(ip) = client {
        let v =
            HeaderValue::from_str(&ip.to_string()).map_err(|_| ErrorType::ProxyInternalError)?;
        headers.append(HeaderName::from_static("x-forwarded-for"), v);
    }
    Ok(())
}

/// Cleans an origin response for the client.
pub fn prepare_response(headers: &mut HeaderMap) {
    // The body was framed by its chunks, not by a length sent beside them (RFC 9112 §6.3 ¶3);
    // passed on, that length would frame the client's copy wrongly.
    if headers.contains_key(header::TRANSFER_ENCODING) {
        headers.remove(header::CONTENT_LENGTH);
    }
    strip_hop_by_hop(headers);
    headers.append(header::VIA, VIA);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only a line of `head` that ends in CRLF right after its value is located; slices of
    /// another buffer, or in the wrong order, never give a range of `head`.
    #[test]
    fn a_line_is_located_only_in_its_own_head() {
        let head = b"A: 1\r\nB:2\nC: 3  \r\n";
        let at = |a: usize, b: usize| &head[a..b];
        assert_eq!(Lines::line_of(head, at(0, 1), at(3, 4)), Some((0, 6)));
        assert_eq!(Lines::line_of(head, at(6, 7), at(8, 9)), None); // bare LF
        assert_eq!(Lines::line_of(head, at(10, 11), at(13, 14)), None); // trailing spaces
        assert_eq!(Lines::line_of(head, at(0, 1), b""), None);
        assert_eq!(Lines::line_of(head, at(3, 4), at(0, 1)), None); // value before name
        let other = head.to_vec();
        assert_eq!(Lines::line_of(head, &other[0..1], &other[3..4]), None);
        assert_eq!(Lines::line_of(&head[..5], at(0, 1), at(3, 4)), None); // CRLF cut off
    }

    #[test]
    fn hop_by_hop_bytes_match_the_names() {
        for h in &HOP_BY_HOP {
            assert!(is_hop_by_hop(h.as_str().as_bytes()), "{h}");
            assert!(is_hop_by_hop(h.as_str().to_uppercase().as_bytes()), "{h}");
        }
        for other in [
            "host",
            "t",
            "tx",
            "trailers",
            "content-length",
            "proxy-status",
            "via",
        ] {
            assert!(!is_hop_by_hop(other.as_bytes()), "{other}");
        }
    }

    #[test]
    fn a_length_beside_chunks_is_not_passed_on() {
        let mut h = HeaderMap::new();
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("100"));
        prepare_response(&mut h);
        assert!(h.get(header::CONTENT_LENGTH).is_none());
        assert!(h.get(header::TRANSFER_ENCODING).is_none());
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("100"));
        prepare_response(&mut h);
        assert_eq!(h[header::CONTENT_LENGTH], "100");
    }

    #[test]
    fn hop_by_hop_and_connection_tokens_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret, bad token(, ,close"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        h.insert(
            header::PROXY_AUTHORIZATION,
            HeaderValue::from_static("Basic eA=="),
        );
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        let names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-kept"]);
    }

    #[test]
    fn every_connection_line_and_repeated_hop_by_hop_lines_are_removed() {
        let mut h = HeaderMap::new();
        h.append(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.append(header::CONNECTION, HeaderValue::from_static("x-one"));
        h.append(header::CONNECTION, HeaderValue::from_static("X-Two, close"));
        h.append(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.append(header::TE, HeaderValue::from_static("trailers"));
        h.append(header::TE, HeaderValue::from_static("deflate"));
        for n in ["x-one", "x-two", "close", "x-kept"] {
            h.append(n, HeaderValue::from_static("1"));
        }
        strip_hop_by_hop(&mut h);
        let names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-kept"]);
        // Nothing hop-by-hop: untouched.
        let mut h = HeaderMap::new();
        h.append("x-kept", HeaderValue::from_static("1"));
        h.append(header::CONTENT_LENGTH, HeaderValue::from_static("3"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 2);
    }
}
