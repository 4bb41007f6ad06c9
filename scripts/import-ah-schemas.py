#!/usr/bin/env python3
"""Regenerate table-schemas/*.json from a reference dump of the Advanced Hunting schemas.

Maintainer tool, run by hand when Microsoft documents new tables or columns:

    python3 scripts/import-ah-schemas.py ../shared/reference/ah-schemas.json

The generated files are the source of truth afterwards (they are embedded into the binary);
edit them directly for one-off fixes. What this script changes against the documentation:

* `LogonID` (DeviceProcessEvents, DeviceNetworkEvents, DeviceFileEvents) is documented as living
  inside `AdditionalFields`, not as a top-level field, and collides case-insensitively with
  `LogonId`: it is dropped.
* UrlClickEvents' page lists Log Analytics' own columns (TenantId, Type, SourceSystem,
  TimeGenerated); the stream never carries them: they are dropped.
* Every Device* table gets `MachineGroup` (string): the Streaming API decorates every Device*
  record with it although most pages omit it.
* `sentinel_name` follows the rule in crates/core/src/schema/sentinel.rs (kept in sync by
  `defender-ingest schemas check`).
"""
import json
import pathlib
import sys

RESERVED = {"tenantid", "type", "id", "_resourceid", "_subscriptionid", "uniqueid", "title",
            "timegenerated"}
LA_COLUMNS = {"UrlClickEvents": {"TenantId", "Type", "SourceSystem", "TimeGenerated"}}
PSEUDO = {"LogonID"}


def sentinel_name(name: str) -> str:
    stripped = name.lstrip("_")
    if stripped != name or name.lower() in RESERVED:
        return stripped + "_CF"
    return name


def main() -> None:
    src = json.load(open(sys.argv[1]))
    out = pathlib.Path(__file__).resolve().parent.parent / "table-schemas"
    out.mkdir(exist_ok=True)
    for table, spec in sorted(src.items()):
        cols = []
        for c in spec["columns"]:
            if c["name"] in PSEUDO or c["name"] in LA_COLUMNS.get(table, ()):
                continue
            cols.append({"name": c["name"], "type": c["type"],
                         "sentinel_name": sentinel_name(c["name"]),
                         "description": c.get("description", "")})
        if table.startswith("Device") and not any(c["name"] == "MachineGroup" for c in cols):
            cols.append({"name": "MachineGroup", "type": "string", "sentinel_name": "MachineGroup",
                         "description": "Device group; added by the Streaming API to every Device* record"})
        doc = {
            "table": table,
            "tvm": table.startswith("DeviceTvm"),
            "streaming_api": spec.get("streaming_api_status", ""),
            "source": spec.get("source", ""),
            "columns": cols,
        }
        (out / f"{table}.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {len(src)} tables to {out}")


if __name__ == "__main__":
    main()
