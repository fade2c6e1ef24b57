//! Extraction and injection together, through the propagators, as a server
//! and a client use them; the grammar of each header is tested in its module.

use std::sync::atomic::{AtomicU64, Ordering};

use http::{HeaderMap, HeaderValue};
use opentelemetry::Context;
use opentelemetry::baggage::BaggageExt as _;
use opentelemetry::propagation::{TextMapCompositePropagator, TextMapPropagator};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};

use super::*;

const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn propagator() -> TextMapCompositePropagator {
    TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(BaggagePropagator::new()),
    ])
}

fn headers(fields: &[(&str, &[u8])]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in fields {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_bytes(value).unwrap(),
        );
    }
    map
}

fn extract_from(fields: &[(&str, &[u8])]) -> Context {
    propagator().extract(&HeaderExtractor(&headers(fields)))
}

/// What a client would send for a span continuing `cx` (a new span id, as
/// the SDK gives a child; the sampling decision kept).
fn sent_by_child(cx: &Context, sampled: bool) -> HeaderMap {
    let parent = cx.span().span_context().clone();
    let flags = if sampled {
        parent.trace_flags().with_sampled(true)
    } else {
        // What the SDK gives a span its sampler dropped: no flags at all.
        TraceFlags::default()
    };
    let child = SpanContext::new(
        parent.trace_id(),
        SpanId::from(0x1111_2222_3333_4444_u64),
        flags,
        false,
        parent.trace_state().clone(),
    );
    let mut out = HeaderMap::new();
    propagator().inject_context(
        &cx.with_remote_span_context(child),
        &mut HeaderInjector(&mut out),
    );
    out
}

fn count(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

#[test]
fn a_valid_traceparent_becomes_the_remote_parent_and_round_trips() {
    let cx = extract_from(&[
        ("traceparent", PARENT.as_bytes()),
        ("baggage", b"tenant=acme"),
    ]);
    let sc = cx.span().span_context().clone();
    assert!(sc.is_remote() && sc.is_sampled());
    assert_eq!(
        sc.trace_id().to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(
        cx.baggage().get("tenant").map(|v| v.to_string()),
        Some("acme".into())
    );

    let mut out = HeaderMap::new();
    propagator().inject_context(&cx, &mut HeaderInjector(&mut out));
    assert_eq!(out["traceparent"], PARENT);
    assert_eq!(out["baggage"], "tenant=acme");
    // No empty `tracestate` is sent.
    assert!(out.get("tracestate").is_none());
}

#[test]
fn writes_what_the_sdk_writes_for_the_flags_both_know() {
    let sdk = opentelemetry_sdk::propagation::TraceContextPropagator::new();
    let ours = TraceContextPropagator::new();
    for (flags, state) in [
        (TraceFlags::SAMPLED, TraceState::default()),
        (TraceFlags::default(), TraceState::default()),
        (
            TraceFlags::SAMPLED,
            TraceState::from_key_value([("vendor", "x1"), ("other", "y")]).unwrap(),
        ),
    ] {
        let sc = SpanContext::new(
            TraceId::from(0x0af7651916cd43dd8448eb211c80319c_u128),
            SpanId::from(0x00f067aa0ba902b7_u64),
            flags,
            false,
            state,
        );
        let cx = Context::new().with_remote_span_context(sc);
        let (mut a, mut b) = (HeaderMap::new(), HeaderMap::new());
        sdk.inject_context(&cx, &mut HeaderInjector(&mut a));
        ours.inject_context(&cx, &mut HeaderInjector(&mut b));
        // The same, but for the empty `tracestate` the SDK sends.
        if a["tracestate"].is_empty() {
            a.remove("tracestate");
        }
        assert_eq!(a, b);
    }
    let mut none = HeaderMap::new();
    ours.inject_context(&Context::new(), &mut HeaderInjector(&mut none));
    assert!(none.is_empty());
}

#[test]
fn flags_not_defined_yet_are_not_sent() {
    let sc = SpanContext::new(
        TraceId::from(1u128),
        SpanId::from(1u64),
        TraceFlags::new(0xff),
        false,
        TraceState::NONE,
    );
    let mut out = HeaderMap::new();
    TraceContextPropagator::new().inject_context(
        &Context::new().with_remote_span_context(sc),
        &mut HeaderInjector(&mut out),
    );
    assert!(out["traceparent"].to_str().unwrap().ends_with("-03"));
}

#[test]
fn malformed_or_repeated_traceparents_start_a_new_trace_and_are_counted() {
    let other = "00-12345678901234567890123456789012-1234567890123456-01";
    for fields in [
        &[("traceparent", &b"garbage"[..])][..],
        &[(
            "traceparent",
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        )],
        &[(
            "traceparent",
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        )],
        &[("traceparent", b"\xff\xfe")],
        &[("traceparent", b"")],
        &[
            ("traceparent", PARENT.as_bytes()),
            ("traceparent", other.as_bytes()),
        ],
        &[
            ("traceparent", PARENT.as_bytes()),
            ("traceparent", PARENT.as_bytes()),
        ],
    ] {
        let before = count(&COUNTERS.traceparent_invalid);
        // A context that already has a span: the bad header must not
        // leave the request under it either.
        let current = Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from(7u128),
            SpanId::from(7u64),
            TraceFlags::SAMPLED,
            true,
            TraceState::NONE,
        ));
        let mut with_state = fields.to_vec();
        with_state.push(("tracestate", b"foo=1"));
        let cx =
            propagator().extract_with_context(&current, &HeaderExtractor(&headers(&with_state)));
        assert!(!cx.span().span_context().is_valid(), "{fields:?}");
        assert!(count(&COUNTERS.traceparent_invalid) > before, "{fields:?}");
    }
}

