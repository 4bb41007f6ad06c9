//! Connections, sessions and links: what each attach is, whether it is allowed, and the tasks
//! that serve it.
//!
//! Invariants:
//! - every attach is answered (fe2o3's acceptor completes it) and a refused one is then detached
//!   with the service's error condition: `amqp:not-found` (unknown hub, consumer group or
//!   partition), `amqp:unauthorized-access` (no live `$cbs` grant covers the entity),
//!   `amqp:link:stolen` (owner levels);
//! - a partition receiver never has more deliveries outstanding than its credit: fe2o3's sender
//!   waits for credit before each transfer;
//! - a send is settled (accepted) only after its events were appended to the log.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fe2o3_amqp::acceptor::{
    ConnectionAcceptor, LinkAcceptor, LinkEndpoint, ListenerSessionHandle, SaslAnonymousMechanism, SessionAcceptor,
    SupportedReceiverSettleModes,
};
use fe2o3_amqp::link::delivery::Sendable;
use fe2o3_amqp::types::definitions::{self, AmqpError, ErrorCondition, LinkError, ReceiverSettleMode, Role};
use fe2o3_amqp::types::messaging::annotations::OwnedKey;
use fe2o3_amqp::types::messaging::message::__private::{Deserializable, Serializable};
use fe2o3_amqp::types::messaging::{Body, Message, MessageAnnotations, TargetArchetype};
use fe2o3_amqp::types::performatives::Attach;
use fe2o3_amqp::types::primitives::{Symbol, Timestamp, Value};
use fe2o3_amqp::{Receiver, Sender};
use tokio::sync::{mpsc, watch};

use crate::Shared;
use crate::filter::{self, StartPosition};
use crate::store::{Event, Hub, now_ms};

/// The message format of a batch: each Data section is an encoded message (both SDKs:
/// Rust `producer/mod.rs` `BATCH_MESSAGE_FORMAT`, Python `_pyamqp/message.py` `BatchMessage`).
pub const BATCH_MESSAGE_FORMAT: u32 = 0x8001_3700;

/// The largest message (or batch) a link takes: 1 MiB, as Event Hubs Standard advertises.
pub const MAX_MESSAGE_SIZE: u64 = 1024 * 1024;

pub(crate) type AmqpMessage = Message<Body<Value>>;

/// A receiver registered on a partition of a consumer group.
#[derive(Debug)]
pub(crate) struct Owner {
    id: u64,
    name: String,
    epoch: Option<i64>,
    kick: watch::Sender<Option<definitions::Error>>,
}

/// A reply link: its id and the queue of its task.
type ReplyLink = (u64, mpsc::Sender<AmqpMessage>);

/// What a connection holds: its `$cbs` grants and the links replies go to.
#[derive(Debug, Default)]
pub(crate) struct ConnState {
    /// (entity path, expiry in ms) granted by put-token.
    grants: Mutex<Vec<(String, i64)>>,
    /// Reply links by (session, target address).
    replies: Mutex<HashMap<(u64, String), ReplyLink>>,
}

impl ConnState {
    pub fn grant(&self, path: String, expiry_ms: i64) {
        self.grants.lock().unwrap().push((path, expiry_ms));
    }

    pub fn authorized(&self, path: &str) -> bool {
        let now = now_ms();
        self.grants.lock().unwrap().iter().any(|(g, exp)| *exp > now && crate::auth::covers(g, path))
    }

    /// Sends a reply on the link attached by the client on `session` (or any session) to `to`.
    pub async fn reply(&self, session: u64, to: &str, message: AmqpMessage) {
        let tx = {
            let replies = self.replies.lock().unwrap();
            replies
                .get(&(session, to.to_string()))
                .or_else(|| replies.iter().find(|((_, a), _)| a == to).map(|(_, v)| v))
                .map(|(_, tx)| tx.clone())
        };
        match tx {
            Some(tx) => {
                let _ = tx.send(message).await;
            }
            None => tracing::debug!(to, "no reply link"),
        }
    }
}

pub(crate) fn error(condition: impl Into<ErrorCondition>, description: impl Into<String>) -> definitions::Error {
    definitions::Error::new(condition, Some(description.into()), None)
}

