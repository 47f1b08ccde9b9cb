//! Small standalone SVG plots for looking at training runs and samples, with no dependencies.
//!
//! - [`line_plot`]: curves against a common x axis (loss and ESS against training step,
//!   topological charge against Markov-chain time with [`Style::Step`]), optional log y axis.
//! - [`panels`]: several line plots side by side in one SVG (e.g. loss next to ESS).
//! - [`scatter_plot`]: a point cloud with equal scales on both axes and an optional slope-1
//!   line through the mean offset, as the tutorial's plot of S(x) against
//!   S_eff(x) = -log q(x) (arXiv:2101.08176, Fig. 4).
//! - [`heatmap_grid`]: a grid of lattice configurations on a shared diverging colour scale
//!   symmetric about 0, with a colour bar.
//!
//! Axes get "nice" ticks (steps 1, 2 or 5 times a power of ten, see [`nice_ticks`]) that cover
//! the data, light grey grid lines, axis labels and a legend placed in the emptiest corner.
//! Non-finite points (and, on a log axis, non-positive ones) are skipped and break lines, so
//! the SVG never contains `NaN`.
//!
//! # Example
//!
//! ```
//! use latflow_io::plot::{line_plot, LinePlot, Series};
//!
//! let loss: Vec<(f64, f64)> = (0..100).map(|i| (i as f64, 10.0 / (1.0 + i as f64))).collect();
//! let plot = LinePlot::new("Training", "step", "loss").with_series(Series::line("loss", loss));
//! let svg = line_plot(&plot);
//! assert!(svg.starts_with("<svg") && svg.contains("Training"));
//! // latflow_io::plot::write_svg(std::path::Path::new("loss.svg"), &svg)?;
//! ```

use std::fmt::Write as _;
use std::path::Path;

/// Colours given to series without an explicit colour, in order (the "tab10" palette).
pub const PALETTE: [&str; 10] =
    ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

const FONT: &str = "DejaVu Sans, Helvetica, Arial, sans-serif";
const GRID_COLOUR: &str = "#e3e3e3";
const AXIS_COLOUR: &str = "#333333";
const TEXT_COLOUR: &str = "#222222";
const TICK_FONT: f64 = 12.0;
const LABEL_FONT: f64 = 14.0;
const TITLE_FONT: f64 = 16.0;
/// Rough advance width of a character, as a fraction of the font size (for layout only).
const CHAR_WIDTH: f64 = 0.6;

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Straight segments between consecutive points.
    Line,
    /// Dashed straight segments (reference lines, fits).
    DashedLine,
    /// One circle per point, no lines.
    Markers,
    /// A step function: each value holds until the next point's x (Markov-chain histories).
    Step,
}

/// One named data series.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend entry; series with an empty name are left out of the legend.
    pub name: String,
    /// The `(x, y)` points, drawn in the given order.
    pub points: Vec<(f64, f64)>,
    /// How to draw them.
    pub style: Style,
    /// Any SVG colour; `None` takes the next colour of [`PALETTE`] by series index.
    pub color: Option<String>,
}

impl Series {
    /// A series drawn with `style` in the palette colour.
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>, style: Style) -> Self {
        Series { name: name.into(), points, style, color: None }
    }

    /// A [`Style::Line`] series.
    pub fn line(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self::new(name, points, Style::Line)
    }

    /// A [`Style::Markers`] series.
    pub fn markers(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self::new(name, points, Style::Markers)
    }

    /// A [`Style::Step`] series.
    pub fn step(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self::new(name, points, Style::Step)
    }

    /// A series of `ys` against their index `0, 1, 2, ...` (e.g. a Markov chain).
    pub fn from_values(name: impl Into<String>, ys: &[f64], style: Style) -> Self {
        Self::new(name, ys.iter().enumerate().map(|(i, &y)| (i as f64, y)).collect(), style)
    }

    /// The same series in colour `color` (any SVG colour, e.g. `"#000"` or `"black"`).
    pub fn with_color(mut self, color: impl Into<String>) -> Self {
        self.color = Some(color.into());
        self
    }
}

/// A 2-D plot of one or more series on shared axes.
#[derive(Debug, Clone, PartialEq)]
pub struct LinePlot {
    /// Title above the plot.
    pub title: String,
    /// Label under the x axis.
    pub x_label: String,
    /// Label left of the y axis.
    pub y_label: String,
    /// The data; drawn in order, later series on top.
    pub series: Vec<Series>,
    /// Logarithmic y axis (non-positive y values are skipped). Default `false`.
    pub log_y: bool,
    /// Same data units per pixel on both axes, so a slope-1 line runs at 45 degrees
    /// (linear axes only). Default `false`.
    pub equal_scale: bool,
    /// Width of the SVG in pixels. Default 640.
    pub width: f64,
    /// Height of the SVG in pixels. Default 420.
    pub height: f64,
}

impl Default for LinePlot {
    fn default() -> Self {
        LinePlot {
            title: String::new(),
            x_label: String::new(),
            y_label: String::new(),
            series: Vec::new(),
            log_y: false,
            equal_scale: false,
            width: 640.0,
            height: 420.0,
        }
    }
}

impl LinePlot {
    /// An empty plot with the given title and axis labels (other fields at their defaults).
    pub fn new(title: impl Into<String>, x_label: impl Into<String>, y_label: impl Into<String>) -> Self {
        LinePlot { title: title.into(), x_label: x_label.into(), y_label: y_label.into(), ..Default::default() }
    }

    /// Adds a series.
    pub fn with_series(mut self, s: Series) -> Self {
        self.series.push(s);
        self
    }

    /// Sets [`LinePlot::log_y`].
    pub fn with_log_y(mut self, log_y: bool) -> Self {
        self.log_y = log_y;
        self
    }

    /// Sets the size in pixels.
    pub fn with_size(mut self, width: f64, height: f64) -> Self {
        self.width = width;
        self.height = height;
        self
    }
}

/// Renders `plot` as a standalone SVG document.
pub fn line_plot(plot: &LinePlot) -> String {
    let mut svg = svg_open(plot.width, plot.height);
    render_panel(&mut svg, plot, 0);
    svg.push_str("</svg>\n");
    svg
}

