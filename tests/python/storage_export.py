#!/usr/bin/env python3
"""Writes backfill inputs to Azurite with Microsoft's `azure-storage-blob` client: storage-export
PT1H.json append blobs (the Streaming API writes those, CRLF lines) and Capture files.

    storage_export.py append <endpoint> <container> <blob> <file>
        creates the container and the append blob when missing, then appends the file's bytes
        (one Append Block), as Defender's export grows a blob during and after its hour;
    storage_export.py upload <endpoint> <container> <prefix> <dir>
        uploads every file under <dir> as a block blob <prefix>/<relative path>.

<endpoint> is the account's blob URL, e.g. $DI_AZURITE_BLOB; Azurite's well-known key is used.
"""
import os
import sys

from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient

DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def container(endpoint, name):
    service = BlobServiceClient(account_url=endpoint, credential={"account_name": "devstoreaccount1",
                                                                  "account_key": DEV_KEY})
    c = service.get_container_client(name)
    try:
        c.create_container()
    except ResourceExistsError:
        pass
    return c


def main():
    command, endpoint, name, target, source = sys.argv[1:6]
    c = container(endpoint, name)
    if command == "append":
        blob = c.get_blob_client(target)
        if not blob.exists():
            blob.create_append_blob()
        with open(source, "rb") as f:
            blob.append_block(f.read())
        print(blob.get_blob_properties().size)
    elif command == "upload":
        n = 0
        for root, _, files in os.walk(source):
            for file in sorted(files):
                path = os.path.join(root, file)
                rel = os.path.relpath(path, source).replace(os.sep, "/")
                with open(path, "rb") as f:
                    c.upload_blob(f"{target}/{rel}", f, overwrite=True)
                n += 1
        print(n)
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main()
