//! The local Event Hubs server (crates/eventhubs-server) against Microsoft's SDKs: the Rust
//! `azure_messaging_eventhubs` 0.15 here, the Python `azure-eventhub` through
//! `tests/python/eventhubs_sdk.py`. What the daemon's Event Hubs source is tested against must
//! behave like the service for both.

#![allow(clippy::disallowed_methods)]

use std::{sync::Arc, time::Duration};

use azure_messaging_eventhubs::{OpenReceiverOptions, StartLocation, StartPosition};
use defender_tests::eventhubs::{EventHubs, block_on};
use futures::StreamExt;

fn bodies(prefix: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("{prefix}-{i}").into_bytes()).collect()
}

/// Receives `n` events of `partition` from `start` with the Rust SDK: (sequence, offset, body).
async fn receive(hubs: &EventHubs, partition: u32, start: StartPosition, n: usize) -> Vec<(i64, String, Vec<u8>)> {
    let consumer = hubs.consumer("$Default").await;
    let options = OpenReceiverOptions { start_position: Some(start), ..Default::default() };
    let receiver = consumer.open_receiver_on_partition(partition.to_string(), Some(options)).await.expect("receiver");
    let mut stream = receiver.stream_events();
    let mut got = Vec::new();
    while got.len() < n {
        let event = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("an event within 10 s")
            .expect("stream open")
            .expect("event");
        let body = event.event_data().body().expect("a body").to_vec();
        got.push((event.sequence_number().unwrap(), event.offset().clone().unwrap(), body));
    }
    drop(stream);
    let _ = consumer.close().await;
    got
}

#[test]
fn rust_sdk_produces_and_consumes_and_a_restart_keeps_every_event() {
    let dir = tempfile::tempdir().unwrap();
    let mut hubs = EventHubs::start(dir.path(), "defender", 2);
    assert_eq!(hubs.last_enqueued(0), None);
    hubs.produce(1, &bodies("a", 5));
    assert_eq!(hubs.last_enqueued(1), Some(4));
    assert_eq!(hubs.last_enqueued(0), None);
    let earliest = StartPosition { location: StartLocation::Earliest, inclusive: false };
    let got = block_on(receive(&hubs, 1, earliest.clone(), 5));
    let seqs: Vec<i64> = got.iter().map(|g| g.0).collect();
    assert_eq!(seqs, vec![0, 1, 2, 3, 4]);
    assert_eq!(got.iter().map(|g| g.2.clone()).collect::<Vec<_>>(), bodies("a", 5));

    hubs.restart();
    assert_eq!(hubs.last_enqueued(1), Some(4));
    hubs.produce(1, &bodies("b", 2));
    let got = block_on(receive(&hubs, 1, earliest, 7));
    let mut expected = bodies("a", 5);
    expected.extend(bodies("b", 2));
    assert_eq!(got.iter().map(|g| g.2.clone()).collect::<Vec<_>>(), expected);
    assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), (0..7).collect::<Vec<_>>());
    let offsets: Vec<i64> = got.iter().map(|g| g.1.parse().unwrap()).collect();
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "offsets increase: {offsets:?}");
}

fn bodies_of(events: &serde_json::Value) -> Vec<String> {
    events.as_array().unwrap().iter().map(|e| e["body"].as_str().unwrap().to_string()).collect()
}

fn seqs_of(events: &serde_json::Value) -> Vec<i64> {
    events.as_array().unwrap().iter().map(|e| e["sequence_number"].as_i64().unwrap()).collect()
}

fn strings(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}-{i}")).collect()
}

