//! Request bodies kept for replay or sent once, and the response body that
//! tells the call when (and with which status) it ended.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures::FutureExt as _;
use http::HeaderMap;
use http_body::{Body as _, Frame, SizeHint};

use super::codes::Code;

/// What a call's request body turned out to be, read without waiting.
pub(crate) enum Probed {
    /// It ended within the limit: every attempt can send it again.
    Replayable(Bytes),
    /// A stream still open, or over the limit: sent once, what was read
    /// first, then the rest as it comes.
    Once(RequestBody),
}

/// Reads the frames of `body` that are ready now (a unary message is, and
/// so is a client stream made of a finished list), up to `limit` bytes.
/// Never waits: a stream whose next message is not there yet is sent once.
pub(crate) fn probe(mut body: tonic::body::Body, limit: u64) -> Result<Probed, tonic::Status> {
    // A unary message is one frame: kept as it came, no queue made for it.
    let mut first = None;
    let mut read = VecDeque::new();
    let mut len = 0u64;
    loop {
        let next = futures::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).now_or_never();
        match next {
            // Ended, all of it in hand.
            Some(None) if read.is_empty() => {
                return Ok(Probed::Replayable(first.unwrap_or_default()));
            }
            Some(None) => return Ok(Probed::Replayable(concat(first, read))),
            Some(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => {
                    len += data.len() as u64;
                    if first.is_none() && read.is_empty() {
                        first = Some(data);
                    } else {
                        read.push_back(data);
                    }
                    if len > limit {
                        return Ok(Probed::Once(RequestBody::chained(queue(first, read), body)));
                    }
                }
                // A client sends no trailers; one that did is sent as it is.
                Err(frame) => {
                    let trailers = frame.into_trailers().ok();
                    return Ok(Probed::Once(RequestBody::Chained(Box::new(Chained {
                        read: queue(first, read),
                        trailers,
                        rest: None,
                    }))));
                }
            },
            // tonic's encoder failed (a message over its own limit): nothing was sent.
            Some(Some(Err(status))) => return Err(status),
            None => return Ok(Probed::Once(RequestBody::chained(queue(first, read), body))),
        }
    }
}

/// `first`, then `rest`, in one queue.
fn queue(first: Option<Bytes>, mut rest: VecDeque<Bytes>) -> VecDeque<Bytes> {
    if let Some(first) = first {
        rest.push_front(first);
    }
    rest
}

fn concat(first: Option<Bytes>, rest: VecDeque<Bytes>) -> Bytes {
    let parts = queue(first, rest);
    let mut all = BytesMut::with_capacity(parts.iter().map(Bytes::len).sum());
    for part in parts {
        all.extend_from_slice(&part);
    }
    all.freeze()
}

/// The body hyper sends for one attempt.
pub(crate) enum RequestBody {
    /// A buffered message (each attempt gets its own handle on the bytes).
    Full(Option<Bytes>),
    /// What was read while probing, then the rest of the caller's stream.
    /// Boxed: hyper moves the body through every task it spawns for the
    /// call, and a stream's parts would make the common unary case carry
    /// them too.
    Chained(Box<Chained>),
}

/// A stream's parts already read and the rest of it.
pub(crate) struct Chained {
    read: VecDeque<Bytes>,
    trailers: Option<HeaderMap>,
    rest: Option<tonic::body::Body>,
}

impl std::fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestBody::Full(_) => f.write_str("RequestBody::Full"),
            RequestBody::Chained(_) => f.write_str("RequestBody::Chained"),
        }
    }
}

impl RequestBody {
    fn chained(read: VecDeque<Bytes>, rest: tonic::body::Body) -> Self {
        RequestBody::Chained(Box::new(Chained {
            read,
            trailers: None,
            rest: Some(rest),
        }))
    }
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        match self.get_mut() {
            RequestBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            RequestBody::Chained(chained) => {
                let Chained {
                    read,
                    trailers,
                    rest,
                } = &mut **chained;
                if let Some(data) = read.pop_front() {
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                if let Some(trailers) = trailers.take() {
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                }
                match rest {
                    Some(rest) => Pin::new(rest).poll_frame(cx),
                    None => Poll::Ready(None),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Full(bytes) => bytes.is_none(),
            RequestBody::Chained(chained) => {
                let Chained {
                    read,
                    trailers,
                    rest,
                } = &**chained;
                read.is_empty()
                    && trailers.is_none()
                    && rest.as_ref().is_none_or(http_body::Body::is_end_stream)
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            RequestBody::Full(None) => SizeHint::with_exact(0),
            RequestBody::Chained(_) => SizeHint::default(),
        }
    }
}

/// The answer's body as tonic reads it: hyper's, streamed through, with
/// `on_end` told the call's status code when it ends (from the trailers,
/// UNKNOWN when it ends without them or fails, CANCELLED when the caller
/// drops it first). A trailers-only answer ends at once with its headers'
/// code.
pub struct ResponseBody {
    inner: Option<hyper::body::Incoming>,
    on_end: Option<Box<dyn FnOnce(Code) + Send + Sync>>,
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody").finish_non_exhaustive()
    }
}

impl ResponseBody {
    pub(crate) fn new(
        inner: hyper::body::Incoming,
        on_end: impl FnOnce(Code) + Send + Sync + 'static,
    ) -> Self {
        ResponseBody {
            inner: Some(inner),
            on_end: Some(Box::new(on_end)),
        }
    }

    /// Tells `on_end` the code now (a trailers-only answer).
    pub(crate) fn ended(mut self, code: Code) -> Self {
        self.end(code);
        self
    }

    fn end(&mut self, code: Code) {
        if let Some(on_end) = self.on_end.take() {
            on_end(code);
        }
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = std::task::ready!(Pin::new(inner).poll_frame(cx));
        match &polled {
            Some(Ok(frame)) => {
                if let Some(trailers) = frame.trailers_ref() {
                    this.end(Code::in_headers(trailers).unwrap_or(Code::UNKNOWN));
                }
            }
            Some(Err(_)) | None => this.end(Code::UNKNOWN),
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        self.inner
            .as_ref()
            .is_none_or(http_body::Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), http_body::Body::size_hint)
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        // The caller stopped reading before the end (tonic drops a unary
        // body once it has the message and trailers, so this is a stream
        // given up on).
        self.end(Code(1));
    }
}
