//! Settings of the discovery backends and of self-registration.

use std::net::SocketAddr;
use std::time::Duration;

use super::endpoint::Endpoint;
use super::error::DiscoveryError;

/// Discovery settings: how each backend is reached. Which backend a client uses comes from its
/// [`Target`](super::Target).
#[platform_config::settings]
#[derive(PartialEq)]
pub struct DiscoverySettings {
    /// DNS backend (`dns://` and `dns+srv://` targets).
    pub dns: DnsSettings,
    /// etcd backend (`etcd://` targets) and self-registration.
    pub etcd: EtcdSettings,
    /// Registration of this service instance in etcd.
    pub registration: RegistrationSettings,
}

impl DiscoverySettings {
    /// Checks every part; the error names the key.
    pub fn validate(&self) -> Result<(), DiscoveryError> {
        self.dns.validate()?;
        self.etcd.validate()?;
        self.registration.validate()
    }
}

/// DNS backend settings.
#[platform_config::settings]
#[derive(PartialEq)]
pub struct DnsSettings {
    /// Nameservers as `ip:port`; empty means the system resolver configuration (/etc/resolv.conf).
    #[schemars(with = "Vec<String>")]
    pub nameservers: Vec<SocketAddr>,
    /// Shortest time between two lookups, whatever the TTL says (also the retry interval after a
    /// failed lookup).
    #[setting(default = Duration::from_secs(5))]
    pub min_refresh: Duration,
    /// Longest time between two lookups, whatever the TTL says.
    #[setting(default = Duration::from_secs(300))]
    pub max_refresh: Duration,
    /// Timeout of one DNS query.
    #[setting(default = Duration::from_secs(5))]
    pub timeout: Duration,
}

impl DnsSettings {
    /// Checks the refresh bounds and timeout.
    pub fn validate(&self) -> Result<(), DiscoveryError> {
        if self.min_refresh.is_zero() {
            return Err(invalid(
                "discovery.dns.min_refresh",
                "must be greater than 0",
            ));
        }
        if self.max_refresh < self.min_refresh {
            return Err(invalid(
                "discovery.dns.max_refresh",
                "must not be less than min_refresh",
            ));
        }
        if self.timeout.is_zero() {
            return Err(invalid("discovery.dns.timeout", "must be greater than 0"));
        }
        Ok(())
    }
}

/// etcd settings, shared by the etcd backend and self-registration.
#[platform_config::settings]
#[derive(PartialEq)]
pub struct EtcdSettings {
    /// Client URLs of the etcd members; the backend moves to the next one when one fails.
    #[setting(default = vec!["http://127.0.0.1:2379".to_owned()])]
    pub endpoints: Vec<String>,
    /// Key prefix: a service's instances live under `<prefix>/<service>/<instance>`.
    #[setting(default = "/services")]
    pub prefix: String,
    /// Timeout to establish a connection to a member.
    #[setting(default = Duration::from_secs(3))]
    pub connect_timeout: Duration,
    /// Timeout of one request (get, put, lease grant, revoke).
    #[setting(default = Duration::from_secs(5))]
    pub request_timeout: Duration,
    /// First delay before reconnecting after a failure; doubles up to `reconnect_max`.
    #[setting(default = Duration::from_millis(250))]
    pub reconnect_min: Duration,
    /// Longest delay between reconnection attempts.
    #[setting(default = Duration::from_secs(10))]
    pub reconnect_max: Duration,
}

impl EtcdSettings {
    /// Checks the endpoint list, prefix and timings.
    pub fn validate(&self) -> Result<(), DiscoveryError> {
        if self.endpoints.is_empty() {
            return Err(invalid(
                "discovery.etcd.endpoints",
                "needs at least one URL",
            ));
        }
        if let Some(bad) = self
            .endpoints
            .iter()
            .find(|e| e.trim().is_empty() || e.contains(' '))
        {
            return Err(invalid(
                "discovery.etcd.endpoints",
                &format!("{bad:?} is not a URL"),
            ));
        }
        if !self.prefix.starts_with('/') {
            return Err(invalid("discovery.etcd.prefix", "must start with '/'"));
        }
        for (key, value) in [
            ("discovery.etcd.connect_timeout", self.connect_timeout),
            ("discovery.etcd.request_timeout", self.request_timeout),
            ("discovery.etcd.reconnect_min", self.reconnect_min),
        ] {
            if value.is_zero() {
                return Err(invalid(key, "must be greater than 0"));
            }
        }
        if self.reconnect_max < self.reconnect_min {
            return Err(invalid(
                "discovery.etcd.reconnect_max",
                "must not be less than reconnect_min",
            ));
        }
        Ok(())
    }

