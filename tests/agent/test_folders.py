"""The agent lists its folders for the job wizard (``list_folder``), within ``allowed_sources``."""

from __future__ import annotations

from pathlib import Path

import pytest

from e3backup.agent.folders import _parent, list_folder
from e3backup.agent.validate import RunRefused

from .conftest import Harness


def _tree(root: Path) -> Path:
    (root / "zeta").mkdir(parents=True)
    (root / "Alpha").mkdir()
    (root / "b.txt").write_bytes(b"x" * 1234)
    (root / "link").symlink_to(root / "b.txt")
    return root


def test_the_wizard_lists_an_agents_folder_through_the_server(harness: Harness, tmp_path: Path) -> None:
    root = _tree(tmp_path / "data")
    agent, _ = harness.make_agent(allowed_sources=[str(root)])
    agent.start()  # the command loop answers while the request waits
    url = f"/api/agents/{agent.config.agent_id}/folders"
    top = harness.api("POST", url).json()
    assert top["entries"] == [{"name": str(root), "path": str(root), "type": "dir", "size": 0}]
    listing = harness.api("POST", url, params={"path": str(root)}).json()
    assert [(e["name"], e["type"], e["size"]) for e in listing["entries"]] == [
        ("Alpha", "dir", 0), ("zeta", "dir", 0), ("b.txt", "file", 1234), ("link", "link", 0)]
    assert listing["parent"] == ""  # up from an allowed source: the list of them
    harness.client.cookies.clear()
    r = harness.client.post(url, params={"path": "/etc"}, headers=harness.admin_headers)
    assert r.status_code == 502 and "/etc is not in this agent's allowed_sources" in r.json()["detail"]


def test_listing_rules_without_a_server(tmp_path: Path) -> None:
    root = _tree(tmp_path / "data")
    assert list_folder(str(root / "zeta"), "linux").parent == str(root)
    assert list_folder("", "linux").path == "/" and list_folder("/", "linux").parent == ""
    drives = list_folder("", "win32", drives=lambda: ["C:\\", "E:\\"])
    assert [(e.name, e.path, e.type) for e in drives.entries] == [("C:", "C:\\", "drive"), ("E:", "E:\\", "drive")]
    assert [_parent(p, True) for p in ("C:\\Users\\ann", "C:\\Users", "C:\\", "\\\\srv\\share\\d")] == [
        "C:\\Users", "C:\\", "", "\\\\srv\\share"]
    for bad, why in (("relative/x", "must be an absolute path"), (str(root / "b.txt"), "is not a folder"),
                     (str(root / "nope"), "does not exist"), (f"{root}/../x", "'..'")):
        with pytest.raises(RunRefused, match=why):
            list_folder(bad, "linux")


def test_a_unc_server_lists_its_disk_shares_on_windows() -> None:
    """The double returns what pywin32's ``win32net.NetShareEnum(server, 1)`` gives per page:
    SHARE_INFO_1 dicts (``netname``, ``type``, ``remark``); STYPE_DISKTREE is 0, STYPE_PRINTQ 1,
    STYPE_IPC 3, and STYPE_SPECIAL (0x80000000) marks administrative shares (``C$``, ``IPC$``)."""
    asked: list[str] = []

    def enum(server: str) -> list[dict[str, object]]:
        asked.append(server)
        return [
            {"netname": "ADMIN$", "type": 0x80000000, "remark": "Remote Admin"},
            {"netname": "C$", "type": 0x80000000, "remark": "Default share"},
            {"netname": "IPC$", "type": 0x80000003, "remark": "Remote IPC"},
            {"netname": "Finance", "type": 0, "remark": ""},
            {"netname": "HP LaserJet", "type": 1, "remark": "printer"},
            {"netname": "accounts archive", "type": 0, "remark": "old years"},
        ]

    listing = list_folder("\\\\fs01", "win32", shares=enum)
    assert asked == ["fs01"]
    assert [(e.name, e.path, e.type) for e in listing.entries] == [
        ("accounts archive", "\\\\fs01\\accounts archive", "dir"), ("Finance", "\\\\fs01\\Finance", "dir")]
    assert listing.parent == ""

    def refused(server: str) -> list[dict[str, object]]:
        raise OSError(53, "NetShareEnum", "The network path was not found.")

    with pytest.raises(RunRefused, match=r"cannot list the shares of .*fs02.*network path was not found"):
        list_folder("\\\\fs02\\", "win32", shares=refused)
    # with allowed_sources, a server is listed only if allowed, like any path
    with pytest.raises(RunRefused, match="not in this agent's allowed_sources"):
        list_folder("\\\\fs01", "win32", allowed=["D:\\Data"], shares=enum)