/// Microsoft's Python SDK (`tests/python/eventhubs_sdk.py`) in the emulator mode of its
/// connection string: batches to a partition and by partition key, a single event, every start
/// position, hub and partition properties, owner levels and a wrong key.
#[test]
fn python_sdk_sees_what_the_service_would_show_it() {
    let dir = tempfile::tempdir().unwrap();
    let hubs = EventHubs::start(dir.path(), "py", 2);
    let out: serde_json::Value =
        serde_json::from_str(&defender_tests::python("eventhubs_sdk.py", &[&hubs.connection_string()])).unwrap();

    assert_eq!(out["hub"], serde_json::json!({"name": "py", "partition_ids": ["0", "1"]}));
    let p0 = &out["partition0"];
    assert_eq!(p0["id"], "0");
    assert_eq!(p0["beginning_sequence_number"], 0);
    assert_eq!(p0["last_enqueued_sequence_number"], 5);
    assert_eq!(p0["is_empty"], false);

    let earliest = &out["earliest"];
    assert_eq!(bodies_of(earliest), strings("p0", 0..6));
    assert_eq!(seqs_of(earliest), (0..6).collect::<Vec<_>>());
    let offsets: Vec<i64> =
        earliest.as_array().unwrap().iter().map(|e| e["offset"].as_str().unwrap().parse().unwrap()).collect();
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "offsets increase: {offsets:?}");
    assert_eq!(p0["last_enqueued_offset"], earliest[5]["offset"], "the last offset is the last event's");
    assert!(earliest.as_array().unwrap().iter().all(|e| e["partition_key"].is_null()));
    // The single event was sent 50 ms after the batches: its own enqueued time.
    assert!(earliest[5]["enqueued_ms"].as_i64() > earliest[4]["enqueued_ms"].as_i64());

    assert_eq!(bodies_of(&out["from_seq_2_inclusive"]), strings("p0", 2..6));
    assert_eq!(bodies_of(&out["from_seq_2_exclusive"]), strings("p0", 3..6));
    assert_eq!(bodies_of(&out["from_offset_of_1_exclusive"]), strings("p0", 2..6));
    assert_eq!(bodies_of(&out["from_time_of_5_inclusive"]), strings("p0", 5..6));

    // By partition key: "key-b" hashes to partition 1, and the key comes back on each event.
    let p1 = &out["partition1_earliest"];
    assert_eq!(bodies_of(p1), strings("k", 0..2));
    assert_eq!(seqs_of(p1), vec![0, 1]);
    assert!(p1.as_array().unwrap().iter().all(|e| e["partition_key"] == "key-b"));
    // `@latest`: only what was sent after the receiver opened.
    assert_eq!(bodies_of(&out["latest"]), strings("live", 0..2));
    assert_eq!(seqs_of(&out["latest"]), vec![2, 3]);
    assert_eq!(out["partition1"]["last_enqueued_sequence_number"], 3);

    let epoch = &out["epoch"];
    assert_eq!(epoch["low_events"], 6);
    assert_eq!(epoch["high_events"], 6);
    assert_eq!(epoch["high_errors"], serde_json::json!([]), "the higher epoch is left alone");
    let low = epoch["low_errors"][0]["message"].as_str().expect("the lower epoch was disconnected");
    assert!(low.contains("amqp:link:stolen") && low.contains("higher epoch of '2'"), "{low}");
    assert_eq!(epoch["lower_events"], 0);
    let lower = epoch["lower_errors"][0]["message"].as_str().expect("a lower epoch is refused");
    assert!(lower.contains("amqp:link:stolen") && lower.contains("higher epoch '2' already exists"), "{lower}");

    let wrong = &out["wrong_key"];
    assert_eq!(wrong["refused"], true);
    assert_eq!(wrong["type"], "AuthenticationError");
    assert!(wrong["message"].as_str().unwrap().contains("401"));
}

mod raw {
    //! Plain AMQP (fe2o3-amqp, the SDK's own library) for what the SDKs do not let a test
    //! control: link credit, and links the service refuses.

    use fe2o3_amqp::link::receiver::CreditMode;
    use fe2o3_amqp::sasl_profile::SaslProfile;
    use fe2o3_amqp::types::messaging::{Body, Source};
    use fe2o3_amqp::types::primitives::{Symbol, Value};
    use fe2o3_amqp::{Connection, Receiver, Session};
    use fe2o3_amqp_cbs::client::CbsClient;
    use fe2o3_amqp_cbs::token::CbsToken;
    use serde_amqp::described::Described;
    use serde_amqp::descriptor::Descriptor;

    use super::*;

    pub struct Client {
        /// Kept open for the session's lifetime.
        _conn: fe2o3_amqp::connection::ConnectionHandle<()>,
        pub session: fe2o3_amqp::session::SessionHandle<()>,
    }

