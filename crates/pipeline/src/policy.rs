//! Where each table goes: per table and per destination (archive, Sentinel), whether it is sent
//! and through which filter.
//!
//! Rules:
//! - a table not named takes the `default` entry (which has no filters: a filter is checked
//!   against one table's columns);
//! - TVM tables (`DeviceTvm*`) never take the Sentinel path: a config that asks for it is
//!   rejected at load ([`PolicyError::TvmToSentinel`]); their records are counted as dropped from
//!   that path (reason `tvm`), and they reach the archive only when their own entry says
//!   `archive = true` (the default entry does not apply to them);
//! - unknown tables (no schema) follow the default for the archive and are never sent to
//!   Sentinel (no stream is declared for them);
//! - a table sent to Sentinel has a table plan (`plan`: Analytics, Basic, Auxiliary; default
//!   Analytics, or the default entry's): the tier its custom table is created with, bills at and
//!   whose ingestion rules the sink follows. A TVM table has none, and a table not sent to
//!   Sentinel may not name one ([`PolicyError::TvmPlan`], [`PolicyError::PlanWithoutSentinel`]).

use std::collections::BTreeMap;

use defender_core::{
    Catalog,
    billing::Tier,
    policy::{self, Filter},
};

/// One destination of one table.
#[derive(Debug, Clone, Default)]
pub struct Route {
    pub enabled: bool,
    /// Applied to the rows sent there; `None` sends them whole.
    pub filter: Option<Filter>,
}

/// Both destinations of one table.
#[derive(Debug, Clone, Default)]
pub struct TableRoutes {
    pub archive: Route,
    pub sentinel: Route,
    /// The plan of the table's Sentinel (Log Analytics) table; meaningful when `sentinel` is
    /// enabled.
    pub plan: Tier,
    /// Why the Sentinel path is closed to this table whatever the config says (`tvm`,
    /// `unknown_table`), if it is.
    pub sentinel_refused: Option<&'static str>,
    /// Whether refused rows count as dropped: always for TVM, for unknown tables when the config
    /// would have sent them.
    pub count_dropped: bool,
}

/// What the config says about one table, before checking.
#[derive(Debug, Clone, Default)]
pub struct TableSettings {
    pub archive: Option<bool>,
    pub sentinel: Option<bool>,
    /// Filter texts with the position of their first character in the config file (1-based
    /// line and column), so errors point into the config.
    pub archive_filter: Option<(String, usize, usize)>,
    pub sentinel_filter: Option<(String, usize, usize)>,
    /// The table plan of its Sentinel table.
    pub plan: Option<Tier>,
}

