//! Parsing one file's text into a tree, within [`Limits`].
//!
//! TOML goes through `toml` (values with their lines). YAML goes through
//! `serde-saphyr`, whose budget bounds alias expansion, depth and node count
//! while it parses (config-rs's yaml-rust2 expands aliases without a bound),
//! and JSON through `serde_json`; both report the line and column of an
//! error. YAML and JSON are read straight into the tree by a seed that counts
//! depth and values as it goes, so a file over a bound stops being read at
//! the bound, not after it was built.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::de::{self, DeserializeSeed, Visitor};

use crate::limits::Limits;
use crate::origin::Origin;
use crate::tree::{Node, Value};

/// The file formats, by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Toml,
    Yaml,
    Json,
}

impl Format {
    pub(crate) fn of(path: &Path) -> Option<Format> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => Some(Format::Toml),
            Some("yaml" | "yml") => Some(Format::Yaml),
            Some("json") => Some(Format::Json),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Format::Toml => "TOML",
            Format::Yaml => "YAML",
            Format::Json => "JSON",
        }
    }
}

/// Why a file's text could not be read as its format, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParseError {
    pub(crate) line: Option<usize>,
    pub(crate) column: Option<usize>,
    pub(crate) message: String,
}

/// Parses `text` (the content of `path`) into a tree.
pub(crate) fn parse(
    path: &Path,
    text: &str,
    format: Format,
    limits: &Limits,
) -> Result<Node, ParseError> {
    let origin = Origin::File {
        path: path.to_owned(),
        line: None,
    };
    let node = match format {
        Format::Toml => parse_toml(path, text)?,
        Format::Yaml => parse_yaml(text, &origin, limits)?,
        Format::Json => parse_json(text, &origin, limits)?,
    };
    // YAML and JSON were bounded while they were read; TOML is checked here
    // (its parser has its own depth limit, so the tree is already finite).
    if format == Format::Toml {
        check_shape(&node, limits)?;
    }
    match node.value {
        Value::Map(_) => Ok(node),
        // An empty YAML document (only comments) is no settings at all.
        Value::Null => Ok(Node::empty_map(origin)),
        _ => Err(ParseError {
            line: None,
            column: None,
            message: format!(
                "invalid {}: the top level must be a table of settings",
                format.name()
            ),
        }),
    }
}

