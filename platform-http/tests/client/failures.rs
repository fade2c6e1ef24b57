//! Each failure, and the idempotency rules that decide whether it is retried.

use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use platform_http::{Client, ClientError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{Hits, closed_port, listener, serve, settings, target};

/// Answers `status` (with `headers`) to the first `failures` requests, then 200 "ok".
fn failing_first(
    failures: usize,
    status: StatusCode,
    headers: &[(&'static str, &'static str)],
) -> (axum::Router, Hits) {
    let hits = Hits::default();
    let h = hits.clone();
    let headers: Vec<_> = headers.to_vec();
    let handler = move || {
        let h = h.clone();
        let headers = headers.clone();
        async move {
            if h.bump() <= failures {
                let mut map = HeaderMap::new();
                for (k, v) in headers {
                    map.insert(k, v.parse().unwrap());
                }
                (status, map, "try again").into_response()
            } else {
                "ok".into_response()
            }
        }
    };
    let router = axum::Router::new()
        .route("/", get(handler.clone()).post(handler.clone()).put(handler))
        .route("/any", post(|| async { "ok" }));
    (router, hits)
}

#[tokio::test]
async fn a_503_is_retried_until_it_succeeds() {
    let (router, hits) = failing_first(2, StatusCode::SERVICE_UNAVAILABLE, &[]);
    let url = serve(router).await;
    let client = Client::from_settings(&target("retry-503"), &settings(&url)).unwrap();
    let response = client.get("/").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text(), "ok");
    assert_eq!(response.attempts(), 3);
    assert_eq!(hits.get(), 3);
}

#[tokio::test]
async fn retrying_stops_after_max_attempts_with_the_last_status() {
    let (router, hits) = failing_first(100, StatusCode::BAD_GATEWAY, &[]);
    let url = serve(router).await;
    let client = Client::from_settings(&target("exhaust"), &settings(&url)).unwrap();
    // The last answer is the call's answer; `error_for_status` makes it an error.
    let response = client.get("/").send().await.unwrap();
    assert_eq!(
        (response.status(), response.attempts()),
        (StatusCode::BAD_GATEWAY, 3)
    );
    let err = response.error_for_status().unwrap_err();
    match &err {
        ClientError::Status {
            status,
            attempts,
            body,
            endpoint,
            ..
        } => {
            assert_eq!(*status, 502);
            assert_eq!(*attempts, 3);
            assert_eq!(&body[..], b"try again");
            assert_eq!(Some(&**endpoint), url.strip_prefix("http://"));
        }
        other => panic!("expected a 502 status error, got {other:?}"),
    }
    assert_eq!(hits.get(), 3);
}

#[tokio::test]
async fn other_4xx_and_500_are_answers_not_retried() {
    for status in [
        StatusCode::NOT_FOUND,
        StatusCode::CONFLICT,
        StatusCode::INTERNAL_SERVER_ERROR,
    ] {
        let (router, hits) = failing_first(1, status, &[]);
        let url = serve(router).await;
        let client = Client::from_settings(&target("4xx"), &settings(&url)).unwrap();
        let response = client.get("/").send().await.unwrap();
        assert_eq!(response.status(), status);
        assert_eq!(hits.get(), 1);
        let err = response.error_for_status().unwrap_err();
        assert_eq!(err.status(), Some(status));
    }
    // 429 and 408 are the 4xx worth retrying.
    for status in [StatusCode::TOO_MANY_REQUESTS, StatusCode::REQUEST_TIMEOUT] {
        let (router, hits) = failing_first(1, status, &[]);
        let url = serve(router).await;
        let client = Client::from_settings(&target("429"), &settings(&url)).unwrap();
        assert_eq!(client.get("/").send().await.unwrap().status(), 200);
        assert_eq!(hits.get(), 2);
    }
}

#[tokio::test]
async fn retry_after_in_seconds_is_waited_for() {
    let (router, hits) = failing_first(1, StatusCode::SERVICE_UNAVAILABLE, &[("retry-after", "1")]);
    let url = serve(router).await;
    let client = Client::from_settings(&target("retry-after"), &settings(&url)).unwrap();
    let started = Instant::now();
    let response = client.get("/").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(hits.get(), 2);
    // The backoff alone is at most 5ms: only the server's pushback explains a second.
    assert!(started.elapsed() >= Duration::from_secs(1));
}

