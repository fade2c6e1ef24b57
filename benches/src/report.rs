//! Latency summaries and result files under `target/platform-bench/`.

use std::path::PathBuf;
use std::time::Duration;

/// Percentiles of a latency sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Sample size.
    pub count: usize,
    /// Median, in microseconds.
    pub p50_us: f64,
    /// 99th percentile, in microseconds.
    pub p99_us: f64,
    /// Largest, in microseconds.
    pub max_us: f64,
}

/// Summarises `sample` (sorted in place).
pub fn summarize(sample: &mut [Duration]) -> Summary {
    sample.sort_unstable();
    let at = |q: f64| {
        if sample.is_empty() {
            return 0.0;
        }
        let i = ((sample.len() as f64 - 1.0) * q).round() as usize;
        sample[i].as_secs_f64() * 1e6
    };
    Summary {
        count: sample.len(),
        p50_us: at(0.50),
        p99_us: at(0.99),
        max_us: at(1.0),
    }
}

/// `target/platform-bench/` of this workspace (or of `CARGO_TARGET_DIR`).
pub fn output_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")));
    target.join("platform-bench")
}

/// Writes `<scenario>.json` and returns its path.
pub fn write_json(scenario: &str, value: &serde_json::Value) -> std::io::Result<PathBuf> {
    let dir = output_dir();
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{scenario}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(value)?)?;
    Ok(path)
}
