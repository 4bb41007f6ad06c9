#!/usr/bin/env python3
"""Azurite helpers for the tests (standard library only; signing in azblob.py).

    azurite.py create-container <endpoint> <container>        # 201 or 409 (exists) = ok
    azurite.py upload <endpoint> <container> <blob-name> <file>   # block blob, one PUT
    azurite.py list <endpoint> <container> [<prefix>]         # one "size<TAB>name" line per blob
    azurite.py download <endpoint> <container> <blob-name> <file>

<endpoint> is the account's blob URL, e.g. $DI_AZURITE_BLOB = http://127.0.0.1:PORT/devstoreaccount1.
The well-known devstoreaccount1 key is used unless --account-key (or AZURE_STORAGE_KEY) says
otherwise. Errors go to stderr with a non-zero exit status.
"""

from __future__ import annotations

import argparse
import os
import sys

from azblob import BlobClient, BlobError


def create_container(endpoint: str, container: str, key: str | None = None) -> bool:
    """Creates `container`; True if created now, False if it existed."""
    return BlobClient(endpoint, key=key).create_container(container)


def upload(endpoint: str, container: str, blob: str, path: str, key: str | None = None) -> int:
    """Uploads the file at `path` as block blob `blob`; returns its size."""
    with open(path, "rb") as f:
        data = f.read()
    BlobClient(endpoint, key=key).put_blob(container, blob, data)
    return len(data)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--account-key", default=os.environ.get("AZURE_STORAGE_KEY"), help="base64 account key")
    sub = p.add_subparsers(dest="cmd", required=True)

    c = sub.add_parser("create-container", help="create a container (ok if it exists)")
    c.add_argument("endpoint")
    c.add_argument("container")

    u = sub.add_parser("upload", help="upload a file as a block blob")
    u.add_argument("endpoint")
    u.add_argument("container")
    u.add_argument("blob")
    u.add_argument("file")

    ls = sub.add_parser("list", help="list blobs")
    ls.add_argument("endpoint")
    ls.add_argument("container")
    ls.add_argument("prefix", nargs="?", default="")

    d = sub.add_parser("download", help="download a blob to a file")
    d.add_argument("endpoint")
    d.add_argument("container")
    d.add_argument("blob")
    d.add_argument("file")

    args = p.parse_args(argv)
    try:
        if args.cmd == "create-container":
            created = create_container(args.endpoint, args.container, args.account_key)
            print(f"{'created' if created else 'exists'}: {args.container}")
        elif args.cmd == "upload":
            size = upload(args.endpoint, args.container, args.blob, args.file, args.account_key)
            print(f"uploaded: {args.container}/{args.blob} ({size} bytes)")
        elif args.cmd == "list":
            for name, size in BlobClient(args.endpoint, key=args.account_key).list_blobs(args.container, args.prefix):
                print(f"{size}\t{name}")
        elif args.cmd == "download":
            data = BlobClient(args.endpoint, key=args.account_key).get_blob(args.container, args.blob)
            with open(args.file, "wb") as f:
                f.write(data)
            print(f"downloaded: {args.container}/{args.blob} ({len(data)} bytes)")
    except (BlobError, OSError, ValueError) as e:
        print(f"azurite.py {args.cmd}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
