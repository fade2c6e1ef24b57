//! The shape of log lines from a real process: JSON lines that parse, carry
//! level, target, message, and the trace and span ids inside a span; readable
//! text with the same ids; `RUST_LOG` directives; a clear error for a bad one.

#[path = "../support/child.rs"]
mod child;

use std::time::Duration;

use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(60);

fn run(env: &[(&str, &str)], args: &[&str]) -> child::ChildRun {
    let (env, args) = child::owned(env, args);
    child::run(env, args, DEADLINE)
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

#[test]
fn json_lines_parse_and_carry_level_target_message_and_ids() {
    let run = run(&[], &["--spans", "3", "--log-format", "json"]);
    let lines: Vec<Value> = run
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() >= 3, "{}", run.stderr);
    for line in &lines {
        for key in ["timestamp", "level", "target", "message"] {
            assert!(line[key].is_string(), "{key} missing in {line}");
        }
    }
    let in_span = lines
        .iter()
        .find(|l| l["message"] == "first round")
        .expect("the line logged inside a span");
    assert_eq!(in_span["level"], "INFO");
    assert_eq!(in_span["target"], "otlp_smoke");
    assert_eq!(in_span["span"], "smoke.child");
    assert_eq!(in_span["fields"]["order_id"], 7);
    assert!(
        is_hex(in_span["trace_id"].as_str().unwrap(), 32),
        "{in_span}"
    );
    assert!(
        is_hex(in_span["span_id"].as_str().unwrap(), 16),
        "{in_span}"
    );

    let outside = lines
        .iter()
        .find(|l| l["message"] == "smoke spans ended")
        .expect("the line logged outside any span");
    assert!(outside.get("trace_id").is_none(), "{outside}");

    // Records of the `log` crate land in the same pipeline.
    let bridged = lines
        .iter()
        .find(|l| l["message"] == "from the log crate")
        .unwrap_or_else(|| panic!("{}", run.stderr));
    assert_eq!(bridged["level"], "INFO");
}

#[test]
fn text_lines_carry_the_ids_too() {
    let run = run(&[], &["--spans", "1", "--log-format", "text"]);
    let line = run
        .stderr
        .lines()
        .find(|l| l.contains("first round"))
        .unwrap_or_else(|| panic!("{}", run.stderr));
    assert!(
        serde_json::from_str::<Value>(line).is_err(),
        "text, not JSON: {line}"
    );
    assert!(line.contains(" INFO "), "{line}");
    assert!(line.contains("otlp_smoke: first round"), "{line}");
    assert!(line.contains("order_id=7"), "{line}");
    let trace_id = line
        .split("trace_id=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    assert!(is_hex(trace_id, 32), "{line}");
}

#[test]
fn rust_log_replaces_the_configured_filter() {
    // No endpoint anywhere: nothing is exported and nothing fails.
    let default = run(&[], &["--spans", "1"]);
    assert_eq!(default.report["shutdown"], "ok");
    assert_eq!(default.report["spans_export_failed"], 0);
    assert!(
        !default.stderr.contains("\"WARN\"") && !default.stderr.contains("\"ERROR\""),
        "{}",
        default.stderr
    );
    assert!(
        !default.stderr.contains("child work"),
        "debug is off by default"
    );
    assert!(default.stderr.contains("telemetry initialised"));

    let tuned = run(&[("RUST_LOG", "warn,otlp_smoke=debug")], &["--spans", "1"]);
    assert!(tuned.stderr.contains("child work"), "{}", tuned.stderr);
    assert!(
        !tuned.stderr.contains("telemetry initialised"),
        "{}",
        tuned.stderr
    );
}

#[test]
fn a_bad_rust_log_is_a_clear_error() {
    let (env, args) = child::owned(&[("RUST_LOG", "info,orders=loud")], &["--spans", "1"]);
    let (out, _) = child::run_output(env, args, DEADLINE);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("RUST_LOG") && stderr.contains("orders=loud"),
        "{stderr}"
    );
}
