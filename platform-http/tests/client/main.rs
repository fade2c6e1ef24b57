//! The resilient client against in-process servers on loopback that inject
//! each failure: 503 with and without `Retry-After`, resets, slow and
//! hanging answers, bodies cut short, refused connections.
//!
//! Clock-driven transitions (budget recovery, breaker half-open, ejection
//! expiry) pause the tokio clock only between requests and advance it: a
//! paused clock would otherwise jump ahead while a real socket is waiting.

mod deadline;
mod discovery;
mod events;
mod failures;
mod policies;
#[cfg(feature = "rustls")]
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use platform_http::ClientSettings;
use tokio::net::TcpListener;

/// Client settings for tests: fast backoff, a generous budget, breaker and
/// ejection out of the way unless a test turns them on.
pub(crate) fn settings(base_url: &str) -> ClientSettings {
    let mut s = ClientSettings {
        base_url: base_url.to_owned(),
        ..ClientSettings::default()
    };
    s.retry.base_backoff = Duration::from_millis(1);
    s.retry.max_backoff = Duration::from_millis(5);
    s.breaker.enabled = false;
    s.outlier.enabled = false;
    s
}

/// Binds a loopback listener on a free port.
pub(crate) async fn listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// Serves `router` on a free loopback port until the test's runtime ends.
pub(crate) async fn serve(router: axum::Router) -> String {
    let (listener, addr) = listener().await;
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

/// A URL whose port refuses connections: bound, never listening, for as
/// long as the returned socket lives (so no other test's server gets it).
pub(crate) async fn closed_port() -> (String, tokio::net::TcpSocket) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    (format!("http://{addr}"), socket)
}

/// A request counter shared with a handler.
#[derive(Clone, Default)]
pub(crate) struct Hits(Arc<AtomicUsize>);

impl Hits {
    pub(crate) fn bump(&self) -> usize {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }
    pub(crate) fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// A unique target name per test, so that no two tests' metrics (labelled
/// by target) mix.
pub(crate) fn target(name: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("{name}-{}", N.fetch_add(1, Ordering::SeqCst))
}

#[test]
fn send_futures_can_be_spawned() {
    fn is_send<T: Send>(_: &T) {}
    let client =
        platform_http::Client::from_settings("send-check", &settings("http://127.0.0.1:1"))
            .unwrap();
    let future = client.get("/").send();
    is_send(&future);
}
