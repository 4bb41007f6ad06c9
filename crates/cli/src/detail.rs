//! The per-table breakdown of an estimate (`defender_pipeline::breakdown`) for people: the
//! terminal text of `estimate --detail` and `filter check`, and the HTML sections of
//! `estimate --html` (a "where to save" table, per table a stacked bar of column shares and a
//! bar chart of groups).

use std::{collections::HashMap, fmt::Write as _};

use defender_pipeline::{
    breakdown::{Breakdown, GroupCost, Saving, TableDetail},
    estimate::{Estimate, TableEstimate},
};

use crate::html::{bars, esc};

/// Columns listed per table in the terminal; the rest are summed on one line.
const COLUMNS_SHOWN: usize = 10;

/// Colours of the stacked column bar, heaviest column first; the last is the rest.
pub const COLUMN_COLORS: [&str; 11] = [
    "#0969da", "#bf3989", "#1a7f37", "#9a6700", "#8250df", "#cf222e", "#1b7c83", "#953800", "#6e7781", "#4d2d00",
    "#d0d7de",
];
/// Colours of the group bars: the whole table, and what the filter sends.
pub const GROUP_COLORS: [&str; 2] = ["#d4a72c", "#6639ba"];

fn pct(share: f64) -> String {
    format!("{:.1}%", share * 100.0)
}

/// The tables with a breakdown, in the estimate's order.
fn detailed(e: &Estimate) -> impl Iterator<Item = (&TableEstimate, &TableDetail)> {
    e.tables.iter().filter_map(|t| Some((t, t.detail.as_ref()?))).filter(|(_, d)| d.before.billed_bytes > 0)
}

/// Per table: billed GB/day and $/month per column and per group, before and after the filter,
/// and the savings to paste. `sent_only` keeps the tables sent to Sentinel.
pub fn text(e: &Estimate, sent_only: bool) -> String {
    let cur = &e.prices.currency;
    let mut out = String::new();
    for (t, d) in detailed(e).filter(|(_, d)| !sent_only || d.after.is_some()) {
        let _ = writeln!(
            out,
            "\n{}: {:.4} GB/day, {:.2} {cur}/month before; {}",
            t.table,
            t.gb_per_day_before,
            t.cost_per_month.analytics_before,
            match &d.after {
                Some(_) => format!(
                    "{:.4} GB/day, {:.2} {cur}/month after",
                    t.gb_per_day_after, t.cost_per_month.analytics_after
                ),
                None => "not sent to Sentinel".to_string(),
            }
        );
        columns_text(&mut out, &d.before, d.after.as_ref(), cur);
        groups_text(&mut out, &d.before, d.after.as_ref(), cur);
        for s in &d.savings {
            let _ = writeln!(
                out,
                "  save {:>9.4} GB/day {:>9.2} {cur}/month ({:>5} of what is sent): {}",
                s.gb_per_day,
                s.cost_per_month,
                pct(s.share),
                s.line
            );
        }
    }
    if !out.is_empty() {
        let _ = writeln!(
            out,
            "\ncolumns add up to the table; TimeGenerated and RecordId_CF (*) are paid by every row. \
             Savings are each alone, on this sample, analytics tier: append the line to the table's sentinel_filter."
        );
    }
    out
}

fn columns_text(out: &mut String, before: &Breakdown, after: Option<&Breakdown>, cur: &str) {
    let after_of: HashMap<&str, (u64, f64, f64)> = after
        .map(|a| {
            a.columns.iter().map(|c| (c.column.as_str(), (c.billed_bytes, c.gb_per_day, c.cost_per_month))).collect()
        })
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "  {:<42} {:>11} {:>12} {:>7} {:>11} {:>12}",
        "column (Sentinel name)",
        "GB/d before",
        format!("{cur}/mo before"),
        "share",
        "GB/d after",
        format!("{cur}/mo after")
    );
    let line = |out: &mut String, name: &str, gb: f64, cost: f64, share: f64, after: Option<(f64, f64)>| {
        let (ga, ca) = match (after, after_of.is_empty()) {
            (Some((g, c)), _) => (format!("{g:.4}"), format!("{c:.2}")),
            (None, false) => ("0".to_string(), "0".to_string()),
            (None, true) => ("-".to_string(), "-".to_string()),
        };
        let _ = writeln!(out, "  {name:<42} {gb:>11.4} {cost:>12.2} {:>7} {ga:>11} {ca:>12}", pct(share));
    };
    for c in before.columns.iter().take(COLUMNS_SHOWN) {
        let name = format!("{}{}", c.sentinel_column, if c.fixed { " *" } else { "" });
        let a = after_of.get(c.column.as_str()).map(|a| (a.1, a.2));
        line(out, &name, c.gb_per_day, c.cost_per_month, c.share, a);
    }
    let rest = &before.columns[before.columns.len().min(COLUMNS_SHOWN)..];
    if !rest.is_empty() {
        let sum = |f: &dyn Fn(&defender_pipeline::breakdown::ColumnCost) -> f64| rest.iter().map(f).sum::<f64>();
        let after_rest = (!after_of.is_empty()).then(|| {
            rest.iter().filter_map(|c| after_of.get(c.column.as_str())).fold((0.0, 0.0), |s, a| (s.0 + a.1, s.1 + a.2))
        });
        line(
            out,
            &format!("{} more columns", rest.len()),
            sum(&|c| c.gb_per_day),
            sum(&|c| c.cost_per_month),
            sum(&|c| c.share),
            after_rest,
        );
    }
}