#[tokio::test]
async fn retry_after_beyond_the_deadline_stops_at_once() {
    let (router, hits) = failing_first(
        100,
        StatusCode::SERVICE_UNAVAILABLE,
        &[("retry-after", "Tue, 31 Dec 2999 23:59:59 GMT")],
    );
    let url = serve(router).await;
    let client = Client::from_settings(&target("pushback"), &settings(&url)).unwrap();
    let err = client
        .get("/")
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap_err();
    match err {
        ClientError::Status {
            status: StatusCode::SERVICE_UNAVAILABLE,
            attempts: 1,
            retry_after: Some(after),
            ..
        } => assert!(after > Duration::from_secs(86400 * 365)),
        other => panic!("expected the 503 to stand, got {other:?}"),
    }
    assert_eq!(hits.get(), 1);
}

#[tokio::test]
async fn garbage_retry_after_is_ignored_and_the_backoff_applies() {
    for garbage in ["soon", "-3", "1.5", "Sun, 99 Nov 1994 08:49:37 GMT", ""] {
        let (router, hits) = failing_first(
            2,
            StatusCode::SERVICE_UNAVAILABLE,
            &[("retry-after", garbage)],
        );
        let url = serve(router).await;
        let client = Client::from_settings(&target("garbage"), &settings(&url)).unwrap();
        let response = client.get("/").send().await.unwrap();
        assert_eq!(response.status(), 200, "{garbage:?}");
        assert_eq!(hits.get(), 3);
    }
}

#[tokio::test]
async fn a_post_is_not_retried_once_it_may_have_reached_the_server() {
    let (router, hits) = failing_first(1, StatusCode::SERVICE_UNAVAILABLE, &[]);
    let url = serve(router).await;
    let client = Client::from_settings(&target("post"), &settings(&url)).unwrap();
    let response = client.post("/").body("order").send().await.unwrap();
    assert_eq!(
        (response.status(), response.attempts()),
        (StatusCode::SERVICE_UNAVAILABLE, 1)
    );
    assert_eq!(hits.get(), 1);
}

