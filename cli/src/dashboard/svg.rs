//! SVG charts drawn on the server: a horizontal bar chart (one bar per key) and a line chart over
//! time buckets (one line per key, with a legend), with axis labels. Every label is escaped here,
//! since model and app names come from untrusted traffic. Only presentation attributes are used
//! (no `style`), so the page's CSP holds. It draws; it must not read data.

use std::fmt::Write as _;

/// Escapes text for XML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Colours for series, in order.
const PALETTE: [&str; 8] = [
    "#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777",
];

/// A colour for the `i`th series.
pub fn colour(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

/// A value as a short label: `1.2k`, `3.4M`, or with `$` and enough decimals for small costs.
pub fn label(v: f64, usd: bool) -> String {
    if usd {
        return if v == 0.0 {
            "$0".into()
        } else if v < 0.01 {
            format!("${v:.6}")
        } else {
            format!("${v:.2}")
        };
    }
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{}", v.round())
    }
}

/// A bar chart: one labelled bar per `(key, value)`, largest first as given.
pub fn bars(title: &str, usd: bool, items: &[(String, f64)]) -> String {
    let row = 26.0;
    let (left, width) = (200.0, 540.0);
    let height = 40.0 + row * items.len().max(1) as f64 + 24.0;
    let max = items.iter().map(|i| i.1).fold(0.0, f64::max);
    let mut s = open(title, width + left + 90.0, height);
    let _ = write!(
        s,
        r##"<text x="0" y="18" class="title" font-weight="600">{}</text>"##,
        esc(title)
    );
    if items.is_empty() {
        let _ = write!(
            s,
            r##"<text x="{left}" y="52" fill="#64748b">no requests in this range</text>"##
        );
    }
    for (i, (key, v)) in items.iter().enumerate() {
        let y = 34.0 + row * i as f64;
        let w = if max > 0.0 {
            (v / max * width).max(1.0)
        } else {
            1.0
        };
        let _ = write!(
            s,
            r##"<g class="bar" data-key="{k}"><title>{k}: {l}</title><text x="{tx}" y="{ty}" text-anchor="end" font-size="12">{t}</text><rect x="{left}" y="{y}" width="{w:.1}" height="18" rx="3" fill="{c}"/><text x="{vx:.1}" y="{ty}" font-size="12" fill="#334155">{l}</text></g>"##,
            k = esc(key),
            t = esc(&truncate(key, 26)),
            l = esc(&label(*v, usd)),
            tx = left - 8.0,
            ty = y + 13.0,
            c = colour(i),
            vx = left + w + 6.0,
        );
    }
    // The value axis: 0 and the maximum.
    let ay = height - 18.0;
    let _ = write!(
        s,
        r##"<line x1="{left}" y1="{y0}" x2="{left}" y2="{ay}" stroke="#94a3b8"/><line x1="{left}" y1="{ay}" x2="{x2}" y2="{ay}" stroke="#94a3b8"/><text x="{left}" y="{ly}" font-size="11" fill="#64748b">0</text><text x="{x2}" y="{ly}" font-size="11" text-anchor="end" fill="#64748b">{m}</text>"##,
        y0 = 30.0,
        x2 = left + width,
        ly = ay + 14.0,
        m = esc(&label(max, usd)),
    );
    s.push_str("</svg>");
    s
}

