//! Accuracy-versus-production-rate curves, as CSV and as SVG.
//!
//! Records are ranked by the confidence of their best 6-digit code. Coding
//! only the top share `p` of them gives production rate `p` and the
//! accuracy of those records' best codes; lowering a confidence threshold
//! moves along this curve.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use plotters::prelude::*;

use crate::{Evaluation, Prediction};
use occoder_train::LabelledRecord;

/// One point of the curve.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct CurvePoint {
    /// Share of records coded at 6 digits.
    pub production_rate: f64,
    /// Share of those records whose best 6-digit code is right.
    pub accuracy: f64,
    /// Lowest confidence among the coded records.
    pub threshold: f32,
}

/// Points at production rates of 1 %, 2 %, ..., 100 %.
pub(crate) fn accuracy_curve(records: &[LabelledRecord], predictions: &[Prediction]) -> Vec<CurvePoint> {
    let mut ranked: Vec<(f32, bool)> = records
        .iter()
        .zip(predictions)
        .filter(|(record, _)| record.code.trim().len() == 6)
        .map(|(record, p)| (p.confidence, p.ranked.first().is_some_and(|c| c == record.code.trim())))
        .collect();
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    if ranked.is_empty() {
        return Vec::new();
    }

    let mut points = Vec::with_capacity(100);
    let mut correct = 0usize;
    let mut next_percent = 1;
    for (position, &(confidence, right)) in ranked.iter().enumerate() {
        correct += right as usize;
        let coded = position + 1;
        while next_percent <= 100 && coded * 100 >= next_percent * ranked.len() {
            points.push(CurvePoint {
                production_rate: coded as f64 / ranked.len() as f64,
                accuracy: correct as f64 / coded as f64,
                threshold: confidence,
            });
            next_percent += 1;
        }
    }
    points
}

/// Writes the curves of several coders to one CSV file with columns
/// `coder, production_rate, accuracy, threshold`.
pub fn write_curve_csv(evaluations: &[Evaluation], path: &Path) -> std::io::Result<()> {
    let mut out = BufWriter::new(File::create(path)?);
    writeln!(out, "coder,production_rate,accuracy,threshold")?;
    for evaluation in evaluations {
        for point in &evaluation.curve {
            writeln!(
                out,
                "\"{}\",{:.4},{:.4},{:.6}",
                evaluation.coder.replace('"', "'"),
                point.production_rate,
                point.accuracy,
                point.threshold
            )?;
        }
    }
    out.flush()
}

/// Draws the curves of several coders as an SVG line chart.
pub fn write_curve_svg(evaluations: &[Evaluation], title: &str, path: &Path) -> Result<(), String> {
    let root = SVGBackend::new(path, (800, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0f64..1.0f64, 0.0f64..1.0f64)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("production rate (share of records coded at 6 digits)")
        .y_desc("accuracy of coded records")
        .draw()
        .map_err(|e| e.to_string())?;

    const COLOURS: [RGBColor; 5] = [BLUE, RED, GREEN, MAGENTA, CYAN];
    for (evaluation, colour) in evaluations.iter().zip(COLOURS.iter().cycle()) {
        let points = evaluation.curve.iter().map(|p| (p.production_rate, p.accuracy));
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(evaluation.coder.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}
