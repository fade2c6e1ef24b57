//! `--fault`: one inventory instance crashes, hangs or restarts while the
//! load runs, through real signals, as an orchestrator or a failing machine
//! would do it. The report then shows what the platform did about it.

use std::fmt;
use std::time::Duration;

use rustix::process::Signal;

use crate::processes::{Fleet, Process, signal};

/// What happens to the instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum FaultKind {
    /// SIGKILL: the process dies with its requests in flight and stays down.
    Crash,
    /// SIGSTOP, then SIGCONT after `--fault-for`: a process that hangs
    /// (a long GC pause, a stuck disk, a frozen VM) and comes back.
    Hang,
    /// SIGTERM (a graceful drain), then the same instance started again on
    /// the same ports after `--fault-for`: a rolling restart.
    Restart,
}

/// A fault to inject into one instance.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) kind: FaultKind,
    pub(crate) victim: String,
    pub(crate) at: Duration,
    pub(crate) lasting: Duration,
}

/// What was injected, for the report.
#[derive(Debug)]
pub(crate) struct Injected {
    plan: Plan,
    /// What went wrong while injecting, if anything.
    problem: Option<String>,
}

impl Injected {
    /// Whether the demo killed `name` on purpose (so it did not exit 0).
    pub(crate) fn killed(&self, name: &str) -> bool {
        self.plan.kind == FaultKind::Crash && self.plan.victim == name
    }
}

impl fmt::Display for Injected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Plan {
            kind,
            victim,
            at,
            lasting,
        } = &self.plan;
        let at = platform_config::duration::format(*at);
        let lasting = platform_config::duration::format(*lasting);
        match kind {
            FaultKind::Crash => write!(f, "{victim} killed (SIGKILL) at {at}, left down")?,
            FaultKind::Hang => write!(
                f,
                "{victim} stopped (SIGSTOP) at {at}, resumed (SIGCONT) {lasting} later"
            )?,
            FaultKind::Restart => write!(
                f,
                "{victim} stopped (SIGTERM, graceful drain) at {at}, started again {lasting} after it exited"
            )?,
        }
        if let Some(problem) = &self.problem {
            write!(f, " ({problem})")?;
        }
        Ok(())
    }
}

/// Waits until `plan.at`, then injects the fault. A restart's new process
/// is returned, for the fleet to take in once the load is over.
pub(crate) async fn inject(fleet: &Fleet, plan: Plan) -> (Injected, Option<Process>) {
    tokio::time::sleep(plan.at).await;
    let Some(pid) = fleet.process(&plan.victim).and_then(Process::pid) else {
        let problem = Some(format!("{} was not running", plan.victim));
        return (Injected { plan, problem }, None);
    };
    let mut restarted = None;
    let mut problem = None;
    match plan.kind {
        FaultKind::Crash => signal(pid, Signal::KILL),
        FaultKind::Hang => {
            signal(pid, Signal::STOP);
            tokio::time::sleep(plan.lasting).await;
            signal(pid, Signal::CONT);
        }
        FaultKind::Restart => {
            signal(pid, Signal::TERM);
            // Gone once its admin port refuses connections.
            if let Some(admin) = fleet.process(&plan.victim).map(|p| p.admin) {
                let gone = async {
                    while tokio::net::TcpStream::connect(admin).await.is_ok() {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                };
                if tokio::time::timeout(Duration::from_secs(30), gone)
                    .await
                    .is_err()
                {
                    problem = Some("it did not exit within 30s".into());
                }
            }
            tokio::time::sleep(plan.lasting).await;
            match fleet.start_again(&plan.victim).await {
                Ok(process) => restarted = Some(process),
                Err(e) => problem = Some(format!("it could not be started again: {e}")),
            }
        }
    }
    (Injected { plan, problem }, restarted)
}
