//! W3C trace-context and baggage propagation over `http::HeaderMap`.
//!
//! The formats are the ones chosen at init (`telemetry.tracing.propagators`
//! or `OTEL_PROPAGATORS`); before [`init`](crate::init), [`extract`] and
//! [`inject_context`] use whatever global propagator is installed.
//!
//! # Why not the OpenTelemetry SDK's propagators
//! They read one value per header, where HTTP lets a field repeat, and check
//! `tracestate` keys against an older draft. What this module does instead,
//! measured against the W3C trace-context test suite at strict level 2
//! (`examples/tests/tracecontext`):
//!
//! - **`traceparent`** (Trace Context level 2): lowercase hex, ids not all
//!   zero, version `ff` refused, version `00` exactly 55 characters, later
//!   versions read as far as known, optional whitespace around the value.
//!   Sent more than once, it is invalid. An invalid one starts a new trace
//!   and its `tracestate` is not read. The `sampled` and `random-trace-id`
//!   flags are kept, the others zeroed; a caller's `random-trace-id` flag
//!   goes on with its trace even through spans the sampler dropped.
//! - **`tracestate`**: every field line is one list, in order; at most 32
//!   members; keys and values as the current grammar says (256-character
//!   keys, `@` anywhere after the first character). One bad member, or a
//!   33rd, discards the whole list; empty members and empty headers are
//!   ignored.
//! - **`baggage`**: every field line is one list; a malformed member is
//!   dropped, the rest kept; at most 64 members and 8192 bytes, whole
//!   members only; values percent-decoded and encoded (see `baggage.rs`).
//!
//! Extraction never fails a request. Whatever is dropped is logged at debug
//! level and counted in `platform.telemetry.propagation.invalid`, by header
//! ([`self_metrics`](crate::self_metrics)). Nothing is allocated for a
//! header beyond its limits, and the usual request (one valid
//! `traceparent`, no `tracestate`) costs no allocation but the context's.

