"""Removing what killed runs leave in the store: temporary files of interrupted saves (and an
S3 repository's unfinished multipart uploads, which other writers such as restic may leave).

Every writer (``BlobWriter``) removes, once per repository it opens, the temporaries of dead
processes of this host, so a SIGKILLed backup's half-written pack is gone after the next backup.
``prune`` holds the exclusive lock, so no writer runs anywhere: it removes every temporary except
a live one of this host (its own), including those of other hosts and of unknown writers.
"""

from __future__ import annotations

import logging

from ..errors import StoreError
from ..store.base import Store
from ..store.temporaries import Temporary, temporaries_of

log = logging.getLogger(__name__)


def find_temporaries(store: Store) -> list[Temporary]:
    keeper = temporaries_of(store)
    return keeper.temporaries() if keeper is not None else []


def remove_temporaries(store: Store, exclusive: bool = False) -> list[Temporary]:
    """Remove abandoned temporaries (see the module docstring); returns those removed.

    ``exclusive``: the caller holds the exclusive lock. A failure to list or remove is logged
    and skipped: leftovers never stop the command that found them."""
    keeper = temporaries_of(store)
    if keeper is None or not (exclusive or keeper.owners_known):
        return []  # without the exclusive lock, only a leftover naming its dead writer may go
    removed = []
    try:
        for t in keeper.temporaries():
            if t.writer_is_dead or (exclusive and not t.writer_is_alive_here):
                keeper.remove_temporary(t)
                removed.append(t)
    except StoreError as e:
        log.warning("could not remove temporary files left by interrupted runs: %s", e)
    if removed:
        mib = sum(t.size for t in removed) / (1 << 20)
        files = "file" if len(removed) == 1 else "files"
        log.warning("removed %d temporary %s left by interrupted runs (%.1f MiB)", len(removed), files, mib)
        for t in removed:
            log.debug("removed %s", t.describe())
    return removed


__all__ = ["find_temporaries", "remove_temporaries"]
