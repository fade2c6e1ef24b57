//! A loopback instance that can be made to fail the way real instances do:
//! crash, hang, restart gracefully, or turn into a black hole. The `faults`
//! scenario runs three of them side by side, as the demo runs its three
//! inventory processes, and injects one fault into one instance.
//!
//! Each instance has a thread and a runtime of its own, so a crash is the
//! runtime dropped: every connection closes and every request in flight dies
//! with it, and the port refuses connections afterwards, as after SIGKILL.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;

/// A fault an instance can be put into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Killed: in-flight requests die, the port refuses connections.
    Crash,
    /// Stopped (SIGSTOP): requests sent to it, on open connections or new
    /// ones, get no answer until it is resumed; then they are all answered.
    Hang,
    /// SIGTERM and a restart: it stops accepting, answers what it has,
    /// closes its connections, is down for a moment and comes back on the
    /// same port.
    GracefulRestart,
    /// Requests on open connections are never answered and new connections
    /// never complete (the listener stops accepting, its queue full, so the
    /// kernel drops further SYNs).
    Blackhole,
}

/// What a running instance is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Serving,
    Stopped,
    Blackhole,
}

#[derive(Debug)]
struct Shared {
    /// Added to every answer, in microseconds.
    delay_us: AtomicU64,
    /// Every `fail_every`-th request is answered 503 (0: never).
    fail_every: AtomicU64,
    requests: AtomicU64,
    phase: watch::Sender<Phase>,
}

/// What an instance speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1, `GET /` (axum's server).
    Http,
    /// gRPC, `grpc.health.v1.Health/Check` (tonic's server); a failure is
    /// UNAVAILABLE.
    Grpc,
}

/// Commands to the instance's thread.
enum Command {
    Crash,
    Restart { down_for: Duration },
    Blackhole,
    Stop,
}

/// One loopback instance answering `GET /` or, over gRPC,
/// `grpc.health.v1.Health/Check`.
#[derive(Debug)]
pub struct FaultServer {
    /// Where it listens.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    commands: tokio::sync::mpsc::UnboundedSender<Command>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FaultServer {
    /// Starts an instance answering after `delay`, failing every
    /// `fail_every`-th request with 503 (0: none).
    pub fn start(delay: Duration, fail_every: u64) -> std::io::Result<Self> {
        Self::start_speaking(Protocol::Http, delay, fail_every)
    }

