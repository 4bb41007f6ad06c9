#!/usr/bin/env python3
"""Event Hubs Capture files of real events, for the backfill hand-off test: Microsoft's Python
SDK (`azure-eventhub`) reads the first events of each partition of a hub, and fastavro writes
them in Capture's exact EventData schema with their real SequenceNumber and Offset.

    capture_from_hub.py <connection-string> <dir> <namespace-name> <hub> <partition>=<count> ...

Writes the first <count> events of each <partition> into two deflate files,
<dir>/<namespace-name>/<hub>/<partition>/2026/11/20/12/00/00.avro (the first half) and
.../12/05/00.avro (the rest). Prints {"<partition>": [last SequenceNumber, its Offset], ...}.
"""
import io
import json
import os
import sys
import threading
import time

import fastavro

from capture_files import SCHEMA


def first_events(conn: str, partition: str, count: int, timeout: float = 60.0) -> list:
    from azure.eventhub import EventHubConsumerClient

    client = EventHubConsumerClient.from_connection_string(conn, consumer_group="$Default")
    got: list = []
    done = threading.Event()

    def on_event(_ctx, event):
        if event is not None and len(got) < count:
            got.append(event)
        if len(got) >= count:
            done.set()

    t = threading.Thread(
        target=lambda: client.receive(
            on_event=on_event, partition_id=partition, starting_position="-1", max_wait_time=0.5
        ),
        daemon=True,
    )
    t.start()
    deadline = time.monotonic() + timeout
    while not done.wait(0.2):
        if time.monotonic() > deadline:
            client.close()
            raise SystemExit(f"partition {partition}: {len(got)} of {count} events after {timeout} s")
    client.close()
    t.join(10)
    return got


def record(event) -> dict:
    return {
        "SequenceNumber": event.sequence_number,
        "Offset": str(event.offset),
        "EnqueuedTimeUtc": event.enqueued_time.strftime("%m/%d/%Y %I:%M:%S %p"),
        "SystemProperties": {"x-opt-sequence-number": event.sequence_number},
        "Properties": {},
        "Body": b"".join(event.body),
    }


def write(path: str, records: list) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    buf = io.BytesIO()
    fastavro.writer(buf, SCHEMA, records, codec="deflate")
    with open(path, "wb") as f:
        f.write(buf.getvalue())


def main(argv: list) -> int:
    conn, root, namespace, hub = argv[:4]
    last = {}
    for spec in argv[4:]:
        partition, count = spec.split("=")
        records = [record(e) for e in first_events(conn, partition, int(count))]
        half = len(records) // 2
        base = os.path.join(root, namespace, hub, partition, "2026", "11", "20", "12")
        write(os.path.join(base, "00", "00.avro"), records[:half])
        write(os.path.join(base, "05", "00.avro"), records[half:])
        last[partition] = [records[-1]["SequenceNumber"], records[-1]["Offset"]]
    print(json.dumps(last))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
