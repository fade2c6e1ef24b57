//! Peak-EWMA load of one endpoint.
//!
//! The algorithm comes from Finagle's `PeakEwma` load metric, as used by Linkerd and ported to
//! tower's `load::PeakEwma`: the latency estimate jumps straight up to any slower observation
//! (the peak) and decays exponentially towards faster ones over the decay window, so an endpoint
//! that turns slow is avoided at once and earns trust back gradually. The cost of an endpoint is
//! that estimate times (in-flight requests + 1), so a fast endpoint that is already busy loses
//! against an idle one that is a little slower.
//!
//! One departure from Finagle: an answer always moves the estimate at least
//! [`MIN_ANSWER_WEIGHT`] of the way towards itself. With a purely time-based weight, a busy
//! endpoint answering hundreds of times per decay window needs the whole window to forget one
//! slow answer, and client-side stalls (a preempted client thread, a GC pause, CPU throttling)
//! produce exactly such answers on every endpoint in flight at once. Until they were forgotten,
//! fast endpoints looked as slow as a truly slow peer that happened to be idle, which then took a
//! few percent of the traffic. With the floor a lone peak is forgotten after a few dozen faster
//! answers, while an endpoint that keeps answering slowly keeps its estimate up, and an endpoint
//! that gets few requests still forgets over the decay window.
//!
//! A third: requests in flight count as at least as slow as the time since the endpoint last
//! answered anything (or became busy). Peak-EWMA learns only from answers, so an endpoint that
//! hangs (a stopped process, a black hole) keeps its fast estimate while requests pile up on it,
//! and only `in-flight + 1` grows its cost. With this, its cost grows with every millisecond it
//! stays silent, and within a few of its peers' latencies new requests go elsewhere. A busy
//! healthy endpoint answers at least once per its own latency, so this never penalises it.
//!
//! A second departure: a failed request counts as slow, not as however fast it failed (see
//! [`Load::finish_failed`]). An endpoint that answers 503 in a microsecond would otherwise look
//! like the fastest of all and draw more traffic the more it fails; gRPC's weighted round robin
//! penalises errors for the same reason (`error_utilization_penalty`).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Load of one endpoint, shared by the balancer and the guards of its in-flight requests.
#[derive(Debug)]
pub(crate) struct Load {
    in_flight: AtomicU32,
    rtt: Mutex<RttEstimate>,
}

#[derive(Debug, Clone, Copy)]
struct RttEstimate {
    nanos: f64,
    updated_at: Instant,
    /// False while `nanos` is still the configured default, not a measurement.
    measured: bool,
    /// When the endpoint last answered, or last went from idle to busy: while requests are in
    /// flight, nothing has come back since then.
    quiet_since: Instant,
    /// When the oldest request given up on since the last answer was sent: the endpoint has
    /// not answered since then, though nothing may be in flight any more.
    unanswered_since: Option<Instant>,
}

impl RttEstimate {
    /// The estimate at `now`, decayed towards zero since the last observation: an endpoint
    /// nobody has used for a while becomes attractive again (tower does the same).
    fn decayed(&self, now: Instant, decay_nanos: f64) -> f64 {
        let elapsed = nanos(now.saturating_duration_since(self.updated_at));
        self.nanos * (-elapsed / decay_nanos).exp()
    }

    /// Averages `observed` in, weighted by the time since the last observation (at least
    /// [`MIN_ANSWER_WEIGHT`]).
    fn average_in(&mut self, observed: f64, now: Instant, decay_nanos: f64) {
        let elapsed = nanos(now.saturating_duration_since(self.updated_at));
        let weight = (-elapsed / decay_nanos).exp().min(1.0 - MIN_ANSWER_WEIGHT);
        self.nanos = self.nanos * weight + observed * (1.0 - weight);
        self.updated_at = now;
    }
}

/// The least weight an answer gets against the previous estimate: the excess of a lone peak
/// shrinks by e after about 20 faster answers (see the module docs).
const MIN_ANSWER_WEIGHT: f64 = 0.05;

/// How much slower than the current estimate a failed request counts.
pub(crate) const FAILURE_PENALTY: f64 = 2.0;

/// The smallest latency recorded (1 µs), so that a cost always grows with requests in flight.
const MIN_RTT_NANOS: f64 = 1e3;

fn nanos(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e9
}

impl Load {
    pub(crate) fn new(default_rtt: Duration, now: Instant) -> Self {
        Self {
            in_flight: AtomicU32::new(0),
            rtt: Mutex::new(RttEstimate {
                nanos: nanos(default_rtt),
                updated_at: now,
                measured: false,
                quiet_since: now,
                unanswered_since: None,
            }),
        }
    }

