//! `defender-eventhubs-server`: the local Event Hubs AMQP endpoint, started by tests only.
//! Prints `{"endpoint":"amqp://127.0.0.1:PORT","port":PORT}` as one JSON line on stdout, then
//! serves until killed.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use defender_eventhubs_server::Config;

/// Strict local Azure Event Hubs endpoint over AMQP (plain TCP), for tests.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on (port 0: any free port). Bound with SO_REUSEADDR, so a restart can
    /// take the same port at once.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    /// The namespace's host name: link addresses naming another host are refused.
    #[arg(long, default_value = "defender-test.servicebus.windows.net")]
    namespace: String,
    /// An Event Hub and its partition count, NAME=PARTITIONS (repeatable).
    #[arg(long = "hub", value_name = "NAME=PARTITIONS", required = true)]
    hubs: Vec<String>,
    /// A consumer group besides `$Default` (repeatable; matched case-insensitively).
    #[arg(long = "consumer-group", value_name = "NAME")]
    consumer_groups: Vec<String>,
    /// The shared access policy's name.
    #[arg(long, default_value = "RootManageSharedAccessKey")]
    key_name: String,
    /// The environment variable holding the shared access key (never on the command line).
    #[arg(long)]
    key_env: String,
    /// Directory of the partition logs, kept across restarts (memory only without it).
    #[arg(long)]
    state: Option<PathBuf>,
    /// Accept tokens that are not SAS tokens (Entra JWTs) without verifying them: the local
    /// Entra token endpoint's tokens are opaque and cannot be checked from another process.
    #[arg(long)]
    accept_jwt: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut hubs = Vec::new();
    for h in &args.hubs {
        let (name, n) = h.split_once('=').with_context(|| format!("--hub {h}: expected NAME=PARTITIONS"))?;
        let n: u32 = n.parse().with_context(|| format!("--hub {h}: the partition count is not a number"))?;
        anyhow::ensure!(n > 0 && !name.is_empty(), "--hub {h}: a name and at least one partition");
        hubs.push((name.to_string(), n));
    }
    let key =
        std::env::var(&args.key_env).with_context(|| format!("environment variable {} is not set", args.key_env))?;
    let config = Config {
        namespace: args.namespace,
        hubs,
        consumer_groups: args.consumer_groups,
        key_name: args.key_name,
        key,
        state: args.state,
        accept_jwt: args.accept_jwt,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async move {
        let listener = listen(args.listen)?;
        let addr = listener.local_addr()?;
        println!("{}", serde_json::json!({ "endpoint": format!("amqp://{addr}"), "port": addr.port() }));
        defender_eventhubs_server::serve(config, listener).await.context("serving")
    })
}

/// The listening socket, its segments capped at [`MSS`].
///
/// Microsoft's Python SDK (`azure-eventhub` 5.15, `_pyamqp/_transport.py`
/// `_set_socket_options`) reads every TCP option of a new socket and sets it again. On loopback
/// the segment size it reads back can be 32768 (half the peer's window), one more than Linux
/// lets `TCP_MAXSEG` be set to (32767), and then its connect fails with EINVAL, every retry of
/// it: seen in the cross-SDK test, about one run in three. A listener with a smaller MSS
/// advertises it in its SYN-ACK, which bounds what the client reads back.
fn listen(addr: std::net::SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_tcp_mss(MSS)?;
    socket.bind(&addr.into()).with_context(|| format!("binding {addr}"))?;
    socket.listen(128)?;
    socket.set_nonblocking(true)?;
    Ok(tokio::net::TcpListener::from_std(socket.into())?)
}

/// Below the 32767 Linux accepts for `TCP_MAXSEG`, and above any real network's.
const MSS: u32 = 16_384;