#[test]
fn no_traceparent_keeps_the_current_context() {
    let current = Context::new().with_baggage([opentelemetry::KeyValue::new("k", "v")]);
    let cx = propagator().extract_with_context(&current, &HeaderExtractor(&HeaderMap::new()));
    assert!(!cx.span().span_context().is_valid());
    assert_eq!(cx.baggage().len(), 1);
}

#[test]
fn a_tracestate_without_a_traceparent_is_dropped_and_counted() {
    let before = count(&COUNTERS.tracestate_invalid);
    let cx = extract_from(&[("tracestate", b"foo=1")]);
    assert!(!cx.span().span_context().is_valid());
    assert!(count(&COUNTERS.tracestate_invalid) > before);
}

#[test]
fn tracestate_fields_are_combined_and_forwarded_in_order() {
    let cx = extract_from(&[
        ("traceparent", PARENT.as_bytes()),
        ("tracestate", b"foo=1,bar=2"),
        ("tracestate", b""),
        ("tracestate", b"rojo=1,congo=2"),
        ("tracestate", b"baz=3"),
    ]);
    let out = sent_by_child(&cx, true);
    assert_eq!(out["tracestate"], "foo=1,bar=2,rojo=1,congo=2,baz=3");
    assert_eq!(out.get_all("tracestate").iter().count(), 1);
}

#[test]
fn an_invalid_tracestate_is_discarded_counted_and_the_trace_continues() {
    for bad in [
        &b"foo=,bar=3"[..],
        b"foo=bar=baz",
        b"@foo=1,bar=2",
        b"a=\xff",
    ] {
        let before = count(&COUNTERS.tracestate_invalid);
        let cx = extract_from(&[("traceparent", PARENT.as_bytes()), ("tracestate", bad)]);
        assert!(cx.span().span_context().is_valid());
        let out = sent_by_child(&cx, true);
        assert!(out.get("tracestate").is_none(), "{bad:?}");
        assert!(count(&COUNTERS.tracestate_invalid) > before);
    }
}

#[test]
fn keys_opentelemetry_refuses_still_travel_with_the_trace() {
    let long = format!("t@{}", "v".repeat(15));
    let sent = format!("foo@@bar=1,bar=2,{long}=3");
    let cx = extract_from(&[
        ("traceparent", PARENT.as_bytes()),
        ("tracestate", sent.as_bytes()),
    ]);
    // Code reading the span context sees what OpenTelemetry can hold.
    assert_eq!(cx.span().span_context().trace_state().get("bar"), Some("2"));
    for sampled in [true, false] {
        let out = sent_by_child(&cx, sampled);
        assert_eq!(out["tracestate"], sent.as_str());
    }
    // Another trace started under the same context does not take it along.
    let other = SpanContext::new(
        TraceId::from(9u128),
        SpanId::from(9u64),
        TraceFlags::SAMPLED,
        false,
        TraceState::NONE,
    );
    let mut out = HeaderMap::new();
    propagator().inject_context(
        &cx.with_remote_span_context(other),
        &mut HeaderInjector(&mut out),
    );
    assert!(out.get("tracestate").is_none());
}

