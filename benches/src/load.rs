//! A minimal keep-alive HTTP/1.1 GET client: so that what is measured is the
//! server, not the client's own machinery.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One keep-alive connection issuing GETs.
#[derive(Debug)]
pub struct RawClient {
    stream: TcpStream,
    request: Vec<u8>,
    buffer: Vec<u8>,
}

impl RawClient {
    /// Connects to `addr` for GETs of `path`.
    pub async fn connect(addr: SocketAddr, path: &str) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(RawClient {
            stream,
            request: format!("GET {path} HTTP/1.1\r\nhost: bench\r\n\r\n").into_bytes(),
            buffer: Vec::with_capacity(4096),
        })
    }

    /// Sends one request and reads the whole response; returns the status code.
    pub async fn get(&mut self) -> std::io::Result<u16> {
        self.stream.write_all(&self.request).await?;
        self.buffer.clear();
        let mut chunk = [0u8; 4096];
        loop {
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "closed",
                ));
            }
            self.buffer.extend_from_slice(&chunk[..n]);
            if let Some(end) = find(&self.buffer, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buffer[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                while self.buffer.len() < end + 4 + length {
                    let n = self.stream.read(&mut chunk).await?;
                    if n == 0 {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "closed",
                        ));
                    }
                    self.buffer.extend_from_slice(&chunk[..n]);
                }
                let status = head
                    .split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                return Ok(status);
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Runs `connections` clients against `addr` for `duration`; returns each
/// request's latency and the count of non-200 answers.
pub async fn closed_loop(
    addr: SocketAddr,
    path: &str,
    connections: usize,
    duration: Duration,
) -> (Vec<Duration>, usize) {
    let stop = Instant::now() + duration;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let path = path.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut client = RawClient::connect(addr, &path).await.expect("connect");
            let (mut latencies, mut errors) = (Vec::new(), 0usize);
            while Instant::now() < stop {
                let t = Instant::now();
                match client.get().await {
                    Ok(200) => latencies.push(t.elapsed()),
                    Ok(_) => {
                        latencies.push(t.elapsed());
                        errors += 1;
                    }
                    Err(_) => {
                        errors += 1;
                        break;
                    }
                }
            }
            (latencies, errors)
        }));
    }
    let (mut all, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (l, e) = t.await.expect("load task");
        all.extend(l);
        errors += e;
    }
    (all, errors)
}

/// CPU time the calling thread has used so far (Linux: `/proc/thread-self/schedstat`),
/// or `None` where that is not available.
pub fn thread_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos: u64 = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

/// Runs `tasks` loops calling `call` until `duration` has passed, each
/// waiting `pace` after every call (zero: back to back). Returns each call's
/// latency and result, with its start
/// time relative to `begin`.
pub async fn paced_loop<F, Fut, T>(
    begin: Instant,
    tasks: usize,
    duration: Duration,
    pace: Duration,
    call: F,
) -> Vec<(Duration, Duration, T)>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = T> + Send,
    T: Send + 'static,
{
    let stop = Instant::now() + duration;
    let mut handles = Vec::with_capacity(tasks);
    for _ in 0..tasks {
        let call = call.clone();
        handles.push(tokio::spawn(async move {
            let mut out = Vec::new();
            while Instant::now() < stop {
                let t = Instant::now();
                let ok = call().await;
                out.push((t - begin, t.elapsed(), ok));
                if !pace.is_zero() {
                    tokio::time::sleep(pace).await;
                }
            }
            out
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.expect("load task"));
    }
    all
}

/// How a [`TargetServer`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// 200 "ok" to everything.
    Healthy = 0,
    /// 503 to everything: the target is down.
    Unavailable = 1,
    /// 503 to one request in a hundred (a transient failure), 200 otherwise.
    Flaky = 2,
}

/// A loopback axum server on a thread and runtime of its own (so its CPU
/// time is not the client's), counting requests and when they came.
#[derive(Debug)]
pub struct TargetServer {
    /// Where it listens.
    pub addr: SocketAddr,
    state: std::sync::Arc<ServerState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Debug)]
struct ServerState {
    mode: std::sync::atomic::AtomicU8,
    hits: std::sync::atomic::AtomicU64,
    origin: Instant,
    /// Arrival times (since `origin`) while recording is on.
    record: std::sync::atomic::AtomicBool,
    /// Added to every answer, in microseconds.
    delay_us: std::sync::atomic::AtomicU64,
    arrivals: std::sync::Mutex<Vec<Duration>>,
}

impl TargetServer {
    /// Starts a server answering in `mode`.
    pub fn start(mode: Mode) -> std::io::Result<Self> {
        use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
        let state = std::sync::Arc::new(ServerState {
            mode: AtomicU8::new(mode as u8),
            hits: AtomicU64::new(0),
            origin: Instant::now(),
            record: AtomicBool::new(false),
            delay_us: AtomicU64::new(0),
            arrivals: std::sync::Mutex::new(Vec::new()),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let handler_state = state.clone();
        let handler = move || {
            let state = handler_state.clone();
            async move {
                let n = state.hits.fetch_add(1, Ordering::Relaxed) + 1;
                if state.record.load(Ordering::Relaxed) {
                    let at = state.origin.elapsed();
                    state
                        .arrivals
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(at);
                }
                let delay = state.delay_us.load(Ordering::Relaxed);
                if delay > 0 {
                    tokio::time::sleep(Duration::from_micros(delay)).await;
                }
                let fail = match state.mode.load(Ordering::Relaxed) {
                    0 => false,
                    1 => true,
                    _ => n % 100 == 50,
                };
                if fail {
                    (axum::http::StatusCode::SERVICE_UNAVAILABLE, "unavailable")
                } else {
                    (axum::http::StatusCode::OK, "ok")
                }
            }
        };
        let router = axum::Router::new().route("/", axum::routing::get(handler));
        let thread = std::thread::Builder::new()
            .name("target-server".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .expect("server runtime");
                rt.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("server listener");
                    let _ = axum::serve(listener, router)
                        .with_graceful_shutdown(async {
                            let _ = stopped.await;
                        })
                        .await;
                });
            })?;
        Ok(TargetServer {
            addr,
            state,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Switches how it answers.
    pub fn set_mode(&self, mode: Mode) {
        self.state
            .mode
            .store(mode as u8, std::sync::atomic::Ordering::SeqCst);
    }

    /// Adds `delay` to every answer (a slow backend).
    pub fn set_delay(&self, delay: Duration) {
        let us = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.state
            .delay_us
            .store(us, std::sync::atomic::Ordering::SeqCst);
    }

    /// Requests received so far.
    pub fn hits(&self) -> u64 {
        self.state.hits.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Starts recording arrival times; they are measured from `Instant` `origin()`.
    pub fn record_arrivals(&self, on: bool) {
        self.state
            .record
            .store(on, std::sync::atomic::Ordering::SeqCst);
    }

    /// When arrival times count from.
    pub fn origin(&self) -> Instant {
        self.state.origin
    }

    /// Arrival times recorded so far.
    pub fn arrivals(&self) -> Vec<Duration> {
        self.state
            .arrivals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for TargetServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
