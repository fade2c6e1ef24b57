//! Client-side adaptive throttling (Google SRE book, "Handling Overload"):
//! when a target keeps refusing work, the client stops sending most of what
//! would be refused, and refuses it itself, at once and at no cost to the
//! target.
//!
//! Over a sliding window (two minutes by default) the client counts
//! `requests` (calls it wanted to make, those it refused itself included)
//! and `accepts` (calls the target took: answered with anything but an
//! overload rejection). A new call is refused locally with probability
//!
//! `max(0, (requests − K × accepts) / (requests + 1))`
//!
//! With K = 2 the target keeps receiving about twice what it accepts, so it
//! sees demand come back as soon as it has room, and a healthy target (all
//! accepted) is never throttled. Only overload rejections count against a
//! target (a platform server's overloaded 503, or 429): failures of
//! transport or of the service are the circuit breaker's and outlier
//! ejection's business.
//!
//! The window is twelve buckets (the circuit breaker's rolling counts);
//! counting is a few relaxed atomic operations per call, and the
//! probability is recomputed when a call ends that could change it.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use rand::Rng as _;
use tokio::time::Instant;

use super::SettingsError;
use super::settings::ThrottleSettings;
use super::window::RollingCounts;

/// Buckets of the sliding window.
const BUCKETS: usize = 12;

/// What a call's end says about the target's will to take work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The target took the call (it answered, with anything but an
    /// overload rejection).
    Accepted,
    /// The target refused it as overloaded.
    Rejected,
}

/// The adaptive throttle of one target; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct AdaptiveThrottle {
    enabled: bool,
    k: f64,
    /// Requests, and the accepted ones among them.
    window: RollingCounts<BUCKETS>,
    /// The local rejection probability, as `f32` bits (0 when not throttling).
    probability: AtomicU32,
}

impl AdaptiveThrottle {
    /// A throttle with these settings; errors name the key.
    pub fn new(settings: &ThrottleSettings) -> Result<Self, SettingsError> {
        settings.check()?;
        Ok(Self {
            enabled: settings.enabled,
            k: settings.k,
            window: RollingCounts::new(settings.window, Instant::now()),
            probability: AtomicU32::new(0),
        })
    }

    /// Whether a new call may go out; `false` (the call refused locally)
    /// with the current probability. A refused call counts as a request.
    pub fn admit(&self) -> bool {
        if !self.enabled {
            return true;
        }
        let p = f32::from_bits(self.probability.load(Ordering::Relaxed));
        if p <= 0.0 || rand::rng().random::<f32>() >= p {
            return true;
        }
        self.window.record(Instant::now(), false);
        false
    }

    /// Records how an admitted call ended, and updates the probability.
    pub fn record(&self, admission: Admission) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        let accepted = admission == Admission::Accepted;
        self.window.record(now, accepted);
        // An accept only lowers the probability: already 0, it stays 0,
        // and the healthy path skips summing the window.
        if accepted && self.probability.load(Ordering::Relaxed) == 0 {
            return;
        }
        let (requests, accepts) = self.window.counts(now);
        let (requests, accepts) = (requests as f64, accepts as f64);
        let p = ((requests - self.k * accepts) / (requests + 1.0)).max(0.0);
        self.probability
            .store((p as f32).to_bits(), Ordering::Relaxed);
    }

    /// The local rejection probability now (for tests and health reports).
    pub fn probability(&self) -> f64 {
        f64::from(f32::from_bits(self.probability.load(Ordering::Relaxed)))
    }
}

impl ThrottleSettings {
    /// What [`AdaptiveThrottle::new`] would refuse.
    pub fn check(&self) -> Result<(), SettingsError> {
        SettingsError::when(
            !(self.k.is_finite() && self.k >= 1.0),
            "throttle.k",
            self.k,
            "must be a number of at least 1",
        )?;
        SettingsError::when(
            self.window < Duration::from_secs(1),
            "throttle.window",
            self.window,
            "must be at least 1s",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> AdaptiveThrottle {
        AdaptiveThrottle::new(&ThrottleSettings::default()).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_target_that_accepts_everything_is_never_throttled() {
        let t = throttle();
        for _ in 0..1000 {
            assert!(t.admit());
            t.record(Admission::Accepted);
        }
        assert_eq!(t.probability(), 0.0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_target_that_refuses_most_gets_about_twice_what_it_accepts() {
        let t = throttle();
        // The target has room for a third of what the callers want.
        let (mut sent, mut accepted, mut wanted) = (0u32, 0u32, 0u32);
        let mut room = 0.0;
        for _ in 0..30_000u32 {
            wanted += 1;
            room = f64::min(room + 1.0 / 3.0, 1.0);
            if !t.admit() {
                continue;
            }
            sent += 1;
            if room >= 1.0 {
                room -= 1.0;
                accepted += 1;
                t.record(Admission::Accepted);
            } else {
                t.record(Admission::Rejected);
            }
        }
        let ratio = f64::from(sent) / f64::from(accepted);
        assert!(
            (1.7..=2.5).contains(&ratio),
            "sent {sent} for {accepted} accepted"
        );
        assert!(
            f64::from(sent) < 0.9 * f64::from(wanted),
            "sent {sent} of {wanted}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn rejections_age_out_of_the_window() {
        let t = throttle();
        for _ in 0..1000 {
            t.record(Admission::Rejected);
        }
        assert!(t.probability() > 0.99);
        tokio::time::advance(Duration::from_secs(130)).await;
        t.record(Admission::Accepted);
        assert_eq!(
            t.probability(),
            0.0,
            "two minutes later the refusals are forgotten"
        );
    }

    #[test]
    fn k_below_one_and_a_short_window_are_refused_with_their_key() {
        let e = AdaptiveThrottle::new(&ThrottleSettings {
            k: 0.5,
            ..ThrottleSettings::default()
        })
        .unwrap_err();
        assert_eq!(e.key, "throttle.k");
        let e = AdaptiveThrottle::new(&ThrottleSettings {
            window: Duration::from_millis(10),
            ..ThrottleSettings::default()
        })
        .unwrap_err();
        assert_eq!(e.key, "throttle.window");
    }
}
