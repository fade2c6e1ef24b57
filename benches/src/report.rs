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

/// The spread of repeated runs of one scenario: every run as it was, and
/// the minimum, median and maximum of each number at the top level of the
/// results (printed for the ratios).
pub fn spread(runs: Vec<serde_json::Value>) -> serde_json::Value {
    let mut keys: Vec<String> = runs
        .first()
        .and_then(|r| r.as_object())
        .map(|o| {
            o.iter()
                .filter(|(_, v)| v.is_number())
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default();
    keys.sort();
    let mut summary = serde_json::Map::new();
    println!(
        "\nover {} runs: {:<32} {:>9} {:>9} {:>9}",
        runs.len(),
        "",
        "min",
        "median",
        "max"
    );
    for key in keys {
        let mut values: Vec<f64> = runs.iter().filter_map(|r| r[&key].as_f64()).collect();
        if values.len() != runs.len() {
            continue;
        }
        values.sort_by(f64::total_cmp);
        let (min, max) = (values[0], values[values.len() - 1]);
        let mid = values.len() / 2;
        let median = if values.len() % 2 == 1 {
            values[mid]
        } else {
            (values[mid - 1] + values[mid]) / 2.0
        };
        if key.ends_with("_ratio") {
            println!("  {key:<44} {min:>9.3} {median:>9.3} {max:>9.3}");
        }
        summary.insert(
            key,
            serde_json::json!({ "min": min, "median": median, "max": max }),
        );
    }
    serde_json::json!({ "runs": runs, "spread": summary })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_gives_min_median_max_of_each_number() {
        let runs = vec![
            serde_json::json!({"p50_ratio": 1.2, "n": 3, "name": "x"}),
            serde_json::json!({"p50_ratio": 1.0, "n": 1, "name": "x"}),
            serde_json::json!({"p50_ratio": 1.1, "n": 2, "name": "x"}),
        ];
        let out = spread(runs);
        assert_eq!(out["runs"].as_array().unwrap().len(), 3);
        assert_eq!(out["spread"]["p50_ratio"]["min"], 1.0);
        assert_eq!(out["spread"]["p50_ratio"]["median"], 1.1);
        assert_eq!(out["spread"]["p50_ratio"]["max"], 1.2);
        assert_eq!(out["spread"]["n"]["median"], 2.0);
        assert!(out["spread"].get("name").is_none());
    }
}
