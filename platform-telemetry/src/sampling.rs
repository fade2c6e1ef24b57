//! Head sampling known up front, so that spans certain to be dropped cost
//! next to nothing.
//!
//! tracing-opentelemetry builds an OpenTelemetry span for every `tracing`
//! span it sees and only then asks the sampler; a span the sampler drops
//! still pays for its builder, its attributes, a context switch on every
//! poll and its end (several microseconds, measured in the `overhead`
//! scenario). When the decision is already known — the parent says "not
//! sampled" under a parent-based sampler, or the sampler drops everything —
//! a hot path can ask [`drop_decided`] first and open its span under
//! [`UNSAMPLED_TARGET`], which the trace layer built by [`trace_layer`] (and
//! by [`init`](crate::init)) never hands to OpenTelemetry. The log layer
//! still sees it, so log lines keep their span; the trace context to
//! propagate comes from [`unsampled_context`], as the SDK would have made it
//! for the dropped span.
//!
//! When the decision depends on a trace id not drawn yet (a root span under
//! a ratio sampler), nothing is decided here: the span goes the usual way.
//!
//! A client making a call on every request can go further with
//! [`call_span`]: the span a sampler keeps is built with the trace layer's
//! own tracer, straight through the SDK, and `tracing` only carries a plain
//! span for log lines. That skips what tracing-opentelemetry adds to every
//! span it exports (span data in the registry, each field converted and
//! copied, the context switched on every poll). When the provider has no
//! span processor at all (no exporter configured), a kept span would be
//! dropped at its end anyway: [`call_span`] and [`server_span`] then build
//! nothing and return the context to propagate, sampled as decided.

use opentelemetry::Context;
use opentelemetry::trace::{
    SpanBuilder, SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceState, Tracer as _,
};
use opentelemetry_sdk::trace::{IdGenerator as _, RandomIdGenerator, Sampler, SdkTracer};
use tracing::metadata::LevelFilter;
use tracing::{Level, Subscriber};
use tracing_subscriber::filter::EnvFilter;
use tracing_subscriber::layer::{Context as LayerContext, Filter, Layer as _};
use tracing_subscriber::registry::LookupSpan;

use crate::logging;

/// The target of spans opened after [`drop_decided`] said yes: never
/// exported, still logged.
pub const UNSAMPLED_TARGET: &str = "platform_unsampled";

/// A sampler choice, kept as data: the SDK sampler is made from it, and the
/// cases decided without a trace id are read from it.
#[derive(Debug, Clone, PartialEq)]
pub enum SamplerChoice {
    /// Every trace.
    AlwaysOn,
    /// No trace.
    AlwaysOff,
    /// This share of traces (by trace id).
    Ratio(f64),
    /// As the parent says; the inner choice for root spans.
    ParentBased(Box<SamplerChoice>),
}

impl SamplerChoice {
    /// The SDK sampler making the same decisions.
    pub fn to_sdk(&self) -> Sampler {
        match self {
            SamplerChoice::AlwaysOn => Sampler::AlwaysOn,
            SamplerChoice::AlwaysOff => Sampler::AlwaysOff,
            SamplerChoice::Ratio(r) => Sampler::TraceIdRatioBased(*r),
            SamplerChoice::ParentBased(root) => Sampler::ParentBased(Box::new(root.to_sdk())),
        }
    }

    /// Whether a span with `parent` is certainly dropped; `None` when only
    /// the trace id would tell.
    fn drops(&self, parent: &SpanContext) -> Option<bool> {
        match self {
            SamplerChoice::AlwaysOn => Some(false),
            SamplerChoice::AlwaysOff => Some(true),
            // The SDK samples nothing at or below 0 and everything at or above 1.
            SamplerChoice::Ratio(r) if *r <= 0.0 => Some(true),
            SamplerChoice::Ratio(r) if *r >= 1.0 => Some(false),
            SamplerChoice::Ratio(_) => None,
            SamplerChoice::ParentBased(_) if parent.is_valid() => Some(!parent.is_sampled()),
            SamplerChoice::ParentBased(root) => root.drops(parent),
        }
    }
}

