//! Shared pieces of the benchmarks: a lean HTTP/1.1 load client, loopback
//! instances that fail on demand, latency summaries, SVG charts, and where
//! results are written.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod fault_server;
pub mod load;
pub mod noop;
pub mod plot;
pub mod report;
pub mod turns;
