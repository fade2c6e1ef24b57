//! Discovery targets: the string a service author writes to name who to call.
//!
//! | Form | Backend | Example |
//! |------|---------|---------|
//! | `static://host:port[,host:port...]` | the list itself | `static://10.0.0.1:8080,[::1]:8080` |
//! | `dns://name:port` | DNS A and AAAA records of `name`, all on `port` | `dns://orders.shop.svc.cluster.local:8080` |
//! | `dns+srv://name` | DNS SRV records of `name` (priority, weight, port, target) | `dns+srv://_http._tcp.orders.shop.svc.cluster.local` |
//! | `etcd://service` | JSON values under `<prefix>/<service>/` in etcd | `etcd://inventory` |
//!
//! Kubernetes headless services are consumed with `dns://<svc>.<ns>.svc.cluster.local:<port>`
//! (one A record per ready pod) or `dns+srv://_<port-name>._<proto>.<svc>.<ns>.svc.cluster.local`
//! (port taken from the named port). Consul's DNS interface is consumed with
//! `dns+srv://<service>.service.consul` (or the RFC 2782 form
//! `dns+srv://_<service>._tcp.service.consul`), which carries each instance's port, or with
//! `dns://<service>.service.consul:<port>` when all instances share a port.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::endpoint::Endpoint;

/// A parsed discovery target; see the [module docs](self) for the forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A fixed list of endpoints.
    Static(Vec<Endpoint>),
    /// A and AAAA records of `name`, each address on `port`.
    Dns {
        /// The DNS name.
        name: String,
        /// The port every address is reached on.
        port: u16,
    },
    /// SRV records of `name`.
    DnsSrv {
        /// The SRV name, e.g. `_http._tcp.orders.example.com`.
        name: String,
    },
    /// A service registered in etcd.
    Etcd {
        /// The service name: the key segment under the configured prefix.
        service: String,
    },
}

/// Why a target string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// No `scheme://`.
    #[error(
        "discovery target {input:?} has no scheme; write static://host:port, dns://name:port, dns+srv://name or etcd://service"
    )]
    MissingScheme {
        /// The target as given.
        input: String,
    },
    /// A scheme that is not one of the supported ones.
    #[error(
        "discovery target {input:?} has unknown scheme {scheme:?}; expected static, dns, dns+srv or etcd"
    )]
    UnknownScheme {
        /// The target as given.
        input: String,
        /// The scheme found.
        scheme: String,
    },
    /// Nothing after `scheme://`.
    #[error("discovery target {input:?} names nothing after the scheme")]
    Empty {
        /// The target as given.
        input: String,
    },
    /// A `host:port` part that does not parse.
    #[error("discovery target {input:?}: {part:?} is not host:port ({reason})")]
    BadAddress {
        /// The target as given.
        input: String,
        /// The offending part.
        part: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A DNS name or etcd service name with characters that cannot be in one.
    #[error("discovery target {input:?}: {name:?} is not a valid name ({reason})")]
    BadName {
        /// The target as given.
        input: String,
        /// The offending name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The scheme's backend is not compiled in.
    #[error("discovery target {input:?} needs the platform-core cargo feature `{feature}`")]
    FeatureDisabled {
        /// The target as given.
        input: String,
        /// The cargo feature to enable.
        feature: &'static str,
    },
}

impl Target {
    /// The cargo feature of platform-core this target needs, when this build
    /// lacks it (a config naming `etcd://` in a binary built without etcd).
    pub fn missing_feature(&self) -> Option<&'static str> {
        match self {
            Target::Static(_) => None,
            Target::Dns { .. } | Target::DnsSrv { .. } => (!cfg!(feature = "dns")).then_some("dns"),
            Target::Etcd { .. } => (!cfg!(feature = "etcd")).then_some("etcd"),
        }
    }

    /// The scheme of this target (`static`, `dns`, `dns+srv`, `etcd`).
    pub fn scheme(&self) -> &'static str {
        match self {
            Target::Static(_) => "static",
            Target::Dns { .. } => "dns",
            Target::DnsSrv { .. } => "dns+srv",
            Target::Etcd { .. } => "etcd",
        }
    }
}

impl FromStr for Target {
    type Err = TargetError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let trimmed = input.trim();
        let Some((scheme, rest)) = trimmed.split_once("://") else {
            return Err(TargetError::MissingScheme {
                input: input.to_owned(),
            });
        };
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() {
            return Err(TargetError::Empty {
                input: input.to_owned(),
            });
        }
        match scheme.to_ascii_lowercase().as_str() {
            "static" => {
                let endpoints = rest
                    .split(',')
                    .map(|part| parse_host_port(input, part.trim()))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Target::Static(endpoints))
            }
            "dns" => {
                let endpoint = parse_host_port(input, rest)?;
                check_dns_name(input, endpoint.host())?;
                Ok(Target::Dns {
                    name: endpoint.host().to_owned(),
                    port: endpoint.port(),
                })
            }
            "dns+srv" => {
                check_dns_name(input, rest)?;
                Ok(Target::DnsSrv {
                    name: rest.to_owned(),
                })
            }
            "etcd" => {
                let valid = rest
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
                if !valid {
                    return Err(TargetError::BadName {
                        input: input.to_owned(),
                        name: rest.to_owned(),
                        reason: "use letters, digits, '-', '_' and '.'".to_owned(),
                    });
                }
                Ok(Target::Etcd {
                    service: rest.to_owned(),
                })
            }
            _ => Err(TargetError::UnknownScheme {
                input: input.to_owned(),
                scheme: scheme.to_owned(),
            }),
        }
    }
}

