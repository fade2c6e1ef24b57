//! Stalled HTTP/1 connections, watched at a cost per connection rather
//! than per request.
//!
//! `server.header_read_timeout` protects the server from clients that open
//! a connection and trickle a request head (slowloris) or keep it idle. Hyper
//! can do this itself, but it does so per request: a boxed timer is made,
//! registered with tokio's timer wheel, removed and freed around every
//! request head, and the connection is polled once more after each
//! response. On a trivial route that was 1.7k instructions a request, more
//! than any other feature of the server layer.
//!
//! Here one task per listener sweeps its connections every quarter of the
//! timeout instead. A connection counts as making progress when a request
//! head completes, a handler is running, or response bytes are written; one
//! that makes none is closed (its next read or write fails with `TimedOut`,
//! and hyper drops it) after `header_read_timeout` when it is in the middle
//! of something (bytes of a head received, or a response not taken), and
//! after `idle_timeout` when it is idle between requests. Both limits hold
//! to within a quarter of `header_read_timeout`, the sweep's period. So a
//! client trickling a head, an idle keep-alive connection and a client that
//! stops reading its response are all cut off, while a slow handler, a long
//! upload being read and a long download being written are not. The idle
//! limit is longer than the platform client keeps idle connections, so that
//! the client never sends a request on a connection the server is closing.
//! On the request path this costs a few relaxed atomic operations on memory
//! only the connection's task writes.
//!
//! HTTP/2 connections are not watched, as before: hyper has no header
//! timeout for them, and their clients keep idle connections open on purpose.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Sweeps per timeout: a stalled connection is closed between 1 and
/// `1 + 1/SWEEPS` timeouts after its last progress.
const SWEEPS: u32 = 4;

/// The first bytes of an HTTP/2 connection (RFC 9113, section 3.4).
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// What a connection's task and the sweeping task share.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// Request heads completed plus response writes. Written only by the
    /// connection's task, so a load and a store are enough.
    events: AtomicU64,
    /// Handlers running on the connection.
    busy: AtomicU64,
    /// Bytes arrived since the last handler ended: a head has begun (or a
    /// client is sending without waiting), so the short limit applies.
    midway: AtomicBool,
    /// The last write could not go out: the client is not taking its answer.
    write_blocked: AtomicBool,
    /// HTTP/2: not watched.
    exempt: AtomicBool,
    /// Set by the sweep: the connection's next read or write fails.
    cut: AtomicBool,
    /// The connection's task, woken when the connection is cut.
    waker: AtomicWaker,
}

impl Progress {
    fn bump(counter: &AtomicU64, by: i64) {
        let now = counter.load(Ordering::Relaxed);
        counter.store(now.wrapping_add_signed(by), Ordering::Relaxed);
    }

    /// A request head arrived and its handler starts; the guard marks its end.
    pub(crate) fn request_started(self: &Arc<Self>) -> Busy {
        Self::bump(&self.events, 1);
        Self::bump(&self.busy, 1);
        Busy(self.clone())
    }

    /// The connection has sent something: a request begun or done, or
    /// HTTP/2's preface.
    pub(crate) fn has_read(&self) -> bool {
        self.midway.load(Ordering::Relaxed)
            || self.events.load(Ordering::Relaxed) > 0
            || self.exempt.load(Ordering::Relaxed)
    }

    fn write_polled(&self, blocked: bool) {
        if self.write_blocked.load(Ordering::Relaxed) != blocked {
            self.write_blocked.store(blocked, Ordering::Relaxed);
        }
    }

    fn bytes_arrived(&self) {
        if !self.midway.load(Ordering::Relaxed) {
            self.midway.store(true, Ordering::Relaxed);
        }
    }

    fn check(&self) -> io::Result<()> {
        if self.cut.load(Ordering::Relaxed) {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no request head, handler or response progress within server.header_read_timeout",
            ));
        }
        Ok(())
    }

    /// Called when the socket is not ready: the task waits on it, so the
    /// sweep must be able to wake it.
    fn waiting<T>(&self, cx: &Context<'_>, polled: Poll<T>) -> Poll<T> {
        if polled.is_pending() {
            self.waker.register(cx.waker());
            // Cut between the check and the registration: the sweep's wake
            // was missed, and the connection is no longer swept.
            if self.cut.load(Ordering::Relaxed) {
                cx.waker().wake_by_ref();
            }
        }
        polled
    }
}

