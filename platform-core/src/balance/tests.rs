use std::collections::HashMap;
use std::sync::atomic::AtomicBool;

use super::*;
use crate::discovery::ManualResolver;

fn endpoints(ports: &[u16]) -> Vec<Endpoint> {
    ports
        .iter()
        .map(|port| Endpoint::new("10.0.0.1", *port))
        .collect()
}

fn balancer(resolver: &ManualResolver, strategy: Strategy) -> Balancer {
    Balancer::new(
        resolver.clone(),
        &BalanceSettings {
            strategy,
            ..BalanceSettings::default()
        },
    )
    .unwrap()
}

fn shares(
    balancer: &Balancer,
    picks: usize,
    latency: impl Fn(u16) -> Duration,
) -> HashMap<u16, usize> {
    let mut counts = HashMap::new();
    for _ in 0..picks {
        let picked = balancer.pick().unwrap();
        let port = picked.endpoint().port();
        *counts.entry(port).or_default() += 1;
        picked.record(latency(port));
    }
    counts
}

#[tokio::test(start_paused = true)]
async fn p2c_steers_away_from_a_slow_endpoint() {
    let resolver = ManualResolver::new("manual://p2c");
    resolver.set(endpoints(&[1, 2, 3]));
    let balancer = balancer(&resolver, Strategy::P2cPeakEwma);
    let latency = |port| {
        if port == 3 {
            Duration::from_millis(300)
        } else {
            Duration::from_millis(10)
        }
    };
    shares(&balancer, 100, latency);
    let counts = shares(&balancer, 3000, latency);
    let slow = counts.get(&3).copied().unwrap_or(0);
    assert!(slow < 30, "slow endpoint got {slow} of 3000: {counts:?}");

    let rr = balancer_with(&resolver, Strategy::RoundRobin);
    let counts = shares(&rr, 3000, latency);
    assert_eq!(counts[&3], 1000, "round robin ignores latency");
}

fn balancer_with(resolver: &ManualResolver, strategy: Strategy) -> Balancer {
    balancer(resolver, strategy)
}

#[tokio::test(start_paused = true)]
async fn requests_in_flight_count_against_an_endpoint() {
    let resolver = ManualResolver::new("manual://inflight");
    resolver.set(endpoints(&[1, 2]));
    let balancer = balancer(&resolver, Strategy::P2cPeakEwma);
    let first = balancer.pick().unwrap();
    for _ in 0..20 {
        let second = balancer.pick().unwrap();
        assert_ne!(
            second.endpoint().port(),
            first.endpoint().port(),
            "the busy endpoint costs twice as much"
        );
        assert_eq!(second.in_flight(), 1);
    }
    assert_eq!(first.in_flight(), 1);
}

#[tokio::test(start_paused = true)]
async fn round_robin_cycles_and_honours_weights() {
    let resolver = ManualResolver::new("manual://rr");
    resolver.set(vec![
        Endpoint::new("10.0.0.1", 1).with_weight(2),
        Endpoint::new("10.0.0.1", 2),
        Endpoint::new("10.0.0.1", 3),
    ]);
    let balancer = balancer(&resolver, Strategy::RoundRobin);
    let order: Vec<u16> = (0..8)
        .map(|_| balancer.pick().unwrap().endpoint().port())
        .collect();
    assert_eq!(order, [1, 2, 3, 1, 1, 2, 3, 1]);
}

#[tokio::test(start_paused = true)]
async fn p2c_honours_weights_when_loads_are_equal() {
    let resolver = ManualResolver::new("manual://weights");
    resolver.set(vec![
        Endpoint::new("10.0.0.1", 1).with_weight(3),
        Endpoint::new("10.0.0.1", 2),
    ]);
    let balancer = balancer(&resolver, Strategy::P2cPeakEwma);
    let counts = shares(&balancer, 8000, |_| Duration::from_millis(30));
    let heavy = counts[&1] as f64 / 8000.0;
    assert!((heavy - 0.75).abs() < 0.04, "heavy share {heavy}");
}

