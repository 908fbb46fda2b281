"""The job policy's ``max_memory_mb`` as the engines' memory budget (``e3backup.budget``)."""

from __future__ import annotations

from ..api.jobs import Policy
from ..budget import MemoryBudget, MiB


def memory_budget(policy: Policy) -> MemoryBudget:
    """The job's ``max_memory_mb``, else the default budget."""
    return MemoryBudget(policy.max_memory_mb * MiB) if policy.max_memory_mb else MemoryBudget()


__all__ = ["memory_budget"]
