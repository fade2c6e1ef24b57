//! Helpers shared by the example services' tests: free ports, a child
//! process killed when the test ends, bounded waits.
#![allow(dead_code, unreachable_pub)] // each test binary uses its own subset

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed (SIGKILL) and reaped when dropped, pass or fail.
pub struct Service(pub Child);

impl Service {
    /// Starts `bin` with `args`, output discarded, no profile from the test's environment.
    pub fn start(bin: &str, args: &[&str]) -> Service {
        Service::spawn(Command::new(bin).args(args))
    }

    /// Starts `bin` with its API on `api` and its admin server on `admin`
    /// (loopback), plus `--set` for each of `sets`.
    pub fn start_on(bin: &str, api: u16, admin: u16, sets: &[&str]) -> Service {
        let mut command = Command::new(bin);
        command
            .args(["--set", &format!("server.bind=127.0.0.1:{api}")])
            .args(["--set", &format!("admin.bind=127.0.0.1:{admin}")]);
        for set in sets {
            command.args(["--set", set]);
        }
        Service::spawn(&mut command)
    }

    /// Starts a prepared command the same way.
    pub fn spawn(command: &mut Command) -> Service {
        Service(
            command
                .env_remove("APP_PROFILE")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}")),
        )
    }

    /// The process id, for signals.
    pub fn pid(&self) -> String {
        self.0.id().to_string()
    }

    /// Sends `signal` (`TERM`, `INT`) with kill(1).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.pid()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits for the process to exit, at most `limit`; its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "process did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until something accepts connections on `port`, at most 20 s.
pub async fn wait_until_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "port {port} never opened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `url` answers `status`, at most `limit`.
pub async fn wait_for_status(url: &str, status: u16, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(r) = reqwest::get(url).await
            && r.status().as_u16() == status
        {
            return;
        }
        assert!(Instant::now() < deadline, "{url} never answered {status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What the health check `name` says (`pass`, `warn`, `fail`, `unknown`) on
/// the admin port `admin`, with its message; `None` when it is not there or
/// the port does not answer.
pub async fn check(admin: u16, name: &str) -> Option<(String, String)> {
    let health: serde_json::Value = reqwest::get(format!("http://127.0.0.1:{admin}/health"))
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let check = health["checks"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)?;
    Some((
        check["status"].as_str().unwrap_or_default().to_owned(),
        check["message"].as_str().unwrap_or_default().to_owned(),
    ))
}

/// Waits until the health check `name` reports `status`, at most `limit`;
/// its message.
pub async fn wait_for_check(admin: u16, name: &str, status: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let seen = check(admin, name).await;
        if let Some((s, message)) = &seen
            && s == status
        {
            return message.clone();
        }
        assert!(
            Instant::now() < deadline,
            "check {name} never reported {status}; last: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Orders one apple from orders on `api`; the status code, 0 without an answer.
pub async fn place_order(http: &reqwest::Client, api: u16) -> u16 {
    http.post(format!("http://127.0.0.1:{api}/orders"))
        .json(&serde_json::json!({"sku": "apple", "quantity": 1}))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}