#[test]
fn the_random_flag_goes_on_with_its_trace_even_when_the_span_is_dropped() {
    for (flags, random) in [("02", true), ("03", true), ("01", false), ("00", false)] {
        let parent = format!("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-{flags}");
        let cx = extract_from(&[("traceparent", parent.as_bytes())]);
        for sampled in [true, false] {
            let out = sent_by_child(&cx, sampled);
            let sent = out["traceparent"].to_str().unwrap();
            let sent_flags = u8::from_str_radix(&sent[53..], 16).unwrap();
            assert_eq!(sent_flags & RANDOM != 0, random, "{parent} -> {sent}");
            assert_eq!(sent_flags & 1 != 0, sampled, "{parent} -> {sent}");
            assert_eq!(&sent[3..35], "4bf92f3577b34da6a3ce929d0e0e4736");
            assert_eq!(&sent[36..52], "1111222233334444");
        }
    }
}

#[test]
fn the_random_flag_is_kept_beside_the_context_only_when_the_sdk_may_lose_it() {
    let flags = |f: u8| TraceFlags::new(f);
    // Sampled under a parent-based sampler: the SDK keeps the parent's flags.
    assert!(!random_may_be_lost(flags(0x03), true));
    // Not sampled, or a sampler that may drop a sampled parent's spans.
    assert!(random_may_be_lost(flags(0x02), true));
    assert!(random_may_be_lost(flags(0x03), false));
    // Nothing to keep.
    assert!(!random_may_be_lost(flags(0x01), false));
    assert!(!random_may_be_lost(flags(0x00), false));
}

#[test]
fn baggage_fields_are_combined_and_bad_members_counted() {
    let before = count(&COUNTERS.baggage_invalid);
    let cx = extract_from(&[
        ("baggage", b"userId=alice"),
        ("baggage", b"serverNode=DF%2028,bad member=1"),
    ]);
    assert_eq!(cx.baggage().len(), 2);
    assert_eq!(cx.baggage().get("serverNode").unwrap().as_str(), "DF 28");
    assert!(count(&COUNTERS.baggage_invalid) > before);
    let mut out = HeaderMap::new();
    propagator().inject_context(&cx, &mut HeaderInjector(&mut out));
    let mut members: Vec<&str> = out["baggage"].to_str().unwrap().split(',').collect();
    members.sort_unstable();
    assert_eq!(members, ["serverNode=DF%2028", "userId=alice"]);
}

#[test]
fn the_header_extractor_gives_every_value_and_marks_bytes_that_are_not_text() {
    let map = headers(&[("tracestate", b"a=1"), ("tracestate", b"b=\xff")]);
    let extractor = HeaderExtractor(&map);
    assert_eq!(
        extractor.get_all("tracestate"),
        Some(vec!["a=1", "\u{fffd}"])
    );
    assert_eq!(extractor.get_all("baggage"), None);
    assert_eq!(extractor.get("tracestate"), Some("a=1"));
}

/// SplitMix64: a few lines of deterministic randomness, so a failure
/// reproduces from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Random bytes, mostly from the characters the grammars care about.
    fn bytes(&mut self, max_len: usize) -> Vec<u8> {
        const INTERESTING: &[u8] = b"0123456789abcdefABCDEF-=,;@% \t_*/zxf.";
        let len = self.below(max_len + 1);
        (0..len)
            .map(|_| {
                if self.below(4) == 0 {
                    self.next() as u8
                } else {
                    INTERESTING[self.below(INTERESTING.len())]
                }
            })
            .collect()
    }

    /// `valid` with a few bytes changed, inserted or removed.
    fn mutate(&mut self, valid: &[u8]) -> Vec<u8> {
        let mut out = valid.to_vec();
        for _ in 0..=self.below(3) {
            let at = self.below(out.len() + 1);
            let byte = self.bytes(1).first().copied().unwrap_or(b'-');
            match self.below(3) {
                0 if at < out.len() => out[at] = byte,
                1 if at < out.len() => {
                    out.remove(at);
                }
                _ => out.insert(at, byte),
            }
        }
        out
    }
}

