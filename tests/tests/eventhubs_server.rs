//! The local Event Hubs server (crates/eventhubs-server) against Microsoft's SDKs: the Rust
//! `azure_messaging_eventhubs` 0.15 here, the Python `azure-eventhub` through
//! `tests/python/eventhubs_sdk.py`. What the daemon's Event Hubs source is tested against must
//! behave like the service for both.

#![allow(clippy::disallowed_methods)]

use std::time::Duration;

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
