//! Every response egressd makes up itself (400, 403, 502, 504, …) is built here, each with its
//! RFC 9209 `Proxy-Status` header, so that a block or a failure looks the same whichever path
//! produced it. A block is not an error: it carries the deciding rule and its reason.
//!
//! An [`Answer`] is such a response before it takes a form: a hyper `Response` on the hyper
//! path ([`Answer::into_response`]), bytes on the fast path ([`Answer::write_fields`]), which
//! so skips building and dropping a `HeaderMap` for every block.

use bytes::Bytes;
use http::header::{
    HeaderName, HeaderValue, ACCEPT, CACHE_CONTROL, CONNECTION, CONTENT_TYPE, PROXY_AUTHENTICATE,
};
use http::{HeaderMap, Response, StatusCode};
use http_body_util::Full;

use super::body::ProxyBody;

/// The name egressd gives itself in `Proxy-Status` and `Via`.
pub const PROXY_NAME: &str = "egressd";

/// RFC 9209's header. A constant: a `&str` name is parsed and hashed again on every insert.
pub const PROXY_STATUS: HeaderName = HeaderName::from_static("proxy-status");
const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");
const TEXT: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");
const HTML: HeaderValue = HeaderValue::from_static("text/html; charset=utf-8");
const CLOSE: HeaderValue = HeaderValue::from_static("close");

/// RFC 9209 §2.3 proxy error types that egressd produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorType {
    DnsTimeout,
    DnsError,
    DestinationNotFound,
    DestinationIpProhibited,
    DestinationIpUnroutable,
    ConnectionRefused,
    ConnectionTerminated,
    ConnectionTimeout,
    ConnectionReadTimeout,
    HttpRequestError,
    HttpRequestDenied,
    HttpResponseIncomplete,
    HttpProtocolError,
    HttpResponseTimeout,
    ProxyInternalError,
}

impl ErrorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::DnsTimeout => "dns_timeout",
            ErrorType::DnsError => "dns_error",
            ErrorType::DestinationNotFound => "destination_not_found",
            ErrorType::DestinationIpProhibited => "destination_ip_prohibited",
            ErrorType::DestinationIpUnroutable => "destination_ip_unroutable",
            ErrorType::ConnectionRefused => "connection_refused",
            ErrorType::ConnectionTerminated => "connection_terminated",
            ErrorType::ConnectionTimeout => "connection_timeout",
            ErrorType::ConnectionReadTimeout => "connection_read_timeout",
            ErrorType::HttpRequestError => "http_request_error",
            ErrorType::HttpRequestDenied => "http_request_denied",
            ErrorType::HttpResponseIncomplete => "http_response_incomplete",
            ErrorType::HttpProtocolError => "http_protocol_error",
            ErrorType::HttpResponseTimeout => "http_response_timeout",
            ErrorType::ProxyInternalError => "proxy_internal_error",
        }
    }

    /// The status a client sees for this error (RFC 9209 §2.3 recommendations).
    pub fn status(self) -> StatusCode {
        match self {
            ErrorType::DnsTimeout
            | ErrorType::ConnectionTimeout
            | ErrorType::ConnectionReadTimeout
            | ErrorType::HttpResponseTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorType::HttpRequestError => StatusCode::BAD_REQUEST,
            ErrorType::HttpRequestDenied | ErrorType::DestinationIpProhibited => {
                StatusCode::FORBIDDEN
            }
            ErrorType::ProxyInternalError => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_GATEWAY,
        }
    }
}

/// `Proxy-Status: egressd; error=TYPE; details="…"` with `details` as an RFC 8941 sf-string
/// (printable ASCII; `"` and `\` escaped, anything else replaced), so a hostile value can never
/// break the header. As bytes: the fast path writes them as they are, and only the hyper path
/// needs (and checks) a `HeaderValue`.
fn proxy_status(error: ErrorType, details: &str) -> Vec<u8> {
    const SEP: &[u8] = b"; error=";
    const DETAILS: &[u8] = b"; details=\"";
    let plain = details
        .bytes()
        .all(|b| matches!(b, b' '..=b'~') && b != b'"' && b != b'\\');
    // Exact for the usual case (rule and host names need no escaping), so the buffer becomes
    // the header's bytes without another allocation.
    let details_len = match (details.len(), plain) {
        (0, _) => 0,
        (n, true) => DETAILS.len() + n + 1,
        (n, false) => DETAILS.len() + 2 * n + 1,
    };
    let mut v =
        Vec::with_capacity(PROXY_NAME.len() + SEP.len() + error.as_str().len() + details_len);
    v.extend_from_slice(PROXY_NAME.as_bytes());
    v.extend_from_slice(SEP);
    v.extend_from_slice(error.as_str().as_bytes());
    if !details.is_empty() {
        v.extend_from_slice(DETAILS);
        if plain {
            v.extend_from_slice(details.as_bytes());
        } else {
            for c in details.chars() {
                match c {
                    '"' | '\\' => v.extend_from_slice(&[b'\\', c as u8]),
                    ' '..='~' => v.push(c as u8),
                    _ => v.push(b'?'),
                }
            }
        }
        v.push(b'"');
    }
    v
}