/// Serves one TCP connection.
pub(crate) async fn connection(shared: Arc<Shared>, stream: tokio::net::TcpStream) -> anyhow::Result<()> {
    // The service's open and begin values (a trace of them: vcabbage/amqp issue 43). They must
    // not be fe2o3's defaults, which it encodes as null and the Python SDK cannot take as null
    // (`_connection.py` compares max-frame-size, `session.py` counts handles against handle-max).
    let acceptor = ConnectionAcceptor::builder()
        .container_id("defender-eventhubs-server")
        .max_frame_size(65_536)
        .channel_max(4_999)
        .sasl_acceptor(SaslAnonymousMechanism::new())
        .build();
    let mut conn = acceptor.accept(crate::pad::PadStream::new(stream)).await?;
    let state = Arc::new(ConnState::default());
    let sessions = SessionAcceptor::builder().handle_max(255).incoming_window(5_000).outgoing_window(5_000).build();
    while let Some(incoming) = conn.next_incoming_session().await {
        let session = sessions.accept_incoming_session(incoming, &mut conn).await?;
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(session_task(shared.clone(), state.clone(), session, id));
    }
    let _ = conn.close().await;
    Ok(())
}

/// What an attach asks for.
enum Kind {
    /// Client sends requests to `$cbs` or `$management`.
    Requests { cbs: bool },
    /// Client receives replies from `$cbs` / `$management` at `address`.
    Replies { address: String, node: &'static str },
    /// Client publishes to a hub or one of its partitions.
    Publish { hub: Arc<Hub>, partition: Option<usize> },
    /// Client reads a partition.
    Consume { hub: Arc<Hub>, cg: String, partition: usize, start: StartPosition, epoch: Option<i64> },
}

async fn session_task(shared: Arc<Shared>, conn: Arc<ConnState>, mut session: ListenerSessionHandle, id: u64) {
    // Event Hubs Standard's limit; the Rust SDK sizes its batches from it (and fails without).
    // Settlement mode `first` only, as the service: the Python producer asks for `second`
    // (`_pyamqp/sender.py`) and waits for a settled disposition, which `second` never sends.
    let links = LinkAcceptor::builder()
        .max_message_size(MAX_MESSAGE_SIZE)
        .supported_receiver_settle_modes(SupportedReceiverSettleModes::First)
        .fallback_receiver_settle_mode(ReceiverSettleMode::First)
        .build();
    while let Some(attach) = session.next_incoming_attach().await {
        let kind = classify(&shared, &conn, &attach);
        let name = attach.name.clone();
        // A reply link is registered before its attach is answered: the client sends its first
        // request as soon as it has the answer.
        let mut reply = match &kind {
            Ok(Kind::Replies { address, node }) => {
                let link_id = shared.next_id.fetch_add(1, Ordering::Relaxed);
                let (tx, rx) = mpsc::channel(16);
                // By the reply-to address the Rust SDK sets, and by node for requests without
                // one (Python's `_pyamqp/management_link.py` sets only the message id).
                let keys = vec![(id, address.clone()), (id, node.to_string())];
                for key in &keys {
                    conn.replies.lock().unwrap().insert(key.clone(), (link_id, tx.clone()));
                }
                Some((link_id, keys, rx))
            }
            _ => None,
        };
        let endpoint = match links.accept_incoming_attach(attach, &mut session).await {
            Ok(e) => e,
            Err(e) => {
                tracing::debug!(error = %e, "attach failed");
                if let Some((link_id, keys, _)) = reply.take() {
                    let mut r = conn.replies.lock().unwrap();
                    for key in keys {
                        if r.get(&key).is_some_and(|(l, _)| *l == link_id) {
                            r.remove(&key);
                        }
                    }
                }
                continue;
            }
        };
        match (kind, endpoint) {
            (Err(err), LinkEndpoint::Sender(s)) => {
                tokio::spawn(async move { close_sender(s, err).await });
            }
            (Err(err), LinkEndpoint::Receiver(r)) => {
                tokio::spawn(async move {
                    let _ = r.close_with_error(err).await;
                });
            }
            (Ok(Kind::Requests { cbs }), LinkEndpoint::Receiver(r)) => {
                let (shared, conn) = (shared.clone(), conn.clone());
                tokio::spawn(async move { requests(shared, conn, r, id, cbs).await });
            }
            (Ok(Kind::Replies { .. }), LinkEndpoint::Sender(s)) if reply.is_some() => {
                let (link_id, keys, rx) = reply.take().unwrap();
                let conn = conn.clone();
                tokio::spawn(async move {
                    replies(s, rx).await;
                    let mut r = conn.replies.lock().unwrap();
                    for key in keys {
                        if r.get(&key).is_some_and(|(l, _)| *l == link_id) {
                            r.remove(&key);
                        }
                    }
                });
            }
            (Ok(Kind::Publish { hub, partition }), LinkEndpoint::Receiver(r)) => {
                tokio::spawn(async move { publish(hub, partition, r).await });
            }
            (Ok(Kind::Consume { hub, cg, partition, start, epoch }), LinkEndpoint::Sender(s)) => {
                let shared = shared.clone();
                tokio::spawn(async move { consume(shared, hub, cg, partition, start, epoch, name, s).await });
            }
            (_, LinkEndpoint::Sender(s)) => {
                tokio::spawn(
                    async move { close_sender(s, error(AmqpError::NotAllowed, "unexpected link role")).await },
                );
            }
            (_, LinkEndpoint::Receiver(r)) => {
                tokio::spawn(async move {
                    let _ = r.close_with_error(error(AmqpError::NotAllowed, "unexpected link role")).await;
                });
            }
        }
    }
}

async fn close_sender(s: Sender, err: definitions::Error) {
    let _ = s.close_with_error(err).await;
}

fn not_found(what: &str) -> definitions::Error {
    error(AmqpError::NotFound, format!("The messaging entity '{what}' could not be found."))
}

fn classify(shared: &Shared, conn: &ConnState, attach: &Attach) -> Result<Kind, definitions::Error> {
    let address = match attach.role {
        // The remote sends: our side receives into its target.
        Role::Sender => match attach.target.as_deref() {
            Some(TargetArchetype::Target(t)) => t.address.clone(),
            _ => None,
        },
        Role::Receiver => attach.source.as_ref().and_then(|s| s.address.clone()),
    }
    .unwrap_or_default();
    let path = shared.authority.entity_path(&address).map_err(|e| error(AmqpError::NotFound, e))?;
    let segments: Vec<&str> = path.split('/').collect();
    let is_node = |s: &str| s.eq_ignore_ascii_case("$cbs") || s.eq_ignore_ascii_case("$management");
    // `$management` may come as `<hub>/$management`.
    if segments.last().copied().is_some_and(is_node) && segments.len() <= 2 {
        let cbs = segments.last().unwrap().eq_ignore_ascii_case("$cbs");
        return match attach.role {
            Role::Sender => Ok(Kind::Requests { cbs }),
            Role::Receiver => {
                let reply_to = match attach.target.as_deref() {
                    Some(TargetArchetype::Target(t)) => t.address.clone(),
                    _ => None,
                };
                let node = if cbs { "$cbs" } else { "$management" };
                Ok(Kind::Replies { address: reply_to.unwrap_or_default(), node })
            }
        };
    }
    let hub = shared.store.hub(segments[0]).ok_or_else(|| not_found(&address))?.clone();
    let partition_of = |s: &str| -> Result<usize, definitions::Error> {
        s.parse::<usize>().ok().filter(|p| *p < hub.partitions.len()).ok_or_else(|| not_found(&address))
    };
    let lower: Vec<String> = segments.iter().map(|s| s.to_lowercase()).collect();
    let lower: Vec<&str> = lower.iter().map(String::as_str).collect();
    let kind = match (attach.role.clone(), lower.as_slice()) {
        (Role::Sender, [_]) => Kind::Publish { hub: hub.clone(), partition: None },
        (Role::Sender, [_, "partitions", p]) => Kind::Publish { hub: hub.clone(), partition: Some(partition_of(p)?) },
        (Role::Receiver, [_, "consumergroups", cg, "partitions", p]) => {
            if !shared.consumer_groups.iter().any(|c| c == cg) {
                return Err(not_found(&address));
            }
            let partition = partition_of(p)?;
            let start = start_position(attach)?;
            let epoch =
                attach.properties.as_ref().and_then(|p| p.get(&Symbol::from("com.microsoft:epoch"))).and_then(int);
            Kind::Consume { hub: hub.clone(), cg: cg.to_string(), partition, start, epoch }
        }
        _ => return Err(not_found(&address)),
    };
    if !conn.authorized(&path) {
        let claim = if matches!(kind, Kind::Publish { .. }) { "Send" } else { "Listen" };
        return Err(error(
            AmqpError::UnauthorizedAccess,
            format!(
                "Unauthorized access. '{claim}' claim(s) are required to perform this operation. Resource: '{address}'."
            ),
        ));
    }
    Ok(kind)
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Long(n) => Some(*n),
        Value::Int(n) => Some(i64::from(*n)),
        Value::Short(n) => Some(i64::from(*n)),
        Value::Ubyte(n) => Some(i64::from(*n)),
        Value::Byte(n) => Some(i64::from(*n)),
        Value::Ushort(n) => Some(i64::from(*n)),
        Value::Uint(n) => Some(i64::from(*n)),
        Value::Ulong(n) => i64::try_from(*n).ok(),
        _ => None,
    }
}