fn groups_text(out: &mut String, before: &Breakdown, after: Option<&Breakdown>, cur: &str) {
    let Some(g) = &before.groups else { return };
    let after_groups = after.and_then(|a| a.groups.as_ref());
    let after_of: HashMap<&str, &GroupCost> = after_groups
        .map(|a| a.values.iter().chain(&a.rest).map(|g| (g.value.as_str(), g)).collect())
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "  {:<42} {:>11} {:>12} {:>7} {:>9} {:>11} {:>12}",
        format!("by {}", g.column),
        "GB/d before",
        format!("{cur}/mo before"),
        "share",
        "rows",
        "GB/d after",
        format!("{cur}/mo after")
    );
    for v in g.values.iter().chain(&g.rest) {
        let (ga, ca) = match (after_of.get(v.value.as_str()), after_groups.is_some()) {
            (Some(a), _) => (format!("{:.4}", a.gb_per_day), format!("{:.2}", a.cost_per_month)),
            (None, true) => ("0".to_string(), "0".to_string()),
            (None, false) => ("-".to_string(), "-".to_string()),
        };
        let _ = writeln!(
            out,
            "  {:<42} {:>11.4} {:>12.2} {:>7} {:>9} {ga:>11} {ca:>12}",
            v.value,
            v.gb_per_day,
            v.cost_per_month,
            pct(v.share),
            v.rows
        );
    }
}

/// The "where to save" table: the largest savings of all tables.
pub fn html_savings(e: &Estimate) -> String {
    if e.top_savings.is_empty() {
        return "<p>No saving to suggest: no table is sent to Sentinel.</p>\n".to_string();
    }
    let cur = esc(&e.prices.currency);
    let mut rows = String::new();
    for s in &e.top_savings {
        let _ = writeln!(rows, "{}", saving_row(s));
    }
    format!(
        r#"<h2>Where to save</h2>
<table id="where-to-save"><tr><th>table</th><th>change</th><th>GB/day saved</th><th>{cur}/month saved</th><th>of the table</th><th>line to append to <code>sentinel_filter</code></th></tr>
{rows}</table>
<p class="note">Each saving alone, on this sample, Sentinel analytics tier. Never suggested for removal: the columns detections and analytics rules rely on (<code>defender_pipeline::breakdown::PROTECTED_COLUMNS</code>).</p>
"#
    )
}

fn saving_row(s: &Saving) -> String {
    let what = match &s.value {
        Some(v) => format!("drop {} = {}", s.column, v),
        None => format!("drop column {}", s.column),
    };
    format!(
        r#"<tr><td>{}</td><td>{}</td><td>{:.4}</td><td>{:.2}</td><td>{}</td><td class="kql"><code>{}</code></td></tr>"#,
        esc(&s.table),
        esc(&what),
        s.gb_per_day,
        s.cost_per_month,
        pct(s.share),
        esc(&s.line)
    )
}