/// The filter of the trace layer: the span level filter, the SDK's own
/// targets and [`UNSAMPLED_TARGET`] left out. It also carries the sampler
/// choice and the layer's tracer, which [`drop_decided`] and [`call_span`]
/// find through the current dispatcher.
#[derive(Debug)]
pub struct TraceFilter {
    level: EnvFilter,
    sampler: SamplerChoice,
    /// The same sampler as the SDK's, for decisions that need a trace id.
    sdk_sampler: Sampler,
    tracer: SdkTracer,
    /// Whether the provider has a span processor: without one, every span
    /// is dropped at its end, so [`call_span`] builds none.
    exported: bool,
}

impl TraceFilter {
    fn admits(meta: &tracing::Metadata<'_>) -> bool {
        let target = meta.target();
        target != UNSAMPLED_TARGET && !logging::is_self_target(target)
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Filter<S> for TraceFilter {
    fn enabled(&self, meta: &tracing::Metadata<'_>, cx: &LayerContext<'_, S>) -> bool {
        Self::admits(meta) && Filter::<S>::enabled(&self.level, meta, cx)
    }

    fn callsite_enabled(
        &self,
        meta: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if Self::admits(meta) {
            Filter::<S>::callsite_enabled(&self.level, meta)
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Filter::<S>::max_level_hint(&self.level)
    }

    fn event_enabled(&self, event: &tracing::Event<'_>, cx: &LayerContext<'_, S>) -> bool {
        Filter::<S>::event_enabled(&self.level, event, cx)
    }

    // EnvFilter matches span fields: it has to follow the spans it admitted.
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        cx: LayerContext<'_, S>,
    ) {
        Filter::<S>::on_new_span(&self.level, attrs, id, cx);
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        cx: LayerContext<'_, S>,
    ) {
        Filter::<S>::on_record(&self.level, id, values, cx);
    }

    fn on_enter(&self, id: &tracing::span::Id, cx: LayerContext<'_, S>) {
        Filter::<S>::on_enter(&self.level, id, cx);
    }

    fn on_exit(&self, id: &tracing::span::Id, cx: LayerContext<'_, S>) {
        Filter::<S>::on_exit(&self.level, id, cx);
    }

    fn on_close(&self, id: tracing::span::Id, cx: LayerContext<'_, S>) {
        Filter::<S>::on_close(&self.level, id, cx);
    }
}

/// The `tracing` layer that turns spans into OpenTelemetry spans, behind
/// the platform's filter (see [`trace_layer`]).
pub type TraceLayer<S> = tracing_subscriber::filter::Filtered<
    tracing_opentelemetry::OpenTelemetryLayer<S, SdkTracer>,
    TraceFilter,
    S,
>;

/// The trace layer as [`init`](crate::init) builds it: spans at `level` and
/// above (an `EnvFilter` directive) go to `tracer`, whose provider must
/// sample with `sampler`; spans under [`UNSAMPLED_TARGET`] and the SDK's own
/// never do. Benchmarks and tests that build their own provider use it to
/// get the same pipeline as a service.
pub fn trace_layer<S>(tracer: SdkTracer, level: EnvFilter, sampler: SamplerChoice) -> TraceLayer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    trace_layer_for(tracer, level, sampler, true)
}

/// [`trace_layer`], saying whether the provider exports spans at all.
pub(crate) fn trace_layer_for<S>(
    tracer: SdkTracer,
    level: EnvFilter,
    sampler: SamplerChoice,
    exported: bool,
) -> TraceLayer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    tracing_opentelemetry::layer()
        .with_tracer(tracer.clone())
        // busy_ns/idle_ns cost two clock reads per enter/exit on every
        // span, sampled or not; thread ids rarely help across services.
        .with_tracked_inactivity(false)
        .with_threads(false)
        .with_filter(TraceFilter {
            level,
            sdk_sampler: sampler.to_sdk(),
            sampler,
            tracer,
            exported,
        })
}

