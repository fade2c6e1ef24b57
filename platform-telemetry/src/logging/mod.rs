//! Logs through `tracing`: filters, line format and the non-blocking writer.

pub(crate) mod layer;
pub(crate) mod writer;

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::error::TelemetryError;
use crate::settings::{LogFormat, LogOutput};

pub(crate) use layer::{LineFormat, LogLayer};

/// Targets kept out of the exported trace pipeline: the transport and
/// telemetry crates log through `tracing` while exporting, and tracing them
/// would make telemetry trace itself (one export producing the spans of the next).
pub(crate) const SELF_TARGETS: [&str; 9] = [
    "hyper",
    "hyper_util",
    "h2",
    "tonic",
    "tower",
    "reqwest",
    "opentelemetry",
    "tracing_opentelemetry",
    "platform_telemetry::export",
];

/// Whether `target` belongs to one of [`SELF_TARGETS`] (`opentelemetry*` covers
/// `opentelemetry_sdk`, `opentelemetry-otlp` and friends).
pub(crate) fn is_self_target(target: &str) -> bool {
    SELF_TARGETS.iter().any(|prefix| {
        target.strip_prefix(prefix).is_some_and(|rest| {
            rest.is_empty()
                || rest.starts_with("::")
                || (*prefix == "opentelemetry" && (rest.starts_with('_') || rest.starts_with('-')))
        })
    })
}

/// Parses filter directives strictly: a typo is an error naming where it came from.
pub(crate) fn env_filter(directives: &str, source_name: &str) -> Result<EnvFilter, TelemetryError> {
    parse_filter(directives).map_err(|reason| TelemetryError::InvalidLogFilter {
        source_name: source_name.to_owned(),
        directive: directives.to_owned(),
        reason,
    })
}

/// Parses filter directives; the parser's complaint on error.
pub(crate) fn parse_filter(directives: &str) -> Result<EnvFilter, String> {
    EnvFilter::builder()
        .parse(directives)
        .map_err(|e| e.to_string())
}

/// `auto` means text for a person at a terminal, JSON for a log shipper.
pub(crate) fn line_format(format: LogFormat, output: LogOutput) -> LineFormat {
    match format {
        LogFormat::Json => LineFormat::Json,
        LogFormat::Text => LineFormat::Text,
        LogFormat::Auto => {
            let terminal = match output {
                LogOutput::Stdout => std::io::stdout().is_terminal(),
                LogOutput::Stderr => std::io::stderr().is_terminal(),
            };
            if terminal {
                LineFormat::Text
            } else {
                LineFormat::Json
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_targets_match_on_module_boundaries() {
        for t in [
            "hyper",
            "hyper::proto::h1",
            "h2::codec",
            "opentelemetry_sdk",
            "opentelemetry-otlp",
            "tonic::transport",
        ] {
            assert!(is_self_target(t), "{t}");
        }
        for t in [
            "hyperion",
            "h2o",
            "orders::hyper",
            "platform_telemetry",
            "towering",
        ] {
            assert!(!is_self_target(t), "{t}");
        }
    }

    #[test]
    fn a_bad_filter_names_its_source() {
        let e = env_filter("info,orders=loud", "RUST_LOG").unwrap_err();
        assert!(e.to_string().contains("RUST_LOG"), "{e}");
        env_filter("info,orders::db=debug", "x").unwrap();
    }
}
