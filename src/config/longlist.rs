//! A fast path for the long list of a category file: the block sequence under one top-level
//! key, when every entry is a scalar that YAML reads as the very same string (a domain written
//! plainly, as block lists are, or quoted without escapes). Those lines are read here, directly, and emptied from
//! a copy of the file that serde_yaml then parses as usual (line numbers unchanged), so a
//! 1,000,000-entry list never goes through serde_yaml's event list and value tree (~250 bytes
//! and several allocations per entry, against 24 bytes here).
//!
//! Anything else in the list (escapes, flow style, nested nodes, a scalar continued on the next
//! line, tabs, non-ASCII, a plain value YAML would read as a number, null or boolean) and the caller
//! takes the ordinary path for the whole file: this is only ever a faster way to the same
//! result, which the tests check against serde_yaml on generated files.

use super::yaml::{self, Doc, Pos, Seg, Value};

/// A file whose list was read by [`split`].
pub struct Split<'a> {
    /// The file with the list's entries emptied, so that the key now holds null.
    pub rest: String,
    /// `rest`, parsed.
    pub value: Value,
    /// The entries in order, each with the position of its scalar in the file.
    pub items: Vec<(&'a str, Pos)>,
}

/// Reads the block sequence under the top-level `key` of `text`, when the fast path applies
/// (see the module docs); `None` when the whole file must be parsed the ordinary way.
pub fn split<'a>(text: &'a str, key: &str) -> Option<Split<'a>> {
    // Lines are counted at '\n'; YAML also breaks lines at these, so they would shift them.
    if text.contains('\r')
        || (!text.is_ascii() && text.contains(['\u{85}', '\u{2028}', '\u{2029}']))
    {
        return None;
    }
    let mut lines = text.split_inclusive('\n').zip(1u32..);
    let mut rest = String::new();
    let mut key_line = None;
    for (line, n) in lines.by_ref() {
        rest.push_str(line);
        if is_key_line(body(line), key) {
            key_line = Some(n);
            break;
        }
    }
    let key_line = key_line?;
    let mut items = Vec::with_capacity(line_count(text).saturating_sub(key_line as usize));
    let mut indent = None;
    for (line, n) in lines.by_ref() {
        let body = body(line);
        let content = body.trim_start_matches(' ');
        let at = body.len() - content.len();
        if content.is_empty() || content.starts_with('#') {
            rest.push_str(line);
        } else if let Some(entry) = content.strip_prefix("- ") {
            if *indent.get_or_insert(at) != at {
                return None;
            }
            let value = entry.trim_start_matches(' ');
            let column = (body.len() - value.len()) as u32 + 1;
            let (scalar, after) = scalar(value)?;
            // Then nothing, or a comment after a space.
            let comment = after.trim_start_matches(' ');
            if !(comment.is_empty() || (comment.starts_with('#') && after.starts_with(' '))) {
                return None;
            }
            items.push((scalar, Pos { line: n, column }));
            rest.push_str(&line[body.len()..]);
        } else if at == 0 && is_simple_key_line(content) {
            rest.push_str(line);
            break;
        } else {
            return None;
        }
    }
    lines.for_each(|(line, _)| rest.push_str(line));
    let value = yaml::parse_value(Doc::whole(&rest)).ok()?;
    // The key line found must be the key the parser sees (not, say, a line inside a quoted
    // string that spans lines), and it must now hold null.
    let located = yaml::locate(Doc::whole(&rest), &[Seg::KeyNode(key.to_owned())]);
    if located
        != Some(Pos {
            line: key_line,
            column: 1,
        })
        || !value.get(key)?.is_null()
    {
        return None;
    }
    Some(Split { rest, value, items })
}

/// A line without its line break.
fn body(line: &str) -> &str {
    line.strip_suffix('\n').unwrap_or(line)
}

fn line_count(text: &str) -> usize {
    text.bytes().filter(|b| *b == b'\n').count() + 1
}

/// `KEY:` at the start of the line, then nothing or a comment.
fn is_key_line(line: &str, key: &str) -> bool {
    let Some(after) = line.strip_prefix(key).and_then(|l| l.strip_prefix(':')) else {
        return false;
    };
    after.is_empty()
        || (after.starts_with(' ') && {
            let after = after.trim_start_matches(' ');
            after.is_empty() || after.starts_with('#')
        })
}

/// `name:` followed by nothing or a space, `name` a plain identifier: the next key of the
/// top-level mapping, which ends the list.
fn is_simple_key_line(line: &str) -> bool {
    let Some((name, after)) = line.split_once(':') else {
        return false;
    };
    let b = name.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-')
        && (after.is_empty() || after.starts_with(' '))
}

/// The string an entry's scalar stands for and what follows it on the line, when the scalar
/// is plain (see [`is_plain_string`]) or quoted without escapes (`"x"` or `'x'` around
/// printable ASCII without quotes or backslashes: always that very string).
fn scalar(value: &str) -> Option<(&str, &str)> {
    match value.as_bytes().first() {
        Some(&q @ (b'"' | b'\'')) => {
            let inner = &value[1..];
            let end = inner.find(q as char)?;
            let text = &inner[..end];
            let plain = |c: &u8| (b' '..=b'~').contains(c) && !matches!(c, b'"' | b'\'' | b'\\');
            text.as_bytes()
                .iter()
                .all(plain)
                .then(|| (text, &inner[end + 1..]))
        }
        _ => {
            let (scalar, after) = value.split_at(value.find(' ').unwrap_or(value.len()));
            is_plain_string(scalar).then_some((scalar, after))
        }
    }
}

