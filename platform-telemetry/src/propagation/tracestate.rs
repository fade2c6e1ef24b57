//! The `tracestate` header: W3C Trace Context level 2, section 3.3.
//!
//! Every `tracestate` field line of a request is one list, combined in order
//! (RFC 9110, 5.3). The list is all or nothing: a member that breaks the
//! grammar, or a 33rd member, discards the whole header, as the W3C suite
//! expects at strict level 2. Empty and whitespace-only members are allowed.
//!
//! OpenTelemetry's `TraceState` checks keys against an older draft (one `@`
//! at most, a vendor part of 14 characters at most) and refuses keys the
//! current grammar allows (`foo@@bar`, `t@vvvvvvvvvvvvvvv`). Such a list is
//! kept whole beside the span context ([`Unheld`]), so what came in goes out.

use opentelemetry::trace::TraceState;

/// "There can be a maximum of 32 list-members in a list."
pub(crate) const MAX_MEMBERS: usize = 32;
/// `key = ( lcalpha / DIGIT ) 0*255 ( keychar )`
const MAX_KEY: usize = 256;
/// `value = 0*255(chr) nblk-chr`
const MAX_VALUE: usize = 256;

/// Why a `tracestate` was discarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Invalid {
    /// A field line that is not text.
    NotText,
    /// A member without `=`, or with a key or value outside the grammar.
    Member,
    /// More than [`MAX_MEMBERS`] members.
    TooManyMembers,
}

/// The members of a request's `tracestate`, borrowed from its headers,
/// in order, each key once (a later duplicate is dropped, which the spec
/// allows: "vendors MAY also discard duplicate keys").
#[derive(Debug)]
pub(crate) struct Members<'a> {
    list: [(&'a str, &'a str); MAX_MEMBERS],
    len: usize,
}

impl<'a> Members<'a> {
    pub(crate) fn as_slice(&self) -> &[(&'a str, &'a str)] {
        &self.list[..self.len]
    }
}

/// Reads the `tracestate` field lines of one request as one list. Work is
/// linear in the input and nothing is allocated: the members are borrowed.
pub(crate) fn parse<'a>(fields: impl Iterator<Item = &'a [u8]>) -> Result<Members<'a>, Invalid> {
    let mut members = Members {
        list: [("", ""); MAX_MEMBERS],
        len: 0,
    };
    let mut seen = 0;
    for field in fields {
        let text = std::str::from_utf8(field).map_err(|_| Invalid::NotText)?;
        for member in text.split(',') {
            let member = member.trim_matches([' ', '\t']);
            if member.is_empty() {
                continue;
            }
            seen += 1;
            if seen > MAX_MEMBERS {
                return Err(Invalid::TooManyMembers);
            }
            let (key, value) = member.split_once('=').ok_or(Invalid::Member)?;
            if !valid_key(key) || !valid_value(value) {
                return Err(Invalid::Member);
            }
            if !members.as_slice().iter().any(|(k, _)| *k == key) {
                members.list[members.len] = (key, value);
                members.len += 1;
            }
        }
    }
    Ok(members)
}

/// `key = ( lcalpha / DIGIT ) 0*255 ( keychar )`,
/// `keychar = lcalpha / DIGIT / "_" / "-" / "*" / "/" / "@"`.
pub(crate) fn valid_key(key: &str) -> bool {
    let key = key.as_bytes();
    key.len() <= MAX_KEY
        && matches!(key.first(), Some(b'a'..=b'z' | b'0'..=b'9'))
        && key
            .iter()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/' | b'@'))
}

/// `value = 0*255(chr) nblk-chr`, `chr = %x20 / nblk-chr`,
/// `nblk-chr = %x21-2B / %x2D-3C / %x3E-7E`: printable ASCII but `,` and `=`,
/// not ending in a space. Leading spaces belong to the value.
pub(crate) fn valid_value(value: &str) -> bool {
    let value = value.as_bytes();
    value.len() <= MAX_VALUE
        && value.last().is_some_and(|&b| b != b' ')
        && value
            .iter()
            .all(|&b| matches!(b, 0x20..=0x7e) && b != b',' && b != b'=')
}

