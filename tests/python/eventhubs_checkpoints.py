#!/usr/bin/env python3
"""Event Hubs checkpoints as Microsoft's Python SDK and KEDA see them (tests of the AMQP source).

    eventhubs_checkpoints.py container <blob-endpoint> <container>
        creates the container (ok if it exists) and prints a container SAS (query string,
        read/write/list/create) signed with the well-known Azurite key
    eventhubs_checkpoints.py blobs <blob-endpoint> <container>
        prints {"<blob name>": {<metadata>}} of every blob (JSON)
    eventhubs_checkpoints.py keda-lag <blob-endpoint> <container> <namespace> <hub> <group> <partition> <last-enqueued>
        KEDA's `azure-eventhub` scaler lag with the `blobMetadata` checkpoint strategy
        (pkg/scalers/azure/azure_eventhub_checkpoint.go): the blob
        `<namespace>/<hub>/<lower-cased group>/checkpoint/<partition>`, its `sequencenumber`
        metadata; lag = last enqueued sequence number - that (no checkpoint: the whole partition)
    eventhubs_checkpoints.py consume <connection-string> <blob-endpoint> <container> <namespace> <group> <idle-seconds> <out.json>
        Microsoft's EventHubConsumerClient with azure-eventhub-checkpointstoreblob: receives
        every partition from the checkpoints (earliest where none), checkpoints each event,
        stops after <idle-seconds> without an event; writes [[partition, sequence_number, body], ...]

The emulator form of a connection string (UseDevelopmentEmulator=true, Endpoint=sb://127.0.0.1:PORT)
makes the Python client's namespace "127.0.0.1"; a real client has the namespace's fqdn, which
<namespace> gives back to the checkpoint store here (the only adaptation: the blob names are the
store's own, lower-cased by it).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
ACCOUNT = "devstoreaccount1"


def azurite_connection_string(endpoint: str) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={AZURITE_KEY};BlobEndpoint={endpoint};"
    )


def container(endpoint: str, name: str) -> None:
    from azure.core.exceptions import ResourceExistsError
    from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas

    service = BlobServiceClient.from_connection_string(azurite_connection_string(endpoint))
    try:
        service.create_container(name)
    except ResourceExistsError:
        pass
    sas = generate_container_sas(
        ACCOUNT,
        name,
        account_key=AZURITE_KEY,
        permission=ContainerSasPermissions(read=True, write=True, list=True, create=True, add=True, delete=True),
        expiry=datetime.now(timezone.utc) + timedelta(days=1),
    )
    print(sas)


def blobs(endpoint: str, name: str) -> dict:
    from azure.storage.blob import BlobServiceClient

    c = BlobServiceClient.from_connection_string(azurite_connection_string(endpoint)).get_container_client(name)
    return {b.name: {k: v or "" for k, v in (b.metadata or {}).items()} for b in c.list_blobs(include=["metadata"])}


def keda_lag(endpoint: str, name: str, namespace: str, hub: str, group: str, partition: str, last: int) -> int:
    from azure.core.exceptions import ResourceNotFoundError
    from azure.storage.blob import BlobServiceClient

    c = BlobServiceClient.from_connection_string(azurite_connection_string(endpoint)).get_container_client(name)
    path = f"{namespace}/{hub}/{group.lower()}/checkpoint/{partition}"
    try:
        meta = c.get_blob_client(path).get_blob_properties().metadata
    except ResourceNotFoundError:
        return last + 1
    return last - int(meta["sequencenumber"])


def consume(conn: str, endpoint: str, name: str, namespace: str, group: str, idle: float, out: str) -> None:
    import logging

    from azure.eventhub import EventHubConsumerClient

    logging.basicConfig(stream=sys.stdout, level=logging.INFO)  # the retries say why nothing comes
    from azure.eventhub.extensions.checkpointstoreblob import BlobCheckpointStore

    class Fqdn(BlobCheckpointStore):
        """The namespace a real client would have (see the module doc)."""

        def list_ownership(self, fully_qualified_namespace, *args, **kwargs):
            return super().list_ownership(namespace, *args, **kwargs)

        def claim_ownership(self, ownership_list, **kwargs):
            fixed = [dict(o, fully_qualified_namespace=namespace) for o in ownership_list]
            return super().claim_ownership(fixed, **kwargs)

        def update_checkpoint(self, checkpoint, **kwargs):
            return super().update_checkpoint(dict(checkpoint, fully_qualified_namespace=namespace), **kwargs)

        def list_checkpoints(self, fully_qualified_namespace, *args, **kwargs):
            return super().list_checkpoints(namespace, *args, **kwargs)

    store = Fqdn.from_connection_string(azurite_connection_string(endpoint), name)
    client = EventHubConsumerClient.from_connection_string(
        conn, consumer_group=group, checkpoint_store=store, load_balancing_interval=1
    )
    got: list = []
    last = [time.monotonic()]

    def on_event(ctx, event):
        if event is None:
            return
        got.append([int(ctx.partition_id), event.sequence_number, event.body_as_str()])
        last[0] = time.monotonic()
        ctx.update_checkpoint(event)

    def on_error(ctx, error):
        print(f"partition {getattr(ctx, 'partition_id', None)}: {error!r}")

    t = threading.Thread(
        target=lambda: client.receive(
            on_event=on_event, on_error=on_error, starting_position="-1", max_wait_time=0.5
        ),
        daemon=True,
    )
    t.start()
    while time.monotonic() - last[0] < idle:
        time.sleep(0.2)
    client.close()
    t.join(10)
    print(json.dumps({"ownership": list(store.list_ownership(namespace, client.eventhub_name, group))}, default=str))
    with open(out, "w") as f:
        json.dump(got, f)


def main(argv: list[str]) -> int:
    cmd, args = argv[0], argv[1:]
    if cmd == "container":
        container(*args)
    elif cmd == "blobs":
        print(json.dumps(blobs(*args)))
    elif cmd == "keda-lag":
        print(keda_lag(*args[:6], int(args[6])))
    elif cmd == "consume":
        consume(args[0], args[1], args[2], args[3], args[4], float(args[5]), args[6])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
