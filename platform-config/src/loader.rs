//! Loading: layers in precedence order, one typed value, every problem at once.

use std::any::TypeId;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::de::{NodeDe, Seen};
use crate::files;
use crate::limits::Limits;
use crate::origin::Origin;
use crate::report::{ConfigError, Problem, Report};
use crate::schema::Schema;
use crate::section::{Section, SectionType, SectionValue, Sections};
use crate::sources;
use crate::tree::Node;
use crate::validate::{Validate, Validation};

/// What a root settings type must be: readable, printable, described by a
/// schema, with working defaults and its own rules. Blanket-implemented;
/// [`#[settings]`](crate::settings) makes a struct all of these.
pub trait Settings:
    DeserializeOwned + Serialize + schemars::JsonSchema + Default + Validate + Send + Sync + 'static
{
}

impl<T> Settings for T where
    T: DeserializeOwned
        + Serialize
        + schemars::JsonSchema
        + Default
        + Validate
        + Send
        + Sync
        + 'static
{
}

/// Builds a configuration from layered sources, lowest precedence first:
///
/// 1. built-in defaults (the settings type's `Default`);
/// 2. `<config-dir>/default.toml`;
/// 3. `<config-dir>/<profile>.toml`, when a profile is chosen;
/// 4. `<config-dir>/local.toml` (optional, meant to be git-ignored);
/// 5. environment variables `<PREFIX>__SECTION__KEY`;
/// 6. explicit overrides: `--set key.path=value`, then [`Loader::set`] in code.
///
/// Each file may be `.toml`, `.yaml`, `.yml` or `.json` (one per layer).
/// Tables merge key by key; lists and scalars are replaced whole.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// #[platform_config::settings]
/// struct AppSettings {
///     /// Greeting sent to callers.
///     greeting: String,
///     /// Ports to listen on.
///     ports: Vec<u16>,
/// }
///
/// let loaded = platform_config::Loader::new()
///     .env_vars([("APP__PORTS", "8080")])
///     .set("greeting", "007")
///     .load::<AppSettings>()?;
/// assert_eq!(loaded.value().greeting, "007");
/// assert_eq!(loaded.value().ports, [8080]);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Loader {
    config_dir: Option<PathBuf>,
    fallback_dir: Option<PathBuf>,
    profile: Option<String>,
    prefix: String,
    env: Option<Vec<(String, String)>>,
    overrides: Vec<(String, String, Origin)>,
    bad_args: Vec<Problem>,
    limits: Limits,
    rules: Vec<Rule>,
    sections: Vec<SectionType>,
}

/// A rule added with [`Loader::rule`], for one settings type.
#[derive(Clone)]
struct Rule {
    for_type: std::any::TypeId,
    check: Arc<RuleFn>,
}

type RuleFn = dyn Fn(&dyn std::any::Any, &mut Validation) + Send + Sync;