/// The receiver's start position from its source filter (`@latest` without one).
fn start_position(attach: &Attach) -> Result<StartPosition, definitions::Error> {
    let Some(filters) = attach.source.as_ref().and_then(|s| s.filter.as_ref()) else {
        return Ok(StartPosition::Latest);
    };
    for (key, value) in filters.iter() {
        let expr = match value {
            Value::Described(d) => match &d.value {
                Value::String(s) => Some(s.clone()),
                Value::Binary(b) => Some(String::from_utf8_lossy(b).into_owned()),
                _ => None,
            },
            _ => None,
        };
        let is_selector = key.as_str() == filter::SELECTOR_FILTER_NAME
            || matches!(value, Value::Described(d) if matches!(&d.descriptor,
                serde_amqp::descriptor::Descriptor::Code(c) if *c == filter::SELECTOR_FILTER_CODE));
        if is_selector {
            let expr = expr.ok_or_else(|| error(AmqpError::InvalidField, "the selector filter is not a string"))?;
            return filter::parse(&expr).map_err(|e| error(AmqpError::InvalidField, e));
        }
    }
    Ok(StartPosition::Latest)
}

/// Requests on `$cbs` or `$management`: each is accepted, answered on the reply link.
async fn requests(shared: Arc<Shared>, conn: Arc<ConnState>, mut r: Receiver, session: u64, cbs: bool) {
    loop {
        let delivery = match r.recv::<Body<Value>>().await {
            Ok(d) => d,
            Err(e) => {
                tracing::debug!(error = %e, "request link ended");
                break;
            }
        };
        if r.accept(&delivery).await.is_err() {
            break;
        }
        let request = delivery.into_message();
        let reply_to = request
            .properties
            .as_ref()
            .and_then(|p| p.reply_to.clone())
            .unwrap_or_else(|| if cbs { "$cbs" } else { "$management" }.to_string());
        let reply = if cbs {
            crate::mgmt::put_token(&shared, &conn, &request)
        } else {
            crate::mgmt::read(&shared, &conn, &request)
        };
        conn.reply(session, &reply_to, reply).await;
    }
}

