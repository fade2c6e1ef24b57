//! What keys exist: a navigator over the JSON schema of the settings type.
//!
//! The schema (derived by `schemars` from the same types serde reads) lets
//! the loader map environment variables onto real keys whatever their case,
//! suggest the nearest valid key for a typo, and attach field doc comments
//! to the printed defaults.

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use serde_json::Value as Json;

/// The schema of a settings type, with `$ref`s resolved on the fly.
#[derive(Debug, Clone)]
pub(crate) struct Schema {
    root: Json,
}

/// One place in the schema: the schema as written at that place (which holds
/// the field's own doc comment) and its referenced definition, if any.
#[derive(Debug, Clone, Copy)]
pub(crate) struct At<'a> {
    local: &'a Json,
}

impl Schema {
    /// The schema of `T`, generated once per type and process (reloads reuse it).
    pub(crate) fn of<T: schemars::JsonSchema + 'static>() -> Arc<Schema> {
        static CACHE: OnceLock<Mutex<HashMap<TypeId, Arc<Schema>>>> = OnceLock::new();
        let cache = CACHE.get_or_init(Default::default);
        let mut cache = cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache
            .entry(TypeId::of::<T>())
            .or_insert_with(|| {
                let schema = schemars::generate::SchemaSettings::draft2020_12()
                    .into_generator()
                    .into_root_schema_for::<T>();
                Arc::new(Schema {
                    root: schema.to_value(),
                })
            })
            .clone()
    }

    /// The schema document of `T`, as [`Schema::of`] holds it.
    pub(crate) fn json_of<T: schemars::JsonSchema + 'static>() -> Json {
        Schema::of::<T>().root.clone()
    }

    /// This schema with each section's schema under its key: the section's
    /// definitions are renamed `<key>::<name>` (and its references with
    /// them), so two crates' types of one name do not collide.
    pub(crate) fn with_sections(&self, sections: &[(&str, Json)]) -> Schema {
        let mut root = self.root.clone();
        for (key, section) in sections {
            let mut section = section.clone();
            rename_refs(&mut section, key);
            let defs = section
                .as_object_mut()
                .and_then(|m| m.remove("$defs"))
                .and_then(|d| match d {
                    Json::Object(defs) => Some(defs),
                    _ => None,
                });
            if let Some(map) = section.as_object_mut() {
                map.remove("$schema");
            }
            let Json::Object(root_map) = &mut root else {
                break;
            };
            if let Some(defs) = defs {
                let all = root_map
                    .entry("$defs")
                    .or_insert_with(|| Json::Object(Default::default()));
                if let Json::Object(all) = all {
                    for (name, def) in defs {
                        all.insert(format!("{key}::{name}"), def);
                    }
                }
            }
            let properties = root_map
                .entry("properties")
                .or_insert_with(|| Json::Object(Default::default()));
            if let Json::Object(properties) = properties {
                properties.insert((*key).to_owned(), section);
            }
        }
        Schema { root }
    }

    /// True when the schema's root declares `key`.
    pub(crate) fn declares(&self, key: &str) -> bool {
        self.branches(self.root())
            .iter()
            .any(|b| b.get("properties").and_then(|p| p.get(key)).is_some())
    }

    pub(crate) fn root(&self) -> At<'_> {
        At { local: &self.root }
    }

    fn resolve<'a>(&'a self, mut schema: &'a Json) -> &'a Json {
        // Bounded: a self-referencing definition must not loop forever.
        for _ in 0..32 {
            let Some(reference) = schema.get("$ref").and_then(Json::as_str) else {
                break;
            };
            let Some(target) = reference
                .strip_prefix("#/$defs/")
                .and_then(|name| self.root.get("$defs")?.get(name))
            else {
                break;
            };
            schema = target;
        }
        schema
    }

    /// The schema and the branches of `anyOf`/`oneOf`/`allOf` that can hold
    /// keys (Option<Struct>, flattened fields, enums with struct variants).
    fn branches<'a>(&'a self, at: At<'a>) -> Vec<&'a Json> {
        let mut out = Vec::new();
        let mut stack = vec![self.resolve(at.local)];
        while let Some(schema) = stack.pop() {
            if out.len() > 64 {
                break;
            }
            out.push(schema);
            for combinator in ["anyOf", "oneOf", "allOf"] {
                if let Some(items) = schema.get(combinator).and_then(Json::as_array) {
                    stack.extend(items.iter().map(|s| self.resolve(s)));
                }
            }
        }
        out
    }

    /// The child named exactly `key`: a declared property, a map entry, or a
    /// list item (any numeric key).
    pub(crate) fn child<'a>(&'a self, at: At<'a>, key: &str) -> Option<At<'a>> {
        let branches = self.branches(at);
        for b in &branches {
            if let Some(p) = b.get("properties").and_then(|p| p.get(key)) {
                return Some(At { local: p });
            }
        }
        for b in &branches {
            if let Some(extra) = b.get("additionalProperties").filter(|v| v.is_object()) {
                return Some(At { local: extra });
            }
            if key.parse::<usize>().is_ok()
                && let Some(items) = b.get("items").filter(|v| v.is_object())
            {
                return Some(At { local: items });
            }
        }
        None
    }

    /// Like [`Schema::child`], but matching `segment` the way environment
    /// variables are written: case-insensitive, `_` and `-` ignored. Map keys
    /// (not declared in the schema) are lowercased.
    pub(crate) fn child_loose<'a>(&'a self, at: At<'a>, segment: &str) -> Option<(String, At<'a>)> {
        let wanted = normalize(segment);
        let branches = self.branches(at);
        for b in &branches {
            if let Some(props) = b.get("properties").and_then(Json::as_object)
                && let Some((name, schema)) =
                    props.iter().find(|(name, _)| normalize(name) == wanted)
            {
                return Some((name.clone(), At { local: schema }));
            }
        }
        for b in &branches {
            if let Some(extra) = b.get("additionalProperties").filter(|v| v.is_object()) {
                return Some((segment.to_ascii_lowercase(), At { local: extra }));
            }
        }
        None
    }

    /// Declared keys at this place, for suggestions.
    pub(crate) fn keys<'a>(&'a self, at: At<'a>) -> Vec<&'a str> {
        let mut keys: Vec<&str> = self
            .branches(at)
            .iter()
            .filter_map(|b| b.get("properties").and_then(Json::as_object))
            .flat_map(|props| props.keys().map(String::as_str))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    /// True when this place accepts free-form keys (a map or `serde_json::Value`).
    pub(crate) fn is_open(&self, at: At<'_>) -> bool {
        self.branches(at).iter().any(|b| {
            b.get("additionalProperties")
                .is_some_and(|v| v.is_object() || v == true)
                || b.as_bool() == Some(true)
                || (b.get("type").is_none()
                    && b.get("properties").is_none()
                    && b.get("anyOf").is_none()
                    && b.get("oneOf").is_none()
                    && b.get("allOf").is_none()
                    && b.get("enum").is_none()
                    && b.get("const").is_none()
                    && b.get("$ref").is_none())
        })
    }

    /// For a map of structs (`http.clients`), one entry with every key at
    /// its default, from the `default` values schemars records for types
    /// with `#[serde(default)]`; `None` for other places.
    pub(crate) fn example_entry(&self, at: At<'_>) -> Option<Json> {
        let entry = self
            .branches(at)
            .into_iter()
            .find_map(|b| b.get("additionalProperties").filter(|v| v.is_object()))?;
        let example = self.defaults_of(entry, 0)?;
        example
            .as_object()
            .is_some_and(|m| !m.is_empty())
            .then_some(example)
    }

    fn defaults_of(&self, schema: &Json, depth: usize) -> Option<Json> {
        if depth > 16 {
            return None;
        }
        if let Some(default) = schema.get("default") {
            return Some(default.clone());
        }
        let resolved = self.resolve(schema);
        if let Some(default) = resolved.get("default") {
            return Some(default.clone());
        }
        let props = resolved.get("properties")?.as_object()?;
        let mut out = serde_json::Map::new();
        for (key, prop) in props {
            out.insert(
                key.clone(),
                self.defaults_of(prop, depth + 1).unwrap_or(Json::Null),
            );
        }
        Some(Json::Object(out))
    }

    /// The doc comment for this place: the field's own, else its type's.
    pub(crate) fn description<'a>(&'a self, at: At<'a>) -> Option<&'a str> {
        at.local
            .get("description")
            .and_then(Json::as_str)
            .or_else(|| {
                self.resolve(at.local)
                    .get("description")
                    .and_then(Json::as_str)
            })
    }

    /// Walks a dotted path with exact keys.
    pub(crate) fn at_path<'a>(&'a self, path: &str) -> Option<At<'a>> {
        let mut at = self.root();
        if path.is_empty() {
            return Some(at);
        }
        for segment in path.split('.') {
            at = self.child(at, segment)?;
        }
        Some(at)
    }

    /// The declared key nearest to `key` at `parent_path`, if one is close enough
    /// to be a likely typo.
    pub(crate) fn suggest(&self, parent_path: &str, key: &str) -> Option<String> {
        let at = self.at_path(parent_path)?;
        let wanted = normalize(key);
        self.keys(at)
            .into_iter()
            .map(|k| (edit_distance(&wanted, &normalize(k)), k))
            .filter(|(d, k)| *d <= (k.len() / 3).max(2))
            .min()
            .map(|(_, k)| crate::tree::join(parent_path, k))
    }
}

