//! The etcd backend and self-registration against real etcd (a single member and a
//! three-member cluster).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use etcd_client::{Client, GetOptions};
use platform_core::discovery::{
    DiscoverySettings, Endpoint, EtcdSettings, Freshness, Registration, RegistrationSettings,
    RegistrationState, TargetResolver,
};

use crate::support::{ProcessGuard, authorities, free_ports, wait_until};

const LIMIT: Duration = Duration::from_secs(20);
const PREFIX: &str = "/test-services";

/// One etcd member on loopback ports, its data in `dir`.
struct Member {
    name: String,
    client_url: String,
    command_args: Vec<String>,
    dir: PathBuf,
    process: Option<ProcessGuard>,
}

impl Member {
    fn start(&mut self) {
        let mut command = Command::new("etcd");
        command.args(&self.command_args);
        self.process = Some(ProcessGuard::spawn(&self.name, command, &self.dir));
    }

    fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }
}

/// `size` members forming one cluster; killed when dropped.
struct Cluster {
    members: Vec<Member>,
}

impl Cluster {
    async fn start(dir: &Path, size: usize) -> Self {
        let ports = free_ports(size * 2);
        let token = format!("test-{}", ports[0]);
        let peers: Vec<String> = (0..size)
            .map(|i| format!("m{i}=http://127.0.0.1:{}", ports[2 * i + 1]))
            .collect();
        let mut members: Vec<Member> = (0..size)
            .map(|i| {
                let client_url = format!("http://127.0.0.1:{}", ports[2 * i]);
                let peer_url = format!("http://127.0.0.1:{}", ports[2 * i + 1]);
                let args = [
                    format!("--name=m{i}"),
                    format!("--data-dir={}", dir.join(format!("m{i}.etcd")).display()),
                    format!("--listen-client-urls={client_url}"),
                    format!("--advertise-client-urls={client_url}"),
                    format!("--listen-peer-urls={peer_url}"),
                    format!("--initial-advertise-peer-urls={peer_url}"),
                    format!("--initial-cluster={}", peers.join(",")),
                    "--initial-cluster-state=new".to_owned(),
                    format!("--initial-cluster-token={token}"),
                    "--logger=zap".to_owned(),
                    "--log-level=warn".to_owned(),
                ];
                Member {
                    name: format!("etcd-m{i}"),
                    client_url,
                    command_args: args.to_vec(),
                    dir: dir.to_owned(),
                    process: None,
                }
            })
            .collect();
        for member in &mut members {
            member.start();
        }
        let cluster = Self { members };
        for member in &cluster.members {
            wait_healthy(&member.client_url).await;
        }
        cluster
    }

