//! The `baggage` header: W3C Baggage.
//!
//! Every `baggage` field line of a request is one list, combined in order.
//! Unlike `tracestate`, the spec leaves a malformed member's fate open ("MAY
//! remove an offending list-member before propagating the rest"): a member
//! that breaks the grammar is dropped and the others kept, so one bad
//! entry from one library does not cost every other one.
//!
//! Limits: the spec asks that at least 64 members and 8192 bytes be
//! propagated, and allows dropping members beyond that, whole ("MUST NOT
//! propagate any partial list-members"). OpenTelemetry's `Baggage` holds
//! exactly that much, so members are read in order until the next one would
//! pass either limit; it and the rest are dropped. Reading stops there, so
//! a huge header costs no more than the limit.
//!
//! Values are percent-decoded with the `percent-encoding` crate; octets that
//! are not UTF-8 become U+FFFD, as the spec asks. Property lists (`;k=v;k`)
//! are kept as they were sent, still encoded, and sent on unchanged.

use std::borrow::Cow;

use opentelemetry::baggage::Baggage;
use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};

/// "64 list-members or less" must be propagated; OpenTelemetry's `Baggage`
/// holds no more.
pub(crate) const MAX_MEMBERS: usize = 64;
/// "of size 8192 bytes or less", separators included.
pub(crate) const MAX_BYTES: usize = 8192;

/// What is not a `baggage-octet` (`%x21 / %x23-2B / %x2D-3A / %x3C-5B /
/// %x5D-7E`), and `%` itself: encoded when sent. Non-ASCII is always encoded.
const NOT_BAGGAGE_OCTET: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b',')
    .add(b';')
    .add(b'\\')
    .add(b'%');

/// The baggage of a request's `baggage` fields, and whether anything was
/// dropped (to count it).
#[derive(Debug)]
pub(crate) struct Parsed {
    pub(crate) baggage: Baggage,
    pub(crate) dropped: bool,
}

/// Reads the `baggage` field lines of one request as one list.
pub(crate) fn parse<'a>(fields: impl Iterator<Item = &'a [u8]>) -> Parsed {
    let mut baggage = Baggage::new();
    let mut dropped = false;
    let (mut members, mut bytes) = (0usize, 0usize);
    'fields: for field in fields {
        let Ok(text) = std::str::from_utf8(field) else {
            dropped = true;
            continue;
        };
        for member in text.split(',') {
            let member = trim_ows(member);
            if member.is_empty() {
                continue;
            }
            let size = member.len() + usize::from(bytes > 0);
            if members == MAX_MEMBERS || bytes + size > MAX_BYTES {
                dropped = true;
                break 'fields;
            }
            match parse_member(member) {
                Some((key, value, properties)) => {
                    members += 1;
                    bytes += size;
                    // A later duplicate replaces an earlier one (the spec
                    // lets a platform deduplicate either way).
                    baggage.insert_with_metadata(key.to_owned(), value.into_owned(), properties);
                }
                None => dropped = true,
            }
        }
    }
    Parsed { baggage, dropped }
}

/// `key OWS "=" OWS value *( OWS ";" OWS property )`; the key a `token`,
/// the value `baggage-octet`s (decoded), the properties as sent.
fn parse_member(member: &str) -> Option<(&str, Cow<'_, str>, &str)> {
    let (pair, properties) = match member.split_once(';') {
        // A `;` must be followed by a property.
        Some((pair, properties)) => (pair, trim_ows(properties)),
        None => (member, ""),
    };
    let (key, value) = pair.split_once('=')?;
    let (key, value) = (trim_ows(key), trim_ows(value));
    if !is_token(key) || !value.bytes().all(is_baggage_octet) {
        return None;
    }
    // `member` is longer than `pair` exactly when a `;` followed it.
    if member.len() > pair.len() && !valid_properties(properties) {
        return None;
    }
    Some((
        key,
        percent_decode_str(value).decode_utf8_lossy(),
        properties,
    ))
}

/// `property = key OWS "=" OWS value / key OWS`, separated by `OWS ";" OWS`.
fn valid_properties(properties: &str) -> bool {
    properties.split(';').all(|property| {
        let (key, value) = property.split_once('=').unwrap_or((property, ""));
        is_token(trim_ows(key)) && trim_ows(value).bytes().all(is_baggage_octet)
    })
}

/// RFC 9110 `token`: `1*tchar`.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn is_baggage_octet(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x2b | 0x2d..=0x3a | 0x3c..=0x5b | 0x5d..=0x7e)
}

fn trim_ows(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}