/// A config mistake in the table policy.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error(
        "tables.{table}.sentinel: {table} is a Defender Vulnerability Management (TVM) table; Microsoft Sentinel does \
         not support TVM tables and the Streaming API does not export them, so they are never sent to Sentinel \
         (set `sentinel = false`, or `archive = true` to keep them in the archive)"
    )]
    TvmToSentinel { table: String },
    #[error(
        "tables.{table}.plan: {table} is a Defender Vulnerability Management (TVM) table: it is never sent to \
         Sentinel, so it has no table plan (remove `plan`)"
    )]
    TvmPlan { table: String },
    #[error(
        "tables.{table}.plan: {table} is not sent to Sentinel, so it has no table plan (set `sentinel = true`, or \
         remove `plan`)"
    )]
    PlanWithoutSentinel { table: String },
    #[error("tables.{table}: no table of that name (see `defender-ingest schemas list`; names are case-sensitive)")]
    UnknownTable { table: String },
    #[error(
        "tables.default.{key}: the default entry cannot have a filter (a filter is checked against one table's columns)"
    )]
    DefaultFilter { key: &'static str },
    #[error("tables.{table}.{key} at line {line}, column {column}: {message}")]
    Filter { table: String, key: &'static str, line: usize, column: usize, message: String },
}

/// The checked policy of every table.
#[derive(Debug, Clone)]
pub struct Policy {
    default: TableRoutes,
    tables: BTreeMap<String, TableRoutes>,
}

impl Default for Policy {
    /// Everything to the archive, nothing to Sentinel.
    fn default() -> Self {
        Self {
            default: TableRoutes { archive: Route { enabled: true, filter: None }, ..TableRoutes::default() },
            tables: BTreeMap::new(),
        }
    }
}

impl Policy {
    /// Checks the settings of `tables` (the key `default` is the default entry) against the
    /// catalog: names, TVM, filters parsed and type-checked against each table's columns.
    pub fn new(catalog: &Catalog, settings: &BTreeMap<String, TableSettings>) -> Result<Self, PolicyError> {
        let mut policy = Self::default();
        if let Some(d) = settings.get("default") {
            if d.archive_filter.is_some() {
                return Err(PolicyError::DefaultFilter { key: "archive_filter" });
            }
            if d.sentinel_filter.is_some() {
                return Err(PolicyError::DefaultFilter { key: "sentinel_filter" });
            }
            policy.default.archive.enabled = d.archive.unwrap_or(true);
            policy.default.sentinel.enabled = d.sentinel.unwrap_or(false);
            policy.default.plan = d.plan.unwrap_or_default();
        }
        for (name, s) in settings.iter().filter(|(n, _)| n.as_str() != "default") {
            let schema = catalog.get(name).ok_or_else(|| PolicyError::UnknownTable { table: name.clone() })?;
            if schema.tvm && s.sentinel == Some(true) {
                return Err(PolicyError::TvmToSentinel { table: name.clone() });
            }
            if schema.tvm && s.plan.is_some() {
                return Err(PolicyError::TvmPlan { table: name.clone() });
            }
            let check =
                |key: &'static str, f: &Option<(String, usize, usize)>| -> Result<Option<Filter>, PolicyError> {
                    let Some((text, line, column)) = f else { return Ok(None) };
                    let at = |l: usize, c: usize| if l == 1 { (*line, column + c - 1) } else { (line + l - 1, c) };
                    let parsed = policy::parse(text).map_err(|e| {
                        let (line, column) = at(e.line, e.column);
                        PolicyError::Filter { table: name.clone(), key, line, column, message: e.message }
                    })?;
                    let filter = parsed.check(schema).map_err(|e| {
                        let (line, column) = at(e.line, e.column);
                        PolicyError::Filter { table: name.clone(), key, line, column, message: e.message }
                    })?;
                    Ok(Some(filter))
                };
            // TVM tables are archived only when their own entry asks.
            let archive_default = policy.default.archive.enabled && !schema.tvm;
            let sentinel = s.sentinel.unwrap_or(policy.default.sentinel.enabled) && !schema.tvm;
            if s.plan.is_some() && !sentinel {
                return Err(PolicyError::PlanWithoutSentinel { table: name.clone() });
            }
            let routes = TableRoutes {
                archive: Route {
                    enabled: s.archive.unwrap_or(archive_default),
                    filter: check("archive_filter", &s.archive_filter)?,
                },
                sentinel: Route { enabled: sentinel, filter: check("sentinel_filter", &s.sentinel_filter)? },
                plan: s.plan.unwrap_or(policy.default.plan),
                sentinel_refused: schema.tvm.then_some("tvm"),
                count_dropped: schema.tvm,
            };
            policy.tables.insert(name.clone(), routes);
        }
        Ok(policy)
    }

    /// The routes of `table`. `known` is false for tables without a schema.
    pub fn routes(&self, catalog: &Catalog, table: &str) -> TableRoutes {
        if let Some(r) = self.tables.get(table) {
            return r.clone();
        }
        let mut r = self.default.clone();
        match catalog.get(table) {
            Some(schema) if schema.tvm => {
                r.sentinel_refused = Some("tvm");
                r.count_dropped = true;
                r.archive.enabled = false;
            }
            Some(_) => {}
            None => {
                r.sentinel_refused = Some("unknown_table");
                r.count_dropped = r.sentinel.enabled;
            }
        }
        if r.sentinel_refused.is_some() {
            r.sentinel.enabled = false;
        }
        r
    }

    /// Whether any table may be sent to Sentinel.
    pub fn any_sentinel(&self) -> bool {
        self.default.sentinel.enabled || self.tables.values().any(|t| t.sentinel.enabled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(entries: &[(&str, TableSettings)]) -> BTreeMap<String, TableSettings> {
        entries.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    #[test]
    fn tvm_tables_never_take_the_sentinel_path() {
        let catalog = Catalog::embedded();
        let ask = TableSettings { sentinel: Some(true), ..TableSettings::default() };
        let err = Policy::new(&catalog, &settings(&[("DeviceTvmSoftwareInventory", ask)])).unwrap_err();
        assert_eq!(err, PolicyError::TvmToSentinel { table: "DeviceTvmSoftwareInventory".into() });
        assert!(err.to_string().contains("never sent to Sentinel"));

        // A default that sends everything to Sentinel still keeps TVM (and unknown tables) off it.
        let all = TableSettings { sentinel: Some(true), ..TableSettings::default() };
        let policy = Policy::new(&catalog, &settings(&[("default", all)])).unwrap();
        let tvm = policy.routes(&catalog, "DeviceTvmSoftwareInventory");
        assert!(!tvm.sentinel.enabled);
        assert_eq!((tvm.sentinel_refused, tvm.count_dropped), (Some("tvm"), true));
        assert!(!tvm.archive.enabled, "archived only when its own entry asks");
        let ask = TableSettings { archive: Some(true), ..TableSettings::default() };
        let policy2 = Policy::new(&catalog, &settings(&[("DeviceTvmSoftwareInventory", ask)])).unwrap();
        assert!(policy2.routes(&catalog, "DeviceTvmSoftwareInventory").archive.enabled);
        let named = TableSettings { sentinel: Some(false), ..TableSettings::default() };
        let policy3 = Policy::new(&catalog, &settings(&[("DeviceTvmSoftwareInventory", named)])).unwrap();
        assert!(!policy3.routes(&catalog, "DeviceTvmSoftwareInventory").archive.enabled);
        assert!(policy.routes(&catalog, "DeviceProcessEvents").sentinel.enabled);
        let unknown = policy.routes(&catalog, "CloudStorageAggregatedEvents");
        assert_eq!((unknown.sentinel.enabled, unknown.sentinel_refused), (false, Some("unknown_table")));
    }

    #[test]
    fn every_tvm_table_is_refused_for_every_way_of_asking() {
        let catalog = Catalog::embedded();
        for t in catalog.tables().iter().filter(|t| t.tvm) {
            let ask = TableSettings { sentinel: Some(true), archive: Some(true), ..TableSettings::default() };
            assert!(matches!(
                Policy::new(&catalog, &settings(&[(t.table.as_str(), ask)])),
                Err(PolicyError::TvmToSentinel { .. })
            ));
            let all = TableSettings { sentinel: Some(true), ..TableSettings::default() };
            let policy = Policy::new(&catalog, &settings(&[("default", all)])).unwrap();
            assert!(!policy.routes(&catalog, &t.table).sentinel.enabled, "{}", t.table);
        }
    }

    #[test]
    fn filter_errors_point_into_the_config_file() {
        let catalog = Catalog::embedded();
        let s = TableSettings {
            sentinel: Some(true),
            sentinel_filter: Some(("where ActionType == 1".into(), 7, 19)),
            ..TableSettings::default()
        };
        let err = Policy::new(&catalog, &settings(&[("DeviceNetworkEvents", s)])).unwrap_err().to_string();
        assert_eq!(
            err,
            "tables.DeviceNetworkEvents.sentinel_filter at line 7, column 39: cannot compare string column `ActionType` with a number",
            "the literal is at column 21 of the filter, which starts at column 19"
        );
        let s = TableSettings {
            archive_filter: Some(("where RemotePort > 1\n| project Nope".into(), 3, 5)),
            ..TableSettings::default()
        };
        let err = Policy::new(&catalog, &settings(&[("DeviceNetworkEvents", s)])).unwrap_err().to_string();
        assert!(err.starts_with("tables.DeviceNetworkEvents.archive_filter at line 4, column"), "{err}");
        assert!(err.contains("Nope"), "{err}");
    }

    #[test]
    fn each_table_sent_has_its_plan_its_own_or_the_defaults() {
        let catalog = Catalog::embedded();
        let sent = |plan| TableSettings { sentinel: Some(true), plan, ..TableSettings::default() };
        let policy = Policy::new(
            &catalog,
            &settings(&[
                ("default", TableSettings { plan: Some(Tier::Basic), ..TableSettings::default() }),
                ("DeviceNetworkEvents", sent(Some(Tier::Auxiliary))),
                ("DeviceProcessEvents", sent(Some(Tier::Analytics))),
                ("DeviceFileEvents", sent(None)),
            ]),
        )
        .unwrap();
        let plan = |t: &str| policy.routes(&catalog, t).plan;
        assert_eq!(plan("DeviceNetworkEvents"), Tier::Auxiliary);
        assert_eq!(plan("DeviceProcessEvents"), Tier::Analytics);
        assert_eq!(plan("DeviceFileEvents"), Tier::Basic, "the default entry's");
        let policy = Policy::new(&catalog, &settings(&[("DeviceFileEvents", sent(None))])).unwrap();
        assert_eq!(policy.routes(&catalog, "DeviceFileEvents").plan, Tier::Analytics, "Analytics by default");
    }

    #[test]
    fn a_plan_on_a_tvm_table_or_a_table_not_sent_is_rejected_with_the_reason() {
        let catalog = Catalog::embedded();
        let tvm = TableSettings { plan: Some(Tier::Basic), ..TableSettings::default() };
        let err = Policy::new(&catalog, &settings(&[("DeviceTvmSoftwareInventory", tvm.clone())])).unwrap_err();
        assert!(
            err.to_string().starts_with("tables.DeviceTvmSoftwareInventory.plan: DeviceTvmSoftwareInventory is a Defender Vulnerability Management (TVM) table"),
            "{err}"
        );
        let err = Policy::new(&catalog, &settings(&[("DeviceEvents", tvm)])).unwrap_err();
        assert_eq!(err, PolicyError::PlanWithoutSentinel { table: "DeviceEvents".into() });
        assert!(err.to_string().contains("not sent to Sentinel"), "{err}");
    }

    #[test]
    fn unknown_names_and_default_filters_are_rejected() {
        let catalog = Catalog::embedded();
        let err = Policy::new(&catalog, &settings(&[("DeviceProcessEvent", TableSettings::default())])).unwrap_err();
        assert_eq!(err, PolicyError::UnknownTable { table: "DeviceProcessEvent".into() });
        let d = TableSettings { sentinel_filter: Some(("where true".into(), 1, 1)), ..TableSettings::default() };
        assert_eq!(
            Policy::new(&catalog, &settings(&[("default", d)])).unwrap_err(),
            PolicyError::DefaultFilter { key: "sentinel_filter" }
        );
    }
}
