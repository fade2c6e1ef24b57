//! Runs the `otlp-smoke` binary as a child process with a bounded wait.

#![allow(dead_code)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) struct ChildRun {
    pub(crate) report: serde_json::Value,
    pub(crate) elapsed: Duration,
    pub(crate) stderr: String,
}

/// Runs the child; fails the test (after killing it) if it has not exited by `deadline`.
pub(crate) fn run(env: Vec<(String, String)>, args: Vec<String>, deadline: Duration) -> ChildRun {
    let (out, elapsed) = run_output(env, args, deadline);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "otlp-smoke failed: {:?}\n{stderr}",
        out.status
    );
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "bad report {e}: {}\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    ChildRun {
        report,
        elapsed,
        stderr,
    }
}

/// Runs the child and returns whatever it produced, success or not.
pub(crate) fn run_output(
    env: Vec<(String, String)>,
    args: Vec<String>,
    deadline: Duration,
) -> (std::process::Output, Duration) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_otlp-smoke"));
    cmd.args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for key in [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_SDK_DISABLED",
        "RUST_LOG",
    ] {
        cmd.env_remove(key);
    }
    cmd.envs(env);
    let start = Instant::now();
    let mut child = cmd.spawn().expect("spawn otlp-smoke");
    // Drain both pipes while it runs: a full pipe would block the child's
    // writes, which is a different test (the log writer's stalled-output one).
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = std::io::Read::read_to_end(&mut p, &mut buf);
            }
            buf
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "otlp-smoke did not exit within {deadline:?}; stderr:\n{}",
                String::from_utf8_lossy(&stderr.join().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = start.elapsed();
    let output = std::process::Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    };
    (output, elapsed)
}

/// Owned arguments from borrowed ones.
pub(crate) fn owned(env: &[(&str, &str)], args: &[&str]) -> (Vec<(String, String)>, Vec<String>) {
    (
        env.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        args.iter().map(|a| (*a).to_owned()).collect(),
    )
}

/// The same, off the async runtime (the receivers run on it).
pub(crate) async fn run_async(env: &[(&str, &str)], args: &[&str], deadline: Duration) -> ChildRun {
    let (env, args) = owned(env, args);
    tokio::task::spawn_blocking(move || run(env, args, deadline))
        .await
        .unwrap()
}
