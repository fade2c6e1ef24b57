//! Client variants measured in turns: short rounds, one variant after
//! another in a rotating order, so that drifting machine load hits them
//! alike. One call in flight at a time, on a current-thread runtime on this
//! thread, so the thread's CPU time is the client's.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::load::thread_cpu_time;

/// What one variant's rounds measured.
#[derive(Debug, Default)]
pub struct Tally {
    /// Each call's latency.
    pub latencies: Vec<Duration>,
    /// This thread's CPU time over the calls.
    pub cpu: Duration,
    /// Calls made.
    pub requests: u64,
    /// Calls that failed.
    pub failures: u64,
}

impl Tally {
    /// CPU time per call, in microseconds.
    pub fn cpu_us_per_call(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.requests.max(1) as f64
    }
}

/// Runs `variants` variants for `slice` each per round, `repeats` rounds
/// after a first that warms connections, estimates and the allocator (not
/// counted). `call(i)` makes one call of variant `i` and says whether it
/// succeeded; it runs under `dispatch(i)`, the variant's tracing pipeline.
pub fn measure<'a, F, Fut>(
    rt: &tokio::runtime::Runtime,
    variants: usize,
    slice: Duration,
    repeats: usize,
    dispatch: impl Fn(usize) -> &'a tracing::Dispatch,
    call: F,
) -> Vec<Tally>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = bool>,
{
    let mut tallies: Vec<Tally> = (0..variants).map(|_| Tally::default()).collect();
    for round in 0..=repeats {
        for k in 0..variants {
            // Rotate the order so no variant always runs right after another.
            let i = (k + round) % variants;
            let (latencies, cpu, failures) = tracing::dispatcher::with_default(dispatch(i), || {
                rt.block_on(async {
                    let mut latencies = Vec::new();
                    let mut failures = 0u64;
                    let cpu_before = thread_cpu_time();
                    let stop = Instant::now() + slice;
                    while Instant::now() < stop {
                        let t = Instant::now();
                        if !call(i).await {
                            failures += 1;
                        }
                        latencies.push(t.elapsed());
                    }
                    let cpu = match (cpu_before, thread_cpu_time()) {
                        (Some(a), Some(b)) => b.saturating_sub(a),
                        _ => Duration::ZERO,
                    };
                    (latencies, cpu, failures)
                })
            });
            if round == 0 {
                continue;
            }
            let tally = &mut tallies[i];
            tally.requests += latencies.len() as u64;
            tally.latencies.extend(latencies);
            tally.cpu += cpu;
            tally.failures += failures;
        }
    }
    tallies
}

/// One variant's figures, for the table, the ratios and the charts.
#[derive(Debug, Clone)]
pub struct Row {
    /// The variant's name.
    pub name: &'static str,
    /// Its latencies.
    pub summary: crate::report::Summary,
    /// CPU time per call, in microseconds.
    pub cpu_us: f64,
    /// Calls that failed.
    pub failures: u64,
}

impl Row {
    /// The row of `tally` (its latencies are sorted on the way).
    pub fn of(name: &'static str, tally: &mut Tally) -> Row {
        Row {
            name,
            summary: crate::report::summarize(&mut tally.latencies),
            cpu_us: tally.cpu_us_per_call(),
            failures: tally.failures,
        }
    }

    /// p50, p99 and CPU of this row over `base`'s.
    pub fn ratios(&self, base: &Row) -> (f64, f64, f64) {
        (
            self.summary.p50_us / base.summary.p50_us,
            self.summary.p99_us / base.summary.p99_us,
            self.cpu_us / base.cpu_us,
        )
    }
}

/// Prints `rows` as a table, each with its ratios over the first; `what`
/// heads the name column.
pub fn print_table(what: &str, rows: &[Row]) {
    println!(
        "{what:<26} {:>9} {:>9} {:>11} {:>8} {:>8} {:>8} {:>6}",
        "p50 us", "p99 us", "cpu us/call", "p50 x", "p99 x", "cpu x", "fails"
    );
    for row in rows {
        let (p50, p99, cpu) = row.ratios(&rows[0]);
        println!(
            "{:<26} {:>9.1} {:>9.1} {:>11.1} {:>8.3} {:>8.3} {:>8.3} {:>6}",
            row.name,
            row.summary.p50_us,
            row.summary.p99_us,
            row.cpu_us,
            p50,
            p99,
            cpu,
            row.failures
        );
    }
}

/// Prints whether `value` is at most `target`.
pub fn check(name: &str, value: f64, target: f64) {
    println!(
        "  {name}: {value:.3} (target <= {target}) {}",
        if value <= target { "met" } else { "MISSED" }
    );
}

/// Writes `<prefix>-p50`, `-p99` and `-cpu` bar charts of `rows`.
pub fn write_charts(prefix: &str, rows: &[Row]) -> std::io::Result<()> {
    let bars = |f: fn(&Row) -> f64| {
        rows.iter()
            .map(|r| (r.name.to_owned(), f(r)))
            .collect::<Vec<_>>()
    };
    for (suffix, title, data) in [
        ("p50", "p50 latency", bars(|r| r.summary.p50_us)),
        ("p99", "p99 latency", bars(|r| r.summary.p99_us)),
        ("cpu", "client CPU per call", bars(|r| r.cpu_us)),
    ] {
        let svg = crate::plot::bar_chart(title, "us", &data, None);
        crate::plot::write_svg(&format!("{prefix}-{suffix}"), &svg)?;
    }
    Ok(())
}
