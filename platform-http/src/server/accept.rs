//! The accept loop: hyper with header limits, graceful drain, bounded tasks.

use std::future::Future;
use std::net::SocketAddr;

use hyper_util::rt::{TokioIo, TokioTimer};

use crate::BoxedExecutor;
use hyper_util::server::conn::auto;
use tokio_util::sync::CancellationToken;
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

/// How long a connection accepted just before the stop has to send its
/// first bytes before it is closed unread.
const FIRST_BYTES: std::time::Duration = std::time::Duration::from_secs(1);

/// What each accepted connection is served with.
struct Serving<'a> {
    builder: &'a auto::Builder<BoxedExecutor>,
    app: &'a axum::Router,
    stalls: &'a std::sync::Arc<StallWatch>,
    /// Cancelled when serving stops: connections finish what they began.
    stopping: &'a CancellationToken,
}

impl Serving<'_> {
    /// Serves one accepted connection as a task of `connections`.
    fn connection(
        &self,
        connections: &mut tokio::task::JoinSet<()>,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
    ) {
        let _ = stream.set_nodelay(true);
        let app = self.app.clone();
        let (stream, progress) = self.stalls.watch(stream);
        let started = progress.clone();
        let service =
            hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                Handling::new(app.clone().oneshot(request), started.request_started())
            });
        let connection = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let stopping = self.stopping.clone();
        // The client's address is current for the whole connection
        // rather than put in each request's extensions: see `ClientAddr`.
        connections.spawn(CLIENT.scope(ClientAddr(peer), async move {
            let mut connection = std::pin::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                () = stopping.cancelled() => {
                    // hyper-util drops a connection still telling HTTP/1
                    // from HTTP/2 when told to shut down, request unread:
                    // one accepted just before the stop gets to send first.
                    let first_bytes = async {
                        while !progress.has_read() {
                            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                        }
                    };
                    tokio::select! {
                        ended = connection.as_mut() => ended,
                        _ = tokio::time::timeout(FIRST_BYTES, first_bytes) => {
                            connection.as_mut().graceful_shutdown();
                            connection.await
                        }
                    }
                }
            };
            if let Err(e) = ended {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        }));
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
    let mut builder = auto::Builder::new(BoxedExecutor);
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
    let stopping = CancellationToken::new();
    let serving = Serving {
        builder: &builder,
        app: &app,
        stalls: &stalls,
        stopping: &stopping,
    };
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
                serving.connection(&mut connections, stream, peer);
            }
        }
    }
    // Connections the kernel completed before the stop wait in the listen
    // backlog; their clients have sent, or are sending, a request. Closing
    // the listener would reset them: take them too (a direct, non-blocking
    // accept, which the reactor's cached readiness cannot make miss one).
    stopping.cancel();
    if let Ok(backlog) = listener.into_std() {
        while let Ok((stream, peer)) = backlog.accept() {
            let stream = stream
                .set_nonblocking(true)
                .and_then(|()| tokio::net::TcpStream::from_std(stream));
            if let Ok(stream) = stream {
                serving.connection(&mut connections, stream, peer);
            }
        }
    }
    while connections.join_next().await.is_some() {}
    drop(sweeper);
    Ok(())
}