/// The state to put in the span context and, when OpenTelemetry could not
/// hold every member, the whole list beside it.
pub(crate) fn to_trace_state(members: &Members<'_>) -> (TraceState, Option<Unheld>) {
    let list = members.as_slice();
    if list.is_empty() {
        return (TraceState::NONE, None);
    }
    if let Ok(state) = TraceState::from_key_value(list.iter().copied()) {
        return (state, None);
    }
    // Rare: keys of the current grammar that OpenTelemetry refuses. The span
    // context keeps what it can (for code that reads it); the rest travels
    // in the context.
    let held = TraceState::from_key_value(
        list.iter()
            .copied()
            .filter(|(k, v)| TraceState::NONE.insert(*k, *v).is_ok()),
    )
    .unwrap_or_default();
    let mut raw = String::with_capacity(list.iter().map(|(k, v)| k.len() + v.len() + 2).sum());
    for (key, value) in list {
        push_member(&mut raw, key, value);
    }
    (held.clone(), Some(Unheld { raw, held }))
}

/// A received list that OpenTelemetry's `TraceState` could not hold whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unheld {
    /// Every member as received (validated, combined): `k=v,k=v`.
    raw: String,
    /// The members that went into the span context.
    held: TraceState,
}

impl Unheld {
    /// The header to send on behalf of a span whose state is `current`: the
    /// received list when nothing changed; otherwise, as "Mutating the
    /// tracestate field" asks, members added or changed here first, then the
    /// received ones in their order, less those changed or deleted here.
    pub(crate) fn header(&self, current: &TraceState) -> String {
        if *current == self.held {
            return self.raw.clone();
        }
        let mut out = String::with_capacity(self.raw.len() + 64);
        let mut count = 0;
        for (key, value) in current {
            if self.held.get(key) != Some(value) && count < MAX_MEMBERS {
                push_member(&mut out, key, value);
                count += 1;
            }
        }
        for (key, value) in self.raw.split(',').filter_map(|m| m.split_once('=')) {
            let changed = current
                .get(key)
                .is_some_and(|v| self.held.get(key) != Some(v));
            let deleted = self.held.get(key).is_some() && current.get(key).is_none();
            if !changed && !deleted && count < MAX_MEMBERS {
                push_member(&mut out, key, value);
                count += 1;
            }
        }
        out
    }
}

fn push_member(out: &mut String, key: &str, value: &str) {
    if !out.is_empty() {
        out.push(',');
    }
    out.push_str(key);
    out.push('=');
    out.push_str(value);
}

