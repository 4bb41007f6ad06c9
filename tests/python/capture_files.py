#!/usr/bin/env python3
"""Independent writer of Event Hubs Capture files for the backfill tests: fastavro writes
Avro object container files in Capture's exact EventData schema.

    capture_files.py <dir>
    capture_files.py --messages <file> --files <n> <dir>

Writes, under <dir>/ns/hub/<partition>/YYYY/MM/DD/HH/mm/ss.avro:
  - partition 0, 2024-05-01 10:00:00: codec null, 3 events of 2 DeviceInfo records each;
  - partition 1, 2024-05-01 10:05:00: codec deflate, 2 events, one with a Body that is not JSON;
  - partition 0, 2024-05-01 10:10:00: an empty file (header only, as Capture writes idle windows);
  - partition 1, 2024-05-01 10:15:00: a deflate file of 4 one-record blocks cut in the middle of
    its last block (a truncated upload);
  - partition 2, 2024-05-01 10:20:00: codec snappy, 2 events of 2 DeviceInfo records each;
  - partition 2, 2024-05-01 10:25:00: a snappy file of 3 one-record blocks whose first block's
    CRC-32 is flipped (the block is unreadable, the other two are read);
  - partition 0, 2024-05-02 00:00:00: codec null, 1 event (outside a --to 2024-05-02 window).
Prints one JSON object: {"DeviceInfo": records in the files before the cut-off, ...,
"not_json": bodies that are not JSON, "unreadable": unreadable stretches, "late": records in the
file of 2024-05-02}.

With --messages, writes the message bodies of <file> (one per line, as `defender-ingest generate`
writes them) in order into <n> deflate files of partitions 0-3, a minute apart from
2024-05-01 00:00, a few events per block; prints {"files": n, "events": events written}.
"""
import io
import json
import os
import sys

import fastavro

SCHEMA = fastavro.parse_schema({
    "type": "record", "name": "EventData", "namespace": "Microsoft.ServiceBus.Messaging",
    "fields": [
        {"name": "SequenceNumber", "type": "long"},
        {"name": "Offset", "type": "string"},
        {"name": "EnqueuedTimeUtc", "type": "string"},
        {"name": "SystemProperties", "type": {"type": "map", "values": ["long", "double", "string", "bytes"]}},
        {"name": "Properties", "type": {"type": "map", "values": ["long", "double", "string", "bytes", "null"]}},
        {"name": "Body", "type": ["null", "bytes"]},
    ],
})

n = 0


def record(minute):
    global n
    n += 1
    ts = f"2024-05-01T10:{minute:02d}:{n % 60:02d}.1234567Z"
    return {"time": ts, "tenantId": "t", "operationName": "Publish", "category": "AdvancedHunting-DeviceInfo",
            "properties": {"Timestamp": ts, "DeviceId": f"dev-{n}", "DeviceName": f"host-{n}.contoso.com"}}


def event(seq, body):
    return {"SequenceNumber": seq, "Offset": str(seq * 100), "EnqueuedTimeUtc": "5/1/2024 10:00:00 AM",
            "SystemProperties": {"x-opt-enqueued-time": seq}, "Properties": {}, "Body": body}


def message(records):
    return json.dumps({"records": records}).encode()


def write(root, partition, when, events, codec, **kw):
    path = os.path.join(root, "ns", "hub", str(partition), *when.split("/")) + ".avro"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    buf = io.BytesIO()
    fastavro.writer(buf, SCHEMA, events, codec=codec, **kw)
    with open(path, "wb") as f:
        f.write(buf.getvalue())
    return path


def from_messages(path, files, root):
    with open(path, "rb") as f:
        bodies = [line.rstrip(b"\r\n") for line in f if line.strip()]
    per_file = -(-len(bodies) // files)
    for i in range(files):
        chunk = bodies[i * per_file:(i + 1) * per_file]
        when = f"2024/05/01/{i // 60:02d}/{i % 60:02d}/00"
        write(root, i % 4, when, [event(i * per_file + j, b) for j, b in enumerate(chunk)], "deflate",
              sync_interval=64 * 1024)
    print(json.dumps({"files": files, "events": len(bodies)}))


def main():
    if sys.argv[1] == "--messages":
        return from_messages(sys.argv[2], int(sys.argv[4]), sys.argv[5])
    root = sys.argv[1]
    counts = {"DeviceInfo": 0, "not_json": 0, "unreadable": 0, "late": 0}
    events = []
    for i in range(3):
        events.append(event(i, message([record(0), record(0)])))
    counts["DeviceInfo"] += 6
    write(root, 0, "2024/05/01/10/00/00", events, "null")
    write(root, 1, "2024/05/01/10/05/00",
          [event(10, message([record(5)])), event(11, b"this is not json")], "deflate")
    counts["DeviceInfo"] += 1
    counts["not_json"] += 1
    write(root, 0, "2024/05/01/10/10/00", [], "null")
    # One record per block (sync_interval=1), then cut the last block in half.
    path = write(root, 1, "2024/05/01/10/15/00", [event(20 + i, message([record(15)])) for i in range(4)],
                 "deflate", sync_interval=1)
    data = open(path, "rb").read()
    cut = data.rfind(data[-16:], 0, len(data) - 16)  # the sync marker before the last block
    with open(path, "wb") as f:
        f.write(data[: cut + 16 + (len(data) - cut - 32) // 2])
    counts["DeviceInfo"] += 3
    counts["unreadable"] += 1
    write(root, 2, "2024/05/01/10/20/00", [event(40 + i, message([record(20), record(20)])) for i in range(2)],
          "snappy")
    counts["DeviceInfo"] += 4
    path = write(root, 2, "2024/05/01/10/25/00", [event(50 + i, message([record(25)])) for i in range(3)],
                 "snappy", sync_interval=1)
    data = bytearray(open(path, "rb").read())
    sync = bytes(data[-16:])
    first_block_end = data.find(sync, data.find(sync) + 16)  # the sync marker after block 1
    data[first_block_end - 1] ^= 0x01  # the last byte of its CRC-32
    with open(path, "wb") as f:
        f.write(data)
    counts["DeviceInfo"] += 2
    counts["unreadable"] += 1
    write(root, 0, "2024/05/02/00/00/00", [event(30, message([record(0)]))], "null")
    counts["late"] += 1
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
