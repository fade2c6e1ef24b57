//! A client whose target comes from discovery: each attempt asks the
//! balancer, so a retry can land on another endpoint, and outlier ejection
//! takes a failing endpoint out of the rotation.

use axum::http::StatusCode;
use axum::routing::get;
use platform_core::balance::Strategy;
use platform_http::Client;

use crate::{Hits, serve, settings, target};

fn counted(hits: &Hits, status: StatusCode) -> axum::Router {
    let hits = hits.clone();
    axum::Router::new().route(
        "/item",
        get(move || {
            let hits = hits.clone();
            async move {
                hits.bump();
                (status, "x")
            }
        }),
    )
}

#[tokio::test]
async fn retries_move_to_another_endpoint_and_the_failing_one_is_ejected() {
    let (bad_hits, good_hits) = (Hits::default(), Hits::default());
    let bad = serve(counted(&bad_hits, StatusCode::SERVICE_UNAVAILABLE)).await;
    let good = serve(counted(&good_hits, StatusCode::OK)).await;
    let authority = |url: &str| url.trim_start_matches("http://").to_owned();

    let mut s = settings("http://inventory");
    s.discovery = format!("static://{},{}", authority(&bad), authority(&good));
    s.balance.strategy = Strategy::RoundRobin;
    s.outlier.enabled = true;
    let client = Client::from_settings(&target("inventory"), &s).unwrap();

    for i in 0..20 {
        let r = client
            .get("/item")
            .send()
            .await
            .unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert_eq!(r.status(), 200, "request {i}");
        assert_eq!(r.endpoint(), authority(&good).as_str());
    }
    assert_eq!(good_hits.get(), 20);
    // 5 consecutive failures eject the bad endpoint; after that it sees nothing.
    assert_eq!(bad_hits.get(), 5, "ejected after 5 consecutive failures");
    assert_eq!(
        client.ejected_endpoints(),
        [std::sync::Arc::from(authority(&bad).as_str())]
    );
}

#[tokio::test]
async fn a_bad_discovery_target_is_a_config_error() {
    let mut s = settings("http://inventory");
    s.discovery = "carrier-pigeon://inventory".into();
    let e = Client::from_settings("inventory", &s).unwrap_err();
    assert!(e.to_string().contains("discovery"), "{e}");
}

#[tokio::test]
async fn endpoint_churn_never_fails_a_request() {
    use platform_core::discovery::{Endpoint, ManualResolver};
    let hits: Vec<Hits> = (0..3).map(|_| Hits::default()).collect();
    let mut endpoints = Vec::new();
    for h in &hits {
        let url = serve(counted(h, StatusCode::OK)).await;
        let (host, port) = url.trim_start_matches("http://").rsplit_once(':').unwrap();
        endpoints.push(Endpoint::new(host.to_owned(), port.parse().unwrap()));
    }
    let resolver = ManualResolver::new("churn-test");
    resolver.set(endpoints.clone());
    // No hedges: the hits below count requests exactly.
    let mut s = settings("http://inventory");
    s.hedge.enabled = false;
    let client = Client::builder(&target("churn"), &s)
        .resolver(resolver.clone())
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..50 {
                let r = client.get("/item").send().await.expect("no request fails");
                assert_eq!(r.status(), 200);
            }
        }));
    }
    // Rotate never-empty subsets while the requests run.
    for step in 0..30usize {
        let size = 1 + step % 3;
        resolver.set(
            (0..size)
                .map(|i| endpoints[(step + i) % 3].clone())
                .collect(),
        );
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(hits.iter().map(Hits::get).sum::<usize>(), 200);
    // Traffic follows the resolver: whether the churn above moved it depends
    // on scheduling, so move it here one endpoint at a time.
    for (i, endpoint) in endpoints.iter().enumerate() {
        resolver.set(vec![endpoint.clone()]);
        let before: Vec<usize> = hits.iter().map(Hits::get).collect();
        for _ in 0..5 {
            let r = client.get("/item").send().await.expect("no request fails");
            assert_eq!(r.status(), 200);
        }
        let after: Vec<usize> = hits.iter().map(Hits::get).collect();
        for j in 0..hits.len() {
            let expected = if j == i { 5 } else { 0 };
            assert_eq!(after[j] - before[j], expected, "only endpoint {i} serves");
        }
    }
}
