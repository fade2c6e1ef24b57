//! Environment variables against the schema, and each trap of config 0.15.

use platform_config::Problem;

use crate::settings::{Root, config_dir, loader};

fn load_env(vars: &[(&str, &str)]) -> Result<Root, platform_config::ConfigError> {
    let dir = config_dir(&[]);
    loader(dir.path())
        .env_vars(vars.iter().copied())
        .load::<Root>()
        .map(|l| l.value().clone())
}

#[test]
fn a_camel_case_field_is_set_from_the_environment() {
    // Trap: config lowercases env keys, so `camelField` was never overridden.
    let v = load_env(&[("APP__APP__CAMELFIELD", "x")]).unwrap();
    assert_eq!(v.app.camel_field, "x");
    let v = load_env(&[("APP__APP__CAMEL_FIELD", "y")]).unwrap();
    assert_eq!(v.app.camel_field, "y");
}

#[test]
fn single_underscores_stay_inside_a_key() {
    // Trap: separator "_" turned APP_DB_POOL_SIZE into db.pool.size, silently ignored.
    let v = load_env(&[("APP__DB__POOL_SIZE", "42"), ("app__server__port", "81")]).unwrap();
    assert_eq!(v.db.pool_size, 42);
    assert_eq!(v.server.port, 81, "variable names match in any case");
}

#[test]
fn a_near_miss_of_the_prefix_is_reported_not_ignored() {
    // Trap: with "__", APP_DB__HOST was silently ignored.
    let e = load_env(&[("APP_DB__HOST", "x")]).unwrap_err();
    let report = e.report().unwrap();
    assert_eq!(report.problems.len(), 1, "{report}");
    let text = report.to_string();
    assert!(
        text.contains("APP_DB__HOST") && text.contains("APP__DB__HOST"),
        "{text}"
    );
}

#[test]
fn strings_stay_strings() {
    // Trap: try_parsing(true) turned "007" into "7".
    let v = load_env(&[
        ("APP__APP__CODE", "007"),
        ("APP__APP__MOTTO", "eat, sleep, code"),
    ])
    .unwrap();
    assert_eq!(v.app.code, "007");
    assert_eq!(
        v.app.motto, "eat, sleep, code",
        "only list fields split on commas"
    );
}

#[test]
fn list_fields_take_comma_separated_values() {
    // Trap: one numeric element failed with "expected a sequence".
    let v = load_env(&[("APP__APP__PORTS", "8080")]).unwrap();
    assert_eq!(v.app.ports, [8080]);
    let v = load_env(&[
        ("APP__APP__PORTS", "80, 443"),
        ("APP__DB__REPLICAS", "a,b,c"),
    ])
    .unwrap();
    assert_eq!(v.app.ports, [80, 443]);
    assert_eq!(v.db.replicas, ["a", "b", "c"]);
    let v = load_env(&[("APP__DB__REPLICAS", "")]).unwrap();
    assert!(v.db.replicas.is_empty());
}

#[test]
fn map_entries_and_human_values_come_from_the_environment() {
    let v = load_env(&[
        ("APP__APP__CLIENTS__INVENTORY__BASE_URL", "http://inv:8080"),
        ("APP__SERVER__TIMEOUT", "250ms"),
        ("APP__SERVER__MAX_BODY", "64KiB"),
    ])
    .unwrap();
    assert_eq!(v.app.clients["inventory"].base_url, "http://inv:8080");
    assert_eq!(v.server.timeout.as_millis(), 250);
    assert_eq!(v.server.max_body, 65536);
}

#[test]
fn a_custom_prefix_is_honoured() {
    let dir = config_dir(&[]);
    let v = loader(dir.path())
        .env_prefix("ORDERS")
        .env_vars([("ORDERS__DB__HOST", "h"), ("APP__DB__HOST", "ignored")])
        .load::<Root>()
        .unwrap();
    assert_eq!(v.value().db.host, "h");
}

#[test]
fn an_unknown_variable_names_itself_and_the_nearest_key() {
    let e = load_env(&[("APP__DB__POOL_SIZ", "3")]).unwrap_err();
    let problems = &e.report().unwrap().problems;
    assert!(
        matches!(&problems[..], [Problem::UnknownKey { key, suggestion: Some(s), origin }]
            if key == "db.pool_siz" && s == "db.pool_size"
            && origin.to_string() == "env APP__DB__POOL_SIZ"),
        "{problems:?}"
    );
}

#[test]
fn a_bad_env_value_names_the_variable() {
    let e = load_env(&[("APP__SERVER__PORT", "eighty")]).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("server.port") && text.contains("env APP__SERVER__PORT"),
        "{text}"
    );
    assert!(text.contains("u16"), "says what was expected: {text}");
}
