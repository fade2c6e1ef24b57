//! Cost of one balancer pick (and the guard's completion) at 10, 100 and 1000 endpoints, for
//! P2C Peak-EWMA and round robin, and P2C with an ejection hook (which scans the endpoints to
//! decide on panic mode).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use platform_core::balance::{BalanceSettings, Balancer, Strategy};
use platform_core::discovery::{Endpoint, EndpointId, ManualResolver};

fn resolver(size: u16) -> ManualResolver {
    let resolver = ManualResolver::new("bench://balance");
    resolver.set(
        (0..size)
            .map(|i| Endpoint::new(format!("10.0.{}.{}", i / 250, i % 250 + 1), 8080))
            .collect(),
    );
    resolver
}

fn pick_cost(c: &mut Criterion) {
    let mut group = c.benchmark_group("balance_pick");
    for size in [10u16, 100, 1000] {
        let resolver = resolver(size);
        for (name, strategy) in [
            ("p2c_peak_ewma", Strategy::P2cPeakEwma),
            ("round_robin", Strategy::RoundRobin),
        ] {
            let settings = BalanceSettings {
                strategy,
                ..BalanceSettings::default()
            };
            let balancer = Balancer::new(resolver.clone(), &settings).expect("valid settings");
            group.bench_with_input(BenchmarkId::new(name, size), &balancer, |b, balancer| {
                b.iter(|| {
                    let picked = balancer.pick().expect("endpoints");
                    black_box(picked.endpoint().port());
                    picked.record(Duration::from_millis(5));
                });
            });
        }
        let balancer = Balancer::new(resolver.clone(), &BalanceSettings::default())
            .expect("valid settings")
            .with_ejection(|id: &EndpointId| id.as_str().starts_with("10.9."));
        group.bench_with_input(
            BenchmarkId::new("p2c_peak_ewma_with_ejection", size),
            &balancer,
            |b, balancer| {
                b.iter(|| {
                    let picked = balancer.pick().expect("endpoints");
                    black_box(picked.endpoint().port());
                    picked.record(Duration::from_millis(5));
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, pick_cost);
criterion_main!(benches);
