//! The registry: checks, their cached state, the background runners.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::check::{CheckFn, CheckOptions, CheckOutcome, Kind, Status};
use crate::error::HealthError;

/// The named checks of a service and their last results.
///
/// ```
/// use platform_core::health::{CheckOptions, CheckOutcome, HealthRegistry, Kind, Status};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let health = HealthRegistry::new();
/// let db = health.manual("db", &[Kind::Readiness], Status::Unknown).unwrap();
/// assert!(!health.passes(Kind::Readiness), "no result yet");
/// db.set(CheckOutcome::pass());
/// assert!(health.passes(Kind::Readiness));
/// health
///     .register("disk", CheckOptions::new(Kind::Readiness), || async { CheckOutcome::pass() })
///     .unwrap();
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct HealthRegistry {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    checks: RwLock<Vec<Arc<Entry>>>,
    stop: CancellationToken,
    changes: Arc<Changes>,
}

/// Told whenever a check is added or its status changes, so that watchers
/// (gRPC health `Watch`) answer at once instead of polling the probes.
#[derive(Debug)]
struct Changes(tokio::sync::watch::Sender<u64>);

impl Default for Changes {
    fn default() -> Self {
        Changes(tokio::sync::watch::Sender::new(0))
    }
}

impl Changes {
    fn notify(&self) {
        self.0
            .send_modify(|generation| *generation = generation.wrapping_add(1));
    }
}

/// A subscription to the registry's changes (see [`HealthRegistry::changes`]).
#[derive(Debug, Clone)]
pub struct HealthChanges(tokio::sync::watch::Receiver<u64>);

impl HealthChanges {
    /// Waits until a check is added or a check's status changes after the
    /// last call (or after the subscription, for the first). Returns false
    /// when the registry is gone and nothing will change any more.
    pub async fn changed(&mut self) -> bool {
        self.0.changed().await.is_ok()
    }
}

#[derive(Debug)]
struct Entry {
    name: String,
    kinds: Vec<Kind>,
    options: Option<CheckOptions>,
    state: Mutex<State>,
    changes: Arc<Changes>,
}

#[derive(Debug, Clone)]
struct State {
    status: Status,
    message: Option<String>,
    consecutive_failures: u32,
    consecutive_successes: u32,
    last_duration: Option<Duration>,
    last_success: Option<SystemTime>,
    runs: u64,
}

impl Entry {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies one result with the thresholds.
    fn record(&self, outcome: CheckOutcome, took: Duration) {
        let (failure_threshold, success_threshold) = self
            .options
            .as_ref()
            .map_or((1, 1), |o| (o.failure_threshold, o.success_threshold));
        let mut s = self.state();
        s.runs += 1;
        s.last_duration = Some(took);
        s.message = outcome.message;
        let before = s.status;
        match outcome.status {
            Status::Pass | Status::Warn => {
                s.consecutive_successes += 1;
                s.consecutive_failures = 0;
                s.last_success = Some(SystemTime::now());
                let recovering = matches!(s.status, Status::Fail | Status::Unknown);
                if !recovering || s.consecutive_successes >= success_threshold {
                    s.status = outcome.status;
                }
            }
            Status::Fail | Status::Unknown => {
                s.consecutive_failures += 1;
                s.consecutive_successes = 0;
                if s.consecutive_failures >= failure_threshold {
                    s.status = Status::Fail;
                }
            }
        }
        if s.status != before {
            tracing::info!(check = %self.name, from = ?before, to = ?s.status, detail = ?s.message, "health check changed");
            drop(s);
            self.changes.notify();
        }
    }
}

/// A check whose state the service sets itself (start-up done, shutdown begun).
#[derive(Debug, Clone)]
pub struct ManualCheck {
    entry: Arc<Entry>,
}

impl ManualCheck {
    /// Sets the check's state.
    pub fn set(&self, outcome: CheckOutcome) {
        self.entry.record(outcome, Duration::ZERO);
    }
}

/// One check in a [`HealthReport`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckReport {
    /// The check's name.
    pub name: String,
    /// The probes it answers for.
    pub kinds: Vec<Kind>,
    /// Its current state.
    pub status: Status,
    /// What its last run said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// How long its last run took, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_duration_ms: Option<f64>,
    /// When it last passed (RFC 3339, UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_success: Option<String>,
    /// Failures in a row.
    pub consecutive_failures: u32,
}

