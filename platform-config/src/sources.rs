//! Reading each layer into a tree: files, environment, overrides.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::origin::Origin;
use crate::report::{Problem, Report};
use crate::schema::{At, Schema};
use crate::tree::{Node, Value, join};

/// File extensions tried for each layer, in this order.
pub(crate) const EXTENSIONS: [&str; 4] = ["toml", "yaml", "yml", "json"];

/// Finds `<dir>/<stem>.<ext>`. More than one match is an error (which would win?).
pub(crate) fn find_layer_file(dir: &Path, stem: &str, report: &mut Report) -> Option<PathBuf> {
    let found: Vec<PathBuf> = EXTENSIONS
        .iter()
        .map(|ext| dir.join(format!("{stem}.{ext}")))
        .filter(|p| p.exists())
        .collect();
    if found.len() > 1 {
        report.push(Problem::Source {
            path: dir.to_owned(),
            line: None,
            message: format!(
                "more than one `{stem}` file ({}); keep one",
                found
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
        return None;
    }
    found.into_iter().next()
}

/// Reads and parses one config file into a tree. Problems go to `report`.
pub(crate) fn read_file(path: &Path, schema: &Schema, report: &mut Report) -> Option<Node> {
    let source_problem = |line, message: String| Problem::Source {
        path: path.to_owned(),
        line,
        message,
    };
    if path.is_dir() {
        report.push(source_problem(
            None,
            "is a directory, expected a config file".into(),
        ));
        return None;
    }
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            report.push(source_problem(None, format!("cannot read: {e}")));
            return None;
        }
    };
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let offset = e.utf8_error().valid_up_to();
            let line = line_of(e.as_bytes(), offset);
            report.push(source_problem(
                Some(line),
                format!("not valid UTF-8 (byte {offset})"),
            ));
            return None;
        }
    };
    if text.trim().is_empty() {
        // A truncated write looks like this; a file with only comments is fine.
        report.push(source_problem(
            None,
            "file is empty; remove it or add settings (a file of only comments is fine)".into(),
        ));
        return None;
    }
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let mut node = match ext {
        "toml" => parse_toml(path, &text, report)?,
        "yaml" | "yml" => parse_other(path, &text, config::FileFormat::Yaml, report)?,
        "json" => parse_other(path, &text, config::FileFormat::Json, report)?,
        _ => {
            report.push(source_problem(
                None,
                "unknown file type; use .toml, .yaml, .yml or .json".into(),
            ));
            return None;
        }
    };
    resolve_file_refs(&mut node, schema, schema.root(), "", report);
    Some(node)
}

fn line_of(bytes: &[u8], offset: usize) -> usize {
    1 + bytes[..offset.min(bytes.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
}

fn parse_toml(path: &Path, text: &str, report: &mut Report) -> Option<Node> {
    let values: toml::Table = match toml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            report.push(Problem::Source {
                path: path.to_owned(),
                line: e.span().map(|s| line_of(text.as_bytes(), s.start)),
                message: format!("invalid TOML: {}", e.message().trim()),
            });
            return None;
        }
    };
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
    Some(node)
}

fn parse_other(
    path: &Path,
    text: &str,
    format: config::FileFormat,
    report: &mut Report,
) -> Option<Node> {
    use config::Source;
    let parsed = config::File::from_str(text, format).collect();
    let map = match parsed {
        Ok(map) => map,
        Err(e) => {
            report.push(Problem::Source {
                path: path.to_owned(),
                line: None,
                message: format!("invalid {format:?}: {e}"),
            });
            return None;
        }
    };
    let origin = Origin::File {
        path: path.to_owned(),
        line: None,
    };
    fn convert(value: &config::Value, origin: &Origin) -> Node {
        use config::ValueKind as K;
        let v = match &value.kind {
            K::Nil => Value::Null,
            K::Boolean(b) => Value::Bool(*b),
            K::I64(i) => Value::Int(*i),
            K::U64(u) => Value::UInt(*u),
            K::I128(i) => i64::try_from(*i)
                .map(Value::Int)
                .unwrap_or(Value::Float(*i as f64)),
            K::U128(u) => u64::try_from(*u)
                .map(Value::UInt)
                .unwrap_or(Value::Float(*u as f64)),
            K::Float(f) => Value::Float(*f),
            K::String(s) => Value::Str {
                value: s.clone(),
                text: false,
            },
            K::Array(items) => Value::List(items.iter().map(|i| convert(i, origin)).collect()),
            K::Table(t) => Value::Map(
                t.iter()
                    .map(|(k, v)| (k.clone(), convert(v, origin)))
                    .collect(),
            ),
        };
        Node::new(v, origin.clone())
    }
    Some(Node::new(
        Value::Map(
            map.iter()
                .map(|(k, v)| (k.clone(), convert(v, &origin)))
                .collect(),
        ),
        origin.clone(),
    ))
}

