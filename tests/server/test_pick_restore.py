"""Where picked files land: the restore request and its preview (``services.pick_restore``)."""

from __future__ import annotations

import pytest

from e3backup.server.errors import FieldError
from e3backup.server.services.pick_restore import PickChoice, escape_pattern, original_folder, restore_request
from e3backup.server.services.restore_targets import AgentTargets

LINUX = AgentTargets(restore_roots=["/srv/restores", "/home"], allowed_devices=[], device_sizes={})
WINDOWS = AgentTargets(restore_roots=["D:\\Restore", "C:\\Users"], allowed_devices=[], device_sizes={})


def test_original_location_restores_below_the_picked_folder() -> None:
    choice = PickChoice("home/ann/docs", ["home/ann/docs/a.txt", "home/ann/docs/sub"], where="original",
                        conflict="skip")
    payload, preview = restore_request("ab" * 32, choice, LINUX, windows=False)
    assert payload == {"snapshot_id": "ab" * 32 + ":home/ann/docs", "target_path": "/home/ann/docs",
                       "paths": ["/home/ann/docs/a.txt", "/home/ann/docs/sub"], "conflict": "skip"}
    assert preview == [("/home/ann/docs/a.txt", "/home/ann/docs/a.txt"), ("/home/ann/docs/sub", "/home/ann/docs/sub")]
    with pytest.raises(FieldError, match="original folder /etc is outside this agent's restore folders"):
        restore_request("ab" * 32, PickChoice("etc", ["etc/passwd"], where="original"), LINUX, windows=False)


def test_windows_drive_paths_and_keeping_parents() -> None:
    assert original_folder(["C", "Users", "ann"], windows=True) == "C:\\Users\\ann"
    assert original_folder(["C", "Users"], windows=False) == "/C/Users"
    choice = PickChoice("C/Users/ann", ["C/Users/ann/x.docx"], where="original")
    payload, preview = restore_request("cd" * 32, choice, WINDOWS, windows=True)
    assert payload["target_path"] == "C:\\Users\\ann" and preview[0][1] == "C:\\Users\\ann\\x.docx"
    kept = PickChoice("C/Users/ann", ["C/Users/ann/x.docx"], target_root="D:\\Restore", target_sub="t1",
                      keep_parents=True)
    payload, preview = restore_request("cd" * 32, kept, WINDOWS, windows=True)
    assert payload["snapshot_id"] == "cd" * 32 and payload["target_path"] == "D:\\Restore\\t1"
    assert preview == [("/C/Users/ann/x.docx", "D:\\Restore\\t1\\C\\Users\\ann\\x.docx")]


@pytest.mark.parametrize(("choice", "field"), [
    (PickChoice("docs", []), "paths"),
    (PickChoice("docs", ["other/a"]), "paths"),
    (PickChoice("docs", ["docs/../../etc"]), "path"),
    (PickChoice("docs", ["docs/a"], target_root="/etc"), "target_root"),
    (PickChoice("docs", ["docs/a"], target_root="/srv/restores", target_sub="../x"), "target_sub"),
    (PickChoice("docs", ["docs/a"], target_root="/srv/restores", conflict="merge"), "conflict"),
])
def test_bad_choices_name_their_field(choice: PickChoice, field: str) -> None:
    with pytest.raises(FieldError) as e:
        restore_request("ab" * 32, choice, LINUX, windows=False)
    assert e.value.field == field


def test_pattern_characters_in_names_are_escaped() -> None:
    assert escape_pattern("/d/[x]*?.txt") == "/d/[[]x][*][?].txt"


def test_image_partition_files_go_as_paths_into_a_restore_folder_only() -> None:
    choice = PickChoice("2-data/[x]", ["2-data/[x]/a*.txt"], target_root="/srv/restores", target_sub="t")
    payload, preview = restore_request("ef" * 32, choice, LINUX, windows=False, image=True)
    assert payload == {"snapshot_id": "ef" * 32 + ":2-data/[x]", "target_path": "/srv/restores/t",
                       "paths": ["/2-data/[x]/a*.txt"], "conflict": "keep_both"}  # not patterns: read by name
    assert preview == [("/2-data/[x]/a*.txt", "/srv/restores/t/a*.txt")]
    with pytest.raises(FieldError, match="no original folder on a machine"):
        restore_request("ef" * 32, PickChoice("1-root", ["1-root/etc"], where="original"), LINUX, False, image=True)