#[test]
fn arbitrary_bytes_never_panic_and_what_is_sent_on_is_always_valid() {
    let valid_state = b"foo=1,bar@baz= x,rojo=00f067aa0ba902b7,congo=t61rcWkgMzE".to_vec();
    let valid_baggage = b"userId=alice;p=1, serverNode = DF%2028,isProduction=false".to_vec();
    let mut rng = Rng(0x5eed);
    for round in 0..20_000 {
        let mut map = HeaderMap::new();
        for (name, valid) in [
            ("traceparent", PARENT.as_bytes()),
            ("tracestate", &valid_state[..]),
            ("baggage", &valid_baggage[..]),
        ] {
            for _ in 0..rng.below(4) {
                let value = match rng.below(3) {
                    0 => rng.bytes(700),
                    1 => rng.mutate(valid),
                    _ => valid.to_vec(),
                };
                // Only what HTTP can carry reaches a propagator.
                if let Ok(value) = HeaderValue::from_bytes(&value) {
                    map.append(HeaderName::from_static(name), value);
                }
            }
        }
        let before = (
            count(&COUNTERS.traceparent_invalid),
            count(&COUNTERS.tracestate_invalid),
        );
        let cx = propagator().extract(&HeaderExtractor(&map));
        let sc = cx.span().span_context().clone();
        let traceparents = map.get_all("traceparent").iter().count();
        if traceparents > 0 && !sc.is_valid() {
            assert!(
                count(&COUNTERS.traceparent_invalid) > before.0,
                "round {round}: dropped traceparent not counted: {map:?}"
            );
        }
        if traceparents == 0 && map.contains_key("tracestate") {
            assert!(
                count(&COUNTERS.tracestate_invalid) > before.1,
                "round {round}"
            );
        }

        // What a client sends on is valid, whatever came in.
        for sampled in [true, false] {
            let out = if sc.is_valid() {
                sent_by_child(&cx, sampled)
            } else {
                let mut out = HeaderMap::new();
                propagator().inject_context(&cx, &mut HeaderInjector(&mut out));
                out
            };
            if let Some(tp) = out.get("traceparent") {
                let parsed = traceparent::parse(tp.as_bytes()).expect("a valid traceparent");
                assert_eq!(parsed.trace_id, sc.trace_id());
            }
            if let Some(ts) = out.get("tracestate") {
                let members = tracestate::parse([ts.as_bytes()].into_iter()).unwrap_or_else(|e| {
                    panic!("round {round}: sent an invalid tracestate {ts:?}: {e:?}")
                });
                assert!(!members.as_slice().is_empty());
            }
            if let Some(b) = out.get("baggage") {
                assert!(b.len() <= baggage::MAX_BYTES);
                let back = baggage::parse([b.as_bytes()].into_iter());
                assert!(
                    !back.dropped,
                    "round {round}: sent an invalid baggage {b:?}"
                );
                // Re-encoding may lengthen a value (U+FFFD from `%FF`): then whole
                // members are left out, never cut.
                assert!(
                    back.baggage.len() <= cx.baggage().len(),
                    "round {round}: {b:?}"
                );
            }
        }
    }
}

#[test]
fn huge_headers_cost_no_more_than_the_limits() {
    // 100 000 members: read until the limit, then left alone.
    let huge = "k=v,".repeat(100_000);
    let cx = extract_from(&[
        ("traceparent", PARENT.as_bytes()),
        ("tracestate", huge.as_bytes()),
        ("baggage", huge.as_bytes()),
    ]);
    assert!(cx.span().span_context().is_valid());
    assert_eq!(cx.span().span_context().trace_state(), &TraceState::NONE);
    assert_eq!(cx.baggage().len(), 1, "one key, repeated");
    let distinct: String = (0..100_000).map(|i| format!("k{i}=v,")).collect();
    let cx = extract_from(&[("baggage", distinct.as_bytes())]);
    assert_eq!(cx.baggage().len(), baggage::MAX_MEMBERS);
}

#[test]
fn present_finds_names_in_a_small_map_and_says_yes_to_all_in_a_large_one() {
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("x"));
    headers.append("tracestate", HeaderValue::from_static("a=1"));
    headers.append("tracestate", HeaderValue::from_static("b=2"));
    assert_eq!(
        present(&headers, [TRACEPARENT, TRACESTATE, BAGGAGE, "host"]),
        [false, true, false, true]
    );
    for i in 0..20 {
        headers.insert(
            http::HeaderName::try_from(format!("x-filler-{i}")).unwrap(),
            HeaderValue::from_static("1"),
        );
    }
    assert_eq!(present(&headers, [TRACEPARENT, BAGGAGE]), [true, true]);
    // Looked up, a name that is absent is still absent: the context is the caller's.
    assert!(!extract(&headers).span().span_context().is_valid());
}
