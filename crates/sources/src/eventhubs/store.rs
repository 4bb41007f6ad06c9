//! The checkpoint store: the SDK's Blob store, with the blob names every other SDK and KEDA use.
//!
//! Layout shared by Microsoft's SDKs (.NET `BlobCheckpointStore`, Python
//! `azure-eventhub-checkpointstoreblob`, Java, JS): in the container of the user's choice,
//! `<fqdn>/<event hub>/<consumer group>/checkpoint/<partition id>` and
//! `.../ownership/<partition id>`, empty block blobs whose metadata hold the state —
//! `sequencenumber` and `offset` for checkpoints, `ownerid` for ownership — and whose ETags make
//! ownership claims optimistic. `azure_messaging_eventhubs_checkpointstore_blob` 0.9 writes
//! exactly these metadata keys (`checkpoint_store.rs`: `OWNER_ID = "ownerid"`, `OFFSET =
//! "offset"`, `SEQUENCE_NUMBER = "sequencenumber"`), so we use it, but it keeps the case of the
//! three name parts while the .NET SDK lower-cases them (`BlobCheckpointStoreInternal`:
//! `FullyQualifiedNamespace.ToLowerInvariant()`, `EventHubName.ToLowerInvariant()`,
//! `ConsumerGroup.ToLowerInvariant()`) and KEDA's `azure-eventhub` scaler (`blobMetadata`
//! checkpoint strategy, `pkg/scalers/azure/azure_eventhub_checkpoint.go`) reads
//! `strings.ToLower(consumerGroup)`. A Rust consumer of `$Default` would write under
//! `$Default/` where KEDA looks under `$default/`. [`LowerCaseStore`] delegates to the SDK's
//! store with the three parts lower-cased, in every call, so our blobs are where they look.

use std::sync::Arc;

use azure_messaging_eventhubs::{
    CheckpointStore,
    models::{Checkpoint, Ownership},
};

/// Lower-cases the namespace, event hub and consumer group of every checkpoint and ownership
/// before the inner store names its blobs.
pub struct LowerCaseStore {
    inner: Arc<dyn CheckpointStore + Send + Sync>,
}

impl LowerCaseStore {
    pub fn new(inner: Arc<dyn CheckpointStore + Send + Sync>) -> Self {
        Self { inner }
    }
}

fn lower_ownership(o: &Ownership) -> Ownership {
    Ownership {
        fully_qualified_namespace: o.fully_qualified_namespace.to_lowercase(),
        event_hub_name: o.event_hub_name.to_lowercase(),
        consumer_group: o.consumer_group.to_lowercase(),
        ..o.clone()
    }
}

#[async_trait::async_trait]
impl CheckpointStore for LowerCaseStore {
    async fn claim_ownership(&self, ownerships: &[Ownership]) -> azure_core::Result<Vec<Ownership>> {
        let lowered: Vec<Ownership> = ownerships.iter().map(lower_ownership).collect();
        self.inner.claim_ownership(&lowered).await
    }

    async fn list_checkpoints(
        &self,
        namespace: &str,
        event_hub_name: &str,
        consumer_group: &str,
    ) -> azure_core::Result<Vec<Checkpoint>> {
        self.inner
            .list_checkpoints(&namespace.to_lowercase(), &event_hub_name.to_lowercase(), &consumer_group.to_lowercase())
            .await
    }

    async fn list_ownerships(
        &self,
        namespace: &str,
        event_hub_name: &str,
        consumer_group: &str,
    ) -> azure_core::Result<Vec<Ownership>> {
        let mut owned = self
            .inner
            .list_ownerships(&namespace.to_lowercase(), &event_hub_name.to_lowercase(), &consumer_group.to_lowercase())
            .await?;
        // The other SDKs relinquish a partition by writing an empty `ownerid` (Python's
        // `_relinquish_ownership`, .NET `RelinquishOwnershipAsync`); the Rust load balancer
        // would count "" as an owner until the claim expires.
        for o in &mut owned {
            if o.owner_id.as_deref().is_some_and(str::is_empty) {
                o.owner_id = None;
            }
        }
        Ok(owned)
    }

    async fn update_checkpoint(&self, checkpoint: Checkpoint) -> azure_core::Result<()> {
        self.inner
            .update_checkpoint(Checkpoint {
                fully_qualified_namespace: checkpoint.fully_qualified_namespace.to_lowercase(),
                event_hub_name: checkpoint.event_hub_name.to_lowercase(),
                consumer_group: checkpoint.consumer_group.to_lowercase(),
                ..checkpoint
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Records the names the inner store is asked for.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    #[async_trait::async_trait]
    impl CheckpointStore for Recorder {
        async fn claim_ownership(&self, o: &[Ownership]) -> azure_core::Result<Vec<Ownership>> {
            for o in o {
                self.0.lock().unwrap().push(Ownership::get_ownership_name(
                    &o.fully_qualified_namespace,
                    &o.event_hub_name,
                    &o.consumer_group,
                    &o.partition_id,
                )?);
            }
            Ok(o.to_vec())
        }
        async fn list_checkpoints(&self, n: &str, h: &str, g: &str) -> azure_core::Result<Vec<Checkpoint>> {
            self.0.lock().unwrap().push(Checkpoint::get_checkpoint_blob_prefix_name(n, h, g)?);
            Ok(Vec::new())
        }
        async fn list_ownerships(&self, n: &str, h: &str, g: &str) -> azure_core::Result<Vec<Ownership>> {
            self.0.lock().unwrap().push(Ownership::get_ownership_prefix_name(n, h, g)?);
            Ok(Vec::new())
        }
        async fn update_checkpoint(&self, c: Checkpoint) -> azure_core::Result<()> {
            self.0.lock().unwrap().push(Checkpoint::get_checkpoint_blob_name(
                &c.fully_qualified_namespace,
                &c.event_hub_name,
                &c.consumer_group,
                &c.partition_id,
            )?);
            Ok(())
        }
    }

    #[tokio::test]
    async fn every_blob_name_is_lower_cased_as_dotnet_and_keda_read_it() {
        let rec = Arc::new(Recorder::default());
        let store = LowerCaseStore::new(rec.clone());
        let (ns, hub, cg) = ("Contoso.ServiceBus.Windows.NET", "Defender-Hub", "$Default");
        let o = Ownership {
            fully_qualified_namespace: ns.into(),
            event_hub_name: hub.into(),
            consumer_group: cg.into(),
            partition_id: "3".into(),
            ..Default::default()
        };
        store.claim_ownership(&[o]).await.unwrap();
        store.list_checkpoints(ns, hub, cg).await.unwrap();
        store.list_ownerships(ns, hub, cg).await.unwrap();
        store
            .update_checkpoint(Checkpoint {
                fully_qualified_namespace: ns.into(),
                event_hub_name: hub.into(),
                consumer_group: cg.into(),
                partition_id: "3".into(),
                offset: Some("12".into()),
                sequence_number: Some(4),
            })
            .await
            .unwrap();
        let names = rec.0.lock().unwrap().clone();
        assert_eq!(
            names,
            [
                "contoso.servicebus.windows.net/defender-hub/$default/ownership/3",
                "contoso.servicebus.windows.net/defender-hub/$default/checkpoint/",
                "contoso.servicebus.windows.net/defender-hub/$default/ownership/",
                "contoso.servicebus.windows.net/defender-hub/$default/checkpoint/3",
            ]
        );
    }
}
