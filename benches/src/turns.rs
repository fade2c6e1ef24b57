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
