//! Loss-curve plots: train loss (line), validation loss (line with dots) and growth steps
//! (dashed vertical markers) against the global step, written as an SVG and a PNG.
//!
//! Invariants:
//! - no system font is ever needed: the SVG carries its text as `<text>` elements (the viewer
//!   picks the font), and the PNG draws its labels with the small line-segment font below, so
//!   plotters' bitmap text renderer is never called;
//! - both files are written atomically (temp file + rename); a failed plot leaves any previous
//!   plot in place;
//! - non-finite losses are skipped, never plotted and never used for the axis ranges.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::exec::error::{ErrorKind, ExecError};
use crate::exec::io::data::write_atomic;
use crate::exec::io::metrics::MetricRow;

const WIDTH: u32 = 1000;
const HEIGHT: u32 = 600;
const MARGIN_TOP: u32 = 56;
const MARGIN_BOTTOM: u32 = 64;
const MARGIN_LEFT: u32 = 80;
const MARGIN_RIGHT: u32 = 30;

const TRAIN_COLOR: RGBColor = RGBColor(31, 119, 180);
const VAL_COLOR: RGBColor = RGBColor(214, 39, 40);
const GROWTH_COLOR: RGBColor = RGBColor(90, 90, 90);
const GRID_COLOR: RGBColor = RGBColor(225, 225, 225);

/// One curve of a figure.
#[derive(Clone, Debug, Default)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// Draw a dot at every point (sparse data such as evaluations).
    pub dots: bool,
    /// Points highlighted with a ring (e.g. where this run grew).
    pub marks: Vec<(f64, f64)>,
    /// A shaded band `(x, low, high)` under the curve (e.g. the spread over seeds).
    pub band: Vec<(f64, f64, f64)>,
}

/// A line chart: several series, optional vertical dashed markers, axis names.
#[derive(Clone, Debug, Default)]
pub struct Figure {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// x positions of vertical dashed lines (e.g. growth steps).
    pub markers: Vec<f64>,
    /// Legend name of the markers and rings.
    pub marker_name: String,
}

/// Loss curves (train, and val points) against step, growth steps as vertical markers; writes
/// both a PNG and an SVG.
pub fn plot_losses(
    rows: &[MetricRow],
    growth_steps: &[u64],
    title: &str,
    png: &Path,
    svg: &Path,
) -> Result<(), ExecError> {
    let train = rows
        .iter()
        .filter(|r| r.train_loss.is_finite())
        .map(|r| (r.step as f64, r.train_loss))
        .collect();
    let val = rows
        .iter()
        .filter_map(|r| {
            r.val_loss
                .filter(|v| v.is_finite())
                .map(|v| (r.step as f64, v))
        })
        .collect();
    let figure = Figure {
        title: title.to_string(),
        x_label: "step".into(),
        y_label: "loss".into(),
        series: vec![
            Series {
                name: "train".into(),
                points: train,
                ..Series::default()
            },
            Series {
                name: "val".into(),
                points: val,
                dots: true,
                ..Series::default()
            },
        ],
        markers: growth_steps.iter().map(|&g| g as f64).collect(),
        marker_name: "growth".into(),
    };
    plot_figure(&figure, png, svg)
}