/// A handler running; ends when dropped.
#[derive(Debug)]
pub(crate) struct Busy(Arc<Progress>);

impl Drop for Busy {
    fn drop(&mut self) {
        Progress::bump(&self.0.busy, -1);
        // The end of a handler is progress too: the idle time starts now.
        Progress::bump(&self.0.events, 1);
        self.0.midway.store(false, Ordering::Relaxed);
    }
}

/// The connections of one listener, swept by [`StallWatch::run`].
#[derive(Debug)]
pub(crate) struct StallWatch {
    timeout: Duration,
    /// Quiet sweeps after which an idle connection is closed.
    idle_sweeps: u32,
    connections: Mutex<Vec<Watched>>,
}

#[derive(Debug)]
struct Watched {
    progress: Weak<Progress>,
    seen: u64,
    quiet_sweeps: u32,
}

impl StallWatch {
    /// Closes connections with no progress for `timeout` in the middle of
    /// a request, and for `idle` between requests.
    pub(crate) fn new(timeout: Duration, idle: Duration) -> Arc<Self> {
        let period = Self::period(timeout);
        let idle_sweeps = idle.as_nanos().div_ceil(period.as_nanos()).max(1);
        Arc::new(StallWatch {
            timeout,
            idle_sweeps: u32::try_from(idle_sweeps).unwrap_or(u32::MAX),
            connections: Mutex::default(),
        })
    }

    fn period(timeout: Duration) -> Duration {
        (timeout / SWEEPS).max(Duration::from_millis(1))
    }

    /// Starts watching a new connection.
    pub(crate) fn watch<T>(&self, io: T) -> (WatchedIo<T>, Arc<Progress>) {
        let progress = Arc::new(Progress::default());
        self.connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Watched {
                progress: Arc::downgrade(&progress),
                seen: 0,
                quiet_sweeps: 0,
            });
        let io = WatchedIo {
            io,
            progress: progress.clone(),
            first_read: true,
        };
        (io, progress)
    }

    /// Sweeps until dropped.
    pub(crate) async fn run(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(Self::period(self.timeout));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            self.sweep();
        }
    }

    /// One pass: forgets closed and HTTP/2 connections, cuts stalled ones.
    fn sweep(&self) {
        let mut connections = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        connections.retain_mut(|watched| {
            let Some(progress) = watched.progress.upgrade() else {
                return false;
            };
            if progress.exempt.load(Ordering::Relaxed) {
                return false;
            }
            let events = progress.events.load(Ordering::Relaxed);
            if events != watched.seen || progress.busy.load(Ordering::Relaxed) != 0 {
                watched.seen = events;
                watched.quiet_sweeps = 0;
                return true;
            }
            watched.quiet_sweeps += 1;
            // Idle: nothing received since the last answer, and that answer
            // taken (its writes were the last progress the sweep saw).
            let limit = if progress.midway.load(Ordering::Relaxed)
                || progress.write_blocked.load(Ordering::Relaxed)
            {
                SWEEPS
            } else {
                self.idle_sweeps
            };
            if watched.quiet_sweeps < limit {
                return true;
            }
            tracing::debug!("closing a connection stalled for server.header_read_timeout");
            progress.cut.store(true, Ordering::Relaxed);
            progress.waker.wake();
            false
        });
    }
}

/// A connection's socket, reporting to its [`Progress`].
#[derive(Debug)]
pub(crate) struct WatchedIo<T> {
    io: T,
    progress: Arc<Progress>,
    first_read: bool,
}

