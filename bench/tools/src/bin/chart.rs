//! The chart of a bench/run result: requests a second of each server on the protected
//! route (`GET /auth/verify`), with one repeated token and with a different token on
//! every request, beside Tessera's unprotected route, as horizontal bars in an SVG file.
//!
//! ```text
//! chart RUNS_CSV OUT_SVG [SUBTITLE]
//! ```
//!
//! RUNS_CSV is the `runs.csv` bench/run writes: a header line, then
//! `server,workload,requests_per_sec,p99_ms,non_2xx` per wrk run.

use std::error::Error;

use plotters::prelude::*;

/// The servers, in the order drawn (top first), with the names shown.
const SERVERS: [(&str, &str); 4] = [
    ("tessera", "Tessera"),
    ("axum", "axum + jsonwebtoken"),
    ("express", "express + jose"),
    ("fastapi", "FastAPI + PyJWT"),
];

/// The workloads drawn for each server, with their legend names and colours.
const WORKLOADS: [(&str, &str, RGBColor); 3] = [
    (
        "unprotected",
        "no token (GET /healthz)",
        RGBColor(160, 160, 160),
    ),
    ("repeated", "the same valid token", RGBColor(31, 119, 180)),
    (
        "distinct",
        "a different valid token each time",
        RGBColor(255, 127, 14),
    ),
];

const BAR_HEIGHT: f64 = 1.0;
/// Space between two servers' groups of bars, in bar heights.
const GROUP_GAP: f64 = 1.0;

/// One wrk run read from the CSV.
struct Run {
    server: String,
    workload: String,
    requests_per_sec: f64,
}

fn read_runs(path: &str) -> Result<Vec<Run>, Box<dyn Error>> {
    let text = std::fs::read_to_string(path)?;
    let mut runs = Vec::new();
    for line in text.lines().skip(1).filter(|line| !line.trim().is_empty()) {
        let fields: Vec<&str> = line.split(',').collect();
        let [server, workload, rate, ..] = fields.as_slice() else {
            return Err(format!("{path}: not a run line: {line}").into());
        };
        runs.push(Run {
            server: (*server).to_owned(),
            workload: (*workload).to_owned(),
            requests_per_sec: rate.parse()?,
        });
    }
    Ok(runs)
}

/// A bar to draw: its bottom edge, length, colour and value label.
struct Bar {
    bottom: f64,
    rate: f64,
    color: RGBColor,
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (csv, svg, subtitle) = match args.as_slice() {
        [csv, svg] => (csv, svg, String::new()),
        [csv, svg, subtitle] => (csv, svg, subtitle.clone()),
        _ => return Err("usage: chart RUNS_CSV OUT_SVG [SUBTITLE]".into()),
    };
    let runs = read_runs(csv)?;
    let rate_of = |server: &str, workload: &str| {
        runs.iter()
            .find(|run| run.server == server && run.workload == workload)
            .map(|run| run.requests_per_sec)
    };

    // Groups are laid out from the top: the first server gets the highest y.
    let mut bars = Vec::new();
    let mut group_labels = Vec::new();
    let mut y = 0.0;
    for (server, name) in SERVERS.iter().rev() {
        let present: Vec<_> = WORKLOADS
            .iter()
            .rev()
            .filter_map(|(workload, _, color)| rate_of(server, workload).map(|rate| (rate, *color)))
            .collect();
        if present.is_empty() {
            continue;
        }
        for (rate, color) in present {
            bars.push(Bar {
                bottom: y,
                rate,
                color,
            });
            y += BAR_HEIGHT;
        }
        group_labels.push((y, *name));
        y += GROUP_GAP;
    }
    let top = y + 0.5;
    let widest = bars.iter().map(|bar| bar.rate).fold(1.0, f64::max);

    let root = SVGBackend::new(svg, (960, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let caption = if subtitle.is_empty() {
        "Requests per second, GET /auth/verify".to_owned()
    } else {
        format!("Requests per second, GET /auth/verify ({subtitle})")
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(36)
        .build_cartesian_2d(0.0..widest * 1.2, 0.0..top)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .disable_y_axis()
        .x_desc("requests/s")
        .x_label_formatter(&|value| format!("{:.0}k", value / 1000.0))
        .draw()?;

    for bar in &bars {
        let (low, high) = (bar.bottom + 0.1, bar.bottom + BAR_HEIGHT - 0.1);
        chart.draw_series(std::iter::once(Rectangle::new(
            [(0.0, low), (bar.rate, high)],
            bar.color.filled(),
        )))?;
        chart.draw_series(std::iter::once(Text::new(
            format!("{:.0}", bar.rate),
            (bar.rate + widest * 0.01, high),
            ("sans-serif", 13),
        )))?;
    }
    for (y, name) in group_labels {
        chart.draw_series(std::iter::once(Text::new(
            name.to_owned(),
            (widest * 0.01, y + 0.85),
            ("sans-serif", 15).into_font().style(FontStyle::Bold),
        )))?;
    }
    for (_, legend, color) in WORKLOADS {
        chart
            .draw_series(std::iter::empty::<Rectangle<(f64, f64)>>())?
            .label(legend)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
