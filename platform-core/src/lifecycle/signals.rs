//! SIGTERM and SIGINT: the first starts shutdown, the second exits at once.

use super::Lifecycle;

/// Exit code when a second signal cuts shutdown short (128 + SIGINT).
pub(crate) const EXIT_FORCED: i32 = 130;

pub(crate) fn install(lifecycle: &Lifecycle) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let lifecycle = lifecycle.clone();
        tokio::spawn(async move {
            let first = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            lifecycle.request_shutdown(first);
            let second = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            tracing::warn!(
                signal = second,
                "second signal: exiting without finishing shutdown"
            );
            std::process::exit(EXIT_FORCED);
        });
    }
    #[cfg(not(unix))]
    {
        let lifecycle = lifecycle.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                lifecycle.request_shutdown("ctrl-c");
            }
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(EXIT_FORCED);
            }
        });
    }
    Ok(())
}
