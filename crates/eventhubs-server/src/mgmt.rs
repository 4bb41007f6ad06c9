//! Request/response nodes: `$cbs` put-token and `$management` READ.
//!
//! Replies carry `correlation-id` = the request's `message-id` and application properties
//! `status-code` (int) and `status-description` (string): what `fe2o3-amqp-management` 0.14
//! (`mgmt_ext.rs`, either `status-code` or `statusCode`), `fe2o3-amqp-cbs` and Python's
//! `_pyamqp/management_operation.py` read.
//!
//! `$management` READ bodies, with the AMQP types `azure_messaging_eventhubs` 0.15
//! (`common/management.rs`) converts — it panics on others — and Python's `_client_base.py`
//! reads:
//! - `com.microsoft:eventhub`: `name` string, `created_at` timestamp, `partition_count` int,
//!   `partition_ids` array of string;
//! - `com.microsoft:partition`: `type`, `name`, `partition` strings, `begin_sequence_number`,
//!   `last_enqueued_sequence_number` long, `last_enqueued_offset` string,
//!   `last_enqueued_time_utc` timestamp, `is_partition_empty` bool, and
//!   `last_enqueued_sequence_number_epoch` long (the Rust client calls the reply invalid without
//!   it).
//!
//! A request's `security_token` (the Rust client sends its credential's token with every
//! request; `fe2o3/management.rs`) is verified like a put-token; without one, the connection's
//! `$cbs` grants must cover the hub.

use fe2o3_amqp::types::messaging::{AmqpValue, ApplicationProperties, Body, Message, Properties};
use fe2o3_amqp::types::primitives::{Array, OrderedMap, SimpleValue, Timestamp, Value};

use crate::Shared;
use crate::link::{AmqpMessage, ConnState};
use crate::store::now_ms;

fn prop<'a>(m: &'a AmqpMessage, key: &str) -> Option<&'a SimpleValue> {
    m.application_properties.as_ref().and_then(|a| a.0.get(key))
}

fn text(v: Option<&SimpleValue>) -> Option<String> {
    match v? {
        SimpleValue::String(s) => Some(s.clone()),
        SimpleValue::Symbol(s) => Some(s.to_string()),
        SimpleValue::Binary(b) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    }
}

fn reply(request: &AmqpMessage, status: i32, description: &str, body: Option<OrderedMap<Value, Value>>) -> AmqpMessage {
    let mut props = OrderedMap::new();
    props.insert("status-code".to_string(), SimpleValue::Int(status));
    props.insert("status-description".to_string(), SimpleValue::String(description.to_string()));
    let properties = Properties {
        correlation_id: request.properties.as_ref().and_then(|p| p.message_id.clone()),
        ..Default::default()
    };
    Message {
        header: None,
        delivery_annotations: None,
        message_annotations: None,
        properties: Some(properties),
        application_properties: Some(ApplicationProperties(props)),
        body: match body {
            Some(map) => Body::Value(AmqpValue(Value::Map(map))),
            None => Body::Value(AmqpValue(Value::Null)),
        },
        footer: None,
    }
}

/// `put-token`: verifies the token and grants its entity to the connection.
pub(crate) fn put_token(shared: &Shared, conn: &ConnState, request: &AmqpMessage) -> AmqpMessage {
    if text(prop(request, "operation")).as_deref() != Some("put-token") {
        return reply(request, 400, "the operation must be put-token", None);
    }
    let (Some(token_type), Some(name)) = (text(prop(request, "type")), text(prop(request, "name"))) else {
        return reply(request, 400, "type and name are required", None);
    };
    let expiration = match prop(request, "expiration") {
        Some(SimpleValue::Timestamp(t)) => Some(t.milliseconds()),
        _ => None,
    };
    let token = match &request.body {
        Body::Value(AmqpValue(Value::String(s))) => s.clone(),
        Body::Value(AmqpValue(Value::Binary(b))) => String::from_utf8_lossy(b).into_owned(),
        _ => return reply(request, 400, "the token must be a string body", None),
    };
    match shared.authority.put_token(&name, &token_type, &token, expiration, now_ms()) {
        Ok((path, expiry)) => {
            conn.grant(path, expiry);
            reply(request, 202, "Accepted", None)
        }
        Err(refused) => {
            tracing::info!(name, status = refused.status, "put-token refused");
            reply(request, i32::from(refused.status), &refused.description, None)
        }
    }
}

fn entry(map: &mut OrderedMap<Value, Value>, key: &str, value: Value) {
    map.insert(Value::String(key.to_string()), value);
}

/// `READ` of a hub or a partition.
pub(crate) fn read(shared: &Shared, conn: &ConnState, request: &AmqpMessage) -> AmqpMessage {
    if text(prop(request, "operation")).as_deref() != Some("READ") {
        return reply(request, 400, "unsupported operation", None);
    }
    let Some(name) = text(prop(request, "name")) else {
        return reply(request, 400, "name is required", None);
    };
    let Some(hub) = shared.store.hub(&name) else {
        return reply(request, 404, &format!("The messaging entity '{name}' could not be found."), None);
    };
    let authorized = match text(prop(request, "security_token")) {
        Some(token) => {
            shared.authority.put_token(&hub.name, "jwt", &token, None, now_ms()).map_err(|r| r.description).map(|_| ())
        }
        None if conn.authorized(&hub.name) => Ok(()),
        None => Err("Unauthorized access. 'Listen' claim(s) are required to perform this operation.".into()),
    };
    if let Err(description) = authorized {
        return reply(request, 401, &description, None);
    }
    let mut map = OrderedMap::new();
    match text(prop(request, "type")).as_deref() {
        Some("com.microsoft:eventhub") => {
            let ids: Vec<Value> = (0..hub.partitions.len()).map(|p| Value::String(p.to_string())).collect();
            entry(&mut map, "name", Value::String(hub.name.clone()));
            entry(&mut map, "type", Value::String("com.microsoft:eventhub".into()));
            entry(&mut map, "created_at", Value::Timestamp(Timestamp::from_milliseconds(hub.created_ms)));
            entry(&mut map, "partition_count", Value::Int(hub.partitions.len() as i32));
            entry(&mut map, "partition_ids", Value::Array(Array::from(ids)));
        }
        Some("com.microsoft:partition") => {
            let Some(p) = text(prop(request, "partition")) else {
                return reply(request, 400, "partition is required", None);
            };
            let Some(partition) = p.parse::<usize>().ok().and_then(|i| hub.partitions.get(i)) else {
                return reply(
                    request,
                    404,
                    &format!("The messaging entity '{name}/Partitions/{p}' could not be found."),
                    None,
                );
            };
            let info = partition.info();
            entry(&mut map, "name", Value::String(hub.name.clone()));
            entry(&mut map, "type", Value::String("com.microsoft:partition".into()));
            entry(&mut map, "partition", Value::String(p.clone()));
            entry(&mut map, "begin_sequence_number", Value::Long(info.begin_sequence_number));
            entry(&mut map, "last_enqueued_sequence_number", Value::Long(info.last_sequence_number));
            entry(&mut map, "last_enqueued_offset", Value::String(info.last_offset.to_string()));
            entry(
                &mut map,
                "last_enqueued_time_utc",
                Value::Timestamp(Timestamp::from_milliseconds(info.last_enqueued_ms)),
            );
            entry(&mut map, "is_partition_empty", Value::Bool(info.is_empty));
            entry(&mut map, "last_enqueued_sequence_number_epoch", Value::Long(0));
        }
        _ => return reply(request, 400, "unsupported type", None),
    }
    reply(request, 200, "OK", Some(map))
}
