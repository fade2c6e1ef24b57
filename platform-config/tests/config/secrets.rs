//! A secret's value never appears in any printing path.

use platform_config::cli::{Action, ConfigArgs};

use crate::settings::{Root, config_dir, loader};

const SECRET: &str = "hunter2-s3cr3t";

fn assert_hidden(what: &str, text: &str) {
    assert!(!text.contains(SECRET), "{what} shows the secret:\n{text}");
}

#[test]
fn every_printing_path_redacts_the_secret() {
    let dir = config_dir(&[("default.toml", &format!("[db]\npassword = \"{SECRET}\"\n"))]);
    let loaded = loader(dir.path()).load::<Root>().unwrap();
    assert_eq!(loaded.value().db.password.expose(), SECRET);
    assert_hidden("Debug", &format!("{:?} {:#?}", loaded.value(), loaded));
    assert_hidden("Display", &loaded.value().db.password.to_string());
    let rendered = loaded.render();
    assert_hidden("render", &rendered);
    assert!(rendered.contains("password = \"[REDACTED]\""), "{rendered}");
    assert_hidden("json", &serde_json::to_string(loaded.value()).unwrap());
    assert_hidden("defaults", &platform_config::render_defaults::<Root>());

    for args in [
        ConfigArgs {
            print_config: true,
            ..Default::default()
        },
        ConfigArgs {
            check_config: true,
            ..Default::default()
        },
    ] {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let action = args
            .run::<Root>(&args.apply(loader(dir.path())), &mut out, &mut err)
            .unwrap();
        assert!(matches!(action, Action::Exit(0)));
        assert_hidden("cli out", &String::from_utf8(out).unwrap());
        assert_hidden("cli err", &String::from_utf8(err).unwrap());
    }
}

#[test]
fn error_reports_do_not_echo_a_secret() {
    #[derive(Debug, Default, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    #[serde(default, deny_unknown_fields)]
    struct Pin {
        pin: platform_config::Secret<u32>,
    }
    impl platform_config::Validate for Pin {}
    let dir = config_dir(&[]);
    let e = loader(dir.path())
        .env_vars([("APP__PIN", SECRET)])
        .set("pin", SECRET)
        .load::<Pin>()
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("pin") && text.contains("invalid secret"),
        "{text}"
    );
    assert_hidden("report", &text);
    assert_hidden("report debug", &format!("{e:?}"));
}

#[test]
fn a_secret_comes_from_a_file_named_by_env_or_key() {
    let secrets = tempfile::tempdir().unwrap();
    let file = secrets.path().join("db-password");
    std::fs::write(&file, format!("{SECRET}\n")).unwrap();

    let dir = config_dir(&[]);
    let loaded = loader(dir.path())
        .env_vars([("APP__DB__PASSWORD_FILE", file.to_str().unwrap())])
        .load::<Root>()
        .unwrap();
    assert_eq!(
        loaded.value().db.password.expose(),
        SECRET,
        "trailing newline trimmed"
    );
    assert!(
        loaded
            .origin_of("db.password")
            .to_string()
            .contains("APP__DB__PASSWORD_FILE")
    );
    assert_hidden("render", &loaded.render());

    let dir = config_dir(&[(
        "default.toml",
        &format!("[db]\npassword_file = {:?}\n", file.to_str().unwrap()),
    )]);
    let loaded = loader(dir.path()).load::<Root>().unwrap();
    assert_eq!(loaded.value().db.password.expose(), SECRET);

    let e = loader(dir.path())
        .env_vars([("APP__DB__PASSWORD_FILE", "/nonexistent/secret")])
        .load::<Root>()
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("APP__DB__PASSWORD_FILE") && text.contains("/nonexistent/secret"),
        "{text}"
    );
}
