//! The Event Hubs side of the integration tests: a local `defender-eventhubs-server` process
//! (crates/eventhubs-server) with one hub, its state in a directory so it survives restarts, and
//! Microsoft's Rust SDK (`azure_messaging_eventhubs` 0.15) to feed and inspect it.
//!
//! The Rust SDK takes only a `TokenCredential`, and sends its token with `type` `jwt`
//! (`azure_core_amqp` 1.1 `fe2o3/cbs.rs`): [`SasCredential`] hands it a SAS token signed with the
//! hub's key, which the server verifies whatever the type says.
//!
//! The SDK runs here on a current-thread runtime, as in the daemon (`EventHubsSource::run`):
//! on a multi-thread one, fe2o3-amqp 0.14.1's sender loses the wake-up of a credit grant that
//! lands between its credit check and its wait (`link/state.rs` `consume` checks, then calls
//! `notified()`; `util/producer.rs` wakes with `notify_waiters`, which reaches only waiters
//! already registered), and a sender the peer credited once waits forever. That was the
//! helper's producer that hung now and then: a bare fe2o3 sender against fe2o3's acceptor,
//! one send per new link, hung in 142 of 2000 links on a 2-worker runtime and in none of 2000
//! on a current-thread one, where the session task cannot run between the check and the wait.

// Synchronous test code, never on a tokio worker: it waits with thread::sleep.
#![allow(clippy::disallowed_methods)]

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::Duration,
};

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_messaging_eventhubs::{ConsumerClient, EventDataBatchOptions, ProducerClient};

/// The namespace the server claims to be.
pub const NAMESPACE: &str = "defender-test.servicebus.windows.net";
/// The shared access policy of the tests.
pub const KEY_NAME: &str = "RootManageSharedAccessKey";
/// The environment variable the server reads its key from.
const KEY_ENV: &str = "DI_EVENTHUBS_SERVER_KEY";

/// The `defender-eventhubs-server` binary of this build (`scripts/test.sh` builds every binary
/// before the tests).
pub fn server_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let bin = exe.parent().and_then(Path::parent).expect("target/<profile>").join("defender-eventhubs-server");
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build -p defender-eventhubs-server` first (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// A SAS token credential for the Rust SDK: tokens for `sb://<namespace>/<hub>` signed with `key`.
#[derive(Debug, Clone)]
pub struct SasCredential {
    pub resource: String,
    pub key_name: String,
    pub key: String,
}

#[async_trait::async_trait]
impl TokenCredential for SasCredential {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        let expiry = now + 3600;
        let token = defender_eventhubs_server::sas_token(&self.resource, &self.key_name, &self.key, expiry);
        let expires_on = azure_core::time::OffsetDateTime::from_unix_timestamp(expiry).expect("a valid time");
        Ok(AccessToken::new(token, expires_on))
    }
}

/// A running `defender-eventhubs-server` (killed on drop).
pub struct EventHubs {
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
    hub: String,
    partitions: u32,
    key: String,
    extra_args: Vec<String>,
}

impl EventHubs {
    /// Starts a server with `hub` of `partitions` partitions, state in `dir/state`, log in
    /// `dir/eventhubs-server.log`, the key in an environment variable of the child.
    pub fn start(dir: &Path, hub: &str, partitions: u32) -> Self {
        Self::start_with(dir, hub, partitions, &[])
    }

