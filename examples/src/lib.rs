//! The golden path: two services built on the platform as a service author
//! should build them, plus the smallest one (`quickstart`) and a `demo` that
//! runs them together under load.
//!
//! Each service is a module of three files a reader can copy:
//! - `mod.rs`: `main` — the runtime, health checks, clients, serving;
//! - `settings.rs`: the service's own `[app]` settings, with defaults and validation;
//! - `routes.rs`: its HTTP API.
//!
//! The binaries in `src/bin/` only call [`inventory::main`] and
//! [`orders::main`]; the demo starts the same code in child processes.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod inventory;
pub mod orders;

/// The README's Rust code, compiled by `cargo test --doc` so that the guide
/// a newcomer copies from keeps compiling.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
