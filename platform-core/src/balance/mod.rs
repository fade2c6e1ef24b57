//! Client-side load balancing over a [`Resolver`]'s endpoints.
//!
//! # Power of two choices over Peak-EWMA
//!
//! The default [`Strategy::P2cPeakEwma`] samples two endpoints at random (in proportion to their
//! weights) and sends the request to the one with the lower cost, where cost is a Peak-EWMA
//! latency estimate times (requests in flight + 1). This is Finagle's and Linkerd's balancer, and
//! tower's `p2c` + `load::PeakEwma`. Two random choices avoid the herd behaviour of "always the
//! least loaded" (every client piling onto the same endpoint between updates) while getting
//! almost all of its benefit (Mitzenmacher, "The Power of Two Choices in Randomized Load
//! Balancing"); Peak-EWMA reacts to a slow endpoint at once and forgives it gradually over the
//! decay window ([`BalanceSettings::decay`], default 10 s), or over a few dozen faster answers
//! when it is busy (so that a client-side stall, which slows every answer in flight at once,
//! does not make fast endpoints look slow for seconds). An endpoint that has never answered is
//! tried at once when idle and costs [`BalanceSettings::default_rtt`] while its first request is
//! in flight; its first answer then replaces the default outright. [`Strategy::RoundRobin`] is the
//! simple, predictable alternative. Both honour endpoint weights; SRV-style priorities are
//! honoured by using the lowest priority tier that has endpoints in rotation.
//!
//! # Ejection and panic mode
//!
//! Outlier ejection plugs in as an [`Ejection`] hook. When more than
//! [`BalanceSettings::panic_threshold`] of the endpoints are ejected, ejection is ignored
//! (Envoy's panic mode) rather than sending all traffic to a few survivors.
//!
//! # Churn
//!
//! [`Balancer::pick`] returns a [`Picked`] guard holding the endpoint and its load counters. An
//! endpoint removed by discovery is only taken out of future picks: requests in flight to it
//! keep their guard and finish normally (the endpoint drains), and an endpoint that stays keeps
//! its latency history across updates.
//!
//! # Example
//!
//! ```
//! use platform_core::balance::{BalanceSettings, Balancer};
//! use platform_core::discovery::{DiscoverySettings, TargetResolver};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let resolver = TargetResolver::parse("static://127.0.0.1:8080,127.0.0.1:8081", &DiscoverySettings::default())?;
//! let balancer = Balancer::new(resolver, &BalanceSettings::default())?;
//! let picked = balancer.pick()?;
//! let url = format!("http://{}/orders", picked.endpoint().authority());
//! # let _ = url;
//! // ... send the request; dropping the guard records its latency and ends it.
//! drop(picked);
//! # Ok(()) }
//! ```

mod ejection;
mod peak_ewma;
mod schedule;
mod settings;

use crate::Meters;
use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::Counter;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::discovery::{Endpoint, EndpointId, EndpointSet, Freshness, Resolver};

pub use ejection::Ejection;
pub use settings::{BalanceSettings, Strategy};

use ejection::{EjectionHook, panics};
use peak_ewma::Load;
use schedule::{Sampler, effective_weight, round_robin_schedule};

/// Why a balancer could not be built or could not pick.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BalanceError {
    /// A settings value is impossible.
    #[error("invalid setting {key}: {reason}")]
    InvalidSettings {
        /// The settings key path.
        key: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
    /// Discovery has not answered yet.
    #[error("no endpoints for {target} yet: discovery has not answered{}", last_error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default())]
    NotResolved {
        /// The discovery target.
        target: String,
        /// The backend's latest problem, if any.
        last_error: Option<String>,
    },
    /// Discovery answered with no endpoint.
    #[error("no endpoints for {target}")]
    NoEndpoints {
        /// The discovery target.
        target: String,
    },
}

/// One endpoint in the balancer, with its load shared by the guards of its requests.
#[derive(Debug)]
struct Slot {
    endpoint: Arc<Endpoint>,
    load: Arc<Load>,
}

/// Selection structures of one priority tier (a range of `Snapshot::slots`).
#[derive(Debug)]
struct Tier {
    range: Range<usize>,
    sampler: Sampler,
    round_robin: Vec<u32>,
}

/// What the balancer picks from, rebuilt when the endpoint set's generation changes.
#[derive(Debug)]
struct Snapshot {
    generation: u64,
    slots: Vec<Slot>,
    tiers: Vec<Tier>,
}