/// What the block page tells the user.
pub struct BlockPage<'a> {
    pub ministry: &'a str,
    pub rule: &'a str,
    pub reason: Option<&'a str>,
    pub contact: Option<&'a str>,
    pub host: &'a str,
}

/// A response egressd made up: status, `Proxy-Status`, a text or HTML body. Its bytes are
/// shared: a copy (a connection's route memo keeps its last block answer) is two reference
/// counts, not two buffers.
#[derive(Debug, Clone)]
pub struct Answer {
    status: StatusCode,
    /// The error the audit record and metrics report (`None` for the 407 challenge).
    reported: Option<ErrorType>,
    /// The `Proxy-Status` value ([`proxy_status`]: printable ASCII only).
    proxy_status: Bytes,
    content_type: HeaderValue,
    /// The 407 challenge's `Proxy-Authenticate`.
    challenge: bool,
    body: Bytes,
}

const CHALLENGE: HeaderValue =
    HeaderValue::from_static("Basic realm=\"egressd\", charset=\"UTF-8\"");

impl Answer {
    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn reported(&self) -> Option<ErrorType> {
        self.reported
    }

    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// After a malformed or unframeable request the stream position is unknown, and a client
    /// that sent an oversized head is not worth keeping: these end the connection.
    pub fn closes(&self) -> bool {
        matches!(
            self.status,
            StatusCode::BAD_REQUEST
                | StatusCode::URI_TOO_LONG
                | StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
                | StatusCode::NOT_IMPLEMENTED
        )
    }

    /// The answer's own header fields, `name: value\r\n` each, in the order
    /// [`Answer::into_response`] inserts them (`Connection: close` when [`Answer::closes`]).
    /// The status line, `Date`, the length and the empty line are the writer's.
    pub fn write_fields(&self, out: &mut Vec<u8>) {
        let mut field = |name: &str, value: &[u8]| {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        };
        field(PROXY_STATUS.as_str(), &self.proxy_status);
        field(CONTENT_TYPE.as_str(), self.content_type.as_bytes());
        field(CACHE_CONTROL.as_str(), NO_STORE.as_bytes());
        if self.closes() {
            field(CONNECTION.as_str(), CLOSE.as_bytes());
        }
        if self.challenge {
            field(PROXY_AUTHENTICATE.as_str(), CHALLENGE.as_bytes());
        }
    }

    pub fn into_response(self) -> Response<ProxyBody> {
        let close = self.closes();
        let mut resp = Response::new(ProxyBody::answer(Full::new(self.body), self.reported));
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        h.reserve(5);
        let status = HeaderValue::from_maybe_shared(self.proxy_status)
            .unwrap_or_else(|_| HeaderValue::from_static(PROXY_NAME));
        h.insert(PROXY_STATUS, status);
        h.insert(CONTENT_TYPE, self.content_type);
        h.insert(CACHE_CONTROL, NO_STORE);
        if close {
            h.insert(CONNECTION, CLOSE);
        }
        if self.challenge {
            h.insert(PROXY_AUTHENTICATE, CHALLENGE);
        }
        resp
    }
}

impl From<Answer> for Response<ProxyBody> {
    fn from(a: Answer) -> Self {
        a.into_response()
    }
}

/// 403 for a policy block, with an HTML page when the client accepts HTML ([`accepts_html`]),
/// plain text otherwise.
pub fn blocked(page: &BlockPage<'_>, html: bool) -> Answer {
    let body = if html {
        block_html(page)
    } else {
        block_text(page)
    };
    let ctype = if html { HTML } else { TEXT };
    build(
        StatusCode::FORBIDDEN,
        (ErrorType::HttpRequestDenied, true),
        page.rule,
        ctype,
        body,
    )
}

/// A failure (bad request, guard refusal, upstream error): status from the error type, a short
/// plain-text body naming it.
pub fn error(error: ErrorType, details: &str) -> Answer {
    error_with_status(error.status(), error, details)
}

