//! Settings of the Event Hubs source and the clients built from them.
//!
//! [`EventHubsConfig::new`] holds the defaults. The credentials are trait objects
//! ([`TokenCredential`]): a [`super::SasCredential`] minted from a connection string's key, or an
//! Entra token source the binary wraps (the same token sources as the Sentinel sink). Nothing here
//! holds a secret in a `Debug` form.

use std::{fmt, sync::Arc, time::Duration};

use azure_core::{credentials::TokenCredential, http::Url};
use azure_messaging_eventhubs::{ConsumerClient, StartLocation, StartPosition as SdkStart};
use azure_messaging_eventhubs_checkpointstore_blob::BlobCheckpointStore;
use azure_storage_blob::BlobContainerClient;

use super::{EventHubsError, store::LowerCaseStore};
use crate::StartPosition;

/// Defaults (the config file's too: `defender_config::defaults` reads them here).
pub mod defaults {
    use std::time::Duration;

    /// The consumer group every Event Hub has.
    pub const CONSUMER_GROUP: &str = "$Default";
    /// The SDK processor's own default prefetch.
    pub const PREFETCH: u32 = 300;
    /// Below the SDK's 30 s: a replica that joins or leaves is balanced within seconds.
    pub const LOAD_BALANCING_INTERVAL: Duration = Duration::from_secs(10);
    /// The SDK's default; must stay above the interval (twice at least).
    pub const PARTITION_EXPIRATION: Duration = Duration::from_secs(60);
    pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(5);
    pub const REVOKE_TIMEOUT: Duration = Duration::from_secs(60);
}

/// How the checkpoint container is reached.
#[derive(Clone)]
pub enum BlobAuth {
    /// A SAS (`sv=...&sig=...`) appended to the container URL: Azurite, or a SAS the operator
    /// issued for the container.
    Sas(String),
    /// Entra tokens for `https://storage.azure.com/.default` (Storage Blob Data Contributor).
    Token(Arc<dyn TokenCredential>),
}

impl fmt::Debug for BlobAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sas(_) => "Sas(***)",
            Self::Token(_) => "Token",
        })
    }
}

/// Settings of the Event Hubs source.
#[derive(Clone)]
pub struct EventHubsConfig {
    /// The namespace's fully qualified name, `<namespace>.servicebus.windows.net`.
    pub namespace: String,
    pub event_hub: String,
    pub consumer_group: String,
    /// Another AMQP endpoint than the namespace (private link, the local test endpoint:
    /// `amqp://127.0.0.1:PORT` speaks plain AMQP).
    pub custom_endpoint: Option<String>,
    pub credential: Arc<dyn TokenCredential>,
    /// The checkpoint container, `https://<account>.blob.core.windows.net/<container>`.
    pub checkpoint_container: Url,
    pub blob_auth: BlobAuth,
    /// Where a partition without a checkpoint starts.
    pub start: StartPosition,
    /// Events each partition receiver asks the service for ahead of the pipeline (AMQP link
    /// credit): the receiver's memory bound.
    pub prefetch: u32,
    /// The processor's load-balancing cycle (ownership renewal and claims).
    pub load_balancing_interval: Duration,
    /// Ownership not renewed for this long is free to claim (a dead replica's partitions).
    pub partition_expiration: Duration,
    pub checkpoint_interval: Duration,
    /// How long a partition loss waits for the pipeline to make it durable.
    pub revoke_timeout: Duration,
    /// How long a stop waits for the pipeline to drain.
    pub shutdown_grace: Duration,
    /// Events of one partition are handed over in chunks of about this many bytes, or after
    /// `chunk_age` without a new one.
    pub chunk_bytes: usize,
    pub chunk_age: Duration,
    /// This replica's id in the ownership blobs (`ownerid`): unique per replica, stable across
    /// its restarts (the pod name) so that a restarted replica renews its own claims at once.
    pub owner_id: String,
    /// Take part in ownership and checkpoint (`run`), or read every partition without either
    /// (`estimate`).
    pub processor: bool,
}

impl fmt::Debug for EventHubsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventHubsConfig")
            .field("namespace", &self.namespace)
            .field("event_hub", &self.event_hub)
            .field("consumer_group", &self.consumer_group)
            .field("custom_endpoint", &self.custom_endpoint)
            .field("checkpoint_container", &redacted(&self.checkpoint_container))
            .field("blob_auth", &self.blob_auth)
            .field("start", &self.start)
            .field("owner_id", &self.owner_id)
            .finish_non_exhaustive()
    }
}

