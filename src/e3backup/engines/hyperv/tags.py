"""The tags a Hyper-V backup puts on its snapshots (and a restore looks for)."""

from __future__ import annotations

HYPERV_TAG = "hyperv"
CONFIG_TAG = "hyperv-config"


def vm_tags(vm_id: str, vm_name: str) -> tuple[str, ...]:
    return (HYPERV_TAG, f"vm:{vm_id}", f"vm-name:{vm_name}")


def checkpoint_tag(checkpoint_id: str) -> str:
    return f"checkpoint:{checkpoint_id}"


def disk_tag(identifier: str) -> str:
    return f"disk:{identifier}"


def tag_value(tags: list[str], prefix: str) -> str | None:
    """The value of the first ``prefix:value`` tag."""
    for t in tags:
        if t.startswith(prefix + ":"):
            return t[len(prefix) + 1 :]
    return None


__all__ = ["CONFIG_TAG", "HYPERV_TAG", "checkpoint_tag", "disk_tag", "tag_value", "vm_tags"]
