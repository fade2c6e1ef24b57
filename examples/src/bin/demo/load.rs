//! The load generator: a steady rate of orders, whatever the answers take
//! (open loop, as real callers do), and one status line a second.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::time::MissedTickBehavior;

use crate::processes::Watched;
use crate::report::Snapshot;

/// More orders than this waiting for an answer and the generator sheds the
/// next ones (and counts them) rather than queueing without bound.
const MAX_IN_FLIGHT: usize = 2_000;
/// What the load generator gives an order before it counts it as failed.
const ORDER_TIMEOUT: Duration = Duration::from_secs(5);

/// What the load generator saw.
#[derive(Debug, Default, Clone)]
pub(crate) struct LoadStats {
    /// Orders sent.
    pub(crate) sent: u64,
    /// Orders answered 201.
    pub(crate) ok: u64,
    /// Other answers, by status code.
    pub(crate) by_status: BTreeMap<u16, u64>,
    /// Orders with no answer (connection error or [`ORDER_TIMEOUT`]).
    pub(crate) no_answer: u64,
    /// Orders not sent because [`MAX_IN_FLIGHT`] were waiting.
    pub(crate) shed: u64,
    /// Latency of every answered order.
    pub(crate) latencies: Vec<Duration>,
    /// How long the load ran.
    pub(crate) elapsed: Duration,
    /// Ctrl-C ended it before its duration.
    pub(crate) interrupted: bool,
}

impl LoadStats {
    pub(crate) fn answered(&self) -> u64 {
        self.ok + self.by_status.values().sum::<u64>()
    }

    /// Share of sent orders answered 201, in percent.
    pub(crate) fn success_percent(&self) -> f64 {
        if self.sent == 0 {
            return 0.0;
        }
        self.ok as f64 * 100.0 / self.sent as f64
    }

    fn record(&mut self, outcome: Result<u16, ()>, latency: Duration) {
        match outcome {
            Ok(201) => self.ok += 1,
            Ok(status) => *self.by_status.entry(status).or_default() += 1,
            Err(()) => self.no_answer += 1,
        }
        if outcome.is_ok() {
            self.latencies.push(latency);
        }
    }
}

/// The `q` quantile (0.0..=1.0) of `latencies`, sorting them.
pub(crate) fn quantile(latencies: &mut [Duration], q: f64) -> Option<Duration> {
    if latencies.is_empty() {
        return None;
    }
    latencies.sort_unstable();
    let rank = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len());
    Some(latencies[rank - 1])
}

/// Sends `rate` orders a second to the fleet's orders for `duration`,
/// printing a status line every second; stops early on Ctrl-C.
pub(crate) async fn drive(
    orders: SocketAddr,
    watched: Vec<Watched>,
    client: &reqwest::Client,
    rate: u32,
    duration: Duration,
) -> LoadStats {
    let url = format!("http://{orders}/orders");
    let stats = Arc::new(Mutex::new(LoadStats::default()));
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let started = Instant::now();
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
    // A stall (a busy machine) is followed by the orders that were due.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
    // On a task of its own: reading the processes' figures (a stopped one
    // does not answer) must never hold up the orders.
    let status = tokio::spawn(status_lines(
        watched,
        client.clone(),
        Arc::clone(&stats),
        started,
    ));
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut interrupted = false;
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                if started.elapsed() >= duration {
                    break;
                }
                let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                    lock(&stats).shed += 1;
                    continue;
                };
                lock(&stats).sent += 1;
                let (client, url, stats) = (client.clone(), url.clone(), stats.clone());
                tokio::spawn(async move {
                    let sent = Instant::now();
                    let outcome = client
                        .post(&url)
                        .json(&serde_json::json!({"sku": "apple", "quantity": 1}))
                        .timeout(ORDER_TIMEOUT)
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                        .map_err(|_| ());
                    lock(&stats).record(outcome, sent.elapsed());
                    drop(permit);
                });
            }
            _ = &mut ctrl_c => {
                println!("Interrupted: stopping the load and the processes.");
                interrupted = true;
                break;
            }
        }
    }
    status.abort();
    // Let the orders in flight finish, within their own timeout.
    let _ = tokio::time::timeout(
        ORDER_TIMEOUT,
        in_flight.acquire_many(u32::try_from(MAX_IN_FLIGHT).unwrap_or(u32::MAX)),
    )
    .await;
    let mut done = lock(&stats).clone();
    done.elapsed = started.elapsed();
    done.interrupted = interrupted;
    done
}

/// One status line a second, from the load's figures and the processes' own.
async fn status_lines(
    watched: Vec<Watched>,
    client: reqwest::Client,
    stats: Arc<Mutex<LoadStats>>,
    started: Instant,
) {
    let mut status = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    let mut shown = ShownSoFar::default();
    loop {
        status.tick().await;
        let snapshot = Snapshot::take(&watched, &client).await;
        let line = shown.line(&stats, &snapshot, started.elapsed());
        println!("{line}");
    }
}

fn lock(stats: &Mutex<LoadStats>) -> std::sync::MutexGuard<'_, LoadStats> {
    stats.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the previous status line covered, so each line shows its own second.
#[derive(Debug, Default)]
struct ShownSoFar {
    answered: usize,
    ok: u64,
}

impl ShownSoFar {
    fn line(&mut self, stats: &Mutex<LoadStats>, snapshot: &Snapshot, elapsed: Duration) -> String {
        let (mut window, ok) = {
            let stats = lock(stats);
            let window = stats.latencies[self.answered.min(stats.latencies.len())..].to_vec();
            self.answered = stats.latencies.len();
            (window, stats.ok)
        };
        let answered = window.len();
        let ok_in_window = ok - std::mem::replace(&mut self.ok, ok);
        let percent = if answered == 0 {
            0.0
        } else {
            ok_in_window as f64 * 100.0 / answered as f64
        };
        let p50 = quantile(&mut window, 0.50);
        let p99 = quantile(&mut window, 0.99);
        format!(
            "{:>4.0}s {:>5} answers  ok {:>5.1}%  p50 {:>7}  p99 {:>7} | retries {:>4}  requeues {:>3}  hedges {:>3}  ejections {:>2}  breaker {} | traffic {}",
            elapsed.as_secs_f64(),
            answered,
            percent,
            show(p50),
            show(p99),
            snapshot.orders.retries,
            snapshot.orders.requeues,
            snapshot.orders.hedges,
            snapshot.orders.ejections,
            snapshot.orders.breaker_state,
            snapshot.traffic_shares(),
        )
    }
}

/// A latency for a human: `1.23ms`, or `-` when there is none.
pub(crate) fn show(latency: Option<Duration>) -> String {
    match latency {
        Some(d) if d >= Duration::from_secs(1) => format!("{:.2}s", d.as_secs_f64()),
        Some(d) => format!("{:.2}ms", d.as_secs_f64() * 1000.0),
        None => "-".into(),
    }
}
