"""What this machine last uploaded to a bucket: key -> size, modification time, ETag, MD5.

S3 listings give size and ETag but not the user metadata holding the modification time, so
without this cache every file of the same size costs a HEAD request (rclone's cost on an
unchanged sync). An entry is trusted only while the listing still shows the same size and
ETag: an object changed behind our back has a new ETag and is judged by HEAD again. Losing the
file costs time, never correctness. No secret is stored; the file name is a hash of the URL.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

VERSION = 1


@dataclass(frozen=True)
class Uploaded:
    size: int
    mtime_ns: int
    etag: str
    md5: str


class SyncState:
    def __init__(self, path: Path | None, url: str) -> None:
        self.path = path
        self.url = url
        self.entries: dict[str, Uploaded] = {}
        if path is not None:
            self._load(path)

    @classmethod
    def for_target(cls, state_dir: Path | None, url: str) -> SyncState:
        if state_dir is None:
            return cls(None, url)
        name = hashlib.sha256(url.encode()).hexdigest()[:24] + ".json"
        return cls(state_dir / "sync" / name, url)

    def _load(self, path: Path) -> None:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            if doc.get("version") != VERSION or doc.get("url") != self.url:
                return
            self.entries = {k: Uploaded(*v) for k, v in doc["objects"].items()}
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("sync state %s unreadable (%s); judging files by their metadata", path, e)
            self.entries = {}

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"version": VERSION, "url": self.url,
               "objects": {k: [u.size, u.mtime_ns, u.etag, u.md5] for k, u in self.entries.items()}}
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(doc, separators=(",", ":")), encoding="utf-8")
        os.replace(tmp, self.path)


__all__ = ["SyncState", "Uploaded"]