/// The detailed health of a service (`/health`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthReport {
    /// `fail` when liveness or readiness fails, `warn` when a check warns, else `pass`.
    pub status: Status,
    /// Whether each probe passes.
    pub live: bool,
    /// Whether the readiness probe passes.
    pub ready: bool,
    /// Whether the startup probe passes.
    pub started: bool,
    /// Every check.
    pub checks: Vec<CheckReport>,
}

impl HealthRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        HealthRegistry::default()
    }

    fn add(
        &self,
        name: &str,
        kinds: &[Kind],
        options: Option<CheckOptions>,
        initial: Status,
    ) -> Result<Arc<Entry>, HealthError> {
        if name.trim().is_empty() {
            return Err(HealthError::InvalidCheck {
                name: name.to_owned(),
                reason: "the name is empty".into(),
            });
        }
        if kinds.is_empty() {
            return Err(HealthError::InvalidCheck {
                name: name.to_owned(),
                reason: "it answers for no probe (kinds is empty)".into(),
            });
        }
        let mut checks = self
            .inner
            .checks
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if checks.iter().any(|c| c.name == name) {
            return Err(HealthError::Duplicate {
                name: name.to_owned(),
            });
        }
        let entry = Arc::new(Entry {
            name: name.to_owned(),
            kinds: kinds.to_vec(),
            options,
            state: Mutex::new(State {
                status: initial,
                message: None,
                consecutive_failures: 0,
                consecutive_successes: 0,
                last_duration: None,
                last_success: None,
                runs: 0,
            }),
            changes: self.inner.changes.clone(),
        });
        checks.push(entry.clone());
        drop(checks);
        self.inner.changes.notify();
        Ok(entry)
    }

    /// Adds a check whose state the service sets through the returned handle.
    pub fn manual(
        &self,
        name: &str,
        kinds: &[Kind],
        initial: Status,
    ) -> Result<ManualCheck, HealthError> {
        Ok(ManualCheck {
            entry: self.add(name, kinds, None, initial)?,
        })
    }

    /// Like [`HealthRegistry::register`], for a check that reads state the
    /// service already has (a breaker, a cache) and does no I/O.
    pub fn register_sync(
        &self,
        name: &str,
        options: CheckOptions,
        check: impl Fn() -> CheckOutcome + Send + Sync + 'static,
    ) -> Result<(), HealthError> {
        self.register(name, options, move || std::future::ready(check()))
    }

    /// Adds a check run in the background every `options.interval`; needs a
    /// tokio runtime. Probes only ever read its last result.
    pub fn register<F, Fut>(
        &self,
        name: &str,
        options: CheckOptions,
        check: F,
    ) -> Result<(), HealthError>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = CheckOutcome> + Send + 'static,
    {
        let invalid = |reason: &str| HealthError::InvalidCheck {
            name: name.to_owned(),
            reason: reason.to_owned(),
        };
        if options.interval.is_zero() {
            return Err(invalid("interval must be above zero"));
        }
        if options.timeout.is_zero() {
            return Err(invalid("timeout must be above zero"));
        }
        if options.failure_threshold == 0 || options.success_threshold == 0 {
            return Err(invalid("thresholds must be at least 1"));
        }
        let run: CheckFn = Arc::new(move || Box::pin(check()));
        let kinds = options.kinds.clone();
        let entry = self.add(name, &kinds, Some(options.clone()), Status::Unknown)?;
        let stop = self.inner.stop.clone();
        tokio::spawn(async move {
            loop {
                let started = tokio::time::Instant::now();
                let outcome = tokio::select! {
                    _ = stop.cancelled() => return,
                    r = tokio::time::timeout(options.timeout, run()) => r.unwrap_or_else(|_| {
                        CheckOutcome::fail(format!("timed out after {:?}", options.timeout))
                    }),
                };
                entry.record(outcome, started.elapsed());
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(options.interval) => {}
                }
            }
        });
        Ok(())
    }

    /// A subscription to changes: a check added, or a check's status
    /// changed (probes may then answer differently).
    ///
    /// ```
    /// use platform_core::health::{HealthRegistry, Kind, Status, CheckOutcome};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let health = HealthRegistry::new();
    /// let mut changes = health.changes();
    /// let db = health.manual("db", &[Kind::Readiness], Status::Pass).unwrap();
    /// db.set(CheckOutcome::fail("down"));
    /// assert!(changes.changed().await);
    /// assert!(!health.passes(Kind::Readiness));
    /// # }
    /// ```
    pub fn changes(&self) -> HealthChanges {
        HealthChanges(self.inner.changes.0.subscribe())
    }

    /// Whether the probe of `kind` passes: every check of that kind passes.
    pub fn passes(&self, kind: Kind) -> bool {
        self.inner
            .checks
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|c| c.kinds.contains(&kind))
            .all(|c| c.state().status.passes(kind))
    }

    /// The status of one check, if it exists.
    pub fn status_of(&self, name: &str) -> Option<Status> {
        self.inner
            .checks
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.state().status)
    }

    /// The detailed report.
    pub fn report(&self) -> HealthReport {
        let checks: Vec<CheckReport> = self
            .inner
            .checks
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|c| {
                let s = c.state().clone();
                CheckReport {
                    name: c.name.clone(),
                    kinds: c.kinds.clone(),
                    status: s.status,
                    message: s.message,
                    last_duration_ms: s.last_duration.map(|d| d.as_secs_f64() * 1e3),
                    last_success: s.last_success.map(rfc3339),
                    consecutive_failures: s.consecutive_failures,
                }
            })
            .collect();
        let (live, ready, started) = (
            self.passes(Kind::Liveness),
            self.passes(Kind::Readiness),
            self.passes(Kind::Startup),
        );
        let status = if !live || !ready {
            Status::Fail
        } else if checks.iter().any(|c| c.status == Status::Warn) {
            Status::Warn
        } else {
            Status::Pass
        };
        HealthReport {
            status,
            live,
            ready,
            started,
            checks,
        }
    }

    /// Stops every background check (shutdown).
    pub fn stop(&self) {
        self.inner.stop.cancel();
    }
}

