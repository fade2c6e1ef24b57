//! The shutdown sequence and what it runs.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::health::{CheckOutcome, ManualCheck};
use crate::settings::ShutdownSettings;

/// When a shutdown hook runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HookPhase {
    /// As soon as shutdown starts, alongside the drain delay: deregister.
    Draining,
    /// After the server stopped and background tasks ended: close, flush.
    Stopped,
}

/// A step of the shutdown sequence, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LifecycleEvent {
    /// A signal or a call asked for shutdown.
    ShutdownRequested {
        /// What asked (`SIGTERM`, `SIGINT`, `server ended`, ...).
        reason: String,
    },
    /// Readiness now fails.
    ReadinessFailed,
    /// A hook finished (or hit its time limit).
    HookFinished {
        /// The hook's name.
        name: String,
        /// Its phase.
        phase: HookPhase,
        /// False when it was cut off by the time limit.
        completed: bool,
    },
    /// The drain delay is over.
    DrainDelayElapsed,
    /// The server was told to stop accepting.
    StopAccepting,
    /// Every in-flight request finished within the grace period.
    InFlightCompleted,
    /// The grace period ran out; what was left was cancelled.
    GracePeriodExpired,
    /// Background tasks were cancelled and have ended.
    TasksStopped {
        /// Tasks that did not end in time and were aborted.
        aborted: Vec<String>,
    },
    /// The sequence is over.
    Stopped,
}

/// How a shutdown went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownOutcome {
    /// True when nothing was cut off by a time limit.
    pub clean: bool,
    /// What the server returned, if it failed.
    pub server_error: Option<String>,
}

type Hook = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// Owns the shutdown signal, the named background tasks and the hooks.
#[derive(Clone)]
pub struct Lifecycle {
    inner: Arc<Inner>,
}

struct Inner {
    settings: ShutdownSettings,
    shutdown: CancellationToken,
    stop_accepting: CancellationToken,
    tasks_cancel: CancellationToken,
    hooks: Mutex<Vec<(HookPhase, String, Hook)>>,
    tasks: Mutex<Vec<(String, JoinHandle<()>)>>,
    events: Mutex<Vec<LifecycleEvent>>,
    reason: Mutex<Option<String>>,
}

