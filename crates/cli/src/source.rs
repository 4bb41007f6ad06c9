//! The source a config names, for `run` and `estimate`.

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use anyhow::Context;
use defender_sinks::sentinel::{EVENT_HUBS_SCOPE, TokenSource};
use defender_sinks::store;
use defender_sources::{
    BlobAuth, EventHubsConfig, EventHubsSource, FileSource, KafkaAuth, KafkaConfig, KafkaSource, SourceError, SourceIo,
    backfill::{self, BackfillSource, Job, Selection},
    eventhubs::{self, ConnectionString, SasCredential},
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
    EventHubs(EventHubsSource),
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
    /// `run` over `[source.storage]` with `poll_interval_seconds`: list again this often.
    poll: Option<Duration>,
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
        let mut source =
            BackfillSource::new(h.kind, self.input.store.clone(), inputs, job).with_parallel(self.parallel);
        if let Some(every) = self.poll {
            source = source.polling(self.input.prefix.clone(), selection, every);
        }
        source.run(io).await
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
            // Only a run follows the export; an estimate prices what is there.
            let poll = history.poll_interval.filter(|_| mode == Mode::Run);
            return Ok(Self::History(HistorySource { history, input, archive, parallel, job: Arc::default(), poll }));
        }
        if let Some(files) = &config.source.files {
            // As many files at once as there are decode workers: file runs decode in parallel.
            let source = FileSource::new(resolve_inputs(&files.paths)?).with_parallel(config.pipeline.cpu_workers);
            return Ok(Self::Files(source));
        }
        if let Some(e) = &config.source.eventhubs {
            return Ok(Self::EventHubs(EventHubsSource::new(eventhubs_config(config, e, mode)?)));
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
            Self::History(h) => match h.poll {
                Some(every) => {
                    format!("{} export at {} (listed again every {every:?})", h.history.kind.as_str(), h.input.display)
                }
                None => format!("{} history at {}", h.history.kind.as_str(), h.input.display),
            },
            Self::EventHubs(e) => {
                let c = e.config();
                format!("event hub {} of {} (consumer group {})", c.event_hub, c.namespace, c.consumer_group)
            }
        }
    }

    pub fn kafka_metrics(&self) -> Option<KafkaMetrics> {
        match self {
            Self::Kafka(k) => Some(k.metrics()),
            Self::Files(_) | Self::History(_) | Self::EventHubs(_) => None,
        }
    }

    pub fn eventhubs_metrics(&self) -> Option<eventhubs::EventHubsMetrics> {
        match self {
            Self::EventHubs(e) => Some(e.metrics()),
            Self::Files(_) | Self::Kafka(_) | Self::History(_) => None,
        }
    }

    /// A source that runs until stopped (rather than to the end of its input).
    pub fn is_endless(&self) -> bool {
        match self {
            Self::Kafka(_) | Self::EventHubs(_) => true,
            Self::History(h) => h.poll.is_some(),
            Self::Files(_) => false,
        }
    }

    pub async fn run(self, io: SourceIo) -> Result<(), SourceError> {
        match self {
            Self::Files(f) => f.run(io).await,
            Self::Kafka(k) => k.run(io).await,
            Self::History(h) => h.run(io).await,
            Self::EventHubs(e) => e.run(io).await,
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

/// The Event Hubs source of `[source.eventhubs]`: credentials resolved from the environment
/// (SAS minted from a connection string, or the Entra token sources the Sentinel sink uses).
pub(crate) fn eventhubs_config(
    config: &Config,
    e: &defender_config::EventHubsSection,
    mode: Mode,
) -> anyhow::Result<EventHubsConfig> {
    let env = |var: &str, key: &str| {
        std::env::var(var)
            .ok()
            .filter(|v| !v.is_empty())
            .with_context(|| format!("source.eventhubs.{key}: environment variable {var} is not set"))
    };
    let credential: Arc<dyn eventhubs::TokenCredential> = match (&e.connection_string_env, &e.auth) {
        (Some(var), _) => {
            let cs = ConnectionString::parse(&env(var, "connection_string_env")?)
                .map_err(|why| anyhow::anyhow!("source.eventhubs.connection_string_env: {why}"))?;
            Arc::new(SasCredential::new(&cs, &e.namespace, &e.event_hub))
        }
        (None, Some(auth)) => Arc::new(Entra::new(auth, "source.eventhubs.auth", EVENT_HUBS_SCOPE)?),
        (None, None) => anyhow::bail!("[source.eventhubs] has no credential"),
    };
    let blob_auth = match (&e.checkpoint_sas_env, &e.checkpoint_auth) {
        (Some(var), _) => BlobAuth::Sas(env(var, "checkpoint_sas_env")?),
        (None, Some(auth)) => BlobAuth::Token(Arc::new(Entra::new(
            auth,
            "source.eventhubs.checkpoint_auth",
            "https://storage.azure.com/.default",
        )?)),
        (None, None) => anyhow::bail!("[source.eventhubs] has no checkpoint credential"),
    };
    let url = e.checkpoint_container_url().map_err(|err| anyhow::anyhow!("{err}"))?;
    let mut c = EventHubsConfig::new(&e.namespace, &e.event_hub, credential, url, blob_auth);
    c.consumer_group = e.consumer_group.clone();
    c.custom_endpoint = e.custom_endpoint.clone();
    c.start = e.start_position()?;
    c.prefetch = e.prefetch;
    c.load_balancing_interval = Duration::from_secs(e.load_balancing_interval_seconds);
    c.partition_expiration = Duration::from_secs(e.partition_expiration_seconds);
    c.checkpoint_interval = Duration::from_millis(e.checkpoint_interval_ms);
    c.revoke_timeout = Duration::from_secs(e.revoke_timeout_seconds);
    c.shutdown_grace = Duration::from_secs(config.service.shutdown_grace_seconds);
    c.owner_id =
        e.owner_id.clone().or_else(|| std::env::var("POD_NAME").ok().filter(|v| !v.is_empty())).unwrap_or_default();
    // Estimate never claims, never checkpoints: it cannot disturb the daemons' group.
    c.processor = mode == Mode::Run;
    c.check().map_err(|err| anyhow::anyhow!("[source.eventhubs]: {err}"))?;
    Ok(c)
}

/// An Entra token source of one scope as the Azure SDK's credential.
struct Entra {
    tokens: TokenSource,
    scope: &'static str,
}

impl std::fmt::Debug for Entra {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entra").field("scope", &self.scope).finish()
    }
}

impl Entra {
    fn new(auth: &defender_config::AuthSection, at: &str, scope: &'static str) -> anyhow::Result<Self> {
        let auth = config::auth(auth, at)?;
        let tokens =
            TokenSource::with_scope(auth, reqwest::Client::new(), scope).map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
        Ok(Self { tokens, scope })
    }
}

#[async_trait::async_trait]
impl eventhubs::TokenCredential for Entra {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _options: Option<eventhubs::TokenRequestOptions<'_>>,
    ) -> eventhubs::AzureResult<eventhubs::AccessToken> {
        let (token, expires) = self.tokens.token_with_expiry().await.map_err(|e| {
            eventhubs::AzureError::with_message(eventhubs::AzureErrorKind::Credential, format!("entra token: {e}"))
        })?;
        let expires = expires.unwrap_or_else(|| eventhubs::OffsetDateTime::now_utc() + Duration::from_secs(300));
        Ok(eventhubs::AccessToken::new(eventhubs::Secret::new(token.to_string()), expires))
    }
}
