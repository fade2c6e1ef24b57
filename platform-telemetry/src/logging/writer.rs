//! A log writer that never blocks the thread that logs.
//!
//! Each formatted line goes into a bounded queue drained by one writer thread.
//! When stdout is slow (a full pipe, a stalled log shipper) the queue fills and
//! new lines are dropped and counted (`otel.sdk.processor.log.processed` with
//! `error.type=queue_full`) instead of stalling request handling: the same
//! trade-off as tracing-appender's lossy non-blocking writer and the batch span
//! processor. The guard drains the queue at exit.

use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

use crate::self_metrics::{COUNTERS, add};

enum Message {
    Line(Vec<u8>),
    /// Answer once every line queued before this one has been written.
    Flush(mpsc::Sender<()>),
}

/// The `MakeWriter` handed to the fmt layer; cheap to clone.
#[derive(Clone)]
pub(crate) struct QueueWriter {
    sender: Arc<RwLock<Option<SyncSender<Message>>>>,
    /// Written to directly once the queue is closed, so lines logged after the
    /// guard shut down (e.g. "server stopped") still appear.
    out: Arc<Mutex<Box<dyn Write + Send>>>,
}

impl std::fmt::Debug for QueueWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QueueWriter")
    }
}

/// Owns the writer thread; closing it drains what is queued.
#[derive(Debug)]
pub(crate) struct WriterHandle {
    sender: Arc<RwLock<Option<SyncSender<Message>>>>,
    thread: Option<JoinHandle<()>>,
}

pub(crate) fn spawn(
    capacity: usize,
    out: Box<dyn Write + Send>,
) -> io::Result<(QueueWriter, WriterHandle)> {
    let (tx, rx): (SyncSender<Message>, Receiver<Message>) = mpsc::sync_channel(capacity);
    let out = Arc::new(Mutex::new(out));
    let thread_out = out.clone();
    let thread = std::thread::Builder::new()
        .name("platform-log-writer".into())
        .spawn(move || {
            let write = |f: &mut dyn FnMut(&mut Box<dyn Write + Send>)| {
                if let Ok(mut out) = thread_out.lock() {
                    f(&mut out);
                }
            };
            for message in rx {
                match message {
                    Message::Line(line) => {
                        // Nowhere to report a failed write to stdout; the line is lost either way.
                        write(&mut |out| {
                            let _ = out.write_all(&line);
                        });
                        add(&COUNTERS.logs_written, 1);
                    }
                    Message::Flush(done) => {
                        write(&mut |out| {
                            let _ = out.flush();
                        });
                        let _ = done.send(());
                    }
                }
            }
            write(&mut |out| {
                let _ = out.flush();
            });
        })?;
    let sender = Arc::new(RwLock::new(Some(tx)));
    Ok((
        QueueWriter {
            sender: sender.clone(),
            out,
        },
        WriterHandle {
            sender,
            thread: Some(thread),
        },
    ))
}

impl WriterHandle {
    /// Waits (at most `timeout`) until every line queued so far is written.
    pub(crate) fn flush(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let (tx, rx) = mpsc::channel();
        let Some(sender) = self.sender.read().ok().and_then(|g| g.clone()) else {
            return false;
        };
        // Never a blocking send: with the output stuck and the queue full it
        // would wait forever, past any shutdown timeout.
        let mut message = Message::Flush(tx);
        loop {
            match sender.try_send(message) {
                Ok(()) => break,
                Err(TrySendError::Full(m)) if std::time::Instant::now() < deadline => {
                    message = m;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(_) => return false,
            }
        }
        rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .is_ok()
    }

    /// Stops accepting lines, writes what is queued, ends the thread.
    pub(crate) fn close(mut self, timeout: Duration) -> bool {
        let flushed = self.flush(timeout);
        if let Ok(mut guard) = self.sender.write() {
            guard.take();
        }
        if flushed && let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        flushed
    }
}

impl<'a> MakeWriter<'a> for QueueWriter {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter { queue: self }
    }
}

/// One event's writer: the fmt layer formats the whole line first and writes it in one call.
pub(crate) struct LineWriter<'a> {
    queue: &'a QueueWriter,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Ok(guard) = self.queue.sender.read() else {
            return Ok(buf.len());
        };
        match guard.as_ref() {
            Some(sender) => match sender.try_send(Message::Line(buf.to_vec())) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                    add(&COUNTERS.logs_dropped, 1);
                }
            },
            // After shutdown: write through (nothing else is writing any more).
            None => {
                if let Ok(mut out) = self.queue.out.lock() {
                    let _ = out.write_all(buf);
                    let _ = out.flush();
                }
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Blocks every write until the test lets it go: a stalled stdout.
    struct Stalled(Arc<Mutex<()>>, Shared);
    impl Write for Stalled {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let _wait = self.0.lock().unwrap();
            self.1.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_arrive_in_order_and_close_drains() {
        let out = Shared::default();
        let (writer, handle) = spawn(16, Box::new(out.clone())).unwrap();
        for i in 0..10 {
            writer
                .make_writer()
                .write_all(format!("line {i}\n").as_bytes())
                .unwrap();
        }
        assert!(handle.close(Duration::from_secs(5)));
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let expected: String = (0..10).map(|i| format!("line {i}\n")).collect();
        assert_eq!(text, expected);
        // After close, lines are written through rather than lost.
        writer.make_writer().write_all(b"late\n").unwrap();
        assert!(out.0.lock().unwrap().ends_with(b"late\n"));
    }

    #[test]
    fn a_stalled_output_drops_and_counts_instead_of_blocking() {
        let gate = Arc::new(Mutex::new(()));
        let held = gate.lock().unwrap();
        let out = Shared::default();
        let (writer, handle) = spawn(4, Box::new(Stalled(gate.clone(), out.clone()))).unwrap();
        let before = COUNTERS
            .logs_dropped
            .load(std::sync::atomic::Ordering::Relaxed);
        // 1 line may be taken by the thread (stuck in write), 4 fill the queue, the rest drop.
        for i in 0..20 {
            writer
                .make_writer()
                .write_all(format!("{i}\n").as_bytes())
                .unwrap();
        }
        let dropped = COUNTERS
            .logs_dropped
            .load(std::sync::atomic::Ordering::Relaxed)
            - before;
        assert!(dropped >= 15, "dropped {dropped}");
        // Stuck output, full queue: closing gives up on time instead of hanging.
        let (tx, rx) = mpsc::channel();
        let closer = std::thread::spawn(move || {
            let _ = tx.send(handle.close(Duration::from_millis(50)));
        });
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(false));
        drop(held);
        closer.join().unwrap();
        // The writer thread finishes what it holds once the output moves again.
        let mut written = 0;
        for _ in 0..500 {
            written = out
                .0
                .lock()
                .unwrap()
                .iter()
                .filter(|b| **b == b'\n')
                .count() as u64;
            if written + dropped == 20 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(written + dropped, 20);
    }
}
