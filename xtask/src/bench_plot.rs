//! SVG charts of `bench chain|idle|churn`, drawn with plotters.

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};
use plotters::prelude::*;

fn color(i: usize) -> RGBColor {
    // Distinguishable on white; raw loops first (black, grey).
    const C: [RGBColor; 12] = [
        RGBColor(0, 0, 0),
        RGBColor(120, 120, 120),
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
        RGBColor(255, 187, 120),
    ];
    C[i % C.len()]
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing the chart: {e:?}")
}

/// One line per series; `y` from `y0` to the largest value (plus a margin).
pub fn lines(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[(String, Vec<(f64, f64)>)],
    x_range: (f64, f64),
    y_floor: f64,
) -> Result<PathBuf> {
    let ymax = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.1))
        .filter(|y| y.is_finite())
        .fold(y_floor, f64::max);
    let ymin = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.1))
        .filter(|y| y.is_finite())
        .fold(ymax, f64::min)
        .min(y_floor);
    let pad = (ymax - ymin).max(1e-9) * 0.08;
    let root = SVGBackend::new(path, (1000, 640)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x_range.0..x_range.1, (ymin - pad).max(0.0)..ymax + pad)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .draw()
        .map_err(err)?;
    for (i, (name, pts)) in series.iter().enumerate() {
        let c = color(i);
        let style = ShapeStyle::from(&c).stroke_width(2);
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), style))
            .map_err(err)?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart
            .draw_series(
                pts.iter()
                    .map(|&p| Circle::new(p, 3, ShapeStyle::from(&c).filled())),
            )
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.85))
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(path.to_path_buf())
}

/// Horizontal bars, labelled with their value.
pub fn bars(path: &Path, title: &str, x_desc: &str, bars: &[(String, f64)]) -> Result<PathBuf> {
    let xmax = bars
        .iter()
        .map(|b| b.1)
        .filter(|v| v.is_finite())
        .fold(1.0, f64::max);
    let n = bars.len().max(1);
    let height = 80 + 28 * n as u32;
    let root = SVGBackend::new(path, (1000, height)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(10)
        .build_cartesian_2d(0.0..xmax * 1.45, 0.0..n as f64)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .disable_y_mesh()
        .disable_y_axis()
        .draw()
        .map_err(err)?;
    for (i, (name, v)) in bars.iter().enumerate() {
        let y = (n - 1 - i) as f64;
        let c = color(i);
        if v.is_finite() {
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(0.0, y + 0.15), (*v, y + 0.85)],
                    ShapeStyle::from(&c.mix(0.7)).filled(),
                )))
                .map_err(err)?;
        }
        let label = format!("{name}  {:.0}", v);
        chart
            .draw_series(std::iter::once(Text::new(
                label,
                (if v.is_finite() { *v } else { 0.0 } + xmax * 0.01, y + 0.7),
                ("sans-serif", 14).into_font(),
            )))
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(path.to_path_buf())
}
