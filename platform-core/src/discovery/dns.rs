//! The DNS backend: A/AAAA records (`dns://name:port`) or SRV records (`dns+srv://name`),
//! looked up again when the answer's TTL runs out.
//!
//! The refresh interval is the smallest TTL of the answer, clamped between
//! [`DnsSettings::min_refresh`] (a TTL of 0 must not turn into a query loop) and
//! [`DnsSettings::max_refresh`] (a week-long TTL must not hide a change for a week). The
//! resolver's own cache is switched off so that the clamp, not the cache, decides when the
//! nameserver is asked again.
//!
//! SRV answers follow RFC 2782: each record's target is resolved to its addresses (from the
//! answer's additional section when present), every address becomes an endpoint on the record's
//! port with the record's priority and weight; a target of `.` ("service not available here")
//! and port 0 are skipped.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolverConfig,
};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;

use super::endpoint::Endpoint;
use super::error::DiscoveryError;
use super::publisher::{Publisher, dedup};
use super::settings::DnsSettings;
use super::target::Target;

/// What to look up, and the resolver to ask.
pub(crate) struct DnsLookup {
    resolver: TokioResolver,
    query: Query,
}

enum Query {
    Addresses { name: String, port: u16 },
    Srv { name: String },
}

/// One successful lookup: the endpoints and the smallest TTL seen.
struct Answer {
    endpoints: Vec<Endpoint>,
    ttl: Duration,
}

impl DnsLookup {
    pub(crate) fn new(target: &Target, settings: &DnsSettings) -> Result<Self, DiscoveryError> {
        let query = match target {
            Target::Dns { name, port } => Query::Addresses {
                name: name.clone(),
                port: *port,
            },
            Target::DnsSrv { name } => Query::Srv { name: name.clone() },
            Target::Static(_) | Target::Etcd { .. } => {
                unreachable!("DnsLookup is only built for dns targets")
            }
        };
        let provider = TokioRuntimeProvider::default();
        let mut builder = if settings.nameservers.is_empty() {
            TokioResolver::builder(provider).map_err(|error| DiscoveryError::SystemDns {
                reason: error.to_string(),
            })?
        } else {
            let servers = settings
                .nameservers
                .iter()
                .map(|address| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = address.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = address.port();
                    NameServerConfig::new(address.ip(), true, vec![udp, tcp])
                })
                .collect();
            TokioResolver::builder_with_config(ResolverConfig::from_name_servers(servers), provider)
        };
        let options = builder.options_mut();
        options.cache_size = 0;
        options.timeout = settings.timeout;
        options.attempts = 1;
        options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        let resolver = builder.build().map_err(|error| DiscoveryError::SystemDns {
            reason: error.to_string(),
        })?;
        Ok(Self { resolver, query })
    }

    async fn lookup(&self, publisher: &Publisher) -> Result<Answer, NetError> {
        match &self.query {
            Query::Addresses { name, port } => self.lookup_addresses(name, *port).await,
            Query::Srv { name } => self.lookup_srv(name, publisher).await,
        }
    }

    async fn lookup_addresses(&self, name: &str, port: u16) -> Result<Answer, NetError> {
        let (addresses, ttl) = match self.resolver.lookup_ip(name).await {
            Ok(lookup) => {
                let ttl = lookup
                    .as_lookup()
                    .answers()
                    .iter()
                    .map(|record| record.ttl)
                    .min();
                (lookup.iter().collect::<Vec<_>>(), ttl)
            }
            Err(error) if error.is_no_records_found() => (Vec::new(), None),
            Err(error) => return Err(error),
        };
        let endpoints = addresses
            .into_iter()
            .map(|ip| {
                let mut endpoint = Endpoint::new(ip.to_string(), port);
                endpoint
                    .metadata
                    .insert("dns.name".to_owned(), name.to_owned());
                endpoint
            })
            .collect();
        Ok(Answer {
            endpoints,
            ttl: ttl_duration(ttl),
        })
    }

    async fn lookup_srv(&self, name: &str, publisher: &Publisher) -> Result<Answer, NetError> {
        let lookup = match self.resolver.srv_lookup(name).await {
            Ok(lookup) => lookup,
            Err(error) if error.is_no_records_found() => {
                return Ok(Answer {
                    endpoints: Vec::new(),
                    ttl: ttl_duration(None),
                });
            }
            Err(error) => return Err(error),
        };
        let mut ttl = lookup.answers().iter().map(|record| record.ttl).min();
        // Addresses the server sent along in the additional section save a query per target.
        let mut glue: HashMap<String, Vec<IpAddr>> = HashMap::new();
        for record in lookup.additionals() {
            let ip = match &record.data {
                RData::A(a) => IpAddr::V4(a.0),
                RData::AAAA(aaaa) => IpAddr::V6(aaaa.0),
                _ => continue,
            };
            glue.entry(record.name.to_ascii().to_ascii_lowercase())
                .or_default()
                .push(ip);
        }
        let mut endpoints = Vec::new();
        for record in lookup.answers() {
            let RData::SRV(srv) = &record.data else {
                continue;
            };
            let target = srv.target.to_ascii().to_ascii_lowercase();
            if srv.target.is_root() {
                publisher.rejected(name, "srv_no_service", "SRV target '.' means not available");
                continue;
            }
            if srv.port == 0 {
                publisher.rejected(&target, "bad_port", "SRV port 0");
                continue;
            }
            let addresses = match glue.get(&target) {
                Some(addresses) => addresses.clone(),
                None => match self.resolver.lookup_ip(srv.target.clone()).await {
                    Ok(lookup) => {
                        let target_ttl = lookup.as_lookup().answers().iter().map(|r| r.ttl).min();
                        ttl = ttl.into_iter().chain(target_ttl).min();
                        lookup.iter().collect()
                    }
                    Err(error) if error.is_no_records_found() => {
                        publisher.rejected(
                            &target,
                            "unresolvable_target",
                            "SRV target has no address",
                        );
                        continue;
                    }
                    Err(error) => return Err(error),
                },
            };
            for ip in addresses {
                let mut endpoint =
                    Endpoint::new(ip.to_string(), srv.port).with_weight(u32::from(srv.weight));
                endpoint.priority = srv.priority;
                endpoint.metadata.insert(
                    "dns.name".to_owned(),
                    target.trim_end_matches('.').to_owned(),
                );
                endpoints.push(endpoint);
            }
        }
        Ok(Answer {
            endpoints,
            ttl: ttl_duration(ttl),
        })
    }
}