#[tokio::test]
async fn a_post_with_an_idempotency_key_or_opt_in_is_retried() {
    let (router, hits) = failing_first(1, StatusCode::SERVICE_UNAVAILABLE, &[]);
    let url = serve(router).await;
    let client = Client::from_settings(&target("post-key"), &settings(&url)).unwrap();
    let response = client
        .post("/")
        .idempotency_key("order-1")
        .json(&serde_json::json!({"sku": "apple"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(hits.get(), 2);

    let (router, hits) = failing_first(1, StatusCode::SERVICE_UNAVAILABLE, &[]);
    let url = serve(router).await;
    let client = Client::from_settings(&target("post-opt-in"), &settings(&url)).unwrap();
    let response = client.post("/").idempotent(true).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(hits.get(), 2);

    // And the opposite opt-out: a GET with side effects.
    let (router, hits) = failing_first(1, StatusCode::SERVICE_UNAVAILABLE, &[]);
    let url = serve(router).await;
    let client = Client::from_settings(&target("get-opt-out"), &settings(&url)).unwrap();
    let response = client.get("/").idempotent(false).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(hits.get(), 1);
}

#[tokio::test]
async fn a_refused_connection_is_retried_whatever_the_method() {
    let (router, hits) = failing_first(0, StatusCode::OK, &[]);
    let url = serve(router).await;
    let (dead, _bound) = closed_port().await;
    let client = Client::builder(&target("refused"), &settings(&url))
        .endpoints([dead.clone(), url.clone()])
        .build()
        .unwrap();
    // Round robin starts with the dead endpoint: refused, then sent to the live one.
    let response = client.post("/any").body("order").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.attempts(), 2);
    assert_eq!(hits.get(), 0, "/any does not count");

    // All endpoints refusing: a connect error naming the endpoint.
    let client = Client::from_settings(&target("refused-all"), &settings(&dead)).unwrap();
    match client.post("/any").send().await.unwrap_err() {
        ClientError::Connect {
            attempts, endpoint, ..
        } => {
            assert_eq!(attempts, 3);
            assert_eq!(Some(&*endpoint), dead.strip_prefix("http://"));
        }
        other => panic!("expected a connect error, got {other:?}"),
    }
}

/// A streaming body is gone once its first attempt took it, even when that
/// attempt never reached a server: the call is not requeued with an empty
/// body in its place (the server would take it for the whole request).
#[tokio::test]
async fn a_streaming_body_is_not_requeued_without_it() {
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = bodies.clone();
    let router = axum::Router::new().route(
        "/upload",
        post(move |body: String| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(body);
                StatusCode::OK
            }
        }),
    );
    let url = serve(router).await;
    let (dead, _bound) = closed_port().await;
    let client = Client::builder(&target("stream-refused"), &settings(&url))
        .endpoints([dead.clone(), url.clone()])
        .build()
        .unwrap();
    // Round robin starts with the dead endpoint: refused, and with the body
    // taken there is nothing left to send elsewhere.
    let err = client
        .post("/upload")
        .streaming_body(http_body_util::Full::new(bytes::Bytes::from_static(
            b"the whole upload",
        )))
        .send()
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
    // The next call starts on the live endpoint and arrives whole.
    let sent = client
        .post("/upload")
        .streaming_body(http_body_util::Full::new(bytes::Bytes::from_static(
            b"the whole upload",
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 200);
    assert_eq!(*bodies.lock().unwrap(), ["the whole upload"]);
}

/// A raw HTTP/1.1 server: `answer(n)` gives the bytes for the n-th request
/// (1-based), or `None` to reset the connection after reading it.
async fn raw_server(answer: fn(usize) -> Option<&'static [u8]>) -> (String, Hits) {
    let (listener, addr) = listener().await;
    let hits = Hits::default();
    let h = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let h = h.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                loop {
                    let mut read = 0;
                    // Read one request head (these tests send no bodies to it).
                    loop {
                        match socket.read(&mut buf[read..]).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => read += n,
                        }
                        if buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                            break;
                        }
                    }
                    match answer(h.bump()) {
                        Some(bytes) => {
                            if socket.write_all(bytes).await.is_err() {
                                return;
                            }
                            if !bytes.ends_with(b"ok") {
                                // A body cut short: close the connection.
                                return;
                            }
                        }
                        None => {
                            // SO_LINGER 0: close with a RST.
                            let _ = socket.set_zero_linger();
                            return;
                        }
                    }
                }
            });
        }
    });
    (format!("http://{addr}"), hits)
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

#[tokio::test]
async fn a_reset_connection_is_retried_for_idempotent_requests_only() {
    let (url, hits) = raw_server(|n| if n == 1 { None } else { Some(OK) }).await;
    let client = Client::from_settings(&target("reset"), &settings(&url)).unwrap();
    let response = client.get("/").send().await.unwrap();
    assert_eq!(response.text(), "ok");
    assert_eq!(hits.get(), 2);

    let (url, hits) = raw_server(|n| if n == 1 { None } else { Some(OK) }).await;
    let client = Client::from_settings(&target("reset-post"), &settings(&url)).unwrap();
    let err = client.post("/").body("x").send().await.unwrap_err();
    assert!(
        matches!(err, ClientError::Body { attempts: 1, .. }),
        "{err:?}"
    );
    assert_eq!(hits.get(), 1);
}

#[tokio::test]
async fn a_body_cut_short_is_retried() {
    const PARTIAL: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten b";
    let (url, hits) = raw_server(|n| Some(if n == 1 { PARTIAL } else { OK })).await;
    let client = Client::from_settings(&target("partial"), &settings(&url)).unwrap();
    let response = client.get("/").send().await.unwrap();
    assert_eq!(response.text(), "ok");
    assert_eq!(hits.get(), 2);

    let (url, _) = raw_server(|_| Some(PARTIAL)).await;
    let client = Client::from_settings(&target("partial-all"), &settings(&url)).unwrap();
    let err = client.get("/").send().await.unwrap_err();
    assert!(
        matches!(err, ClientError::Body { attempts: 3, .. }),
        "{err:?}"
    );
}

