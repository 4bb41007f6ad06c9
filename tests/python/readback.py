#!/usr/bin/env python3
"""Independent Parquet reader for the integration tests: reads an archive with pyarrow and
prints what it holds as ONE JSON object on stdout.

    readback.py <dir>                                    # every *.parquet under a local directory
    readback.py az://<container>[/<prefix>] [--blob-endpoint URL | --azurite-conn CONNSTR]
    ... [--values COLUMN]                                 # also every value of COLUMN, per table

For `az://` roots the blobs are listed and downloaded with Shared Key requests (azblob.py); the
endpoint is --blob-endpoint (e.g. http://127.0.0.1:PORT/devstoreaccount1), else the connection
string's BlobEndpoint, else $DI_AZURITE_BLOB. The key is Azurite's well-known one unless
the connection string has another.

Every file is read on its own with `pyarrow.parquet.read_table` on an in-memory/opened buffer, so
no hive partition columns are invented from the path. The table of a file is the value of its
first `table=<T>` path segment (the archive's layout is
`table=<T>/date=YYYY-MM-DD/hour=HH/<file>.parquet`); a file outside such a segment counts under
the table "".

Output:
{
  "tables": {
    "<T>": {
      "rows": N, "files": F,
      "columns": {"<name>": "<arrow type string>", ...},     # schema order of the first file;
                                                            # "a | b" when files disagree
      "max_abs_long": {"<int64 column>": <exact JSON integer, null if every value is null>},
      "timestamps_sample": {"<timestamp column>": ["YYYY-MM-DDTHH:MM:SS.fffffffffZ", ...]},
                                                            # first 3 non-null values, files in
                                                            # path order; no Z for naive ones
      "null_counts": {"<column>": n}
    }
  },
  "files": ["<path relative to the root>", ...],            # sorted
  "values": {"<T>": [v, ...]}                               # with --values: every value of the
                                                            # column, files in path order
}
Integers are printed exactly (Python ints, never floats). Exit status 2 for a bad argument or a
missing root, 1 for an unreadable file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from typing import Iterable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

SAMPLE = 3
_NANOS_PER_UNIT = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
_EPOCH = dt.datetime(1970, 1, 1)


def format_timestamp(ns: int, utc: bool) -> str:
    """Nanoseconds since the epoch as ISO 8601 with all 9 fraction digits."""
    secs, frac = divmod(ns, 1_000_000_000)  # floor division: right for times before 1970 too
    whole = _EPOCH + dt.timedelta(seconds=secs)
    return f"{whole:%Y-%m-%dT%H:%M:%S}.{frac:09d}{'Z' if utc else ''}"


def table_of(rel: str) -> str:
    for part in rel.split("/"):
        if part.startswith("table="):
            return part[len("table=") :]
    return ""


class TableStats:
    def __init__(self) -> None:
        self.rows = 0
        self.files = 0
        self.types: dict[str, list[str]] = {}  # column -> distinct type strings, first seen first
        self.max_abs_long: dict[str, int | None] = {}
        self.timestamps: dict[str, list[str]] = {}
        self.nulls: dict[str, int] = {}

    def add(self, t: pa.Table) -> None:
        self.rows += t.num_rows
        self.files += 1
        for field, col in zip(t.schema, t.columns):
            name, ty = field.name, field.type
            seen = self.types.setdefault(name, [])
            if str(ty) not in seen:
                seen.append(str(ty))
            self.nulls[name] = self.nulls.get(name, 0) + col.null_count
            if pa.types.is_int64(ty):
                self._add_long(name, col)
            elif pa.types.is_timestamp(ty):
                self._add_timestamps(name, col, ty)

    def _add_long(self, name: str, col: pa.ChunkedArray) -> None:
        best = self.max_abs_long.get(name)
        mm = pc.min_max(col)  # Int64 scalars; .as_py() gives exact Python ints
        for v in (mm["min"].as_py(), mm["max"].as_py()):
            if v is not None:
                a = -v if v < 0 else v  # a Python int: |i64::MIN| is exact too
                if best is None or a > best:
                    best = a
        self.max_abs_long[name] = best

    def _add_timestamps(self, name: str, col: pa.ChunkedArray, ty: pa.TimestampType) -> None:
        sample = self.timestamps.setdefault(name, [])
        if len(sample) >= SAMPLE:
            return
        scale = _NANOS_PER_UNIT[ty.unit]
        ints = col.cast(pa.int64())  # the stored value (UTC for a zoned type), no float
        for v in ints.drop_null().slice(0, SAMPLE - len(sample)).to_pylist():
            sample.append(format_timestamp(v * scale, ty.tz is not None))

    def to_json(self) -> dict:
        return {
            "rows": self.rows,
            "files": self.files,
            "columns": {c: " | ".join(ts) for c, ts in self.types.items()},
            "max_abs_long": self.max_abs_long,
            "timestamps_sample": self.timestamps,
            "null_counts": self.nulls,
        }


def local_files(root: str) -> Iterator[tuple[str, str]]:
    """(relative path with /, absolute path) of every *.parquet under root."""
    found = []
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            if f.endswith(".parquet"):
                full = os.path.join(dirpath, f)
                found.append((os.path.relpath(full, root).replace(os.sep, "/"), full))
    yield from sorted(found)


def azure_files(root: str, endpoint: str, account: str | None, key: str | None) -> Iterator[tuple[str, bytes]]:
    """(path relative to the prefix, content) of every *.parquet blob under az://container/prefix."""
    from azblob import BlobClient

    rest = root[len("az://") :]
    container, _, prefix = rest.partition("/")
    if not container:
        raise SystemExit(f"readback.py: no container in {root!r}")
    prefix = prefix.strip("/")
    list_prefix = f"{prefix}/" if prefix else ""
    client = BlobClient(endpoint, account=account, key=key)
    names = sorted(n for n, _ in client.list_blobs(container, list_prefix) if n.endswith(".parquet"))
    for name in names:
        yield name[len(list_prefix) :], client.get_blob(container, name)


