//! One deadline for a whole call, visible to the code that makes the next call.
//!
//! A deadline is a point in time, not a timeout: it covers every attempt and
//! every backoff sleep of a call, and what is left of it travels to the next
//! hop (gRPC deadline propagation; the SRE book's "deadline propagation"
//! chapter). [`Deadline::scope`] installs a deadline for an async block as a
//! tokio task-local; code inside asks [`Deadline::current`] (or
//! [`Deadline::current_remaining`]) how much time is left, for instance to put
//! it in a request header. A scope never extends an enclosing deadline: the
//! earlier of the two wins, so a nested call cannot outlive its caller.
//!
//! ```
//! use std::time::Duration;
//! use platform_core::resilience::Deadline;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! Deadline::after(Duration::from_secs(2))
//!     .scope(async {
//!         let left = Deadline::current_remaining().unwrap();
//!         assert!(left <= Duration::from_secs(2));
//!         // A longer inner deadline does not extend the outer one.
//!         Deadline::after(Duration::from_secs(60))
//!             .scope(async { assert!(Deadline::current_remaining().unwrap() <= Duration::from_secs(2)) })
//!             .await;
//!     })
//!     .await;
//! # }
//! ```

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// Far enough to mean "no deadline" and near enough never to overflow an
/// `Instant` (about 30 years, what tokio uses for its own "never").
const FAR_FUTURE: Duration = Duration::from_secs(86400 * 365 * 30);

/// What the request being served makes current for the code it runs: its
/// deadline and its id, in one task-local, so that a server enters one
/// scope per poll rather than one per value.
#[derive(Debug, Clone, Default)]
struct Current {
    deadline: Option<Deadline>,
    request_id: Option<http::HeaderValue>,
}

tokio::task_local! {
    static CURRENT: Current;
}

/// The id of the request being served, which the server made current with
/// its deadline ([`request_scope`]); clients send it on.
pub fn current_request_id() -> Option<http::HeaderValue> {
    CURRENT.try_with(|c| c.request_id.clone()).ok().flatten()
}

/// Runs `f` with `deadline` and `request_id` current, as they are: a
/// server's request future does so on each poll.
pub fn request_scope<R>(
    deadline: Deadline,
    request_id: &http::HeaderValue,
    f: impl FnOnce() -> R,
) -> R {
    let current = Current {
        deadline: Some(deadline),
        request_id: Some(request_id.clone()),
    };
    CURRENT.sync_scope(current, f)
}

/// Runs `future` with `request_id` current (the deadline stays as it is):
/// for work a handler hands to a task of its own.
pub async fn request_id_scope<F: Future>(request_id: http::HeaderValue, future: F) -> F::Output {
    let current = Current {
        deadline: Deadline::current(),
        request_id: Some(request_id),
    };
    CURRENT.scope(current, future).await
}

/// A point in time by which a call, all attempts included, must be done.
///
/// Measured on tokio's clock, so a paused test clock drives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline {
    at: Instant,
}

impl Deadline {
    /// The deadline `timeout` from now. A huge timeout (as read from a
    /// malformed header) means "about 30 years", never an overflow.
    pub fn after(timeout: Duration) -> Self {
        Self::after_from(Instant::now(), timeout)
    }

    /// The deadline `timeout` after `now`: for a caller that has just read
    /// the clock.
    pub fn after_from(now: Instant, timeout: Duration) -> Self {
        Self {
            at: now
                .checked_add(timeout.min(FAR_FUTURE))
                .unwrap_or_else(|| now + FAR_FUTURE),
        }
    }

    /// The deadline at `instant`.
    pub fn at(instant: Instant) -> Self {
        Self { at: instant }
    }

    /// When the deadline falls.
    pub fn instant(&self) -> Instant {
        self.at
    }

    /// Time left before the deadline; zero once it has passed.
    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// Whether the deadline has passed.
    pub fn is_expired(&self) -> bool {
        Instant::now() >= self.at
    }

    /// The earlier of the two deadlines.
    pub fn min(self, other: Deadline) -> Deadline {
        if other.at < self.at { other } else { self }
    }

    /// The deadline installed by the innermost enclosing [`Deadline::scope`], if any.
    pub fn current() -> Option<Deadline> {
        CURRENT.try_with(|c| c.deadline).ok().flatten()
    }

    /// Time left before the current deadline, if there is one: what a client
    /// puts in the request header for the next hop.
    pub fn current_remaining() -> Option<Duration> {
        Self::current().map(|d| d.remaining())
    }

    /// This deadline, or the enclosing one if that is earlier.
    pub fn within_current(self) -> Deadline {
        match Self::current() {
            Some(outer) => outer.min(self),
            None => self,
        }
    }

    /// Runs `future` with this deadline (or the enclosing one, if earlier)
    /// installed as the current deadline.
    ///
    /// The scope only makes the deadline visible; it does not cancel the
    /// future when the deadline passes (a resilient call does that itself, and
    /// a server handler may want to finish its clean-up).
    pub async fn scope<F: Future>(self, future: F) -> F::Output {
        let current = Current {
            deadline: Some(self.within_current()),
            request_id: current_request_id(),
        };
        CURRENT.scope(current, future).await
    }

    /// Runs `f` with this deadline installed as the current one, as is: for
    /// a future's own `poll` that makes its deadline current on each poll
    /// (a server's request future) without a wrapping future.
    pub fn sync_scope<R>(self, f: impl FnOnce() -> R) -> R {
        let current = Current {
            deadline: Some(self),
            request_id: current_request_id(),
        };
        CURRENT.sync_scope(current, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn remaining_counts_down_and_saturates() {
        let d = Deadline::after(Duration::from_secs(3));
        assert_eq!(d.remaining(), Duration::from_secs(3));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(d.remaining(), Duration::from_secs(2));
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(d.remaining(), Duration::ZERO);
        assert!(d.is_expired());
    }

    #[tokio::test(start_paused = true)]
    async fn huge_timeouts_do_not_overflow() {
        let d = Deadline::after(Duration::MAX);
        assert_eq!(d.remaining(), FAR_FUTURE);
    }

    #[tokio::test(start_paused = true)]
    async fn scopes_nest_and_never_extend() {
        assert_eq!(Deadline::current(), None);
        let outer = Deadline::after(Duration::from_secs(1));
        outer
            .scope(async move {
                assert_eq!(Deadline::current(), Some(outer));
                Deadline::after(Duration::from_secs(10))
                    .scope(async move { assert_eq!(Deadline::current(), Some(outer)) })
                    .await;
                let inner = Deadline::after(Duration::from_millis(10));
                inner
                    .scope(async move { assert_eq!(Deadline::current(), Some(inner)) })
                    .await;
                assert_eq!(Deadline::current(), Some(outer));
            })
            .await;
        assert_eq!(Deadline::current(), None);
    }
}