/// Writes `figure` as an SVG (real text) and a PNG (stroke-font labels), both atomically.
pub fn plot_figure(figure: &Figure, png: &Path, svg: &Path) -> Result<(), ExecError> {
    let data = PlotData::new(figure);

    let mut svg_text = String::new();
    {
        let root = SVGBackend::with_string(&mut svg_text, (WIDTH, HEIGHT)).into_drawing_area();
        draw(&root, &data, figure, Labels::Text).map_err(|e| plot_error(svg, e))?;
        root.present().map_err(|e| plot_error(svg, e.to_string()))?;
    }
    write_atomic(svg, svg_text.as_bytes()).map_err(|e| ExecError::io("write plot", svg, e))?;

    // The bitmap backend picks the image format from the extension, so the temp file keeps
    // `.png` at the end.
    let name = png
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = png.with_file_name(format!(".{name}.tmp-{}.png", std::process::id()));
    let result = (|| {
        let root = BitMapBackend::new(&tmp, (WIDTH, HEIGHT)).into_drawing_area();
        draw(&root, &data, figure, Labels::Strokes)?;
        root.present().map_err(|e| e.to_string())
    })();
    let result = result
        .map_err(|e| plot_error(png, e))
        .and_then(|()| std::fs::rename(&tmp, png).map_err(|e| ExecError::io("write plot", png, e)));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn plot_error(path: &Path, e: String) -> ExecError {
    ExecError::new(
        ErrorKind::Io,
        format!("cannot draw plot {}: {e}", path.display()),
    )
}

/// Series colors, in order (the first two are the single-run train/val colors).
const PALETTE: [RGBColor; 8] = [
    TRAIN_COLOR,
    VAL_COLOR,
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

/// The finite points and axis ranges of one figure.
struct PlotData {
    series: Vec<Vec<(f64, f64)>>,
    marks: Vec<Vec<(f64, f64)>>,
    bands: Vec<Vec<(f64, f64, f64)>>,
    x: (f64, f64),
    y: (f64, f64),
}

impl PlotData {
    fn new(figure: &Figure) -> PlotData {
        let finite = |p: &&(f64, f64)| p.0.is_finite() && p.1.is_finite();
        let series: Vec<Vec<(f64, f64)>> = figure
            .series
            .iter()
            .map(|s| s.points.iter().filter(finite).copied().collect())
            .collect();
        let marks: Vec<Vec<(f64, f64)>> = figure
            .series
            .iter()
            .map(|s| s.marks.iter().filter(finite).copied().collect())
            .collect();
        let bands: Vec<Vec<(f64, f64, f64)>> = figure
            .series
            .iter()
            .map(|s| {
                s.band
                    .iter()
                    .filter(|b| b.0.is_finite() && b.1.is_finite() && b.2.is_finite())
                    .copied()
                    .collect()
            })
            .collect();
        let band_points: Vec<(f64, f64)> = bands
            .iter()
            .flatten()
            .flat_map(|&(x, lo, hi)| [(x, lo), (x, hi)])
            .collect();
        let all = || series.iter().flatten().chain(&band_points);
        let x_max = all()
            .map(|p| p.0)
            .chain(figure.markers.iter().copied().filter(|m| m.is_finite()))
            .fold(0.0f64, f64::max)
            .max(1.0);
        let (mut lo, mut hi) = all().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.1), b.max(p.1))
        });
        if !lo.is_finite() {
            (lo, hi) = (0.0, 1.0);
        }
        let pad = if hi > lo { 0.04 * (hi - lo) } else { 0.5 };
        PlotData {
            series,
            marks,
            bands,
            x: (0.0, x_max),
            y: (lo - pad, hi + pad),
        }
    }
}

