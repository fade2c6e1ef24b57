//! One check: what it is, how often it runs, what it said.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Which probe a check answers for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Should the process be restarted? Never an external dependency by default.
    Liveness,
    /// Should the process receive traffic?
    Readiness,
    /// Has the process finished starting?
    Startup,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Liveness => "liveness",
            Kind::Readiness => "readiness",
            Kind::Startup => "startup",
        })
    }
}

/// The state of a check, or of a probe made of checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Working.
    Pass,
    /// Working, with something worth attention; probes still pass.
    Warn,
    /// No result yet: counts as passing for liveness, failing otherwise.
    Unknown,
    /// Not working.
    Fail,
}

impl Status {
    /// Whether a probe of `kind` passes with this status.
    pub fn passes(self, kind: Kind) -> bool {
        match self {
            Status::Pass | Status::Warn => true,
            Status::Unknown => kind == Kind::Liveness,
            Status::Fail => false,
        }
    }
}

/// What one run of a check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutcome {
    /// Pass, warn or fail (`Unknown` is not a result).
    pub status: Status,
    /// Shown in the detailed report.
    pub message: Option<String>,
}

impl CheckOutcome {
    /// A passing result.
    pub fn pass() -> Self {
        CheckOutcome {
            status: Status::Pass,
            message: None,
        }
    }

    /// A warning: reported, probes still pass.
    pub fn warn(message: impl Into<String>) -> Self {
        CheckOutcome {
            status: Status::Warn,
            message: Some(message.into()),
        }
    }

    /// A failure.
    pub fn fail(message: impl Into<String>) -> Self {
        CheckOutcome {
            status: Status::Fail,
            message: Some(message.into()),
        }
    }
}

impl<E: fmt::Display> From<Result<(), E>> for CheckOutcome {
    fn from(result: Result<(), E>) -> Self {
        match result {
            Ok(()) => CheckOutcome::pass(),
            Err(e) => CheckOutcome::fail(e.to_string()),
        }
    }
}

/// The function a polled check runs.
pub type CheckFn =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = CheckOutcome> + Send>> + Send + Sync>;

/// How a polled check runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOptions {
    /// The probes it answers for.
    pub kinds: Vec<Kind>,
    /// Time between the end of one run and the start of the next.
    pub interval: Duration,
    /// A run taking longer has failed.
    pub timeout: Duration,
    /// Consecutive failures before the check fails.
    pub failure_threshold: u32,
    /// Consecutive successes before a failing check passes again.
    pub success_threshold: u32,
}

impl CheckOptions {
    /// Defaults for a check of one kind: every 10 s, 2 s timeout, fail after
    /// 3 failures, pass after 1 success (Kubernetes' probe defaults, tighter timeout).
    pub fn new(kind: Kind) -> Self {
        CheckOptions {
            kinds: vec![kind],
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
            failure_threshold: 3,
            success_threshold: 1,
        }
    }

    /// Also answers for `kind`.
    pub fn also(mut self, kind: Kind) -> Self {
        if !self.kinds.contains(&kind) {
            self.kinds.push(kind);
        }
        self
    }

    /// Sets the interval.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Sets the timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the failure threshold.
    pub fn failure_threshold(mut self, n: u32) -> Self {
        self.failure_threshold = n;
        self
    }

    /// Sets the success threshold.
    pub fn success_threshold(mut self, n: u32) -> Self {
        self.success_threshold = n;
        self
    }
}