/// Renders several plots in one SVG, `cols` per row, each at its own size (cells are as large
/// as the largest plot), e.g. `panels(&[loss, ess], 2)`.
///
/// # Panics
/// If `cols == 0`.
#[track_caller]
pub fn panels(plots: &[LinePlot], cols: usize) -> String {
    assert!(cols > 0, "panels: cols must be positive");
    let cell_w = plots.iter().map(|p| p.width).fold(0.0, f64::max);
    let cell_h = plots.iter().map(|p| p.height).fold(0.0, f64::max);
    let rows = plots.len().div_ceil(cols);
    let mut svg = svg_open(cell_w * cols.min(plots.len()).max(1) as f64, cell_h * rows.max(1) as f64);
    for (i, p) in plots.iter().enumerate() {
        let (x, y) = ((i % cols) as f64 * cell_w, (i / cols) as f64 * cell_h);
        let _ = writeln!(svg, r#"<g transform="translate({x:.1},{y:.1})">"#);
        render_panel(&mut svg, p, i);
        svg.push_str("</g>\n");
    }
    svg.push_str("</svg>\n");
    svg
}

/// Offset `b = mean(y - x)` of the slope-1 line `y = x + b` through a point cloud (least
/// squares with the slope fixed to 1), over the finite points; `None` if there are none.
///
/// For `x = S_eff = -log q` and `y = S` a perfect flow gives `S = S_eff + log Z`, so `b`
/// estimates `log Z` and the spread about the line measures the mismatch of q and p.
pub fn slope_one_offset(points: &[(f64, f64)]) -> Option<f64> {
    let (mut sum, mut n) = (0.0, 0usize);
    for &(x, y) in points {
        if x.is_finite() && y.is_finite() {
            sum += y - x;
            n += 1;
        }
    }
    (n > 0).then(|| sum / n as f64)
}

/// A square scatter plot of `points` with equal scales on both axes and, if `slope_one_fit`,
/// the dashed line `y = x + b` with `b` from [`slope_one_offset`] (legend shows `b`).
///
/// Meant for the tutorial's check of a trained flow (arXiv:2101.08176, Fig. 4):
/// `scatter_plot("S vs S_eff", "S_eff = -log q(x)", "S(x)", &pts, true)`; the closer the
/// cloud hugs the line, the better q approximates p.
pub fn scatter_plot(title: &str, x_label: &str, y_label: &str, points: &[(f64, f64)], slope_one_fit: bool) -> String {
    let n = points.iter().filter(|(x, y)| x.is_finite() && y.is_finite()).count();
    let mut plot = LinePlot::new(title, x_label, y_label).with_size(560.0, 560.0);
    plot.equal_scale = true;
    plot.series.push(Series::markers(format!("samples ({n})"), points.to_vec()));
    if slope_one_fit {
        if let Some(b) = slope_one_offset(points) {
            // Two points spanning the data's x range; the renderer clips the line to the axes.
            let (lo, hi) = points
                .iter()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &(x, _)| (lo.min(x), hi.max(x)));
            let sign = if b < 0.0 { "\u{2212}" } else { "+" };
            plot.series.push(
                Series::new(
                    format!("y = x {sign} {} (slope 1)", format_sig(b.abs(), 4)),
                    vec![(lo, lo + b), (hi, hi + b)],
                    Style::DashedLine,
                )
                .with_color("#222222"),
            );
        }
    }
    line_plot(&plot)
}

