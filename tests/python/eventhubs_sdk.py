"""Microsoft's Python Event Hubs SDK (azure-eventhub) against the local Event Hubs server.

Usage: eventhubs_sdk.py CONNECTION_STRING

The connection string is the emulator form (UseDevelopmentEmulator=true: plain AMQP to the
port, SASL ANONYMOUS then a SAS token on $cbs). The hub must have 2 partitions and be empty.
Prints one JSON object with what the SDK saw; tests/tests/eventhubs_server.rs asserts on it.

Partition key "key-b" lands on partition 1 with the server's hash (FNV-1a; the service's hash
differs, which no client can rely on).
"""

import json
import sys
import threading
import time

from azure.eventhub import EventData, EventHubConsumerClient, EventHubProducerClient
from azure.eventhub._pyamqp import _platform

# pyamqp copies every known TCP option from getsockopt back with setsockopt
# (_transport.py _set_socket_options); on a loopback connection TCP_MAXSEG reads 32768 and
# writing it back fails with EINVAL, so some connections fail at random. Not an AMQP matter:
# leave the option alone (the set is the one _transport.py iterates).
_platform.KNOWN_TCP_OPTS.discard("TCP_MAXSEG")

CONN = sys.argv[1]


def event_json(e):
    return {
        "sequence_number": e.sequence_number,
        "offset": e.offset,
        "enqueued_ms": int(round(e.enqueued_time.timestamp() * 1000)),
        "partition_key": e.partition_key.decode() if isinstance(e.partition_key, bytes) else e.partition_key,
        "body": e.body_as_str(),
    }


class Reader:
    """A consumer receiving one partition in a thread, until stopped."""

    def __init__(self, partition, start, inclusive=False, owner_level=None, conn=CONN):
        self.events = []
        self.errors = []
        self.client = EventHubConsumerClient.from_connection_string(conn, consumer_group="$Default")
        kwargs = dict(
            on_event=self._on_event,
            on_error=self._on_error,
            partition_id=str(partition),
            starting_position=start,
            starting_position_inclusive=inclusive,
            max_wait_time=0.5,
        )
        if owner_level is not None:
            kwargs["owner_level"] = owner_level
        self.thread = threading.Thread(target=self.client.receive, kwargs=kwargs, daemon=True)
        self.thread.start()

    def _on_event(self, _ctx, event):
        if event is not None:
            self.events.append(event_json(event))

    def _on_error(self, _ctx, error):
        self.errors.append({"type": type(error).__name__, "message": str(error)})

    def wait_for(self, n, timeout=15):
        deadline = time.time() + timeout
        while len(self.events) < n and time.time() < deadline:
            time.sleep(0.05)
        return self

    def wait_error(self, timeout=15):
        deadline = time.time() + timeout
        while not self.errors and time.time() < deadline:
            time.sleep(0.05)
        return self

    def stop(self, settle=0.5):
        time.sleep(settle)  # anything beyond what was waited for would show up here
        self.client.close()
        self.thread.join(10)
        return self.events


def read(partition, start, n, inclusive=False):
    return Reader(partition, start, inclusive).wait_for(n).stop()


def main():
    out = {}
    producer = EventHubProducerClient.from_connection_string(CONN)
    props = producer.get_eventhub_properties()
    out["hub"] = {"name": props["eventhub_name"], "partition_ids": props["partition_ids"]}

    # Partition 0: two batches and a single event, the last one later (its own enqueued time).
    batch = producer.create_batch(partition_id="0")
    for i in range(3):
        batch.add(EventData(f"p0-{i}"))
    producer.send_batch(batch)
    batch = producer.create_batch(partition_id="0")
    for i in range(3, 5):
        batch.add(EventData(f"p0-{i}"))
    producer.send_batch(batch)
    time.sleep(0.05)
    producer.send_event(EventData("p0-5"), partition_id="0")
    # By partition key (to the hub).
    batch = producer.create_batch(partition_key="key-b")
    for i in range(2):
        batch.add(EventData(f"k-{i}"))
    producer.send_batch(batch)

    p0 = producer.get_partition_properties("0")
    out["partition0"] = {
        "id": p0["id"],
        "beginning_sequence_number": p0["beginning_sequence_number"],
        "last_enqueued_sequence_number": p0["last_enqueued_sequence_number"],
        "last_enqueued_offset": p0["last_enqueued_offset"],
        "is_empty": p0["is_empty"],
    }

    earliest = read(0, "-1", 6)
    out["earliest"] = earliest
    out["from_seq_2_inclusive"] = read(0, 2, 4, inclusive=True)
    out["from_seq_2_exclusive"] = read(0, 2, 3, inclusive=False)
    out["from_offset_of_1_exclusive"] = read(0, earliest[1]["offset"], 4, inclusive=False)
    last = earliest[5]
    from datetime import datetime, timezone

    at = datetime.fromtimestamp(last["enqueued_ms"] / 1000, tz=timezone.utc)
    out["from_time_of_5_inclusive"] = read(0, at, 1, inclusive=True)
    out["partition1_earliest"] = read(1, "-1", 2)

    # Latest: only what arrives after the receiver is there (a live tail).
    tail = Reader(1, "@latest")
    time.sleep(2)
    batch = producer.create_batch(partition_id="1")
    batch.add(EventData("live-0"))
    batch.add(EventData("live-1"))
    producer.send_batch(batch)
    out["latest"] = tail.wait_for(2).stop()
    p1 = producer.get_partition_properties("1")
    out["partition1"] = {
        "last_enqueued_sequence_number": p1["last_enqueued_sequence_number"],
        "is_empty": p1["is_empty"],
    }
    producer.close()

    # Owner levels: a higher epoch kicks the lower one; a lower one is then refused.
    low = Reader(0, "-1", owner_level=1).wait_for(6)
    high = Reader(0, "-1", owner_level=2).wait_for(6)
    low.wait_error()
    lower = Reader(0, "-1", owner_level=1).wait_error()
    time.sleep(0.5)
    out["epoch"] = {
        "low_events": len(low.events),
        "low_errors": low.errors[:1],
        "high_events": len(high.events),
        "high_errors": high.errors,
        "lower_events": len(lower.events),
        "lower_errors": lower.errors[:1],
    }
    for r in (low, high, lower):
        r.stop(settle=0)

    # A wrong key is refused.
    wrong = CONN.replace("SharedAccessKey=", "SharedAccessKey=x")
    try:
        client = EventHubProducerClient.from_connection_string(wrong, retry_total=0)
        client.get_eventhub_properties()
        out["wrong_key"] = {"refused": False}
    except Exception as e:  # noqa: BLE001 - the type is the result
        out["wrong_key"] = {"refused": True, "type": type(e).__name__, "message": str(e)}

    print(json.dumps(out))


if __name__ == "__main__":
    main()
