//! `demo`: the platform at work, with nothing to install.
//!
//! ```text
//! cargo run --release -p platform-examples --bin demo            # 30 s
//! cargo run --release -p platform-examples --bin demo -- --help
//! ```
//!
//! Starts three `inventory` processes (one slow, one failing a share of its
//! requests, one healthy) and one `orders` that finds them through static
//! discovery, then drives orders with a steady load. Every second it prints
//! one status line; at the end, a report of what the platform did: retries
//! and the budget they drew on, ejections, breaker changes, and how the
//! balancer spread traffic over the instances. The processes' logs go to
//! files; the demo stops them with SIGTERM (graceful drain) and exits 0 when
//! everything went as it should.

mod fault;
mod load;
mod processes;
mod prometheus;
mod report;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use processes::{Fleet, Role};

/// The platform SDK demo: three inventory instances, one orders, load.
#[derive(Debug, Parser)]
#[command(version)]
struct DemoArgs {
    /// How long to drive load (`30s`, `2m`).
    #[arg(long, default_value = "30s", value_parser = parse_positive_duration)]
    duration: Duration,
    /// Orders per second offered to `orders` (at least 1); 200, or three
    /// times inventory's capacity with `--overload`.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    rate: Option<u32>,
    /// The overload scene: each inventory instance handles one request at a
    /// time (`app.workers = 1`) for at least 10 ms, so inventory can take
    /// about 250 orders a second, and the load is three times that unless
    /// `--rate` says otherwise. The report shows each instance's concurrency
    /// limit and refusals, and what orders' clients throttled.
    #[arg(long)]
    overload: bool,
    /// The gRPC scene: orders calls inventory over gRPC (its
    /// `app.inventory_api = "grpc"`, the same instances on the same ports)
    /// instead of its HTTP API, with the same retries, budget, balancing and
    /// ejection. The report is the same; inventory's figures are its gRPC calls.
    #[arg(long)]
    grpc: bool,
    /// Extra latency of the slow inventory instance.
    #[arg(long, default_value = "20ms", value_parser = parse_duration)]
    slow_latency: Duration,
    /// Share of requests the flaky inventory instance answers with 503.
    #[arg(long, default_value_t = 0.25)]
    failure_rate: f64,
    /// Where the processes' logs go (default: a new directory under the
    /// system's temp dir, kept after the demo so you can read them).
    #[arg(long)]
    log_dir: Option<PathBuf>,
    /// Also write the final report to this file as JSON.
    #[arg(long)]
    report_json: Option<PathBuf>,
    /// Inject a fault into inventory-healthy while the load runs, with real
    /// signals: `crash` (SIGKILL), `hang` (SIGSTOP, SIGCONT after
    /// `--fault-for`), `restart` (SIGTERM, started again after `--fault-for`).
    #[arg(long, value_enum)]
    fault: Option<fault::FaultKind>,
    /// When the fault comes, from the start of the load.
    #[arg(long, default_value = "8s", value_parser = parse_duration)]
    fault_at: Duration,
    /// How long a hang lasts, or how long a restarted instance stays down.
    #[arg(long, default_value = "12s", value_parser = parse_duration)]
    fault_for: Duration,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    platform_config::duration::parse(s).map_err(|e| e.to_string())
}

fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err("must be longer than 0s".into()),
        d => Ok(d),
    }
}

/// The first argument that makes a child process a service, not the demo.
const SERVE: &str = "__serve";

