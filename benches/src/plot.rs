//! Minimal SVG charts for scenario results, written beside the JSON under
//! `target/platform-bench/`: no plotting dependency, readable in a browser.

use std::fmt::Write as _;
use std::path::PathBuf;

const WIDTH: f64 = 720.0;
const BAR_HEIGHT: f64 = 26.0;
const LEFT: f64 = 240.0;
const TOP: f64 = 40.0;

/// A horizontal bar chart: one bar per `(label, value)`, values labelled
/// with `unit`. An optional `marker` draws a dashed line at a target value.
pub fn bar_chart(title: &str, unit: &str, bars: &[(String, f64)], marker: Option<f64>) -> String {
    let max = axis_max(bars.iter().map(|(_, v)| *v).chain(marker));
    let plot_width = WIDTH - LEFT - 110.0;
    let height = TOP + bars.len() as f64 * (BAR_HEIGHT + 8.0) + 20.0;
    let mut svg = open_svg(title, height);
    for (i, (label, value)) in bars.iter().enumerate() {
        let y = TOP + i as f64 * (BAR_HEIGHT + 8.0);
        let w = if value.is_finite() {
            (value / max * plot_width).max(1.0)
        } else {
            1.0
        };
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            LEFT - 8.0,
            y + BAR_HEIGHT * 0.68,
            escape(label)
        );
        let _ = writeln!(
            svg,
            r##"<rect x="{LEFT}" y="{y}" width="{w:.1}" height="{BAR_HEIGHT}" fill="#4a7fb5"/>"##
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{}">{} {}</text>"#,
            LEFT + w + 6.0,
            y + BAR_HEIGHT * 0.68,
            format_value(*value),
            escape(unit)
        );
    }
    if let Some(m) = marker.filter(|m| m.is_finite()) {
        let x = LEFT + m / max * plot_width;
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{}" stroke="#c0392b" stroke-dasharray="5,4"/>"##,
            TOP - 6.0,
            height - 14.0
        );
        let _ = writeln!(
            svg,
            r##"<text x="{x:.1}" y="{}" fill="#c0392b" font-size="11">target {}</text>"##,
            height - 2.0,
            format_value(m)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// One line of a [`line_chart`]: its label and its `(x, y)` points.
pub type Series = (String, Vec<(f64, f64)>);

const COLOURS: [&str; 6] = [
    "#4a7fb5", "#c0392b", "#27ae60", "#8e44ad", "#d68910", "#555555",
];

/// A line chart of `series` against a shared x axis, both axes from zero.
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> String {
    let (left, top, plot_w, plot_h) = (70.0, 40.0, WIDTH - 250.0, 260.0);
    let points = || series.iter().flat_map(|(_, p)| p.iter().copied());
    let x_max = axis_max(points().map(|p| p.0));
    let y_max = axis_max(points().map(|p| p.1));
    let at = |(x, y): (f64, f64)| (left + x / x_max * plot_w, top + plot_h - y / y_max * plot_h);
    let height = top + plot_h + 50.0;
    let mut svg = open_svg(title, height);
    let (x0, y0) = at((0.0, 0.0));
    let _ = writeln!(
        svg,
        r##"<path d="M{left},{top} L{left},{y0} L{:.1},{y0}" fill="none" stroke="#333"/>"##,
        x0 + plot_w
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{} (max {})</text>"#,
        left + plot_w / 2.0,
        y0 + 32.0,
        escape(x_label),
        format_value(x_max)
    );
    let _ = writeln!(
        svg,
        r#"<text x="10" y="{:.1}">{} (max {})</text>"#,
        top - 8.0,
        escape(y_label),
        format_value(y_max)
    );
    for (i, (label, points)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let path: Vec<String> = points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|&p| {
                let (x, y) = at(p);
                format!("{x:.1},{y:.1}")
            })
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#,
            path.join(" ")
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" fill="{colour}">{}</text>"#,
            left + plot_w + 12.0,
            top + 16.0 + i as f64 * 20.0,
            escape(label)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// The `<svg>` element of a chart `height` high, with its title.
fn open_svg(title: &str, height: f64) -> String {
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="13">"#
    );
    let _ = writeln!(
        svg,
        r#"<text x="10" y="22" font-size="15" font-weight="bold">{}</text>"#,
        escape(title)
    );
    svg
}

/// The largest finite value, above zero, for an axis to end at.
fn axis_max(values: impl Iterator<Item = f64>) -> f64 {
    values
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max)
        .max(f64::MIN_POSITIVE)
}

fn format_value(v: f64) -> String {
    if !v.is_finite() {
        "n/a".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.3}")
    } else {
        format!("{v:.4}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Writes `<name>.svg` under the output directory and returns its path.
pub fn write_svg(name: &str, svg: &str) -> std::io::Result<PathBuf> {
    let dir = crate::report::output_dir();
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{name}.svg"));
    std::fs::write(&path, svg)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_svg_with_one_bar_per_value() {
        let svg = bar_chart(
            "p50 <ratio>",
            "x",
            &[("raw".into(), 1.0), ("platform".into(), 1.04)],
            Some(1.05),
        );
        assert!(svg.starts_with("<svg"));
        assert_eq!(svg.matches("<rect").count(), 2);
        assert!(svg.contains("&lt;ratio&gt;"));
        assert!(svg.contains("target 1.050"));
    }

    #[test]
    fn line_charts_draw_one_line_per_series() {
        let svg = line_chart(
            "goodput",
            "offered",
            "answers/s",
            &[
                ("a".into(), vec![(1.0, 1.0), (2.0, 2.0)]),
                ("b".into(), vec![(1.0, 0.5), (2.0, f64::NAN)]),
            ],
        );
        assert!(svg.starts_with("<svg"));
        assert_eq!(svg.matches("<polyline").count(), 2);
    }
}