fn parse_host_port(input: &str, part: &str) -> Result<Endpoint, TargetError> {
    let bad = |reason: &str| TargetError::BadAddress {
        input: input.to_owned(),
        part: part.to_owned(),
        reason: reason.to_owned(),
    };
    if part.is_empty() {
        return Err(bad("empty entry"));
    }
    let (host, port) = if let Some(rest) = part.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad("not an IPv6 address inside brackets"));
        }
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| bad("missing :port"))?;
        (host, port)
    } else {
        let (host, port) = part.rsplit_once(':').ok_or_else(|| bad("missing :port"))?;
        if host.contains(':') {
            return Err(bad("IPv6 addresses go in brackets, e.g. [::1]:8080"));
        }
        (host, port)
    };
    if host.is_empty() {
        return Err(bad("empty host"));
    }
    if host
        .chars()
        .any(|c| c.is_whitespace() || matches!(c, '/' | '@' | '?' | '#'))
    {
        return Err(bad(
            "host has characters that cannot be in an address or name",
        ));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| bad("port is not a number in 1..=65535"))?;
    if port == 0 {
        return Err(bad("port 0"));
    }
    Ok(Endpoint::new(host, port))
}

fn check_dns_name(input: &str, name: &str) -> Result<(), TargetError> {
    let bad = |reason: &str| TargetError::BadName {
        input: input.to_owned(),
        name: name.to_owned(),
        reason: reason.to_owned(),
    };
    let labels = name.strip_suffix('.').unwrap_or(name);
    if labels.len() > 253 {
        return Err(bad("longer than 253 characters"));
    }
    for label in labels.split('.') {
        if label.is_empty() {
            return Err(bad("empty label"));
        }
        if label.len() > 63 {
            return Err(bad("label longer than 63 characters"));
        }
        if !label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(bad("use letters, digits, '-' and '_' between dots"));
        }
    }
    Ok(())
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Static(endpoints) => {
                f.write_str("static://")?;
                for (i, endpoint) in endpoints.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    f.write_str(endpoint.authority())?;
                }
                Ok(())
            }
            Target::Dns { name, port } => write!(f, "dns://{name}:{port}"),
            Target::DnsSrv { name } => write!(f, "dns+srv://{name}"),
            Target::Etcd { service } => write!(f, "etcd://{service}"),
        }
    }
}

impl Serialize for Target {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for Target {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "DiscoveryTarget".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "static://host:port[,host:port...], dns://name:port, dns+srv://name or etcd://service",
            "pattern": "^(static|dns|dns\\+srv|etcd)://.+$"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form_and_prints_it_back() {
        for text in [
            "static://10.0.0.1:8080,[::1]:9090,inventory:80",
            "dns://orders.shop.svc.cluster.local:8080",
            "dns+srv://_http._tcp.orders.service.consul",
            "etcd://inventory",
        ] {
            let target: Target = text.parse().unwrap();
            assert_eq!(target.to_string(), text);
        }
        let Target::Static(endpoints) = "static://10.0.0.1:8080, [::1]:9090".parse().unwrap()
        else {
            panic!("not static");
        };
        assert_eq!(endpoints[1].host(), "::1");
        assert_eq!(endpoints[1].port(), 9090);
        assert_eq!(
            "dns://a.example:53".parse::<Target>().unwrap(),
            Target::Dns {
                name: "a.example".into(),
                port: 53
            }
        );
    }

    #[test]
    fn errors_name_the_problem() {
        let cases = [
            ("10.0.0.1:80", "no scheme"),
            ("http://x:80", "unknown scheme"),
            ("static://", "names nothing"),
            ("static://10.0.0.1", "missing :port"),
            ("static://10.0.0.1:0", "port 0"),
            ("static://10.0.0.1:99999", "port is not a number"),
            ("static://a:1,,b:2", "empty entry"),
            ("static://::1:80", "brackets"),
            ("dns://orders", "missing :port"),
            ("dns://bad..name:80", "empty label"),
            ("dns+srv://under score.example", "not a valid name"),
            ("etcd://a/b", "not a valid name"),
        ];
        for (input, expected) in cases {
            let error = input.parse::<Target>().unwrap_err().to_string();
            assert!(error.contains(expected), "{input}: {error}");
            assert!(error.contains(input.trim()), "{input}: {error}");
        }
    }

    #[test]
    fn deserializes_from_a_string_with_the_parse_error() {
        let target: Target = serde_json::from_str("\"etcd://inventory\"").unwrap();
        assert_eq!(
            target,
            Target::Etcd {
                service: "inventory".into()
            }
        );
        let error = serde_json::from_str::<Target>("\"dns://x\"")
            .unwrap_err()
            .to_string();
        assert!(error.contains("missing :port"), "{error}");
    }
}
