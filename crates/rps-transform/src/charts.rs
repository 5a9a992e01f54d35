//! The profile's charts, drawn with plotters' SVG backend into strings that the HTML
//! template inlines. Nothing here references anything outside the SVG itself.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// A chart that could not be drawn (plotters error text).
pub type ChartResult = std::result::Result<String, String>;

const FONT: &str = "sans-serif";

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Inline SVG in HTML5 needs no namespace; dropping it keeps the report free of any URL.
fn inline(svg: String) -> String {
    svg.replacen(" xmlns=\"http://www.w3.org/2000/svg\"", "", 1)
}

/// Short axis labels: 4 significant digits, scientific for very large/small magnitudes.
pub fn short(v: f64) -> String {
    let a = v.abs();
    if v == 0.0 || !v.is_finite() {
        format!("{v}")
    } else if !(1e-3..1e5).contains(&a) {
        format!("{v:.2e}")
    } else {
        let s = format!("{v:.4}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_string()
    }
}

/// A histogram of the finite values, `bins` equal-width bins between their min and max.
pub fn histogram(title: &str, values: &[f64], bins: usize) -> ChartResult {
    let bins = bins.max(1);
    let finite = values.iter().copied().filter(|x| x.is_finite());
    let (mut lo, mut hi) = finite
        .clone()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(x), b.max(x))
        });
    if lo > hi {
        (lo, hi) = (0.0, 1.0);
    }
    if lo == hi {
        (lo, hi) = (lo - 0.5, hi + 0.5);
    }
    let width = (hi - lo) / bins as f64;
    let mut counts = vec![0_usize; bins];
    for x in finite {
        let b = (((x - lo) / width) as usize).min(bins - 1);
        counts[b] += 1;
    }
    let ymax = (counts.iter().copied().max().unwrap_or(0) as f64 * 1.08).max(1.0);
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (300, 190)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 14))
            .margin(6)
            .x_label_area_size(20)
            .y_label_area_size(46)
            .build_cartesian_2d(lo..hi, 0.0..ymax)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(4)
            .y_labels(4)
            .label_style((FONT, 10))
            .x_label_formatter(&|v| short(*v))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .draw()
            .map_err(err)?;
        let fill = RGBColor(49, 110, 180).filled();
        chart
            .draw_series(counts.iter().enumerate().map(|(i, &c)| {
                let x0 = lo + i as f64 * width;
                Rectangle::new([(x0, 0.0), (x0 + width, c as f64)], fill)
            }))
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(inline(buf))
}

/// Blue (-1) – white (0) – red (+1); grey for an undefined correlation.
fn diverging(c: f64) -> RGBColor {
    if !c.is_finite() {
        return RGBColor(200, 200, 200);
    }
    let c = c.clamp(-1.0, 1.0);
    let (end, t) = if c < 0.0 {
        ((33, 102, 172), -c)
    } else {
        ((178, 24, 43), c)
    };
    let mix = |e: u8| (255.0 + (e as f64 - 255.0) * t).round() as u8;
    RGBColor(mix(end.0), mix(end.1), mix(end.2))
}

