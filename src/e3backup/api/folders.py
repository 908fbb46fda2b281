"""A folder of an agent machine as the job wizard browses it (the seeds' ``filesystem.go``).

The server queues a ``list_folder`` command with ``{"path": ...}``; the agent answers with a
:class:`FolderListing` as the command's result. An empty path asks for the top: the drive
letters on Windows, ``/`` elsewhere, or the agent's ``allowed_sources`` when it has some.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from e3backup.api.common import Int64

MAX_ENTRIES = 5000

EntryType = Literal["dir", "file", "link", "drive", "other"]


class FolderEntry(BaseModel):
    name: Annotated[str, Field(max_length=4096)]
    path: Annotated[str, Field(max_length=8192)] = Field(..., description="The entry's full path, for a source.")
    type: EntryType
    size: Int64 = 0


class FolderListing(BaseModel):
    path: Annotated[str, Field(max_length=8192)] = Field("", description="The folder listed; empty: the top.")
    parent: Annotated[str, Field(max_length=8192)] | None = Field(None, description="Up one level (None: top).")
    entries: list[FolderEntry] = Field(default_factory=list, max_length=MAX_ENTRIES)
    truncated: bool = Field(False, description=f"More than {MAX_ENTRIES} entries: the first ones, folders first.")


__all__ = ["MAX_ENTRIES", "EntryType", "FolderEntry", "FolderListing"]
