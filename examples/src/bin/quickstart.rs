//! The smallest service that uses the platform properly: typed settings with
//! working defaults, the runtime (command line, config, telemetry, health,
//! signals), and `serve` (API + admin server, graceful drain).
//!
//! ```text
//! cargo run -p platform-examples --bin quickstart
//! curl localhost:8080/hello          # "hello, world"
//! curl localhost:9090/readyz         # "ok"
//! APP__APP__GREETING=hi cargo run -p platform-examples --bin quickstart
//! ```

use axum::extract::State;
use axum::routing::get;
use platform_core::{Config, Runtime};

/// The service's own settings: the `[app]` section of its config.
#[platform_config::settings]
struct Settings {
    /// How the service greets.
    #[setting(default = "hello")]
    greeting: String,
}

async fn hello(State(config): State<Config<Settings>>) -> String {
    // Read per request: a config reload takes effect without a restart.
    format!("{}, world\n", config.current().app.greeting)
}

#[tokio::main]
async fn main() -> Result<(), platform_core::Error> {
    let (rt, config) = Runtime::builder::<Settings>("quickstart")
        .version(env!("CARGO_PKG_VERSION"))
        .init()
        .await?;
    let app = axum::Router::new()
        .route("/hello", get(hello))
        .with_state(config);
    platform_http::serve(&rt, app).await
}