fn slow_then_fast(hang: Duration) -> (axum::Router, Hits) {
    let hits = Hits::default();
    let h = hits.clone();
    let router = axum::Router::new().route(
        "/",
        get(move || {
            let h = h.clone();
            async move {
                if h.bump() == 1 {
                    tokio::time::sleep(hang).await;
                }
                "ok"
            }
        }),
    );
    (router, hits)
}

#[tokio::test]
async fn a_slow_attempt_times_out_and_is_retried() {
    let (router, hits) = slow_then_fast(Duration::from_secs(30));
    let url = serve(router).await;
    let mut s = settings(&url);
    s.attempt_timeout = Duration::from_millis(200);
    let client = Client::from_settings(&target("slow"), &s).unwrap();
    let response = client.get("/").send().await.unwrap();
    assert_eq!(response.text(), "ok");
    assert_eq!(response.attempts(), 2);
    assert_eq!(hits.get(), 2);
}

#[tokio::test]
async fn a_hanging_server_ends_in_deadline_exceeded() {
    let (router, _) = slow_then_fast(Duration::from_secs(3600));
    let url = serve(router).await;
    let client = Client::from_settings(&target("hang"), &settings(&url)).unwrap();
    let err = client
        .get("/")
        .timeout(Duration::from_millis(300))
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::DeadlineExceeded { attempts: 1, .. }),
        "{err:?}"
    );

    // Every attempt hanging past its own timeout: retried, then timed out.
    let hits = Hits::default();
    let h = hits.clone();
    let url = serve(axum::Router::new().route(
        "/",
        get(move || {
            h.bump();
            async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                "never"
            }
        }),
    ))
    .await;
    let mut s = settings(&url);
    s.attempt_timeout = Duration::from_millis(100);
    let client = Client::from_settings(&target("hang-all"), &s).unwrap();
    let err = client.get("/").send().await.unwrap_err();
    assert!(
        matches!(err, ClientError::Timeout { attempts: 3, .. }),
        "{err:?}"
    );
    assert_eq!(hits.get(), 3);
}

#[tokio::test]
async fn large_and_streaming_bodies_are_sent_once() {
    let (router, hits) = failing_first(1, StatusCode::SERVICE_UNAVAILABLE, &[]);
    let url = serve(router).await;
    let mut s = settings(&url);
    s.max_replay_body = 4;
    let client = Client::from_settings(&target("large-body"), &s).unwrap();
    let response = client
        .put("/")
        .body("more than four bytes")
        .send()
        .await
        .unwrap();
    assert_eq!(
        (response.status(), response.attempts()),
        (StatusCode::SERVICE_UNAVAILABLE, 1)
    );
    assert_eq!(hits.get(), 1);

    let (router, hits) = failing_first(1, StatusCode::SERVICE_UNAVAILABLE, &[]);
    let url = serve(router).await;
    let client = Client::from_settings(&target("stream-body"), &settings(&url)).unwrap();
    let response = client
        .put("/")
        .streaming_body(http_body_util::Full::new(bytes::Bytes::from_static(
            b"streamed",
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (response.status(), response.attempts()),
        (StatusCode::SERVICE_UNAVAILABLE, 1)
    );
    assert_eq!(hits.get(), 1);

    // A small buffered body is replayed.
    let (router, hits) = failing_first(1, StatusCode::SERVICE_UNAVAILABLE, &[]);
    let url = serve(router).await;
    let client = Client::from_settings(&target("small-body"), &settings(&url)).unwrap();
    assert_eq!(
        client.put("/").body("tiny").send().await.unwrap().status(),
        200
    );
    assert_eq!(hits.get(), 2);
}

#[tokio::test]
async fn bad_requests_fail_before_anything_is_sent() {
    let (router, hits) = failing_first(0, StatusCode::OK, &[]);
    let url = serve(router).await;
    let client = Client::from_settings(&target("bad-request"), &settings(&url)).unwrap();
    let err = client
        .get("/")
        .header("bad header", "x")
        .send()
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::InvalidRequest { .. }), "{err:?}");
    let err = client
        .get("/")
        .header("x-ok", "line\nbreak")
        .send()
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::InvalidRequest { .. }), "{err:?}");
    assert_eq!(hits.get(), 0);
    // Query parameters are encoded, JSON decoding errors are Decode.
    let echo = serve(axum::Router::new().route(
        "/q",
        get(|q: axum::extract::RawQuery| async move { q.0.unwrap_or_default() }),
    ))
    .await;
    let client = Client::from_settings(&target("query"), &settings(&echo)).unwrap();
    let response = client
        .get("/q")
        .query(&[("sku", "a b&c")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.text(), "sku=a+b%26c");
    let err = response.json::<Vec<u32>>().unwrap_err();
    assert!(matches!(err, ClientError::Decode { .. }), "{err:?}");
}

