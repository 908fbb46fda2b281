"""Storage backends behind one small interface (see ``base``)."""

from .base import FileType, Handle, Store, is_id
from .local import LocalStore
from .url import open_store

__all__ = ["FileType", "Handle", "LocalStore", "Store", "is_id", "open_store"]
