"""A minimal Azure Blob REST client for the tests, standard library only.

Signs requests with Shared Key (HMAC-SHA256 over the canonical string, as the Azure SDKs do) and
defaults to Azurite's well-known development account. Enough for the tests' needs: create a
container, upload a block blob, list blobs under a prefix, download a blob.

    client = BlobClient("http://127.0.0.1:10000/devstoreaccount1")
    client.create_container("archive")
    client.put_blob("archive", "a/b.parquet", data)
    for name in client.list_blobs("archive", prefix="a/"): ...
    data = client.get_blob("archive", "a/b.parquet")

Used by tests/python/azurite.py (CLI) and tests/python/readback.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from email.utils import formatdate
from typing import Iterator

# Azurite's (and the Storage Emulator's) published development account.
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
API_VERSION = "2021-08-06"
TIMEOUT_S = 60

# Headers of the Shared Key string-to-sign, in order, between the verb and the x-ms-* headers.
_SIGNED_STANDARD_HEADERS = (
    "content-encoding",
    "content-language",
    "content-length",
    "content-md5",
    "content-type",
    "date",
    "if-modified-since",
    "if-match",
    "if-none-match",
    "if-unmodified-since",
    "range",
)


class BlobError(Exception):
    """A request that Blob storage answered with an unexpected status."""

    def __init__(self, method: str, url: str, status: int, body: bytes):
        self.status = status
        text = body.decode("utf-8", "replace")[:2000]
        super().__init__(f"{method} {url}: HTTP {status}\n{text}")


def parse_connection_string(conn: str) -> tuple[str, str, str]:
    """(blob endpoint, account name, account key) from an Azure Storage connection string.

    Accepts `UseDevelopmentStorage=true` (Azurite on 127.0.0.1:10000) and the usual
    `DefaultEndpointsProtocol=...;AccountName=...;AccountKey=...;BlobEndpoint=...` form.
    """
    parts: dict[str, str] = {}
    for item in conn.split(";"):
        if item.strip():
            k, _, v = item.partition("=")
            parts[k.strip().lower()] = v.strip()
    if parts.get("usedevelopmentstorage", "").lower() == "true":
        return f"http://127.0.0.1:10000/{DEV_ACCOUNT}", DEV_ACCOUNT, DEV_KEY
    account = parts.get("accountname", DEV_ACCOUNT)
    key = parts.get("accountkey", DEV_KEY)
    endpoint = parts.get("blobendpoint")
    if not endpoint:
        protocol = parts.get("defaultendpointsprotocol", "https")
        suffix = parts.get("endpointsuffix", "core.windows.net")
        endpoint = f"{protocol}://{account}.blob.{suffix}"
    return endpoint, account, key


def _quote_path(name: str) -> str:
    # `=` and `/` stay as they are (hive paths such as table=X/date=.../hour=..): the URL path then
    # equals the decoded blob name for every name the archive writes.
    return urllib.parse.quote(name, safe="/=-_.~")


class BlobClient:
    """Shared Key client for one account's blob endpoint.

    `endpoint` is the account's blob URL: `http://127.0.0.1:PORT/devstoreaccount1` for Azurite
    (path style: the account is the first path segment) or `https://<account>.blob.core.windows.net`.
    """

    def __init__(self, endpoint: str, account: str | None = None, key: str | None = None):
        self.endpoint = endpoint.rstrip("/")
        parsed = urllib.parse.urlsplit(self.endpoint)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"not a blob endpoint URL: {endpoint!r}")
        if account is None:
            first = parsed.path.strip("/").split("/")[0]
            account = first or parsed.hostname.split(".")[0]
        self.account = account
        self.key = base64.b64decode(key or DEV_KEY)

    # -- signing ----------------------------------------------------------------------------

    def _string_to_sign(self, method: str, url: str, headers: dict[str, str]) -> str:
        lower = {k.lower(): v for k, v in headers.items()}
        parts = [method.upper()]
        for h in _SIGNED_STANDARD_HEADERS:
            v = lower.get(h, "")
            if h == "content-length" and v == "0":
                v = ""  # versions 2015-02-21 and later sign an empty string for a zero length
            parts.append(v)
        canonical_headers = "".join(
            f"{k}:{' '.join(lower[k].split())}\n" for k in sorted(lower) if k.startswith("x-ms-")
        )
        split = urllib.parse.urlsplit(url)
        resource = f"/{self.account}{split.path or '/'}"
        query: dict[str, list[str]] = {}
        for k, v in urllib.parse.parse_qsl(split.query, keep_blank_values=True):
            query.setdefault(k.lower(), []).append(v)
        for k in sorted(query):
            resource += f"\n{k}:{','.join(sorted(query[k]))}"
        return "\n".join(parts) + "\n" + canonical_headers + resource

    def _sign(self, method: str, url: str, headers: dict[str, str]) -> None:
        to_sign = self._string_to_sign(method, url, headers).encode("utf-8")
        digest = hmac.new(self.key, to_sign, hashlib.sha256).digest()
        headers["Authorization"] = f"SharedKey {self.account}:{base64.b64encode(digest).decode()}"

    def request(
        self,
        method: str,
        path: str,
        query: dict[str, str] | None = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        ok: tuple[int, ...] = (200, 201, 202),
    ) -> tuple[int, bytes]:
        """Sends one signed request; returns (status, body) or raises BlobError."""
        url = self.endpoint + "/" + _quote_path(path.lstrip("/"))
        if query:
            url += "?" + urllib.parse.urlencode(sorted(query.items()), quote_via=urllib.parse.quote)
        hdrs = {"x-ms-date": formatdate(usegmt=True), "x-ms-version": API_VERSION}
        hdrs.update(headers or {})
        if body is not None:
            # Set explicitly (and signed): urllib would otherwise add a form Content-Type.
            hdrs.setdefault("Content-Type", "application/octet-stream")
            hdrs["Content-Length"] = str(len(body))
        self._sign(method, url, hdrs)
        req = urllib.request.Request(url, data=body, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
                status, data = resp.status, resp.read()
        except urllib.error.HTTPError as e:
            status, data = e.code, e.read()
        if status not in ok:
            raise BlobError(method, url, status, data)
        return status, data

    # -- operations -------------------------------------------------------------------------

    def create_container(self, container: str) -> bool:
        """Creates the container; True if created, False if it already existed (409)."""
        status, _ = self.request("PUT", container, {"restype": "container"}, body=b"", ok=(201, 409))
        return status == 201

    def put_blob(self, container: str, name: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        """Uploads `data` as a block blob in one request (fine up to a few hundred MB)."""
        self.request(
            "PUT",
            f"{container}/{name}",
            body=data,
            headers={"x-ms-blob-type": "BlockBlob", "Content-Type": content_type},
            ok=(201,),
        )

    def list_blobs(self, container: str, prefix: str = "", page_size: int = 5000) -> Iterator[tuple[str, int]]:
        """(name, size in bytes) of every blob whose name starts with `prefix`, in name order
        (one List Blobs request per `page_size` blobs)."""
        marker = ""
        while True:
            query = {"restype": "container", "comp": "list", "maxresults": str(page_size)}
            if prefix:
                query["prefix"] = prefix
            if marker:
                query["marker"] = marker
            _, body = self.request("GET", container, query, ok=(200,))
            root = ET.fromstring(body)
            for blob in root.iter("Blob"):
                name = blob.findtext("Name") or ""
                size = blob.findtext("Properties/Content-Length") or "0"
                yield name, int(size)
            marker = root.findtext("NextMarker") or ""
            if not marker:
                return

    def get_blob(self, container: str, name: str) -> bytes:
        _, data = self.request("GET", f"{container}/{name}", ok=(200,))
        return data
