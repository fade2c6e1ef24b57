//! A serde `Deserializer` over the merged tree that knows where it is.
//!
//! It is type-driven where the sources are not: text from the environment or
//! `--set` becomes whatever the field asks for (`"8080"` for a `u16`, a comma
//! list for a `Vec`), and stays exactly as written for a `String` (`"007"`
//! remains `"007"`). Every error carries the key path and the origin of the
//! value that caused it; keys the type does not read are recorded as unknown.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer as _, IntoDeserializer, Unexpected, Visitor};
use serde::forward_to_deserialize_any;

use crate::origin::Origin;
use crate::tree::{Node, Value, join};

/// Collects what a pass over the tree noticed without failing.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    pub(crate) unknown: RefCell<Vec<(String, Origin)>>,
}

/// A deserialization failure at a place in the tree.
#[derive(Debug, Clone)]
pub(crate) struct DeError {
    pub(crate) message: String,
    pub(crate) path: Option<String>,
    pub(crate) origin: Option<Origin>,
    /// Raised while reading a key: the type does not know it.
    pub(crate) unknown_key: bool,
}

impl DeError {
    fn at(mut self, path: &str, origin: &Origin) -> Self {
        if self.path.is_none() {
            self.path = Some(path.to_owned());
            self.origin = Some(origin.clone());
        }
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            message: msg.to_string(),
            path: None,
            origin: None,
            unknown_key: false,
        }
    }
}

/// Deserializes one node.
pub(crate) struct NodeDe<'a> {
    pub(crate) node: &'a Node,
    pub(crate) path: String,
    pub(crate) seen: &'a Seen,
}

impl<'a> NodeDe<'a> {
    pub(crate) fn new(node: &'a Node, path: String, seen: &'a Seen) -> Self {
        NodeDe { node, path, seen }
    }

    fn locate<T>(&self, result: Result<T, DeError>) -> Result<T, DeError> {
        result.map_err(|e| e.at(&self.path, &self.node.origin))
    }

    fn string(&self) -> Option<&'a str> {
        match &self.node.value {
            Value::Str { value, .. } => Some(value.trim()),
            _ => None,
        }
    }

    fn integer<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match &self.node.value {
            Value::Int(i) => visitor.visit_i64(*i),
            Value::UInt(u) => visitor.visit_u64(*u),
            Value::Str { value, .. } => {
                let text = value.trim();
                if let Ok(i) = text.parse::<i64>() {
                    visitor.visit_i64(i)
                } else if let Ok(u) = text.parse::<u64>() {
                    visitor.visit_u64(u)
                } else {
                    Err(de::Error::invalid_type(Unexpected::Str(value), &visitor))
                }
            }
            _ => return self.deserialize_any(visitor),
        };
        self.locate(result)
    }

    /// A number for a float field: finite, and within `max` (`f32::MAX` for an `f32`).
    fn float<'de, V: Visitor<'de>>(self, visitor: V, max: f64) -> Result<V::Value, DeError> {
        let number = match &self.node.value {
            Value::Float(f) => Ok(*f),
            Value::Int(i) => Ok(*i as f64),
            Value::UInt(u) => Ok(*u as f64),
            Value::Str { value, .. } => value
                .trim()
                .parse::<f64>()
                .map_err(|_| de::Error::invalid_type(Unexpected::Str(value), &visitor)),
            _ => return self.deserialize_any(visitor),
        };
        // NaN and infinity pass every range check (`x < 0.0 || x > 1.0` is
        // false for NaN) and print as "not set": no setting means them.
        let result = number.and_then(|f| {
            if f.is_finite() && f.abs() <= max {
                visitor.visit_f64(f)
            } else {
                Err(de::Error::custom(format!(
                    "expected a finite number, got {f}"
                )))
            }
        });
        self.locate(result)
    }

    fn seq<'de, V: Visitor<'de>>(&self, items: &[Node], visitor: V) -> Result<V::Value, DeError> {
        let mut access = SeqAcc {
            items: items.iter().enumerate(),
            path: &self.path,
            seen: self.seen,
        };
        let value = visitor.visit_seq(&mut access)?;
        if access.items.len() > 0 {
            return Err(de::Error::invalid_length(
                items.len(),
                &"fewer elements in the list",
            ));
        }
        Ok(value)
    }

    fn map<'de, V: Visitor<'de>>(
        &self,
        map: &std::collections::BTreeMap<String, Node>,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_map(MapAcc {
            entries: map.iter(),
            pending: None,
            path: &self.path,
            seen: self.seen,
        })
    }
}

