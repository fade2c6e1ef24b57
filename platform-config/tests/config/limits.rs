//! Bounded parsing: what a file may cost, refused with the file and the bound.

use std::time::{Duration, Instant};

use platform_config::{Limits, Problem};

use crate::settings::{Root, config_dir, loader};

fn refused(files: &[(&str, &str)]) -> String {
    let dir = config_dir(files);
    let started = Instant::now();
    let e = loader(dir.path()).load::<Root>().unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "refusing took {:?}",
        started.elapsed()
    );
    let text = e.to_string();
    assert!(
        text.contains(&files[0].0.to_string()),
        "names the file: {text}"
    );
    text
}

/// `levels` levels of ten aliases each: 10^levels leaves from a few hundred bytes.
pub(crate) fn alias_bomb(levels: usize) -> String {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..=levels {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    text
}

#[test]
fn a_yaml_alias_bomb_is_refused_in_milliseconds() {
    for levels in [6, 8, 12] {
        let text = refused(&[("default.yaml", &alias_bomb(levels))]);
        assert!(text.contains("invalid YAML"), "{text}");
    }
}

#[test]
fn deep_nesting_is_refused_in_every_format() {
    let n = 10_000;
    let (open, close) = ("[".repeat(n), "]".repeat(n));
    for (name, text) in [
        ("default.toml", format!("a = {open}1{close}\n")),
        ("default.yaml", format!("a: {open}1{close}\n")),
        ("default.json", format!("{{\"a\": {open}1{close}}}")),
    ] {
        let message = refused(&[(name, &text)]);
        assert!(message.contains(name), "{message}");
    }
    // Just under the bound is fine; one level over is not.
    // `depth` tables, one inside the other.
    let nested = |depth: usize| format!("{}1{}", "{\"a\": ".repeat(depth), "}".repeat(depth));
    let dir = config_dir(&[("default.json", &nested(64))]);
    let e = loader(dir.path()).load::<Root>().unwrap_err();
    assert!(
        !e.to_string().contains("deeper"),
        "64 levels are allowed: {e}"
    );
    let dir = config_dir(&[("default.json", &nested(65))]);
    let e = loader(dir.path()).load::<Root>().unwrap_err();
    assert!(
        e.to_string().contains("nested deeper than 64 levels"),
        "{e}"
    );
}

#[test]
fn a_file_over_the_size_limit_is_refused_before_it_is_parsed() {
    let big = format!("# {}\n", "x".repeat(2 * 1024 * 1024));
    let text = refused(&[("default.toml", &big)]);
    assert!(text.contains("over the limit of 1048576 bytes"), "{text}");
}

#[test]
fn too_many_values_are_refused_and_the_limits_can_be_changed() {
    let many: String = (0..200).map(|i| format!("k{i} = {i}\n")).collect();
    let dir = config_dir(&[("default.toml", &format!("[app.clients]\n{many}"))]);
    let e = loader(dir.path())
        .limits(Limits {
            max_values: 100,
            ..Limits::default()
        })
        .load::<Root>()
        .unwrap_err();
    assert!(e.to_string().contains("more than 100 values"), "{e}");
}

#[test]
fn yaml_and_json_syntax_errors_carry_line_and_column() {
    for (name, text, line) in [
        ("default.yaml", "server:\n  port: 80\n  bind: [x\n", 3),
        ("default.json", "{\n  \"server\": {\"port\": }\n}\n", 2),
    ] {
        let dir = config_dir(&[(name, text)]);
        let e = loader(dir.path()).load::<Root>().unwrap_err();
        let problems = &e.report().unwrap().problems;
        let found = problems.iter().find_map(|p| match p {
            Problem::Source { line, column, .. } => Some((*line, *column)),
            _ => None,
        });
        let (found_line, column) = found.unwrap_or_else(|| panic!("{e}"));
        // A parser may point at the token after the fault: within a line of it.
        let found_line = found_line.unwrap_or_else(|| panic!("no line: {e}"));
        assert!(found_line.abs_diff(line) <= 1, "{name}: {e}");
        assert!(column.is_some(), "{name}: {e}");
        assert!(
            e.to_string().contains(&format!("{name}:{found_line}:")),
            "{e}"
        );
    }
}

#[test]
fn non_finite_numbers_are_refused_from_every_source() {
    let check = |e: platform_config::ConfigError| {
        let text = e.to_string();
        assert!(
            text.contains("server.sample_ratio") && text.contains("finite"),
            "{text}"
        );
    };
    for toml in ["nan", "inf", "-inf", "+nan"] {
        let dir = config_dir(&[(
            "default.toml",
            &format!("[server]\nsample_ratio = {toml}\n"),
        )]);
        check(loader(dir.path()).load::<Root>().unwrap_err());
    }
    let dir = config_dir(&[("default.yaml", "server:\n  sample_ratio: .nan\n")]);
    check(loader(dir.path()).load::<Root>().unwrap_err());
    for text in ["NaN", "inf", "infinity", "1e999"] {
        let dir = config_dir(&[]);
        check(
            loader(dir.path())
                .env_vars([("APP__SERVER__SAMPLE_RATIO", text)])
                .load::<Root>()
                .unwrap_err(),
        );
        check(
            loader(dir.path())
                .set_arg(&format!("server.sample_ratio={text}"))
                .load::<Root>()
                .unwrap_err(),
        );
    }
}