/// How to trace a call that is starting, as [`call_span`] decided.
#[derive(Debug)]
pub enum CallTrace {
    /// Not traced: the sampler drops it, or its level is filtered out. The
    /// context to propagate is the one the SDK would give a dropped span.
    Dropped(Context),
    /// Built with the trace layer's tracer: `context.span()` is the span
    /// (add its events and attributes there). Propagate this context and
    /// end the span when the call ends; dropped unended, it ends then.
    Direct(Context),
    /// The subscriber has no trace layer from [`trace_layer`]: trace the
    /// call with a `tracing` span, the usual way.
    Layer,
}

/// The span of a call starting now, at INFO, built by `builder`, with the
/// current span as its parent; see [`CallTrace`]. Open the `tracing` span
/// that keeps log lines in context under [`UNSAMPLED_TARGET`] unless the
/// answer is [`CallTrace::Layer`].
///
/// The level is checked against the most verbose level the trace layer's
/// filter admits anywhere (per-target directives are not consulted).
pub fn call_span(builder: impl FnOnce() -> SpanBuilder) -> CallTrace {
    span_with_parent(None, builder)
}

/// [`call_span`] with `parent` as the parent instead of the current
/// context: the span of a request a server answers, under the caller's
/// context taken from the request's headers. On [`CallTrace::Direct`] and
/// [`CallTrace::Dropped`], attach the returned context while the request's
/// work runs, so that its spans, calls and log lines belong to it.
pub fn server_span(parent: Context, builder: impl FnOnce() -> SpanBuilder) -> CallTrace {
    span_with_parent(Some(parent), builder)
}

fn span_with_parent(parent: Option<Context>, builder: impl FnOnce() -> SpanBuilder) -> CallTrace {
    // `get_default` takes an `FnMut`; it calls it once.
    let mut builder = Some(builder);
    let mut parent = Some(parent);
    tracing::dispatcher::get_default(|dispatch| {
        let Some(filter) = dispatch.downcast_ref::<TraceFilter>() else {
            return CallTrace::Layer;
        };
        let parent = parent.take().flatten().unwrap_or_else(Context::current);
        let level_off = Filter::<tracing_subscriber::Registry>::max_level_hint(&filter.level)
            .is_some_and(|most| most < Level::INFO);
        if level_off || filter.sampler.drops(parent.span().span_context()) == Some(true) {
            return CallTrace::Dropped(unsampled_context_of(parent));
        }
        if !filter.exported {
            // Nothing would receive the span: keep only what propagates.
            let sampled = filter
                .sampler
                .drops(parent.span().span_context())
                .map(|dropped| !dropped);
            return CallTrace::Dropped(context_without_span(parent, sampled, &filter.sdk_sampler));
        }
        match builder.take() {
            Some(builder) => {
                let span = filter.tracer.build_with_context(builder(), &parent);
                CallTrace::Direct(parent.with_span(span))
            }
            None => CallTrace::Layer,
        }
    })
}

/// Whether a span opened here now would certainly be dropped by the sampler
/// of the current subscriber's trace layer. `false` when unsure, and when
/// the subscriber has no trace layer built by [`trace_layer`] (a span then
/// costs what it costs, and is sampled as usual).
pub fn drop_decided() -> bool {
    tracing::dispatcher::get_default(|dispatch| {
        dispatch
            .downcast_ref::<TraceFilter>()
            .is_some_and(|filter| {
                let cx = Context::current();
                filter.sampler.drops(cx.span().span_context()) == Some(true)
            })
    })
}

/// The context to propagate for a span that was not created because the
/// sampler would have dropped it: what the SDK gives a dropped span (the
/// parent's trace id and trace state or a new trace id, a new span id, not
/// sampled; the parent's `random-trace-id` flag kept), with the current
/// baggage.
pub fn unsampled_context() -> Context {
    unsampled_context_of(Context::current())
}

