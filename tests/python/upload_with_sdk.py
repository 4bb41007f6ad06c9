#!/usr/bin/env python3
"""Uploads rows with Microsoft's own clients (azure-monitor-ingestion's LogsIngestionClient and
azure-identity's ClientSecretCredential) to prove the local Logs Ingestion server
(crates/ingestion-server) accepts what the real client sends. Prints ONE JSON object on stdout.

    upload_with_sdk.py --endpoint URL --authority URL --tenant T --client-id C \
        --secret-env VAR --dcr DCR --stream STREAM --rows N --row-size BYTES [--rows-out FILE]

Trust: the server's CA comes from the environment (SSL_CERT_FILE for Python's ssl,
REQUESTS_CA_BUNDLE for requests, which azure-core's transport uses). The secret is read from
the environment variable named by --secret-env and never printed.

Rows: {"TimeGenerated", "Seq", "Payload"}, Payload padded so each row's JSON (as the SDK
measures it, json.dumps) is about --row-size bytes. --rows-out writes the rows sent, as a JSON
array, for the caller to compare with what the server accepted.

Output: {"sent_rows": N, "row_json_bytes": B, "failed_rows": F, "errors": ["..."],
         "elapsed_s": S, "versions": {"azure-monitor-ingestion": V, "azure-identity": V}}
Exit status 0 even when the upload failed (the caller asserts on "errors").
"""

import argparse
import json
import os
import sys
import time
from importlib.metadata import version


def make_rows(count, row_size):
    rows = []
    for i in range(count):
        row = {"TimeGenerated": "2026-11-24T08:00:00.000000Z", "Seq": i, "Payload": ""}
        pad = max(0, row_size - len(json.dumps(row)))
        row["Payload"] = ("p%d-" % i + "x" * pad)[:pad] if pad else ""
        rows.append(row)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag in ("endpoint", "authority", "tenant", "client-id", "secret-env", "dcr", "stream"):
        parser.add_argument("--" + flag, required=True)
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--row-size", type=int, required=True)
    parser.add_argument("--rows-out")
    args = parser.parse_args()

    from azure.identity import ClientSecretCredential
    from azure.monitor.ingestion import LogsIngestionClient

    secret = os.environ.get(args.secret_env)
    if not secret:
        print("environment variable %s is not set" % args.secret_env, file=sys.stderr)
        return 2
    # A local authority is not known to Microsoft: MSAL's instance discovery would go to
    # login.microsoftonline.com, so it is disabled; MSAL then reads
    # {authority}/{tenant}/v2.0/.well-known/openid-configuration and posts to its token_endpoint.
    credential = ClientSecretCredential(
        args.tenant,
        args.client_id,
        secret,
        authority=args.authority,
        disable_instance_discovery=True,
    )
    client = LogsIngestionClient(endpoint=args.endpoint, credential=credential, logging_enable=False)
    rows = make_rows(args.rows, args.row_size)
    if args.rows_out:
        with open(args.rows_out, "w", encoding="utf-8") as f:
            json.dump(rows, f)

    errors = []
    failed = []

    def on_error(err):
        failed.extend(err.failed_logs)
        errors.append("%s: %s" % (type(err.error).__name__, str(err.error)[:300]))

    started = time.monotonic()
    try:
        client.upload(rule_id=args.dcr, stream_name=args.stream, logs=rows, on_error=on_error)
    except Exception as exc:  # report, the caller asserts
        errors.append("%s: %s" % (type(exc).__name__, str(exc)[:300]))
    elapsed = time.monotonic() - started
    client.close()
    credential.close()

    print(json.dumps({
        "sent_rows": len(rows),
        "row_json_bytes": sum(len(json.dumps(r).encode("utf-8")) for r in rows),
        "failed_rows": len(failed),
        "errors": errors,
        "elapsed_s": round(elapsed, 3),
        "versions": {
            "azure-monitor-ingestion": version("azure-monitor-ingestion"),
            "azure-identity": version("azure-identity"),
            "msal": version("msal"),
            "azure-core": version("azure-core"),
        },
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