#[tokio::test(start_paused = true)]
async fn ejected_endpoints_are_skipped_until_panic_mode() {
    for strategy in [Strategy::P2cPeakEwma, Strategy::RoundRobin] {
        let resolver = ManualResolver::new("manual://eject");
        resolver.set(endpoints(&[1, 2, 3, 4]));
        let ejected: Arc<Mutex<Vec<u16>>> = Arc::new(Mutex::new(vec![1]));
        let hook = {
            let ejected = Arc::clone(&ejected);
            move |id: &crate::discovery::EndpointId| {
                ejected
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|port| id.as_str().ends_with(&format!(":{port}")))
            }
        };
        let balancer = balancer(&resolver, strategy).with_ejection(hook);
        let counts = shares(&balancer, 400, |_| Duration::from_millis(10));
        assert!(!counts.contains_key(&1), "{strategy:?}: {counts:?}");
        assert!(!balancer.in_panic_mode());

        *ejected.lock().unwrap() = vec![1, 2];
        tokio::time::advance(Duration::from_millis(20)).await;
        let counts = shares(&balancer, 400, |_| Duration::from_millis(10));
        assert_eq!(
            counts.len(),
            2,
            "{strategy:?}: half ejected is not panic: {counts:?}"
        );

        *ejected.lock().unwrap() = vec![1, 2, 3];
        // Panic mode is re-evaluated every few milliseconds, not on every pick.
        tokio::time::advance(Duration::from_millis(20)).await;
        // Held requests: P2C prefers the endpoints it measured at 10 ms over the two it has no
        // answer from, and spreads to those as the others fill up.
        let held: Vec<Picked> = (0..400).map(|_| balancer.pick().unwrap()).collect();
        let mut counts: HashMap<u16, usize> = HashMap::new();
        for picked in &held {
            *counts.entry(picked.endpoint().port()).or_default() += 1;
        }
        drop(held);
        assert_eq!(
            counts.len(),
            4,
            "{strategy:?}: panic mode spreads over all: {counts:?}"
        );
        assert!(balancer.in_panic_mode());

        *ejected.lock().unwrap() = vec![];
        tokio::time::advance(Duration::from_millis(20)).await;
        balancer.pick().unwrap();
        assert!(!balancer.in_panic_mode());
    }
}

#[tokio::test(start_paused = true)]
async fn lower_priority_tiers_serve_only_when_the_preferred_one_cannot() {
    let resolver = ManualResolver::new("manual://tiers");
    let mut backup = Endpoint::new("10.0.0.2", 2);
    backup.priority = 10;
    resolver.set(vec![Endpoint::new("10.0.0.1", 1), backup]);
    let primary_out = Arc::new(AtomicBool::new(false));
    let hook = {
        let primary_out = Arc::clone(&primary_out);
        move |id: &crate::discovery::EndpointId| {
            id.as_str() == "10.0.0.1:1" && primary_out.load(Ordering::Relaxed)
        }
    };
    let balancer = balancer(&resolver, Strategy::P2cPeakEwma).with_ejection(hook);
    assert!((0..50).all(|_| balancer.pick().unwrap().endpoint().port() == 1));
    primary_out.store(true, Ordering::Relaxed);
    assert!((0..50).all(|_| balancer.pick().unwrap().endpoint().port() == 2));
}

#[tokio::test(start_paused = true)]
async fn churn_drains_removed_endpoints_and_keeps_history_of_the_rest() {
    let resolver = ManualResolver::new("manual://churn");
    resolver.set(endpoints(&[1, 2]));
    let balancer = balancer(&resolver, Strategy::RoundRobin);
    let a = balancer.pick().unwrap();
    let b = balancer.pick().unwrap();
    let (gone, kept) = if a.endpoint().port() == 1 {
        (a, b)
    } else {
        (b, a)
    };

    resolver.set(endpoints(&[2, 3]));
    let picks: Vec<Picked> = (0..4).map(|_| balancer.pick().unwrap()).collect();
    assert!(
        picks.iter().all(|p| p.endpoint().port() != 1),
        "removed endpoint gets no new requests"
    );
    let on_kept = picks.iter().find(|p| p.endpoint().port() == 2).unwrap();
    assert_eq!(
        on_kept.in_flight(),
        3,
        "the surviving endpoint keeps its in-flight count"
    );

    // The removed endpoint's request finishes normally.
    assert_eq!(gone.endpoint().authority(), "10.0.0.1:1");
    assert_eq!(gone.in_flight(), 1);
    drop(gone);
    drop(kept);
}

#[tokio::test(start_paused = true)]
async fn no_endpoint_is_an_error_that_says_why() {
    let resolver = ManualResolver::new("manual://empty");
    let balancer = balancer(&resolver, Strategy::P2cPeakEwma);
    assert!(matches!(
        balancer.pick(),
        Err(BalanceError::NotResolved { .. })
    ));
    resolver.fail("registry unreachable");
    let error = balancer.pick().unwrap_err().to_string();
    assert!(
        error.contains("registry unreachable") && error.contains("manual://empty"),
        "{error}"
    );
    resolver.set(Vec::new());
    assert!(matches!(
        balancer.pick(),
        Err(BalanceError::NoEndpoints { .. })
    ));

    resolver.set(endpoints(&[1]));
    balancer.pick().unwrap();
    resolver.fail("registry down");
    let picked = balancer.pick().unwrap();
    assert_eq!(picked.endpoint().port(), 1, "a stale set still serves");
    assert!(balancer.endpoints().is_stale());
}