fn main() -> ExitCode {
    let mut argv = std::env::args();
    let program = argv.next().unwrap_or_else(|| "demo".into());
    let rest: Vec<String> = argv.collect();
    if rest.first().map(String::as_str) == Some(SERVE) {
        return serve(&program, &rest[1..]);
    }
    let args = DemoArgs::parse();
    if !(0.0..=1.0).contains(&args.failure_rate) {
        eprintln!("--failure-rate must be between 0.0 and 1.0");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("demo: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        // Stopped by Ctrl-C: the report was printed, the processes stopped.
        Ok(Ended {
            interrupted: true, ..
        }) => ExitCode::from(130),
        Ok(Ended {
            went_well: true, ..
        }) => ExitCode::SUCCESS,
        Ok(Ended {
            went_well: false, ..
        }) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("demo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one service in this process: the demo re-executes itself as each
/// of its services, so that `cargo run --bin demo` needs no other binary.
fn serve(program: &str, rest: &[String]) -> ExitCode {
    use platform_config::cli::ServiceArgs;
    // Stop with the demo even if it could not stop us itself (killed).
    #[cfg(target_os = "linux")]
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM));
    let Some((role, service_args)) = rest.split_first() else {
        eprintln!("{SERVE} needs a service name");
        return ExitCode::from(2);
    };
    let args = ServiceArgs::parse_from(
        std::iter::once(program).chain(service_args.iter().map(String::as_str)),
    )
    .config;
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{role}: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match role.as_str() {
        "inventory" => runtime
            .block_on(platform_examples::inventory::main(Some(args)))
            .map_err(|e| format!("{e:?}")),
        "orders" => runtime
            .block_on(platform_examples::orders::main(Some(args)))
            .map_err(|e| format!("{e:?}")),
        other => Err(format!("unknown service {other:?}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{role}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Orders a second inventory takes in the overload scene: one worker per
/// instance, 10 ms a request on the healthy and the flaky one (a quarter
/// of whose answers are made-up 503s), the slow one's latency on it:
/// 100 + 75 + 50 at the defaults, rounded.
const OVERLOAD_CAPACITY: u32 = 250;

/// The three inventory instances: healthy, slow, flaky; each with one
/// worker and at least 10 ms a request in the overload scene.
fn inventory_roles(args: &DemoArgs) -> [Role; 3] {
    let slow = platform_config::duration::format(args.slow_latency);
    let overload = |latency: Duration| -> Vec<String> {
        if args.overload {
            vec![
                "app.workers=1".into(),
                format!(
                    "app.extra_latency={}",
                    platform_config::duration::format(latency.max(Duration::from_millis(10)))
                ),
            ]
        } else if latency.is_zero() {
            Vec::new()
        } else {
            vec![format!(
                "app.extra_latency={}",
                platform_config::duration::format(latency)
            )]
        }
    };
    let with = |mut sets: Vec<String>, more: String| {
        sets.push(more);
        sets
    };
    [
        Role::inventory("inventory-healthy", "", &overload(Duration::ZERO)),
        Role::inventory(
            "inventory-slow",
            &format!("+{slow} a request"),
            &overload(args.slow_latency),
        ),
        Role::inventory(
            "inventory-flaky",
            &format!("{:.0}% answered 503 on purpose", args.failure_rate * 100.0),
            &with(
                overload(Duration::ZERO),
                format!("app.failure_rate={}", args.failure_rate),
            ),
        ),
    ]
}

/// How the demo ended.
struct Ended {
    /// Orders were served and every process stopped cleanly.
    went_well: bool,
    /// Ctrl-C cut the load short.
    interrupted: bool,
}

/// The whole demo.
async fn run(args: DemoArgs) -> Result<Ended, processes::FleetError> {
    let rate = args.rate.unwrap_or(if args.overload {
        3 * OVERLOAD_CAPACITY
    } else {
        200
    });
    let log_dir = match &args.log_dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("platform-demo-{}", std::process::id())),
    };
    let roles = inventory_roles(&args);
    println!(
        "Starting 3 inventory instances and orders (logs in {})",
        log_dir.display()
    );
    let fleet = Fleet::start(&log_dir, &roles, args.grpc).await?;
    for process in fleet.processes() {
        println!(
            "  {:<18} {:<29} api http://{}  admin http://{}/health",
            process.name, process.description, process.api, process.admin
        );
    }
    if args.grpc {
        println!("orders calls inventory over gRPC (inventory.v1.Inventory/Reserve).\n");
    }
    if args.overload {
        println!(
            "Overload: each inventory instance serves one request at a time; together they take about {OVERLOAD_CAPACITY} orders/s.\n"
        );
    }
    println!(
        "Driving {} orders/s at orders for {}; one line a second.\n",
        rate,
        platform_config::duration::format(args.duration)
    );
    if let Some(kind) = args.fault {
        println!(
            "Fault: {kind:?} of inventory-healthy at {}.\n",
            platform_config::duration::format(args.fault_at)
        );
    }
    // One connection pool for the orders and the processes' /metrics.
    let client = reqwest::Client::new();
    let mut fleet = fleet;
    let load = load::drive(
        fleet.orders().api,
        fleet.watched(),
        &client,
        rate,
        args.duration,
    );
    let (stats, injected) = match args.fault {
        None => (load.await, None),
        Some(kind) => {
            let plan = fault::Plan {
                kind,
                victim: "inventory-healthy".into(),
                at: args.fault_at,
                lasting: args.fault_for,
            };
            let (stats, (injected, restarted)) = tokio::join!(load, fault::inject(&fleet, plan));
            if let Some(process) = restarted {
                fleet.replace(process);
            }
            (stats, Some(injected))
        }
    };
    let snapshot = report::Snapshot::take(&fleet.watched(), &client).await;
    let stopped = fleet.stop().await;
    let went_well = report::print(
        &stats,
        &snapshot,
        &stopped,
        injected.as_ref(),
        &log_dir,
        args.report_json.as_deref(),
    );
    Ok(Ended {
        went_well,
        interrupted: stats.interrupted,
    })
}