/// A URL without its query (where a SAS would be).
pub(crate) fn redacted(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.to_string()
}

impl EventHubsConfig {
    pub fn new(
        namespace: impl Into<String>,
        event_hub: impl Into<String>,
        credential: Arc<dyn TokenCredential>,
        checkpoint_container: Url,
        blob_auth: BlobAuth,
    ) -> Self {
        Self {
            namespace: namespace.into(),
            event_hub: event_hub.into(),
            consumer_group: defaults::CONSUMER_GROUP.into(),
            custom_endpoint: None,
            credential,
            checkpoint_container,
            blob_auth,
            start: StartPosition::Earliest,
            prefetch: defaults::PREFETCH,
            load_balancing_interval: defaults::LOAD_BALANCING_INTERVAL,
            partition_expiration: defaults::PARTITION_EXPIRATION,
            checkpoint_interval: defaults::CHECKPOINT_INTERVAL,
            revoke_timeout: defaults::REVOKE_TIMEOUT,
            shutdown_grace: Duration::from_secs(25),
            chunk_bytes: 1 << 20,
            chunk_age: Duration::from_millis(100),
            owner_id: String::new(),
            processor: true,
        }
    }

    /// Checks what can be checked without connecting.
    pub fn check(&self) -> Result<(), EventHubsError> {
        if self.namespace.trim().is_empty() || self.event_hub.trim().is_empty() {
            return Err(EventHubsError::Config("namespace and event hub must not be empty".into()));
        }
        if self.partition_expiration <= self.load_balancing_interval {
            return Err(EventHubsError::Config(
                "the partition expiration must be longer than the load-balancing interval (twice is recommended)"
                    .into(),
            ));
        }
        if let Some(e) = &self.custom_endpoint {
            Url::parse(e).map_err(|e| EventHubsError::Config(format!("custom endpoint: {e}")))?;
        }
        if self.processor {
            self.container()?;
        }
        Ok(())
    }

    pub(super) async fn consumer(&self) -> Result<ConsumerClient, EventHubsError> {
        let mut b = ConsumerClient::builder().with_consumer_group(self.consumer_group.clone());
        if !self.owner_id.is_empty() {
            b = b.with_application_id(self.owner_id.clone());
        }
        if let Some(e) = &self.custom_endpoint {
            b = b.with_custom_endpoint(e.clone());
        }
        b.open(&self.namespace, self.event_hub.clone(), self.credential.clone())
            .await
            .map_err(|e| EventHubsError::Client(format!("cannot open the event hub: {e}")))
    }

    /// The checkpoint container's client.
    pub(super) fn container(&self) -> Result<BlobContainerClient, EventHubsError> {
        let (url, credential) = match &self.blob_auth {
            BlobAuth::Sas(sas) => {
                let mut u = self.checkpoint_container.clone();
                u.set_query(Some(sas.trim_start_matches('?')));
                (u, None)
            }
            BlobAuth::Token(t) => (self.checkpoint_container.clone(), Some(t.clone())),
        };
        BlobContainerClient::new(url, credential, None).map_err(|e| {
            EventHubsError::Config(format!(
                "checkpoint container {}: {}",
                redacted(&self.checkpoint_container),
                e.to_string().split('?').next().unwrap_or_default()
            ))
        })
    }

    /// The checkpoint store the processor uses (also `backfill --then-checkpoint`'s).
    pub fn store(&self) -> Result<Arc<LowerCaseStore>, EventHubsError> {
        Ok(Arc::new(LowerCaseStore::new(BlobCheckpointStore::new(self.container()?))))
    }

    /// The SDK's start position for partitions without a checkpoint. Exclusive (`>`): the
    /// processor reuses this position's `inclusive` for checkpoints, which name the last event
    /// done.
    pub(super) fn sdk_start(&self) -> SdkStart {
        let location = match self.start {
            StartPosition::Earliest => StartLocation::Earliest,
            StartPosition::Latest => StartLocation::Latest,
            StartPosition::Timestamp(ms) => StartLocation::EnqueuedTime(
                std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0)),
            ),
        };
        SdkStart { location, inclusive: false }
    }
}