    /// [`FaultServer::start`], speaking `protocol`.
    pub fn start_speaking(
        protocol: Protocol,
        delay: Duration,
        fail_every: u64,
    ) -> std::io::Result<Self> {
        let (phase, _) = watch::channel(Phase::Serving);
        let shared = Arc::new(Shared {
            delay_us: AtomicU64::new(u64::try_from(delay.as_micros()).unwrap_or(u64::MAX)),
            fail_every: AtomicU64::new(fail_every),
            requests: AtomicU64::new(0),
            phase,
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (commands, receiver) = tokio::sync::mpsc::unbounded_channel();
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("fault-server-{}", addr.port()))
            .spawn(move || run(protocol, listener, addr, thread_shared, receiver))?;
        Ok(Self {
            addr,
            shared,
            commands,
            thread: Some(thread),
        })
    }

    /// Requests that reached the handler so far.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// Puts the instance into `fault`; `duration` is how long a hang lasts
    /// or how long a restart keeps the port closed.
    pub fn inject(&self, fault: Fault, duration: Duration) {
        match fault {
            Fault::Crash => {
                let _ = self.commands.send(Command::Crash);
            }
            Fault::Hang => {
                self.shared.phase.send_replace(Phase::Stopped);
                let shared = Arc::clone(&self.shared);
                std::thread::spawn(move || {
                    std::thread::sleep(duration);
                    // Resumed (SIGCONT): everything waiting is answered.
                    shared.phase.send_if_modified(|phase| {
                        let stopped = *phase == Phase::Stopped;
                        if stopped {
                            *phase = Phase::Serving;
                        }
                        stopped
                    });
                });
            }
            Fault::GracefulRestart => {
                let _ = self.commands.send(Command::Restart { down_for: duration });
            }
            Fault::Blackhole => {
                self.shared.phase.send_replace(Phase::Blackhole);
                let _ = self.commands.send(Command::Blackhole);
            }
        }
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Stop);
        // Handlers waiting on a hang or black hole must not hold the thread.
        self.shared.phase.send_replace(Phase::Serving);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Shared {
    /// One request's work, whatever the protocol: counted, held while the
    /// instance is stopped or black-holed, delayed, and failed every
    /// `fail_every`-th time. `true` for a success.
    async fn answer(&self) -> bool {
        let n = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
        let mut phase = self.phase.subscribe();
        // Stopped or black-holed: no answer until serving again.
        let _ = phase.wait_for(|p| *p == Phase::Serving).await;
        let delay = self.delay_us.load(Ordering::Relaxed);
        if delay > 0 {
            tokio::time::sleep(Duration::from_micros(delay)).await;
        }
        let every = self.fail_every.load(Ordering::Relaxed);
        !(every > 0 && n.is_multiple_of(every))
    }
}

fn router(shared: Arc<Shared>) -> axum::Router {
    let handler = move || {
        let shared = Arc::clone(&shared);
        async move {
            if shared.answer().await {
                (axum::http::StatusCode::OK, "ok")
            } else {
                (axum::http::StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
        }
    };
    axum::Router::new().route("/", axum::routing::get(handler))
}

/// The gRPC face: `Health/Check` answered as `GET /` is.
struct Health(Arc<Shared>);

#[tonic::async_trait]
impl tonic_health::pb::health_server::Health for Health {
    async fn check(
        &self,
        _: tonic::Request<tonic_health::pb::HealthCheckRequest>,
    ) -> Result<tonic::Response<tonic_health::pb::HealthCheckResponse>, tonic::Status> {
        if self.0.answer().await {
            Ok(tonic::Response::new(
                tonic_health::pb::HealthCheckResponse {
                    status: tonic_health::pb::health_check_response::ServingStatus::Serving.into(),
                },
            ))
        } else {
            Err(tonic::Status::unavailable("unavailable"))
        }
    }

    type WatchStream =
        futures::stream::Empty<Result<tonic_health::pb::HealthCheckResponse, tonic::Status>>;

    async fn watch(
        &self,
        _: tonic::Request<tonic_health::pb::HealthCheckRequest>,
    ) -> Result<tonic::Response<Self::WatchStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("only Check"))
    }
}

/// Serves `listener` in `protocol` until `stopped` (then drains).
async fn serve(
    protocol: Protocol,
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let stopped = async {
        let _ = stopped.await;
    };
    match protocol {
        Protocol::Http => {
            let _ = axum::serve(listener, router(shared))
                .with_graceful_shutdown(stopped)
                .await;
        }
        Protocol::Grpc => {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            let _ = tonic::transport::Server::builder()
                .add_service(tonic_health::pb::health_server::HealthServer::new(Health(
                    shared,
                )))
                .serve_with_incoming_shutdown(incoming, stopped)
                .await;
        }
    }
}

/// The instance's thread: serves until told otherwise.
fn run(
    protocol: Protocol,
    listener: std::net::TcpListener,
    addr: SocketAddr,
    shared: Arc<Shared>,
    mut commands: tokio::sync::mpsc::UnboundedReceiver<Command>,
) {
    let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    else {
        return;
    };
    rt.block_on(async move {
        let Ok(mut listener) = tokio::net::TcpListener::from_std(listener) else {
            return;
        };
        loop {
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let serve = tokio::spawn(serve(protocol, listener, Arc::clone(&shared), stopped));
            match commands.recv().await {
                // The runtime is dropped below, with every connection.
                None | Some(Command::Stop) | Some(Command::Crash) => return,
                Some(Command::Blackhole) => {
                    let _ = stop.send(());
                    // The accept loop is gone and its port free once the
                    // listener is dropped; a socket that never accepts,
                    // its queue of one soon full, takes its place.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    let _hole = never_accepting(addr);
                    loop {
                        if matches!(commands.recv().await, None | Some(Command::Stop)) {
                            return;
                        }
                    }
                }
                Some(Command::Restart { down_for }) => {
                    let _ = stop.send(());
                    // Drains: answers what it has, closes idle connections.
                    let _ = tokio::time::timeout(Duration::from_secs(5), serve).await;
                    tokio::time::sleep(down_for).await;
                    match rebind(addr).await {
                        Some(again) => listener = again,
                        None => return,
                    }
                }
            }
        }
    });
    // Dropping the runtime closes every socket and cancels every request.
}

async fn rebind(addr: SocketAddr) -> Option<tokio::net::TcpListener> {
    for _ in 0..50 {
        let socket = tokio::net::TcpSocket::new_v4().ok()?;
        let _ = socket.set_reuseaddr(true);
        if socket.bind(addr).is_ok()
            && let Ok(listener) = socket.listen(1024)
        {
            return Some(listener);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

fn never_accepting(addr: SocketAddr) -> Option<tokio::net::TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4().ok()?;
    let _ = socket.set_reuseaddr(true);
    socket.bind(addr).ok()?;
    socket.listen(0).ok()
}
