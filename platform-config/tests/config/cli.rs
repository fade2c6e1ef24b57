//! The standard command line: --check-config, --print-config, --print-defaults.

use clap::Parser;
use platform_config::cli::{Action, EXIT_INVALID_CONFIG, ServiceArgs};

use crate::settings::{Root, config_dir, loader};

fn run(dir: &std::path::Path, argv: &[&str]) -> (Action<Root>, String, String) {
    let args = ServiceArgs::try_parse_from(std::iter::once("svc").chain(argv.iter().copied()))
        .unwrap()
        .config;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let action = args
        .run::<Root>(&args.apply(loader(dir)), &mut out, &mut err)
        .unwrap();
    (
        action,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

#[test]
fn check_config_exits_0_when_valid_and_2_with_the_report_when_not() {
    let dir = config_dir(&[("default.toml", "[server]\nport = 8081\n")]);
    let (action, out, _) = run(dir.path(), &["--check-config"]);
    assert!(matches!(action, Action::Exit(0)));
    assert!(out.contains("configuration is valid"), "{out}");

    let (action, _, err) = run(dir.path(), &["--check-config", "--set", "server.port=x"]);
    assert!(matches!(action, Action::Exit(EXIT_INVALID_CONFIG)));
    assert!(
        err.contains("server.port") && err.contains("--set server.port"),
        "{err}"
    );
}

#[test]
fn print_config_shows_values_with_their_sources() {
    let dir = config_dir(&[("default.toml", "[server]\nport = 8081\n")]);
    let (action, out, _) = run(
        dir.path(),
        &["--print-config", "--set", "db.host=db.internal"],
    );
    assert!(matches!(action, Action::Exit(0)));
    assert!(
        out.contains("port = 8081  # ") && out.contains("default.toml:2"),
        "{out}"
    );
    assert!(
        out.contains("host = \"db.internal\"  # --set db.host"),
        "{out}"
    );
    assert!(out.contains("pool_size = 10  # default"), "{out}");
    // The printout is itself a valid config file.
    let reparsed: toml::Table = toml::from_str(&out).unwrap();
    assert!(reparsed.contains_key("server"));
}

#[test]
fn print_defaults_is_a_documented_config_file_that_loads_back() {
    let dir = config_dir(&[]);
    let (action, out, _) = run(dir.path(), &["--print-defaults"]);
    assert!(matches!(action, Action::Exit(0)));
    assert!(
        out.contains("# Connections kept open.\npool_size = 10"),
        "{out}"
    );
    assert!(out.contains("# The database.\n[db]"), "{out}");
    assert!(out.contains("timeout = \"5s\""), "{out}");
    // Loading the printed defaults gives the defaults (secrets aside).
    let dir = config_dir(&[(
        "default.toml",
        &out.replace("password = \"[REDACTED]\"", "password = \"\""),
    )]);
    assert_eq!(
        loader(dir.path()).load::<Root>().unwrap().value(),
        &Root::default()
    );
}

#[test]
fn a_plain_start_returns_the_configuration() {
    let dir = config_dir(&[]);
    let (action, out, err) = run(dir.path(), &["--profile", "", "--set", "app.code=1"]);
    match action {
        Action::Run(loaded) => assert_eq!(loaded.value().app.code, "1"),
        Action::Exit(code) => panic!("exited {code}: {out} {err}"),
    }
}
