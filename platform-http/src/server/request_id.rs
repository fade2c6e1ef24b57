//! Request ids: forwarded when the caller sent a sane one, made up otherwise.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderMap;

/// The header that carries the request id, both ways.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// [`REQUEST_ID_HEADER`] as a header name, made once: a `&str` name is
/// parsed on every lookup, and copied into a new allocation on every insert.
pub(crate) const REQUEST_ID_NAME: http::HeaderName =
    http::HeaderName::from_static(REQUEST_ID_HEADER);

/// The request id, in the request's extensions for handlers to read, and
/// current while the handler runs ([`RequestId::current`]): the platform
/// client sends it on to the services the handler calls. Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(Arc<str>);

tokio::task_local! {
    static CURRENT: RequestId;
}

const MAX_LEN: usize = 128;

impl RequestId {
    /// The caller's id if it is short, visible ASCII; otherwise a new one.
    pub fn from_headers(headers: &HeaderMap) -> (RequestId, bool) {
        match Self::given(headers) {
            Some(id) => (RequestId::from_given(id), true),
            None => (RequestId::generate(), false),
        }
    }

    /// An id the caller gave (checked by [`RequestId::given`]).
    pub(crate) fn from_given(given: &str) -> RequestId {
        RequestId(Arc::from(given))
    }

    /// The caller's id, when it is sane.
    pub(crate) fn given(headers: &HeaderMap) -> Option<&str> {
        headers
            .get(REQUEST_ID_NAME)
            .and_then(|v| v.to_str().ok())
            .filter(|v| {
                !v.is_empty() && v.len() <= MAX_LEN && v.bytes().all(|b| b.is_ascii_graphic())
            })
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id of the request being handled, inside the server layer's scope
    /// (not in tasks a handler spawns: pass it on with [`RequestId::scope`]).
    pub fn current() -> Option<RequestId> {
        CURRENT.try_with(RequestId::clone).ok()
    }

    /// Runs `future` with this id current.
    pub async fn scope<F: std::future::Future>(self, future: F) -> F::Output {
        CURRENT.scope(self, future).await
    }

    /// Runs `f` with this id current (a future's own `poll` does so).
    pub(crate) fn sync_scope<R>(&self, f: impl FnOnce() -> R) -> R {
        CURRENT.sync_scope(self.clone(), f)
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
        // 16 hex digits of the mix, then 8 of the counter; written by hand,
        // as `format!` costs more than the rest of the id together.
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut text = [0u8; 24];
        let (mixed, counter) = text.split_at_mut(16);
        let z = z ^ (z >> 31);
        for (i, digit) in mixed.iter_mut().enumerate() {
            *digit = HEX[((z >> (60 - 4 * i)) & 0xf) as usize];
        }
        let n = n as u32;
        for (i, digit) in counter.iter_mut().enumerate() {
            *digit = HEX[((n >> (28 - 4 * i)) & 0xf) as usize];
        }
        RequestId(Arc::from(std::str::from_utf8(&text).unwrap_or("0")))
    }

    /// The id as an OpenTelemetry attribute value, without copying it.
    pub(crate) fn attribute_value(&self) -> opentelemetry::StringValue {
        opentelemetry::StringValue::from(self.0.clone())
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwards_sane_ids_and_replaces_garbage() {
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID_HEADER, "abc-123".parse().unwrap());
        assert_eq!(
            RequestId::from_headers(&h),
            (RequestId(Arc::from("abc-123")), true)
        );
        for bad in ["", "has space", &"x".repeat(200)] {
            h.insert(REQUEST_ID_HEADER, bad.parse().unwrap());
            let (id, forwarded) = RequestId::from_headers(&h);
            assert!(!forwarded, "{bad:?}");
            assert_eq!(id.as_str().len(), 24);
            assert!(id.as_str().bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        }
        assert_ne!(RequestId::generate(), RequestId::generate());
    }
}
