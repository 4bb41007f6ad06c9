//! The estimate as one self-contained HTML file: inline CSS and SVG charts, no script, nothing
//! fetched, so it opens anywhere and can be mailed around.

use std::fmt::Write as _;

use defender_core::billing::STRING_FORMS;
use defender_pipeline::estimate::Estimate;

pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Horizontal bar chart: one group per label, one bar per series.
pub(crate) fn bars(id: &str, title: &str, unit: &str, labels: &[String], series: &[(&str, &str, Vec<f64>)]) -> String {
    let (label_w, bar_w, bar_h, gap) = (300.0, 520.0, 14.0, 10.0);
    let max = series.iter().flat_map(|s| s.2.iter().copied()).fold(0.0_f64, f64::max).max(f64::MIN_POSITIVE);
    let group_h = bar_h * series.len() as f64 + gap;
    let height = 40.0 + group_h * labels.len() as f64 + 30.0;
    let mut svg = format!(
        r#"<svg id="{id}" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" role="img" aria-label="{t}">
<text x="0" y="18" class="title">{t}</text>
"#,
        w = label_w + bar_w + 120.0,
        t = esc(title)
    );
    for (i, label) in labels.iter().enumerate() {
        let y0 = 40.0 + group_h * i as f64;
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" class="label" text-anchor="end">{}</text>"#,
            label_w - 8.0,
            y0 + bar_h * series.len() as f64 / 2.0 + 4.0,
            esc(label)
        );
        for (j, (_, color, values)) in series.iter().enumerate() {
            let v = values[i];
            let w = (v / max * bar_w).max(if v > 0.0 { 1.0 } else { 0.0 });
            let y = y0 + bar_h * j as f64;
            let _ = writeln!(
                svg,
                r#"<rect x="{label_w}" y="{y}" width="{w:.1}" height="{h}" fill="{color}"><title>{v:.4} {unit}</title></rect><text x="{tx:.1}" y="{ty}" class="value">{v:.3}</text>"#,
                h = bar_h - 2.0,
                tx = label_w + w + 4.0,
                ty = y + bar_h - 4.0,
            );
        }
    }
    let ly = height - 12.0;
    for (j, (name, color, _)) in series.iter().enumerate() {
        let x = label_w + 170.0 * j as f64;
        let _ = writeln!(
            svg,
            r#"<rect x="{x}" y="{}" width="12" height="12" fill="{color}"/><text x="{}" y="{ly}" class="label">{}</text>"#,
            ly - 10.0,
            x + 16.0,
            esc(name)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// The report.
pub fn report(e: &Estimate) -> String {
    let p = &e.prices;
    let tables: Vec<_> = e.tables.iter().filter(|t| t.gb_per_day_before > 0.0 || t.gb_per_day_after > 0.0).collect();
    let labels: Vec<String> = tables.iter().map(|t| t.table.clone()).collect();
    let gb_chart = bars(
        "gb-per-day",
        "Billed GB/day in Sentinel, per table: all of it vs. what the filters send",
        "GB/day",
        &labels,
        &[
            ("whole table", "#b0b7c3", tables.iter().map(|t| t.gb_per_day_before).collect()),
            ("after selection and filters", "#1f6feb", tables.iter().map(|t| t.gb_per_day_after).collect()),
        ],
    );
    let c = &e.totals.cost_per_month;
    let tiers = vec![
        "Sentinel analytics, all tables".to_string(),
        "Sentinel analytics, filtered".to_string(),
        "Basic, filtered".to_string(),
        "Auxiliary / data lake, filtered".to_string(),
        "Parquet archive storage".to_string(),
    ];
    let cost_chart = bars(
        "cost-per-tier",
        &format!("Cost per month ({}), per tier", p.currency),
        &format!("{}/month", p.currency),
        &tiers,
        &[(
            "per month",
            "#2da44e",
            vec![c.analytics_before, c.analytics_after, c.basic_after, c.auxiliary_after, c.archive],
        )],
    );
    let mut rows = String::new();
    for t in e.tables.iter().chain([&e.totals]) {
        let note = match t.sentinel_refused.as_deref() {
            Some("tvm") => "TVM: never sent to Sentinel",
            Some(_) => "unknown table: archive only",
            None if !t.sentinel => "not sent to Sentinel",
            None => "",
        };
        let _ = writeln!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.4}</td><td>{:.4}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.4}</td><td>{}</td></tr>",
            esc(&t.table),
            t.records,
            t.records_per_second,
            t.gb_per_day_before,
            t.gb_per_day_after,
            t.cost_per_month.analytics_before,
            t.cost_per_month.analytics_after,
            t.cost_per_month.basic_after,
            t.cost_per_month.auxiliary_after,
            t.parquet_gb_per_day,
            note
        );
    }
    let forms: String = STRING_FORMS
        .iter()
        .map(|f| {
            format!(
                "<tr><td>{:?}</td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
                f.ty,
                esc(f.form),
                esc(f.example),
                f.bytes
            )
        })
        .collect();
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>defender-ingest estimate</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #1f2328; }}
h1 {{ font-size: 1.4rem; }} .summary {{ font-size: 1.1rem; margin: 1rem 0; }}
table {{ border-collapse: collapse; margin: 1rem 0; font-size: .85rem; }}
td, th {{ border: 1px solid #d0d7de; padding: .25rem .5rem; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
svg .title {{ font-weight: 600; font-size: 14px; }} svg .label, svg .value {{ font-size: 11px; }}
td.kql {{ text-align: left; }} .note {{ font-size: .8rem; color: #57606a; }} svg {{ display: block; margin: .5rem 0; }}
</style></head><body>
<h1>defender-ingest estimate</h1>
<p class="summary">Sample: {span:.1} s of event time, {records} records. Selection and filters save
<strong>{saving:.2} {cur}/month</strong> in the Sentinel analytics tier
({before:.4} → {after:.4} GB/day).</p>
{savings}
{gb_chart}
{cost_chart}
<table><tr><th>table</th><th>records</th><th>records/s</th><th>GB/day before</th><th>GB/day after</th>
<th>analytics before</th><th>analytics after</th><th>basic</th><th>auxiliary</th><th>Parquet GB/day</th><th></th></tr>
{rows}</table>
{details}
<h2>How billed size is computed</h2>
<p>Per record, Log Analytics bills the string form of each non-empty value plus <code>TimeGenerated</code>,
in GB of 10<sup>9</sup> bytes. Calibrate with <code>--calibrate</code> against <code>_BilledSize</code> from your workspace.</p>
<table><tr><th>type</th><th>string form</th><th>example</th><th>bytes</th></tr>{forms}</table>
<p>Prices ({cur}, as of {as_of}) are illustrative list prices; override them in the <code>[prices]</code>
section: analytics {a}/GB, basic {b}/GB, auxiliary {x}/GB, archive storage {s}/GB-month.</p>
</body></html>
"#,
        savings = crate::detail::html_savings(e),
        details = crate::detail::html_tables(e),
        span = e.event_span_seconds,
        records = e.totals.records,
        saving = e.saving_per_month,
        cur = esc(&p.currency),
        before = e.totals.gb_per_day_before,
        after = e.totals.gb_per_day_after,
        as_of = esc(&p.as_of),
        a = p.analytics_per_gb,
        b = p.basic_per_gb,
        x = p.auxiliary_per_gb,
        s = p.archive_storage_per_gb_month,
    )
}