// By hand: environment values and overrides may be secrets.
impl std::fmt::Debug for Loader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loader")
            .field("config_dir", &self.config_dir)
            .field("fallback_dir", &self.fallback_dir)
            .field("profile", &self.profile)
            .field("prefix", &self.prefix)
            .field(
                "overridden_keys",
                &self.overrides.iter().map(|(k, _, _)| k).collect::<Vec<_>>(),
            )
            .field("limits", &self.limits)
            .field("rules", &self.rules.len())
            .field(
                "sections",
                &self.sections.iter().map(|s| s.key).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Default for Loader {
    fn default() -> Self {
        Loader::new()
    }
}

/// Default config directory, relative to the working directory.
pub const DEFAULT_CONFIG_DIR: &str = "config";
/// Default prefix of environment variables.
pub const DEFAULT_ENV_PREFIX: &str = "APP";

impl Loader {
    /// A loader with the defaults: `./config`, prefix `APP`, the process environment.
    pub fn new() -> Self {
        Loader {
            config_dir: None,
            fallback_dir: None,
            profile: None,
            prefix: DEFAULT_ENV_PREFIX.to_owned(),
            env: None,
            overrides: Vec::new(),
            bad_args: Vec::new(),
            limits: Limits::default(),
            rules: Vec::new(),
            sections: Vec::new(),
        }
    }

    /// Adds a rule checked with `T`'s own [`Validate`] on every load of `T`:
    /// for what the settings type cannot know, such as a client the service
    /// cannot run without. `--check-config`, start-up and reload all load
    /// through this loader, so they refuse the same inputs. Keys are relative
    /// to the root. A rule for another type than the one loaded is not run.
    ///
    /// ```
    /// # #[derive(Debug, Default, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    /// # #[serde(default)]
    /// # struct App { peers: Vec<String> }
    /// # impl platform_config::Validate for App {}
    /// let loader = platform_config::Loader::new()
    ///     .env_vars([("APP__PEERS", "")])
    ///     .rule(|app: &App, v| v.check(!app.peers.is_empty(), "peers", "this service needs a peer"));
    /// let e = loader.load::<App>().unwrap_err();
    /// assert!(e.to_string().contains("this service needs a peer"));
    /// ```
    pub fn rule<T: Settings>(
        mut self,
        rule: impl Fn(&T, &mut Validation) + Send + Sync + 'static,
    ) -> Self {
        self.rules.push(Rule {
            for_type: std::any::TypeId::of::<T>(),
            check: Arc::new(move |value, v| {
                if let Some(value) = value.downcast_ref::<T>() {
                    rule(value, v);
                }
            }),
        });
        self
    }

    /// Reads the section `X` under its key as well, from the same sources
    /// and with the same checks as the root type's own sections: for a
    /// section whose type the root's crate cannot name (a library's above
    /// it). [`Loaded::section`] gives it. Adding one type twice is the same
    /// as once.
    pub fn section<X: Section>(mut self) -> Self {
        if !self.sections.iter().any(|s| s.type_id == TypeId::of::<X>()) {
            self.sections.push(SectionType::of::<X>());
        }
        self
    }

    /// Bounds on the size and shape of every file read (see [`Limits`]).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Reads config files from `dir`; a directory given this way must exist.
    pub fn config_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config_dir = Some(dir.into());
        self
    }

    /// Reads config files from `dir` when neither [`Loader::config_dir`] nor
    /// `<PREFIX>_CONFIG_DIR` names one, instead of `./config`. Like
    /// `./config`, it may be missing: then only the built-in defaults, env
    /// and overrides apply (a binary copied away from its source tree).
    pub fn fallback_config_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.fallback_dir = Some(dir.into());
        self
    }

    /// Chooses the profile file `<profile>.toml` (else `<PREFIX>_PROFILE` decides).
    pub fn profile(mut self, profile: impl Into<String>) -> Self {
        self.profile = Some(profile.into());
        self
    }

    /// Prefix of environment variables (`APP` gives `APP__SECTION__KEY`, `APP_PROFILE`).
    pub fn env_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Uses these variables instead of the process environment (tests, embedding).
    pub fn env_vars<K: Into<String>, V: Into<String>>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.env = Some(
            vars.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        );
        self
    }

    /// Sets `key.path` to `value` above every other source (value given in code).
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.overrides
            .push((key.into(), value.into(), Origin::Code));
        self
    }

    /// Adds a `--set key.path=value` argument as given on the command line.
    pub fn set_arg(mut self, arg: &str) -> Self {
        match sources::parse_set_arg(arg) {
            Ok((key, value)) => {
                let origin = Origin::CommandLine { key: key.clone() };
                // Command-line overrides rank below those given in code.
                let at = self
                    .overrides
                    .iter()
                    .position(|(_, _, o)| *o == Origin::Code)
                    .unwrap_or(self.overrides.len());
                self.overrides.insert(at, (key, value, origin));
            }
            Err(problem) => self.bad_args.push(problem),
        }
        self
    }

    /// The prefix of environment variables.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn env_snapshot(&self, report: &mut Report) -> Vec<(String, String)> {
        if let Some(vars) = &self.env {
            return vars.clone();
        }
        let mut out = Vec::new();
        for (name, value) in std::env::vars_os() {
            let Some(name) = name.to_str() else { continue };
            match value.into_string() {
                Ok(value) => out.push((name.to_owned(), value)),
                Err(_)
                    if name
                        .to_ascii_uppercase()
                        .starts_with(&self.prefix.to_ascii_uppercase()) =>
                {
                    report.push(Problem::Input {
                        origin: Origin::Env {
                            var: name.to_owned(),
                        },
                        message: "value is not valid UTF-8".into(),
                    })
                }
                Err(_) => {}
            }
        }
        out
    }

    /// The profile in force: set in code or on the command line, else `<PREFIX>_PROFILE`.
    pub fn resolved_profile(&self) -> Option<String> {
        let mut report = Report::default();
        let env = self.env_snapshot(&mut report);
        self.profile_from(&env)
    }

    /// The environment variable that chooses the profile.
    fn profile_var(&self) -> String {
        format!("{}_PROFILE", self.prefix)
    }

    fn profile_from(&self, env: &[(String, String)]) -> Option<String> {
        let var = self.profile_var();
        self.profile
            .clone()
            .or_else(|| {
                env.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(&var))
                    .map(|(_, v)| v.clone())
            })
            .filter(|p| !p.trim().is_empty())
    }

    fn dir_from(&self, env: &[(String, String)]) -> (PathBuf, bool) {
        let var = format!("{}_CONFIG_DIR", self.prefix);
        if let Some(dir) = &self.config_dir {
            return (dir.clone(), true);
        }
        match env.iter().find(|(k, _)| k.eq_ignore_ascii_case(&var)) {
            Some((_, dir)) => (PathBuf::from(dir), true),
            None => match &self.fallback_dir {
                Some(dir) => (dir.clone(), false),
                None => (PathBuf::from(DEFAULT_CONFIG_DIR), false),
            },
        }
    }

    /// Loads, checks and validates `T`; the error lists every problem found.
    pub fn load<T: Settings>(&self) -> Result<Loaded<T>, ConfigError> {
        let mut report = Report::default();
        let schema = self.schema_of::<T>(&mut report);
        for p in &self.bad_args {
            report.push(p.clone());
        }
        let env = self.env_snapshot(&mut report);
        let profile = self.profile_from(&env);
        let (dir, explicit) = self.dir_from(&env);
        let mut tree = Node::empty_map(Origin::Default);
        let mut files = Vec::new();
        if readable_dir(&dir, explicit, &mut report) {
            files = self.merge_files(&dir, profile.as_ref(), &schema, &mut tree, &mut report);
        }
        tree.merge(sources::env_layer(
            &env,
            &self.prefix,
            &schema,
            &self.limits,
            &mut report,
        ));
        tree.merge(sources::override_layer(
            &self.overrides,
            &schema,
            &self.limits,
            &mut report,
        ));

        let mut root = tree.clone();
        for section in &self.sections {
            root.remove_path(section.key);
        }
        let value = deserialize_all::<T>(&mut root, "", &schema, &mut report);
        let sections = self.load_sections(&tree, &schema, &mut report);
        if let Some(value) = &value {
            self.validate(value, &sections, &tree, &mut report);
        }
        match value {
            Some(value) if report.is_empty() => Ok(Loaded {
                value: Arc::new(value),
                sections: sections.into(),
                tree: Arc::new(tree),
                profile,
                files,
                config_dir: dir,
            }),
            _ => Err(ConfigError::Invalid(report)),
        }
    }

    /// The defaults of `T` and of this loader's sections as a config file,
    /// each setting preceded by its doc comment (`--print-defaults`).
    pub fn render_defaults<T: Settings>(&self) -> String {
        let mut report = Report::default();
        let schema = self.schema_of::<T>(&mut report);
        let defaults: Vec<(&str, serde_json::Value)> = self
            .sections
            .iter()
            .map(|s| (s.key, (s.defaults)()))
            .collect();
        let json = crate::section::with_sections(crate::render::to_json(&T::default()), &defaults);
        crate::render::defaults(&schema, &json)
    }

    /// `T`'s schema with the sections' spliced in; a section whose key `T`
    /// already has, or which another section has, is reported and left out.
    fn schema_of<T: Settings>(&self, report: &mut Report) -> Schema {
        let base = Schema::of::<T>();
        let mut spliced: Vec<(&str, serde_json::Value)> = Vec::new();
        for section in &self.sections {
            let taken_by = if base.declares(section.key) {
                Some(std::any::type_name::<T>())
            } else {
                self.sections
                    .iter()
                    .take_while(|s| s.type_id != section.type_id)
                    .find(|s| s.key == section.key)
                    .map(|s| s.type_name)
            };
            match taken_by {
                Some(owner) => report.push(Problem::Invalid {
                    key: section.key.to_owned(),
                    origin: Origin::Default,
                    message: format!(
                        "the section of `{}` cannot be read: `{owner}` has this key",
                        section.type_name
                    ),
                }),
                None => spliced.push((section.key, (section.schema)())),
            }
        }
        base.with_sections(&spliced)
    }

    /// Each section deserialized from its part of `tree`.
    fn load_sections(
        &self,
        tree: &Node,
        schema: &Schema,
        report: &mut Report,
    ) -> Vec<SectionValue> {
        let taken: Vec<String> = report
            .problems
            .iter()
            .filter_map(|p| p.key().map(str::to_owned))
            .collect();
        let mut values = Vec::new();
        for section in &self.sections {
            if taken.iter().any(|k| k == section.key) {
                continue;
            }
            let mut node = tree
                .get_path(section.key)
                .cloned()
                .unwrap_or_else(|| Node::empty_map(Origin::Default));
            if let Some(value) = (section.load)(&mut node, section.key, schema, report) {
                values.push(SectionValue {
                    of: *section,
                    value,
                });
            }
        }
        values
    }

    /// Merges the layer files of `dir` into `tree`, lowest precedence first,
    /// and returns the files read.
    fn merge_files(
        &self,
        dir: &Path,
        profile: Option<&String>,
        schema: &Schema,
        tree: &mut Node,
        report: &mut Report,
    ) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for stem in &self.layer_stems(profile, report) {
            match sources::find_layer_file(dir, stem, report) {
                Some(path) => {
                    if let Some(layer) = sources::read_file(&path, schema, &self.limits, report) {
                        tree.merge(layer);
                    }
                    files.push(path);
                }
                None if Some(stem) == profile && is_valid_profile(stem) => {
                    report.push(source_problem(
                        dir.join(format!("{stem}.toml")),
                        format!(
                            "profile `{stem}` was chosen but has no file{}",
                            available_profiles(dir)
                        ),
                    ))
                }
                None => {}
            }
        }
        files
    }

    /// The stems of the layer files, lowest precedence first: `default`, the
    /// profile if it is a valid one, `local`.
    fn layer_stems(&self, profile: Option<&String>, report: &mut Report) -> Vec<String> {
        let mut stems = vec!["default".to_owned()];
        if let Some(profile) = profile {
            if !is_valid_profile(profile) {
                report.push(Problem::Input {
                    origin: Origin::Env {
                        var: self.profile_var(),
                    },
                    message: format!(
                        "invalid profile {profile:?}: use letters, digits, `-` and `_`, and not `default` or `local`"
                    ),
                });
            } else {
                stems.push(profile.clone());
            }
        }
        stems.push("local".to_owned());
        stems
    }

    /// Runs `T`'s own rules and the loader's over `value`, and reports what
    /// they find.
    fn validate<T: Settings>(
        &self,
        value: &T,
        sections: &[SectionValue],
        tree: &Node,
        report: &mut Report,
    ) {
        let mut validation = Validation::default();
        value.validate(&mut validation);
        self.run_rules(TypeId::of::<T>(), value, &mut validation);
        for section in sections {
            validation.within(section.of.key, |v| {
                (section.of.validate)(&*section.value, v);
                self.run_rules(section.of.type_id, &*section.value, v);
            });
        }
        let reported: Vec<String> = report
            .problems
            .iter()
            .filter_map(|p| p.key().map(str::to_owned))
            .collect();
        for (key, message) in validation.errors() {
            // A rule over a value already reported as bad would only repeat it.
            if reported
                .iter()
                .any(|r| r == key || r.starts_with(&format!("{key}.")))
            {
                continue;
            }
            report.push(Problem::Invalid {
                origin: origin_at(tree, key),
                key: key.clone(),
                message: message.clone(),
            });
        }
    }
}