impl<T: AsyncRead + Unpin> AsyncRead for WatchedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.progress.check()?;
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        let polled = self.progress.waiting(cx, polled);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.progress.bytes_arrived();
        }
        if self.first_read && matches!(polled, Poll::Ready(Ok(()))) {
            self.first_read = false;
            let read = &buf.filled()[before..];
            let n = read.len().min(HTTP2_PREFACE.len());
            if n > 0 && read[..n] == HTTP2_PREFACE[..n] {
                self.progress.exempt.store(true, Ordering::Relaxed);
            }
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WatchedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.progress.check()?;
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        let polled = self.progress.waiting(cx, polled);
        self.progress.write_polled(polled.is_pending());
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            Progress::bump(&self.progress.events, 1);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.progress.check()?;
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        let polled = self.progress.waiting(cx, polled);
        self.progress.write_polled(polled.is_pending());
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            Progress::bump(&self.progress.events, 1);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

pin_project_lite::pin_project! {
    /// A handler's future, marking the connection busy until it ends.
    pub(crate) struct Handling<F> {
        #[pin]
        future: F,
        busy: Busy,
    }
}

impl<F> Handling<F> {
    pub(crate) fn new(future: F, busy: Busy) -> Self {
        Handling { future, busy }
    }
}

impl<F: Future> Future for Handling<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.project().future.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stalled_after(watch: &StallWatch, progress: &Progress, sweeps: u32) -> bool {
        for _ in 0..sweeps {
            watch.sweep();
        }
        progress.cut.load(Ordering::Relaxed)
    }

    #[test]
    fn a_quiet_connection_is_cut_after_a_whole_timeout_of_sweeps() {
        let watch = StallWatch::new(Duration::from_secs(1), Duration::from_secs(1));
        let (_io, progress) = watch.watch(());
        assert!(!stalled_after(&watch, &progress, SWEEPS - 1));
        assert!(stalled_after(&watch, &progress, 1));
        // Forgotten once cut.
        assert!(watch.connections.lock().unwrap().is_empty());
    }

    #[test]
    fn progress_or_a_running_handler_keeps_a_connection() {
        let watch = StallWatch::new(Duration::from_secs(1), Duration::from_secs(1));
        let (_io, progress) = watch.watch(());
        for _ in 0..3 * SWEEPS {
            Progress::bump(&progress.events, 1);
            assert!(!stalled_after(&watch, &progress, SWEEPS - 1));
        }
        let busy = progress.request_started();
        assert!(
            !stalled_after(&watch, &progress, 3 * SWEEPS),
            "handler running"
        );
        drop(busy);
        // The sweep that sees the handler's end starts the quiet time.
        assert!(!stalled_after(&watch, &progress, SWEEPS));
        assert!(stalled_after(&watch, &progress, 1));
    }

    #[test]
    fn an_idle_connection_gets_the_idle_limit_and_a_begun_head_the_short_one() {
        // Sweeps every 250 ms; idle connections last 3 s (12 sweeps).
        let watch = StallWatch::new(Duration::from_secs(1), Duration::from_secs(3));
        let (_io, idle) = watch.watch(());
        let (_io, trickling) = watch.watch(());
        trickling.bytes_arrived();
        let (_io, not_reading) = watch.watch(());
        not_reading.write_polled(true);
        for _ in 0..SWEEPS {
            watch.sweep();
        }
        assert!(
            trickling.cut.load(Ordering::Relaxed),
            "a begun head: short limit"
        );
        assert!(
            not_reading.cut.load(Ordering::Relaxed),
            "an answer not taken: short limit"
        );
        assert!(!idle.cut.load(Ordering::Relaxed), "idle: not yet");
        assert!(!stalled_after(&watch, &idle, 12 - SWEEPS - 1));
        assert!(stalled_after(&watch, &idle, 1));
    }

    #[test]
    fn closed_and_http2_connections_are_forgotten() {
        let watch = StallWatch::new(Duration::from_secs(1), Duration::from_secs(1));
        let (io, progress) = watch.watch(());
        drop((io, progress));
        let (_io, progress) = watch.watch(());
        progress.exempt.store(true, Ordering::Relaxed);
        watch.sweep();
        assert!(watch.connections.lock().unwrap().is_empty());
        assert!(!progress.cut.load(Ordering::Relaxed));
    }
}