#[tokio::test(start_paused = true)]
async fn dropping_the_guard_records_the_elapsed_time() {
    let resolver = ManualResolver::new("manual://elapsed");
    resolver.set(endpoints(&[1, 2]));
    let balancer = balancer(&resolver, Strategy::P2cPeakEwma);
    // The second pick avoids the endpoint busy with the first.
    let (a, b) = (balancer.pick().unwrap(), balancer.pick().unwrap());
    let (fast, slow) = if a.endpoint().port() == 1 {
        (a, b)
    } else {
        (b, a)
    };
    assert_eq!(slow.endpoint().port(), 2);
    tokio::time::advance(Duration::from_millis(10)).await;
    drop(fast);
    tokio::time::advance(Duration::from_secs(2)).await;
    drop(slow);
    assert!(
        (0..50).all(|_| balancer.pick().unwrap().endpoint().port() == 1),
        "2 s observed on port 2, 10 ms on port 1"
    );
}

/// A client-side stall: every `every`, the calling thread is preempted for `length`, so every
/// answer arriving meanwhile is seen (and timed) only when it ends.
#[derive(Clone, Copy)]
struct Stall {
    every: Duration,
    length: Duration,
}

/// Closed-loop callers under the paused clock: each picks, waits `latency(port)`, finishes and
/// picks again until `duration` has passed. Returns the share of requests to `port`.
async fn closed_loop_share(
    balancer: &Balancer,
    callers: usize,
    duration: Duration,
    stall: Option<Stall>,
    latency: fn(u16) -> Duration,
    port: u16,
) -> f64 {
    let begin = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let balancer = balancer.clone();
            tokio::spawn(async move {
                let mut counts: HashMap<u16, usize> = HashMap::new();
                while begin.elapsed() < duration {
                    let picked = balancer.pick().unwrap();
                    let port = picked.endpoint().port();
                    *counts.entry(port).or_default() += 1;
                    tokio::time::sleep(latency(port)).await;
                    if let Some(Stall { every, length }) = stall {
                        let into = begin.elapsed().as_nanos() % every.as_nanos();
                        let into = Duration::from_nanos(into as u64);
                        if into < length {
                            tokio::time::sleep(length - into).await;
                        }
                    }
                    drop(picked);
                }
                counts
            })
        })
        .collect();
    let (mut total, mut on_port) = (0, 0);
    for task in tasks {
        for (p, n) in task.await.unwrap() {
            total += n;
            if p == port {
                on_port += n;
            }
        }
    }
    on_port as f64 / total as f64
}

/// Port 3 answers in 33 ms, ports 1 and 2 in 3.3 ms.
fn one_slow(port: u16) -> Duration {
    if port == 3 {
        Duration::from_millis(33)
    } else {
        Duration::from_micros(3300)
    }
}

#[tokio::test(start_paused = true)]
async fn p2c_learns_fast_endpoints_at_once_and_starves_a_10x_slow_one() {
    // Moderate closed-loop load from a fresh balancer: the fast endpoints must not keep looking
    // like the 30 ms default for several decay windows, or the slow one stays competitive.
    for callers in [1, 4, 8] {
        let resolver = ManualResolver::new("manual://closed-loop");
        resolver.set(endpoints(&[1, 2, 3]));
        let balancer = balancer(&resolver, Strategy::P2cPeakEwma);
        let share = closed_loop_share(
            &balancer,
            callers,
            Duration::from_secs(10),
            None,
            one_slow,
            3,
        )
        .await;
        assert!(share < 0.002, "{callers} callers: slow share {share}");
    }
}