    /// The key prefix of a service's instances: `<prefix>/<service>/`.
    pub fn service_prefix(&self, service: &str) -> String {
        format!("{}/{service}/", self.prefix.trim_end_matches('/'))
    }
}

/// Self-registration of this instance in etcd.
#[platform_config::settings]
#[derive(PartialEq)]
pub struct RegistrationSettings {
    /// Register this instance in etcd at start and deregister it at shutdown.
    pub enabled: bool,
    /// Lease time to live: a crashed instance disappears at most this long after its last
    /// keep-alive. Whole seconds, at least 2 s.
    #[setting(default = Duration::from_secs(10))]
    pub lease_ttl: Duration,
    /// Host other services should call; empty means the runtime's choice (its bound address).
    pub advertise_host: String,
    /// Relative weight of this instance.
    #[setting(default = 1)]
    pub weight: u32,
    /// Availability zone to publish; empty for none.
    pub zone: String,
}

impl RegistrationSettings {
    /// The endpoint to register for a server bound to `bound`: `advertise_host` (or the bound
    /// IP), the bound port, and the configured weight and zone. A server bound to an unspecified
    /// address (`0.0.0.0`, `::`) needs `advertise_host`, since others cannot call that address.
    pub fn advertised_endpoint(&self, bound: SocketAddr) -> Result<Endpoint, DiscoveryError> {
        let host = if !self.advertise_host.trim().is_empty() {
            self.advertise_host.trim().to_owned()
        } else if bound.ip().is_unspecified() {
            return Err(invalid(
                "discovery.registration.advertise_host",
                &format!(
                    "the server listens on {bound}; set the address other services should call"
                ),
            ));
        } else {
            bound.ip().to_string()
        };
        let mut endpoint = Endpoint::new(host, bound.port()).with_weight(self.weight);
        if !self.zone.is_empty() {
            endpoint.zone = Some(self.zone.clone());
        }
        Ok(endpoint)
    }

    /// Checks the lease TTL.
    pub fn validate(&self) -> Result<(), DiscoveryError> {
        if self.lease_ttl < Duration::from_secs(2) || self.lease_ttl.subsec_nanos() != 0 {
            return Err(invalid(
                "discovery.registration.lease_ttl",
                "must be whole seconds, at least 2s",
            ));
        }
        Ok(())
    }
}

fn invalid(key: &'static str, reason: &str) -> DiscoveryError {
    DiscoveryError::InvalidSettings {
        key,
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_round_trip() {
        let settings = DiscoverySettings::default();
        settings.validate().unwrap();
        let json = serde_json::to_string(&settings).unwrap();
        assert!(json.contains("\"min_refresh\":\"5s\""), "{json}");
        let back: DiscoverySettings = serde_json::from_str(&json).unwrap();
        assert_eq!(back, settings);
        assert!(serde_json::from_str::<DiscoverySettings>(r#"{"dsn":{}}"#).is_err());
    }

    #[test]
    fn impossible_settings_name_their_key() {
        let mut dns = DnsSettings {
            max_refresh: Duration::from_secs(1),
            ..DnsSettings::default()
        };
        assert!(
            dns.validate()
                .unwrap_err()
                .to_string()
                .contains("discovery.dns.max_refresh")
        );
        dns.max_refresh = Duration::from_secs(10);
        dns.min_refresh = Duration::ZERO;
        assert!(dns.validate().is_err());
        let etcd = EtcdSettings {
            prefix: "services".into(),
            ..EtcdSettings::default()
        };
        assert!(
            etcd.validate()
                .unwrap_err()
                .to_string()
                .contains("discovery.etcd.prefix")
        );
        let registration = RegistrationSettings {
            lease_ttl: Duration::from_millis(1500),
            ..Default::default()
        };
        assert!(registration.validate().is_err());
        assert_eq!(
            EtcdSettings::default().service_prefix("inventory"),
            "/services/inventory/"
        );
    }
}