#[tokio::test]
async fn an_answer_over_the_size_limit_is_refused_not_buffered() {
    use axum::body::Body;
    let router = axum::Router::new()
        .route(
            "/sized",
            axum::routing::get(|| async { vec![b'x'; 2 << 20] }),
        )
        .route(
            "/endless",
            axum::routing::get(|| async {
                // Chunked, no Content-Length, never ending: only the limit stops it.
                let chunks = futures::stream::repeat_with(|| {
                    Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'y'; 64 * 1024]))
                });
                Body::from_stream(chunks)
            }),
        );
    let url = crate::serve(router).await;
    let mut s = crate::settings(&url);
    s.max_response_body = 1 << 20;
    let client = platform_http::Client::from_settings(&crate::target("large"), &s).unwrap();
    for path in ["/sized", "/endless"] {
        let e = client.get(path).send().await.unwrap_err();
        assert!(
            matches!(e, platform_http::ClientError::ResponseTooLarge { limit, attempts: 1, .. } if limit == 1 << 20),
            "{path}: {e:?}"
        );
        assert_eq!(e.error_type(), "response_too_large");
    }
}

#[tokio::test]
async fn a_retry_to_an_endpoint_not_yet_tried_waits_no_backoff() {
    let (bad, bad_hits) = failing_first(usize::MAX, StatusCode::SERVICE_UNAVAILABLE, &[]);
    let (good, good_hits) = failing_first(0, StatusCode::OK, &[]);
    let (bad, good) = (serve(bad).await, serve(good).await);
    let mut s = settings(&bad);
    // A backoff no test would wait out: the retry must not sleep it.
    s.retry.base_backoff = Duration::from_secs(30);
    s.retry.max_backoff = Duration::from_secs(30);
    let client = Client::builder(&target("elsewhere"), &s)
        .endpoints([bad.clone(), good.clone()])
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    // Round robin starts with the failing endpoint.
    let response = client.get("/").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.attempts(), 2);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!((bad_hits.get(), good_hits.get()), (1, 1));

    // One endpoint only: the retry goes back to it, after the backoff.
    let (flaky, _) = failing_first(1, StatusCode::SERVICE_UNAVAILABLE, &[]);
    let flaky = serve(flaky).await;
    let mut s = settings(&flaky);
    s.retry.base_backoff = Duration::from_millis(400);
    s.retry.max_backoff = Duration::from_millis(400);
    let client = Client::from_settings(&target("same-place"), &s).unwrap();
    let response = client.get("/").send().await.unwrap();
    assert_eq!(response.attempts(), 2);
}