/// A `rows x cols` grid of lattice configurations on one shared diverging colour scale
/// (blue negative, white 0, red positive, symmetric about 0 with limit `max |value|`), with a
/// colour bar. `fields[k][i * w + j]` is site `(i, j)` of configuration `k`, drawn at row `i`,
/// column `j` of tile `k`; tiles fill the grid row by row. Missing tiles stay blank, extra
/// fields are ignored, non-finite sites are drawn grey and do not set the scale.
///
/// # Panics
/// If a field drawn does not hold `h * w` values.
#[track_caller]
pub fn heatmap_grid(title: &str, fields: &[Vec<f64>], h: usize, w: usize, rows: usize, cols: usize) -> String {
    let shown = &fields[..fields.len().min(rows * cols)];
    for (k, f) in shown.iter().enumerate() {
        assert!(f.len() == h * w, "heatmap_grid: field {k} has {} values, expected h * w = {h} * {w}", f.len());
    }
    let vmax = shown.iter().flatten().filter(|v| v.is_finite()).fold(0.0f64, |m, v| m.max(v.abs()));
    let vmax = if vmax > 0.0 { vmax } else { 1.0 };

    let cell = (120.0 / h.max(w).max(1) as f64).floor().max(3.0);
    let (tile_w, tile_h) = (cell * w as f64, cell * h as f64);
    let gap = 10.0;
    let (left, top) = (24.0, 52.0);
    let grid_w = cols as f64 * tile_w + cols.saturating_sub(1) as f64 * gap;
    let grid_h = rows as f64 * tile_h + rows.saturating_sub(1) as f64 * gap;
    let bar_x = left + grid_w + 24.0;
    let bar_w = 16.0;
    let ticks: Vec<f64> = ticks_with_step(-vmax, vmax, axis_step(-vmax, vmax, 8))
        .into_iter()
        .filter(|t| t.abs() <= vmax * (1.0 + 1e-12))
        .collect();
    let tick_labels = format_ticks(&ticks);
    let label_w = tick_labels.iter().map(|s| s.chars().count()).max().unwrap_or(1) as f64 * TICK_FONT * CHAR_WIDTH;
    let width = (bar_x + bar_w + 8.0 + label_w + 20.0).max(text_width(title, TITLE_FONT) + 40.0);
    let height = top + grid_h + 24.0;

    let mut svg = svg_open(width, height);
    title_text(&mut svg, width / 2.0, 30.0, title);
    svg.push_str(r#"<g shape-rendering="crispEdges">"#);
    svg.push('\n');
    for (k, f) in shown.iter().enumerate() {
        let tx = left + (k % cols) as f64 * (tile_w + gap);
        let ty = top + (k / cols) as f64 * (tile_h + gap);
        for i in 0..h {
            for j in 0..w {
                let v = f[i * w + j];
                let fill = if v.is_finite() { diverging(v / vmax) } else { "#999999".to_string() };
                let _ = writeln!(
                    svg,
                    r#"<rect class="cell" x="{:.2}" y="{:.2}" width="{cell:.2}" height="{cell:.2}" fill="{fill}"/>"#,
                    tx + j as f64 * cell,
                    ty + i as f64 * cell
                );
            }
        }
        let _ = writeln!(
            svg,
            r#"<rect x="{tx:.2}" y="{ty:.2}" width="{tile_w:.2}" height="{tile_h:.2}" fill="none" stroke="{AXIS_COLOUR}" stroke-width="0.8"/>"#
        );
    }
    svg.push_str("</g>\n");

    // Colour bar: a vertical gradient from +vmax (top) to -vmax (bottom).
    svg.push_str(r#"<defs><linearGradient id="cbar" x1="0" y1="1" x2="0" y2="0">"#);
    for s in 0..=20 {
        let t = s as f64 / 20.0;
        let _ = write!(svg, r#"<stop offset="{t:.3}" stop-color="{}"/>"#, diverging(2.0 * t - 1.0));
    }
    svg.push_str("</linearGradient></defs>\n");
    let _ = writeln!(
        svg,
        r#"<rect x="{bar_x:.2}" y="{top:.2}" width="{bar_w}" height="{grid_h:.2}" fill="url(#cbar)" stroke="{AXIS_COLOUR}" stroke-width="0.8"/>"#
    );
    for (t, label) in ticks.iter().zip(&tick_labels) {
        let y = top + grid_h * (1.0 - (t / vmax + 1.0) / 2.0);
        let _ = writeln!(
            svg,
            r#"<line x1="{:.2}" y1="{y:.2}" x2="{:.2}" y2="{y:.2}" stroke="{AXIS_COLOUR}" stroke-width="1"/>"#,
            bar_x + bar_w,
            bar_x + bar_w + 4.0
        );
        text(&mut svg, bar_x + bar_w + 7.0, y + TICK_FONT * 0.35, TICK_FONT, "start", label);
    }
    svg.push_str("</svg>\n");
    svg
}

/// Writes `svg` to `path` atomically (temp file and rename: a full disk leaves no truncated
/// plot).
///
/// # Errors
/// Any I/O error of the write; the message names the path.
pub fn write_svg(path: &Path, svg: &str) -> std::io::Result<()> {
    crate::csv::write_atomic(path, svg.as_bytes()).map_err(std::io::Error::other)
}

/// "Nice" tick values covering `[lo, hi]`: multiples of a step of 1, 2 or 5 times a power of
/// ten, chosen so there are about `target` intervals, from the largest multiple `<= lo` to the
/// smallest `>= hi`. A degenerate range is widened around its value; non-finite input gives
/// the ticks of `[0, 1]`.
///
/// ```
/// use latflow_io::plot::nice_ticks;
/// assert_eq!(nice_ticks(0.0, 4800.0, 5), vec![0.0, 1000.0, 2000.0, 3000.0, 4000.0, 5000.0]);
/// assert_eq!(nice_ticks(-0.3, 0.7, 5), vec![-0.4, -0.2, 0.0, 0.2, 0.4, 0.6, 0.8]);
/// ```
pub fn nice_ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    let (lo, hi) = widen(lo, hi);
    let step = nice_step((hi - lo) / target.max(1) as f64);
    ticks_with_step(lo, hi, step)
}

/// The 1-2-5 step for an axis over `[lo, hi]` (a non-empty finite range) with at least 3 and
/// at most `max_intervals` intervals whose ticks waste the least room beyond the data (ties go
/// to fewer intervals).
fn axis_step(lo: f64, hi: f64, max_intervals: usize) -> f64 {
    let max_intervals = max_intervals.max(3);
    let base = nice_step((hi - lo) / max_intervals as f64);
    // (fewer than 3 intervals, waste, step) of the best candidate so far.
    let mut best: Option<(bool, f64, f64)> = None;
    // The 1-2-5 step below `base`, `base`, and the next few above it.
    let mut step = nice_step(base / 2.6);
    for _ in 0..7 {
        let t = ticks_with_step(lo, hi, step);
        let n = t.len() - 1;
        let span = t[n] - t[0];
        let key = (n < 3, (span - (hi - lo)) / span);
        let better = match best {
            None => true,
            Some((few, waste, _)) => (!key.0 && few) || (key.0 == few && key.1 < waste - 1e-9),
        };
        if n <= max_intervals && better {
            best = Some((key.0, key.1, step));
        }
        step = nice_step(step * 1.000_001);
    }
    best.map_or(base, |(_, _, s)| s)
}

/// The smallest 1-2-5 step `>= raw`.
fn nice_step(raw: f64) -> f64 {
    let raw = if raw.is_finite() && raw > 0.0 { raw } else { 1.0 };
    let exp = raw.log10().floor() as i32;
    let mag = pow10(exp);
    let norm = raw / mag;
    let m = if norm <= 1.0 + 1e-9 {
        1.0
    } else if norm <= 2.0 + 1e-9 {
        2.0
    } else if norm <= 5.0 + 1e-9 {
        5.0
    } else {
        10.0
    };
    m * mag
}

/// Multiples `k * step` from `floor(lo / step)` to `ceil(hi / step)`.
fn ticks_with_step(lo: f64, hi: f64, step: f64) -> Vec<f64> {
    let k0 = (lo / step + 1e-9).floor();
    let k1 = (hi / step - 1e-9).ceil();
    let n = ((k1 - k0).max(1.0) as usize).min(1000);
    (0..=n).map(|i| clean((k0 + i as f64) * step, step)).collect()
}

/// Rounds `v` to the decimal precision of `step` (so 3 * 0.1 is exactly 0.3), and -0 to 0.
fn clean(v: f64, step: f64) -> f64 {
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    let r: f64 = if decimals > 0 { format!("{v:.decimals$}").parse().unwrap_or(v) } else { v.round() };
    if r == 0.0 {
        0.0
    } else {
        r
    }
}

/// `10^e` computed exactly (via the decimal parser, not repeated multiplication).
fn pow10(e: i32) -> f64 {
    format!("1e{e}").parse().unwrap_or(1.0)
}

/// A finite, non-empty range containing `[lo, hi]`.
fn widen(lo: f64, hi: f64) -> (f64, f64) {
    if !(lo.is_finite() && hi.is_finite()) {
        return (0.0, 1.0);
    }
    let (lo, hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
    if hi - lo > 1e-12 * lo.abs().max(hi.abs()) && hi > lo {
        (lo, hi)
    } else {
        let d = if lo == 0.0 { 1.0 } else { 0.1 * lo.abs() };
        (lo - d, hi + d)
    }
}

/// Tick positions for a log axis covering `[lo, hi]` (both > 0): whole decades, with 2 and 5
/// added when the range spans at most two decades, and only every k-th decade for very wide
/// ranges. Returns the axis limits (in log10) and the tick values.
fn log_ticks(lo: f64, hi: f64) -> ((f64, f64), Vec<f64>) {
    let (lo, hi) = if lo > 0.0 && hi.is_finite() && hi >= lo { (lo, hi) } else { (1.0, 10.0) };
    let d0 = (lo.log10() + 1e-9).floor() as i32;
    let mut d1 = (hi.log10() - 1e-9).ceil() as i32;
    if d1 <= d0 {
        d1 = d0 + 1;
    }
    let every = ((d1 - d0) as f64 / 8.0).ceil().max(1.0) as i32;
    let mut ticks = Vec::new();
    for d in d0..=d1 {
        if (d - d0) % every != 0 && d != d1 {
            continue;
        }
        ticks.push(pow10(d));
        if d1 - d0 <= 2 && d < d1 {
            ticks.push(format!("2e{d}").parse().unwrap_or(0.0));
            ticks.push(format!("5e{d}").parse().unwrap_or(0.0));
        }
    }
    ((d0 as f64, d1 as f64), ticks)
}

/// Labels for evenly spaced ticks, all with the same number of decimals (or all in
/// scientific notation for very large or small magnitudes), with a true minus sign.
fn format_ticks(ticks: &[f64]) -> Vec<String> {
    if ticks.is_empty() {
        return Vec::new();
    }
    let step = if ticks.len() > 1 { (ticks[1] - ticks[0]).abs() } else { 1.0 };
    let max_abs = ticks.iter().fold(0.0f64, |m, t| m.max(t.abs()));
    // Exponent of the last significant digit of the step (-2 for 0.25, -1 for 0.2).
    let mut step_exp = step.log10().floor() as i32;
    for _ in 0..3 {
        let m = step / pow10(step_exp);
        if (m - m.round()).abs() < 1e-6 {
            break;
        }
        step_exp -= 1;
    }
    let scientific = max_abs >= 1e5 || (max_abs > 0.0 && max_abs < 1e-3);
    ticks
        .iter()
        .map(|&t| {
            let s = if t == 0.0 {
                "0".to_string()
            } else if scientific {
                let e = t.abs().log10().floor() as i32;
                let d = (e - step_exp).max(0) as usize;
                format!("{t:.d$e}")
            } else {
                let d = (-step_exp).max(0) as usize;
                format!("{t:.d$}")
            };
            s.replace('-', "\u{2212}").replace("e\u{2212}", "e-")
        })
        .collect()
}

/// A log-axis tick label: plain decimals between 1e-3 and 1e5, scientific outside.
fn format_log_tick(t: f64) -> String {
    if (1e-3..1e5).contains(&t) {
        format!("{t}")
    } else {
        format!("{t:e}")
    }
}

/// `v` with `sig` significant digits, trailing zeros removed.
fn format_sig(v: f64, sig: usize) -> String {
    if v == 0.0 || !v.is_finite() {
        return "0".into();
    }
    let e = v.abs().log10().floor() as i32;
    if !(-4..6).contains(&e) {
        return format!("{v:.prec$e}", prec = sig.saturating_sub(1));
    }
    let d = (sig as i32 - 1 - e).max(0) as usize;
    let s = format!("{v:.d$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// The diverging colour map at `t` in `[-1, 1]` (clamped): dark blue, blue, near-white,
/// red, dark red (the anchors of matplotlib's `RdBu_r`).
fn diverging(t: f64) -> String {
    const ANCHORS: [(f64, [f64; 3]); 5] = [
        (-1.0, [5.0, 48.0, 97.0]),
        (-0.5, [67.0, 147.0, 195.0]),
        (0.0, [247.0, 247.0, 247.0]),
        (0.5, [214.0, 96.0, 77.0]),
        (1.0, [103.0, 0.0, 31.0]),
    ];
    let t = if t.is_finite() { t.clamp(-1.0, 1.0) } else { 0.0 };
    let k = ANCHORS.windows(2).position(|w| t <= w[1].0).unwrap_or(3);
    let ((t0, c0), (t1, c1)) = (ANCHORS[k], ANCHORS[k + 1]);
    let a = (t - t0) / (t1 - t0);
    let ch = |i: usize| (c0[i] + a * (c1[i] - c0[i])).round().clamp(0.0, 255.0) as u8;
    format!("#{:02x}{:02x}{:02x}", ch(0), ch(1), ch(2))
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\t' && c != '\n' => {} // not allowed in XML 1.0
            c => out.push(c),
        }
    }
    out
}

fn text_width(s: &str, size: f64) -> f64 {
    s.chars().count() as f64 * size * CHAR_WIDTH
}

fn svg_open(width: f64, height: f64) -> String {
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="{FONT}">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    svg
}

fn text(svg: &mut String, x: f64, y: f64, size: f64, anchor: &str, s: &str) {
    let _ = writeln!(
        svg,
        r#"<text x="{x:.2}" y="{y:.2}" font-size="{size}" text-anchor="{anchor}" fill="{TEXT_COLOUR}">{}</text>"#,
        escape(s)
    );
}

fn title_text(svg: &mut String, x: f64, y: f64, s: &str) {
    let _ = writeln!(
        svg,
        r#"<text class="title" x="{x:.2}" y="{y:.2}" font-size="{TITLE_FONT}" font-weight="bold" text-anchor="middle" fill="{TEXT_COLOUR}">{}</text>"#,
        escape(s)
    );
}

/// One axis: data limits `[lo, hi]` (in log10 units for a log axis) and labelled ticks.
struct Axis {
    lo: f64,
    hi: f64,
    log: bool,
    ticks: Vec<(f64, String)>,
}

impl Axis {
    fn linear(lo: f64, hi: f64, step: f64) -> Self {
        let t = ticks_with_step(lo, hi, step);
        let labels = format_ticks(&t);
        Axis { lo: t[0], hi: t[t.len() - 1], log: false, ticks: t.into_iter().zip(labels).collect() }
    }

    fn logarithmic(lo: f64, hi: f64) -> Self {
        let ((l, h), t) = log_ticks(lo, hi);
        Axis { lo: l, hi: h, log: true, ticks: t.into_iter().map(|v| (v, format_log_tick(v))).collect() }
    }

    /// Position of `v` as a fraction of the axis length (0 at `lo`).
    fn frac(&self, v: f64) -> f64 {
        let v = if self.log { v.log10() } else { v };
        (v - self.lo) / (self.hi - self.lo)
    }
}

/// Draws one plot. The legend goes inside the plot area, in the corner covering the fewest
/// points; if even that corner hides some data, it goes in a strip above the plot.
fn render_panel(svg: &mut String, plot: &LinePlot, panel: usize) {
    let mut inside = String::new();
    let hidden = render_panel_with(&mut inside, plot, panel, false);
    if hidden > 0 {
        render_panel_with(svg, plot, panel, true);
    } else {
        svg.push_str(&inside);
    }
}

/// Legend entries (series index, series) of the named series.
fn legend_entries(plot: &LinePlot) -> Vec<(usize, &Series)> {
    plot.series.iter().enumerate().filter(|(_, s)| !s.name.is_empty()).collect()
}

const LEGEND_ROW: f64 = 18.0;

/// Width of one legend entry: sample line, gap, text, gap.
fn legend_entry_width(s: &Series) -> f64 {
    30.0 + 6.0 + text_width(&s.name, TICK_FONT) + 18.0
}

/// Rows of a horizontal legend: entries packed greedily into lines of at most `avail` pixels.
fn legend_rows<'a>(entries: &[(usize, &'a Series)], avail: f64) -> Vec<Vec<(usize, &'a Series)>> {
    let mut rows: Vec<Vec<(usize, &Series)>> = Vec::new();
    let mut used = f64::INFINITY;
    for &(i, s) in entries {
        let w = legend_entry_width(s);
        if used + w > avail {
            rows.push(Vec::new());
            used = 0.0;
        }
        used += w;
        if let Some(r) = rows.last_mut() {
            r.push((i, s));
        }
    }
    rows
}