pub(crate) fn line_of(bytes: &[u8], offset: usize) -> usize {
    1 + bytes[..offset.min(bytes.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
}

fn column_of(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    1 + text.get(start..offset).map_or(0, |s| s.chars().count())
}

fn parse_toml(path: &Path, text: &str) -> Result<Node, ParseError> {
    let values: toml::Table = toml::from_str(text).map_err(|e| ParseError {
        line: e.span().map(|s| line_of(text.as_bytes(), s.start)),
        column: e.span().map(|s| column_of(text, s.start)),
        message: format!("invalid TOML: {}", e.message().trim()),
    })?;
    // The typed parse gives values; the document parse gives their positions.
    let spans = toml::de::DeTable::parse(text).ok();
    let file_origin = |line| Origin::File {
        path: path.to_owned(),
        line,
    };
    fn convert(
        value: &toml::Value,
        span: Option<&toml::de::DeValue<'_>>,
        line: Option<usize>,
        text: &str,
        origin: &dyn Fn(Option<usize>) -> Origin,
    ) -> Node {
        let v = match value {
            toml::Value::String(s) => Value::Str {
                value: s.clone(),
                text: false,
            },
            toml::Value::Integer(i) => Value::Int(*i),
            toml::Value::Float(f) => Value::Float(*f),
            toml::Value::Boolean(b) => Value::Bool(*b),
            toml::Value::Datetime(d) => Value::Str {
                value: d.to_string(),
                text: false,
            },
            toml::Value::Array(items) => {
                let spans = span.and_then(|s| s.as_array());
                Value::List(
                    items
                        .iter()
                        .enumerate()
                        .map(|(i, item)| {
                            let s = spans.and_then(|a| a.get(i));
                            let l = s.map(|s| line_of(text.as_bytes(), s.span().start)).or(line);
                            convert(item, s.map(|s| s.get_ref()), l, text, origin)
                        })
                        .collect(),
                )
            }
            toml::Value::Table(table) => {
                let spans: BTreeMap<&str, &toml::Spanned<toml::de::DeValue<'_>>> = span
                    .and_then(|s| s.as_table())
                    .map(|t| t.iter().map(|(k, v)| (k.get_ref().as_ref(), v)).collect())
                    .unwrap_or_default();
                Value::Map(
                    table
                        .iter()
                        .map(|(k, item)| {
                            let s = spans.get(k.as_str());
                            let l = s.map(|s| line_of(text.as_bytes(), s.span().start)).or(line);
                            (
                                k.clone(),
                                convert(item, s.map(|s| s.get_ref()), l, text, origin),
                            )
                        })
                        .collect(),
                )
            }
        };
        Node::new(v, origin(line))
    }
    let root_span = spans.as_ref().map(|s| s.get_ref());
    let table_value = toml::Value::Table(values);
    let root_de = root_span.map(|t| toml::de::DeValue::Table(t.clone()));
    let mut node = convert(&table_value, root_de.as_ref(), None, text, &file_origin);
    node.origin = file_origin(None);
    Ok(node)
}

/// Depth and value count of a parsed tree against the limits.
fn check_shape(node: &Node, limits: &Limits) -> Result<(), ParseError> {
    let mut values = 0usize;
    // Iterative: the tree may be as deep as the parser allowed.
    let mut stack = vec![(node, 0usize)];
    while let Some((node, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Node>> = match &node.value {
            Value::Map(map) => Box::new(map.values()),
            Value::List(items) => Box::new(items.iter()),
            _ => continue,
        };
        if depth >= limits.max_depth {
            return Err(limit_error(node_line(node), &too_deep(limits.max_depth)));
        }
        for child in children {
            values += 1;
            if values > limits.max_values {
                return Err(limit_error(node_line(child), &too_many(limits.max_values)));
            }
            stack.push((child, depth + 1));
        }
    }
    Ok(())
}

fn node_line(node: &Node) -> Option<usize> {
    match &node.origin {
        Origin::File { line, .. } => *line,
        _ => None,
    }
}

fn limit_error(line: Option<usize>, message: &str) -> ParseError {
    ParseError {
        line,
        column: None,
        message: message.to_owned(),
    }
}

fn too_deep(max: usize) -> String {
    format!("nested deeper than {max} levels (the limit)")
}

fn too_many(max: usize) -> String {
    format!("has more than {max} values (the limit)")
}

fn parse_yaml(text: &str, origin: &Origin, limits: &Limits) -> Result<Node, ParseError> {
    let mut budget = serde_saphyr::Budget::default();
    // The parser's own bounds, one above ours so that ours, with their
    // clearer message, speak first where both apply.
    budget.max_depth = limits.max_depth.saturating_add(1);
    budget.max_nodes = limits.max_values.saturating_add(2);
    budget.max_reader_input_bytes =
        Some(usize::try_from(limits.max_file_size).unwrap_or(usize::MAX));
    budget.max_total_scalar_bytes = usize::try_from(limits.max_file_size).unwrap_or(usize::MAX);
    budget.max_aliases = limits.max_alias_expansions;
    budget.max_recorded_anchor_events = limits.max_values.saturating_add(2);
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.alias_limits.max_total_replayed_events = limits.max_alias_expansions;
    options.with_snippet = false;
    // `.nan` reaches the tree as a float: a float field refuses it naming
    // its key, a text field takes it as written.
    options.non_finite_float_policy = serde_saphyr::NonFiniteFloatPolicy::PassThrough;
    let count = Cell::new(0);
    serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        Builder {
            origin,
            limits,
            depth: 0,
            count: &count,
        }
        .deserialize(de)
    })
    .map_err(|e| {
        let location = e.location();
        let message = e.to_string();
        ParseError {
            line: location.map(|l| l.line() as usize).filter(|l| *l > 0),
            column: location.map(|l| l.column() as usize).filter(|c| *c > 0),
            message: format!("invalid YAML: {}", without_position(first_line(&message))),
        }
    })
}

fn parse_json(text: &str, origin: &Origin, limits: &Limits) -> Result<Node, ParseError> {
    let count = Cell::new(0);
    let mut de = serde_json::Deserializer::from_str(text);
    let result = Builder {
        origin,
        limits,
        depth: 0,
        count: &count,
    }
    .deserialize(&mut de)
    .and_then(|node| de.end().map(|()| node));
    result.map_err(|e| {
        let message = e.to_string();
        let message = without_position(&message);
        ParseError {
            line: (e.line() > 0).then_some(e.line()),
            column: (e.column() > 0).then_some(e.column()),
            message: format!("invalid JSON: {message}"),
        }
    })
}

/// A message without the " at line L[,] column C" both parsers append: the
/// position is shown as `file:L:C` in front.
fn without_position(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(at) => &message[..at],
        None => message,
    }
}

