//! Walking a YAML document to one node with plain serde, no YAML library types.
//!
//! serde_yaml attaches a line and column to any error raised while a node is being
//! deserialized, and there is no other way to ask where a node is. So to locate the node at a
//! [`Seg`] path we re-deserialize the text with [`Walk`], which follows the path (skipping
//! other entries with [`IgnoredAny`]) and, at the target, either raises [`MARKER`] (its
//! location is the node's position), deserializes a type there, or deserializes a struct from
//! only one entry of the mapping there ([`OnlyKey`]), so that the error of that one entry is
//! reported with its own position even when an earlier entry is also wrong.

use std::collections::HashSet;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{
    self, value::StrDeserializer, Deserialize, DeserializeSeed, Deserializer, IgnoredAny,
    IntoDeserializer, MapAccess, SeqAccess, Visitor,
};

/// The message of the error that reports a position; never shown to users.
pub(crate) const MARKER: &str = "\u{1}egressd:located\u{1}";

/// One step of a path into a document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seg {
    /// The value of this key of a mapping.
    Key(String),
    /// This element of a sequence.
    Index(usize),
    /// The key itself (only meaningful as the last step): where "unknown key" points.
    KeyNode(String),
}

impl Seg {
    pub fn key(k: &str) -> Seg {
        Seg::Key(k.to_owned())
    }
}

/// What [`Walk`] does once it reaches the end of its path.
pub(crate) trait Target<'de> {
    type Value;
    fn at<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error>;
}

/// Raise [`MARKER`] at the node.
pub(crate) struct Mark;

impl<'de> Target<'de> for Mark {
    type Value = ();
    fn at<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(MarkVisitor)
    }
}

/// Deserialize a `T` from the node.
pub(crate) struct Typed<T>(pub PhantomData<T>);

impl<'de, T: Deserialize<'de>> Target<'de> for Typed<T> {
    type Value = T;
    fn at<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        T::deserialize(d)
    }
}

/// Deserialize a struct `T` from the single entry `key` of the mapping at the node.
pub(crate) struct OnlyKey<'k, T>(pub &'k str, pub PhantomData<T>);

impl<'de, T: Deserialize<'de>> Target<'de> for OnlyKey<'_, T> {
    type Value = T;
    fn at<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for OnlyKey<'_, T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::deserialize(MapDe(Filtered { map, key: self.0 }))
    }
}

/// Follows `path`, then applies `target`. `Ok(None)`: the path is not in the document.
pub(crate) struct Walk<'p, Tg> {
    pub path: &'p [Seg],
    pub target: Tg,
}

impl<'de, Tg: Target<'de>> DeserializeSeed<'de> for Walk<'_, Tg> {
    type Value = Option<Tg::Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        if self.path.is_empty() {
            return self.target.at(d).map(Some);
        }
        d.deserialize_any(self)
    }
}

impl<'de, Tg: Target<'de>> Visitor<'de> for Walk<'_, Tg> {
    type Value = Option<Tg::Value>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML node")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        if let Seg::Index(i) = self.path[0] {
            let mut n = 0;
            while n < i && seq.next_element::<IgnoredAny>()?.is_some() {
                n += 1;
            }
            if n == i {
                let rest = Walk {
                    path: &self.path[1..],
                    target: self.target,
                };
                found = seq.next_element_seed(rest)?.flatten();
            }
        }
        // serde_yaml rejects a sequence that was not read to its end.
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(found)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (key, mark_key) = match &self.path[0] {
            Seg::Key(k) => (Some(k.as_str()), false),
            Seg::KeyNode(k) => (Some(k.as_str()), self.path.len() == 1),
            Seg::Index(_) => (None, false),
        };
        let mut found = None;
        let mut target = Some(self.target);
        while let Some(matched) = map.next_key_seed(KeyMatch {
            key,
            mark: mark_key,
        })? {
            match target.take_if(|_| matched) {
                Some(t) => {
                    let rest = Walk {
                        path: &self.path[1..],
                        target: t,
                    };
                    found = map.next_value_seed(rest)?;
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(found)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// Reads a mapping key as a string and says whether it is `key`; raises [`MARKER`] instead
/// when `mark` is set, so the error carries the key's own position.
struct KeyMatch<'k> {
    key: Option<&'k str>,
    mark: bool,
}

impl<'de> DeserializeSeed<'de> for KeyMatch<'_> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        // `deserialize_str` gives the scalar as written (`443`, not a number), as the raw
        // types saw it.
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyMatch<'_> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        let matched = self.key == Some(v);
        if matched && self.mark {
            return Err(E::custom(MARKER));
        }
        Ok(matched)
    }
}

/// Errors at whatever node it is given.
struct MarkVisitor;

impl<'de> Visitor<'de> for MarkVisitor {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML node")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(E::custom(MARKER))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(E::custom(MARKER))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(E::custom(MARKER))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(E::custom(MARKER))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(E::custom(MARKER))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(MARKER))
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(MARKER))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(MARKER))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(MARKER))
    }
}

/// A mapping seen through [`Filtered`], handed to a derived `Deserialize` as if it were the
/// whole mapping.
struct MapDe<A>(A);

impl<'de, A: MapAccess<'de>> Deserializer<'de> for MapDe<A> {
    type Error = A::Error;
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, A::Error> {
        visitor.visit_map(self.0)
    }
    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

/// A mapping with every entry but `key` skipped.
struct Filtered<'k, A> {
    map: A,
    key: &'k str,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Filtered<'_, A> {
    type Error = A::Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let mut seed = Some(seed);
        loop {
            let probe = KeyFilter {
                key: self.key,
                seed: &mut seed,
            };
            match self.map.next_key_seed(probe)? {
                None => return Ok(None),
                Some(Some(v)) => return Ok(Some(v)),
                Some(None) => {
                    self.map.next_value::<IgnoredAny>()?;
                }
            }
        }
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.map.next_value_seed(seed)
    }
}

/// Passes the key to the derived field visitor only when it is the wanted one. The call
/// happens inside serde_yaml's key deserialization, so "unknown field" gets the key's position.
struct KeyFilter<'k, 's, K> {
    key: &'k str,
    seed: &'s mut Option<K>,
}

impl<'de, K: DeserializeSeed<'de>> DeserializeSeed<'de> for KeyFilter<'_, '_, K> {
    type Value = Option<K::Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de, K: DeserializeSeed<'de>> Visitor<'de> for KeyFilter<'_, '_, K> {
    type Value = Option<K::Value>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        match self.seed.take_if(|_| v == self.key) {
            Some(seed) => {
                let key: StrDeserializer<'_, E> = v.into_deserializer();
                seed.deserialize(key).map(Some)
            }
            None => Ok(None),
        }
    }
}

/// Walks a whole document and raises [`MARKER`] at the first key repeated in its mapping
/// (serde_yaml reports duplicate keys without a position).
pub(crate) struct FindDuplicateKey;

impl<'de> DeserializeSeed<'de> for FindDuplicateKey {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FindDuplicateKey {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML node")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while map.next_key_seed(SeenKey(&mut seen))?.is_some() {
            map.next_value_seed(FindDuplicateKey)?;
        }
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(FindDuplicateKey)?.is_some() {}
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

struct SeenKey<'s>(&'s mut HashSet<String>);

impl<'de> DeserializeSeed<'de> for SeenKey<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for SeenKey<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        if self.0.insert(v.to_owned()) {
            Ok(())
        } else {
            Err(E::custom(MARKER))
        }
    }
}
