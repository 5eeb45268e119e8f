//! The report's plots, drawn with `plotters` into SVG strings: latency over
//! time coloured by outcome, throughput over time, unseen events over time,
//! each with a shaded band (and a start line) where each fault was active and
//! a red line topped by a cross where a fault's start failed (it never took
//! effect, so it has no band).

use super::series::{PointKind, Series};
use anyhow::{anyhow, Result};
use checkers::results::{FailedFault, FaultWindow};
use checkers::Outcome;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

/// Width and height of every plot, in SVG pixels.
pub const SIZE: (u32, u32) = (960, 320);

/// Colour of the mark of a fault start that failed.
pub const FAILED_START_COLOUR: RGBColor = RGBColor(170, 17, 17);

/// The faults a plot shows: the windows that took effect and the starts that failed.
#[derive(Clone, Copy)]
pub struct FaultMarks<'a> {
    /// Windows that took effect (bands).
    pub windows: &'a [FaultWindow],
    /// Starts that never took effect (marks without a band).
    pub failed: &'a [FailedFault],
}

/// Opacity of a fault band: every `<rect>` of that opacity in a plot is a band.
pub const BAND_OPACITY: f64 = 0.18;

/// Most points drawn per outcome class (an evenly strided sample above that).
pub const MAX_POINTS: usize = 20_000;

/// Colour of a point class.
pub fn point_colour(kind: PointKind) -> RGBColor {
    match kind {
        PointKind::OkDelivered => RGBColor(31, 119, 180),
        PointKind::OkLost => RGBColor(214, 39, 40),
        PointKind::Info => RGBColor(255, 127, 14),
        PointKind::Fail => RGBColor(127, 127, 127),
    }
}

/// Colour of the `i`-th distinct fault.
pub fn fault_colour(i: usize) -> RGBColor {
    const PALETTE: [RGBColor; 8] = [
        RGBColor(148, 103, 189),
        RGBColor(44, 160, 44),
        RGBColor(227, 119, 194),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
        RGBColor(140, 86, 75),
        RGBColor(255, 187, 120),
        RGBColor(152, 223, 138),
    ];
    PALETTE[i % PALETTE.len()]
}

/// CSS hex of a colour (for HTML legends).
pub fn css(c: RGBColor) -> String {
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

/// Distinct fault names in first-start order (their legend and colour order).
pub fn fault_names(faults: &[FaultWindow]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for w in faults {
        if !names.contains(&w.fault) {
            names.push(w.fault.clone());
        }
    }
    names
}

/// Points of one outcome class: (time s, latency ms or `None` when never delivered).
type ClassPoints = (PointKind, Vec<(f64, Option<f64>)>);

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing a plot: {e}")
}

/// Bands as (start s, stop s, colour); an unhealed fault runs to `end_s`.
fn bands(faults: &[FaultWindow], end_s: f64) -> Vec<(f64, f64, RGBColor)> {
    let names = fault_names(faults);
    faults
        .iter()
        .map(|w| {
            let i = names.iter().position(|n| *n == w.fault).unwrap_or(0);
            let start = w.start as f64 / 1e9;
            let stop = w.stop.map(|s| s as f64 / 1e9).unwrap_or(end_s);
            (start, stop.max(start), fault_colour(i))
        })
        .collect()
}

/// Where each healed window recovered (its stop plus `recovery_ns`), with
/// the window's colour; windows that never recovered, or were never healed,
/// or recovered at once (0) have no mark.
pub fn recovery_marks(faults: &[FaultWindow]) -> Vec<(f64, RGBColor)> {
    let names = fault_names(faults);
    faults
        .iter()
        .filter_map(|w| {
            let (stop, r) = (w.stop?, w.recovery_ns.filter(|&r| r > 0)?);
            let i = names.iter().position(|n| *n == w.fault).unwrap_or(0);
            Some(((stop + r) as f64 / 1e9, fault_colour(i)))
        })
        .collect()
}

