//! End-to-end scenarios: loopback servers in this process, measured side by
//! side in one run. Prints a table and writes `target/platform-bench/<name>.json`.
//!
//! ```text
//! cargo run --release -p platform-benches --bin scenarios -- [--quick] [--repeat N] [scenario ...]
//! ```
//! With no scenario named, all run. `--repeat N` runs each N times and
//! reports the minimum, median and maximum of every ratio (the JSON keeps
//! every run too).

mod churn;
mod faults;
mod flaky;
mod grpc_overhead;
mod outage;
mod overhead;
mod overload;
mod probes;
mod retry_storm;
mod server_overhead;
mod slow_backend;

use std::time::Duration;

/// How long each measurement runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    pub(crate) load: Duration,
    pub(crate) repeats: usize,
}

type Scenario = fn(Budget) -> Result<serde_json::Value, String>;

const SCENARIOS: &[(&str, Scenario)] = &[
    ("probes", probes::run),
    ("overhead", overhead::run),
    ("server-overhead", server_overhead::run),
    ("grpc-overhead", grpc_overhead::run),
    ("retry-storm", retry_storm::run),
    ("flaky", flaky::run),
    ("outage", outage::run),
    ("slow-backend", slow_backend::run),
    ("churn", churn::run),
    ("faults", faults::run),
    ("grpc-faults", faults::run_grpc),
    ("overload", overload::run),
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "profile-overhead") {
        if let Err(e) = overhead::profile(&args[1..]) {
            eprintln!("profile-overhead: {e}");
            std::process::exit(2);
        }
        return;
    }
    if args.first().is_some_and(|a| a == "profile-grpc") {
        if let Err(e) = grpc_overhead::profile(&args[1..]) {
            eprintln!("profile-grpc: {e}");
            std::process::exit(2);
        }
        return;
    }
    if args.first().is_some_and(|a| a == "serve-bench") {
        if let Err(e) = server_overhead::serve_child(&args[1..]) {
            eprintln!("serve-bench: {e}");
            std::process::exit(2);
        }
        return;
    }
    if args.first().is_some_and(|a| a == "profile-server") {
        if let Err(e) = server_overhead::profile(&args[1..]) {
            eprintln!("profile-server: {e}");
            std::process::exit(2);
        }
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let repeat = match args.iter().position(|a| a == "--repeat") {
        Some(i) => match args.get(i + 1).and_then(|n| n.parse::<usize>().ok()) {
            Some(n) if (1..=20).contains(&n) => n,
            _ => {
                eprintln!("--repeat takes a number of runs from 1 to 20");
                std::process::exit(2);
            }
        },
        None => 1,
    };
    let wanted: Vec<&str> = args
        .iter()
        .enumerate()
        // Flags, and the count after `--repeat`, are not scenario names.
        .filter(|(i, a)| !(a.starts_with("--") || (*i > 0 && args[i - 1] == "--repeat")))
        .map(|(_, a)| a.as_str())
        .collect();
    for name in &wanted {
        if !SCENARIOS.iter().any(|(n, _)| n == name) {
            let known: Vec<&str> = SCENARIOS.iter().map(|(n, _)| *n).collect();
            eprintln!("unknown scenario {name:?}; known: {}", known.join(", "));
            std::process::exit(2);
        }
    }
    let budget = if quick {
        Budget {
            load: Duration::from_secs(2),
            repeats: 5,
        }
    } else {
        Budget {
            load: Duration::from_secs(10),
            repeats: 20,
        }
    };
    let mut failed = false;
    for (name, run) in SCENARIOS {
        if !wanted.is_empty() && !wanted.contains(name) {
            continue;
        }
        let mut runs = Vec::new();
        for k in 0..repeat {
            if repeat > 1 {
                println!("\n== {name} (run {} of {repeat})", k + 1);
            } else {
                println!("\n== {name}");
            }
            match run(budget) {
                Ok(result) => runs.push(result),
                Err(e) => {
                    eprintln!("scenario {name} failed: {e}");
                    failed = true;
                    break;
                }
            }
        }
        if runs.len() < repeat {
            continue;
        }
        let result = if repeat > 1 {
            platform_benches::report::spread(runs)
        } else {
            runs.remove(0)
        };
        match platform_benches::report::write_json(name, &result) {
            Ok(path) => println!("wrote {}", path.display()),
            Err(e) => {
                eprintln!("cannot write results of {name}: {e}");
                failed = true;
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
}