impl Loader {
    fn run_rules(&self, type_id: TypeId, value: &dyn std::any::Any, v: &mut Validation) {
        for rule in self.rules.iter().filter(|r| r.for_type == type_id) {
            (rule.check)(value, v);
        }
    }
}

/// Whether the config directory can be read; reports it when it is a broken
/// link, or missing though named explicitly.
fn readable_dir(dir: &Path, explicit: bool, report: &mut Report) -> bool {
    // A symlinked directory that leads nowhere is a broken mount, not "no config".
    if let Some(why) = files::broken_dir(dir) {
        report.push(source_problem(dir.to_owned(), why));
        return false;
    }
    if dir.is_dir() {
        return true;
    }
    if explicit {
        report.push(source_problem(
            dir.to_owned(),
            "config directory does not exist".into(),
        ));
    }
    false
}

/// A problem with a config file or directory as a whole.
fn source_problem(path: PathBuf, message: String) -> Problem {
    Problem::Source {
        path,
        line: None,
        column: None,
        message,
    }
}

fn is_valid_profile(profile: &str) -> bool {
    !profile.is_empty()
        && profile != "default"
        && profile != "local"
        && profile
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn available_profiles(dir: &Path) -> String {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let path = e.path();
            let ext = path.extension()?.to_str()?;
            sources::EXTENSIONS.contains(&ext).then_some(())?;
            let stem = path.file_stem()?.to_str()?.to_owned();
            (stem != "default" && stem != "local").then_some(stem)
        })
        .collect();
    names.sort();
    if names.is_empty() {
        String::new()
    } else {
        format!(" (profiles found: {})", names.join(", "))
    }
}