mod baggage;
mod traceparent;
mod tracestate;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::Context;
use opentelemetry::baggage::BaggageExt as _;
use opentelemetry::propagation::{
    Extractor, Injector, TextMapPropagator, text_map_propagator::FieldIter,
};
use opentelemetry::trace::{SpanContext, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::self_metrics::{COUNTERS, add};
use traceparent::{KNOWN_FLAGS, Parent, RANDOM};

const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";
const BAGGAGE: &str = "baggage";

/// Which formats [`init`](crate::init) chose; 0 before it ran.
static ACTIVE: AtomicU8 = AtomicU8::new(0);
const INSTALLED: u8 = 1;
const TRACE_CONTEXT: u8 = 2;
const BAGGAGE_FORMAT: u8 = 4;
/// The sampler always samples under a sampled remote parent.
const PARENT_BASED: u8 = 8;

/// Called by `init` with the formats it installed as the global propagator:
/// from then on [`extract`] and [`inject_context`] call them directly, with
/// no lock and no dynamic dispatch, on every request. `parent_based`: its
/// sampler follows a remote parent's decision.
pub(crate) fn set_active(trace_context: bool, baggage: bool, parent_based: bool) {
    let mut active = INSTALLED;
    for (on, bit) in [
        (trace_context, TRACE_CONTEXT),
        (baggage, BAGGAGE_FORMAT),
        (parent_based, PARENT_BASED),
    ] {
        if on {
            active |= bit;
        }
    }
    ACTIVE.store(active, Ordering::Relaxed);
}

/// Writes the context of the current `tracing` span into `headers` (for an
/// outgoing request).
pub fn inject(headers: &mut HeaderMap) {
    inject_context(&tracing::Span::current().context(), headers);
}

/// Writes `cx` into `headers`.
pub fn inject_context(cx: &Context, headers: &mut HeaderMap) {
    let active = ACTIVE.load(Ordering::Relaxed);
    let mut injector = HeaderInjector(headers);
    if active & INSTALLED == 0 {
        opentelemetry::global::get_text_map_propagator(|p| p.inject_context(cx, &mut injector));
        return;
    }
    if active & TRACE_CONTEXT != 0 {
        insert_trace_context(cx, injector.0);
    }
    if active & BAGGAGE_FORMAT != 0 {
        inject_baggage(cx, &mut injector);
    }
}

/// Reads the parent context from an incoming request's headers. Attach it to the
/// request span with [`OpenTelemetrySpanExt::set_parent`] before entering the span:
///
/// ```
/// use platform_telemetry::tracing_opentelemetry::OpenTelemetrySpanExt as _;
/// let headers = http::HeaderMap::new();
/// let span = tracing::info_span!("request");
/// let _ = span.set_parent(platform_telemetry::propagation::extract(&headers));
/// ```
pub fn extract(headers: &HeaderMap) -> Context {
    let active = ACTIVE.load(Ordering::Relaxed);
    if active & INSTALLED == 0 {
        return opentelemetry::global::get_text_map_propagator(|p| {
            p.extract(&HeaderExtractor(headers))
        });
    }
    // Names made once: a `&str` name is validated again on every lookup.
    const TRACEPARENT_NAME: HeaderName = HeaderName::from_static(TRACEPARENT);
    const TRACESTATE_NAME: HeaderName = HeaderName::from_static(TRACESTATE);
    const BAGGAGE_NAME: HeaderName = HeaderName::from_static(BAGGAGE);
    let fields = |name: HeaderName| headers.get_all(name).into_iter().map(HeaderValue::as_bytes);
    let [traceparent, tracestate, baggage] = present(headers, [TRACEPARENT, TRACESTATE, BAGGAGE]);
    let mut cx = Context::current();
    if active & TRACE_CONTEXT != 0 && (traceparent || tracestate) {
        cx = extract_trace_context(&cx, fields(TRACEPARENT_NAME), fields(TRACESTATE_NAME));
    }
    if active & BAGGAGE_FORMAT != 0 && baggage {
        cx = extract_baggage(&cx, fields(BAGGAGE_NAME));
    }
    cx
}

/// Which of `names` (lower case, as header names are) `headers` holds.
///
/// Finding a name the map does not hold still hashes it, byte by byte; most
/// requests carry a handful of headers and none of the optional ones a
/// server looks for, so one pass comparing names is cheaper. A large map
/// gets `true` for every name: look them up.
pub fn present<const N: usize>(headers: &HeaderMap, names: [&str; N]) -> [bool; N] {
    const SCANNED: usize = 16;
    if headers.keys_len() > SCANNED {
        return [true; N];
    }
    let mut found = [false; N];
    for name in headers.keys() {
        let name = name.as_str();
        for (wanted, found) in names.iter().zip(found.iter_mut()) {
            *found |= name == *wanted;
        }
    }
    found
}

/// What a received trace context needs beyond what the span context keeps
/// through the SDK: the `random-trace-id` flag (the SDK gives a span its
/// sampler dropped no flags at all) and a `tracestate` OpenTelemetry could
/// not hold. Stored in the context only when needed — a tracestate it could
/// not hold, or a random flag on a parent whose spans here may be dropped —
/// so the usual request pays nothing for it (a context entry is three
/// allocations); spans started under the context inherit it. A sampled
/// parent under a parent-based sampler needs nothing: the SDK gives its
/// spans the parent's flags.
#[derive(Debug)]
struct Inbound {
    trace_id: TraceId,
    random: bool,
    unheld: Option<tracestate::Unheld>,
}

fn extract_trace_context<'a>(
    cx: &Context,
    traceparents: impl Iterator<Item = &'a [u8]>,
    mut tracestates: impl Iterator<Item = &'a [u8]>,
) -> Context {
    let parent = match traceparent::from_fields(traceparents) {
        Parent::Valid(parent) => parent,
        Parent::Absent => {
            if tracestates.next().is_some() {
                add(&COUNTERS.tracestate_invalid, 1);
                tracing::debug!(
                    target: "platform_telemetry::propagation",
                    "tracestate without traceparent ignored"
                );
            }
            return cx.clone();
        }
        Parent::Invalid(reason) => {
            add(&COUNTERS.traceparent_invalid, 1);
            tracing::debug!(
                target: "platform_telemetry::propagation",
                ?reason,
                "invalid traceparent ignored; starting a new trace"
            );
            // The spec: never read `tracestate` after a bad `traceparent`.
            // Keep the baggage, drop any parent.
            return cx.with_remote_span_context(SpanContext::empty_context());
        }
    };
    let (state, unheld) = match tracestate::parse(tracestates) {
        Ok(members) => tracestate::to_trace_state(&members),
        Err(reason) => {
            add(&COUNTERS.tracestate_invalid, 1);
            tracing::debug!(
                target: "platform_telemetry::propagation",
                ?reason,
                "invalid tracestate discarded"
            );
            (TraceState::NONE, None)
        }
    };
    let random = parent.flags.to_u8() & RANDOM != 0;
    let parent_based = ACTIVE.load(Ordering::Relaxed) & PARENT_BASED != 0;
    let span_context =
        SpanContext::new(parent.trace_id, parent.parent_id, parent.flags, true, state);
    let cx = cx.with_remote_span_context(span_context);
    if random_may_be_lost(parent.flags, parent_based) || unheld.is_some() {
        cx.with_value(Inbound {
            trace_id: parent.trace_id,
            random,
            unheld,
        })
    } else {
        cx
    }
}

