//! Table plans: what the service refuses of a stream whose table has the Auxiliary plan
//! (contracts.md §d; Microsoft's "Logs Ingestion API in Azure Monitor" overview and service
//! limits):
//! - nested JSON (an object or array value) into a column not declared `dynamic`: 400, "malformed
//!   JSON" (code `MalformedJson` here; the service's code is not documented, UNVERIFIED);
//! - when the data flow has no transformation (`transformKql` absent or `source`): rows whose
//!   `TimeGenerated` values span 30 minutes or more in one call, 400
//!   `RecordsTimeRangeIsMoreThan30Minutes` (the service's error code; its status is not
//!   documented, 400 assumed). The service names the limit "more than 30 minutes"; we refuse at
//!   30 minutes already, the stricter reading. Values that do not parse as ISO 8601 are left out
//!   of the span (the service would store the ingestion time).
//!
//! Analytics and Basic streams are not checked further. The rules of each stream come from the
//! ARM template `defender-ingest schemas dcr` generates ([`rules_from_template`]): the plan of
//! the table its data flow writes, the declared column types and whether the flow transforms.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::Row;

/// A Log Analytics table plan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TablePlan {
    #[default]
    Analytics,
    Basic,
    Auxiliary,
}

impl std::str::FromStr for TablePlan {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "analytics" => Ok(Self::Analytics),
            "basic" => Ok(Self::Basic),
            "auxiliary" => Ok(Self::Auxiliary),
            other => Err(format!("unknown table plan `{other}`: expected Analytics, Basic or Auxiliary")),
        }
    }
}

/// What the server knows of the table behind one stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamRules {
    pub plan: TablePlan,
    /// Declared column name → type (`string`, `dynamic`, ...); a column not listed is not
    /// checked for nested JSON.
    pub types: BTreeMap<String, String>,
    /// Whether the data flow transforms the stream (a `transformKql` other than `source`).
    pub transformed: bool,
}

/// 30 minutes in nanoseconds.
pub const AUXILIARY_MAX_SPAN_NANOS: i128 = 30 * 60 * 1_000_000_000;

