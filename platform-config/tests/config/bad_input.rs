//! Malformed input: every problem at once, each naming key and source.

use platform_config::{Origin, Problem};

use crate::settings::{Root, config_dir, loader};

fn problems(dir: &std::path::Path) -> Vec<Problem> {
    loader(dir)
        .load::<Root>()
        .unwrap_err()
        .report()
        .expect("an invalid-configuration report")
        .problems
        .clone()
}

#[test]
fn all_problems_are_reported_at_once_with_key_and_line() {
    let dir = config_dir(&[(
        "default.toml",
        "[server]\nport = \"eighty\"\nbnid = \"0.0.0.0\"\ntimeout = \"5 parsecs\"\n\n[db]\npool_size = 300\nhost = \"r1\"\n",
    )]);
    let found = problems(dir.path());
    let file = |line| Origin::File {
        path: dir.path().join("default.toml"),
        line: Some(line),
    };
    let text: Vec<String> = found.iter().map(ToString::to_string).collect();
    assert!(
        found.contains(&Problem::UnknownKey {
            key: "server.bnid".into(),
            origin: file(3),
            suggestion: Some("server.bind".into()),
        }),
        "{text:#?}"
    );
    let invalid = |key: &str| {
        found.iter().find_map(|p| match p {
            Problem::InvalidValue {
                key: k,
                origin,
                message,
            } if k == key => Some((origin.clone(), message.clone())),
            _ => None,
        })
    };
    let (origin, message) = invalid("server.port").expect("port reported");
    assert_eq!(origin, file(2));
    assert!(message.contains("u16"), "{message}");
    let (origin, message) = invalid("server.timeout").expect("timeout reported");
    assert_eq!(origin, file(4));
    assert!(message.contains("parsecs"), "{message}");
    let (origin, message) = invalid("db.pool_size").expect("out of range reported");
    assert_eq!(origin, file(7));
    assert!(
        message.contains("300") && message.contains("u8"),
        "{message}"
    );
    // The cross-field rule is checked too: r1 is a default replica.
    assert!(
        found.contains(&Problem::Invalid {
            key: "db.replicas".into(),
            origin: Origin::Default,
            message: "must not contain db.host".into(),
        }),
        "{text:#?}"
    );
    assert_eq!(found.len(), 5, "{text:#?}");
}

#[test]
fn a_validation_failure_names_where_the_value_was_set() {
    let dir = config_dir(&[("default.toml", "[server]\nport = 0\n")]);
    let found = problems(dir.path());
    assert_eq!(
        found,
        [Problem::Invalid {
            key: "server.port".into(),
            origin: Origin::File {
                path: dir.path().join("default.toml"),
                line: Some(2)
            },
            message: "must not be 0".into(),
        }]
    );
}

fn one_source_problem(dir: &std::path::Path) -> (std::path::PathBuf, Option<usize>, String) {
    match &problems(dir)[..] {
        [
            Problem::Source {
                path,
                line,
                message,
                ..
            },
        ] => (path.clone(), *line, message.clone()),
        other => panic!("expected one source problem, got {other:#?}"),
    }
}

#[test]
fn bad_toml_names_file_and_line() {
    let dir = config_dir(&[("default.toml", "[server]\nport = 80\nbind = \n")]);
    let (path, line, message) = one_source_problem(dir.path());
    assert_eq!(path, dir.path().join("default.toml"));
    assert_eq!(line, Some(3));
    assert!(message.contains("invalid TOML"), "{message}");
}

#[test]
fn invalid_utf8_names_file_and_line() {
    let dir = config_dir(&[]);
    std::fs::write(dir.path().join("default.toml"), b"[db]\nhost = \"\xff\"\n").unwrap();
    let (_, line, message) = one_source_problem(dir.path());
    assert_eq!(line, Some(2));
    assert!(message.contains("UTF-8"), "{message}");
}

#[test]
fn an_empty_file_is_refused_but_comments_only_is_fine() {
    let dir = config_dir(&[("default.toml", "  \n")]);
    let (_, _, message) = one_source_problem(dir.path());
    assert!(message.contains("empty"), "{message}");
    let dir = config_dir(&[("default.toml", "# nothing to change yet\n")]);
    assert!(loader(dir.path()).load::<Root>().is_ok());
}

