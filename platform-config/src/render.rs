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
    table(
        &mut out,
        &json,
        "",
        &|key, _| Some(format!("{}", origin_of(key))),
        &|_| None,
    );
    out
}

/// The defaults as a documented config file.
pub(crate) fn defaults<T: Serialize + Default + schemars::JsonSchema + 'static>() -> String {
    let schema = Schema::of::<T>();
    let json = to_json(&T::default());
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
    table(&mut out, &json, "", &|_, _| None, &describe);
    out
}

fn to_json<T: Serialize>(value: &T) -> Json {
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

fn table(
    out: &mut String,
    json: &Json,
    path: &str,
    trailer: &dyn Fn(&str, &Json) -> Option<String>,
    describe: &dyn Fn(&str) -> Option<String>,
) {
    let Json::Object(map) = json else { return };
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
        let header: Vec<String> = key_path.split('.').map(bare_or_quoted).collect();
        let _ = writeln!(out, "[{}]", header.join("."));
        table(out, value, &key_path, trailer, describe);
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