#[tokio::test]
async fn every_answer_is_ok_and_error_for_status_turns_4xx_and_5xx_into_errors() {
    // Whatever the class, retried or not, an answer is `Ok`; `Err` means
    // no answer came (see the connect, timeout and breaker tests).
    for (status, attempts) in [
        (StatusCode::OK, 1),
        (StatusCode::NO_CONTENT, 1),
        (StatusCode::FOUND, 1),
        (StatusCode::NOT_FOUND, 1),
        (StatusCode::TOO_MANY_REQUESTS, 3),
        (StatusCode::INTERNAL_SERVER_ERROR, 1),
        (StatusCode::SERVICE_UNAVAILABLE, 3),
    ] {
        let (router, hits) = failing_first(usize::MAX, status, &[("retry-after", "0")]);
        let url = serve(router).await;
        let client = Client::from_settings(&target("classes"), &settings(&url)).unwrap();
        let response = client.get("/").send().await.unwrap();
        assert_eq!((response.status(), response.attempts()), (status, attempts));
        assert_eq!(hits.get(), attempts as usize, "{status}");
        match response.error_for_status() {
            Ok(response) => assert!(status.as_u16() < 400, "{status}: {response:?}"),
            Err(ClientError::Status {
                status: got,
                attempts: made,
                retry_after,
                ..
            }) => {
                assert!(status.as_u16() >= 400);
                assert_eq!((got, made), (status, attempts));
                assert_eq!(retry_after, Some(Duration::ZERO), "Retry-After kept");
            }
            Err(other) => panic!("{status}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_tower_http_layer_wraps_the_client_and_its_policies_still_apply() {
    use tower::{ServiceBuilder, ServiceExt as _};
    // The first answer is a 503: the retry happens inside the wrapped client.
    let hits = Hits::default();
    let h = hits.clone();
    let router = axum::Router::new().route(
        "/echo",
        post(
            move |headers: HeaderMap, query: axum::extract::RawQuery, body: String| {
                let h = h.clone();
                async move {
                    if h.bump() == 1 {
                        return (StatusCode::SERVICE_UNAVAILABLE, "busy").into_response();
                    }
                    let tag = headers.get("x-tag").map(|v| v.to_str().unwrap().to_owned());
                    format!(
                        "{} {} {body}",
                        tag.unwrap_or_default(),
                        query.0.unwrap_or_default()
                    )
                    .into_response()
                }
            },
        ),
    );
    let url = serve(router).await;
    let client = Client::from_settings(&target("tower"), &settings(&url)).unwrap();
    let service = ServiceBuilder::new()
        .layer(tower_http::set_header::SetRequestHeaderLayer::overriding(
            http::HeaderName::from_static("x-tag"),
            http::HeaderValue::from_static("layered"),
        ))
        .service(client.http_service());
    let request = || {
        http::Request::post("/echo?sku=apple")
            .header("idempotency-key", "k-1")
            .body(bytes::Bytes::from_static(b"order"))
            .unwrap()
    };
    let response = service.oneshot(request()).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(&response.body()[..], b"layered sku=apple order");
    let info = response
        .extensions()
        .get::<platform_http::CallInfo>()
        .unwrap();
    assert_eq!(
        (info.attempts, hits.get()),
        (2, 2),
        "retried inside the layer"
    );

    // The client itself is a service too, answering the platform's Response:
    // tower's own layers wrap it.
    let tagged = ServiceBuilder::new()
        .map_request(|mut request: http::Request<bytes::Bytes>| {
            request
                .headers_mut()
                .insert("x-tag", http::HeaderValue::from_static("mapped"));
            request
        })
        .service(client);
    let response = tagged.oneshot(request()).await.unwrap();
    assert_eq!(response.text(), "mapped sku=apple order");
    assert_eq!(response.attempts(), 1);
}

/// An instance over its concurrency limit says so (503, `Retry-After: 1`,
/// `x-platform-overloaded`): the call goes at once to an instance it has not
/// tried, never back to the one that refused, and with none left the 503
/// is the answer, after one attempt: retries would only add load.
#[tokio::test]
async fn an_overloaded_answer_is_retried_elsewhere_at_once_and_never_in_place() {
    let overloaded = [("retry-after", "1"), ("x-platform-overloaded", "1")];
    let (full, full_hits) = failing_first(usize::MAX, StatusCode::SERVICE_UNAVAILABLE, &overloaded);
    let (spare, spare_hits) = failing_first(0, StatusCode::OK, &[]);
    let (full, spare) = (serve(full).await, serve(spare).await);
    let client = Client::builder(&target("overloaded-pool"), &settings(&full))
        .endpoints([full.clone(), spare.clone()])
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    // Round robin starts with the full one.
    let response = client.get("/").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.attempts(), 2);
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "the Retry-After is the full instance's, not the call's"
    );
    assert_eq!((full_hits.get(), spare_hits.get()), (1, 1));

    // Every instance overloaded: one attempt, and the answer says why.
    let (only, only_hits) = failing_first(usize::MAX, StatusCode::SERVICE_UNAVAILABLE, &overloaded);
    let only = serve(only).await;
    let client = Client::from_settings(&target("overloaded-alone"), &settings(&only)).unwrap();
    let response = client.get("/").send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.attempts(), 1);
    assert_eq!(only_hits.get(), 1);
    match response.error_for_status() {
        Err(ClientError::Status { retry_after, .. }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(1)));
        }
        other => panic!("expected the 503 as a status error, got {other:?}"),
    }

    // A 503 without the mark is an ordinary retryable answer, as before.
    let (plain, plain_hits) = failing_first(1, StatusCode::SERVICE_UNAVAILABLE, &[]);
    let plain = serve(plain).await;
    let client = Client::from_settings(&target("plain-503"), &settings(&plain)).unwrap();
    assert_eq!(client.get("/").send().await.unwrap().status(), 200);
    assert_eq!(plain_hits.get(), 2);
}

