//! Settings of the Kafka source and the librdkafka configuration built from them.
//!
//! [`KafkaConfig::new`] holds the Event Hubs defaults (DESIGN.md §2); [`KafkaConfig::check`]
//! creates (never connects) a consumer so that every librdkafka property is checked at load.
//! The configuration can hold a secret (the connection string): it is never logged, and
//! [`KafkaAuth`]'s `Debug` hides it.

use std::{collections::BTreeMap, fmt, sync::Arc, time::Duration};

use rdkafka::{ClientConfig, consumer::BaseConsumer};
use tokio::sync::mpsc;

use super::{KafkaError, context::Ctx, metrics::KafkaMetrics};
use crate::{ByteBudget, SourceIo};

/// Where a partition with no committed offset starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPosition {
    Earliest,
    Latest,
    /// The first message enqueued at or after this time (Unix milliseconds).
    Timestamp(i64),
}

/// A source of Entra tokens for OAUTHBEARER (workload identity). Called on the consumer's
/// thread whenever librdkafka asks for a token (at connect and before the last one expires).
pub trait TokenProvider: Send + Sync {
    /// A token for Event Hubs and when it expires (Unix milliseconds).
    fn token(&self) -> Result<(String, i64), String>;
}

/// How the consumer authenticates.
#[derive(Clone)]
pub enum KafkaAuth {
    /// PLAINTEXT, no authentication (local brokers, tests).
    Plaintext,
    /// Event Hubs' SASL_SSL + PLAIN: user `$ConnectionString`, password the connection string.
    ConnectionString(String),
    /// SASL_SSL + OAUTHBEARER with Entra tokens (workload or managed identity).
    OAuth(Arc<dyn TokenProvider>),
}

impl fmt::Debug for KafkaAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Plaintext => "Plaintext",
            Self::ConnectionString(_) => "ConnectionString(***)",
            Self::OAuth(_) => "OAuth",
        })
    }
}

/// Settings of the Kafka source. [`KafkaConfig::new`] gives the Event Hubs defaults of
/// DESIGN.md §2.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `host:port[,host:port]`; for Event Hubs `<namespace>.servicebus.windows.net:9093`.
    pub bootstrap: String,
    /// Topics (Event Hubs: hub names), all tables in one or one per table.
    pub topics: Vec<String>,
    pub group_id: String,
    /// Static membership (`group.instance.id`), e.g. the pod name: a restarted pod gets its
    /// partitions back without a rebalance.
    pub group_instance_id: Option<String>,
    pub auth: KafkaAuth,
    pub start: StartPosition,
    pub commit_interval: Duration,
    pub session_timeout: Duration,
    /// How long a revocation waits for the pipeline to make the revoked partitions durable.
    pub revoke_timeout: Duration,
    /// How long a stop waits for the pipeline to drain.
    pub shutdown_grace: Duration,
    /// Messages of one partition are handed over in chunks of about this many bytes.
    pub chunk_bytes: usize,
    /// librdkafka's prefetch queue (`queued.max.messages.kbytes`), one queue for all partitions.
    pub prefetch_kbytes: usize,
    /// Join the group and commit (`run`), or read every partition of the topics without joining
    /// and without committing (`estimate`).
    pub group: bool,
    /// Further librdkafka properties, applied last.
    pub properties: BTreeMap<String, String>,
}

impl KafkaConfig {
    pub fn new(bootstrap: impl Into<String>, topics: Vec<String>, group_id: impl Into<String>) -> Self {
        Self {
            bootstrap: bootstrap.into(),
            topics,
            group_id: group_id.into(),
            group_instance_id: None,
            auth: KafkaAuth::Plaintext,
            start: StartPosition::Earliest,
            commit_interval: Duration::from_secs(2),
            session_timeout: Duration::from_secs(30),
            revoke_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(25),
            chunk_bytes: 1 << 20,
            prefetch_kbytes: 16 * 1024,
            group: true,
            properties: BTreeMap::new(),
        }
    }

    /// The librdkafka configuration. Holds the secret: never log it.
    pub(super) fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap)
            .set("group.id", &self.group_id)
            .set("client.id", "defender-ingest")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set(
                "auto.offset.reset",
                match self.start {
                    StartPosition::Latest => "latest",
                    StartPosition::Earliest | StartPosition::Timestamp(_) => "earliest",
                },
            )
            .set("session.timeout.ms", self.session_timeout.as_millis().to_string())
            // The service drops connections idle for 240 s.
            .set("metadata.max.age.ms", "180000")
            .set("connections.max.idle.ms", "180000")
            .set("socket.keepalive.enable", "true")
            .set("queued.max.messages.kbytes", self.prefetch_kbytes.to_string())
            .set("statistics.interval.ms", "5000");
        if let Some(id) = &self.group_instance_id {
            c.set("group.instance.id", id);
        }
        match &self.auth {
            KafkaAuth::Plaintext => {
                c.set("security.protocol", "plaintext");
            }
            KafkaAuth::ConnectionString(cs) => {
                c.set("security.protocol", "sasl_ssl")
                    .set("sasl.mechanism", "PLAIN")
                    .set("sasl.username", "$ConnectionString")
                    .set("sasl.password", cs);
            }
            KafkaAuth::OAuth(_) => {
                c.set("security.protocol", "sasl_ssl").set("sasl.mechanism", "OAUTHBEARER");
            }
        }
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }

    /// Creates the consumer (no connection yet): checks every property. Used by `run` and by
    /// config checks.
    pub(super) fn consumer(&self, ctx: Ctx) -> Result<BaseConsumer<Ctx>, KafkaError> {
        if self.topics.is_empty() {
            return Err(KafkaError::Config("no topic to read".into()));
        }
        if self.topics.len() > 1 << 15 {
            return Err(KafkaError::Config("too many topics".into()));
        }
        self.client_config().create_with_context(ctx).map_err(|e| KafkaError::Config(e.to_string()))
    }

    /// Checks the configuration by creating (not connecting) a consumer.
    pub fn check(&self) -> Result<(), KafkaError> {
        let (tx, _rx) = mpsc::channel(1);
        let (io, _stop) = SourceIo::new(tx, ByteBudget::new(1));
        self.consumer(Ctx::new(self, &io, KafkaMetrics::default())).map(drop)
    }
}
