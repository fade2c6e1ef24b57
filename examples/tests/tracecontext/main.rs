//! The W3C trace-context test suite (vendored under `w3c/`, see its README)
//! against the `w3c-tracecontext` example service, at strict level 2 and
//! spec level 2: every test runs, none may fail, error or be skipped.
//!
//! Needs the Python virtualenv `scripts/install-test-deps` makes at
//! `target/w3c-venv` (aiohttp); `.ci/run` and `scripts/test` run it.

#[path = "../support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use support::{Service, free_port, wait_until_listening};

/// Where `scripts/install-test-deps` puts the harness's Python.
fn python() -> PathBuf {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = workspace.join("target/w3c-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/install-test-deps",
        python.display()
    );
    python
}

#[tokio::test]
#[ignore = "needs python aiohttp; run by .ci/run"]
async fn the_w3c_trace_context_suite_passes_at_strict_level_2() {
    let python = python();
    let (api, admin, harness) = (free_port(), free_port(), free_port());
    let _service = Service::start_on(env!("CARGO_BIN_EXE_w3c-tracecontext"), api, admin, &[]);
    wait_until_listening(api).await;

    let suite = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/tracecontext/w3c");
    let started = Instant::now();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg("test.py")
            .arg(format!("http://127.0.0.1:{api}/test"))
            .current_dir(suite)
            .env("STRICT_LEVEL", "2")
            .env("SPEC_LEVEL", "2")
            // The harness listens here for the service's calls (loopback).
            .env("HARNESS_HOST", "127.0.0.1")
            .env("HARNESS_PORT", harness.to_string())
            // The vendored files stay as they were copied.
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .output()
            .expect("the harness starts")
    })
    .await
    .unwrap();
    // unittest reports on stderr.
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{report}");
    assert!(
        started.elapsed() < Duration::from_secs(300),
        "the suite took {:?}",
        started.elapsed()
    );

    let ran: u32 = report
        .lines()
        .find_map(|l| l.strip_prefix("Ran ")?.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no test ran:\n{report}"));
    // 41 at the pinned commit; fewer would mean tests went missing.
    assert!(ran >= 41, "only {ran} tests ran:\n{report}");
    assert!(
        output.status.success() && report.lines().any(|l| l == "OK"),
        "the suite failed:\n{report}"
    );
    assert!(!report.contains("skipped"), "tests were skipped:\n{report}");
}