/// Whether spans under a remote parent with `flags` may lose its
/// `random-trace-id` flag: the SDK drops every flag of a span its sampler
/// drops, which a parent-based sampler never does under a sampled parent.
fn random_may_be_lost(flags: TraceFlags, parent_based: bool) -> bool {
    flags.to_u8() & RANDOM != 0 && !(flags.is_sampled() && parent_based)
}

fn inject_trace_context(cx: &Context, injector: &mut dyn Injector) {
    if let Some((traceparent, tracestate)) = trace_context_values(cx) {
        // ASCII throughout: the conversion cannot fail.
        injector.set(
            TRACEPARENT,
            String::from_utf8(traceparent.to_vec()).unwrap_or_default(),
        );
        if !tracestate.is_empty() {
            injector.set(TRACESTATE, tracestate);
        }
    }
}

/// [`inject_trace_context`] straight into a header map: the `traceparent`
/// bytes become the header value without a `String` in between.
fn insert_trace_context(cx: &Context, headers: &mut HeaderMap) {
    const TRACEPARENT_NAME: HeaderName = HeaderName::from_static(TRACEPARENT);
    const TRACESTATE_NAME: HeaderName = HeaderName::from_static(TRACESTATE);
    if let Some((traceparent, tracestate)) = trace_context_values(cx) {
        if let Ok(value) = HeaderValue::from_bytes(&traceparent) {
            headers.insert(TRACEPARENT_NAME, value);
        }
        if !tracestate.is_empty()
            && let Ok(value) = HeaderValue::try_from(tracestate)
        {
            headers.insert(TRACESTATE_NAME, value);
        }
    }
}

/// The `traceparent` and `tracestate` (empty: none) to send for `cx`, if its
/// span context is valid.
fn trace_context_values(cx: &Context) -> Option<([u8; 55], String)> {
    let span = cx.span();
    let span_context = span.span_context();
    if !span_context.is_valid() {
        return None;
    }
    // Only while this is the trace that came in: a span may start another.
    let inbound = cx
        .get::<Inbound>()
        .filter(|inbound| inbound.trace_id == span_context.trace_id());
    let mut flags = span_context.trace_flags().to_u8() & KNOWN_FLAGS;
    if inbound.is_some_and(|inbound| inbound.random) {
        flags |= RANDOM;
    }
    let traceparent = traceparent::format(span_context.trace_id(), span_context.span_id(), flags);
    // W3C Trace Context asks vendors to avoid sending empty `tracestate`s
    // (the SDK sends one): the callers skip an empty one.
    let tracestate = match inbound.and_then(|inbound| inbound.unheld.as_ref()) {
        Some(unheld) => unheld.header(span_context.trace_state()),
        None => tracestate::header(span_context.trace_state()),
    };
    Some((traceparent, tracestate))
}

fn extract_baggage<'a>(cx: &Context, fields: impl Iterator<Item = &'a [u8]>) -> Context {
    let mut fields = fields.peekable();
    if fields.peek().is_none() {
        return cx.clone();
    }
    let parsed = baggage::parse(fields);
    if parsed.dropped {
        add(&COUNTERS.baggage_invalid, 1);
        tracing::debug!(
            target: "platform_telemetry::propagation",
            kept = parsed.baggage.len(),
            "baggage members dropped (malformed or past the limits)"
        );
    }
    if parsed.baggage.is_empty() {
        cx.clone()
    } else {
        cx.with_baggage(parsed.baggage)
    }
}

