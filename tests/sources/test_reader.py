"""The read-error policy, against a real FUSE file returning EIO and an injected-error device."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from e3backup.events import Event, EventCode
from e3backup.sources.device import Device, open_device
from e3backup.sources.errors import ReadError
from e3backup.sources.extents import ExtentList
from e3backup.sources.reader import DeviceReader, ReadPolicy, resolve_strict_read_errors

from .diskimages import MiB, random_bytes
from .faultyfuse import faulty_image

DATA = random_bytes(4 * MiB, 5)


@pytest.fixture()
def image(tmp_path: Path) -> Path:
    p = tmp_path / "src.img"
    p.write_bytes(DATA)
    return p


class FlakyDevice:
    """A device whose ``read_into`` raises EIO for reads touching ``bad`` (the preadv boundary),
    and fails the first ``transient`` attempts of any read."""

    def __init__(self, dev: Device, bad: list[tuple[int, int]], transient: int = 0) -> None:
        self.dev, self.bad, self.transient, self.calls = dev, ExtentList(bad), transient, 0
        self.path, self.sector_size = dev.path, dev.sector_size

    @property
    def size(self) -> int:
        return self.dev.size

    def read_into(self, offset: int, buf: bytearray | memoryview) -> int:
        self.calls += 1
        if self.calls <= self.transient or self.bad.overlaps(offset, len(buf)):
            raise OSError(errno.EIO, "Input/output error")
        return self.dev.read_into(offset, buf)


def expected_with_zeros(bad: list[tuple[int, int]]) -> bytes:
    out = bytearray(DATA)
    for o, n in bad:
        out[o : o + n] = bytes(n)
    return bytes(out)


def read_all(reader: DeviceReader, size: int, chunk: int = MiB) -> bytes:
    buf, out = bytearray(chunk), bytearray()
    for off in range(0, size, chunk):
        view = memoryview(buf)[: min(chunk, size - off)]
        reader.read_into(off, view)
        out += view
    return bytes(out)


BAD = [(300_032, 512), (1_048_064, 1024), (2 * MiB + 4096, 8192)]  # the 2nd spans two chunks


@pytest.mark.root
def test_best_effort_over_fuse_zero_fills_exact_sectors(image: Path) -> None:
    events: list[Event] = []
    with faulty_image(image, BAD) as path, open_device(path) as dev:
        with pytest.raises(OSError) as e:
            os.pread(dev.fd, 512, BAD[0][0])
        assert e.value.errno == errno.EIO  # the kernel really returns EIO
        reader = DeviceReader(dev, ReadPolicy(), on_event=events.append)
        got = read_all(reader, len(DATA))
    assert got == expected_with_zeros(BAD)
    spans = [(e.details["offset"], e.details["length"]) for e in events]
    assert {e.code for e in events} == {EventCode.DISK_IMAGE_READ_RECOVERED}
    # one event per contiguous bad span of each read; the span across the chunk edge is split there
    assert spans == [(300_032, 512), (1_048_064, 512), (MiB, 512), (2 * MiB + 4096, 8192)]
    assert reader.recovered == ExtentList(BAD)


@pytest.mark.root
def test_best_effort_through_a_loop_device_zero_fills_only_the_bad_sectors(image: Path) -> None:
    """Through a block device the page cache fails a whole readahead window around one bad
    sector (256 KiB measured for 4 KiB here): recovery reads past the cache, so only the
    sectors that really fail are zero-filled and the good data around them is kept."""
    from .diskimages import loop_device

    events: list[Event] = []
    data = random_bytes(16 * MiB, 6)
    image.write_bytes(data)
    bad = [(9 * MiB, 4096)]
    with faulty_image(image, bad) as path, loop_device(path, ro=True) as loop, open_device(loop) as dev:
        assert dev.is_block_device
        reader = DeviceReader(dev, ReadPolicy(), on_event=events.append)
        got = read_all(reader, len(data), chunk=4 * MiB)  # the image engine's chunk: a wide readahead
    assert got == data[: 9 * MiB] + bytes(4096) + data[9 * MiB + 4096 :]
    assert [(e.details["offset"], e.details["length"]) for e in events] == bad
    assert reader.recovered == ExtentList(bad)


@pytest.mark.root
def test_strict_over_fuse_raises_on_first_error(image: Path) -> None:
    events: list[Event] = []
    with faulty_image(image, BAD) as path, open_device(path) as dev:
        reader = DeviceReader(dev, ReadPolicy(strict=True), on_event=events.append)
        buf = bytearray(MiB)
        with pytest.raises(ReadError) as e:
            reader.read_into(0, buf)
    assert (e.value.offset, e.value.length) == (0, MiB)
    assert events == []


def test_injected_errors_best_effort_and_strict(image: Path) -> None:
    with open_device(image) as dev:
        events: list[Event] = []
        flaky = FlakyDevice(dev, BAD)
        assert read_all(DeviceReader(flaky, on_event=events.append), len(DATA)) == expected_with_zeros(BAD)
        assert len(events) == 4
        with pytest.raises(ReadError):
            read_all(DeviceReader(FlakyDevice(dev, BAD), ReadPolicy(strict=True)), len(DATA))


def test_transient_error_is_retried_without_recovery(image: Path) -> None:
    with open_device(image) as dev:
        events: list[Event] = []
        flaky = FlakyDevice(dev, [], transient=2)
        buf = bytearray(MiB)
        DeviceReader(flaky, ReadPolicy(retries=2, strict=True), on_event=events.append).read_into(MiB, buf)
        assert bytes(buf) == DATA[MiB : 2 * MiB] and events == [] and flaky.calls == 3
        flaky = FlakyDevice(dev, [], transient=3)
        with pytest.raises(ReadError):
            DeviceReader(flaky, ReadPolicy(retries=2, strict=True)).read_into(0, buf)


def test_reads_past_the_end_are_refused(image: Path) -> None:
    with open_device(image) as dev:
        reader = DeviceReader(dev)
        with pytest.raises(ValueError, match="clamp"):
            reader.read_into(len(DATA) - 100, bytearray(512))
        tail = bytearray(100)
        reader.read_into(len(DATA) - 100, tail)
        assert bytes(tail) == DATA[-100:]


def test_device_that_shrank_is_a_read_error(image: Path) -> None:
    with open_device(image) as dev:
        os.truncate(image, 3 * MiB)
        events: list[Event] = []
        buf = bytearray(MiB)
        DeviceReader(dev, on_event=events.append).read_into(3 * MiB - 512, memoryview(buf)[:1024])
        assert bytes(buf[:512]) == DATA[3 * MiB - 512 : 3 * MiB] and bytes(buf[512:1024]) == bytes(512)
        assert [(e.details["offset"], e.details["length"]) for e in events] == [(3 * MiB, 512)]


@pytest.mark.parametrize(
    ("policy", "env", "strict"),
    [
        (None, {}, False),
        ({"disk_image_strict_read_errors": True}, {}, True),
        ({"disk_image_strict_read_errors": "false"}, {}, False),
        # a set policy wins; the environment variable is only the fallback (the seeds' rule)
        ({"disk_image_strict_read_errors": False}, {"AGENT_DISK_IMAGE_STRICT_READ_ERRORS": "1"}, False),
        ({"disk_image_strict_read_errors": True}, {"AGENT_DISK_IMAGE_STRICT_READ_ERRORS": "false"}, True),
        ({"disk_image_strict_read_errors": None}, {"AGENT_DISK_IMAGE_STRICT_READ_ERRORS": "yes"}, True),
        (None, {"AGENT_DISK_IMAGE_STRICT_READ_ERRORS": "0"}, False),
        ({}, {"AGENT_DISK_IMAGE_STRICT_READ_ERRORS": "TRUE"}, True),
        ({"disk_image_strict_read_errors": 1}, {"AGENT_DISK_IMAGE_STRICT_READ_ERRORS": ""}, True),
    ],
)
def test_strict_flag_resolution(policy: dict[str, object] | None, env: dict[str, str], strict: bool) -> None:
    assert resolve_strict_read_errors(policy, env) is strict


def test_strict_flag_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="AGENT_DISK_IMAGE_STRICT_READ_ERRORS"):
        resolve_strict_read_errors({}, {"AGENT_DISK_IMAGE_STRICT_READ_ERRORS": "maybe"})
