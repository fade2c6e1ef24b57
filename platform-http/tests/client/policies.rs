//! Budget, breaker, outlier ejection and hedging, through the client.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::get;
use platform_core::resilience::BreakerState;
use platform_http::{Client, ClientError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{Hits, listener, serve, settings, target};

/// A server answering 503 while `failing` is set, 200 otherwise.
async fn switchable() -> (String, Hits, Arc<AtomicBool>) {
    let hits = Hits::default();
    let failing = Arc::new(AtomicBool::new(true));
    let (h, f) = (hits.clone(), failing.clone());
    let url = serve(axum::Router::new().route(
        "/",
        get(move || {
            h.bump();
            let failing = f.load(Ordering::SeqCst);
            async move {
                if failing {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::OK
                }
            }
        }),
    ))
    .await;
    (url, hits, failing)
}

/// Moves the tokio clock forward by `by` without sleeping, between requests.
async fn advance(by: Duration) {
    tokio::time::pause();
    tokio::time::advance(by).await;
    tokio::time::resume();
}

#[tokio::test]
async fn the_budget_runs_out_and_recovers() {
    let (url, hits, _) = switchable().await;
    let mut s = settings(&url);
    // Two retries per second of floor, none earned by requests, over 1s.
    s.budget.retry_ratio = 0.0;
    s.budget.min_retries_per_second = 2;
    s.budget.ttl = Duration::from_secs(1);
    let client = Client::from_settings(&target("budget"), &s).unwrap();

    let answer = |r: platform_http::Response| (r.status(), r.attempts());
    let unavailable = StatusCode::SERVICE_UNAVAILABLE;
    assert_eq!(
        answer(client.get("/").send().await.unwrap()),
        (unavailable, 3)
    );
    // No retry left in the budget: the first answer stands.
    assert_eq!(
        answer(client.get("/").send().await.unwrap()),
        (unavailable, 1)
    );
    assert_eq!(hits.get(), 4);

    // The withdrawals expire with the budget's window: retries again.
    advance(Duration::from_millis(1100)).await;
    assert_eq!(
        answer(client.get("/").send().await.unwrap()),
        (unavailable, 3)
    );
    assert_eq!(hits.get(), 7);
}

#[tokio::test]
async fn the_breaker_opens_fails_fast_and_recovers_through_one_probe() {
    let (url, hits, failing) = switchable().await;
    let mut s = settings(&url);
    s.retry.max_attempts = 1;
    s.breaker.enabled = true;
    s.breaker.consecutive_failures = 3;
    s.breaker.open_duration = Duration::from_secs(5);
    let client = Client::from_settings(&target("breaker"), &s).unwrap();
    for _ in 0..3 {
        let response = client.get("/").send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!(client.resilience().breaker().state(), BreakerState::Open);
    let err = client.get("/").send().await.unwrap_err();
    assert!(
        matches!(err, ClientError::CircuitOpen { attempts: 0, .. }),
        "{err:?}"
    );
    assert_eq!(hits.get(), 3, "an open breaker sends nothing");

    // Half-open: one probe; it fails, the breaker opens again.
    advance(Duration::from_secs(5)).await;
    assert_eq!(
        client.get("/").send().await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(hits.get(), 4);
    assert!(matches!(
        client.get("/").send().await.unwrap_err(),
        ClientError::CircuitOpen { .. }
    ));
    assert_eq!(hits.get(), 4, "one probe per half-open interval");

    // The target recovers: the next probe closes the breaker.
    failing.store(false, Ordering::SeqCst);
    advance(Duration::from_secs(5)).await;
    assert_eq!(client.get("/").send().await.unwrap().status(), 200);
    assert_eq!(client.resilience().breaker().state(), BreakerState::Closed);
    assert_eq!(client.get("/").send().await.unwrap().status(), 200);
    assert_eq!(hits.get(), 6);
}

#[tokio::test]
async fn a_failing_endpoint_is_ejected_and_comes_back() {
    let (bad, bad_hits, _) = switchable().await;
    let (good, good_hits, good_failing) = switchable().await;
    good_failing.store(false, Ordering::SeqCst);
    let mut s = settings(&bad);
    s.retry.max_attempts = 1;
    s.outlier.enabled = true;
    s.outlier.consecutive_failures = 2;
    s.outlier.base_ejection_time = Duration::from_secs(30);
    let client = Client::builder(&target("eject"), &s)
        .endpoints([bad.clone(), good.clone()])
        .build()
        .unwrap();
    // Round robin: bad, good, bad (second failure in a row: ejected), good.
    for _ in 0..4 {
        let _ = client.get("/").send().await;
    }
    assert_eq!(bad_hits.get(), 2);
    assert_eq!(
        client
            .ejected_endpoints()
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>(),
        [bad.strip_prefix("http://").unwrap()]
    );
    for _ in 0..6 {
        assert_eq!(client.get("/").send().await.unwrap().status(), 200);
    }
    assert_eq!(bad_hits.get(), 2, "no attempt reaches an ejected endpoint");
    assert_eq!(good_hits.get(), 8);

    advance(Duration::from_secs(30)).await;
    assert!(client.ejected_endpoints().is_empty());
    for _ in 0..2 {
        let _ = client.get("/").send().await;
    }
    assert_eq!(
        bad_hits.get(),
        3,
        "back in the pool after its ejection time"
    );
}

#[tokio::test]
async fn a_hedge_wins_and_the_slow_attempt_is_cancelled() {
    // Request 1 answers at once (it trains the latency estimate), request 2
    // never answers and reports when its connection is closed, request 3 answers.
    let (listener, addr) = listener().await;
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<()>();
    let closed_tx = Arc::new(std::sync::Mutex::new(Some(closed_tx)));
    let hits = Hits::default();
    let h = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let (h, closed_tx) = (h.clone(), closed_tx.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                while let Ok(n) = socket.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    if h.bump() == 2 {
                        // Hang until the client gives up on this connection.
                        while let Ok(n) = socket.read(&mut buf).await {
                            if n == 0 {
                                break;
                            }
                        }
                        if let Some(tx) = closed_tx.lock().unwrap().take() {
                            let _ = tx.send(());
                        }
                        return;
                    }
                    let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if socket.write_all(ok).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let url = format!("http://{addr}");
    let mut s = settings(&url);
    s.hedge.enabled = true;
    s.hedge.min_samples = 1;
    s.hedge.min_delay = Duration::from_millis(50);
    let client = Client::from_settings(&target("hedge"), &s).unwrap();
    assert_eq!(client.get("/").send().await.unwrap().text(), "ok");
    let response = client.get("/").send().await.unwrap();
    assert_eq!(response.text(), "ok");
    assert_eq!(response.attempts(), 2, "the hedge answered");
    tokio::time::timeout(Duration::from_secs(5), closed_rx)
        .await
        .expect("the losing attempt's connection was closed")
        .unwrap();
    assert_eq!(hits.get(), 3);
}