    /// Peak-EWMA latency × (in-flight + 1).
    pub(crate) fn cost(&self, now: Instant, decay_nanos: f64) -> f64 {
        let rtt = *self.rtt.lock().unwrap_or_else(|p| p.into_inner());
        let pending = self.in_flight.load(Ordering::Relaxed);
        // An endpoint that has never answered is tried at once when idle (as in Finagle): its
        // peers' measured latencies are usually below the default, so a new endpoint (a scale-up,
        // a replacement) would otherwise wait until the default decays, tens of seconds. While
        // that first request is in flight the default stands in, so it is not flooded.
        if !rtt.measured && pending == 0 {
            return 0.0;
        }
        let mut latency = rtt.decayed(now, decay_nanos);
        if pending > 0 {
            // Silent for longer than its estimate: at least that slow (see the module docs).
            latency = latency.max(nanos(now.saturating_duration_since(rtt.quiet_since)));
        }
        if let Some(since) = rtt.unanswered_since {
            // Requests given up on and no answer since. Forgotten after a decay window, so
            // that an endpoint that hung and recovered is tried again.
            let silent = nanos(now.saturating_duration_since(since));
            if silent < decay_nanos {
                latency = latency.max(silent);
            }
        }
        latency * f64::from(pending.saturating_add(1))
    }

    pub(crate) fn start(&self, now: Instant) {
        if self.in_flight.fetch_add(1, Ordering::Relaxed) == 0 {
            self.rtt
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .quiet_since = now;
        }
    }

