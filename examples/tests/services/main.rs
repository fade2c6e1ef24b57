//! The example services start from their config, take the standard command
//! line, and serve their API: orders reserves stock in inventory.

use std::process::{Command, Output};
use std::time::Duration;

#[path = "../support/mod.rs"]
mod support;

use support::{Service, free_port, wait_for_check, wait_until_listening};

fn run(bin: &str, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .env_remove("APP_PROFILE")
        .output()
        .unwrap()
}

const INVENTORY: &str = env!("CARGO_BIN_EXE_inventory");
const ORDERS: &str = env!("CARGO_BIN_EXE_orders");

#[tokio::test]
async fn orders_reserve_stock_in_inventory() {
    orders_reserve_stock_over("http").await;
}

/// One setting switches orders to inventory's gRPC API: the same answers,
/// the same refusal passed on.
#[tokio::test]
async fn orders_reserve_stock_in_inventory_over_grpc() {
    orders_reserve_stock_over("grpc").await;
}

async fn orders_reserve_stock_over(api: &str) {
    let (inv_port, ord_port) = (free_port(), free_port());
    let _inventory = Service::start_on(
        INVENTORY,
        inv_port,
        free_port(),
        &["app.initial_stock.apple=7"],
    );
    let mut orders = Command::new(ORDERS);
    orders.args(["--profile", "dev"]);
    for set in [
        format!("server.bind=127.0.0.1:{ord_port}"),
        format!("admin.bind=127.0.0.1:{}", free_port()),
        format!("http.clients.inventory.discovery=static://127.0.0.1:{inv_port}"),
        format!("grpc.clients.inventory.discovery=static://127.0.0.1:{inv_port}"),
        format!("app.inventory_api={api}"),
    ] {
        orders.args(["--set", &set]);
    }
    let _orders = Service::spawn(&mut orders);
    wait_until_listening(inv_port).await;
    wait_until_listening(ord_port).await;

    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{ord_port}/orders");
    let placed = client
        .post(&url)
        .json(&serde_json::json!({"sku": "apple", "quantity": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(placed.status(), 201, "{api}");
    let body: serde_json::Value = placed.json().await.unwrap();
    assert_eq!(body["remaining_stock"], 2, "{api}");

    // Inventory refuses more than it has: orders passes that on as a conflict.
    let refused = client
        .post(&url)
        .json(&serde_json::json!({"sku": "apple", "quantity": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 409, "{api}");
}

#[tokio::test]
async fn inventory_takes_stock_once_per_idempotency_key_and_warns_when_sold_out() {
    let (api, admin) = (free_port(), free_port());
    let _inventory = Service::start_on(INVENTORY, api, admin, &["app.initial_stock.apple=4"]);
    wait_until_listening(api).await;
    let client = reqwest::Client::new();
    let reserve = |key: &'static str| {
        client
            .post(format!("http://127.0.0.1:{api}/reservations"))
            .header("idempotency-key", key)
            .json(&serde_json::json!({"sku": "apple", "quantity": 2}))
            .send()
    };
    // The same key twice (a retry): the same answer, the stock taken once.
    for _ in 0..2 {
        let answer: serde_json::Value = reserve("order-1").await.unwrap().json().await.unwrap();
        assert_eq!(answer["available"], 2);
    }
    let answer: serde_json::Value = reserve("order-2").await.unwrap().json().await.unwrap();
    assert_eq!(answer["available"], 0);

    // Sold out is a warning on the `store` check; readiness still passes.
    let message = wait_for_check(admin, "store", "warn", Duration::from_secs(15)).await;
    assert_eq!(message, "sold out: apple");
    let ready = reqwest::get(format!("http://127.0.0.1:{admin}/readyz"))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
}

#[tokio::test]
async fn inventory_fails_the_configured_share_of_requests() {
    let api = free_port();
    let admin = free_port();
    let _inventory = Service::start_on(INVENTORY, api, admin, &["app.failure_rate=1.0"]);
    wait_until_listening(api).await;
    let answer = reqwest::get(format!("http://127.0.0.1:{api}/stock/apple"))
        .await
        .unwrap();
    assert_eq!(answer.status(), 503);

    let out = run(
        INVENTORY,
        &["--check-config", "--set", "app.failure_rate=1.5"],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("app.failure_rate"), "{err}");
}

#[test]
fn check_config_accepts_the_shipped_profiles_and_refuses_bad_values() {
    for bin in [INVENTORY, ORDERS] {
        for profile in ["dev", "prod"] {
            let out = run(bin, &["--check-config", "--profile", profile]);
            assert_eq!(out.status.code(), Some(0), "{bin} {profile}: {out:?}");
        }
    }
    let out = run(
        ORDERS,
        &[
            "--check-config",
            "--set",
            "app.max_quantity=0",
            "--set",
            "server.bnid=x",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("app.max_quantity") && err.contains("must be at least 1"),
        "{err}"
    );
    assert!(err.contains("did you mean `server.bind`"), "{err}");
}

#[test]
fn print_defaults_documents_every_setting() {
    let out = run(INVENTORY, &["--print-defaults"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("# Largest quantity one reservation may take.\nmax_reservation = 10"),
        "{text}"
    );
    assert!(text.contains("extra_latency = \"0s\""), "{text}");
    // Inventory calls no one: it does not read `http`, and does not print it.
    assert!(!text.contains("[http"), "{text}");
    // Still a config file a service accepts as it is.
    toml::from_str::<toml::Table>(&text).unwrap();
    assert!(
        text.contains("drain_delay = \"5s\"") && text.contains("grace_period = \"25s\""),
        "{text}"
    );
    // Orders calls inventory: a map of tables with no entry by default
    // shows one, commented out.
    let out = run(env!("CARGO_BIN_EXE_orders"), &["--print-defaults"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("# [http.clients.<name>.retry]\n") && text.contains("\n# max_attempts = 3\n"),
        "{text}"
    );
    toml::from_str::<toml::Table>(&text).unwrap();
}

#[tokio::test]
async fn quickstart_greets_with_its_configured_greeting() {
    let (api, admin) = (free_port(), free_port());
    let _quickstart = Service::spawn(
        Command::new(env!("CARGO_BIN_EXE_quickstart"))
            .args([
                "--set",
                &format!("server.bind=127.0.0.1:{api}"),
                "--set",
                &format!("admin.bind=127.0.0.1:{admin}"),
            ])
            .env("APP__APP__GREETING", "hi"),
    );
    wait_until_listening(api).await;
    let body = reqwest::get(format!("http://127.0.0.1:{api}/hello"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "hi, world\n");
    wait_until_listening(admin).await;
    let ready = reqwest::get(format!("http://127.0.0.1:{admin}/readyz"))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
}

#[test]
fn the_configuration_reference_is_the_generated_defaults() {
    // docs/configuration.toml is `orders --print-defaults`: orders reads the
    // `http` section too, which quickstart does not. Regenerate it with
    // `cargo run -p platform-examples --bin orders -- --print-defaults > docs/configuration.toml`.
    let out = run(env!("CARGO_BIN_EXE_orders"), &["--print-defaults"]);
    assert_eq!(out.status.code(), Some(0));
    let generated = String::from_utf8(out.stdout).unwrap();
    let checked_in = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/configuration.toml"
    ))
    .unwrap();
    assert!(
        generated == checked_in,
        "docs/configuration.toml is out of date; regenerate it"
    );
}

#[test]
fn version_and_help_name_the_service() {
    let out = run(ORDERS, &["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("orders {}", env!("CARGO_PKG_VERSION"))
    );
    let out = run(INVENTORY, &["--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("Usage: inventory [OPTIONS]"), "{help}");
}

/// Inventory answers its gRPC API on the port of its HTTP API, one store
/// behind both, and the gRPC health protocol on its admin port (what a
/// Kubernetes `grpc:` probe asks).
#[tokio::test]
async fn inventory_answers_grpc_and_http_on_one_port_and_grpc_health_on_admin() {
    use platform_examples::inventory::grpc::generated::inventory_client::InventoryClient;
    use platform_examples::inventory::grpc::generated::{GetStockRequest, ReserveRequest};
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    let (api, admin) = (free_port(), free_port());
    let _inventory = Service::start_on(INVENTORY, api, admin, &["app.initial_stock.apple=5"]);
    wait_until_listening(api).await;
    wait_for_check(admin, "startup", "pass", Duration::from_secs(10)).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{api}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut inventory = InventoryClient::new(channel);
    let reserve = |key: &str| ReserveRequest {
        sku: "apple".into(),
        quantity: 2,
        idempotency_key: key.into(),
    };
    let first = inventory.reserve(reserve("k1")).await.unwrap().into_inner();
    assert_eq!(first.available, 3);
    let again = inventory.reserve(reserve("k1")).await.unwrap().into_inner();
    assert_eq!(again.available, 3, "the same key, the first answer");
    let refused = inventory.reserve(ReserveRequest {
        quantity: 4,
        ..reserve("k2")
    });
    assert_eq!(
        refused.await.unwrap_err().code(),
        tonic::Code::FailedPrecondition
    );
    let unknown = inventory.get_stock(GetStockRequest {
        sku: "no-such-sku".into(),
    });
    assert_eq!(unknown.await.unwrap_err().code(), tonic::Code::NotFound);

    // The HTTP API sees the same store; a path neither API has is a 404.
    let http = reqwest::Client::new();
    let stock: serde_json::Value = http
        .get(format!("http://127.0.0.1:{api}/stock/apple"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stock["available"], 3);
    let missing = http
        .get(format!("http://127.0.0.1:{api}/nowhere"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    let admin_channel =
        tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{admin}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
    let mut health = HealthClient::new(admin_channel);
    for service in ["", "platform.examples.inventory.v1.Inventory"] {
        let answer = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(answer.status(), ServingStatus::Serving, "{service:?}");
    }
}

/// The gRPC code is checked in (a build needs no protoc): it must be what
/// protoc makes of `examples/proto/inventory.proto` now. Regenerate with
/// `UPDATE_GENERATED=1 cargo test -p platform-examples --test services generated -- --include-ignored`.
#[test]
#[ignore = "needs protoc; run by .ci/run"]
fn the_checked_in_grpc_code_is_the_proto_compiled() {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = tempfile::tempdir().unwrap();
    tonic_prost_build::configure()
        .build_transport(false)
        .out_dir(out.path())
        .compile_protos(
            &[manifest.join("proto/inventory.proto")],
            &[manifest.join("proto")],
        )
        .unwrap();
    let generated =
        std::fs::read_to_string(out.path().join("platform.examples.inventory.v1.rs")).unwrap();
    let checked_in_path = manifest.join("src/inventory/grpc/generated.rs");
    if std::env::var_os("UPDATE_GENERATED").is_some() {
        std::fs::write(&checked_in_path, &generated).unwrap();
    }
    let checked_in = std::fs::read_to_string(&checked_in_path).unwrap();
    assert!(
        checked_in == generated,
        "src/inventory/grpc/generated.rs is stale; regenerate it (see this test's doc)"
    );
}