pub(crate) fn origin_at(tree: &Node, key: &str) -> Origin {
    tree.get_path(key)
        .map(|n| n.origin.clone())
        .unwrap_or(Origin::Default)
}

/// Deserializes `T`, collecting every error: a bad value is reported and
/// removed from the tree (so its default applies) and the pass repeats.
pub(crate) fn deserialize_all<T: Settings>(
    tree: &mut Node,
    prefix: &str,
    schema: &Schema,
    report: &mut Report,
) -> Option<T> {
    // Bounded by the number of values: each failed pass removes one.
    let max_passes = tree.leaves().len() + 2;
    let mut unknown: Vec<(String, Origin)> = Vec::new();
    let mut result = None;
    for _ in 0..max_passes {
        let seen = Seen::default();
        let outcome = T::deserialize(NodeDe::new(tree, prefix.to_owned(), &seen));
        for entry in seen.unknown.into_inner() {
            if !unknown.contains(&entry) {
                unknown.push(entry);
            }
        }
        match outcome {
            Ok(value) => {
                result = Some(value);
                break;
            }
            Err(e) => {
                let path = e.path.clone().unwrap_or_default();
                let origin = e.origin.clone().unwrap_or(Origin::Default);
                if e.unknown_key {
                    unknown.push((path.clone(), origin));
                } else {
                    report.push(Problem::InvalidValue {
                        key: path.clone(),
                        origin,
                        message: e.message.clone(),
                    });
                }
                // `tree` is the part under `prefix`: its paths are relative.
                let relative = if prefix.is_empty() {
                    Some(path.as_str())
                } else {
                    path.strip_prefix(prefix).and_then(|p| p.strip_prefix('.'))
                };
                match relative {
                    Some(relative) if !relative.is_empty() && tree.remove_path(relative) => {}
                    _ => break,
                }
            }
        }
    }
    for (key, origin) in unknown {
        let (parent, last) = key.rsplit_once('.').unwrap_or(("", &key));
        report.push(Problem::UnknownKey {
            suggestion: schema.suggest(parent, last),
            key,
            origin,
        });
    }
    // With bad values removed the rest may still parse: the caller validates
    // it so that cross-field rules are reported too, then refuses it.
    result
}

