//! Balancing end to end over a resolver: latency-aware spreading with concurrent requests, and
//! churn under load. Time comes from a paused tokio clock, so "slow" is exact and the tests are
//! fast.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use platform_core::balance::{BalanceSettings, Balancer, Strategy};
use platform_core::discovery::{Endpoint, ManualResolver};
use tokio::task::JoinSet;

/// Runs `workers` concurrent loops of `requests` each; a request to port 3 takes 10x longer.
/// Returns how many requests each port got.
async fn run_load(balancer: &Balancer, workers: usize, requests: usize) -> HashMap<u16, usize> {
    let counts = Arc::new(std::sync::Mutex::new(HashMap::new()));
    let mut tasks = JoinSet::new();
    for _ in 0..workers {
        let balancer = balancer.clone();
        let counts = Arc::clone(&counts);
        tasks.spawn(async move {
            for _ in 0..requests {
                let picked = balancer.pick().expect("an endpoint");
                let port = picked.endpoint().port();
                let latency = if port == 3 {
                    Duration::from_millis(100)
                } else {
                    Duration::from_millis(10)
                };
                tokio::time::sleep(latency).await;
                drop(picked);
                *counts.lock().unwrap().entry(port).or_insert(0) += 1;
            }
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap();
    }
    Arc::try_unwrap(counts).unwrap().into_inner().unwrap()
}

fn three_backends() -> ManualResolver {
    let resolver = ManualResolver::new("manual://three");
    resolver.set(
        (1..=3)
            .map(|port| Endpoint::new("127.0.0.1", port))
            .collect(),
    );
    resolver
}

#[tokio::test(start_paused = true)]
async fn p2c_sends_little_to_a_backend_ten_times_slower_and_round_robin_a_third() {
    let resolver = three_backends();
    let p2c = Balancer::new(resolver.clone(), &BalanceSettings::default()).unwrap();
    let counts = run_load(&p2c, 8, 200).await;
    let total: usize = counts.values().sum();
    let slow_share = counts.get(&3).copied().unwrap_or(0) as f64 / total as f64;
    assert!(slow_share < 0.1, "P2C slow share {slow_share}: {counts:?}");

    let settings = BalanceSettings {
        strategy: Strategy::RoundRobin,
        ..BalanceSettings::default()
    };
    let round_robin = Balancer::new(resolver.clone(), &settings).unwrap();
    let counts = run_load(&round_robin, 8, 200).await;
    let total: usize = counts.values().sum();
    let slow_share = counts[&3] as f64 / total as f64;
    assert!(
        (slow_share - 1.0 / 3.0).abs() < 0.02,
        "round robin slow share {slow_share}"
    );
}

#[tokio::test(start_paused = true)]
async fn endpoints_added_and_removed_under_load_fail_no_request() {
    for strategy in [Strategy::P2cPeakEwma, Strategy::RoundRobin] {
        let resolver = ManualResolver::new("manual://churn");
        resolver.set(vec![Endpoint::new("127.0.0.1", 1)]);
        let balancer = Balancer::new(
            resolver.clone(),
            &BalanceSettings {
                strategy,
                ..BalanceSettings::default()
            },
        )
        .unwrap();
        let failures = Arc::new(AtomicUsize::new(0));
        let served = Arc::new(AtomicUsize::new(0));
        let mut tasks = JoinSet::new();
        for _ in 0..16 {
            let balancer = balancer.clone();
            let failures = Arc::clone(&failures);
            let served = Arc::clone(&served);
            tasks.spawn(async move {
                for _ in 0..100 {
                    match balancer.pick() {
                        Ok(picked) => {
                            tokio::time::sleep(Duration::from_millis(7)).await;
                            // The guard outlives any update that removed its endpoint.
                            assert!(picked.in_flight() >= 1);
                            served.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
        // Churn: every 5 ms a different window of 1-4 endpoints, for longer than the load runs.
        let churn = tokio::spawn(async move {
            for step in 0u16..400 {
                let first = step % 7 + 1;
                let count = step % 4 + 1;
                resolver.set(
                    (first..first + count)
                        .map(|port| Endpoint::new("127.0.0.1", port))
                        .collect(),
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        while let Some(result) = tasks.join_next().await {
            result.unwrap();
        }
        churn.abort();
        assert_eq!(failures.load(Ordering::Relaxed), 0, "{strategy:?}");
        assert_eq!(served.load(Ordering::Relaxed), 1600);
    }
}
