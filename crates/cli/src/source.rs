//! The source a config names, for `run` and `estimate`.

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use defender_sinks::sentinel::{EVENT_HUBS_SCOPE, TokenSource};
use defender_sources::{
    FileSource, KafkaAuth, KafkaConfig, KafkaSource, SourceError, SourceIo,
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
        }
    }

    pub fn kafka_metrics(&self) -> Option<KafkaMetrics> {
        match self {
            Self::Kafka(k) => Some(k.metrics()),
            Self::Files(_) => None,
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