fn unsampled_context_of(cx: Context) -> Context {
    context_without_span(cx, Some(false), &Sampler::AlwaysOff)
}

/// The context of a span that is not built: the parent's trace (or a new
/// one), a new span id, and the sampled flag as decided, or as `sampler`
/// decides for the trace id when `sampled` is `None`.
fn context_without_span(cx: Context, sampled: Option<bool>, sampler: &Sampler) -> Context {
    use opentelemetry::trace::SpanKind;
    use opentelemetry_sdk::trace::ShouldSample as _;
    let ids = RandomIdGenerator::default();
    let (trace_id, trace_state, mut flags) = {
        let parent = cx.span();
        let parent = parent.span_context();
        if parent.is_valid() {
            // W3C Trace Context level 2: the `random-trace-id` flag stays
            // with its trace id, sampled or not.
            let random = parent.trace_flags().to_u8() & RANDOM_TRACE_ID;
            (
                parent.trace_id(),
                parent.trace_state().clone(),
                TraceFlags::new(random),
            )
        } else {
            (
                ids.new_trace_id(),
                TraceState::default(),
                TraceFlags::default(),
            )
        }
    };
    let sampled = sampled.unwrap_or_else(|| {
        let decision =
            sampler.should_sample(Some(&cx), trace_id, "", &SpanKind::Internal, &[], &[]);
        decision.decision == opentelemetry_sdk::trace::SamplingDecision::RecordAndSample
    });
    if sampled {
        flags = flags | TraceFlags::SAMPLED;
    }
    let span_context = SpanContext::new(trace_id, new_span_id(&ids), flags, false, trace_state);
    cx.with_remote_span_context(span_context)
}

/// W3C Trace Context level 2's `random-trace-id` trace flag.
const RANDOM_TRACE_ID: u8 = 0x02;