/// A refusal: error code and message (the status is 400).
pub(crate) type Refusal = (&'static str, String);

/// Checks `rows` against the rules of their stream (see the module docs).
pub(crate) fn check(rows: &[Row], rules: &StreamRules) -> Result<(), Refusal> {
    if rules.plan != TablePlan::Auxiliary {
        return Ok(());
    }
    for (i, row) in rows.iter().enumerate() {
        for (key, value) in row {
            let nested = value.is_object() || value.is_array();
            if let Some(ty) = rules.types.get(key)
                && nested
                && ty != "dynamic"
            {
                return Err((
                    "MalformedJson",
                    format!(
                        "malformed JSON: row {i}, column {key} of type {ty} holds nested JSON; a table with the \
                         Auxiliary plan takes nested JSON only into dynamic columns"
                    ),
                ));
            }
        }
    }
    if rules.transformed {
        return Ok(());
    }
    let times = rows.iter().filter_map(|r| r.get("TimeGenerated")?.as_str()).filter_map(parse_time);
    let (lo, hi) = times.fold((i128::MAX, i128::MIN), |(lo, hi), t| (lo.min(t), hi.max(t)));
    if hi >= lo && hi - lo >= AUXILIARY_MAX_SPAN_NANOS {
        return Err((
            "RecordsTimeRangeIsMoreThan30Minutes",
            format!(
                "the TimeGenerated values of the call span {} s: a call to a table with the Auxiliary plan must span \
                 less than 30 minutes",
                (hi - lo) / 1_000_000_000
            ),
        ));
    }
    Ok(())
}

/// `YYYY-MM-DD[T ]HH:MM:SS[.fraction][Z|±HH:MM]` (no zone: UTC) as UTC nanoseconds since the
/// epoch.
pub fn parse_time(s: &str) -> Option<i128> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes().all(|c| c.is_ascii_digit()).then(|| part.parse().ok())?
    };
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' {
        return None;
    }
    if b[16] != b':' {
        return None;
    }
    let (y, mo, d, h, mi, sec) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut nanos: i128 = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        for (i, c) in frac[..digits].bytes().enumerate().take(9) {
            nanos += i128::from(c - b'0') * 10i128.pow(8 - i as u32);
        }
        rest = &frac[digits..];
    }
    let offset_secs: i64 = match rest {
        "" | "Z" | "z" => 0,
        zone if zone.len() == 6 && matches!(&zone[..1], "+" | "-") && &zone[3..4] == ":" => {
            let digits = |p: &str| p.bytes().all(|c| c.is_ascii_digit()).then(|| p.parse::<i64>().ok()).flatten();
            let (zh, zm) = (digits(&zone[1..3])?, digits(&zone[4..6])?);
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            sign * (zh * 3600 + zm * 60)
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_secs;
    Some(i128::from(secs) * 1_000_000_000 + nanos)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Per stream (`Custom-<Table>_CL`), its rules, from an ARM template of tables
/// (`Microsoft.OperationalInsights/workspaces/tables`, with `properties.plan`) and data
/// collection rules (stream declarations and data flows), as `defender-ingest schemas dcr`
/// writes it. A stream whose output table is not in the template gets the Analytics plan.
pub fn rules_from_template(template: &Value) -> Result<BTreeMap<String, StreamRules>, String> {
    let resources = template["resources"].as_array().ok_or("the template has no `resources` array")?;
    let mut plans: BTreeMap<&str, TablePlan> = BTreeMap::new();
    for r in resources.iter().filter(|r| r["type"] == "Microsoft.OperationalInsights/workspaces/tables") {
        let name = r["properties"]["schema"]["name"].as_str().ok_or("a table resource without schema.name")?;
        let plan = r["properties"]["plan"].as_str().unwrap_or("Analytics").parse()?;
        plans.insert(name, plan);
    }
    let mut out = BTreeMap::new();
    for r in resources.iter().filter(|r| r["type"] == "Microsoft.Insights/dataCollectionRules") {
        let props = &r["properties"];
        let declarations = props["streamDeclarations"].as_object().ok_or("a rule without streamDeclarations")?;
        for flow in props["dataFlows"].as_array().ok_or("a rule without dataFlows")? {
            let transform = flow["transformKql"].as_str().unwrap_or("source").trim();
            let output = flow["outputStream"].as_str().unwrap_or("");
            let table = output.strip_prefix("Custom-").unwrap_or(output);
            for stream in flow["streams"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                let columns = declarations
                    .get(stream)
                    .and_then(|d| d["columns"].as_array())
                    .ok_or_else(|| format!("data flow of undeclared stream {stream}"))?;
                let types = columns
                    .iter()
                    .filter_map(|c| Some((c["name"].as_str()?.to_string(), c["type"].as_str()?.to_string())))
                    .collect();
                let rules = StreamRules {
                    plan: plans.get(table).copied().unwrap_or_default(),
                    types,
                    transformed: transform != "source",
                };
                out.insert(stream.to_string(), rules);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(json: &str) -> Vec<Row> {
        serde_json::from_str(json).unwrap()
    }

    fn aux() -> StreamRules {
        StreamRules {
            plan: TablePlan::Auxiliary,
            types: [("TimeGenerated", "datetime"), ("Extra_CF", "string"), ("AdditionalFields", "dynamic")]
                .into_iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            transformed: false,
        }
    }

    #[test]
    fn parses_iso_8601_times_in_utc() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_time("1970-01-01T00:00:01.5Z"), Some(1_500_000_000));
        assert_eq!(parse_time("2026-11-20T10:30:00.1234567Z"), parse_time("2026-11-20 10:30:00.123456700"));
        assert_eq!(parse_time("2026-11-20T11:30:00+01:00"), parse_time("2026-11-20T10:30:00Z"));
        assert_eq!(parse_time("2024-02-29T00:00:00Z"), Some(1_709_164_800_000_000_000));
        for bad in ["", "2026-11-20", "2026-13-01T00:00:00Z", "2026-11-20T10:30:00.Z", "2026-11-20T10:30:00 UTC"] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn an_auxiliary_call_spanning_30_minutes_is_refused_unless_the_flow_transforms() {
        let under =
            rows(r#"[{"TimeGenerated":"2026-11-20T10:00:00Z"},{"TimeGenerated":"2026-11-20T10:29:59.999999Z"}]"#);
        assert_eq!(check(&under, &aux()), Ok(()));
        let at = rows(r#"[{"TimeGenerated":"2026-11-20T10:30:00Z"},{"TimeGenerated":"2026-11-20T10:00:00Z"}]"#);
        assert_eq!(check(&at, &aux()).unwrap_err().0, "RecordsTimeRangeIsMoreThan30Minutes");
        assert_eq!(check(&at, &StreamRules { transformed: true, ..aux() }), Ok(()));
        assert_eq!(check(&at, &StreamRules { plan: TablePlan::Analytics, ..aux() }), Ok(()));
        assert_eq!(check(&at, &StreamRules { plan: TablePlan::Basic, ..aux() }), Ok(()));
    }

    #[test]
    fn nested_json_goes_only_into_dynamic_columns_of_an_auxiliary_table() {
        let ok = rows(r#"[{"AdditionalFields":{"a":[1]},"Extra_CF":"{\"a\":1}"}]"#);
        assert_eq!(check(&ok, &aux()), Ok(()));
        let bad = rows(r#"[{"Extra_CF":{"a":1}}]"#);
        let (code, message) = check(&bad, &aux()).unwrap_err();
        assert_eq!(code, "MalformedJson");
        assert!(message.contains("Extra_CF of type string"), "{message}");
        assert_eq!(check(&rows(r#"[{"Extra_CF":[1]}]"#), &aux()).unwrap_err().0, "MalformedJson");
        assert_eq!(check(&bad, &StreamRules { plan: TablePlan::Analytics, ..aux() }), Ok(()));
    }

    #[test]
    fn rules_come_from_the_template_tables_and_flows() {
        let template = serde_json::json!({ "resources": [
            { "type": "Microsoft.OperationalInsights/workspaces/tables",
              "properties": { "plan": "Auxiliary", "schema": { "name": "A_CL", "columns": [] } } },
            { "type": "Microsoft.OperationalInsights/workspaces/tables",
              "properties": { "plan": "Analytics", "schema": { "name": "B_CL", "columns": [] } } },
            { "type": "Microsoft.Insights/dataCollectionRules", "properties": {
                "streamDeclarations": {
                    "Custom-A_CL": { "columns": [{ "name": "TimeGenerated", "type": "datetime" }, { "name": "X", "type": "dynamic" }] },
                    "Custom-B_CL": { "columns": [{ "name": "TimeGenerated", "type": "datetime" }] } },
                "dataFlows": [
                    { "streams": ["Custom-A_CL"], "transformKql": "source", "outputStream": "Custom-A_CL" },
                    { "streams": ["Custom-B_CL"], "transformKql": "source | where true", "outputStream": "Custom-B_CL" } ] } } ] });
        let rules = rules_from_template(&template).unwrap();
        assert_eq!(rules["Custom-A_CL"].plan, TablePlan::Auxiliary);
        assert_eq!(rules["Custom-A_CL"].types["X"], "dynamic");
        assert!(!rules["Custom-A_CL"].transformed);
        assert_eq!(rules["Custom-B_CL"].plan, TablePlan::Analytics);
        assert!(rules["Custom-B_CL"].transformed);
    }
}
