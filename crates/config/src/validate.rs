//! From the file as written to a [`Config`]: ranges, consistency, the policy and its filters,
//! the Sentinel section's DCRs and endpoints. Nothing here reads the environment or a file:
//! a `*_env` key is checked to be the name of a variable, not read.

use std::{collections::BTreeMap, sync::Arc};

use defender_core::{Catalog, billing::Tier};
use defender_pipeline::{Policy, policy::TableSettings};
use defender_sinks::sentinel::client::check_endpoint;
use toml::Spanned;

use crate::{
    AuthSection, Config, ConfigError, ConfigFile, EventHubsSection, KafkaSection, SentinelSection, TableEntry, invalid,
};

impl ConfigFile {
    /// Checks the file whose `text` this was parsed from (for the lines of errors and filters)
    /// and builds its policy.
    pub fn validate(self, text: &str) -> Result<Config, ConfigError> {
        self.check_values()?;
        let settings: BTreeMap<String, TableSettings> = self
            .tables
            .iter()
            .map(|(name, e)| {
                let at = |f: &Option<Spanned<String>>| f.as_ref().map(|f| filter_at(text, f));
                let s = TableSettings {
                    archive: e.archive,
                    sentinel: e.sentinel,
                    archive_filter: at(&e.archive_filter),
                    sentinel_filter: at(&e.sentinel_filter),
                    plan: e.plan,
                };
                (name.clone(), s)
            })
            .collect();
        let catalog = Catalog::embedded();
        let policy = Policy::new(&catalog, &settings)?;
        for (name, e) in &self.tables {
            let routes = policy.routes(&catalog, name);
            if let Some(stream) = e.stream.as_deref().filter(|s| s.starts_with("Microsoft-"))
                && routes.sentinel.enabled
                && routes.plan == Tier::Auxiliary
            {
                invalid!(
                    "tables.{name}.plan: the Auxiliary plan is only for custom tables (`Custom-<name>_CL` streams) and \
                     {name} goes to the built-in table of stream {stream:?}; built-in Azure tables do not support the \
                     Auxiliary plan (Microsoft, \"Select a table plan\", 2025-08-29)"
                );
            }
        }
        for (name, column) in self.tables.iter().filter_map(|(n, e)| Some((n, e.group_by.as_deref()?))) {
            let Some(schema) = catalog.get(name) else {
                invalid!("tables.{name}.group_by: a grouping column belongs to one table, not to `{name}`")
            };
            if !column.is_empty() {
                defender_pipeline::breakdown::check_group_column(schema, column)
                    .map_err(|e| ConfigError::Invalid(format!("tables.{name}.group_by: {e}")))?;
            }
        }
        if let Some(s) = &self.sentinel {
            s.check(text, &catalog, &self.tables)?;
        }
        let Self { source, archive, pipeline, service, tables, sentinel, prices } = self;
        Ok(Config { source, archive, pipeline, service, tables, sentinel, prices, policy: Arc::new(policy) })
    }

