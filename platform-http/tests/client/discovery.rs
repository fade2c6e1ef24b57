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