/// A loaded configuration: the typed value and where each value came from.
pub struct Loaded<T> {
    value: Arc<T>,
    sections: Arc<[SectionValue]>,
    tree: Arc<Node>,
    profile: Option<String>,
    files: Vec<PathBuf>,
    config_dir: PathBuf,
}

// By hand: the source tree holds raw values, secrets included.
impl<T: std::fmt::Debug> std::fmt::Debug for Loaded<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("value", &self.value)
            .field("profile", &self.profile)
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl<T> Clone for Loaded<T> {
    fn clone(&self) -> Self {
        Loaded {
            value: self.value.clone(),
            sections: self.sections.clone(),
            tree: self.tree.clone(),
            profile: self.profile.clone(),
            files: self.files.clone(),
            config_dir: self.config_dir.clone(),
        }
    }
}

impl<T: Settings> Loaded<T> {
    /// The typed configuration.
    pub fn value(&self) -> &T {
        &self.value
    }

    /// The typed configuration, shareable.
    pub fn shared(&self) -> Arc<T> {
        self.value.clone()
    }

    /// The section `X` as loaded, when the loader was given it with
    /// [`Loader::section`].
    pub fn section<X: Section>(&self) -> Option<Arc<X>> {
        self.sections().get::<X>()
    }

    /// Every library section as loaded.
    pub fn sections(&self) -> Sections {
        Sections(self.sections.clone())
    }

    /// The profile in force, if any.
    pub fn profile(&self) -> Option<&str> {
        self.profile.as_deref()
    }

    /// The files that were read, lowest precedence first.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// The config directory that was searched.
    pub fn config_dir(&self) -> &Path {
        &self.config_dir
    }

    /// Where the value at a dotted key path came from (`Origin::Default` if no source set it).
    pub fn origin_of(&self, key: &str) -> Origin {
        origin_at(&self.tree, key)
    }

    /// The effective configuration as TOML, each value followed by its source;
    /// secrets show as `[REDACTED]`.
    pub fn render(&self) -> String {
        let sections: Vec<(&str, serde_json::Value)> =
            self.sections.iter().map(|s| (s.of.key, s.json())).collect();
        let json = crate::section::with_sections(crate::render::to_json(&*self.value), &sections);
        crate::render::effective(&json, &|key| self.origin_of(key))
    }

    pub(crate) fn same_sources(&self, other: &Loaded<T>) -> bool {
        self.tree == other.tree
    }
}
