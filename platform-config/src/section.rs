//! Sections typed by a crate the root settings type cannot name.
//!
//! A library above the one that defines the root (platform-http above
//! platform-core) owns the schema of its own section (`http`). The loader
//! reads it from the same sources as the root, in the same pass: its keys
//! map from env vars and `--set`, a typo gets a suggestion, a bad value is
//! reported with its key and origin, `--print-defaults` documents it, and
//! `--check-config` and reloads refuse what start-up refuses.

use std::any::{Any, TypeId};
use std::sync::Arc;

use serde_json::Value as Json;

use crate::loader::Settings;
use crate::validate::Validation;

/// A settings type that is a section of its own under [`Section::KEY`],
/// added to a load with [`Loader::section`](crate::Loader::section).
///
/// ```
/// #[platform_config::settings]
/// struct Mail {
///     /// SMTP relay.
///     #[setting(default = "localhost:25")]
///     relay: String,
/// }
///
/// impl platform_config::Section for Mail {
///     const KEY: &'static str = "mail";
/// }
///
/// #[platform_config::settings]
/// struct App {
///     /// Who we are.
///     name: String,
/// }
///
/// let loaded = platform_config::Loader::new()
///     .env_vars([("APP__MAIL__RELAY", "smtp:587")])
///     .section::<Mail>()
///     .load::<App>()
///     .unwrap();
/// assert_eq!(loaded.section::<Mail>().unwrap().relay, "smtp:587");
/// ```
pub trait Section: Settings {
    /// The top-level key the section is read from.
    const KEY: &'static str;
}

/// Deserializes a section from its part of the tree (keys under the prefix),
/// reporting what is wrong.
type LoadFn = fn(
    &mut crate::tree::Node,
    &str,
    &crate::schema::Schema,
    &mut crate::report::Report,
) -> Option<Arc<dyn Any + Send + Sync>>;

/// What the loader knows of a registered section's type.
#[derive(Clone, Copy)]
pub(crate) struct SectionType {
    pub(crate) key: &'static str,
    pub(crate) type_id: TypeId,
    pub(crate) type_name: &'static str,
    pub(crate) schema: fn() -> Json,
    pub(crate) defaults: fn() -> Json,
    pub(crate) load: LoadFn,
    pub(crate) validate: fn(&dyn Any, &mut Validation),
    pub(crate) to_json: fn(&dyn Any) -> Json,
}

impl SectionType {
    pub(crate) fn of<X: Section>() -> Self {
        SectionType {
            key: X::KEY,
            type_id: TypeId::of::<X>(),
            type_name: std::any::type_name::<X>(),
            schema: crate::schema::Schema::json_of::<X>,
            defaults: || crate::render::to_json(&X::default()),
            load: |node, prefix, schema, report| {
                crate::loader::deserialize_all::<X>(node, prefix, schema, report)
                    .map(|value| Arc::new(value) as Arc<dyn Any + Send + Sync>)
            },
            validate: |value, v| {
                if let Some(value) = value.downcast_ref::<X>() {
                    value.validate(v);
                }
            },
            to_json: |value| {
                value
                    .downcast_ref::<X>()
                    .map_or(Json::Null, crate::render::to_json)
            },
        }
    }
}

/// A section as loaded.
#[derive(Clone)]
pub(crate) struct SectionValue {
    pub(crate) of: SectionType,
    pub(crate) value: Arc<dyn Any + Send + Sync>,
}

impl SectionValue {
    pub(crate) fn get<X: Send + Sync + 'static>(&self) -> Option<Arc<X>> {
        self.value.clone().downcast::<X>().ok()
    }

    pub(crate) fn json(&self) -> Json {
        (self.of.to_json)(&*self.value)
    }
}

/// The library sections of a loaded configuration ([`Loaded::sections`](crate::Loaded::sections)):
/// cheap to clone, for a holder that does not know the root type.
#[derive(Clone, Default)]
pub struct Sections(pub(crate) Arc<[SectionValue]>);

impl Sections {
    /// The section `X`, when it was loaded.
    pub fn get<X: Section>(&self) -> Option<Arc<X>> {
        self.0.iter().find_map(SectionValue::get::<X>)
    }
}

impl std::fmt::Debug for Sections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|s| s.of.key))
            .finish()
    }
}

/// `root`'s JSON with each section's value under its key.
pub(crate) fn with_sections(mut root: Json, sections: &[(&str, Json)]) -> Json {
    if let Json::Object(map) = &mut root {
        for (key, value) in sections {
            map.insert((*key).to_owned(), value.clone());
        }
    }
    root
}