def read_all(files: Iterable[tuple[str, bytes | str]], values_of: str | None = None) -> dict:
    tables: dict[str, TableStats] = {}
    values: dict[str, list] = {}
    rels = []
    for rel, src in files:
        try:
            source = pa.BufferReader(src) if isinstance(src, bytes) else pa.memory_map(src, "r")
            t = pq.read_table(source)
        except Exception as e:  # noqa: BLE001 - name the file, whatever pyarrow raised
            print(f"readback.py: cannot read {rel}: {type(e).__name__}: {e}", file=sys.stderr)
            sys.exit(1)
        tables.setdefault(table_of(rel), TableStats()).add(t)
        if values_of is not None and values_of in t.column_names:
            values.setdefault(table_of(rel), []).extend(t.column(values_of).to_pylist())
        rels.append(rel)
    out = {"tables": {name: tables[name].to_json() for name in sorted(tables)}, "files": sorted(rels)}
    if values_of is not None:
        out["values"] = values
    return out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", help="a local directory, or az://<container>[/<prefix>]")
    p.add_argument("--blob-endpoint", help="blob endpoint URL for az:// roots (default $DI_AZURITE_BLOB)")
    p.add_argument("--azurite-conn", help="Azure Storage connection string for az:// roots")
    p.add_argument("--values", metavar="COLUMN", help="also print every value of COLUMN, per table")
    args = p.parse_args(argv)

    if args.root.startswith("az://"):
        account = key = None
        endpoint = args.blob_endpoint
        if args.azurite_conn:
            from azblob import parse_connection_string

            conn_endpoint, account, key = parse_connection_string(args.azurite_conn)
            endpoint = endpoint or conn_endpoint
        endpoint = endpoint or os.environ.get("DI_AZURITE_BLOB")
        if not endpoint:
            print("readback.py: az:// needs --blob-endpoint, --azurite-conn or $DI_AZURITE_BLOB", file=sys.stderr)
            return 2
        files: Iterable[tuple[str, bytes | str]] = azure_files(args.root, endpoint, account, key)
    else:
        if not os.path.isdir(args.root):
            print(f"readback.py: {args.root} is not a directory", file=sys.stderr)
            return 2
        files = local_files(args.root)

    try:
        result = read_all(files, args.values)
    except Exception as e:  # noqa: BLE001 - listing/downloading (azblob.BlobError, OSError)
        print(f"readback.py: {args.root}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    json.dump(result, sys.stdout, separators=(",", ":"))
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
