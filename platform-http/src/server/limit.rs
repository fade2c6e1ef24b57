//! The server's concurrency limit: requests over it are refused at once
//! (503, `Retry-After`, [`OVERLOADED_HEADER`]) instead of queueing until
//! their callers' deadlines pass.
//!
//! # The adaptive limit
//!
//! A gradient limit in the manner of Netflix's `Gradient2` and Envoy's
//! adaptive concurrency filter: the limit follows the ratio of the no-load
//! latency to the latency now.
//!
//! - Each completed request adds its time to the current *window*. A window
//!   closes after `server.limit.window` (100 ms) and at least ten requests;
//!   its mean is the latency now (`short`).
//! - The no-load latency (`long`) comes from the fastest request of each
//!   window, as TCP Vegas takes the minimum round trip: even a busy service
//!   answers some request with nothing queued ahead of it, so the fastest
//!   answer tells the service's own latency where the mean tells the queue.
//!   `long` drops at once to a faster window's fastest answer and follows a
//!   slower one slowly (an exponential average over about fifty windows:
//!   a queue that builds below the limit raises the fastest answer too) and
//!   only while the limit was never reached: under saturation the queue never empties,
//!   and following it would let the limit drift up with the queue
//!   (Gradient2's known weakness, which it answers with a 600-window average).
//! - `gradient = clamp(tolerance × long / short, 0.5, 1)`: below 1 once the
//!   latency is more than `tolerance` (1.25, Envoy's buffer) times the
//!   no-load latency.
//! - `new = limit × gradient + √limit`, the square root leaving room for
//!   the limit to grow when latency allows (Gradient2's queue size); a
//!   window in which fewer than half the limit were ever in flight does not
//!   change it (the limit held nothing back, so says nothing about itself).
//! - A lower `new` is taken at once (at most halving the limit per window):
//!   a queue that has formed costs every request behind it, so the limit
//!   comes down to the concurrency that keeps latency within the tolerance
//!   in a few windows. A higher one is approached by a fifth per window
//!   (`limit ← 0.8 × limit + 0.2 × new`), so that one fast window does not
//!   open the gate wide. The limit stays within `server.limit.min` and
//!   `server.limit.max`.
//!
//! The per-request cost is a few relaxed atomic operations on admission and
//! completion; the thread that closes a window does the arithmetic.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry::metrics::{Counter, Meter, ObservableGauge};
use platform_core::settings::{LimitMode, LimitSettings};

/// The header an overloaded server adds to its 503: the platform client
/// reads it as "overloaded: do not retry this endpoint now".
pub const OVERLOADED_HEADER: &str = "x-platform-overloaded";

/// Seconds a refused caller is told to wait (`Retry-After`).
const RETRY_AFTER_SECS: &str = "1";
/// The same wait for a gRPC caller (`grpc-retry-pushback-ms`).
const RETRY_AFTER_MILLIS: &str = "1000";

/// Fewer completions than this never close a window: a mean of a few
/// requests says little.
const MIN_WINDOW_SAMPLES: u64 = 10;

/// Weight of a slower window in the no-load latency's average.
const LONG_WEIGHT: f64 = 0.02;

/// Weight of a higher estimate in the limit.
const SMOOTHING: f64 = 0.2;

/// The limit of one listener, shared by its routes.
#[derive(Debug)]
pub(crate) struct ConcurrencyLimit {
    mode: LimitMode,
    limit: AtomicU32,
    min: f64,
    max: f64,
    tolerance: f64,
    window_nanos: u64,
    /// Start of the clock the window ends are counted on.
    epoch: tokio::time::Instant,
    window_end: AtomicU64,
    samples: AtomicU64,
    total_nanos: AtomicU64,
    /// The most requests in flight at once during the window.
    peak: AtomicU32,
    /// The window's fastest answer, in nanoseconds.
    fastest: AtomicU64,
    /// The state only the thread closing a window touches.
    estimate: std::sync::Mutex<Estimate>,
    rejected: Counter<u64>,
    _limit_gauge: Option<ObservableGauge<u64>>,
}

#[derive(Debug)]
struct Estimate {
    limit: f64,
    /// No-load latency in nanoseconds; 0 until the first window.
    long: f64,
}

