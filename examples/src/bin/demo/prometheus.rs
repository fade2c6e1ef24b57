//! Just enough of the Prometheus text format to read the processes' own
//! `/metrics`: the demo reports what the services say about themselves.

/// The sum of every sample of `name` whose labels include each of `labels`
/// (`key="value"`); 0 when there is none.
pub(crate) fn sum(exposition: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, label_part) = match series.split_once('{') {
                Some((metric, rest)) => (metric, rest),
                None => (series, ""),
            };
            if metric != name {
                return None;
            }
            let wanted = labels
                .iter()
                .all(|(k, v)| label_part.contains(&format!("{k}=\"{v}\"")));
            wanted.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::sum;

    const TEXT: &str = r#"# HELP x_total An example.
# TYPE x_total counter
x_total{target="inventory",reason="status"} 3
x_total{target="inventory",reason="connect"} 2
x_total{target="other"} 7
y_count 4.5
garbage line without value
"#;

    #[test]
    fn sums_the_samples_that_match_name_and_labels() {
        assert_eq!(sum(TEXT, "x_total", &[]), 12.0);
        assert_eq!(sum(TEXT, "x_total", &[("target", "inventory")]), 5.0);
        assert_eq!(sum(TEXT, "x_total", &[("reason", "connect")]), 2.0);
        assert_eq!(sum(TEXT, "y_count", &[]), 4.5);
        assert_eq!(sum(TEXT, "missing", &[]), 0.0);
        assert_eq!(sum("", "x_total", &[]), 0.0);
    }
}
