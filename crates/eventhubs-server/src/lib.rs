//! A strict local Azure Event Hubs endpoint over AMQP 1.0 (plain TCP), for tests only.
//!
//! It speaks what the service speaks to Microsoft's SDKs (Rust `azure_messaging_eventhubs` 0.15,
//! Python `azure-eventhub` 5.15), checked against their sources and against them on the wire
//! (`tests/tests/eventhubs_server.rs`, `tests/python/eventhubs_sdk.py`):
//!
//! - SASL ANONYMOUS (both SDKs: the Rust one on `amqp://` custom endpoints, the Python one for
//!   every connection-string client, `_pyamqp/authentication.py` `JWTTokenAuth`), then AMQP open;
//! - claims-based security on `$cbs` (`auth.rs`): SAS tokens verified against the key, other
//!   tokens only with `--accept-jwt`; every link to an entity needs a live grant covering it,
//!   else the attach is answered and detached with `amqp:unauthorized-access`;
//! - `$management` READ of `com.microsoft:eventhub` and `com.microsoft:partition` (`mgmt.rs`),
//!   with the exact AMQP types the Rust client converts (it panics on others);
//! - partition receivers with the selector filter (`filter.rs`), link credit, live tail and
//!   owner levels (`com.microsoft:epoch`, `link.rs`); senders to the hub or a partition, single
//!   messages and batches (message format `0x80013700`);
//! - every performative written with all its fields (`pad.rs`), as the Python SDK needs;
//! - an event log per partition (`store.rs`), appended and flushed before a send is settled and
//!   reloaded at start.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

pub mod auth;
pub mod filter;
mod link;
mod mgmt;
pub mod pad;
pub mod store;

pub use auth::{Authority, sas_token};

/// What the server serves.
#[derive(Debug, Clone)]
pub struct Config {
    /// The namespace's host name, e.g. `defender-test.servicebus.windows.net`.
    pub namespace: String,
    /// Event Hubs and their partition counts.
    pub hubs: Vec<(String, u32)>,
    /// Consumer groups besides `$Default` (every hub has them all).
    pub consumer_groups: Vec<String>,
    /// The shared access policy's name and key.
    pub key_name: String,
    pub key: String,
    /// Where the partition logs are kept across restarts (memory only without it).
    pub state: Option<PathBuf>,
    /// Accept tokens that are not SAS tokens (Entra JWTs) without verifying them.
    pub accept_jwt: bool,
}

/// The state every connection shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub authority: Authority,
    pub store: store::Store,
    /// Lower-case consumer group names (Event Hubs matches them case-insensitively).
    pub consumer_groups: Vec<String>,
    /// Receivers per (hub, consumer group, partition), for owner levels.
    pub receivers: Mutex<HashMap<(String, String, usize), Vec<link::Owner>>>,
    pub next_id: AtomicU64,
}

/// Serves `config` on `listener` until the process ends.
pub async fn serve(config: Config, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    let store = store::Store::open(&config.hubs, config.state.as_deref())?;
    let mut consumer_groups = vec!["$default".to_string()];
    consumer_groups.extend(config.consumer_groups.iter().map(|c| c.to_lowercase()));
    let shared = std::sync::Arc::new(Shared {
        authority: Authority {
            namespace: config.namespace.clone(),
            key_name: config.key_name.clone(),
            key: config.key.clone(),
            accept_jwt: config.accept_jwt,
        },
        store,
        consumer_groups,
        receivers: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(1),
    });
    loop {
        let (stream, peer) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            if let Err(e) = link::connection(shared, stream).await {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
        });
    }
}
