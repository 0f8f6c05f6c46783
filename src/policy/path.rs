//! URL path normalisation for `urls:` selectors (RFC 3986 §6.2.2): dot segments removed,
//! percent-encoded unreserved characters decoded, remaining escapes in upper-case hex. The query
//! and fragment are dropped. Rule prefixes and request paths go through the same function, so
//! `/a/./b`, `/a/x/../b` and `/%61/b` all match a rule written `/a/b`.

/// Normalises the path of a request target or a `urls:` entry (which may carry a query).
/// Returns `None` when the input cannot be a path (it does not start with `/`).
pub fn normalize_path(raw: &str) -> Option<String> {
    if !raw.starts_with('/') {
        return None;
    }
    let raw = raw.split(['?', '#']).next().unwrap_or(raw);
    // The WHATWG parser removes `.`/`..` segments, including `%2e` spellings of them.
    let base = url::Url::parse("http://h/").ok()?;
    let joined = base.join(raw).ok()?;
    Some(decode_unreserved(joined.path()))
}

fn decode_unreserved(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = &path[i + 1..i + 3];
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                if v.is_ascii_alphanumeric() || matches!(v, b'-' | b'.' | b'_' | b'~') {
                    out.push(v as char);
                } else {
                    out.push('%');
                    out.push_str(&hex.to_ascii_uppercase());
                }
                i += 3;
                continue;
            }
        }
        out.push(bytes[i] as char);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::normalize_path;

    #[test]
    fn dot_segments_and_escapes() {
        let n = |s| normalize_path(s).unwrap();
        assert_eq!(n("/a/./b"), "/a/b");
        assert_eq!(n("/a/x/../b"), "/a/b");
        assert_eq!(n("/a/%2e%2E/b"), "/b");
        assert_eq!(n("/%61/b"), "/a/b");
        assert_eq!(n("/a%2fb"), "/a%2Fb");
        assert_eq!(n("/watch?v=1"), "/watch");
        assert_eq!(n("/../../etc"), "/etc");
        assert_eq!(n("/"), "/");
        assert_eq!(normalize_path("relative"), None);
    }
}
