//! Precedence: defaults < default.toml < profile < local.toml < env < --set < code.

use platform_config::Origin;

use crate::settings::{Root, config_dir, loader};

#[test]
fn every_adjacent_pair_of_layers_ranks_as_documented() {
    // Layer n sets db.host = "L<n>" and every key of the layers below it, so
    // each key's winner is the next layer up.
    let dir = config_dir(&[
        (
            "default.toml",
            "[db]\nhost = \"file\"\n[server]\nbind = \"file\"\nport = 1\n[app]\ncode = \"file\"\nmotto = \"file\"\ncamelField = \"file\"\n",
        ),
        (
            "prod.toml",
            "[server]\nbind = \"profile\"\nport = 2\n[app]\ncode = \"profile\"\nmotto = \"profile\"\ncamelField = \"profile\"\n",
        ),
        (
            "local.toml",
            "[server]\nport = 3\n[app]\ncode = \"local\"\nmotto = \"local\"\ncamelField = \"local\"\n",
        ),
    ]);
    let loaded = loader(dir.path())
        .profile("prod")
        .env_vars([
            ("APP__APP__MOTTO", "env"),
            ("APP__APP__CAMELFIELD", "env"),
            ("APP__APP__CODE", "env"),
        ])
        .set_arg("app.camelField=cli")
        .set_arg("app.code=cli")
        .set("app.code", "code")
        .load::<Root>()
        .unwrap();
    let v = loaded.value();
    assert_eq!(v.db.pool_size, 10, "default < nothing else");
    assert_eq!(v.db.host, "file", "default < default.toml");
    assert_eq!(v.server.bind, "profile", "default.toml < profile");
    assert_eq!(v.server.port, 3, "profile < local.toml");
    assert_eq!(v.app.motto, "env", "local.toml < env");
    assert_eq!(v.app.camel_field, "cli", "env < --set");
    assert_eq!(v.app.code, "code", "--set < code");

    let file = |name: &str, line| Origin::File {
        path: dir.path().join(name),
        line: Some(line),
    };
    assert_eq!(loaded.origin_of("db.pool_size"), Origin::Default);
    assert_eq!(loaded.origin_of("db.host"), file("default.toml", 2));
    assert_eq!(loaded.origin_of("server.bind"), file("prod.toml", 2));
    assert_eq!(loaded.origin_of("server.port"), file("local.toml", 2));
    assert_eq!(
        loaded.origin_of("app.motto"),
        Origin::Env {
            var: "APP__APP__MOTTO".into()
        }
    );
    assert_eq!(
        loaded.origin_of("app.camelField"),
        Origin::CommandLine {
            key: "app.camelField".into()
        }
    );
    assert_eq!(loaded.origin_of("app.code"), Origin::Code);
    assert_eq!(loaded.profile(), Some("prod"));
    assert_eq!(loaded.files().len(), 3);
}

#[test]
fn the_profile_comes_from_the_environment_when_not_given() {
    let dir = config_dir(&[("staging.toml", "[db]\nhost = \"staging-db\"\n")]);
    let loaded = loader(dir.path())
        .env_vars([("APP_PROFILE", "staging")])
        .load::<Root>()
        .unwrap();
    assert_eq!(loaded.value().db.host, "staging-db");
}

#[test]
fn defaults_alone_make_a_working_configuration() {
    let loaded = platform_config::Loader::new()
        .env_vars(Vec::<(String, String)>::new())
        .load::<Root>()
        .unwrap();
    assert_eq!(loaded.value(), &Root::default());
}

#[test]
fn tables_merge_and_lists_are_replaced_whole() {
    let dir = config_dir(&[
        (
            "default.toml",
            "[db]\nhost = \"a\"\nreplicas = [\"x\", \"y\", \"z\"]\n",
        ),
        ("local.toml", "[db]\nreplicas = [\"w\"]\n"),
    ]);
    let v = loader(dir.path()).load::<Root>().unwrap();
    assert_eq!(v.value().db.host, "a");
    assert_eq!(v.value().db.replicas, ["w"]);
}

#[test]
fn yaml_and_json_files_are_read_by_extension() {
    let dir = config_dir(&[
        ("default.yaml", "db:\n  host: yaml-host\n  pool_size: 3\n"),
        (
            "local.json",
            r#"{"server": {"port": 9000, "timeout": "250ms"}}"#,
        ),
    ]);
    let v = loader(dir.path()).load::<Root>().unwrap();
    assert_eq!(v.value().db.host, "yaml-host");
    assert_eq!(v.value().db.pool_size, 3);
    assert_eq!(v.value().server.port, 9000);
    assert_eq!(v.value().server.timeout.as_millis(), 250);
}

#[test]
fn durations_and_sizes_read_in_human_form() {
    let dir = config_dir(&[(
        "default.toml",
        "[server]\ntimeout = \"1m30s\"\nmax_body = \"10MiB\"\n",
    )]);
    let v = loader(dir.path()).load::<Root>().unwrap();
    assert_eq!(v.value().server.timeout.as_secs(), 90);
    assert_eq!(v.value().server.max_body, 10 << 20);
}