fn inject_baggage(cx: &Context, injector: &mut dyn Injector) {
    if let Some(header) = baggage::header(cx.baggage()) {
        injector.set(BAGGAGE, header);
    }
}

/// Every value of `key`, for propagators given any [`Extractor`].
fn all_fields<'a>(extractor: &'a dyn Extractor, key: &str) -> Vec<&'a str> {
    extractor.get_all(key).unwrap_or_default()
}

/// The W3C trace-context propagator `init` installs (`traceparent` and
/// `tracestate`, as the module documentation says), for code that takes a
/// [`TextMapPropagator`]. With an [`Extractor`] other than
/// [`HeaderExtractor`], repeated fields are seen only as far as its
/// `get_all` returns them.
#[derive(Debug, Default)]
pub struct TraceContextPropagator {
    _private: (),
}

impl TraceContextPropagator {
    /// The propagator.
    pub fn new() -> Self {
        Self::default()
    }
}

impl TextMapPropagator for TraceContextPropagator {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        inject_trace_context(cx, injector);
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        let traceparents = all_fields(extractor, TRACEPARENT);
        let tracestates = all_fields(extractor, TRACESTATE);
        extract_trace_context(
            cx,
            traceparents.iter().map(|v| v.as_bytes()),
            tracestates.iter().map(|v| v.as_bytes()),
        )
    }

    fn fields(&self) -> FieldIter<'_> {
        static FIELDS: OnceLock<[String; 2]> = OnceLock::new();
        FieldIter::new(FIELDS.get_or_init(|| [TRACEPARENT.to_owned(), TRACESTATE.to_owned()]))
    }
}

/// The W3C baggage propagator `init` installs (as the module documentation
/// says), for code that takes a [`TextMapPropagator`].
#[derive(Debug, Default)]
pub struct BaggagePropagator {
    _private: (),
}

impl BaggagePropagator {
    /// The propagator.
    pub fn new() -> Self {
        Self::default()
    }
}

impl TextMapPropagator for BaggagePropagator {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        inject_baggage(cx, injector);
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        let fields = all_fields(extractor, BAGGAGE);
        extract_baggage(cx, fields.iter().map(|v| v.as_bytes()))
    }

    fn fields(&self) -> FieldIter<'_> {
        static FIELDS: OnceLock<[String; 1]> = OnceLock::new();
        FieldIter::new(FIELDS.get_or_init(|| [BAGGAGE.to_owned()]))
    }
}

/// [`Injector`] over an `http::HeaderMap`; values that are not valid header text are skipped.
#[derive(Debug)]
pub struct HeaderInjector<'a>(pub &'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        // The names written on every request are known: made at compile
        // time (`from_static` outside a const checks the name on every call).
        const TRACEPARENT_NAME: HeaderName = HeaderName::from_static(TRACEPARENT);
        const TRACESTATE_NAME: HeaderName = HeaderName::from_static(TRACESTATE);
        const BAGGAGE_NAME: HeaderName = HeaderName::from_static(BAGGAGE);
        let name = match key {
            TRACEPARENT => Ok(TRACEPARENT_NAME),
            TRACESTATE => Ok(TRACESTATE_NAME),
            BAGGAGE => Ok(BAGGAGE_NAME),
            other => HeaderName::from_bytes(other.as_bytes()),
        };
        // From the `String` itself: validated, not copied.
        if let (Ok(name), Ok(value)) = (name, HeaderValue::try_from(value)) {
            self.0.insert(name, value);
        }
    }
}

/// [`Extractor`] over an `http::HeaderMap`. `get` gives the first value that
/// is text; `get_all` gives every value, one that is not UTF-8 as U+FFFD, so
/// a propagator sees that something was sent (and that it is invalid).
#[derive(Debug)]
pub struct HeaderExtractor<'a>(pub &'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }

    fn get_all(&self, key: &str) -> Option<Vec<&str>> {
        let values = self.0.get_all(key);
        let mut iter = values.iter().peekable();
        iter.peek()?;
        Some(
            iter.map(|v| std::str::from_utf8(v.as_bytes()).unwrap_or("\u{fffd}"))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests;