#[test]
fn a_directory_where_a_file_should_be() {
    let dir = config_dir(&[]);
    std::fs::create_dir(dir.path().join("local.toml")).unwrap();
    let (_, _, message) = one_source_problem(dir.path());
    assert!(message.contains("directory"), "{message}");
}

#[test]
fn a_missing_config_dir_given_explicitly() {
    let dir = config_dir(&[]);
    let missing = dir.path().join("nope");
    let (path, _, message) = one_source_problem(&missing);
    assert_eq!(path, missing);
    assert!(message.contains("does not exist"), "{message}");
}

#[test]
fn a_chosen_profile_without_a_file_lists_the_ones_there() {
    let dir = config_dir(&[("prod.toml", "")]);
    std::fs::write(dir.path().join("prod.toml"), "# prod\n").unwrap();
    let e = loader(dir.path())
        .profile("prdo")
        .load::<Root>()
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("prdo") && text.contains("profiles found: prod"),
        "{text}"
    );
}

#[test]
fn two_files_for_one_layer_are_ambiguous() {
    let dir = config_dir(&[("default.toml", "# a\n"), ("default.yaml", "db: {}\n")]);
    let (_, _, message) = one_source_problem(dir.path());
    assert!(message.contains("more than one"), "{message}");
}

#[test]
fn malformed_yaml_and_json_are_reported() {
    let dir = config_dir(&[("default.yaml", "db: [unclosed\n")]);
    let (_, _, message) = one_source_problem(dir.path());
    assert!(message.contains("invalid YAML"), "{message}");
    let dir = config_dir(&[("default.json", "{\"db\": ")]);
    let (_, _, message) = one_source_problem(dir.path());
    assert!(message.contains("invalid JSON"), "{message}");
}

#[test]
fn a_wrong_shape_is_reported_not_panicked_on() {
    let dir = config_dir(&[(
        "default.toml",
        "server = 5\n[db]\nreplicas = { a = 1 }\n[app.clients]\ninventory = \"http://x\"\n",
    )]);
    let found = problems(dir.path());
    let mut keys: Vec<_> = found.iter().filter_map(Problem::key).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["app.clients.inventory", "db.replicas", "server"],
        "{found:#?}"
    );
}

#[test]
fn a_bad_set_argument_is_reported() {
    let dir = config_dir(&[]);
    let e = loader(dir.path())
        .set_arg("no-equals-sign")
        .set_arg("server.prot=1")
        .load::<Root>()
        .unwrap_err();
    let text = e.to_string();
    assert!(text.contains("expected key.path=value"), "{text}");
    assert!(
        text.contains("server.prot") && text.contains("did you mean `server.port`"),
        "{text}"
    );
}

#[test]
fn a_fallback_config_dir_may_be_missing_and_ranks_below_the_env_variable() {
    let dir = config_dir(&[("default.toml", "[server]\nport = 7001\n")]);
    let missing = dir.path().join("nope");
    // Missing, like ./config: built-in defaults.
    let loaded = platform_config::Loader::new()
        .env_vars(Vec::<(String, String)>::new())
        .fallback_config_dir(&missing)
        .load::<Root>()
        .unwrap();
    assert_eq!(loaded.value(), &Root::default());
    assert_eq!(loaded.config_dir(), missing);

    // APP_CONFIG_DIR wins over the fallback, and must exist.
    let from_env = platform_config::Loader::new()
        .env_vars([("APP_CONFIG_DIR", dir.path().to_str().unwrap())])
        .fallback_config_dir(&missing)
        .load::<Root>()
        .unwrap();
    assert_eq!(from_env.value().server.port, 7001);
    let e = platform_config::Loader::new()
        .env_vars([("APP_CONFIG_DIR", missing.to_str().unwrap())])
        .fallback_config_dir(dir.path())
        .load::<Root>()
        .unwrap_err();
    assert!(e.to_string().contains("does not exist"), "{e}");
}
