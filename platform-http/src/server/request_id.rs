//! Request ids: forwarded when the caller sent a sane one, made up otherwise.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue};

/// The header that carries the request id, both ways.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// [`REQUEST_ID_HEADER`] as a header name, made once: a `&str` name is
/// parsed on every lookup, and copied into a new allocation on every insert.
pub(crate) const REQUEST_ID_NAME: http::HeaderName =
    http::HeaderName::from_static(REQUEST_ID_HEADER);

/// The request id: current while the handler runs ([`RequestId::current`],
/// or as a handler argument in axum), on the response, and sent on by the
/// platform client with the calls the handler makes. Cheap to clone: it
/// shares the bytes of the request's header, or of the id made up for it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(HeaderValue);

const MAX_LEN: usize = 128;

impl RequestId {
    /// The caller's id if it is short, visible ASCII; otherwise a new one.
    pub fn from_headers(headers: &HeaderMap) -> (RequestId, bool) {
        match Self::given(headers) {
            Some(id) => (id, true),
            None => (RequestId::generate(), false),
        }
    }

    /// The caller's id, when it is sane: 1 to 128 visible ASCII characters.
    pub(crate) fn given(headers: &HeaderMap) -> Option<RequestId> {
        headers
            .get(REQUEST_ID_NAME)
            .filter(|v| {
                let v = v.as_bytes();
                !v.is_empty() && v.len() <= MAX_LEN && v.iter().all(u8::is_ascii_graphic)
            })
            .map(|v| RequestId(v.clone()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Visible ASCII, checked when the id was taken or made.
        self.0.to_str().unwrap_or_default()
    }

    /// The id as the header value it travels in (the response's, outgoing
    /// calls'); cloning it shares the bytes.
    pub(crate) fn header_value(&self) -> &HeaderValue {
        &self.0
    }

    /// The id of the request being handled, inside the server layer's scope
    /// (not in tasks a handler spawns: pass it on with [`RequestId::scope`]).
    pub fn current() -> Option<RequestId> {
        // Kept with the request's deadline, in one scope (platform-core).
        platform_core::resilience::current_request_id().map(RequestId)
    }

    /// Runs `future` with this id current.
    pub async fn scope<F: std::future::Future>(self, future: F) -> F::Output {
        platform_core::resilience::request_id_scope(self.0, future).await
    }

    /// A new id: unique within the process, unlikely to collide across them.
    pub fn generate() -> RequestId {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        let seed = *SEED.get_or_init(|| {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or_default();
            nanos ^ (u64::from(std::process::id()) << 32)
        });
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // splitmix64 of seed+n: cheap, well spread.
        let mut z = seed.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        // 16 hex digits of the mix, then 8 of the counter.
        let z = z ^ (z >> 31);
        let mut text = [0u8; 24];
        text[..8].copy_from_slice(&hex8((z >> 32) as u32));
        text[8..16].copy_from_slice(&hex8(z as u32));
        text[16..].copy_from_slice(&hex8(n as u32));
        // One allocation, shared by every clone (a `Bytes` made from a
        // `Vec` would allocate again on its first clone).
        let value = HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(text));
        RequestId(value.unwrap_or_else(|_| HeaderValue::from_static("0")))
    }

    /// The id as an OpenTelemetry attribute value.
    pub(crate) fn attribute_value(&self) -> opentelemetry::StringValue {
        opentelemetry::StringValue::from(self.as_str().to_owned())
    }
}

/// `x` as 8 lower-case hex digits, all at once in one `u64` rather than a
/// digit at a time (`format!` costs more than the rest of an id together).
fn hex8(x: u32) -> [u8; 8] {
    // Spread the 8 nibbles over 8 bytes, least significant in byte 0.
    let mut v = u64::from(x);
    v = (v | (v << 16)) & 0x0000_ffff_0000_ffff;
    v = (v | (v << 8)) & 0x00ff_00ff_00ff_00ff;
    v = (v | (v << 4)) & 0x0f0f_0f0f_0f0f_0f0f;
    // Each byte b becomes '0' + b, plus 'a' - '0' - 10 = 39 where b > 9
    // (b + 6 carries into bit 4 exactly then; no byte overflows).
    let letters = ((v + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
    (v + 0x3030_3030_3030_3030 + letters * 39).to_be_bytes()
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A handler argument: `async fn handler(id: RequestId)`. Outside the
/// server layer (a router served some other way) the request is refused
/// with a 500 naming the cause, as axum's `Extension` does.
impl<S: Sync> axum::extract::FromRequestParts<S> for RequestId {
    type Rejection = (http::StatusCode, &'static str);

    async fn from_request_parts(
        _parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        RequestId::current().ok_or((
            http::StatusCode::INTERNAL_SERVER_ERROR,
            "no request id: the router is not served through platform_http::serve or ServerLayer",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwards_sane_ids_and_replaces_garbage() {
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID_HEADER, "abc-123".parse().unwrap());
        let (id, forwarded) = RequestId::from_headers(&h);
        assert!(forwarded);
        assert_eq!(id.as_str(), "abc-123");
        for bad in ["", "has space", &"x".repeat(200)] {
            h.insert(REQUEST_ID_HEADER, bad.parse().unwrap());
            let (id, forwarded) = RequestId::from_headers(&h);
            assert!(!forwarded, "{bad:?}");
            assert_eq!(id.as_str().len(), 24);
            assert!(id.as_str().bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        }
        assert_ne!(RequestId::generate(), RequestId::generate());
    }

    #[test]
    fn hex_digits_are_written_most_significant_first() {
        for x in [
            0,
            1,
            9,
            10,
            15,
            0xdead_beef,
            0x0123_4567,
            0x89ab_cdef,
            u32::MAX,
        ] {
            assert_eq!(hex8(x), format!("{x:08x}").as_bytes(), "{x:#x}");
        }
    }
}