impl Snapshot {
    fn build(set: &EndpointSet, previous: &Snapshot, default_rtt: Duration) -> Self {
        let now = Instant::now();
        let old: HashMap<_, _> = previous
            .slots
            .iter()
            .map(|slot| (slot.endpoint.id(), &slot.load))
            .collect();
        let mut endpoints: Vec<&Endpoint> = set.endpoints().iter().collect();
        endpoints.sort_by_key(|endpoint| endpoint.priority);
        let slots: Vec<Slot> = endpoints
            .into_iter()
            .map(|endpoint| Slot {
                load: old
                    .get(endpoint.id())
                    .map(|load| Arc::clone(load))
                    .unwrap_or_else(|| Arc::new(Load::new(default_rtt, now))),
                endpoint: Arc::new(endpoint.clone()),
            })
            .collect();
        let mut tiers = Vec::new();
        let mut start = 0;
        while start < slots.len() {
            let priority = slots[start].endpoint.priority;
            let end = start
                + slots[start..]
                    .iter()
                    .take_while(|slot| slot.endpoint.priority == priority)
                    .count();
            let weights: Vec<u64> = slots[start..end]
                .iter()
                .map(|slot| effective_weight(slot.endpoint.weight))
                .collect();
            tiers.push(Tier {
                range: start..end,
                sampler: Sampler::new(&weights),
                round_robin: round_robin_schedule(&weights),
            });
            start = end;
        }
        Self {
            generation: set.generation(),
            slots,
            tiers,
        }
    }

    fn empty() -> Self {
        Self {
            generation: 0,
            slots: Vec::new(),
            tiers: Vec::new(),
        }
    }
}

#[derive(Debug)]
struct Inner {
    /// Held so that the backend keeps running as long as the balancer lives.
    resolver: Arc<dyn Resolver>,
    target: Arc<str>,
    receiver: watch::Receiver<Arc<EndpointSet>>,
    settings: BalanceSettings,
    strategy: Strategy,
    decay_nanos: f64,
    ejection: Option<EjectionHook>,
    snapshot: RwLock<Arc<Snapshot>>,
    rebuilding: Mutex<()>,
    next: AtomicUsize,
    panicking: AtomicBool,
    view: RwLock<Option<EjectionView>>,
    meters: Meters,
    panic_counter: Counter<u64>,
}

impl Inner {
    fn new(
        resolver: Arc<dyn Resolver>,
        settings: BalanceSettings,
        ejection: Option<EjectionHook>,
        meters: Meters,
    ) -> Self {
        let meter = meters.meter(crate::meters::SCOPE);
        Self {
            target: resolver.target().into(),
            receiver: resolver.subscribe(),
            resolver,
            strategy: settings.strategy,
            decay_nanos: settings.decay.as_secs_f64() * 1e9,
            settings,
            ejection,
            snapshot: RwLock::new(Arc::new(Snapshot::empty())),
            rebuilding: Mutex::new(()),
            next: AtomicUsize::new(0),
            panicking: AtomicBool::new(false),
            view: RwLock::new(None),
            meters,
            panic_counter: meter
                .u64_counter("platform.balance.panic_mode")
                .with_description(
                    "Times a balancer entered panic mode (too many endpoints ejected)",
                )
                .build(),
        }
    }
}

/// Picks an endpoint per request; see the [module docs](self). Cheap to clone and share.
#[derive(Debug, Clone)]
pub struct Balancer {
    inner: Arc<Inner>,
}

impl Balancer {
    /// A balancer over `resolver`'s endpoints. The balancer keeps the resolver (and so its
    /// background backend) alive; pass a clone to keep using it elsewhere.
    /// Instruments from the process-wide meter provider.
    pub fn new(
        resolver: impl Resolver + 'static,
        settings: &BalanceSettings,
    ) -> Result<Self, BalanceError> {
        Self::with_meters(resolver, settings, &Meters::global())
    }

    /// [`new`](Self::new) with instruments from `meters`.
    pub fn with_meters(
        resolver: impl Resolver + 'static,
        settings: &BalanceSettings,
        meters: &Meters,
    ) -> Result<Self, BalanceError> {
        settings.validate()?;
        Ok(Self {
            inner: Arc::new(Inner::new(
                Arc::new(resolver),
                settings.clone(),
                None,
                meters.clone(),
            )),
        })
    }

    /// The same balancer consulting `ejection` on every pick (fresh load statistics).
    pub fn with_ejection(self, ejection: impl Ejection + 'static) -> Self {
        let inner = &self.inner;
        let hook = EjectionHook(Box::new(ejection));
        Self {
            inner: Arc::new(Inner::new(
                Arc::clone(&inner.resolver),
                inner.settings.clone(),
                Some(hook),
                inner.meters.clone(),
            )),
        }
    }