/// A target that refuses every call as overloaded soon gets few of them:
/// the client refuses the rest itself, at once, with their own error, and
/// a target that merely fails (a plain 503) is not throttled.
#[tokio::test]
async fn a_target_refusing_calls_as_overloaded_is_throttled_by_the_client() {
    let overloaded = [("retry-after", "1"), ("x-platform-overloaded", "1")];
    let (full, full_hits) = failing_first(usize::MAX, StatusCode::SERVICE_UNAVAILABLE, &overloaded);
    let full = serve(full).await;
    let client = Client::from_settings(&target("throttled"), &settings(&full)).unwrap();
    let mut throttled = 0;
    for _ in 0..200 {
        match client.get("/").send().await {
            Ok(response) => assert_eq!(response.status(), 503),
            Err(ClientError::Throttled { target }) => {
                assert!(target.starts_with("throttled"));
                throttled += 1;
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        full_hits.get() + throttled,
        200,
        "one attempt or none per call"
    );
    assert!(
        full_hits.get() < 40,
        "the target got {} calls",
        full_hits.get()
    );

    let (failing, failing_hits) = failing_first(usize::MAX, StatusCode::SERVICE_UNAVAILABLE, &[]);
    let failing = serve(failing).await;
    let mut s = settings(&failing);
    s.retry.enabled = false;
    let client = Client::from_settings(&target("not-throttled"), &s).unwrap();
    for _ in 0..50 {
        assert_eq!(client.get("/").send().await.unwrap().status(), 503);
    }
    assert_eq!(failing_hits.get(), 50, "a plain 503 is no overload signal");
}

/// With `max_concurrent_calls`, a call beyond it fails at once and sends
/// nothing; a place freed is taken again.
#[tokio::test]
async fn a_full_bulkhead_refuses_a_call_at_once() {
    let hits = Hits::default();
    let counted = hits.clone();
    let slow = axum::Router::new().route(
        "/",
        get(move || {
            counted.bump();
            async {
                tokio::time::sleep(Duration::from_millis(400)).await;
                "slow"
            }
        }),
    );
    let url = serve(slow).await;
    let mut s = settings(&url);
    s.max_concurrent_calls = 2;
    let client = Client::from_settings(&target("bulkhead"), &s).unwrap();
    let busy: Vec<_> = (0..2)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.get("/").send().await })
        })
        .collect();
    while client.resilience().bulkhead().in_flight() < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    match client.get("/").send().await {
        Err(ClientError::BulkheadFull { max, .. }) => assert_eq!(max, 2),
        other => panic!("expected BulkheadFull, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "refused at once"
    );
    for call in busy {
        assert_eq!(call.await.unwrap().unwrap().status(), 200);
    }
    assert_eq!(hits.get(), 2, "the refused call sent nothing");
    assert_eq!(client.get("/").send().await.unwrap().status(), 200);
    assert_eq!(client.resilience().bulkhead().in_flight(), 0);
}
