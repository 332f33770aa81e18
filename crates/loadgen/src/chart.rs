//! PNG charts of a benchmark summary (plotters, bitmap backend).
//!
//! Text is drawn with ab_glyph from a TrueType file found on the machine
//! (DejaVu Sans or Liberation Sans, as Debian's `fonts-dejavu-core` and
//! `fonts-liberation2` install them; `BENCH_FONT` names another), so no
//! fontconfig or freetype is needed. Without a font the charts are not
//! drawn at all: a chart without readable text is worse than none.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::load::{Endpoint, PROPAGATION, propagation_name};
use crate::stats::LatencySummary;
use crate::summary::Summary;

const FONT: &str = "sans-serif";

const FONT_CANDIDATES: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation2/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

/// Registers a TrueType font for every style the charts use.
pub fn load_font() -> Result<PathBuf> {
    let path = std::env::var_os("BENCH_FONT")
        .map(PathBuf::from)
        .or_else(|| {
            FONT_CANDIDATES
                .iter()
                .map(PathBuf::from)
                .find(|p| p.exists())
        })
        .context(
            "no TrueType font found for the chart text: `apt-get install fonts-dejavu-core` \
             or set BENCH_FONT to a .ttf file",
        )?;
    let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    // plotters keeps fonts for the life of the program.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    for style in [FontStyle::Normal, FontStyle::Bold] {
        plotters::style::register_font(FONT, style, bytes)
            .map_err(|_| anyhow!("{} is not a usable TrueType font", path.display()))?;
    }
    Ok(path)
}

fn font(size: u32) -> TextStyle<'static> {
    (FONT, size).into_font().into()
}

fn palette(i: usize) -> RGBColor {
    const COLORS: [RGBColor; 7] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
        RGBColor(214, 39, 40),
        RGBColor(140, 86, 75),
        RGBColor(23, 190, 207),
    ];
    COLORS[i % COLORS.len()]
}

fn draw_err<E: std::fmt::Debug>(error: E) -> anyhow::Error {
    anyhow!("drawing failed: {error:?}")
}

/// A bar: label, value, optional target.
struct Bar {
    label: String,
    value: f64,
    target: Option<f64>,
}

fn throughput_bars(summary: &Summary) -> Vec<Bar> {
    let mut bars = Vec::new();
    let mut add = |key: &str, label: &str| {
        if let Some(m) = summary.get(key) {
            bars.push(Bar {
                label: label.to_owned(),
                value: m.median,
                target: m.target.map(|t| t.value),
            });
        }
    };
    add(
        "raw_grouped_orders_per_s",
        "raw SQLite: orders/s, grouped transactions (storage limit)",
    );
    add(
        "embedded_orders_per_s",
        "embedded crate in process: orders/s (no HTTP)",
    );
    // The orders bars say how many customers placed orders at once: the
    // figure depends on it (group commit).
    for key in ["orders_per_s", "fewer_customers_orders_per_s"] {
        if let Some(m) = summary.get(key) {
            add(key, &format!("bakery over HTTP: {}", m.what));
        }
    }
    add("lifecycles_per_s", "bakery over HTTP: whole lifecycles/s");
    add(
        "raw_per_order_orders_per_s",
        "raw SQLite: orders/s, one transaction (fsync) per order",
    );
    add(
        "aws_lifecycles_per_s",
        "AWS adapters against the emulator: lifecycles/s",
    );
    bars
}

fn throughput(summary: &Summary, area: &DrawingArea<BitMapBackend<'_>, Shift>) -> Result<()> {
    let bars = throughput_bars(summary);
    if bars.is_empty() {
        bail!("nothing to chart: no throughput measurements");
    }
    let top = bars
        .iter()
        .flat_map(|b| [b.value, b.target.unwrap_or(0.0)])
        .fold(1.0f64, f64::max);
    let high = 10f64.powf((top * 3.0).log10().ceil());
    let low = 1.0;
    let n = bars.len() as f64;
    area.fill(&WHITE).map_err(draw_err)?;
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!(
                "Throughput (medians; {} cores, load generator on the same machine)",
                summary.machine.nproc
            ),
            font(26),
        )
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(10)
        .build_cartesian_2d((low..high).log_scale(), -0.6f64..(n - 0.4))
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .disable_y_axis()
        .x_desc("per second (log scale)")
        .x_label_style(font(16))
        .axis_desc_style(font(18))
        .x_label_formatter(&|v| {
            if *v >= 1000.0 {
                format!("{:.0}k", v / 1000.0)
            } else {
                format!("{v:.0}")
            }
        })
        .draw()
        .map_err(draw_err)?;
    for (i, bar) in bars.iter().enumerate() {
        // The first bar on top.
        let y = n - 1.0 - i as f64;
        let color = palette(i);
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(low, y - 0.3), (bar.value.max(low), y + 0.05)],
                color.filled(),
            )))
            .map_err(draw_err)?;
        let mut text = format!("{}: {:.0}", bar.label, bar.value);
        if let Some(target) = bar.target {
            text.push_str(&format!(
                " (target ≥ {target:.0}: {})",
                if bar.value >= target { "met" } else { "missed" }
            ));
        }
        chart
            .draw_series(std::iter::once(Text::new(
                text,
                (low * 1.05, y + 0.35),
                font(17),
            )))
            .map_err(draw_err)?;
        if let Some(target) = bar.target {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(target, y - 0.4), (target, y + 0.15)],
                    RED.stroke_width(3),
                )))
                .map_err(draw_err)?;
        }
    }
    Ok(())
}