impl std::fmt::Debug for Lifecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lifecycle")
            .field("settings", &self.inner.settings)
            .field("shutting_down", &self.inner.shutdown.is_cancelled())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Lifecycle {
    /// A lifecycle with these delays.
    pub fn new(settings: ShutdownSettings) -> Self {
        Lifecycle {
            inner: Arc::new(Inner {
                settings,
                shutdown: CancellationToken::new(),
                stop_accepting: CancellationToken::new(),
                tasks_cancel: CancellationToken::new(),
                hooks: Mutex::new(Vec::new()),
                tasks: Mutex::new(Vec::new()),
                events: Mutex::new(Vec::new()),
                reason: Mutex::new(None),
            }),
        }
    }

    /// The delays in force.
    pub fn settings(&self) -> &ShutdownSettings {
        &self.inner.settings
    }

    /// Asks for shutdown (what a signal does). Later calls change nothing.
    pub fn request_shutdown(&self, reason: impl Into<String>) {
        let mut r = lock(&self.inner.reason);
        if r.is_none() {
            *r = Some(reason.into());
        }
        drop(r);
        self.inner.shutdown.cancel();
    }

    /// True once shutdown was asked for.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutdown.is_cancelled()
    }

    /// Completes when shutdown is asked for: what long-running loops select on.
    pub fn shutdown_requested(&self) -> tokio_util::sync::WaitForCancellationFutureOwned {
        self.inner.shutdown.clone().cancelled_owned()
    }

    /// Completes when the server must stop accepting (after the drain delay).
    pub fn stop_accepting(&self) -> tokio_util::sync::WaitForCancellationFutureOwned {
        self.inner.stop_accepting.clone().cancelled_owned()
    }

    /// A token background tasks watch; cancelled after the server stopped.
    pub fn task_token(&self) -> CancellationToken {
        self.inner.tasks_cancel.child_token()
    }

    /// Runs `task` in the background until it ends or shutdown cancels it
    /// (it receives the token to watch); it is awaited during shutdown.
    pub fn spawn_task<F, Fut>(&self, name: impl Into<String>, task: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let name = name.into();
        let handle = tokio::spawn(task(self.task_token()));
        lock(&self.inner.tasks).push((name, handle));
    }

    /// Adds a hook that runs at `phase` of shutdown, bounded by the grace period.
    pub fn on_shutdown<F, Fut>(&self, phase: HookPhase, name: impl Into<String>, hook: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let hook: Hook = Box::new(move || Box::pin(hook()));
        lock(&self.inner.hooks).push((phase, name.into(), hook));
    }

    /// The steps of shutdown so far, in order.
    pub fn events(&self) -> Vec<LifecycleEvent> {
        lock(&self.inner.events).clone()
    }

    fn record(&self, event: LifecycleEvent) {
        tracing::info!(?event, "shutdown");
        lock(&self.inner.events).push(event);
    }

    fn take_hooks(&self, phase: HookPhase) -> Vec<(String, Hook)> {
        let mut hooks = lock(&self.inner.hooks);
        let (now, later): (Vec<_>, Vec<_>) = hooks.drain(..).partition(|(p, _, _)| *p == phase);
        *hooks = later;
        now.into_iter()
            .map(|(_, name, hook)| (name, hook))
            .collect()
    }

    fn spawn_hooks(&self, phase: HookPhase) -> Vec<(String, JoinHandle<()>)> {
        self.take_hooks(phase)
            .into_iter()
            .map(|(name, hook)| (name, tokio::spawn(hook())))
            .collect()
    }

    async fn await_hooks(
        &self,
        phase: HookPhase,
        hooks: Vec<(String, JoinHandle<()>)>,
        deadline: tokio::time::Instant,
    ) -> bool {
        let mut clean = true;
        for (name, mut handle) in hooks {
            let completed = tokio::time::timeout_at(deadline, &mut handle).await.is_ok();
            if !completed {
                handle.abort();
                clean = false;
            }
            self.record(LifecycleEvent::HookFinished {
                name,
                phase,
                completed,
            });
        }
        clean
    }

    /// Runs `server` until shutdown is asked for, then the whole sequence.
    /// `server` must stop accepting when [`Lifecycle::stop_accepting`]
    /// completes and end when its in-flight requests are done.
    pub async fn run<F>(&self, readiness: &ManualCheck, server: F) -> ShutdownOutcome
    where
        F: Future<Output = std::io::Result<()>>,
    {
        let settings = self.inner.settings.clone();
        tokio::pin!(server);
        let mut server_result = None;
        tokio::select! {
            _ = self.inner.shutdown.cancelled() => {}
            r = &mut server => {
                server_result = Some(r);
                self.request_shutdown("server ended");
            }
        }
        let budget = ShutdownBudget::from_now(&settings);
        let reason = lock(&self.inner.reason).clone().unwrap_or_default();
        self.record(LifecycleEvent::ShutdownRequested { reason });
        readiness.set(CheckOutcome::fail("shutting down"));
        self.record(LifecycleEvent::ReadinessFailed);

        let draining = self.spawn_hooks(HookPhase::Draining);
        let mut clean = true;
        if server_result.is_none() {
            // Keep serving while load balancers notice readiness failing; a
            // server that ends by itself meanwhile just ends the wait.
            tokio::select! {
                _ = tokio::time::sleep(settings.drain_delay) => {}
                r = &mut server => server_result = Some(r),
            }
        }
        clean &= self
            .await_hooks(HookPhase::Draining, draining, budget.serving_ends)
            .await;
        self.record(LifecycleEvent::DrainDelayElapsed);

        self.record(LifecycleEvent::StopAccepting);
        self.inner.stop_accepting.cancel();
        if server_result.is_none() {
            match tokio::time::timeout_at(budget.serving_ends, &mut server).await {
                Ok(r) => {
                    server_result = Some(r);
                    self.record(LifecycleEvent::InFlightCompleted);
                }
                Err(_) => {
                    clean = false;
                    self.record(LifecycleEvent::GracePeriodExpired);
                }
            }
        } else {
            self.record(LifecycleEvent::InFlightCompleted);
        }

        self.inner.tasks_cancel.cancel();
        let tasks: Vec<_> = lock(&self.inner.tasks).drain(..).collect();
        let deadline = budget
            .ends
            .min(tokio::time::Instant::now() + TASKS_STOP_WITHIN);
        let mut aborted = Vec::new();
        for (name, mut handle) in tasks {
            if tokio::time::timeout_at(deadline, &mut handle)
                .await
                .is_err()
            {
                handle.abort();
                aborted.push(name);
            }
        }
        clean &= aborted.is_empty();
        self.record(LifecycleEvent::TasksStopped { aborted });

        let stopped = self.spawn_hooks(HookPhase::Stopped);
        clean &= self
            .await_hooks(HookPhase::Stopped, stopped, budget.ends)
            .await;
        self.record(LifecycleEvent::Stopped);
        ShutdownOutcome {
            clean,
            server_error: server_result.and_then(|r| r.err()).map(|e| e.to_string()),
        }
    }
}

/// Background tasks get at most this long to stop once cancelled.
const TASKS_STOP_WITHIN: Duration = Duration::from_secs(5);

/// One budget for the whole sequence, from the shutdown request:
/// `drain_delay + grace_period`, never a full grace period per phase. The
/// API serves (drain delay, then in-flight requests) until `serving_ends`;
/// what is kept back after it, a fifth of the grace period and at most
/// 5 s, lets background tasks and `Stopped` hooks finish (close pools,
/// flush buffers) even when requests used all their time.
#[derive(Debug, Clone, Copy)]
struct ShutdownBudget {
    serving_ends: tokio::time::Instant,
    ends: tokio::time::Instant,
}