/// An answer without records (or without TTL) is asked again after the floor.
fn ttl_duration(ttl: Option<u32>) -> Duration {
    Duration::from_secs(u64::from(ttl.unwrap_or(0)))
}

/// The refresh interval for a TTL: clamped into the configured bounds.
pub(crate) fn refresh_after(ttl: Duration, settings: &DnsSettings) -> Duration {
    ttl.clamp(settings.min_refresh, settings.max_refresh)
}

/// Looks up, publishes, sleeps for the clamped TTL, forever (until every reader is gone).
pub(crate) async fn run(lookup: DnsLookup, publisher: Publisher, settings: DnsSettings) {
    while !publisher.is_closed() {
        let delay = match lookup.lookup(&publisher).await {
            Ok(answer) => {
                let endpoints = dedup(&publisher, answer.endpoints);
                publisher.answer(endpoints);
                refresh_after(answer.ttl, &settings)
            }
            Err(error) => {
                publisher.problem(&format!("DNS lookup failed: {error}"));
                settings.min_refresh
            }
        };
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_follows_the_ttl_within_bounds() {
        let settings = DnsSettings {
            min_refresh: Duration::from_secs(5),
            max_refresh: Duration::from_secs(60),
            ..DnsSettings::default()
        };
        assert_eq!(
            refresh_after(Duration::ZERO, &settings),
            Duration::from_secs(5)
        );
        assert_eq!(
            refresh_after(Duration::from_secs(30), &settings),
            Duration::from_secs(30)
        );
        assert_eq!(
            refresh_after(Duration::from_secs(86_400), &settings),
            Duration::from_secs(60)
        );
    }
}
