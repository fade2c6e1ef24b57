//! Reading each layer into a tree: files, environment, overrides.

use std::path::{Path, PathBuf};

use crate::files;
use crate::limits::Limits;
use crate::origin::Origin;
use crate::parse::{self, Format};
use crate::report::{Problem, Report};
use crate::schema::{At, Schema};
use crate::tree::{Node, Value, join};

/// File extensions tried for each layer, in this order.
pub(crate) const EXTENSIONS: [&str; 4] = ["toml", "yaml", "yml", "json"];

/// Finds `<dir>/<stem>.<ext>`. More than one match is an error (which would win?).
/// A dangling or looping symlink counts as a file: reading it then says what is wrong.
pub(crate) fn find_layer_file(dir: &Path, stem: &str, report: &mut Report) -> Option<PathBuf> {
    let found: Vec<PathBuf> = EXTENSIONS
        .iter()
        .map(|ext| dir.join(format!("{stem}.{ext}")))
        .filter(|p| files::is_present(p))
        .collect();
    if found.len() > 1 {
        report.push(Problem::Source {
            path: dir.to_owned(),
            line: None,
            column: None,
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
pub(crate) fn read_file(
    path: &Path,
    schema: &Schema,
    limits: &Limits,
    report: &mut Report,
) -> Option<Node> {
    let source_problem = |line, column, message: String| Problem::Source {
        path: path.to_owned(),
        line,
        column,
        message,
    };
    let Some(format) = Format::of(path) else {
        report.push(source_problem(
            None,
            None,
            "unknown file type; use .toml, .yaml, .yml or .json".into(),
        ));
        return None;
    };
    let bytes = match files::read_bounded(path, limits.max_file_size) {
        Ok(b) => b,
        Err(message) => {
            report.push(source_problem(None, None, message));
            return None;
        }
    };
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let offset = e.utf8_error().valid_up_to();
            let line = parse::line_of(e.as_bytes(), offset);
            report.push(source_problem(
                Some(line),
                None,
                format!("not valid UTF-8 (byte {offset})"),
            ));
            return None;
        }
    };
    if text.trim().is_empty() {
        // A truncated write looks like this; a file with only comments is fine.
        report.push(source_problem(
            None,
            None,
            "file is empty; remove it or add settings (a file of only comments is fine)".into(),
        ));
        return None;
    }
    let mut node = match parse::parse(path, &text, format, limits) {
        Ok(node) => node,
        Err(e) => {
            report.push(source_problem(e.line, e.column, e.message));
            return None;
        }
    };
    resolve_file_refs(&mut node, schema, schema.root(), "", limits, report);
    Some(node)
}

/// Replaces `<key>_file = "/path"` by the file's content under `<key>`, where
/// the schema knows `<key>` but not `<key>_file` (mounted secrets).
fn resolve_file_refs(
    node: &mut Node,
    schema: &Schema,
    at: At<'_>,
    path: &str,
    limits: &Limits,
    report: &mut Report,
) {
    let Value::Map(map) = &mut node.value else {
        return;
    };
    let keys: Vec<String> = map.keys().cloned().collect();
    for key in keys {
        if let Some(child_at) = schema.child(at, &key) {
            if let Some(child) = map.get_mut(&key) {
                resolve_file_refs(child, schema, child_at, &join(path, &key), limits, report);
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
            limits,
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
    limits: &Limits,
    report: &mut Report,
) -> Option<Node> {
    let content = files::read_bounded(file, limits.max_file_size).and_then(|bytes| {
        String::from_utf8(bytes)
            .map_err(|e| format!("is not valid UTF-8 (byte {})", e.utf8_error().valid_up_to()))
    });
    match content {
        Ok(content) => Some(Node::text(
            content.trim_end_matches(['\n', '\r']),
            Origin::SecretFile {
                path: file.to_owned(),
                named_by: Box::new(named_by.clone()),
            },
        )),
        Err(why) => {
            report.push(Problem::Input {
                origin: named_by.clone(),
                message: format!("`{key}` names file {} which {why}", file.display()),
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
    limits: &Limits,
    report: &mut Report,
) -> Node {
    let mut layer = Node::empty_map(Origin::Default);
    let lead = format!("{prefix}__");
    let all_vars = vars;
    let mut vars: Vec<&(String, String)> = all_vars
        .iter()
        .filter(|(name, _)| name.len() > lead.len() && starts_with_ignore_case(name, &lead))
        .collect();
    vars.sort();
    // `APP_DB__HOST` is a near miss of `APP__DB__HOST`: say so rather than ignore it.
    let near = format!("{prefix}_");
    for (name, _) in all_vars {
        if name.len() > near.len()
            && starts_with_ignore_case(name, &near)
            && !starts_with_ignore_case(name, &lead)
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
    let place = Placing { schema, limits };
    for (name, value) in vars {
        let origin = Origin::Env { var: name.clone() };
        let segments: Vec<&str> = name[lead.len()..].split("__").collect();
        let mapped = map_segments(schema, &segments, true);
        place.put(&mut layer, mapped, value, origin, report);
    }
    layer
}

/// Where a mapped key's value goes.
struct Placing<'a> {
    schema: &'a Schema,
    limits: &'a Limits,
}

impl Placing<'_> {
    /// Puts `value` at the key `mapped` names (read from a file for a
    /// `_FILE` key), or reports the unknown key with a suggestion.
    fn put(
        &self,
        layer: &mut Node,
        mapped: Mapped,
        value: &str,
        origin: Origin,
        report: &mut Report,
    ) {
        match mapped {
            Mapped::Key(path) => layer.insert_path(&path, Node::text(value, origin)),
            Mapped::FileRef(path) => {
                let file = Path::new(value);
                if let Some(node) =
                    read_secret_file(file, &origin, &path.join("."), self.limits, report)
                {
                    layer.insert_path(&path, node);
                }
            }
            Mapped::Unknown { key, parent } => report.push(Problem::UnknownKey {
                suggestion: self
                    .schema
                    .suggest(&parent, key.rsplit('.').next().unwrap_or(&key)),
                key,
                origin,
            }),
        }
    }
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
    // `get`, not indexing: the segment may end in any character.
    let n = segment.len().checked_sub(5).filter(|n| *n > 0)?;
    segment
        .get(n..)
        .filter(|suffix| suffix.eq_ignore_ascii_case("_file"))
        .and_then(|_| segment.get(..n))
}

/// `name` starts with the ASCII `prefix`, in any case (`name` may be any text).
fn starts_with_ignore_case(name: &str, prefix: &str) -> bool {
    name.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

/// Applies `key.path=value` overrides (from `--set` or code).
pub(crate) fn override_layer(
    overrides: &[(String, String, Origin)],
    schema: &Schema,
    limits: &Limits,
    report: &mut Report,
) -> Node {
    let mut layer = Node::empty_map(Origin::Default);
    let place = Placing { schema, limits };
    for (key, value, origin) in overrides {
        let segments: Vec<&str> = key.trim().split('.').collect();
        let mapped = map_segments(schema, &segments, false);
        place.put(&mut layer, mapped, value, origin.clone(), report);
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
