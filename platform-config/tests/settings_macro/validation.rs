//! `Validate` from `#[settings]`: none, or the rules the struct names.

use platform_config::{Loader, Problem, Validation};

/// Rules as a method.
#[platform_config::settings(validate_with = Self::check)]
struct Pool {
    /// Connections kept open.
    #[setting(default = 1)]
    min: u32,
    /// Connections at most.
    #[setting(default = 10)]
    max: u32,
}

impl Pool {
    fn check(&self, v: &mut Validation) {
        v.check(self.max > 0, "max", "must be at least 1");
        v.check(self.min <= self.max, "min", "must not exceed max");
    }
}

/// Rules as a free function.
#[platform_config::settings(validate_with = check_retry)]
struct Retry {
    /// Attempts per call.
    #[setting(default = 3)]
    attempts: u32,
}

fn check_retry(retry: &Retry, v: &mut Validation) {
    v.check(retry.attempts <= 5, "attempts", "must be at most 5");
}

/// No rules: every value is accepted.
#[platform_config::settings]
struct Free {
    /// Anything goes.
    attempts: u32,
}

/// A root section holding the others.
#[platform_config::settings(validate_with = Self::sections)]
struct Root {
    /// The pool.
    pool: Pool,
    /// Retries.
    retry: Retry,
    /// Unchecked.
    free: Free,
}

impl Root {
    fn sections(&self, v: &mut Validation) {
        v.section("pool", &self.pool);
        v.section("retry", &self.retry);
        v.section("free", &self.free);
    }
}

fn errors_of<T: platform_config::Validate>(value: &T) -> Vec<(String, String)> {
    let mut v = Validation::default();
    v.section("s", value);
    v.errors().to_vec()
}

#[test]
fn validate_with_runs_the_named_rules() {
    assert_eq!(errors_of(&Pool::default()), []);
    assert_eq!(
        errors_of(&Pool { min: 2, max: 0 }),
        [
            ("s.max".to_owned(), "must be at least 1".to_owned()),
            ("s.min".to_owned(), "must not exceed max".to_owned()),
        ]
    );
    assert_eq!(
        errors_of(&Retry { attempts: 9 }),
        [("s.attempts".to_owned(), "must be at most 5".to_owned())]
    );
}

#[test]
fn without_validate_with_every_value_is_accepted() {
    assert_eq!(errors_of(&Free { attempts: u32::MAX }), []);
}

#[test]
fn the_loader_reports_every_broken_rule_with_its_key() {
    let e = Loader::new()
        .env_vars([("APP__POOL__MAX", "0"), ("APP__RETRY__ATTEMPTS", "7")])
        .set("free.attempts", "1000")
        .load::<Root>()
        .unwrap_err();
    let keys: Vec<&str> = e
        .report()
        .unwrap()
        .problems
        .iter()
        .map(|p| match p {
            Problem::Invalid { key, .. } => key.as_str(),
            other => panic!("not a rule: {other}"),
        })
        .collect();
    assert_eq!(keys, ["pool.max", "pool.min", "retry.attempts"]);
}
