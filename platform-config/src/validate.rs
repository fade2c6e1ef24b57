//! Rules across fields, checked after the types have been read.

/// Implemented by settings types with rules serde cannot express (a range, a
/// field that needs another). Every failed rule is reported with the others.
///
/// ```
/// use platform_config::{Validate, Validation};
///
/// #[derive(Default)]
/// struct Pool { min: u32, max: u32 }
///
/// impl Validate for Pool {
///     fn validate(&self, v: &mut Validation) {
///         v.check(self.max > 0, "max", "must be at least 1");
///         v.check(self.min <= self.max, "min", format!("must not exceed max ({})", self.max));
///     }
/// }
///
/// let mut v = Validation::default();
/// v.section("db.pool", &Pool { min: 5, max: 2 });
/// assert_eq!(v.errors(), [("db.pool.min".to_owned(), "must not exceed max (2)".to_owned())]);
/// ```
pub trait Validate {
    /// Reports every rule this value breaks; keys are relative to the value.
    fn validate(&self, v: &mut Validation) {
        let _ = v;
    }
}

impl Validate for () {}

impl<T: Validate> Validate for Option<T> {
    fn validate(&self, v: &mut Validation) {
        if let Some(inner) = self {
            inner.validate(v);
        }
    }
}

/// Collects the rules a configuration breaks.
#[derive(Debug, Default, Clone)]
pub struct Validation {
    prefix: Vec<String>,
    errors: Vec<(String, String)>,
}

impl Validation {
    /// Reports that `key` (relative to the value being validated) breaks a rule.
    pub fn error(&mut self, key: &str, message: impl Into<String>) {
        let mut path = self.prefix.clone();
        if !key.is_empty() {
            path.push(key.to_owned());
        }
        self.errors.push((path.join("."), message.into()));
    }

    /// Reports `message` for `key` unless `ok`.
    pub fn check(&mut self, ok: bool, key: &str, message: impl Into<String>) {
        if !ok {
            self.error(key, message);
        }
    }

    /// Reports "must be above zero" for `key` when `duration` is zero (a
    /// timeout or window of zero would make every call or sample fail).
    pub fn above_zero(&mut self, key: &str, duration: std::time::Duration) {
        self.check(!duration.is_zero(), key, "must be above zero");
    }

    /// Validates a nested section under `key`.
    pub fn section<V: Validate + ?Sized>(&mut self, key: &str, value: &V) {
        self.prefix.push(key.to_owned());
        value.validate(self);
        self.prefix.pop();
    }

    /// Runs `f` with keys relative to `key` (a section checked by a function
    /// rather than through [`Validate`]).
    pub(crate) fn within(&mut self, key: &str, f: impl FnOnce(&mut Validation)) {
        self.prefix.push(key.to_owned());
        f(self);
        self.prefix.pop();
    }

    /// The failed rules so far: (key path, message).
    pub fn errors(&self) -> &[(String, String)] {
        &self.errors
    }
}
