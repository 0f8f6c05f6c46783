//! The only module that calls serde_yaml (archived upstream; moving to a fork must stay a
//! one-line change). It parses text into [`Value`]s, deserializes raw types from values, and
//! answers "where is this node?" by replaying the text through the seeds of
//! [`super::seek`]. Positions are 1-based; a [`Doc`] may be a slice of a file (one rule), in
//! which case its `line_offset` maps slice lines back to file lines.

use std::marker::PhantomData;

use serde::de::{DeserializeOwned, DeserializeSeed};
use serde::Deserialize;

pub use super::seek::Seg;
use super::seek::{FindDuplicateKey, Mark, OnlyKey, Typed, Walk, MARKER};
pub use serde_yaml::{Mapping, Value};

/// YAML text, or a whole-line slice of it starting after `line_offset` lines of its file.
#[derive(Clone, Copy, Debug)]
pub struct Doc<'a> {
    pub text: &'a str,
    pub line_offset: u32,
}

impl<'a> Doc<'a> {
    pub fn whole(text: &'a str) -> Doc<'a> {
        Doc {
            text,
            line_offset: 0,
        }
    }
}

/// A 1-based position in a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

impl Pos {
    pub const START: Pos = Pos { line: 1, column: 1 };
}

/// A parse or deserialization error: the message without serde_yaml's decorations, and the
/// position in the file when serde_yaml knew one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct YamlError {
    pub message: String,
    pub pos: Option<Pos>,
}

