//! Cutting a block sequence (`rules:`, a test file) into one slice of lines per item, so that
//! each rule can be located and checked by parsing only its own lines.
//!
//! Why: serde_yaml can only tell where a node is by failing on it, and every such probe parses
//! the whole file; probing each of N rules would cost N full parses (quadratic). Instead we find
//! the item boundaries textually (a `-` at the sequence's column starts an item) in one linear
//! scan, then *prove* the cut right: each slice, parsed alone, must give exactly the value the
//! full parse gave for that item. Any doubt (flow style, anchors shared between items, exotic
//! line breaks) makes [`item_docs`] return `None` and callers fall back to whole-file probes.

use super::yaml::{self, Doc, Seg, Value};

/// Whole-line slices of `doc`, one per item of the sequence at `seq_path`, each a [`Doc`]
/// that parses as a one-item sequence equal to the matching entry of `items`.
pub(crate) fn item_docs<'a>(
    doc: Doc<'a>,
    seq_path: &[Seg],
    items: &[Value],
) -> Option<Vec<Doc<'a>>> {
    if items.is_empty() {
        return Some(Vec::new());
    }
    // libyaml also breaks lines at a lone CR, NEL, LS and PS; our line counting does not.
    let odd_break = |(i, c): (usize, char)| {
        matches!(c, '\u{85}' | '\u{2028}' | '\u{2029}')
            || (c == '\r' && !doc.text[i + 1..].starts_with('\n'))
    };
    if doc.text.char_indices().any(odd_break) {
        return None;
    }
    let dash = yaml::locate(doc, seq_path)?;
    let line = dash.line.checked_sub(doc.line_offset)?;
    let ranges = block_items(doc.text, line, dash.column)?;
    if ranges.len() != items.len() {
        return None;
    }
    let mut docs = Vec::with_capacity(ranges.len());
    for (range, item) in ranges.iter().zip(items) {
        let slice = Doc {
            text: &doc.text[range.start..range.end],
            line_offset: doc.line_offset + range.first_line,
        };
        match yaml::parse_value(slice) {
            Ok(Value::Sequence(s)) if s.len() == 1 && s[0] == *item => docs.push(slice),
            _ => return None,
        }
    }
    Some(docs)
}

/// Byte range of one item and the number of file lines before it.
#[derive(Debug, PartialEq, Eq)]
struct ItemRange {
    start: usize,
    end: usize,
    first_line: u32,
}

/// Splits the block sequence whose first `-` is at (`line`, `column`), both 1-based, into
/// items: an item runs until the next `-` at the same column, and the sequence ends at the
/// first line (not blank, not a comment) indented less, or at that column without a `-`.
fn block_items(text: &str, line: u32, column: u32) -> Option<Vec<ItemRange>> {
    let col = usize::try_from(column.checked_sub(1)?).ok()?;
    let mut items: Vec<ItemRange> = Vec::new();
    let mut offset = 0;
    for (n, raw_line) in (1u32..).zip(text.split_inclusive('\n')) {
        let start = offset;
        offset += raw_line.len();
        if n < line {
            continue;
        }
        let content = raw_line.trim_end_matches(['\n', '\r']);
        let indent = content.bytes().take_while(|b| *b == b' ').count();
        let rest = &content[indent..];
        let is_item = indent == col && is_dash(rest);
        if n == line {
            if !is_item {
                return None;
            }
        } else if rest.is_empty() || rest.starts_with('#') || (indent > col && !is_item) {
            continue;
        } else if !is_item {
            close(&mut items, start);
            return Some(items);
        }
        close(&mut items, start);
        items.push(ItemRange {
            start,
            end: text.len(),
            first_line: n - 1,
        });
    }
    Some(items)
}

fn close(items: &mut [ItemRange], at: usize) {
    if let Some(last) = items.last_mut() {
        last.end = at;
    }
}

/// `-` followed by a space, a tab or the end of the line: a block sequence entry.
fn is_dash(rest: &str) -> bool {
    let mut chars = rest.chars();
    chars.next() == Some('-') && matches!(chars.next(), None | Some(' ' | '\t'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slices(text: &str, path: &[Seg]) -> Option<Vec<(String, u32)>> {
        let doc = Doc::whole(text);
        let value = yaml::parse_value(doc).unwrap();
        let mut node = &value;
        for seg in path {
            node = match seg {
                Seg::Key(k) => &node[k.as_str()],
                _ => unreachable!(),
            };
        }
        let items = node.as_sequence().unwrap();
        let docs = item_docs(doc, path, items)?;
        Some(
            docs.iter()
                .map(|d| (d.text.to_owned(), d.line_offset))
                .collect(),
        )
    }

    #[test]
    fn cuts_rules_with_comments_and_nested_lists() {
        let text = "ministry: a\nrules:\n  - id: one\n    domains:\n    - a.com\n  # note\n\n  -\n    id: two\nmode: report\n";
        let got = slices(text, &[Seg::key("rules")]).unwrap();
        assert_eq!(
            got[0],
            (
                "  - id: one\n    domains:\n    - a.com\n  # note\n\n".to_owned(),
                2
            )
        );
        assert_eq!(got[1], ("  -\n    id: two\n".to_owned(), 7));
    }

    #[test]
    fn compact_and_root_sequences() {
        let got = slices("rules:\n- id: a\n- id: b\nother: 1\n", &[Seg::key("rules")]).unwrap();
        assert_eq!(
            got,
            [("- id: a\n".to_owned(), 1), ("- id: b\n".to_owned(), 2)]
        );
        let got = slices("# tests\n- url: x\n  expect: allow\n- url: y\n", &[]).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].1, 3);
    }

    #[test]
    fn refuses_what_it_cannot_prove() {
        assert_eq!(
            slices("rules: [{id: a}, {id: b}]\n", &[Seg::key("rules")]),
            None
        );
        let anchors = "rules:\n  - &r {id: a, action: allow}\n  - *r\n";
        assert_eq!(slices(anchors, &[Seg::key("rules")]), None);
        // libyaml accepts flow continuation lines at any indentation.
        let multiline_flow = "rules:\n- [a,\nb]\n- id: c\n";
        assert_eq!(slices(multiline_flow, &[Seg::key("rules")]), None);
    }
}