    /// Ends a request that took `latency`, folding it into the estimate.
    pub(crate) fn finish(&self, latency: Duration, now: Instant, decay_nanos: f64) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        // An estimate of zero would make requests in flight count for nothing.
        let observed = nanos(latency).max(MIN_RTT_NANOS);
        let mut estimate = self.rtt.lock().unwrap_or_else(|p| p.into_inner());
        estimate.quiet_since = now;
        estimate.unanswered_since = None;
        // The default is a placeholder, not history: averaging the first answers into it would
        // take several decay windows (tens of seconds) to learn that a new endpoint is fast,
        // and meanwhile a slow peer would look little worse. Finagle starts from the first
        // observation too.
        if !estimate.measured || observed > estimate.nanos {
            estimate.measured = true;
            estimate.nanos = observed;
            estimate.updated_at = now;
        } else {
            estimate.average_in(observed, now, decay_nanos);
        }
    }

    /// Ends a request that failed after `latency`: it is folded in as an answer [`FAILURE_PENALTY`]
    /// times slower than the current estimate (or as slow as it really was, if slower). Unlike a
    /// slow answer it is averaged in, not taken as a peak: failures push the estimate up by a
    /// few percent each, successes pull it back towards the real latency, so an endpoint that
    /// fails a share of its requests settles a little above its peers and draws less traffic,
    /// and one that keeps failing is left to outlier ejection.
    ///
    /// Before its first success an endpoint has no estimate of its own, only the configured
    /// default: a failure then teaches nothing about its speed and leaves it as it is.
    pub(crate) fn finish_failed(&self, latency: Duration, now: Instant, decay_nanos: f64) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let mut estimate = self.rtt.lock().unwrap_or_else(|p| p.into_inner());
        estimate.quiet_since = now;
        estimate.unanswered_since = None;
        if !estimate.measured {
            return;
        }
        let observed = nanos(latency).max(estimate.nanos * FAILURE_PENALTY);
        estimate.average_in(observed, now, decay_nanos);
    }

    /// Ends a request given up before it answered (a hedge that lost, a call cut short). It
    /// counts like a failure, and the endpoint stays as quiet as it was: nothing came back, so
    /// until it answers again it costs at least the time since this request was sent (for a
    /// hung endpoint, ever more). Before the first answer, the estimate becomes the default
    /// times [`FAILURE_PENALTY`]: an endpoint that has never answered and keeps being given up
    /// on must stop looking free.
    pub(crate) fn finish_abandoned(&self, latency: Duration, now: Instant, decay_nanos: f64) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let mut estimate = self.rtt.lock().unwrap_or_else(|p| p.into_inner());
        let sent = now.checked_sub(latency).unwrap_or(now);
        estimate.unanswered_since = Some(estimate.unanswered_since.map_or(sent, |s| s.min(sent)));
        if !estimate.measured {
            estimate.measured = true;
            estimate.nanos = (estimate.nanos * FAILURE_PENALTY).max(nanos(latency));
            estimate.updated_at = now;
            return;
        }
        let observed = nanos(latency).max(estimate.nanos * FAILURE_PENALTY);
        estimate.average_in(observed, now, decay_nanos);
    }

    pub(crate) fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    pub(crate) fn estimate(&self, now: Instant, decay_nanos: f64) -> Duration {
        let nanos = self.rtt.lock().unwrap().decayed(now, decay_nanos);
        Duration::from_secs_f64(nanos / 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DECAY: f64 = 10e9;

    #[tokio::test(start_paused = true)]
    async fn jumps_to_peaks_and_decays_towards_fast_answers() {
        let start = Instant::now();
        let load = Load::new(Duration::from_millis(30), start);
        load.start(start);
        load.finish(Duration::from_millis(300), start, DECAY);
        assert_eq!(
            load.estimate(start, DECAY),
            Duration::from_millis(300),
            "a peak is taken at once"
        );

        // One decay window later a fast answer weighs 1 - 1/e.
        let later = start + Duration::from_secs(10);
        load.start(later);
        load.finish(Duration::from_millis(10), later, DECAY);
        let expected = 300.0 / std::f64::consts::E + 10.0 * (1.0 - 1.0 / std::f64::consts::E);
        let got = load.estimate(later, DECAY).as_secs_f64() * 1e3;
        assert!((got - expected).abs() < 0.01, "{got} vs {expected}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_endpoint_forgets_a_lone_peak_within_dozens_of_answers() {
        let mut now = Instant::now();
        let load = Load::new(Duration::from_millis(3), now);
        load.start(now);
        load.finish(Duration::from_millis(3), now, DECAY);
        load.start(now);
        load.finish(Duration::from_millis(30), now, DECAY);
        // 100 answers of 3 ms, 1 ms apart: a hundredth of the decay window.
        for _ in 0..100 {
            now += Duration::from_millis(1);
            load.start(now);
            load.finish(Duration::from_millis(3), now, DECAY);
        }
        let got = load.estimate(now, DECAY).as_secs_f64() * 1e3;
        let expected = 3.0 + 27.0 * (1.0 - MIN_ANSWER_WEIGHT).powi(100);
        assert!((got - expected).abs() < 0.01, "{got} vs {expected}");
        assert!(got < 3.2, "{got}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_answer_replaces_the_default() {
        let start = Instant::now();
        let load = Load::new(Duration::from_millis(30), start);
        let later = start + Duration::from_millis(5);
        load.start(start);
        load.finish(Duration::from_millis(3), later, DECAY);
        assert_eq!(load.estimate(later, DECAY), Duration::from_millis(3));
    }

    #[tokio::test(start_paused = true)]
    async fn cost_grows_with_requests_in_flight() {
        let now = Instant::now();
        let load = Load::new(Duration::from_millis(30), now);
        load.start(now);
        load.finish(Duration::from_millis(10), now, DECAY);
        let idle = load.cost(now, DECAY);
        load.start(now);
        load.start(now);
        assert!((load.cost(now, DECAY) - 3.0 * idle).abs() < 1.0);
        assert_eq!(load.in_flight(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn an_endpoint_that_stops_answering_costs_more_with_every_silent_moment() {
        let start = Instant::now();
        let load = Load::new(Duration::from_millis(30), start);
        load.start(start);
        load.finish(Duration::from_micros(500), start, DECAY);
        // Two requests go out and nothing comes back (a stopped process).
        load.start(start);
        load.start(start);
        let fast = load.cost(start + Duration::from_micros(100), DECAY);
        assert!(fast < 2e6, "{fast}: silent for less than its estimate");
        let later = start + Duration::from_millis(50);
        let silent = load.cost(later, DECAY);
        assert!((silent - 3.0 * 50e6).abs() < 1e3, "{silent}");
        // Once it answers, its estimate is what it really took.
        load.finish(Duration::from_millis(50), later, DECAY);
        assert!((load.cost(later, DECAY) - 2.0 * 50e6).abs() < 1e3);
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_request_counts_as_slow_not_as_fast_as_it_was_cancelled() {
        let start = Instant::now();
        let load = Load::new(Duration::from_millis(30), start);
        load.start(start);
        load.finish(Duration::from_millis(1), start, DECAY);
        load.start(start);
        load.finish_abandoned(Duration::from_micros(10), start, DECAY);
        assert!(load.estimate(start, DECAY) > Duration::from_millis(1));
        assert_eq!(load.in_flight(), 0);
        // Until it answers again, it costs at least the time since that request was sent.
        let later = start + Duration::from_millis(40);
        assert!(
            load.cost(later, DECAY) >= 40e6,
            "{}",
            load.cost(later, DECAY)
        );
        // ... for a decay window at most: then it is worth a try again.
        let much_later = start + Duration::from_secs(11);
        assert!(load.cost(much_later, DECAY) < 40e6);
        load.start(later);
        load.finish(Duration::from_millis(1), later, DECAY);
        assert!(load.cost(later, DECAY) < 40e6);
        // Never answered, given up on: no longer free.
        let fresh = Load::new(Duration::from_millis(30), start);
        fresh.start(start);
        fresh.finish_abandoned(Duration::from_millis(1), start, DECAY);
        assert_eq!(fresh.estimate(start, DECAY), Duration::from_millis(60));
        assert!(fresh.cost(start, DECAY) > 0.0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_endpoint_is_free_until_its_first_request_then_costs_the_default() {
        let now = Instant::now();
        let load = Load::new(Duration::from_millis(30), now);
        assert_eq!(load.cost(now, DECAY), 0.0);
        load.start(now);
        assert!((load.cost(now, DECAY) - 2.0 * 30e6).abs() < 1.0);
    }
}
