//! SIGTERM to a real service process under load: readiness turns 503 before
//! the listener closes, every request accepted before the signal completes,
//! and the process exits 0 within drain + grace.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "../support/mod.rs"]
mod support;

use support::{Service, free_port, wait_for_status};

const INVENTORY: &str = env!("CARGO_BIN_EXE_inventory");
const DRAIN: Duration = Duration::from_millis(1500);
const GRACE: Duration = Duration::from_secs(5);

// The payloads are read through Debug, in failure messages.
#[derive(Debug)]
#[allow(dead_code)]
enum Outcome {
    Ok,
    Status(u16),
    Refused,
    Broken(String),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_stream_drops_no_accepted_request() {
    let (api, admin) = (free_port(), free_port());
    let mut child = Service::start_on(
        INVENTORY,
        api,
        admin,
        &[
            &format!("shutdown.drain_delay={}ms", DRAIN.as_millis()),
            &format!("shutdown.grace_period={}s", GRACE.as_secs()),
            // Each request takes a while, so some are in flight when the listener closes.
            "app.extra_latency=200ms",
        ],
    );

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0) // a new connection per request: no keep-alive races
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let ready_url = format!("http://127.0.0.1:{admin}/readyz");
    wait_for_status(&ready_url, 200, Duration::from_secs(20)).await;

    // Four clients send requests back to back until the server refuses them (bounded).
    let started = Instant::now();
    let results: Arc<Mutex<Vec<(Duration, Outcome)>>> = Arc::default();
    let mut load = Vec::new();
    for _ in 0..4 {
        let (client, results) = (client.clone(), results.clone());
        let url = format!("http://127.0.0.1:{api}/stock/apple");
        load.push(tokio::spawn(async move {
            for _ in 0..500 {
                let sent = started.elapsed();
                let outcome = match client.get(&url).send().await {
                    Ok(r) if r.status() == 200 => Outcome::Ok,
                    Ok(r) => Outcome::Status(r.status().as_u16()),
                    Err(e) if e.is_connect() => Outcome::Refused,
                    Err(e) => Outcome::Broken(e.to_string()),
                };
                let refused = matches!(outcome, Outcome::Refused);
                results.lock().unwrap().push((sent, outcome));
                if refused {
                    return;
                }
            }
        }));
    }

    tokio::time::sleep(Duration::from_millis(600)).await;
    let signalled = started.elapsed();
    child.signal("TERM");

    // Readiness turns 503 while the API still serves.
    let mut saw_unready = None;
    while started.elapsed() < signalled + DRAIN {
        if let Ok(r) = client.get(&ready_url).send().await
            && r.status() == 503
        {
            saw_unready = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let saw_unready = saw_unready.expect("/readyz never answered 503 during the drain delay");

    for task in load {
        task.await.unwrap();
    }
    let code = child.wait_exit(DRAIN + GRACE + Duration::from_secs(3));
    assert_eq!(code, Some(0), "exit code");

    let results = results.lock().unwrap();
    let before_signal = results.iter().filter(|(t, _)| *t < signalled).count();
    assert!(before_signal > 0, "load ran before the signal");
    for (sent, outcome) in results.iter() {
        match outcome {
            Outcome::Ok => {}
            Outcome::Refused => assert!(*sent > signalled, "refused before the signal at {sent:?}"),
            other => panic!("request sent at {sent:?} (signal at {signalled:?}) ended {other:?}"),
        }
    }
    let served_after_unready = results
        .iter()
        .any(|(t, o)| *t > saw_unready && matches!(o, Outcome::Ok));
    assert!(
        served_after_unready,
        "the listener kept serving after readiness failed"
    );
}

#[tokio::test]
async fn a_second_signal_exits_at_once() {
    let (api, admin) = (free_port(), free_port());
    let mut child = Service::start_on(INVENTORY, api, admin, &["shutdown.drain_delay=60s"]);
    let ready_url = format!("http://127.0.0.1:{admin}/readyz");
    wait_for_status(&ready_url, 200, Duration::from_secs(20)).await;
    child.signal("TERM");
    wait_for_status(&ready_url, 503, Duration::from_secs(5)).await;
    child.signal("INT");
    // A second signal must not wait for the 60 s drain.
    assert_eq!(child.wait_exit(Duration::from_secs(5)), Some(130));
}
