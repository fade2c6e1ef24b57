//! `orders` finds `inventory` through DNS SRV records, as it does in
//! Kubernetes through a headless service, against a real dnsmasq; when the
//! DNS server goes away, the last answer keeps serving and health says so.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../support/mod.rs"]
mod support;

use support::{Service, free_port, place_order, wait_for_check, wait_until_listening};

const INVENTORY: &str = env!("CARGO_BIN_EXE_inventory");
const ORDERS: &str = env!("CARGO_BIN_EXE_orders");

/// dnsmasq on a loopback port, answering `_http._tcp.inventory.test` with one
/// SRV record per port in `inventory_ports` (all on 127.0.0.1).
fn dnsmasq(port: u16, inventory_ports: &[u16]) -> Service {
    let mut command = Command::new("dnsmasq");
    command.args([
        "--keep-in-foreground",
        "--log-facility=-",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--bind-interfaces",
        "--listen-address=127.0.0.1",
        "--pid-file=",
        "--user=root",
        "--local-ttl=1",
    ]);
    command.arg(format!("--port={port}"));
    for (i, inventory) in inventory_ports.iter().enumerate() {
        command.arg(format!(
            "--srv-host=_http._tcp.inventory.test,inventory-{i}.test,{inventory},0,10"
        ));
        command.arg(format!("--host-record=inventory-{i}.test,127.0.0.1,1"));
    }
    Service::spawn(command.stdout(Stdio::null()))
}

#[tokio::test]
#[ignore = "needs dnsmasq; run by .ci/run"]
async fn orders_finds_inventory_through_dns_srv_and_keeps_it_when_dns_goes_away() {
    let instances: Vec<(u16, u16)> = (0..2).map(|_| (free_port(), free_port())).collect();
    let _inventories: Vec<Service> = instances
        .iter()
        .map(|(api, admin)| Service::start_on(INVENTORY, *api, *admin, &[]))
        .collect();
    let dns_port = free_port();
    let api_ports: Vec<u16> = instances.iter().map(|(api, _)| *api).collect();
    let mut dns = dnsmasq(dns_port, &api_ports);

    let (api, admin) = (free_port(), free_port());
    let _orders = Service::start_on(
        ORDERS,
        api,
        admin,
        &[
            "http.clients.inventory.discovery=dns+srv://_http._tcp.inventory.test",
            &format!("discovery.dns.nameservers=127.0.0.1:{dns_port}"),
            "discovery.dns.min_refresh=200ms",
            "discovery.dns.max_refresh=1s",
            "discovery.dns.timeout=500ms",
        ],
    );
    for port in api_ports.iter().chain([&api]) {
        wait_until_listening(*port).await;
    }
    let http = reqwest::Client::new();
    let order = async || place_order(&http, api).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while order().await != 201 {
        assert!(Instant::now() < deadline, "no order placed through DNS SRV");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Both instances from the SRV answer take orders.
    for _ in 0..40 {
        assert_eq!(order().await, 201);
    }
    for (_, inventory_admin) in &instances {
        let metrics = http
            .get(format!("http://127.0.0.1:{inventory_admin}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics.contains("http_server_request_duration_seconds_count"),
            "instance on admin port {inventory_admin} got no traffic"
        );
    }
    // The check runs every 5 s; its first run may predate the first answer.
    wait_for_check(
        admin,
        "discovery:inventory",
        "pass",
        Duration::from_secs(20),
    )
    .await;

    // DNS gone: the last answer keeps serving, marked stale (a warning).
    let _ = dns.0.kill();
    let _ = dns.0.wait();
    wait_for_check(
        admin,
        "discovery:inventory",
        "warn",
        Duration::from_secs(20),
    )
    .await;
    for _ in 0..20 {
        assert_eq!(
            order().await,
            201,
            "orders placed on the last known instances"
        );
    }
}
