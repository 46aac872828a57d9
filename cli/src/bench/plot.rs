//! A latency-versus-throughput chart as a self-contained SVG: one line per series for the
//! median and a dashed one for the 99th percentile, a point per measured concurrency level.
//! Written by hand (no plotting dependency): axes, a grid at round values, a legend.

use std::fmt::Write as _;

/// Chart size in pixels, and the plot area's margins inside it.
const WIDTH: f64 = 880.0;
const HEIGHT: f64 = 540.0;
const LEFT: f64 = 78.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 56.0;
const BOTTOM: f64 = 64.0;
/// Line colours, one per series (colour-blind safe).
const COLOURS: [&str; 4] = ["#0072b2", "#d55e00", "#009e73", "#cc79a7"];

/// One measured level.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Concurrent transactions.
    pub concurrency: u32,
    /// Committed transactions per second.
    pub tx_per_s: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th-percentile latency, ms.
    pub p99_ms: f64,
}

/// A named line of points, in measuring order.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Its legend.
    pub label: String,
    /// Its points.
    pub points: Vec<Point>,
}

/// The chart of `series` under `title`, as SVG text.
pub fn svg(title: &str, series: &[Series]) -> String {
    let points = || series.iter().flat_map(|s| s.points.iter());
    let x_max = nice_ceiling(points().map(|p| p.tx_per_s).fold(0.0, f64::max));
    let y_max = nice_ceiling(points().map(|p| p.p99_ms).fold(0.0, f64::max));
    let (plot_w, plot_h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    let x = |v: f64| LEFT + v / x_max * plot_w;
    let y = |v: f64| TOP + plot_h - v / y_max * plot_h;

    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="13">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{}" y="30" font-size="17" text-anchor="middle">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    );
    for tick in ticks(x_max) {
        let px = x(tick);
        let _ = writeln!(
            out,
            r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{:.1}" stroke="#e5e5e5"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 18.0,
            label(tick)
        );
    }
    for tick in ticks(y_max) {
        let py = y(tick);
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#e5e5e5"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_w,
            LEFT - 8.0,
            py + 4.0,
            label(tick)
        );
    }
    let _ = writeln!(
        out,
        r#"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="black"/>"#
    );
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">committed transactions per second</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 18.0
    );
    let _ = writeln!(
        out,
        r#"<text transform="translate(20 {:.1}) rotate(-90)" text-anchor="middle">latency (ms): solid p50, dashed p99</text>"#,
        TOP + plot_h / 2.0
    );
    for (index, line) in series.iter().enumerate() {
        let colour = COLOURS[index % COLOURS.len()];
        for (dash, value) in [
            ("", line_p50 as fn(&Point) -> f64),
            (r#" stroke-dasharray="6 4""#, line_p99),
        ] {
            let path: Vec<String> = line
                .points
                .iter()
                .map(|p| format!("{:.1},{:.1}", x(p.tx_per_s), y(value(p))))
                .collect();
            let _ = writeln!(
                out,
                r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>"#,
                path.join(" ")
            );
        }
        for point in &line.points {
            let (px, py) = (x(point.tx_per_s), y(point.p50_ms));
            let _ = writeln!(
                out,
                r#"<circle cx="{px:.1}" cy="{py:.1}" r="3.5" fill="{colour}"/><text x="{:.1}" y="{:.1}" font-size="11" fill="{colour}">{}</text>"#,
                px + 5.0,
                py - 6.0,
                point.concurrency
            );
        }
        let legend_y = TOP + 18.0 + 20.0 * index as f64;
        let _ = writeln!(
            out,
            r#"<line x1="{:.1}" y1="{legend_y:.1}" x2="{:.1}" y2="{legend_y:.1}" stroke="{colour}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            LEFT + 14.0,
            LEFT + 40.0,
            LEFT + 46.0,
            legend_y + 4.0,
            escape(&line.label)
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">point labels: concurrent transactions</text>"#,
        LEFT + plot_w - 6.0,
        TOP + 16.0
    );
    out.push_str("</svg>\n");
    out
}

fn line_p50(point: &Point) -> f64 {
    point.p50_ms
}

fn line_p99(point: &Point) -> f64 {
    point.p99_ms
}

/// The smallest 1, 2 or 5 × 10ⁿ at or above `value` (1 for nothing to show).
fn nice_ceiling(value: f64) -> f64 {
    // Also catches NaN: nothing measured draws an empty unit chart.
    if value.is_nan() || value <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|step| step * magnitude)
        .find(|candidate| *candidate >= value)
        .unwrap_or(10.0 * magnitude)
}

/// Five grid values from 0 to `max` (a nice ceiling).
fn ticks(max: f64) -> impl Iterator<Item = f64> {
    (0..=5).map(move |i| max * f64::from(i) / 5.0)
}

fn label(value: f64) -> String {
    if value >= 1000.0 {
        format!("{:.0}k", value / 1000.0)
    } else if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(concurrency: u32, tx_per_s: f64, p50_ms: f64, p99_ms: f64) -> Point {
        Point {
            concurrency,
            tx_per_s,
            p50_ms,
            p99_ms,
        }
    }

    #[test]
    fn ceilings_are_round() {
        assert_eq!(nice_ceiling(3_241.0), 5_000.0);
        assert_eq!(nice_ceiling(11_459.0), 20_000.0);
        assert_eq!(nice_ceiling(0.7), 1.0);
        assert_eq!(nice_ceiling(2.0), 2.0);
        assert_eq!(nice_ceiling(0.0), 1.0);
    }

    #[test]
    fn each_series_is_two_lines_and_its_points() {
        let series = [
            Series {
                label: "1 node <tcc>".into(),
                points: vec![point(1, 500.0, 1.8, 3.4), point(64, 11_000.0, 5.5, 9.3)],
            },
            Series {
                label: "3 nodes".into(),
                points: vec![point(64, 4_700.0, 13.6, 17.9)],
            },
        ];
        let svg = svg("TCC", &series);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<polyline").count(), 4);
        assert_eq!(svg.matches("<circle").count(), 3);
        assert!(svg.contains("1 node &lt;tcc&gt;"), "labels are escaped");
        // The fastest point sits at 11k of a 20k axis: 55 % across the plot area.
        let x = LEFT + 0.55 * (WIDTH - LEFT - RIGHT);
        assert!(svg.contains(&format!(r#"cx="{x:.1}""#)), "{svg}");
    }
}
