//! The Sentinel path of a run, from `[sentinel]` and the tables the policy sends: a dry run, or
//! a live sink with a DCR and an endpoint for every table. What the file only names (the
//! credential's secret or certificate, the extra CA) stays named in [`LiveSentinel`]; the binary
//! resolves it and [`LiveSentinel::into_config`] finishes the sink's settings.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use defender_core::{Catalog, billing::Tier};
use defender_sinks::sentinel::{AuthConfig, PackMode, SentinelConfig, StreamTarget};

use crate::{AuthSection, Config, ConfigError, SentinelSection, TableEntry, invalid};

/// What the Sentinel path of a run is.
#[derive(Debug)]
pub enum SentinelTarget {
    /// `plans`: the plan of each table sent to Sentinel.
    DryRun {
        dir: String,
        pack: PackMode,
        plans: BTreeMap<String, Tier>,
    },
    Live(Box<LiveSentinel>),
}

/// A live Sentinel sink, checked but for its credential and extra CA, which the file only names.
#[derive(Debug)]
pub struct LiveSentinel {
    /// The credential: secrets are the names of environment variables, certificates paths.
    pub auth: AuthSection,
    /// Extra trusted root certificate (PEM file), read by the caller.
    pub ca_file: Option<PathBuf>,
    /// The endpoint of every DCR not in `dcr_endpoints` (may be empty).
    pub endpoint: String,
    pub dcr_endpoints: BTreeMap<String, String>,
    /// Per table sent (Defender name): its DCR, stream and plan.
    pub tables: BTreeMap<String, StreamTarget>,
    pub pack: PackMode,
    concurrency_per_dcr: Option<usize>,
    retry_max: Option<Duration>,
}

impl LiveSentinel {
    /// The endpoint the calls of `dcr` go to: its own, else `endpoint`.
    pub fn endpoint_for(&self, dcr: &str) -> &str {
        self.dcr_endpoints.get(dcr).unwrap_or(&self.endpoint)
    }

    /// The sink's settings, with `auth` (resolved from [`Self::auth`]) and the PEM of
    /// [`Self::ca_file`]; checked as the sink checks them.
    pub fn into_config(self, auth: AuthConfig, extra_root_pem: Option<String>) -> Result<SentinelConfig, ConfigError> {
        let mut config = SentinelConfig::new(self.endpoint, auth);
        for (dcr, endpoint) in &self.dcr_endpoints {
            config = config.with_dcr_endpoint(dcr, endpoint);
        }
        config.pack = self.pack;
        if let Some(n) = self.concurrency_per_dcr {
            config.concurrency_per_dcr = n;
        }
        if let Some(max) = self.retry_max {
            config.retry.max = max;
            config.retry.initial = config.retry.initial.min(max);
        }
        config.extra_root_pem = extra_root_pem;
        for (table, t) in &self.tables {
            config = config.with_table(table, &t.dcr_immutable_id, t.stream.as_deref()).with_plan(table, t.plan);
        }
        config.validate().map_err(|e| ConfigError::Invalid(format!("[sentinel]: {e}")))?;
        Ok(config)
    }
}

impl Config {
    /// The Sentinel path, checked: a dry run or a live sink with a DCR for every table the
    /// policy sends to Sentinel. `None` without a `[sentinel]` section.
    pub fn sentinel_target(&self, catalog: &Catalog) -> Result<Option<SentinelTarget>, ConfigError> {
        let Some(s) = &self.sentinel else { return Ok(None) };
        let own_endpoints = s.dcrs.values().any(|d| d.endpoint.is_some());
        match (&s.dry_run_dir, s.endpoint.is_some() || own_endpoints) {
            (Some(dir), false) => {
                let plans = catalog
                    .tables()
                    .iter()
                    .map(|t| (t.table.clone(), self.policy().routes(catalog, &t.table)))
                    .filter(|(_, r)| r.sentinel.enabled)
                    .map(|(t, r)| (t, r.plan))
                    .collect();
                return Ok(Some(SentinelTarget::DryRun { dir: dir.clone(), pack: s.pack.mode(), plans }));
            }
            (None, true) => {}
            _ => invalid!(
                "[sentinel] needs exactly one of `dry_run_dir` (store the bodies) and endpoints to send to \
                 (`endpoint`, or `endpoint` in each [sentinel.dcrs.<immutable id>])"
            ),
        }
        let Some(auth) = &s.auth else {
            invalid!(
                "[sentinel] sends to the Logs Ingestion API but has no [sentinel.auth] section (method = \"client_secret\", \"client_certificate\", \"workload_identity\", \"managed_identity\" or \"azure_cli\")"
            );
        };
        let retry_max = match s.retry_max_seconds {
            Some(0) => invalid!("`sentinel.retry_max_seconds` must be at least 1"),
            n => n.map(Duration::from_secs),
        };
        let mut live = LiveSentinel {
            auth: auth.clone(),
            ca_file: s.ca_file.clone(),
            endpoint: s.endpoint.as_ref().map(|e| e.get_ref().clone()).unwrap_or_default(),
            dcr_endpoints: s
                .dcrs
                .iter()
                .filter_map(|(dcr, d)| Some((dcr.get_ref().clone(), d.endpoint.as_ref()?.get_ref().clone())))
                .collect(),
            tables: BTreeMap::new(),
            pack: s.pack.mode(),
            concurrency_per_dcr: s.concurrency_per_dcr,
            retry_max,
        };
        for t in catalog.tables() {
            let routes = self.policy().routes(catalog, &t.table);
            if !routes.sentinel.enabled {
                continue;
            }
            let entry = self.tables.get(&t.table);
            let Some(dcr) = s.dcr_of(&t.table, entry) else {
                invalid!(
                    "tables.{0}: sent to Sentinel but no DCR: list it in `tables` of its [sentinel.dcrs.<immutable id>], \
                     or set tables.{0}.dcr_immutable_id or [sentinel] dcr_immutable_id",
                    t.table
                );
            };
            if live.endpoint_for(&dcr).is_empty() {
                invalid!(
                    "tables.{}: sent to DCR {dcr}, which has no endpoint: set `endpoint` in [sentinel.dcrs.{dcr}] (the \
                     DCR's own logs ingestion endpoint) or [sentinel] endpoint (a data collection endpoint for every DCR)",
                    t.table
                );
            }
            let stream = entry.and_then(|e| e.stream.clone());
            live.tables.insert(t.table.clone(), StreamTarget { dcr_immutable_id: dcr, stream, plan: routes.plan });
        }
        Ok(Some(SentinelTarget::Live(Box::new(live))))
    }
}

impl SentinelSection {
    /// The DCR of `table`: its own `dcr_immutable_id`, else the `[sentinel.dcrs.<id>]` listing it,
    /// else `[sentinel] dcr_immutable_id`.
    fn dcr_of(&self, table: &str, entry: Option<&TableEntry>) -> Option<String> {
        entry
            .and_then(|e| e.dcr_immutable_id.clone())
            .or_else(|| {
                self.dcrs
                    .iter()
                    .find(|(_, d)| d.tables.iter().any(|t| t.get_ref() == table))
                    .map(|(id, _)| id.get_ref().clone())
            })
            .or_else(|| self.dcr_immutable_id.clone())
    }
}
