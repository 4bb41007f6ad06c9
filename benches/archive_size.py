"""Archive size against DuckDB's zstd Parquet of the same records (issue 10, DESIGN §8).

    python benches/archive_size.py [--binary target/release/defender-ingest] [--size 100MB]
                                   [--tables DeviceProcessEvents,...]

Generates the corpus with `defender-ingest generate` twice from the same seed (Event Hubs
message bodies for `run`, bare records for DuckDB: the same records), archives it with
`defender-ingest run --archive`, and has DuckDB (PyPI, the test venv's) write each table's
records with `read_json` → `COPY ... (FORMAT parquet, COMPRESSION zstd)`, the envelope fields
and the `properties` fields as top-level columns. Prints, per table, both sizes and their
ratio, with and without `_RecordId` (a column only the archive has: the record's id for
dedup), and per column the ten largest differences. Sizes do not depend on the build
profile; CPU is measured by the `pipeline` bench, not here.
"""

import argparse
import glob
import os
import subprocess
import sys
import tempfile
from collections import Counter

import duckdb
import pyarrow.parquet as pq


# DuckDB's names of the envelope fields → the archive's.
RENAMED = {"time": "_EnvelopeTime", "tenantId": "_EnvelopeTenantId"}


def column_sizes(files):
    sizes = Counter()
    for f in files:
        md = pq.ParquetFile(f).metadata
        for rg in range(md.num_row_groups):
            group = md.row_group(rg)
            for i in range(group.num_columns):
                col = group.column(i)
                # Nested values (DuckDB makes structs of JSON objects) count for their column.
                name = col.path_in_schema.split(".")[0]
                sizes[RENAMED.get(name, name)] += col.total_compressed_size
    return sizes


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", default="target/debug/defender-ingest")
    parser.add_argument("--size", default="100MB")
    parser.add_argument("--tables", default="DeviceProcessEvents")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bodies, bare = os.path.join(tmp, "bodies.ndjson"), os.path.join(tmp, "bare.ndjson")
        gen = [args.binary, "generate", "--tables", args.tables, "--size", args.size, "--seed", "7"]
        subprocess.run(gen + ["-o", bodies], check=True, capture_output=True)
        subprocess.run(gen + ["--bare", "-o", bare], check=True, capture_output=True)
        archive = os.path.join(tmp, "archive")
        subprocess.run(
            [args.binary, "run", "--input", bodies, "--archive", archive],
            check=True,
            capture_output=True,
        )
        con = duckdb.connect()
        print(f"| table | records | archive bytes | DuckDB bytes | ratio | ratio without _RecordId |")
        print("|---|---|---|---|---|---|")
        details = []
        for table in args.tables.split(","):
            ours = column_sizes(glob.glob(f"{archive}/table={table}/**/*.parquet", recursive=True))
            duck_file = os.path.join(tmp, f"{table}.duckdb.parquet")
            con.execute(
                f"""COPY (SELECT * EXCLUDE (properties), properties.*
                          FROM read_json('{bare}', maximum_object_size=100000000)
                          WHERE category = 'AdvancedHunting-{table}')
                    TO '{duck_file}' (FORMAT parquet, COMPRESSION zstd)"""
            )
            records = con.execute(f"SELECT count(*) FROM '{duck_file}'").fetchone()[0]
            duck = column_sizes([duck_file])
            total, duck_total = sum(ours.values()), sum(duck.values())
            without = total - ours.get("_RecordId", 0)
            print(
                f"| {table} | {records} | {total} | {duck_total} | {total / duck_total:.2f}× | {without / duck_total:.2f}× |"
            )
            diffs = sorted(ours.keys() | duck.keys(), key=lambda c: -(ours.get(c, 0) - duck.get(c, 0)))
            details.append((table, [(c, ours.get(c, 0), duck.get(c, 0)) for c in diffs[:10]]))
        for table, rows in details:
            print(f"\n{table}: largest differences (archive bytes, DuckDB bytes)")
            for c, a, d in rows:
                print(f"  {c:45} {a:>10} {d:>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
