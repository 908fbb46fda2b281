"""The dashboard's pure parts: wizard form <-> API fields, the SVG chart, number formatting."""

from __future__ import annotations

from datetime import UTC, datetime

from e3backup.server.schemas import JobCreate
from e3backup.server.web import format as fmt
from e3backup.server.web.chart import ChartPoint, line_chart
from e3backup.server.web.views import disk_choices
from e3backup.server.web.wizard import default_form, form_field, spec_from_form


def test_hyperv_form_to_local_destination_spec() -> None:
    form = {
        **default_form(),
        "name": "VMs",
        "agent_id": "3",
        "engine": "hyperv",
        "hyperv_config.vms": "dc01\nsql01, web01",
        "hyperv_config.consistency_level": "crash",
        "source_paths": "C:\\not-for-hyperv",
        "disk_source_volume": "C:",  # a hidden field of another engine is not sent
        "destination.type": "local",
        "destination.path": "E:\\Repo",
        "destination.repository_password": "long enough",
        "retention.keep_daily": "7",
        "schedule.cron": "0 22 * * *",
    }
    del form["hyperv_config.enable_rct"]  # unticked
    spec = spec_from_form(form)
    job = JobCreate.model_validate(spec)
    assert job.hyperv_config is not None and job.hyperv_config.vms == ["dc01", "sql01", "web01"]
    assert job.hyperv_config.enable_rct is False and job.hyperv_config.consistency_level.value == "crash"
    assert job.disk_source_volume is None and job.source_paths == []
    assert job.destination.type == "local" and job.retention.keep_daily == 7
    assert job.schedule is not None and job.schedule.timezone == "UTC"


def test_api_error_fields_map_to_wizard_inputs() -> None:
    assert form_field("destination.s3.bucket") == "destination.bucket"
    assert form_field("source_path") == "source_paths"
    assert form_field("source_paths.0") == "source_paths"
    assert form_field("policy.parallel_disk_reads") == "policy.parallel_disk_reads"
    assert form_field("hyperv_config") == "hyperv_config.vms"
    assert form_field("retention.keep_hourly") == ""  # not in the wizard: shown above the form


def test_chart_has_one_escaped_point_per_run() -> None:
    points = [ChartPoint(i, datetime(2026, 3, i, tzinfo=UTC), float(i << 30), "success") for i in (1, 2, 3)]
    svg = str(line_chart(points, "Size <of> runs", fmt.size))
    assert svg.count("<circle") == 3 and "Size &lt;of&gt; runs" in svg and "<polyline" in svg
    assert 'data-points="0"' in str(line_chart([], "Empty", fmt.size))


def test_formatting_and_disk_choices() -> None:
    assert (fmt.size(1536), fmt.size(0), fmt.size(None)) == ("1.5 KiB", "0 B", "—")
    assert (fmt.duration(42), fmt.duration(3725)) == ("42 s", "1 h 02 min")
    assert fmt.speed(180 << 20) == "180.0 MiB/s"
    choices = disk_choices(
        {
            "disks": [
                {"path": "/dev/sda", "size_bytes": 1 << 30, "volumes": [{"path": "/dev/sda1", "filesystem": "ext4"}]}
            ],
            "volumes": [{"path": "/dev/sda1"}, {"path": "/dev/md0", "mount_point": "/srv"}],
        }
    )
    assert [c["value"] for c in choices] == ["/dev/sda", "/dev/sda1", "/dev/md0"]
    assert choices[2]["label"] == "/dev/md0 at /srv"


def test_disk_image_form_leaves_strict_unset_and_carries_the_stall_settings() -> None:
    """Unchecked "stop on a read error" is *unset* (the agent's AGENT_DISK_IMAGE_STRICT_READ_ERRORS
    then applies), not false; the stall settings reach the policy."""
    form = {
        **default_form(),
        "name": "Server disk",
        "agent_id": "3",
        "engine": "disk_image",
        "disk_source_volume": "\\\\?\\Volume{0b6e3d4a-1c2d-4e5f-8a9b-0c1d2e3f4a5b}\\",
        "destination.type": "local",
        "destination.path": "/srv/repo",
        "destination.repository_password": "long enough",
        "policy.disk_image_stall_seconds": "120",
        "policy.disk_image_fail_on_stall": "on",
    }
    job = JobCreate.model_validate(spec_from_form(form))
    assert job.policy.disk_image_strict_read_errors is None
    assert (job.policy.disk_image_stall_seconds, job.policy.disk_image_fail_on_stall) == (120, True)
    strict = JobCreate.model_validate(spec_from_form({**form, "policy.disk_image_strict_read_errors": "on"}))
    assert strict.policy.disk_image_strict_read_errors is True