/// `501` for a request whose transfer coding egressd cannot handle (RFC 9112 §6.1); RFC 9209
/// has no type of its own for it, so it is an `http_request_error`.
pub fn not_implemented(details: &str) -> Answer {
    error_with_status(
        StatusCode::NOT_IMPLEMENTED,
        ErrorType::HttpRequestError,
        details,
    )
}

fn error_with_status(status: StatusCode, error: ErrorType, details: &str) -> Answer {
    let body = format!(
        "{} {}\negressd: {}{}{}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        error.as_str(),
        if details.is_empty() { "" } else { ": " },
        details
    );
    build(status, (error, true), details, TEXT, body)
}

/// `414` or `431` for a request head over one of egressd's own limits; `limit` names the
/// setting (`limits.max_headers`), so whoever reads the response knows which knob refused it.
pub fn head_too_large(status: StatusCode, limit: &str) -> Answer {
    let error = ErrorType::HttpRequestError;
    let body = format!(
        "{} {}\negressd: {}: {limit}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        error.as_str(),
    );
    build(status, (error, true), limit, TEXT, body)
}

/// `407` challenge for `identity.credentials` (missing, malformed or wrong credentials). The
/// connection stays open: a browser answers on it with credentials.
pub fn auth_required() -> Answer {
    let status = StatusCode::PROXY_AUTHENTICATION_REQUIRED;
    let mut a = build(
        status,
        (ErrorType::HttpRequestDenied, false),
        "proxy authentication required",
        TEXT,
        "407 Proxy Authentication Required\negressd: proxy authentication required\n".into(),
    );
    a.challenge = true;
    a
}

/// `403` for `Proxy-Authorization` sent over the plain listener while
/// `identity.allow_basic_over_plaintext` is off.
pub fn credentials_in_clear() -> Answer {
    error(
        ErrorType::HttpRequestDenied,
        "credentials are accepted only over TLS (identity.allow_basic_over_plaintext)",
    )
}

/// The answer with its `Proxy-Status` (`error`, `details`). `counted`: whether the audit record
/// and metrics report `error` for it (not for the 407 challenge, which every browser gets first).
fn build(
    status: StatusCode,
    (error, counted): (ErrorType, bool),
    details: &str,
    content_type: HeaderValue,
    body: String,
) -> Answer {
    Answer {
        status,
        reported: counted.then_some(error),
        proxy_status: Bytes::from(proxy_status(error, details)),
        content_type,
        challenge: false,
        body: Bytes::from(body),
    }
}

/// Whether the client's `Accept` names HTML (or any text, or anything).
pub fn accepts_html(headers: &HeaderMap) -> bool {
    headers.get_all(ACCEPT).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',').any(|item| {
                let media = item.split(';').next().unwrap_or("").trim();
                media.eq_ignore_ascii_case("text/html")
                    || media.eq_ignore_ascii_case("text/*")
                    || media == "*/*"
            })
        })
    })
}

fn block_text(p: &BlockPage<'_>) -> String {
    // Pushed piece by piece: `format!` costs more than the rest of a block answer.
    let lines = [
        ("Access to ", Some(p.host)),
        (" is blocked by egressd.\n\nMinistry: ", Some(p.ministry)),
        ("\nRule: ", Some(p.rule)),
        ("\nReason: ", p.reason),
        ("\nContact: ", p.contact),
    ];
    let mut s = String::with_capacity(
        128 + lines
            .iter()
            .map(|(_, v)| v.map_or(0, str::len))
            .sum::<usize>(),
    );
    for (label, value) in lines {
        if let Some(v) = value {
            s.push_str(label);
            s.push_str(v);
        }
    }
    s.push('\n');
    s
}