/// A window's figures, for [`next_limit`].
#[derive(Debug, Clone, Copy)]
struct Window {
    mean_nanos: f64,
    fastest_nanos: f64,
    peak: u32,
}

impl ConcurrencyLimit {
    pub(crate) fn new(settings: &LimitSettings, meter: &Meter) -> Arc<Self> {
        let start = match settings.mode {
            LimitMode::Adaptive => settings.initial,
            LimitMode::Static | LimitMode::Off => settings.max,
        };
        Arc::new_cyclic(|weak: &std::sync::Weak<Self>| {
            let weak = weak.clone();
            let gauge = (settings.mode != LimitMode::Off).then(|| {
                meter
                    .u64_observable_gauge("platform.http.server.limit")
                    .with_unit("{request}")
                    .with_description(
                        "The server's concurrency limit now: requests in flight beyond it are refused with 503.",
                    )
                    .with_callback(move |observer| {
                        if let Some(limit) = weak.upgrade() {
                            observer.observe(u64::from(limit.current()), &[]);
                        }
                    })
                    .build()
            });
            ConcurrencyLimit {
                mode: settings.mode,
                limit: AtomicU32::new(start),
                min: f64::from(settings.min),
                max: f64::from(settings.max),
                tolerance: settings.tolerance,
                window_nanos: u64::try_from(settings.window.as_nanos()).unwrap_or(u64::MAX),
                epoch: tokio::time::Instant::now(),
                window_end: AtomicU64::new(0),
                samples: AtomicU64::new(0),
                total_nanos: AtomicU64::new(0),
                peak: AtomicU32::new(0),
                fastest: AtomicU64::new(u64::MAX),
                estimate: std::sync::Mutex::new(Estimate {
                    limit: f64::from(start),
                    long: 0.0,
                }),
                rejected: meter
                    .u64_counter("platform.http.server.limit.rejected")
                    .with_unit("{request}")
                    .with_description(
                        "Requests refused with 503 because the server's concurrency limit was reached.",
                    )
                    .build(),
                _limit_gauge: gauge,
            }
        })
    }

    /// The limit now.
    pub(crate) fn current(&self) -> u32 {
        self.limit.load(Ordering::Relaxed)
    }

    /// Whether a request that makes `in_flight` requests in flight may run;
    /// counts it as refused otherwise.
    pub(crate) fn admit(&self, in_flight: i64) -> bool {
        if self.mode == LimitMode::Off {
            return true;
        }
        let in_flight = u32::try_from(in_flight).unwrap_or(u32::MAX);
        if in_flight > self.current() {
            self.rejected.add(1, &[]);
            return false;
        }
        if self.mode == LimitMode::Adaptive && in_flight > self.peak.load(Ordering::Relaxed) {
            self.peak.fetch_max(in_flight, Ordering::Relaxed);
        }
        true
    }