fn first_line(message: &str) -> &str {
    message.lines().next().unwrap_or(message).trim()
}

/// Reads any self-describing value into a [`Node`], counting as it goes.
struct Builder<'a> {
    origin: &'a Origin,
    limits: &'a Limits,
    depth: usize,
    count: &'a Cell<usize>,
}

impl<'a> Builder<'a> {
    fn node(&self, value: Value) -> Node {
        Node::new(value, self.origin.clone())
    }

    fn child(&self) -> Builder<'a> {
        Builder {
            origin: self.origin,
            limits: self.limits,
            depth: self.depth + 1,
            count: self.count,
        }
    }

    fn enter<E: de::Error>(&self) -> Result<(), E> {
        if self.depth >= self.limits.max_depth {
            return Err(E::custom(too_deep(self.limits.max_depth)));
        }
        Ok(())
    }

    fn counted<E: de::Error>(&self) -> Result<(), E> {
        let n = self.count.get() + 1;
        self.count.set(n);
        if n > self.limits.max_values {
            return Err(E::custom(too_many(self.limits.max_values)));
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Builder<'_> {
    type Value = Node;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Builder<'_> {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a table, a list, text, a number, a boolean or null")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(self.node(Value::Bool(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(self.node(Value::Int(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(self.node(i64::try_from(v).map_or(Value::UInt(v), Value::Int)))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Node, E> {
        match (i64::try_from(v), u64::try_from(v)) {
            (Ok(i), _) => Ok(self.node(Value::Int(i))),
            (_, Ok(u)) => Ok(self.node(Value::UInt(u))),
            _ => Err(E::custom(format!("integer {v} is out of range"))),
        }
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Node, E> {
        match u64::try_from(v) {
            Ok(u) => self.visit_u64(u),
            Err(_) => Err(E::custom(format!("integer {v} is out of range"))),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Ok(self.node(Value::Float(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(self.node(Value::Str {
            value: v.to_owned(),
            text: false,
        }))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(self.node(Value::Str {
            value: v,
            text: false,
        }))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(self.node(Value::Null))
    }

    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(self.node(Value::Null))
    }

    fn visit_some<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_newtype_struct<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Node, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        self.enter()?;
        let mut items = Vec::new();
        loop {
            self.counted()?;
            match seq.next_element_seed(self.child())? {
                Some(item) => items.push(item),
                None => {
                    // The count was taken for an element that was not there.
                    self.count.set(self.count.get() - 1);
                    break;
                }
            }
        }
        Ok(self.node(Value::List(items)))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        self.enter()?;
        let mut out = BTreeMap::new();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            self.counted()?;
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key `{key}`")));
            }
            let value = map.next_value_seed(self.child())?;
            out.insert(key, value);
        }
        Ok(self.node(Value::Map(out)))
    }
}

/// A map key: text, or a number or boolean written as a key (YAML `8080: x`).
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = String;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Visitor<'_> for KeySeed {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key written as text, a number or a boolean")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Result<Node, ParseError> {
        parse(Path::new("f.yaml"), text, Format::Yaml, &Limits::default())
    }

    fn json(text: &str) -> Result<Node, ParseError> {
        parse(Path::new("f.json"), text, Format::Json, &Limits::default())
    }

    /// Six levels of ten aliases: a million leaves from 300 bytes.
    fn alias_bomb(levels: usize) -> String {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..=levels {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        text
    }

    #[test]
    fn an_alias_bomb_is_refused_at_once() {
        for levels in [6, 8] {
            let started = std::time::Instant::now();
            let e = yaml(&alias_bomb(levels)).unwrap_err();
            assert!(
                started.elapsed() < std::time::Duration::from_millis(500),
                "{levels} levels took {:?}",
                started.elapsed()
            );
            assert!(e.message.starts_with("invalid YAML"), "{e:?}");
            assert!(e.line.is_some(), "{e:?}");
        }
        // A few aliases, as people use them, are fine.
        let node = yaml("base: &b {retries: 3}\nother: *b\n").unwrap();
        assert!(matches!(node.value, Value::Map(m) if m.len() == 2));
    }

    #[test]
    fn yaml_and_json_errors_carry_line_and_column() {
        let e = yaml("db:\n  host: [unclosed\n").unwrap_err();
        assert!(e.line.is_some() && e.column.is_some(), "{e:?}");
        assert!(e.message.starts_with("invalid YAML"), "{e:?}");
        let e = json("{\n  \"db\": {\"host\": }\n}").unwrap_err();
        assert_eq!((e.line, e.column), (Some(2), Some(18)), "{e:?}");
        assert!(!e.message.contains("at line"), "{e:?}");
        let e = json("{\"a\": 1, \"a\": 2}").unwrap_err();
        assert!(e.message.contains("duplicate key `a`"), "{e:?}");
    }

    #[test]
    fn depth_and_value_count_are_bounded_in_every_format() {
        let limits = Limits {
            max_depth: 8,
            max_values: 50,
            ..Limits::default()
        };
        let deep_json = format!("{{\"a\": {}1{}}}", "[".repeat(20), "]".repeat(20));
        let deep_yaml = format!("a: {}1{}\n", "[".repeat(20), "]".repeat(20));
        let deep_toml = format!("a = {}1{}\n", "[".repeat(20), "]".repeat(20));
        let wide: Vec<String> = (0..60).map(|i| format!("k{i} = {i}")).collect();
        let wide_toml = wide.join("\n");
        let wide_json = format!(
            "{{{}}}",
            (0..60)
                .map(|i| format!("\"k{i}\": {i}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        for (text, format, wanted) in [
            (deep_json.as_str(), Format::Json, "deeper than 8"),
            (deep_yaml.as_str(), Format::Yaml, "deeper than 8"),
            (deep_toml.as_str(), Format::Toml, "deeper than 8"),
            (wide_toml.as_str(), Format::Toml, "more than 50 values"),
            (wide_json.as_str(), Format::Json, "more than 50 values"),
        ] {
            let e = parse(Path::new("f"), text, format, &limits).unwrap_err();
            assert!(e.message.contains(wanted), "{format:?}: {e:?}");
        }
    }

    #[test]
    fn values_keep_their_types() {
        let node = yaml("a: 1\nb: 1.5\nc: text\nd: true\ne: ~\nf: 18446744073709551615\n8080: x\n")
            .unwrap();
        let Value::Map(map) = node.value else {
            panic!("a map")
        };
        assert_eq!(map["a"].value, Value::Int(1));
        assert_eq!(map["b"].value, Value::Float(1.5));
        assert_eq!(map["d"].value, Value::Bool(true));
        assert_eq!(map["e"].value, Value::Null);
        assert_eq!(map["f"].value, Value::UInt(u64::MAX));
        assert!(map.contains_key("8080"));
        let e = yaml("- 1\n- 2\n").unwrap_err();
        assert!(e.message.contains("top level"), "{e:?}");
        assert!(yaml("# only a comment\n").is_ok());
    }
}
