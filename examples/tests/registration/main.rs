//! `inventory` registers itself in a real etcd when configured, shows in
//! etcd while it serves, and is gone as soon as SIGTERM starts the drain.
#![cfg(feature = "etcd")]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const INVENTORY: &str = env!("CARGO_BIN_EXE_inventory");
const ORDERS: &str = env!("CARGO_BIN_EXE_orders");

#[path = "../support/mod.rs"]
mod support;

use support::{Service, check, free_port, place_order, wait_for_check};

/// Base64 for the etcd JSON gateway's byte fields.
fn b64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// How many keys etcd holds under `prefix` (through its JSON gateway).
async fn count(client: &reqwest::Client, etcd: &str, prefix: &str) -> Option<u64> {
    let mut end = prefix.as_bytes().to_vec();
    *end.last_mut().unwrap() += 1;
    let body = serde_json::json!({"key": b64(prefix.as_bytes()), "range_end": b64(&end), "count_only": true});
    let r = client
        .post(format!("{etcd}/v3/kv/range"))
        .json(&body)
        .send()
        .await
        .ok()?;
    let v: serde_json::Value = r.json().await.ok()?;
    Some(
        v["count"]
            .as_str()
            .and_then(|c| c.parse().ok())
            .unwrap_or(0),
    )
}

async fn wait_for(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A one-member etcd on loopback ports in `dir`; its client URL.
async fn start_etcd(dir: &std::path::Path, http: &reqwest::Client) -> (Service, String) {
    let (client_port, peer_port) = (free_port(), free_port());
    let etcd = format!("http://127.0.0.1:{client_port}");
    let process = Service::spawn(
        Command::new("etcd")
            .args([
                "--name=reg-test".to_owned(),
                format!("--data-dir={}", dir.join("etcd").display()),
                format!("--listen-client-urls={etcd}"),
                format!("--advertise-client-urls={etcd}"),
                format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"),
                format!("--initial-cluster=reg-test=http://127.0.0.1:{peer_port}"),
                "--log-level=warn".to_owned(),
            ])
            .stdout(Stdio::null()),
    );
    wait_for("etcd", Duration::from_secs(20), async || {
        count(http, &etcd, "/").await.is_some()
    })
    .await;
    (process, etcd)
}

/// Starts inventory registered in `etcd`; its API port.
fn registered_inventory(etcd: &str, drain: &str) -> (Service, u16, u16) {
    let (api, admin) = (free_port(), free_port());
    let service = Service::start_on(
        INVENTORY,
        api,
        admin,
        &[
            "discovery.registration.enabled=true",
            "discovery.registration.lease_ttl=2s",
            &format!("discovery.etcd.endpoints={etcd}"),
            &format!("shutdown.drain_delay={drain}"),
        ],
    );
    (service, api, admin)
}

#[tokio::test]
#[ignore = "needs etcd; run by .ci/run"]
async fn inventory_registers_and_deregisters_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let (_etcd, etcd) = start_etcd(dir.path(), &http).await;

    let (service, api, admin) = registered_inventory(&etcd, "3s");
    let prefix = "/services/inventory/";
    wait_for("the registration", Duration::from_secs(20), async || {
        count(&http, &etcd, prefix).await == Some(1)
    })
    .await;
    assert_eq!(
        check(admin, "registration").await.map(|(status, _)| status),
        Some("pass".to_owned())
    );

    let signalled = Instant::now();
    service.signal("TERM");
    wait_for("the deregistration", Duration::from_secs(3), async || {
        count(&http, &etcd, prefix).await == Some(0)
    })
    .await;
    assert!(
        signalled.elapsed() < Duration::from_secs(3),
        "gone before the drain delay ended"
    );
    // Still serving during the drain: callers that picked it just before are answered.
    let r = http
        .get(format!("http://127.0.0.1:{api}/stock/apple"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
#[ignore = "needs etcd; run by .ci/run"]
async fn orders_finds_inventory_through_etcd_and_follows_its_instances() {
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let (_etcd, etcd) = start_etcd(dir.path(), &http).await;
    let (first, _, _) = registered_inventory(&etcd, "1s");
    let (_second, _, _) = registered_inventory(&etcd, "1s");
    wait_for("two registrations", Duration::from_secs(20), async || {
        count(&http, &etcd, "/services/inventory/").await == Some(2)
    })
    .await;

    let (api, admin) = (free_port(), free_port());
    let _orders = Service::start_on(
        ORDERS,
        api,
        admin,
        &[
            "http.clients.inventory.discovery=etcd://inventory",
            &format!("discovery.etcd.endpoints={etcd}"),
        ],
    );
    let order = async || place_order(&http, api).await;
    wait_for(
        "orders placed through etcd discovery",
        Duration::from_secs(20),
        async || order().await == 201,
    )
    .await;

    // One instance leaves (deregisters on SIGTERM, then drains): orders keeps
    // placing orders on the other, without a failure.
    first.signal("TERM");
    for _ in 0..40 {
        assert_eq!(order().await, 201);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_for_check(
        admin,
        "discovery:inventory",
        "pass",
        Duration::from_secs(10),
    )
    .await;
}
