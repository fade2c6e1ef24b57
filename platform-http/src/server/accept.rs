//! The accept loop: hyper with header limits, graceful drain, bounded tasks.

use std::future::Future;
use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tower::ServiceExt;

use platform_core::settings::ServerSettings;

/// Hyper refuses a smaller read buffer for HTTP/1 heads.
const MIN_HEADER_BUFFER: usize = 8 * 1024;

/// Serves `app` on `listener` until `stop` completes, then lets open
/// connections finish their in-flight requests and returns. Dropping the
/// returned future (when the grace period is over) closes every connection.
///
/// A client that does not send its headers within `header_read_timeout` is
/// disconnected; a request head larger than `max_header_size` gets 431.
pub async fn serve_listener(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    settings: &ServerSettings,
    stop: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .max_buf_size(
            usize::try_from(settings.max_header_size)
                .map_or(usize::MAX, |n| n.max(MIN_HEADER_BUFFER)),
        );
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(settings.max_header_size).unwrap_or(u32::MAX));
    // Turns every handler into its route once; a router used as it is
    // would do it (and apply every layer again) on each request.
    let app: axum::Router = app.with_state(());
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
                let service = hyper::service::service_fn(move |mut request: http::Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                    app.clone().oneshot(request)
                });
                let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                let connection = graceful.watch(connection.into_owned());
                connections.spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
        }
    }
    drop(listener);
    graceful.shutdown().await;
    while connections.join_next().await.is_some() {}
    Ok(())
}