/// `k=v,k=v` of a span's `TraceState`: one allocation, where the SDK's
/// `header()` formats every member into a string of its own.
pub(crate) fn header(state: &TraceState) -> String {
    let mut out = String::new();
    for (key, value) in state {
        push_member(&mut out, key, value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(fields: &[&str]) -> Result<Vec<(String, String)>, Invalid> {
        parse(fields.iter().map(|f| f.as_bytes())).map(|m| {
            m.as_slice()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
    }

    fn keys(fields: &[&str]) -> Vec<String> {
        list(fields).unwrap().into_iter().map(|(k, _)| k).collect()
    }

    #[test]
    fn several_fields_are_one_list_in_order() {
        assert_eq!(
            keys(&["foo=1,bar=2", "rojo=1,congo=2", "baz=3"]),
            ["foo", "bar", "rojo", "congo", "baz"]
        );
    }

    #[test]
    fn empty_fields_and_members_are_ignored() {
        assert_eq!(keys(&[""]), Vec::<String>::new());
        assert_eq!(keys(&["foo=1", ""]), ["foo"]);
        assert_eq!(keys(&["", "foo=1"]), ["foo"]);
        assert_eq!(keys(&[" , ,\t,foo=1,,"]), ["foo"]);
    }

    #[test]
    fn optional_whitespace_surrounds_members() {
        assert_eq!(
            list(&["foo=1 \t , \t bar=2, \t baz=3"]).unwrap(),
            [("foo", "1"), ("bar", "2"), ("baz", "3")].map(|(k, v)| (k.into(), v.into()))
        );
        assert_eq!(keys(&["\t foo=1 \t"]), ["foo"]);
    }

    #[test]
    fn thirty_two_members_over_several_fields_are_kept_and_a_33rd_discards_all() {
        let members: Vec<String> = (1..=33).map(|i| format!("bar{i:02}={i:02}")).collect();
        let fields =
            |n: usize| -> Vec<String> { members[..n].chunks(10).map(|c| c.join(",")).collect() };
        let f32 = fields(32);
        let f32: Vec<&str> = f32.iter().map(String::as_str).collect();
        assert_eq!(list(&f32).unwrap().len(), 32);
        let f33 = fields(33);
        let f33: Vec<&str> = f33.iter().map(String::as_str).collect();
        assert_eq!(list(&f33), Err(Invalid::TooManyMembers));
    }

    #[test]
    fn keys_follow_the_current_grammar() {
        for key in [
            "foo",
            "0foo",
            "foo@bar",
            "foo@",
            "foo@@bar",
            "foo@bar@baz",
            "a_-*/@a-z0-9_-*/",
            &"z".repeat(256),
            &format!("{}@{}", "t".repeat(241), "v".repeat(14)),
            &format!("{}@v", "t".repeat(242)),
            &format!("t@{}", "v".repeat(15)),
        ] {
            assert!(valid_key(key), "{key:?} refused");
        }
        for key in [
            "",
            "@foo",
            "_foo",
            "Foo",
            "FOO",
            "foo.bar",
            "foo ",
            " foo",
            "fo o",
            &"z".repeat(257),
        ] {
            assert!(!valid_key(key), "{key:?} accepted");
        }
    }

    #[test]
    fn values_follow_the_grammar() {
        let all: String = (0x20u8..=0x7e)
            .filter(|b| *b != b',' && *b != b'=')
            .map(char::from)
            .collect();
        for value in ["1", " leading", "a b", &all, &"v".repeat(256)] {
            assert!(valid_value(value), "{value:?} refused");
        }
        for value in [
            "",
            "trailing ",
            "a,b",
            "a=b",
            "tab\there",
            "\u{e9}",
            "\x7f",
            &"v".repeat(257),
        ] {
            assert!(!valid_value(value), "{value:?} accepted");
        }
    }

    #[test]
    fn one_bad_member_discards_the_whole_list() {
        for fields in [
            &["foo=bar=baz"][..],
            &["foo=,bar=3"],
            &["foo =1"],
            &["FOO=1"],
            &["foo.bar=1"],
            &["@foo=1,bar=2"],
            &["foo"],
            &["foo=1", "bar"],
            &["foo=1", &format!("{}=1", "z".repeat(257))],
        ] {
            assert_eq!(list(fields), Err(Invalid::Member), "{fields:?}");
        }
        assert_eq!(
            parse([&b"foo=1"[..], b"bar=\xff"].into_iter()).err(),
            Some(Invalid::NotText)
        );
    }

    #[test]
    fn duplicate_keys_keep_the_first() {
        assert_eq!(
            list(&["foo=1,foo=2"]).unwrap(),
            [("foo".into(), "1".into())]
        );
        assert_eq!(list(&["foo=1", "foo=2"]).unwrap().len(), 1);
    }

    #[test]
    fn a_list_opentelemetry_cannot_hold_goes_out_as_it_came_in() {
        let members =
            parse(["foo@@bar=1,bar=2,t@vvvvvvvvvvvvvvv=3".as_bytes()].into_iter()).unwrap();
        let (held, unheld) = to_trace_state(&members);
        let unheld = unheld.expect("kept beside the span context");
        assert_eq!(held.header(), "bar=2");
        assert_eq!(unheld.header(&held), "foo@@bar=1,bar=2,t@vvvvvvvvvvvvvvv=3");

        // A member added or changed here goes first; one deleted here is gone.
        let changed = held.insert("rojo", "x").unwrap();
        assert_eq!(
            unheld.header(&changed),
            "rojo=x,foo@@bar=1,bar=2,t@vvvvvvvvvvvvvvv=3"
        );
        let changed = held.insert("bar", "9").unwrap();
        assert_eq!(
            unheld.header(&changed),
            "bar=9,foo@@bar=1,t@vvvvvvvvvvvvvvv=3"
        );
        let deleted = held.delete("bar").unwrap();
        assert_eq!(unheld.header(&deleted), "foo@@bar=1,t@vvvvvvvvvvvvvvv=3");
    }

    #[test]
    fn a_list_opentelemetry_holds_needs_nothing_beside_it() {
        let members = parse(["foo=1,bar@baz= x"].map(str::as_bytes).into_iter()).unwrap();
        let (held, unheld) = to_trace_state(&members);
        assert!(unheld.is_none());
        assert_eq!(header(&held), "foo=1,bar@baz= x");
        assert_eq!(header(&TraceState::NONE), "");
    }
}
