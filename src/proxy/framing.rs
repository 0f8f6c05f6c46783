//! Request framing that hyper's parser lets through but a proxy must not forward (RFC 9112 §6).
//!
//! hyper already refuses, with a bare `400` before egressd sees the request: two different
//! `Content-Length` values, a non-numeric one, `Transfer-Encoding` in HTTP/1.0, a coding list
//! whose last coding is not `chunked`, obs-fold, and invalid bytes in names and values. Given
//! both `Transfer-Encoding` and `Content-Length` it drops the length, frames by the coding and
//! closes the connection after the response (§6.3 ¶3), so bytes after the chunked body are never
//! read as a next request; identical duplicate lengths are merged into one.
//!
//! What is left is checked here, before anything else happens to the request:
//! - a coding other than a single `chunked` (`gzip, chunked`): egressd would forward a body
//!   whose framing it removed but whose coding it cannot undo, so **501** (§6.1);
//! - `chunked` applied twice (`chunked, chunked`, or two `Transfer-Encoding: chunked` lines):
//!   hyper decodes once, an origin might decode twice, so **400** (§7);
//! - a CONNECT with content (RFC 9110 §9.3.6): the bytes would reach the tunnel as if the
//!   client had sent them after the 200, so **400**.

use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, Method};

use super::respond::{self, Answer, ErrorType};

/// Why a request's framing is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("transfer coding `{0}` is not implemented; only `chunked` is")]
    UnknownCoding(String),
    #[error("`chunked` applied more than once")]
    ChunkedTwice,
    #[error("a CONNECT request has no content")]
    ConnectContent,
}

impl FramingError {
    /// The answer (connection closed after it: the rest of the stream cannot be trusted).
    pub fn response(&self) -> Answer {
        let details = self.to_string();
        match self {
            FramingError::UnknownCoding(_) => respond::not_implemented(&details),
            _ => respond::error(ErrorType::HttpRequestError, &details),
        }
    }
}

/// Checks what the module docs list; `Ok` for everything hyper framed unambiguously.
pub fn check(method: &Method, headers: &HeaderMap) -> Result<(), FramingError> {
    let mut chunked = 0;
    for value in headers.get_all(TRANSFER_ENCODING) {
        // hyper only passes visible-ASCII values here when the last coding is `chunked`.
        let value = String::from_utf8_lossy(value.as_bytes());
        for coding in value.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            if !coding.eq_ignore_ascii_case("chunked") {
                return Err(FramingError::UnknownCoding(coding.to_owned()));
            }
            chunked += 1;
        }
    }
    if chunked > 1 {
        return Err(FramingError::ChunkedTwice);
    }
    if method == Method::CONNECT {
        let length = headers.get(CONTENT_LENGTH).map(|v| v.as_bytes());
        if chunked > 0 || length.is_some_and(|l| l != b"0") {
            return Err(FramingError::ConnectContent);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    fn te(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(TRANSFER_ENCODING, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn only_a_single_chunked_coding_passes() {
        assert_eq!(check(&Method::POST, &HeaderMap::new()), Ok(()));
        assert_eq!(check(&Method::POST, &te(&["chunked"])), Ok(()));
        assert_eq!(check(&Method::POST, &te(&["Chunked"])), Ok(()));
        assert_eq!(
            check(&Method::POST, &te(&["gzip, chunked"])),
            Err(FramingError::UnknownCoding("gzip".into()))
        );
        assert_eq!(
            check(&Method::POST, &te(&["gzip", "chunked"])),
            Err(FramingError::UnknownCoding("gzip".into()))
        );
        for twice in [&["chunked, chunked"][..], &["chunked", "chunked"]] {
            assert_eq!(
                check(&Method::POST, &te(twice)),
                Err(FramingError::ChunkedTwice)
            );
        }
    }

    #[test]
    fn connect_has_no_content() {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_LENGTH, "0".parse().unwrap());
        assert_eq!(check(&Method::CONNECT, &h), Ok(()));
        h.insert(CONTENT_LENGTH, "5".parse().unwrap());
        assert_eq!(
            check(&Method::CONNECT, &h),
            Err(FramingError::ConnectContent)
        );
        assert_eq!(check(&Method::POST, &h), Ok(()));
        assert_eq!(
            check(&Method::CONNECT, &te(&["chunked"])),
            Err(FramingError::ConnectContent)
        );
    }

    #[test]
    fn statuses() {
        let r = FramingError::UnknownCoding("gzip".into())
            .response()
            .into_response();
        assert_eq!(r.status(), StatusCode::NOT_IMPLEMENTED);
        assert_eq!(r.headers()["connection"], "close");
        let r = FramingError::ChunkedTwice.response().into_response();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(r.headers()["connection"], "close");
    }
}