/// Splits text such as `a, b ,c` into list items; empty text is an empty list.
fn split_list(text: &str, origin: &Origin) -> Vec<Node> {
    if text.trim().is_empty() {
        return Vec::new();
    }
    text.split(',')
        .map(|item| Node::text(item.trim(), origin.clone()))
        .collect()
}

/// What a `deserialize_*` method returns (serde's signature, shortened).
type Out<'de, V> = Result<<V as Visitor<'de>>::Value, DeError>;

/// Field or variant names, as serde passes them.
type Names = &'static [&'static str];

impl<'de> de::Deserializer<'de> for NodeDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match &self.node.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Int(i) => visitor.visit_i64(*i),
            Value::UInt(u) => visitor.visit_u64(*u),
            Value::Float(f) => visitor.visit_f64(*f),
            Value::Str { value, .. } => visitor.visit_str(value),
            Value::List(items) => self.seq(items, visitor),
            Value::Map(map) => self.map(map, visitor),
        };
        self.locate(result)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let Some(text) = self.string() else {
            return self.deserialize_any(visitor);
        };
        let result = if text.eq_ignore_ascii_case("true") {
            visitor.visit_bool(true)
        } else if text.eq_ignore_ascii_case("false") {
            visitor.visit_bool(false)
        } else {
            Err(de::Error::invalid_type(Unexpected::Str(text), &visitor))
        };
        self.locate(result)
    }

    fn deserialize_i8<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.integer(v)
    }
    fn deserialize_i16<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.integer(v)
    }
    fn deserialize_i32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.integer(v)
    }
    fn deserialize_i64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.integer(v)
    }
    fn deserialize_u8<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.integer(v)
    }
    fn deserialize_u16<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.integer(v)
    }
    fn deserialize_u32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.integer(v)
    }
    fn deserialize_u64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.integer(v)
    }
    fn deserialize_f32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.float(v, f64::from(f32::MAX))
    }
    fn deserialize_f64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.float(v, f64::MAX)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        // Scalars written without quotes in a file still make a string field.
        let result = match &self.node.value {
            Value::Str { value, .. } => visitor.visit_str(value),
            Value::Int(i) => visitor.visit_string(i.to_string()),
            Value::UInt(u) => visitor.visit_string(u.to_string()),
            Value::Float(f) => visitor.visit_string(f.to_string()),
            Value::Bool(b) => visitor.visit_string(b.to_string()),
            _ => return self.deserialize_any(visitor),
        };
        self.locate(result)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if matches!(self.node.value, Value::Null) {
            let result = visitor.visit_none();
            return self.locate(result);
        }
        let path = self.path.clone();
        let origin = self.node.origin.clone();
        visitor.visit_some(self).map_err(|e| e.at(&path, &origin))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _: &str, visitor: V) -> Out<'de, V> {
        let path = self.path.clone();
        let origin = self.node.origin.clone();
        visitor
            .visit_newtype_struct(self)
            .map_err(|e| e.at(&path, &origin))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match &self.node.value {
            Value::List(items) => self.seq(items, visitor),
            Value::Str { value, text: true } => {
                let items = split_list(value, &self.node.origin);
                self.seq(&items, visitor)
            }
            _ => return self.deserialize_any(visitor),
        };
        self.locate(result)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, v: V) -> Result<V::Value, DeError> {
        self.deserialize_seq(v)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(self, _: &str, _: usize, v: V) -> Out<'de, V> {
        self.deserialize_seq(v)
    }

    fn deserialize_struct<V: Visitor<'de>>(self, _: &str, _: Names, visitor: V) -> Out<'de, V> {
        // `section:` with nothing under it (YAML null) is an empty section.
        if matches!(self.node.value, Value::Null) {
            let empty = std::collections::BTreeMap::new();
            let result = self.map(&empty, visitor);
            return self.locate(result);
        }
        self.deserialize_any(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(self, _: &str, _: Names, visitor: V) -> Out<'de, V> {
        let result = match &self.node.value {
            Value::Str { value, .. } => {
                let variant: de::value::StrDeserializer<'_, DeError> =
                    value.trim().into_deserializer();
                visitor.visit_enum(variant)
            }
            Value::Map(map) if map.len() == 1 => {
                visitor.visit_enum(de::value::MapAccessDeserializer::new(MapAcc {
                    entries: map.iter(),
                    pending: None,
                    path: &self.path,
                    seen: self.seen,
                }))
            }
            _ => return self.deserialize_any(visitor),
        };
        self.locate(result)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        // The type skipped this key: it does not know it.
        self.seen
            .unknown
            .borrow_mut()
            .push((self.path.clone(), self.node.origin.clone()));
        visitor.visit_unit()
    }

    forward_to_deserialize_any! {
        i128 u128 bytes byte_buf unit unit_struct map
    }
}