#[tokio::test(start_paused = true)]
async fn p2c_starves_a_10x_slow_endpoint_despite_client_stalls() {
    // A stalled client times every answer in flight as slow at once; the fast endpoints must
    // not then look as slow as the idle slow one for a whole decay window.
    for (every, length) in [(1000, 16), (500, 16), (1000, 30)] {
        let resolver = ManualResolver::new("manual://stalls");
        resolver.set(endpoints(&[1, 2, 3]));
        let balancer = balancer(&resolver, Strategy::P2cPeakEwma);
        let stall = Stall {
            every: Duration::from_millis(every),
            length: Duration::from_millis(length),
        };
        let share = closed_loop_share(
            &balancer,
            4,
            Duration::from_secs(20),
            Some(stall),
            one_slow,
            3,
        )
        .await;
        assert!(
            share < 0.01,
            "{length} ms stall every {every} ms: slow share {share}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn an_endpoint_that_fails_fast_does_not_draw_traffic() {
    // Eight closed-loop callers; both endpoints answer in 1 ms, but every fourth request to
    // port 2 fails at once (a 503 in a microsecond). Counted as latencies, the failures would
    // make port 2 look fastest and give it most of the traffic.
    let resolver = ManualResolver::new("manual://fails-fast");
    resolver.set(endpoints(&[1, 2]));
    let balancer = balancer(&resolver, Strategy::P2cPeakEwma);
    let to_flaky = Arc::new(AtomicUsize::new(0));
    let begin = Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (balancer, to_flaky) = (balancer.clone(), to_flaky.clone());
            tokio::spawn(async move {
                let mut total = 0usize;
                while begin.elapsed() < Duration::from_secs(10) {
                    let picked = balancer.pick().unwrap();
                    total += 1;
                    if picked.endpoint().port() == 2
                        && to_flaky.fetch_add(1, Ordering::Relaxed) % 4 == 3
                    {
                        tokio::time::sleep(Duration::from_micros(1)).await;
                        picked.failed();
                        continue;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    drop(picked);
                }
                total
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    let share = to_flaky.load(Ordering::Relaxed) as f64 / total as f64;
    assert!(
        share < 0.5,
        "the failing endpoint drew {share:.3} of the traffic"
    );
    // Still used: its successes bring it back between failures.
    assert!(
        share > 0.05,
        "the failing endpoint drew {share:.3} of the traffic"
    );
}

#[tokio::test(start_paused = true)]
async fn failures_make_an_endpoint_look_slower_never_faster() {
    let load = Load::new(Duration::from_millis(30), Instant::now());
    let decay = 10e9;
    // Before any success a failure says nothing about speed: still untried, still idle.
    load.start(Instant::now());
    load.finish_failed(Duration::from_micros(1), Instant::now(), decay);
    assert_eq!(load.in_flight(), 0);
    assert_eq!(load.cost(Instant::now(), decay), 0.0);
    load.start(Instant::now());
    load.finish(Duration::from_millis(1), Instant::now(), decay);
    let mut last = load.estimate(Instant::now(), decay);
    for _ in 0..3 {
        load.start(Instant::now());
        load.finish_failed(Duration::from_micros(1), Instant::now(), decay);
        let now = load.estimate(Instant::now(), decay);
        assert!(now > last, "{last:?} -> {now:?}");
        last = now;
    }
}

#[tokio::test(start_paused = true)]
async fn a_retry_avoids_the_endpoints_its_call_tried_while_others_are_in_rotation() {
    for strategy in [Strategy::P2cPeakEwma, Strategy::RoundRobin] {
        let resolver = ManualResolver::new("manual://avoid");
        resolver.set(endpoints(&[1, 2, 3]));
        let ejected = |id: &crate::discovery::EndpointId| id.as_str().ends_with(":3");
        let balancer = balancer(&resolver, strategy).with_ejection(ejected);
        let port = |id: &crate::discovery::EndpointId, ports: &[u16]| {
            ports
                .iter()
                .any(|p| id.as_str().ends_with(&format!(":{p}")))
        };
        for _ in 0..100 {
            // 1 tried, 3 ejected: 2 is the one place to go.
            let picked = balancer.pick_avoiding(&|id| port(id, &[1])).unwrap();
            assert_eq!(picked.endpoint().port(), 2, "{strategy:?}");
        }
        assert!(balancer.any_other(&|id| port(id, &[1])));
        // Everything in rotation tried: an ejected endpoint is still not used,
        // the call goes back to one it tried.
        assert!(!balancer.any_other(&|id| port(id, &[1, 2])));
        for _ in 0..100 {
            let picked = balancer.pick_avoiding(&|id| port(id, &[1, 2])).unwrap();
            assert_ne!(picked.endpoint().port(), 3, "{strategy:?}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_guard_dropped_unanswered_does_not_make_a_hung_endpoint_look_fast() {
    let resolver = ManualResolver::new("manual://hung");
    resolver.set(endpoints(&[1, 2]));
    let balancer = balancer(&resolver, Strategy::P2cPeakEwma);
    // Both answer in 1 ms for a while.
    shares(&balancer, 200, |_| Duration::from_millis(1));
    // Then 1 hangs: requests sent there are given up on after 2 ms (a hedge
    // wins elsewhere), those to 2 keep answering in 1 ms.
    let mut to_hung = 0;
    for _ in 0..400 {
        let picked = balancer.pick().unwrap().abandoned_unless_ended();
        if picked.endpoint().port() == 1 {
            to_hung += 1;
            tokio::time::advance(Duration::from_millis(2)).await;
            drop(picked);
        } else {
            picked.record(Duration::from_millis(1));
        }
    }
    assert!(to_hung < 40, "{to_hung} of 400 went to the hung endpoint");
}
