//! The DNS backend against dnsmasq.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use platform_core::discovery::{DiscoverySettings, DnsSettings, Freshness, TargetResolver};

use crate::support::{ProcessGuard, authorities, free_ports, wait_until};

const LIMIT: Duration = Duration::from_secs(15);

/// dnsmasq on 127.0.0.1:`port`, serving `hosts` (re-read on SIGHUP) and a few SRV records.
struct Dnsmasq {
    process: ProcessGuard,
    port: u16,
    hosts: PathBuf,
    dir: PathBuf,
}

impl Dnsmasq {
    fn start(dir: &Path, port: u16) -> Self {
        let hosts = dir.join("hosts");
        if !hosts.exists() {
            std::fs::write(&hosts, "127.0.0.2 svc.test\n127.0.0.3 svc.test\n").unwrap();
        }
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
            "--srv-host=_http._tcp.svc.test,b1.test,8081,0,10",
            "--srv-host=_http._tcp.svc.test,b2.test,8082,0,30",
            "--srv-host=_http._tcp.svc.test,b3.test,8083,1,5",
            "--srv-host=_http._tcp.svc.test,b4.test,0,0,5",
            "--host-record=b1.test,127.0.0.11,1",
            "--host-record=b2.test,127.0.0.12,1",
            "--host-record=b3.test,127.0.0.13,1",
            "--host-record=b4.test,127.0.0.14,1",
        ]);
        command.arg(format!("--port={port}"));
        command.arg(format!("--addn-hosts={}", hosts.display()));
        let process = ProcessGuard::spawn("dnsmasq", command, dir);
        Self {
            process,
            port,
            hosts,
            dir: dir.to_owned(),
        }
    }

    fn settings(&self) -> DiscoverySettings {
        DiscoverySettings {
            dns: DnsSettings {
                nameservers: vec![format!("127.0.0.1:{}", self.port).parse().unwrap()],
                min_refresh: Duration::from_millis(200),
                max_refresh: Duration::from_secs(2),
                timeout: Duration::from_millis(500),
            },
            ..DiscoverySettings::default()
        }
    }

    fn rewrite_hosts(&self, content: &str) {
        std::fs::write(&self.hosts, content).unwrap();
        let status = Command::new("kill")
            .arg("-HUP")
            .arg(self.process.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }
}

#[tokio::test]
#[ignore = "needs dnsmasq; run by .ci/run"]
async fn a_and_srv_answers_become_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let dnsmasq = Dnsmasq::start(dir.path(), free_ports(1)[0]);
    let settings = dnsmasq.settings();

    let addresses = TargetResolver::parse("dns://svc.test:8080", &settings).unwrap();
    let set = wait_until(&addresses, LIMIT, "A answer", |set| set.len() == 2).await;
    assert_eq!(authorities(&set), ["127.0.0.2:8080", "127.0.0.3:8080"]);
    assert_eq!(set.freshness(), Freshness::Fresh);
    assert_eq!(
        set.endpoints()[0]
            .metadata
            .get("dns.name")
            .map(String::as_str),
        Some("svc.test")
    );

    let srv = TargetResolver::parse("dns+srv://_http._tcp.svc.test", &settings).unwrap();
    let set = wait_until(&srv, LIMIT, "SRV answer", |set| !set.is_empty()).await;
    assert_eq!(
        authorities(&set),
        ["127.0.0.11:8081", "127.0.0.12:8082", "127.0.0.13:8083"],
        "port 0 skipped"
    );
    let by_port = |port: u16| {
        set.endpoints()
            .iter()
            .find(|e| e.port() == port)
            .unwrap()
            .clone()
    };
    assert_eq!((by_port(8081).weight, by_port(8081).priority), (10, 0));
    assert_eq!((by_port(8082).weight, by_port(8082).priority), (30, 0));
    assert_eq!((by_port(8083).weight, by_port(8083).priority), (5, 1));
    assert_eq!(
        by_port(8082).metadata.get("dns.name").map(String::as_str),
        Some("b2.test")
    );
}

#[tokio::test]
#[ignore = "needs dnsmasq; run by .ci/run"]
async fn a_record_change_is_picked_up_after_its_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let dnsmasq = Dnsmasq::start(dir.path(), free_ports(1)[0]);
    let resolver = TargetResolver::parse("dns://svc.test:8080", &dnsmasq.settings()).unwrap();
    let before = wait_until(&resolver, LIMIT, "first answer", |set| set.len() == 2).await;

    dnsmasq.rewrite_hosts("127.0.0.4 svc.test\n");
    let after = wait_until(&resolver, LIMIT, "changed record", |set| {
        set.endpoints().iter().any(|e| e.host() == "127.0.0.4")
    })
    .await;
    assert_eq!(authorities(&after), ["127.0.0.4:8080"]);
    assert!(after.generation() > before.generation());
    assert_eq!(after.freshness(), Freshness::Fresh);

    // The name vanishes: an empty answer after a good one keeps the endpoints, stale.
    dnsmasq.rewrite_hosts("");
    let stale = wait_until(&resolver, LIMIT, "stale on empty answer", |set| {
        set.is_stale()
    })
    .await;
    assert_eq!(authorities(&stale), ["127.0.0.4:8080"]);
}

#[tokio::test]
#[ignore = "needs dnsmasq; run by .ci/run"]
async fn a_stopped_server_leaves_stale_endpoints_until_it_answers_again() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_ports(1)[0];
    let mut dnsmasq = Dnsmasq::start(dir.path(), port);
    let settings = dnsmasq.settings();
    let resolver = TargetResolver::parse("dns+srv://_http._tcp.svc.test", &settings).unwrap();
    let fresh = wait_until(&resolver, LIMIT, "first answer", |set| set.len() == 3).await;

    dnsmasq.process.kill();
    let stale = wait_until(&resolver, LIMIT, "stale after stop", |set| set.is_stale()).await;
    assert_eq!(authorities(&stale), authorities(&fresh), "endpoints kept");
    assert!(
        stale.last_error().unwrap().contains("DNS lookup failed"),
        "{stale:?}"
    );

    let dir_path = dnsmasq.dir.clone();
    let _restarted = Dnsmasq::start(&dir_path, port);
    let again = wait_until(&resolver, LIMIT, "fresh after restart", |set| {
        set.freshness() == Freshness::Fresh
    })
    .await;
    assert_eq!(authorities(&again), authorities(&fresh));
    assert_eq!(again.last_error(), None);
}