    /// The discovery target balanced over.
    pub fn target(&self) -> &str {
        &self.inner.target
    }

    /// The endpoint set currently balanced over, with its freshness (for health and metrics).
    pub fn endpoints(&self) -> Arc<EndpointSet> {
        self.inner.receiver.borrow().clone()
    }

    /// True while panic mode is on (more than the threshold share of endpoints ejected).
    pub fn in_panic_mode(&self) -> bool {
        self.inner.panicking.load(Ordering::Relaxed)
    }

    /// Picks an endpoint for one request. Keep the returned guard for the request's duration;
    /// dropping it records the latency.
    pub fn pick(&self) -> Result<Picked, BalanceError> {
        let snapshot = self.snapshot()?;
        let index = self.select(&snapshot);
        Ok(self.picked(&snapshot, index))
    }

    /// Picks an endpoint for a retry or a hedge: one for which `avoid` is false (the endpoints
    /// the call already tried, as Envoy's `previous_hosts` predicate does) and not ejected,
    /// while there is one; otherwise as [`pick`](Self::pick) would.
    pub fn pick_avoiding(
        &self,
        avoid: &dyn Fn(&EndpointId) -> bool,
    ) -> Result<Picked, BalanceError> {
        let snapshot = self.snapshot()?;
        let index = self
            .select_avoiding(&snapshot, avoid)
            .unwrap_or_else(|| self.select(&snapshot));
        Ok(self.picked(&snapshot, index))
    }

    /// Whether an endpoint for which `avoid` is false is in rotation (not ejected): where a
    /// retry would go if it were sent now.
    pub fn any_other(&self, avoid: &dyn Fn(&EndpointId) -> bool) -> bool {
        self.snapshot().is_ok_and(|snapshot| {
            (0..snapshot.slots.len())
                .any(|i| self.usable(&snapshot, i) && !avoid(snapshot.slots[i].endpoint.id()))
        })
    }

    fn picked(&self, snapshot: &Snapshot, index: usize) -> Picked {
        let slot = &snapshot.slots[index];
        let now = Instant::now();
        slot.load.start(now);
        Picked {
            endpoint: Arc::clone(&slot.endpoint),
            load: Arc::clone(&slot.load),
            started: now,
            decay_nanos: self.inner.decay_nanos,
            latency: None,
            end: End::Answered,
        }
    }

    /// Whether slot `index` may be picked as far as ejection goes (everything may in panic
    /// mode, as in [`select`](Self::select)).
    fn usable(&self, snapshot: &Snapshot, index: usize) -> bool {
        match &self.inner.ejection {
            Some(ejection) if !self.inner.panicking.load(Ordering::Relaxed) => {
                !ejection.0.is_ejected(snapshot.slots[index].endpoint.id())
            }
            _ => true,
        }
    }

    /// A slot neither avoided nor ejected, from the first tier that has one.
    fn select_avoiding(
        &self,
        snapshot: &Snapshot,
        avoid: &dyn Fn(&EndpointId) -> bool,
    ) -> Option<usize> {
        let allowed = |index: usize| {
            !avoid(snapshot.slots[index].endpoint.id()) && self.usable(snapshot, index)
        };
        let tier = snapshot
            .tiers
            .iter()
            .find(|tier| tier.range.clone().any(allowed))?;
        Some(self.select_in(snapshot, tier, &allowed))
    }

    /// The snapshot for the current endpoint set, rebuilt if the set changed.
    fn snapshot(&self) -> Result<Arc<Snapshot>, BalanceError> {
        let inner = &self.inner;
        let generation = inner.receiver.borrow().generation();
        let mut snapshot = inner
            .snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if snapshot.generation != generation {
            let set = inner.receiver.borrow().clone();
            let _guard = inner.rebuilding.lock().unwrap_or_else(|p| p.into_inner());
            let current = inner
                .snapshot
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            snapshot = if current.generation == set.generation() {
                current
            } else {
                let rebuilt = Arc::new(Snapshot::build(&set, &current, inner.settings.default_rtt));
                *inner.snapshot.write().unwrap_or_else(|p| p.into_inner()) = Arc::clone(&rebuilt);
                rebuilt
            };
        }
        if snapshot.slots.is_empty() {
            let set = inner.receiver.borrow().clone();
            return Err(match set.freshness() {
                Freshness::Pending => BalanceError::NotResolved {
                    target: inner.target.to_string(),
                    last_error: set.last_error().map(str::to_owned),
                },
                Freshness::Fresh | Freshness::Stale => BalanceError::NoEndpoints {
                    target: inner.target.to_string(),
                },
            });
        }
        Ok(snapshot)
    }

