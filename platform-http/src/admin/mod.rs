//! The admin server: probes, health, metrics, info, and (opt-in) config.
//!
//! | path | answer |
//! | --- | --- |
//! | `/livez`, `/readyz`, `/startupz` | 200 `ok` or 503 `unavailable`, from cached check results |
//! | `/health` | JSON: overall status, each probe, each check (name, kinds, status, last duration, last success, message) |
//! | `/metrics` | Prometheus text exposition |
//! | `/info` | JSON: name, version, instance, profile, start time, uptime |
//! | `/config` | effective configuration with the source of each value, secrets redacted; only with `admin.config_endpoint = true` |

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use platform_core::Runtime;
use platform_core::health::Kind;

/// Renders the Prometheus exposition.
pub type MetricsRender = Arc<dyn Fn() -> String + Send + Sync>;

struct AdminState {
    rt: Runtime,
    metrics: Option<MetricsRender>,
}

/// The admin router for a runtime (`/metrics` served when the runtime has a
/// Prometheus exposition).
pub fn router(rt: &Runtime) -> Router {
    let metrics = rt.prometheus().cloned().map(|handle| {
        let render: MetricsRender = Arc::new(move || handle.render());
        render
    });
    router_with_metrics(rt, metrics)
}

/// The admin router with a metrics renderer for `/metrics`.
pub fn router_with_metrics(rt: &Runtime, metrics: Option<MetricsRender>) -> Router {
    let config_endpoint = rt.settings().admin.config_endpoint;
    let state = Arc::new(AdminState {
        rt: rt.clone(),
        metrics,
    });
    let mut router = Router::new()
        .route("/livez", get(probe::<LIVE>))
        .route("/readyz", get(probe::<READY>))
        .route("/startupz", get(probe::<STARTED>))
        .route("/health", get(health))
        .route("/metrics", get(metrics_text))
        .route("/info", get(info));
    if config_endpoint {
        router = router.route("/config", get(config));
    }
    router.with_state(state)
}

const LIVE: u8 = 0;
const READY: u8 = 1;
const STARTED: u8 = 2;

async fn probe<const KIND: u8>(State(state): State<Arc<AdminState>>) -> Response {
    let kind = match KIND {
        LIVE => Kind::Liveness,
        READY => Kind::Readiness,
        _ => Kind::Startup,
    };
    if state.rt.health().passes(kind) {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable\n").into_response()
    }
}

async fn health(State(state): State<Arc<AdminState>>) -> Response {
    let report = state.rt.health().report();
    let code = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(report)).into_response()
}

async fn metrics_text(State(state): State<Arc<AdminState>>) -> Response {
    match &state.metrics {
        Some(render) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            render(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "metrics exposition is not enabled\n").into_response(),
    }
}

async fn info(State(state): State<Arc<AdminState>>) -> Response {
    let info = state.rt.info();
    let mut body = serde_json::to_value(info).unwrap_or_default();
    body["uptime_seconds"] = info
        .started_at
        .elapsed()
        .unwrap_or_default()
        .as_secs_f64()
        .into();
    body["build"] = serde_json::json!({
        "platform_sdk": env!("CARGO_PKG_VERSION"),
        "target_os": std::env::consts::OS,
        "target_arch": std::env::consts::ARCH,
    });
    axum::Json(body).into_response()
}

async fn config(State(state): State<Arc<AdminState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        state.rt.render_config(),
    )
        .into_response()
}