fn deserializer(doc: Doc<'_>) -> serde_yaml::Deserializer<'_> {
    serde_yaml::Deserializer::from_str(doc.text)
}

fn position(doc: Doc<'_>, err: &serde_yaml::Error) -> Option<Pos> {
    err.location().map(|l| Pos {
        line: u32::try_from(l.line())
            .unwrap_or(u32::MAX)
            .saturating_add(doc.line_offset),
        column: u32::try_from(l.column()).unwrap_or(u32::MAX),
    })
}

fn to_error(doc: Doc<'_>, err: &serde_yaml::Error) -> YamlError {
    YamlError {
        message: clean_message(&err.to_string()),
        pos: position(doc, err),
    }
}

/// Parses one YAML document. Duplicate keys, which serde_yaml does not locate, are located by
/// a second pass.
pub fn parse_value(doc: Doc<'_>) -> Result<Value, YamlError> {
    let err = match Value::deserialize(deserializer(doc)) {
        Ok(v) => return Ok(v),
        Err(e) => e,
    };
    let mut out = to_error(doc, &err);
    // serde_yaml puts a duplicate key at the start of its mapping (or nowhere); find the key.
    if out.message.starts_with("duplicate entry") {
        out.message = out
            .message
            .replacen("duplicate entry with key", "duplicate key", 1);
        let found = marker_pos(doc, FindDuplicateKey.deserialize(deserializer(doc)).err());
        out.pos = found.or(out.pos);
    }
    Err(out)
}

/// Deserializes a raw type from an already parsed value (no position: see [`collect`]).
pub fn from_value<T: DeserializeOwned>(value: &Value) -> Result<T, String> {
    T::deserialize(value).map_err(|e| clean_message(&e.to_string()))
}

/// The position of the node at `path`, or `None` when the path is not in the document.
pub fn locate(doc: Doc<'_>, path: &[Seg]) -> Option<Pos> {
    let walk = Walk { path, target: Mark };
    marker_pos(doc, walk.deserialize(deserializer(doc)).err())
}

fn marker_pos(doc: Doc<'_>, err: Option<serde_yaml::Error>) -> Option<Pos> {
    let err = err?;
    if err.to_string().contains(MARKER) {
        position(doc, &err)
    } else {
        None
    }
}

/// Deserializes `T` from the node at `path`, with serde_yaml's position on failure.
pub fn deserialize_at<T: DeserializeOwned>(
    doc: Doc<'_>,
    path: &[Seg],
) -> Result<Option<T>, YamlError> {
    let walk = Walk {
        path,
        target: Typed::<T>(PhantomData),
    };
    walk.deserialize(deserializer(doc))
        .map_err(|e| to_error(doc, &e))
}

/// The located error of the entry `key` alone of the struct `T` at `path`, if it has one.
fn entry_error<T: DeserializeOwned>(doc: Doc<'_>, path: &[Seg], key: &str) -> Option<YamlError> {
    let walk = Walk {
        path,
        target: OnlyKey::<T>(key, PhantomData),
    };
    walk.deserialize(deserializer(doc))
        .err()
        .map(|e| to_error(doc, &e))
}

/// Deserializes the struct `T` from `value` (the node at `path` in `doc`). On failure every
/// bad entry of the mapping is reported, each with its own position, so one typo does not hide
/// the next, and `T` is still built from the good entries (so validation can go on). Relies on
/// every field of `T` having a default, which is true of all raw types.
pub fn collect<T: DeserializeOwned>(
    doc: Doc<'_>,
    path: &[Seg],
    value: &Value,
) -> (Option<T>, Vec<YamlError>) {
    let whole_error = match from_value::<T>(value) {
        Ok(t) => return (Some(t), Vec::new()),
        Err(message) => message,
    };
    let Value::Mapping(map) = value else {
        let err = deserialize_at::<T>(doc, path).err();
        let fallback = YamlError {
            message: whole_error,
            pos: locate(doc, path),
        };
        return (None, vec![err.unwrap_or(fallback)]);
    };
    let mut errors = Vec::new();
    let mut good = Mapping::new();
    for (k, v) in map {
        let mut single = Mapping::new();
        single.insert(k.clone(), v.clone());
        if from_value::<T>(&Value::Mapping(single)).is_ok() {
            good.insert(k.clone(), v.clone());
            continue;
        }
        // Raw types only have string keys; any other key is reported on the whole node.
        let located = match k {
            Value::String(key) => entry_error::<T>(doc, path, key),
            _ => None,
        };
        errors.push(located.unwrap_or_else(|| unlocated(doc, path, k, &whole_error)));
    }
    (from_value::<T>(&Value::Mapping(good)).ok(), errors)
}

/// An entry that fails from the parsed value but not from the text (not expected with the
/// raw types; kept so a surprise is still reported, at the entry).
fn unlocated(doc: Doc<'_>, path: &[Seg], key: &Value, message: &str) -> YamlError {
    let mut at = path.to_vec();
    at.extend(key.as_str().map(Seg::key));
    let pos = locate(doc, &at).or_else(|| locate(doc, path));
    YamlError {
        message: message.to_owned(),
        pos,
    }
}

/// The scalar at `key` of a mapping value as text (a rule's `id`, even `id: 42`).
pub fn scalar_at(value: &Value, key: &str) -> Option<String> {
    match value.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// serde_yaml's text minus its decorations: the " at line L column C" suffixes (we print our
/// own positions) and the `a.b[3]: ` path prefix in front of serde's own messages.
pub(crate) fn clean_message(raw: &str) -> String {
    let mut s = raw.to_owned();
    while let Some(at) = find_mark(&s) {
        s.replace_range(at.0..at.1, "");
    }
    const SERDE_PHRASES: [&str; 8] = [
        "unknown field",
        "invalid type",
        "invalid value",
        "invalid length",
        "unknown variant",
        "missing field",
        "duplicate field",
        "duplicate entry",
    ];
    match SERDE_PHRASES.iter().filter_map(|p| s.find(p)).min() {
        Some(i) => s[i..].to_owned(),
        None => s,
    }
}

/// Byte range of the first " at line N column M" or " at position N" in `s`.
fn find_mark(s: &str) -> Option<(usize, usize)> {
    for (start, _) in s.match_indices(" at ") {
        let rest = &s[start + 4..];
        let digits = |t: &str| t.bytes().take_while(u8::is_ascii_digit).count();
        let len = if let Some(t) = rest.strip_prefix("line ") {
            let n = digits(t);
            let c = t[n..].strip_prefix(" column ").map(digits).unwrap_or(0);
            (n > 0 && c > 0).then(|| 5 + n + 8 + c)
        } else if let Some(t) = rest.strip_prefix("position ") {
            let n = digits(t);
            (n > 0).then_some(9 + n)
        } else {
            None
        };
        if let Some(len) = len {
            return Some((start, start + 4 + len));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(k: &str) -> Seg {
        Seg::key(k)
    }

    #[test]
    fn locates_mappings_sequences_and_keys() {
        let text = "rules:\n  - id: a\n    x: 1\n  -\n    id: b\nother: [1, 2]\n";
        let doc = Doc::whole(text);
        let at = |line, column| Some(Pos { line, column });
        assert_eq!(locate(doc, &[seg("rules")]), at(2, 3));
        assert_eq!(locate(doc, &[seg("rules"), Seg::Index(0)]), at(2, 5));
        assert_eq!(locate(doc, &[seg("rules"), Seg::Index(1)]), at(5, 5));
        assert_eq!(locate(doc, &[seg("rules"), Seg::Index(2)]), None);
        assert_eq!(locate(doc, &[seg("other"), Seg::Index(1)]), at(6, 12));
        assert_eq!(
            locate(
                doc,
                &[seg("rules"), Seg::Index(0), Seg::KeyNode("x".into())]
            ),
            at(3, 5)
        );
        let slice = Doc {
            text: "  - id: a\n",
            line_offset: 10,
        };
        assert_eq!(locate(slice, &[Seg::Index(0)]), at(11, 5));
    }

    #[test]
    fn duplicate_keys_are_located() {
        let err = parse_value(Doc::whole("a: 1\nb:\n  c: 1\n  c: 2\n")).unwrap_err();
        assert_eq!(err.pos, Some(Pos { line: 4, column: 3 }));
        assert!(err.message.contains("duplicate key"), "{}", err.message);
    }

    #[derive(serde::Deserialize, Debug, Default)]
    #[serde(deny_unknown_fields, default)]
    struct R {
        id: Option<String>,
        ports: Vec<u16>,
    }

    #[test]
    fn collect_reports_every_bad_entry() {
        let text = "id: a\nport: [1]\nports: [1, 70000]\nzz: 1\n";
        let doc = Doc::whole(text);
        let value = parse_value(doc).unwrap();
        let (partial, errs) = collect::<R>(doc, &[], &value);
        assert_eq!(partial.unwrap().id.as_deref(), Some("a"));
        let got: Vec<_> = errs
            .iter()
            .map(|e| (e.pos.unwrap().line, e.pos.unwrap().column))
            .collect();
        assert_eq!(got, [(2, 1), (3, 12), (4, 1)]);
        assert!(
            errs[0].message.starts_with("unknown field `port`"),
            "{}",
            errs[0].message
        );
        assert!(
            errs[1]
                .message
                .starts_with("invalid value: integer `70000`"),
            "{}",
            errs[1].message
        );
    }

    #[test]
    fn messages_lose_serde_yaml_decorations() {
        assert_eq!(
            clean_message(
                "rules[3]: invalid type: string \"x\", expected a sequence at line 4 column 9"
            ),
            "invalid type: string \"x\", expected a sequence"
        );
        assert_eq!(
            clean_message("did not find expected key at line 3 column 1, while parsing a block mapping at line 1 column 1"),
            "did not find expected key, while parsing a block mapping"
        );
    }
}