    /// [`EventHubs::start`] with more arguments (`--consumer-group NAME`, `--accept-jwt`).
    pub fn start_with(dir: &Path, hub: &str, partitions: u32, extra_args: &[&str]) -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let key = format!("dGVzdC1rZXk{:x}{:x}=", std::process::id(), nanos);
        let mut hubs = Self {
            child: None,
            dir: dir.to_path_buf(),
            port: 0,
            hub: hub.to_string(),
            partitions,
            key,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
        };
        hubs.spawn();
        hubs
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("eventhubs-server.log"))
            .expect("server log");
        let state = self.dir.join("state");
        let mut child = Command::new(server_binary())
            .args(["--listen", &format!("127.0.0.1:{}", self.port), "--namespace", NAMESPACE])
            .args(["--hub", &format!("{}={}", self.hub, self.partitions), "--key-name", KEY_NAME, "--key-env", KEY_ENV])
            .arg("--state")
            .arg(&state)
            .args(&self.extra_args)
            .env(KEY_ENV, &self.key)
            .env("RUST_LOG", std::env::var("DI_EVENTHUBS_SERVER_LOG").unwrap_or_else(|_| "info".into()))
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn defender-eventhubs-server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).expect("server stdout");
        let v: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("defender-eventhubs-server printed {line:?} ({e}); see {}", self.dir.display()));
        self.port = v["port"].as_u64().expect("port") as u16;
        self.child = Some(child);
    }

    /// `amqp://127.0.0.1:PORT`: the custom endpoint of the Rust SDK's builders.
    pub fn endpoint(&self) -> String {
        format!("amqp://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn namespace(&self) -> &str {
        NAMESPACE
    }

    pub fn hub(&self) -> &str {
        &self.hub
    }

    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    pub fn key_name(&self) -> &str {
        KEY_NAME
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// The connection string of the Python SDK's emulator mode (plain AMQP to the port).
    pub fn connection_string(&self) -> String {
        format!(
            "Endpoint=sb://127.0.0.1:{};SharedAccessKeyName={KEY_NAME};SharedAccessKey={};EntityPath={};UseDevelopmentEmulator=true",
            self.port, self.key, self.hub
        )
    }

    /// A credential the Rust SDK can use for this hub.
    pub fn credential(&self) -> Arc<dyn TokenCredential> {
        Arc::new(SasCredential {
            resource: format!("sb://{NAMESPACE}/{}", self.hub),
            key_name: KEY_NAME.into(),
            key: self.key.clone(),
        })
    }

    /// A Rust SDK producer on this hub.
    pub async fn producer(&self) -> ProducerClient {
        ProducerClient::builder()
            .with_custom_endpoint(self.endpoint())
            .open(NAMESPACE, &self.hub, self.credential())
            .await
            .expect("producer client")
    }

    /// A Rust SDK consumer on this hub and `consumer_group`.
    pub async fn consumer(&self, consumer_group: &str) -> ConsumerClient {
        ConsumerClient::builder()
            .with_custom_endpoint(self.endpoint())
            .with_consumer_group(consumer_group.to_string())
            .open(NAMESPACE, self.hub.clone(), self.credential())
            .await
            .expect("consumer client")
    }

    /// Kills the server (SIGKILL) and starts it again on the same port and state.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `bodies` to `partition` in batches with the Rust SDK; returns when every batch is
    /// acknowledged.
    pub fn produce(&self, partition: u32, bodies: &[Vec<u8>]) {
        self.block_on(async {
            let producer = self.producer().await;
            let options =
                || Some(EventDataBatchOptions { partition_id: Some(partition.to_string()), ..Default::default() });
            let mut batch = producer.create_batch(options()).await.expect("batch");
            for body in bodies {
                if !batch.try_add_event_data(body.clone(), None).expect("add to batch") {
                    producer.send_batch(batch, None).await.expect("send batch");
                    batch = producer.create_batch(options()).await.expect("batch");
                    assert!(batch.try_add_event_data(body.clone(), None).expect("add"), "an event fits an empty batch");
                }
            }
            if !batch.is_empty() {
                producer.send_batch(batch, None).await.expect("send batch");
            }
            producer.close().await.expect("close producer");
        })
    }

    /// The last sequence number of `partition` (`$management`), `None` when it is empty.
    pub fn last_enqueued(&self, partition: u32) -> Option<i64> {
        self.block_on(async {
            let producer = self.producer().await;
            let props = producer.get_partition_properties(&partition.to_string()).await.expect("partition properties");
            let _ = producer.close().await;
            (!props.is_empty).then_some(props.last_enqueued_sequence_number)
        })
    }
}

impl EventHubs {
    /// [`block_on`] whose time-out shows the end of the server's log.
    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        runtime().block_on(async { tokio::time::timeout(Duration::from_secs(60), f).await }).unwrap_or_else(|_| {
            let log = std::fs::read_to_string(self.dir.join("eventhubs-server.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            panic!("event hubs helper timed out after 60 s; server log:\n{}", tail.join("\n"))
        })
    }
}

impl Drop for EventHubs {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `f` on a runtime of its own (the helpers are called from synchronous tests).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    runtime().block_on(async {
        tokio::time::timeout(Duration::from_secs(60), f).await.expect("event hubs helper timed out")
    })
}

/// A current-thread runtime for one call: never a multi-thread one (see the module doc).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}