/// Points a section's `$ref`s at its renamed definitions (bounded depth:
/// schemars documents are shallow, a deeper one is left as it is).
fn rename_refs(schema: &mut Json, key: &str) {
    fn walk(node: &mut Json, key: &str, depth: usize) {
        if depth > 64 {
            return;
        }
        match node {
            Json::Object(map) => {
                for (name, value) in map.iter_mut() {
                    if name == "$ref"
                        && let Json::String(reference) = value
                        && let Some(def) = reference.strip_prefix("#/$defs/")
                    {
                        *reference = format!("#/$defs/{key}::{def}");
                    } else {
                        walk(value, key, depth + 1);
                    }
                }
            }
            Json::Array(items) => items.iter_mut().for_each(|v| walk(v, key, depth + 1)),
            _ => {}
        }
    }
    walk(schema, key, 0);
}

pub(crate) fn normalize(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '_' && *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Levenshtein distance, for "did you mean".
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == *cb {
                diagonal
            } else {
                1 + diagonal.min(above).min(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(schemars::JsonSchema, serde::Deserialize)]
    #[allow(dead_code)]
    struct Root {
        /// The database.
        db: Db,
        clients: BTreeMap<String, Db>,
        maybe: Option<Db>,
    }

    #[derive(schemars::JsonSchema, serde::Deserialize)]
    #[allow(dead_code)]
    #[serde(rename_all = "camelCase")]
    struct Db {
        /// Pool size.
        pool_size: u32,
        camel_field: String,
    }

    #[test]
    fn navigates_properties_maps_and_options() {
        let s = Schema::of::<Root>();
        assert!(s.at_path("db.poolSize").is_some());
        assert!(s.at_path("clients.anything.camelField").is_some());
        assert!(s.at_path("maybe.poolSize").is_some());
        assert!(s.at_path("db.nope").is_none());
        assert_eq!(
            s.description(s.at_path("db").unwrap()),
            Some("The database.")
        );
        assert_eq!(
            s.description(s.at_path("db.poolSize").unwrap()),
            Some("Pool size.")
        );
        let (name, _) = s
            .child_loose(s.at_path("db").unwrap(), "CAMEL_FIELD")
            .unwrap();
        assert_eq!(name, "camelField");
        let (name, _) = s
            .child_loose(s.at_path("clients").unwrap(), "INVENTORY")
            .unwrap();
        assert_eq!(name, "inventory");
        assert_eq!(s.suggest("db", "pool_sise").as_deref(), Some("db.poolSize"));
        assert_eq!(s.suggest("db", "zzzzzzzz"), None);
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }
}