    /// The checks of single values and sections, before the policy.
    fn check_values(&self) -> Result<(), ConfigError> {
        let p = &self.pipeline;
        for (key, value) in [
            ("pipeline.flush_rows", p.flush_rows),
            ("pipeline.flush_mb", p.flush_mb),
            ("pipeline.budget_mb", p.budget_mb),
            ("pipeline.max_unknown_tables", p.max_unknown_tables),
            ("pipeline.cpu_workers", p.cpu_workers),
            ("pipeline.sentinel_in_flight", p.sentinel_in_flight),
            ("service.liveness_threshold_seconds", self.service.liveness_threshold_seconds as usize),
        ] {
            if value == 0 {
                invalid!("`{key}` must be at least 1");
            }
        }
        p.flush_seconds.check("pipeline.flush_seconds")?;
        if let Some(a) = &self.archive {
            if a.roll_size_mb == 0 {
                invalid!("`archive.roll_size_mb` must be at least 1");
            }
            if !(1..=65_536).contains(&a.max_buffered_mb) {
                invalid!("`archive.max_buffered_mb` must be between 1 and 65536, got {}", a.max_buffered_mb);
            }
            a.roll_seconds.check("archive.roll_seconds")?;
            if !(1..=22).contains(&a.zstd_level) {
                invalid!("`archive.zstd_level` must be between 1 and 22, got {}", a.zstd_level);
            }
            if a.url.trim().is_empty() {
                invalid!("`archive.url` is empty: expected a path, file://, az:// or abfss:// URL");
            }
        }
        if let Some(f) = &self.source.files
            && f.paths.is_empty()
        {
            invalid!("`source.files.paths` is empty: expected at least one file or glob");
        }
        if let [a, b, ..] = self.source.named()[..] {
            invalid!("[{a}] and [{b}] are both set: a run reads exactly one source");
        }
        self.source.history()?;
        if let Some(k) = &self.source.kafka {
            k.check()?;
        }
        if let Some(e) = &self.source.eventhubs {
            e.check()?;
        }
        let auths = [
            ("sentinel.auth", self.sentinel.as_ref().and_then(|s| s.auth.as_ref())),
            ("source.kafka.auth", self.source.kafka.as_ref().and_then(|k| k.auth.as_ref())),
            ("source.eventhubs.auth", self.source.eventhubs.as_ref().and_then(|e| e.auth.as_ref())),
            (
                "source.eventhubs.checkpoint_auth",
                self.source.eventhubs.as_ref().and_then(|e| e.checkpoint_auth.as_ref()),
            ),
        ];
        for (at, auth) in auths {
            if let Some(AuthSection::ClientSecret { client_secret_env, .. }) = auth {
                env_var_name(&format!("{at}.client_secret_env"), client_secret_env)?;
            }
        }
        Ok(())
    }
}

impl SentinelSection {
    /// What can be checked at load: every endpoint is an https URL, every table listed under a
    /// DCR is a table that can go to Sentinel and is listed once, and agrees with its own
    /// `dcr_immutable_id`; every `[sentinel.dcrs.<id>]` is some table's DCR. Errors name the key
    /// and its line.
    fn check(&self, text: &str, catalog: &Catalog, tables: &BTreeMap<String, TableEntry>) -> Result<(), ConfigError> {
        let at = |key: &str, span: std::ops::Range<usize>| format!("`{key}` at line {}", line_at(text, span.start));
        if let Some(e) = &self.endpoint {
            check_endpoint(&at("sentinel.endpoint", e.span()), e.get_ref()).map_err(ConfigError::Invalid)?;
        }
        let mut listed: BTreeMap<&str, &str> = BTreeMap::new();
        for (id, d) in &self.dcrs {
            let id_str = id.get_ref().as_str();
            if let Some(e) = &d.endpoint {
                check_endpoint(&at(&format!("sentinel.dcrs.{id_str}.endpoint"), e.span()), e.get_ref())
                    .map_err(ConfigError::Invalid)?;
            }
            for t in &d.tables {
                let (name, key) = (t.get_ref().as_str(), at(&format!("sentinel.dcrs.{id_str}.tables"), t.span()));
                match catalog.get(name) {
                    None => invalid!("{key}: {name} is not a table (see `defender-ingest schemas list`)"),
                    Some(schema) if schema.tvm => {
                        invalid!(
                            "{key}: {name} is a Defender Vulnerability Management (TVM) table, never sent to Sentinel"
                        )
                    }
                    Some(_) => {}
                }
                if let Some(other) = listed.insert(name, id_str) {
                    invalid!("{key}: {name} is also listed in `sentinel.dcrs.{other}.tables`: a table goes to one DCR");
                }
                if let Some(own) = tables.get(name).and_then(|e| e.dcr_immutable_id.as_deref())
                    && own != id_str
                {
                    invalid!(
                        "{key}: {name} has its own tables.{name}.dcr_immutable_id = {own:?}: a table goes to one DCR"
                    );
                }
            }
            let named = self.dcr_immutable_id.as_deref() == Some(id_str)
                || tables.values().any(|e| e.dcr_immutable_id.as_deref() == Some(id_str));
            if d.tables.is_empty() && !named {
                invalid!(
                    "{}: no table goes to this DCR: list its tables in `tables`, or set tables.<Table>.dcr_immutable_id \
                     = {id_str:?}",
                    at(&format!("sentinel.dcrs.{id_str}"), id.span())
                );
            }
        }
        Ok(())
    }
}

