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
