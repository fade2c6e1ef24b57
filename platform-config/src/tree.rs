//! The merged source tree: every value with the place it came from.
//!
//! Each layer (a file, the environment, the overrides) becomes a [`Node`]
//! tree; layers are merged in precedence order. Tables merge key by key;
//! lists and scalars are replaced whole, so a list is never a surprising
//! concatenation of two files.

use std::collections::BTreeMap;

use crate::origin::Origin;

/// A value in the tree.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    /// `text` marks values that came as untyped text (environment variables,
    /// `--set`): they are converted to whatever the field asks for, and a list
    /// field splits them on commas. Strings from typed files stay strings.
    Str {
        value: String,
        text: bool,
    },
    List(Vec<Node>),
    Map(BTreeMap<String, Node>),
}

/// A value and its origin.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub(crate) value: Value,
    pub(crate) origin: Origin,
}

impl Node {
    pub(crate) fn new(value: Value, origin: Origin) -> Self {
        Node { value, origin }
    }

    pub(crate) fn empty_map(origin: Origin) -> Self {
        Node::new(Value::Map(BTreeMap::new()), origin)
    }

    pub(crate) fn text(value: impl Into<String>, origin: Origin) -> Self {
        Node::new(
            Value::Str {
                value: value.into(),
                text: true,
            },
            origin,
        )
    }

    /// Lays `upper` over `self`: tables merge, everything else is replaced.
    pub(crate) fn merge(&mut self, upper: Node) {
        match (&mut self.value, upper.value) {
            (Value::Map(lower), Value::Map(upper_map)) => {
                for (key, node) in upper_map {
                    match lower.get_mut(&key) {
                        Some(existing) => existing.merge(node),
                        None => {
                            lower.insert(key, node);
                        }
                    }
                }
            }
            (_, value) => {
                self.value = value;
                self.origin = upper.origin;
            }
        }
    }

    /// Sets `path` to `leaf`, creating tables on the way (each taking the
    /// leaf's origin). A scalar in the way is replaced by a table.
    pub(crate) fn insert_path(&mut self, path: &[String], leaf: Node) {
        let Some((first, rest)) = path.split_first() else {
            *self = leaf;
            return;
        };
        if !matches!(self.value, Value::Map(_)) {
            *self = Node::empty_map(leaf.origin.clone());
        }
        let Value::Map(map) = &mut self.value else {
            return;
        };
        let child = map
            .entry(first.clone())
            .or_insert_with(|| Node::empty_map(leaf.origin.clone()));
        child.insert_path(rest, leaf);
    }

    /// The node at a dotted key path (`a.b.0.c`: list indices are numbers).
    pub(crate) fn get_path(&self, path: &str) -> Option<&Node> {
        if path.is_empty() {
            return Some(self);
        }
        let mut node = self;
        for segment in path.split('.') {
            node = match &node.value {
                Value::Map(map) => map.get(segment)?,
                Value::List(items) => items.get(segment.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(node)
    }

    /// Removes the node at a dotted key path; true when something was removed.
    pub(crate) fn remove_path(&mut self, path: &str) -> bool {
        let (parent, last) = match path.rsplit_once('.') {
            Some((parent, last)) => (parent, last),
            None => ("", path),
        };
        let mut node = self;
        if !parent.is_empty() {
            for segment in parent.split('.') {
                node = match &mut node.value {
                    Value::Map(map) => match map.get_mut(segment) {
                        Some(n) => n,
                        None => return false,
                    },
                    Value::List(items) => {
                        match segment.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                            Some(n) => n,
                            None => return false,
                        }
                    }
                    _ => return false,
                };
            }
        }
        match &mut node.value {
            Value::Map(map) => map.remove(last).is_some(),
            Value::List(items) => match last.parse::<usize>() {
                Ok(i) if i < items.len() => {
                    items.remove(i);
                    true
                }
                _ => false,
            },
            _ => false,
        }
    }

    /// Every leaf (scalar or list) with its dotted path, for provenance.
    pub(crate) fn leaves(&self) -> Vec<(String, &Node)> {
        fn walk<'a>(node: &'a Node, path: String, out: &mut Vec<(String, &'a Node)>) {
            match &node.value {
                Value::Map(map) if !map.is_empty() => {
                    for (k, v) in map {
                        let p = if path.is_empty() {
                            k.clone()
                        } else {
                            format!("{path}.{k}")
                        };
                        walk(v, p, out);
                    }
                }
                _ => out.push((path, node)),
            }
        }
        let mut out = Vec::new();
        walk(self, String::new(), &mut out);
        out
    }
}

/// Joins a key path and a child key.
pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(line: usize) -> Origin {
        Origin::File {
            path: "f.toml".into(),
            line: Some(line),
        }
    }

    #[test]
    fn tables_merge_and_lists_replace() {
        let mut lower = Node::empty_map(Origin::Default);
        lower.insert_path(&["a".into(), "x".into()], Node::new(Value::Int(1), file(1)));
        lower.insert_path(&["a".into(), "y".into()], Node::new(Value::Int(2), file(2)));
        lower.insert_path(
            &["l".into()],
            Node::new(
                Value::List(vec![Node::new(Value::Int(1), file(3))]),
                file(3),
            ),
        );
        let mut upper = Node::empty_map(Origin::Code);
        upper.insert_path(
            &["a".into(), "y".into()],
            Node::new(Value::Int(3), Origin::Code),
        );
        upper.insert_path(&["l".into()], Node::new(Value::List(vec![]), Origin::Code));
        lower.merge(upper);
        assert_eq!(lower.get_path("a.x").unwrap().value, Value::Int(1));
        assert_eq!(lower.get_path("a.y").unwrap().value, Value::Int(3));
        assert_eq!(lower.get_path("a.y").unwrap().origin, Origin::Code);
        assert_eq!(lower.get_path("l").unwrap().value, Value::List(vec![]));
        assert!(lower.remove_path("a.x"));
        assert!(lower.get_path("a.x").is_none());
        assert!(!lower.remove_path("a.nope.deeper"));
    }
}
