//! Printing configuration as TOML: the effective values with their sources,
//! or the defaults with the settings' doc comments.

use std::fmt::Write;

use serde::Serialize;
use serde_json::Value as Json;

use crate::origin::Origin;
use crate::schema::Schema;
use crate::tree::join;

/// The effective configuration, each value annotated with its origin.
pub(crate) fn effective<T: Serialize>(value: &T, origin_of: &dyn Fn(&str) -> Origin) -> String {
    let json = to_json(value);
    let mut out =
        String::from("# Effective configuration; each value is followed by its source.\n");
    let hooks = Hooks {
        trailer: &|key, _| Some(format!("{}", origin_of(key))),
        describe: &|_| None,
        example: &|_| None,
    };
    table(&mut out, &json, "", &hooks);
    out
}

/// What a rendering adds around the values.
struct Hooks<'a> {
    /// A comment after a value (its origin).
    trailer: &'a dyn Fn(&str, &Json) -> Option<String>,
    /// The doc comment before a key.
    describe: &'a dyn Fn(&str) -> Option<String>,
    /// For an empty map of tables, an entry to show commented out.
    example: &'a dyn Fn(&str) -> Option<Json>,
}

/// The map key shown in a commented example entry.
const EXAMPLE_KEY: &str = "<name>";

/// The defaults as a documented config file.
pub(crate) fn defaults(schema: &Schema, json: &Json) -> String {
    let mut out = String::from(
        "# Default configuration: every setting with its built-in value.\n\
         # Copy what you change into config/default.toml or a profile file.\n",
    );
    let describe = |key: &str| {
        schema
            .at_path(key)
            .and_then(|at| schema.description(at))
            .map(str::to_owned)
    };
    let example = |key: &str| schema.at_path(key).and_then(|at| schema.example_entry(at));
    let hooks = Hooks {
        trailer: &|_, _| None,
        describe: &describe,
        example: &example,
    };
    table(&mut out, json, "", &hooks);
    out
}

pub(crate) fn to_json<T: Serialize>(value: &T) -> Json {
    serde_json::to_value(value).unwrap_or_else(|e| Json::String(format!("<cannot be shown: {e}>")))
}

fn comment_lines(out: &mut String, text: &str) {
    for line in text.lines() {
        if line.trim().is_empty() {
            out.push_str("#\n");
        } else {
            let _ = writeln!(out, "# {}", line.trim_end());
        }
    }
}

fn table(out: &mut String, json: &Json, path: &str, hooks: &Hooks<'_>) {
    let Json::Object(map) = json else { return };
    let Hooks {
        trailer, describe, ..
    } = hooks;
    // Plain values first, then sub-tables: TOML requires that order.
    for (key, value) in map.iter().filter(|(_, v)| !v.is_object()) {
        let key_path = join(path, key);
        if let Some(doc) = describe(&key_path) {
            comment_lines(out, &doc);
        }
        if value.is_null() {
            let _ = writeln!(out, "# {} is not set", bare_or_quoted(key));
            continue;
        }
        let _ = write!(out, "{} = {}", bare_or_quoted(key), inline(value));
        match trailer(&key_path, value) {
            Some(t) => {
                let _ = writeln!(out, "  # {t}");
            }
            None => out.push('\n'),
        }
    }
    for (key, value) in map.iter().filter(|(_, v)| v.is_object()) {
        let key_path = join(path, key);
        out.push('\n');
        if let Some(doc) = describe(&key_path) {
            comment_lines(out, &doc);
        }
        let _ = writeln!(out, "[{}]", header(&key_path));
        table(out, value, &key_path, hooks);
        if value.as_object().is_some_and(|m| m.is_empty()) {
            example_entry(out, &key_path, hooks);
        }
    }
}

fn header(key_path: &str) -> String {
    let parts: Vec<String> = key_path
        .split('.')
        .map(|k| {
            if k == EXAMPLE_KEY {
                k.to_owned()
            } else {
                bare_or_quoted(k)
            }
        })
        .collect();
    parts.join(".")
}

/// An empty map of tables (no entry by default) shown with one entry,
/// commented out, so that its keys and defaults are documented too.
fn example_entry(out: &mut String, map_path: &str, hooks: &Hooks<'_>) {
    let Some(example) = (hooks.example)(map_path) else {
        return;
    };
    let entry_path = join(map_path, EXAMPLE_KEY);
    let mut entry = String::new();
    let _ = writeln!(entry, "[{}]", header(&entry_path));
    table(&mut entry, &example, &entry_path, hooks);
    let _ = writeln!(
        out,
        "\n# One entry per name; each key with its default (uncomment what you set):"
    );
    for line in entry.lines() {
        if line.is_empty() {
            out.push_str("#\n");
        } else if line.starts_with('#') {
            let _ = writeln!(out, "#{line}");
        } else {
            let _ = writeln!(out, "# {line}");
        }
    }
}

fn bare_or_quoted(key: &str) -> String {
    if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        key.to_owned()
    } else {
        toml::Value::String(key.to_owned()).to_string()
    }
}

fn inline(value: &Json) -> String {
    match value {
        Json::Null => "\"\"".to_owned(),
        Json::Bool(b) => b.to_string(),
        Json::Number(n) => n.to_string(),
        Json::String(s) => toml::Value::String(s.clone()).to_string(),
        Json::Array(items) => format!(
            "[{}]",
            items.iter().map(inline).collect::<Vec<_>>().join(", ")
        ),
        Json::Object(map) => format!(
            "{{ {} }}",
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| format!("{} = {}", bare_or_quoted(k), inline(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}