async fn replies(mut s: Sender, mut rx: mpsc::Receiver<AmqpMessage>) {
    loop {
        tokio::select! {
            m = rx.recv() => {
                let Some(m) = m else { break };
                match s.send_batchable(Sendable::builder().message(m).build()).await {
                    Ok(_fut) => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "reply link ended");
                        break;
                    }
                }
            }
            _ = s.on_detach() => break,
        }
    }
    let _ = s.close().await;
}

/// A publisher: every delivery (a message or a batch) is appended, then accepted.
async fn publish(hub: Arc<Hub>, partition: Option<usize>, mut r: Receiver) {
    // fe2o3's acceptor grants the first credit right after answering the attach. A client on
    // fe2o3-amqp 0.14.1 (the Rust SDK) running on a multi-thread runtime can lose the wake-up
    // of that flow (its sender checks its credit, then waits with `notified()`; the session
    // wakes with `notify_waiters`, which misses a waiter not yet registered) and then waits for
    // a flow that never comes: a bare fe2o3 sender did in 142 of 2000 links. The tests' helper
    // and the daemon run the SDK on a current-thread runtime, where it cannot happen; a second
    // flow with the same credit (harmless) still frees any other client that missed the first.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _ = r.set_credit(fe2o3_amqp::link::DEFAULT_CREDIT).await;
    loop {
        let delivery = match r.recv::<Body<Value>>().await {
            Ok(d) => d,
            Err(e) => {
                tracing::debug!(error = %e, "publisher link ended");
                break;
            }
        };
        let batch = *delivery.message_format() == Some(BATCH_MESSAGE_FORMAT);
        let message = delivery.message();
        let partition_key = message
            .message_annotations
            .as_ref()
            .and_then(|a| a.0.get(&OwnedKey::Symbol(Symbol::from("x-opt-partition-key"))))
            .and_then(|v| match v {
                Value::String(s) => Some(s.clone()),
                _ => None,
            });
        let messages = if batch {
            match &message.body {
                Body::Data(sections) => sections.iter().map(|d| d.0.to_vec()).collect(),
                _ => {
                    let _ = r.close_with_error(error(AmqpError::DecodeError, "a batch must have data sections")).await;
                    return;
                }
            }
        } else {
            match serde_amqp::to_vec(&Serializable(message)) {
                Ok(bytes) => vec![bytes],
                Err(e) => {
                    let _ = r.close_with_error(error(AmqpError::DecodeError, e.to_string())).await;
                    return;
                }
            }
        };
        let p = partition.unwrap_or_else(|| hub.pick(partition_key.as_deref()));
        if let Err(e) = hub.partitions[p].append(messages, partition_key.as_deref()) {
            tracing::error!(error = %e, hub = %hub.name, partition = p, "append failed");
            let _ = r.reject(&delivery, error(AmqpError::InternalError, "the event could not be stored")).await;
            continue;
        }
        if r.accept(&delivery).await.is_err() {
            break;
        }
    }
}