/// Replaces `<key>_file = "/path"` by the file's content under `<key>`, where
/// the schema knows `<key>` but not `<key>_file` (mounted secrets).
fn resolve_file_refs(
    node: &mut Node,
    schema: &Schema,
    at: At<'_>,
    path: &str,
    report: &mut Report,
) {
    let Value::Map(map) = &mut node.value else {
        return;
    };
    let keys: Vec<String> = map.keys().cloned().collect();
    for key in keys {
        if let Some(child_at) = schema.child(at, &key) {
            if let Some(child) = map.get_mut(&key) {
                resolve_file_refs(child, schema, child_at, &join(path, &key), report);
            }
            continue;
        }
        let Some(stem) = key
            .strip_suffix("_file")
            .or_else(|| key.strip_suffix("File"))
        else {
            continue;
        };
        if schema.child(at, stem).is_none() {
            continue;
        }
        let Some(reference) = map.remove(&key) else {
            continue;
        };
        let Value::Str { value: file, .. } = &reference.value else {
            report.push(Problem::InvalidValue {
                key: join(path, &key),
                origin: reference.origin.clone(),
                message: "expected the path of a file holding the value".into(),
            });
            continue;
        };
        if let Some(secret) = read_secret_file(
            Path::new(file),
            &reference.origin,
            &join(path, &key),
            report,
        ) {
            map.insert(stem.to_owned(), secret);
        }
    }
}

fn read_secret_file(
    file: &Path,
    named_by: &Origin,
    key: &str,
    report: &mut Report,
) -> Option<Node> {
    match std::fs::read_to_string(file) {
        Ok(content) => Some(Node::text(
            content.trim_end_matches(['\n', '\r']),
            Origin::SecretFile {
                path: file.to_owned(),
                named_by: Box::new(named_by.clone()),
            },
        )),
        Err(e) => {
            report.push(Problem::Input {
                origin: named_by.clone(),
                message: format!(
                    "`{key}` names file {} which cannot be read: {e}",
                    file.display()
                ),
            });
            None
        }
    }
}

/// Maps `<PREFIX>__SECTION__KEY=value` variables onto the schema's keys.
pub(crate) fn env_layer(
    vars: &[(String, String)],
    prefix: &str,
    schema: &Schema,
    report: &mut Report,
) -> Node {
    let mut layer = Node::empty_map(Origin::Default);
    let lead = format!("{prefix}__");
    let all_vars = vars;
    let mut vars: Vec<&(String, String)> = all_vars
        .iter()
        .filter(|(name, _)| {
            name.len() > lead.len() && name[..lead.len()].eq_ignore_ascii_case(&lead)
        })
        .collect();
    vars.sort();
    // `APP_DB__HOST` is a near miss of `APP__DB__HOST`: say so rather than ignore it.
    let near = format!("{prefix}_");
    for (name, _) in all_vars {
        if name.len() > near.len()
            && name[..near.len()].eq_ignore_ascii_case(&near)
            && !name[..lead.len().min(name.len())].eq_ignore_ascii_case(&lead)
            && name.contains("__")
        {
            report.push(Problem::Input {
                origin: Origin::Env { var: name.clone() },
                message: format!(
                    "looks like a setting but does not start with `{lead}`; write `{lead}{}`",
                    &name[near.len()..]
                ),
            });
        }
    }
    for (name, value) in vars {
        let origin = Origin::Env { var: name.clone() };
        let segments: Vec<&str> = name[lead.len()..].split("__").collect();
        match map_segments(schema, &segments, true) {
            Mapped::Key(path) => layer.insert_path(&path, Node::text(value, origin)),
            Mapped::FileRef(path) => {
                if let Some(node) =
                    read_secret_file(Path::new(value), &origin, &path.join("."), report)
                {
                    layer.insert_path(&path, node);
                }
            }
            Mapped::Unknown { key, parent } => report.push(Problem::UnknownKey {
                suggestion: schema.suggest(&parent, key.rsplit('.').next().unwrap_or(&key)),
                key,
                origin,
            }),
        }
    }
    layer
}

