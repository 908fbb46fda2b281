"""Volume forms (``api.volumes``): one parser for the server, the agent's validation and its edge."""

from __future__ import annotations

import pytest

from e3backup.agent.validate import RunRefused, validate_backup
from e3backup.api.agent import RunAssignment
from e3backup.api.volumes import VolumeKind, parse_volume

GUID = "\\\\?\\Volume{0b6e3d4a-1c2d-4e5f-8a9b-0c1d2e3f4a5b}\\"


def _run(volume: str) -> RunAssignment:
    dest = {"type": "local", "path": "/r", "repository_password": "12345678"}
    return RunAssignment.model_validate(
        {"run_id": 1, "job_id": 1, "job_name": "j", "engine": "disk_image", "destination": dest,
         "disk_source_volume": volume}
    )


@pytest.mark.parametrize(
    ("volume", "kind"),
    [
        ("C:", VolumeKind.WINDOWS_DRIVE),
        ("C:\\", VolumeKind.WINDOWS_DRIVE),
        (GUID, VolumeKind.WINDOWS_VOLUME),
        (GUID.rstrip("\\"), VolumeKind.WINDOWS_VOLUME),
        ("\\\\.\\PhysicalDrive0", VolumeKind.WINDOWS_DISK),
        ("/dev/sda", VolumeKind.DEVICE),
        ("/dev/vg0/root", VolumeKind.DEVICE),
    ],
)
def test_the_seeds_forms_are_accepted_by_the_agent_too(volume: str, kind: VolumeKind) -> None:
    assert parse_volume(volume).kind is kind
    validate_backup(_run(volume))  # the agent no longer refuses what the server accepted


@pytest.mark.parametrize("volume", ["", "C", "C:\\Windows", "/etc/passwd", "/dev/../etc/shadow", "relative", "D:x"])
def test_other_text_is_refused_everywhere_with_the_forms_named(volume: str) -> None:
    with pytest.raises(ValueError, match="C:"):
        parse_volume(volume)
    with pytest.raises(RunRefused, match="disk_source_volume"):
        validate_backup(_run(volume))