/// Draws a legend sample (line or marker) between `x0` and `x1` at height `y`, then the name.
fn legend_entry(svg: &mut String, x0: f64, y: f64, c: &str, s: &Series) {
    let x1 = x0 + 22.0;
    match s.style {
        Style::Markers => {
            let _ = writeln!(
                svg,
                r#"<circle class="legend-marker" cx="{:.2}" cy="{y:.2}" r="3.5" fill="{c}"/>"#,
                (x0 + x1) / 2.0
            );
        }
        _ => {
            let dash = if s.style == Style::DashedLine { r#" stroke-dasharray="7 4""# } else { "" };
            let _ = writeln!(
                svg,
                r#"<line x1="{x0:.2}" y1="{y:.2}" x2="{x1:.2}" y2="{y:.2}" stroke="{c}" stroke-width="2"{dash}/>"#
            );
        }
    }
    text(svg, x1 + 6.0, y + TICK_FONT * 0.35, TICK_FONT, "start", &s.name);
}

/// Whether the segment from `a` to `b` meets the rectangle `(x0, y0, x1, y1)` (Liang-Barsky
/// clipping of the segment's parameter range against the four edges).
fn segment_hits_rect(a: (f64, f64), b: (f64, f64), (x0, y0, x1, y1): (f64, f64, f64, f64)) -> bool {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let (mut t0, mut t1) = (0.0f64, 1.0f64);
    for (p, q) in [(-dx, a.0 - x0), (dx, x1 - a.0), (-dy, a.1 - y0), (dy, y1 - a.1)] {
        if p == 0.0 {
            if q < 0.0 {
                return false; // parallel to this edge and outside it
            }
        } else {
            let r = q / p;
            if p < 0.0 {
                t0 = t0.max(r);
            } else {
                t1 = t1.min(r);
            }
        }
    }
    t0 <= t1
}

/// Draws one plot with the legend inside (`legend_above == false`; returns how many points
/// the legend box hides) or in a strip between title and plot (returns 0).
fn render_panel_with(svg: &mut String, plot: &LinePlot, panel: usize, legend_above: bool) -> usize {
    let (width, height) = (plot.width, plot.height);
    let entries = legend_entries(plot);
    let strip_rows = if legend_above { legend_rows(&entries, width - 120.0) } else { Vec::new() };
    let usable = |x: f64, y: f64| x.is_finite() && y.is_finite() && (!plot.log_y || y > 0.0);

    // Data ranges over the usable points.
    let (mut xlo, mut xhi, mut ylo, mut yhi) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
    for s in &plot.series {
        for &(x, y) in &s.points {
            if usable(x, y) {
                (xlo, xhi, ylo, yhi) = (xlo.min(x), xhi.max(x), ylo.min(y), yhi.max(y));
            }
        }
    }
    let has_data = xlo <= xhi;
    if !has_data {
        (xlo, xhi, ylo, yhi) = if plot.log_y { (0.0, 1.0, 1.0, 10.0) } else { (0.0, 1.0, 0.0, 1.0) };
    }
    let (xlo, xhi) = widen(xlo, xhi);

    let strip_top = if plot.title.is_empty() { 12.0 } else { 40.0 };
    let strip_h = strip_rows.len() as f64 * LEGEND_ROW;
    let top = match (strip_rows.is_empty(), plot.title.is_empty()) {
        (false, _) => strip_top + strip_h + 8.0,
        (true, true) => 20.0,
        (true, false) => 44.0,
    };
    let (right, bottom) = (24.0, 58.0);
    let ph0 = (height - top - bottom).max(10.0);
    // Room for the y tick labels and the rotated y label on the left.
    let left_for = |y_axis: &Axis| {
        let ytick_w = y_axis.ticks.iter().map(|(_, l)| text_width(l, TICK_FONT)).fold(0.0, f64::max);
        18.0 + LABEL_FONT + 10.0 + ytick_w + 8.0
    };
    // At most one x interval per 70 px and one y interval per 32 px.
    let max_x_intervals = |left: f64| ((width - left - right) / 70.0).floor().clamp(3.0, 12.0) as usize;
    let max_y_intervals = (ph0 / 32.0).floor().clamp(3.0, 10.0) as usize;

    let (x_axis, y_axis, left) = if plot.equal_scale && !plot.log_y {
        let (ylo, yhi) = widen(ylo, yhi);
        // One step for both axes from the larger span, then pad the shorter axis (on both
        // sides) to the same number of steps, so both axes have the same units per pixel.
        let step = nice_step((xhi - xlo).max(yhi - ylo) / 6.0);
        let (mut xa, mut ya) = (Axis::linear(xlo, xhi, step), Axis::linear(ylo, yhi, step));
        let (nx, ny) = (xa.ticks.len(), ya.ticks.len());
        let pad = |a: &mut Axis, lo: f64, hi: f64, extra: usize| {
            let below = extra / 2;
            *a = Axis::linear(lo - below as f64 * step, hi + (extra - below) as f64 * step, step);
        };
        if nx < ny {
            pad(&mut xa, xlo, xhi, ny - nx);
        } else if ny < nx {
            pad(&mut ya, ylo, yhi, nx - ny);
        }
        let left = left_for(&ya);
        (xa, ya, left)
    } else {
        let ya = if plot.log_y {
            Axis::logarithmic(ylo, yhi)
        } else {
            let (ylo, yhi) = widen(ylo, yhi);
            Axis::linear(ylo, yhi, axis_step(ylo, yhi, max_y_intervals))
        };
        let left = left_for(&ya);
        (Axis::linear(xlo, xhi, axis_step(xlo, xhi, max_x_intervals(left))), ya, left)
    };

    let (mut pw, mut ph) = ((width - left - right).max(10.0), ph0);
    if plot.equal_scale && !plot.log_y {
        let (sx, sy) = (pw / (x_axis.hi - x_axis.lo), ph / (y_axis.hi - y_axis.lo));
        if sx > sy {
            pw = sy * (x_axis.hi - x_axis.lo);
        } else {
            ph = sx * (y_axis.hi - y_axis.lo);
        }
    }
    let px = |x: f64| left + x_axis.frac(x) * pw;
    let py = |y: f64| top + ph - y_axis.frac(y) * ph;

    if !plot.title.is_empty() {
        title_text(svg, left + pw / 2.0, 28.0, &plot.title);
    }

    // Grid lines and tick labels.
    for (t, label) in &x_axis.ticks {
        let x = px(*t);
        let _ = writeln!(
            svg,
            r#"<line class="grid" x1="{x:.2}" y1="{top:.2}" x2="{x:.2}" y2="{:.2}" stroke="{GRID_COLOUR}" stroke-width="1"/>"#,
            top + ph
        );
        let _ = writeln!(
            svg,
            r#"<line x1="{x:.2}" y1="{:.2}" x2="{x:.2}" y2="{:.2}" stroke="{AXIS_COLOUR}" stroke-width="1"/>"#,
            top + ph,
            top + ph + 5.0
        );
        text(svg, x, top + ph + 8.0 + TICK_FONT, TICK_FONT, "middle", label);
    }
    for (t, label) in &y_axis.ticks {
        let y = py(*t);
        let _ = writeln!(
            svg,
            r#"<line class="grid" x1="{left:.2}" y1="{y:.2}" x2="{:.2}" y2="{y:.2}" stroke="{GRID_COLOUR}" stroke-width="1"/>"#,
            left + pw
        );
        let _ = writeln!(
            svg,
            r#"<line x1="{:.2}" y1="{y:.2}" x2="{left:.2}" y2="{y:.2}" stroke="{AXIS_COLOUR}" stroke-width="1"/>"#,
            left - 5.0
        );
        text(svg, left - 8.0, y + TICK_FONT * 0.35, TICK_FONT, "end", label);
    }
    // Axis labels.
    text(svg, left + pw / 2.0, top + ph + 8.0 + TICK_FONT + 10.0 + LABEL_FONT, LABEL_FONT, "middle", &plot.x_label);
    let ly = top + ph / 2.0;
    let lx = 18.0 + LABEL_FONT * 0.8;
    let _ = writeln!(
        svg,
        r#"<text x="{lx:.2}" y="{ly:.2}" font-size="{LABEL_FONT}" text-anchor="middle" fill="{TEXT_COLOUR}" transform="rotate(-90 {lx:.2} {ly:.2})">{}</text>"#,
        escape(&plot.y_label)
    );
    if !has_data {
        text(svg, left + pw / 2.0, top + ph / 2.0, LABEL_FONT, "middle", "no data");
    }

    // Data, clipped to the plot area (only reference lines can reach outside it).
    let clip = format!("clip-{panel}");
    let _ = writeln!(
        svg,
        r#"<defs><clipPath id="{clip}"><rect x="{left:.2}" y="{top:.2}" width="{pw:.2}" height="{ph:.2}"/></clipPath></defs>"#
    );
    let many = plot.series.iter().filter(|s| s.style == Style::Markers).map(|s| s.points.len()).sum::<usize>() > 300;
    let (radius, opacity) = if many { (2.2, 0.45) } else { (3.0, 0.85) };
    let colour = |i: usize, s: &Series| s.color.clone().unwrap_or_else(|| PALETTE[i % PALETTE.len()].to_string());
    for (i, s) in plot.series.iter().enumerate() {
        let c = colour(i, s);
        match s.style {
            Style::Markers => {
                let _ = writeln!(svg, r#"<g fill="{c}" fill-opacity="{opacity}">"#);
                for &(x, y) in &s.points {
                    if usable(x, y) {
                        let _ = writeln!(
                            svg,
                            r#"<circle class="marker" cx="{:.2}" cy="{:.2}" r="{radius}"/>"#,
                            px(x),
                            py(y)
                        );
                    }
                }
                svg.push_str("</g>\n");
            }
            Style::Line | Style::DashedLine | Style::Step => {
                let mut d = String::new();
                let mut pen_down = false;
                for &(x, y) in &s.points {
                    if !usable(x, y) {
                        pen_down = false;
                        continue;
                    }
                    let (sx, sy) = (px(x), py(y));
                    if !pen_down {
                        let _ = write!(d, "M{sx:.2} {sy:.2}");
                        pen_down = true;
                    } else if s.style == Style::Step {
                        let _ = write!(d, "H{sx:.2}V{sy:.2}");
                    } else {
                        let _ = write!(d, "L{sx:.2} {sy:.2}");
                    }
                }
                let dash = if s.style == Style::DashedLine { r#" stroke-dasharray="7 4""# } else { "" };
                let _ = writeln!(
                    svg,
                    r#"<path class="series" d="{d}" fill="none" stroke="{c}" stroke-width="1.8" stroke-linejoin="round"{dash} clip-path="url(#{clip})"/>"#
                );
            }
        }
    }
    // Frame.
    let _ = writeln!(
        svg,
        r#"<rect x="{left:.2}" y="{top:.2}" width="{pw:.2}" height="{ph:.2}" fill="none" stroke="{AXIS_COLOUR}" stroke-width="1"/>"#
    );

    if entries.is_empty() {
        return 0;
    }
    if legend_above {
        // Horizontal rows, right-aligned with the plot area.
        for (r, row) in strip_rows.iter().enumerate() {
            let row_w: f64 = row.iter().map(|(_, s)| legend_entry_width(s)).sum::<f64>() - 12.0;
            let mut x = (left + pw - row_w).max(4.0);
            let y = strip_top + LEGEND_ROW * (r as f64 + 0.5);
            svg.push_str("<g class=\"legend\">\n");
            for (i, s) in row {
                legend_entry(svg, x, y, &colour(*i, s), s);
                x += legend_entry_width(s);
            }
            svg.push_str("</g>\n");
        }
        return 0;
    }

    // Legend box in the corner of the plot area covering the fewest data points.
    let lw = 36.0 + 12.0 + entries.iter().map(|(_, s)| text_width(&s.name, TICK_FONT)).fold(0.0, f64::max);
    let lh = LEGEND_ROW * entries.len() as f64 + 8.0;
    let m = 8.0;
    let corners = [
        (left + pw - lw - m, top + m),
        (left + m, top + m),
        (left + pw - lw - m, top + ph - lh - m),
        (left + m, top + ph - lh - m),
    ];
    // Points (markers) and drawn segments (lines) a legend box at (cx, cy) would hide.
    let covered = |(cx, cy): (f64, f64)| {
        let rect = (cx - 3.0, cy - 3.0, cx + lw + 3.0, cy + lh + 3.0);
        let mut n = 0;
        for s in &plot.series {
            let mut prev: Option<(f64, f64)> = None;
            for &(x, y) in &s.points {
                if !usable(x, y) {
                    prev = None;
                    continue;
                }
                let p = (px(x), py(y));
                n += match (s.style, prev) {
                    (Style::Markers, _) | (_, None) => usize::from(segment_hits_rect(p, p, rect)),
                    (Style::Step, Some(q)) => {
                        let corner = (p.0, q.1);
                        usize::from(segment_hits_rect(q, corner, rect) || segment_hits_rect(corner, p, rect))
                    }
                    (_, Some(q)) => usize::from(segment_hits_rect(q, p, rect)),
                };
                prev = Some(p);
            }
        }
        n
    };
    let (hidden, (bx, by)) =
        corners.iter().map(|&c| (covered(c), c)).min_by_key(|&(n, _)| n).unwrap_or((0, corners[0]));
    let _ = writeln!(
        svg,
        r##"<g class="legend"><rect x="{bx:.2}" y="{by:.2}" width="{lw:.2}" height="{lh:.2}" rx="3" fill="white" fill-opacity="0.9" stroke="#bbbbbb" stroke-width="0.8"/>"##
    );
    for (row, (i, s)) in entries.iter().enumerate() {
        let y = by + 4.0 + LEGEND_ROW * (row as f64 + 0.5);
        legend_entry(svg, bx + 8.0, y, &colour(*i, s), s);
    }
    svg.push_str("</g>\n");
    hidden
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_svg_names_the_path_and_leaves_no_partial_file() {
        let dir = std::env::temp_dir().join(format!("latflow-io-svg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad = dir.join("no/such/dir/a.svg");
        let e = write_svg(&bad, "<svg></svg>").unwrap_err().to_string();
        assert!(e.contains("no/such/dir/a.svg"), "{e}");
        let ok = dir.join("a.svg");
        write_svg(&ok, "<svg></svg>").unwrap();
        assert_eq!(std::fs::read_to_string(&ok).unwrap(), "<svg></svg>");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "no temp file left behind");
        std::fs::remove_dir_all(&dir).ok();
    }

    /// Checks that every element opened is closed in order (a small XML well-formedness check
    /// for the subset we write: no comments, CDATA or processing instructions).
    fn assert_well_formed(svg: &str) {
        let mut stack: Vec<String> = Vec::new();
        let mut rest = svg;
        while let Some(start) = rest.find('<') {
            let end = rest[start..].find('>').expect("unterminated tag") + start;
            let tag = &rest[start + 1..end];
            let text_before = &rest[..start];
            assert!(!text_before.contains('>'), "stray '>' in text: {text_before:?}");
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop().as_deref(), Some(name), "mismatched </{name}>");
            } else if !tag.ends_with('/') {
                stack.push(tag.split_whitespace().next().unwrap_or("").to_string());
            }
            // Attribute values are quoted and never contain '<'.
            assert_eq!(tag.matches('"').count() % 2, 0, "unbalanced quotes in <{tag}>");
            rest = &rest[end + 1..];
        }
        assert!(stack.is_empty(), "unclosed tags {stack:?}");
        assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
        for bad in ["NaN", "inf"] {
            assert!(!svg.contains(bad), "SVG contains {bad}");
        }
    }

    fn tick_values(svg: &str) -> usize {
        svg.matches(r#"class="grid""#).count()
    }

    #[test]
    fn nice_ticks_are_nice_and_cover() {
        let cases = [(0.0, 1.0), (-3.7, 12.2), (0.001, 0.0047), (1e6, 3.3e6), (-1e-7, 1e-7), (5.0, 5.0), (-2.0, 3.0)];
        for (lo, hi) in cases {
            let t = nice_ticks(lo, hi, 6);
            assert!(t.len() >= 3 && t.len() <= 14, "{lo} {hi}: {t:?}");
            assert!(t[0] <= lo && *t.last().unwrap() >= hi, "{lo} {hi}: {t:?} does not cover");
            let step = t[1] - t[0];
            let mant = step / pow10(step.log10().floor() as i32);
            assert!([1.0, 2.0, 5.0].iter().any(|m| (mant - m).abs() < 1e-6), "{lo} {hi}: step {step} is not 1-2-5");
            for w in t.windows(2) {
                assert!(((w[1] - w[0]) - step).abs() < 1e-9 * step.abs().max(1e-300) * 1e3);
            }
            for v in &t {
                let k = v / step;
                assert!((k - k.round()).abs() < 1e-6, "{v} not a multiple of {step}");
            }
        }
        assert_eq!(nice_ticks(0.0, 0.3, 3), vec![0.0, 0.1, 0.2, 0.3]);
        assert_eq!(format_ticks(&nice_ticks(0.0, 0.3, 3)), vec!["0", "0.1", "0.2", "0.3"]);
        assert_eq!(format_ticks(&[-2.0, 0.0, 2.0]), vec!["\u{2212}2", "0", "2"]);
        assert_eq!(format_ticks(&[0.0, 1e6, 2e6]), vec!["0", "1e6", "2e6"]);
        assert_eq!(format_ticks(&[0.0, 2.5e-5, 5e-5]), vec!["0", "2.5e-5", "5.0e-5"]);
        assert_eq!(nice_ticks(f64::NAN, 1.0, 5), nice_ticks(0.0, 1.0, 5));
    }

    #[test]
    fn log_ticks_cover() {
        let ((l, h), t) = log_ticks(0.03, 0.9);
        assert_eq!((l, h), (-2.0, 0.0));
        assert_eq!(t, vec![0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]);
        let ((l, h), t) = log_ticks(1e-12, 1e6);
        assert!(l <= -12.0 && h >= 6.0 && t.len() <= 12, "{t:?}");
        assert_eq!(format_log_tick(0.001), "0.001");
        assert_eq!(format_log_tick(1e-5), "1e-5");
    }

    #[test]
    fn line_plot_is_well_formed_and_skips_non_finite() {
        let mut pts: Vec<(f64, f64)> = (0..50).map(|i| (i as f64, (i as f64 * 0.2).sin())).collect();
        pts[10].1 = f64::NAN;
        pts[20].0 = f64::INFINITY;
        let plot = LinePlot::new("Loss <& \"ESS\">", "step", "value")
            .with_series(Series::line("sin", pts.clone()))
            .with_series(Series::markers("pts", pts.clone()))
            .with_series(Series::step("", pts));
        let svg = line_plot(&plot);
        assert_well_formed(&svg);
        assert!(svg.contains("Loss &lt;&amp; &quot;ESS&quot;&gt;"));
        assert_eq!(svg.matches(r#"class="marker""#).count(), 48);
        assert_eq!(svg.matches(r#"class="series""#).count(), 2);
        // Legend lists the two named series only.
        assert_eq!(svg.matches(r#"class="legend-marker""#).count(), 1);
        assert!(tick_values(&svg) >= 6);
    }

    #[test]
    fn log_plot_and_empty_plot() {
        let pts: Vec<(f64, f64)> =
            (0..30).map(|i| (i as f64, 10f64.powf(-(i as f64) / 5.0))).chain([(31.0, 0.0), (32.0, -1.0)]).collect();
        let svg =
            line_plot(&LinePlot::new("ESS", "step", "ESS").with_series(Series::markers("ess", pts)).with_log_y(true));
        assert_well_formed(&svg);
        assert_eq!(svg.matches(r#"class="marker""#).count(), 30);
        assert!(svg.contains(">1e-6<") || svg.contains(">1e-5<"), "{svg}");
        let empty =
            line_plot(&LinePlot::new("nothing", "x", "y").with_series(Series::line("nan", vec![(f64::NAN, 1.0)])));
        assert_well_formed(&empty);
        assert!(empty.contains("no data"));
        let flat =
            line_plot(&LinePlot::new("flat", "x", "y").with_series(Series::line("c", vec![(1.0, 2.0), (1.0, 2.0)])));
        assert_well_formed(&flat);
    }

    #[test]
    fn panels_and_scatter() {
        let a = LinePlot::new("loss", "step", "loss").with_series(Series::line("loss", vec![(0.0, 1.0), (1.0, 0.5)]));
        let b = LinePlot::new("ess", "step", "ESS").with_series(Series::line("ess", vec![(0.0, 0.1), (1.0, 0.5)]));
        let svg = panels(&[a, b], 2);
        assert_well_formed(&svg);
        assert!(svg.contains("clip-0") && svg.contains("clip-1"));
        assert!(svg.contains(r#"width="1280""#));

        let pts: Vec<(f64, f64)> =
            (0..200).map(|i| (i as f64 * 0.1, i as f64 * 0.1 - 3.0 + (i % 7) as f64 * 0.05)).collect();
        let b = slope_one_offset(&pts).unwrap();
        assert!(
            (b - (-3.0 + 0.05 * pts.iter().enumerate().map(|(i, _)| (i % 7) as f64).sum::<f64>() / 200.0)).abs()
                < 1e-12
        );
        let svg = scatter_plot("S vs S_eff", "S_eff", "S", &pts, true);
        assert_well_formed(&svg);
        assert_eq!(svg.matches(r#"class="marker""#).count(), 200);
        assert!(svg.contains("stroke-dasharray") && svg.contains("(slope 1)"));
        assert_eq!(slope_one_offset(&[(f64::NAN, 1.0)]), None);
    }

    #[test]
    fn heatmap_grid_is_well_formed() {
        let fields: Vec<Vec<f64>> =
            (0..16).map(|k| (0..64).map(|s| ((s * 7 + k * 3) % 11) as f64 - 5.0).collect()).collect();
        let svg = heatmap_grid("phi^4 samples", &fields, 8, 8, 4, 4);
        assert_well_formed(&svg);
        assert_eq!(svg.matches(r#"class="cell""#).count(), 16 * 64);
        assert!(svg.contains("phi^4 samples"));
        // Shared symmetric scale: the extreme values map to the end colours.
        assert!(svg.contains(&diverging(1.0)) && svg.contains(&diverging(-1.0)));
        // Fewer fields than tiles, non-finite values, all zeros.
        let svg = heatmap_grid("z", &[vec![0.0, f64::NAN, 0.0, 0.0]], 2, 2, 2, 2);
        assert_well_formed(&svg);
        assert_eq!(svg.matches(r#"class="cell""#).count(), 4);
    }

    #[test]
    fn segment_rect_intersection() {
        let r = (0.0, 0.0, 10.0, 10.0);
        assert!(segment_hits_rect((5.0, 5.0), (5.0, 5.0), r));
        assert!(segment_hits_rect((-5.0, 5.0), (15.0, 5.0), r));
        assert!(segment_hits_rect((5.0, -5.0), (5.0, 15.0), r));
        assert!(!segment_hits_rect((-5.0, -5.0), (-1.0, 20.0), r));
        assert!(!segment_hits_rect((11.0, 0.0), (20.0, 10.0), r));
        assert!(segment_hits_rect((-1.0, 5.0), (5.0, 11.0), r));
        assert!(!segment_hits_rect((-1.0, 10.0), (2.0, 13.0), r));
    }

    #[test]
    fn legend_avoids_data() {
        // A busy step series filling the whole area pushes the legend above the plot.
        let busy: Vec<(f64, f64)> = (0..400).map(|i| (i as f64, ((i * 37) % 11) as f64 - 5.0)).collect();
        let p =
            LinePlot::new("Q", "t", "Q").with_series(Series::step("a", busy)).with_series(Series::step("b", vec![]));
        let svg = line_plot(&p);
        assert_well_formed(&svg);
        assert!(!svg.contains("fill-opacity=\"0.9\""), "legend box drawn inside the plot");
        assert!(svg.contains("class=\"legend\""));
        // A curve rising left to right leaves the top-left corner free... except it starts
        // there; a falling one leaves the top right free, where the box goes.
        let falling: Vec<(f64, f64)> = (0..100).map(|i| (i as f64, (-(i as f64) / 20.0).exp())).collect();
        let svg = line_plot(&LinePlot::new("f", "x", "y").with_series(Series::line("f", falling)));
        assert!(svg.contains("fill-opacity=\"0.9\""));
    }

    #[test]
    fn colour_map_is_symmetric_about_white() {
        assert_eq!(diverging(0.0), "#f7f7f7");
        assert_eq!(diverging(-1.0), "#053061");
        assert_eq!(diverging(1.0), "#67001f");
        assert_eq!(diverging(7.0), "#67001f");
        assert_eq!(diverging(f64::NAN), "#f7f7f7");
    }
}
