//! The demo's child processes: started on free loopback ports, waited for
//! until ready, stopped with SIGTERM like an orchestrator would.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use crate::SERVE;

/// How long a process may take to become ready before the demo gives up.
const READY_WITHIN: Duration = Duration::from_secs(30);
/// How long a process may take to stop after SIGTERM before it is killed.
/// Each gets `shutdown.drain_delay=0s` (no load balancer to wait for), so
/// only in-flight requests hold it up.
const STOP_WITHIN: Duration = Duration::from_secs(10);

/// How long orders keeps an inventory instance out after it failed 5 times
/// in a row, the first time; longer each time it is ejected again.
pub(crate) const EJECTION: &str = "5s";

/// Why the demo could not get its processes running.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FleetError {
    #[error("cannot create the log directory {path}: {source}")]
    LogDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot find a free loopback port: {0}")]
    Port(std::io::Error),
    #[error("cannot find the demo's own executable to start the services: {0}")]
    OwnExe(std::io::Error),
    #[error("cannot start {name}: {source}")]
    Spawn {
        name: String,
        source: std::io::Error,
    },
    #[error("{name} exited during start-up ({status}); its log, {log}, ends:\n{tail}")]
    Exited {
        name: String,
        status: std::process::ExitStatus,
        log: PathBuf,
        tail: String,
    },
    #[error("{name} was not ready within {READY_WITHIN:?}; its log: {log}")]
    NotReady { name: String, log: PathBuf },
}

/// What one process is and how it is configured.
#[derive(Debug, Clone)]
pub(crate) struct Role {
    pub(crate) name: String,
    pub(crate) service: &'static str,
    pub(crate) description: String,
    /// `--set key=value` overrides on top of the service's shipped config.
    pub(crate) sets: Vec<String>,
}

impl Role {
    pub(crate) fn inventory(name: &str, description: &str, sets: &[String]) -> Role {
        let mut all = sets.to_vec();
        // Enough stock that a long demo never sells out.
        all.push("app.initial_stock.apple=1000000000".into());
        Role {
            name: name.into(),
            service: "inventory",
            description: description.into(),
            sets: all,
        }
    }
}

/// One running process.
#[derive(Debug)]
pub(crate) struct Process {
    pub(crate) name: String,
    pub(crate) service: &'static str,
    pub(crate) description: String,
    pub(crate) api: SocketAddr,
    pub(crate) admin: SocketAddr,
    pub(crate) log: PathBuf,
    role: Role,
    child: Child,
}

/// Where a process's figures are read: enough to take a snapshot without
/// holding the fleet.
#[derive(Debug, Clone)]
pub(crate) struct Watched {
    pub(crate) name: String,
    pub(crate) service: &'static str,
    pub(crate) description: String,
    pub(crate) admin: SocketAddr,
}

/// How a process ended when the demo stopped it.
#[derive(Debug)]
pub(crate) struct Stopped {
    pub(crate) name: String,
    /// `Some(code)` when it exited by itself after SIGTERM.
    pub(crate) exit_code: Option<i32>,
    /// It did not stop within [`STOP_WITHIN`] and was killed.
    pub(crate) killed: bool,
}

/// The three inventories and orders.
#[derive(Debug)]
pub(crate) struct Fleet {
    processes: Vec<Process>,
    /// Processes a fault replaced (a restart's first life), stopped with the rest.
    replaced: Vec<Process>,
    exe: PathBuf,
    log_dir: PathBuf,
}

impl Fleet {
    /// Starts every inventory role, then orders pointed at all of them, and
    /// waits until each answers `/readyz`.
    pub(crate) async fn start(
        log_dir: &Path,
        inventories: &[Role],
        grpc: bool,
    ) -> Result<Fleet, FleetError> {
        std::fs::create_dir_all(log_dir).map_err(|source| FleetError::LogDir {
            path: log_dir.to_owned(),
            source,
        })?;
        let exe = std::env::current_exe().map_err(FleetError::OwnExe)?;
        let mut ports = free_ports(2 * (inventories.len() + 1))?.into_iter();
        let mut next_port = || ports.next().expect("two ports for each process");
        let mut fleet = Fleet {
            processes: Vec::new(),
            replaced: Vec::new(),
            exe: exe.clone(),
            log_dir: log_dir.to_owned(),
        };
        for role in inventories {
            fleet
                .processes
                .push(spawn(&exe, log_dir, role, next_port(), next_port())?);
        }
        let addresses: Vec<String> = fleet.processes.iter().map(|p| p.api.to_string()).collect();
        // Both clients know the instances (inventory serves both APIs on
        // one port); `app.inventory_api` says which one orders uses.
        let mut sets = Vec::new();
        for client in ["http", "grpc"] {
            sets.push(format!(
                "{client}.clients.inventory.discovery=static://{}",
                addresses.join(",")
            ));
            // The default (30s, as Envoy's) would keep an ejected instance
            // out for most of a demo: let it come back sooner.
            sets.push(format!(
                "{client}.clients.inventory.outlier.base_ejection_time={EJECTION}"
            ));
        }
        let api = if grpc { "grpc" } else { "http" };
        sets.push(format!("app.inventory_api={api}"));
        let orders = Role {
            name: "orders".into(),
            service: "orders",
            description: format!("static discovery, {} instances, {api}", addresses.len()),
            sets,
        };
        fleet
            .processes
            .push(spawn(&exe, log_dir, &orders, next_port(), next_port())?);
        for process in &mut fleet.processes {
            process.wait_ready().await?;
        }
        Ok(fleet)
    }

    pub(crate) fn processes(&self) -> &[Process] {
        &self.processes
    }