fn block_html(p: &BlockPage<'_>) -> String {
    let row = |k: &str, v: &str| format!("<tr><th>{k}</th><td>{}</td></tr>\n", escape(v));
    let mut rows = row("Ministry", p.ministry) + &row("Rule", p.rule);
    if let Some(r) = p.reason {
        rows += &row("Reason", r);
    }
    if let Some(c) = p.contact {
        rows += &row("Contact", c);
    }
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Blocked</title>\
         <style>body{{font-family:sans-serif;max-width:40em;margin:3em auto}}\
         th{{text-align:left;padding-right:1em}}</style></head>\n<body>\n\
         <h1>Access blocked</h1>\n<p>Access to <b>{}</b> is blocked by the network policy.</p>\n\
         <table>\n{rows}</table>\n</body></html>\n",
        escape(p.host)
    )
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_status_escapes_details() {
        // Every value is a valid header value (the hyper path makes one of it).
        let text = |error, details| {
            let v = proxy_status(error, details);
            HeaderValue::from_bytes(&v)
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(
            text(ErrorType::HttpRequestDenied, "a\"b\\c\u{e9}"),
            r#"egressd; error=http_request_denied; details="a\"b\\c?""#
        );
        assert_eq!(text(ErrorType::DnsError, ""), "egressd; error=dns_error");
        // The unescaped path (printable, nothing to escape) and its edges.
        assert_eq!(
            text(ErrorType::HttpRequestDenied, "_organization/social-media ~"),
            "egressd; error=http_request_denied; details=\"_organization/social-media ~\""
        );
        assert_eq!(
            text(ErrorType::HttpRequestDenied, "tab\there\x7f"),
            "egressd; error=http_request_denied; details=\"tab?here?\""
        );
    }

    #[test]
    fn block_page_negotiates_html() {
        let page = BlockPage {
            ministry: "agriculture",
            rule: "_organization/social-media",
            reason: Some("<script>"),
            contact: Some("help@example"),
            host: "www.facebook.com",
        };
        let mut h = HeaderMap::new();
        h.insert(
            ACCEPT,
            HeaderValue::from_static("text/html,application/xhtml+xml"),
        );
        let r = blocked(&page, accepts_html(&h)).into_response();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(r.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        h.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let r = blocked(&page, accepts_html(&h)).into_response();
        assert!(r.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain"));
        assert!(block_html(&page).contains("&lt;script&gt;"));
    }

    #[test]
    fn error_statuses() {
        assert_eq!(ErrorType::DnsError.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(
            ErrorType::ConnectionTimeout.status(),
            StatusCode::GATEWAY_TIMEOUT
        );
        assert_eq!(
            ErrorType::DestinationIpProhibited.status(),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            error(ErrorType::HttpRequestError, "x").status(),
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn answers_report_their_error_type_except_the_407_challenge() {
        let page = BlockPage {
            ministry: "m",
            rule: "r",
            reason: None,
            contact: None,
            host: "h.example",
        };
        assert_eq!(
            blocked(&page, false).reported(),
            Some(ErrorType::HttpRequestDenied)
        );
        assert_eq!(
            error(ErrorType::DnsError, "x")
                .into_response()
                .body()
                .error(),
            Some(ErrorType::DnsError)
        );
        assert_eq!(
            credentials_in_clear().reported(),
            Some(ErrorType::HttpRequestDenied)
        );
        let challenge = auth_required().into_response();
        assert_eq!(challenge.body().error(), None);
        // It still says what it is in Proxy-Status.
        assert!(challenge.headers()[PROXY_STATUS]
            .to_str()
            .unwrap()
            .contains("error=http_request_denied"));
    }

    #[test]
    fn oversized_heads_name_the_limit_and_close() {
        let r = head_too_large(StatusCode::URI_TOO_LONG, "limits.max_request_line").into_response();
        assert_eq!(r.status(), StatusCode::URI_TOO_LONG);
        assert_eq!(
            r.headers()["proxy-status"],
            "egressd; error=http_request_error; details=\"limits.max_request_line\""
        );
        assert_eq!(r.headers()[CONNECTION], "close");
        assert_eq!(r.body().error(), Some(ErrorType::HttpRequestError));
    }

    /// The fast path's bytes and the hyper path's `Response` carry the same fields, in the
    /// same order, for every kind of answer.
    #[test]
    fn written_fields_are_the_response_headers() {
        let answers: [fn() -> Answer; 6] = [
            || blocked(&page_of(), true),
            || error(ErrorType::DnsError, "x\"y"),
            || {
                head_too_large(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "limits.max_headers",
                )
            },
            || not_implemented("gzip"),
            auth_required,
            credentials_in_clear,
        ];
        for make in answers {
            let (a, b) = (make(), make());
            let mut written = Vec::new();
            a.write_fields(&mut written);
            let resp = b.into_response();
            let mut want = Vec::new();
            for (name, value) in resp.headers() {
                want.extend_from_slice(name.as_str().as_bytes());
                want.extend_from_slice(b": ");
                want.extend_from_slice(value.as_bytes());
                want.extend_from_slice(b"\r\n");
            }
            assert_eq!(
                String::from_utf8_lossy(&written),
                String::from_utf8_lossy(&want)
            );
        }
    }

    fn page_of() -> BlockPage<'static> {
        BlockPage {
            ministry: "m",
            rule: "r",
            reason: Some("why"),
            contact: None,
            host: "h.example",
        }
    }
}
