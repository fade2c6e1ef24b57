//! The demo (the README's first command) runs by itself, shows the platform
//! doing its work, and leaves nothing running.

use std::process::Command;
use std::time::Duration;

const DEMO: &str = env!("CARGO_BIN_EXE_demo");

/// Runs the demo with `args`, its report as JSON and its logs in a temp
/// dir; it must exit 0. The dir (logs in `logs/`), stdout and the report.
fn run_demo(args: &[&str]) -> (tempfile::TempDir, String, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let report_path = dir.path().join("report.json");
    let out = Command::new(DEMO)
        .args(args)
        .arg("--report-json")
        .arg(&report_path)
        .arg("--log-dir")
        .arg(dir.path().join("logs"))
        .env_remove("APP_PROFILE")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let report = serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    (dir, stdout, report)
}

#[test]
fn demo_serves_orders_spreads_load_away_from_the_slow_instance_and_stops_cleanly() {
    let (dir, stdout, report) = run_demo(&["--duration", "8s", "--rate", "100"]);

    // A status line a second, then the report.
    let status_lines = stdout.lines().filter(|l| l.contains(" answers ")).count();
    assert!((6..=9).contains(&status_lines), "{stdout}");
    assert!(stdout.contains("Report after"), "{stdout}");
    let rate = report["success_rate"].as_f64().unwrap();
    // The flaky instance fails a quarter of what it gets: retries within
    // the budget and ejection hide it from callers.
    assert!(rate >= 0.98, "success rate {rate}: {report:#}");
    assert!(report["sent"].as_u64().unwrap() >= 700, "{report:#}");
    assert!(
        report["orders"]["retries"].as_u64().unwrap() > 0,
        "{report:#}"
    );
    assert_eq!(report["stopped_cleanly"], true, "{report:#}");

    let requests = |name: &str| {
        report["instances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {report:#}"))["requests"]
            .as_u64()
            .unwrap()
    };
    let (healthy, slow, flaky) = (
        requests("inventory-healthy"),
        requests("inventory-slow"),
        requests("inventory-flaky"),
    );
    assert!(slow > 0, "every instance gets some traffic: {report:#}");
    assert!(
        slow < healthy && slow < flaky,
        "the balancer sends the least to the slow instance: {report:#}"
    );

    // Nothing left listening: every admin port printed at start is closed.
    let admin_ports: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.split("admin http://").nth(1))
        .filter_map(|rest| rest.split('/').next())
        .collect();
    assert_eq!(admin_ports.len(), 4, "{stdout}");
    for addr in admin_ports {
        let connected =
            std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(1));
        assert!(connected.is_err(), "{addr} still accepts connections");
    }
    // The logs stayed out of the report and are where it says.
    assert!(dir.path().join("logs/orders.log").exists());
    assert!(!stdout.contains("\"level\""), "{stdout}");
}

/// `--overload`: three times what inventory can take. The platform sheds
/// what cannot be served at once, as overloaded 503s, instead of queueing
/// it past the callers' deadlines: orders keep being created at about what
/// inventory can do, and everything stops cleanly.
#[test]
fn the_overload_scene_sheds_load_and_keeps_serving() {
    let (_dir, stdout, report) = run_demo(&["--overload", "--duration", "6s"]);
    assert!(stdout.contains("  overload "), "{stdout}");
    let seconds = report["seconds"].as_f64().unwrap();
    let goodput = report["ok"].as_u64().unwrap() as f64 / seconds;
    // Inventory takes about 250 orders a second; a debug build on a busy
    // machine less. Well above nothing, and never the whole offered load.
    assert!(goodput >= 50.0, "goodput {goodput}: {report:#}");
    let refused = report["orders"]["refused_overloaded"].as_u64().unwrap()
        + report["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["refused_overloaded"].as_u64().unwrap())
            .sum::<u64>();
    assert!(refused > 0, "{report:#}");
    assert!(report["p99_ms"].as_f64().unwrap() < 1000.0, "{report:#}");
    assert_eq!(report["stopped_cleanly"], true, "{report:#}");
}

/// `--grpc`: orders calls inventory over gRPC. The same platform work shows
/// in the same report: the flaky instance's UNAVAILABLE answers retried
/// elsewhere, the slow instance avoided, everything stopped cleanly.
#[test]
fn the_grpc_scene_serves_orders_over_grpc_with_the_same_protection() {
    let (_dir, stdout, report) = run_demo(&["--grpc", "--duration", "6s", "--rate", "100"]);
    assert!(stdout.contains("over gRPC"), "{stdout}");
    let rate = report["success_rate"].as_f64().unwrap();
    assert!(rate >= 0.98, "success rate {rate}: {report:#}");
    assert!(
        report["orders"]["retries"].as_u64().unwrap() > 0,
        "{report:#}"
    );
    assert_eq!(report["stopped_cleanly"], true, "{report:#}");
    let instance = |name: &str| {
        report["instances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {report:#}"))
            .clone()
    };
    // Inventory's figures are its gRPC calls: the flaky instance's failures
    // are counted as it answered them (UNAVAILABLE).
    let flaky = instance("inventory-flaky");
    assert!(flaky["answered_503"].as_u64().unwrap() > 0, "{report:#}");
    let (healthy, slow) = (
        instance("inventory-healthy")["requests"].as_u64().unwrap(),
        instance("inventory-slow")["requests"].as_u64().unwrap(),
    );
    assert!(
        slow < healthy,
        "the balancer sends the least to the slow instance: {report:#}"
    );
}