    /// Chooses a slot index; `snapshot` has at least one slot.
    fn select(&self, snapshot: &Snapshot) -> usize {
        let everything = |_: usize| true;
        let Some(ejection) = &self.inner.ejection else {
            return self.select_in(snapshot, &snapshot.tiers[0], &everything);
        };
        let view = self.ejection_view(snapshot, ejection);
        if view.panic {
            return self.select_in(snapshot, &snapshot.tiers[0], &everything);
        }
        let allowed = |index: usize| !ejection.0.is_ejected(snapshot.slots[index].endpoint.id());
        self.select_in(snapshot, &snapshot.tiers[view.tier], &allowed)
    }

    /// Panic mode and the tier in use, from a scan of every endpoint. The scan is O(n), so its
    /// result is reused for [`VIEW_REFRESH`] (or until the endpoints change); each pick still
    /// asks the hook about the endpoints it considers, so an ejection takes effect at once.
    fn ejection_view(&self, snapshot: &Snapshot, ejection: &EjectionHook) -> EjectionView {
        let inner = &self.inner;
        let now = Instant::now();
        let cached = *inner.view.read().unwrap_or_else(|p| p.into_inner());
        if let Some(view) = cached
            && view.generation == snapshot.generation
            && now.saturating_duration_since(view.at) < VIEW_REFRESH
        {
            return view;
        }
        let ejected: Vec<bool> = snapshot
            .slots
            .iter()
            .map(|slot| ejection.0.is_ejected(slot.endpoint.id()))
            .collect();
        let count = ejected.iter().filter(|e| **e).count();
        let panic = panics(count, ejected.len(), inner.settings.panic_threshold);
        let tier = snapshot
            .tiers
            .iter()
            .position(|tier| ejected[tier.range.clone()].iter().any(|e| !e))
            .unwrap_or(0);
        if panic != inner.panicking.swap(panic, Ordering::Relaxed) {
            if panic {
                tracing::warn!(target = %inner.target, ejected = count, endpoints = ejected.len(), "balancer in panic mode: ignoring outlier ejection");
                inner.panic_counter.add(
                    1,
                    &[KeyValue::new(
                        "platform.discovery.target",
                        inner.target.to_string(),
                    )],
                );
            } else {
                tracing::info!(target = %inner.target, ejected = count, "balancer left panic mode");
            }
        }
        let view = EjectionView {
            generation: snapshot.generation,
            at: now,
            panic,
            tier,
        };
        *inner.view.write().unwrap_or_else(|p| p.into_inner()) = Some(view);
        view
    }

    /// Chooses within `tier` among slots for which `allowed` holds; when sampling finds none,
    /// falls back to a scan of every tier.
    fn select_in(
        &self,
        snapshot: &Snapshot,
        tier: &Tier,
        allowed: &dyn Fn(usize) -> bool,
    ) -> usize {
        let start = tier.range.start;
        let len = tier.range.len();
        match self.inner.strategy {
            Strategy::RoundRobin => {
                let schedule = &tier.round_robin;
                let first = self.inner.next.fetch_add(1, Ordering::Relaxed);
                (0..schedule.len())
                    .map(|step| start + schedule[(first + step) % schedule.len()] as usize)
                    .find(|index| allowed(*index))
                    .unwrap_or_else(|| self.fallback(snapshot, allowed))
            }
            Strategy::P2cPeakEwma => {
                let mut rng = rand::rng();
                let mut draw = |avoid: Option<usize>| {
                    (0..SAMPLE_TRIES)
                        .map(|_| start + tier.sampler.sample(&mut rng))
                        .find(|index| Some(*index) != avoid && allowed(*index))
                };
                let Some(a) = draw(None) else {
                    return self.fallback(snapshot, allowed);
                };
                if len == 1 {
                    return a;
                }
                let Some(b) = draw(Some(a)).or_else(|| {
                    // A dominant weight keeps drawing `a`: compare with the next allowed slot.
                    (1..len)
                        .map(|step| start + (a - start + step) % len)
                        .find(|index| allowed(*index))
                }) else {
                    return a;
                };
                self.cheaper(snapshot, a, b)
            }
        }
    }