/// The message a receiver gets for a stored event: the producer's message with the service's
/// annotations (types as both SDKs read them: sequence number long, offset string, enqueued time
/// timestamp, partition key string).
fn delivered(event: &Event) -> Result<AmqpMessage, serde_amqp::Error> {
    let mut m: AmqpMessage = serde_amqp::from_slice::<Deserializable<AmqpMessage>>(&event.message)?.0;
    let mut annotations = m.message_annotations.take().map(|a| a.0).unwrap_or_default();
    let mut set = |k: &str, v: Value| {
        annotations.insert(OwnedKey::Symbol(Symbol::from(k)), v);
    };
    set("x-opt-sequence-number", Value::Long(event.sequence_number));
    set("x-opt-offset", Value::String(event.offset.to_string()));
    set("x-opt-enqueued-time", Value::Timestamp(Timestamp::from_milliseconds(event.enqueued_ms)));
    match &event.partition_key {
        Some(k) => set("x-opt-partition-key", Value::String(k.clone())),
        None => {
            annotations.swap_remove(&OwnedKey::Symbol(Symbol::from("x-opt-partition-key")));
        }
    }
    m.message_annotations = Some(MessageAnnotations(annotations));
    Ok(m)
}

/// Registers a receiver, applying owner levels as the service does: an epoch receiver
/// disconnects the receivers of a lower or equal epoch and the non-epoch ones; it is refused when
/// a higher epoch is there; a non-epoch receiver is refused when any epoch receiver is there.
fn register(
    shared: &Shared,
    key: (String, String, usize),
    id: u64,
    name: &str,
    epoch: Option<i64>,
) -> Result<watch::Receiver<Option<definitions::Error>>, definitions::Error> {
    let mut all = shared.receivers.lock().unwrap();
    let owners = all.entry(key).or_default();
    let highest = owners.iter().filter_map(|o| o.epoch).max();
    match (epoch, highest) {
        (Some(e), Some(h)) if h > e => {
            return Err(error(
                LinkError::Stolen,
                format!(
                    "Receiver '{name}' with a higher epoch '{h}' already exists. Receiver '{name}' with epoch {e} cannot be created. Make sure you are creating receiver with increasing epoch value to ensure connectivity, or ensure all old epoch receivers are closed or disconnected."
                ),
            ));
        }
        (None, Some(h)) => {
            return Err(error(
                LinkError::Stolen,
                format!(
                    "At least one receiver for the endpoint is created with epoch of '{h}', and so non-epoch receiver is not allowed. Either reconnect with a higher epoch, or make sure all epoch receivers are closed or disconnected."
                ),
            ));
        }
        (None, None) if owners.len() >= 5 => {
            return Err(error(
                AmqpError::ResourceLimitExceeded,
                "Exceeded the maximum number of allowed receivers per partition in a consumer group which is 5.",
            ));
        }
        (Some(e), _) => {
            for old in owners.drain(..) {
                let theirs = old.epoch.map_or_else(|| "non-epoch".to_string(), |x| format!("epoch '{x}'"));
                let _ = old.kick.send(Some(error(
                    LinkError::Stolen,
                    format!(
                        "New receiver '{name}' with higher epoch of '{e}' is created hence current receiver '{}' with {theirs} is getting disconnected. If you are recreating the receiver, make sure a higher epoch is used.",
                        old.name
                    ),
                )));
            }
        }
        (None, None) => {}
    }
    let (kick, rx) = watch::channel(None);
    owners.push(Owner { id, name: name.to_string(), epoch, kick });
    Ok(rx)
}

