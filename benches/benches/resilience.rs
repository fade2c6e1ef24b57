//! Cost of the resilience layer: a successful call through the policies
//! against a bare call, and the retry budget against tower's `TpsBudget`.
//!
//! `cargo bench -p platform-benches --bench resilience -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use platform_core::resilience::{
    BudgetSettings, CallOptions, Resilience, ResilienceLayer, ResilienceSettings, RetryBudget,
    RetryErrors,
};
use tower::retry::budget::{Budget as _, TpsBudget};
use tower::{Service, ServiceExt, service_fn};

async fn work(x: u64) -> Result<u64, std::io::Error> {
    Ok(black_box(x) + 1)
}

fn successful_call(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("successful_call");

    group.bench_function("bare", |b| b.to_async(&rt).iter(|| work(1)));

    let policies = Resilience::new("bench", &ResilienceSettings::default()).unwrap();
    let options = CallOptions::idempotent();
    group.bench_function("through_policy", |b| {
        b.to_async(&rt)
            .iter(|| policies.call(&RetryErrors, &options, |_| work(1)))
    });

    let mut hedging = ResilienceSettings::default();
    hedging.hedge.enabled = true;
    let hedged = Resilience::new("bench-hedged", &hedging).unwrap();
    group.bench_function("through_policy_hedging_on", |b| {
        b.to_async(&rt)
            .iter(|| hedged.call(&RetryErrors, &options, |_| work(1)))
    });

    let bare_service = service_fn(work);
    group.bench_function("tower_service_bare", |b| {
        b.to_async(&rt).iter(|| bare_service.oneshot(black_box(1)))
    });
    let layered = tower::ServiceBuilder::new()
        .layer(ResilienceLayer::new(policies.clone(), RetryErrors).idempotent(true))
        .service(service_fn(work));
    group.bench_function("tower_service_layered", |b| {
        b.to_async(&rt).iter(|| {
            let mut svc = layered.clone();
            async move { svc.call(black_box(1)).await }
        })
    });
    group.finish();
}

fn budget(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    // Both read tokio's clock; enter the runtime so they see the same one.
    let _guard = rt.enter();
    let mut group = c.benchmark_group("budget");

    let ours = RetryBudget::new(&BudgetSettings::default()).unwrap();
    let tower = TpsBudget::new(std::time::Duration::from_secs(10), 10, 0.2);

    // Both budgets read the clock on every operation: the floor of their cost.
    group.bench_function("clock_read", |b| b.iter(tokio::time::Instant::now));
    group.bench_function("platform_deposit", |b| b.iter(|| ours.deposit()));
    group.bench_function("tower_tps_deposit", |b| b.iter(|| tower.deposit()));
    group.bench_function("platform_deposit_withdraw", |b| {
        b.iter(|| {
            ours.deposit();
            black_box(ours.try_withdraw())
        })
    });
    group.bench_function("tower_tps_deposit_withdraw", |b| {
        b.iter(|| {
            tower.deposit();
            black_box(tower.withdraw())
        })
    });
    // Two threads hammering one shared budget (a target called from every
    // worker thread): lock-free slots against TpsBudget's mutex.
    let ours = std::sync::Arc::new(ours);
    let tower = std::sync::Arc::new(tower);
    group.bench_function("platform_contended_2_threads", |b| {
        b.iter_custom(|iters| {
            contended(iters, &ours, |b| {
                b.deposit();
                black_box(b.try_withdraw());
            })
        })
    });
    group.bench_function("tower_tps_contended_2_threads", |b| {
        b.iter_custom(|iters| {
            contended(iters, &tower, |b| {
                b.deposit();
                black_box(b.withdraw());
            })
        })
    });
    group.finish();
}

/// Time for `iters` operations on each of two threads sharing `budget`.
fn contended<B: Send + Sync + 'static>(
    iters: u64,
    budget: &std::sync::Arc<B>,
    op: fn(&B),
) -> std::time::Duration {
    let start = std::time::Instant::now();
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let budget = budget.clone();
            std::thread::spawn(move || {
                for _ in 0..iters {
                    op(&budget);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    start.elapsed()
}

criterion_group!(benches, successful_call, budget);
criterion_main!(benches);
