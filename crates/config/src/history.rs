//! `[source.capture]` and `[source.storage]`: history as `run`'s source, read as
//! `defender-ingest backfill --capture` / `--storage` reads it (the same listing, window and
//! resumable progress kept with the archive).
//!
//! ```toml
//! [source.storage]
//! location = "az://insights-logs-advancedhunting-deviceinfo"   # a directory, az:// or abfss:// URL
//! from = "2024-05-01"             # UTC; optional, as `backfill --from`
//! to = "2024-05-08T00:00:00Z"     # optional, as `backfill --to`
//! tables = ["DeviceInfo"]         # storage export only: these tables' containers (default: all)
//! # parallel = 2                  # files read at once (default: pipeline.cpu_workers)
//! # poll_interval_seconds = 60    # storage export in `run` only: keep reading as the blobs grow
//! ```
//!
//! Without `poll_interval_seconds`, `run` reads what is there and exits (`backfill` and
//! `estimate` always do). With it, `run` is a live source for tenants who export to storage
//! instead of Event Hubs: it lists the containers again every interval and reads the new
//! complete lines of grown blobs and new blobs, until stopped. `to` ends a window, which a
//! source that follows the export never reaches: the two together are refused.

use defender_sources::backfill::Kind;
use serde::Deserialize;

use crate::{ConfigError, invalid};

/// `[source.capture]`: Event Hubs Capture Avro files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureSection {
    pub location: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub parallel: Option<usize>,
}

/// `[source.storage]`: the Streaming API's storage-account export (`PT1H.json` blobs).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    pub location: String,
    pub from: Option<String>,
    pub to: Option<String>,
    #[serde(default)]
    pub tables: Vec<String>,
    pub parallel: Option<usize>,
    /// Seconds between two listings in `run` (absent: read to the end and exit).
    pub poll_interval_seconds: Option<f64>,
}

/// A history source as `run` reads it, whichever section named it.
#[derive(Debug, Clone, PartialEq)]
pub struct History {
    pub kind: Kind,
    pub location: String,
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    pub to: Option<chrono::DateTime<chrono::Utc>>,
    pub tables: Vec<String>,
    pub parallel: Option<usize>,
    /// Storage export in `run`: list again this often and keep reading (None: read to the end).
    pub poll_interval: Option<std::time::Duration>,
}

/// A UTC time as `--from`/`--to` and the sections take it: RFC 3339, `YYYY-MM-DDTHH:MM:SS`
/// (UTC) or a date (midnight UTC). The error names `key`.
pub fn parse_time(key: &str, value: &str) -> Result<chrono::DateTime<chrono::Utc>, ConfigError> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S") {
        return Ok(t.and_utc());
    }
    match NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        Ok(d) => Ok(d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc()),
        Err(_) => invalid!("`{key}`: expected a UTC time such as 2024-05-01 or 2024-05-01T10:00:00Z"),
    }
}

fn history(
    kind: Kind,
    location: &str,
    from: Option<&str>,
    to: Option<&str>,
    tables: &[String],
    parallel: Option<usize>,
) -> Result<History, ConfigError> {
    let at = |key: &str| format!("source.{}.{key}", kind.as_str());
    if location.trim().is_empty() {
        invalid!("`{}` is empty: expected a directory, az://container/prefix or abfss:// URL", at("location"));
    }
    if location.contains('?') {
        invalid!(
            "`{}`: a URL with a query string (a SAS?) is refused: put the SAS in AZURE_STORAGE_SAS_KEY",
            at("location")
        );
    }
    if parallel == Some(0) {
        invalid!("`{}` must be at least 1", at("parallel"));
    }
    let from = from.map(|v| parse_time(&at("from"), v)).transpose()?;
    let to = to.map(|v| parse_time(&at("to"), v)).transpose()?;
    if let (Some(f), Some(t)) = (from, to)
        && f >= t
    {
        invalid!("`{}` is not before `{}`: the window is empty", at("from"), at("to"));
    }
    Ok(History {
        kind,
        location: location.to_string(),
        from,
        to,
        tables: tables.to_vec(),
        parallel,
        poll_interval: None,
    })
}

impl CaptureSection {
    pub(crate) fn check(&self) -> Result<History, ConfigError> {
        history(Kind::Capture, &self.location, self.from.as_deref(), self.to.as_deref(), &[], self.parallel)
    }
}

impl StorageSection {
    pub(crate) fn check(&self) -> Result<History, ConfigError> {
        if self.tables.iter().any(|t| t.trim().is_empty()) {
            invalid!("`source.storage.tables` holds an empty name");
        }
        let (from, to) = (self.from.as_deref(), self.to.as_deref());
        let mut h = history(Kind::Storage, &self.location, from, to, &self.tables, self.parallel)?;
        if let Some(seconds) = self.poll_interval_seconds {
            if !(seconds.is_finite() && seconds > 0.0) {
                invalid!("`source.storage.poll_interval_seconds`: expected a number of seconds above 0, got {seconds}");
            }
            if self.to.is_some() {
                invalid!(
                    "`source.storage.poll_interval_seconds` and `source.storage.to` are both set: a polling source \
                     follows the export as it grows and never reaches the end of a window; drop `to` (or the poll \
                     interval, to read the window once)"
                );
            }
            h.poll_interval = Some(std::time::Duration::from_secs_f64(seconds));
        }
        Ok(h)
    }
}