fn new_span_id(ids: &RandomIdGenerator) -> SpanId {
    let id = ids.new_span_id();
    // Zero is the invalid id; the generator draws it once in 2^64.
    if id == SpanId::INVALID {
        SpanId::from(1u64)
    } else {
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{TraceId, TracerProvider as _};
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    use tracing_subscriber::layer::SubscriberExt as _;

    fn parent(sampled: bool) -> SpanContext {
        SpanContext::new(
            TraceId::from(7u128),
            SpanId::from(9u64),
            if sampled {
                TraceFlags::SAMPLED
            } else {
                TraceFlags::default()
            },
            true,
            TraceState::default(),
        )
    }

    #[test]
    fn decided_only_without_a_trace_id_to_draw() {
        let none = SpanContext::empty_context();
        let ratio = SamplerChoice::ParentBased(Box::new(SamplerChoice::Ratio(0.5)));
        assert_eq!(ratio.drops(&parent(false)), Some(true));
        assert_eq!(ratio.drops(&parent(true)), Some(false));
        assert_eq!(ratio.drops(&none), None);
        assert_eq!(SamplerChoice::Ratio(0.5).drops(&parent(true)), None);
        assert_eq!(SamplerChoice::Ratio(0.0).drops(&none), Some(true));
        assert_eq!(SamplerChoice::AlwaysOff.drops(&parent(true)), Some(true));
        assert_eq!(SamplerChoice::AlwaysOn.drops(&parent(false)), Some(false));
        let off = SamplerChoice::ParentBased(Box::new(SamplerChoice::AlwaysOff));
        assert_eq!(off.drops(&none), Some(true));
    }

    fn pipeline(
        sampler: SamplerChoice,
    ) -> (tracing::Dispatch, SdkTracerProvider, InMemorySpanExporter) {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_sampler(sampler.to_sdk())
            .with_simple_exporter(exporter.clone())
            .build();
        let layer = trace_layer(provider.tracer("test"), EnvFilter::new("info"), sampler);
        let subscriber = tracing_subscriber::registry().with(layer);
        (tracing::Dispatch::new(subscriber), provider, exporter)
    }

    #[test]
    fn unsampled_spans_are_never_exported() {
        let (dispatch, provider, exporter) = pipeline(SamplerChoice::AlwaysOn);
        tracing::dispatcher::with_default(&dispatch, || {
            assert!(!drop_decided());
            tracing::info_span!(target: UNSAMPLED_TARGET, "skipped").in_scope(|| {});
            tracing::info_span!("kept").in_scope(|| {});
        });
        provider.force_flush().unwrap();
        let names: Vec<_> = exporter
            .get_finished_spans()
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["kept"]);
    }

    #[test]
    fn an_unsampled_parent_decides_and_its_trace_continues() {
        let (dispatch, _provider, _exporter) = pipeline(SamplerChoice::ParentBased(Box::new(
            SamplerChoice::Ratio(0.5),
        )));
        tracing::dispatcher::with_default(&dispatch, || {
            // A root under a ratio: only the trace id would tell.
            assert!(!drop_decided());
            let request = tracing::info_span!("request");
            let _ = request.set_parent(Context::new().with_remote_span_context(parent(false)));
            request.in_scope(|| {
                assert!(drop_decided());
                let cx = unsampled_context();
                let sc = cx.span().span_context().clone();
                assert_eq!(sc.trace_id(), TraceId::from(7u128));
                assert_ne!(sc.span_id(), SpanId::from(9u64));
                assert!(sc.is_valid() && !sc.is_sampled());
            });
            let sampled = tracing::info_span!("request");
            let _ = sampled.set_parent(Context::new().with_remote_span_context(parent(true)));
            sampled.in_scope(|| assert!(!drop_decided()));
        });
    }

    #[test]
    fn an_unsampled_context_keeps_only_the_random_flag_of_its_parent() {
        for (parent_flags, kept) in [(0x03, 0x02), (0x02, 0x02), (0x01, 0x00), (0x00, 0x00)] {
            let parent = SpanContext::new(
                TraceId::from(7u128),
                SpanId::from(9u64),
                TraceFlags::new(parent_flags),
                true,
                TraceState::default(),
            );
            let cx = unsampled_context_of(Context::new().with_remote_span_context(parent));
            assert_eq!(cx.span().span_context().trace_flags().to_u8(), kept);
        }
    }

    fn client_span() -> SpanBuilder {
        SpanBuilder::from_name("GET").with_kind(opentelemetry::trace::SpanKind::Client)
    }

    #[test]
    fn a_kept_call_span_is_built_by_the_layers_tracer_under_the_current_span() {
        let (dispatch, provider, exporter) = pipeline(SamplerChoice::AlwaysOn);
        tracing::dispatcher::with_default(&dispatch, || {
            tracing::info_span!("handler").in_scope(|| {
                let CallTrace::Direct(cx) = call_span(client_span) else {
                    panic!("expected a span built directly");
                };
                assert!(cx.span().is_recording());
                cx.span().end();
            });
        });
        provider.force_flush().unwrap();
        let spans = exporter.get_finished_spans().unwrap();
        let handler = spans.iter().find(|s| s.name == "handler").unwrap();
        let call = spans.iter().find(|s| s.name == "GET").unwrap();
        assert_eq!(call.parent_span_id, handler.span_context.span_id());
        assert_eq!(
            call.span_context.trace_id(),
            handler.span_context.trace_id()
        );
        assert_eq!(call.instrumentation_scope.name(), "test");
    }

    #[test]
    fn a_dropped_call_span_is_not_built_and_its_trace_continues() {
        let (dispatch, provider, exporter) = pipeline(SamplerChoice::ParentBased(Box::new(
            SamplerChoice::AlwaysOn,
        )));
        tracing::dispatcher::with_default(&dispatch, || {
            let request = tracing::info_span!("request");
            let _ = request.set_parent(Context::new().with_remote_span_context(parent(false)));
            request.in_scope(|| {
                let built = std::cell::Cell::new(false);
                let trace = call_span(|| {
                    built.set(true);
                    client_span()
                });
                let CallTrace::Dropped(cx) = trace else {
                    panic!("expected a dropped span");
                };
                assert!(!built.get(), "no builder for a dropped span");
                let sc = cx.span().span_context().clone();
                assert_eq!(sc.trace_id(), TraceId::from(7u128));
                assert!(sc.is_valid() && !sc.is_sampled());
            });
        });
        provider.force_flush().unwrap();
        assert!(exporter.get_finished_spans().unwrap().is_empty());
    }

    #[test]
    fn a_call_span_below_the_trace_level_is_dropped() {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let layer = trace_layer(
            provider.tracer("test"),
            EnvFilter::new("warn"),
            SamplerChoice::AlwaysOn,
        );
        let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
        tracing::dispatcher::with_default(&dispatch, || {
            assert!(matches!(call_span(client_span), CallTrace::Dropped(_)));
        });
    }

    #[test]
    fn without_a_span_processor_no_span_is_built_but_the_decision_travels() {
        let provider = SdkTracerProvider::builder().build();
        let dispatch_for = |sampler: SamplerChoice| {
            let layer = trace_layer_for(
                provider.tracer("test"),
                EnvFilter::new("info"),
                sampler,
                false,
            );
            tracing::Dispatch::new(tracing_subscriber::registry().with(layer))
        };
        let parent_cx = |sampled| Context::new().with_remote_span_context(parent(sampled));
        let on = dispatch_for(SamplerChoice::ParentBased(Box::new(
            SamplerChoice::AlwaysOn,
        )));
        tracing::dispatcher::with_default(&on, || {
            let built = std::cell::Cell::new(false);
            let CallTrace::Dropped(cx) = server_span(parent_cx(true), || {
                built.set(true);
                client_span()
            }) else {
                panic!("nothing exports: nothing is built");
            };
            assert!(!built.get());
            let sc = cx.span().span_context().clone();
            assert_eq!(sc.trace_id(), TraceId::from(7u128));
            assert_ne!(sc.span_id(), SpanId::from(9u64), "a span id of its own");
            assert!(sc.is_sampled(), "the caller's sampled decision goes on");
            let CallTrace::Dropped(cx) = server_span(parent_cx(false), client_span) else {
                panic!("nothing exports: nothing is built");
            };
            assert!(!cx.span().span_context().is_sampled());
        });
        // A ratio decided by the trace id, as the SDK's sampler decides it.
        let ratio = dispatch_for(SamplerChoice::Ratio(0.5));
        tracing::dispatcher::with_default(&ratio, || {
            let sdk = Sampler::TraceIdRatioBased(0.5);
            let (mut sampled, mut dropped) = (0, 0);
            for _ in 0..200 {
                let CallTrace::Dropped(cx) = server_span(Context::new(), client_span) else {
                    panic!("nothing exports: nothing is built");
                };
                let sc = cx.span().span_context().clone();
                use opentelemetry_sdk::trace::ShouldSample as _;
                let expected = sdk
                    .should_sample(
                        None,
                        sc.trace_id(),
                        "",
                        &opentelemetry::trace::SpanKind::Internal,
                        &[],
                        &[],
                    )
                    .decision
                    == opentelemetry_sdk::trace::SamplingDecision::RecordAndSample;
                assert_eq!(sc.is_sampled(), expected);
                if expected { sampled += 1 } else { dropped += 1 }
            }
            assert!(sampled > 0 && dropped > 0, "{sampled} / {dropped}");
        });
    }

    #[test]
    fn without_the_platform_trace_layer_nothing_is_decided() {
        tracing::subscriber::with_default(tracing_subscriber::registry(), || {
            assert!(matches!(call_span(client_span), CallTrace::Layer));
        });
        let subscriber = tracing_subscriber::registry();
        tracing::subscriber::with_default(subscriber, || assert!(!drop_decided()));
        let root = unsampled_context();
        let sc = root.span().span_context().clone();
        assert!(sc.is_valid() && !sc.is_sampled());
    }
}