    /// Where each process's figures are read.
    pub(crate) fn watched(&self) -> Vec<Watched> {
        self.processes
            .iter()
            .map(|p| Watched {
                name: p.name.clone(),
                service: p.service,
                description: p.description.clone(),
                admin: p.admin,
            })
            .collect()
    }

    /// The process called `name`.
    pub(crate) fn process(&self, name: &str) -> Option<&Process> {
        self.processes.iter().find(|p| p.name == name)
    }

    /// Starts `name` again, with its role and ports, and waits until it is
    /// ready: the second life of a restarted instance. Its log continues in
    /// a file of its own.
    pub(crate) async fn start_again(&self, name: &str) -> Result<Process, FleetError> {
        let old = self.process(name).ok_or_else(|| FleetError::Spawn {
            name: name.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such process"),
        })?;
        let mut role = old.role.clone();
        role.name = format!("{name}.restarted");
        let mut process = spawn(&self.exe, &self.log_dir, &role, old.api, old.admin)?;
        process.wait_ready().await?;
        process.name = name.to_owned();
        Ok(process)
    }

    /// Puts `process` in the place of the one of the same name, which is
    /// kept to be stopped (and reported) with the others.
    pub(crate) fn replace(&mut self, process: Process) {
        if let Some(slot) = self.processes.iter_mut().find(|p| p.name == process.name) {
            let mut old = std::mem::replace(slot, process);
            old.name = format!("{} (first life)", old.name);
            self.replaced.push(old);
        } else {
            self.processes.push(process);
        }
    }

    pub(crate) fn orders(&self) -> &Process {
        self.processes
            .iter()
            .find(|p| p.service == "orders")
            .expect("the fleet always starts orders")
    }

    /// SIGTERM to orders first (it stops calling inventory), then to each
    /// inventory; waits for each to drain and exit.
    pub(crate) async fn stop(mut self) -> Vec<Stopped> {
        let mut stopped = Vec::new();
        self.processes.sort_by_key(|p| p.service != "orders");
        for process in self.processes.iter_mut().chain(&mut self.replaced) {
            stopped.push(process.stop().await);
        }
        stopped
    }
}

/// `n` distinct loopback ports free right now: every listener is held
/// until all are chosen, so the system cannot hand out one port twice.
fn free_ports(n: usize) -> Result<Vec<SocketAddr>, FleetError> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(FleetError::Port)?;
    listeners
        .iter()
        .map(|l| l.local_addr().map_err(FleetError::Port))
        .collect()
}

fn spawn(
    exe: &Path,
    log_dir: &Path,
    role: &Role,
    api: SocketAddr,
    admin: SocketAddr,
) -> Result<Process, FleetError> {
    let log = log_dir.join(format!("{}.log", role.name));
    let spawn_error = |source| FleetError::Spawn {
        name: role.name.clone(),
        source,
    };
    let out = std::fs::File::create(&log).map_err(spawn_error)?;
    let err = out.try_clone().map_err(spawn_error)?;
    let mut command = Command::new(exe);
    command.args([SERVE, role.service]);
    let sets = [
        format!("server.bind={api}"),
        format!("admin.bind={admin}"),
        // Nothing but the demo routes traffic to these processes.
        "shutdown.drain_delay=0s".into(),
    ];
    for set in sets.iter().chain(&role.sets) {
        command.args(["--set", set]);
    }
    let child = command
        // The shipped config with its defaults: no profile from the caller's shell.
        .env_remove("APP_PROFILE")
        .env(
            "OTEL_RESOURCE_ATTRIBUTES",
            format!("demo.role={}", role.name),
        )
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        // Ctrl-C reaches the demo only; the demo stops its children in order.
        .process_group(0)
        // If the demo dies before it could stop them.
        .kill_on_drop(true)
        .spawn()
        .map_err(spawn_error)?;
    Ok(Process {
        name: role.name.clone(),
        service: role.service,
        description: role.description.clone(),
        api,
        admin,
        log,
        role: role.clone(),
        child,
    })
}

impl Process {
    async fn wait_ready(&mut self) -> Result<(), FleetError> {
        let url = format!("http://{}/readyz", self.admin);
        let client = reqwest::Client::new();
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let text = std::fs::read_to_string(&self.log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                return Err(FleetError::Exited {
                    name: self.name.clone(),
                    status,
                    log: self.log.clone(),
                    tail: lines[lines.len().saturating_sub(5)..].join("\n"),
                });
            }
            let ready = client
                .get(&url)
                .timeout(Duration::from_secs(1))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(FleetError::NotReady {
                    name: self.name.clone(),
                    log: self.log.clone(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The process id, while it runs.
    pub(crate) fn pid(&self) -> Option<i32> {
        self.child.id().and_then(|id| i32::try_from(id).ok())
    }

    async fn stop(&mut self) -> Stopped {
        let mut stopped = Stopped {
            name: self.name.clone(),
            exit_code: None,
            killed: false,
        };
        if let Some(pid) = self.child.id().and_then(|id| i32::try_from(id).ok()) {
            terminate(pid);
        }
        match tokio::time::timeout(STOP_WITHIN, self.child.wait()).await {
            Ok(Ok(status)) => stopped.exit_code = status.code(),
            Ok(Err(_)) | Err(_) => {
                stopped.killed = true;
                let _ = self.child.kill().await;
            }
        }
        stopped
    }
}

fn terminate(pid: i32) {
    // Already gone is fine: wait() reports how it ended.
    signal(pid, rustix::process::Signal::TERM);
}

/// Sends `signal` to `pid` (the demo's faults: KILL, STOP, CONT, TERM).
pub(crate) fn signal(pid: i32, signal: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(pid, signal);
    }
}