struct SeqAcc<'a, I> {
    items: I,
    path: &'a str,
    seen: &'a Seen,
}

impl<'de, 'a, I> de::SeqAccess<'de> for &mut SeqAcc<'a, I>
where
    I: Iterator<Item = (usize, &'a Node)> + ExactSizeIterator,
{
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            Some((index, node)) => {
                let path = join(self.path, &index.to_string());
                seed.deserialize(NodeDe::new(node, path.clone(), self.seen))
                    .map(Some)
                    // A type may replace the located error by its own (Secret does).
                    .map_err(|e| e.at(&path, &node.origin))
            }
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapAcc<'a> {
    entries: std::collections::btree_map::Iter<'a, String, Node>,
    pending: Option<(&'a String, &'a Node)>,
    path: &'a str,
    seen: &'a Seen,
}

impl<'de> de::MapAccess<'de> for MapAcc<'_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some((key, node)) = self.entries.next() else {
            return Ok(None);
        };
        self.pending = Some((key, node));
        seed.deserialize(KeyDe(key)).map(Some).map_err(|mut e| {
            // A key the type refuses (deny_unknown_fields, unknown variant).
            e.unknown_key = true;
            e.at(&join(self.path, key), &node.origin)
        })
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let Some((key, node)) = self.pending.take() else {
            return Err(de::Error::custom("value requested before its key"));
        };
        let path = join(self.path, key);
        seed.deserialize(NodeDe::new(node, path.clone(), self.seen))
            .map_err(|e| e.at(&path, &node.origin))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

/// A map key: a string, or a number for maps keyed by numbers.
struct KeyDe<'a>(&'a str);

impl<'de> de::Deserializer<'de> for KeyDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_str(self.0)
    }

    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0.parse::<u64>() {
            Ok(n) => visitor.visit_u64(n),
            Err(_) => visitor.visit_str(self.0),
        }
    }

    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0.parse::<i64>() {
            Ok(n) => visitor.visit_i64(n),
            Err(_) => visitor.visit_str(self.0),
        }
    }

    fn deserialize_u8<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_u64(v)
    }
    fn deserialize_u16<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_u64(v)
    }
    fn deserialize_u32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_u64(v)
    }
    fn deserialize_i8<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_i64(v)
    }
    fn deserialize_i16<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_i64(v)
    }
    fn deserialize_i32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_i64(v)
    }

    fn deserialize_enum<V: Visitor<'de>>(self, _: &str, _: Names, visitor: V) -> Out<'de, V> {
        let variant: de::value::StrDeserializer<'_, DeError> = self.0.into_deserializer();
        visitor.visit_enum(variant)
    }

    forward_to_deserialize_any! {
        bool i128 u128 f32 f64 char str string bytes byte_buf option unit unit_struct
        newtype_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}