    /// Of two picks, the one with the lower Peak-EWMA cost now (`a` on a tie).
    fn cheaper(&self, snapshot: &Snapshot, a: usize, b: usize) -> usize {
        let now = Instant::now();
        let decay = self.inner.decay_nanos;
        if snapshot.slots[b].load.cost(now, decay) < snapshot.slots[a].load.cost(now, decay) {
            b
        } else {
            a
        }
    }

    /// Sampling found no allowed slot in the chosen tier (ejections changed since the view):
    /// use the first tier with an allowed slot, or the first tier ignoring ejection.
    fn fallback(&self, snapshot: &Snapshot, allowed: &dyn Fn(usize) -> bool) -> usize {
        let everything = |_: usize| true;
        for tier in &snapshot.tiers {
            let candidates: Vec<usize> =
                tier.range.clone().filter(|index| allowed(*index)).collect();
            if candidates.is_empty() {
                continue;
            }
            let weights: Vec<u64> = candidates
                .iter()
                .map(|i| effective_weight(snapshot.slots[*i].endpoint.weight))
                .collect();
            let sampler = Sampler::new(&weights);
            let mut rng = rand::rng();
            let a = candidates[sampler.sample(&mut rng)];
            let b = candidates[sampler.sample(&mut rng)];
            return self.cheaper(snapshot, a, b);
        }
        self.select_in(snapshot, &snapshot.tiers[0], &everything)
    }
}

/// How many random draws P2C makes to find an allowed endpoint before scanning.
const SAMPLE_TRIES: usize = 8;

/// How long a panic-mode and tier decision is reused.
const VIEW_REFRESH: Duration = Duration::from_millis(10);

/// The result of the last full ejection scan.
#[derive(Debug, Clone, Copy)]
struct EjectionView {
    generation: u64,
    at: Instant,
    panic: bool,
    tier: usize,
}

/// An endpoint picked for one request: the request is in flight while this guard lives.
///
/// Dropping it ends the request and records the time since the pick as its latency;
/// [`record`](Self::record) records a latency measured otherwise. Holding a guard never blocks
/// endpoint updates: a removed endpoint's guards stay valid until they are dropped.
pub struct Picked {
    endpoint: Arc<Endpoint>,
    load: Arc<Load>,
    started: Instant,
    decay_nanos: f64,
    latency: Option<Duration>,
    end: End,
}

/// How the request of a [`Picked`] guard ended, as its drop records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Answered,
    Failed,
    Abandoned,
}

impl Picked {
    /// The endpoint to send the request to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// A shared handle to the endpoint (e.g. for span attributes outliving the guard).
    pub fn endpoint_arc(&self) -> Arc<Endpoint> {
        Arc::clone(&self.endpoint)
    }

    /// Requests currently in flight to this endpoint, this one included.
    pub fn in_flight(&self) -> u32 {
        self.load.in_flight()
    }

    /// Ends the request, recording `latency` instead of the time since the pick.
    pub fn record(mut self, latency: Duration) {
        self.latency = Some(latency);
        self.end = End::Answered;
    }

    /// Ends the request as failed (an error, a 5xx): it counts as at least twice the
    /// endpoint's current latency estimate, so an endpoint that fails fast does not look fast,
    /// and one that keeps failing looks slower with each failure.
    pub fn failed(mut self) {
        self.end = End::Failed;
    }

    /// The same guard, counting as abandoned if it is dropped without being ended by
    /// [`succeeded`](Self::succeeded), [`failed`](Self::failed) or [`record`](Self::record):
    /// for a request whose future may be dropped before it answers (a hedge that lost the
    /// race, a call cut short). An abandoned request counts as slow as a failure, never as fast
    /// as it was cancelled: an endpoint that hangs must not look fast because every request
    /// stuck on it was rescued elsewhere.
    pub fn abandoned_unless_ended(mut self) -> Self {
        self.end = End::Abandoned;
        self
    }

    /// Ends the request as answered, recording the time since the pick as its latency.
    pub fn succeeded(mut self) {
        self.end = End::Answered;
    }
}

impl Drop for Picked {
    fn drop(&mut self) {
        let now = Instant::now();
        let latency = self
            .latency
            .unwrap_or_else(|| now.saturating_duration_since(self.started));
        match self.end {
            End::Answered => self.load.finish(latency, now, self.decay_nanos),
            End::Failed => self.load.finish_failed(latency, now, self.decay_nanos),
            End::Abandoned => self.load.finish_abandoned(latency, now, self.decay_nanos),
        }
    }
}

impl fmt::Debug for Picked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Picked")
            .field("endpoint", &self.endpoint.authority())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
