//! The `traceparent` header: W3C Trace Context level 2, section 3.2.
//!
//! Parsed from bytes, without allocating: it runs on every request, and a
//! header value need not be text at all.

use opentelemetry::trace::{SpanId, TraceFlags, TraceId};

/// The flags this implementation knows: `sampled` (level 1) and
/// `random-trace-id` (level 2). The others "MUST be set to zero" when sent.
pub(crate) const KNOWN_FLAGS: u8 = 0x01 | RANDOM;
/// Level 2's `random-trace-id` flag: the right-most 7 bytes of the trace id
/// are random.
pub(crate) const RANDOM: u8 = 0x02;

/// A `traceparent` that passed every check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Traceparent {
    pub(crate) trace_id: TraceId,
    pub(crate) parent_id: SpanId,
    /// Only [`KNOWN_FLAGS`].
    pub(crate) flags: TraceFlags,
}

/// Why a `traceparent` was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Invalid {
    /// Sent more than once: RFC 9110 would combine the fields into a list,
    /// which is never a valid `traceparent`; the suite expects a new trace.
    Repeated,
    /// Not the grammar of the version it claims.
    Malformed,
}

/// What the `traceparent` fields of a request say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parent {
    Absent,
    Invalid(Invalid),
    Valid(Traceparent),
}

/// Reads the `traceparent` field lines of one request (all of them, so a
/// repeated one is noticed).
pub(crate) fn from_fields<'a>(mut fields: impl Iterator<Item = &'a [u8]>) -> Parent {
    match (fields.next(), fields.next()) {
        (None, _) => Parent::Absent,
        (Some(_), Some(_)) => Parent::Invalid(Invalid::Repeated),
        (Some(value), None) => match parse(value) {
            Some(parent) => Parent::Valid(parent),
            None => Parent::Invalid(Invalid::Malformed),
        },
    }
}

/// `version "-" trace-id "-" parent-id "-" trace-flags`, lowercase hex, with
/// the rules of "Versioning of traceparent" for versions above `00`: at least
/// 55 characters, and after the flags either the end or a `-` (the fields
/// beyond are not read).
pub(crate) fn parse(value: &[u8]) -> Option<Traceparent> {
    let value = trim_ows(value);
    if value.len() < 55 {
        return None;
    }
    let version = hex_byte(&value[0..2])?;
    if version == 0xff
        || value[2] != b'-'
        || value[35] != b'-'
        || value[52] != b'-'
        || (version == 0 && value.len() != 55)
        || (value.len() > 55 && value[55] != b'-')
    {
        return None;
    }
    let trace_id = hex_u128(&value[3..35])?;
    let parent_id = hex_u64(&value[36..52])?;
    let flags = hex_byte(&value[53..55])?;
    (trace_id != 0 && parent_id != 0).then(|| Traceparent {
        trace_id: TraceId::from(trace_id),
        parent_id: SpanId::from(parent_id),
        flags: TraceFlags::new(flags & KNOWN_FLAGS),
    })
}

/// `00-<trace id>-<span id>-<flags>`: the version this implementation
/// speaks, whatever version came in ("downgrade the version").
pub(crate) fn format(trace_id: TraceId, span_id: SpanId, flags: u8) -> [u8; 55] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = *b"00-00000000000000000000000000000000-0000000000000000-00";
    let trace_id = trace_id.to_bytes();
    let span_id = span_id.to_bytes();
    let fields = [(3, &trace_id[..]), (36, &span_id[..]), (53, &[flags][..])];
    for (start, bytes) in fields {
        for (i, byte) in bytes.iter().enumerate() {
            out[start + 2 * i] = DIGITS[usize::from(byte >> 4)];
            out[start + 2 * i + 1] = DIGITS[usize::from(byte & 0xf)];
        }
    }
    out
}

