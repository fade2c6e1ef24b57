//! `Secret<T>`: a value that never prints.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// What every printing path shows in place of a secret's value.
pub const REDACTED: &str = "[REDACTED]";

/// A configuration value that must never be printed: `Debug`, `Display` and
/// `Serialize` (and so logs, config dumps and `--print-config`) show `[REDACTED]`.
///
/// A secret can also come from a file: for a key `db.password`, the environment
/// variable `APP__DB__PASSWORD_FILE=/run/secrets/db` (or a key `password_file` in
/// a config file) reads the value from that file, the convention for secrets
/// mounted by Kubernetes or Docker. A value that fails to parse is reported
/// without echoing it.
///
/// ```
/// use platform_config::Secret;
/// let s: Secret<String> = Secret::new("hunter2".to_owned());
/// assert_eq!(format!("{s:?} {s}"), "Secret([REDACTED]) [REDACTED]");
/// assert_eq!(s.expose(), "hunter2");
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a value.
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// The value itself; the name makes every use easy to find in review.
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// Consumes the wrapper and returns the value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Secret(value)
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({REDACTED})")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T> Serialize for Secret<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Secret<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // The inner error would quote the offending value; replace it.
        T::deserialize(deserializer).map(Secret).map_err(|_| {
            de::Error::custom(format_args!(
                "invalid secret: expected {} (value not shown)",
                std::any::type_name::<T>()
            ))
        })
    }
}

impl<T: schemars::JsonSchema> schemars::JsonSchema for Secret<T> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let mut schema = T::json_schema(generator);
        schema.insert("writeOnly".into(), true.into());
        schema
    }

    fn inline_schema() -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_the_value() {
        let s = Secret::new("hunter2".to_owned());
        for printed in [
            format!("{s:?}"),
            format!("{s:#?}"),
            format!("{s}"),
            serde_json::to_string(&s).unwrap(),
        ] {
            assert!(!printed.contains("hunter2"), "{printed}");
            assert!(printed.contains(REDACTED), "{printed}");
        }
    }

    #[test]
    fn a_bad_value_is_not_echoed() {
        let e = serde_json::from_str::<Secret<u32>>(r#""hunter2""#).unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
}