/// Formats a time as RFC 3339 in UTC, to the millisecond (humantime's
/// formatter), clamped to what it can show: 1970 to the end of 9999.
pub(crate) fn rfc3339(time: SystemTime) -> String {
    let last = SystemTime::UNIX_EPOCH + Duration::from_millis(253_402_300_799_999);
    let time = time.clamp(SystemTime::UNIX_EPOCH, last);
    humantime::format_rfc3339_millis(time).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn formats_rfc3339() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_millis(951_782_400_999);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.999Z");
        // Out of range: clamped, never a panic.
        let before = SystemTime::UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(rfc3339(before), "1970-01-01T00:00:00.000Z");
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(300_000_000_000);
        assert_eq!(rfc3339(far), "9999-12-31T23:59:59.999Z");
    }

    /// Lets a test script what the check answers next.
    fn scripted(health: &HealthRegistry, options: CheckOptions) -> Arc<AtomicU32> {
        // 0 = pass, 1 = fail, 2 = hang
        let mode = Arc::new(AtomicU32::new(0));
        let m = mode.clone();
        health
            .register("dep", options, move || {
                let m = m.clone();
                async move {
                    match m.load(Ordering::SeqCst) {
                        0 => CheckOutcome::pass(),
                        1 => CheckOutcome::fail("down"),
                        _ => std::future::pending().await,
                    }
                }
            })
            .unwrap();
        mode
    }

    async fn advance(d: Duration) {
        // Paused clock: sleeping advances time and lets the checks run.
        tokio::time::sleep(d).await;
    }

    /// Watchers hear of a status change and of a new check, and of nothing
    /// else: a result that leaves the status as it was is no change.
    #[tokio::test(start_paused = true)]
    async fn changes_are_told_when_a_status_changes_and_only_then() {
        let health = HealthRegistry::new();
        let mut changes = health.changes();
        let pending = |changes: &mut HealthChanges| {
            let mut changes = changes.clone();
            async move {
                tokio::time::timeout(Duration::from_secs(1), changes.changed())
                    .await
                    .is_err()
            }
        };
        assert!(pending(&mut changes).await, "nothing happened yet");
        let db = health
            .manual("db", &[Kind::Readiness], Status::Pass)
            .unwrap();
        assert!(changes.changed().await, "a check was added");
        db.set(CheckOutcome::pass());
        assert!(pending(&mut changes).await, "pass after pass is no change");
        db.set(CheckOutcome::fail("down"));
        assert!(changes.changed().await, "pass to fail");
        assert!(!health.passes(Kind::Readiness));
        drop(db);
        drop(health);
        assert!(!changes.changed().await, "the registry is gone");
    }

    #[tokio::test(start_paused = true)]
    async fn thresholds_decide_when_a_check_flips() {
        let health = HealthRegistry::new();
        let options = CheckOptions::new(Kind::Readiness)
            .interval(Duration::from_secs(10))
            .failure_threshold(3)
            .success_threshold(2);
        let mode = scripted(&health, options);
        assert_eq!(health.status_of("dep"), Some(Status::Unknown));
        assert!(!health.passes(Kind::Readiness), "unknown is not ready");
        // (outcome the check gives from now on, time to let pass, status then, why)
        let steps = [
            (
                0,
                Duration::from_millis(1),
                Status::Unknown,
                "one success of two needed",
            ),
            (0, Duration::from_secs(10), Status::Pass, "two successes"),
            (
                1,
                Duration::from_secs(20),
                Status::Pass,
                "two failures of three",
            ),
            (1, Duration::from_secs(10), Status::Fail, "three failures"),
            (
                0,
                Duration::from_secs(10),
                Status::Fail,
                "one success of two",
            ),
            (
                0,
                Duration::from_secs(10),
                Status::Pass,
                "two successes again",
            ),
        ];
        for (outcome, wait, expected, why) in steps {
            mode.store(outcome, Ordering::SeqCst);
            advance(wait).await;
            assert_eq!(health.status_of("dep"), Some(expected), "{why}");
            assert_eq!(
                health.passes(Kind::Readiness),
                expected == Status::Pass,
                "{why}"
            );
            assert!(
                health.passes(Kind::Liveness),
                "a readiness check never fails liveness"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_check_times_out_as_a_failure_and_probes_stay_prompt() {
        let health = HealthRegistry::new();
        let options = CheckOptions::new(Kind::Readiness)
            .interval(Duration::from_secs(1))
            .timeout(Duration::from_secs(2))
            .failure_threshold(1);
        let mode = scripted(&health, options);
        advance(Duration::from_millis(1)).await;
        assert!(health.passes(Kind::Readiness));
        mode.store(2, Ordering::SeqCst);
        advance(Duration::from_secs(1)).await;
        // The check is now hanging; reading health does not wait for it.
        let before = tokio::time::Instant::now();
        assert!(health.passes(Kind::Readiness), "last result still cached");
        assert_eq!(
            before,
            tokio::time::Instant::now(),
            "no time passed reading the probe"
        );
        advance(Duration::from_secs(2)).await;
        assert_eq!(health.status_of("dep"), Some(Status::Fail));
        let report = health.report();
        assert!(
            report.checks[0]
                .message
                .as_deref()
                .unwrap()
                .contains("timed out")
        );
        assert_eq!(report.status, Status::Fail);
    }

    #[tokio::test]
    async fn warnings_are_reported_but_pass_probes() {
        let health = HealthRegistry::new();
        let reload = health
            .manual("config", &[Kind::Readiness], Status::Pass)
            .unwrap();
        reload.set(CheckOutcome::warn("last reload rejected"));
        assert!(health.passes(Kind::Readiness));
        let report = health.report();
        assert_eq!(report.status, Status::Warn);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["checks"][0]["status"], "warn");
        assert_eq!(json["checks"][0]["message"], "last reload rejected");
    }

    #[tokio::test]
    async fn bad_checks_are_refused() {
        let health = HealthRegistry::new();
        health.manual("a", &[Kind::Liveness], Status::Pass).unwrap();
        assert!(matches!(
            health.manual("a", &[Kind::Liveness], Status::Pass),
            Err(HealthError::Duplicate { .. })
        ));
        assert!(health.manual("b", &[], Status::Pass).is_err());
        let zero = CheckOptions::new(Kind::Readiness).failure_threshold(0);
        assert!(
            health
                .register("c", zero, || async { CheckOutcome::pass() })
                .is_err()
        );
    }
}