enum Mapped {
    Key(Vec<String>),
    FileRef(Vec<String>),
    Unknown { key: String, parent: String },
}

/// Walks key segments through the schema. `loose` matches env-style names.
fn map_segments(schema: &Schema, segments: &[&str], loose: bool) -> Mapped {
    let mut at = schema.root();
    let mut path: Vec<String> = Vec::new();
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        // Env names are matched loosely (any case, `_` ignored); `--set` keys
        // exactly first, so a map key keeps the case it was given in.
        let found = if loose {
            schema.child_loose(at, segment)
        } else {
            schema
                .child(at, segment)
                .map(|a| (segment.to_string(), a))
                .or_else(|| schema.child_loose(at, segment))
        };
        match found {
            Some((name, child)) if !segment.is_empty() => {
                path.push(name);
                at = child;
            }
            _ if !segment.is_empty() && schema.is_open(at) => {
                // Free-form value (a map of arbitrary data): keep the rest as given.
                path.extend(segments[i..].iter().map(|s| s.to_ascii_lowercase()));
                return Mapped::Key(path);
            }
            _ => {
                if last
                    && let Some(stem) = strip_file_suffix(segment)
                    && let Some((name, _)) = schema.child_loose(at, stem)
                {
                    path.push(name);
                    return Mapped::FileRef(path);
                }
                let parent = path.join(".");
                return Mapped::Unknown {
                    key: join(&parent, &segment.to_ascii_lowercase()),
                    parent,
                };
            }
        }
    }
    Mapped::Key(path)
}

fn strip_file_suffix(segment: &str) -> Option<&str> {
    let n = segment.len();
    (n > 5 && segment[n - 5..].eq_ignore_ascii_case("_file")).then(|| &segment[..n - 5])
}

/// Applies `key.path=value` overrides (from `--set` or code).
pub(crate) fn override_layer(
    overrides: &[(String, String, Origin)],
    schema: &Schema,
    report: &mut Report,
) -> Node {
    let mut layer = Node::empty_map(Origin::Default);
    for (key, value, origin) in overrides {
        let segments: Vec<&str> = key.trim().split('.').collect();
        match map_segments(schema, &segments, false) {
            Mapped::Key(path) => layer.insert_path(&path, Node::text(value, origin.clone())),
            Mapped::FileRef(path) => {
                if let Some(node) =
                    read_secret_file(Path::new(value), origin, &path.join("."), report)
                {
                    layer.insert_path(&path, node);
                }
            }
            Mapped::Unknown { key, parent } => report.push(Problem::UnknownKey {
                suggestion: schema.suggest(&parent, key.rsplit('.').next().unwrap_or(&key)),
                key,
                origin: origin.clone(),
            }),
        }
    }
    layer
}

/// Splits `key.path=value` as given to `--set`.
pub(crate) fn parse_set_arg(arg: &str) -> Result<(String, String), Problem> {
    match arg.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.to_owned()))
        }
        _ => Err(Problem::Input {
            origin: Origin::CommandLine {
                key: arg.split('=').next().unwrap_or(arg).to_owned(),
            },
            message: format!(
                "expected key.path=value, got {:?}",
                arg.split('=').next().unwrap_or(arg)
            ),
        }),
    }
}