    /// `f` within 10 s, or a panic naming the step.
    pub async fn step<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(10), f).await.unwrap_or_else(|_| panic!("{what}: no answer in 10 s"))
    }

    pub async fn connect(hubs: &EventHubs) -> Client {
        let mut conn = Connection::builder()
            .container_id("raw-test")
            .sasl_profile(SaslProfile::Anonymous)
            .open(hubs.endpoint().as_str())
            .await
            .expect("connection");
        let session = Session::begin(&mut conn).await.expect("session");
        Client { _conn: conn, session }
    }

    /// put-token on `$cbs` for `name` with `token`; the reply's status as an error.
    pub async fn put_token(c: &mut Client, name: &str, token: &str) -> Result<(), String> {
        let mut cbs = CbsClient::attach(&mut c.session).await.expect("cbs");
        let r = cbs
            .put_token(name.to_string(), CbsToken::new(token.to_string(), "servicebus.windows.net:sastoken", None))
            .await
            .map_err(|e| format!("{e:?}"));
        let _ = cbs.close().await;
        r
    }

    pub fn sas(hubs: &EventHubs, key: &str) -> String {
        let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64 + 600;
        defender_eventhubs_server::sas_token(
            &format!("sb://{}/{}", hubs.namespace(), hubs.hub()),
            hubs.key_name(),
            key,
            exp,
        )
    }

    pub async fn receiver(c: &mut Client, address: &str, credit: CreditMode) -> Receiver {
        let selector = Described {
            descriptor: Descriptor::Code(0x0000_468C_0000_0004),
            value: Value::String("amqp.annotation.x-opt-offset > '-1'".into()),
        };
        let source = Source::builder()
            .address(address)
            .add_to_filter(Symbol::from("apache.org:selector-filter:string"), selector)
            .build();
        Receiver::builder()
            .name(format!("r-{address}"))
            .source(source)
            .credit_mode(credit)
            .attach(&mut c.session)
            .await
            .expect("the attach is answered")
    }

    /// The next delivery's body, or the error that ended the link, within `wait`.
    pub async fn next(r: &mut Receiver, wait: Duration) -> Option<Result<Vec<u8>, String>> {
        match tokio::time::timeout(wait, r.recv::<Body<Value>>()).await {
            Err(_) => None,
            Ok(Err(e)) => Some(Err(format!("{e:?}"))),
            Ok(Ok(d)) => {
                r.accept(&d).await.unwrap();
                match d.into_body() {
                    Body::Data(data) => Some(Ok(data.into_iter().next().unwrap().0.into_vec())),
                    other => Some(Err(format!("not a data body: {other:?}"))),
                }
            }
        }
    }
}

/// A receiver gets no more deliveries than the credit it gave, and the rest when it gives more.
#[test]
fn link_credit_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let hubs = EventHubs::start(dir.path(), "credit", 1);
    hubs.produce(0, &bodies("c", 10));
    block_on(async {
        let mut c = raw::step("connect", raw::connect(&hubs)).await;
        let address = format!("amqps://{}/credit/ConsumerGroups/$Default/Partitions/0", hubs.namespace());
        raw::step("put-token", raw::put_token(&mut c, &address, &raw::sas(&hubs, hubs.key())))
            .await
            .expect("token accepted");
        let mut r =
            raw::step("attach", raw::receiver(&mut c, &address, fe2o3_amqp::link::receiver::CreditMode::Manual)).await;
        r.set_credit(3).await.unwrap();
        let mut got = Vec::new();
        while let Some(d) = raw::next(&mut r, Duration::from_millis(1500)).await {
            got.push(d.expect("a delivery"));
        }
        assert_eq!(got, bodies("c", 3), "exactly the credit");
        r.set_credit(10).await.unwrap();
        while let Some(d) = raw::next(&mut r, Duration::from_millis(1500)).await {
            got.push(d.expect("a delivery"));
        }
        assert_eq!(got, bodies("c", 10), "the rest once credit is given");
        let _ = r.close().await;
    });
}

