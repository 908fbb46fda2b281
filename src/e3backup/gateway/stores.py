"""The storage behind a gateway repository: the job's destination, opened with its credentials.

The gateway holds the storage credentials (they stay sealed in the database and are unsealed
per request). Opened stores are kept in a small pool keyed by a digest of the destination and
its secrets, so connections are reused across requests (an S3 client costs tens of
milliseconds to build); the pool is a connection cache, not state: a changed destination or
secret gives a new key, and any replica builds the same store from the database.

A local destination in gateway mode is a folder on the gateway's machine; it must lie under one
of the server's ``gateway_local_roots`` (none by default), so a job cannot point the gateway at
an arbitrary folder of the server.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from ..server.db.models import Job
from ..server.errors import Conflict
from ..server.security import SecretBox
from ..server.services.jobs import SHARE_SECRETS, secrets_aad
from ..store.base import Store
from ..store.url import open_store


def destination_location(dest: dict[str, Any], local_roots: list[Path]) -> tuple[str, dict[str, Any]]:
    """The store location and options of a destination (secrets included) as the gateway opens it."""
    if dest.get("type") == "s3":
        prefix = str(dest.get("prefix") or "").strip("/")
        url = f"s3:{str(dest['endpoint']).rstrip('/')}/{dest['bucket']}" + (f"/{prefix}" if prefix else "")
        options: dict[str, Any] = {"access_key": dest.get("access_key_id"),
                                   "secret_key": dest.get("secret_access_key"), "upload_connections": 8}
        if dest.get("region"):
            options["region"] = dest["region"]
        return url, options
    path = str(dest.get("path") or "")
    real = os.path.realpath(path)
    roots = [os.path.realpath(r) for r in local_roots]
    if not any(real == r or real.startswith(r.rstrip(os.sep) + os.sep) for r in roots):
        raise Conflict(f"the gateway serves local folders only under its gateway_local_roots; {path} is not "
                       "under one (use an S3 destination, or add the folder's parent to gateway_local_roots)")
    return real, {}


class StorePool:
    """Open stores by destination, least recently used dropped past ``size``; thread-safe."""

    def __init__(self, box: SecretBox, local_roots: list[Path], size: int = 64) -> None:
        self._box = box
        self._roots = local_roots
        self._size = size
        self._stores: OrderedDict[str, Store] = OrderedDict()
        self._lock = threading.Lock()

    def for_job(self, job: Job) -> tuple[Store, bytes]:
        """The job's store, and its repository password (``verify`` checks uploads with it)."""
        secrets = self._box.open(job.destination_secrets, secrets_aad(job.tenant_id))
        dest = {**job.destination, **{k: v for k, v in secrets.items() if k not in SHARE_SECRETS}}
        password = str(dest.pop("repository_password", "") or "").encode()
        try:
            location, options = destination_location(dest, self._roots)
            key = hashlib.sha256(json.dumps([location, options], sort_keys=True, default=str).encode()).hexdigest()
            with self._lock:
                store = self._stores.get(key)
                if store is not None:
                    self._stores.move_to_end(key)
                    return store, password
            store = open_store(location, **options)
            with self._lock:
                self._stores[key] = store
                while len(self._stores) > self._size:
                    self._stores.popitem(last=False)  # not closed: a request may still use it
            return store, password
        finally:
            dest.clear()
            secrets.clear()

    def close(self) -> None:
        with self._lock:
            for store in self._stores.values():
                store.close()
            self._stores.clear()


__all__ = ["StorePool", "destination_location"]