impl ShutdownBudget {
    fn from_now(settings: &ShutdownSettings) -> Self {
        let start = tokio::time::Instant::now();
        let ends = start + settings.drain_delay + settings.grace_period;
        let kept_back = (settings.grace_period / 5).min(Duration::from_secs(5));
        ShutdownBudget {
            serving_ends: ends - kept_back,
            ends,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::{HealthRegistry, Kind, Status};
    use std::sync::atomic::{AtomicBool, Ordering};

    fn settings() -> ShutdownSettings {
        ShutdownSettings {
            drain_delay: Duration::from_secs(5),
            grace_period: Duration::from_secs(25),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_runs_its_phases_in_the_documented_order() {
        let health = HealthRegistry::new();
        let ready = health
            .manual("shutdown", &[Kind::Readiness], Status::Pass)
            .unwrap();
        let lc = Lifecycle::new(settings());
        let task_ended = Arc::new(AtomicBool::new(false));
        let flag = task_ended.clone();
        lc.spawn_task("refresher", move |token| async move {
            token.cancelled().await;
            flag.store(true, Ordering::SeqCst);
        });
        let h = health.clone();
        lc.on_shutdown(HookPhase::Draining, "deregister", move || async move {
            assert!(
                !h.passes(Kind::Readiness),
                "readiness failed before deregistration"
            );
        });
        lc.on_shutdown(HookPhase::Stopped, "close-pool", || async {});

        // A server that stops accepting when told, then takes 3 s to finish in-flight work.
        let stop = lc.stop_accepting();
        let server = async move {
            stop.await;
            tokio::time::sleep(Duration::from_secs(3)).await;
            Ok(())
        };
        let lc2 = lc.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            lc2.request_shutdown("SIGTERM");
        });
        let started = tokio::time::Instant::now();
        let outcome = lc.run(&ready, server).await;
        assert!(outcome.clean, "{outcome:?}");
        assert!(task_ended.load(Ordering::SeqCst));
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(1 + 5 + 3),
            "signal + drain + in-flight"
        );
        use LifecycleEvent::*;
        assert_eq!(
            lc.events(),
            [
                ShutdownRequested {
                    reason: "SIGTERM".into()
                },
                ReadinessFailed,
                HookFinished {
                    name: "deregister".into(),
                    phase: HookPhase::Draining,
                    completed: true
                },
                DrainDelayElapsed,
                StopAccepting,
                InFlightCompleted,
                TasksStopped { aborted: vec![] },
                HookFinished {
                    name: "close-pool".into(),
                    phase: HookPhase::Stopped,
                    completed: true
                },
                Stopped,
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn hanging_work_is_cut_and_everything_ends_within_one_budget() {
        let health = HealthRegistry::new();
        let ready = health
            .manual("shutdown", &[Kind::Readiness], Status::Pass)
            .unwrap();
        let lc = Lifecycle::new(settings());
        lc.spawn_task("stubborn", |_token| std::future::pending());
        lc.on_shutdown(HookPhase::Draining, "hangs-draining", std::future::pending);
        lc.on_shutdown(HookPhase::Stopped, "hangs-stopped", std::future::pending);
        let stop = lc.stop_accepting();
        let stopped_at = Arc::new(std::sync::Mutex::new(None));
        let at = stopped_at.clone();
        let server = async move {
            stop.await;
            *at.lock().unwrap() = Some(tokio::time::Instant::now());
            std::future::pending().await
        };
        lc.request_shutdown("SIGTERM");
        let started = tokio::time::Instant::now();
        let outcome = lc.run(&ready, server).await;
        assert!(!outcome.clean);
        // A hanging Draining hook holds the listener open until the serving
        // part of the budget is over, no longer; the rest is kept for cleanup.
        let stopped_after = stopped_at.lock().unwrap().unwrap() - started;
        assert_eq!(stopped_after, Duration::from_secs(5 + 25 - 5));
        assert_eq!(started.elapsed(), Duration::from_secs(5 + 25));
        let events = lc.events();
        assert!(events.contains(&LifecycleEvent::GracePeriodExpired));
        assert!(events.contains(&LifecycleEvent::TasksStopped {
            aborted: vec!["stubborn".into()]
        }));
        let aborted_hooks = events
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    LifecycleEvent::HookFinished {
                        completed: false,
                        ..
                    }
                )
            })
            .count();
        assert_eq!(aborted_hooks, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_that_fails_starts_the_sequence_without_the_drain_delay() {
        let health = HealthRegistry::new();
        let ready = health
            .manual("shutdown", &[Kind::Readiness], Status::Pass)
            .unwrap();
        let lc = Lifecycle::new(settings());
        let started = tokio::time::Instant::now();
        let outcome = lc
            .run(&ready, async {
                Err(std::io::Error::other("listener died"))
            })
            .await;
        assert_eq!(outcome.server_error.as_deref(), Some("listener died"));
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert!(
            matches!(&lc.events()[0], LifecycleEvent::ShutdownRequested { reason } if reason == "server ended")
        );
    }
}