/// Links the service refuses: without a token, with a wrong key, to an unknown consumer group,
/// partition or host.
#[test]
fn refuses_what_the_service_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let hubs = EventHubs::start(dir.path(), "strict", 2);
    hubs.produce(0, &bodies("s", 1));
    block_on(async {
        let ns = hubs.namespace().to_string();
        let mut c = raw::step("connect", raw::connect(&hubs)).await;
        let address = format!("amqps://{ns}/strict/ConsumerGroups/$Default/Partitions/0");
        // No token yet.
        let mut r =
            raw::step("attach", raw::receiver(&mut c, &address, fe2o3_amqp::link::receiver::CreditMode::Auto(10)))
                .await;
        let e = raw::next(&mut r, Duration::from_secs(5)).await.expect("an answer").unwrap_err();
        assert!(e.contains("UnauthorizedAccess"), "{e}");
        // A wrong key.
        let e =
            raw::step("put-token", raw::put_token(&mut c, &address, &raw::sas(&hubs, "d3Jvbmc="))).await.unwrap_err();
        assert!(e.contains("401"), "{e}");
        // A good token, then unknown entities.
        raw::step("put-token", raw::put_token(&mut c, &address, &raw::sas(&hubs, hubs.key())))
            .await
            .expect("token accepted");
        let token = raw::sas(&hubs, hubs.key());
        raw::step("put-token", raw::put_token(&mut c, &format!("amqps://{ns}/strict"), &token))
            .await
            .expect("hub token");
        for bad in [
            format!("amqps://{ns}/strict/ConsumerGroups/nope/Partitions/0"),
            format!("amqps://{ns}/strict/ConsumerGroups/$Default/Partitions/2"),
            format!("amqps://{ns}/other/ConsumerGroups/$Default/Partitions/0"),
            "amqps://elsewhere.servicebus.windows.net/strict/ConsumerGroups/$Default/Partitions/0".to_string(),
        ] {
            let mut r =
                raw::step("attach", raw::receiver(&mut c, &bad, fe2o3_amqp::link::receiver::CreditMode::Auto(10)))
                    .await;
            let e = raw::next(&mut r, Duration::from_secs(5)).await.expect("an answer").unwrap_err();
            assert!(e.contains("NotFound"), "{bad}: {e}");
        }
        // Case-insensitive consumer group, and the address without scheme and host.
        let mut r = raw::receiver(
            &mut c,
            "strict/consumergroups/$DEFAULT/Partitions/0",
            fe2o3_amqp::link::receiver::CreditMode::Auto(10),
        )
        .await;
        assert_eq!(raw::next(&mut r, Duration::from_secs(5)).await.expect("an event").unwrap(), b"s-0".to_vec());
    });
}

/// The Rust SDK's EventProcessor (load balancing over an in-memory checkpoint store, epoch-0
/// receivers) claims both partitions and reads every event.
#[test]
fn rust_sdk_event_processor_reads_every_partition() {
    use azure_messaging_eventhubs::{EventProcessor, InMemoryCheckpointStore, models::StartPositions};
    let dir = tempfile::tempdir().unwrap();
    let hubs = EventHubs::start(dir.path(), "processor", 2);
    hubs.produce(0, &bodies("p0", 3));
    hubs.produce(1, &bodies("p1", 2));
    block_on(async {
        let consumer = hubs.consumer("$Default").await;
        let positions = StartPositions {
            default: StartPosition { location: StartLocation::Earliest, inclusive: false },
            ..Default::default()
        };
        let processor = EventProcessor::builder()
            .with_update_interval(azure_core::time::Duration::seconds(1))
            .with_partition_expiration_duration(azure_core::time::Duration::seconds(10))
            .with_start_positions(positions)
            .build(consumer, Arc::new(InMemoryCheckpointStore::new()))
            .await
            .expect("processor");
        let runner = processor.clone();
        let task = tokio::spawn(async move { runner.run().await });
        let mut got = std::collections::BTreeMap::new();
        for _ in 0..2 {
            let client = tokio::time::timeout(Duration::from_secs(20), processor.next_partition_client())
                .await
                .expect("a partition claimed")
                .expect("partition client");
            let want = if client.get_partition_id() == "0" { 3 } else { 2 };
            let mut bodies = Vec::new();
            {
                let mut stream = client.stream_events();
                while bodies.len() < want {
                    let e =
                        tokio::time::timeout(Duration::from_secs(10), stream.next()).await.unwrap().unwrap().unwrap();
                    bodies.push(String::from_utf8(e.event_data().body().unwrap().to_vec()).unwrap());
                    client.update_checkpoint(&e).await.expect("checkpoint");
                }
            }
            got.insert(client.get_partition_id().to_string(), bodies);
        }
        let expected: std::collections::BTreeMap<String, Vec<String>> =
            [("0".to_string(), strings("p0", 0..3)), ("1".to_string(), strings("p1", 0..2))].into_iter().collect();
        assert_eq!(got, expected);
        processor.shutdown().await.expect("shutdown");
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    });
}