const PERCENTILES: [&str; 5] = ["p50", "p90", "p99", "p99.9", "max"];

fn percentile_values(s: &LatencySummary) -> [f64; 5] {
    [s.p50_ms, s.p90_ms, s.p99_ms, s.p999_ms, s.max_ms]
}

/// Percentile curves of the endpoints and propagation steps of one run
/// label, with the latency targets as dashed lines.
fn latency(
    title: &str,
    series: &BTreeMap<String, LatencySummary>,
    targets: bool,
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
) -> Result<()> {
    let mut names: Vec<(String, String)> = Vec::new();
    for endpoint in Endpoint::ALL {
        if series.contains_key(endpoint.name()) {
            names.push((endpoint.name().to_owned(), endpoint.name().to_owned()));
        }
    }
    for (from, to) in PROPAGATION {
        let key = propagation_name(from, to);
        if series.contains_key(&key) {
            names.push((key, format!("step {from} → {to}")));
        }
    }
    if names.is_empty() {
        bail!("nothing to chart for {title}");
    }
    let top = names
        .iter()
        .map(|(key, _)| series[key].max_ms)
        .fold(20.0f64, f64::max);
    let bottom = names
        .iter()
        .map(|(key, _)| series[key].p50_ms)
        .fold(f64::INFINITY, f64::min)
        .max(0.01);
    let low = 10f64.powf(bottom.log10().floor());
    let high = 10f64.powf(top.log10().ceil());
    area.fill(&WHITE).map_err(draw_err)?;
    let mut chart = ChartBuilder::on(area)
        .caption(title, font(26))
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(
            (0..PERCENTILES.len() as i32 - 1).into_segmented(),
            (low..high).log_scale(),
        )
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_label_style(font(18))
        .y_label_style(font(16))
        .axis_desc_style(font(18))
        .y_desc("milliseconds (log scale)")
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => usize::try_from(*i)
                .ok()
                .and_then(|i| PERCENTILES.get(i))
                .map_or(String::new(), |s| (*s).to_owned()),
            SegmentValue::Last => String::new(),
        })
        .y_label_formatter(&|v| {
            if *v >= 1.0 {
                format!("{v:.0}")
            } else {
                format!("{v}")
            }
        })
        .draw()
        .map_err(draw_err)?;
    for (i, (key, label)) in names.iter().enumerate() {
        let color = palette(i);
        let points: Vec<(SegmentValue<i32>, f64)> = percentile_values(&series[key])
            .iter()
            .enumerate()
            .map(|(x, y)| (SegmentValue::CenterOf(x as i32), y.max(low)))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(3)))
            .map_err(draw_err)?
            .label(format!("{label} (p99 {:.1} ms)", series[key].p99_ms))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
            });
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 4, color.filled())),
            )
            .map_err(draw_err)?;
    }
    if targets {
        for (ms, label, color) in [
            (
                20.0,
                "target: POST /order p99 < 20 ms",
                RGBColor(120, 120, 120),
            ),
            (10.0, "target: each step p99 < 10 ms", BLACK),
        ] {
            let line: Vec<(SegmentValue<i32>, f64)> = (0..PERCENTILES.len() as i32)
                .map(|x| (SegmentValue::CenterOf(x), ms))
                .collect();
            chart
                .draw_series(DashedLineSeries::new(line, 8, 6, color.stroke_width(2)))
                .map_err(draw_err)?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font(font(16))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(draw_err)?;
    Ok(())
}

fn render(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> Result<()>,
) -> Result<()> {
    let area = BitMapBackend::new(path, size).into_drawing_area();
    draw(&area)?;
    area.present()
        .map_err(|e| anyhow!("cannot write {}: {e:?}", path.display()))
}

/// Writes `bench-throughput.png`, `bench-latency.png` and, when the AWS
/// runs are there, `bench-aws.png` into `dir`; returns the files written.
pub fn render_all(summary: &Summary, dir: &Path) -> Result<Vec<PathBuf>> {
    load_font()?;
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    let path = dir.join("bench-throughput.png");
    render(&path, (1200, 560), |area| throughput(summary, area))?;
    written.push(path);
    if let Some(half) = summary.latency.get("lifecycle-half") {
        let rate = summary
            .get("half_load_lifecycles_per_s")
            .map_or(0.0, |m| m.median);
        let path = dir.join("bench-latency.png");
        render(&path, (1200, 680), |area| {
            latency(
                &format!(
                    "Latency at half load ({rate:.0} lifecycles/s, open loop): medians of the runs"
                ),
                half,
                true,
                area,
            )
        })?;
        written.push(path);
    }
    if let Some(aws) = summary.latency.get("aws-lifecycle") {
        let rate = summary
            .get("aws_lifecycles_per_s")
            .map_or(0.0, |m| m.median);
        let path = dir.join("bench-aws.png");
        render(&path, (1200, 680), |area| {
            latency(
                &format!(
                    "Same flow on the AWS adapters against the emulator ({rate:.1} lifecycles/s)"
                ),
                aws,
                false,
                area,
            )
        })?;
        written.push(path);
    }
    Ok(written)
}
