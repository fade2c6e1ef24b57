//! Sections a library adds under its own key: read, checked, printed and
//! reloaded like the root type's own.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::Parser;
use platform_config::cli::{Action, ServiceArgs};
use platform_config::{Origin, Problem, Section, Validation};

use crate::settings::{Root, config_dir, loader};

/// A library's section, named like the root's own types on purpose
/// (`Server`): the two schemas must not collide.
#[platform_config::settings(validate_with = Self::check)]
#[derive(PartialEq)]
struct Mail {
    /// SMTP relays by name.
    relays: BTreeMap<String, Server>,
    /// How long to wait for a relay.
    #[setting(default = Duration::from_secs(3))]
    timeout: Duration,
}

#[platform_config::settings]
#[derive(PartialEq)]
struct Server {
    /// Relay host.
    #[setting(default = "localhost")]
    host: String,
    /// Relay port.
    #[setting(default = 25)]
    port: u16,
}

impl Mail {
    fn check(&self, v: &mut Validation) {
        for (name, relay) in &self.relays {
            v.check(
                relay.port != 0,
                &format!("relays.{name}.port"),
                "must not be 0",
            );
        }
    }
}

impl Section for Mail {
    const KEY: &'static str = "mail";
}

/// A second library that wants the root's key.
#[platform_config::settings]
struct Db {
    /// Anything.
    host: String,
}

impl Section for Db {
    const KEY: &'static str = "db";
}

fn problems(e: platform_config::ConfigError) -> Vec<Problem> {
    e.report().expect("a report").problems.clone()
}

#[test]
fn a_section_reads_from_files_env_and_set_with_origins() {
    let dir = config_dir(&[(
        "default.toml",
        "[mail]\ntimeout = \"5s\"\n[mail.relays.eu]\nhost = \"eu.smtp\"\n",
    )]);
    let loaded = loader(dir.path())
        .env_vars([("APP__MAIL__RELAYS__EU__PORT", "587")])
        .set_arg("mail.relays.us.host=us.smtp")
        .section::<Mail>()
        .load::<Root>()
        .unwrap();
    let mail = loaded.section::<Mail>().expect("the section");
    assert_eq!(mail.timeout, Duration::from_secs(5));
    assert_eq!(mail.relays["eu"].host, "eu.smtp");
    assert_eq!(mail.relays["eu"].port, 587, "typed from an env string");
    assert_eq!(mail.relays["us"].port, 25, "an entry's defaults");
    assert_eq!(
        loaded.origin_of("mail.relays.eu.port"),
        Origin::Env {
            var: "APP__MAIL__RELAYS__EU__PORT".into()
        }
    );
    // The root's own sections are unaffected.
    assert_eq!(loaded.value(), &Root::default());
}

#[test]
fn without_its_section_a_key_is_unknown_and_with_it_a_typo_is_suggested() {
    let dir = config_dir(&[("default.toml", "[mail]\ntimeout = \"5s\"\n")]);
    let found = problems(loader(dir.path()).load::<Root>().unwrap_err());
    assert!(
        found
            .iter()
            .any(|p| matches!(p, Problem::UnknownKey { key, .. } if key == "mail")),
        "{found:?}"
    );

    let dir = config_dir(&[("default.toml", "[mail]\ntimout = \"5s\"\n")]);
    let found = problems(
        loader(dir.path())
            .section::<Mail>()
            .load::<Root>()
            .unwrap_err(),
    );
    assert!(
        found.iter().any(|p| matches!(p,
            Problem::UnknownKey { key, suggestion, .. }
                if key == "mail.timout" && suggestion.as_deref() == Some("mail.timeout"))),
        "{found:?}"
    );
}

#[test]
fn a_sections_bad_values_and_rules_are_reported_with_full_keys() {
    let dir = config_dir(&[(
        "default.toml",
        "[mail]\ntimeout = \"soon\"\n[mail.relays.eu]\nport = 0\n",
    )]);
    let loader = loader(dir.path())
        .section::<Mail>()
        .rule(|mail: &Mail, v| v.check(mail.relays.contains_key("us"), "relays.us", "missing"));
    let found = problems(loader.load::<Root>().unwrap_err());
    let keys: Vec<&str> = found.iter().filter_map(Problem::key).collect();
    assert!(keys.contains(&"mail.timeout"), "{found:?}");
    assert!(
        keys.contains(&"mail.relays.eu.port"),
        "the type's rule: {found:?}"
    );
    assert!(keys.contains(&"mail.relays.us"), "a loader rule: {found:?}");
    let at_line = found.iter().any(|p| {
        matches!(p, Problem::InvalidValue { key, origin: Origin::File { line: Some(2), .. }, .. }
            if key == "mail.timeout")
    });
    assert!(at_line, "{found:?}");
}

#[test]
fn a_section_cannot_take_a_key_the_root_has() {
    let dir = config_dir(&[]);
    let found = problems(
        loader(dir.path())
            .section::<Db>()
            .load::<Root>()
            .unwrap_err(),
    );
    assert!(
        found
            .iter()
            .any(|p| p.key() == Some("db") && p.to_string().contains("Db")),
        "{found:?}"
    );
}

#[test]
fn print_defaults_and_print_config_show_the_section() {
    let args = |argv: &[&str]| {
        ServiceArgs::try_parse_from(std::iter::once("svc").chain(argv.iter().copied()))
            .unwrap()
            .config
    };
    let dir = config_dir(&[("default.toml", "[mail.relays.eu]\nhost = \"eu.smtp\"\n")]);
    let run = |argv: &[&str]| {
        let args = args(argv);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let action = args
            .run::<Root>(
                &args.apply(loader(dir.path()).section::<Mail>()),
                &mut out,
                &mut err,
            )
            .unwrap();
        assert!(
            matches!(action, Action::Exit(0)),
            "{}",
            String::from_utf8_lossy(&err)
        );
        String::from_utf8(out).unwrap()
    };
    let defaults = run(&["--print-defaults"]);
    assert!(
        defaults.contains("# How long to wait for a relay.\ntimeout = \"3s\""),
        "{defaults}"
    );
    assert!(defaults.contains("# [mail.relays.<name>]"), "{defaults}");
    assert!(
        defaults.contains("## Relay port.\n# port = 25"),
        "{defaults}"
    );
    let effective = run(&["--print-config"]);
    assert!(effective.contains("[mail.relays.eu]"), "{effective}");
    assert!(effective.contains("host = \"eu.smtp\"  # "), "{effective}");
}

#[test]
fn a_reload_reads_the_section_again_and_refuses_a_bad_one() {
    let dir = config_dir(&[("default.toml", "[mail]\ntimeout = \"5s\"\n")]);
    let loader = loader(dir.path()).section::<Mail>();
    let reloader =
        platform_config::reload::Reloader::new(loader.clone(), loader.load::<Root>().unwrap());
    let timeout =
        |r: &platform_config::reload::Reloader<Root>| r.loaded().section::<Mail>().unwrap().timeout;
    std::fs::write(
        dir.path().join("default.toml"),
        "[mail]\ntimeout = \"7s\"\n",
    )
    .unwrap();
    assert!(reloader.reload().unwrap());
    assert_eq!(timeout(&reloader), Duration::from_secs(7));
    std::fs::write(
        dir.path().join("default.toml"),
        "[mail]\ntimeout = \"never\"\n",
    )
    .unwrap();
    let e = reloader.reload().unwrap_err();
    assert!(e.to_string().contains("mail.timeout"), "{e}");
    assert_eq!(
        timeout(&reloader),
        Duration::from_secs(7),
        "the last good one stays"
    );
}