/// How labels are drawn: real text (SVG) or line-segment glyphs (PNG, no font needed).
#[derive(Clone, Copy, PartialEq)]
enum Labels {
    Text,
    Strokes,
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    data: &PlotData,
    figure: &Figure,
    labels: Labels,
) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    let (x0, x1) = data.x;
    let (y0, y1) = data.y;
    let mut chart = ChartBuilder::on(root)
        .margin_top(MARGIN_TOP)
        .margin_bottom(MARGIN_BOTTOM)
        .margin_left(MARGIN_LEFT)
        .margin_right(MARGIN_RIGHT)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(err)?;

    let x_ticks = nice_ticks(x0, x1, 8);
    let y_ticks = nice_ticks(y0, y1, 7);
    let grid = ShapeStyle::from(&GRID_COLOR).stroke_width(1);
    for &x in &x_ticks.values {
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(x, y0), (x, y1)],
                grid,
            )))
            .map_err(err)?;
    }
    for &y in &y_ticks.values {
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(x0, y), (x1, y)],
                grid,
            )))
            .map_err(err)?;
    }
    let frame = ShapeStyle::from(&BLACK).stroke_width(1);
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)],
            frame,
        )))
        .map_err(err)?;

    let growth = ShapeStyle::from(&GROWTH_COLOR).stroke_width(2);
    for &g in &figure.markers {
        chart
            .draw_series(DashedLineSeries::new(vec![(g, y0), (g, y1)], 8, 6, growth))
            .map_err(err)?;
    }
    // Bands first, so every curve stays visible on top of them.
    for (i, band) in data.bands.iter().enumerate() {
        if band.len() < 2 {
            continue;
        }
        let color = PALETTE[i % PALETTE.len()];
        let outline: Vec<(f64, f64)> = band
            .iter()
            .map(|&(x, _, hi)| (x, hi))
            .chain(band.iter().rev().map(|&(x, lo, _)| (x, lo)))
            .collect();
        chart
            .draw_series(std::iter::once(Polygon::new(
                outline,
                color.mix(0.18).filled(),
            )))
            .map_err(err)?;
    }
    for (i, (points, spec)) in data.series.iter().zip(&figure.series).enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(1),
            ))
            .map_err(err)?;
        if spec.dots {
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(err)?;
        }
        chart
            .draw_series(
                data.marks[i]
                    .iter()
                    .map(|&p| Circle::new(p, 7, color.stroke_width(2))),
            )
            .map_err(err)?;
    }

    // Ticks and labels, in pixel coordinates of the root area.
    let mut text = Painter { root, labels };
    for &x in &x_ticks.values {
        let (px, py) = chart.backend_coord(&(x, y0));
        text.line((px, py), (px, py + 5), &BLACK)?;
        text.label(
            &x_ticks.format(x),
            (px, py + 9),
            HPos::Center,
            VPos::Top,
            13,
            &BLACK,
        )?;
    }
    for &y in &y_ticks.values {
        let (px, py) = chart.backend_coord(&(x0, y));
        text.line((px - 5, py), (px, py), &BLACK)?;
        text.label(
            &y_ticks.format(y),
            (px - 9, py),
            HPos::Right,
            VPos::Center,
            13,
            &BLACK,
        )?;
    }
    let (left, bottom) = chart.backend_coord(&(x0, y0));
    let (right, top) = chart.backend_coord(&(x1, y1));
    let mid = (left + right) / 2;
    text.label(
        &figure.x_label,
        (mid, bottom + 34),
        HPos::Center,
        VPos::Top,
        15,
        &BLACK,
    )?;
    text.label(
        &figure.y_label,
        (left, top - 8),
        HPos::Center,
        VPos::Bottom,
        15,
        &BLACK,
    )?;
    text.label(
        &figure.title,
        (mid, 12),
        HPos::Center,
        VPos::Top,
        19,
        &BLACK,
    )?;

    // Legend, top right inside the frame.
    let has_marks = !figure.markers.is_empty() || data.marks.iter().any(|m| !m.is_empty());
    let longest = figure
        .series
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(0)
        .max(6);
    let (lx, mut ly) = (right - 44 - 8 * longest as i32, top + 16);
    for (i, s) in figure.series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        text.line((lx, ly), (lx + 26, ly), &color)?;
        text.label(&s.name, (lx + 34, ly), HPos::Left, VPos::Center, 13, &BLACK)?;
        ly += 20;
    }
    if has_marks {
        text.line((lx, ly), (lx + 10, ly), &GROWTH_COLOR)?;
        text.line((lx + 16, ly), (lx + 26, ly), &GROWTH_COLOR)?;
        text.label(
            &figure.marker_name,
            (lx + 34, ly),
            HPos::Left,
            VPos::Center,
            13,
            &BLACK,
        )?;
    }
    Ok(())
}

/// Draws lines and labels on the root area in pixel coordinates.
struct Painter<'a, DB: DrawingBackend> {
    root: &'a DrawingArea<DB, Shift>,
    labels: Labels,
}

