//! platform-core: the runtime side of the platform SDK — discovery and client-side balancing.
//!
//! # Cargo features
//!
//! | Feature | Default | What it adds |
//! |---------|---------|--------------|
//! | `dns`   | on      | DNS discovery (`dns://name:port` for A/AAAA, `dns+srv://name` for SRV) through hickory-resolver |
//! | `etcd`  | off     | etcd discovery (`etcd://service`) and `discovery::Registration` (self-registration); building etcd-client needs `protoc` (Debian `protobuf-compiler`) |
//!
//! Static targets (`static://host:port,...`) and the balancers need no feature.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod balance;
pub mod discovery;
