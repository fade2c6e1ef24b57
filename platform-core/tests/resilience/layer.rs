use std::time::Duration;

use platform_core::resilience::{ResilienceError, ResilienceLayer};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

use crate::{Counter, TestError, classify, policies, quiet_settings};

fn flaky(
    calls: Counter,
    failures: u32,
) -> impl Service<String, Response = String, Error = TestError, Future: Send> + Clone + Send {
    service_fn(move |name: String| {
        let n = calls.hit();
        async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            if n <= failures {
                Err(TestError::Unavailable)
            } else {
                Ok(format!("hello {name} ({n})"))
            }
        }
    })
}

#[tokio::test(start_paused = true)]
async fn the_layer_retries_an_idempotent_tower_service() {
    let calls = Counter::default();
    let mut svc = ServiceBuilder::new()
        .layer(
            ResilienceLayer::new(policies("greeter", &quiet_settings()), classify::<String>)
                .idempotent(true),
        )
        .service(flaky(calls.clone(), 2));
    let answer = svc.ready().await.unwrap().call("ada".into()).await.unwrap();
    assert_eq!(answer, "hello ada (3)");
    assert_eq!(calls.get(), 3);
}

#[tokio::test(start_paused = true)]
async fn the_layer_does_not_repeat_non_idempotent_requests() {
    let calls = Counter::default();
    let mut svc = ServiceBuilder::new()
        .layer(ResilienceLayer::new(
            policies("greeter", &quiet_settings()),
            classify::<String>,
        ))
        .service(flaky(calls.clone(), 2));
    let err = svc
        .ready()
        .await
        .unwrap()
        .call("ada".into())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ResilienceError::NotIdempotent { attempts: 1, .. }),
        "{err:?}"
    );
    assert_eq!(calls.get(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_layer_gives_up_with_a_matchable_error() {
    let calls = Counter::default();
    let mut svc = ServiceBuilder::new()
        .layer(
            ResilienceLayer::new(policies("greeter", &quiet_settings()), classify::<String>)
                .idempotent(true),
        )
        .service(flaky(calls.clone(), 100));
    let err = svc
        .ready()
        .await
        .unwrap()
        .call("ada".into())
        .await
        .unwrap_err();
    assert_eq!(err.target(), "greeter");
    assert_eq!(err.attempts(), 3);
    assert_eq!(err.last_error(), Some(&TestError::Unavailable));
}