impl<DB: DrawingBackend> Painter<'_, DB> {
    fn line(&mut self, a: (i32, i32), b: (i32, i32), color: &RGBColor) -> Result<(), String> {
        let style = ShapeStyle::from(color).stroke_width(2);
        self.root
            .draw(&PathElement::new(vec![a, b], style))
            .map_err(|e| e.to_string())
    }

    /// `size` is the text height in pixels (cap height for the stroke font).
    fn label(
        &mut self,
        s: &str,
        at: (i32, i32),
        h: HPos,
        v: VPos,
        size: u32,
        color: &RGBColor,
    ) -> Result<(), String> {
        match self.labels {
            Labels::Text => {
                // plotters-svg writes `font-size` as size / 1.24.
                let style = ("sans-serif", size as f64 * 1.24)
                    .into_font()
                    .color(color)
                    .pos(Pos::new(h, v));
                self.root
                    .draw(&Text::new(s.to_string(), at, style))
                    .map_err(|e| e.to_string())
            }
            Labels::Strokes => {
                // Cap height `size * 0.75` so both renderings are about the same size.
                let unit = (size as f64 * 0.75) / 6.0;
                let width = stroke_width_units(s) * unit;
                let x = match h {
                    HPos::Left => at.0 as f64,
                    HPos::Center => at.0 as f64 - width / 2.0,
                    HPos::Right => at.0 as f64 - width,
                };
                let baseline = match v {
                    VPos::Top => at.1 as f64 + 6.0 * unit,
                    VPos::Center => at.1 as f64 + 3.0 * unit,
                    VPos::Bottom => at.1 as f64,
                };
                let style = ShapeStyle::from(color).stroke_width(1);
                for path in stroke_paths(s, x, baseline, unit) {
                    self.root
                        .draw(&PathElement::new(path, style))
                        .map_err(|e| e.to_string())?;
                }
                Ok(())
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Axis ticks

struct Ticks {
    values: Vec<f64>,
    /// Digits after the decimal point that show the spacing exactly.
    decimals: usize,
}

impl Ticks {
    fn format(&self, v: f64) -> String {
        let v = if v.abs() < 1e-12 { 0.0 } else { v };
        if v.abs() >= 1e5 {
            // FLOPs and token counts: `2.00T`, not thirteen digits.
            return crate::plan::render::human(v);
        }
        format!("{v:.*}", self.decimals)
    }
}

/// About `target` evenly spaced round values (1, 2 or 5 times a power of ten) inside [lo, hi].
fn nice_ticks(lo: f64, hi: f64, target: usize) -> Ticks {
    let span = (hi - lo).abs().max(1e-12);
    let raw = span / target.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    // 2.5 only where it stays a whole number (250, not 0.25).
    let mults: &[f64] = if mag >= 10.0 {
        &[1.0, 2.0, 2.5, 5.0, 10.0]
    } else {
        &[1.0, 2.0, 5.0, 10.0]
    };
    let step = mults
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let decimals = (0..8)
        .find(|&d| {
            let scaled = step * 10f64.powi(d as i32);
            (scaled - scaled.round()).abs() < 1e-6 * scaled.max(1.0)
        })
        .unwrap_or(8);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    let values = (first..=last).map(|k| k as f64 * step).collect();
    Ticks { values, decimals }
}

// ---------------------------------------------------------------------------------------------
// A tiny line-segment font: each glyph is a few polylines on a grid 4 units wide, baseline 0,
// x-height 4, cap height 6, descender -2. Upper case uses the lower-case shapes; unknown
// characters leave a blank.

type Glyph = &'static [&'static [(f32, f32)]];

fn glyph(c: char) -> Glyph {
    match c.to_ascii_lowercase() {
        '0' => &[
            &[(0., 0.), (4., 0.), (4., 6.), (0., 6.), (0., 0.)],
            &[(0., 0.), (4., 6.)],
        ],
        '1' => &[&[(1., 5.), (2., 6.), (2., 0.)], &[(1., 0.), (3., 0.)]],
        '2' => &[&[(0., 6.), (4., 6.), (4., 3.), (0., 3.), (0., 0.), (4., 0.)]],
        '3' => &[
            &[(0., 6.), (4., 6.), (4., 0.), (0., 0.)],
            &[(1., 3.), (4., 3.)],
        ],
        '4' => &[&[(0., 6.), (0., 3.), (4., 3.)], &[(4., 6.), (4., 0.)]],
        '5' => &[&[(4., 6.), (0., 6.), (0., 3.), (4., 3.), (4., 0.), (0., 0.)]],
        '6' => &[&[(4., 6.), (0., 6.), (0., 0.), (4., 0.), (4., 3.), (0., 3.)]],
        '7' => &[&[(0., 6.), (4., 6.), (1.5, 0.)]],
        '8' => &[
            &[(0., 0.), (4., 0.), (4., 6.), (0., 6.), (0., 0.)],
            &[(0., 3.), (4., 3.)],
        ],
        '9' => &[&[(0., 0.), (4., 0.), (4., 6.), (0., 6.), (0., 3.), (4., 3.)]],
        'a' => &[&[(0., 4.), (4., 4.), (4., 0.), (0., 0.), (0., 2.), (4., 2.)]],
        'b' => &[&[(0., 6.), (0., 0.), (4., 0.), (4., 4.), (0., 4.)]],
        'c' => &[&[(4., 4.), (0., 4.), (0., 0.), (4., 0.)]],
        'd' => &[&[(4., 6.), (4., 0.), (0., 0.), (0., 4.), (4., 4.)]],
        'e' => &[&[(0., 2.), (4., 2.), (4., 4.), (0., 4.), (0., 0.), (4., 0.)]],
        'f' => &[
            &[(4., 6.), (2., 6.), (1., 5.), (1., 0.)],
            &[(0., 4.), (3., 4.)],
        ],
        'g' => &[&[(4., 0.), (0., 0.), (0., 4.), (4., 4.), (4., -2.), (0., -2.)]],
        'h' => &[&[(0., 6.), (0., 0.)], &[(0., 4.), (4., 4.), (4., 0.)]],
        'i' => &[&[(2., 0.), (2., 4.)], &[(2., 5.2), (2., 6.)]],
        'j' => &[&[(3., 4.), (3., -2.), (0., -2.)], &[(3., 5.2), (3., 6.)]],
        'k' => &[&[(0., 6.), (0., 0.)], &[(4., 4.), (0., 2.), (4., 0.)]],
        'l' => &[&[(2., 6.), (2., 0.)]],
        'm' => &[
            &[(0., 0.), (0., 4.), (4., 4.), (4., 0.)],
            &[(2., 4.), (2., 0.)],
        ],
        'n' => &[&[(0., 0.), (0., 4.), (4., 4.), (4., 0.)]],
        'o' => &[&[(0., 0.), (4., 0.), (4., 4.), (0., 4.), (0., 0.)]],
        'p' => &[&[(0., -2.), (0., 4.), (4., 4.), (4., 0.), (0., 0.)]],
        'q' => &[&[(4., -2.), (4., 4.), (0., 4.), (0., 0.), (4., 0.)]],
        'r' => &[&[(0., 0.), (0., 4.)], &[(0., 3.), (1., 4.), (4., 4.)]],
        's' => &[&[(4., 4.), (0., 4.), (0., 2.), (4., 2.), (4., 0.), (0., 0.)]],
        't' => &[&[(1., 6.), (1., 0.), (3., 0.)], &[(0., 4.), (3., 4.)]],
        'u' => &[&[(0., 4.), (0., 0.), (4., 0.), (4., 4.)]],
        'v' => &[&[(0., 4.), (2., 0.), (4., 4.)]],
        'w' => &[&[(0., 4.), (1., 0.), (2., 3.), (3., 0.), (4., 4.)]],
        'x' => &[&[(0., 0.), (4., 4.)], &[(0., 4.), (4., 0.)]],
        'y' => &[
            &[(0., 4.), (0., 0.), (4., 0.)],
            &[(4., 4.), (4., -2.), (0., -2.)],
        ],
        'z' => &[&[(0., 4.), (4., 4.), (0., 0.), (4., 0.)]],
        '.' => &[&[(1.5, 0.), (2.5, 0.), (2.5, 1.), (1.5, 1.), (1.5, 0.)]],
        ',' => &[&[(2.5, 1.), (2.5, 0.), (1.5, -1.5)]],
        ':' => &[&[(2., 0.), (2., 1.)], &[(2., 3.), (2., 4.)]],
        '-' => &[&[(0.5, 3.), (3.5, 3.)]],
        '+' => &[&[(0.5, 3.), (3.5, 3.)], &[(2., 1.5), (2., 4.5)]],
        '=' => &[&[(0.5, 2.), (3.5, 2.)], &[(0.5, 4.), (3.5, 4.)]],
        '_' => &[&[(0., -1.), (4., -1.)]],
        '/' => &[&[(0., -1.), (4., 7.)]],
        '(' => &[&[(3., 7.), (1.5, 5.), (1.5, 1.), (3., -1.)]],
        ')' => &[&[(1., 7.), (2.5, 5.), (2.5, 1.), (1., -1.)]],
        '<' => &[&[(3.5, 5.), (0.5, 3.), (3.5, 1.)]],
        '>' => &[&[(0.5, 5.), (3.5, 3.), (0.5, 1.)]],
        '%' => &[
            &[(0., 0.), (4., 6.)],
            &[(0., 6.), (1., 6.), (1., 5.), (0., 5.), (0., 6.)],
            &[(3., 0.), (4., 0.), (4., 1.), (3., 1.), (3., 0.)],
        ],
        '\'' => &[&[(2., 6.), (2., 4.5)]],
        _ => &[],
    }
}

/// Horizontal advance of one character, in font units.
const ADVANCE: f64 = 6.0;

fn stroke_width_units(s: &str) -> f64 {
    let n = s.chars().count() as f64;
    if n == 0.0 { 0.0 } else { n * ADVANCE - 2.0 }
}

/// The polylines of `s` in pixel coordinates, starting at `x` on `baseline` (y grows down).
fn stroke_paths(s: &str, x: f64, baseline: f64, unit: f64) -> Vec<Vec<(i32, i32)>> {
    let mut paths = Vec::new();
    for (i, c) in s.chars().enumerate() {
        let ox = x + i as f64 * ADVANCE * unit;
        for line in glyph(c) {
            paths.push(
                line.iter()
                    .map(|&(gx, gy)| {
                        (
                            (ox + gx as f64 * unit).round() as i32,
                            (baseline - gy as f64 * unit).round() as i32,
                        )
                    })
                    .collect(),
            );
        }
    }
    paths
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::scratch;

    fn rows() -> Vec<MetricRow> {
        (0..200u64)
            .map(|s| {
                // A falling curve with a spike at the growth step 160.
                let base = 3.0 + 7.5 * (-(s as f64) / 30.0).exp();
                let spike = if s >= 160 {
                    1.2 * (-((s - 160) as f64) / 8.0).exp()
                } else {
                    0.0
                };
                MetricRow {
                    step: s,
                    tokens: s * 512,
                    flops: s as f64 * 1e9,
                    train_loss: if s == 50 {
                        f64::NAN
                    } else {
                        base + spike + 0.05 * ((s * 7) % 5) as f64
                    },
                    val_loss: (s % 20 == 0 || s == 199).then_some(base + spike + 0.1),
                    lr: 1e-3,
                    depth: if s < 160 { 0 } else { 12 },
                    segment: usize::from(s >= 160),
                    tok_per_s: 1e4,
                    wall_s: s as f64 * 0.01,
                }
            })
            .collect()
    }

    #[test]
    fn plot_writes_a_png_and_a_labelled_svg() {
        let tmp = scratch("both");
        let dir = tmp.path();
        let (png, svg) = (dir.join("loss.png"), dir.join("loss.svg"));
        plot_losses(&rows(), &[160], "zero_to_12: loss vs step", &png, &svg).unwrap();
        let png_bytes = std::fs::read(&png).unwrap();
        assert_eq!(&png_bytes[..8], b"\x89PNG\r\n\x1a\n");
        assert!(png_bytes.len() > 5_000, "{}", png_bytes.len());
        let svg_text = std::fs::read_to_string(&svg).unwrap();
        assert!(svg_text.starts_with("<svg"), "{}", &svg_text[..100]);
        // plotters writes each text element's content on its own line.
        for label in [
            "zero_to_12: loss vs step",
            "step",
            "loss",
            "train",
            "val",
            "growth",
            "175",
        ] {
            let needle = format!("\n{label}\n");
            assert!(svg_text.contains(&needle), "svg lacks {label}");
        }
        // No temp files left behind.
        let names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        // Empty input still gives a (blank) chart instead of an error.
        plot_losses(&[], &[], "empty", &png, &svg).unwrap();
    }

    #[test]
    fn ticks_are_round_and_inside_the_range() {
        let t = nice_ticks(2.87, 10.9, 7);
        assert_eq!(t.values.first().copied(), Some(4.0));
        assert!(t.values.iter().all(|v| (2.87..=10.9).contains(v)));
        assert_eq!(t.format(4.0), "4");
        let t = nice_ticks(0.0, 2000.0, 8);
        assert_eq!(
            t.values,
            (0..=8).map(|k| k as f64 * 250.0).collect::<Vec<_>>()
        );
        assert_eq!(t.format(250.0), "250");
        assert_eq!(nice_ticks(0.0, 1.0, 4).values, vec![0.0, 0.5, 1.0]);
        let t = nice_ticks(3.41, 3.52, 5);
        assert_eq!(t.decimals, 2);
        assert_eq!(t.format(3.45), "3.45");
    }

    #[test]
    fn stroke_font_covers_tick_labels() {
        for c in "0123456789.-+eabcdefghijklmnopqrstuvwxyz".chars() {
            assert!(!glyph(c).is_empty(), "no glyph for {c}");
        }
        let paths = stroke_paths("10", 0.0, 100.0, 2.0);
        assert_eq!(paths.len(), 4);
        // The '0' starts one advance (6 units = 12 px) to the right, on the baseline.
        assert_eq!(paths[2][0], (12, 100));
    }
}
