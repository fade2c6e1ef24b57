//! Discovery against real servers: dnsmasq for DNS, etcd for the etcd backend and registration.
//!
//! Every test starts its own server on free loopback ports in a temp dir and kills it at the end
//! (also on panic). They are `#[ignore]`d for plain `cargo test`; `.ci/run` runs them with
//! `--include-ignored` after installing the Debian packages `dnsmasq`, `etcd-server` and
//! `protobuf-compiler`.

#[cfg(any(feature = "dns", feature = "etcd"))]
mod support;

#[cfg(feature = "dns")]
mod dns;
#[cfg(feature = "etcd")]
mod etcd;

use platform_core::discovery::{DiscoverySettings, Freshness, Resolver, TargetResolver};

#[tokio::test]
async fn static_targets_need_no_server() {
    let resolver = TargetResolver::parse(
        "static://127.0.0.1:1,127.0.0.1:2",
        &DiscoverySettings::default(),
    )
    .unwrap();
    let set = resolver.current();
    assert_eq!(set.freshness(), Freshness::Fresh);
    assert_eq!(set.len(), 2);
}