/// Commit-to-first-delivery latency (ms, log scale) against completion time;
/// ops never delivered sit on the top line.
pub fn latency_svg(series: &Series, faults: FaultMarks, end_s: f64) -> Result<String> {
    let mut classes: Vec<ClassPoints> = PointKind::ALL.iter().map(|k| (*k, Vec::new())).collect();
    for p in &series.ops {
        let kind = series.kind(p);
        if let Some((_, v)) = classes.iter_mut().find(|(k, _)| *k == kind) {
            v.push(Series::latency_point(p));
        }
    }
    let floor = 0.1f64; // ms: a delivery at or before the ack is drawn here
    let max_lat = classes
        .iter()
        .flat_map(|(_, v)| v.iter().filter_map(|(_, l)| *l))
        .fold(1.0f64, f64::max);
    let never = max_lat * 3.0; // the "never delivered" line
    let top = never * 1.6;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        let mut chart = frame(&root)?
            .build_cartesian_2d(0f64..end_s, (floor..top).log_scale())
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("seconds since the run started (op completion)")
            .y_desc("commit → first delivery (ms)")
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(err)?;
        draw_bands(&mut chart, faults, end_s, (floor, top))?;
        chart
            .draw_series(LineSeries::new(
                [(0.0, never), (end_s, never)],
                RGBColor(214, 39, 40).mix(0.4).stroke_width(1),
            ))
            .map_err(err)?;
        for (kind, points) in &classes {
            let colour = point_colour(*kind);
            let stride = points.len().div_ceil(MAX_POINTS).max(1);
            chart
                .draw_series(points.iter().step_by(stride).map(|(x, l)| {
                    let y = l.map(|l| l.max(floor)).unwrap_or(never);
                    Circle::new((*x, y), 2, colour.filled())
                }))
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// Every plot's frame on `root`: a white ground, margins and label areas.
fn frame<'a, 'b>(root: &'a DrawingArea<SVGBackend<'b>, Shift>) -> Result<ChartBuilder<'a, 'b, SVGBackend<'b>>> {
    root.fill(&WHITE).map_err(err)?;
    let mut builder = ChartBuilder::on(root);
    builder.margin(12).x_label_area_size(36).y_label_area_size(64);
    Ok(builder)
}

/// A shaded band over each fault's window, from `y.0` to `y.1`, with a line
/// where the fault started and a line topped by a triangle where the run
/// recovered from it ([`recovery_marks`]); a red line with a cross on top
/// where a start failed.
fn draw_bands<Y: Ranged<ValueType = f64>>(
    chart: &mut ChartContext<SVGBackend, Cartesian2d<RangedCoordf64, Y>>,
    faults: FaultMarks,
    end_s: f64,
    (y0, y1): (f64, f64),
) -> Result<()> {
    for f in faults.failed {
        let x = (f.time as f64 / 1e9).clamp(0.0, end_s);
        chart
            .draw_series(LineSeries::new([(x, y0), (x, y1)], FAILED_START_COLOUR.stroke_width(1)))
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(Cross::new(
                (x, y1),
                5,
                FAILED_START_COLOUR.stroke_width(2),
            )))
            .map_err(err)?;
    }
    for (x0, x1, c) in bands(faults.windows, end_s) {
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(x0, y0), (x1, y1)],
                c.mix(BAND_OPACITY).filled(),
            )))
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new([(x0, y0), (x0, y1)], c.stroke_width(1)))
            .map_err(err)?;
    }
    for (x, c) in recovery_marks(faults.windows) {
        let x = x.min(end_s);
        chart
            .draw_series(LineSeries::new([(x, y0), (x, y1)], c.stroke_width(1)))
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(TriangleMarker::new((x, y1), 5, c.filled())))
            .map_err(err)?;
    }
    Ok(())
}