impl KafkaSection {
    fn check(&self) -> Result<(), ConfigError> {
        if self.bootstrap.trim().is_empty() {
            invalid!(
                "`source.kafka.bootstrap` is empty: expected host:port, e.g. <namespace>.servicebus.windows.net:9093"
            );
        }
        if self.topics.is_empty() || self.topics.iter().any(|t| t.trim().is_empty()) {
            invalid!("`source.kafka.topics` must name at least one event hub (topic), without empty names");
        }
        if self.group.trim().is_empty() {
            invalid!("`source.kafka.group` is empty: expected the consumer group name");
        }
        self.start_position()?;
        if let Some(var) = &self.connection_string_env {
            env_var_name("source.kafka.connection_string_env", var)?;
        }
        let ways = [self.connection_string_env.is_some(), self.auth.is_some(), self.plaintext];
        if ways.iter().filter(|w| **w).count() != 1 {
            invalid!(
                "[source.kafka] needs exactly one of `connection_string_env` (Event Hubs SAS), [source.kafka.auth] \
                 (Entra token) and `plaintext = true` (a local broker)"
            );
        }
        for (key, value) in
            [("commit_interval_ms", self.commit_interval_ms), ("session_timeout_ms", self.session_timeout_ms)]
        {
            if value == 0 {
                invalid!("`source.kafka.{key}` must be at least 1");
            }
        }
        if let Some(k) = self.properties.keys().find(|k| k.starts_with("sasl.") || k.contains("password")) {
            invalid!(
                "`source.kafka.properties.{k}`: credentials do not go in the file; use connection_string_env or [source.kafka.auth]"
            );
        }
        Ok(())
    }

    /// Where a partition without a committed offset starts.
    pub fn start_position(&self) -> Result<defender_sources::StartPosition, ConfigError> {
        start_position("source.kafka.start", &self.start)
    }
}

/// `earliest`, `latest` or an RFC 3339 time, at key `at`.
fn start_position(at: &str, value: &str) -> Result<defender_sources::StartPosition, ConfigError> {
    use defender_sources::StartPosition;
    Ok(match value {
        "earliest" => StartPosition::Earliest,
        "latest" => StartPosition::Latest,
        t => {
            let nanos = defender_core::policy::parse_datetime(t).ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "`{at}` is {t:?}: expected \"earliest\", \"latest\" or an RFC 3339 time such as \"2026-11-01T00:00:00Z\""
                ))
            })?;
            StartPosition::Timestamp(nanos / 1_000_000)
        }
    })
}