/// The `baggage` header for `baggage`: keys as they are, values
/// percent-encoded, properties as they came. Entries whose key is not a
/// `token` (the API accepts more) or whose properties are not the grammar
/// cannot be written and are left out; the header stays within the limits,
/// whole members only. `None` when there is nothing to send.
pub(crate) fn header(baggage: &Baggage) -> Option<String> {
    if baggage.is_empty() {
        return None;
    }
    let mut out = String::new();
    let mut members = 0;
    for (key, (value, metadata)) in baggage {
        let key = key.as_str();
        let properties = metadata.as_str();
        if !is_token(key) || (!properties.is_empty() && !valid_properties(properties)) {
            continue;
        }
        let start = out.len();
        if start > 0 {
            out.push(',');
        }
        out.push_str(key);
        out.push('=');
        out.extend(utf8_percent_encode(value.as_str(), NOT_BAGGAGE_OCTET));
        if !properties.is_empty() {
            out.push(';');
            out.push_str(properties);
        }
        if out.len() > MAX_BYTES || members == MAX_MEMBERS {
            out.truncate(start);
            break;
        }
        members += 1;
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::StringValue;
    use opentelemetry::baggage::BaggageMetadata;

    fn parsed(fields: &[&str]) -> Parsed {
        parse(fields.iter().map(|f| f.as_bytes()))
    }

    fn get(p: &Parsed, key: &str) -> Option<String> {
        p.baggage.get(key).map(|v| v.as_str().to_owned())
    }

    #[test]
    fn several_fields_are_one_list() {
        let p = parsed(&["userId=alice", "serverNode=DF%2028,isProduction=false"]);
        assert!(!p.dropped);
        assert_eq!(p.baggage.len(), 3);
        assert_eq!(get(&p, "serverNode").as_deref(), Some("DF 28"));
        assert_eq!(get(&p, "isProduction").as_deref(), Some("false"));
    }

    #[test]
    fn whitespace_around_keys_and_values_is_not_part_of_them() {
        let p = parsed(&[
            "userId =   alice",
            "serverNode = DF%2028, isProduction = false",
        ]);
        assert!(!p.dropped);
        assert_eq!(get(&p, "userId").as_deref(), Some("alice"));
        assert_eq!(get(&p, "serverNode").as_deref(), Some("DF 28"));
    }

    #[test]
    fn values_are_percent_decoded_and_bad_utf8_becomes_the_replacement_character() {
        let p = parsed(&["userId=Am%C3%A9lie,bad=%FF%FE,eq=a=b,empty="]);
        assert!(!p.dropped);
        assert_eq!(get(&p, "userId").as_deref(), Some("Amélie"));
        assert_eq!(get(&p, "bad").as_deref(), Some("\u{fffd}\u{fffd}"));
        assert_eq!(
            get(&p, "eq").as_deref(),
            Some("a=b"),
            "a value may hold `=`"
        );
        assert_eq!(get(&p, "empty").as_deref(), Some(""));
    }

    #[test]
    fn properties_are_kept_as_sent() {
        let p =
            parsed(&["key1=value1;property1;property2, key3=value3; propertyKey=propertyValue"]);
        assert!(!p.dropped);
        let (_, meta) = p.baggage.get_with_metadata("key1").unwrap();
        assert_eq!(meta.as_str(), "property1;property2");
        let (_, meta) = p.baggage.get_with_metadata("key3").unwrap();
        assert_eq!(meta.as_str(), "propertyKey=propertyValue");
    }

    #[test]
    fn a_bad_member_is_dropped_and_the_rest_kept() {
        for bad in [
            "novalue",
            "=nokey",
            "bad key=1",
            "k(=1",
            "k=a b",
            "k=a\"b",
            "k=a\\b",
            "k=\u{e9}",
            "k=1;bad property=2",
            "k=1;p=a b",
            "k=1;",
        ] {
            let p = parsed(&[&format!("good=1,{bad},also=2")]);
            assert!(p.dropped, "{bad:?}");
            assert_eq!(p.baggage.len(), 2, "{bad:?}");
        }
        let p = parse([&b"good=1"[..], b"k=\xff"].into_iter());
        assert!(p.dropped);
        assert_eq!(p.baggage.len(), 1);
    }

    #[test]
    fn members_past_the_limits_are_dropped_whole() {
        let many: Vec<String> = (0..65).map(|i| format!("k{i}=v")).collect();
        let p = parsed(&[&many.join(",")]);
        assert!(p.dropped);
        assert_eq!(p.baggage.len(), MAX_MEMBERS);
        assert!(p.baggage.get("k63").is_some() && p.baggage.get("k64").is_none());

        let p = parsed(&[&many[..64].join(",")]);
        assert!(!p.dropped);
        assert_eq!(p.baggage.len(), 64);

        // 8192 bytes exactly fit; one more byte drops the member that crosses.
        let fill = "v".repeat(MAX_BYTES - "a=".len() - ",b=x".len());
        let p = parsed(&[&format!("a={fill}"), "b=x"]);
        assert!(!p.dropped);
        assert_eq!(p.baggage.len(), 2);
        let p = parsed(&[&format!("a={fill}"), "b=xy"]);
        assert!(p.dropped);
        assert_eq!(p.baggage.len(), 1);
    }

    #[test]
    fn the_header_encodes_values_and_stays_within_the_limits() {
        let mut b = Baggage::new();
        b.insert_with_metadata("userId", "Amélie, 100%", "p1;p2=x");
        b.insert("plain", "a=b");
        let header = header(&b).unwrap();
        let mut members: Vec<&str> = header.split(',').collect();
        members.sort_unstable();
        assert_eq!(
            members,
            ["plain=a=b", "userId=Am%C3%A9lie%2C%20100%25;p1;p2=x"]
        );
        // And it reads back as it was.
        let back = parse([header.as_bytes()].into_iter());
        assert!(!back.dropped);
        assert_eq!(
            back.baggage.get_with_metadata("userId"),
            Some(&(
                StringValue::from("Amélie, 100%"),
                BaggageMetadata::from("p1;p2=x")
            ))
        );

        let mut b = Baggage::new();
        b.insert("bad key", "1");
        b.insert_with_metadata("k", "1", "bad property=\"");
        assert_eq!(super::header(&b), None);
        assert_eq!(super::header(&Baggage::new()), None);

        let mut b = Baggage::new();
        for i in 0..64 {
            b.insert(format!("k{i:02}"), "v".repeat(100));
        }
        let header = super::header(&b).unwrap();
        assert!(header.len() <= MAX_BYTES);
        assert_eq!(header.split(',').count(), 64);
    }
}