fn unregister(shared: &Shared, key: &(String, String, usize), id: u64) {
    let mut all = shared.receivers.lock().unwrap();
    if let Some(owners) = all.get_mut(key) {
        owners.retain(|o| o.id != id);
    }
}

/// A partition receiver: sends the log from its start position, then follows it, within credit.
#[allow(clippy::too_many_arguments)]
async fn consume(
    shared: Arc<Shared>,
    hub: Arc<Hub>,
    cg: String,
    p: usize,
    start: StartPosition,
    epoch: Option<i64>,
    name: String,
    mut s: Sender,
) {
    let key = (hub.name.to_lowercase(), cg, p);
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let mut kicked = match register(&shared, key.clone(), id, &name, epoch) {
        Ok(rx) => rx,
        Err(err) => {
            let _ = s.close_with_error(err).await;
            return;
        }
    };
    let partition = &hub.partitions[p];
    let mut count = partition.subscribe();
    let mut next = partition.resolve(&start);
    let outcome: Option<definitions::Error> = 'serve: loop {
        let events = partition.read(next, 64);
        if events.is_empty() {
            tokio::select! {
                _ = count.changed() => continue,
                _ = kicked.changed() => break 'serve kicked.borrow().clone(),
                _ = s.on_detach() => break 'serve None,
            }
        }
        for event in events {
            let message = match delivered(&event) {
                Ok(m) => m,
                Err(e) => break 'serve Some(error(AmqpError::InternalError, format!("stored event unreadable: {e}"))),
            };
            let sendable = Sendable::builder().message(message).build();
            loop {
                tokio::select! {
                    sent = s.send_batchable_ref(&sendable) => match sent {
                        Ok(_outcome) => break,
                        Err(e) => {
                            tracing::debug!(error = %e, "receiver link ended");
                            unregister(&shared, &key, id);
                            return;
                        }
                    },
                    _ = kicked.changed() => break 'serve kicked.borrow().clone(),
                    // Waiting for credit: notice a detach meanwhile.
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {
                        if tokio::time::timeout(Duration::from_millis(5), s.on_detach()).await.is_ok() {
                            break 'serve None;
                        }
                    }
                }
            }
            next += 1;
        }
    };
    unregister(&shared, &key, id);
    match outcome {
        Some(err) => {
            let _ = s.close_with_error(err).await;
        }
        None => {
            let _ = s.close().await;
        }
    }
}
