//! Reload: re-read on change, validate, swap atomically, tell subscribers.
//!
//! A bad reload keeps the last good configuration and records the problems
//! in [`ReloadStatus`], which health checks and metrics read; it never takes
//! a running service down. Bursts of file events (an editor's save, a
//! Kubernetes ConfigMap's symlink swap) are debounced into one reload.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, watch};

use crate::loader::{Loaded, Loader, Settings};
use crate::report::{ConfigError, Report};

/// Default quiet period after the last file event before reloading.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(250);

/// How reloading has gone; read by health checks and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadStatus {
    /// Increases with every successful reload that changed something.
    pub generation: u64,
    /// Successful reloads (changed or not).
    pub reloads: u64,
    /// Reloads rejected because the new configuration was invalid.
    pub failed_reloads: u64,
    /// When the last reload attempt finished.
    pub last_attempt: Option<SystemTime>,
    /// The problems of the last attempt, if it failed; cleared by a good one.
    pub last_error: Option<Arc<Report>>,
}

impl ReloadStatus {
    /// True unless the last reload attempt failed.
    pub fn is_ok(&self) -> bool {
        self.last_error.is_none()
    }
}

/// Holds the current configuration and replaces it on reload.
#[derive(Debug)]
pub struct Reloader<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for Reloader<T> {
    fn clone(&self) -> Self {
        Reloader {
            inner: self.inner.clone(),
        }
    }
}

#[derive(Debug)]
struct Inner<T> {
    loader: Loader,
    // Serialises reloads so two triggers cannot interleave their swaps.
    current: Mutex<Loaded<T>>,
    value: watch::Sender<Arc<T>>,
    status: watch::Sender<ReloadStatus>,
}

impl<T: Settings> Reloader<T> {
    /// Starts from a configuration already loaded with `loader`.
    pub fn new(loader: Loader, loaded: Loaded<T>) -> Self {
        let (value, _) = watch::channel(loaded.shared());
        let (status, _) = watch::channel(ReloadStatus::default());
        Reloader {
            inner: Arc::new(Inner {
                loader,
                current: Mutex::new(loaded),
                value,
                status,
            }),
        }
    }

    /// The configuration now in force.
    pub fn current(&self) -> Arc<T> {
        self.inner.value.borrow().clone()
    }

    /// The configuration now in force with its provenance.
    pub fn loaded(&self) -> Loaded<T> {
        self.lock().clone()
    }

    /// A receiver that sees every new configuration.
    pub fn subscribe(&self) -> watch::Receiver<Arc<T>> {
        self.inner.value.subscribe()
    }

    /// How reloading has gone so far.
    pub fn status(&self) -> ReloadStatus {
        self.inner.status.borrow().clone()
    }

    /// A receiver that sees every change of [`ReloadStatus`].
    pub fn subscribe_status(&self) -> watch::Receiver<ReloadStatus> {
        self.inner.status.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Loaded<T>> {
        self.inner
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Re-reads every source now. `Ok(true)` when the configuration changed
    /// and subscribers were told; on error the last good one stays.
    pub fn reload(&self) -> Result<bool, ConfigError> {
        let mut current = self.lock();
        let outcome = self.inner.loader.load::<T>();
        let now = SystemTime::now();
        match outcome {
            Ok(fresh) => {
                let changed = !fresh.same_sources(&current);
                if changed {
                    *current = fresh;
                    self.inner.value.send_replace(current.shared());
                }
                self.inner.status.send_modify(|s| {
                    s.reloads += 1;
                    s.generation += u64::from(changed);
                    s.last_attempt = Some(now);
                    s.last_error = None;
                });
                tracing::info!(changed, "configuration reloaded");
                Ok(changed)
            }
            Err(e) => {
                let report = e.report().cloned().unwrap_or_default();
                tracing::warn!(error = %e, "configuration reload rejected; keeping the last good configuration");
                self.inner.status.send_modify(|s| {
                    s.failed_reloads += 1;
                    s.last_attempt = Some(now);
                    s.last_error = Some(Arc::new(report));
                });
                Err(e)
            }
        }
    }

    /// Watches the config directory and reloads after `debounce` of quiet
    /// following a change. Stops when the returned guard is dropped. Needs a
    /// tokio runtime. Without a config directory there is nothing to watch and
    /// the guard is inert.
    pub fn watch(&self, debounce: Duration) -> Result<WatchGuard, ConfigError> {
        use notify::Watcher;
        let dir = self.lock().config_dir().to_owned();
        if !dir.is_dir() {
            tracing::debug!(dir = %dir.display(), "no config directory to watch");
            return Ok(WatchGuard {
                _watcher: None,
                task: None,
            });
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                // Access events (reads) are our own loads: ignore them.
                if let Ok(event) = event
                    && !matches!(event.kind, notify::EventKind::Access(_))
                {
                    let _ = tx.send(());
                }
            })
            .map_err(|source| ConfigError::Watch {
                path: dir.clone(),
                source,
            })?;
        watcher
            .watch(&dir, notify::RecursiveMode::NonRecursive)
            .map_err(|source| ConfigError::Watch {
                path: dir.clone(),
                source,
            })?;
        let this = self.clone();
        let task = tokio::spawn(debounce_loop(rx, debounce, move || {
            let _ = this.reload();
        }));
        Ok(WatchGuard {
            _watcher: Some(Box::new(watcher)),
            task: Some(task),
        })
    }
}

/// Calls `fire` once per burst of events, `debounce` after the last of them.
pub(crate) async fn debounce_loop(
    mut events: mpsc::UnboundedReceiver<()>,
    debounce: Duration,
    mut fire: impl FnMut(),
) {
    while events.recv().await.is_some() {
        loop {
            match tokio::time::timeout(debounce, events.recv()).await {
                Ok(Some(())) => continue,
                Ok(None) => return,
                Err(_) => break,
            }
        }
        fire();
    }
}

/// Keeps a config directory watched; dropping it stops the watch.
pub struct WatchGuard {
    _watcher: Option<Box<dyn notify::Watcher + Send>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for WatchGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchGuard")
            .field("active", &self.task.is_some())
            .finish()
    }
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_events_fires_once_after_the_quiet_period() {
        let (tx, rx) = mpsc::unbounded_channel();
        let fired = Arc::new(AtomicUsize::new(0));
        let counter = fired.clone();
        let task = tokio::spawn(debounce_loop(rx, Duration::from_millis(250), move || {
            counter.fetch_add(1, Ordering::SeqCst);
        }));
        for _ in 0..5 {
            tx.send(()).unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(fired.load(Ordering::SeqCst), 0, "still inside the burst");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(fired.load(Ordering::SeqCst), 1);
        tx.send(()).unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            fired.load(Ordering::SeqCst),
            2,
            "a later change fires again"
        );
        drop(tx);
        task.await.unwrap();
    }
}