    fn urls(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    fn settings(&self) -> DiscoverySettings {
        DiscoverySettings {
            etcd: EtcdSettings {
                endpoints: self.urls(),
                prefix: PREFIX.to_owned(),
                connect_timeout: Duration::from_secs(1),
                request_timeout: Duration::from_secs(2),
                reconnect_min: Duration::from_millis(100),
                reconnect_max: Duration::from_secs(1),
            },
            registration: RegistrationSettings {
                enabled: true,
                lease_ttl: Duration::from_secs(2),
                ..RegistrationSettings::default()
            },
            ..DiscoverySettings::default()
        }
    }
}

/// Waits until `url` answers a read, bounded.
async fn wait_healthy(url: &str) {
    for _ in 0..100 {
        if let Ok(Ok(mut client)) =
            tokio::time::timeout(Duration::from_secs(1), Client::connect([url], None)).await
            && let Ok(Ok(_)) =
                tokio::time::timeout(Duration::from_secs(1), client.get("health-probe", None)).await
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("etcd at {url} did not become healthy");
}

async fn raw_client(urls: &[String]) -> Client {
    Client::connect(urls, None).await.expect("etcd client")
}

fn record(port: u16) -> String {
    format!(r#"{{"host":"127.0.0.1","port":{port}}}"#)
}

#[tokio::test]
#[ignore = "needs etcd; run by .ci/run"]
async fn register_watch_and_deregister() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 1).await;
    let settings = cluster.settings();
    let resolver = TargetResolver::parse("etcd://inventory", &settings).unwrap();

    let first = Registration::start(
        "inventory",
        &Endpoint::new("127.0.0.1", 9001).with_zone("z1"),
        &settings.etcd,
        &settings.registration,
    )
    .unwrap();
    assert!(first.registered(LIMIT).await, "{:?}", first.state());
    assert_eq!(first.key(), "/test-services/inventory/127.0.0.1:9001");
    let set = wait_until(&resolver, LIMIT, "first registration", |set| set.len() == 1).await;
    assert_eq!(set.endpoints()[0].zone.as_deref(), Some("z1"));
    assert_eq!(set.freshness(), Freshness::Fresh);

    let mut client = raw_client(&cluster.urls()).await;

    // The lease is lost (revoked behind its back, as after a long partition): the registration
    // notices at its next keep-alive and registers again under a new lease.
    let RegistrationState::Registered { lease } = first.state() else {
        panic!("not registered: {:?}", first.state())
    };
    client.lease_revoke(lease).await.unwrap();
    let mut states = first.subscribe();
    let renewed = tokio::time::timeout(
        LIMIT,
        states.wait_for(
            |s| matches!(s, RegistrationState::Registered { lease: new } if *new != lease),
        ),
    )
    .await
    .is_ok_and(|changed| changed.is_ok()); // drop the watch guard at once
    assert!(renewed, "not registered again: {:?}", first.state());
    let back = client.get(first.key(), None).await.unwrap();
    assert_eq!(back.kvs().len(), 1, "record put again");

    // Garbage next to good entries: skipped, the rest still served.
    client
        .put(format!("{PREFIX}/inventory/garbage"), "not json", None)
        .await
        .unwrap();
    client
        .put(
            format!("{PREFIX}/inventory/bad-port"),
            r#"{"host":"127.0.0.1","port":0}"#,
            None,
        )
        .await
        .unwrap();
    client
        .put(format!("{PREFIX}/inventory/duplicate"), record(9001), None)
        .await
        .unwrap();
    client
        .put(format!("{PREFIX}/inventory/other"), record(9002), None)
        .await
        .unwrap();
    client
        .put(format!("{PREFIX}/orders/not-ours"), record(9999), None)
        .await
        .unwrap();
    let set = wait_until(&resolver, LIMIT, "second instance", |set| set.len() == 2).await;
    assert_eq!(authorities(&set), ["127.0.0.1:9001", "127.0.0.1:9002"]);

    first.deregister().await.unwrap();
    let gone = client
        .get(format!("{PREFIX}/inventory/127.0.0.1:9001"), None)
        .await
        .unwrap();
    assert!(gone.kvs().is_empty(), "record removed by deregistration");
    // The duplicate entry still names 9001; remove it to see the instance go.
    client
        .delete(format!("{PREFIX}/inventory/duplicate"), None)
        .await
        .unwrap();
    let set = wait_until(&resolver, LIMIT, "deregistered", |set| set.len() == 1).await;
    assert_eq!(authorities(&set), ["127.0.0.1:9002"]);

    // A resolver started now loads the same state from scratch.
    let late = TargetResolver::parse("etcd://inventory", &settings).unwrap();
    let set = wait_until(&late, LIMIT, "initial load", |set| {
        set.freshness() == Freshness::Fresh
    })
    .await;
    assert_eq!(authorities(&set), ["127.0.0.1:9002"]);
}

/// Child-process side of [`a_killed_instance_disappears_after_its_lease_ttl`]: registers and
/// waits to be killed. Does nothing unless started by that test.
#[tokio::test]
#[ignore = "needs etcd; run by .ci/run"]
async fn registering_child_process() {
    let Ok(urls) = std::env::var("PLATFORM_TEST_ETCD_CHILD") else {
        return;
    };
    let etcd = EtcdSettings {
        endpoints: urls.split(',').map(str::to_owned).collect(),
        prefix: PREFIX.to_owned(),
        ..EtcdSettings::default()
    };
    let registration = RegistrationSettings {
        enabled: true,
        lease_ttl: Duration::from_secs(2),
        ..RegistrationSettings::default()
    };
    let _registered = Registration::start(
        "inventory",
        &Endpoint::new("127.0.0.1", 9102),
        &etcd,
        &registration,
    )
    .unwrap();
    // Bounded: the parent kills this process long before.
    tokio::time::sleep(Duration::from_secs(60)).await;
}

#[tokio::test]
#[ignore = "needs etcd; run by .ci/run"]
async fn a_killed_instance_disappears_after_its_lease_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 1).await;
    let settings = cluster.settings();
    let resolver = TargetResolver::parse("etcd://inventory", &settings).unwrap();
    let survivor = Registration::start(
        "inventory",
        &Endpoint::new("127.0.0.1", 9101),
        &settings.etcd,
        &settings.registration,
    )
    .unwrap();
    assert!(survivor.registered(LIMIT).await);

    let mut child = Command::new(std::env::current_exe().unwrap());
    child
        .args([
            "etcd::registering_child_process",
            "--exact",
            "--include-ignored",
            "--nocapture",
        ])
        .env("PLATFORM_TEST_ETCD_CHILD", cluster.urls().join(","));
    let mut child = ProcessGuard::spawn("registering-child", child, dir.path());
    let set = wait_until(&resolver, LIMIT, "child registered", |set| set.len() == 2).await;
    assert_eq!(authorities(&set), ["127.0.0.1:9101", "127.0.0.1:9102"]);

    child.kill(); // SIGKILL: no deregistration, the lease must expire.
    let set = wait_until(&resolver, LIMIT, "child's lease expired", |set| {
        set.len() == 1
    })
    .await;
    assert_eq!(authorities(&set), ["127.0.0.1:9101"]);
    assert_eq!(set.freshness(), Freshness::Fresh);
    assert!(
        matches!(survivor.state(), RegistrationState::Registered { .. }),
        "keep-alive keeps the survivor"
    );
}