    /// Records an admitted request that took `elapsed`, and closes the
    /// window when it is due.
    pub(crate) fn completed(&self, elapsed: Duration, now: tokio::time::Instant) {
        if self.mode != LimitMode::Adaptive {
            return;
        }
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.total_nanos.fetch_add(nanos, Ordering::Relaxed);
        if nanos < self.fastest.load(Ordering::Relaxed) {
            self.fastest.fetch_min(nanos, Ordering::Relaxed);
        }
        let samples = self.samples.fetch_add(1, Ordering::Relaxed) + 1;
        let now = u64::try_from(now.duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX);
        let end = self.window_end.load(Ordering::Relaxed);
        if now < end || samples < MIN_WINDOW_SAMPLES {
            return;
        }
        // One thread closes the window: the one that moves its end.
        if self
            .window_end
            .compare_exchange(
                end,
                now.saturating_add(self.window_nanos),
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_err()
        {
            return;
        }
        self.close_window();
    }

    fn close_window(&self) {
        let samples = self.samples.swap(0, Ordering::Relaxed);
        let total = self.total_nanos.swap(0, Ordering::Relaxed);
        let peak = self.peak.swap(0, Ordering::Relaxed);
        let fastest = self.fastest.swap(u64::MAX, Ordering::Relaxed);
        if samples == 0 {
            return;
        }
        let mean_nanos = total as f64 / samples as f64;
        let window = Window {
            mean_nanos,
            fastest_nanos: (fastest as f64).min(mean_nanos),
            peak,
        };
        let mut estimate = self
            .estimate
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (limit, long) = next_limit(
            estimate.limit,
            estimate.long,
            window,
            self.tolerance,
            (self.min, self.max),
        );
        *estimate = Estimate { limit, long };
        // Rounded up: a limit of 1.2 lets a second request through only
        // once the average says so, never stops at zero.
        self.limit.store(limit.ceil() as u32, Ordering::Relaxed);
    }
}

/// The limit and the no-load latency after `window`; see the module docs.
fn next_limit(
    limit: f64,
    long: f64,
    window: Window,
    tolerance: f64,
    (min, max): (f64, f64),
) -> (f64, f64) {
    let short = window.mean_nanos.max(1.0);
    let fastest = window.fastest_nanos.clamp(1.0, short);
    let saturated = f64::from(window.peak) >= limit.floor();
    let long = if long <= 0.0 || fastest <= long {
        fastest
    } else if !saturated {
        long + (fastest - long) * LONG_WEIGHT
    } else {
        long
    };
    let gradient = (tolerance * long / short).clamp(0.5, 1.0);
    // Fewer than half the limit in flight: the limit was not what held
    // anything back, and the window says nothing about how far it can go.
    let unused = f64::from(window.peak) < limit / 2.0;
    let new = if unused {
        limit
    } else {
        limit * gradient + limit.sqrt()
    };
    let limit = if new < limit {
        new
    } else {
        limit * (1.0 - SMOOTHING) + new * SMOOTHING
    };
    (limit.clamp(min, max), long)
}

/// The answer to a request over the limit.
pub(crate) fn overloaded() -> http::Response<axum::body::Body> {
    let mut response = http::Response::new(axum::body::Body::from("overloaded: try again later\n"));
    *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
    with_marker(response, http::header::RETRY_AFTER, RETRY_AFTER_SECS)
}

/// [`overloaded`] for a gRPC call: UNAVAILABLE, trailers-only, with the
/// same marker, and the wait as gRPC's pushback (proposal A6).
pub(crate) fn overloaded_grpc() -> http::Response<axum::body::Body> {
    let response =
        super::grpc::trailers_only(super::grpc::UNAVAILABLE, "overloaded: try again later");
    with_marker(response, super::grpc::GRPC_PUSHBACK, RETRY_AFTER_MILLIS)
}

/// Adds the overloaded marker and how long to wait (`wait` in `header`).
fn with_marker(
    mut response: http::Response<axum::body::Body>,
    header: http::HeaderName,
    wait: &'static str,
) -> http::Response<axum::body::Body> {
    let headers = response.headers_mut();
    headers.insert(header, http::HeaderValue::from_static(wait));
    headers.insert(OVERLOADED_HEADER, http::HeaderValue::from_static("1"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: f64 = 1e6;

    /// A window whose answers all took `mean_ms` (its fastest too).
    fn step(limit: f64, long: f64, mean_ms: f64, peak: u32) -> (f64, f64) {
        next_limit(
            limit,
            long,
            Window {
                mean_nanos: mean_ms * MS,
                fastest_nanos: mean_ms * MS,
                peak,
            },
            1.5,
            (1.0, 1000.0),
        )
    }

    #[test]
    fn latency_growing_at_the_limit_shrinks_it() {
        // No load: 5 ms. Saturated at 100 with 40 ms answers (queueing).
        let (mut limit, mut long) = step(100.0, 0.0, 5.0, 10);
        assert_eq!(long, 5.0 * MS);
        for _ in 0..40 {
            (limit, long) = step(limit, long, 40.0, limit as u32);
        }
        assert!(limit < 30.0, "limit {limit}");
        assert_eq!(
            long,
            5.0 * MS,
            "queueing is not taken for the no-load latency"
        );
    }

    #[test]
    fn latency_within_the_tolerance_lets_a_used_limit_grow() {
        let (mut limit, mut long) = (10.0, 5.0 * MS);
        for _ in 0..50 {
            (limit, long) = step(limit, long, 6.0, limit as u32);
        }
        assert!(limit > 40.0, "limit {limit}");
    }

    #[test]
    fn an_unused_limit_does_not_grow() {
        let (limit, _) = step(100.0, 5.0 * MS, 5.0, 10);
        assert_eq!(limit, 100.0);
    }

    #[test]
    fn the_no_load_latency_follows_unsaturated_windows_both_ways() {
        let (mut limit, mut long) = (100.0, 5.0 * MS);
        for _ in 0..10 {
            (limit, long) = step(limit, long, 20.0, 10);
        }
        assert!(long < 8.0 * MS, "slowly up: long {}", long / MS);
        for _ in 0..400 {
            (limit, long) = step(limit, long, 20.0, 10);
        }
        assert!((long / MS - 20.0).abs() < 0.1, "long {}", long / MS);
        assert_eq!(limit, 100.0, "slower but not queueing: the limit stays");
        (_, long) = step(limit, long, 5.0, 10);
        assert_eq!(long, 5.0 * MS, "at once down");
    }

    #[test]
    fn queueing_below_the_limit_is_not_taken_for_the_no_load_latency() {
        // Busy but under the limit: answers average 40 ms in the queue, the
        // fastest of each window still takes the no-load 5 ms.
        let mut long = 5.0 * MS;
        for _ in 0..100 {
            let window = Window {
                mean_nanos: 40.0 * MS,
                fastest_nanos: 5.0 * MS,
                peak: 60,
            };
            (_, long) = next_limit(100.0, long, window, 1.5, (1.0, 1000.0));
        }
        assert_eq!(long, 5.0 * MS);
    }

    #[test]
    fn the_limit_stays_within_its_bounds() {
        let bounded = |limit: f64, long: f64, mean_ms: f64| {
            let window = Window {
                mean_nanos: mean_ms * MS,
                fastest_nanos: mean_ms * MS,
                peak: limit as u32,
            };
            next_limit(limit, long, window, 1.5, (10.0, 1000.0))
        };
        let (mut limit, mut long) = (50.0, 1.0 * MS);
        for _ in 0..100 {
            (limit, long) = bounded(limit, long, 1000.0);
        }
        assert_eq!(limit, 10.0);
        for _ in 0..1000 {
            (limit, long) = bounded(limit, long, 1.0);
        }
        assert_eq!(limit, 1000.0);
        // However slow the answers, √limit of headroom keeps a limit of
        // one from starving: it settles at 4, never at 0.
        let (mut limit, mut long) = (2.0, 1.0 * MS);
        for _ in 0..100 {
            (limit, long) = step(limit, long, 1000.0, limit as u32);
        }
        assert!((1.0..=4.0).contains(&limit), "limit {limit}");
    }

    #[tokio::test]
    async fn a_saturated_listener_whose_answers_slow_down_lowers_its_limit() {
        let settings = LimitSettings {
            initial: 50,
            min: 4,
            ..LimitSettings::default()
        };
        let meter = opentelemetry::global::meter("test");
        let limit = ConcurrencyLimit::new(&settings, &meter);
        let mut now = limit.epoch;
        // A quiet start: 5 ms answers, few in flight.
        for _ in 0..3 {
            for _ in 0..20 {
                assert!(limit.admit(3));
                limit.completed(Duration::from_millis(5), now);
            }
            now += settings.window;
        }
        assert_eq!(limit.current(), 50, "an unused limit stays");
        // Then every slot taken and answers ten times slower.
        for _ in 0..30 {
            for _ in 0..20 {
                limit.admit(i64::from(limit.current()));
                limit.completed(Duration::from_millis(50), now);
            }
            now += settings.window;
        }
        let lowered = limit.current();
        assert!(lowered < 25, "limit {lowered}");
        assert!(lowered >= 4);
        assert!(
            !limit.admit(i64::from(lowered) + 1),
            "over the limit: refused"
        );
    }

    #[tokio::test]
    async fn off_admits_everything_and_static_holds_its_max() {
        let meter = opentelemetry::global::meter("test");
        let off = ConcurrencyLimit::new(
            &LimitSettings {
                mode: LimitMode::Off,
                ..LimitSettings::default()
            },
            &meter,
        );
        assert!(off.admit(1_000_000));
        let fixed = ConcurrencyLimit::new(
            &LimitSettings {
                mode: LimitMode::Static,
                max: 3,
                ..LimitSettings::default()
            },
            &meter,
        );
        assert!(fixed.admit(3));
        assert!(!fixed.admit(4));
        for _ in 0..100 {
            fixed.completed(Duration::from_secs(5), tokio::time::Instant::now());
        }
        assert_eq!(fixed.current(), 3);
    }
}
