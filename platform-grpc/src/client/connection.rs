//! One HTTP/2 connection per endpoint, made when first needed and made
//! again once it closes.
//!
//! hyper's HTTP/2 client connection directly, not tonic's
//! `transport::Channel`: a call must know whether its request left the
//! client (a refused connection, a stream the connection never took, a
//! `REFUSED_STREAM`: sent again elsewhere at once, whatever the method) or
//! may have reached the server. tonic's channel folds both into one error
//! and puts a buffer task and a reconnect layer of its own between the
//! call and the connection; here the call owns each step.

use std::sync::Arc;
use std::time::Duration;

use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioIo, TokioTimer};
use platform_http::semconv::BoundDurations;
use tokio::net::TcpStream;

use super::body::RequestBody;

/// Pings on an idle connection find a peer that vanished without closing
/// it (a node gone, a partition) before a call waits its whole attempt
/// timeout on it.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(20);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// One endpoint's connection.
#[derive(Debug)]
pub(crate) struct Connection {
    host: String,
    /// `host:port`, for errors, events and the outlier detector.
    pub(crate) label: Arc<str>,
    /// The `:authority` of requests (`None`: not one, say a host with a
    /// character a URI cannot hold; every call to it fails).
    pub(crate) authority: Option<http::uri::Authority>,
    /// `server.address` of the semantic conventions.
    pub(crate) address: Arc<str>,
    /// `server.port`.
    pub(crate) port: u16,
    /// `rpc.client.call.duration` bound to the attribute sets of this
    /// endpoint's calls: method, status code, error type.
    pub(crate) durations: BoundDurations<(Arc<str>, u16, Option<&'static str>)>,
    connect_timeout: Duration,
    /// The live connection; the async lock makes calls that find none wait
    /// for one connect rather than each open their own.
    sender: tokio::sync::Mutex<Option<SendRequest<RequestBody>>>,
}

/// Why no connection could be made: nothing was sent.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("connect: {0}")]
    Io(#[source] std::io::Error),
    #[error("no connection within {0:?}")]
    Timeout(Duration),
    #[error("HTTP/2 handshake: {0}")]
    Handshake(#[source] hyper::Error),
}

impl ConnectError {
    /// Nothing listens there (the outlier detector ejects such an endpoint at once).
    pub(crate) fn is_refused(&self) -> bool {
        matches!(self, ConnectError::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused)
    }
}

impl Connection {
    pub(crate) fn new(
        endpoint: &platform_core::discovery::Endpoint,
        connect_timeout: Duration,
    ) -> Self {
        Connection {
            host: endpoint.host().to_owned(),
            label: Arc::from(endpoint.authority()),
            authority: endpoint.authority().parse().ok(),
            address: Arc::from(endpoint.host()),
            port: endpoint.port(),
            durations: BoundDurations::default(),
            connect_timeout,
            sender: tokio::sync::Mutex::new(None),
        }
    }

    /// A handle on the live connection, connecting first if there is none.
    pub(crate) async fn sender(&self) -> Result<SendRequest<RequestBody>, ConnectError> {
        let mut slot = self.sender.lock().await;
        if let Some(sender) = slot.as_ref()
            && !sender.is_closed()
        {
            return Ok(sender.clone());
        }
        *slot = None;
        let sender = tokio::time::timeout(self.connect_timeout, self.connect())
            .await
            .map_err(|_| ConnectError::Timeout(self.connect_timeout))??;
        *slot = Some(sender.clone());
        Ok(sender)
    }

    /// Lets the connection go if it no longer takes streams (a GOAWAY, a
    /// broken socket), so the next call connects again rather than finding
    /// it closed too.
    pub(crate) async fn forget_if_closed(&self) {
        let mut slot = self.sender.lock().await;
        if slot
            .as_ref()
            .is_some_and(|s| s.is_closed() || !s.is_ready())
        {
            *slot = None;
        }
    }

    async fn connect(&self) -> Result<SendRequest<RequestBody>, ConnectError> {
        let stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(ConnectError::Io)?;
        // Small messages must not wait for Nagle's timer.
        let _ = stream.set_nodelay(true);
        let (sender, connection) =
            hyper::client::conn::http2::Builder::new(platform_http::BoxedExecutor)
                .timer(TokioTimer::new())
                .keep_alive_interval(KEEP_ALIVE_INTERVAL)
                .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
                .handshake(TokioIo::new(stream))
                .await
                .map_err(ConnectError::Handshake)?;
        let label = Arc::clone(&self.label);
        // Runs until the server closes the connection or every handle on it
        // (the slot's and the calls' in flight) is dropped.
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(endpoint = %label, %error, "gRPC connection closed");
            }
        });
        Ok(sender)
    }
}
