//! The answer to a call: status, headers and the body, read in full.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, StatusCode, Version};

use super::ClientError;
use super::retry_after::RetryAfter;

/// An HTTP answer. The body was read within the attempt (so a body cut
/// short is retried like any other transient failure), which is why its
/// accessors do not wait.
#[derive(Debug, Clone)]
pub struct Response {
    pub(crate) status: StatusCode,
    pub(crate) version: Version,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    pub(crate) target: Arc<str>,
    pub(crate) endpoint: Arc<str>,
    pub(crate) attempts: u32,
}

impl Response {
    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The HTTP version of the answer.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The response headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The endpoint (`host:port`) that answered.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The number of the attempt that answered: 1 for the first, 2 for the
    /// first retry or a hedge...
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The body (cheap: a reference-counted buffer).
    pub fn bytes(&self) -> Bytes {
        self.body.clone()
    }

    /// The body as text; invalid UTF-8 is replaced, as browsers and reqwest do.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body decoded from JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, ClientError> {
        serde_json::from_slice(&self.body).map_err(|source| ClientError::Decode {
            target: self.target.clone(),
            endpoint: self.endpoint.clone(),
            source,
        })
    }

    /// This response if its status is below 400, else [`ClientError::Status`]
    /// (with the server's `Retry-After`, when it sent a valid one). Every
    /// answer is an `Ok` from `send`, whatever its status, including one
    /// that retrying gave up on: this is how a caller that wants only
    /// successes says so, as with reqwest.
    pub fn error_for_status(self) -> Result<Self, ClientError> {
        if self.status.is_client_error() || self.status.is_server_error() {
            let retry_after =
                match RetryAfter::from_headers(&self.headers, std::time::SystemTime::now()) {
                    RetryAfter::Delay(delay) => Some(delay),
                    RetryAfter::Absent | RetryAfter::Malformed => None,
                };
            return Err(ClientError::Status {
                target: self.target,
                endpoint: self.endpoint,
                attempts: self.attempts,
                status: self.status,
                retry_after,
                body: self.body,
            });
        }
        Ok(self)
    }
}
