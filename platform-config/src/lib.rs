//! Layered, typed, validated configuration for platform services.
//!
//! A service describes its settings as structs with `Default`s that work as
//! they are, each made a settings section by [`#[settings]`](settings);
//! [`Loader`] reads them from layered sources (defaults, files,
//! profile, local override, environment, command line), reports every problem
//! at once with the key and the place it came from, and remembers the origin
//! of every value. [`Secret`] keeps passwords out of every printout.
//! [`reload::Reloader`] re-reads files when they change and swaps the value
//! atomically; [`cli::ConfigArgs`] is the command line every service shares.
//!
//! The environment traps of other loaders do not happen here: variables are
//! matched against the settings' schema (any case, `__` between levels),
//! strings stay strings (`"007"`), and list fields take comma-separated text.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cli;
mod de;
pub mod duration;
mod files;
pub mod limits;
mod loader;
mod origin;
mod parse;
pub mod reload;
mod render;
mod report;
mod schema;
mod secret;
mod section;
pub mod size;
mod sources;
mod tree;
mod validate;

pub use limits::Limits;
pub use loader::{DEFAULT_CONFIG_DIR, DEFAULT_ENV_PREFIX, Loaded, Loader, Settings};
pub use origin::Origin;
pub use report::{ConfigError, Problem, Report};
pub use secret::{REDACTED, Secret};
pub use section::{Section, Sections};
pub use validate::{Validate, Validation};

/// Makes a struct with named fields a settings section in one line.
///
/// ```
/// use std::time::Duration;
///
/// /// The `[app]` section of the service's config.
/// #[platform_config::settings]
/// struct Settings {
///     /// How the service greets.
///     #[setting(default = "hello")]
///     greeting: String,
///     /// How long a greeting may take.
///     #[setting(default = Duration::from_millis(250))]
///     timeout: Duration,
///     /// Largest name accepted.
///     #[setting(size, default = 64 * 1024)]
///     max_name: u64,
///     /// Names never greeted (empty: the type's `Default`).
///     ignored: Vec<String>,
/// }
///
/// let s: Settings = serde_json::from_str(r#"{"timeout": "1m30s"}"#).unwrap();
/// assert_eq!(s.greeting, "hello");
/// assert_eq!(s.timeout, Duration::from_secs(90));
/// assert_eq!(s.max_name, 65_536);
/// assert!(serde_json::from_str::<Settings>(r#"{"greting": "hi"}"#).is_err());
/// ```
///
/// It derives `Debug`, `Clone`, `Serialize`, `Deserialize` and
/// `schemars::JsonSchema`, adds `#[serde(default, deny_unknown_fields)]`, and
/// implements [`Default`] and [`Validate`]: what [`Settings`] asks of a root
/// type and what every section needs. Doc comments stay, and become the
/// comments of [`render_defaults`] (`--print-defaults`). The generated code
/// names only `platform_config`, so a service needs no serde or schemars
/// dependency for its settings.
///
/// On a field:
/// - `#[setting(default = <expression>)]`: the field's value in `Default`,
///   converted with `Into::into` (`"hello"` for a `String`); a bare number
///   (`64 * 1024`) takes the field's type. Without it the field gets its
///   type's own `Default`, and a type without one is a compile error at the
///   field.
/// - A `Duration` (`std::time::Duration`, `core::time::Duration`) or
///   `Option<Duration>` field is written as text, `250ms` or `1m30s`, through
///   [`duration`]; nothing to add.
/// - `#[setting(size)]` on a `u64` field writes it as `64KiB` or `10MiB`,
///   through [`size`].
/// - The field's own `#[serde(...)]` and `#[schemars(...)]` attributes are
///   kept as written; one that names a `with` (or `serialize_with`,
///   `deserialize_with`) decides the format alone.
///
/// On the struct, `#[settings(validate_with = path)]` names a
/// `fn(&Self, &mut Validation)` holding the rules serde cannot express;
/// without it `Validate` accepts every value.
///
/// ```
/// use platform_config::Validation;
///
/// #[platform_config::settings(validate_with = Self::check)]
/// #[derive(PartialEq)]
/// struct Pool {
///     /// Connections kept open.
///     #[setting(default = 1)]
///     min: u32,
///     /// Connections at most.
///     #[setting(default = 10)]
///     max: u32,
/// }
///
/// impl Pool {
///     fn check(&self, v: &mut Validation) {
///         v.check(self.min <= self.max, "min", "must not exceed max");
///     }
/// }
///
/// let mut v = Validation::default();
/// v.section("pool", &Pool { min: 5, max: 2 });
/// assert_eq!(v.errors(), [("pool.min".to_owned(), "must not exceed max".to_owned())]);
/// ```
///
/// Derives of your own, such as `PartialEq`, go beside it. It refuses, with
/// an error that says why: an enum, a tuple or unit struct, generic
/// parameters, a derive it makes itself (`Default`, `Debug`, ...), and an
/// unknown key in `#[setting(...)]` or `#[settings(...)]`.
pub use platform_config_macros::settings;

/// What the code `#[settings]` generates refers to, so that a service need
/// not depend on serde and schemars (nor on the same versions) itself.
#[doc(hidden)]
pub mod __private {
    pub use schemars;
    pub use serde;

    /// The default of a field without `#[setting(default = ...)]`: its type's
    /// own. A trait of its own only for the message when there is none.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` has no `Default`, so this settings field needs `#[setting(default = ...)]`",
        label = "no `Default` for this field's type"
    )]
    pub trait FieldDefault: Sized {
        fn field_default() -> Self;
    }

    impl<T: Default> FieldDefault for T {
        fn field_default() -> Self {
            T::default()
        }
    }
}

/// The defaults of `T` as a config file, each setting preceded by its doc comment.
pub fn render_defaults<T: Settings>() -> String {
    Loader::new().render_defaults::<T>()
}