/// Strips RFC 9110's optional whitespace (spaces and tabs) at both ends.
pub(crate) fn trim_ows(mut value: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = value {
        value = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = value {
        value = rest;
    }
    value
}

/// A lowercase hex digit (`HEXDIGLC`); uppercase is not the grammar.
fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

fn hex_u128(digits: &[u8]) -> Option<u128> {
    digits
        .iter()
        .try_fold(0u128, |n, &b| Some(n << 4 | u128::from(hex_digit(b)?)))
}

fn hex_u64(digits: &[u8]) -> Option<u64> {
    digits
        .iter()
        .try_fold(0u64, |n, &b| Some(n << 4 | u64::from(hex_digit(b)?)))
}

fn hex_byte(digits: &[u8]) -> Option<u8> {
    digits
        .iter()
        .try_fold(0u8, |n, &b| Some(n << 4 | hex_digit(b)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn ok(value: &str) -> bool {
        parse(value.as_bytes()).is_some()
    }

    #[test]
    fn a_valid_header_gives_its_ids_and_flags() {
        let p = parse(VALID.as_bytes()).unwrap();
        assert_eq!(
            p.trace_id,
            TraceId::from(0x4bf92f3577b34da6a3ce929d0e0e4736_u128)
        );
        assert_eq!(p.parent_id, SpanId::from(0x00f067aa0ba902b7_u64));
        assert_eq!(p.flags, TraceFlags::SAMPLED);
        assert_eq!(&format(p.trace_id, p.parent_id, 1)[..], VALID.as_bytes());
    }

    #[test]
    fn flags_keep_sampled_and_random_only() {
        let with = |flags: &str| {
            parse(
                format!("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-{flags}").as_bytes(),
            )
            .unwrap()
            .flags
            .to_u8()
        };
        assert_eq!(with("00"), 0);
        assert_eq!(with("02"), RANDOM);
        assert_eq!(with("03"), 0x03);
        // Flags not defined yet "MUST be set to zero" when passed on.
        assert_eq!(with("ff"), 0x03);
        assert_eq!(with("04"), 0);
    }

    #[test]
    fn optional_whitespace_around_the_value_is_allowed() {
        for value in [
            format!(" {VALID}"),
            format!("\t{VALID}"),
            format!("{VALID} "),
            format!("{VALID}\t"),
            format!("\t {VALID} \t"),
        ] {
            assert!(ok(&value), "{value:?}");
        }
    }

    #[test]
    fn each_field_is_checked() {
        for bad in [
            "",
            "garbage",
            // version: two lowercase hex digits, not ff
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ".0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "0.-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "000-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            // trace id: 32 lowercase hex digits, not all zero
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47361-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-.bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            // parent id: 16 lowercase hex digits, not all zero
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b77-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b.-01",
            // flags: two lowercase hex digits
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-001",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-.0",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A",
            // version 00 is exactly 55 characters
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01.",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-will-be-like",
            // a later version: the flags end the value or are followed by `-`
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01.what-the-future-will-be-like",
            // separators
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",
            // whitespace inside is not OWS
            "00-4bf92f3577b34da6a3ce929d0e0e4736 -00f067aa0ba902b7-01",
        ] {
            assert!(!ok(bad), "{bad:?} accepted");
        }
    }

    #[test]
    fn later_versions_are_read_as_far_as_known() {
        assert!(ok(
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        ));
        assert!(ok(
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-will-be-like"
        ));
    }

    #[test]
    fn a_repeated_header_is_invalid_and_absence_is_not() {
        let one = [VALID.as_bytes()];
        assert!(matches!(from_fields(one.into_iter()), Parent::Valid(_)));
        let two = [VALID.as_bytes(), VALID.as_bytes()];
        assert_eq!(
            from_fields(two.into_iter()),
            Parent::Invalid(Invalid::Repeated)
        );
        assert_eq!(from_fields(std::iter::empty()), Parent::Absent);
        assert_eq!(
            from_fields([&b"\xff\xfe"[..]].into_iter()),
            Parent::Invalid(Invalid::Malformed)
        );
    }
}