/// Whether YAML reads this plain scalar as this very string: ASCII letters, digits, `.`, `-`
/// and `_`, starting with a letter or digit (no indicator), with a dot (so never null, a
/// boolean or an integer in any base) and not a float. Nothing in it can start a comment, a
/// mapping value or another node.
fn is_plain_string(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b.contains(&b'.')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_'))
        && s.parse::<f64>().is_err()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::tests::random::Rng;

    /// What the ordinary path reads: the parsed file, and the position of every entry.
    fn ordinary(text: &str) -> Option<(Value, Vec<Pos>)> {
        let value = yaml::parse_value(Doc::whole(text)).ok()?;
        let n = value.get("domains")?.as_sequence().map_or(0, Vec::len);
        let pos = (0..n)
            .map(|i| {
                let at = [Seg::key("domains"), Seg::Index(i)];
                yaml::locate(Doc::whole(text), &at).unwrap()
            })
            .collect();
        Some((value, pos))
    }

    /// The fast path's answer as the ordinary path would give it.
    fn fast(text: &str) -> Option<(Value, Vec<Pos>)> {
        let s = split(text, "domains")?;
        let mut value = s.value;
        let list = s.items.iter().map(|(d, _)| Value::String(d.to_string()));
        // No entry: the key holds null in both (the category is then empty either way).
        if let (Value::Mapping(m), false) = (&mut value, s.items.is_empty()) {
            let seq = Value::Sequence(list.collect());
            m.insert(Value::String("domains".into()), seq);
        }
        assert_eq!(s.rest.lines().count(), text.lines().count(), "{text:?}");
        Some((value, s.items.iter().map(|(_, p)| *p).collect()))
    }

    #[test]
    fn reads_a_category_file() {
        let text = "# Social\ndescription: Social networks\ndomains:   # all of them\n  # Meta\n  - facebook.com\n  -   fbcdn.net     # CDN\n\n# X\n  - 'x.com'\n";
        let s = split(text, "domains").unwrap();
        let items: Vec<_> = s
            .items
            .iter()
            .map(|(d, p)| (*d, p.line, p.column))
            .collect();
        assert_eq!(
            items,
            [("facebook.com", 5, 5), ("fbcdn.net", 6, 7), ("x.com", 9, 5)]
        );
        assert_eq!(fast(text), ordinary(text));
    }

    #[test]
    fn anything_unusual_takes_the_ordinary_path() {
        for text in [
            "domains:\n  - 'it''s.com'\n",
            "domains:\n  - \"esc\\\\aped.com\"\n",
            "domains:\n  - 1.5\n",
            "domains:\n  - a.com\n    b.com\n",
            "domains:\n  - a.com\n   - b.com\n",
            "domains:\n  - a.com:80\n",
            "domains:\n  - café.com\n",
            "domains:\n\t- a.com\n",
            "domains:\n  - a.com\r\n",
            "domains: [a.com]\n",
            "domains:\n  - a.com\nweird line\n",
            "description: \"x\ndomains:\n  - a.com\n\"\ndomains:\n",
            "domains:\n  - a.com\ndomains:\n",
            "description: x\n",
        ] {
            assert!(split(text, "domains").is_none(), "{text:?}");
        }
    }

    const LINES: [&str; 51] = [
        "domains:",
        "domains: # c",
        "domains:#c",
        "domains: []",
        "description: foo",
        "description: |",
        "description: \"foo",
        "\"",
        "other: 1",
        "---",
        "...",
        "- a.com",
        "  - a.com",
        "    - b.example",
        "  -   c.example   # c",
        "  - 1.5",
        "  - 1e5.x",
        "  - null",
        "  - x",
        "  - a.com:80",
        "  - 'a.com'",
        "  - [a.com]",
        "  - a.com\t# c",
        "  - -a.com",
        "  - _a.com",
        "  - a.com#c",
        "  -",
        "  - a.b.",
        "  - 0x1.a",
        "  - 0.0.0.1",
        "    more.com",
        "      # deeper comment",
        "  # comment",
        "# comment",
        "",
        "   ",
        "\t- a.com",
        "  - café.com",
        "  - ~",
        "  - a.com # ok",
        "  - \"a.com\"",
        "  - 'b.example'   # c",
        "  - \"*.x.com\"",
        "  - \"a\\\\.com\"",
        "  - \"a.com\"#c",
        "  - \"\"",
        "  - 'it''s.com'",
        "  - \"1.5\"",
        "  - \"a.com",
        "  - 'a b.com'",
        "  - \"null\" # c",
    ];

    /// On generated files the fast path, when it applies, agrees with serde_yaml: the same
    /// value (entries typed as strings), the same positions.
    #[test]
    fn agrees_with_the_ordinary_path() {
        let mut rng = Rng::new(7);
        let mut applied = 0;
        for _ in 0..4000 {
            let mut text = String::new();
            if rng.chance(0.7) {
                text += "description: x\ndomains:\n";
            }
            for _ in 0..rng.below(8) {
                text += *rng.pick(&LINES);
                text += "\n";
            }
            if let Some(got) = fast(&text) {
                applied += 1;
                assert_eq!(Some(got), ordinary(&text), "{text:?}");
            }
        }
        assert!(applied > 300, "{applied}");
    }
}