#[tokio::test]
#[ignore = "needs etcd; run by .ci/run"]
async fn etcd_restart_keeps_endpoints_and_the_watch_resumes_without_missing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), 1).await;
    let mut settings = cluster.settings();
    // Reconnect slowly so that the changes below happen while the watcher is away.
    settings.etcd.reconnect_min = Duration::from_secs(2);
    settings.etcd.reconnect_max = Duration::from_secs(3);
    let mut client = raw_client(&cluster.urls()).await;
    client
        .put(format!("{PREFIX}/inventory/a"), record(9201), None)
        .await
        .unwrap();
    client
        .put(format!("{PREFIX}/inventory/b"), record(9202), None)
        .await
        .unwrap();
    let resolver = TargetResolver::parse("etcd://inventory", &settings).unwrap();
    let fresh = wait_until(&resolver, LIMIT, "initial", |set| {
        set.len() == 2 && !set.is_stale()
    })
    .await;

    cluster.members[0].kill();
    let stale = wait_until(&resolver, LIMIT, "stale while etcd is down", |set| {
        set.is_stale()
    })
    .await;
    assert_eq!(authorities(&stale), authorities(&fresh), "endpoints kept");
    assert!(stale.last_error().is_some());

    cluster.members[0].start();
    wait_healthy(&cluster.members[0].client_url).await;
    let mut client = raw_client(&cluster.urls()).await;
    client
        .put(format!("{PREFIX}/inventory/c"), record(9203), None)
        .await
        .unwrap();
    client
        .delete(format!("{PREFIX}/inventory/a"), None)
        .await
        .unwrap();
    client
        .put(format!("{PREFIX}/inventory/b"), record(9204), None)
        .await
        .unwrap();

    let set = wait_until(&resolver, LIMIT, "resumed", |set| {
        set.freshness() == Freshness::Fresh
            && authorities(set) == ["127.0.0.1:9203", "127.0.0.1:9204"]
    })
    .await;
    assert_eq!(set.last_error(), None);
}

#[tokio::test]
#[ignore = "needs etcd; run by .ci/run"]
async fn a_three_member_cluster_keeps_working_when_one_member_dies() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), 3).await;
    let settings = cluster.settings();
    let resolver = TargetResolver::parse("etcd://inventory", &settings).unwrap();
    let registration = Registration::start(
        "inventory",
        &Endpoint::new("127.0.0.1", 9301),
        &settings.etcd,
        &settings.registration,
    )
    .unwrap();
    assert!(registration.registered(LIMIT).await);
    wait_until(&resolver, LIMIT, "registered", |set| set.len() == 1).await;

    // Both the watcher and the registration talk to the first member: kill it.
    cluster.members[0].kill();
    let survivors: Vec<String> = cluster.urls()[1..].to_vec();
    let mut client = raw_client(&survivors).await;
    // The killed member may have been the leader: writes fail until a new one is elected.
    let mut written = false;
    for _ in 0..40 {
        if client
            .put(format!("{PREFIX}/inventory/late"), record(9302), None)
            .await
            .is_ok()
        {
            written = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(written, "no write accepted by the surviving members");
    let set = wait_until(
        &resolver,
        LIMIT,
        "change seen through another member",
        |set| set.len() == 2 && set.freshness() == Freshness::Fresh,
    )
    .await;
    assert_eq!(authorities(&set), ["127.0.0.1:9301", "127.0.0.1:9302"]);

    // Well past the lease TTL the registration is still there: kept alive through a survivor.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let key = registration.key().to_owned();
    let found = client
        .get(key.clone(), Some(GetOptions::new()))
        .await
        .unwrap();
    assert_eq!(
        found.kvs().len(),
        1,
        "{key} still registered; state {:?}",
        registration.state()
    );
    registration.deregister().await.unwrap();
    assert!(client.get(key, None).await.unwrap().kvs().is_empty());
}
