//! The accept loop: hyper with header limits, graceful drain, bounded tasks.

use std::future::Future;
use std::net::SocketAddr;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tower::ServiceExt;

use platform_core::settings::ServerSettings;

use super::stall::{Handling, StallWatch};

/// Hyper refuses a smaller read buffer for HTTP/1 heads.
const MIN_HEADER_BUFFER: usize = 8 * 1024;

tokio::task_local! {
    static CLIENT: ClientAddr;
}

/// The address of the client whose request is being handled: a handler
/// argument (`async fn handler(ClientAddr(addr): ClientAddr)`) or
/// [`ClientAddr::current`]. axum's `ConnectInfo` needs an entry in every
/// request's extensions, which made the map grow on each request; this is
/// known per connection instead. Like [`RequestId`](super::RequestId), it is
/// not current in tasks a handler spawns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

impl ClientAddr {
    /// The client of the connection being served, inside [`serve_listener`].
    pub fn current() -> Option<ClientAddr> {
        CLIENT.try_with(|addr| *addr).ok()
    }
}

/// Outside [`serve_listener`] the request is refused with a 500 naming the
/// cause, as axum's `ConnectInfo` does.
impl<S: Sync> axum::extract::FromRequestParts<S> for ClientAddr {
    type Rejection = (http::StatusCode, &'static str);

    async fn from_request_parts(
        _parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        ClientAddr::current().ok_or((
            http::StatusCode::INTERNAL_SERVER_ERROR,
            "no client address: the router is not served through platform_http::serve",
        ))
    }
}

/// Serves `app` on `listener` until `stop` completes, then lets open
/// connections finish their in-flight requests and returns. Dropping the
/// returned future (when the grace period is over) closes every connection.
///
/// An HTTP/1 connection that makes no progress for `header_read_timeout`
/// (a client trickling its headers, or idle between requests) is closed
/// (the docs of `server.header_read_timeout` say how); a request head larger
/// than `max_header_size` gets 431.
pub async fn serve_listener(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    settings: &ServerSettings,
    stop: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // No timer for HTTP/1: hyper would start one per request head for its
    // header read timeout; the stall watch does that job per connection.
    builder.http1().max_buf_size(
        usize::try_from(settings.max_header_size).map_or(usize::MAX, |n| n.max(MIN_HEADER_BUFFER)),
    );
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(settings.max_header_size).unwrap_or(u32::MAX));
    // Turns every handler into its route once; a router used as it is
    // would do it (and apply every layer again) on each request.
    let app: axum::Router = app.with_state(());
    let stalls = StallWatch::new(settings.header_read_timeout, settings.idle_timeout);
    // Dropped (and so aborted) when serving ends.
    let mut sweeper = tokio::task::JoinSet::new();
    sweeper.spawn(stalls.clone().run());
    let graceful = GracefulShutdown::new();
    // Owning the connection tasks: dropping this future aborts them all.
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let app = app.clone();
                let (stream, progress) = stalls.watch(stream);
                let service = hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    Handling::new(app.clone().oneshot(request), progress.request_started())
                });
                let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                let connection = graceful.watch(connection.into_owned());
                // The client's address is current for the whole connection
                // rather than put in each request's extensions: see `ClientAddr`.
                connections.spawn(CLIENT.scope(ClientAddr(peer), async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                }));
            }
        }
    }
    drop(listener);
    graceful.shutdown().await;
    while connections.join_next().await.is_some() {}
    drop(sweeper);
    Ok(())
}