/// The correlation matrix as a heatmap with the names on both axes and a colour bar.
pub fn heatmap(names: &[String], corr: &[Vec<f64>]) -> ChartResult {
    let n = names.len() as i32;
    let cell = 14;
    let label = 130;
    let size = (
        (label + n * cell + 70) as u32,
        (label + n * cell + 10) as u32,
    );
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, size).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let font = (FONT, 10).into_font().color(&BLACK);
        for (i, row) in corr.iter().enumerate() {
            let y0 = label + i as i32 * cell;
            for (j, &c) in row.iter().enumerate() {
                let x0 = label + j as i32 * cell;
                root.draw(&Rectangle::new(
                    [(x0, y0), (x0 + cell, y0 + cell)],
                    diverging(c).filled(),
                ))
                .map_err(err)?;
            }
        }
        for (i, name) in names.iter().enumerate() {
            let p = label + i as i32 * cell + cell / 2;
            root.draw(&Text::new(
                name.as_str(),
                (label - 4, p),
                font.clone().pos(Pos::new(HPos::Right, VPos::Center)),
            ))
            .map_err(err)?;
            root.draw(&Text::new(
                name.as_str(),
                (p, label - 4),
                font.clone()
                    .transform(FontTransform::Rotate270)
                    .pos(Pos::new(HPos::Left, VPos::Center)),
            ))
            .map_err(err)?;
        }
        // Colour bar: +1 at the top, -1 at the bottom.
        let bx = label + n * cell + 16;
        let steps = 20;
        let h = (n * cell).max(steps) / steps;
        for s in 0..steps {
            let c = 1.0 - 2.0 * (s as f64 + 0.5) / steps as f64;
            let y0 = label + s * h;
            root.draw(&Rectangle::new(
                [(bx, y0), (bx + 12, y0 + h)],
                diverging(c).filled(),
            ))
            .map_err(err)?;
        }
        for (v, y) in [
            ("+1", label),
            ("0", label + steps * h / 2),
            ("-1", label + steps * h),
        ] {
            root.draw(&Text::new(
                v,
                (bx + 16, y),
                font.clone().pos(Pos::new(HPos::Left, VPos::Center)),
            ))
            .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(inline(buf))
}

/// Close price over time; each gap-free run is its own line so holes stay visible.
pub fn price_chart(coin: &str, runs: &[Vec<(i64, f64)>]) -> ChartResult {
    let pts = runs.iter().flatten();
    let (t0, t1) = pts
        .clone()
        .fold((i64::MAX, i64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (y0, y1) = pts.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
        (a.min(p.1), b.max(p.1))
    });
    let (t0, t1) = if t0 >= t1 {
        (t0.min(0), t0.max(0) + 1)
    } else {
        (t0, t1)
    };
    let (y0, y1) = if y0.is_finite() && y1 > y0 {
        let pad = (y1 - y0) * 0.04;
        (y0 - pad, y1 + pad)
    } else if y0.is_finite() {
        (y0 - 1.0, y0 + 1.0)
    } else {
        (0.0, 1.0)
    };
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (900, 280)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("{coin} close (USD)"), (FONT, 14))
            .margin(8)
            .x_label_area_size(24)
            .y_label_area_size(60)
            .build_cartesian_2d(t0 as f64..t1 as f64, y0..y1)
            .map_err(err)?;
        chart
            .configure_mesh()
            .light_line_style(RGBColor(235, 235, 235))
            .x_labels(8)
            .y_labels(6)
            .label_style((FONT, 10))
            .x_label_formatter(&|v| {
                chrono::DateTime::from_timestamp_millis(*v as i64)
                    .map(|t| t.format("%Y-%m-%d").to_string())
                    .unwrap_or_default()
            })
            .y_label_formatter(&|v| short(*v))
            .draw()
            .map_err(err)?;
        let style = RGBColor(49, 110, 180).stroke_width(1);
        for run in runs {
            chart
                .draw_series(LineSeries::new(
                    run.iter().map(|&(t, c)| (t as f64, c)),
                    style,
                ))
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(inline(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_carry_no_namespace_url() {
        let h = histogram("x", &[1.0, 2.0, 2.0, 3.0], 5).unwrap();
        assert!(h.starts_with("<svg") && !h.contains("http"));
        assert!(h.matches("<rect").count() >= 5);
    }

    #[test]
    fn correlations_map_to_blue_white_red() {
        assert_eq!(diverging(0.0), RGBColor(255, 255, 255));
        assert_eq!(diverging(1.0), RGBColor(178, 24, 43));
        assert_eq!(diverging(-1.0), RGBColor(33, 102, 172));
    }

    #[test]
    fn axis_labels_are_short() {
        assert_eq!(short(0.25), "0.25");
        assert_eq!(short(43312.27), "43312.27");
        assert_eq!(short(123456.0), "1.23e5");
        assert_eq!(short(1.0), "1");
    }
}