/// Lines of per-second values against time, with the fault bands.
fn lines_svg(y_desc: &str, lines: &[(&str, RGBColor, &[u64])], faults: FaultMarks, end_s: f64) -> Result<String> {
    let max_y = lines
        .iter()
        .flat_map(|(_, _, v)| v.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1) as f64
        * 1.1;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        let mut chart = frame(&root)?
            .build_cartesian_2d(0f64..end_s, 0f64..max_y)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("seconds since the run started")
            .y_desc(y_desc)
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(err)?;
        draw_bands(&mut chart, faults, end_s, (0.0, max_y))?;
        for (_, colour, values) in lines {
            // Each value counts the second [i, i+1): drawn at its middle.
            chart
                .draw_series(LineSeries::new(
                    values.iter().enumerate().map(|(i, v)| (i as f64 + 0.5, *v as f64)),
                    colour.stroke_width(2),
                ))
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// The throughput plot's lines: (label, colour, per-second counts).
pub fn throughput_lines(series: &Series) -> Vec<(&'static str, RGBColor, Vec<u64>)> {
    vec![
        (
            "ok/s",
            point_colour(PointKind::OkDelivered),
            series.per_second(Outcome::Ok),
        ),
        (
            "first deliveries/s",
            RGBColor(44, 160, 44),
            series.first_deliveries_per_second(),
        ),
        (
            "info/s",
            point_colour(PointKind::Info),
            series.per_second(Outcome::Info),
        ),
        (
            "fail/s",
            point_colour(PointKind::Fail),
            series.per_second(Outcome::Fail),
        ),
    ]
}

/// Completions per second by outcome, and first deliveries per second.
pub fn throughput_svg(series: &Series, faults: FaultMarks, end_s: f64) -> Result<String> {
    let lines = throughput_lines(series);
    let refs: Vec<(&str, RGBColor, &[u64])> = lines.iter().map(|(l, c, v)| (*l, *c, v.as_slice())).collect();
    lines_svg("ops per second", &refs, faults, end_s)
}

/// Acknowledged but not yet delivered ops at the end of each second.
pub fn unseen_svg(unseen: &[u64], faults: FaultMarks, end_s: f64) -> Result<String> {
    lines_svg(
        "unseen (acknowledged, not yet delivered)",
        &[("unseen", RGBColor(214, 39, 40), unseen)],
        faults,
        end_s,
    )
}

/// One line of an operational plot: label, colour, (seconds, value) points.
pub type OpsLine = (String, RGBColor, Vec<(f64, f64)>);

/// The operational plots of a run's samples ([`record::ops_series`]), each
/// `(title, y description, lines)`, only those with a value to draw: events
/// (backlog, parked), oldest pending age, and bytes (WAL retained per
/// replication slot, outbox table size), in MiB.
pub fn ops_plots(samples: &[record::ops_series::Sample]) -> Vec<(&'static str, &'static str, Vec<OpsLine>)> {
    let t = |s: &record::ops_series::Sample| s.time as f64 / 1e9;
    let line =
        |label: &str, colour: RGBColor, f: &dyn Fn(&record::ops_series::Sample) -> Option<f64>| -> Option<OpsLine> {
            let pts: Vec<(f64, f64)> = samples.iter().filter_map(|s| f(s).map(|v| (t(s), v))).collect();
            (!pts.is_empty()).then(|| (label.to_string(), colour, pts))
        };
    let mut plots = Vec::new();
    let events: Vec<OpsLine> = [
        line("backlog", RGBColor(31, 119, 180), &|s| s.backlog.map(|v| v as f64)),
        line("parked", RGBColor(214, 39, 40), &|s| s.parked.map(|v| v as f64)),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !events.is_empty() {
        plots.push(("Backlog over time", "events", events));
    }
    if let Some(age) = line("oldest pending age", RGBColor(255, 127, 14), &|s| {
        s.oldest_age_ms.map(|v| v as f64)
    }) {
        plots.push((
            "Oldest pending event over time",
            "age of the oldest pending event, ms",
            vec![age],
        ));
    }
    let mut slots: Vec<&String> = samples.iter().flat_map(|s| s.slots.keys()).collect();
    slots.sort();
    slots.dedup();
    let mut bytes: Vec<OpsLine> = slots
        .iter()
        .enumerate()
        .filter_map(|(i, name)| {
            line(&format!("WAL retained by slot {name}"), fault_colour(i + 4), &|s| {
                s.slots.get(*name).map(|&b| b as f64 / 1048576.0)
            })
        })
        .collect();
    // What each slot's consumer has not confirmed: near 0 while it confirms,
    // whatever the retained WAL does (docs/faults.md#idle-window).
    bytes.extend(slots.iter().enumerate().filter_map(|(i, name)| {
        line(
            &format!("WAL not confirmed by slot {name}"),
            fault_colour(i + 4 + slots.len()),
            &|s| s.unconfirmed.get(*name).map(|&b| b as f64 / 1048576.0),
        )
    }));
    bytes.extend(line("outbox table size", RGBColor(44, 160, 44), &|s| {
        s.outbox_bytes.map(|b| b as f64 / 1048576.0)
    }));
    if !bytes.is_empty() {
        plots.push(("Retained WAL and outbox size over time", "MiB", bytes));
    }
    plots
}

/// Lines of sampled values against time, with the fault bands.
pub fn ops_svg(y_desc: &str, lines: &[OpsLine], faults: FaultMarks, end_s: f64) -> Result<String> {
    let max_y = lines
        .iter()
        .flat_map(|(_, _, v)| v.iter().map(|p| p.1))
        .fold(0.0, f64::max)
        .max(1.0)
        * 1.1;
    let end_s = lines
        .iter()
        .flat_map(|(_, _, v)| v.iter().map(|p| p.0))
        .fold(end_s, f64::max);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        let mut chart = frame(&root)?
            .build_cartesian_2d(0f64..end_s, 0f64..max_y)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("seconds since the run started")
            .y_desc(y_desc)
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(err)?;
        draw_bands(&mut chart, faults, end_s, (0.0, max_y))?;
        for (_, colour, points) in lines {
            chart
                .draw_series(LineSeries::new(points.iter().copied(), colour.stroke_width(2)))
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}
