//! Helpers for tests that run real servers.

use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use platform_core::discovery::{EndpointSet, Resolver};

/// A child process killed (SIGKILL) and reaped when dropped, also when a test panics.
#[derive(Debug)]
pub(crate) struct ProcessGuard {
    pub(crate) child: Child,
}

impl ProcessGuard {
    /// Spawns `command` with its output appended to `<log_dir>/<name>.log`.
    pub(crate) fn spawn(name: &str, mut command: Command, log_dir: &Path) -> Self {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_dir.join(format!("{name}.log")))
            .expect("log file");
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log);
        let child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {name}: {error}"));
        Self { child }
    }

    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `count` distinct ports free on 127.0.0.1 for both TCP and UDP right now.
pub(crate) fn free_ports(count: usize) -> Vec<u16> {
    let mut held = Vec::new();
    let mut ports = Vec::new();
    while ports.len() < count {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        if let Ok(udp) = UdpSocket::bind(("127.0.0.1", port)) {
            ports.push(port);
            held.push((listener, udp));
        }
    }
    ports
}

/// Waits (at most `limit`) until the resolver's set satisfies `condition`; panics with the
/// last set otherwise.
pub(crate) async fn wait_until(
    resolver: &dyn Resolver,
    limit: Duration,
    what: &str,
    condition: impl Fn(&EndpointSet) -> bool,
) -> Arc<EndpointSet> {
    let mut receiver = resolver.subscribe();
    // Keep no watch guard across the next borrow: a guard blocks the backend's next update.
    let reached = tokio::time::timeout(limit, receiver.wait_for(|set| condition(set)))
        .await
        .is_ok_and(|changed| changed.is_ok());
    let set = resolver.current();
    assert!(
        reached,
        "{what}: not reached within {limit:?}; last set: {set:?}"
    );
    set
}

/// The endpoints' authorities, sorted.
pub(crate) fn authorities(set: &EndpointSet) -> Vec<String> {
    let mut all: Vec<String> = set
        .endpoints()
        .iter()
        .map(|e| e.authority().to_owned())
        .collect();
    all.sort();
    all
}