/// A line chart: `x_labels` name the buckets; each series has one value per bucket.
pub fn lines(title: &str, usd: bool, x_labels: &[String], series: &[(String, Vec<f64>)]) -> String {
    let (left, top, w, h) = (70.0, 34.0, 620.0, 200.0);
    let legend_rows = series.len().div_ceil(3) as f64;
    let height = top + h + 40.0 + 20.0 * legend_rows;
    let mut s = open(title, left + w + 40.0, height);
    let _ = write!(
        s,
        r##"<text x="0" y="18" font-weight="600">{}</text>"##,
        esc(title)
    );
    let max = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(0.0, f64::max);
    let n = x_labels.len().max(2);
    let x = |i: usize| left + w * i as f64 / (n - 1) as f64;
    let y = |v: f64| top + h - if max > 0.0 { v / max * h } else { 0.0 };
    // Axes, grid and labels.
    for k in 0..=4 {
        let v = max * f64::from(k) / 4.0;
        let gy = y(v);
        let _ = write!(
            s,
            r##"<line x1="{left}" y1="{gy:.1}" x2="{x2}" y2="{gy:.1}" stroke="#e2e8f0"/><text x="{lx}" y="{ty:.1}" font-size="11" text-anchor="end" fill="#64748b">{l}</text>"##,
            x2 = left + w,
            lx = left - 6.0,
            ty = gy + 4.0,
            l = esc(&label(v, usd)),
        );
    }
    let _ = write!(
        s,
        r##"<line x1="{left}" y1="{top}" x2="{left}" y2="{b}" stroke="#94a3b8"/><line x1="{left}" y1="{b}" x2="{x2}" y2="{b}" stroke="#94a3b8"/>"##,
        b = top + h,
        x2 = left + w,
    );
    let step = (x_labels.len() / 6).max(1);
    for (i, l) in x_labels.iter().enumerate().step_by(step) {
        let _ = write!(
            s,
            r##"<text x="{:.1}" y="{}" font-size="11" text-anchor="middle" fill="#64748b">{}</text>"##,
            x(i),
            top + h + 16.0,
            esc(l)
        );
    }
    for (i, (key, values)) in series.iter().enumerate() {
        let points: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(j, v)| format!("{:.1},{:.1}", x(j), y(*v)))
            .collect();
        let ly = top + h + 36.0 + 20.0 * (i / 3) as f64;
        let lx = left + 210.0 * (i % 3) as f64;
        let _ = write!(
            s,
            r##"<g class="series" data-key="{k}"><title>{k}</title><polyline points="{p}" fill="none" stroke="{c}" stroke-width="2"/><rect x="{lx}" y="{ry}" width="12" height="12" fill="{c}"/><text x="{tx}" y="{ly}" font-size="12">{t}</text></g>"##,
            k = esc(key),
            t = esc(&truncate(key, 26)),
            p = points.join(" "),
            c = colour(i),
            ry = ly - 10.0,
            tx = lx + 16.0,
        );
    }
    s.push_str("</svg>");
    s
}

fn open(title: &str, width: f64, height: f64) -> String {
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:.0} {height:.0}" width="{width:.0}" height="{height:.0}" role="img" aria-label="{}" font-family="system-ui, sans-serif" font-size="13" fill="#0f172a">"##,
        esc(title)
    )
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bar_per_key_with_labels_escaped() {
        let items = vec![
            ("gpt-4o".to_string(), 2.0),
            ("<img src=x onerror=alert(1)>".to_string(), 1.0),
        ];
        let svg = bars("Cost by model", true, &items);
        assert_eq!(svg.matches("<rect ").count(), 2, "{svg}");
        assert!(svg.contains(r#"data-key="gpt-4o""#));
        assert!(svg.contains("&lt;img src=x onerror=alert(1)&gt;"), "{svg}");
        assert!(!svg.contains("<img"), "{svg}");
        assert!(svg.contains("$2.00") && svg.contains("$1.00"));
        // The largest bar fills the width; the other is half of it.
        assert!(
            svg.contains(r#"width="540.0""#) && svg.contains(r#"width="270.0""#),
            "{svg}"
        );
        assert!(bars("x", false, &[]).contains("no requests in this range"));
    }

    #[test]
    fn a_line_per_series_with_a_legend() {
        let x: Vec<String> = (0..4).map(|i| format!("{i}:00")).collect();
        let series = vec![
            ("a\"b".to_string(), vec![0.0, 10.0, 20.0, 5.0]),
            ("c".to_string(), vec![1.0, 1.0, 1.0, 1.0]),
        ];
        let svg = lines("Tokens", false, &x, &series);
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains(r#"data-key="a&quot;b""#), "{svg}");
        assert!(svg.contains(">0:00<") && svg.contains(">20<"), "{svg}");
    }

    #[test]
    fn labels_are_short() {
        assert_eq!(label(12_345.0, false), "12.3k");
        assert_eq!(label(2_500_000.0, false), "2.5M");
        assert_eq!(label(0.000435, true), "$0.000435");
        assert_eq!(label(0.0, true), "$0");
    }
}
