//! The source a config names, for `run` and `estimate`.

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use anyhow::Context;
use defender_sinks::sentinel::{EVENT_HUBS_SCOPE, TokenSource};
use defender_sinks::store;
use defender_sources::{
    FileSource, KafkaAuth, KafkaConfig, KafkaSource, SourceError, SourceIo,
    backfill::{self, BackfillSource, Job, Selection},
    kafka::{KafkaMetrics, TokenProvider},
    resolve_inputs,
};

use defender_config::Config;

use crate::{config, report::human_bytes};

/// A configured source.
#[derive(Debug)]
pub enum Source {
    Files(FileSource),
    Kafka(KafkaSource),
    History(HistorySource),
}

/// `[source.capture]` or `[source.storage]` (or `estimate --capture/--storage`): listed when
/// the run starts, read as `backfill` reads them. In a run, the job's progress is kept with the
/// archive (so a rerun resumes); in an estimate, in memory.
#[derive(Debug)]
pub struct HistorySource {
    history: defender_config::history::History,
    input: store::Location,
    /// Where the job's progress is kept (`run`); none for an estimate.
    archive: Option<store::Location>,
    parallel: usize,
    job: Arc<OnceLock<Job>>,
}

impl HistorySource {
    /// The job, once the source has opened it: the caller saves its final progress from the
    /// run's committed positions.
    pub fn job(&self) -> Arc<OnceLock<Job>> {
        self.job.clone()
    }

    async fn run(self, io: SourceIo) -> Result<(), SourceError> {
        let h = &self.history;
        let selection = Selection { from: h.from, to: h.to, tables: h.tables.clone() };
        let inputs = backfill::list(h.kind, self.input.store.as_ref(), &self.input.prefix, &selection).await?;
        let job = match &self.archive {
            Some(a) => Job::open(h.kind, &self.input.display, a.store.clone(), &a.prefix).await?,
            None => Job::ephemeral(h.kind, &self.input.display).await?,
        };
        let bytes: u64 = inputs.iter().map(|i| i.size).sum();
        tracing::info!(kind = h.kind.as_str(), files = inputs.len(), bytes, progress = %job.path(), "history listed");
        let _ = self.job.set(job.clone());
        BackfillSource::new(h.kind, self.input.store.clone(), inputs, job).with_parallel(self.parallel).run(io).await
    }
}

/// What the source is for: `run` joins the consumer group and commits; `estimate` reads every
/// partition without joining and commits nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Run,
    Estimate,
}

impl Source {
    /// Builds the source of `config` (checked: a wrong librdkafka property fails here).
    pub fn new(config: &Config, mode: Mode) -> anyhow::Result<Self> {
        if let Some(history) = config.source.history()? {
            let at = format!("source.{}.location", history.kind.as_str());
            if !history.location.contains("://") && !std::path::Path::new(&history.location).is_dir() {
                anyhow::bail!("{at}: `{}` is not a directory", history.location);
            }
            let input = store::open(&history.location).map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
            let archive = match (mode, &config.archive) {
                (Mode::Run, Some(a)) => Some(store::open(&a.url)?),
                _ => None,
            };
            let parallel = history.parallel.unwrap_or(config.pipeline.cpu_workers).max(1);
            return Ok(Self::History(HistorySource { history, input, archive, parallel, job: Arc::default() }));
        }
        if let Some(files) = &config.source.files {
            // As many files at once as there are decode workers: file runs decode in parallel.
            let source = FileSource::new(resolve_inputs(&files.paths)?).with_parallel(config.pipeline.cpu_workers);
            return Ok(Self::Files(source));
        }
        let k = config.source.kafka.as_ref().context("no source configured")?;
        let mut kafka = KafkaConfig::new(&k.bootstrap, k.topics.clone(), &k.group);
        kafka.start = k.start_position()?;
        kafka.commit_interval = Duration::from_millis(k.commit_interval_ms);
        kafka.session_timeout = Duration::from_millis(k.session_timeout_ms);
        kafka.revoke_timeout = Duration::from_secs(k.revoke_timeout_seconds);
        kafka.shutdown_grace = Duration::from_secs(config.service.shutdown_grace_seconds);
        kafka.group_instance_id =
            k.group_instance_id.clone().or_else(|| std::env::var("POD_NAME").ok().filter(|v| !v.is_empty()));
        kafka.properties = k.properties.clone();
        kafka.group = mode == Mode::Run;
        if mode == Mode::Estimate {
            // Never join (and so never disturb) the group the daemons share.
            kafka.group_id = format!("{}-estimate", k.group);
            kafka.group_instance_id = None;
        }
        kafka.auth = match (&k.connection_string_env, &k.auth) {
            (Some(var), _) => {
                KafkaAuth::ConnectionString(std::env::var(var).ok().filter(|v| !v.is_empty()).with_context(|| {
                    format!("source.kafka.connection_string_env: environment variable {var} is not set")
                })?)
            }
            (None, Some(auth)) => {
                let auth = config::auth(auth, "source.kafka.auth")?;
                let tokens = TokenSource::with_scope(auth, reqwest::Client::new(), EVENT_HUBS_SCOPE)
                    .map_err(|e| anyhow::anyhow!("source.kafka.auth: {e}"))?;
                KafkaAuth::OAuth(Arc::new(EntraTokens(tokens)))
            }
            (None, None) => KafkaAuth::Plaintext,
        };
        kafka.check().map_err(|e| anyhow::anyhow!("[source.kafka]: {e}"))?;
        Ok(Self::Kafka(KafkaSource::new(kafka)))
    }

    /// One line for the operator: what is read.
    pub fn describe(&self) -> String {
        match self {
            Self::Files(f) => {
                format!("{} file(s) ({} on disk)", f.files().len(), human_bytes(f.total_bytes()))
            }
            Self::Kafka(k) => {
                let c = k.config();
                format!("kafka topics {:?} at {} (group {})", c.topics, c.bootstrap, c.group_id)
            }
            Self::History(h) => format!("{} history at {}", h.history.kind.as_str(), h.input.display),
        }
    }

    pub fn kafka_metrics(&self) -> Option<KafkaMetrics> {
        match self {
            Self::Kafka(k) => Some(k.metrics()),
            Self::Files(_) | Self::History(_) => None,
        }
    }

    /// A source that runs until stopped (rather than to the end of its input).
    pub fn is_endless(&self) -> bool {
        matches!(self, Self::Kafka(_))
    }

    pub async fn run(self, io: SourceIo) -> Result<(), SourceError> {
        match self {
            Self::Files(f) => f.run(io).await,
            Self::Kafka(k) => k.run(io).await,
            Self::History(h) => h.run(io).await,
        }
    }
}

/// Entra tokens for OAUTHBEARER, fetched on librdkafka's request from the consumer thread
/// (a blocking thread of the runtime, so it may wait on the runtime).
struct EntraTokens(TokenSource);

impl TokenProvider for EntraTokens {
    fn token(&self) -> Result<(String, i64), String> {
        let handle = tokio::runtime::Handle::try_current().map_err(|e| e.to_string())?;
        let (token, expires) = handle.block_on(self.0.token_with_expiry()).map_err(|e| e.to_string())?;
        let expires_ms = expires.map_or(i64::MAX, |t| (t.unix_timestamp_nanos() / 1_000_000) as i64);
        Ok((token.to_string(), expires_ms))
    }
}