/// One stacked horizontal bar of a table's column shares, heaviest first, with a legend.
fn column_bar(id: &str, table: &str, b: &Breakdown) -> String {
    let (width, bar_h, x0) = (900.0, 26.0, 0.0);
    let shown = COLUMN_COLORS.len() - 1;
    let mut segments: Vec<(String, f64, f64)> =
        b.columns.iter().take(shown).map(|c| (c.sentinel_column.clone(), c.share, c.gb_per_day)).collect();
    if b.columns.len() > shown {
        let rest = &b.columns[shown..];
        segments.push((
            format!("{} more columns", rest.len()),
            rest.iter().map(|c| c.share).sum(),
            rest.iter().map(|c| c.gb_per_day).sum(),
        ));
    }
    let legend_rows = segments.len().div_ceil(3);
    let height = 30.0 + bar_h + 10.0 + 18.0 * legend_rows as f64;
    let mut svg = format!(
        r#"<svg id="{id}" class="column-shares" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" aria-label="{t}">
<text x="0" y="18" class="title">{t}</text>
"#,
        t = esc(&format!("{table}: share of billed bytes per column"))
    );
    let mut x = x0;
    for (i, (name, share, gb)) in segments.iter().enumerate() {
        let w = share * width;
        let _ = writeln!(
            svg,
            r#"<rect x="{x:.1}" y="28" width="{w:.1}" height="{bar_h}" fill="{}"><title>{} {} ({gb:.4} GB/day)</title></rect>"#,
            COLUMN_COLORS[i],
            esc(name),
            pct(*share)
        );
        x += w;
        let (lx, ly) = (300.0 * (i % 3) as f64, 28.0 + bar_h + 22.0 + 18.0 * (i / 3) as f64);
        let _ = writeln!(
            svg,
            r#"<rect x="{lx}" y="{}" width="12" height="12" fill="{}"/><text x="{}" y="{ly}" class="label">{} {}</text>"#,
            ly - 10.0,
            COLUMN_COLORS[i],
            lx + 16.0,
            esc(name),
            pct(*share)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// Per table (costliest first): its column bar (what is sent when it goes to Sentinel, else the
/// whole table), its group chart (before and after), and its savings.
pub fn html_tables(e: &Estimate) -> String {
    let cur = &e.prices.currency;
    let mut tables: Vec<_> = detailed(e).collect();
    tables.sort_by(|a, b| b.0.cost_per_month.analytics_before.total_cmp(&a.0.cost_per_month.analytics_before));
    let mut out = String::from("<h2>Where each table's cost comes from</h2>\n");
    for (t, d) in tables {
        let id = t.table.replace(|c: char| !c.is_ascii_alphanumeric(), "-");
        let _ = writeln!(
            out,
            "<section class=\"table-detail\"><h3>{}</h3><p>{:.4} GB/day, {:.2} {} a month before; {}</p>",
            esc(&t.table),
            t.gb_per_day_before,
            t.cost_per_month.analytics_before,
            esc(cur),
            match &d.after {
                Some(_) => format!(
                    "{:.4} GB/day, {:.2} {} a month sent",
                    t.gb_per_day_after,
                    t.cost_per_month.analytics_after,
                    esc(cur)
                ),
                None => "not sent to Sentinel".to_string(),
            }
        );
        let (side, which) = match &d.after {
            Some(a) if a.billed_bytes > 0 => (a, "what the filter sends"),
            _ => (&d.before, "whole table"),
        };
        out.push_str(&column_bar(&format!("columns-{id}"), &format!("{} ({which})", t.table), side));
        if let Some(g) = &d.before.groups {
            let values: Vec<&GroupCost> = g.values.iter().chain(&g.rest).collect();
            let labels: Vec<String> = values.iter().map(|v| format!("{} ({} rows)", v.value, v.rows)).collect();
            let mut series = vec![("whole table", GROUP_COLORS[0], values.iter().map(|v| v.gb_per_day).collect())];
            if let Some(a) = d.after.as_ref().and_then(|a| a.groups.as_ref()) {
                let of: HashMap<&str, f64> =
                    a.values.iter().chain(&a.rest).map(|g| (g.value.as_str(), g.gb_per_day)).collect();
                series.push((
                    "after the filter",
                    GROUP_COLORS[1],
                    values.iter().map(|v| of.get(v.value.as_str()).copied().unwrap_or(0.0)).collect(),
                ));
            }
            out.push_str(&bars(
                &format!("groups-{id}"),
                &format!("{}: billed GB/day per {}", t.table, g.column),
                "GB/day",
                &labels,
                &series,
            ));
        }
        if !d.savings.is_empty() {
            out.push_str("<table class=\"savings\"><tr><th>table</th><th>change</th><th>GB/day saved</th><th>");
            let _ = write!(out, "{}/month saved</th><th>of the table</th><th>line to append</th></tr>", esc(cur));
            for s in &d.savings {
                out.push_str(&saving_row(s));
            }
            out.push_str("</table>\n");
        }
        out.push_str("</section>\n");
    }
    out
}
