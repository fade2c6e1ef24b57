//! The service the W3C trace-context test suite talks to, written only with
//! the platform's public API: the runtime, `serve`, and the client.
//!
//! The harness POSTs a JSON list of `{"url": ..., "arguments": ...}`; for
//! each entry the service POSTs `arguments` as JSON to `url`, inside the
//! request's span, so the trace context it received goes on (or a new one
//! starts, when what it received was invalid). The harness then checks the
//! `traceparent` and `tracestate` of those calls.
//!
//! ```text
//! cargo run -p platform-examples --bin w3c-tracecontext -- \
//!     --set server.bind=127.0.0.1:5000 --set admin.bind=127.0.0.1:5001
//! cd examples/tests/tracecontext/w3c
//! STRICT_LEVEL=2 SPEC_LEVEL=2 ../../../../target/w3c-venv/bin/python test.py http://127.0.0.1:5000/test
//! ```
//!
//! `examples/tests/tracecontext` runs exactly that.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::routing::post;
use axum::{Json, Router};
use platform_core::Runtime;
use platform_http::Client;
use platform_http::ClientSettings;

/// One call the harness asks for.
#[derive(Debug, serde::Deserialize)]
struct Action {
    url: String,
    #[serde(default)]
    arguments: serde_json::Value,
}

/// A client per origin the harness names (it names one: itself), made on
/// first use: the URLs arrive in requests, not in the config.
#[derive(Debug, Clone, Default)]
struct Clients(Arc<Mutex<HashMap<String, Client>>>);

impl Clients {
    /// The client for `url`'s origin and the path to call on it.
    fn for_url(&self, url: &str) -> Result<(Client, String), String> {
        let uri: Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return Err(format!("{url}: not an absolute URL"));
        };
        let origin = format!("{scheme}://{authority}");
        let path = uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
        let mut clients = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = clients.get(&origin) {
            return Ok((client.clone(), path));
        }
        let settings = ClientSettings {
            base_url: origin.clone(),
            ..ClientSettings::default()
        };
        let client =
            Client::from_settings(authority.as_str(), &settings).map_err(|e| e.to_string())?;
        clients.insert(origin, client.clone());
        Ok((client, path))
    }
}

/// Makes the calls in order; answers with the status of each (0: no answer).
async fn test(
    State(clients): State<Clients>,
    Json(actions): Json<Vec<Action>>,
) -> (StatusCode, Json<Vec<u16>>) {
    let mut statuses = Vec::with_capacity(actions.len());
    for action in actions {
        let status = match clients.for_url(&action.url) {
            Ok((client, path)) => match client.post(path).json(&action.arguments).send().await {
                Ok(response) => response.status().as_u16(),
                Err(e) => {
                    tracing::warn!(url = %action.url, error = %e, "call failed");
                    0
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "call not made");
                0
            }
        };
        statuses.push(status);
    }
    (StatusCode::OK, Json(statuses))
}

#[tokio::main]
async fn main() -> Result<(), platform_core::Error> {
    let (rt, _config) = Runtime::builder::<()>("w3c-tracecontext")
        .version(env!("CARGO_PKG_VERSION"))
        .init()
        .await?;
    let app = Router::new()
        .route("/test", post(test))
        .with_state(Clients::default());
    platform_http::serve(&rt, app).await
}