impl EventHubsSection {
    fn check(&self) -> Result<(), ConfigError> {
        let ns = self.namespace.trim();
        if ns.is_empty() || !ns.contains('.') || ns.contains('/') || ns.contains(':') {
            invalid!(
                "`source.eventhubs.namespace` must be the namespace's fully qualified name, e.g. \
                 <namespace>.servicebus.windows.net (no scheme, no port)"
            );
        }
        if self.event_hub.trim().is_empty() {
            invalid!("`source.eventhubs.event_hub` is empty: expected the event hub's name");
        }
        if self.consumer_group.trim().is_empty() {
            invalid!("`source.eventhubs.consumer_group` is empty: expected a consumer group name, e.g. $Default");
        }
        self.checkpoint_container_url()?;
        self.start_position()?;
        if let Some(e) = &self.custom_endpoint {
            let ok = url::Url::parse(e).is_ok_and(|u| matches!(u.scheme(), "amqp" | "amqps") && u.host().is_some());
            if !ok {
                invalid!(
                    "`source.eventhubs.custom_endpoint` must be an amqps://host[:port] (or amqp:// for a local endpoint) URL"
                );
            }
        }
        if let Some(var) = &self.connection_string_env {
            env_var_name("source.eventhubs.connection_string_env", var)?;
        }
        if self.connection_string_env.is_some() == self.auth.is_some() {
            invalid!(
                "[source.eventhubs] needs exactly one of `connection_string_env` (SAS from the connection string) \
                 and [source.eventhubs.auth] (Entra token)"
            );
        }
        if let Some(var) = &self.checkpoint_sas_env {
            env_var_name("source.eventhubs.checkpoint_sas_env", var)?;
        }
        if self.checkpoint_sas_env.is_some() == self.checkpoint_auth.is_some() {
            invalid!(
                "[source.eventhubs] needs exactly one of `checkpoint_sas_env` (a SAS for the checkpoint container) \
                 and [source.eventhubs.checkpoint_auth] (Entra token)"
            );
        }
        for (key, value) in [
            ("load_balancing_interval_seconds", self.load_balancing_interval_seconds),
            ("checkpoint_interval_ms", self.checkpoint_interval_ms),
            ("revoke_timeout_seconds", self.revoke_timeout_seconds),
            ("prefetch", u64::from(self.prefetch)),
        ] {
            if value == 0 {
                invalid!("`source.eventhubs.{key}` must be at least 1");
            }
        }
        if self.partition_expiration_seconds <= self.load_balancing_interval_seconds {
            invalid!(
                "`source.eventhubs.partition_expiration_seconds` ({}) must be longer than \
                 `source.eventhubs.load_balancing_interval_seconds` ({}), twice at least: claims would expire \
                 between two renewals",
                self.partition_expiration_seconds,
                self.load_balancing_interval_seconds
            );
        }
        Ok(())
    }

    /// Where a partition without a checkpoint starts.
    pub fn start_position(&self) -> Result<defender_sources::StartPosition, ConfigError> {
        start_position("source.eventhubs.start_position", &self.start_position)
    }

    /// The checkpoint container as an http(s) URL (`az://<account>/<container>` becomes
    /// `https://<account>.blob.core.windows.net/<container>`).
    pub fn checkpoint_container_url(&self) -> Result<url::Url, ConfigError> {
        let bad = || {
            ConfigError::Invalid(
                "`source.eventhubs.checkpoint_container` must be https://<account>.blob.core.windows.net/<container> \
                 or az://<account>/<container> (http:// only for a local emulator), without a query: the SAS goes in \
                 checkpoint_sas_env"
                    .into(),
            )
        };
        let text = self.checkpoint_container.trim();
        let text = match text.strip_prefix("az://") {
            Some(rest) => {
                let (account, container) = rest.split_once('/').ok_or_else(bad)?;
                format!("https://{account}.blob.core.windows.net/{container}")
            }
            None => text.to_string(),
        };
        let u = url::Url::parse(&text).map_err(|_| bad())?;
        let container = u.path_segments().and_then(|mut s| s.rfind(|p| !p.is_empty()).map(str::to_string));
        if !matches!(u.scheme(), "https" | "http") || u.query().is_some() || u.host().is_none() || container.is_none() {
            return Err(bad());
        }
        Ok(u)
    }
}

/// `at` (a `*_env` key) names an environment variable, not a secret pasted in its place: the
/// error would otherwise print the value.
fn env_var_name(at: &str, name: &str) -> Result<(), ConfigError> {
    let plausible = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !plausible {
        invalid!(
            "`{at}` must be the name of an environment variable (letters, digits and `_`), and it is not: \
             was the secret itself put there? It goes in the variable, never in the file (the value is not shown)"
        );
    }
    Ok(())
}

/// The line (from 1) of byte `offset` of `text`.
pub(crate) fn line_at(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// A filter's text with the line and column of its first character in the config file (after the
/// opening quotes, and after the newline that TOML drops right after `'''` or `"""`).
fn filter_at(text: &str, value: &Spanned<String>) -> (String, usize, usize) {
    let mut start = value.span().start;
    let raw = &text[start..value.span().end];
    if raw.starts_with("'''") || raw.starts_with("\"\"\"") {
        start += 3;
        if text[start..].starts_with("\r\n") {
            start += 2;
        } else if text[start..].starts_with('\n') {
            start += 1;
        }
    } else {
        start += 1;
    }
    let before = &text[..start];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (value.get_ref().clone(), line, column)
}
