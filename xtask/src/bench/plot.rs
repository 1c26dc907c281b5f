//! PNG plots of the report (plotters, bitmap backend, DejaVu Sans through ab_glyph):
//! throughput ratio by toxicity per setup, and the reset-delay error CDF.
use std::path::Path;

use anyhow::{Context, anyhow};
use plotters::{prelude::*, style::FontStyle};

use super::report::Report;

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

fn register_font() -> anyhow::Result<()> {
    let bytes = std::fs::read(FONT)
        .with_context(|| format!("read {FONT} (Debian package fonts-dejavu-core)"))?;
    let leaked: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, leaked)
        .map_err(|_| anyhow!("{FONT} is not a usable font"))
}

fn e<T: std::fmt::Debug>(err: T) -> anyhow::Error {
    anyhow!("plotting: {err:?}")
}

const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// Draws the plots into `out`; returns their file names.
pub fn draw(r: &Report, out: &Path) -> anyhow::Result<Vec<String>> {
    register_font()?;
    let mut files = Vec::new();
    if !r.throughput.is_empty() {
        throughput(r, &out.join("throughput_ratio.png"))?;
        files.push("throughput_ratio.png".to_owned());
    }
    if r.reset_delay.iter().any(|d| !d.caller_errors_ms.is_empty()) {
        delay_cdf(r, &out.join("reset_delay_cdf.png"))?;
        files.push("reset_delay_cdf.png".to_owned());
    }
    Ok(files)
}

fn throughput(r: &Report, file: &Path) -> anyhow::Result<()> {
    let root = BitMapBackend::new(file, (1400, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(e)?;
    let panels = root.split_evenly((1, 2));
    let mut series: Vec<String> = Vec::new();
    for t in &r.throughput {
        if !series.contains(&t.setup.series()) {
            series.push(t.setup.series());
        }
    }
    let ymax = r
        .throughput
        .iter()
        .map(|t| t.ratio.median)
        .filter(|v| v.is_finite())
        .fold(1.1_f64, f64::max)
        * 1.05;
    for (panel, (load, title)) in panels.iter().zip([
        ("close", "one connection per request"),
        ("keepalive", "keep-alive"),
    ]) {
        let mut chart = ChartBuilder::on(panel)
            .caption(
                format!("Successful throughput / direct ({title})"),
                ("sans-serif", 22),
            )
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d(-5.0_f64..105.0, 0.0_f64..ymax)
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_desc("TOXICITY %")
            .y_desc("ratio to direct")
            .label_style(("sans-serif", 16))
            .axis_desc_style(("sans-serif", 18))
            .draw()
            .map_err(e)?;
        for (i, name) in series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let mut pts: Vec<(f64, f64)> = r
                .throughput
                .iter()
                .filter(|t| {
                    t.load == load && &t.setup.series() == name && t.ratio.median.is_finite()
                })
                .map(|t| (t.setup.toxicity(), t.ratio.median))
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            if pts.len() == 1 {
                // A setup without a toxicity knob (direct, HAProxy): a flat reference line.
                let y = pts[0].1;
                pts = vec![(0.0, y), (100.0, y)];
                chart
                    .draw_series(DashedLineSeries::new(
                        pts.clone(),
                        8,
                        6,
                        color.stroke_width(2),
                    ))
                    .map_err(e)?
                    .label(name.clone())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
            } else {
                chart
                    .draw_series(LineSeries::new(pts.clone(), color.stroke_width(3)))
                    .map_err(e)?
                    .label(name.clone())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
                    });
                chart
                    .draw_series(pts.iter().map(|p| Circle::new(*p, 5, color.filled())))
                    .map_err(e)?;
            }
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 16))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(e)?;
    }
    root.present().map_err(e)?;
    Ok(())
}

fn delay_cdf(r: &Report, file: &Path) -> anyhow::Result<()> {
    let full = BitMapBackend::new(file, (1100, 740)).into_drawing_area();
    full.fill(&WHITE).map_err(e)?;
    let (root, foot) = full.split_vertically(705);
    let rows: Vec<_> = r
        .reset_delay
        .iter()
        .filter(|d| !d.caller_errors_ms.is_empty())
        .collect();
    // Show up to the largest per-series p99 (tails beyond are listed in the table).
    let p99 = |v: &[f64]| v[((v.len() as f64 * 0.99).ceil() as usize).clamp(1, v.len()) - 1];
    let xmax = rows
        .iter()
        .map(|d| p99(&d.caller_errors_ms))
        .fold(0.5_f64, f64::max)
        * 1.2;
    let xmin = rows
        .iter()
        .map(|d| d.caller_errors_ms[0])
        .fold(0.0_f64, f64::min)
        .min(0.0);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Reset delay error CDF (caller clock; RESET_TIMEOUT {} ms)",
                r.parameters["reset_timeout_ms"]
            ),
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(xmin..xmax, 0.0_f64..1.0)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("observed delay - RESET_TIMEOUT (ms)")
        .y_desc("fraction of resets")
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 18))
        .draw()
        .map_err(e)?;
    for (i, d) in rows.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let n = d.caller_errors_ms.len() as f64;
        let pts: Vec<(f64, f64)> = d
            .caller_errors_ms
            .iter()
            .enumerate()
            .map(|(k, x)| (x.min(xmax), (k + 1) as f64 / n))
            .collect();
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(e)?
            .label(format!("{} @ {}/s", d.setup, d.target_rate))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        // The agent's own percentiles (kernel timestamps in kernel mode) as markers.
        if let Some(a) = &d.agent_measured {
            chart
                .draw_series(
                    [(a.p50, 0.5), (a.p99, 0.99)]
                        .into_iter()
                        .filter(|(x, _)| *x <= xmax)
                        .map(|p| TriangleMarker::new(p, 7, color.filled())),
                )
                .map_err(e)?;
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(e)?;
    foot.draw(&Text::new(
        "lines: caller clock; triangles: agent-reported p50/p99 (kernel timestamps in kernel mode)",
        (70, 8),
        ("sans-serif", 15),
    ))
    .map_err(e)?;
    full.present().map_err(e)?;
    Ok(())
}
